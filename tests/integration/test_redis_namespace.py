"""Two deployments on one Redis and one broker: each gets its own result for the same request id.

Before one namespace per deployment, dedupe marks and result claims were `gapstream:…` whatever the app id, so the
second deployment took the request as already done and never answered (issue 14).
"""

import asyncio

from schemas.records import ImageRequest
from streams.client import publish_request
from tests.integration.kafka_tools import isolated_settings, running_pipeline


async def test_two_deployments_answer_the_same_request_id_and_keep_to_their_own_keys(broker, redis_url, client,
                                                                                      tmp_path, unique):
    request_id, user = f"shared-{unique}", f"u-{unique}"
    first = isolated_settings(tmp_path / "dep1", f"dep1x{unique}")
    second = isolated_settings(tmp_path / "dep2", f"dep2x{unique}")
    assert first.redis_namespace != second.redis_namespace

    async def one(settings):
        async with running_pipeline(settings, broker.bootstrap, redis_url) as (watcher, producer):
            await publish_request(producer, settings, ImageRequest(request_id=request_id, user_id=user,
                                                                   prompt="a lighthouse at dusk", max_rounds=1))
            return await watcher.wait(request_id, timeout_s=120)

    results = await asyncio.gather(one(first), one(second))
    assert [r.status for r in results] == ["completed", "completed"], [r.error for r in results]

    keys = [key.decode() async for key in client.scan_iter(match=f"*{unique}*")]
    mine = {settings.redis_namespace: [k for k in keys if k.startswith(settings.redis_namespace)]
            for settings in (first, second)}
    assert all(mine.values()), keys  # each wrote its own marks, claims and memory
    assert sorted(keys) == sorted(mine[first.redis_namespace] + mine[second.redis_namespace]), keys
    for settings in (first, second):
        assert any(f"{settings.redis_namespace}claim:" in k for k in mine[settings.redis_namespace])
        assert any(f"{settings.redis_namespace}done:" in k for k in mine[settings.redis_namespace])
