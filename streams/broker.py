"""Which broker we talk to, and the client settings that follow from it.

gapstream runs on Apache Kafka in production and on Tansu (memory-only, Kafka wire protocol) as the embedded
default of `gapstream run`. Tansu has defects that Kafka has not, and each workaround below applies to Tansu only:

- no idempotent producer (aiokafka's InitProducerId fails with UnknownError): off on Tansu, on for Kafka;
- wrong end offsets when a produce request holds a batch of records: one record per batch on Tansu;
- an idle fetch is held for its whole `fetch_max_wait_ms` even when data arrives: 50 ms on Tansu; Kafka answers a
  fetch as soon as data arrives, so there the Kafka default (500 ms) costs no latency and polls 10x less
  (`Settings.fetch_wait_ms`).

The kind comes from `GAPSTREAM_BROKER_KIND` (`kafka`, `tansu`), is set by the embedded runner, or is detected once
per bootstrap (`auto`): Tansu reports the cluster id `tansu_cluster`. The topic replication factor, when
`GAPSTREAM_TOPIC_REPLICATION` is unset, is the broker's own `default.replication.factor`.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from typing import Any, Iterable, Iterator

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from infra.settings import Settings
from streams.faust_app import kafka_client_options

log = logging.getLogger("gapstream.broker")

_resolved: dict[tuple[str, str, int], tuple[str, int]] = {}


async def for_broker(bootstrap: str, settings: Settings) -> Settings:
    """`settings` with the broker kind and topic replication made concrete for this broker (probed once)."""
    if settings.broker_kind != "auto" and settings.topic_replication > 0:
        return settings
    key = (bootstrap, settings.broker_kind, settings.topic_replication)
    if key not in _resolved:
        _resolved[key] = await _probe(bootstrap, settings)
    kind, replication = _resolved[key]
    return settings.with_overrides(broker_kind=kind, topic_replication=replication)


def bootstrap_servers(bootstrap: str) -> list[tuple[str, str]]:
    """(host, port) of each server of a `host:port[,host:port…]` bootstrap, in order."""
    return [(host or "127.0.0.1", port) for host, _, port in
            (s.strip().rpartition(":") for s in bootstrap.split(",") if s.strip())]


class BrokerAccessError(ConnectionError):
    """The broker is there but will not have us (login refused, TLS not trusted): retrying will not help."""

    retriable = False


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs each failed bootstrap attempt; when the attempt fails we raise one error that says why."""
    quiet = logging.getLogger("aiokafka")
    previous = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(previous)


async def start_admin(bootstrap: str, settings: Settings) -> AIOKafkaAdminClient:
    """A started admin client; a refused login or an untrusted certificate is a `BrokerAccessError` naming the
    cause and the setting to check, where aiokafka would only say it was 'unable to bootstrap'."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                                **kafka_client_options(settings))
    try:
        with _quiet_aiokafka():
            await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        raise await _why_not(bootstrap, settings, exc) from None
    return admin


async def _why_not(bootstrap: str, settings: Settings, failure: Exception) -> Exception:
    """Connect to each bootstrap server once more, by hand, to learn what aiokafka's bootstrap swallowed."""
    options = kafka_client_options(settings)
    for host, port in bootstrap_servers(bootstrap):
        server = f"{host}:{port}"
        try:
            conn = await create_conn(host, int(port), **options)
        except SaslAuthenticationFailed as exc:
            return BrokerAccessError(
                f"Kafka authentication failed at {server} (SASL {options.get('sasl_mechanism')} as "
                f"{settings.kafka_sasl_username!r}): {exc} - check GAPSTREAM_KAFKA_SASL_USERNAME and "
                "GAPSTREAM_KAFKA_SASL_PASSWORD")
        except ssl.SSLCertVerificationError as exc:
            return BrokerAccessError(f"Kafka TLS at {server} is not trusted: {exc.verify_message} - check "
                                     "GAPSTREAM_KAFKA_SSL_CAFILE")
        except ssl.SSLError as exc:
            return BrokerAccessError(f"Kafka TLS handshake with {server} failed ({exc.reason}) - check "
                                     "GAPSTREAM_KAFKA_SECURITY_PROTOCOL and the listener")
        except (OSError, ValueError, KafkaConnectionError):
            continue  # this one is down; another may say more
        else:
            conn.close()
    return ConnectionError(f"cannot reach the Kafka broker at {bootstrap}: {failure}")


async def _probe(bootstrap: str, settings: Settings) -> tuple[str, int]:
    kind, replication = settings.broker_kind, settings.topic_replication
    admin = await start_admin(bootstrap, settings)
    try:
        cluster = await admin.describe_cluster()
        if kind == "auto":
            kind = "tansu" if str(cluster.get("cluster_id") or "").startswith("tansu") else "kafka"
        if replication <= 0:
            replication = 1 if kind == "tansu" else await _default_replication(admin, cluster)
    finally:
        await admin.close()
    log.info("broker at %s: %s, topic replication %d", bootstrap, kind, replication)
    return kind, replication


async def _default_replication(admin: AIOKafkaAdminClient, cluster: dict[str, Any]) -> int:
    broker_id = str(cluster["controller_id"] if cluster.get("controller_id", -1) >= 0
                    else cluster["brokers"][0]["node_id"])
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker_id)])
    for response in described:
        for resource in response.resources:
            for entry in resource[4]:  # (error_code, error_message, type, name, configs)
                if entry[0] == "default.replication.factor":
                    return max(1, int(entry[1]))
    return 1  # a broker that does not say has the Kafka default


def producer_options(settings: Settings) -> dict[str, Any]:
    """aiokafka producer keyword arguments for this broker: at-least-once everywhere, idempotent on Kafka."""
    if settings.broker_kind == "tansu":
        return {"acks": "all", "enable_idempotence": False, "linger_ms": 0}
    return {"acks": "all", "enable_idempotence": True, "linger_ms": settings.producer_linger_ms}


async def partitions_of(consumer: Any, topics: Iterable[str]) -> dict[str, list[int]]:
    """The partitions of each topic, read fresh from the cluster (a topic without metadata maps to []).

    Why not `consumer.partitions_for_topic` after `await consumer.topics()`: `topics()` fills a metadata copy of
    its own, and a consumer that has subscribed to nothing holds metadata of no topic on Kafka, whose bootstrap
    asks for none. Tansu answers that request with every topic, which hid this until the suites ran on Kafka.
    """
    cluster = await consumer._client.fetch_all_metadata()  # aiokafka has no public call for this
    return {topic: sorted(cluster.partitions_for_topic(topic) or ()) for topic in topics}


def for_embedded(settings: Settings) -> Settings:
    """`settings` for the embedded broker that `gapstream run` and `gapstream ui` start when no bootstrap is set:
    it is Tansu, so its workarounds apply without a probe."""
    if not settings.local_mode:
        return settings
    return settings.with_overrides(broker_kind="tansu", topic_replication=1)
