//! Carrying out one action, or the stack's writes, against the engine.

use tracing::Instrument;

use crate::core::plan::{Action, Op, Plan};
use crate::engine::strategy::stack_engine::{StackActual, StackEngine};
use crate::engine::strategy::{DeploymentStrategy, Ownership, StrategyError};
use crate::input::desired::Desired;
use crate::input::desired::DesiredAsset;
use crate::input::stack::plan::{StackAction, StackOp};
use crate::store::{now_ms, ActionResult, AppliedRecord, Store};

use super::*;

/// Carries out the stack plan's writes of one phase (`removals` false:
/// the creates, before the assets; true: the removals, after them).
pub async fn apply_stack(
    stack: &StackEngine,
    observation: (&Desired, &StackActual, &[StackAction]),
    removals: bool,
) -> Vec<StackOutcome> {
    let (desired, actual, actions) = observation;
    let mut outcomes = Vec::new();
    for action in actions.iter().filter(|a| a.writes()) {
        if (action.op == StackOp::Remove) != removals {
            continue;
        }
        let result = stack
            .apply(action, &desired.resources, actual, &desired.assets)
            .await;
        if let Err(e) = &result {
            tracing::warn!(%action, error = %e, "stack object not converged");
        }
        outcomes.push(StackOutcome {
            action: action.clone(),
            error: result.err().map(|e| e.to_string()),
        });
    }
    if !removals {
        for (name, error) in stack.ensure_files(&desired.resources, &desired.assets) {
            tracing::warn!(name = %name, error = %error, "secret or config files not written");
        }
    }
    outcomes
}

/// Looks at the stack again and removes what is no longer declared or
/// used (within the pass's guards): what the assets' actions freed, and,
/// once a rollout has ended (`apply --once` waits for it), the secret and
/// config versions it replaced.
pub async fn remove_unused_stack<S: DeploymentStrategy>(
    config: &PassConfig,
    strategy: &S,
    desired: &Desired,
    plan: &Plan,
) -> Vec<StackOutcome> {
    let Some(engine) = strategy.stack() else {
        return vec![];
    };
    let Ok(found) = engine.observe().await else {
        return vec![];
    };
    let again = crate::input::stack::plan::plan(
        &desired.resources,
        &desired.held_resources,
        &found.objects,
        &crate::core::plan::pass::stack_removals(desired, plan),
        crate::core::plan::pass::mass_guard(&config.plan),
    );
    apply_stack(&engine, (desired, &found, &again), true).await
}

/// Carries out one action and records its result at once.
pub async fn execute<S: DeploymentStrategy>(
    action: Action,
    mut record: AppliedRecord,
    strategy: &S,
    store: &dyn Store,
) -> Outcome {
    let kind = action.kind();
    let reason = action.reason();
    let span =
        tracing::info_span!("reconcile", asset = %action.name, action = %kind, reason = %reason);
    async move {
        let mut outcome = Outcome {
            name: action.name.clone(),
            kind,
            reason: reason.clone(),
            error: None,
            warnings: vec![],
            hooks: vec![],
        };
        record.updated_ms = now_ms();
        record.last_action = Some(format!("{kind}: {reason}"));
        let result = match &action.op {
            Op::Hold(_) => {
                tracing::warn!("held");
                record.last_result = Some(ActionResult::Held);
                record.last_error = Some(reason.clone());
                Ok(())
            }
            Op::Remove(_) => match strategy.remove(&action.name).await {
                Ok(removed) => {
                    tracing::info!(?removed, "removed");
                    if let Err(e) = store.delete(&action.name) {
                        tracing::warn!(error = %e, "could not delete the record");
                    }
                    return outcome;
                }
                Err(e) => Err(e),
            },
            // A job asset runs to completion instead.
            Op::Create(want)
            | Op::Update { desired: want, .. }
            | Op::Repair { desired: want, .. }
                if want.spec.is_job() =>
            {
                super::hooks::run_job(strategy, want, &mut record, store, &mut outcome.hooks)
                    .await
                    .map(|warnings| outcome.warnings = warnings)
            }
            Op::Create(want) | Op::Update { desired: want, .. } => super::hooks::deploy_with_hooks(
                strategy,
                want,
                &mut record,
                store,
                &mut outcome.hooks,
            )
            .await
            .map(|warnings| outcome.warnings = warnings),
            // A repair brings back the version that ran: no hook.
            Op::Repair { desired: want, .. } => deploy(strategy, want, &mut record)
                .await
                .map(|warnings| outcome.warnings = warnings),
        };
        if let Err(e) = result {
            outcome.error = Some(record_failure(&mut record, action.desired(), e));
        }
        if let Some(want) = action.desired() {
            record_revision(store, want, &record, format!("{kind}: {reason}"));
        }
        // Durable at once: a kill -9 must not lose a recorded result.
        if let Err(e) = store
            .put(&action.name, &record)
            .and_then(|()| store.flush())
        {
            tracing::warn!(error = %e, "could not record the result");
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Deploys `want` and records it as applied; returns the strategy's
/// warnings.
pub(super) async fn deploy<S: DeploymentStrategy>(
    strategy: &S,
    want: &DesiredAsset,
    record: &mut AppliedRecord,
) -> Result<Vec<String>, StrategyError> {
    let owner = Ownership {
        hash: want.hash.clone(),
        source: want.source.clone(),
        revision: want.revision.clone(),
    };
    let deployed = strategy.deploy(&want.spec, &owner).await?;
    tracing::info!(objects = ?deployed.object_ids, "deployed");
    record.spec = Some(want.spec.clone());
    record.hash = Some(want.hash.clone());
    record.source = Some(want.source.clone());
    record.depends_on = want.depends_on.clone();
    record.object_ids = deployed.object_ids;
    record.version = deployed.version;
    record.applied_ms = Some(now_ms());
    record.last_result = Some(ActionResult::Ok);
    record.last_error = None;
    record.attempts = 0;
    record.next_retry_ms = None;
    record.failed_hash = None;
    // Repairing with the version that ran before a rollback keeps the
    // rollback on record.
    record.rolled_back = record.rolled_back.take().filter(|r| r.hash != want.hash);
    record.warnings = deployed.warnings.clone();
    Ok(deployed.warnings)
}
