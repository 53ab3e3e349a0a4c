"""The stack's OCI registry (CNCF distribution) on 127.0.0.1: where the real node pulls images.

Plain HTTP on loopback, storage under the stack's home (kept across `down`/`up`, dropped by
`--purge`). Once healthy it holds the node's own images (the pause image and the test
workload, see ociimage), so containerd finds its sandbox image by reference like any other.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from tailor.devstack import ociimage, probes
from tailor.devstack.components.base import Component

#: Repositories of the node's own images in the stack's registry.
PAUSE_REPOSITORY = "tailor-dev/pause"
HELLO_REPOSITORY = "tailor-dev/hello"
HELLO_PORT = 8080
#: uid:gid of the test workload: it runs as non-root like the chart's pods.
HELLO_USER = "65532:65532"


class Registry(Component):
    name = "registry"
    port_keys = ("registry",)
    start_timeout = 30.0

    def address(self) -> str:
        return f"127.0.0.1:{self.context.port('registry')}"

    def endpoint(self) -> str:
        return f"http://{self.address()}"

    @property
    def config(self) -> Path:
        return self.data_dir / "config.yml"

    def prepare(self) -> None:
        document = {
            "version": 0.1,
            # The access log says which image each pull asked for (and that it asked here).
            "log": {"level": "warn", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.data_dir / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.address()},
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))

    def env(self) -> Mapping[str, str]:
        # distribution v3 exports traces to localhost:4318 by default; nothing listens there.
        return {**os.environ, "OTEL_TRACES_EXPORTER": "none"}

    def argv(self) -> list[str]:
        return [str(self.context.tools.node.registry), "serve", str(self.config)]

    def healthy(self) -> bool:
        status, _ = probes.http_get(self.context.port("registry"), "/v2/")
        return status == 200

    def after_healthy(self) -> None:
        """Push the node's own images (a no-op when the registry already has them)."""
        for repository, tag, image in node_images(self.context.tools.node.images_bin_dir):
            ociimage.Registry(self.address()).push(repository, tag, image)

    def reference(self, repository: str, tag: str) -> str:
        return f"{self.address()}/{repository}:{tag}"

    def pause_image(self) -> str:
        return self.reference(PAUSE_REPOSITORY, image_tag(self.context.tools.node.images_bin_dir / "pause"))

    def hello_image(self) -> str:
        return self.reference(HELLO_REPOSITORY, image_tag(self.context.tools.node.images_bin_dir / "hello"))


def image_tag(binary: Path) -> str:
    """A tag naming the binary's content, so an image reference never means two things."""
    return "sha-" + hashlib.sha256(binary.read_bytes()).hexdigest()[:12]


def node_images(bin_dir: Path) -> list[tuple[str, str, ociimage.Image]]:
    """(repository, tag, image) of the pause image and the test workload."""
    pause, hello = bin_dir / "pause", bin_dir / "hello"
    return [
        (PAUSE_REPOSITORY, image_tag(pause), ociimage.build({"/pause": pause}, ["/pause"])),
        (
            HELLO_REPOSITORY,
            image_tag(hello),
            ociimage.build({"/hello": hello}, ["/hello"], exposed_ports=[HELLO_PORT], user=HELLO_USER),
        ),
    ]
