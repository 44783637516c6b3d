"""Stage logic: plain async code behind small ports. Never imports Faust or Kafka."""
