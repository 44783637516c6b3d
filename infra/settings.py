"""One frozen settings object, read from the environment once.

Each variable is declared once, as a field made with `setting(...)`: its variable name, type (the annotation),
default, range or choices and a line of help. `from_env` reads the environment from that declaration, every way of
building a `Settings` (`from_env`, `with_overrides`, the constructor) checks it, and the README's table is rendered
from it (`python -m infra.settings_table --write`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from infra.settings_fields import SettingsError, check, declared, read_env, setting

__all__ = ["Settings", "SettingsError", "SETTINGS"]


def _name_chars(value: str) -> Optional[str]:
    # It names consumer groups, topics and Redis keys: a ':' would split the deployment's Redis namespace.
    if not all(c.isalnum() or c in "._-" for c in value):
        return "may hold only letters, digits, '.', '_' and '-'"
    return None


def _app_id(value: str) -> Optional[str]:
    return "must not be empty" if not value else _name_chars(value)


def _multiple_of_8(value: int) -> Optional[str]:
    return "must be a multiple of 8" if value % 8 else None  # the diffusion model's latent grid


def _directory(value: Path) -> Optional[str]:
    return None if value.is_dir() else "must be a directory"


@dataclass(frozen=True)
class Settings:
    home: Path = setting("GAPSTREAM_HOME", env_default="~/.gapstream",
                         help="data directory for embedded Redis, images, logs")
    kafka_bootstrap: Optional[str] = setting(
        "GAPSTREAM_KAFKA_BOOTSTRAP", env_default=None, means="embedded broker (`run` only)",
        help="Kafka bootstrap `host:port`")
    redis_url: Optional[str] = setting(
        "GAPSTREAM_REDIS_URL", env_default=None, means="embedded Redis under `GAPSTREAM_HOME`",
        help="per-user memory and deduplication (`redis://:password@host`, `rediss://` for TLS)")
    topic_prefix: str = setting("GAPSTREAM_TOPIC_PREFIX", "gapstream.", rule=_name_chars,
                                help="topic name prefix")
    topic_partitions: int = setting("GAPSTREAM_TOPIC_PARTITIONS", 4, low=1, high=1024,
                                    help="partitions of topics gapstream creates")
    app_id: str = setting(
        "GAPSTREAM_APP_ID", "gapstream", rule=_app_id,
        help="names the deployment: its consumer groups (`<app id>-<stage>`) and the one prefix of all its Redis keys "
             "(`<app id>:`), so deployments with different app ids can share a Redis; letters, digits, `.`, `_`, `-`")
    corpus_dir: Optional[Path] = setting("GAPSTREAM_CORPUS_DIR", None, rule=_directory,
                                         help="folder of documents for knowledge gaps")
    # "" when built directly: callers that build a Settings by hand name their store; from_env derives it from home.
    image_store: str = setting("GAPSTREAM_IMAGE_STORE", "", env_default=lambda read: str(read["home"] / "images"),
                               shown="`$GAPSTREAM_HOME/images`",
                               help="where images are written: a folder, or `s3://bucket/prefix`")
    image_model: Optional[str] = setting("GAPSTREAM_IMAGE_MODEL", None, means="tiny random-weight model",
                                         help="any diffusers text-to-image model id or path")
    device: str = setting("GAPSTREAM_DEVICE", "cpu", help="where the model runs (`cpu`, `cuda`, `cuda:1`, `mps`)")
    dtype: str = setting("GAPSTREAM_DTYPE", "float32", choices=("float32", "float16", "bfloat16"),
                         help="the model's precision: `float32`, `float16` or `bfloat16`")
    default_steps: int = setting("GAPSTREAM_DEFAULT_STEPS", 4, low=1, high=150,
                                 help="diffusion steps of a request that names none")
    default_size: int = setting("GAPSTREAM_DEFAULT_SIZE", 64, low=8, high=2048, rule=_multiple_of_8,
                                help="image width and height of a request that names none (a multiple of 8)")
    accept_score: float = setting("GAPSTREAM_ACCEPT_SCORE", 0.75, low=0.0, high=1.0,
                                  help="critic score that ends the loop")
    # Detected once per bootstrap by streams.broker; Tansu's workarounds follow it.
    broker_kind: str = setting(
        "GAPSTREAM_BROKER_KIND", "auto", choices=("auto", "kafka", "tansu"),
        help="`kafka` or `tansu`; `auto` detects it once per bootstrap. Tansu's workarounds (no idempotent producer, "
             "one record per produce batch, 50 ms fetch wait) apply on Tansu only; on Kafka producers are idempotent "
             "with `acks=all` and 16 KiB batches")
    topic_replication: int = setting(
        "GAPSTREAM_TOPIC_REPLICATION", 0, low=0, high=32, means="the broker's `default.replication.factor`",
        help="replication factor of topics gapstream creates (the tests and compose run 3, with "
             "`min.insync.replicas=2` on the brokers)")
    # 0: by broker (`fetch_wait_ms`). On Tansu, which holds an idle fetch for its whole wait, 50 and not lower:
    # each consumer polls this often when idle, and 20 ms cost ~30% of the pipeline's throughput for ~45 ms less
    # latency per request (issue 9). Kafka answers a fetch when data arrives, so there its default 500 ms is free.
    fetch_max_wait_ms: int = setting(
        "GAPSTREAM_FETCH_MAX_WAIT_MS", 0, low=0, high=60_000, means="`500` on Kafka, `50` on Tansu",
        help="longest a consumer's fetch waits for data. Kafka answers a fetch as soon as data arrives, so its "
             "default costs no latency; Tansu holds every fetch for the whole wait, so there lower is less latency "
             "per hop and more idle polling (see docs/benchmarks.md)")
    # Kafka only (Tansu sends one record per request). 0, not the Kafka client's 5: on the 3-node test cluster a
    # produce ack took p50 2.4 ms at 0 and 8.3 ms at 5, and a request makes 6 hops; aiokafka still batches what
    # queues while a send is in flight, so batches form under load anyway (docs/benchmarks.md).
    producer_linger_ms: int = setting(
        "GAPSTREAM_PRODUCER_LINGER_MS", 0, low=0, high=10_000,
        help="Kafka only: how long a producer waits to fill a batch. 0 because each of a request's 6 hops would pay "
             "it (measured: ack p50 2.4 ms at 0, 8.3 ms at 5); batches still form under load")
    # Committing after every message cost ~20% of the pipeline's throughput (issue 9); a crash now redoes up to
    # 0.5 s of messages, which the stages' dedupe absorbs.
    commit_every: int = setting(
        "GAPSTREAM_COMMIT_EVERY", 100, low=1, high=1_000_000,
        help="commit consumer offsets after this many handled messages, or every 0.5 s; a crash redoes at most that "
             "much, which the stages' dedupe absorbs")
    broker_session_timeout: float = setting(
        "GAPSTREAM_BROKER_SESSION_TIMEOUT", 6.0, low=1.0, high=300.0,
        help="seconds a silent worker keeps its partitions before the broker hands them to another member")
    metrics_port: int = setting("GAPSTREAM_METRICS_PORT", 0, low=0, high=65535, means="off",
                                help="Prometheus `/metrics` port of a worker")
    metrics_host: str = setting("GAPSTREAM_METRICS_HOST", "127.0.0.1",
                                help="address the `/metrics` endpoint binds to (`0.0.0.0` in the compose file)")
    dedupe_ttl_s: int = setting("GAPSTREAM_DEDUPE_TTL_S", 7 * 24 * 3600, low=60, means="7 days",
                                help="how long handled messages and published results are remembered, so a "
                                     "redelivery is skipped")
    memory_ttl_s: int = setting("GAPSTREAM_MEMORY_TTL_S", 0, low=0, means="never",
                                help="a user's memory expires this long after the last write that added to it")
    log_level: str = setting("GAPSTREAM_LOG_LEVEL", "WARNING", normalise=str.upper,
                             help="`INFO` adds a line per handled message")
    stage_concurrency: int = setting(
        "GAPSTREAM_STAGE_CONCURRENCY", 8, low=1, high=1024,
        help="messages in flight per stage per process (the generator: 1; it batches instead)")
    # Language models (LLM planner, enricher, VLM critic). No model configured: heuristic stages.
    openai_base_url: Optional[str] = setting("OPENAI_BASE_URL", None, means="OpenAI's endpoint",
                                             help="the OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LM Studio)")
    openai_api_key: Optional[str] = setting("OPENAI_API_KEY", None, secret=True,
                                            help="the endpoint's key (never logged)")
    llm_model: Optional[str] = setting("GAPSTREAM_LLM_MODEL", None, means="heuristic planner and enricher",
                                       help="model for planning and prompt writing")
    vlm_model: Optional[str] = setting("GAPSTREAM_VLM_MODEL", None, means="quality-check critic",
                                       help="vision model that judges the images")
    llm_timeout_s: float = setting("GAPSTREAM_LLM_TIMEOUT_S", 30.0, low=0.1, high=3600.0,
                                   help="timeout of one model call")
    llm_retries: int = setting("GAPSTREAM_LLM_RETRIES", 2, low=0, high=10,
                               help="retries of a model call after a 429, a 5xx or a timeout")
    llm_on_error: str = setting("GAPSTREAM_LLM_ON_ERROR", "fallback", choices=("fallback", "dead-letter"),
                                help="`fallback` (heuristic stage, marked degraded) or `dead-letter`")
    # A tiny model under grammar-guided decoding can otherwise fill its context.
    llm_max_tokens: int = setting(
        "GAPSTREAM_LLM_MAX_TOKENS", 1024, low=16, high=1_000_000,
        help="longest answer a model may write (a small model under grammar-guided decoding can otherwise fill its "
             "context)")
    # Issue 15: all-MiniLM-L6-v2, the `embeddings` extra.
    semantic_matching: bool = setting(
        "GAPSTREAM_SEMANTIC_MATCHING", True,
        help="match memory references and corpus passages by meaning as well as by words (needs the `embeddings` "
             "extra, in `[local]`); `false`: words only")
    # Web search through SerpAPI; a private corpus through corpus_dir. Both may be on.
    serpapi_api_key: Optional[str] = setting(
        "SERPAPI_API_KEY", None, secret=True, means="no web search",
        help="search knowledge gaps on the web through SerpAPI (with the corpus, if set: hits merged, each labelled "
             "with its backend)")
    serpapi_url: Optional[str] = setting("GAPSTREAM_SERPAPI_URL", None, means="`https://serpapi.com`",
                                         help="SerpAPI host: a proxy, or a test server")
    search_budget_per_request: int = setting(
        "GAPSTREAM_SEARCH_BUDGET_PER_REQUEST", 8, low=0, high=1000,
        help="distinct search queries per request (`0`: no limit); gaps beyond it stay unfilled, "
             "\"search budget exhausted\"")
    search_budget_per_minute: int = setting(
        "GAPSTREAM_SEARCH_BUDGET_PER_MINUTE", 60, low=0, high=1_000_000,
        help="SerpAPI calls per minute, shared by all workers through Redis (`0`: no limit); cache hits are free")
    search_cache_ttl_s: int = setting("GAPSTREAM_SEARCH_CACHE_TTL_S", 24 * 3600, low=0,
                                      help="how long SerpAPI results stay in the Redis cache (`0`: no cache)")
    search_cache_fresh_ttl_s: int = setting(
        "GAPSTREAM_SEARCH_CACHE_FRESH_TTL_S", 3600, low=0,
        help="the same for time-sensitive queries (a year, \"latest\", \"this year\", \"today\") and empty results")
    search_timeout_s: float = setting("GAPSTREAM_SEARCH_TIMEOUT_S", 15.0, low=0.1, high=600.0,
                                      help="one web search, retries included")
    search_read_pages: int = setting("GAPSTREAM_SEARCH_READ_PAGES", 0, low=0, high=20, means="off",
                                     help="result pages read per request when no snippet holds the fact")
    search_page_max_bytes: int = setting("GAPSTREAM_SEARCH_PAGE_MAX_BYTES", 512 * 1024, low=1024,
                                         high=50 * 1024 * 1024, help="bytes read of one result page")
    # Issue 6: memory that learns, conversations, clarifying questions.
    memory_history_cap: int = setting("GAPSTREAM_MEMORY_HISTORY_CAP", 50, low=1, high=10_000,
                                      help="accepted results (and conversation turns) remembered per user")
    memory_history_ttl_s: int = setting("GAPSTREAM_MEMORY_HISTORY_TTL_S", 90 * 24 * 3600, low=1, means="90 days",
                                        help="how long an accepted result is remembered")
    clarification_timeout_s: int = setting(
        "GAPSTREAM_CLARIFICATION_TIMEOUT_S", 3600, low=1,
        help="a request waiting for an answer expires after this (status `expired`)")
    clarification_sweep_s: float = setting("GAPSTREAM_CLARIFICATION_SWEEP_S", 5.0, low=0.05, high=3600.0,
                                           help="how often planner workers look for expired questions")
    # Issue 7 (nothing lost, nothing twice): deadlines, retries, result claims, broker security.
    request_deadline_s: float = setting(
        "GAPSTREAM_REQUEST_DEADLINE_S", 600.0, low=0.0, high=7 * 24 * 3600.0,
        help="a request waiting this long on one stage gets a `failed` result naming the stage (`0`: off)")
    watchdog_interval_s: float = setting("GAPSTREAM_WATCHDOG_INTERVAL_S", 1.0, low=0.05, high=3600.0,
                                         help="how often the watchdog looks for requests past their deadline")
    stage_retry_s: float = setting(
        "GAPSTREAM_STAGE_RETRY_S", 30.0, low=0.0, high=3600.0,
        help="how long a stage retries a message through a Redis or broker outage before dead-lettering it")
    result_claim_lease_s: float = setting(
        "GAPSTREAM_RESULT_CLAIM_LEASE_S", 10.0, low=0.1, high=3600.0,
        help="how long a worker about to publish a result holds its claim before another may take over")
    kafka_security_protocol: str = setting(
        "GAPSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        help="how workers talk to Kafka: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`")
    kafka_sasl_mechanism: Optional[str] = setting(
        "GAPSTREAM_KAFKA_SASL_MECHANISM", None, means="`PLAIN`",
        help="`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `GSSAPI` or `OAUTHBEARER`")
    kafka_sasl_username: Optional[str] = setting("GAPSTREAM_KAFKA_SASL_USERNAME", None,
                                                 help="the SASL user (needed with `SASL_*`)")
    kafka_sasl_password: Optional[str] = setting("GAPSTREAM_KAFKA_SASL_PASSWORD", None, secret=True,
                                                 help="the SASL user's password (never logged)")
    kafka_ssl_cafile: Optional[str] = setting("GAPSTREAM_KAFKA_SSL_CAFILE", None, means="the system's CAs",
                                              help="CA bundle that signs the brokers' certificates")
    kafka_ssl_certfile: Optional[str] = setting("GAPSTREAM_KAFKA_SSL_CERTFILE", None,
                                                help="client certificate, for brokers that require one")
    kafka_ssl_keyfile: Optional[str] = setting("GAPSTREAM_KAFKA_SSL_KEYFILE", None,
                                               help="the client certificate's key")
    # Issue 5: the generator as a GPU consumer group (micro-batching, memory options, S3 image store).
    batch_wait_ms: int = setting(
        "GAPSTREAM_BATCH_WAIT_MS", 0, low=0, high=60_000,
        help="extra ms the generator waits for compatible jobs when a batch is not full (0: it batches whatever "
             "queued while the model was busy)")
    max_batch: int = setting("GAPSTREAM_MAX_BATCH", 8, low=1, high=256, help="images per pipeline call")
    attention_slicing: bool = setting("GAPSTREAM_ATTENTION_SLICING", False,
                                      help="diffusers attention slicing: less peak memory, slower")
    cpu_offload: bool = setting("GAPSTREAM_CPU_OFFLOAD", False,
                                help="diffusers model CPU offload (needs accelerate and a CUDA device)")
    s3_endpoint_url: Optional[str] = setting(
        "GAPSTREAM_S3_ENDPOINT_URL", None, means="AWS",
        help="S3-compatible endpoint (MinIO, R2) for `GAPSTREAM_IMAGE_STORE=s3://bucket/prefix` "
             "(`pip install 'gapstream[s3]'`)")
    s3_region: Optional[str] = setting("GAPSTREAM_S3_REGION", None, help="the S3 store's region")
    # Issue 8 (operations).
    log_format: str = setting("GAPSTREAM_LOG_FORMAT", "text", choices=("text", "json"),
                              help="`json`: one JSON object per log line, with `request_id` and `stage`")
    lag_interval_s: float = setting(
        "GAPSTREAM_LAG_INTERVAL_S", 5.0, low=0.0, high=3600.0,
        help="how often a worker with a metrics port samples its consumer groups' lag (`0`: off)")
    # Issue 16: the web page (`gapstream ui`). Loopback by default; a token is required for any other address.
    ui_host: str = setting("GAPSTREAM_UI_HOST", "127.0.0.1",
                           help="where `gapstream ui` listens (`--host`); anything but loopback needs a token")
    ui_port: int = setting("GAPSTREAM_UI_PORT", 8080, low=0, high=65535, help="the web page's port (`--port`)")
    ui_token: Optional[str] = setting(
        "GAPSTREAM_UI_TOKEN", None, secret=True, means="no token, loopback only",
        help="the operator's access token (`--token`): every page and API call needs it or a user token derived "
             "from it")

    def __post_init__(self) -> None:
        # Every construction path (from_env, with_overrides, a direct call) comes through here.
        for item in SETTINGS:
            check(item, getattr(self, item.field))

    @property
    def local_mode(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def redis_namespace(self) -> str:
        """The one prefix of every Redis key this deployment writes (memory, dedupe marks, result claims, pending
        questions, deadlines, the search cache, the web page's index): two deployments with different app ids can
        share one Redis without seeing each other's keys. The default app id keeps the keys' old `gapstream:`."""
        return f"{self.app_id}:"

    @property
    def on_tansu(self) -> bool:
        return self.broker_kind == "tansu"

    @property
    def fetch_wait_ms(self) -> int:
        """The consumers' fetch wait: the setting, or the one that suits the broker."""
        return self.fetch_max_wait_ms or (50 if self.on_tansu else 500)

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    def topic(self, suffix: str) -> str:
        return f"{self.topic_prefix}{suffix}"

    def with_overrides(self, **changes: Any) -> "Settings":
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        return cls(**read_env(SETTINGS, os.environ if env is None else env))


# Every setting as declared, in field order: what from_env reads, __post_init__ checks and the README's table shows.
SETTINGS = declared(Settings)
