"""Broker-aware client settings: Tansu's workarounds apply on Tansu only, Kafka gets what Kafka users expect."""

import pytest

from infra.settings import Settings, SettingsError
from streams.broker import producer_options
from streams.faust_app import make_app


def _settings(**env):
    return Settings.from_env({"GAPSTREAM_HOME": "/tmp/gapstream-unit", **env})


def _producer_conf(app):
    producer = app.producer
    return {**producer._settings_default(), **producer._settings_extra()}


def test_on_kafka_the_workers_produce_idempotently_in_batches_and_fetch_with_kafkas_wait():
    settings = _settings(GAPSTREAM_BROKER_KIND="kafka", GAPSTREAM_TOPIC_REPLICATION="3")
    app = make_app(settings, "planner", "127.0.0.1:9092")
    conf = _producer_conf(app)
    assert conf["enable_idempotence"] is True and conf["acks"] in (-1, "all")
    assert conf["max_batch_size"] == 16384 and conf["linger_ms"] == 0
    assert app.conf.topic_replication_factor == 3
    assert app.fetch_max_wait_ms == settings.fetch_wait_ms == 500
    assert producer_options(settings) == {"acks": "all", "enable_idempotence": True, "linger_ms": 0}
    lingering = _settings(GAPSTREAM_BROKER_KIND="kafka", GAPSTREAM_TOPIC_REPLICATION="3",
                          GAPSTREAM_PRODUCER_LINGER_MS="5")
    assert _producer_conf(make_app(lingering, "planner", "127.0.0.1:9092"))["linger_ms"] == 5
    assert producer_options(lingering)["linger_ms"] == 5


def test_on_tansu_one_record_per_batch_no_idempotence_and_a_short_fetch_wait():
    settings = _settings(GAPSTREAM_BROKER_KIND="tansu", GAPSTREAM_TOPIC_REPLICATION="1")
    app = make_app(settings, "planner", "127.0.0.1:9092")
    conf = _producer_conf(app)
    assert "enable_idempotence" not in conf and conf["max_batch_size"] == 1 and conf["linger_ms"] == 0
    assert app.fetch_max_wait_ms == settings.fetch_wait_ms == 50
    assert producer_options(settings)["enable_idempotence"] is False


def test_an_explicit_fetch_wait_wins_on_either_broker():
    for kind in ("kafka", "tansu"):
        assert _settings(GAPSTREAM_BROKER_KIND=kind, GAPSTREAM_FETCH_MAX_WAIT_MS="120").fetch_wait_ms == 120


def test_make_app_refuses_settings_not_resolved_against_the_broker():
    with pytest.raises(ValueError, match="for_broker"):
        make_app(_settings(), "planner", "127.0.0.1:9092")


@pytest.mark.parametrize("env,name", [
    ({"GAPSTREAM_BROKER_KIND": "redpanda"}, "GAPSTREAM_BROKER_KIND"),
    ({"GAPSTREAM_TOPIC_REPLICATION": "-1"}, "GAPSTREAM_TOPIC_REPLICATION"),
    ({"GAPSTREAM_TOPIC_REPLICATION": "three"}, "GAPSTREAM_TOPIC_REPLICATION"),
])
def test_bad_broker_settings_name_the_variable(env, name):
    with pytest.raises(SettingsError, match=name):
        _settings(**env)
