"""`tailor dev` behaviour that needs no running stack: messages and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailor.cli import main
from tailor.devstack import Stack, procs, toolchain
from tailor.devstack.endpoints import Endpoints


def test_missing_toolchain_gets_one_line_naming_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find
    monkeypatch.setattr(toolchain, "_EXTRA_DIRS", ())
    monkeypatch.setenv("TAILOR_CACHE", str(tmp_path / "cache"))
    code = main.main(["dev", "--home", str(tmp_path), "build"])
    err = capsys.readouterr().err
    assert code == 1
    assert "`go` was not found" in err
    assert "install Go" in err
    assert "Traceback" not in err


def test_env_of_a_stack_never_started_says_to_run_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(["dev", "--home", str(tmp_path), "env"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "tailor dev up" in captured.err


def test_env_prints_exports_of_the_recorded_endpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack("s1", tmp_path)
    stack.state.own = Endpoints(kubeconfig="/k", kafka_bootstrap="127.0.0.1:1")
    stack.state.external = Endpoints(redis_url="redis://example:6379/0")
    stack.state.save(stack.paths.state_file)
    assert main.main(["dev", "--home", str(tmp_path), "--name", "s1", "env"]) == 0
    tools = stack.paths.root / "bin"  # helm and kubectl for PATH (tests/unit/test_cli_dev_env.py)
    assert capsys.readouterr().out == (
        "export KUBECONFIG=/k\n"
        "export TAILOR_KAFKA_BOOTSTRAP=127.0.0.1:1\n"
        "export TAILOR_REDIS_URL=redis://example:6379/0\n"
        f'case ":$PATH:" in *:{tools}:*) ;; *) export PATH={tools}:"$PATH" ;; esac\n'
    )


def test_down_of_a_stack_never_started_is_a_no_op(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["dev", "--home", str(tmp_path), "down"]) == 0
    assert "nothing was running" in capsys.readouterr().err


def test_switching_redis_kind_while_the_stack_runs_says_to_run_down_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack("s1", tmp_path)
    stack.state.redis = "cluster"
    stack.state.components = ["redis-cluster-0"]
    stack.state.save(stack.paths.state_file)
    sleeper = procs.spawn(["sleep", "60"], log=tmp_path / "sleep.log")  # stands in for a running node
    sleeper.save(stack.paths.pid_file("redis-cluster-0"))
    try:
        assert main.main(["dev", "--home", str(tmp_path), "--name", "s1", "up", "--redis", "single"]) == 1
    finally:
        procs.stop(sleeper, timeout=5.0)
    error = capsys.readouterr().err
    assert "runs with --redis cluster" in error
    assert "run `tailor dev down` first, then `tailor dev up --redis single`" in error
