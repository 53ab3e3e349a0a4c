"""For the tests that need the compiled hot path, tailor_native (built from native/ by
scripts/setup.sh): without it they skip and say so; everything else runs on the Python references.

    tailor_native = pytest.importorskip("tailor_native", reason=native_marks.MISSING)  # a whole module
    @native_marks.needs_native                                                          # one test
"""

from __future__ import annotations

import pytest

from tailor.core import native

MISSING = "tailor_native (native/, the compiled hot path) is not importable: build it with scripts/setup.sh"
needs_native = pytest.mark.skipif(not native.BUILT, reason=MISSING)
