"""`tailor diff --stack` and `tailor rollback` against rulesets published in a real Redis."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from tailor.cli import main, validate
from tailor.core.rules import ruleset, versions

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def compiled(paths: list[Path], namespace: str) -> ruleset.Ruleset:
    checked = validate.check(paths, namespace)
    assert not checked.lines, checked.lines
    result = checked.results[namespace].ruleset
    assert result is not None
    return result


def publish(redis_url: str, published: ruleset.Ruleset) -> int:
    async def go() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return (await versions.publish(client, published)).version
        finally:
            await client.aclose()

    return asyncio.run(go())


def edited_shop(tmp_path: Path) -> Path:
    copy = tmp_path / "shop"
    shutil.copytree(SHOP, copy)
    rules = copy / "rules.yaml"
    rules.write_text(rules.read_text().replace("rollout: {percentage: 50}", "rollout: {percentage: 100}"))
    return copy


@pytest.fixture
def stack_namespace() -> str:
    """A namespace of our own in the shared Redis (keys are per stack; nothing else sees them)."""
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_diff_against_the_published_ruleset(
    redis_url: str, stack_namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = f"{stack_namespace}/shop"
    args = ["--namespace", stack_namespace, "--stack", stack, "--redis-url", redis_url, "--format", "json"]
    assert main.main(["diff", str(SHOP), *args]) == 2  # nothing published yet: all new
    (first,) = orjson.loads(capsys.readouterr().out)
    assert first["baseline"] == f"nothing published for {stack}"
    assert first["counts"] == {"rules added": 5, "variants added": 9}

    version = publish(redis_url, compiled([SHOP], stack_namespace))
    assert main.main(["diff", str(SHOP), *args]) == 0
    (same,) = orjson.loads(capsys.readouterr().out)
    assert same["baseline"] == f"version {version} published for {stack}"
    assert same["changed"] is False

    assert main.main(["diff", str(edited_shop(tmp_path)), *args]) == 2
    (edited,) = orjson.loads(capsys.readouterr().out)
    (slot,) = edited["slots"]
    assert [(c["name"], c["fields"]) for c in slot["changes"]] == [
        ("abandoned-cart", [{"field": "rollout.percentage", "before": "50%", "after": "100%"}])
    ]


def test_diff_without_a_reachable_redis_is_an_error(
    stack_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main.main(
        [
            "diff",
            str(SHOP),
            "-n",
            stack_namespace,
            "--stack",
            f"{stack_namespace}/shop",
            "--redis-url",
            "redis://127.0.0.1:1/0",
        ]
    )
    assert code == 1
    assert f"cannot read the ruleset of {stack_namespace}/shop" in capsys.readouterr().err


def test_rollback_serves_an_earlier_version_under_a_new_number(
    redis_url: str,
    redis_client: redis.Redis,
    stack_namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = f"{stack_namespace}/shop"
    first = publish(redis_url, compiled([SHOP], stack_namespace))
    second = publish(redis_url, compiled([edited_shop(tmp_path)], stack_namespace))
    assert (first, second) == (1, 2)

    assert main.main(["rollback", "--stack", stack, "--list", "--redis-url", redis_url]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["v2", "v1"]
    assert listed[0].endswith("<- serving")

    assert main.main(["rollback", "--stack", stack, "--to", "1", "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{stack}: version 3 now serves the content of version 1 (was version 2)\n")
    served = versions.load_sync(redis_client, stack)
    assert served is not None
    assert served.version == 3
    assert served.checksum == compiled([SHOP], stack_namespace).sealed().checksum
    # What was rolled back to is what the Git manifests say: diff sees no change now (their namespace
    # defaults to the stack's).
    assert main.main(["diff", str(SHOP), "--stack", stack, "--redis-url", redis_url]) == 0
    capsys.readouterr()

    assert main.main(["rollback", "--stack", stack, "--to", "1", "--redis-url", redis_url]) == 0
    assert "already serves the content of version 1" in capsys.readouterr().out
    assert versions.current_version_sync(redis_client, stack) == 3

    assert main.main(["rollback", "--stack", stack, "--to", "77", "--redis-url", redis_url]) == 1
    assert "version 77 is not among the versions kept" in capsys.readouterr().err
