//! Redis commands packed into RESP, as `hiredis.pack_command` does, at memory speed.
//!
//! The worker's guarded writes are function calls of a few hundred arguments, several of them a few
//! kilobytes of JSON. hiredis's per-argument overhead and copies make packing them a large share of
//! the worker's time (docs/pipeline.md); this measures the command first, then writes it straight
//! into the one bytes object it returns.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString, PyTuple};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pack_command, m)?)
}

/// One argument's text: borrowed from its Python object, or formatted here (numbers).
enum Text<'a> {
    Borrowed(&'a [u8]),
    Formatted(Vec<u8>),
}

impl Text<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Text::Borrowed(bytes) => bytes,
            Text::Formatted(bytes) => bytes,
        }
    }
}

/// The RESP bytes of `args` (str, int, float or bytes each), identical to `hiredis.pack_command`.
#[pyfunction]
fn pack_command<'py>(py: Python<'py>, args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyBytes>> {
    let objects: Vec<Bound<'py, PyAny>> = args.iter().collect();
    let texts = objects
        .iter()
        .map(text_of)
        .collect::<PyResult<Vec<Text>>>()?;
    let mut size = header_size(texts.len());
    for text in &texts {
        size += header_size(text.bytes().len()) + text.bytes().len() + 2;
    }
    PyBytes::new_with(py, size, |buffer| {
        let mut at = header(buffer, 0, b'*', texts.len());
        for text in &texts {
            let value = text.bytes();
            at = header(buffer, at, b'$', value.len());
            buffer[at..at + value.len()].copy_from_slice(value);
            buffer[at + value.len()..at + value.len() + 2].copy_from_slice(b"\r\n");
            at += value.len() + 2;
        }
        debug_assert_eq!(at, size);
        Ok(())
    })
}

fn text_of<'a>(arg: &'a Bound<'_, PyAny>) -> PyResult<Text<'a>> {
    if let Ok(bytes) = arg.cast::<PyBytes>() {
        return Ok(Text::Borrowed(bytes.as_bytes()));
    }
    if let Ok(text) = arg.cast::<PyString>() {
        return Ok(Text::Borrowed(text.to_str()?.as_bytes()));
    }
    if arg.is_instance_of::<PyBool>() {
        return Err(not_packable()); // as hiredis: a bool is not an argument
    }
    if arg.is_instance_of::<PyInt>() {
        return Ok(Text::Formatted(match arg.extract::<i64>() {
            Ok(value) => itoa::Buffer::new().format(value).as_bytes().to_vec(),
            Err(_) => arg.str()?.to_str()?.as_bytes().to_vec(), // beyond 64 bits
        }));
    }
    if arg.is_instance_of::<PyFloat>() {
        return Ok(Text::Formatted(arg.repr()?.to_str()?.as_bytes().to_vec())); // Python's repr, as hiredis
    }
    Err(not_packable())
}

/// The length of `<kind><length>\r\n`.
fn header_size(length: usize) -> usize {
    itoa::Buffer::new().format(length).len() + 3
}

/// Writes `<kind><length>\r\n` at `at`; where it ends.
fn header(buffer: &mut [u8], at: usize, kind: u8, length: usize) -> usize {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(length).as_bytes();
    buffer[at] = kind;
    buffer[at + 1..at + 1 + digits.len()].copy_from_slice(digits);
    buffer[at + 1 + digits.len()..at + 3 + digits.len()].copy_from_slice(b"\r\n");
    at + 3 + digits.len()
}

/// Appends `<kind><length>\r\n`.
pub fn push_header(out: &mut Vec<u8>, kind: u8, length: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `value` as a RESP bulk string.
pub fn push_bulk(out: &mut Vec<u8>, value: &[u8]) {
    push_header(out, b'$', value.len());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn not_packable() -> PyErr {
    PyTypeError::new_err("A tuple item must be str, int, float or bytes.")
}
