"""The kubeconfig clients use to reach the local apiserver as the system:masters admin."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from tailor.devstack.certs import CertPaths

CONTEXT = "tailor-dev"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render(server: str, certs: CertPaths, client: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """A kubeconfig with the CA and client credentials embedded, so it can be copied.

    ``client`` (certificate, key) replaces the admin identity, e.g. for the kubelet.
    """
    client_cert, client_key = client or (certs.client_cert, certs.client_key)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(certs.ca_cert),
                },
            }
        ],
        "users": [
            {
                "name": CONTEXT,
                "user": {
                    "client-certificate-data": _b64(client_cert),
                    "client-key-data": _b64(client_key),
                },
            }
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
        "current-context": CONTEXT,
    }


def write(path: Path, server: str, certs: CertPaths, client: tuple[Path, Path] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(render(server, certs, client), sort_keys=False))
    path.chmod(0o600)
    return path
