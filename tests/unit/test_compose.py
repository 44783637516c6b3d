"""docker-compose.yml cannot run here (no Docker engine), so check that its structure is what users rely on."""

from pathlib import Path

import yaml

from streams.backends import STAGES

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())


def test_stack_has_kafka_kraft_redis_and_gapstream_services():
    services = COMPOSE["services"]
    assert {"kafka", "redis", "stages", "generator-gpu"} <= set(services)
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert "zookeeper" not in services


def test_every_stage_runs_somewhere_and_the_gpu_generator_is_a_profile():
    services = COMPOSE["services"]
    covered = set()
    for service in services.values():
        command = service.get("command") or []
        if "--stages" in command:
            covered |= set(command[command.index("--stages") + 1].split(","))
    assert covered == set(STAGES)
    gpu = services["generator-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["environment"]["GAPSTREAM_DEVICE"] == "cuda"


def test_gapstream_services_are_wired_to_kafka_and_redis():
    for name in ("stages", "generator-cpu", "generator-gpu"):
        service = COMPOSE["services"][name]
        env = service["environment"]
        assert env["GAPSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["GAPSTREAM_REDIS_URL"].startswith("redis://redis:")
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert any(volume.endswith(":/data/images") for volume in service["volumes"])
