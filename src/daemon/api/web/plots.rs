//! The two pictures of the dashboard, as inline SVG drawn on the server:
//! the fleet's phases over the last 24 h (from the events the daemon
//! keeps) and one asset's history as a timeline. Colours are presentation
//! attributes, not `style`, so the page's CSP needs no inline styles.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::daemon::events::Event;
use crate::model::spec::AssetName;
use crate::report::status::{AssetStatus, Phase};
use crate::store::history::{Outcome, Revision};

use super::html::{escape, when};

/// 15-minute columns over 24 h.
const COLUMNS: u64 = 96;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// The phases in the order they stack (the worst on top), with the
/// colour each is drawn in.
pub const PHASES: [(Phase, &str); 9] = [
    (Phase::Running, "#2e7d32"),
    (Phase::Completed, "#5a8f5c"),
    (Phase::Pending, "#6d8fb3"),
    (Phase::Updating, "#1565c0"),
    (Phase::Standby, "#8d8d8d"),
    (Phase::Suspended, "#7b5ea7"),
    (Phase::Held, "#b26a00"),
    (Phase::Invalid, "#ad1457"),
    (Phase::Failed, "#c62828"),
];

fn colour(phase: Phase) -> &'static str {
    PHASES
        .iter()
        .find(|(p, _)| *p == phase)
        .map_or("#8d8d8d", |(_, c)| c)
}

/// Each asset's phase at `t`: the last event at or before `t` says it;
/// before its first event, that event's `before`; an asset without events
/// has had its phase of now since the daemon started. `None`: not known.
fn phase_at(t: u64, events: &[&Event], now: Option<Phase>, started_ms: u64) -> Option<Phase> {
    match events.iter().rev().find(|e| e.at_ms <= t) {
        Some(e) => e.after.map(|s| s.phase),
        None if t < started_ms => None,
        None => match events.first() {
            Some(first) => first.before.map(|s| s.phase),
            None => now,
        },
    }
}

/// Stacked columns of phase counts over the last 24 h.
pub fn fleet_strip(
    assets: &[AssetStatus],
    events: &[Event],
    now_ms: u64,
    started_ms: u64,
) -> String {
    let mut by_asset: BTreeMap<&AssetName, Vec<&Event>> = BTreeMap::new();
    for event in events {
        by_asset.entry(&event.asset).or_default().push(event);
    }
    let now_phase: BTreeMap<&AssetName, Phase> =
        assets.iter().map(|a| (&a.name, a.phase)).collect();
    let names: Vec<&AssetName> = now_phase
        .keys()
        .copied()
        .chain(by_asset.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (width, height, column) = (960u64, 80u64, 10u64);
    let start = now_ms.saturating_sub(DAY_MS);
    let mut columns = Vec::new();
    let mut most = 1;
    for i in 0..COLUMNS {
        let t = start + (i + 1) * DAY_MS / COLUMNS;
        let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
        for name in &names {
            let events = by_asset.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let phase = phase_at(t, events, now_phase.get(name).copied(), started_ms);
            if let Some(phase) = phase {
                let index = PHASES.iter().position(|(p, _)| *p == phase).unwrap_or(0);
                *counts.entry(index).or_default() += 1;
            }
        }
        most = most.max(counts.values().sum());
        columns.push((t, counts));
    }
    let mut svg = format!(
        r#"<svg class="strip" viewBox="0 0 {width} {h}" width="100%" role="img" aria-labelledby="strip-title"><title id="strip-title">Assets by phase over the last 24 hours, in 15-minute columns; the right edge is now</title>"#,
        h = height + 16
    );
    for (i, (t, counts)) in columns.iter().enumerate() {
        let x = i as u64 * column;
        let mut y = height;
        let tip: Vec<String> = counts
            .iter()
            .map(|(p, n)| format!("{n} {}", PHASES[*p].0))
            .collect();
        let _ = write!(
            svg,
            "<g><title>{}: {}</title>",
            escape(&when(*t)),
            if tip.is_empty() {
                "not known".to_string()
            } else {
                tip.join(", ")
            }
        );
        if counts.is_empty() {
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{}" width="{}" height="2" fill="#c9c9c9"/>"##,
                height - 2,
                column - 1
            );
        }
        for (p, n) in counts {
            let h = (n * height).div_ceil(most).max(1);
            y = y.saturating_sub(h);
            let _ = write!(
                svg,
                r#"<rect x="{x}" y="{y}" width="{}" height="{h}" fill="{}"/>"#,
                column - 1,
                PHASES[*p].1
            );
        }
        svg.push_str("</g>");
    }
    let _ = write!(
        svg,
        r##"<text x="0" y="{y}" font-size="11" fill="#333">24 h ago</text><text x="{width}" y="{y}" font-size="11" fill="#333" text-anchor="end">now</text></svg>"##,
        y = height + 13
    );
    svg
}

/// One asset's revisions on a time axis: a dot per entry, coloured by
/// outcome, its number above it.
pub fn timeline(revisions: &[Revision], now_ms: u64) -> String {
    let (width, height) = (960u64, 70u64);
    let mut svg = format!(
        r#"<svg class="timeline" viewBox="0 0 {width} {height}" width="100%" role="img" aria-labelledby="timeline-title"><title id="timeline-title">History: {} entries, oldest on the left</title>"#,
        revisions.len()
    );
    let _ = write!(
        svg,
        r##"<line x1="10" y1="40" x2="{}" y2="40" stroke="#555" stroke-width="1"/>"##,
        width - 10
    );
    let first = revisions.first().map_or(now_ms, |r| r.at_ms).min(now_ms);
    let span = now_ms.saturating_sub(first).max(1);
    for r in revisions {
        let x = 20 + (r.at_ms.saturating_sub(first)) * (width - 40) / span;
        let (fill, shape) = match r.outcome {
            Outcome::Ok => ("#2e7d32", "deployed"),
            Outcome::Failed => ("#c62828", "failed"),
            Outcome::RolledBack => ("#b26a00", "rolled back"),
            Outcome::Control => ("#7b5ea7", "operator"),
        };
        let _ = write!(
            svg,
            r##"<g><title>revision {n} at {at}, {shape}: {action}</title><circle cx="{x}" cy="40" r="7" fill="{fill}"/><text x="{x}" y="22" font-size="12" fill="#222" text-anchor="middle">r{n}</text></g>"##,
            n = r.n,
            at = escape(&when(r.at_ms)),
            action = escape(&r.action),
        );
    }
    let _ = write!(
        svg,
        r##"<text x="10" y="64" font-size="11" fill="#333">{}</text><text x="{}" y="64" font-size="11" fill="#333" text-anchor="end">now</text></svg>"##,
        escape(&when(first)),
        width - 10
    );
    svg
}

/// The colour of a phase badge's border (its text stays dark).
pub fn phase_colour(phase: Phase) -> &'static str {
    colour(phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::health::Health;
    use crate::daemon::events::{EventKind, State};

    fn event(asset: &str, at_ms: u64, before: Option<Phase>, after: Phase) -> Event {
        let state = |phase| State {
            phase,
            health: Health::Unknown,
        };
        Event {
            seq: at_ms,
            at_ms,
            asset: AssetName::new(asset).unwrap(),
            event: EventKind::Applied,
            before: before.map(state),
            after: Some(state(after)),
            reason: None,
            revision: None,
        }
    }

    #[test]
    fn a_phase_is_known_from_events_and_from_the_daemon_start_only() {
        let e1 = event("a", 1_000, Some(Phase::Pending), Phase::Running);
        let e2 = event("a", 2_000, Some(Phase::Running), Phase::Failed);
        let events = [&e1, &e2];
        assert_eq!(phase_at(500, &events, None, 0), Some(Phase::Pending));
        assert_eq!(phase_at(500, &events, None, 800), None);
        assert_eq!(phase_at(1_500, &events, None, 0), Some(Phase::Running));
        assert_eq!(phase_at(9_000, &events, None, 0), Some(Phase::Failed));
        assert_eq!(phase_at(500, &[], Some(Phase::Running), 1_000), None);
        assert_eq!(
            phase_at(1_500, &[], Some(Phase::Running), 1_000),
            Some(Phase::Running)
        );
    }

    #[test]
    fn the_pictures_escape_what_they_show() {
        let revision = Revision {
            n: 1,
            at_ms: 1_000,
            outcome: Outcome::Ok,
            action: "update: spec.image: <a> → b".into(),
            spec: None,
            hash: None,
            by_uid: None,
            revision: None,
        };
        let svg = timeline(&[revision], 5_000);
        assert!(svg.contains("&lt;a&gt;") && !svg.contains("<a>"), "{svg}");
        assert!(svg.contains(">r1<"));
    }
}
