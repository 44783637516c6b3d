"""`gapstream dlq list|show|replay` as an operator runs it, against dead letters a real worker wrote."""

import asyncio
import base64
import json
import time

import pytest

from infra.settings import Settings
from cli.main import main
from streams.pipeline import Worker
from tests.integration.kafka_tools import produce_raw, read_topic


def _cli(argv, env, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


async def _letters(bootstrap, topic, count, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        letters = await read_topic(bootstrap, topic)
        if len(letters) >= count or time.monotonic() > deadline:
            return letters
        await asyncio.sleep(0.3)


async def test_list_show_and_replay_dead_letters(broker, redis_url, tmp_path, unique, monkeypatch, capsys):
    env = {
        "GAPSTREAM_HOME": str(tmp_path),
        "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "GAPSTREAM_REDIS_URL": redis_url,
        "GAPSTREAM_TOPIC_PREFIX": f"dl{unique}.",
        "GAPSTREAM_APP_ID": f"dl-{unique}",
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
    }
    settings = Settings.from_env(env)
    binary = b"\x00\xffnot json\xfe"
    async with Worker(settings, broker.bootstrap, redis_url, ("planner",)) as worker:
        await worker.wait_assigned(60)
        await produce_raw(broker.bootstrap, settings.topic("requests"), b"k-json", b"{broken")
        await produce_raw(broker.bootstrap, settings.topic("requests"), b"k-bin", binary)
        letters = await _letters(broker.bootstrap, settings.topic("dead-letters"), 2)
        assert len(letters) == 2

        code, out, err = await asyncio.to_thread(_cli, ["dlq", "list"], env, monkeypatch, capsys)
        assert code == 0, err
        lines = out.strip().splitlines()
        assert len(lines) == 2 and all("planner" in line and "DecodeError" in line for line in lines)
        ids = [line.split()[0] for line in lines]

        code, out, err = await asyncio.to_thread(_cli, ["dlq", "list", "--json"], env, monkeypatch, capsys)
        records = [json.loads(line) for line in out.splitlines()]
        binary_id = next(r["id"] for r in records if r["key"] == "k-bin")
        assert {r["payload_encoding"] for r in records} == {"utf-8", "base64"}

        code, out, err = await asyncio.to_thread(_cli, ["dlq", "show", binary_id, "--json"], env, monkeypatch,
                                                 capsys)
        shown = json.loads(out)
        assert shown["topic"] == settings.topic("requests") and shown["offset"] is not None
        assert base64.b64decode(shown["payload"]) == binary

        code, out, err = await asyncio.to_thread(_cli, ["dlq", "replay", "--all", "--dry-run"], env, monkeypatch,
                                                 capsys)
        assert code == 0 and "would replay 2" in out
        assert len(await read_topic(broker.bootstrap, settings.topic("requests"))) == 2  # dry run sent nothing

        code, out, err = await asyncio.to_thread(_cli, ["dlq", "replay", binary_id], env, monkeypatch, capsys)
        assert code == 0 and "replayed 1" in out, err
        requests = await read_topic(broker.bootstrap, settings.topic("requests"))
        assert [r.get("_raw") for r in requests].count(binary) == 2  # the exact bytes, republished
        # The planner reads the replay again; still bad, so a third dead letter with the same key.
        letters = await _letters(broker.bootstrap, settings.topic("dead-letters"), 3)
        assert [lt["key"] for lt in letters].count("k-bin") == 2

        # The worker runs in this process and logs to the same stderr: the CLI's own message is the last line.
        code, out, err = await asyncio.to_thread(_cli, ["dlq", "show", "99:99"], env, monkeypatch, capsys)
        assert code != 0 and err.strip().splitlines()[-1].startswith("gapstream: no dead letter 99:99")
        code, out, err = await asyncio.to_thread(_cli, ["dlq", "show", "abc"], env, monkeypatch, capsys)
        last = err.strip().splitlines()[-1]
        assert code != 0 and last.startswith("gapstream: ") and "PARTITION:OFFSET" in last
        assert ids
