"""The compiled command packer (native/src/resp.rs) writes exactly what hiredis.pack_command writes."""

from __future__ import annotations

from typing import Any

import hiredis
import native_marks
import pytest
from hypothesis import given
from hypothesis import strategies as st

tailor_native = pytest.importorskip("tailor_native", reason=native_marks.MISSING)

ARGUMENTS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100),
    st.integers(),  # beyond 64 bits too
    st.floats(allow_nan=False),
)


@given(st.lists(ARGUMENTS, min_size=1, max_size=40))
def test_the_packed_bytes_are_hiredis_bytes(arguments: list[Any]) -> None:
    command = ("FCALL", *arguments)
    assert tailor_native.pack_command(command) == hiredis.pack_command(command)


def test_a_large_guarded_write_packs_alike() -> None:
    command = ("FCALL", "tailor_profile_write", 2, "k1", "k2", *([b"x" * 5000, 12, "é", 1.5] * 50))
    assert tailor_native.pack_command(command) == hiredis.pack_command(command)


@pytest.mark.parametrize("argument", [None, True, [1], {"a": 1}])
def test_what_hiredis_refuses_is_refused(argument: Any) -> None:
    with pytest.raises(TypeError, match="str, int, float or bytes"):
        tailor_native.pack_command(("SET", argument))
    with pytest.raises(TypeError):
        hiredis.pack_command(("SET", argument))
