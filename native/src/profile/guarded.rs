//! The worker's guarded writes (tailor/core/profile/store.lua), gathered and packed here: each
//! user's changed fields are written as JSON straight into the RESP bytes of the function call,
//! instead of becoming Python bytes, joining a Python argument list and being packed from it.
//! The reference is tailor.core.profile.store.ReferenceCalls packed by hiredis: tests hold the bytes equal.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use super::{each_change, State};
use crate::resp::{push_bulk, push_header};

/// What marks an event counted in its user's profile: store.MARK_PREFIX + its id.
const MARK_PREFIX: &[u8] = b"#";

/// One `FCALL <function>` being gathered, a user at a time.
#[pyclass(module = "tailor_native")]
pub struct GuardedWrites {
    function: String,
    head: Vec<String>,
    keys: Vec<u8>, // RESP bulk strings
    key_count: usize,
    args: Vec<u8>,
    arg_count: usize,
    /// Users added since the last `take`.
    #[pyo3(get)]
    users: usize,
}

#[pymethods]
impl GuardedWrites {
    /// A call of `function` whose arguments start with `head` (now, TTLs, ...: store.lua).
    #[new]
    fn new(function: String, head: Vec<String>) -> Self {
        GuardedWrites {
            function,
            head,
            keys: Vec::with_capacity(8 * 1024),
            key_count: 0,
            args: Vec::with_capacity(128 * 1024),
            arg_count: 0,
            users: 0,
        }
    }

    /// Add a user's write: its profile's key, the version expected, its flags, and the ids of the
    /// events counted (marked as store.mark does); the new version and the changed fields
    /// come from `state` (as Plan.changes, whose flags this clears).
    fn add(
        &mut self,
        mut state: PyRefMut<'_, State>,
        key: &str,
        expected: &str,
        flags: &str,
        ids: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        push_bulk(&mut self.keys, key.as_bytes());
        self.key_count += 1;
        let state = &mut *state;
        let args = &mut self.args;
        push_bulk(args, expected.as_bytes());
        push_bulk(args, state.version.as_bytes());
        push_bulk(args, flags.as_bytes());
        let profile = &mut state.profile;
        let fields = 1 + usize::from(profile.sums_changed) + usize::from(profile.buckets_changed);
        push_bulk(args, itoa::Buffer::new().format(fields).as_bytes());
        each_change(profile, |name, value| {
            push_bulk(args, name.as_bytes());
            push_bulk(args, value);
        });
        push_bulk(args, itoa::Buffer::new().format(ids.len()).as_bytes());
        for id in ids.iter() {
            let id = id.cast::<PyString>()?.to_str()?.as_bytes();
            push_header(args, b'$', MARK_PREFIX.len() + id.len());
            args.extend_from_slice(MARK_PREFIX);
            args.extend_from_slice(id);
            args.extend_from_slice(b"\r\n");
        }
        self.arg_count += 3 + 1 + 2 * fields + 1 + ids.len();
        self.users += 1;
        Ok(())
    }

    /// The call's RESP bytes (as hiredis.pack_command of its arguments); starts the next call.
    fn take<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut start = Vec::with_capacity(256);
        push_header(
            &mut start,
            b'*',
            3 + self.key_count + self.head.len() + self.arg_count,
        );
        push_bulk(&mut start, b"FCALL");
        push_bulk(&mut start, self.function.as_bytes());
        push_bulk(
            &mut start,
            itoa::Buffer::new().format(self.key_count).as_bytes(),
        );
        let mut head = Vec::with_capacity(256);
        for value in &self.head {
            push_bulk(&mut head, value.as_bytes());
        }
        // Written once, into the bytes object itself.
        let parts = [&start, &self.keys, &head, &self.args];
        let call = PyBytes::new_with(py, parts.iter().map(|part| part.len()).sum(), |buffer| {
            let mut at = 0;
            for part in parts {
                buffer[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Ok(())
        })?;
        self.keys.clear();
        self.args.clear();
        (self.key_count, self.arg_count, self.users) = (0, 0, 0);
        Ok(call)
    }
}
