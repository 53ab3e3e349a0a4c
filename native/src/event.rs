//! The lean event check (tailor.core.events.lean_check), compiled: a batch of Kafka messages in, the
//! occurrences read of them per user out (`tailor.core.events.occurrence.Occurrence`), with the
//! indexes of the messages it did not read — errors, no value, events it is not sure are valid —
//! for the caller to hand to the model (`tailor.core.events.schema.Event`), which decides and words
//! the dead letters' errors. Nothing is called back: one call per batch, one result.
//!
//! A strict subset of the model, as the Python check is: the schema's limits are given when a
//! reader is made, and anything unusual (duplicate keys, a null where a value is counted, a long
//! number, a float where text is counted, a timestamp in any but the plain forms) is left unread.

mod json;
mod timestamp;

use std::borrow::Cow;
use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple, PyType};

use json::{Number, Reader};

/// The patterns the checks below implement by hand; a reader refuses to start if the schema changed them.
const IDENTIFIER_PATTERN: &str = "^[!-~]+$";
const PROPERTY_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_.-]*$";
/// Properties the model reads as text: a float there is coerced (the model's call), text is fine.
const TEXT_PROPERTIES: [&str; 3] = ["category", "productId", "query"];
/// Integral floats below this are counted as their integer's text; others go the slow way.
const MAX_INTEGRAL_FLOAT: f64 = 1e15;

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

enum PropertyValue<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Float(f64),
}

/// The top-level fields as read, each at most once.
#[derive(Default)]
struct Fields<'a> {
    id: Option<Cow<'a, str>>,
    type_index: Option<usize>,
    user_id: Option<Cow<'a, str>>,
    anonymous_id: Option<Cow<'a, str>>,
    session_id: Option<Cow<'a, str>>,
    micros: Option<i64>,
    properties: Vec<(Cow<'a, str>, PropertyValue<'a>)>,
}

/// What a valid event carries that is counted.
struct Counted<'a> {
    id: Cow<'a, str>,
    type_index: usize,
    user: Cow<'a, str>,
    session: Option<Cow<'a, str>>,
    micros: Option<i64>,
    properties: Vec<(Cow<'a, str>, PropertyValue<'a>)>,
}

/// The event's fields, numbered for the duplicate check.
#[derive(Clone, Copy)]
enum Field {
    Id,
    Type,
    UserId,
    AnonymousId,
    SessionId,
    Timestamp,
    Page,
    Properties,
    Context,
}

impl Field {
    fn of(key: &str) -> Option<Field> {
        Some(match key {
            "id" => Field::Id,
            "type" => Field::Type,
            "userId" => Field::UserId,
            "anonymousId" => Field::AnonymousId,
            "sessionId" => Field::SessionId,
            "timestamp" => Field::Timestamp,
            "page" => Field::Page,
            "properties" => Field::Properties,
            "context" => Field::Context,
            _ => return None, // extra fields are forbidden
        })
    }
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
        let mut reader = Reader::new(text);
        let mut fields = Fields::default();
        let mut seen = Seen::default();
        reader.object(|r, key| {
            let field = Field::of(&key)?;
            seen.first(field as u32)?;
            match field {
                Field::Id => fields.id = Some(self.identifier(r)?),
                Field::Type => fields.type_index = Some(self.event_type(r)?),
                Field::UserId => fields.user_id = nullable(r, |r| self.identifier(r))?,
                Field::AnonymousId => fields.anonymous_id = nullable(r, |r| self.identifier(r))?,
                Field::SessionId => fields.session_id = nullable(r, |r| self.identifier(r))?,
                Field::Timestamp => fields.micros = nullable(r, read_timestamp)?,
                Field::Page => drop(nullable(r, |r| self.page(r))?),
                Field::Properties => fields.properties = self.properties(r)?,
                Field::Context => drop(nullable(r, |r| self.context(r))?),
            }
            Some(())
        })?;
        reader.at_end().then_some(())?;
        Some(Counted {
            id: fields.id?,
            type_index: fields.type_index?,
            user: fields.user_id.or(fields.anonymous_id)?, // identified by either, as the model requires
            session: fields.session_id,
            micros: fields.micros,
            properties: fields.properties,
        })
    }

    fn identifier<'a>(&self, r: &mut Reader<'a>) -> Option<Cow<'a, str>> {
        let id = r.string()?;
        // Printable ASCII only, so bytes are code points.
        let printable = id.bytes().all(|b| (b'!'..=b'~').contains(&b));
        (printable && !id.is_empty() && id.len() <= self.limits.id).then_some(id)
    }

    fn event_type(&self, r: &mut Reader<'_>) -> Option<usize> {
        let name = r.string()?;
        self.counters
            .iter()
            .position(|(event_type, _)| *event_type == name)
    }

    fn page(&self, r: &mut Reader<'_>) -> Option<()> {
        let mut seen = Seen::default();
        let limits = &self.limits;
        r.object(|r, key| {
            let (bit, limit) = match &*key {
                "url" => (0, limits.url),
                "referrer" => (1, limits.url),
                "title" => (2, limits.property_value),
                _ => return None,
            };
            seen.first(bit)?;
            if bit == 0 {
                text(r, 0, limit).map(drop) // the url is not nullable
            } else {
                nullable(r, |r| text(r, 0, limit)).map(drop)
            }
        })?;
        seen.has(0).then_some(()) // the url is required
    }

    fn context(&self, r: &mut Reader<'_>) -> Option<()> {
        let mut seen = Seen::default();
        let limits = &self.limits;
        r.object(|r, key| {
            let (bit, limit) = match &*key {
                "device" => (0, limits.device),
                "locale" => (1, limits.locale),
                "userAgent" => (2, limits.user_agent),
                _ => return None,
            };
            seen.first(bit)?;
            nullable(r, |r| text(r, 0, limit)).map(drop)
        })
    }

    fn properties<'a>(&self, r: &mut Reader<'a>) -> Option<Vec<(Cow<'a, str>, PropertyValue<'a>)>> {
        let mut properties: Vec<(Cow<'a, str>, PropertyValue<'a>)> = Vec::new();
        r.object(|r, name| {
            let room = properties.len() < self.limits.properties;
            if !room
                || !self.is_property_name(&name)
                || properties.iter().any(|(seen, _)| *seen == name)
            {
                return None;
            }
            let value = self.property_value(r, &name)?;
            properties.push((name, value));
            Some(())
        })?;
        Some(properties)
    }

    fn is_property_name(&self, name: &str) -> bool {
        // ASCII only, so bytes are code points.
        let mut bytes = name.bytes();
        let starts_with_letter = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
        starts_with_letter
            && name.len() <= self.limits.property_name
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    }

    /// Text, an integer or a finite float; a null, a boolean or a nested value is the model's call.
    fn property_value<'a>(&self, r: &mut Reader<'a>, name: &str) -> Option<PropertyValue<'a>> {
        match r.peek()? {
            b'"' if name != "value" => {
                text(r, 1, self.limits.property_value).map(PropertyValue::Text)
            }
            b'-' | b'0'..=b'9' => match r.number()? {
                Number::Int(value) => Some(PropertyValue::Int(value)),
                Number::Float(_) if TEXT_PROPERTIES.contains(&name) => None,
                Number::Float(value) => Some(PropertyValue::Float(value)),
            },
            _ => None,
        }
    }

    /// The text of each dimension the event has, in the dimensions' order; None when a value would
    /// need Python's float formatting.
    fn dimension_values<'a>(
        &self,
        properties: &'a [(Cow<'a, str>, PropertyValue<'a>)],
    ) -> Option<Vec<(&Py<PyString>, Cow<'a, str>)>> {
        let mut values = Vec::new();
        for (dimension, name) in &self.dimensions {
            let Some((_, value)) = properties.iter().find(|(key, _)| key == dimension) else {
                continue;
            };
            let text = match value {
                PropertyValue::Text(text) => Cow::Borrowed(&**text),
                PropertyValue::Int(number) => Cow::Owned(number.to_string()),
                PropertyValue::Float(number)
                    if number.fract() == 0.0 && number.abs() < MAX_INTEGRAL_FLOAT =>
                {
                    Cow::Owned((*number as i64).to_string()) // Python: str(int(value))
                }
                PropertyValue::Float(_) => return None,
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

/// Which keys of an object were read, so that a duplicate (jiter keeps the last) is refused.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, bit: u32) -> Option<()> {
        let mask = 1 << bit;
        let first = self.0 & mask == 0;
        self.0 |= mask;
        first.then_some(())
    }

    fn has(&self, bit: u32) -> bool {
        self.0 & (1 << bit) != 0
    }
}

/// `null` as `Some(None)`, else the value `read` reads.
fn nullable<'a, T>(
    r: &mut Reader<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Option<T>,
) -> Option<Option<T>> {
    if r.null() {
        return Some(None);
    }
    read(r).map(Some)
}

/// A string of `min..=max` code points.
fn text<'a>(r: &mut Reader<'a>, min: usize, max: usize) -> Option<Cow<'a, str>> {
    let text = r.string()?;
    // UTF-8 bytes bound the code points from above, so most texts need no count.
    let within = if text.len() <= max && min <= 1 {
        text.len() >= min
    } else {
        (min..=max).contains(&text.chars().count())
    };
    within.then_some(text)
}

fn read_timestamp(r: &mut Reader<'_>) -> Option<i64> {
    match r.peek()? {
        b'"' => timestamp::rfc3339_micros(&r.string()?),
        b'-' | b'0'..=b'9' => timestamp::unix_micros(r.number()?),
        _ => None,
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventReader>()
}
