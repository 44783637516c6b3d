"""The embedded broker's own job: the pipeline on Tansu, as `gapstream run` uses it, with Tansu's workarounds.

The suites are judged on Apache Kafka; Tansu stays the zero-setup default, so one request through every stage
and a dead letter must keep working there, and the broker must be detected as Tansu (no idempotent producer,
one record per produce batch) when nothing says so.
"""

from schemas.records import ImageRequest
from streams.broker import for_broker
from streams.client import publish_request
from tests.integration.kafka_tools import isolated_settings, produce_raw, read_topic, running_pipeline


async def test_a_request_completes_on_tansu_with_its_workarounds_detected(tansu_broker, redis_url, tmp_path,
                                                                          unique):
    detected = await for_broker(tansu_broker.bootstrap, isolated_settings(tmp_path, "dt", GAPSTREAM_BROKER_KIND="auto"))
    assert detected.on_tansu and detected.topic_replication == 1 and detected.fetch_wait_ms == 50

    settings = isolated_settings(tmp_path, "ts", GAPSTREAM_BROKER_KIND="auto")
    async with running_pipeline(settings, tansu_broker.bootstrap, redis_url) as (watcher, producer):
        await produce_raw(tansu_broker.bootstrap, settings.topic("requests"), f"bad-{unique}".encode(), b"{nope")
        request = ImageRequest(request_id=f"ts-{unique}", user_id=f"u-{unique}", prompt="a lighthouse at dusk",
                               max_rounds=1)
        await publish_request(producer, settings, request)
        result = await watcher.wait(request.request_id, timeout_s=120)
    assert result.status == "completed", result.error
    assert result.best_image is not None
    letters = await read_topic(tansu_broker.bootstrap, settings.topic("dead-letters"))
    assert [letter["key"] for letter in letters] == [f"bad-{unique}"]
