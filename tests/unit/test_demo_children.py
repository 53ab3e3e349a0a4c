"""The demo's children are stopped with everything they started (granian forks the API's workers)."""

import os
import signal
import sys
import time
from pathlib import Path

from tailor.demo.children import Child

# A child that forks a grandchild ignoring SIGTERM, writes its pid, then exits on SIGTERM at once:
# without care for the process group the grandchild would outlive it.
PARENT = """
import os, signal, sys, time
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)
open(sys.argv[1], "w").write(str(pid))
while True:
    time.sleep(1)
"""


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_stopping_a_child_stops_what_it_forked(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    child = Child("forker", [sys.executable, "-c", PARENT, str(pid_file)], dict(os.environ), tmp_path / "log")
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, child.tail()
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert running(grandchild)

    assert child.stop(grace=5) == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(grandchild), "the forked grandchild outlived the stopped child"
