//! The three stored JSON fields (`w`, `c`, `b`) from and to a profile: keys in insertion order (as
//! Python dicts keep them), ints as ints and floats as floats, non-finite floats as null — the values
//! orjson writes of the Python state (the tests compare what the two decode to, not their bytes).
//!
//! Read by serde_json. Written here: serde_json's writer escapes every string a byte at a time and
//! was measured much slower at writing profiles (docs/performance.md); this one copies counter names
//! whole (they are kept as JSON text) and checks other text eight bytes at a time.

use std::cell::RefCell;
use std::collections::HashMap;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::state::{Bucket, Counters, Entry, Map, Name, Newest, Num, Profile, Session, Slot};

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
pub fn write_buckets(profile: &mut Profile, out: &mut Vec<u8>) {
    // The newest buckets change with nearly every event: not worth keeping their text.
    let newest: Vec<usize> = profile
        .current
        .values()
        .filter_map(|newest| match newest.bucket {
            Slot::At(at) => Some(at),
            _ => None,
        })
        .collect();
    out.push(b'{');
    for (k, (key, bucket)) in profile.buckets.iter_mut().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        if let Some(json) = bucket.json() {
            out.extend_from_slice(json);
        } else {
            let start = out.len();
            write_counters(out, bucket.counters());
            if !newest.contains(&k) {
                bucket.keep_json(&out[start..]);
            }
        }
    }
    out.push(b'}');
}

fn write_counters(out: &mut Vec<u8>, counters: &Counters) {
    out.push(b'{');
    for (k, (name, n)) in counters.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(name.as_bytes()); // quoted and escaped already
        out.push(b':');
        write_int(out, *n);
    }
    out.push(b'}');
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
    escape_into(out, text.as_bytes());
    out.push(b'"');
}

/// Whether JSON needs an escape in these bytes (a control character, `"` or `\\`), eight bytes at a
/// time: a byte-wise loop was a large share of writing a profile.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // Per byte, its high bit set when the byte is below `n` (exact for "any byte" when n <= 128).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let special = |word: u64| {
        below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        if special(word) != 0 {
            return true;
        }
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return false;
    }
    // The last few bytes as one more word, filled out with a letter.
    let mut last = [b'a'; 8];
    last[..rest.len()].copy_from_slice(rest);
    special(u64::from_ne_bytes(last)) != 0
}

/// `text` as a JSON string's content, escaped as orjson escapes (escaping is byte by byte, so the
/// escapes of parts joined are the escape of the joined text).
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    if needs_escape(bytes) {
        escape_pieces(bytes, |piece| out.extend_from_slice(piece));
    } else {
        out.extend_from_slice(bytes);
    }
}

/// A counter name in the form Counters keep it (state::Name): `parts` joined by `separator`, as the
/// JSON text of a string.
pub fn quoted_name(parts: &[&str], separator: char) -> Name {
    let mut text = Vec::with_capacity(2 + parts.iter().map(|part| part.len() + 1).sum::<usize>());
    text.push(b'"');
    for (k, part) in parts.iter().enumerate() {
        if k > 0 {
            let mut buffer = [0; 4];
            text.extend_from_slice(separator.encode_utf8(&mut buffer).as_bytes());
        }
        escape_into(&mut text, part.as_bytes());
    }
    text.push(b'"');
    // Escapes replace ASCII bytes only: UTF-8 in, UTF-8 out.
    Name::from(String::from_utf8(text).expect("UTF-8 with ASCII bytes escaped"))
}

/// The escaped text in pieces: runs of `bytes` that need no escape, and escapes. Only ASCII bytes
/// are replaced, so pieces of UTF-8 text are UTF-8.
fn escape_pieces(bytes: &[u8], mut put: impl FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
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
        put(&bytes[plain..k]);
        if escaped.is_empty() {
            put(b"\\u00");
            put(&HEX[usize::from(byte >> 4)..][..1]);
            put(&HEX[usize::from(byte & 0xf)..][..1]);
        } else {
            put(escaped);
        }
        plain = k + 1;
    }
    put(&bytes[plain..]);
}

// -- reading --------------------------------------------------------------------------------------

/// The state from the stored fields `w`, `c`, `b` (profile_state.decode); `known`: whether a window
/// key is the plan's (sums of other windows are dropped).
pub fn decode(
    sums: Option<&[u8]>,
    current: Option<&[u8]>,
    buckets: Option<&[u8]>,
    known: &dyn Fn(&str) -> bool,
) -> PyResult<Profile> {
    let decoded = decode_fields(sums, current, buckets, known);
    NAMES.with(|names| names.borrow_mut().clear());
    decoded
}

fn decode_fields(
    sums: Option<&[u8]>,
    current: Option<&[u8]>,
    buckets: Option<&[u8]>,
    known: &dyn Fn(&str) -> bool,
) -> PyResult<Profile> {
    let Some(current) = current else {
        return Ok(Profile::new());
    };
    let mut profile = Profile::new();
    if let Some(sums) = sums {
        profile.sums = parse::<Map<Entry>>(sums)?;
        profile.sums.retain(|key, _| known(key));
    }
    if let Some(buckets) = buckets {
        profile.buckets = parse::<Map<StoredCounters>>(buckets)?
            .into_iter()
            .map(|(key, StoredCounters(counters))| (key, Bucket::new(counters)))
            .collect();
    }
    let current = parse::<StoredCurrent>(current)?;
    // The newest buckets written with `c` are the truth (`b` may hold older copies of them).
    let mut newest_keys = Vec::new();
    for (size, (start, bucket)) in required(current.n, "n")? {
        let key = format!("{size}:{start}");
        match bucket {
            None => {
                profile.buckets.shift_remove(key.as_str());
            }
            Some(StoredCounters(bucket)) => {
                profile.buckets.insert(key.clone(), Bucket::new(bucket));
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
    profile.recent = required(current.r, "r")?;
    profile.recent_at = required(current.t, "t")?;
    profile.sessions = required(current.s, "s")?;
    profile.prune_at = required(current.p, "p")?;
    profile.sums_changed = false;
    profile.buckets_changed = false;
    Ok(profile)
}

/// What `c` holds, each None when missing.
#[derive(serde::Deserialize)]
struct StoredCurrent {
    n: Option<Map<(i64, Option<StoredCounters>)>>,
    r: Option<Map<Vec<String>>>,
    t: Option<Map<Vec<Num>>>,
    s: Option<Map<Session>>,
    p: Option<Num>,
}

thread_local! {
    /// The counter names of the decode under way (as read -> as kept), each made once: a name is in
    /// the buckets of every size and in the sums, and making it for each is most of what reading a
    /// name costs.
    static NAMES: RefCell<HashMap<Box<str>, Name, foldhash::fast::RandomState>> = RefCell::default();
}

/// `{counter: n}`, its names shared within a decode.
struct StoredCounters(Counters);

impl<'de> Deserialize<'de> for StoredCounters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StoredCounters, D::Error> {
        d.deserialize_map(CountersVisitor)
    }
}

struct CountersVisitor;

impl<'de> Visitor<'de> for CountersVisitor {
    type Value = StoredCounters;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of counts")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StoredCounters, A::Error> {
        let mut counters = Counters::with_capacity_and_hasher(
            access.size_hint().unwrap_or(0),
            foldhash::fast::RandomState::default(),
        );
        while let Some(SharedName(name)) = access.next_key()? {
            let n: i64 = access.next_value()?;
            counters.insert(name, n);
        }
        Ok(StoredCounters(counters))
    }
}

struct SharedName(Name);

impl<'de> Deserialize<'de> for SharedName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SharedName, D::Error> {
        d.deserialize_str(SharedNameVisitor)
    }
}

struct SharedNameVisitor;

impl Visitor<'_> for SharedNameVisitor {
    type Value = SharedName;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a counter name")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<SharedName, E> {
        Ok(SharedName(NAMES.with(|names| {
            let mut names = names.borrow_mut();
            match names.get(text) {
                Some(name) => name.clone(),
                None => {
                    let name = quoted_name(&[text], '|');
                    names.insert(text.into(), name.clone());
                    name
                }
            }
        })))
    }
}

/// A field `c` must have, as Python's `current["n"]` says when it is missing.
fn required<T>(value: Option<T>, name: &str) -> PyResult<T> {
    value.ok_or_else(|| PyKeyError::new_err(name.to_owned()))
}

fn parse<'de, T: Deserialize<'de>>(raw: &'de [u8]) -> PyResult<T> {
    serde_json::from_slice(raw).map_err(|e| {
        PyValueError::new_err(format!(
            "a stored profile field is not JSON of a profile: {e}"
        ))
    })
}

impl<'de> Deserialize<'de> for Entry {
    /// `[oldest, newest, top, {counter: n}]`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        let (oldest, newest, top, StoredCounters(counters)) = Deserialize::deserialize(d)?;
        Ok(Entry {
            oldest,
            newest,
            top,
            counters,
        })
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct NumVisitor;

impl Visitor<'_> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number")
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Num, E> {
        Ok(Num::Int(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Num, E> {
        i64::try_from(n)
            .map(Num::Int)
            .map_err(|_| E::custom("an integer beyond 64 bits"))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Num, E> {
        Ok(Num::Float(n))
    }
}
