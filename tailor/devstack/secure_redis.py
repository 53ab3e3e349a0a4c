"""A redis-server that speaks only TLS and knows only an ACL user: for the tests and benchmarks of
Redis security (docs/operating.md#redis-security), beside the dev stack's plain Redis.

Debian's redis-server is built with TLS. This one listens on a TLS port only (`port 0`), presents a
certificate for 127.0.0.1 (not localhost) signed by a throwaway CA (tailor.devstack.certs), accepts a
client certificate from that CA when one is presented (`tls-auth-clients optional`), and has its
default user switched off. Tailor logs in as USER with PASSWORD, which holds the characters a URL
would have to encode (@ : / %), and with the least rights docs/operating.md#redis-security
recommends (its keys and channels, no dangerous commands); ADMIN may do anything (the tests'
hand). A second CA (`other_ca`) signed nothing this server shows: trusting only it is what an
untrusted server certificate looks like.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography.hazmat.primitives import serialization

from tailor.core import redis_target
from tailor.devstack import certs, ports

USER = "tailor-app"
PASSWORD = "p@ss:w/rd%40;x"  # %40 stays three characters: nothing decodes it
# The ACL rules docs/operating.md#redis-security gives for Tailor's user.
RULES = "~tailor:* &tailor:* +@all -@dangerous"
ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"


@dataclass(frozen=True)
class SecureRedis:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    tls: bool = True  # False: the same server on a plain port (the benchmarks' comparison)

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def other_ca(self) -> Path:
        return self.directory / "other-ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def target(
        self, *, password: str = PASSWORD, ca: Path | None = None, client_pair: bool = True, user: str = USER
    ) -> redis_target.RedisTarget:
        """Logged in as USER, trusting `ca` (default: the one that signed the server's certificate)."""
        return redis_target.RedisTarget.parse(
            self.url,
            username=user,
            password=ADMIN_PASSWORD if user == ADMIN else password,
            ca_file=str(ca or self.ca) if self.tls else None,
            cert_file=str(self.client_cert) if client_pair and self.tls else None,
            key_file=str(self.client_key) if client_pair and self.tls else None,
        )

    def cpu_seconds(self) -> float:
        """CPU the server has used (its main thread and TLS work alike), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def write_pki(directory: Path) -> None:
    """The CA, the server's and a client's certificates and keys, and an unrelated CA."""
    ca_cert, ca_key = certs.make_ca()
    other_ca, _ = certs.make_ca()
    _write(directory / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(directory / "other-ca.crt", other_ca.public_bytes(serialization.Encoding.PEM))
    for name, (cert, key) in {
        "server": certs.issue(ca_cert, ca_key, "tailor-test-redis", ("127.0.0.1",)),
        "client": certs.issue(ca_cert, ca_key, USER, client=True),
    }.items():
        _write(directory / f"{name}.crt", cert)
        _write(directory / f"{name}.key", key)


def config(directory: Path, port: int, extra: tuple[str, ...] = (), *, tls: bool = True) -> str:
    listen = [
        "port 0",  # no plain-text port at all
        f"tls-port {port}",
        f"tls-cert-file {directory / 'server.crt'}",
        f"tls-key-file {directory / 'server.key'}",
        f"tls-ca-cert-file {directory / 'ca.crt'}",
        "tls-auth-clients optional",
    ]
    return "\n".join(
        [
            "bind 127.0.0.1",
            *(listen if tls else [f"port {port}"]),
            f"dir {directory}",
            f"logfile {directory / 'redis.log'}",
            'save ""',
            "appendonly no",
            "user default off",
            f"user {USER} on >{PASSWORD} {RULES}",
            f"user {ADMIN} on >{ADMIN_PASSWORD} ~* &* +@all",
            *extra,
            "",
        ]
    )


def start(
    directory: Path, *, extra: tuple[str, ...] = (), tls: bool = True, timeout: float = 15.0
) -> SecureRedis:
    """Start it on a free port; returns once the ACL user's PING answers. `extra`: more redis.conf
    lines (appendonly, appendfsync: the benchmarks); `tls=False`: the same server without TLS."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (scripts/apt-packages.sh installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    write_pki(directory)
    port = ports.pick(None)
    (directory / "redis.conf").write_text(config(directory, port, extra, tls=tls))
    process = subprocess.Popen(
        [server, str(directory / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    running = SecureRedis(directory, port, process, tls)
    client = running.target().client(socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return running
            except redis.ConnectionError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    running.stop()
                    raise RuntimeError(
                        f"redis-server with TLS did not answer: {error}\n{running.log()}"
                    ) from None
                time.sleep(0.05)
    finally:
        client.close()
