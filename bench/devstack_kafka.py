"""Benchmark: what the dev stack's secured Kafka listeners (SASL_SSL, mutual TLS) cost its start.

The Kafka component alone, started on a fresh data directory (storage formatted, as in a new test
session) and stopped, --rounds times with the secured listeners and as many without, in turns, in
one run: seconds from start to healthy (metadata on PLAINTEXT), and to ready for secured clients
(the SCRAM users made through the admin API). `uptime`'s load is printed beside the figures.

    .venv/bin/python bench/devstack_kafka.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tailor.devstack import certs, paths, ports, procs
from tailor.devstack.artifacts import Toolbox
from tailor.devstack.components.base import StackContext
from tailor.devstack.components.kafka import Kafka


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_once(secure: bool) -> tuple[float, float]:
    """(seconds to healthy, seconds to ready for secured clients) of one fresh start."""
    root = Path(tempfile.mkdtemp(prefix="tailor-bench-kafka-"))
    try:
        context = StackContext(
            paths=paths.StackPaths(root), certs=certs.CertPaths(root / "certs"), tools=Toolbox()
        )
        certs.ensure(context.certs)
        kafka = Kafka(context)
        kafka.secure_listeners = secure
        context.ports = {key: ports.pick(None, context.ports.values()) for key in kafka.port_keys}
        started = time.perf_counter()
        kafka.data_dir.mkdir(parents=True, exist_ok=True)
        context.paths.logs.mkdir(parents=True, exist_ok=True)
        kafka.prepare()  # what Component.start does, split to time health and readiness apart
        procs.spawn(kafka.argv(), log=kafka.log, env=kafka.env(), cwd=kafka.data_dir).save(kafka.pid_file)
        kafka.wait_healthy()
        healthy = time.perf_counter() - started
        kafka.after_healthy()
        ready = time.perf_counter() - started
        kafka.stop()
        return healthy, ready
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    Toolbox().kafka_libs  # noqa: B018 - build or find the jars before timing anything
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for secure in (False, True) if round_ % 2 == 0 else (True, False):
            healthy, ready = start_once(secure)
            times[secure].append((healthy, ready))
            label = "secured" if secure else "plain  "
            print(f"round {round_ + 1} {label}: healthy {healthy:5.2f} s, ready {ready:5.2f} s  ({load()})")
    plain = statistics.median(r for _, r in times[False])
    secured = statistics.median(r for _, r in times[True])
    print(f"median ready: plain {plain:.2f} s, secured {secured:.2f} s, "
          f"difference {secured - plain:+.2f} s ({secured / plain:.2f}x)  ({load()})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
