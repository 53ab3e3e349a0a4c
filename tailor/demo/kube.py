"""The demo's Kubernetes side: apply the CRDs and the shop, then wait until everything is Ready.

Applying goes through kubectl (server-side apply, as a user or a GitOps tool would). Waiting reads the
resources' status: every PersonalizationStack, PersonalizationRule and ContentVariant of the namespace
must report `Ready=True` for its current generation (a status left from an earlier run does not
count), and the ruleset version the stack reports must be the one published in Redis.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tailor.core import constants
from tailor.core.rules import versions
from tailor.devstack import probes

PLURALS = (constants.STACK_PLURAL, constants.RULE_PLURAL, constants.VARIANT_PLURAL)
SHORT = {constants.STACK_KIND: "pstack", constants.RULE_KIND: "prule", constants.VARIANT_KIND: "cvar"}


class KubeError(RuntimeError):
    """kubectl failed, or a resource did not become Ready; the message says which and why."""


def kubectl(binary: Path, kubeconfig: str, *args: str, input: str | None = None, timeout: float = 60) -> str:
    result = subprocess.run(
        [str(binary), "--kubeconfig", kubeconfig, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise KubeError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def apply_crds(binary: Path, kubeconfig: str, crds: Path) -> None:
    kubectl(binary, kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(crds))
    names = [f"crd/{plural}.{constants.API_GROUP}" for plural in PLURALS]
    probes.until_conditions_set(
        kubectl,
        binary,
        kubeconfig,
        "wait",
        "--for=condition=Established",
        *names,
        "--timeout=60s",
        timeout=70,
    )


def apply_manifests(binary: Path, kubeconfig: str, namespace: str, documents_yaml: str) -> str:
    return kubectl(
        binary,
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=tailor-demo",
        "-n",
        namespace,
        "-f",
        "-",
        input=documents_yaml,
    )


def ready_condition(item: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for condition in (item.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition  # type: ignore[no-any-return]
    return None


def pending(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """`kind/name: why` for each resource not Ready at its current generation."""
    waiting = []
    for item in items:
        metadata, status = item["metadata"], item.get("status") or {}
        name = f"{SHORT.get(item['kind'], item['kind'])}/{metadata['name']}"
        condition = ready_condition(item)
        generation = metadata.get("generation")
        observed = status.get("observedGeneration")
        if condition is None:
            waiting.append(f"{name}: no Ready condition yet")
        elif observed != generation:
            waiting.append(f"{name}: generation {generation} not observed yet (status is of {observed})")
        elif condition.get("status") != "True":
            reason, message = condition.get("reason"), condition.get("message")
            waiting.append(f"{name}: Ready={condition.get('status')} {reason}: {message}")
    return waiting


@dataclass(frozen=True)
class Readiness:
    ruleset_version: int
    rules: int
    variants: int


class Cluster:
    """Reads the demo namespace's Tailor resources with the Kubernetes API."""

    def __init__(self, kubeconfig: str) -> None:
        api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        self.api = api
        self.custom = k8s_client.CustomObjectsApi(api)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def items(self, namespace: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for plural in PLURALS:
            listed: Any = self.custom.list_namespaced_custom_object(
                constants.API_GROUP, constants.API_VERSION, namespace, plural
            )
            found += listed["items"]
        return found

    def wait_ready(
        self,
        namespace: str,
        stack: str,
        redis_url: str,
        *,
        timeout: float,
        tick: Callable[[], None],
        say: Callable[[str], None],
    ) -> Readiness:
        """Until every resource is Ready and the stack's ruleset is current in Redis; `tick` runs
        between polls (it raises when a child process died) and `say` gets each new set of waits."""
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        last: list[str] = []
        try:
            while True:
                tick()
                items = self.items(namespace)
                waiting = pending(items)
                stacks = [i for i in items if i["kind"] == constants.STACK_KIND]
                version = int(((stacks[0].get("status") or {}).get("rulesetVersion") or 0) if stacks else 0)
                published = versions.current_version_sync(client, f"{namespace}/{stack}")
                if not stacks:
                    waiting.append(f"pstack/{stack}: not found in namespace {namespace}")
                elif not waiting and (version == 0 or published != version):
                    waiting.append(f"pstack/{stack}: reports ruleset v{version}, Redis serves v{published}")
                if not waiting:
                    rules = sum(i["kind"] == constants.RULE_KIND for i in items)
                    return Readiness(version, rules, len(items) - rules - len(stacks))
                if waiting != last:
                    say("waiting for: " + "; ".join(waiting[:4]) + (" …" if len(waiting) > 4 else ""))
                    last = waiting
                if time.monotonic() > deadline:
                    raise KubeError(
                        f"not Ready after {timeout:.0f} s:\n  "
                        + "\n  ".join(waiting)
                        + f"\n(see: kubectl -n {namespace} get tailor -o wide)"
                    )
                time.sleep(0.5)
        finally:
            client.close()
