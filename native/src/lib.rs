//! Tailor's worker hot path, compiled: what `tailor.core.events.lean_check` and `tailor.core.profile.state`
//! do per event — and the packing of the Redis commands that carry it — at a fraction of the interpreter's cost. The Python modules stay the reference:
//! tests hold this crate to them on generated inputs.

use pyo3::prelude::*;

mod event;
mod occurrence;
mod profile;
mod resp;

#[pymodule]
fn tailor_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    event::register(m)?;
    profile::register(m)?;
    resp::register(m)?;
    Ok(())
}
