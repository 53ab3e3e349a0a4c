"""Whether the compiled hot path (tailor_native, built from native/ by scripts/setup.sh) is used.

It is used when it is built, unless TAILOR_NATIVE=off: the Python references (tailor.core.events.lean_check,
tailor.core.profile.state) then do the same work at several times the CPU — a way to rule the
compiled code out when something looks wrong, and to compare the two in one benchmark.
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
