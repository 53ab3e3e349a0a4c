//! The worker's guarded writes (tailor/core/profile/store.lua), gathered and packed here: each
//! user's changed fields are written as JSON straight into the RESP bytes of the function call,
//! instead of becoming Python bytes, joining a Python argument list and being packed from it.
//! The reference is tailor.core.profile.counting.ReferenceCall (hiredis packs it); tests hold the
//! two calls to the same arguments.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use super::{each_change, State};

/// One `FCALL <function>` being gathered, a user at a time (`Counting.guarded_call` makes it).
#[pyclass(module = "tailor_native")]
pub struct GuardedCall {
    function: String,
    head: Vec<String>,
    mark_prefix: String,
    keys: Vec<u8>, // RESP bulk strings: the first user's profile (the call's route)
    key_count: usize,
    args: Vec<u8>,
    arg_count: usize,
    /// Users added since the last `take`.
    #[pyo3(get)]
    users: usize,
}

impl GuardedCall {
    /// A call of `function` whose arguments start with `head` (now, TTLs, ...: store.lua); an event's
    /// mark is `mark_prefix` and its id.
    pub fn new(function: String, head: Vec<String>, mark_prefix: String) -> Self {
        GuardedCall {
            function,
            head,
            mark_prefix,
            keys: Vec::with_capacity(256),
            key_count: 0,
            args: Vec::with_capacity(128 * 1024),
            arg_count: 0,
            users: 0,
        }
    }
}

#[pymethods]
impl GuardedCall {
    /// Add a user's write: its profile's key (the first user's is also the call's one declared key),
    /// the version expected and the new one, its flags, and the ids of the events counted (marked);
    /// its changed fields come from `state` (whose flags this clears).
    fn add(
        &mut self,
        mut state: PyRefMut<'_, State>,
        key: &str,
        expected: &str,
        version: &str,
        flags: &str,
        ids: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        if self.key_count == 0 {
            // The call's route (store.lua: KEYS); each user's profile is among the arguments.
            push_bulk(&mut self.keys, key.as_bytes());
            self.key_count = 1;
        }
        let args = &mut self.args;
        push_bulk(args, key.as_bytes());
        push_bulk(args, expected.as_bytes());
        push_bulk(args, version.as_bytes());
        push_bulk(args, flags.as_bytes());
        let profile = &mut state.profile;
        let fields = 1 + usize::from(profile.sums_changed) + usize::from(profile.buckets_changed);
        push_bulk(args, itoa::Buffer::new().format(fields).as_bytes());
        each_change(profile, |name, value| {
            push_bulk(args, name.as_bytes());
            push_bulk(args, value);
        });
        push_bulk(args, itoa::Buffer::new().format(ids.len()).as_bytes());
        let prefix = self.mark_prefix.as_bytes();
        for id in ids.iter() {
            let id = id.cast::<PyString>()?.to_str()?.as_bytes();
            push_header(args, b'$', prefix.len() + id.len());
            args.extend_from_slice(prefix);
            args.extend_from_slice(id);
            args.extend_from_slice(b"\r\n");
        }
        self.arg_count += 4 + 1 + 2 * fields + 1 + ids.len();
        self.users += 1;
        Ok(())
    }

    /// The call's RESP bytes; starts the next call.
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

/// Appends `<kind><length>\r\n`.
fn push_header(out: &mut Vec<u8>, kind: u8, length: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `value` as a RESP bulk string.
fn push_bulk(out: &mut Vec<u8>, value: &[u8]) {
    push_header(out, b'$', value.len());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
