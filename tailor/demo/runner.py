"""`tailor demo`: the whole product on this machine, and a check that it works end to end.

1. the local real stack (`tailor dev up`; a running one is reused, endpoints in the environment win);
2. the CRDs and examples/shop applied to a namespace, the stack pointed at the local Kafka and Redis
   (manifests.py);
3. `tailor operator`, then `tailor worker` and `tailor api` as child processes, once every resource
   is Ready and the ruleset is published (kube.py, children.py);
4. the storefront (examples/storefront) served on 127.0.0.1 with tailor.js from the content API
   (storefront.py), and what to try printed;
5. a self-check without a browser: synthetic shoppers' page views through POST /v1/events switch
   their hero in GET /v1/decide, with the measured event→decision time (check.py);
6. optionally `--traffic RATE`: simulated shoppers at RATE events per second (traffic.py).

Ctrl-C or SIGTERM stops the children; the stack stays up (`tailor dev down` stops it). With `--check`
the demo exits after the self-check (and `--duration` seconds of traffic, when asked): 0 if it worked.
The demo uses four consecutive ports from --port: storefront, content API, operator and worker metrics.
The command line (`tailor demo --help`) is tailor/cli/demo.py.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailor import devstack
from tailor.core import constants
from tailor.demo import check as demo_check
from tailor.demo import children as demo_children
from tailor.demo import kube as demo_kube
from tailor.demo import manifests as demo_manifests
from tailor.demo import traffic as demo_traffic
from tailor.demo.client import ApiClient
from tailor.demo.storefront import StorefrontServer

DEFAULT_PORT = 8000
DEFAULT_NAMESPACE = "tailor-demo"
STACK_NAME = "shop"  # examples/shop/stack.yaml
READY_TIMEOUT = 180.0
CHECK_TRAFFIC_SECONDS = 10.0
STATS_TIMEOUT = 30.0
PROGRESS_EVERY = 10.0


class DemoError(RuntimeError):
    """Something the user can fix (a busy port, a missing checkout); the message says what."""


def say(message: str = "") -> None:
    print(message, flush=True)


def note(message: str) -> None:
    # One write per line: the stack reports from several threads at once.
    sys.stderr.write(f"tailor demo: {message}\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Ports:
    storefront: int
    api: int
    operator_metrics: int
    worker_metrics: int
    api_admin: int  # the content API's admin port: explain, profiles, metrics, readiness


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def choose_ports(base: int) -> Ports:
    """Five consecutive ports from `base`, each checked free; any free ones for base 0."""
    if base == 0:
        return Ports(*(_any_free_port() for _ in range(5)))
    if not 1 <= base <= 65531:
        raise DemoError(f"--port {base} is out of range (1-65531, or 0 for any free ports)")
    ports = Ports(base, base + 1, base + 2, base + 3, base + 4)
    roles = ("the storefront", "the content API", "the operator's metrics", "the worker's metrics",
             "the content API's admin port")  # fmt: skip
    chosen = (ports.storefront, ports.api, ports.operator_metrics, ports.worker_metrics, ports.api_admin)
    for port, role in zip(chosen, roles, strict=True):
        if not _free(port):
            raise DemoError(
                f"port {port} (for {role}) is in use on 127.0.0.1: stop what uses it, or pick another "
                f"base with --port (the demo takes {base}-{base + 4}), or --port 0 for any free ports"
            )
    return ports


def rule_totals(items: list[dict[str, Any]]) -> tuple[int, int]:
    """Impressions and clicks summed over every rule's status.stats."""
    impressions = clicks = 0
    for item in items:
        for numbers in ((item.get("status") or {}).get("stats") or {}).values():
            impressions += int(numbers.get("impressions", 0))
            clicks += int(numbers.get("clicks", 0))
    return impressions, clicks


def command_name(path: Path, name: str) -> str:
    """How to call a program in the printed hints: its bare name if that is what PATH finds."""
    found = shutil.which(name)
    if found and Path(found).resolve() == path.resolve():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def hints(
    *,
    storefront: str,
    api: str,
    ports: Ports,
    namespace: str,
    token: str,
    kubectl: str,
    dev: str,
    logs: str,
    browser: bool,
) -> str:
    admin = f"http://127.0.0.1:{ports.api_admin}"
    lines = [
        "",
        "Tailor demo is running.",
        f"  storefront    {storefront}/",
        f"  content API   {api}/  (OpenAPI: {api}/openapi.json)",
        f"  admin port    {admin}/  (explain, profiles, health, readiness)",
        f"  metrics       {admin}/metrics  http://127.0.0.1:{ports.operator_metrics}/metrics (operator)"
        f"  http://127.0.0.1:{ports.worker_metrics}/metrics (worker)",
        f"  logs          {logs}",
    ]
    if browser:
        lines += [
            "",
            "Try it in a browser:",
            f"  1. Open {storefront}/ : the hero offers 10% off your first order (you are a new visitor).",
            "  2. View three shoe pages, ending on a page with the hero: Shoes, Trail Runner, Shoes. On",
            "     the third the hero switches to a shoe offer within a second, with no reload or shift.",
            "  3. Add a product to the cart: the sidebar promo may turn into a cart reminder",
            "     (the abandoned-cart rule is rolled out to 50% of visitors).",
        ]
    lines += [
        "",
        "Poke at it from another terminal:",
        f'  eval "$({dev} env)"',
        f"  export TAILOR_API={api} TAILOR_ADMIN={admin} TAILOR_ADMIN_TOKEN={token}",
        f"  {kubectl} -n {namespace} get tailor                  # Ready, slot, priority, published version",
        f"  {kubectl} -n {namespace} get prule -o custom-columns=RULE:.metadata.name,STATS:.status.stats",
        '  curl -s "$TAILOR_API/v1/decide?slot=home-hero&slot=sidebar-promo&user=alice"',
        '  curl -s -H "Authorization: Bearer $TAILOR_ADMIN_TOKEN" \\',
        '       "$TAILOR_ADMIN/v1/explain?slot=home-hero&user=alice"',
        f"  more in docs/demo.md. Ctrl-C stops the demo; the stack stays up (`{dev} down` stops it).",
        "",
    ]
    return "\n".join(lines)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.namespace: str = args.namespace
        self.stack_ref = f"{self.namespace}/{STACK_NAME}"
        self.token = os.environ.get(constants.ENV_ADMIN_TOKEN) or secrets.token_urlsafe(32)
        self.children: demo_children.Children | None = None
        self.storefront: StorefrontServer | None = None
        self.traffic: demo_traffic.Traffic | None = None
        self.kubeconfig = ""

    # --- bring-up ------------------------------------------------------------------------------

    def run(self) -> int:
        demo_manifests.require_checkout()
        ports = choose_ports(self.args.port)
        note(f"starting the local stack {self.args.stack_name!r} (a running one is reused)")
        stack = devstack.Stack(self.args.stack_name, report=lambda message: note(f"  {message}"))
        endpoints = stack.up()
        for variable, value in stack.state.external.as_env().items():
            note(f"  using {variable}={value} from the environment (unset it to use the local stack)")
        kubeconfig = self.kubeconfig = str(stack.kubeconfig)
        kafka, redis_url = stack.kafka_bootstrap, stack.redis_url
        storefront_url = f"http://127.0.0.1:{ports.storefront}"
        api_url = f"http://127.0.0.1:{ports.api}"

        note(f"applying the CRDs and examples/shop to namespace {self.namespace}")
        demo_kube.apply_crds(stack.kubectl, kubeconfig, demo_manifests.CRDS)
        documents = demo_manifests.overlay(
            demo_manifests.load_example(),
            namespace=self.namespace,
            kafka_bootstrap=kafka,
            redis_url=redis_url,
            storefront_url=storefront_url,
        )
        demo_kube.apply_manifests(
            stack.kubectl, kubeconfig, self.namespace, demo_manifests.to_yaml(documents)
        )

        children = self.children = demo_children.Children(
            stack.paths.logs, demo_children.environment(os.environ, endpoints.as_env())
        )
        children.start(
            "operator",
            ["operator", "--namespace", self.namespace, "--standalone", "--liveness", "off",
             "--metrics-port", str(ports.operator_metrics)],
            {"TAILOR_OPERATOR_STATS_INTERVAL_SECONDS": "5"},  # stats in `kubectl get prule` fill in sooner
        )  # fmt: skip
        note("operator started; waiting for the stack, rules and variants to be Ready")
        cluster = demo_kube.Cluster(kubeconfig)
        try:
            ready = cluster.wait_ready(
                self.namespace, STACK_NAME, redis_url, timeout=READY_TIMEOUT, tick=children.check,
                say=lambda message: note(f"  {message}"),
            )  # fmt: skip
        finally:
            cluster.close()
        note(f"ruleset v{ready.ruleset_version} published: {ready.rules} rules, {ready.variants} variants")
        children.start(
            "worker",
            ["worker", "--stack", self.stack_ref, "--metrics-port", str(ports.worker_metrics)],
            {"TAILOR_WORKER_METRICS_HOST": "127.0.0.1"},
        )
        children.start(
            "api",
            ["api", "--stack", self.stack_ref, "--host", "127.0.0.1", "--port", str(ports.api),
             "--admin-port", str(ports.api_admin)],
            {constants.ENV_ADMIN_TOKEN: self.token},
        )  # fmt: skip
        client = ApiClient(api_url, admin_token=self.token, admin_url=f"http://127.0.0.1:{ports.api_admin}")
        self._wait("the content API to be ready (Kafka, Redis, ruleset)", client.ready, timeout=90)
        try:
            storefront = StorefrontServer(demo_manifests.STOREFRONT, api_url, port=ports.storefront)
        except OSError as error:
            raise DemoError(f"cannot serve the storefront on port {ports.storefront}: {error}") from None
        self.storefront = storefront.start()
        if self.args.check:
            say(f"storefront {storefront_url}/, content API {api_url}/ (namespace {self.namespace})")
            return self._after_start(client, storefront_url, api_url)
        say(
            hints(
                storefront=storefront_url,
                api=api_url,
                ports=ports,
                namespace=self.namespace,
                token=self.token,
                kubectl=command_name(stack.kubectl, "kubectl"),
                dev=self._dev_command(),
                logs=str(stack.paths.logs / "demo-{operator,worker,api}.log"),
                browser=not self.args.no_browser_hint,
            )
        )
        return self._after_start(client, storefront_url, api_url)

    def _dev_command(self) -> str:
        """`tailor dev` as the user would type it for this stack."""
        name = "tailor" if shutil.which("tailor") else command_name(Path(sys.argv[0]), "tailor")
        if self.args.stack_name != devstack.DEFAULT_STACK_NAME:
            return f"{name} dev --name {self.args.stack_name}"
        return f"{name} dev"

    def _wait(self, what: str, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.children is not None
        while not probe():
            self.children.check()
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    # --- check, traffic, waiting -----------------------------------------------------------------

    def _after_start(self, client: ApiClient, storefront_url: str, api_url: str) -> int:
        say("self-check: synthetic shoppers through POST /v1/events and GET /v1/decide (no browser)")
        assert self.children is not None
        report = demo_check.run(client, storefront_url, say=say, tick=self.children.check)
        client.close()
        if not report.ok:
            say("self-check FAILED:\n  " + "\n  ".join(report.problems))
            self._show_logs()
            return 1
        say("self-check passed: page views change the hero, end to end")
        if self.args.traffic > 0:
            self.traffic = demo_traffic.Traffic(api_url, self.args.traffic, storefront_url).start()
            say(
                f"traffic: simulated shoppers, {self.args.traffic:g} events/s "
                f"(progress every {PROGRESS_EVERY:.0f} s)"
            )
        if self.args.check:
            return self._finish_check()
        self._serve_until_stopped()
        return 0

    def _serve_until_stopped(self) -> None:
        assert self.children is not None
        ends = time.monotonic() + self.args.duration if self.args.duration is not None else None
        previous = self.traffic.counters.snapshot() if self.traffic else None
        next_progress = time.monotonic() + PROGRESS_EVERY
        while ends is None or time.monotonic() < ends:
            time.sleep(0.5)
            self.children.check()
            if self.traffic is not None and time.monotonic() >= next_progress:
                current = self.traffic.counters.snapshot()
                say(current.line(previous, self.args.traffic))
                previous, next_progress = current, next_progress + PROGRESS_EVERY

    def _finish_check(self) -> int:
        if self.traffic is None:
            return 0
        assert self.children is not None
        cluster = demo_kube.Cluster(self.kubeconfig)
        try:
            before = rule_totals(cluster.items(self.namespace))
            started = self.traffic.counters.snapshot()
            duration = self.args.duration if self.args.duration is not None else CHECK_TRAFFIC_SECONDS
            deadline = time.monotonic() + duration
            while time.monotonic() < deadline:
                time.sleep(0.5)
                self.children.check()
            final = self.traffic.stop()
            say(final.line(started, self.args.traffic))
            problems = []
            if final.events == 0 or final.decides == 0:
                problems.append("the traffic generator sent no events or made no decisions")
            if final.errors:
                problems.append(f"the traffic generator saw {final.errors} errors (last: {final.last_error})")
            if not problems:
                problems += self._wait_for_stats(cluster, before, final)
        finally:
            cluster.close()
        if problems:
            say("traffic check FAILED:\n  " + "\n  ".join(problems))
            return 1
        say("traffic check passed: events, decisions, clicks and the rules' stats all flow")
        return 0

    def _wait_for_stats(
        self, cluster: demo_kube.Cluster, before: tuple[int, int], sent: demo_traffic.Snapshot
    ) -> list[str]:
        """Wait until the rules' status.stats (copied by the operator) count at least the impressions
        and clicks the traffic made; the problem if they don't in time."""
        deadline = time.monotonic() + STATS_TIMEOUT
        while True:
            impressions, clicks = rule_totals(cluster.items(self.namespace))
            grown = (impressions - before[0], clicks - before[1])
            if grown[0] >= sent.impressions and grown[1] >= sent.rule_clicks:
                say(
                    f"rule stats (kubectl get prule): +{grown[0]} impressions, +{grown[1]} clicks; the "
                    f"traffic got {sent.impressions} decisions by rules and clicked {sent.rule_clicks}"
                )
                return []
            if time.monotonic() > deadline:
                return [
                    f"after {STATS_TIMEOUT:.0f} s the rules' status.stats grew by {grown[0]} impressions and "
                    f"{grown[1]} clicks; the traffic got {sent.impressions} and clicked {sent.rule_clicks}"
                ]
            time.sleep(1)

    def _show_logs(self) -> None:
        if self.children is None:
            return
        for child in self.children.started:
            say(f"--- {child.log} (last lines)\n{child.tail(15)}")

    # --- shutdown ------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        if self.storefront is not None:
            self.storefront.stop()
        if self.children is not None and self.children.started:
            troubled = self.children.stop_all()
            if troubled:
                note(f"had to kill: {', '.join(troubled)}")
            down = f"{self._dev_command()} down"
            note(f"stopped the operator, worker and API; the stack stays up (`{down}` stops it)")


def run(args: argparse.Namespace) -> int:
    # SIGTERM stops the demo as Ctrl-C does: children are stopped in order in `finally`.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo = Demo(args)
    try:
        return demo.run()
    except KeyboardInterrupt:
        note("stopping")
        return 0 if not args.check else 130
    except (
        DemoError,
        devstack.DevstackError,
        demo_kube.KubeError,
        demo_children.ChildExited,
        demo_manifests.ExampleMissing,
    ) as error:
        note(str(error))
        return 1
    finally:
        demo.stop()
