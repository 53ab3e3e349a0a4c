//! Tailor's worker hot path, compiled: what `tailor.core.events.lean_check` and
//! `tailor.core.profile.counting` do per event, at a fraction of the interpreter's cost. Two classes
//! face Python, each called with plain values and answering with them: `EventReader` (a batch of
//! messages in, occurrences per user out) and `Counting` (a profile's state, the counting into it, its
//! guarded write as one call's RESP bytes). The Python modules stay the reference: tests hold this
//! crate to them on generated inputs.

use pyo3::prelude::*;

mod event;
mod profile;

#[pymodule]
fn tailor_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    event::register(m)?;
    profile::register(m)?;
    Ok(())
}
