//! The fields of tailor.core.events.occurrence.Occurrence, by position: the tuple the event check builds
//! and the counting reads.

pub const AT: usize = 2;
pub const COUNTER: usize = 3;
pub const SESSION: usize = 4;
pub const DIMENSIONS: usize = 5;
