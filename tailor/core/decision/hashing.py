"""Controlled randomness: every random choice the API makes is a hash of who and what it is for.

Rollout buckets, weighted and sticky rotation, and the bandit's draws all come from here, so a
decision is reproducible from its inputs (a rule's seed, the user, the session) and never from
process state. blake2b is in the standard library, keyed-hash quality, and fast enough for the hot path.
"""

from __future__ import annotations

import hashlib

_SEPARATOR = "\x1f"  # cannot appear in validated names, so ("ab", "c") and ("a", "bc") differ
_SCALE = float(1 << 64)


def hash64(*parts: str) -> int:
    """A 64-bit hash of `parts`, stable across processes and Python versions."""
    digest = hashlib.blake2b(_SEPARATOR.join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def unit(*parts: str) -> float:
    """A uniform number in [0, 1) determined by `parts`."""
    return hash64(*parts) / _SCALE


def percent_bucket(*parts: str) -> float:
    """A uniform number in [0, 100): compared with a rollout percentage."""
    return unit(*parts) * 100.0
