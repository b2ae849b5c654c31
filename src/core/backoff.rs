//! How long a failed asset waits before it is tried again.

use std::time::Duration;

/// Per-key retry delay after `attempts` failures in a row: 1 s doubling
/// to 5 min.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}
