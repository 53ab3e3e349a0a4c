"""`tailor dev env` output and which user-given endpoints count as external."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tailor.devstack import endpoints
from tailor.devstack.endpoints import Endpoints

OWN = Endpoints(
    kubeconfig="/state/tailor/default/kubeconfig",
    kafka_bootstrap="127.0.0.1:40001",
    redis_url="redis://127.0.0.1:40002/0",
)


def test_exports_are_ordered_quoted_and_evaluate_back_in_a_shell(tmp_path: Path) -> None:
    env = {
        "TAILOR_REDIS_URL": "redis://127.0.0.1:1/0",
        "KUBECONFIG": str(tmp_path / "with space" / "kubeconfig"),
        "TAILOR_KAFKA_BOOTSTRAP": "127.0.0.1:2",
    }
    text = endpoints.render_exports(env)
    assert [line.split("=", 1)[0] for line in text.splitlines()] == [
        "export KUBECONFIG",
        "export TAILOR_KAFKA_BOOTSTRAP",
        "export TAILOR_REDIS_URL",
    ]
    script = text + 'printf "%s\\n" "$KUBECONFIG" "$TAILOR_KAFKA_BOOTSTRAP" "$TAILOR_REDIS_URL"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        env["KUBECONFIG"],
        env["TAILOR_KAFKA_BOOTSTRAP"],
        env["TAILOR_REDIS_URL"],
    ]


def test_nothing_in_the_environment_means_nothing_external() -> None:
    assert endpoints.external({}, OWN, Path("/state/tailor/default")) == Endpoints()


def test_values_exported_by_tailor_dev_env_are_the_stacks_own() -> None:
    environ = {
        "KUBECONFIG": OWN.kubeconfig or "",
        "TAILOR_KAFKA_BOOTSTRAP": "localhost:40001",  # same broker, other spelling
        "TAILOR_REDIS_URL": "redis://localhost:40002",  # db 0 is the default
    }
    assert endpoints.external(environ, OWN, Path("/state/tailor/default")) == Endpoints()


def test_a_kubeconfig_inside_the_stack_dir_is_own_even_without_state() -> None:
    environ = {"KUBECONFIG": "/state/tailor/default/kubeconfig"}
    result = endpoints.external(environ, Endpoints(), Path("/state/tailor/default"))
    assert result.kubeconfig is None


def test_other_endpoints_are_external() -> None:
    environ = {
        "KUBECONFIG": "/home/me/.kube/config",
        "TAILOR_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "TAILOR_REDIS_URL": "redis://127.0.0.1:40002/3",  # same server, other database
    }
    assert endpoints.external(environ, OWN, Path("/state/tailor/default")) == Endpoints(
        kubeconfig="/home/me/.kube/config",
        kafka_bootstrap="127.0.0.1:9092",
        redis_url="redis://127.0.0.1:40002/3",
    )


def test_without_state_kafka_and_redis_values_are_external() -> None:
    environ = {"TAILOR_KAFKA_BOOTSTRAP": "127.0.0.1:40001"}
    result = endpoints.external(environ, Endpoints(), Path("/state/tailor/default"))
    assert result.kafka_bootstrap == "127.0.0.1:40001"


def test_a_cluster_stack_exports_its_mode_and_a_single_redis_exports_none() -> None:
    cluster = Endpoints(redis_url="redis://127.0.0.1:40002/0", redis_mode="cluster")
    assert cluster.as_env() == {
        "TAILOR_REDIS_URL": "redis://127.0.0.1:40002/0",
        "TAILOR_REDIS_MODE": "cluster",
    }
    assert "TAILOR_REDIS_MODE" not in OWN.as_env()
    assert endpoints.render_exports(cluster.as_env()).splitlines()[-1] == "export TAILOR_REDIS_MODE=cluster"


def test_a_given_redis_keeps_the_mode_given_with_it_and_the_stacks_own_does_not() -> None:
    given = {"TAILOR_REDIS_URL": "redis://10.0.0.5:7000/0", "TAILOR_REDIS_MODE": "cluster"}
    assert endpoints.external(given, OWN, Path("/state/tailor/default")).redis_mode == "cluster"
    own = {"TAILOR_REDIS_URL": OWN.redis_url or "", "TAILOR_REDIS_MODE": "cluster"}
    assert endpoints.external(own, OWN, Path("/state/tailor/default")) == Endpoints()
