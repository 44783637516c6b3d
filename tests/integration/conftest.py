"""Integration fixtures: a real Tansu broker started here, and the real Redis on 127.0.0.1:6379."""

import uuid

import pytest
import redis
import redis.asyncio as aioredis

from streams.local import EmbeddedBroker

REDIS_URL = "redis://127.0.0.1:6379/0"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu")) as running:
        yield running


@pytest.fixture(scope="session")
def redis_url():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"integration tests need Redis on 127.0.0.1:6379 ({exc}); .ci/run starts it")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


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
