//! The three stored JSON fields (`w`, `c`, `b`) from and to a profile. Written byte for byte as orjson
//! writes the Python state: no spaces, keys in insertion order, ints as ints, floats in orjson's
//! shortest form, non-finite floats as null, strings escaped only where JSON requires it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

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
/// time: a byte-wise loop took half the time of writing a profile.
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
    chunks
        .remainder()
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
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

/// A counter name as the JSON text of a string, the form Counters keep it in: `parts` joined by
/// `separator`, quoted and escaped.
pub fn quoted_name(parts: &[&str], separator: char) -> String {
    let mut text =
        String::with_capacity(2 + parts.iter().map(|part| part.len() + 1).sum::<usize>());
    text.push('"');
    for (k, part) in parts.iter().enumerate() {
        if k > 0 {
            text.push(separator);
        }
        if needs_escape(part.as_bytes()) {
            escape_pieces(part.as_bytes(), |piece| {
                text.push_str(
                    std::str::from_utf8(piece)
                        .expect("a run of UTF-8 cut at ASCII bytes, or ASCII"),
                )
            });
        } else {
            text.push_str(part);
        }
    }
    text.push('"');
    text
}

// -- reading --------------------------------------------------------------------------------------
//
// Parsed straight into the state's maps (serde seeds), in the order Python's dicts would have.

/// The state from the stored fields `w`, `c`, `b` (profile_state.decode); `known`: whether a window
/// key is the plan's (sums of other windows are dropped).
pub fn decode<'de>(
    sums: Option<&'de [u8]>,
    current: Option<&'de [u8]>,
    buckets: Option<&'de [u8]>,
    known: &dyn Fn(&str) -> bool,
) -> PyResult<Profile> {
    let Some(current) = current else {
        return Ok(Profile::new());
    };
    let mut profile = Profile::new();
    let names = Names::default();
    if let Some(sums) = sums {
        profile.sums = parse(
            sums,
            Sums {
                known,
                names: &names,
            },
        )?;
    }
    if let Some(buckets) = buckets {
        profile.buckets = parse(buckets, MapOf(BucketSeed(&names)))?;
    }
    let current = parse(current, CurrentSeed(&names))?;
    // The newest buckets written with `c` are the truth (`b` may hold older copies of them).
    let mut newest_keys = Vec::new();
    for (size, (start, bucket)) in required(current.newest, "n")? {
        let key = format!("{size}:{start}");
        match bucket {
            None => {
                profile.buckets.shift_remove(key.as_str());
            }
            Some(bucket) => {
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
    profile.recent = required(current.recent, "r")?;
    profile.recent_at = required(current.recent_at, "t")?;
    profile.sessions = required(current.sessions, "s")?;
    profile.prune_at = required(current.prune_at, "p")?;
    profile.sums_changed = false;
    profile.buckets_changed = false;
    Ok(profile)
}

/// A field `c` must have, as Python's `current["n"]` says when it is missing.
fn required<T>(value: Option<T>, name: &str) -> PyResult<T> {
    value.ok_or_else(|| PyKeyError::new_err(name.to_owned()))
}

fn parse<'de, S: DeserializeSeed<'de>>(raw: &'de [u8], seed: S) -> PyResult<S::Value> {
    let mut parser = serde_json::Deserializer::from_slice(raw);
    seed.deserialize(&mut parser)
        .and_then(|value| parser.end().map(|()| value))
        .map_err(|e| {
            PyValueError::new_err(format!(
                "a stored profile field is not JSON of a profile: {e}"
            ))
        })
}

/// What `c` holds, each None until read.
#[derive(Default)]
struct Current {
    newest: Option<Map<(i64, Option<Counters>)>>,
    recent: Option<Map<Vec<String>>>,
    recent_at: Option<Map<Vec<Num>>>,
    sessions: Option<Map<Session>>,
    prune_at: Option<Num>,
}

#[derive(Clone, Copy)]
struct CurrentSeed<'n, 'de>(&'n Names<'de>);

impl<'de> DeserializeSeed<'de> for CurrentSeed<'_, 'de> {
    type Value = Current;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Current, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CurrentSeed<'_, 'de> {
    type Value = Current;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of n, r, t, s and p")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Current, A::Error> {
        let mut current = Current::default();
        while let Some(key) = access.next_key::<String>()? {
            match key.as_str() {
                "n" => current.newest = Some(access.next_value_seed(MapOf(NewestSeed(self.0)))?),
                "r" => current.recent = Some(access.next_value_seed(MapOf(ListOf(Text)))?),
                "t" => current.recent_at = Some(access.next_value_seed(MapOf(ListOf(Number)))?),
                "s" => current.sessions = Some(access.next_value_seed(MapOf(SessionSeed))?),
                "p" => current.prune_at = Some(access.next_value_seed(Number)?),
                _ => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(current)
    }
}

/// `w`, keeping only the plan's windows.
struct Sums<'a, 'de> {
    known: &'a dyn Fn(&str) -> bool,
    names: &'a Names<'de>,
}

impl<'de> DeserializeSeed<'de> for Sums<'_, 'de> {
    type Value = Map<Entry>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Map<Entry>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Sums<'_, 'de> {
    type Value = Map<Entry>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of window sums")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Map<Entry>, A::Error> {
        let mut sums = Map::default();
        while let Some(key) = access.next_key::<String>()? {
            if (self.known)(&key) {
                let entry = access.next_value_seed(EntrySeed(self.names))?;
                sums.insert(key, entry);
            } else {
                access.next_value::<IgnoredAny>()?;
            }
        }
        Ok(sums)
    }
}

/// Seeds of the values inside the fields. Each is a Visitor of itself.
macro_rules! seed {
    ($seed:ty, $value:ty, |$d:ident| $deserialize:expr) => {
        impl<'de> DeserializeSeed<'de> for $seed {
            type Value = $value;
            fn deserialize<D: Deserializer<'de>>(self, $d: D) -> Result<$value, D::Error> {
                let _ = self;
                $deserialize
            }
        }
    };
}

/// Seeds of values holding counters: they share the decode's names.
macro_rules! named_seed {
    ($seed:ident, $value:ty, |$this:ident, $d:ident| $deserialize:expr) => {
        #[derive(Clone, Copy)]
        struct $seed<'n, 'de>(&'n Names<'de>);

        impl<'de> DeserializeSeed<'de> for $seed<'_, 'de> {
            type Value = $value;
            fn deserialize<D: Deserializer<'de>>(self, $d: D) -> Result<$value, D::Error> {
                let $this = self;
                $deserialize
            }
        }
    };
}

/// The counter names of one decode, each made once: a name is in the buckets of every size and
/// in the sums, and its allocation (not its parsing) is most of what decoding a name costs.
#[derive(Default)]
struct Names<'de> {
    made: RefCell<HashMap<&'de str, Name, foldhash::fast::RandomState>>,
}

impl<'de> Names<'de> {
    fn name(&self, text: &'de str) -> Name {
        self.made
            .borrow_mut()
            .entry(text)
            .or_insert_with(|| Name::from(quoted_name(&[text], '|')))
            .clone()
    }
}

named_seed!(BucketSeed, Bucket, |this, d| Ints(this.0)
    .deserialize(d)
    .map(Bucket::new));

// `{counter: n}`, its names kept as JSON text (Counters' form).
named_seed!(Ints, Counters, |this, d| d.deserialize_map(this));

impl<'de> Visitor<'de> for Ints<'_, 'de> {
    type Value = Counters;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of counts")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Counters, A::Error> {
        let mut counters = Counters::default();
        counters.reserve(access.size_hint().unwrap_or(0));
        while let Some(name) = access.next_key_seed(QuotedName(self.0))? {
            let n = access.next_value_seed(Int)?;
            counters.insert(name, n);
        }
        Ok(counters)
    }
}

// A counter name, as it reads (a key of `{counter: n}`), back to JSON text.
named_seed!(QuotedName, Name, |this, d| d.deserialize_str(this));

impl<'de> Visitor<'de> for QuotedName<'_, 'de> {
    type Value = Name;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a counter name")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, name: &'de str) -> Result<Name, E> {
        Ok(self.0.name(name))
    }
    // A name with escapes in the JSON is unescaped into a buffer of the parser: made anew.
    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Name, E> {
        Ok(Name::from(quoted_name(&[name], '|')))
    }
}

#[derive(Clone, Copy)]
struct Int;
seed!(Int, i64, |d| serde::Deserialize::deserialize(d));

#[derive(Clone, Copy)]
struct Text;
seed!(Text, String, |d| serde::Deserialize::deserialize(d));

#[derive(Clone, Copy)]
struct Number;
seed!(Number, Num, |d| d.deserialize_any(Number));

impl<'de> Visitor<'de> for Number {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Num, E> {
        Ok(Num::Int(n))
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Num, E> {
        i64::try_from(n)
            .map(Num::Int)
            .map_err(|_| E::custom("an integer beyond 64 bits"))
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Num, E> {
        Ok(Num::Float(n))
    }
}

#[derive(Clone, Copy)]
struct MapOf<S>(S);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for MapOf<S> {
    type Value = Map<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for MapOf<S> {
    type Value = Map<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::default();
        map.reserve(access.size_hint().unwrap_or(0));
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(self.0)?;
            map.insert(key, value);
        }
        Ok(map)
    }
}

#[derive(Clone, Copy)]
struct ListOf<S>(S);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for ListOf<S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for ListOf<S> {
    type Value = Vec<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element_seed(self.0)? {
            items.push(item);
        }
        Ok(items)
    }
}

/// The next element of a list of exactly `expected` elements.
fn element<'de, A: SeqAccess<'de>, S: DeserializeSeed<'de>>(
    access: &mut A,
    seed: S,
    expected: &'static str,
) -> Result<S::Value, A::Error> {
    access
        .next_element_seed(seed)?
        .ok_or_else(|| A::Error::custom(format!("a short list where {expected} belongs")))
}

fn end<'de, A: SeqAccess<'de>>(access: &mut A, expected: &'static str) -> Result<(), A::Error> {
    match access.next_element::<IgnoredAny>()? {
        None => Ok(()),
        Some(_) => Err(A::Error::custom(format!(
            "a long list where {expected} belongs"
        ))),
    }
}

// `[oldest, newest, top, {counter: n}]`.
named_seed!(EntrySeed, Entry, |this, d| d.deserialize_seq(this));

impl<'de> Visitor<'de> for EntrySeed<'_, 'de> {
    type Value = Entry;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("[oldest, newest, top, counters]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Entry, A::Error> {
        const WHAT: &str = "[oldest, newest, top, counters]";
        let entry = Entry {
            oldest: element(&mut access, Int, WHAT)?,
            newest: element(&mut access, Int, WHAT)?,
            top: element(&mut access, Int, WHAT)?,
            counters: element(&mut access, Ints(self.0), WHAT)?,
        };
        end(&mut access, WHAT)?;
        Ok(entry)
    }
}

// `[start, {counter: n} | null]`.
named_seed!(NewestSeed, (i64, Option<Counters>), |this, d| d
    .deserialize_seq(this));

impl<'de> Visitor<'de> for NewestSeed<'_, 'de> {
    type Value = (i64, Option<Counters>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("[start, bucket]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        const WHAT: &str = "[start, bucket]";
        let start = element(&mut access, Int, WHAT)?;
        let bucket = element(&mut access, Maybe(Ints(self.0)), WHAT)?;
        end(&mut access, WHAT)?;
        Ok((start, bucket))
    }
}

#[derive(Clone, Copy)]
struct Maybe<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Maybe<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Maybe<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// `[page views, events, started, last seen]`.
#[derive(Clone, Copy)]
struct SessionSeed;
seed!(SessionSeed, Session, |d| d.deserialize_seq(SessionSeed));

impl<'de> Visitor<'de> for SessionSeed {
    type Value = Session;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("[page views, events, started, last seen]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Session, A::Error> {
        const WHAT: &str = "[page views, events, started, last seen]";
        let session = [
            element(&mut access, Number, WHAT)?,
            element(&mut access, Number, WHAT)?,
            element(&mut access, Number, WHAT)?,
            element(&mut access, Number, WHAT)?,
        ];
        end(&mut access, WHAT)?;
        Ok(session)
    }
}
