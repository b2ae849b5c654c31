//! Sync windows (`kind: SyncWindow`): when changes may reach the engine.
//! "Not while the line runs" is a deny window over the shift; "only in
//! the Sunday maintenance slot" is an allow window.
//!
//! A window opens at each time its five-field cron schedule names, read
//! in its IANA time zone, and stays open for `duration`, counted on the
//! wall clock of that zone: `0 6 * * 1-5` for 16h is 06:00 to 22:00 local
//! time every weekday, also on the days clocks change. Where a time does
//! not exist or exists twice, the zone's rules decide (via croner and
//! chrono-tz): a start in the hour skipped in spring moves to the first
//! minute after it; a start in the hour repeated in autumn happens once,
//! at its first occurrence; an end in the repeated hour is its second
//! occurrence (the window is never cut short), an end in the skipped hour
//! the first minute after it.
//!
//! An asset a deny window selects is closed while that window is in
//! force. An asset one or more allow windows select is closed while none
//! of them is. Closed, its creates, updates and removals are held, and so
//! are its repairs when a closing window says `repairs: deny`
//! (`crate::core::plan::windows` holds them). Pure: the time is an argument.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::model::spec::AssetName;

pub use crate::model::window::{schedule, zone, Effect, Repairs, Selector, SyncWindow};

/// A window at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub in_force: bool,
    /// When `in_force` next flips; `None` when the schedule never fires
    /// again.
    pub changes_at: Option<DateTime<Utc>>,
}

impl SyncWindow {
    pub fn selects(&self, name: &AssetName, labels: Option<&BTreeMap<String, String>>) -> bool {
        match &self.selector {
            Selector::Names(globs) => globs
                .iter()
                .any(|g| glob::Pattern::new(g).is_ok_and(|p| p.matches(name.as_str()))),
            Selector::Labels(want) => {
                labels.is_some_and(|have| want.iter().all(|(k, v)| have.get(k) == Some(v)))
            }
        }
    }

    /// Whether the window is in force at `now`, and until when.
    pub fn at(&self, now: DateTime<Utc>) -> Reading {
        let Ok(cron) = schedule(&self.schedule) else {
            // Checked when parsed; a window that cannot be read is in
            // force for a deny (never lets a change through by mistake).
            return Reading {
                in_force: self.effect == Effect::Deny,
                changes_at: None,
            };
        };
        let local = now.with_timezone(&self.zone);
        let last_start = last_start(&cron, &local);
        let mut end = last_start.map(|start| self.end_of(start.naive_local()));
        if end.is_none_or(|end| end <= now) {
            let next = cron.find_next_occurrence(&local, false).ok();
            return Reading {
                in_force: false,
                changes_at: next.map(|t| t.with_timezone(&Utc)),
            };
        }
        // In force: later starts before the end extend it.
        let mut from = local;
        for _ in 0..1000 {
            let Some(next) = cron.find_next_occurrence(&from, false).ok() else {
                break;
            };
            let (Some(current), next_utc) = (end, next.with_timezone(&Utc)) else {
                break;
            };
            if next_utc > current {
                break;
            }
            end = Some(current.max(self.end_of(next.naive_local())));
            from = next;
        }
        Reading {
            in_force: true,
            changes_at: end,
        }
    }

    /// The end of an opening at local wall time `start`: `duration` later
    /// on the zone's wall clock.
    fn end_of(&self, start: NaiveDateTime) -> DateTime<Utc> {
        let wall = start + self.duration;
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(_, later) => later.with_timezone(&Utc),
            LocalResult::None => {
                // In the skipped hour: the first minute that exists.
                let mut probe = wall;
                for _ in 0..180 {
                    probe += chrono::Duration::minutes(1);
                    if let Some(t) = self.zone.from_local_datetime(&probe).earliest() {
                        return t.with_timezone(&Utc);
                    }
                }
                Utc.from_utc_datetime(&wall)
            }
        }
    }

    fn effect_word(&self) -> &'static str {
        match self.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// The last opening at or before `now`. Searching backwards misses a
/// start the skipped hour moved forward (croner moves it only when
/// searching forwards), so the search goes forward again from there.
fn last_start(cron: &Cron, now: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    let mut last = cron.find_previous_occurrence(now, true).ok()?;
    for _ in 0..1000 {
        match cron.find_next_occurrence(&last, false) {
            Ok(next) if next <= *now => last = next,
            _ => break,
        }
    }
    Some(last)
}

/// `2026-12-07 22:00 CET (21:00 UTC)`: the time in the window's zone and
/// in UTC.
pub fn when(at: DateTime<Utc>, zone: Tz) -> String {
    let local = at.with_timezone(&zone);
    let utc = match local.date_naive() == at.date_naive() {
        true => at.format("%H:%M UTC"),
        false => at.format("%Y-%m-%d %H:%M UTC"),
    };
    format!("{} ({utc})", local.format("%Y-%m-%d %H:%M %Z"))
}

/// Why an asset's change waits for a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub window: String,
    /// `deny window `x` is in force until …` or `outside allow window `x`: opens …`.
    pub why: String,
    pub repairs: Repairs,
    pub opens_at: Option<DateTime<Utc>>,
    /// Set when the asset itself is open but a dependency of it is held.
    pub dependency: Option<AssetName>,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dependency {
            Some(dep) => write!(f, "waits for {dep}, whose change is held: {}", self.why),
            None => f.write_str(&self.why),
        }
    }
}

/// Whether the windows let a change to `name` through at `now`.
pub fn closed_for(
    windows: &[SyncWindow],
    name: &AssetName,
    labels: Option<&BTreeMap<String, String>>,
    now: DateTime<Utc>,
) -> Option<Closed> {
    let mine: Vec<(&SyncWindow, Reading)> = windows
        .iter()
        .filter(|w| w.selects(name, labels))
        .map(|w| (w, w.at(now)))
        .collect();
    let denying = mine
        .iter()
        .filter(|(w, r)| w.effect == Effect::Deny && r.in_force)
        .max_by_key(|(_, r)| r.changes_at);
    if let Some((w, r)) = denying {
        let until = r
            .changes_at
            .map(|t| format!(" until {}", when(t, w.zone)))
            .unwrap_or_default();
        return Some(Closed {
            window: w.name.clone(),
            why: format!("deny window `{}` is in force{until}", w.name),
            repairs: w.repairs,
            opens_at: r.changes_at,
            dependency: None,
        });
    }
    let allows: Vec<&(&SyncWindow, Reading)> = mine
        .iter()
        .filter(|(w, _)| w.effect == Effect::Allow)
        .collect();
    if allows.is_empty() || allows.iter().any(|(_, r)| r.in_force) {
        return None;
    }
    let (w, r) = allows
        .iter()
        .min_by_key(|(_, r)| r.changes_at.unwrap_or(DateTime::<Utc>::MAX_UTC))?;
    let opens = r
        .changes_at
        .map(|t| format!(": opens {}", when(t, w.zone)))
        .unwrap_or_else(|| ": its schedule never opens it again".into());
    let repairs = match allows.iter().all(|(w, _)| w.repairs == Repairs::Allow) {
        true => Repairs::Allow,
        false => Repairs::Deny,
    };
    Some(Closed {
        window: w.name.clone(),
        why: format!("outside allow window `{}`{opens}", w.name),
        repairs,
        opens_at: r.changes_at,
        dependency: None,
    })
}

/// A window as `status`, `plan` and `/metrics` show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowView {
    pub name: String,
    /// `allow` or `deny`.
    pub kind: String,
    pub in_force: bool,
    /// When that flips, local and UTC.
    pub changes_at: Option<String>,
}

impl fmt::Display for WindowView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.kind.as_str(), self.in_force) {
            ("deny", true) => "in force: changes wait",
            ("deny", false) => "not in force",
            (_, true) => "in force: changes go",
            (_, false) => "not in force: changes wait",
        };
        write!(f, "{} ({}) {state}", self.name, self.kind)?;
        match &self.changes_at {
            Some(at) => write!(f, " until {at}"),
            None => Ok(()),
        }
    }
}

pub fn views(windows: &[SyncWindow], now: DateTime<Utc>) -> Vec<WindowView> {
    windows
        .iter()
        .map(|w| {
            let reading = w.at(now);
            WindowView {
                name: w.name.clone(),
                kind: w.effect_word().into(),
                in_force: reading.in_force,
                changes_at: reading.changes_at.map(|t| when(t, w.zone)),
            }
        })
        .collect()
}

/// The earliest moment any window flips: the daemon looks again then,
/// since no engine event announces it.
pub fn next_change(windows: &[SyncWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    windows.iter().filter_map(|w| w.at(now).changes_at).min()
}

/// What overrides the windows once: `apply --once --override-window`
/// (all), `assetd sync NAME…` (those names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub all: bool,
    pub names: BTreeSet<AssetName>,
    /// Who overrode, for the history (`apply --once`: this process's
    /// user; `assetd sync` records its asker when asked).
    pub by_uid: Option<u32>,
}

impl Overrides {
    pub fn covers(&self, name: &AssetName) -> bool {
        self.all || self.names.contains(name)
    }
}

#[cfg(test)]
mod tests;
