"""Which failures mean "a dependency is down for now" (wait and retry) rather than "this message is bad".

A Redis restart must not turn good requests into dead letters: while Redis is unreachable the stage keeps retrying
(bounded by `GAPSTREAM_STAGE_RETRY_S`) instead of giving up after its short schedule.
"""

from __future__ import annotations

import inspect


def is_redis_outage(exc: BaseException) -> bool:
    try:
        import redis.exceptions as redis_errors
    except ImportError:  # pragma: no cover - redis is a core dependency
        return False
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
        return True
    # A server that is loading its data set or shutting down answers with these; both pass.
    # Only a Redis reply counts: a stage's own "LOADING weights failed" is the message's fault, not an outage.
    return isinstance(exc, redis_errors.BusyLoadingError) or (
        isinstance(exc, redis_errors.RedisError) and "LOADING" in str(exc)[:20])


def is_broker_outage(exc: BaseException) -> bool:
    try:
        from aiokafka import errors as kafka_errors
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError,
                            kafka_errors.NodeNotReadyError, kafka_errors.RequestTimedOutError))


def is_outage(exc: BaseException) -> bool:
    """A dependency outage, including a result claim still held by a worker that may have died."""
    from infra.result_claims import ClaimBusy

    return isinstance(exc, ClaimBusy) or is_redis_outage(exc) or is_broker_outage(exc)


class StoreUnavailable(ConnectionError):
    """A Redis-backed store cannot be reached right now; a builtin ConnectionError, so `agents/` (which must not
    import redis) can catch it as one and degrade."""

    retriable = True


class OutageTranslating:
    """Wraps a Redis-backed port (e.g. the memory store) so Redis outages surface as `StoreUnavailable`."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            try:
                return await attr(*args, **kwargs)
            except Exception as exc:
                if is_redis_outage(exc):
                    raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None
                raise

        return call
