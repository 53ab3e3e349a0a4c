"""Redis from Debian's redis-server, on its own port and directory (not the system service)."""

from __future__ import annotations

from pathlib import Path

from tailor.devstack import nodenet, probes
from tailor.devstack.components.base import Component


def redis_conf(port: int, directory: Path, also_bind: str | None = None) -> str:
    """redis.conf on loopback; ``also_bind``: the real node's address, where pods reach it."""
    return "\n".join(
        [
            f"bind 127.0.0.1 {also_bind}" if also_bind else "bind 127.0.0.1",
            # Protected mode refuses every client not on loopback when there is no password;
            # the node's address is reached only by pods on this machine.
            f"protected-mode {'no' if also_bind else 'yes'}",
            f"port {port}",
            f"dir {directory}",
            "daemonize no",
            'logfile ""',
            # Durability is the point of the reliability tests (docs/architecture.md §13): the AOF logs
            # every write, and `appendfsync always` fsyncs it before Redis acknowledges the
            # write, so an acknowledged write survives SIGKILL of the server. Slower than
            # `everysec`, which could lose the last second.
            "appendonly yes",
            "appendfsync always",
            # No RDB snapshots: the AOF alone is the record, and forks would add latency.
            'save ""',
            "",
        ]
    )


class Redis(Component):
    name = "redis"
    port_keys = ("redis",)
    start_timeout = 30.0

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.context.port('redis')}/0"

    def pod_url(self) -> str:
        """Where pods on the real node reach Redis (the node's address, same port)."""
        return f"redis://{nodenet.GATEWAY}:{self.context.port('redis')}/0"

    def endpoint(self) -> str:
        return self.url()

    @property
    def config(self) -> Path:
        return self.data_dir / "redis.conf"

    def prepare(self) -> None:
        also_bind = nodenet.GATEWAY if self.context.real_node else None
        self.config.write_text(redis_conf(self.context.port("redis"), self.data_dir, also_bind))

    def argv(self) -> list[str]:
        return [str(self.context.tools.redis_server), str(self.config)]

    def healthy(self) -> bool:
        return probes.redis_ping(self.context.port("redis"))
