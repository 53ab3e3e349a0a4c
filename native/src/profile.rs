//! A worker's counting (tailor.core.profile.counting's ReferenceCounting over
//! tailor.core.profile.state), compiled: `Counting` holds what a stack's feature settings mean; its
//! methods decode a stored profile into a `State` (opaque to Python), count events into it, give its
//! stored fields, and make the `GuardedCall` that gathers changed profiles' writes into one call of
//! the guard function. The same results as the Python functions of those names.

mod call;
mod count;
mod json;
mod state;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyList, PyString, PyTuple, PyType};

use count::{Counted, Level, WindowPlan};
use state::{Num, Profile};

/// Plans get distinct ids, so that a state knows whether its derived positions are for this plan.
static PLAN_IDS: AtomicU64 = AtomicU64::new(1);

/// The counting of one profile_state.Plan, built from its fields: `sizes` as (size, bucket
/// lifetime) and `windows` as (key, size, buckets summed).
#[pyclass(frozen, module = "tailor_native")]
pub struct Counting {
    plan: count::Plan,
    events: EventFields,
}

/// How the fields of an event to count are read: from an `occurrence` by the positions its
/// `_fields` give them (a tuple's item is cheaper to get than an attribute), from anything else by
/// attribute.
struct EventFields {
    occurrence: Py<PyType>,
    at: usize,
    counter: usize,
    session: usize,
    dimensions: usize,
}

impl EventFields {
    fn of(occurrence: Bound<'_, PyType>) -> PyResult<Self> {
        let fields: Vec<String> = occurrence.getattr("_fields")?.extract()?;
        let position = |name: &str| {
            fields
                .iter()
                .position(|field| field == name)
                .ok_or_else(|| {
                    PyValueError::new_err(format!("the occurrence has no field {name:?} to count"))
                })
        };
        Ok(EventFields {
            at: position("at")?,
            counter: position("counter")?,
            session: position("session")?,
            dimensions: position("dimensions")?,
            occurrence: occurrence.unbind(),
        })
    }

    fn get<'py>(
        &self,
        event: &Bound<'py, PyAny>,
        position: usize,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if event.get_type().is(self.occurrence.bind(event.py())) {
            event.cast::<PyTuple>()?.get_item(position)
        } else {
            event.getattr(name)
        }
    }
}

#[pymethods]
impl Counting {
    #[new]
    #[pyo3(signature = (sizes, windows, *, recent_limit, session_timeout, prune_every, max_fields, occurrence))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        sizes: Vec<(i64, i64)>,
        windows: Vec<(String, i64, i64)>,
        recent_limit: usize,
        session_timeout: i64,
        prune_every: f64,
        max_fields: i64,
        occurrence: Bound<'_, PyType>,
    ) -> PyResult<Self> {
        let mut levels: Vec<Level> = Vec::with_capacity(sizes.len());
        for (size, keep) in sizes {
            if size < 1 {
                return Err(PyValueError::new_err(format!(
                    "bucket size {size}: sizes must be positive"
                )));
            }
            let text = size.to_string();
            levels.push(Level {
                size,
                keep,
                prefix: format!("{text}:"),
                text,
                windows: vec![],
            });
        }
        let mut planned = Vec::with_capacity(windows.len());
        for (index, (key, size, count)) in windows.into_iter().enumerate() {
            let Some(level) = levels.iter().position(|level| level.size == size) else {
                return Err(PyValueError::new_err(format!(
                    "window {key}: its bucket size {size} is not in sizes"
                )));
            };
            levels[level].windows.push(index);
            planned.push(WindowPlan {
                key,
                size,
                count,
                level,
            });
        }
        let plan = count::Plan {
            id: PLAN_IDS.fetch_add(1, Ordering::Relaxed),
            levels,
            windows: planned,
            recent_limit,
            session_timeout,
            prune_every,
            max_fields,
        };
        Ok(Counting {
            plan,
            events: EventFields::of(occurrence)?,
        })
    }

    /// The state from the stored fields, in FIELDS order (`w`, `c`, `b`; None: the user has none).
    #[pyo3(signature = (raw))]
    fn decode(&self, raw: Option<&Bound<'_, PyAny>>) -> PyResult<State> {
        let Some(raw) = raw.filter(|raw| raw.is_truthy().unwrap_or(false)) else {
            return Ok(State::new());
        };
        let (sums, current, buckets) = (raw.get_item(0)?, raw.get_item(1)?, raw.get_item(2)?);
        let windows = &self.plan.windows;
        let profile = json::decode(
            field_bytes(&sums)?,
            field_bytes(&current)?,
            field_bytes(&buckets)?,
            &|key| windows.iter().any(|window| window.key == key),
        )?;
        Ok(State { profile })
    }

    /// Count `events` (new ones: occurrences, or anything with their `at`, `counter`, `session` and
    /// `dimensions`) into `state` at `now`. True when this write prunes.
    fn apply(
        &self,
        mut state: PyRefMut<'_, State>,
        events: &Bound<'_, PyAny>,
        now: f64,
    ) -> PyResult<bool> {
        let plan = &self.plan;
        let profile = &mut state.profile;
        let spans = count::Spans::at(plan, now)?;
        count::advance(plan, profile, &spans)?;
        let fields = &self.events;
        if let Ok(list) = events.cast::<PyList>() {
            for event in list.iter() {
                count_event(plan, profile, &spans, fields, &event)?;
            }
        } else {
            for event in events.try_iter()? {
                count_event(plan, profile, &spans, fields, &event?)?;
            }
        }
        count::prune(plan, profile, now)
    }

    /// All three fields as stored, in FIELDS order (what a read gets).
    fn fields<'py>(
        &self,
        py: Python<'py>,
        mut state: PyRefMut<'py, State>,
    ) -> Vec<Bound<'py, PyBytes>> {
        let profile = &mut state.profile;
        with_buffer(|out| {
            json::write_sums(profile, out);
            let sums = PyBytes::new(py, out);
            out.clear();
            json::write_current(profile, out);
            let current = PyBytes::new(py, out);
            out.clear();
            json::write_buckets(profile, out);
            vec![sums, current, PyBytes::new(py, out)]
        })
    }

    /// A guarded write call of `function`, its arguments starting with `head` (store.lua); an
    /// event's mark is `mark_prefix` and its id.
    fn guarded_call(
        &self,
        function: String,
        head: Vec<String>,
        mark_prefix: String,
    ) -> call::GuardedCall {
        call::GuardedCall::new(function, head, mark_prefix)
    }
}

thread_local! {
    /// The fields are written here and copied out: kept between calls, it is allocated once
    /// instead of grown from scratch for every field of every write.
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(64 * 1024));
}

/// `write` with the cleared buffer (a fresh one if a call on this thread has it already).
fn with_buffer<T>(write: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut out) => {
            out.clear();
            let result = write(&mut out);
            // One outsized profile should not pin its memory for good.
            if out.capacity() > MAX_KEPT_BUFFER {
                *out = Vec::with_capacity(64 * 1024);
            }
            result
        }
        Err(_) => write(&mut Vec::new()),
    })
}

/// Each field to write after a count, as (name, JSON): `c` always, `w` and `b` when they changed
/// (whose flags this clears).
fn each_change(profile: &mut Profile, mut emit: impl FnMut(&'static str, &[u8])) {
    with_buffer(|out| {
        json::write_current(profile, out);
        emit("c", out);
        if profile.sums_changed {
            out.clear();
            json::write_sums(profile, out);
            emit("w", out);
            profile.sums_changed = false;
        }
        if profile.buckets_changed {
            out.clear();
            json::write_buckets(profile, out);
            emit("b", out);
            profile.buckets_changed = false;
        }
    });
}

/// The most the write buffer keeps between calls.
const MAX_KEPT_BUFFER: usize = 1 << 20;

/// One user's profile (tailor.core.profile.state.ProfileState), opaque to Python.
#[pyclass(module = "tailor_native", name = "State")]
pub struct State {
    profile: Profile,
}

#[pymethods]
impl State {
    /// A user with nothing stored.
    #[new]
    fn new() -> Self {
        State {
            profile: Profile::new(),
        }
    }
}

/// A stored field's bytes (Redis gives bytes, or text when the client decodes).
fn field_bytes<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a [u8]>> {
    if value.is_none() {
        Ok(None)
    } else if let Ok(bytes) = value.cast::<PyBytes>() {
        Ok(Some(bytes.as_bytes()))
    } else if let Ok(text) = value.cast::<PyString>() {
        Ok(Some(text.to_str()?.as_bytes()))
    } else {
        Err(PyTypeError::new_err(
            "a stored profile field must be bytes, str or None",
        ))
    }
}

fn count_event(
    plan: &count::Plan,
    profile: &mut Profile,
    spans: &count::Spans,
    fields: &EventFields,
    event: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = event.py();
    let at = fields.get(event, fields.at, intern!(py, "at"))?;
    let at = match at.cast::<PyFloat>() {
        Ok(at) => Num::Float(at.value()),
        Err(_) => Num::Int(at.extract()?),
    };
    let counter = fields
        .get(event, fields.counter, intern!(py, "counter"))?
        .cast_into::<PyString>()?;
    let session = fields
        .get(event, fields.session, intern!(py, "session"))?
        .cast_into::<PyString>()?;
    let pairs = fields
        .get(event, fields.dimensions, intern!(py, "dimensions"))?
        .cast_into::<PyTuple>()?;
    let mut texts = Vec::with_capacity(pairs.len());
    for pair in pairs.iter() {
        let pair = pair.cast_into::<PyTuple>()?;
        if pair.len() != 2 {
            return Err(PyValueError::new_err(
                "a dimension must be a (name, value) pair",
            ));
        }
        texts.push((
            pair.get_item(0)?.cast_into::<PyString>()?,
            pair.get_item(1)?.cast_into::<PyString>()?,
        ));
    }
    let mut dimensions = Vec::with_capacity(texts.len());
    for (dimension, value) in &texts {
        dimensions.push((dimension.to_str()?, value.to_str()?));
    }
    let counted = Counted {
        at,
        counter: counter.to_str()?,
        session: session.to_str()?,
        dimensions,
    };
    count::count(plan, profile, spans, &counted)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Counting>()?;
    m.add_class::<State>()?;
    m.add_class::<call::GuardedCall>()?;
    Ok(())
}
