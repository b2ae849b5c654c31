//! How passes, plans and problems are shown to people and to scripts.

use std::fmt::Write;

use serde_json::json;

use crate::desired::{Desired, DirState};
use crate::manifest::ManifestError;
use crate::plan::{ActionKind, Plan};
use crate::reconcile::PassReport;
use crate::strategy::StrategyKind;

/// What is wrong with the manifests directory as a whole, if anything.
pub fn dir_problem(desired: &Desired, dir: &std::path::Path) -> Option<String> {
    match &desired.dir {
        DirState::Present { .. } => None,
        DirState::Missing => Some(format!(
            "manifest directory {} does not exist",
            dir.display()
        )),
        DirState::Unreadable(why) => Some(format!("manifest directory {}: {why}", dir.display())),
        DirState::Refused(why) => Some(format!(
            "manifest directory {} refused: {why}",
            dir.display()
        )),
    }
}

/// One manifest problem as a line an editor can jump to.
pub fn render_error(e: &ManifestError) -> String {
    format!("error: {e}")
}

fn paint(text: &str, kind: ActionKind, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match kind {
        ActionKind::Create => "32",
        ActionKind::Update | ActionKind::Repair => "33",
        ActionKind::Remove => "31",
        ActionKind::Hold => "35",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn symbol(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "+",
        ActionKind::Update => "~",
        ActionKind::Repair => "!",
        ActionKind::Remove => "-",
        ActionKind::Hold => "=",
    }
}

/// The readable diff `assetd plan` prints.
pub fn plan_text(plan: &Plan, desired: &Desired, strategy: StrategyKind, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "strategy: {strategy}");
    for e in desired.errors() {
        let _ = writeln!(out, "{}", render_error(&e));
    }
    for action in &plan.actions {
        let head = format!("{} {} {}", symbol(action.kind), action.kind, action.name);
        if action.changes.is_empty() {
            let _ = writeln!(
                out,
                "{}: {}",
                paint(&head, action.kind, color),
                action.reason
            );
        } else {
            let _ = writeln!(out, "{}", paint(&head, action.kind, color));
            for change in &action.changes {
                let _ = writeln!(out, "    {change}");
            }
        }
    }
    let pending = plan
        .actions
        .iter()
        .filter(|a| a.kind != ActionKind::Hold)
        .count();
    let held = plan.actions.len() - pending;
    let _ = writeln!(
        out,
        "{pending} change(s), {held} held, {} unchanged",
        plan.unchanged.len()
    );
    out
}

pub fn plan_json(plan: &Plan, desired: &Desired, strategy: StrategyKind) -> String {
    let errors: Vec<String> = desired.errors().iter().map(ToString::to_string).collect();
    json!({
        "strategy": strategy,
        "actions": plan.actions,
        "unchanged": plan.unchanged,
        "errors": errors,
        "changes_pending": plan.has_changes(),
    })
    .to_string()
}

/// What `apply --once` prints: each action and how it ended.
pub fn pass_text(pass: &PassReport) -> String {
    let mut out = String::new();
    for e in pass.desired.errors() {
        let _ = writeln!(out, "{}", render_error(&e));
    }
    for o in &pass.outcomes {
        match &o.error {
            None => {
                let _ = writeln!(out, "{} {}: {}", o.kind, o.name, o.reason);
            }
            Some(err) => {
                let _ = writeln!(out, "{} {} FAILED: {err}", o.kind, o.name);
            }
        }
        for w in &o.warnings {
            let _ = writeln!(out, "    warning: {w}");
        }
    }
    for name in &pass.deferred {
        let _ = writeln!(out, "deferred {name}: backing off after failures");
    }
    let _ = writeln!(
        out,
        "{} action(s), {} failed, {} unchanged, {} ms",
        pass.outcomes.len(),
        pass.failed(),
        pass.plan.unchanged.len(),
        pass.duration_ms
    );
    out
}

pub fn pass_json(pass: &PassReport, strategy: StrategyKind) -> String {
    let errors: Vec<String> = pass
        .desired
        .errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    json!({
        "strategy": strategy,
        "outcomes": pass.outcomes,
        "deferred": pass.deferred,
        "unchanged": pass.plan.unchanged,
        "errors": errors,
        "failed": pass.failed(),
        "duration_ms": pass.duration_ms,
    })
    .to_string()
}

pub fn validate_json(desired: &Desired) -> String {
    let errors: Vec<serde_json::Value> = desired
        .errors()
        .iter()
        .map(|e| {
            json!({"file": e.file, "line": e.line, "column": e.column, "field": e.field, "message": e.message})
        })
        .collect();
    let assets: Vec<&str> = desired.assets.keys().map(|n| n.as_str()).collect();
    json!({ "assets": assets, "errors": errors }).to_string()
}
