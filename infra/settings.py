"""One frozen settings object, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
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
    fetch_max_wait_ms: int = 20
    broker_session_timeout: float = 6.0
    metrics_port: int = 0  # 0: no /metrics endpoint
    metrics_host: str = "127.0.0.1"
    dedupe_ttl_s: int = 7 * 24 * 3600
    memory_ttl_s: int = 0  # 0: memory never expires
    log_level: str = "WARNING"

    @property
    def local_mode(self) -> bool:
        return self.kafka_bootstrap is None

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
            app_id=_str(env, "GAPSTREAM_APP_ID", "gapstream"),
            corpus_dir=corpus_dir,
            image_store=_str(env, "GAPSTREAM_IMAGE_STORE", str(home / "images")),
            image_model=_str(env, "GAPSTREAM_IMAGE_MODEL"),
            device=_str(env, "GAPSTREAM_DEVICE", "cpu"),
            dtype=dtype,
            default_steps=_int(env, "GAPSTREAM_DEFAULT_STEPS", 4, 1, 150),
            default_size=size,
            accept_score=_float(env, "GAPSTREAM_ACCEPT_SCORE", 0.75, 0.0, 1.0),
            fetch_max_wait_ms=_int(env, "GAPSTREAM_FETCH_MAX_WAIT_MS", 20, 1, 60_000),
            broker_session_timeout=_float(env, "GAPSTREAM_BROKER_SESSION_TIMEOUT", 6.0, 1.0, 300.0),
            metrics_port=_int(env, "GAPSTREAM_METRICS_PORT", 0, 0, 65535),
            metrics_host=_str(env, "GAPSTREAM_METRICS_HOST", "127.0.0.1"),
            dedupe_ttl_s=_int(env, "GAPSTREAM_DEDUPE_TTL_S", 7 * 24 * 3600, 60),
            memory_ttl_s=_int(env, "GAPSTREAM_MEMORY_TTL_S", 0, 0),
            log_level=_str(env, "GAPSTREAM_LOG_LEVEL", "WARNING").upper(),
        )
