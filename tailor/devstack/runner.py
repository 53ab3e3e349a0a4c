"""Running build commands with their output in a log file, and failing with its tail."""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tailor.devstack.errors import BuildFailed


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def run_logged(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    what: str,
) -> str:
    """Run ``cmd`` appending stderr to ``log``; return stdout; raise BuildFailed on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(cmd)}   (in {cwd})\n")
        sink.flush()
        result = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            check=False,
        )
        sink.write(result.stdout)
    if result.returncode != 0:
        raise BuildFailed(
            f"{what} failed (exit {result.returncode}); full log: {log}\n--- last lines ---\n{tail(log)}"
        )
    return result.stdout


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive file lock so two processes never build the same artifact at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
