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

/// One manifest problem with its source line and a caret under the
/// column, when the file can be read again (`e.file` is relative to
/// `root`, the manifests directory, or a path of its own when `root` is
/// empty); otherwise the one-line form.
pub fn render_error_in_context(e: &ManifestError, root: &std::path::Path) -> String {
    use miette::{
        GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource,
    };
    let path = root.join(&e.file);
    let Ok(source) = std::fs::read_to_string(&path) else {
        return render_error(e);
    };
    let Some(offset) = byte_offset(&source, e.line, e.column) else {
        return render_error(e);
    };
    let label = if e.field.is_empty() {
        "here".to_string()
    } else {
        e.field.clone()
    };
    let diagnostic =
        MietteDiagnostic::new(format!("{}:{}:{}: {}", e.file, e.line, e.column, e.message))
            .with_label(LabeledSpan::at_offset(offset, label));
    let report =
        miette::Report::new(diagnostic).with_source_code(NamedSource::new(&e.file, source));
    let mut out = String::new();
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_context_lines(1)
        .with_width(100);
    match handler.render_report(&mut out, report.as_ref()) {
        Ok(()) => out,
        Err(_) => render_error(e),
    }
}

/// The byte offset of a 1-based line and (character) column.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let mut offset = 0;
    for (index, l) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            let within: usize = l
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return Some(offset + within.min(l.trim_end_matches('\n').len()));
        }
        offset += l.len();
    }
    None
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
pub fn plan_text(
    plan: &Plan,
    desired: &Desired,
    strategy: StrategyKind,
    color: bool,
    root: &std::path::Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "strategy: {strategy}");
    for e in desired.errors() {
        let _ = writeln!(out, "{}", render_error_in_context(&e, root));
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
pub fn pass_text(pass: &PassReport, root: &std::path::Path) -> String {
    let mut out = String::new();
    for e in pass.desired.errors() {
        let _ = writeln!(out, "{}", render_error_in_context(&e, root));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_show_the_source_line_and_a_caret() {
        let dir = std::env::temp_dir().join(format!("assetd-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "kind: Asset\nspec:\n  bogus: 1\n").unwrap();
        let e = ManifestError {
            file: "a.yaml".into(),
            line: 3,
            column: 3,
            field: "spec".into(),
            message: "unknown field `bogus`".into(),
        };
        let out = render_error_in_context(&e, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.contains("a.yaml:3:3: unknown field `bogus`"), "{out}");
        assert!(out.contains("3 │   bogus: 1"), "{out}");
        let caret_line = out.lines().find(|l| l.contains('▲')).expect("a caret line");
        let source_line = out.lines().find(|l| l.contains("bogus: 1")).unwrap();
        let column = |line: &str, c: char| line.chars().position(|x| x == c).unwrap();
        assert_eq!(
            column(caret_line, '▲'),
            column(source_line, 'b'),
            "caret under the key:\n{out}"
        );
    }

    #[test]
    fn byte_offsets_count_characters_per_line() {
        assert_eq!(byte_offset("ab\ncdé\nx", 2, 3), Some(5));
        assert_eq!(byte_offset("ab\ncd", 3, 1), None);
    }
}
