"""A Kinesis Data Streams emulator for tests and benchmarks: moto's server mode (`moto_server`, from
the `moto[server]` dev extra) on a free 127.0.0.1 port, spoken to with boto3 exactly as AWS is
(docs/kinesis.md says what it cannot show). Started only by what asks for it (the `kinesis` pytest
fixture); the dev stack itself does not run it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tailor.devstack import ports

# moto accepts any credentials; boto3 wants some to sign with.
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class KinesisEmulator:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://{ports.HOST}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(directory: Path, wait_seconds: float = 30.0) -> KinesisEmulator:
    """moto's server, answering once this returns; RuntimeError with its log when it does not start."""
    port = ports.pick(None)
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    command = [executable] if executable else [sys.executable, "-m", "moto.server"]
    log = directory / "moto.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "-H", ports.HOST, "-p", str(port)], stdout=output, stderr=subprocess.STDOUT
        )
    emulator = KinesisEmulator(port, process, log)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            # moto's own dashboard API: answers once the server serves requests.
            with urllib.request.urlopen(f"{emulator.endpoint}/moto-api/data.json", timeout=2):
                return emulator
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    emulator.stop()
    raise RuntimeError(f"moto_server did not answer on {emulator.endpoint}:\n{log.read_text()[-3000:]}")
