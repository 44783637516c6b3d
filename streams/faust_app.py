"""The Faust app each stage runs in, tuned so isolated events do not wait on broker fetch timeouts.

Faust hard-codes `fetch_max_wait_ms=1500` in its aiokafka driver and no setting reaches it. On a broker that holds
a fetch for its whole wait (Tansu does), every hop then costs ~750 ms on average; the subclasses below only lower
that one consumer setting (measured: a 6-hop chain went from p50 1,210 ms to ~20 ms).
"""

from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from infra.settings import Settings


def _consumer_thread_class(fetch_max_wait_ms: int) -> type:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
            consumer = super()._create_worker_consumer(transport)
            # Read by aiokafka when the consumer starts, which happens after this returns.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    return ConsumerThread


def _transport_class(fetch_max_wait_ms: int) -> type:
    thread_class = _consumer_thread_class(fetch_max_wait_ms)

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self):  # type: ignore[no-untyped-def]
            return thread_class(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class GapstreamApp(faust.App):
    fetch_max_wait_ms: int = 20

    def _new_transport(self):  # type: ignore[no-untyped-def]
        return _transport_class(self.fetch_max_wait_ms)(self.conf.broker_consumer, self)


def make_app(settings: Settings, stage: str, bootstrap: str) -> GapstreamApp:
    """One Faust app (so one consumer group) per stage: every stage sees every message of its input topics,
    whatever set of stages each worker process runs, and a stage scales by adding members to its group."""
    session = settings.broker_session_timeout
    app = GapstreamApp(
        f"{settings.app_id}-{stage}",
        broker=f"kafka://{bootstrap}",
        key_serializer="raw",
        value_serializer="raw",  # records are decoded by the stage itself so bad input becomes a dead letter
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        store="memory://",
        web_enabled=False,
        # Tansu reports wrong end offsets with batched producers; one record per batch keeps them right and
        # costs little at our message sizes.
        producer_max_batch_size=1,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_rebalance_timeout=session,
        broker_heartbeat_interval=max(0.5, session / 4),
        broker_commit_every=1,
        broker_commit_interval=0.5,
        # A generator batch on CPU can take a while; the poll interval must outlast it.
        broker_max_poll_interval=600.0,
        stream_wait_empty=False,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app
