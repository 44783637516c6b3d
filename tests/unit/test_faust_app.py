"""Kafka security settings reach both Faust (workers) and aiokafka (the CLI's own clients); bad ones are clear
errors naming the variable; the password never shows in a repr."""

import pytest

from infra.settings import Settings, SettingsError
from streams.faust_app import faust_credentials, kafka_client_options, make_app


def _settings(**env):
    return Settings.from_env({"GAPSTREAM_HOME": "/tmp/gapstream-unit", **env})


def test_plaintext_adds_nothing():
    settings = _settings()
    assert kafka_client_options(settings) == {} and faust_credentials(settings) is None


def test_sasl_scram_reaches_aiokafka_and_faust():
    settings = _settings(GAPSTREAM_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                         GAPSTREAM_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                         GAPSTREAM_KAFKA_SASL_USERNAME="svc", GAPSTREAM_KAFKA_SASL_PASSWORD="pw-SECRET-1")
    assert kafka_client_options(settings) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                              "sasl_plain_username": "svc", "sasl_plain_password": "pw-SECRET-1"}
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    app = make_app(settings.with_overrides(broker_kind="kafka", topic_replication=3), "planner", "127.0.0.1:9092")
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "svc" and auth["sasl_plain_password"] == "pw-SECRET-1"
    assert "pw-SECRET-1" not in repr(settings) and "pw-SECRET-1" not in repr(app.conf.broker_credentials)


def test_ssl_with_a_ca_file(tmp_path):
    import ssl

    settings = _settings(GAPSTREAM_KAFKA_SECURITY_PROTOCOL="SSL")
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SSL" and isinstance(options["ssl_context"], ssl.SSLContext)
    missing = _settings(GAPSTREAM_KAFKA_SECURITY_PROTOCOL="SASL_SSL", GAPSTREAM_KAFKA_SASL_USERNAME="u",
                        GAPSTREAM_KAFKA_SASL_PASSWORD="p", GAPSTREAM_KAFKA_SSL_CAFILE=str(tmp_path / "nope.pem"))
    with pytest.raises(SettingsError, match="GAPSTREAM_KAFKA_SSL"):
        kafka_client_options(missing)


@pytest.mark.parametrize("env,match", [
    ({"GAPSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "GAPSTREAM_KAFKA_SECURITY_PROTOCOL"),
    ({"GAPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "GAPSTREAM_KAFKA_SASL_MECHANISM": "MD5"},
     "GAPSTREAM_KAFKA_SASL_MECHANISM"),
    ({"GAPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "GAPSTREAM_KAFKA_SASL_USERNAME"),
], ids=["unknown-protocol", "unknown-mechanism", "sasl-without-credentials"])
def test_bad_security_settings_are_clear_errors(env, match):
    with pytest.raises(SettingsError, match=match):
        kafka_client_options(_settings(**env))
