"""The Faust app each stage runs in, tuned so isolated events do not wait on broker fetch timeouts.

Faust hard-codes `fetch_max_wait_ms=1500` in its aiokafka driver and no setting reaches it. On a broker that holds
a fetch for its whole wait (Tansu does), every hop then costs ~750 ms on average; the subclasses below only lower
that one consumer setting (measured: a 6-hop chain went from p50 1,210 ms to ~20 ms).
"""

from __future__ import annotations

import ssl
from typing import Any, Optional

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from infra.settings import Settings, SettingsError

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")


def _ssl_context(settings: Settings) -> Optional[ssl.SSLContext]:
    if "SSL" not in settings.kafka_security_protocol:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        return create_ssl_context(cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile,
                                  keyfile=settings.kafka_ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"GAPSTREAM_KAFKA_SSL_*: cannot build the TLS context: {exc}") from None


def _check_sasl(settings: Settings) -> str:
    mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
    if mechanism not in SASL_MECHANISMS:
        raise SettingsError(f"GAPSTREAM_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                            f"got {settings.kafka_sasl_mechanism!r}")
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
            settings.kafka_sasl_username and settings.kafka_sasl_password):
        raise SettingsError(f"SASL {mechanism} needs GAPSTREAM_KAFKA_SASL_USERNAME and GAPSTREAM_KAFKA_SASL_PASSWORD")
    return mechanism


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured security (the CLI's own producers, consumers and admin)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    context = _ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = _check_sasl(settings)
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def faust_credentials(settings: Settings) -> Optional[Any]:
    """The same security for Faust workers (`broker_credentials`)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    mechanism = _check_sasl(settings)
    if mechanism == "GSSAPI":
        return faust.GSSAPICredentials(ssl_context=context)
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                 ssl_context=context, mechanism=mechanism)


def _consumer_thread_class(fetch_max_wait_ms: int) -> type:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
            consumer = super()._create_worker_consumer(transport)
            # Read by aiokafka when the consumer starts, which happens after this returns.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    return ConsumerThread


def _transport_class(fetch_max_wait_ms: int, idempotent: bool) -> type:
    thread_class = _consumer_thread_class(fetch_max_wait_ms)

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self):  # type: ignore[no-untyped-def]
            return thread_class(self, loop=self.loop, beacon=self.beacon)

    class Producer(faust_aiokafka.Producer):
        def _settings_extra(self):  # type: ignore[no-untyped-def]
            # Faust turns idempotence on only inside transactions; on Kafka we want it for every send, so a
            # producer retry after a lost ack cannot write a message twice. Tansu rejects it (streams.broker).
            extra = dict(super()._settings_extra())
            if idempotent:
                extra.update(acks="all", enable_idempotence=True)
            return extra

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    Transport.Producer = Producer
    return Transport


class GapstreamApp(faust.App):
    # make_app sets both from the settings, resolved against the broker (streams.broker.for_broker).
    fetch_max_wait_ms: int = 500
    idempotent: bool = False

    def _new_transport(self):  # type: ignore[no-untyped-def]
        return _transport_class(self.fetch_max_wait_ms, self.idempotent)(self.conf.broker_consumer, self)


def make_app(settings: Settings, stage: str, bootstrap: str) -> GapstreamApp:
    """One Faust app (so one consumer group) per stage: every stage sees every message of its input topics,
    whatever set of stages each worker process runs, and a stage scales by adding members to its group.

    `settings` must be resolved against the broker first (`streams.broker.for_broker`): Tansu's workarounds
    (one record per produce batch, no idempotence) follow `settings.broker_kind`."""
    if settings.broker_kind == "auto" or settings.topic_replication <= 0:
        raise ValueError("make_app needs settings resolved by streams.broker.for_broker")
    session = settings.broker_session_timeout
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = GapstreamApp(
        f"{settings.app_id}-{stage}",
        broker=f"kafka://{bootstrap}",
        key_serializer="raw",
        value_serializer="raw",  # records are decoded by the stage itself so bad input becomes a dead letter
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=True,
        store="memory://",
        # Faust keeps a per-app folder (table state, a lock); under GAPSTREAM_HOME rather than the working
        # directory, so running a worker or the tests leaves nothing in the user's checkout.
        datadir=str(settings.home / "faust" / f"{settings.app_id}-{stage}"),
        web_enabled=False,
        # Tansu reports wrong end offsets with batched producers: one record per batch there keeps them right
        # and costs little at our message sizes. On Kafka, 16 KiB batches and GAPSTREAM_PRODUCER_LINGER_MS.
        producer_max_batch_size=1 if settings.on_tansu else 16384,
        producer_linger=0.0 if settings.on_tansu else settings.producer_linger_ms / 1000,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_rebalance_timeout=session,
        broker_heartbeat_interval=max(0.5, session / 4),
        broker_commit_every=settings.commit_every,
        broker_commit_interval=0.5,
        # A generator batch on CPU can take a while; the poll interval must outlast it.
        broker_max_poll_interval=600.0,
        stream_wait_empty=False,
        broker_credentials=faust_credentials(settings),
    )
    app.fetch_max_wait_ms = settings.fetch_wait_ms
    app.idempotent = not settings.on_tansu
    return app
