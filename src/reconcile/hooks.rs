//! A create or update with `spec.hooks`: `preDeploy` before it (a failure
//! holds the change and what runs stays), `postDeploy` once the new
//! version passed its gate (a failure is a failed rollout: back to the
//! version that ran, unless `failureAction: pause`), `onFailure` after
//! either failure or a failed rollout (its own result changes nothing).
//! Every run goes to the asset's history with its exit code and the tail
//! of its output, secret values taken out.

use crate::engine::strategy::{DeploymentStrategy, Ownership, StrategyError};
use crate::input::desired::DesiredAsset;
use crate::model::hooks::{Hook, HookKind, HookRun};
use crate::model::spec::FailureAction;
use crate::store::{AppliedRecord, Store};

use super::execute::deploy;

/// How long a `postDeploy` waits for Swarm to finish a rollout, beyond
/// the asset's monitor window.
const ROLLOUT_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// The longest a job asset may run before it is killed and counts as
/// failed.
pub const JOB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

/// A job asset's deploy: it runs to completion, as a hook does. Exit 0
/// records the version as applied (its dependents may go); anything else
/// holds it, not run again until its manifest changes or a retry.
pub(super) async fn run_job<S: DeploymentStrategy>(
    strategy: &S,
    want: &DesiredAsset,
    record: &mut AppliedRecord,
    store: &dyn Store,
    runs: &mut Vec<String>,
) -> Result<Vec<String>, StrategyError> {
    strategy.sweep_hooks(&want.spec.name).await;
    let job = Hook {
        image: None,
        command: want.spec.command.clone(),
        timeout: JOB_TIMEOUT,
    };
    let run = run_one(strategy, want, HookKind::Job, &job, store, runs).await;
    if !run.succeeded() {
        return Err(StrategyError::HookHeld(run.summary()));
    }
    record.spec = Some(want.spec.clone());
    record.hash = Some(want.hash.clone());
    record.source = Some(want.source.clone());
    record.depends_on = want.depends_on.clone();
    record.object_ids = vec![];
    record.version = None;
    record.applied_ms = Some(crate::store::now_ms());
    record.last_result = Some(crate::store::ActionResult::Ok);
    record.last_error = None;
    record.attempts = 0;
    record.next_retry_ms = None;
    record.failed_hash = None;
    record.rolled_back = None;
    Ok(vec![])
}

/// [`deploy`] with the asset's hooks around it.
pub(super) async fn deploy_with_hooks<S: DeploymentStrategy>(
    strategy: &S,
    want: &DesiredAsset,
    record: &mut AppliedRecord,
    store: &dyn Store,
    runs: &mut Vec<String>,
) -> Result<Vec<String>, StrategyError> {
    if want.hooks.is_empty() {
        return deploy(strategy, want, record).await;
    }
    // Hooks that a crash left behind are removed before any new one runs.
    strategy.sweep_hooks(&want.spec.name).await;
    let previous = record.spec.clone().zip(record.hash.clone());
    if let Some(run) = run(strategy, want, HookKind::PreDeploy, store, runs).await {
        if !run.succeeded() {
            run_on_failure(strategy, want, store, runs).await;
            return Err(StrategyError::HookHeld(run.summary()));
        }
    }
    let warnings = match deploy(strategy, want, record).await {
        Ok(warnings) => warnings,
        Err(e) => {
            run_on_failure(strategy, want, store, runs).await;
            return Err(e);
        }
    };
    if want.hooks.post_deploy.is_none() {
        return Ok(warnings);
    }
    let limit = want.spec.monitor_or(strategy.default_monitor()) + ROLLOUT_WAIT;
    if let Err(why) = strategy.rollout_ended(&want.spec.name, limit).await {
        run_on_failure(strategy, want, store, runs).await;
        return Err(StrategyError::RolledBack(why));
    }
    let Some(run) = run(strategy, want, HookKind::PostDeploy, store, runs).await else {
        return Ok(warnings);
    };
    if run.succeeded() {
        return Ok(warnings);
    }
    let summary = run.summary();
    let pause = want.spec.update.as_ref().map(|u| u.failure_action()) == Some(FailureAction::Pause);
    let result = match previous {
        Some((spec, hash)) if !pause => {
            let owner = Ownership {
                hash: hash.clone(),
                source: want.source.clone(),
                revision: want.revision.clone(),
            };
            match strategy.deploy(&spec, &owner).await {
                Ok(_) => {
                    // The version that runs is the previous one again.
                    record.spec = Some(spec);
                    record.hash = Some(hash);
                    Err(StrategyError::RolledBack(summary))
                }
                Err(e) => Err(StrategyError::Refused(format!(
                    "{summary}; going back to the previous version failed: {e}"
                ))),
            }
        }
        // Paused, or a first deploy (nothing to go back to): the new
        // version stays, held until the manifest changes or a retry.
        _ => Err(StrategyError::HookHeld(summary)),
    };
    run_on_failure(strategy, want, store, runs).await;
    result
}

/// Runs the asset's `kind` hook, if it has one, and records the run.
async fn run<S: DeploymentStrategy>(
    strategy: &S,
    want: &DesiredAsset,
    kind: HookKind,
    store: &dyn Store,
    runs: &mut Vec<String>,
) -> Option<HookRun> {
    let hook = want.hooks.get(kind)?;
    Some(run_one(strategy, want, kind, hook, store, runs).await)
}

/// Runs `hook` of the asset and records the run.
async fn run_one<S: DeploymentStrategy>(
    strategy: &S,
    want: &DesiredAsset,
    kind: HookKind,
    hook: &Hook,
    store: &dyn Store,
    runs: &mut Vec<String>,
) -> HookRun {
    let mut run = strategy.run_hook(&want.spec, kind, hook).await;
    run.output_tail = want.redactions.apply(&run.output_tail);
    if let Some(error) = run.error.take() {
        run.error = Some(want.redactions.apply(&error));
    }
    let summary = run.summary();
    runs.push(summary.clone());
    if run.succeeded() {
        tracing::info!(hook = %kind, "{summary}");
    } else {
        tracing::warn!(hook = %kind, "{summary}");
    }
    let entry = crate::store::history::control(summary, None);
    if let Err(e) = crate::store::history::append(store, &want.spec.name, entry) {
        tracing::warn!(error = %e, "could not record the hook's run");
    }
    run
}

async fn run_on_failure<S: DeploymentStrategy>(
    strategy: &S,
    want: &DesiredAsset,
    store: &dyn Store,
    runs: &mut Vec<String>,
) {
    let _ = run(strategy, want, HookKind::OnFailure, store, runs).await;
}
