"""Integration tests: the real broker and Redis of tests/conftest.py, and clients that look at what the stages wrote."""

import uuid

import pytest
import redis.asyncio as aioredis


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def client(redis_url):
    """An asyncio client of the real Redis, for tests that look at the keys a store wrote."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(client):
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"gapstream-test-{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
