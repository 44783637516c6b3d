"""Security for real: a Kafka node with a SASL_SSL listener (SCRAM-SHA-512, TLS from a CA made in the test).

The SCRAM user is created with Kafka's own `kafka-configs` tool, as an operator would. A worker and
`gapstream submit --wait` connect through the `GAPSTREAM_KAFKA_*` settings only and complete a request; a wrong
password is a one-line error that names the cause, quickly, from both; the password is in no log.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from streams.local import free_port
from tests.kafka.cluster import KafkaCluster
from tests.kafka.tls import make_ca_and_server_cert

USER = "gapstream-svc"


def _cmd(*args):
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "cli", *args]


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory):
    """One node: PLAINTEXT on loopback for the broker itself and the admin tool, SASL_SSL for gapstream."""
    root = tmp_path_factory.mktemp("kafka-sasl")
    ca, server_pem = make_ca_and_server_cert(root / "tls")
    password = f"pw-{os.urandom(6).hex()}"
    port = free_port()
    cluster = KafkaCluster(root, nodes=1, listeners={"SASL_SSL": port}, broker_config={
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(server_pem),
    })
    with cluster:
        cluster.tool("kafka.admin.ConfigCommand", "--bootstrap-server", cluster.bootstrap, "--alter",
                     "--add-config", f"SCRAM-SHA-512=[iterations=8192,password={password}]",
                     "--entity-type", "users", "--entity-name", USER)
        yield {"bootstrap": f"127.0.0.1:{port}", "ca": str(ca), "password": password}


def _env(secure, tmp_path, unique, redis_url, password):
    env = {
        **os.environ,
        "GAPSTREAM_HOME": str(tmp_path),
        "GAPSTREAM_KAFKA_BOOTSTRAP": secure["bootstrap"],
        "GAPSTREAM_REDIS_URL": redis_url,
        "GAPSTREAM_TOPIC_PREFIX": f"sec{unique}.",
        "GAPSTREAM_APP_ID": f"sec-{unique}",
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
        "GAPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "GAPSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "GAPSTREAM_KAFKA_SASL_USERNAME": USER,
        "GAPSTREAM_KAFKA_SASL_PASSWORD": password,
        "GAPSTREAM_KAFKA_SSL_CAFILE": secure["ca"],
        "GAPSTREAM_LOG_LEVEL": "INFO",
    }
    env.pop("GAPSTREAM_CORPUS_DIR", None)
    return env


def _one_line_auth_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode not in (0, None), proc.stderr
    assert len(lines) == 1 and lines[0].startswith("gapstream: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "authentication" in lines[0].lower(), lines[0]
    return lines[0]


@pytest.mark.timeout(300)
def test_worker_and_submit_complete_a_request_over_sasl_ssl(secure_kafka, redis_url, tmp_path, unique):
    env = _env(secure_kafka, tmp_path, unique, redis_url, secure_kafka["password"])
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(_cmd("worker"), env=env, stdout=log, stderr=log)
    try:
        done = subprocess.run(_cmd("submit", "a lighthouse at dusk", "--user", f"u-{unique}", "--wait", "--json",
                                   "--timeout", "180", "--no-progress"),
                              env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, (done.stderr, log_path.read_text()[-3000:])
        assert '"status":"completed"' in done.stdout.replace(" ", ""), done.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    logged = log_path.read_text()
    assert "INFO" in logged or "handled" in logged, "the worker logged nothing: the check below would prove nothing"
    for text in (logged, done.stdout, done.stderr):
        assert secure_kafka["password"] not in text


@pytest.mark.timeout(180)
def test_a_wrong_password_is_a_one_line_error_from_submit_and_worker(secure_kafka, redis_url, tmp_path, unique):
    wrong = f"wrong-{unique}"
    env = _env(secure_kafka, tmp_path, unique, redis_url, wrong)
    started = time.monotonic()
    submit = subprocess.run(_cmd("submit", "a cat", "--user", "eve", "--wait", "--timeout", "60"),
                            env=env, capture_output=True, text=True, timeout=90)
    submit_s = time.monotonic() - started
    line = _one_line_auth_error(submit)
    assert wrong not in line and submit_s < 45, (line, submit_s)

    started = time.monotonic()
    worker = subprocess.run(_cmd("worker", "--stages", "planner"), env=env, capture_output=True, text=True,
                            timeout=90)
    line = _one_line_auth_error(worker)
    assert wrong not in worker.stderr and time.monotonic() - started < 60
