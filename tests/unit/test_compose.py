"""docker-compose.yml cannot run here (no Docker engine), so check that its structure is what users rely on."""

from pathlib import Path

import yaml

from streams.topology import STAGES, SUPPORT_STAGES

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())


KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")


def test_stack_has_kafka_kraft_redis_and_gapstream_services():
    services = COMPOSE["services"]
    assert {*KAFKA_NODES, "redis", "stages", "generator-gpu"} <= set(services)
    for node in KAFKA_NODES:
        assert "controller" in services[node]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert "zookeeper" not in services


def test_compose_runs_the_kafka_version_and_replication_the_tests_prove():
    """The same Kafka release as tests/kafka/pom.xml, and the replication settings of tests/kafka/cluster.py."""
    from tests.kafka.cluster import KAFKA_VERSION

    pom = (ROOT / "tests/kafka/pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
    envs = [COMPOSE["services"][node]["environment"] for node in KAFKA_NODES]
    ids = {env["KAFKA_NODE_ID"] for env in envs}
    assert ids == {1, 2, 3} and len({env["CLUSTER_ID"] for env in envs}) == 1
    for node, env in zip(KAFKA_NODES, envs):
        assert COMPOSE["services"][node]["image"] == f"apache/kafka:{KAFKA_VERSION}"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{node}:9092"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (3, 2)
        assert (env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == (3, 2)
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"


def test_the_tested_cluster_has_the_same_replication_settings(tmp_path, monkeypatch):
    from tests.kafka import cluster

    monkeypatch.setattr(cluster, "kafka_libs", lambda version=cluster.KAFKA_VERSION: tmp_path)
    config = dict(line.split("=", 1) for line in
                  cluster.KafkaCluster(tmp_path, nodes=3)._properties(cluster.KafkaNode(1, tmp_path, 1, 2)).splitlines())
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == ("3", "2")
    assert (config["offsets.topic.replication.factor"], config["transaction.state.log.min.isr"]) == ("3", "2")
    assert config["unclean.leader.election.enable"] == "false"


def test_every_stage_runs_somewhere_and_the_gpu_generator_is_a_profile():
    services = COMPOSE["services"]
    covered = set()
    for service in services.values():
        command = service.get("command") or []
        if "--stages" in command:
            covered |= set(command[command.index("--stages") + 1].split(","))
    assert covered == set(STAGES) | set(SUPPORT_STAGES)  # the watchdog too: without it a stuck request waits forever
    gpu = services["generator-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["environment"]["GAPSTREAM_DEVICE"] == "cuda"


def test_gapstream_services_are_wired_to_kafka_and_redis():
    for name in ("stages", "generator-cpu", "generator-gpu"):
        service = COMPOSE["services"][name]
        env = service["environment"]
        assert env["GAPSTREAM_KAFKA_BOOTSTRAP"] == ",".join(f"{node}:9092" for node in KAFKA_NODES)
        assert env["GAPSTREAM_REDIS_URL"].startswith("redis://redis:")
        assert all(service["depends_on"][node]["condition"] == "service_healthy" for node in KAFKA_NODES)
        assert any(volume.endswith(":/data/images") for volume in service["volumes"])


# -- issue 8: Prometheus and Grafana next to the stack ------------------------------------------------------------
import json  # noqa: E402
import re  # noqa: E402

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "infra/deploy/grafana/dashboards/gapstream.json"
# Metrics the generator's micro-batching defines (issue 5, on its own branch); the dashboard shows them once it
# lands. Remove a name here when infra/metrics.py defines it, so the check below covers it again.
def _defined_metric_names() -> set[str]:
    """Every series name the workers can export: family names with their type's suffixes."""
    from prometheus_client import REGISTRY

    import infra.metrics  # noqa: F401  (registers the families)
    import streams.lag  # noqa: F401

    names = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "summary": ("_sum", "_count")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_prometheus_and_grafana_are_wired_with_files_that_exist():
    services = COMPOSE["services"]
    assert {"prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    scrape = yaml.safe_load((ROOT / "infra/deploy/prometheus/prometheus.yml").read_text())
    targets = {(name, sd["port"]) for job in scrape["scrape_configs"] for sd in job["dns_sd_configs"]
               for name in sd["names"]}
    port = int(COMPOSE["x-gapstream-env"]["GAPSTREAM_METRICS_PORT"])
    for name, service in services.items():
        if "--stages" in (service.get("command") or []):
            assert (name, port) in targets, f"Prometheus does not scrape {name}"
    assert COMPOSE["x-gapstream-env"]["GAPSTREAM_METRICS_HOST"] == "0.0.0.0"
    datasource = yaml.safe_load(
        (ROOT / "infra/deploy/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (ROOT / "infra/deploy/grafana/provisioning/dashboards/gapstream.yml").read_text())["providers"][0]
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert provider["options"]["path"] in mounted


def test_the_cpu_and_gpu_generators_are_profiles():
    services = COMPOSE["services"]
    assert services["generator-cpu"]["profiles"] == ["cpu"]
    assert services["generator-gpu"]["profiles"] == ["gpu"]
    assert "profiles" not in services["stages"]


def test_dashboard_uses_its_datasource_and_only_metrics_the_code_defines():
    dashboard = json.loads(DASHBOARD.read_text())
    datasource_uid = yaml.safe_load(
        (ROOT / "infra/deploy/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]["uid"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == datasource_uid for p in panels)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("per second", "seconds", "lag", "errors", "rounds", "batch"):
        assert topic in titles, topic
    defined = _defined_metric_names()
    used = {name for expr in _dashboard_exprs() for name in re.findall(r"\bgapstream_[a-z0-9_]+", expr)}
    assert used, "the dashboard queries no gapstream metric"
    unknown = {name for name in used if name not in defined}
    assert not unknown, f"dashboard queries metrics no code defines: {sorted(unknown)}"
