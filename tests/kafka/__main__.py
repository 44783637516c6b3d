"""`python -m tests.kafka fetch`: put Kafka's jars in the cache (what .ci/run does before the tests).
`python -m tests.kafka start [--nodes 3] [--dir DIR]`: a cluster on loopback until Ctrl-C, for the benchmarks:
it prints `export GAPSTREAM_KAFKA_BOOTSTRAP=…` to paste into the shell that runs `gapstream bench …`."""

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.kafka.cluster import KAFKA_VERSION, KafkaCluster, KafkaUnavailable, kafka_libs


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.kafka")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch Kafka's jars with Maven (once; cached)")
    start = sub.add_parser("start", help="run a KRaft cluster on loopback until interrupted")
    start.add_argument("--nodes", type=int, default=3)
    start.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    try:
        if args.command == "fetch":
            started = time.monotonic()
            libs = kafka_libs()
            print(f"Kafka {KAFKA_VERSION}: {len(list(libs.glob('*.jar')))} jars in {libs} "
                  f"({time.monotonic() - started:.1f} s)")
            return
        root = args.dir or Path(tempfile.mkdtemp(prefix="gapstream-kafka-"))
        started = time.monotonic()
        with KafkaCluster(root, nodes=args.nodes) as cluster:
            print(f"Kafka {KAFKA_VERSION}: {args.nodes} node(s) ready in {time.monotonic() - started:.1f} s "
                  f"under {root}", file=sys.stderr)
            print(f"export GAPSTREAM_KAFKA_BOOTSTRAP={cluster.bootstrap}", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    except KafkaUnavailable as exc:
        sys.exit(f"kafka: {exc}")


if __name__ == "__main__":
    main()
