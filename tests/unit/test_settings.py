"""Settings: each variable declared once, read from the environment by that declaration, and checked on every way a
`Settings` is built (issue 14, item 7)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.settings import SETTINGS, Settings, SettingsError

HOME = {"GAPSTREAM_HOME": "/tmp/gapstream-unit"}

# (field, variable, a text the variable may not hold, a value the field may not hold, what the error says)
INVALID = [
    ("topic_partitions", "GAPSTREAM_TOPIC_PARTITIONS", "0", 0, "between 1 and 1024"),
    ("topic_partitions", "GAPSTREAM_TOPIC_PARTITIONS", "four", "4", "an integer"),
    ("accept_score", "GAPSTREAM_ACCEPT_SCORE", "1.5", 1.5, "between 0.0 and 1.0"),
    ("accept_score", "GAPSTREAM_ACCEPT_SCORE", "nan", float("nan"), "between 0.0 and 1.0"),
    ("semantic_matching", "GAPSTREAM_SEMANTIC_MATCHING", "maybe", "maybe", "true or false"),
    ("broker_kind", "GAPSTREAM_BROKER_KIND", "redpanda", "redpanda", "one of auto, kafka, tansu"),
    ("dtype", "GAPSTREAM_DTYPE", "float8", "float8", "one of float32, float16, bfloat16"),
    ("default_size", "GAPSTREAM_DEFAULT_SIZE", "100", 100, "multiple of 8"),
    ("app_id", "GAPSTREAM_APP_ID", "dep:1", "dep:1", "may hold only letters"),
    ("topic_prefix", "GAPSTREAM_TOPIC_PREFIX", "my prefix.", "my prefix.", "may hold only letters"),
    ("dedupe_ttl_s", "GAPSTREAM_DEDUPE_TTL_S", "59", 59, "between 60 and"),
    ("corpus_dir", "GAPSTREAM_CORPUS_DIR", "/nonexistent/corpus", Path("/nonexistent/corpus"), "a directory"),
]
IDS = [f"{name}={text}" for _, name, text, _, _ in INVALID]


@pytest.mark.parametrize("field,name,text,value,says", INVALID, ids=IDS)
def test_an_invalid_variable_is_refused_by_from_env_naming_it(field, name, text, value, says):
    with pytest.raises(SettingsError, match=f"^{name} .*{says}"):
        Settings.from_env({**HOME, name: text})


@pytest.mark.parametrize("field,name,text,value,says", INVALID, ids=IDS)
def test_an_invalid_value_is_refused_by_with_overrides_naming_the_variable(field, name, text, value, says):
    base = Settings.from_env(HOME)
    with pytest.raises(SettingsError, match=f"^{name} .*{says}"):
        base.with_overrides(**{field: value})


@pytest.mark.parametrize("field,name,text,value,says", INVALID, ids=IDS)
def test_an_invalid_value_is_refused_by_the_constructor_naming_the_variable(field, name, text, value, says):
    with pytest.raises(SettingsError, match=f"^{name} .*{says}"):
        Settings(home=Path("/tmp/gapstream-unit"), kafka_bootstrap=None, redis_url=None, **{field: value})


def test_values_of_the_wrong_type_are_refused_even_where_python_would_accept_them():
    base = Settings.from_env(HOME)
    with pytest.raises(SettingsError, match="GAPSTREAM_MAX_BATCH must be an integer"):
        base.with_overrides(max_batch=True)  # a bool is an int to Python
    with pytest.raises(SettingsError, match="GAPSTREAM_HOME must be a path"):
        base.with_overrides(home="/tmp/elsewhere")
    with pytest.raises(SettingsError, match="GAPSTREAM_KAFKA_BOOTSTRAP must be a string"):
        base.with_overrides(kafka_bootstrap=9092)
    assert base.with_overrides(request_deadline_s=60).request_deadline_s == 60  # an int is a fine number


def test_with_overrides_still_refuses_a_field_that_does_not_exist_and_keeps_the_rest():
    base = Settings.from_env(HOME)
    with pytest.raises(SettingsError, match="unknown settings: topic_partition"):
        base.with_overrides(topic_partition=8)
    changed = base.with_overrides(topic_partitions=8, kafka_bootstrap="kafka:9092")
    assert (changed.topic_partitions, changed.kafka_bootstrap, changed.app_id) == (8, "kafka:9092", base.app_id)
    assert not changed.local_mode and base.local_mode


def _valid_other_value(item, tmp_path: Path) -> tuple[str, object]:
    """A text the variable may hold whose value differs from its default, and that value."""
    default = item.default
    if item.kind is Path:
        return str(tmp_path), tmp_path
    if item.kind is bool:
        return ("false", False) if default else ("true", True)
    if item.spec.choices:
        other = next(choice for choice in item.spec.choices if choice != default)
        return other, other
    if item.kind in (int, float):
        value = item.kind(item.high if default == item.low else item.low)
        if item.field == "default_size":
            value = 2048
        return str(value), value
    if item.field == "log_level":
        return "info", "INFO"
    return "other", "other"


def test_every_declared_variable_reaches_its_field(tmp_path):
    for item in SETTINGS:
        text, value = _valid_other_value(item, tmp_path)
        read = Settings.from_env({**HOME, item.env: text})
        assert getattr(read, item.field) == value, item.env


def test_unset_variables_leave_the_dataclass_defaults_except_where_from_env_computes_one():
    read, computed = Settings.from_env({"GAPSTREAM_HOME": "/tmp/gapstream-unit"}), {}
    for field in dataclasses.fields(Settings):
        if field.default is dataclasses.MISSING:
            computed[field.name] = getattr(read, field.name)
        elif getattr(read, field.name) != field.default:
            computed[field.name] = getattr(read, field.name)
    assert computed == {"home": Path("/tmp/gapstream-unit"), "kafka_bootstrap": None, "redis_url": None,
                        "image_store": "/tmp/gapstream-unit/images"}
    assert Settings.from_env({}).home == Path.home() / ".gapstream"


def test_secrets_stay_out_of_repr():
    secrets = [item for item in SETTINGS if item.spec.secret]
    assert {item.env for item in secrets} >= {"OPENAI_API_KEY", "SERPAPI_API_KEY", "GAPSTREAM_KAFKA_SASL_PASSWORD",
                                              "GAPSTREAM_UI_TOKEN"}
    settings = Settings.from_env({**HOME, **{item.env: f"secret-{item.field}-42" for item in secrets}})
    for item in secrets:
        assert getattr(settings, item.field) == f"secret-{item.field}-42"
        assert f"secret-{item.field}-42" not in repr(settings)


def test_the_benchmark_only_simulated_settings_are_gone():
    assert not [item.env for item in SETTINGS if "SIMULATED" in item.env]
    assert not [field.name for field in dataclasses.fields(Settings) if field.name.startswith("simulated_")]
