"""One stream processor per stage: decode, deduplicate, run the stage, send, and turn every failure into data.

Faust acks a message even when an agent raises, and then restarts the agent; so nothing here may raise out of
`StageProcessor.process`. A message that cannot be processed becomes a dead letter with its reason and payload,
and when it names a request, that request gets a `failed` result so nobody waits on it forever.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Sequence

from pydantic import BaseModel, ValidationError

from agents.publisher import failed_result
from infra import metrics
from infra.redis_errors import is_outage
from infra.result_claims import ResultClaims, ResultLog, phase_of, publish_once
from infra.settings import Settings
from schemas.records import DeadLetter, StageTiming
from schemas.topics import DEAD_LETTERS, RESULTS, TopicSpec

log = logging.getLogger("gapstream.stages")

MAX_DEAD_LETTER_PAYLOAD = 64 * 1024
RETRY_DELAYS_S = (0.2, 1.0, 3.0)
OUTAGE_RETRY_DELAY_S = 2.0  # after the schedule, an outage (Redis restarting) is retried until stage_retry_s

Outputs = Sequence[tuple[TopicSpec, BaseModel]]
Handler = Callable[[Any], Awaitable[Optional[Outputs]]]
Sender = Callable[[TopicSpec, str, bytes], Awaitable[None]]


def is_retriable(exc: BaseException) -> bool:
    """Read the error's own `retriable` flag (aiokafka, our adapters) before falling back to its type."""
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    try:
        import redis.exceptions as redis_errors
    except ImportError:  # pragma: no cover - redis is a core dependency
        return False
    return isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError))


def describe_validation_error(exc: ValidationError, limit: int = 6) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "message"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json(exclude_none=False).encode("utf-8")


@dataclass(frozen=True)
class Delivery:
    """Where a message came from, for dead letters."""

    topic: str
    partition: Optional[int]
    offset: Optional[int]
    key: Optional[bytes]
    value: bytes
    timestamp: Optional[float] = None  # broker timestamp, seconds since the epoch (queue-wait metrics)


class StageProcessor:
    """Runs one stage's handler over the messages of one input topic."""

    def __init__(
        self,
        stage: str,
        source: TopicSpec,
        handler: Handler,
        send: Sender,
        settings: Settings,
        dedupe: Any,
        claims: Optional[ResultClaims] = None,
        results_log: Optional[ResultLog] = None,
    ) -> None:
        self.stage = stage
        self.source = source
        self.handler = handler
        self.send = send
        self.settings = settings
        self.dedupe = dedupe
        self.claims = claims
        self.results_log = results_log

    async def process(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        metrics.STAGE_IN_FLIGHT.labels(self.stage).inc()
        try:
            outcome = await self._process(delivery, started)
        except Exception as exc:  # the last line of defence: an error here must not kill the agent
            log.exception("stage %s failed to handle a failure", self.stage)
            outcome = "internal-error"
            metrics.STAGE_ERRORS.labels(self.stage, type(exc).__name__).inc()
            try:  # the message is acked anyway: keep it as a dead letter rather than lose it silently
                await self._dead_letter(delivery, exc, f"internal error: {type(exc).__name__}: {exc}", None)
            except Exception:
                log.exception("stage %s could not dead-letter a message", self.stage)
        finally:
            metrics.STAGE_IN_FLIGHT.labels(self.stage).dec()
        metrics.STAGE_EVENTS.labels(self.stage, outcome).inc()
        metrics.STAGE_SECONDS.labels(self.stage).observe(time.perf_counter() - started)

    async def _process(self, delivery: Delivery, started: float) -> str:
        decoded = await self.decode(delivery)
        if isinstance(decoded, str):
            return decoded
        record, payload = decoded
        if await self.seen(record):
            return "duplicate"
        try:
            outputs = await self.with_retries(lambda: self.handler(record))
            if outputs is None:
                return "skipped"
            await self.emit(record, outputs, started)
        except Exception as exc:  # a stage error is data: dead letter + failed result
            return await self.fail(delivery, exc, payload)
        await self.mark_done(record)
        return "ok"

    # The steps of `_process`, public so that a consumer handling several messages at once (the micro-batching
    # generator, streams/generator_worker.py) treats each message exactly as this one does.

    async def decode(self, delivery: Delivery) -> "tuple[Any, dict] | str":
        """(record, payload), or "dead-letter" after sending the message there with the reason."""
        try:
            # UTF-8 explicitly: json.loads(bytes) would guess UTF-16/32 from the first bytes and report nonsense.
            payload = json.loads(delivery.value.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            await self._dead_letter(delivery, exc, f"not JSON: {exc}", None)
            return "dead-letter"
        if not isinstance(payload, dict):
            error = ValueError(f"expected a JSON object, got {type(payload).__name__}")
            await self._dead_letter(delivery, error, str(error), None)
            return "dead-letter"
        try:
            record = self.source.record.model_validate(payload)
        except ValidationError as exc:
            reason = f"invalid {self.source.suffix} record: {describe_validation_error(exc)}"
            await self._dead_letter(delivery, exc, reason, payload)
            return "dead-letter"
        return record, payload

    def dedupe_key(self, record: Any) -> str:
        return f"{self.stage}:{self.source.suffix}:{record.request_id}:{getattr(record, 'round', 0)}"

    async def seen(self, record: Any) -> bool:
        return await self._seen(self.dedupe_key(record))

    async def mark_done(self, record: Any) -> None:
        await self._mark(self.dedupe_key(record))

    async def fail(self, delivery: Delivery, exc: BaseException, payload: Optional[dict]) -> str:
        """Dead letter (and failed result) for a stage error; returns the outcome label."""
        retriable = is_retriable(exc)
        reason = f"{type(exc).__name__}: {exc}" + (" (retries exhausted)" if retriable else "")
        await self._dead_letter(delivery, exc, reason, payload, retriable=retriable)
        return "dead-letter"

    async def emit(self, record: Any, outputs: Outputs, started: float) -> None:
        """Send a stage's outputs, timed from `started` (a `time.perf_counter()` value)."""
        seconds = time.perf_counter() - started
        # Records accumulate the calls of every stage; only the ones this stage added are its to count.
        calls_before = len(getattr(record, "llm_calls", None) or [])
        for topic, out in outputs:
            metrics.record_llm_calls((getattr(out, "llm_calls", None) or [])[calls_before:])
            timings = getattr(out, "timings", None)
            if isinstance(timings, list):
                timing = StageTiming(stage=self.stage, round=getattr(record, "round", 0), seconds=seconds)
                out = out.model_copy(update={"timings": [*timings, timing]})
            if topic is RESULTS and self.claims is not None:
                # Claimed around the send, so a crash between the two neither loses the result nor repeats it.
                await self.with_retries(lambda out=out: self._publish_claimed(out))
            else:
                await self.send(topic, out.request_id, encode(out))  # type: ignore[attr-defined]

    async def _publish_claimed(self, out: Any) -> bool:
        phase = phase_of(getattr(out, "status", ""))
        assert self.claims is not None

        async def send() -> None:
            await self.send(RESULTS, out.request_id, encode(out))

        return await publish_once(self.claims, out.request_id, send, phase, results=self.results_log)

    async def with_retries(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`await call()`, again after a pause while it fails with a retriable error (bounded)."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                if attempt < len(RETRY_DELAYS_S):
                    delay = RETRY_DELAYS_S[attempt]
                elif is_outage(exc) and time.monotonic() - started < self.settings.stage_retry_s:
                    # Not the message's fault: hold it (its offset stays uncommitted) until the dependency is back.
                    delay = OUTAGE_RETRY_DELAY_S
                else:
                    raise
                attempt += 1
                log.warning("stage %s: retriable %s (attempt %d), retrying in %.1fs",
                            self.stage, type(exc).__name__, attempt, delay)
                await asyncio.sleep(delay)

    async def _seen(self, key: str) -> bool:
        try:
            return await self.dedupe.seen(key)
        except Exception as exc:  # without Redis we cannot dedupe; processing twice beats losing the message
            log.warning("dedupe check unavailable (%s); processing anyway", type(exc).__name__)
            return False

    async def _mark(self, key: str) -> None:
        try:
            await self.dedupe.mark(key, self.settings.dedupe_ttl_s)
        except Exception as exc:
            log.warning("dedupe mark unavailable (%s)", type(exc).__name__)

    async def _dead_letter(
        self,
        delivery: Delivery,
        exc: BaseException,
        reason: str,
        payload: Optional[dict],
        retriable: bool = False,
    ) -> None:
        metrics.STAGE_ERRORS.labels(self.stage, type(exc).__name__).inc()
        metrics.DEAD_LETTERS.labels(self.stage).inc()
        body, encoding, truncated = _payload_text(delivery.value)
        key = delivery.key.decode("utf-8", "replace") if delivery.key else None
        request_id = payload.get("request_id") if payload else None
        letter = DeadLetter(
            stage=self.stage,
            error_class=type(exc).__name__,
            error=reason[:4000],
            retriable=retriable,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            key=key,
            request_id=request_id if isinstance(request_id, str) else None,
            payload=body,
            payload_encoding=encoding,
            payload_truncated=truncated,
        )
        await self.send(DEAD_LETTERS, key or "", encode(letter))
        log.warning("stage %s: dead letter from %s[%s]@%s: %s", self.stage, delivery.topic,
                    delivery.partition, delivery.offset, reason[:300])
        if payload is None:
            return
        result = failed_result(payload, self.stage, reason[:1000])
        if result is not None and await self.publish_result(result):
            metrics.RESULTS.labels("failed").inc()

    async def publish_result(self, result: Any, phase: str = "final") -> bool:
        """Send a result unless this request's result of that phase is out already (see infra.result_claims)."""

        async def send() -> None:
            await self.send(RESULTS, result.request_id, encode(result))

        if self.claims is None:
            try:
                claimed = await self.dedupe.claim(f"result:{result.request_id}", self.settings.dedupe_ttl_s)
            except Exception:
                claimed = True
            if claimed:
                await send()
            return claimed
        try:
            return await publish_once(self.claims, result.request_id, send, phase, results=self.results_log)
        except Exception as exc:
            # Only failures reach here (dead letters); a client told twice that its request failed is better off
            # than one never told.
            log.warning("result claim unavailable (%s); publishing the failed result anyway", type(exc).__name__)
            await send()
            return True


def _payload_text(value: bytes) -> tuple[str, str, bool]:
    truncated = len(value) > MAX_DEAD_LETTER_PAYLOAD
    value = value[:MAX_DEAD_LETTER_PAYLOAD]
    try:
        return value.decode("utf-8"), "utf-8", truncated
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64", truncated
