"""Starting component processes detached, and stopping exactly the ones we started.

Each process runs in its own session (so it survives the CLI that started it and gets its
own process group) with output appended to its log. Its pid file records the pid and the
kernel's start time of that pid; a stop signals the group only when both still match, so a
recycled pid that now belongs to someone else is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

#: Children of this Python process with their start ticks, reaped when they stop.
_CHILDREN: dict[int, tuple[subprocess.Popen[bytes], int]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies a started process: pid, its start time in clock ticks, its argv."""

    pid: int
    start_ticks: int
    argv: list[str]
    log: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(
                pid=int(data["pid"]),
                start_ticks=int(data["start_ticks"]),
                argv=[str(arg) for arg in data["argv"]],
                log=str(data["log"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    # Field 22 of stat is starttime; after "pid (comm)" it is index 19.
    return int(fields[19]) if fields else None


def is_running(record: ProcessRecord) -> bool:
    """True when ``record``'s process still exists, is the same process, and is no zombie."""
    fields = _stat_fields(record.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == record.start_ticks


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start ``argv`` detached in a new session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        sink.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        sink.flush()
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    ticks = start_ticks(child.pid) or 0
    _CHILDREN[child.pid] = (child, ticks)
    return ProcessRecord(pid=child.pid, start_ticks=ticks, argv=list(argv), log=str(log))


def exited(record: ProcessRecord) -> bool:
    """True once the process is gone, reaping it when it is a child of this process.

    For our own children only ``waitpid`` (``poll``) tells: the main thread of a
    multi-threaded program (Go, Java) shows as a zombie in /proc while its other threads
    are still exiting, and cannot be reaped until they have.
    """
    child, ticks = _CHILDREN.get(record.pid, (None, 0))
    if child is not None and ticks == record.start_ticks:
        if child.poll() is None:
            return False
        del _CHILDREN[record.pid]
        return True
    return not is_running(record)


def stop(record: ProcessRecord, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group of ``record``, wait, then SIGKILL what is left."""
    if exited(record):
        return
    _signal_group(record, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited(record):
            return
        time.sleep(0.05)
    if not exited(record):
        _signal_group(record, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not exited(record):
        time.sleep(0.05)


def _signal_group(record: ProcessRecord, sig: int) -> None:
    """Signal the group the process leads (it was started as a session leader)."""
    try:
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass


def group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # After the command name: state, ppid, pgrp.
        if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def rss_kib(pid: int) -> int:
    """Resident memory of one process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def group_rss_kib(pgid: int) -> int:
    """Resident memory of a whole process group in KiB."""
    return sum(rss_kib(pid) for pid in group_members(pgid))
