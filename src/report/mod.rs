//! What people and scripts see: passes, plans and problems as text and
//! JSON, the status document (`status`) and `plan`'s answer
//! (`plan_answer`). Knows nothing of the daemon's loop.

pub mod plan_answer;
pub mod status;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::core::plan::{Action, ActionKind, Plan};
use crate::engine::strategy::StrategyKind;
use crate::input::desired::{Desired, DirState};
use crate::input::manifest::ManifestError;
use crate::model::spec::AssetName;
use crate::reconcile::{Outcome, PassReport};

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

/// Problems shown with their source lines; the rest get one line each.
/// Each excerpt reads its file again, so thousands of problems in one
/// large file would otherwise take minutes to print.
const MAX_ERRORS_IN_CONTEXT: usize = 20;

/// Every problem, the first [`MAX_ERRORS_IN_CONTEXT`] with their source
/// lines (see [`render_error_in_context`]), the others as one line.
pub fn render_errors<'e>(
    errors: &'e [ManifestError],
    root: &'e std::path::Path,
) -> impl Iterator<Item = String> + 'e {
    errors.iter().enumerate().map(move |(i, e)| {
        if i < MAX_ERRORS_IN_CONTEXT {
            render_error_in_context(e, root)
        } else {
            render_error(e)
        }
    })
}

/// Widest part of a source line a diagnostic shows. Longer lines are cut
/// to a window around the column: one error in a one-line file of
/// megabytes would otherwise print the whole file.
const MAX_SHOWN_CHARS: usize = 200;

/// One manifest problem with its source line and a caret under the
/// column, when the file can be read again (`e.file` is relative to
/// `root`, the manifests directory, or a path of its own when `root` is
/// empty); otherwise the one-line form.
pub fn render_error_in_context(e: &ManifestError, root: &std::path::Path) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic};
    if e.line == 0 {
        // A problem of the whole file: there is no line to show.
        return render_error(e);
    }
    let path = root.join(&e.file);
    let Ok(source) = std::fs::read_to_string(&path) else {
        return render_error(e);
    };
    let Some(excerpt) = Excerpt::new(&e.file, &source, e.line, e.column) else {
        return render_error(e);
    };
    let label = if e.field.is_empty() {
        "here".to_string()
    } else {
        e.field.clone()
    };
    let diagnostic =
        MietteDiagnostic::new(format!("{}:{}:{}: {}", e.file, e.line, e.column, e.message))
            .with_label(LabeledSpan::at_offset(excerpt.offset, label));
    let report = miette::Report::new(diagnostic).with_source_code(excerpt);
    let mut out = String::new();
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_context_lines(1)
        .with_width(100);
    match handler.render_report(&mut out, report.as_ref()) {
        Ok(()) => out,
        Err(_) => render_error(e),
    }
}

/// The lines around a problem (one before, one after), each cut to the
/// same window of [`MAX_SHOWN_CHARS`] around the column, so that the
/// caret stays under the right character.
struct Excerpt {
    name: String,
    text: String,
    /// 0-based number in the file of the excerpt's first line.
    first_line: usize,
    /// The problem's byte offset in `text`.
    offset: usize,
    /// The problem's 0-based line and column in the file.
    line: usize,
    column: usize,
}

impl Excerpt {
    /// `None` when the file has no such line.
    fn new(name: &str, source: &str, line: usize, column: usize) -> Option<Self> {
        let first_line = line.saturating_sub(2);
        let lines: Vec<&str> = source
            .split_inclusive('\n')
            .skip(first_line)
            .take(line + 1 - first_line)
            .map(|l| l.trim_end_matches('\n').trim_end_matches('\r'))
            .collect();
        let at = line.checked_sub(first_line + 1)?;
        let problem_line = lines.get(at)?;
        let length = problem_line.chars().count();
        let column = column.saturating_sub(1).min(length);
        let start = if length <= MAX_SHOWN_CHARS {
            0
        } else {
            column
                .saturating_sub(MAX_SHOWN_CHARS / 2)
                .min(length - MAX_SHOWN_CHARS)
        };
        let mut text = String::new();
        let mut offset = 0;
        for (i, l) in lines.iter().enumerate() {
            if start > 0 {
                text.push('…');
            }
            if i == at {
                let before: usize = l
                    .chars()
                    .skip(start)
                    .take(column - start)
                    .map(char::len_utf8)
                    .sum();
                offset = text.len() + before;
            }
            let mut shown = l.chars().skip(start);
            text.extend(shown.by_ref().take(MAX_SHOWN_CHARS));
            if shown.next().is_some() {
                text.push('…');
            }
            text.push('\n');
        }
        Some(Excerpt {
            name: name.to_string(),
            text,
            first_line,
            offset,
            line: line - 1,
            column,
        })
    }
}

impl miette::SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        let line = self.first_line + inner.line();
        // The window shifts columns; the header names the file's.
        let column = if span.offset() == self.offset && line == self.line {
            self.column
        } else {
            inner.column()
        };
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            line,
            column,
            inner.line_count(),
        )))
    }
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
    for text in render_errors(&desired.errors(), root) {
        let _ = writeln!(out, "{text}");
    }
    // Networks, volumes, secrets and configs first: they are created
    // before the assets that use them.
    for action in &plan.stack {
        let mark = match action.op {
            crate::input::stack::plan::StackOp::Create => "+",
            crate::input::stack::plan::StackOp::Remove => "-",
            crate::input::stack::plan::StackOp::Hold(_) => "=",
        };
        let _ = writeln!(out, "{mark} {action}");
    }
    for note in implicit_volume_notes(desired) {
        let _ = writeln!(out, "  note: {note}");
    }
    for window in &plan.windows {
        let _ = writeln!(out, "  window: {window}");
    }
    for action in &plan.actions {
        let kind = action.kind();
        let head = format!("{} {kind} {}", symbol(kind), action.name);
        if action.changes().is_empty() || kind == ActionKind::Hold {
            // A hold says why first; its changes are what it would do.
            let _ = writeln!(out, "{}: {}", paint(&head, kind, color), action.op);
        } else {
            let _ = writeln!(out, "{}", paint(&head, kind, color));
        }
        for change in action.changes() {
            let _ = writeln!(out, "    {change}");
        }
    }
    for (name, pin) in &plan.pinned {
        let _ = writeln!(out, "  {name}: {pin}");
    }
    let pending = plan
        .actions
        .iter()
        .filter(|a| a.kind() != ActionKind::Hold)
        .count()
        + plan.stack.iter().filter(|a| a.writes()).count();
    let held = plan.actions.len() + plan.stack.len() - pending;
    let _ = writeln!(
        out,
        "{pending} change(s), {held} held, {} unchanged",
        plan.unchanged.len()
    );
    out
}

/// One line per undeclared named volume the engine will create itself.
fn implicit_volume_notes(desired: &Desired) -> Vec<String> {
    desired
        .implicit_volumes
        .iter()
        .map(|(volume, users)| {
            let users: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
            format!(
                "volume `{volume}` is not declared: the engine creates it on first use (mounted by {})",
                users.join(", ")
            )
        })
        .collect()
}

/// `assetd plan -o json|yaml`.
#[derive(Debug, Serialize)]
pub struct PlanDocument<'a> {
    pub strategy: StrategyKind,
    pub actions: &'a [Action],
    pub unchanged: &'a [AssetName],
    /// Assets held at an earlier revision by `assetd rollback`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pinned: &'a BTreeMap<AssetName, crate::store::history::PinView>,
    /// Networks, volumes, secrets and configs to create, remove or hold.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub stack: &'a [crate::input::stack::plan::StackAction],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub windows: &'a [crate::core::window::WindowView],
    /// Undeclared named volumes the engine creates on first use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    pub changes_pending: bool,
}

pub fn plan_document<'a>(
    plan: &'a Plan,
    desired: &Desired,
    strategy: StrategyKind,
) -> PlanDocument<'a> {
    PlanDocument {
        strategy,
        actions: &plan.actions,
        pinned: &plan.pinned,
        stack: &plan.stack,
        unchanged: &plan.unchanged,
        notes: implicit_volume_notes(desired),
        windows: &plan.windows,
        errors: error_lines(desired),
        changes_pending: plan.has_changes(),
    }
}

fn error_lines(desired: &Desired) -> Vec<String> {
    desired.errors().iter().map(ToString::to_string).collect()
}

/// What `apply --once` prints: each action and how it ended.
pub fn pass_text(pass: &PassReport, root: &std::path::Path) -> String {
    let mut out = String::new();
    for text in render_errors(&pass.desired.errors(), root) {
        let _ = writeln!(out, "{text}");
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
    for held in pass.plan.stack.iter().filter(|a| !a.writes()) {
        let _ = writeln!(out, "{held}");
    }
    for done in &pass.stack {
        match &done.error {
            None => {
                let _ = writeln!(out, "{}", done.action);
            }
            Some(err) => {
                let _ = writeln!(out, "{} FAILED: {err}", done.action);
            }
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

/// `assetd apply --once -o json|yaml`.
#[derive(Debug, Serialize)]
pub struct PassDocument<'a> {
    pub strategy: StrategyKind,
    pub outcomes: &'a [Outcome],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub stack: &'a [crate::reconcile::StackOutcome],
    pub deferred: &'a [AssetName],
    pub unchanged: &'a [AssetName],
    pub errors: Vec<String>,
    pub failed: usize,
    pub duration_ms: u64,
}

pub fn pass_document(pass: &PassReport, strategy: StrategyKind) -> PassDocument<'_> {
    PassDocument {
        strategy,
        outcomes: &pass.outcomes,
        stack: &pass.stack,
        deferred: &pass.deferred,
        unchanged: &pass.plan.unchanged,
        errors: error_lines(&pass.desired),
        failed: pass.failed(),
        duration_ms: pass.duration_ms,
    }
}

/// `assetd validate -o json|yaml`.
#[derive(Debug, Serialize)]
pub struct ValidateDocument<'a> {
    pub assets: Vec<&'a str>,
    pub errors: Vec<ErrorDocument>,
}

/// One manifest problem, field by field.
#[derive(Debug, Serialize)]
pub struct ErrorDocument {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

pub fn validate_document(desired: &Desired) -> ValidateDocument<'_> {
    let errors = desired
        .errors()
        .into_iter()
        .map(|e| ErrorDocument {
            file: e.file,
            line: e.line,
            column: e.column,
            field: e.field,
            message: e.message,
        })
        .collect();
    ValidateDocument {
        assets: desired.assets.keys().map(|n| n.as_str()).collect(),
        errors,
    }
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
    fn long_lines_show_a_window_around_the_column() {
        let dir = std::env::temp_dir().join(format!("assetd-report-long-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let long = format!("{}é{}", "x".repeat(1_000_000), "y".repeat(1_000_000));
        std::fs::write(
            dir.join("a.yaml"),
            format!("{}\n  image: {long}\n{}\n", "k".repeat(500), "z".repeat(5)),
        )
        .unwrap();
        let e = ManifestError {
            file: "a.yaml".into(),
            line: 2,
            column: 10 + 1_000_000,
            field: "spec.image".into(),
            message: "bad image".into(),
        };
        let out = render_error_in_context(&e, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.len() < 2000, "{} bytes:\n{out}", out.len());
        assert!(out.contains("[a.yaml:2:1000010]"), "{out}");
        let source_line = out.lines().find(|l| l.contains('é')).expect("the line");
        assert!(
            source_line.contains("│ …xxx") && source_line.ends_with("yyy…"),
            "{out}"
        );
        let caret_line = out.lines().find(|l| l.contains('▲')).expect("a caret line");
        let column = |line: &str, c: char| line.chars().position(|x| x == c).unwrap();
        assert_eq!(column(caret_line, '▲'), column(source_line, 'é'), "{out}");
        // The neighbours are cut to the same window: nothing of them is in it.
        assert!(out.contains("1 │ …\n") && out.contains("3 │ …\n"), "{out}");
    }

    #[test]
    fn only_the_first_problems_are_shown_with_their_lines() {
        let dir = std::env::temp_dir().join(format!("assetd-report-many-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "bogus: 1\n".repeat(30)).unwrap();
        let errors: Vec<ManifestError> = (1..=30)
            .map(|line| ManifestError {
                file: "a.yaml".into(),
                line,
                column: 1,
                field: "bogus".into(),
                message: "unknown field".into(),
            })
            .collect();
        let shown: Vec<String> = render_errors(&errors, &dir).collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(shown.len(), 30);
        assert!(shown[19].contains('▲'), "{}", shown[19]);
        assert_eq!(shown[20], "error: a.yaml:21:1: bogus: unknown field");
    }

    #[test]
    fn short_lines_are_shown_whole_and_missing_lines_fall_back() {
        let excerpt = Excerpt::new("a.yaml", "ab\ncdé\r\nx", 2, 3).unwrap();
        assert_eq!(excerpt.text, "ab\ncdé\nx\n");
        assert_eq!((excerpt.offset, excerpt.first_line), (5, 0));
        let excerpt = Excerpt::new("a.yaml", "1\n2\n3\n4\n", 3, 9).unwrap();
        assert_eq!(excerpt.text, "2\n3\n4\n");
        assert_eq!(
            (excerpt.offset, excerpt.first_line, excerpt.column),
            (3, 1, 1)
        );
        assert!(Excerpt::new("a.yaml", "ab\ncd", 3, 1).is_none());
    }
}
