//! A sync window as declared (`kind: SyncWindow`); when it is in force
//! is decided in `crate::core::window`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// `spec.kind`: what being in force means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Changes go only while the window is in force.
    Allow,
    /// No change goes while the window is in force.
    Deny,
}

/// `spec.repairs`: whether restoring the declared version after drift
/// counts as a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repairs {
    Allow,
    Deny,
}

/// Which assets a window covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `assets:` name globs (`cell3-*`).
    Names(Vec<String>),
    /// `selector:` labels every one of which the asset's
    /// `metadata.labels` must carry.
    Labels(BTreeMap<String, String>),
}

/// One declared window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncWindow {
    pub name: String,
    pub effect: Effect,
    /// The schedule as written (checked by [`schedule`] when parsed).
    pub schedule: String,
    pub duration: Duration,
    pub zone: Tz,
    pub selector: Selector,
    pub repairs: Repairs,
}

/// Parses a five-field cron schedule.
pub fn schedule(text: &str) -> Result<Cron, String> {
    if text.split_whitespace().count() != 5 {
        return Err(format!(
            "`{text}` must have five fields: minute hour day-of-month month day-of-week"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("`{text}` is not a cron schedule: {e}"))
}

/// An IANA time zone name (`Europe/Berlin`).
pub fn zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("`{name}` is not an IANA time zone (e.g. Europe/Berlin, UTC)"))
}
