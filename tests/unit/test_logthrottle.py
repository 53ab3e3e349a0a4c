import logging

from tailor.core.logthrottle import RepeatThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("kafka", logging.ERROR, __file__, 1, message, args, None)


def test_a_repeated_message_passes_once_per_interval_with_the_count_of_those_held_back() -> None:
    clock = Clock()
    throttle = RepeatThrottle(interval_seconds=10, clock=clock)
    assert throttle.filter(record("Connect to %s failed", "127.0.0.1:9092"))
    held = [throttle.filter(record("Connect to %s failed", "127.0.0.1:9092")) for _ in range(200)]
    assert not any(held)
    clock.now += 10
    summary = record("Connect to %s failed", "127.0.0.1:9092")
    assert throttle.filter(summary)
    assert summary.getMessage() == "Connect to 127.0.0.1:9092 failed (repeated 200 times in the last 10s)"


def test_different_messages_are_throttled_apart_and_a_percent_sign_survives_the_summary() -> None:
    clock = Clock()
    throttle = RepeatThrottle(interval_seconds=5, clock=clock)
    assert throttle.filter(record("disk 100% full"))
    assert throttle.filter(record("broker down"))
    assert not throttle.filter(record("disk 100% full"))
    clock.now += 6
    again = record("disk 100% full")
    assert throttle.filter(again)
    assert again.getMessage() == "disk 100% full (repeated 1 times in the last 6s)"
