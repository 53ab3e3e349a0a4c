"""Type stubs for tailor_native, the compiled worker hot path (native/src). Python reference:
tailor.core.events_lean and tailor.core.profile_state."""
