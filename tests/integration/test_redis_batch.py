"""Commands queued in one event-loop turn share one Redis round trip, and each caller still gets its own reply."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from infra.redis_batch import CoalescedCommands
from infra.redis_memory import RedisDedupe
from streams.local import free_port


class CountingConnections:
    """Counts what goes over the wire: one packed write per round trip, pipelined or not."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.round_trips = 0
        connection_class = client.connection_pool.connection_class
        original = connection_class.send_packed_command
        counter = self

        async def send_packed_command(conn, command, check_health=True):  # type: ignore[no-untyped-def]
            counter.round_trips += 1
            return await original(conn, command, check_health)

        self._restore = (connection_class, original)
        connection_class.send_packed_command = send_packed_command

    def restore(self) -> None:
        connection_class, original = self._restore
        connection_class.send_packed_command = original


@pytest.fixture
def counting(client):
    counter = CountingConnections(client)
    yield counter
    counter.restore()


async def test_concurrent_dedupe_checks_and_marks_share_round_trips(client, prefix, counting):
    dedupe = RedisDedupe(client, prefix=prefix)
    await dedupe.mark("warm:0", ttl_s=60)  # the connection handshake is not what is counted
    counting.round_trips = 0
    await asyncio.gather(*(dedupe.mark(f"req-{i}:plan:0", ttl_s=60) for i in range(0, 20, 2)))
    seen = await asyncio.gather(*(dedupe.seen(f"req-{i}:plan:0") for i in range(20)))
    assert seen == [i % 2 == 0 for i in range(20)]  # each caller got its own key's answer
    assert counting.round_trips == 2  # 10 marks in one pipeline, 20 checks in another
    assert 0 < await client.ttl(f"{prefix}done:req-0:plan:0") <= 60


async def test_a_lone_command_goes_out_directly_and_at_once(client, prefix, counting):
    commands = CoalescedCommands(client)
    await commands.call("set", f"{prefix}lone", b"1", ex=60)
    counting.round_trips = 0
    assert await commands.call("get", f"{prefix}lone") == b"1"
    assert counting.round_trips == 1


async def test_a_failing_command_fails_only_its_own_caller(client, prefix):
    commands = CoalescedCommands(client)
    await client.set(f"{prefix}text", b"not a number", ex=60)
    good, bad = await asyncio.gather(commands.call("set", f"{prefix}ok", b"1", ex=60),
                                     commands.call("incr", f"{prefix}text"), return_exceptions=True)
    assert good is True
    assert isinstance(bad, redis.exceptions.ResponseError)
    assert await client.get(f"{prefix}ok") == b"1"


async def test_a_cancelled_caller_does_not_break_the_others(client, prefix):
    commands = CoalescedCommands(client)
    doomed = asyncio.ensure_future(commands.call("set", f"{prefix}doomed", b"1", ex=60))
    kept = asyncio.ensure_future(commands.call("set", f"{prefix}kept", b"1", ex=60))
    doomed.cancel()
    assert await kept is True
    assert await client.get(f"{prefix}kept") == b"1"


async def test_a_dead_server_fails_every_queued_caller_with_a_retriable_error():
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        dedupe = RedisDedupe(client, prefix="dead:")
        outcomes = await asyncio.gather(*(dedupe.seen(f"k{i}") for i in range(3)), return_exceptions=True)
        assert all(isinstance(o, redis.exceptions.ConnectionError) for o in outcomes), outcomes
    finally:
        await client.aclose()
