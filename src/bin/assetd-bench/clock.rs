//! Engine-comparable time: the engine stamps events and task states with
//! the wall clock, so the bench measures with it too.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall clock in Unix nanoseconds: the engine stamps events and task
/// states with the same clock.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

pub fn secs(ns: i128) -> f64 {
    ns as f64 / 1e9
}
