"""The worker's /healthz from its loop's progress, and its cache sized from the memory limit."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from tailor_worker import liveness, metrics, settings

URL = "redis://r:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_healthz_fails_once_the_loop_stalls_longer_than_allowed_and_recovers_on_the_next_beat() -> None:
    clock = Clock()
    progress = liveness.Progress(30, clock)
    server = metrics.serve(0, "127.0.0.1", lambda: (True, "reading"), progress.check)
    try:
        port = server.server_port
        assert status(port, "/healthz")[0] == 200
        clock.now += 30
        assert status(port, "/healthz")[0] == 200  # at the limit still
        clock.now += 1
        code, body = status(port, "/healthz")
        assert code == 503
        assert "no progress of the consume loop for 31s (allowed 30s)" in body
        # Readiness and metrics are answered on the same port whatever the loop does.
        assert status(port, "/readyz")[0] == 200
        code, body = status(port, "/metrics")
        assert code == 200
        assert "tailor_worker_events_over_user_cap_total" in body
        progress.beat()
        assert status(port, "/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_the_cache_is_sized_from_the_memory_limit_unless_set() -> None:
    mib = 1024 * 1024
    sized = settings.WorkerSettings(redis_url=URL, memory_limit_bytes=512 * mib)
    fits = sized.cache_size()
    # The old fixed default did not fit 512 Mi; what is chosen does, with the reserve left over.
    room = 512 * mib - settings.RESERVED_BYTES
    assert room < 20_000 * settings.BYTES_PER_CACHED_USER
    assert fits * settings.BYTES_PER_CACHED_USER <= room * settings.CACHE_SHARE
    assert settings.WorkerSettings(redis_url=URL, memory_limit_bytes=2048 * mib).cache_size() > fits
    assert settings.WorkerSettings(redis_url=URL, memory_limit_bytes=64 * mib).cache_size() == 1_000
    chosen = settings.WorkerSettings(redis_url=URL, memory_limit_bytes=512 * mib, cache_users=7)
    assert chosen.cache_size() == 7
    assert settings.WorkerSettings(redis_url=URL).cache_size() == settings.DEFAULT_CACHE_USERS


def test_caps_and_timeouts_refuse_values_that_cannot_work() -> None:
    for field in ("events_per_user_per_minute", "dedup_marks_per_user", "liveness_stall_seconds",
                  "redis_socket_timeout_seconds"):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            settings.WorkerSettings(redis_url=URL, **{field: 0})
