"""A plain aiokafka client of the public topics: create them, publish requests, wait for results.

This is what any user's pipeline does; it shares nothing with the workers but the topic contracts.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Optional

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from infra.settings import Settings
from schemas.records import ImageRequest, ResultRecord
from schemas.topics import ALL_TOPICS, REQUESTS, RESULTS


class ResultTimeout(TimeoutError):
    retriable = True


async def ensure_topics(bootstrap: str, settings: Settings) -> Settings:
    """Create every topic with the configured partitions and replication; existing topics are left as they are.
    Returns `settings` resolved against the broker (`streams.broker.for_broker`)."""
    from streams.broker import for_broker, start_admin

    settings = await for_broker(bootstrap, settings)
    admin = await start_admin(bootstrap, settings)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(spec.name(settings.topic_prefix), num_partitions=settings.topic_partitions,
                     replication_factor=settings.topic_replication)
            for spec in ALL_TOPICS
            if spec.name(settings.topic_prefix) not in existing
        ]
        for topic in wanted:  # one by one: a concurrent creator makes one fail, not all
            try:
                response = await admin.create_topics([topic])
            except TopicAlreadyExistsError:
                continue
            # aiokafka reports a refused topic in the response, not as an exception.
            for name, code, message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    error = for_code(code)
                    raise error(f"cannot create topic {name} (replication {settings.topic_replication}, "
                                f"{settings.topic_partitions} partitions): {message or error.__name__}")
        await _wait_visible(admin, [t.name for t in wanted])
    finally:
        await admin.close()
    return settings


async def _wait_visible(admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float = 15.0) -> None:
    """Until new topics have a leader for every partition: Kafka creates them asynchronously, so a client that
    reads or writes right after creating would otherwise see 'unknown topic' for a moment."""
    deadline = time.monotonic() + timeout_s
    while topics and time.monotonic() < deadline:
        described = await admin.describe_topics(topics)
        if all(t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
               for t in described):
            return
        await asyncio.sleep(0.1)


def _security(settings: Optional[Settings]) -> dict:
    from streams.faust_app import kafka_client_options  # SASL/SSL from GAPSTREAM_KAFKA_* (issue 7)

    return kafka_client_options(settings) if settings is not None else {}


def new_producer(bootstrap: str, settings: Settings) -> AIOKafkaProducer:
    """A producer for `settings` resolved against the broker: idempotent on Kafka, not on Tansu (which rejects
    it). Either way delivery is at-least-once and every stage dedupes."""
    from streams.broker import producer_options

    return AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(settings), **_security(settings))


async def publish_request(producer: AIOKafkaProducer, settings: Settings, request: ImageRequest) -> None:
    await producer.send_and_wait(
        REQUESTS.name(settings.topic_prefix),
        key=request.request_id.encode(),
        value=request.model_dump_json(exclude_none=True).encode(),
    )


class ResultWatcher:
    """Reads `results` from its current end, so results published after `start()` are seen and older ones not.

    One reader task feeds every waiter: with many requests in flight, each waiter polling the consumer itself made
    a result wait up to a whole poll (1 s) behind another waiter's fetch that had already read it.
    """

    def __init__(self, bootstrap: str, settings: Settings) -> None:
        self.topic = RESULTS.name(settings.topic_prefix)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_wait_ms, auto_offset_reset="latest", **_security(settings),
        )
        self._pending: dict[str, ResultRecord] = {}
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._reader: Optional[asyncio.Task] = None
        self._error: Optional[BaseException] = None

    async def start(self, timeout_s: float = 10.0) -> None:
        await self._consumer.start()
        # A topic created a moment ago reaches each Kafka broker's metadata a little later (Tansu has one
        # broker, so there it is at once): refresh until it shows, for a while.
        from streams.broker import partitions_of

        deadline = time.monotonic() + timeout_s
        while True:
            partitions = (await partitions_of(self._consumer, [self.topic]))[self.topic]
            if partitions:
                break
            if time.monotonic() > deadline:
                await self._consumer.stop()
                raise ConnectionError(f"topic {self.topic} does not exist on the broker")
            await asyncio.sleep(0.1)
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve the lazy seek now, before the caller publishes anything
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read(), name="gapstream-result-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        await self._consumer.stop()

    async def _read(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=1000)
                for messages in batches.values():
                    for message in messages:
                        result = _parse_result(message.value)
                        if result is not None:
                            self._deliver(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the consumer failed: every waiter hears it rather than timing out
            self._error = exc
            for futures in self._waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)

    def _deliver(self, result: ResultRecord) -> None:
        futures = [f for f in self._waiters.pop(result.request_id, []) if not f.done()]
        if not futures:
            self._pending.setdefault(result.request_id, result)
        for future in futures:
            future.set_result(result)

    async def wait(self, request_id: str, timeout_s: float) -> ResultRecord:
        if request_id in self._pending:
            return self._pending.pop(request_id)
        if self._error is not None:
            raise self._error
        if self._reader is None:
            raise RuntimeError("ResultWatcher.wait() before start()")
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise ResultTimeout(f"no result for {request_id} within {timeout_s:.0f} s") from None
        finally:
            waiting = self._waiters.get(request_id)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiters[request_id]


def _parse_result(value: Optional[bytes]) -> Optional[ResultRecord]:
    if not value:
        return None
    try:
        return ResultRecord.model_validate(json.loads(value))
    except ValueError:
        return None  # someone else's garbage on the results topic is not ours to fail on


async def submit_and_wait(
    bootstrap: str, settings: Settings, request: ImageRequest, timeout_s: Optional[float]
) -> Optional[ResultRecord]:
    """Publish one request; with a timeout, wait for its result.

    The topics are created first if missing, so a request sent before the workers' first start is not lost.
    """
    return await publish_and_wait(bootstrap, settings, REQUESTS.name(settings.topic_prefix), request.request_id,
                                  request.model_dump_json(exclude_none=True).encode(), timeout_s)


async def publish_and_wait(bootstrap: str, settings: Settings, topic: str, request_id: str, value: bytes,
                           timeout_s: Optional[float]) -> Optional[ResultRecord]:
    """Publish one message keyed by `request_id` (a request, an answer); with a timeout, wait for that request's
    next result. The watcher starts before the send, so a result that comes back at once is not missed."""
    settings = await ensure_topics(bootstrap, settings)
    watcher: Optional[ResultWatcher] = None
    if timeout_s is not None:
        watcher = ResultWatcher(bootstrap, settings)
        await watcher.start()
    try:
        producer = new_producer(bootstrap, settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=request_id.encode(), value=value)
        finally:
            await producer.stop()
        if watcher is None:
            return None
        return await watcher.wait(request_id, timeout_s)  # type: ignore[arg-type]
    finally:
        if watcher is not None:
            await watcher.stop()


async def wait_for_broker(bootstrap: str, timeout_s: float = 15.0) -> None:
    """Until one of the bootstrap servers accepts a connection."""
    from streams.broker import bootstrap_servers

    servers = bootstrap_servers(bootstrap)
    deadline = time.monotonic() + timeout_s
    while True:
        for host, port in servers:
            try:
                _, writer = await asyncio.open_connection(host, int(port))
                writer.close()
                return
            except (OSError, ValueError):
                pass
        if time.monotonic() > deadline:
            raise ConnectionError(f"cannot reach the Kafka broker at {bootstrap}")
        await asyncio.sleep(0.1)
