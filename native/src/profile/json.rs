//! The three stored JSON fields (`w`, `c`, `b`) from and to a profile. Written byte for byte as orjson
//! writes the Python state: no spaces, keys in insertion order, ints as ints, floats in orjson's
//! shortest form, non-finite floats as null, strings escaped only where JSON requires it.

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use serde_json::Value;

use super::state::{Counters, Entry, Map, Newest, Num, Profile, Session, Slot};

// -- writing --------------------------------------------------------------------------------------

/// `c`: {"n": newest buckets, "r": recent values, "t": their times, "s": sessions, "p": next prune}.
pub fn write_current(profile: &Profile, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"n\":");
    write_object(out, &profile.current, |out, newest| {
        out.push(b'[');
        write_int(out, newest.start);
        out.push(b',');
        match profile.newest_bucket(&newest.bucket) {
            Some(bucket) => write_counters(out, bucket),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b']');
    });
    out.extend_from_slice(b",\"r\":");
    write_object(out, &profile.recent, |out, values| {
        write_list(out, values, |out, value| write_str(out, value))
    });
    out.extend_from_slice(b",\"t\":");
    write_object(out, &profile.recent_at, |out, times| {
        write_list(out, times, |out, at| write_num(out, *at))
    });
    out.extend_from_slice(b",\"s\":");
    write_object(out, &profile.sessions, |out, stats| {
        write_list(out, stats, |out, n| write_num(out, *n))
    });
    out.extend_from_slice(b",\"p\":");
    write_num(out, profile.prune_at);
    out.push(b'}');
}

/// `w`: {"<seconds>/<size>": [oldest, newest, top, {counter: n}]}.
pub fn write_sums(profile: &Profile, out: &mut Vec<u8>) {
    write_object(out, &profile.sums, |out, entry| {
        out.push(b'[');
        for n in [entry.oldest, entry.newest, entry.top] {
            write_int(out, n);
            out.push(b',');
        }
        write_counters(out, &entry.counters);
        out.push(b']');
    });
}

/// `b`: {"<size>:<start>": {counter: n}}.
pub fn write_buckets(profile: &Profile, out: &mut Vec<u8>) {
    write_object(out, &profile.buckets, write_counters);
}

fn write_counters(out: &mut Vec<u8>, counters: &Counters) {
    write_object(out, counters, |out, n| write_int(out, *n));
}

fn write_object<V>(out: &mut Vec<u8>, map: &Map<V>, mut value: impl FnMut(&mut Vec<u8>, &V)) {
    out.push(b'{');
    for (k, (key, v)) in map.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

fn write_list<V>(out: &mut Vec<u8>, items: &[V], mut item: impl FnMut(&mut Vec<u8>, &V)) {
    out.push(b'[');
    for (k, v) in items.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        item(out, v);
    }
    out.push(b']');
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_num(out: &mut Vec<u8>, n: Num) {
    match n {
        Num::Int(i) => write_int(out, i),
        Num::Float(f) if f.is_finite() => {
            out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes())
        }
        Num::Float(_) => out.extend_from_slice(b"null"),
    }
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain = 0; // bytes before this one are written
    for (k, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..k]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(escaped);
        }
        plain = k + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

// -- reading --------------------------------------------------------------------------------------

/// The state from the stored fields `w`, `c`, `b` (profile_state.decode); `known`: whether a window
/// key is the plan's (sums of other windows are dropped).
pub fn decode(
    sums: Option<&[u8]>,
    current: Option<&[u8]>,
    buckets: Option<&[u8]>,
    known: impl Fn(&str) -> bool,
) -> PyResult<Profile> {
    let Some(current) = current else {
        return Ok(Profile::new());
    };
    let mut profile = Profile::new();
    if let Some(sums) = sums {
        for (key, entry) in object(parse(sums)?)? {
            if known(&key) {
                profile.sums.insert(key, sum_entry(entry)?);
            }
        }
    }
    if let Some(buckets) = buckets {
        for (key, bucket) in object(parse(buckets)?)? {
            profile.buckets.insert(key, counters(bucket)?);
        }
    }
    let mut current = object(parse(current)?)?;
    let mut field = |name: &str| {
        current
            .remove(name)
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))
    };
    // The newest buckets written with `c` are the truth (`b` may hold older copies of them).
    let mut newest_keys = Vec::new();
    for (size, newest) in object(field("n")?)? {
        let [start, bucket] = array::<2>(newest)?;
        let start = int(&start)?;
        let key = format!("{size}:{start}");
        match bucket {
            Value::Null => {
                profile.buckets.shift_remove(key.as_str());
            }
            bucket => {
                profile.buckets.insert(key.clone(), counters(bucket)?);
            }
        }
        newest_keys.push(key);
        profile.current.insert(
            size,
            Newest {
                start,
                bucket: Slot::Empty,
            },
        );
    }
    for (newest, key) in profile.current.values_mut().zip(&newest_keys) {
        if let Some(at) = profile.buckets.get_index_of(key.as_str()) {
            newest.bucket = Slot::At(at);
        }
    }
    for (dimension, values) in object(field("r")?)? {
        let values = list(values)?
            .into_iter()
            .map(string)
            .collect::<PyResult<_>>()?;
        profile.recent.insert(dimension, values);
    }
    for (dimension, times) in object(field("t")?)? {
        let times = list(times)?.iter().map(num).collect::<PyResult<_>>()?;
        profile.recent_at.insert(dimension, times);
    }
    for (session, stats) in object(field("s")?)? {
        let stats = array::<4>(stats)?;
        let session_stats: Session = [
            num(&stats[0])?,
            num(&stats[1])?,
            num(&stats[2])?,
            num(&stats[3])?,
        ];
        profile.sessions.insert(session, session_stats);
    }
    profile.prune_at = num(&field("p")?)?;
    profile.sums_changed = false;
    profile.buckets_changed = false;
    Ok(profile)
}

fn parse(raw: &[u8]) -> PyResult<Value> {
    serde_json::from_slice(raw)
        .map_err(|e| PyValueError::new_err(format!("a stored profile field is not JSON: {e}")))
}

fn unexpected(what: &str, value: &Value) -> PyErr {
    PyValueError::new_err(format!(
        "a stored profile field holds {value} where {what} belongs"
    ))
}

fn object(value: Value) -> PyResult<serde_json::Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(unexpected("an object", &other)),
    }
}

fn list(value: Value) -> PyResult<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unexpected("a list", &other)),
    }
}

fn array<const N: usize>(value: Value) -> PyResult<[Value; N]> {
    match value {
        Value::Array(items) if items.len() == N => Ok(items.try_into().expect("length checked")),
        other => Err(unexpected(&format!("a list of {N}"), &other)),
    }
}

fn string(value: Value) -> PyResult<String> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(unexpected("a string", &other)),
    }
}

fn int(value: &Value) -> PyResult<i64> {
    value
        .as_i64()
        .ok_or_else(|| unexpected("an integer", value))
}

fn num(value: &Value) -> PyResult<Num> {
    match value {
        Value::Number(n) if n.is_f64() => Ok(Num::Float(n.as_f64().expect("a float"))),
        Value::Number(n) if n.is_i64() => Ok(Num::Int(n.as_i64().expect("an int"))),
        other => Err(unexpected("a number", other)),
    }
}

fn counters(value: Value) -> PyResult<Counters> {
    object(value)?
        .into_iter()
        .map(|(name, n)| Ok((name, int(&n)?)))
        .collect()
}

fn sum_entry(value: Value) -> PyResult<Entry> {
    let [oldest, newest, top, counted] = array::<4>(value)?;
    Ok(Entry {
        oldest: int(&oldest)?,
        newest: int(&newest)?,
        top: int(&top)?,
        counters: counters(counted)?,
    })
}
