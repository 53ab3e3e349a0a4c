"""Benchmark: the operator's Kubernetes calls through tailor_operator.kube against other clients.

operator/tailor_operator/kube.py is the operator's facade on kubernetes_asyncio (kopf watches; it
writes). Until issue 16 it was a hand-written client on aiohttp; `--baseline REV` measures that one
too, as it was at a git revision (aa269af is its last), in the same run. This script makes the calls
the operator makes, against a real kube-apiserver, with each client in turn:

- apply:   server-side apply (fieldManager tailor-operator, force) of the worker Deployment the
           operator builds (tailor_operator.builders), the drift timer's call: after the first, a no-op;
- status:  a merge patch of a PersonalizationStack's status subresource (a new value each time);
- get:     read a Secret (the Redis password's, as redis_access does);
- apply16: the same apply with 16 requests in flight (reconciling many children/stacks at once).

Per client and call: milliseconds per call (wall, sequential), and the client's own CPU per call
(this process's CPU time: the apiserver, etcd and the rest of the box are not counted). Rounds
interleave the clients, so the load of a shared machine weighs on all alike; the best round is kept.

- `tailor_operator.kube` the operator's facade: kubernetes_asyncio's ApiClient, paths from discovery
- `kube.py@REV`        with --baseline REV: the hand-written aiohttp client at that revision
- `kubernetes_asyncio` its generated typed APIs (AppsV1Api, …), models deserialized
- `lightkube`          typed async client on httpx, `apply()` for server-side apply
- `kr8s`               async client on httpx; no server-side apply in its object API: a raw call here
- `kubernetes`         the official sync client, called through asyncio.to_thread

    .venv/bin/pip install -e '.[bench-libs]'    # lightkube, kr8s (the others are dependencies)
    eval "$(.venv/bin/tailor dev env)"          # a running `tailor dev up`
    .venv/bin/python bench/kube_clients.py [--calls 200] [--rounds 3] [--baseline aa269af]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailor_operator import builders, kube
from tailor_operator import constants as names

from tailor.core import constants
from tailor.core.rules import specs

ROOT = Path(__file__).resolve().parents[1]
GROUP_VERSION = f"{constants.API_GROUP}/{constants.API_VERSION}"
MANAGER = names.FIELD_MANAGER


@dataclass
class Client:
    """One client's version of the operator's calls."""

    apply: Callable[[Mapping[str, Any]], Awaitable[Any]]
    patch_status: Callable[[str, str, Mapping[str, Any]], Awaitable[Any]]
    read_secret: Callable[[str, str], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]


async def tailor_kube(kubeconfig: str) -> Client:
    client = await kube.Kube.connect(kubeconfig)

    async def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await client.patch_status(constants.STACK_KIND, namespace, name, status)

    return Client(client.apply, patch_status, client.read_secret, client.close)


def baseline(revision: str) -> Callable[[str], Awaitable[Client]]:
    """The operator's kube.py as it was at `revision`, loaded from git (the hand-written client)."""
    path = "operator/tailor_operator/kube.py"
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"], capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        sys.exit(f"--baseline {revision}: {shown.stderr.strip()}")
    module = types.ModuleType(f"kube_at_{revision}")
    exec(compile(shown.stdout, f"{revision}:{path}", "exec"), module.__dict__)

    async def make(kubeconfig: str) -> Client:
        client = module.Kube(module.load_configuration(kubeconfig))

        async def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
            await client.patch_status(constants.STACK_KIND, namespace, name, status)

        return Client(client.apply, patch_status, client.read_secret, client.close)

    return make


async def kubernetes_asyncio_client(kubeconfig: str) -> Client:
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    apps, custom, core = (
        client.AppsV1Api(api_client),
        client.CustomObjectsApi(api_client),
        client.CoreV1Api(api_client),
    )

    async def apply(manifest: Mapping[str, Any]) -> Any:
        meta = manifest["metadata"]
        return await apps.patch_namespaced_deployment(
            meta["name"], meta["namespace"], manifest, field_manager=MANAGER, force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip

    async def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> Any:
        return await custom.patch_namespaced_custom_object_status(
            constants.API_GROUP, constants.API_VERSION, namespace, constants.STACK_PLURAL, name,
            {"status": status}, _content_type="application/merge-patch+json",
        )  # fmt: skip

    async def read_secret(namespace: str, name: str) -> Any:
        return (await core.read_namespaced_secret(name, namespace)).data

    return Client(apply, patch_status, read_secret, api_client.close)


async def lightkube_client(kubeconfig: str) -> Client:
    from lightkube import AsyncClient, KubeConfig, codecs
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.resources.core_v1 import Secret
    from lightkube.types import PatchType

    client = AsyncClient(KubeConfig.from_file(kubeconfig), field_manager=MANAGER)
    stack = create_namespaced_resource(
        constants.API_GROUP, constants.API_VERSION, constants.STACK_KIND, constants.STACK_PLURAL
    )

    async def apply(manifest: Mapping[str, Any]) -> Any:
        return await client.apply(codecs.from_dict(dict(manifest)), force=True)

    async def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> Any:
        return await client.patch(
            stack.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
        )

    async def read_secret(namespace: str, name: str) -> Any:
        return (await client.get(Secret, name, namespace=namespace)).data

    return Client(apply, patch_status, read_secret, client.close)


async def kr8s_client(kubeconfig: str) -> Client:
    import kr8s.asyncio
    from kr8s.asyncio.objects import Secret, new_class

    api = await kr8s.asyncio.api(kubeconfig=kubeconfig)
    stack = new_class(kind=constants.STACK_KIND, version=GROUP_VERSION, namespaced=True)

    async def apply(manifest: Mapping[str, Any]) -> Any:
        meta = manifest["metadata"]
        async with api.call_api(
            "PATCH", version="apps/v1", base="/apis", namespace=meta["namespace"],
            url=f"deployments/{meta['name']}", params={"fieldManager": MANAGER, "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"}, content=json.dumps(manifest),
        ) as response:  # fmt: skip
            return response.json()

    async def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> Any:
        resource = stack({"metadata": {"name": name, "namespace": namespace}}, api=api)
        await resource.patch({"status": status}, subresource="status")

    async def read_secret(namespace: str, name: str) -> Any:
        return (await Secret.get(name, namespace=namespace, api=api)).raw.get("data")

    async def close() -> None:
        return None

    return Client(apply, patch_status, read_secret, close)


async def kubernetes_client(kubeconfig: str) -> Client:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    apps, custom, core = (
        client.AppsV1Api(api_client),
        client.CustomObjectsApi(api_client),
        client.CoreV1Api(api_client),
    )

    async def apply(manifest: Mapping[str, Any]) -> Any:
        meta = manifest["metadata"]
        return await asyncio.to_thread(
            apps.patch_namespaced_deployment, meta["name"], meta["namespace"], manifest,
            field_manager=MANAGER, force=True, _content_type="application/apply-patch+yaml",
        )  # fmt: skip

    async def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> Any:
        return await asyncio.to_thread(
            custom.patch_namespaced_custom_object_status, constants.API_GROUP, constants.API_VERSION,
            namespace, constants.STACK_PLURAL, name, {"status": status},
            _content_type="application/merge-patch+json",
        )  # fmt: skip

    async def read_secret(namespace: str, name: str) -> Any:
        return (await asyncio.to_thread(core.read_namespaced_secret, name, namespace)).data

    async def close() -> None:
        api_client.close()

    return Client(apply, patch_status, read_secret, close)


CLIENTS: dict[str, tuple[str, Callable[[str], Awaitable[Client]]]] = {
    "tailor_operator.kube": ("", tailor_kube),
    "kubernetes_asyncio": ("kubernetes_asyncio", kubernetes_asyncio_client),
    "lightkube": ("lightkube", lightkube_client),
    "kr8s": ("kr8s", kr8s_client),
    "kubernetes": ("kubernetes", kubernetes_client),
}


# --- the objects ------------------------------------------------------------------------------------


def kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def set_up(namespace: str) -> tuple[builders.Stack, dict[str, Any]]:
    """A namespace, a PersonalizationStack (the children's owner, whose status we patch), a Secret."""
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl("create", "namespace", namespace)
    spec = {"kafka": {"bootstrapServers": "kafka:9092"}, "redis": {"url": "redis://redis:6379/0"}}
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": GROUP_VERSION, "kind": constants.STACK_KIND,
        "metadata": {"name": "main", "namespace": namespace}, "spec": spec,
    }))  # fmt: skip
    uid = kubectl("get", constants.STACK_PLURAL, "main", "-n", namespace, "-o", "jsonpath={.metadata.uid}")
    password = base64.b64encode(b"s3cret").decode()
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-auth", "namespace": namespace},
        "data": {"password": password},
    }))  # fmt: skip
    stack = builders.Stack(namespace, "main", uid, specs.StackSpec.model_validate(spec))
    return stack, builders.worker_deployment(stack, "0" * 16)


# --- measuring --------------------------------------------------------------------------------------


@dataclass
class Figures:
    ms: dict[str, float] = field(default_factory=dict)  # call -> best round's mean ms per call
    cpu_ms: dict[str, float] = field(default_factory=dict)  # call -> best round's client CPU ms per call


async def timed(calls: int, make: Callable[[int], Awaitable[Any]], in_flight: int = 1) -> tuple[float, float]:
    """(wall ms per call, CPU ms per call of this process)."""
    started, cpu = time.perf_counter(), time.process_time()
    if in_flight == 1:
        for i in range(calls):
            await make(i)
    else:
        semaphore = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            async with semaphore:
                await make(i)

        await asyncio.gather(*(one(i) for i in range(calls)))
    return (time.perf_counter() - started) * 1e3 / calls, (time.process_time() - cpu) * 1e3 / calls


async def measure(
    client: Client, namespace: str, manifest: Mapping[str, Any], calls: int
) -> dict[str, tuple[float, float]]:
    await client.apply(manifest)  # connections opened, the Deployment exists: the rest are no-op applies
    stamp = uuid.uuid4().hex[:8]
    return {
        "apply": await timed(calls, lambda i: client.apply(manifest)),
        "status": await timed(
            calls, lambda i: client.patch_status(namespace, "main", {"rulesetVersion": i, "bench": stamp})
        ),
        "get": await timed(calls, lambda i: client.read_secret(namespace, "redis-auth")),
        "apply16": await timed(calls, lambda i: client.apply(manifest), in_flight=16),
    }


async def check(client: Client, namespace: str, manifest: Mapping[str, Any]) -> None:
    """Each client's calls do what the operator's do (so the timings compare like with like)."""
    await client.apply(manifest)
    await client.patch_status(namespace, "main", {"rulesetVersion": 7})
    secret = await client.read_secret(namespace, "redis-auth")
    assert secret, secret
    assert "password" in secret, secret
    got = json.loads(kubectl("get", constants.STACK_PLURAL, "main", "-n", namespace, "-o", "json"))
    assert got["status"]["rulesetVersion"] == 7, got.get("status")
    deployment = json.loads(
        kubectl("get", "deployment", manifest["metadata"]["name"], "-n", namespace, "-o", "json",
                "--show-managed-fields")
    )  # fmt: skip
    managers = {entry["manager"]: entry["operation"] for entry in deployment["metadata"]["managedFields"]}
    assert managers.get(MANAGER) == "Apply", managers


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def run(args: argparse.Namespace) -> None:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        sys.exit('bench/kube_clients.py: set KUBECONFIG (eval "$(.venv/bin/tailor dev env)")')
    namespace = f"bench-kube-{uuid.uuid4().hex[:6]}"
    _, manifest = set_up(namespace)
    candidates = dict(CLIENTS)
    if args.baseline:
        candidates = {
            "tailor_operator.kube": CLIENTS["tailor_operator.kube"],
            f"kube.py@{args.baseline}": ("", baseline(args.baseline)),
            **CLIENTS,
        }
    clients: dict[str, Client] = {}
    try:
        for name, (module, make) in candidates.items():
            if module:
                try:
                    importlib.import_module(module)
                except ImportError:
                    print(f"{name}: not installed; pip install -e '.[bench-libs]'")
                    continue
            clients[name] = await make(kubeconfig)
            await check(clients[name], namespace, manifest)
        versions = {n: importlib.metadata.version(m) for n, (m, _) in CLIENTS.items() if m and n in clients}
        print(f"load average before: {load_average()}; {versions}; {args.calls} calls per figure")
        best: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in clients}
        for round_number in range(args.rounds):
            order = (
                list(clients)[round_number % len(clients) :] + list(clients)[: round_number % len(clients)]
            )
            for name in order:
                for call, (ms, cpu) in (
                    await measure(clients[name], namespace, manifest, args.calls)
                ).items():
                    if call not in best[name] or ms < best[name][call][0]:
                        best[name][call] = (ms, cpu)
        calls = list(next(iter(best.values())))
        header = f"{'client':<22}" + "".join(f" {call + ' ms':>13} {'CPU ms':>7}" for call in calls)
        print(header)
        print("-" * len(header))
        for name, figures in best.items():
            print(f"{name:<22}" + "".join(f" {figures[c][0]:>13.2f} {figures[c][1]:>7.2f}" for c in calls))
        reference = f"kube.py@{args.baseline}" if args.baseline else "tailor_operator.kube"
        ours = best[reference]
        print(f"\nratio to {reference} (wall; CPU):")
        for name, figures in best.items():
            ratios = "  ".join(
                f"{c} {figures[c][0] / ours[c][0]:.2f}; {figures[c][1] / ours[c][1]:.2f}" for c in calls
            )
            print(f"  {name:<22} {ratios}")
        print(f"load average after: {load_average()}")
    finally:
        for client in clients.values():
            await client.close()
        kubectl("delete", "namespace", namespace, "--wait=false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per figure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure the hand-written kube.py of this git revision"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
