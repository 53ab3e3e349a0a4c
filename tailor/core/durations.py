"""Window durations written the way Kubernetes and CEL's duration() write them: "90s", "5m", "1h30m"."""

import re

_PART = re.compile(r"(\d+)(h|m|s)")
_WHOLE = re.compile(r"^(?:\d+(?:h|m|s))+$")
_SECONDS = {"h": 3600, "m": 60, "s": 1}


def parse_seconds(text: str) -> int:
    """Seconds in a duration such as "30m" or "1h30m"; ValueError says what a valid one looks like."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration: use whole hours, minutes, seconds like 5m, 24h, 1h30m")
    seconds = sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def format_seconds(seconds: int) -> str:
    """The shortest duration text for a number of seconds (3600 -> "1h", 90 -> "1m30s")."""
    parts = []
    for unit, size in _SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
