//! Simulated time: microseconds since the start of a run, and the
//! conversion from seconds (rounded, never negative).

/// Simulated time, microseconds.
pub type Micros = u64;

/// Microseconds in a second.
pub(super) const SECOND: f64 = 1_000_000.0;

/// `seconds` as [`Micros`], rounded, never negative.
pub(super) fn micros(seconds: f64) -> Micros {
    (seconds * SECOND).round().max(0.0) as Micros
}
