//! The lean event check (tailor.core.events.lean_check), compiled: a batch of Kafka messages in, the
//! occurrences read of them per user out (`tailor.core.events.occurrence.Occurrence`), with the
//! indexes of the messages it did not read — errors, no value, events it is not sure are valid —
//! for the caller to hand to the model (`tailor.core.events.schema.Event`), which decides and words
//! the dead letters' errors. Nothing is called back: one call per batch, one result.
//!
//! A strict subset of the model, as the Python check is: the schema's limits are given when a
//! reader is made, and anything unusual (duplicate keys, a null where a value is counted, a long
//! number, a float where text is counted, a naive or far-off time) is left unread. The JSON is read
//! by serde_json, RFC 3339 times by speedate (pydantic's own parser).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple, PyType};
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;

/// The patterns the checks below implement by hand; a reader refuses to start if the schema changed them.
const IDENTIFIER_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]*$";
const PROPERTY_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_.-]*$";
/// Properties the model reads as text: a float there is coerced (the model's call), text is fine.
const TEXT_PROPERTIES: [&str; 3] = ["category", "productId", "query"];
/// Integral floats below this are counted as their integer's text; others go the slow way.
const MAX_INTEGRAL_FLOAT: f64 = 1e15;
/// Longer integers go the slow way (the lean check's limit: |n| < 10**15).
const MAX_INTEGER: u64 = 1_000_000_000_000_000;
/// Event times as microseconds are exact in a float below this (years 1685 to 2255): beyond, `micros
/// / 1e6` would round twice where Python's `timestamp()` (an exact integer division) rounds once.
const MAX_EXACT_MICROS: i64 = 1 << 53;
/// Unix seconds below 1e10 (year 2286); pydantic reads values past 2e10 as milliseconds.
const MAX_UNIX_SECONDS: f64 = 1e10;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// The schema's limits, in code points as Python counts them.
struct Limits {
    id: usize,
    properties: usize,
    property_name: usize,
    property_value: usize,
    url: usize,
    device: usize,
    locale: usize,
    user_agent: usize,
}

impl Limits {
    /// From the schema's limits by name (tailor.core.events.lean_check passes them).
    fn from_map(limits: &HashMap<String, usize>) -> PyResult<Self> {
        let limit = |name: &str| {
            limits.get(name).copied().ok_or_else(|| {
                PyValueError::new_err(format!("the event reader needs the {name} limit"))
            })
        };
        Ok(Limits {
            id: limit("id")?,
            properties: limit("properties")?,
            property_name: limit("property_name")?,
            property_value: limit("property_value")?,
            url: limit("url")?,
            device: limit("device")?,
            locale: limit("locale")?,
            user_agent: limit("user_agent")?,
        })
    }
}

/// An event as serde_json reads it: text borrowed from the message where no escape is in the way,
/// the values the check looks at more closely kept as their JSON text. Unknown fields, duplicate
/// keys and a `null` where none may be are refused here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default, rename = "userId")]
    user_id: Option<Text<'a>>,
    #[serde(borrow, default, rename = "anonymousId")]
    anonymous_id: Option<Text<'a>>,
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    page: Option<Page<'a>>,
    #[serde(borrow, default)]
    properties: Properties<'a>,
    #[serde(borrow, default)]
    context: Option<Context<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page<'a> {
    #[serde(borrow)]
    url: Text<'a>,
    #[serde(borrow, default)]
    referrer: Option<Text<'a>>,
    #[serde(borrow, default)]
    title: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Context<'a> {
    #[serde(borrow, default)]
    device: Option<Text<'a>>,
    #[serde(borrow, default)]
    locale: Option<Text<'a>>,
    #[serde(borrow, default, rename = "userAgent")]
    user_agent: Option<Text<'a>>,
}

/// A JSON string: borrowed from the message unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(text)))
    }
    fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }
    fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

/// The properties in their order; a name given twice is refused (a map would keep the last, and the
/// check must not guess).
#[derive(Default)]
struct Properties<'a>(Vec<(Text<'a>, Scalar<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Properties<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PropertiesVisitor)
    }
}

struct PropertiesVisitor;

impl<'de> Visitor<'de> for PropertiesVisitor {
    type Value = Properties<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of properties")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Properties<'de>, A::Error> {
        let mut properties: Vec<(Text<'de>, Scalar<'de>)> = Vec::new();
        while let Some(name) = access.next_key::<Text<'de>>()? {
            if properties.iter().any(|(seen, _)| seen.0 == name.0) {
                return Err(A::Error::custom("a property given twice"));
            }
            properties.push((name, access.next_value()?));
        }
        Ok(Properties(properties))
    }
}

/// Text, an integer below 10**15 in size or a float: what the lean check reads of a property or a
/// timestamp. A null, a boolean, a nested value or a longer integer is the model's call.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Float(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text, a number")
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed(text)))
    }
    fn visit_str<E>(self, text: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(text.to_owned())))
    }
    fn visit_string<E>(self, text: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(text)))
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Scalar<'de>, E> {
        match n.unsigned_abs() < MAX_INTEGER {
            true => Ok(Scalar::Int(n)),
            false => Err(E::custom("a long integer")),
        }
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Scalar<'de>, E> {
        match n < MAX_INTEGER {
            true => Ok(Scalar::Int(n as i64)),
            false => Err(E::custom("a long integer")),
        }
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Scalar<'de>, E> {
        // Finite: serde_json refuses numbers beyond a float's range. An integer too long for 64 bits
        // comes as a float too: refused as the long integer it may be.
        if n.fract() == 0.0 && n.abs() >= MAX_INTEGER as f64 {
            return Err(E::custom("a long integer"));
        }
        Ok(Scalar::Float(n))
    }
}

/// What a valid event carries that is counted.
struct Counted<'a> {
    id: Cow<'a, str>,
    type_index: usize,
    user: Cow<'a, str>,
    session: Option<Cow<'a, str>>,
    micros: Option<i64>,
    properties: Vec<(Cow<'a, str>, Scalar<'a>)>,
}

/// Reads events for one stack's dimensions: made once per dimension set, then `read_batch` per batch.
#[pyclass(frozen, module = "tailor_native")]
pub struct EventReader {
    limits: Limits,
    /// Each event type and the counter it feeds.
    counters: Vec<(String, Py<PyString>)>,
    dimensions: Vec<(String, Py<PyString>)>,
    occurrence_type: Py<PyAny>,
    /// The occurrence's fields in its own order, read by name from its `_fields`.
    layout: Vec<Part>,
    tuple_new: Py<PyAny>,
    no_session: Py<PyString>,
}

/// A field of the occurrence this reader builds.
#[derive(Clone, Copy)]
enum Part {
    Id,
    User,
    At,
    Counter,
    Session,
    Dimensions,
}

impl Part {
    const ALL: [(&'static str, Part); 6] = [
        ("id", Part::Id),
        ("user", Part::User),
        ("at", Part::At),
        ("counter", Part::Counter),
        ("session", Part::Session),
        ("dimensions", Part::Dimensions),
    ];
}

#[pymethods]
impl EventReader {
    /// `occurrence`: the named tuple to build (its `_fields` are read by name); `counters`: event
    /// type -> counter; `limits` and `patterns`: the schema's, as tailor.core.events.lean_check passes them.
    #[new]
    #[pyo3(signature = (dimensions, *, occurrence, counters, limits, patterns))]
    fn new(
        py: Python<'_>,
        dimensions: Vec<Bound<'_, PyString>>,
        occurrence: Bound<'_, PyType>,
        counters: &Bound<'_, PyDict>,
        limits: HashMap<String, usize>,
        patterns: HashMap<String, String>,
    ) -> PyResult<Self> {
        check_pattern(&patterns, "identifier", IDENTIFIER_PATTERN)?;
        check_pattern(&patterns, "property_name", PROPERTY_NAME_PATTERN)?;
        let mut layout = Vec::new();
        for name in occurrence.getattr("_fields")?.try_iter()? {
            let name = name?;
            let name = name.extract::<&str>()?;
            match Part::ALL.iter().find(|(known, _)| *known == name) {
                Some((_, part)) => layout.push(*part),
                None => {
                    return Err(PyValueError::new_err(format!(
                        "the occurrence has a field {name:?} native/src/event.rs does not fill"
                    )))
                }
            }
        }
        if layout.len() != Part::ALL.len() {
            return Err(PyValueError::new_err(
                "the occurrence lacks a field native/src/event.rs fills",
            ));
        }
        Ok(EventReader {
            limits: Limits::from_map(&limits)?,
            counters: counters
                .iter()
                .map(|(event_type, counter)| {
                    Ok((
                        event_type.extract()?,
                        counter.cast_into::<PyString>()?.unbind(),
                    ))
                })
                .collect::<PyResult<_>>()?,
            dimensions: dimensions
                .into_iter()
                .map(|name| Ok((name.to_str()?.to_owned(), name.unbind())))
                .collect::<PyResult<_>>()?,
            occurrence_type: occurrence.into_any().unbind(),
            layout,
            tuple_new: py.get_type::<PyTuple>().getattr("__new__")?.unbind(),
            no_session: PyString::new(py, "").unbind(),
        })
    }

    /// One batch of confluent_kafka Messages read at `now`: a dict of
    ///   by_user       user -> the occurrences read of it, in message order (an event more than
    ///                 `lateness` seconds older than its Kafka timestamp is counted out as late)
    ///   partition_of  user -> the partition of its first message
    ///   unread        the indexes of the messages not read: errors, no value, events the check is
    ///                 not sure of (the caller's model decides them)
    ///   offsets       partition -> the newest offset among the messages that are not errors
    ///   events, late  how many messages are not errors; how many were late
    fn read_batch<'py>(
        &self,
        messages: &Bound<'py, PyList>,
        now: f64,
        lateness: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = messages.py();
        let by_user = PyDict::new(py);
        let partition_of = PyDict::new(py);
        let unread = PyList::empty(py);
        let (mut events, mut late) = (0usize, 0usize);
        let mut newest: Vec<(i64, i64)> = Vec::new(); // (partition, offset): a batch has a few
        for (index, message) in messages.iter().enumerate() {
            if !message.call_method0(intern!(py, "error"))?.is_none() {
                unread.append(index)?;
                continue;
            }
            events += 1;
            let partition = message
                .call_method0(intern!(py, "partition"))?
                .extract::<Option<i64>>()?;
            let offset = message
                .call_method0(intern!(py, "offset"))?
                .extract::<Option<i64>>()?;
            if let (Some(partition), Some(offset)) = (partition, offset) {
                match newest.iter_mut().find(|(p, _)| *p == partition) {
                    Some(entry) => entry.1 = entry.1.max(offset),
                    None => newest.push((partition, offset)),
                }
            }
            let ingested = ingestion_time(&message, now)?;
            let value = message.call_method0(intern!(py, "value"))?;
            let counted = if value.is_truthy()? {
                self.counted(&value, ingested)?
            } else {
                None
            };
            let Some(counted) = counted else {
                unread.append(index)?;
                continue;
            };
            if ingested - counted.at > lateness {
                late += 1;
                continue;
            }
            match by_user.get_item(&counted.user)? {
                Some(found) => found.cast::<PyList>()?.append(counted.occurrence)?,
                None => {
                    by_user.set_item(&counted.user, PyList::new(py, [counted.occurrence])?)?;
                    partition_of.set_item(&counted.user, partition.unwrap_or(-1))?;
                }
            }
        }
        let offsets = PyDict::new(py);
        for (partition, offset) in newest {
            offsets.set_item(partition, offset)?;
        }
        let read = PyDict::new(py);
        read.set_item(intern!(py, "by_user"), by_user)?;
        read.set_item(intern!(py, "partition_of"), partition_of)?;
        read.set_item(intern!(py, "unread"), unread)?;
        read.set_item(intern!(py, "offsets"), offsets)?;
        read.set_item(intern!(py, "events"), events)?;
        read.set_item(intern!(py, "late"), late)?;
        Ok(read)
    }
}

/// An Occurrence with the two fields the batch loop needs, as Rust values.
struct Occurrence<'py> {
    occurrence: Bound<'py, PyAny>,
    at: f64,
    user: Bound<'py, PyString>,
}

/// When the collector accepted the message (its Kafka timestamp), else `default`.
fn ingestion_time(message: &Bound<'_, PyAny>, default: f64) -> PyResult<f64> {
    let (kind, millis) = message
        .call_method0(intern!(message.py(), "timestamp"))?
        .extract::<(i64, i64)>()?;
    Ok(if kind != TIMESTAMP_NOT_AVAILABLE && millis > 0 {
        millis as f64 / 1000.0
    } else {
        default
    })
}

/// confluent_kafka.TIMESTAMP_NOT_AVAILABLE (librdkafka's RD_KAFKA_TIMESTAMP_NOT_AVAILABLE).
const TIMESTAMP_NOT_AVAILABLE: i64 = 0;

fn check_pattern(
    patterns: &HashMap<String, String>,
    name: &str,
    implemented: &str,
) -> PyResult<()> {
    match patterns.get(name) {
        Some(found) if found == implemented => Ok(()),
        found => Err(PyValueError::new_err(format!(
            "the {name} pattern is now {found:?}, but native/src/event.rs checks {implemented:?}: \
             teach it the new pattern and rebuild native/"
        ))),
    }
}

impl EventReader {
    fn counted<'py>(
        &self,
        raw: &Bound<'py, PyAny>,
        ingested_at: f64,
    ) -> PyResult<Option<Occurrence<'py>>> {
        let py = raw.py();
        let text = if let Ok(bytes) = raw.cast::<PyBytes>() {
            match std::str::from_utf8(bytes.as_bytes()) {
                Ok(text) => text,
                Err(_) => return Ok(None),
            }
        } else {
            raw.cast::<PyString>()?.to_str()?
        };
        let Some(event) = self.read(text) else {
            return Ok(None);
        };
        let Some(values) = self.dimension_values(&event.properties) else {
            return Ok(None);
        };
        self.build(py, &event, values, ingested_at).map(Some)
    }

    fn read<'a>(&self, text: &'a str) -> Option<Counted<'a>> {
        let event: Event<'a> = serde_json::from_str(text).ok()?;
        let limits = &self.limits;
        let id = self.identifier(event.id)?;
        let type_index = self
            .counters
            .iter()
            .position(|(event_type, _)| *event_type == event.kind.0)?;
        let user_id = optional(event.user_id, |id| self.identifier(id))?;
        let anonymous_id = optional(event.anonymous_id, |id| self.identifier(id))?;
        let session = optional(event.session_id, |id| self.identifier(id))?;
        let micros = optional(event.timestamp, read_timestamp)?;
        if let Some(page) = event.page {
            let fits = fits(&page.url.0, 0, limits.url)
                && fits_if_any(&page.referrer, limits.url)
                && fits_if_any(&page.title, limits.property_value);
            fits.then_some(())?;
        }
        if let Some(context) = event.context {
            let fits = fits_if_any(&context.device, limits.device)
                && fits_if_any(&context.locale, limits.locale)
                && fits_if_any(&context.user_agent, limits.user_agent);
            fits.then_some(())?;
        }
        let properties = event.properties.0;
        if properties.len() > limits.properties {
            return None;
        }
        let mut values = Vec::with_capacity(properties.len());
        for (name, value) in properties {
            if !self.is_property_name(&name.0) {
                return None;
            }
            let value = self.property_value(value, &name.0)?;
            values.push((name.0, value));
        }
        Some(Counted {
            id,
            type_index,
            user: user_id.or(anonymous_id)?, // identified by either, as the model requires
            session,
            micros,
            properties: values,
        })
    }

    fn identifier<'a>(&self, id: Text<'a>) -> Option<Cow<'a, str>> {
        let id = id.0;
        // ASCII only, so bytes are code points: a letter or digit, then letters, digits and . _ : @ + -
        let mut bytes = id.bytes();
        let starts_well = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
        let rest_well = bytes.all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'+' | b'-')
        });
        (starts_well && rest_well && id.len() <= self.limits.id).then_some(id)
    }

    fn is_property_name(&self, name: &str) -> bool {
        // ASCII only, so bytes are code points.
        let mut bytes = name.bytes();
        let starts_with_letter = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
        starts_with_letter
            && name.len() <= self.limits.property_name
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    }

    /// A property's value as the model would count it, or None when the model must decide: text
    /// where a number is expected, a float where text is.
    fn property_value<'a>(&self, value: Scalar<'a>, name: &str) -> Option<Scalar<'a>> {
        match value {
            Scalar::Text(text) => (name != "value" && fits(&text, 1, self.limits.property_value))
                .then_some(Scalar::Text(text)),
            Scalar::Float(_) if TEXT_PROPERTIES.contains(&name) => None,
            number => Some(number),
        }
    }

    /// The text of each dimension the event has, in the dimensions' order; None when a value would
    /// need Python's float formatting.
    fn dimension_values<'a>(
        &self,
        properties: &'a [(Cow<'a, str>, Scalar<'a>)],
    ) -> Option<Vec<(&Py<PyString>, Cow<'a, str>)>> {
        let mut values = Vec::new();
        for (dimension, name) in &self.dimensions {
            let Some((_, value)) = properties.iter().find(|(key, _)| key == dimension) else {
                continue;
            };
            let text = match value {
                Scalar::Text(text) => Cow::Borrowed(&**text),
                Scalar::Int(number) => Cow::Owned(number.to_string()),
                Scalar::Float(number)
                    if number.fract() == 0.0 && number.abs() < MAX_INTEGRAL_FLOAT =>
                {
                    Cow::Owned((*number as i64).to_string()) // Python: str(int(value))
                }
                Scalar::Float(_) => return None,
            };
            values.push((name, text));
        }
        Some(values)
    }

    fn build<'py>(
        &self,
        py: Python<'py>,
        event: &Counted<'_>,
        values: Vec<(&Py<PyString>, Cow<'_, str>)>,
        ingested_at: f64,
    ) -> PyResult<Occurrence<'py>> {
        let at = event
            .micros
            .map_or(ingested_at, |micros| micros as f64 / 1e6);
        let at = if at < ingested_at { at } else { ingested_at };
        let user = PyString::new(py, &event.user);
        let session = match &event.session {
            Some(session) => PyString::new(py, session),
            None => self.no_session.bind(py).clone(),
        };
        let dimensions = values
            .into_iter()
            .map(|(name, text)| PyTuple::new(py, [name.bind(py).clone(), PyString::new(py, &text)]))
            .collect::<PyResult<Vec<_>>>()?;
        let dimensions = PyTuple::new(py, dimensions)?;
        let fields = self.layout.iter().map(|part| match part {
            Part::Id => PyString::new(py, &event.id).into_any(),
            Part::User => user.clone().into_any(),
            Part::At => PyFloat::new(py, at).into_any(),
            Part::Counter => self.counters[event.type_index]
                .1
                .bind(py)
                .clone()
                .into_any(),
            Part::Session => session.clone().into_any(),
            Part::Dimensions => dimensions.clone().into_any(),
        });
        // tuple.__new__ as the Python check does: a named tuple's own __new__ is slower Python.
        let occurrence = self
            .tuple_new
            .bind(py)
            .call1((self.occurrence_type.bind(py), PyTuple::new(py, fields)?))?;
        Ok(Occurrence {
            occurrence,
            at,
            user,
        })
    }
}

/// A value that may be absent (or `null`): `Some(None)` when it is, else what `read` makes of it.
fn optional<T, U>(value: Option<T>, read: impl FnOnce(T) -> Option<U>) -> Option<Option<U>> {
    match value {
        None => Some(None),
        Some(value) => read(value).map(Some),
    }
}

/// Whether `text` has `min..=max` code points.
fn fits(text: &str, min: usize, max: usize) -> bool {
    // UTF-8 bytes bound the code points from above, so most texts need no count.
    if text.len() <= max && min <= 1 {
        text.len() >= min
    } else {
        (min..=max).contains(&text.chars().count())
    }
}

/// Whether the text, if there is one, has at most `max` code points.
fn fits_if_any(text: &Option<Text<'_>>, max: usize) -> bool {
    text.as_ref().is_none_or(|Text(text)| fits(text, 0, max))
}

/// An event time as exact microseconds since the Unix epoch: RFC 3339 text with a zone, as speedate
/// (pydantic's parser) reads it, or Unix seconds; None for anything else.
fn read_timestamp(stamp: Scalar<'_>) -> Option<i64> {
    let micros = match stamp {
        Scalar::Text(text) => {
            let time = speedate::DateTime::parse_bytes_rfc3339(text.as_bytes()).ok()?;
            time.time.tz_offset?; // naive times are invalid events
            time.timestamp_tz()
                .checked_mul(MICROS_PER_SECOND)?
                .checked_add(i64::from(time.time.microsecond))?
        }
        // Unix seconds from 0 up to MAX_UNIX_SECONDS, rounded to the microsecond as pydantic does.
        Scalar::Int(whole) => {
            (0..MAX_UNIX_SECONDS as i64)
                .contains(&whole)
                .then_some(())?;
            whole * MICROS_PER_SECOND
        }
        Scalar::Float(value) => {
            (0.0..MAX_UNIX_SECONDS).contains(&value).then_some(())?;
            let whole = value.floor();
            let micros = ((value - whole) * 1e6).round() as i64; // 1_000_000 carries, as there
            whole as i64 * MICROS_PER_SECOND + micros
        }
    };
    (micros.abs() <= MAX_EXACT_MICROS).then_some(micros)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventReader>()
}
