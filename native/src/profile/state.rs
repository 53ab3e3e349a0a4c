//! The state's values, in the stored fields' own shape: maps keep insertion order (as Python dicts do),
//! numbers keep their kind (ints stay ints and floats stay floats in the JSON).

use std::sync::Arc;

use indexmap::IndexMap;

/// Insertion-ordered, with foldhash seeded per process (dimension values come from users).
pub type Map<V> = IndexMap<String, V, foldhash::fast::RandomState>;
/// A counter name as JSON text, quoted and escaped (`"views|category|shoes"`), so that writing a field
/// copies it whole: most of a field's bytes are names, and escaping them on every write was measured
/// to cost the worker more than the 5 % issue 16 allows (docs/performance.md). Shared: the same names
/// fill a user's buckets and sums of every size.
pub type Name = Arc<str>;
/// A bucket, or a window's sum: counter -> n.
pub type Counters = IndexMap<Name, i64, foldhash::fast::RandomState>;

/// A JSON number as Python holds it: event times are floats, bucket starts and counts ints.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    // Comparisons as Python makes them (a NaN compares false), exact between ints.
    pub fn lt(self, other: Num) -> bool {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a < b,
            _ => self.as_f64() < other.as_f64(),
        }
    }

    pub fn gt(self, other: Num) -> bool {
        other.lt(self)
    }

    pub fn ge(self, other: Num) -> bool {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a >= b,
            _ => self.as_f64() >= other.as_f64(),
        }
    }

    pub fn plus(self, n: i64) -> Num {
        match self {
            Num::Int(i) => Num::Int(i + n),
            Num::Float(f) => Num::Float(f + n as f64),
        }
    }
}

/// A stored bucket: its counters, and their JSON text from the last write of `b` while they have
/// not changed since. `b` rewrites every bucket when one of them changes, mostly the same text.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    counters: Counters,
    json: Option<Box<[u8]>>,
}

impl Bucket {
    pub fn new(counters: Counters) -> Self {
        Bucket {
            counters,
            json: None,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters to change: their text is stale from here on.
    pub fn counters_mut(&mut self) -> &mut Counters {
        self.json = None;
        &mut self.counters
    }

    pub fn json(&self) -> Option<&[u8]> {
        self.json.as_deref()
    }

    /// Keep the counters' JSON text for the next writes.
    pub fn keep_json(&mut self, json: &[u8]) {
        self.json = Some(json.into());
    }
}

/// A window's stored sum: its buckets from `oldest` up to, not including, `newest`; `top`, the newest
/// start of its size holding anything.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub oldest: i64,
    pub newest: i64,
    pub top: i64,
    pub counters: Counters,
}

/// Where the newest bucket of a size is. In Python it is the very dict held in `buckets`; here the
/// index of that bucket, or a copy once a prune dropped it from `buckets` (only for sizes the plan
/// does not have: a plan's newest buckets are never pruned).
#[derive(Clone, Debug)]
pub enum Slot {
    Empty,
    At(usize),
    Owned(Counters),
}

#[derive(Clone, Debug)]
pub struct Newest {
    pub start: i64,
    pub bucket: Slot,
}

/// Per session: page views, events, started, last seen.
pub type Session = [Num; 4];

/// Derived from the state and a plan, never stored: where each plan size and window sits in
/// `current` and `sums` (neither ever loses an entry), and the bucket each size last counted into.
#[derive(Clone, Debug, Default)]
pub struct Positions {
    pub plan: u64, // the plan these are for (0: none yet)
    pub levels: Vec<usize>,
    pub windows: Vec<usize>,
    pub hot: Vec<Option<(i64, usize)>>, // (start, index in buckets)
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub sums: Map<Entry>,
    pub current: Map<Newest>,
    pub recent: Map<Vec<String>>,
    pub recent_at: Map<Vec<Num>>,
    pub sessions: Map<Session>,
    pub buckets: Map<Bucket>,
    pub prune_at: Num,
    pub sums_changed: bool,
    pub buckets_changed: bool,
    pub positions: Positions,
}

impl Profile {
    /// A user with nothing stored: every field is written on the first count.
    pub fn new() -> Self {
        Profile {
            sums: Map::default(),
            current: Map::default(),
            recent: Map::default(),
            recent_at: Map::default(),
            sessions: Map::default(),
            buckets: Map::default(),
            prune_at: Num::Float(0.0),
            sums_changed: true,
            buckets_changed: true,
            positions: Positions::default(),
        }
    }

    pub fn newest_bucket<'a>(&'a self, slot: &'a Slot) -> Option<&'a Counters> {
        match slot {
            Slot::Empty => None,
            Slot::At(index) => Some(self.buckets[*index].counters()),
            Slot::Owned(counters) => Some(counters),
        }
    }
}
