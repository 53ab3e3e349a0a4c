"""The image built from the repository's Dockerfile by the project's script (`make image`:
scripts/image.sh, buildah, bases from Debian's packages), run as the chart runs its pods: user
10001, read-only root filesystem, /tmp the only writable path, no capabilities
(`scripts/image.sh run-flags`). A cold run builds the bases and the image (minutes); a warm one
reuses every unchanged step (seconds)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import sample
from api_harness import new_stack

from tailor.core import topics
from tailor.core.rules import versions
from tailor.devstack import ports

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
IMAGE, TAG = "localhost/tailor-test", "latest"


def run(*argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def image() -> str:
    built = run("bash", "scripts/image.sh", "build", timeout=3600, IMAGE=IMAGE, TAG=TAG)
    if built.returncode != 0:
        pytest.fail(f"scripts/image.sh build failed:\n{built.stdout[-3000:]}\n{built.stderr[-5000:]}")
    return f"{IMAGE}:{TAG}"


@pytest.fixture(scope="module")
def restricted() -> list[str]:
    """The chart's pod settings as podman flags, with the limits this machine needs."""
    flags = run("bash", "scripts/image.sh", "run-flags")
    assert flags.returncode == 0, flags.stderr
    return flags.stdout.split()


@pytest.fixture
async def published_stack(redis_url: str, kafka_bootstrap: str) -> str:
    """A stack whose ruleset (the sample shop, on the real broker) is published, as the operator does."""
    stack = new_stack()
    namespace, _, name = stack.partition("/")
    shop = sample.shop()
    kafka = shop.config.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})
    config = shop.config.model_copy(update={"namespace": namespace, "name": name, "kafka": kafka})
    topics.ensure(kafka_bootstrap, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await versions.publish(client, shop.model_copy(update={"stack": stack, "config": config}))
    finally:
        await client.aclose()
    return stack


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"tailor-test-{uuid.uuid4().hex[:8]}"
    yield name
    run("podman", "rm", "--force", "--time", "2", name)


def test_the_image_runs_tailor_as_the_charts_user_with_its_compiled_hot_path(
    image: str, restricted: list[str]
) -> None:
    config = run("podman", "image", "inspect", "--format", "{{.Config.User}} {{.Config.Entrypoint}}", image)
    # Numeric, so the kubelet can check runAsNonRoot without looking the name up.
    assert config.stdout.split(maxsplit=1) == ["10001:10001", "[tailor]\n"]
    helped = run("podman", "run", "--rm", *restricted, image, "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("operator", "worker", "api"):
        assert f"    {command} " in helped.stdout
    # The worker's Rust hot path was built inside the image (else it counts several times slower).
    native = run(
        "podman", "run", "--rm", *restricted, "--entrypoint", "python", image,
        "-c", "from tailor.core import native; print(native.BUILT, native.enabled())",
    )  # fmt: skip
    assert native.stdout.split() == ["True", "True"], native.stderr


def test_the_content_api_serves_from_a_read_only_container(
    image: str, restricted: list[str], published_stack: str, redis_url: str, container_name: str
) -> None:
    port, admin_port = ports.pick(None), ports.pick(None)
    started = run(
        "podman", "run", "--detach", "--name", container_name, "--network", "host", *restricted,
        "--env", f"TAILOR_REDIS_URL={redis_url}",
        image, "api", "--stack", published_stack, "--host", "127.0.0.1", "--port", str(port),
        "--admin-port", str(admin_port),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{port}"
    admin = httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", timeout=2.0)
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, timeout=2.0) as client, admin:
        while True:
            try:
                if admin.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = run("podman", "inspect", "--format", "{{.State.Status}}", container_name).stdout.strip()
            if time.monotonic() > deadline or state != "running":
                logs = run("podman", "logs", container_name)
                pytest.fail(f"not ready (container {state}):\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
            time.sleep(0.1)
        health = admin.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        decided = client.get("/v1/decide", params={"slot": "hero", "user": "u1", "session": "s1"})
        assert decided.status_code == 200
        assert decided.json()["decisions"][0]["content"]["body"] == "<p>hero-default</p>"
