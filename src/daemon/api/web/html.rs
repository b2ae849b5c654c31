//! The dashboard's HTML, rendered on the server from what the daemon
//! already knows (its published status, the events it keeps, the
//! history in its store), so the page reads with scripts off. Every
//! value goes through [`escape`]; secret values are never in these
//! inputs, only their versions.

use std::fmt::Write as _;

use crate::daemon::events::Event;
use crate::report::status::{AssetStatus, Phase, StatusReport};
use crate::store::history::{Outcome, Revision};

use super::plots;

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A unix-ms instant, in UTC (the page is read across time zones).
pub fn when(ms: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// How long ago, in the largest unit that fits (`42s`, `5m`, `3h`, `2d`).
pub fn age(since_ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(since_ms) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// What the fleet page shows: a text filter and a phase.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub phase: String,
}

impl Filter {
    fn keeps(&self, asset: &AssetStatus) -> bool {
        let q = self.q.trim().to_lowercase();
        let text = q.is_empty()
            || [
                Some(asset.name.as_str()),
                asset.image.as_deref(),
                asset.source.as_deref(),
                asset.last_error.as_deref(),
                asset.health_reason.as_deref(),
            ]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(&q));
        let phase = self.phase.is_empty() || asset.phase.to_string() == self.phase;
        text && phase
    }
}

/// The whole page around `main`.
pub fn page(title: &str, header: &str, main: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="/ui/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/dashboard.css">
<script src="/ui/dashboard.js" defer></script>
</head>
<body>
<header>{header}</header>
<main id="live">{main}</main>
</body>
</html>
"#,
        title = escape(title)
    )
}

/// The line at the top: who answers, in which role, from what.
pub fn header(report: &StatusReport) -> String {
    let mut facts = Vec::new();
    if let Some(strategy) = &report.strategy {
        facts.push(format!("strategy <b>{}</b>", escape(strategy)));
    }
    if let Some(role) = &report.role {
        facts.push(format!("role <b>{}</b>", escape(role)));
    }
    if let Some(lease) = &report.lease {
        let holder = lease.holder.as_deref().unwrap_or("nobody");
        facts.push(format!("lease holder <b>{}</b>", escape(holder)));
    }
    if let Some(revision) = &report.revision {
        facts.push(format!("manifests <b>{}</b>", escape(revision)));
    }
    if let Some(ms) = report.last_pass_ms {
        facts.push(format!("last pass {}", escape(&when(ms))));
    }
    if !report.ready {
        facts.push("<b>not ready</b>".into());
    }
    format!(
        r#"<h1><a href="/">assetd</a></h1><p class="facts">{}</p>"#,
        facts.join(" · ")
    )
}

/// The fleet: problems of the daemon, a count per phase, the filter, the
/// 24-hour strip and one row per asset.
pub fn fleet(
    report: &StatusReport,
    revisions: &dyn Fn(&AssetStatus) -> Option<u64>,
    events: &[Event],
    filter: &Filter,
    now_ms: u64,
    started_ms: u64,
) -> String {
    let mut out = String::new();
    problems(&mut out, report);
    out.push_str(r#"<nav class="summary" aria-label="Assets per phase"><ul>"#);
    let _ = write!(
        out,
        r#"<li><a href="/">{} assets</a></li>"#,
        report.assets.len()
    );
    for (phase, _) in plots::PHASES.iter().rev() {
        let n = report.assets.iter().filter(|a| a.phase == *phase).count();
        if n > 0 {
            let _ = write!(
                out,
                r#"<li><a class="phase phase-{p}" href="/?phase={p}">{n} {p}</a></li>"#,
                p = phase
            );
        }
    }
    out.push_str("</ul></nav>");
    let _ = write!(
        out,
        r#"<form class="filter" method="get" action="/" role="search"><label for="q">Filter</label><input id="q" name="q" type="search" value="{q}" placeholder="name, image, file, reason"><label for="phase">Phase</label><select id="phase" name="phase"><option value="">any</option>"#,
        q = escape(&filter.q)
    );
    for (phase, _) in plots::PHASES {
        let selected = if filter.phase == phase.to_string() {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, r#"<option{selected}>{phase}</option>"#);
    }
    out.push_str(r#"</select><button type="submit">Show</button></form>"#);
    out.push_str(r#"<section aria-labelledby="strip-h"><h2 id="strip-h">Last 24 hours</h2>"#);
    out.push_str(&plots::fleet_strip(
        &report.assets,
        events,
        now_ms,
        started_ms,
    ));
    out.push_str(legend());
    out.push_str("</section>");
    let shown: Vec<&AssetStatus> = report.assets.iter().filter(|a| filter.keeps(a)).collect();
    let _ = write!(
        out,
        r#"<section aria-labelledby="assets-h"><h2 id="assets-h">Assets <span class="count">({} of {})</span></h2>"#,
        shown.len(),
        report.assets.len()
    );
    out.push_str(r#"<table class="fleet"><thead><tr><th scope="col">Asset</th><th scope="col">Phase</th><th scope="col">Health</th><th scope="col">Reason</th><th scope="col">Replicas</th><th scope="col">Image</th><th scope="col">Revision</th><th scope="col">Age</th><th scope="col">Notes</th></tr></thead><tbody>"#);
    for asset in &shown {
        row(&mut out, asset, revisions(asset), now_ms);
    }
    if shown.is_empty() {
        out.push_str(r#"<tr><td colspan="9">No asset matches.</td></tr>"#);
    }
    out.push_str("</tbody></table></section>");
    out
}

fn legend() -> &'static str {
    r#"<p class="legend">Running · Pending · Updating · Standby · Suspended · Held · Invalid · Failed, stacked in this order from the bottom; hover a column for its counts.</p>"#
}

fn problems(out: &mut String, report: &StatusReport) {
    let mut lines: Vec<&str> = Vec::new();
    lines.extend(report.engine_error.as_deref());
    lines.extend(report.writer_conflict.as_deref());
    lines.extend(report.revision_hold.as_deref());
    lines.extend(report.manifest_errors.iter().map(String::as_str));
    if lines.is_empty() {
        return;
    }
    out.push_str(r#"<section class="problems" aria-label="Problems"><ul>"#);
    for line in lines {
        let _ = write!(out, "<li>{}</li>", escape(line));
    }
    out.push_str("</ul></section>");
}

/// The engine's reason, else the error of the last attempt.
fn reason(asset: &AssetStatus) -> Option<&str> {
    asset
        .health_reason
        .as_deref()
        .or(asset.last_error.as_deref())
        .or(asset
            .replicas
            .as_ref()
            .and_then(|r| r.pending_reason.as_deref()))
}

fn notes(asset: &AssetStatus) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(s) = &asset.suspended {
        let why = s.reason.as_deref().unwrap_or("no reason given");
        notes.push(format!("suspended: {why}"));
    }
    if let Some(pin) = &asset.pinned {
        notes.push(format!("pinned at revision {}", pin.revision));
    }
    if asset.phase == Phase::Held {
        if let Some(why) = &asset.last_error {
            notes.push(format!("held: {why}"));
        }
    }
    if let Some(next) = &asset.next_action {
        notes.push(format!("next: {next}"));
    }
    notes.extend(asset.warnings.iter().cloned());
    notes
}

fn row(out: &mut String, asset: &AssetStatus, revision: Option<u64>, now_ms: u64) {
    let name = escape(asset.name.as_str());
    let replicas = asset
        .replicas
        .as_ref()
        .map(|r| format!("{}/{}", r.running, r.desired))
        .unwrap_or_default();
    let notes: Vec<String> = notes(asset).iter().map(|n| escape(n)).collect();
    let _ = write!(
        out,
        r#"<tr data-phase="{phase}"><td data-label="Asset"><a href="/assets/{name}">{name}</a></td><td data-label="Phase"><span class="phase phase-{phase}">{phase}</span></td><td data-label="Health">{health:?}</td><td data-label="Reason" class="reason">{reason}</td><td data-label="Replicas">{replicas}</td><td data-label="Image" class="image">{image}</td><td data-label="Revision">{revision}</td><td data-label="Age">{age}</td><td data-label="Notes" class="notes">{notes}</td></tr>"#,
        phase = asset.phase,
        health = asset.health,
        reason = escape(reason(asset).unwrap_or("")),
        image = escape(asset.image.as_deref().unwrap_or("")),
        revision = revision.map(|n| format!("r{n}")).unwrap_or_default(),
        age = asset
            .updated_ms
            .map(|ms| age(ms, now_ms))
            .unwrap_or_default(),
        notes = notes.join("<br>"),
    );
}

/// One asset: its facts, the timeline, the plan of the last pass for it,
/// its events and its history.
pub fn asset(asset: &AssetStatus, history: &[Revision], events: &[Event], now_ms: u64) -> String {
    let mut out = String::new();
    let name = escape(asset.name.as_str());
    let _ = write!(
        out,
        r#"<h2>{name} <span class="phase phase-{phase}">{phase}</span></h2><dl class="facts">"#,
        phase = asset.phase
    );
    let mut fact = |term: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            let _ = write!(out, "<dt>{term}</dt><dd>{}</dd>", escape(&value));
        }
    };
    fact("Health", Some(format!("{:?}", asset.health)));
    fact("Reason", reason(asset).map(str::to_string));
    fact(
        "Replicas",
        asset
            .replicas
            .as_ref()
            .map(|r| format!("{} running of {}", r.running, r.desired)),
    );
    fact("Image", asset.image.clone());
    fact("Declared at", asset.source.clone());
    fact("Last action", asset.last_action.clone());
    fact(
        "Changed",
        asset
            .updated_ms
            .map(|ms| format!("{} ({} ago)", when(ms), age(ms, now_ms))),
    );
    for note in notes(asset) {
        fact("Note", Some(note));
    }
    out.push_str("</dl>");
    out.push_str(r#"<section aria-labelledby="plan-h"><h2 id="plan-h">Plan</h2>"#);
    match &asset.next_action {
        Some(next) => {
            let _ = write!(out, "<pre>{}</pre>", escape(next));
        }
        None if asset.phase == Phase::Held || asset.phase == Phase::Invalid => {
            let _ = write!(
                out,
                "<p>Left as it runs: {}</p>",
                escape(asset.last_error.as_deref().unwrap_or("held"))
            );
        }
        None => out.push_str("<p>No change planned: the manifest's version is deployed.</p>"),
    }
    out.push_str("<p class=\"note\">From the daemon's last pass; the engine is not asked for this page.</p></section>");
    out.push_str(r#"<section aria-labelledby="history-h"><h2 id="history-h">History</h2>"#);
    out.push_str(&plots::timeline(history, now_ms));
    out.push_str(r#"<table><thead><tr><th scope="col">Revision</th><th scope="col">When</th><th scope="col">Outcome</th><th scope="col">What</th></tr></thead><tbody>"#);
    for r in history.iter().rev() {
        let outcome = match r.outcome {
            Outcome::Ok => "deployed",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled back",
            Outcome::Control => "operator",
        };
        let by = r
            .by_uid
            .map(|uid| format!(" (uid {uid})"))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<tr><td data-label="Revision">r{}</td><td data-label="When">{}</td><td data-label="Outcome">{outcome}</td><td data-label="What" class="reason">{}{}</td></tr>"#,
            r.n,
            escape(&when(r.at_ms)),
            escape(&r.action),
            escape(&by)
        );
    }
    if history.is_empty() {
        out.push_str(r#"<tr><td colspan="4">Nothing deployed yet.</td></tr>"#);
    }
    out.push_str("</tbody></table></section>");
    out.push_str(r#"<section aria-labelledby="events-h"><h2 id="events-h">Recent events</h2><table><thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">Phase</th><th scope="col">Reason</th></tr></thead><tbody>"#);
    for e in events.iter().rev().take(50) {
        let phase = e
            .after
            .map(|s| s.phase.to_string())
            .unwrap_or_else(|| "gone".into());
        let _ = write!(
            out,
            r#"<tr><td data-label="When">{}</td><td data-label="Event">{}</td><td data-label="Phase">{}</td><td data-label="Reason" class="reason">{}</td></tr>"#,
            escape(&when(e.at_ms)),
            e.event,
            escape(&phase),
            escape(e.reason.as_deref().unwrap_or(""))
        );
    }
    if events.is_empty() {
        out.push_str(r#"<tr><td colspan="4">No event since the daemon started.</td></tr>"#);
    }
    out.push_str("</tbody></table></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::AssetName;

    fn status(name: &str, phase: Phase, reason: &str) -> AssetStatus {
        AssetStatus {
            name: AssetName::new(name).unwrap(),
            phase,
            health: crate::core::health::Health::Degraded,
            health_reason: Some(reason.into()),
            source: Some("cell3/mill.yaml:4".into()),
            image: Some("reg/mill:2".into()),
            last_action: None,
            next_action: None,
            last_error: None,
            attempts: 0,
            next_retry_ms: None,
            replicas: None,
            warnings: vec![],
            updated_ms: Some(1_000),
            suspended: None,
            pinned: None,
        }
    }

    #[test]
    fn the_fleet_escapes_and_filters_by_text_and_phase() {
        let report = StatusReport {
            assets: vec![
                status("mill", Phase::Failed, "exit code 3 <script>"),
                status("press", Phase::Running, ""),
            ],
            ready: true,
            ..StatusReport::default()
        };
        let all = fleet(&report, &|_| Some(2), &[], &Filter::default(), 61_000, 0);
        assert!(all.contains("exit code 3 &lt;script&gt;") && !all.contains("<script>"));
        assert!(all.contains(r#"href="/assets/mill""#) && all.contains(">r2<"));
        assert!(all.contains("1 Failed") && all.contains("1 Running"));
        assert!(all.contains(">1m<"), "the age");
        let failed = Filter {
            phase: "Failed".into(),
            ..Filter::default()
        };
        let some = fleet(&report, &|_| None, &[], &failed, 61_000, 0);
        assert!(some.contains("/assets/mill") && !some.contains("/assets/press"));
        let text = Filter {
            q: "PRESS".into(),
            ..Filter::default()
        };
        let some = fleet(&report, &|_| None, &[], &text, 61_000, 0);
        assert!(!some.contains("/assets/mill") && some.contains("/assets/press"));
    }

    #[test]
    fn times_read_in_utc_and_ages_in_one_unit() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(age(0, 59_000), "59s");
        assert_eq!(age(0, 7_200_000), "2h");
        assert_eq!(age(0, 3 * 86_400_000), "3d");
    }
}
