"""Free TCP ports on 127.0.0.1, preferring the ones a stack used before.

Reusing a stack's previous ports keeps endpoints stable across `down`/`up`, so an already
exported ``TAILOR_KAFKA_BOOTSTRAP`` or kubeconfig keeps working.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

HOST = "127.0.0.1"


def is_free(port: int, *, reuse_address: bool = False) -> bool:
    """True when nothing listens on ``port`` (bind without SO_REUSEADDR to be strict; with
    ``reuse_address``, connections of a stopped server lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if reuse_address:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def pick(preferred: int | None, taken: Iterable[int] = ()) -> int:
    """``preferred`` when it is free and not taken, else a fresh port from the kernel."""
    taken_set = set(taken)
    if preferred and preferred not in taken_set and is_free(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if port not in taken_set:
            return port
