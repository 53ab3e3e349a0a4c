//! Counting events into a profile: `apply`, `_advance`, `_moved` and `remember` of
//! tailor.core.profile.state, step for step (the same order of insertions, the same float arithmetic).

use pyo3::exceptions::{PyIndexError, PyKeyError, PyOverflowError, PyValueError};
use pyo3::prelude::*;

use super::json::quoted_name;
use super::state::{Bucket, Counters, Entry, Name, Newest, Num, Positions, Profile, Slot};

/// profile.SEPARATOR, between a counter, a dimension and its value.
const SEPARATOR: char = '|';
/// The counter whose events are page views in a session's stats.
const VIEWS: &str = "views";

/// A bucket size, how long its buckets are readable, and the windows summing it.
pub struct Level {
    pub size: i64,
    pub keep: i64,
    pub text: String,   // "<size>", its key in `current`
    pub prefix: String, // "<size>:", of its bucket keys
    pub windows: Vec<usize>,
}

pub struct WindowPlan {
    pub key: String,
    pub size: i64,
    pub count: i64,
    pub level: usize,
}

/// profile_state.Plan, as far as counting needs it.
pub struct Plan {
    pub id: u64,
    pub levels: Vec<Level>,
    pub windows: Vec<WindowPlan>,
    pub recent_limit: usize,
    pub session_timeout: i64,
    pub prune_every: f64,
    pub max_fields: i64,
}

impl Plan {
    fn lifetime(&self, size: i64) -> Option<i64> {
        self.levels
            .iter()
            .find(|level| level.size == size)
            .map(|level| level.keep)
    }
}

/// One event as counted (tailor.core.events.occurrence.Occurrence), borrowing the Python strings.
pub struct Counted<'a> {
    pub at: Num,
    pub counter: &'a str,
    pub session: &'a str,
    pub dimensions: Vec<(&'a str, &'a str)>,
}

/// Where every plan size stands at `now` (Plan.spans): the newest bucket start per level.
pub struct Spans {
    pub now: f64,
    pub newest: Vec<i64>,
}

impl Spans {
    pub fn at(plan: &Plan, now: f64) -> PyResult<Spans> {
        let newest = plan
            .levels
            .iter()
            .map(|level| {
                bucket_start(Num::Float(now), level.size)?
                    .ok_or_else(|| PyOverflowError::new_err("now is out of range"))
            })
            .collect::<PyResult<_>>()?;
        Ok(Spans { now, newest })
    }

    /// (oldest, newest) bucket start the window sums (WindowPlan.span).
    fn window(&self, window: &WindowPlan) -> (i64, i64) {
        let newest = self.newest[window.level];
        (newest - (window.count - 1) * window.size, newest)
    }
}

/// `int(at // size) * size`, with Python's float floor division (via fmod, not floor(at / size)).
/// None for a start below what an i64 holds: before any bucket's life (Python's ints have no
/// bounds, and it skips such an event's buckets as long dead).
pub fn bucket_start(at: Num, size: i64) -> PyResult<Option<i64>> {
    // Plans have positive sizes only (the Plan constructor checks).
    let quotient = match at {
        Num::Int(at) => at.div_euclid(size),
        Num::Float(at) => {
            let quotient = float_floor_div(at, size as f64);
            if quotient < -4.0e18 {
                return Ok(None);
            }
            float_to_int(quotient)?
        }
    };
    match quotient.checked_mul(size) {
        Some(start) => Ok(Some(start)),
        None if quotient < 0 => Ok(None),
        None => Err(PyOverflowError::new_err("an event time is out of range")),
    }
}

/// CPython's float `//` (_float_div_mod in floatobject.c): via fmod, then rounded to the nearest
/// integer, which is not always floor(vx / wx).
fn float_floor_div(vx: f64, wx: f64) -> f64 {
    let modulo = vx % wx; // fmod
    let mut div = (vx - modulo) / wx;
    if modulo != 0.0 && ((wx < 0.0) != (modulo < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floor = div.floor();
        if div - floor > 0.5 {
            floor += 1.0;
        }
        floor
    } else {
        0.0f64.copysign(vx / wx)
    }
}

/// Python's `int(x)` of a float, as far as an i64 holds it.
fn float_to_int(x: f64) -> PyResult<i64> {
    if x.is_nan() {
        return Err(PyValueError::new_err("cannot convert float NaN to integer"));
    }
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&x) {
        return Err(PyOverflowError::new_err(
            "cannot convert float to a 64-bit integer",
        ));
    }
    Ok(x as i64)
}

/// Move every window to its span at `spans.now` (profile_state._advance); also sets the positions
/// of the plan's sizes and windows in the state.
pub fn advance(plan: &Plan, profile: &mut Profile, spans: &Spans) -> PyResult<()> {
    if profile.positions.plan != plan.id {
        profile.positions = Positions {
            plan: plan.id,
            levels: vec![usize::MAX; plan.levels.len()],
            windows: vec![usize::MAX; plan.windows.len()],
            hot: vec![None; plan.levels.len()],
        };
    }
    let mut moved = false;
    for (index, level) in plan.levels.iter().enumerate() {
        let newest = spans.newest[index];
        let position = match profile.positions.levels[index] {
            usize::MAX => profile.current.get_index_of(level.text.as_str()),
            known => Some(known),
        };
        let fresh = |profile: &Profile| Newest {
            start: newest,
            bucket: match profile
                .buckets
                .get_index_of(format!("{}{newest}", level.prefix).as_str())
            {
                Some(at) => Slot::At(at),
                None => Slot::Empty,
            },
        };
        match position {
            Some(at) if profile.current[at].start == newest => profile.positions.levels[index] = at,
            Some(at) => {
                // The bucket that was newest is an older one now: `b` must hold it.
                if profile
                    .newest_bucket(&profile.current[at].bucket)
                    .is_some_and(|b| !b.is_empty())
                {
                    profile.buckets_changed = true;
                }
                let entry = fresh(profile);
                profile.current[at] = entry;
                profile.positions.levels[index] = at;
                moved = true;
            }
            None => {
                let entry = fresh(profile);
                let (at, _) = profile.current.insert_full(level.text.clone(), entry);
                profile.positions.levels[index] = at;
                moved = true;
            }
        }
    }
    for (index, window) in plan.windows.iter().enumerate() {
        let (oldest, newest) = spans.window(window);
        let position = match profile.positions.windows[index] {
            usize::MAX => profile.sums.get_index_of(window.key.as_str()),
            known => Some(known),
        };
        if let Some(at) = position {
            profile.positions.windows[index] = at;
            let entry = &profile.sums[at];
            if entry.oldest == oldest && entry.newest == newest {
                continue;
            }
        }
        moved = true;
        profile.sums_changed = true;
        let size = window.size;
        let entry = if profile.buckets.is_empty() {
            // Nothing counted yet (a new user): nothing to sum.
            Entry {
                oldest,
                newest,
                top: oldest - size,
                counters: Counters::default(),
            }
        } else {
            let empty = Counters::default();
            let (stored_oldest, stored_newest, top, stored) = match position {
                Some(at) => {
                    let entry = &profile.sums[at];
                    (entry.oldest, entry.newest, entry.top, &entry.counters)
                }
                // A new window: as if its stored span held nothing.
                None => (
                    newest + size,
                    newest,
                    newest_start(profile, &window.prefix(), oldest - size)?,
                    &empty,
                ),
            };
            let prefix = window.prefix();
            let buckets = &profile.buckets;
            let counters = moved_sum(
                size,
                (stored_oldest, stored_newest - size, top, stored),
                oldest,
                newest - size,
                |start| {
                    buckets
                        .get(format!("{prefix}{start}").as_str())
                        .map(Bucket::counters)
                },
            );
            Entry {
                oldest,
                newest,
                top,
                counters,
            }
        };
        match position {
            Some(at) => profile.sums[at] = entry,
            None => {
                let (at, _) = profile.sums.insert_full(window.key.clone(), entry);
                profile.positions.windows[index] = at;
            }
        }
    }
    if moved {
        profile.positions.hot = vec![None; plan.levels.len()];
    }
    Ok(())
}

impl WindowPlan {
    fn prefix(&self) -> String {
        format!("{}:", self.size)
    }
}

/// The newest bucket start with this key prefix (`default` when there is none).
fn newest_start(profile: &Profile, prefix: &str, default: i64) -> PyResult<i64> {
    let mut top: Option<i64> = None;
    for key in profile.buckets.keys() {
        if let Some(start) = key.strip_prefix(prefix) {
            let start = parse_int(start)?;
            top = Some(top.map_or(start, |t| t.max(start)));
        }
    }
    Ok(top.unwrap_or(default))
}

fn parse_int(text: &str) -> PyResult<i64> {
    text.trim().parse::<i64>().map_err(|_| {
        PyValueError::new_err(format!("invalid literal for int() with base 10: '{text}'"))
    })
}

/// Python's `range(start, stop, step)` with a positive step.
#[derive(Clone, Copy)]
struct Starts {
    start: i64,
    stop: i64,
    step: i64,
}

impl Starts {
    fn len(self) -> i64 {
        if self.stop > self.start {
            (self.stop - self.start + self.step - 1) / self.step
        } else {
            0
        }
    }

    fn iter(self) -> impl Iterator<Item = i64> {
        (0..self.len()).map(move |k| self.start + k * self.step)
    }
}

/// The sum over [oldest, newest] from a stored (oldest, newest, top, counters), touching the fewest
/// buckets (profile_state._moved).
fn moved_sum<'b>(
    size: i64,
    stored: (i64, i64, i64, &Counters),
    oldest: i64,
    newest: i64,
    bucket: impl Fn(i64) -> Option<&'b Counters>,
) -> Counters {
    let (stored_oldest, stored_newest, top, stored_counters) = stored;
    let range = |start, stop| Starts {
        start,
        stop,
        step: size,
    };
    let high = newest.min(top);
    let fresh = range(oldest, high + 1);
    let (mut counters, left, entered) = if stored_newest < oldest || stored_oldest > newest {
        (Counters::default(), vec![], vec![fresh])
    } else {
        let stored_high = stored_newest.min(top);
        let left = vec![
            range(stored_oldest, stored_high.min(oldest - size) + 1),
            range(stored_oldest.max(newest + size), stored_high + 1),
        ];
        let entered = vec![
            range(oldest, high.min(stored_oldest - size) + 1),
            range(oldest.max(stored_newest + size), high + 1),
        ];
        let touched: i64 = left.iter().chain(&entered).map(|r| r.len()).sum();
        if touched > fresh.len() {
            (Counters::default(), vec![], vec![fresh])
        } else {
            (stored_counters.clone(), left, entered)
        }
    };
    for start in left.iter().flat_map(|r| r.iter()) {
        for (name, n) in bucket(start).into_iter().flatten() {
            let remaining = counters.get(&**name).copied().unwrap_or(0) - n;
            if remaining > 0 {
                counters.insert(name.clone(), remaining);
            } else {
                counters.shift_remove(&**name);
            }
        }
    }
    for start in entered.iter().flat_map(|r| r.iter()) {
        for (name, n) in bucket(start).into_iter().flatten() {
            add(&mut counters, name, *n);
        }
    }
    counters
}

fn add(counters: &mut Counters, name: &Name, n: i64) {
    match counters.get_mut(&**name) {
        Some(count) => *count += n,
        None => {
            counters.insert(name.clone(), n);
        }
    }
}

/// Count one event (the body of profile_state.apply's loop); `advance` ran at `spans.now`.
pub fn count(plan: &Plan, profile: &mut Profile, spans: &Spans, event: &Counted) -> PyResult<()> {
    let mut names = Vec::with_capacity(1 + event.dimensions.len());
    names.push(quoted_name(&[event.counter], SEPARATOR));
    for &(dimension, value) in &event.dimensions {
        names.push(quoted_name(&[event.counter, dimension, value], SEPARATOR));
    }
    for (index, level) in plan.levels.iter().enumerate() {
        let Some(start) = bucket_start(event.at, level.size)? else {
            continue; // long before any bucket's life
        };
        if ((start + level.keep) as f64) <= spans.now {
            continue; // no window reads this bucket any more
        }
        let newest = spans.newest[index];
        let at = bucket_at(plan, profile, index, start, newest);
        let added = count_into(profile.buckets[at].counters_mut(), &names, plan.max_fields);
        if start != newest {
            // Not the newest bucket: a late event (or one from the future).
            profile.buckets_changed = true;
            for &window in &level.windows {
                let entry = &mut profile.sums[profile.positions.windows[window]];
                if entry.oldest <= start && start < entry.newest {
                    for (k, name) in names.iter().enumerate() {
                        if added.as_ref().is_none_or(|added| added[k]) {
                            add(&mut entry.counters, name, 1);
                        }
                    }
                    profile.sums_changed = true;
                }
            }
        }
    }
    for &(dimension, value) in &event.dimensions {
        note_recent(plan, profile, dimension, value, event.at)?;
    }
    if !event.session.is_empty() {
        let stats = match profile.sessions.get_mut(event.session) {
            Some(stats) => stats,
            None => profile.sessions.entry(event.session.to_owned()).or_insert([
                Num::Int(0),
                Num::Int(0),
                event.at,
                event.at,
            ]),
        };
        if event.counter == VIEWS {
            stats[0] = stats[0].plus(1);
        }
        stats[1] = stats[1].plus(1);
        if event.at.lt(stats[2]) {
            stats[2] = event.at;
        }
        if event.at.gt(stats[3]) {
            stats[3] = event.at;
        }
    }
    Ok(())
}

/// The index in `buckets` of the level's bucket at `start`, made when missing (then the windows of its
/// size learn their new top, and the newest one is the level's current bucket).
fn bucket_at(plan: &Plan, profile: &mut Profile, index: usize, start: i64, newest: i64) -> usize {
    if let Some((hot_start, at)) = profile.positions.hot[index] {
        if hot_start == start {
            return at;
        }
    }
    let level = &plan.levels[index];
    let key = format!("{}{start}", level.prefix);
    let at = match profile.buckets.get_index_of(key.as_str()) {
        Some(at) => at,
        None => {
            let (at, _) = profile.buckets.insert_full(key, Bucket::default());
            if start == newest {
                profile.current[profile.positions.levels[index]].bucket = Slot::At(at);
            }
            for &window in &level.windows {
                let entry = &mut profile.sums[profile.positions.windows[window]];
                if start > entry.top {
                    entry.top = start;
                    profile.sums_changed = true;
                }
            }
            at
        }
    };
    profile.positions.hot[index] = Some((start, at));
    at
}

/// Count `names` into a bucket of at most `max_fields` counters (totals always count, a new dimension
/// value only while there is room). Which names counted: None when all did.
fn count_into(bucket: &mut Counters, names: &[Name], max_fields: i64) -> Option<Vec<bool>> {
    if (bucket.len() + names.len()) as i64 <= max_fields {
        for name in names {
            add(bucket, name, 1);
        }
        return None;
    }
    let mut added = vec![false; names.len()];
    add(bucket, &names[0], 1);
    added[0] = true;
    for (k, name) in names.iter().enumerate().skip(1) {
        if let Some(count) = bucket.get_mut(&**name) {
            *count += 1;
        } else if (bucket.len() as i64) < max_fields {
            bucket.insert(name.clone(), 1);
        } else {
            continue;
        }
        added[k] = true;
    }
    Some(added)
}

/// The recent values of a dimension after seeing `value` at `at` (apply's loop over dimensions).
fn note_recent(
    plan: &Plan,
    profile: &mut Profile,
    dimension: &str,
    value: &str,
    at: Num,
) -> PyResult<()> {
    let Some(values) = profile.recent.get_mut(dimension) else {
        profile
            .recent
            .insert(dimension.to_owned(), vec![value.to_owned()]);
        profile.recent_at.insert(dimension.to_owned(), vec![at]);
        return Ok(());
    };
    let Some(times) = profile.recent_at.get_mut(dimension) else {
        return Err(PyKeyError::new_err(dimension.to_owned()));
    };
    let Some(first) = values.first() else {
        return Err(PyIndexError::new_err("list index out of range"));
    };
    if first == value {
        // The newest value again: only its time may move.
        let first_at = times
            .first_mut()
            .ok_or_else(|| PyIndexError::new_err("list index out of range"))?;
        if at.gt(*first_at) {
            *first_at = at;
        }
        return Ok(());
    }
    remember(values, times, value, at, plan.recent_limit)
}

/// Keep `value` among the latest distinct values, newest first by event time (profile_state.remember).
fn remember(
    values: &mut Vec<String>,
    times: &mut Vec<Num>,
    value: &str,
    at: Num,
    limit: usize,
) -> PyResult<()> {
    if let Some(k) = values.iter().position(|seen| seen == value) {
        let seen_at = *times
            .get(k)
            .ok_or_else(|| PyIndexError::new_err("list index out of range"))?;
        if seen_at.ge(at) {
            return Ok(()); // seen as late or later already
        }
        values.remove(k);
        times.remove(k);
    }
    let position = match times.first() {
        Some(&newest) if !at.gt(newest) => times
            .iter()
            .position(|&seen_at| seen_at.lt(at))
            .unwrap_or(times.len()),
        _ => 0,
    };
    values.insert(position.min(values.len()), value.to_owned());
    times.insert(position, at);
    if values.len() > limit {
        values.truncate(limit);
        times.truncate(limit);
    }
    Ok(())
}

/// Drop stale buckets and ended sessions when due (the end of profile_state.apply); true when it did.
pub fn prune(plan: &Plan, profile: &mut Profile, now: f64) -> PyResult<bool> {
    if Num::Float(now).lt(profile.prune_at) {
        return Ok(false);
    }
    let next = (now + plan.prune_every).floor();
    if next.is_infinite() {
        return Err(PyOverflowError::new_err(
            "cannot convert float infinity to integer",
        ));
    }
    profile.prune_at = Num::Int(float_to_int(next)?);
    let timeout = plan.session_timeout;
    profile
        .sessions
        .retain(|_, stats| stats[3].plus(timeout).as_f64() > now);
    let mut stays = Vec::with_capacity(profile.buckets.len());
    for name in profile.buckets.keys() {
        let (size_text, start_text) = name.split_once(':').unwrap_or((name, ""));
        let lifetime = plan.lifetime(parse_int(size_text)?);
        stays.push(match lifetime {
            None => false,
            Some(lifetime) => ((parse_int(start_text)? + lifetime) as f64) > now,
        });
    }
    if stays.contains(&false) {
        profile.buckets_changed = true;
        drop_buckets(profile, &stays);
    }
    profile.positions.hot = vec![None; plan.levels.len()];
    Ok(true)
}

/// Remove the buckets not marked to stay, keeping the order of the rest and what `current` holds.
fn drop_buckets(profile: &mut Profile, stays: &[bool]) {
    let mut moved_to = Vec::with_capacity(stays.len());
    let mut next = 0;
    for &stay in stays {
        moved_to.push(next);
        next += usize::from(stay);
    }
    for newest in profile.current.values_mut() {
        if let Slot::At(at) = newest.bucket {
            newest.bucket = if stays[at] {
                Slot::At(moved_to[at])
            } else {
                Slot::Owned(profile.buckets[at].counters().clone())
            };
        }
    }
    let mut index = 0;
    profile.buckets.retain(|_, _| {
        index += 1;
        stays[index - 1]
    });
}
