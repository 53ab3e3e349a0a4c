//! The lean event check (tailor.core.events_lean), compiled. To be written.

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
