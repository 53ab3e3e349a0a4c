//! One user's profile state and the counting into it (tailor.core.profile_state), compiled. To be written.

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
