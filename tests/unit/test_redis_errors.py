"""Outage classification (infra/redis_errors.py): a Redis or broker outage is waited out, a bad message is not."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions as redis_errors
from aiokafka import errors as kafka_errors

from infra.redis_errors import (
    OutageTranslating,
    StoreUnavailable,
    is_broker_outage,
    is_outage,
    is_redis_outage,
)
from infra.result_claims import ClaimBusy


@pytest.mark.parametrize("exc", [
    redis_errors.ConnectionError("Connection refused"),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    redis_errors.ResponseError("LOADING Redis is loading the dataset in memory"),
])
def test_a_redis_that_is_down_or_loading_is_an_outage(exc):
    assert is_redis_outage(exc) and is_outage(exc)


@pytest.mark.parametrize("exc", [
    redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    redis_errors.DataError("Invalid input of type: 'dict'"),
    ValueError("bad message"),
    KeyError("request_id"),
])
def test_a_bad_command_or_message_is_not_an_outage(exc):
    assert not is_redis_outage(exc) and not is_outage(exc)


@pytest.mark.parametrize("exc", [
    kafka_errors.KafkaConnectionError("no broker"),
    kafka_errors.KafkaTimeoutError(),
    kafka_errors.NodeNotReadyError(),
    kafka_errors.RequestTimedOutError(),
])
def test_a_broker_that_cannot_be_reached_is_an_outage(exc):
    assert is_broker_outage(exc) and is_outage(exc)


def test_a_broker_error_that_is_not_about_reachability_is_not_an_outage():
    assert not is_broker_outage(kafka_errors.UnknownTopicOrPartitionError()) and not is_broker_outage(ValueError())


def test_a_result_claim_still_held_by_another_worker_is_waited_out():
    assert is_outage(ClaimBusy("r-1 is claimed")) and not is_redis_outage(ClaimBusy("r-1"))


def test_store_unavailable_is_a_builtin_connection_error_that_may_be_retried():
    assert issubclass(StoreUnavailable, ConnectionError) and StoreUnavailable.retriable is True


class FakeStore:
    """A Redis-backed port: async methods that fail the way redis-py does, a sync method and a plain attribute."""

    name = "memory"

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[tuple] = []

    async def get(self, user_id: str, *, limit: int = 10) -> list[str]:
        self.calls.append((user_id, limit))
        if self.error is not None:
            raise self.error
        return [f"{user_id}:{limit}"]

    def key(self, user_id: str) -> str:
        return f"mem:{user_id}"


def test_calls_and_answers_pass_through_when_redis_is_up():
    inner = FakeStore()
    store = OutageTranslating(inner)
    assert asyncio.run(store.get("alice", limit=3)) == ["alice:3"] and inner.calls == [("alice", 3)]


@pytest.mark.parametrize("error", [redis_errors.ConnectionError("Connection refused"),
                                   redis_errors.TimeoutError("timed out"),
                                   redis_errors.BusyLoadingError("loading")])
def test_a_redis_outage_surfaces_as_store_unavailable(error):
    store = OutageTranslating(FakeStore(error))
    with pytest.raises(StoreUnavailable) as raised:
        asyncio.run(store.get("alice"))
    assert type(error).__name__ in str(raised.value)
    assert isinstance(raised.value, ConnectionError)  # what agents/ catches, without importing redis
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no redis traceback leaks


@pytest.mark.parametrize("error", [redis_errors.ResponseError("WRONGTYPE"), ValueError("bad"), KeyError("k")])
def test_other_failures_pass_through_unchanged(error):
    store = OutageTranslating(FakeStore(error))
    with pytest.raises(type(error)) as raised:
        asyncio.run(store.get("alice"))
    assert raised.value is error


def test_attributes_that_are_not_coroutines_pass_through_as_they_are():
    inner = FakeStore(redis_errors.ConnectionError("down"))
    store = OutageTranslating(inner)
    assert store.name == "memory" and store.key("alice") == "mem:alice"
    assert store.key.__func__ is FakeStore.key  # the bound method itself, not a wrapper


def test_a_missing_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError):
        OutageTranslating(FakeStore()).put_vectors  # noqa: B018 - optional ports are probed with getattr
    assert getattr(OutageTranslating(FakeStore()), "put_vectors", None) is None


def test_an_error_of_another_kind_that_mentions_loading_is_not_an_outage():
    assert not is_redis_outage(ValueError("LOADING weights failed: bad file"))
