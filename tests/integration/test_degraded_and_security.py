"""Degraded modes and security basics with real servers: a Redis of the test's own that goes away and comes back,
a password-protected Redis, a worker process's listening sockets, and what reaches the logs at INFO."""

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from agents.memory import items_from_user_text
from infra.redis_memory import RedisMemoryStore
from schemas.records import ImageRequest
from streams.client import publish_request
from streams.local import free_port
from tests.servers import RestartableRedis
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.kafka_tools import isolated_settings, running_pipeline



async def test_redis_outage_degrades_planning_and_the_worker_recovers_by_itself(broker, tmp_path, unique):
    store_server = RestartableRedis(tmp_path / "redis").start()
    user = f"u-{unique}"
    settings = isolated_settings(tmp_path, "dg")
    memory = RedisMemoryStore.from_url(store_server.url, prefix=settings.redis_namespace)  # the deployment's
    await memory.add(user, items_from_user_text("I like watercolor"))
    await memory.aclose()
    try:
        async with running_pipeline(settings, broker.bootstrap, store_server.url) as (watcher, producer):
            store_server.stop()
            during = ImageRequest(request_id=f"down-{unique}", user_id=user, prompt="a fox in my usual style",
                                  max_rounds=1)
            await publish_request(producer, settings, during)
            await asyncio.sleep(4.0)  # the planner runs without memory; the publisher waits for its claim
            store_server.start()
            result = await watcher.wait(during.request_id, timeout_s=90)
            assert result.status == "completed", result.error
            assert any("memory unavailable" in d.detail for d in result.degraded), result.degraded
            assert "watercolor" not in result.prompt.lower()

            after = ImageRequest(request_id=f"up-{unique}", user_id=user, prompt="a fox in my usual style",
                                 max_rounds=1)
            await publish_request(producer, settings, after)
            result = await watcher.wait(after.request_id, timeout_s=90)
            assert result.status == "completed", result.error
            assert not any("memory unavailable" in d.detail for d in result.degraded), result.degraded
            assert "watercolor" in result.prompt.lower()  # memory is back without a restart
    finally:
        store_server.stop()


async def test_password_redis_works_and_secrets_and_prompts_stay_out_of_info_logs(broker, tmp_path, unique,
                                                                                   caplog):
    password = f"redis-pw-{unique}"
    api_key = f"sk-SECRET-{unique}"
    prompt = f"a quokka named Zorblat{unique} at the beach"
    caplog.set_level(logging.INFO)
    with RestartableRedis(tmp_path / "redis", password=password) as server:
        bad = RedisMemoryStore.from_url(server.url.replace(password, "wrong"))
        import redis.exceptions

        with pytest.raises(redis.exceptions.AuthenticationError):
            await bad.items("eve")
        await bad.aclose()

        async with FakeOpenAI(require_api_key=api_key) as llm:
            llm.default = {"gaps": [], "checklist": []}
            settings = isolated_settings(tmp_path, "dg", OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY=api_key,
                                 GAPSTREAM_LLM_MODEL="fake-llm", GAPSTREAM_LLM_RETRIES="0")
            async with running_pipeline(settings, broker.bootstrap, server.url) as (watcher, producer):
                request = ImageRequest(request_id=f"pw-{unique}", user_id=f"u-{unique}", prompt=prompt,
                                       max_rounds=1)
                await publish_request(producer, settings, request)
                result = await watcher.wait(request.request_id, timeout_s=90)
            assert result.status == "completed", result.error
            assert llm.requests and all(r.headers.get("authorization") == f"Bearer {api_key}" for r in llm.requests)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "nothing was logged at INFO: the check would prove nothing"
    for secret in (password, api_key, f"Zorblat{unique}"):
        assert secret not in logged
    assert password not in repr(settings) and api_key not in repr(settings)


def _cmd(*args):
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "cli", *args]


def test_a_worker_listens_only_on_loopback(broker, redis_url, tmp_path, unique):
    port = free_port()
    env = {**os.environ, "GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
           "GAPSTREAM_REDIS_URL": redis_url, "GAPSTREAM_TOPIC_PREFIX": f"lb{unique}.",
           "GAPSTREAM_APP_ID": f"lb-{unique}", "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4"}
    env.pop("GAPSTREAM_METRICS_HOST", None)
    proc = subprocess.Popen(_cmd("worker", "--stages", "planner,publisher,watchdog", "--metrics-port", str(port)),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        listening = []
        while time.monotonic() < deadline:
            listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            if any(addr.port == port for addr in listening):
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(2.0)  # let the stages finish starting (Faust would open its web port now)
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert any(addr.port == port for addr in listening)
        assert all(addr.ip == "127.0.0.1" for addr in listening), listening
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
