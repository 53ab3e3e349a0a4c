"""The one switch between the worker's compiled hot path (tailor_native, built from native/ by
scripts/setup.sh) and its Python reference.

The compiled path is used when it is built, unless TAILOR_NATIVE=off: the Python references then do
the same work at several times the CPU — a way to rule the compiled code out when something looks
wrong, and to compare the two in one benchmark. Each boundary asks `enabled()` in one place, its
factory: `tailor.core.events.lean_check.reader` (a batch of messages in, occurrences out) and
`tailor.core.profile.counting.counting` (the profile counting and its guarded writes). Nothing else
chooses, and nothing is passed down to choose: tests that want the reference set TAILOR_NATIVE.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Final

ENV: Final = "TAILOR_NATIVE"
_OFF: Final = frozenset({"0", "off", "false", "no"})

BUILT: Final = importlib.util.find_spec("tailor_native") is not None


def enabled() -> bool:
    """Built, and not switched off with TAILOR_NATIVE=off."""
    return BUILT and os.environ.get(ENV, "").strip().lower() not in _OFF
