"""The real node's storage: a default StorageClass whose volumes are directories under the stack's home.

A cluster gives a StatefulSet's volumeClaimTemplates a volume through its default StorageClass;
the stack's real node does the same with this small dynamic provisioner (the external
provisioner protocol: the PV controller marks claims of our class, we create the volume, the
PV controller binds them). Each volume is a directory ``<root>/<pv name>`` mounted into pods as
a hostPath, world-writable like kind's local-path volumes, so pods running as any non-root user
(the chart's restricted security context) can write to it. A Released volume of the class
(reclaim policy Delete) is removed with its directory.

kube-controller-manager's own hostPath provisioner is not used: it creates root-owned 0750
directories under /tmp, which non-root pods cannot write and which outlive the stack.

Run by the stack as a component: ``python -m tailor.devstack.provisioner --kubeconfig ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

PROVISIONER = "tailor.dev/local-dir"
STORAGE_CLASS = "tailor-local"
#: The claim annotation the PV controller sets to the provisioner it expects to act.
PROVISIONER_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
#: Listing claims and volumes this often is cheaper than it sounds on a dev cluster (a few
#: objects) and needs no watch bookkeeping; a new claim binds within about a second.
INTERVAL_SECONDS = 1.0

log = logging.getLogger("tailor.devstack.provisioner")


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def wants_volume(claim: Any) -> bool:
    """A claim of our class, not bound yet, that the PV controller handed to us."""
    annotations = claim.metadata.annotations or {}
    return bool(
        claim.status.phase == "Pending"
        and not claim.spec.volume_name
        and claim.spec.storage_class_name == STORAGE_CLASS
        and annotations.get(PROVISIONER_ANNOTATION) == PROVISIONER
    )


def is_released(volume: Any) -> bool:
    """A volume of ours whose claim is gone (reclaim policy Delete: it goes too)."""
    ours = (volume.metadata.annotations or {}).get(PROVISIONED_BY) == PROVISIONER
    return bool(ours and volume.status.phase == "Released" and volume.spec.host_path is not None)


def volume_name(claim: Any) -> str:
    return f"pvc-{claim.metadata.uid}"


def persistent_volume(claim: Any, path: Path, node: str) -> dict[str, Any]:
    """The PV for ``claim``: its directory on ``node``, pre-bound to the claim."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim), "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim.spec.resources.requests["storage"]},
            "accessModes": claim.spec.access_modes or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": claim.spec.volume_mode or "Filesystem",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace,
                "name": claim.metadata.name,
                "uid": claim.metadata.uid,
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


class Provisioner:
    def __init__(self, api: k8s_client.ApiClient, root: Path, node: str) -> None:
        self.core = k8s_client.CoreV1Api(api)
        self.storage = k8s_client.StorageV1Api(api)
        self.root = root.resolve()
        self.node = node

    def ensure_storage_class(self) -> None:
        try:
            body: Any = storage_class()  # the client takes plain dicts as well as its models
            self.storage.create_storage_class(body)
        except k8s_client.ApiException as error:
            if error.status != 409:
                raise

    def provision(self, claim: Any) -> None:
        path = self.root / volume_name(claim)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # any pod user may write, as with kind's local-path volumes
        try:
            body: Any = persistent_volume(claim, path, self.node)
            self.core.create_persistent_volume(body)
            log.info("provisioned %s for %s/%s", path.name, claim.metadata.namespace, claim.metadata.name)
        except k8s_client.ApiException as error:
            if error.status != 409:  # made by an earlier pass, not yet bound
                raise

    def delete(self, volume: Any) -> None:
        """Remove a Released volume of ours: its directory (only under our root), then the PV."""
        path = Path(volume.spec.host_path.path).resolve()
        if path.parent == self.root:
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(k8s_client.ApiException):
            self.core.delete_persistent_volume(volume.metadata.name)
        log.info("deleted %s", volume.metadata.name)

    def reconcile(self) -> None:
        for claim in self.core.list_persistent_volume_claim_for_all_namespaces().items:
            if wants_volume(claim):
                self.provision(claim)
        volumes: list[Any] = self.core.list_persistent_volume().items
        for volume in volumes:
            if is_released(volume):
                self.delete(volume)


def _serve_health(port: int, healthy: threading.Event) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if healthy.is_set() else 503)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a probe every 100 ms would fill the log."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", type=Path, required=True, help="directory holding the volumes")
    parser.add_argument("--node", required=True, help="the node the volumes are on")
    parser.add_argument("--health-port", type=int, required=True, help="/healthz on 127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    healthy = threading.Event()
    _serve_health(args.health_port, healthy)
    api = k8s_config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    provisioner = Provisioner(api, args.root, args.node)
    provisioner.ensure_storage_class()
    while True:
        try:
            provisioner.reconcile()
            healthy.set()
        except Exception:  # the apiserver restarting, a transient error: try again next pass
            log.exception("reconcile failed")
        time.sleep(INTERVAL_SECONDS)


if __name__ == "__main__":
    main()
