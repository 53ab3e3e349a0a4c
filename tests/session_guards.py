"""Guards that keep one test's leftovers out of the others: CI runs every module in one process.

Registered by tests/conftest.py. Each guard fails the test, module or session that leaked, naming
what it left, and cleans up so that the rest of the run is not affected:

- os.environ: a test that changes it and does not restore it errors at teardown (the change is undone).
- a running asyncio event loop left in the main thread after a module (Playwright's sync API did that).
- processes: everything the session starts inherits TAILOR_TEST_SESSION=<id>; whatever still runs
  once every fixture has been torn down is listed, killed by pid, and fails the session.
- on a pytest-timeout, every asyncio task of the hung test's loop is printed with its await chain
  before pytest-timeout's thread dump: the thread dump alone shows only an idle event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

SESSION_MARK = "TAILOR_TEST_SESSION"
EXIT_GRACE_SECONDS = 10.0  # a process stopped by the last teardown may still be exiting


# --- os.environ --------------------------------------------------------------------------------


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def _environment_is_restored() -> Iterator[None]:
    before = _environment()
    yield
    after = _environment()
    if after != before:
        for name in after.keys() - before.keys():
            del os.environ[name]
        os.environ.update(before)
        changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        pytest.fail(
            f"the test changed os.environ and did not restore it (use monkeypatch.setenv): {changed}",
            pytrace=False,
        )


# --- event loops -------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _no_event_loop_outlives_its_module() -> Iterator[None]:
    yield
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    pytest.fail(
        f"an event loop ({loop!r}) is still running in the main thread after this module: every later "
        "test that calls asyncio.run() would fail",
        pytrace=False,
    )


# --- processes ---------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    # A fresh id per session, even when pytest runs inside a test: a session only answers for its own.
    config.stash[_previous_mark] = os.environ.get(SESSION_MARK)
    os.environ[SESSION_MARK] = uuid.uuid4().hex


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_previous_mark, None)
    if previous is None:
        os.environ.pop(SESSION_MARK, None)
    else:
        os.environ[SESSION_MARK] = previous


_previous_mark = pytest.StashKey[str | None]()


def session_processes(mark: str) -> dict[int, str]:
    """pid -> command line of the live processes (zombies excluded) that carry `mark`."""
    needle = f"{SESSION_MARK}={mark}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        proc = Path(entry.path)
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if state not in ("Z", "X"):
            found[int(entry.name)] = command.strip()[:300]
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every fixture is torn down by now: nothing this session started may still run."""
    mark = os.environ.get(SESSION_MARK)
    if not mark or not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    left = session_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = session_processes(mark)
    if not left:
        return
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    reporter: Any = session.config.pluginmanager.get_plugin("terminalreporter")
    heading = f"{len(left)} processes started by this test session were still running at its end (killed):"
    message = "\n".join([heading, *(f"  pid {pid}: {command}" for pid, command in sorted(left.items()))])
    if reporter is not None:
        reporter.write_sep("=", "leaked processes", red=True)
        reporter.write_line(message)
    else:
        sys.stderr.write(message + "\n")
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- timeouts ----------------------------------------------------------------------------------


def print_tasks(loop: asyncio.AbstractEventLoop, file: TextIO) -> None:
    """Every unfinished task of `loop`, with the chain of coroutines each is suspended in."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    file.write(f"\n{'+' * 30} {len(tasks)} asyncio tasks {'+' * 30}\n")
    for task in tasks:
        file.write(f"{task!r} (cancel requests: {task.cancelling()})\n")
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            frame = frame or getattr(awaited, "gi_frame", None)
            if frame is None:
                file.write(f"    {awaited!r}\n")
            else:
                file.write(f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}\n")
            awaited = (
                getattr(awaited, "cr_await", None)
                or getattr(awaited, "ag_await", None)
                or getattr(awaited, "gi_yieldfrom", None)
            )


@pytest.hookimpl(wrapper=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Any:
    result = yield
    on_timeout = signal.getsignal(signal.SIGALRM)
    if settings.method == "signal" and callable(on_timeout):

        def dump_tasks_first(signum: int, frame: Any) -> None:
            # The handler runs in the main thread, inside the loop the test hangs in (if any).
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                print_tasks(loop, sys.stderr)
            on_timeout(signum, frame)

        signal.signal(signal.SIGALRM, dump_tasks_first)
    return result
