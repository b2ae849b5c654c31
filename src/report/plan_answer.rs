//! What `assetd plan` prints and how it exits, computed in one place for
//! both ways of asking: by the CLI when no daemon runs, and by the running
//! daemon (which holds the store's lock, so only it knows the last-applied
//! specs and can show changes field by field).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::strategy::AnyStrategy;
use crate::reconcile::{self, Observation, PassConfig, PassError};
use crate::report;
use crate::store::Store;

/// How the plan is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanFormat {
    /// For people; colored when `color`.
    Text { color: bool },
    /// The plan document (`-o json`; `-o yaml` renders the same one).
    Json,
}

/// What the plan says about the manifests against the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanOutcome {
    /// Nothing would be written.
    InSync,
    /// A pass would write to the engine.
    Pending,
    /// A manifest or the directory is unusable: whatever else is pending,
    /// a CI gate on `plan` must fail.
    Invalid,
}

/// The rendered plan, ready to print.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAnswer {
    pub stdout: String,
    /// Lines for stderr (the directory's problem).
    pub errors: Vec<String>,
    pub outcome: PlanOutcome,
    /// The manifests directory that was planned.
    pub manifests: PathBuf,
}

/// Observes and renders the plan.
pub async fn plan_answer(
    config: &PassConfig,
    strategy: &AnyStrategy,
    store: &dyn Store,
    format: PlanFormat,
) -> Result<PlanAnswer, PassError> {
    let Observation { desired, plan, .. } = reconcile::observe(config, strategy, store).await?;
    let root = &config.manifests;
    let dir_problem = report::dir_problem(&desired, root);
    let stdout = match format {
        PlanFormat::Json => {
            let document = report::plan_document(&plan, &desired, strategy.kind());
            serde_json::to_string(&document).unwrap_or_default()
        }
        PlanFormat::Text { color } => {
            report::plan_text(&plan, &desired, strategy.kind(), color, root)
        }
    };
    let outcome = if !desired.errors().is_empty() || dir_problem.is_some() {
        PlanOutcome::Invalid
    } else if plan.has_changes() || plan.awaits_operator() || plan.held_by_a_window() {
        PlanOutcome::Pending
    } else {
        PlanOutcome::InSync
    };
    Ok(PlanAnswer {
        stdout,
        errors: dir_problem
            .map(|p| format!("error: {p}"))
            .into_iter()
            .collect(),
        outcome,
        manifests: root.clone(),
    })
}
