"""Single-layer OCI images of static programs, pushed to a registry over its HTTP API.

The real node needs a pause image (its pod sandboxes) and a test workload, and nothing can be
pulled from public registries here. A static Go binary needs no base image: one layer holding
the binary is a complete image. We assemble it (layer tar, config, manifest as the OCI image
spec defines them) and push it through the distribution API
(https://github.com/opencontainers/distribution-spec), the same requests `buildah push` or
`docker push` make; containerd then pulls it by reference like any image.

Images built with buildah or podman reach the same registry with their own push (see
docs/devstack.md).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tailor.devstack.errors import DevstackError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class Image:
    config: Blob
    layers: tuple[Blob, ...]

    def manifest(self) -> bytes:
        document = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": self.config.descriptor(),
            "layers": [layer.descriptor() for layer in self.layers],
        }
        return json.dumps(document, sort_keys=True).encode()


def _layer_tar(files: Mapping[str, Path]) -> bytes:
    """An uncompressed layer: each file at its absolute path in the image, root-owned, mtime 0
    (so the same binary always gives the same digest and a push of an unchanged image is free)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for target in sorted(files):
            parts = target.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            data = files[target].read_bytes()
            info = tarfile.TarInfo(target.strip("/"))
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build(
    files: Mapping[str, Path],
    entrypoint: Sequence[str],
    *,
    env: Sequence[str] = (),
    exposed_ports: Sequence[int] = (),
    user: str = "",
) -> Image:
    """A linux/amd64 image of ``files`` (image path -> host file) that runs ``entrypoint``."""
    tar = _layer_tar(files)
    layer = Blob(LAYER_TYPE, gzip.compress(tar, mtime=0))
    run_config: dict[str, object] = {
        "Entrypoint": list(entrypoint),
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *env],
    }
    if exposed_ports:
        run_config["ExposedPorts"] = {f"{port}/tcp": {} for port in exposed_ports}
    if user:
        run_config["User"] = user
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created_by": "tailor.devstack.ociimage", "comment": "static program, one layer"}],
    }
    return Image(config=Blob(CONFIG_TYPE, json.dumps(config, sort_keys=True).encode()), layers=(layer,))


class Registry:
    """A client for the plain-HTTP registry of the stack on ``host:port`` (loopback only)."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.address, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def _expect(self, what: str, status: int, body: bytes, *expected: int) -> None:
        if status not in expected:
            raise DevstackError(
                f"registry {self.address}: {what} answered {status}: {body[:500].decode(errors='replace')}"
            )

    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        return status == 200

    def push_blob(self, repository: str, blob: Blob) -> None:
        """Upload one blob unless the registry has it (monolithic upload: POST, then PUT)."""
        if self.has_blob(repository, blob.digest):
            return
        status, headers, body = self._request("POST", f"/v2/{repository}/blobs/uploads/")
        self._expect(f"starting an upload to {repository}", status, body, 202)
        location = urlsplit(headers["location"])
        query = f"{location.query}&" if location.query else ""
        status, _, body = self._request(
            "PUT",
            f"{location.path}?{query}digest={blob.digest}",
            blob.data,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(blob.data))},
        )
        self._expect(f"uploading {blob.digest} to {repository}", status, body, 201)

    def push(self, repository: str, tag: str, image: Image) -> str:
        """Push ``image`` as ``repository:tag``; return the manifest's digest."""
        for blob in (*image.layers, image.config):
            self.push_blob(repository, blob)
        manifest = image.manifest()
        status, _, body = self._request(
            "PUT", f"/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": MANIFEST_TYPE}
        )
        self._expect(f"putting the manifest of {repository}:{tag}", status, body, 201)
        return "sha256:" + hashlib.sha256(manifest).hexdigest()

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The digest the registry serves for ``repository:tag``, or None when it has no such tag."""
        status, headers, _ = self._request(
            "HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPE}
        )
        return headers.get("docker-content-digest") if status == 200 else None
