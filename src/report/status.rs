//! Per-asset status: the phase an operator sees, derived from the last
//! pass (desired, actual, plan) and the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::core::health::{self, Health};
use crate::core::phase::{self, Held};
use crate::core::plan::{Action, ActionKind, HoldReason, Plan};
use crate::input::desired::Desired;
use crate::model::actual::{ActualAsset, ReplicaCounts};
use crate::model::spec::AssetName;
use crate::store::{now_ms, ActionResult, AppliedRecord};

pub use crate::core::phase::Phase;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetStatus {
    pub name: AssetName,
    pub phase: Phase,
    /// Whether what runs works, beside the phase (`crate::core::health`).
    #[serde(default)]
    pub health: Health,
    /// Why it is not Healthy, in the engine's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
    /// `file:line` of the declaration, when declared.
    pub source: Option<String>,
    /// The image last deployed, else the one declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub last_action: Option<String>,
    /// What the next pass will do and why (`repair: container x is
    /// exited`), when it has anything to do.
    #[serde(default)]
    pub next_action: Option<String>,
    pub last_error: Option<String>,
    pub attempts: u32,
    pub next_retry_ms: Option<u64>,
    pub replicas: Option<ReplicaCounts>,
    pub warnings: Vec<String>,
    /// Unix ms of the last change to the asset's record.
    pub updated_ms: Option<u64>,
    /// Who suspended it, why and since when (`assetd suspend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<crate::model::control::Suspension>,
    /// The earlier revision it is held at (`assetd rollback`), and how
    /// that differs from the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<crate::model::control::PinView>,
}

/// Where a status document comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The running daemon, from its last pass.
    #[default]
    Daemon,
    /// No daemon: a read-only look at the engine, as a pass would see it.
    Engine,
    /// No daemon and no engine: the store's last results.
    Store,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Daemon => "daemon",
            Source::Engine => "engine",
            Source::Store => "store",
        })
    }
}

/// What `assetd status` prints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Who answered.
    pub source: Source,
    pub strategy: Option<String>,
    /// `leader`, `standby` or `local`.
    pub role: Option<String>,
    pub ready: bool,
    pub engine_error: Option<String>,
    pub last_pass_ms: Option<u64>,
    pub manifest_errors: Vec<String>,
    /// Another daemon writes this instance, and this one gives way to it
    /// (who, where, and what it wrote): see `assetd::engine::strategy::writer`.
    #[serde(default)]
    pub writer_conflict: Option<String>,
    /// Younger daemons seen writing this instance (they give way to us).
    #[serde(default)]
    pub other_writers: Vec<String>,
    /// The Swarm writer lease as this daemon sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::engine::lease::LeaseView>,
    /// The revision of the manifests this daemon works from (`3f2a91c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Why this daemon, holding the lease, does not apply its copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_hold: Option<String>,
    pub assets: Vec<AssetStatus>,
    /// Networks, volumes, secrets and configs left as they are, with why
    /// (an undeclared volume kept, a changed network waiting for `assetd
    /// recreate`, one still in use), and what the last pass did not get
    /// done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
    /// The sync windows: in force or not, and until when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<crate::core::window::WindowView>,
}

impl StatusReport {
    /// What a pass saw (`source`: the daemon's pass, or a read-only one
    /// without a daemon): the phases, the manifests' errors, the stack's
    /// holds and the sync windows. The daemon adds its role and writers.
    pub fn of_pass(
        source: Source,
        strategy: crate::engine::strategy::StrategyKind,
        desired: &Desired,
        plan: &Plan,
        assets: Vec<AssetStatus>,
    ) -> Self {
        StatusReport {
            source,
            strategy: Some(strategy.to_string()),
            last_pass_ms: Some(now_ms()),
            manifest_errors: desired.errors().iter().map(ToString::to_string).collect(),
            assets,
            stack: plan
                .stack
                .iter()
                .filter(|a| !a.writes())
                .map(ToString::to_string)
                .collect(),
            windows: plan.windows.clone(),
            ..Default::default()
        }
    }

    /// The store's last results, when no daemon and no engine answer.
    pub fn of_store(applied: &BTreeMap<AssetName, AppliedRecord>) -> Self {
        StatusReport {
            source: Source::Store,
            assets: from_store(applied),
            ..Default::default()
        }
    }
}

/// The phases after a pass.
pub fn from_pass(
    desired: &Desired,
    actual: &[ActualAsset],
    applied: &BTreeMap<AssetName, AppliedRecord>,
    plan: &Plan,
    in_flight: &BTreeSet<AssetName>,
    standby: bool,
) -> Vec<AssetStatus> {
    let pass = PassView {
        desired,
        actual: actual.iter().map(|a| (&a.name, a)).collect(),
        applied,
        actions: plan.actions.iter().map(|a| (&a.name, a)).collect(),
        suspended: &plan.suspended,
        pinned: &plan.pinned,
        in_flight,
        standby,
    };
    let names: BTreeSet<&AssetName> = desired
        .assets
        .keys()
        .chain(pass.actual.keys().copied())
        .chain(applied.keys())
        .chain(pass.actions.keys().copied())
        .collect();
    names.into_iter().map(|name| pass.asset(name)).collect()
}

/// Everything one pass knows, by asset.
struct PassView<'a> {
    desired: &'a Desired,
    actual: BTreeMap<&'a AssetName, &'a ActualAsset>,
    applied: &'a BTreeMap<AssetName, AppliedRecord>,
    actions: BTreeMap<&'a AssetName, &'a Action>,
    suspended: &'a BTreeMap<AssetName, crate::model::control::Suspension>,
    pinned: &'a BTreeMap<AssetName, crate::model::control::PinView>,
    in_flight: &'a BTreeSet<AssetName>,
    standby: bool,
}

impl PassView<'_> {
    fn asset(&self, name: &AssetName) -> AssetStatus {
        let record = self.applied.get(name);
        let have = self.actual.get(name).copied();
        let action = self.actions.get(name).copied();
        // The engine's own reason why fewer run than desired. An
        // unhealthy container runs, but does not work: never Running.
        let failing = have.and_then(|h| {
            let r = &h.replicas;
            r.failing.clone().or_else(|| r.unhealthy.clone())
        });
        let wanted = self.desired.assets.get(name).map(|d| &d.hash);
        let stopped = health::stopped_rollout(have, record, wanted);
        let replicas = have.map(|h| {
            let mut replicas = h.replicas.clone();
            // Local containers' labels may carry the count they were
            // created for; the manifest says how many are wanted.
            if let (Some(_), Some(want)) = (&h.template_hash, self.desired.assets.get(name)) {
                replicas.desired = want.spec.local_replicas();
            }
            replicas
        });
        let phase = self.phase(
            name,
            &Judged {
                stopped: stopped.is_some(),
                failing: failing.is_some(),
                action,
                record,
                replicas: replicas.as_ref(),
            },
        );
        let changing =
            self.in_flight.contains(name) || action.is_some_and(|a| a.kind() != ActionKind::Hold);
        let (health, health_reason) = health::assess(&health::Evidence {
            replicas: replicas.as_ref(),
            stopped_rollout: stopped
                .as_ref()
                .map(|why| with_running_version(why, record, wanted))
                .as_deref(),
            changing,
        });
        // A job that ran to completion has nothing running: that is its
        // health.
        let (health, health_reason) = if phase == Phase::Completed {
            (Health::Healthy, None)
        } else {
            (health, health_reason)
        };
        let last_error = match action {
            Some(a) if a.kind() == ActionKind::Hold => Some(a.reason()),
            _ => stopped
                .or(failing)
                .or_else(|| record.and_then(|r| r.last_error.clone())),
        };
        AssetStatus {
            name: name.clone(),
            phase,
            health,
            health_reason,
            source: self
                .desired
                .assets
                .get(name)
                .map(|d| format!("{}:{}", d.source, d.pos.line))
                .or_else(|| record.and_then(|r| r.source.clone())),
            image: record
                .and_then(|r| r.spec.as_ref())
                .or_else(|| self.desired.assets.get(name).map(|d| &d.spec))
                .map(|spec| spec.image.clone()),
            last_action: record.and_then(|r| r.last_action.clone()),
            next_action: action
                .filter(|a| a.kind() != ActionKind::Hold)
                .map(|a| a.to_string()),
            last_error,
            attempts: record.map(|r| r.attempts).unwrap_or(0),
            next_retry_ms: record.and_then(|r| r.next_retry_ms),
            replicas,
            warnings: record.map(|r| r.warnings.clone()).unwrap_or_default(),
            updated_ms: record.map(|r| r.updated_ms),
            suspended: self.suspended.get(name).cloned(),
            pinned: self.pinned.get(name).cloned(),
        }
    }

    fn phase(&self, name: &AssetName, j: &Judged) -> Phase {
        let held = match j.action.and_then(|a| a.hold()) {
            None => Held::No,
            Some(HoldReason::InvalidManifest { .. }) => Held::InvalidManifest,
            Some(_) => Held::Other,
        };
        let last_failed = j.record.and_then(|r| r.last_result) == Some(ActionResult::Failed);
        phase::decide(&phase::Facts {
            standby: self.standby,
            in_flight: self.in_flight.contains(name),
            suspended: self.suspended.contains_key(name),
            rollout_stopped: j.stopped,
            held,
            // A failure counts while work is pending; an asset that
            // converged since (nothing to do) is not failed any more.
            failing: j.failing || (j.action.is_some() && last_failed),
            work_left: j.action.is_some(),
            replicas_short: j.replicas.is_some_and(|r| r.running < r.desired),
            job_completed: self.job_completed(name, j),
        })
    }

    /// A job whose version ran to completion (exit 0), nothing left to do.
    fn job_completed(&self, name: &AssetName, j: &Judged) -> bool {
        let Some(want) = self.desired.assets.get(name).filter(|d| d.spec.is_job()) else {
            return false;
        };
        j.action.is_none()
            && j.record.is_some_and(|r| {
                r.hash.as_ref() == Some(&want.hash) && r.last_result == Some(ActionResult::Ok)
            })
    }
}

/// What an asset's phase is decided on.
struct Judged<'a> {
    /// Its rollout was stopped or rolled back.
    stopped: bool,
    /// The engine shows it failing or unhealthy.
    failing: bool,
    action: Option<&'a Action>,
    record: Option<&'a AppliedRecord>,
    replicas: Option<&'a ReplicaCounts>,
}

/// A local rollback leaves the last good version running: say which.
fn with_running_version(
    why: &str,
    record: Option<&AppliedRecord>,
    wanted: Option<&crate::model::spec::SpecHash>,
) -> String {
    let running = record
        .filter(|r| r.hash.is_some() && r.hash.as_ref() != wanted)
        .and_then(|r| r.spec.as_ref());
    match running {
        Some(spec) => format!("{why}; running {}", spec.image),
        None => why.to_string(),
    }
}

/// The phases from the store alone, when no daemon answers.
pub fn from_store(applied: &BTreeMap<AssetName, AppliedRecord>) -> Vec<AssetStatus> {
    applied
        .iter()
        .map(|(name, r)| AssetStatus {
            name: name.clone(),
            // The store knows what was done, not how it runs.
            health: Health::Unknown,
            health_reason: None,
            phase: match r.last_result {
                Some(ActionResult::Failed) => Phase::Failed,
                Some(ActionResult::Held) => Phase::Held,
                _ => Phase::Running,
            },
            source: r.source.clone(),
            image: r.spec.as_ref().map(|spec| spec.image.clone()),
            last_action: r.last_action.clone(),
            next_action: None,
            last_error: r.last_error.clone(),
            attempts: r.attempts,
            next_retry_ms: r.next_retry_ms,
            replicas: None,
            warnings: r.warnings.clone(),
            updated_ms: Some(r.updated_ms),
            suspended: None,
            pinned: None,
        })
        .collect()
}

fn age(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let secs = now_ms().saturating_sub(ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A `kubectl get`-like table.
pub fn render_table(report: &StatusReport) -> String {
    let mut out = header_lines(report);
    let rows: Vec<[String; 7]> = report.assets.iter().map(row).collect();
    let header = ["NAME", "PHASE", "HEALTH", "READY", "AGE", "SOURCE", "LAST"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Every column padded to its width but the last, which runs on.
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 6 {
                let _ = write!(s, "{cell:<width$}  ", width = widths[i]);
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.each_ref().map(String::as_str)));
    }
    out
}

/// Who answered, and what concerns the whole instance.
fn header_lines(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "source: {}  strategy: {}  role: {}  ready: {}",
        report.source,
        report.strategy.as_deref().unwrap_or("-"),
        report.role.as_deref().unwrap_or("-"),
        report.ready
    );
    if let Some(e) = &report.engine_error {
        let _ = writeln!(out, "engine: {e}");
    }
    for line in &report.stack {
        let _ = writeln!(out, "{line}");
    }
    if let Some(c) = &report.writer_conflict {
        let _ = writeln!(out, "writer: {c}");
    }
    if let Some(lease) = &report.lease {
        let _ = writeln!(out, "lease: {}", lease_line(lease));
    }
    if let Some(revision) = &report.revision {
        let _ = writeln!(out, "synced to {revision}");
    }
    if let Some(hold) = &report.revision_hold {
        let _ = writeln!(out, "hold: {hold}");
    }
    for w in &report.other_writers {
        let _ = writeln!(
            out,
            "writer: also seen writing this instance (it gives way): {w}"
        );
    }
    for w in &report.windows {
        let _ = writeln!(out, "window: {w}");
    }
    for e in &report.manifest_errors {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

/// Who holds the writer lease, from this daemon's side.
fn lease_line(lease: &crate::engine::lease::LeaseView) -> String {
    let since = lease
        .since_ms
        .map(|ms| format!(" since {}", crate::store::suspend::rfc3339(ms)))
        .unwrap_or_default();
    let mut line = match (&lease.holder, lease.mine, lease.missing_secs) {
        (_, true, _) => format!("held by this daemon{since}"),
        (_, false, Some(secs)) => format!("no live holder for {secs} s"),
        (Some(holder), false, None) => format!("held by {holder}{since}"),
        (None, false, None) => "not read yet".to_string(),
    };
    if let Some(e) = &lease.error {
        line.push_str(&format!(" (last lease call: {e})"));
    }
    line
}

/// One asset's cells.
fn row(a: &AssetStatus) -> [String; 7] {
    let replicas = match &a.replicas {
        None => "-".into(),
        Some(r) => match r.pending_secs {
            // Tasks that never start carry no error (an overlay out of
            // addresses): say how long they have waited.
            Some(secs) if r.running < r.desired => {
                format!("{}/{} (pending {secs}s)", r.running, r.desired)
            }
            _ => format!("{}/{}", r.running, r.desired),
        },
    };
    let waiting = a
        .replicas
        .as_ref()
        .filter(|r| r.running < r.desired)
        .and_then(|r| r.pending_reason.clone());
    let degraded = a
        .health_reason
        .clone()
        .filter(|_| a.health == Health::Degraded);
    let detail = a
        .last_error
        .clone()
        .or_else(|| a.suspended.as_ref().map(ToString::to_string))
        .or(degraded)
        .or_else(|| a.pinned.as_ref().map(ToString::to_string))
        .or(waiting)
        .or_else(|| a.next_action.as_ref().map(|n| format!("next: {n}")))
        .or_else(|| a.last_action.clone())
        .unwrap_or_default();
    [
        a.name.to_string(),
        a.phase.to_string(),
        a.health.to_string(),
        replicas,
        age(a.updated_ms),
        a.source.clone().unwrap_or_else(|| "-".into()),
        detail,
    ]
}
