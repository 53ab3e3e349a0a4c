"""Type stubs for tailor_native, the compiled worker hot path (native/src). Python reference:
tailor.core.events_lean and tailor.core.profile_state."""

from collections.abc import Sequence

from tailor.core import profile_store

class EventReader:
    """The lean event check (tailor.core.events_lean.python_occurrence) for one set of dimensions.
    Its limits are read from tailor.core.events when it is made."""

    def __init__(self, dimensions: Sequence[str]) -> None: ...
    def occurrence(self, raw: bytes | str, ingested_at: float) -> profile_store.Occurrence | None:
        """What is counted of the event in `raw`, or None when not sure it is valid."""
