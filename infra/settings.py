"""One frozen settings object, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping, Optional


class SettingsError(ValueError):
    """A setting has a value gapstream cannot use; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 2**31) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float = 0.0, high: float = 1e9) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _str(env: Mapping[str, str], name: str, default: Optional[str] = None) -> Optional[str]:
    raw = env.get(name)
    return raw if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka_bootstrap: Optional[str]  # None: start the embedded broker (local mode)
    redis_url: Optional[str]  # None: start the embedded Redis under `home`
    topic_prefix: str = "gapstream."
    topic_partitions: int = 4
    app_id: str = "gapstream"
    corpus_dir: Optional[Path] = None
    image_store: str = ""
    image_model: Optional[str] = None  # None: the tiny random-weight offline pipeline
    device: str = "cpu"
    dtype: str = "float32"
    default_steps: int = 4
    default_size: int = 64
    accept_score: float = 0.75
    # "kafka", "tansu" or "auto" (detected once per bootstrap by streams.broker); Tansu's workarounds follow it.
    broker_kind: str = "auto"
    topic_replication: int = 0  # 0: the broker's own default.replication.factor
    # 0: by broker (`fetch_wait_ms`). On Tansu, which holds an idle fetch for its whole wait, 50 and not lower:
    # each consumer polls this often when idle, and 20 ms cost ~30% of the pipeline's throughput for ~45 ms less
    # latency per request (issue 9). Kafka answers a fetch when data arrives, so there its default 500 ms is free.
    fetch_max_wait_ms: int = 0
    # Kafka only (Tansu sends one record per request). 0, not the Kafka client's 5: on the 3-node test cluster a
    # produce ack took p50 2.4 ms at 0 and 8.3 ms at 5, and a request makes 6 hops; aiokafka still batches what
    # queues while a send is in flight, so batches form under load anyway (docs/benchmarks.md).
    producer_linger_ms: int = 0
    # Offsets are committed after this many acked messages or every 0.5 s, whichever comes first. Committing after
    # every message cost ~20% of the pipeline's throughput (issue 9); a crash now redoes up to 0.5 s of messages,
    # which the stages' dedupe absorbs.
    commit_every: int = 100
    broker_session_timeout: float = 6.0
    metrics_port: int = 0  # 0: no /metrics endpoint
    metrics_host: str = "127.0.0.1"
    dedupe_ttl_s: int = 7 * 24 * 3600
    memory_ttl_s: int = 0  # 0: memory never expires
    log_level: str = "WARNING"
    stage_concurrency: int = 8  # messages one stage works on at once per process (the generator batches instead)
    # Language models (issue: LLM planner, enricher, VLM critic). No model configured: heuristic stages.
    openai_base_url: Optional[str] = None
    openai_api_key: Optional[str] = field(default=None, repr=False)
    llm_model: Optional[str] = None
    vlm_model: Optional[str] = None
    llm_timeout_s: float = 30.0
    llm_retries: int = 2
    llm_on_error: str = "fallback"  # or "dead-letter"
    # Longest answer a model may write; a tiny model under grammar-guided decoding can otherwise fill its context.
    llm_max_tokens: int = 1024
    # Issue 15: memory references and corpus passages matched by meaning (all-MiniLM-L6-v2, the `embeddings`
    # extra) as well as by words; off: words only.
    semantic_matching: bool = True
    # Web search through SerpAPI; a private corpus through corpus_dir. Both may be on.
    serpapi_api_key: Optional[str] = field(default=None, repr=False)
    serpapi_url: Optional[str] = None
    search_budget_per_request: int = 8
    search_budget_per_minute: int = 60
    search_cache_ttl_s: int = 24 * 3600
    search_cache_fresh_ttl_s: int = 3600  # time-sensitive queries ("latest", "this year") go stale sooner
    search_timeout_s: float = 15.0
    search_read_pages: int = 0  # result pages to fetch and read per request when snippets lack the fact
    search_page_max_bytes: int = 512 * 1024
    # Issue 6: memory that learns, conversations, clarifying questions.
    memory_history_cap: int = 50  # accepted results remembered per user (oldest dropped first)
    memory_history_ttl_s: int = 90 * 24 * 3600  # an accepted result is forgotten this long after it was made
    clarification_timeout_s: int = 3600  # a request waiting for an answer expires after this
    clarification_sweep_s: float = 5.0  # how often a planner worker looks for expired questions
    # Issue 7 (nothing lost, nothing twice): deadlines, retries, result claims, broker security.
    request_deadline_s: float = 600.0  # a request waiting this long on one stage gets a `failed` result; 0: off
    watchdog_interval_s: float = 1.0
    stage_retry_s: float = 30.0  # retriable errors are retried this long before the message is dead-lettered
    result_claim_lease_s: float = 10.0
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: Optional[str] = None
    kafka_sasl_username: Optional[str] = None
    kafka_sasl_password: Optional[str] = field(default=None, repr=False)
    kafka_ssl_cafile: Optional[str] = None
    kafka_ssl_certfile: Optional[str] = None
    kafka_ssl_keyfile: Optional[str] = None
    # issue 5: the generator as a GPU consumer group (micro-batching, memory options, S3 image store).
    batch_wait_ms: int = 0  # extra wait for compatible jobs when a batch is not full (0: batch what has queued)
    max_batch: int = 8  # images per pipeline call
    attention_slicing: bool = False
    cpu_offload: bool = False  # diffusers model CPU offload (needs accelerate and a CUDA device)
    s3_endpoint_url: Optional[str] = None  # any S3-compatible store (MinIO, moto, R2); None: AWS
    s3_region: Optional[str] = None
    # Issue 8 (operations): log line format and how often a worker samples its consumer groups' lag.
    log_format: str = "text"  # or "json": one object per line with request_id and stage
    lag_interval_s: float = 5.0  # 0: no lag sampling
    # Simulated backends for benchmarks (issue 9): seconds a sleeping backend takes; None = the real backend.
    simulated_seconds_per_image: Optional[float] = None
    simulated_seconds_per_batched_image: Optional[float] = None  # None: as simulated_seconds_per_image
    simulated_search_s: Optional[float] = None
    simulated_llm_s: Optional[float] = None
    # Issue 16: the web page (`gapstream ui`). Loopback by default; a token is required for any other address.
    ui_host: str = "127.0.0.1"
    ui_port: int = 8080
    ui_token: Optional[str] = field(default=None, repr=False)

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

    def with_overrides(self, **changes: object) -> "Settings":
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(_str(env, "GAPSTREAM_HOME", str(Path.home() / ".gapstream"))).expanduser()
        corpus = _str(env, "GAPSTREAM_CORPUS_DIR")
        corpus_dir = Path(corpus).expanduser() if corpus else None
        if corpus_dir is not None and not corpus_dir.is_dir():
            raise SettingsError(f"GAPSTREAM_CORPUS_DIR={corpus!r} is not a directory")
        app_id = _str(env, "GAPSTREAM_APP_ID", "gapstream")
        if not all(c.isalnum() or c in "._-" for c in app_id):  # it names consumer groups and Redis keys
            raise SettingsError(f"GAPSTREAM_APP_ID may hold only letters, digits, '.', '_' and '-': {app_id!r}")
        prefix = _str(env, "GAPSTREAM_TOPIC_PREFIX", "gapstream.")
        if not all(c.isalnum() or c in "._-" for c in prefix):
            raise SettingsError(f"GAPSTREAM_TOPIC_PREFIX may hold only letters, digits, '.', '_' and '-': {prefix!r}")
        dtype = _str(env, "GAPSTREAM_DTYPE", "float32")
        if dtype not in ("float32", "float16", "bfloat16"):
            raise SettingsError(f"GAPSTREAM_DTYPE must be float32, float16 or bfloat16, got {dtype!r}")
        size = _int(env, "GAPSTREAM_DEFAULT_SIZE", 64, 8, 2048)
        if size % 8:
            raise SettingsError(f"GAPSTREAM_DEFAULT_SIZE must be a multiple of 8, got {size}")
        return cls(
            home=home,
            kafka_bootstrap=_str(env, "GAPSTREAM_KAFKA_BOOTSTRAP"),
            redis_url=_str(env, "GAPSTREAM_REDIS_URL"),
            topic_prefix=prefix,
            topic_partitions=_int(env, "GAPSTREAM_TOPIC_PARTITIONS", 4, 1, 1024),
            app_id=app_id,
            corpus_dir=corpus_dir,
            image_store=_str(env, "GAPSTREAM_IMAGE_STORE", str(home / "images")),
            image_model=_str(env, "GAPSTREAM_IMAGE_MODEL"),
            device=_str(env, "GAPSTREAM_DEVICE", "cpu"),
            dtype=dtype,
            default_steps=_int(env, "GAPSTREAM_DEFAULT_STEPS", 4, 1, 150),
            default_size=size,
            accept_score=_float(env, "GAPSTREAM_ACCEPT_SCORE", 0.75, 0.0, 1.0),
            broker_kind=_choice(env, "GAPSTREAM_BROKER_KIND", "auto", ("auto", "kafka", "tansu")),
            topic_replication=_int(env, "GAPSTREAM_TOPIC_REPLICATION", 0, 0, 32),
            fetch_max_wait_ms=_int(env, "GAPSTREAM_FETCH_MAX_WAIT_MS", 0, 0, 60_000),
            producer_linger_ms=_int(env, "GAPSTREAM_PRODUCER_LINGER_MS", 0, 0, 10_000),
            commit_every=_int(env, "GAPSTREAM_COMMIT_EVERY", 100, 1, 1_000_000),
            broker_session_timeout=_float(env, "GAPSTREAM_BROKER_SESSION_TIMEOUT", 6.0, 1.0, 300.0),
            metrics_port=_int(env, "GAPSTREAM_METRICS_PORT", 0, 0, 65535),
            metrics_host=_str(env, "GAPSTREAM_METRICS_HOST", "127.0.0.1"),
            dedupe_ttl_s=_int(env, "GAPSTREAM_DEDUPE_TTL_S", 7 * 24 * 3600, 60),
            memory_ttl_s=_int(env, "GAPSTREAM_MEMORY_TTL_S", 0, 0),
            log_level=_str(env, "GAPSTREAM_LOG_LEVEL", "WARNING").upper(),
            stage_concurrency=_int(env, "GAPSTREAM_STAGE_CONCURRENCY", 8, 1, 1024),
            openai_base_url=_str(env, "OPENAI_BASE_URL"),
            openai_api_key=_str(env, "OPENAI_API_KEY"),
            llm_model=_str(env, "GAPSTREAM_LLM_MODEL"),
            vlm_model=_str(env, "GAPSTREAM_VLM_MODEL"),
            llm_timeout_s=_float(env, "GAPSTREAM_LLM_TIMEOUT_S", 30.0, 0.1, 3600.0),
            llm_retries=_int(env, "GAPSTREAM_LLM_RETRIES", 2, 0, 10),
            llm_on_error=_choice(env, "GAPSTREAM_LLM_ON_ERROR", "fallback", ("fallback", "dead-letter")),
            llm_max_tokens=_int(env, "GAPSTREAM_LLM_MAX_TOKENS", 1024, 16, 1_000_000),
            semantic_matching=_bool(env, "GAPSTREAM_SEMANTIC_MATCHING", True),
            serpapi_api_key=_str(env, "SERPAPI_API_KEY"),
            serpapi_url=_str(env, "GAPSTREAM_SERPAPI_URL"),
            search_budget_per_request=_int(env, "GAPSTREAM_SEARCH_BUDGET_PER_REQUEST", 8, 0, 1000),
            search_budget_per_minute=_int(env, "GAPSTREAM_SEARCH_BUDGET_PER_MINUTE", 60, 0, 1_000_000),
            search_cache_ttl_s=_int(env, "GAPSTREAM_SEARCH_CACHE_TTL_S", 24 * 3600, 0),
            search_cache_fresh_ttl_s=_int(env, "GAPSTREAM_SEARCH_CACHE_FRESH_TTL_S", 3600, 0),
            search_timeout_s=_float(env, "GAPSTREAM_SEARCH_TIMEOUT_S", 15.0, 0.1, 600.0),
            search_read_pages=_int(env, "GAPSTREAM_SEARCH_READ_PAGES", 0, 0, 20),
            search_page_max_bytes=_int(env, "GAPSTREAM_SEARCH_PAGE_MAX_BYTES", 512 * 1024, 1024, 50 * 1024 * 1024),
            # Issue 6
            memory_history_cap=_int(env, "GAPSTREAM_MEMORY_HISTORY_CAP", 50, 1, 10_000),
            memory_history_ttl_s=_int(env, "GAPSTREAM_MEMORY_HISTORY_TTL_S", 90 * 24 * 3600, 1),
            clarification_timeout_s=_int(env, "GAPSTREAM_CLARIFICATION_TIMEOUT_S", 3600, 1),
            clarification_sweep_s=_float(env, "GAPSTREAM_CLARIFICATION_SWEEP_S", 5.0, 0.05, 3600.0),
            # Issue 7
            request_deadline_s=_float(env, "GAPSTREAM_REQUEST_DEADLINE_S", 600.0, 0.0, 7 * 24 * 3600.0),
            watchdog_interval_s=_float(env, "GAPSTREAM_WATCHDOG_INTERVAL_S", 1.0, 0.05, 3600.0),
            stage_retry_s=_float(env, "GAPSTREAM_STAGE_RETRY_S", 30.0, 0.0, 3600.0),
            result_claim_lease_s=_float(env, "GAPSTREAM_RESULT_CLAIM_LEASE_S", 10.0, 0.1, 3600.0),
            kafka_security_protocol=_choice(env, "GAPSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
                                            ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
            kafka_sasl_mechanism=_str(env, "GAPSTREAM_KAFKA_SASL_MECHANISM"),
            kafka_sasl_username=_str(env, "GAPSTREAM_KAFKA_SASL_USERNAME"),
            kafka_sasl_password=_str(env, "GAPSTREAM_KAFKA_SASL_PASSWORD"),
            kafka_ssl_cafile=_str(env, "GAPSTREAM_KAFKA_SSL_CAFILE"),
            kafka_ssl_certfile=_str(env, "GAPSTREAM_KAFKA_SSL_CERTFILE"),
            kafka_ssl_keyfile=_str(env, "GAPSTREAM_KAFKA_SSL_KEYFILE"),
            # issue 5
            batch_wait_ms=_int(env, "GAPSTREAM_BATCH_WAIT_MS", 0, 0, 60_000),
            max_batch=_int(env, "GAPSTREAM_MAX_BATCH", 8, 1, 256),
            attention_slicing=_bool(env, "GAPSTREAM_ATTENTION_SLICING", False),
            cpu_offload=_bool(env, "GAPSTREAM_CPU_OFFLOAD", False),
            s3_endpoint_url=_str(env, "GAPSTREAM_S3_ENDPOINT_URL"),
            s3_region=_str(env, "GAPSTREAM_S3_REGION"),
            # Issue 8 (operations).
            log_format=_choice(env, "GAPSTREAM_LOG_FORMAT", "text", ("text", "json")),
            lag_interval_s=_float(env, "GAPSTREAM_LAG_INTERVAL_S", 5.0, 0.0, 3600.0),
            # issue 9: simulated backends
            simulated_seconds_per_image=_float(env, "GAPSTREAM_SIMULATED_SECONDS_PER_IMAGE", None, 0.0, 3600.0),
            simulated_seconds_per_batched_image=_float(env, "GAPSTREAM_SIMULATED_SECONDS_PER_BATCHED_IMAGE", None,
                                                       0.0, 3600.0),
            simulated_search_s=_float(env, "GAPSTREAM_SIMULATED_SEARCH_S", None, 0.0, 3600.0),
            simulated_llm_s=_float(env, "GAPSTREAM_SIMULATED_LLM_S", None, 0.0, 3600.0),
            # issue 16: the web page
            ui_host=_str(env, "GAPSTREAM_UI_HOST", "127.0.0.1"),
            ui_port=_int(env, "GAPSTREAM_UI_PORT", 8080, 0, 65535),
            ui_token=_str(env, "GAPSTREAM_UI_TOKEN"),
        )
