"""The demo's child processes (`tailor operator`, `tailor worker`, `tailor api`): start, watch, stop.

Each child runs in its own session, so the terminal's Ctrl-C reaches only the demo, which then stops
the children in reverse order of start with SIGTERM (the API drains, the worker commits its offsets,
the operator leaves its watches) and SIGKILL after a grace period. On Linux each child also asks the
kernel for SIGTERM when the demo dies without cleaning up (PR_SET_PDEATHSIG), so no orphan keeps a
port or a consumer-group membership.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 15.0


class ChildExited(RuntimeError):
    """A child stopped on its own; the message names it and ends with its log's tail."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: the demo's own cleanup still stops the child


def tailor_command(*args: str) -> list[str]:
    """`tailor ARGS…` with this interpreter (the demo's own install)."""
    return [sys.executable, "-m", "tailor.cli.main", *args]


class Child:
    """One subprocess in a session of its own, with its output in a log file."""

    def __init__(self, name: str, command: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._sink: IO[bytes] = log.open("wb")  # one run per file: the tail is this run's
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=self._sink,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None if it could not be reaped).

        Signals go to the child's whole process group (its own session): `tailor api` serves from
        processes granian forks, and one forked while the API was stopping would outlive it."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    return None
        self._signal_group(signal.SIGKILL)  # whatever of the group is left once the child is gone
        self._sink.close()
        return self.process.returncode

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


class Children:
    """The demo's children, in start order."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.started: list[Child] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        command = tailor_command(*args)
        child = Child(name, command, {**self.env, **(env or {})}, self.log_dir / f"demo-{name}.log")
        self.started.append(child)
        return child

    def check(self) -> None:
        """Raise ChildExited if any child has stopped."""
        for child in self.started:
            if not child.alive():
                raise ChildExited(
                    f"`tailor {child.name}` exited with code {child.process.returncode}; "
                    f"its log is {child.log}:\n{child.tail()}"
                )

    def stop_all(self) -> list[str]:
        """Stop every child, the last started first; names of those that needed SIGKILL or failed."""
        troubled = []
        for child in reversed(self.started):
            began = time.monotonic()
            code = child.stop()
            if code is None or code == -signal.SIGKILL or time.monotonic() - began >= STOP_GRACE_SECONDS:
                troubled.append(child.name)
        self.started.clear()
        return troubled


def environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The children's environment: ours, the stack's endpoints, unbuffered Python output for the logs."""
    return {**base, **extra, "PYTHONUNBUFFERED": "1"}
