"""The web page in docker-compose.yml: wired to the same Kafka, Redis and images as the workers, and never on a
non-loopback address without its token."""

from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]


def test_ui_service_shares_the_stack_and_needs_a_token():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ui = services["ui"]
    assert ui["command"][0] == "ui" and "0.0.0.0" in ui["command"]
    env = ui["environment"]
    assert env["GAPSTREAM_KAFKA_BOOTSTRAP"] == services["stages"]["environment"]["GAPSTREAM_KAFKA_BOOTSTRAP"]
    assert env["GAPSTREAM_REDIS_URL"] == services["stages"]["environment"]["GAPSTREAM_REDIS_URL"]
    assert "GAPSTREAM_UI_TOKEN" in env
    assert "images:/data/images" in ui["volumes"]
    assert ui["build"]["args"]["EXTRAS"] == "ui"
    assert "COPY ui ui" in (ROOT / "Dockerfile").read_text()
