"""Benchmark: Tailor's image started as the chart's pods start it. Prints one table.

`tailor operator`, `tailor api` and `tailor worker`, each started --runs times in a container
(podman, host network, the chart's restricted settings: `scripts/image.sh run-flags`), timed from
`podman run` to:
  operator  its health endpoint answers 200 (the chart's liveness probe);
  api       /readyz answers 200 on its admin port: ruleset served and Redis answering (readiness
            probe; Kafka before 2026-12-07, see docs/content-api.md);
  worker    /metrics answers (its liveness probe); then its partitions are assigned (it consumes).
Beside each, in the same run, the same command from the checkout's .venv without a container:
what the container adds. And the image's size.

Needs the image (`make image`) and a stack in the environment (`eval "$(tailor dev env)"`); the
shop example is applied in a fresh namespace (deleted afterwards) and published by the operator.

    .venv/bin/python bench/image.py [--image ghcr.io/tailor-dev/tailor:0.1.0] [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from tailor.core.rules import versions
from tailor.devstack import ports

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
KUBECONFIG_IN_CONTAINER = "/etc/tailor/kubeconfig"
TIMEOUT = 90.0


def answers(url: str, expect: str | None = None) -> bool:
    """True when `url` answers 200 (and its body contains `expect`, if given)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200 and (expect is None or expect in response.read().decode())
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class Start:
    """One started process: when each readiness signal was first seen, seconds after the start."""

    process: subprocess.Popen[str]
    started: float
    lines: list[str] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)

    def watch_output(self, marks: dict[str, str]) -> None:
        """Read the output in a thread; note when a line first contains each mark's text."""

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                for name, text in marks.items():
                    if name not in self.seen and text in line:
                        self.seen[name] = time.perf_counter() - self.started

        threading.Thread(target=read, daemon=True).start()


@dataclass(frozen=True)
class Component:
    name: str
    args: Callable[[dict[str, int]], list[str]]
    env: Callable[[dict[str, int]], dict[str, str]]
    # signal name -> check, polled until true (HTTP), or text in the output (log marks)
    probes: dict[str, Callable[[dict[str, int]], bool]]
    marks: dict[str, str] = field(default_factory=dict)


def components(namespace: str, redis_url: str) -> list[Component]:
    stack = f"{namespace}/shop"
    return [
        Component(
            "operator",
            lambda p: [
                "operator",
                "--namespace",
                namespace,
                "--standalone",
                "--redis-url",
                redis_url,
                "--metrics-port",
                str(p["metrics"]),
                "--liveness",
                f"http://127.0.0.1:{p['http']}/healthz",
            ],
            lambda p: {},
            {"healthz 200": lambda p: answers(f"http://127.0.0.1:{p['http']}/healthz")},
        ),
        Component(
            "api",
            lambda p: [
                "api",
                "--stack",
                stack,
                "--host",
                "127.0.0.1",
                "--port",
                str(p["http"]),
                "--admin-port",
                str(p["metrics"]),
            ],
            lambda p: {"TAILOR_REDIS_URL": redis_url},
            {"readyz 200": lambda p: answers(f"http://127.0.0.1:{p['metrics']}/readyz")},
        ),
        Component(
            "worker",
            lambda p: ["worker", "--stack", stack],
            lambda p: {
                "TAILOR_REDIS_URL": redis_url,
                "TAILOR_WORKER_METRICS_HOST": "127.0.0.1",
                "TAILOR_WORKER_METRICS_PORT": str(p["metrics"]),
                # A fresh group each start: no waiting for the previous run's member to time out.
                "TAILOR_WORKER_GROUP_ID": f"bench-image-{uuid.uuid4().hex[:8]}",
            },
            {"metrics 200": lambda p: answers(f"http://127.0.0.1:{p['metrics']}/metrics")},
            {"partitions assigned": "tailor_worker.consumer: assigned"},
        ),
    ]


class Launcher:
    """Starts a component in a container (`podman run`) or from the .venv (`tailor`)."""

    def __init__(self, image: str | None, kubeconfig: Path, run_flags: list[str]) -> None:
        self.image = image
        self.kubeconfig = kubeconfig
        self.run_flags = run_flags

    @property
    def label(self) -> str:
        return "container" if self.image else ".venv"

    def start(self, component: Component, port_map: dict[str, int], name: str) -> Start:
        env = component.env(port_map)
        if self.image:
            argv = ["podman", "run", "--rm", "--name", name, "--network", "host", *self.run_flags,
                    "-v", f"{self.kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
                    "-e", f"KUBECONFIG={KUBECONFIG_IN_CONTAINER}"]  # fmt: skip
            for key, value in env.items():
                argv += ["-e", f"{key}={value}"]
            argv += [self.image, *component.args(port_map)]
            process_env = dict(os.environ)
        else:
            argv = [str(VENV_BIN / "tailor"), *component.args(port_map)]
            process_env = {**os.environ, **env, "KUBECONFIG": str(self.kubeconfig)}
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=process_env
        )
        start = Start(process, started)
        start.watch_output(component.marks)
        return start

    def stop(self, start: Start, name: str) -> None:
        if self.image:
            subprocess.run(["podman", "stop", "--time", "10", name], capture_output=True, check=False)
        else:
            start.process.terminate()
        try:
            start.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            start.process.kill()
            start.process.wait()


def time_start(launcher: Launcher, component: Component) -> dict[str, float]:
    """Start once; seconds until each signal; stopped afterwards."""
    port_map = {"http": ports.pick(None), "metrics": ports.pick(None)}
    name = f"bench-image-{component.name}-{uuid.uuid4().hex[:6]}"
    start = launcher.start(component, port_map, name)
    pending = dict(component.probes)
    try:
        while pending or any(mark not in start.seen for mark in component.marks):
            elapsed = time.perf_counter() - start.started
            if elapsed > TIMEOUT or start.process.poll() is not None:
                raise SystemExit(
                    f"{component.name} ({launcher.label}) not ready after {elapsed:.1f} s "
                    f"(exit {start.process.poll()}); output:\n{''.join(start.lines)[-3000:]}"
                )
            for signal_name, probe in list(pending.items()):
                if probe(port_map):
                    start.seen[signal_name] = time.perf_counter() - start.started
                    del pending[signal_name]
            time.sleep(0.02)
        return dict(start.seen)
    finally:
        launcher.stop(start, name)


@contextlib.contextmanager
def operator_running(launcher: Launcher, operator: Component) -> Iterator[Start]:
    """An operator for the shop's namespace, stopped on leaving."""
    port_map = {"http": ports.pick(None), "metrics": ports.pick(None)}
    start = launcher.start(operator, port_map, "bench-image-operator")
    try:
        yield start
    finally:
        launcher.stop(start, "bench-image-operator")


def publish(launcher: Launcher, operator: Component, client: redis.Redis, stack: str) -> None:
    """Run the operator until it published the stack's ruleset (also warms the caches)."""
    with operator_running(launcher, operator) as start:
        deadline = time.monotonic() + TIMEOUT
        while versions.current_version_sync(client, stack) == 0:
            if time.monotonic() > deadline or start.process.poll() is not None:
                raise SystemExit(
                    f"the operator published no ruleset for {stack}:\n{''.join(start.lines)[-3000:]}"
                )
            time.sleep(0.1)


def apply_shop(namespace: str, redis_url: str, kafka: str, kubeconfig: Path) -> None:
    kubectl = shutil.which("kubectl") or str(VENV_BIN / "kubectl")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(*args: str, stdin: str | None = None) -> None:
        subprocess.run([kubectl, *args], input=stdin, text=True, env=env, check=True, capture_output=True)

    run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    run("create", "namespace", namespace)
    documents: list[dict[str, Any]] = [
        doc for path in sorted((ROOT / "examples" / "shop").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text()) if doc
    ]  # fmt: skip
    for doc in documents:
        if doc["kind"] == "PersonalizationStack":
            doc["spec"]["redis"] = {"url": redis_url}
            doc["spec"]["kafka"]["bootstrapServers"] = kafka
    run("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(documents))


def delete_namespace(namespace: str, kubeconfig: Path, launcher: Launcher, operator: Component) -> None:
    """Deleted while an operator runs: the stack's finalizer is the operator's to remove."""
    kubectl = shutil.which("kubectl") or str(VENV_BIN / "kubectl")
    with operator_running(launcher, operator):
        subprocess.run(
            [kubectl, "delete", "namespace", namespace, "--timeout=60s"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)}, capture_output=True, check=False,
        )  # fmt: skip


def image_size(image: str) -> int:
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", default="ghcr.io/tailor-dev/tailor:0.1.0")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    needed = ("KUBECONFIG", "TAILOR_REDIS_URL", "TAILOR_KAFKA_BOOTSTRAP")
    missing = [name for name in needed if name not in os.environ]
    if missing:
        print(f'set {", ".join(missing)}: eval "$(tailor dev env)"', file=sys.stderr)
        return 2
    redis_url, kafka = os.environ["TAILOR_REDIS_URL"], os.environ["TAILOR_KAFKA_BOOTSTRAP"]
    flags = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image.sh"), "run-flags"], capture_output=True, text=True, check=True
    ).stdout.split()
    namespace = f"bench-image-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as scratch:
        # The container's user (10001) must read the credentials, as a pod reads its mounted token.
        kubeconfig = Path(scratch) / "kubeconfig"
        shutil.copyfile(os.environ["KUBECONFIG"], kubeconfig)
        if os.geteuid() == 0:
            os.chown(kubeconfig, 10001, 10001)
        else:
            kubeconfig.chmod(0o644)
        apply_shop(namespace, redis_url, kafka, kubeconfig)
        client = redis.Redis.from_url(redis_url)
        launchers = [Launcher(args.image, kubeconfig, flags), Launcher(None, kubeconfig, flags)]
        results: dict[tuple[str, str, str], list[float]] = {}
        every = components(namespace, redis_url)
        try:
            publish(launchers[1], every[0], client, f"{namespace}/shop")  # the api and worker need it
            for component in every:
                for _ in range(args.runs):
                    for launcher in launchers:  # alternated, so a drift in load hits both alike
                        for signal_name, seconds in time_start(launcher, component).items():
                            key = (component.name, signal_name, launcher.label)
                            results.setdefault(key, []).append(seconds)
        finally:
            client.close()
            delete_namespace(namespace, kubeconfig, launchers[1], every[0])
    size = image_size(args.image)
    load = os.getloadavg()
    print(f"image {args.image}: {size / 1e6:.0f} MB; {args.runs} starts each; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print(f"container flags: {shlex.join(flags)}")
    print(f"{'component':9} {'ready when':22} {'where':9} {'median s':>9} {'min s':>7} {'max s':>7}")
    for (component_name, signal_name, where), values in results.items():
        print(f"{component_name:9} {signal_name:22} {where:9} {statistics.median(values):9.2f} "
              f"{min(values):7.2f} {max(values):7.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
