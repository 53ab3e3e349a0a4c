"""Stopping exactly the processes we started, and never a stranger with a reused pid."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from tailor.devstack import ports, procs


def test_spawned_process_is_recorded_running_and_stopped_with_its_group(tmp_path: Path) -> None:
    # The child starts a grandchild; stopping the group must end both.
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    record = procs.spawn([sys.executable, "-c", script], log=tmp_path / "log")
    record.save(tmp_path / "pid.json")
    assert procs.ProcessRecord.load(tmp_path / "pid.json") == record
    assert procs.is_running(record)
    procs.stop(record, timeout=5)
    assert not procs.is_running(record)
    assert procs.group_members(record.pid) == []


def test_a_record_whose_start_time_differs_is_not_our_process(tmp_path: Path) -> None:
    record = procs.spawn(["sleep", "30"], log=tmp_path / "log")
    try:
        stranger = dataclasses.replace(record, start_ticks=record.start_ticks + 1)
        assert not procs.is_running(stranger)
        procs.stop(stranger, timeout=1)  # must not signal the real process
        assert procs.is_running(record)
    finally:
        procs.stop(record, timeout=5)


def test_unreadable_pid_file_loads_as_none(tmp_path: Path) -> None:
    (tmp_path / "pid.json").write_text("{not json")
    assert procs.ProcessRecord.load(tmp_path / "pid.json") is None
    assert procs.ProcessRecord.load(tmp_path / "missing.json") is None


def test_a_free_preferred_port_is_reused_and_a_taken_one_replaced() -> None:
    port = ports.pick(None)
    assert ports.pick(port) == port
    assert ports.pick(port, taken=[port]) != port
