//! The one pass pipeline, for `apply --once` and the daemon alike: a plan
//! is carried out in one order, and only what runs the asset actions
//! differs (an [`Executor`]: inline, or the daemon's scheduler).
//!
//! The order, and why:
//! 1. stack objects are created (and secret files written): what the
//!    assets need exists when they start;
//! 2. the records of assets with no action in flight are settled
//!    (adopted from labels, moved files, resolved errors): an action in
//!    flight writes its own, and one from this listing would race it;
//! 3. the asset actions go to the executor;
//! 4. stack objects no longer used are removed. This is where the two
//!    executors differ, on purpose:
//!    - inline waits for the actions, so the engine is looked at again
//!      afterwards and what this pass's removals and rollouts freed goes
//!      now (`apply --once` leaves nothing behind);
//!    - the scheduler does not wait, so only what was already unused
//!      when the pass looked goes, before the actions are handed over;
//!      what they free goes at the next pass, which their ends trigger.

use std::collections::BTreeSet;

use crate::core::plan::Plan;
use crate::engine::strategy::DeploymentStrategy;
use crate::model::spec::AssetName;
use crate::store::Store;

use super::{
    apply_stack, persist_adopted, persist_moves, persist_resolved, remove_unused_stack,
    Observation, PassConfig, StackOutcome,
};

/// What runs a plan's asset actions.
pub(crate) trait Executor<S: DeploymentStrategy> {
    /// What running them tells the caller.
    type Ran;

    /// Whether [`Executor::run`] returns only once the actions ended.
    const WAITS: bool;

    /// Assets with an action in flight from an earlier pass.
    fn busy(&self) -> BTreeSet<AssetName>;

    /// Runs (or hands over) every action of `obs.plan`.
    async fn run(&mut self, obs: &Observation, strategy: &S) -> Self::Ran;
}

/// What the pipeline did: the stack's writes, and the executor's answer.
pub(crate) struct Carried<R> {
    pub stack: Vec<StackOutcome>,
    pub ran: R,
}

/// Carries out `obs.plan` in the pipeline's order (module doc).
pub(crate) async fn carry_out<S: DeploymentStrategy, E: Executor<S>>(
    config: &PassConfig,
    obs: &Observation,
    strategy: &S,
    store: &dyn Store,
    executor: &mut E,
) -> Carried<E::Ran> {
    let busy = executor.busy();
    let engine = strategy.stack();
    let mut stack = Vec::new();
    if let (Some(engine), Some(found)) = (&engine, &obs.stack) {
        let view = (&obs.desired, found, obs.plan.stack.as_slice());
        stack = apply_stack(engine, view, false).await;
        if !E::WAITS {
            stack.extend(apply_stack(engine, view, true).await);
        }
    }
    persist_settled(store, obs, &busy);
    let ran = executor.run(obs, strategy).await;
    if let Err(e) = store.flush() {
        tracing::warn!(error = %e, "could not flush the state store");
    }
    if E::WAITS {
        let ours_before = obs
            .stack
            .as_ref()
            .is_some_and(|s| s.objects.iter().any(|a| a.owned));
        if ours_before || !stack.is_empty() {
            stack.extend(remove_unused_stack(config, strategy, &obs.desired, &obs.plan).await);
        }
    }
    Carried { stack, ran }
}

/// Records adopted from labels, moved files and resolved errors, for the
/// assets with no action running.
fn persist_settled(store: &dyn Store, obs: &Observation, busy: &BTreeSet<AssetName>) {
    let settled = obs.applied.iter().filter(|(name, _)| !busy.contains(*name));
    persist_adopted(store, settled);
    persist_moves(store, &obs.desired, &obs.applied);
    let settled_plan = Plan {
        unchanged: obs
            .plan
            .unchanged
            .iter()
            .filter(|n| !busy.contains(*n))
            .cloned()
            .collect(),
        ..Default::default()
    };
    persist_resolved(store, &settled_plan, &obs.applied);
}

/// `apply --once`: every action runs now (bounded by the pass's
/// concurrency) and is waited for; one backing off is deferred when the
/// pass respects backoff.
pub(crate) struct Inline<'a> {
    pub config: &'a PassConfig,
    pub store: &'a dyn Store,
}

/// What the inline executor did.
pub(crate) struct InlineRan {
    pub outcomes: Vec<super::Outcome>,
    pub deferred: Vec<AssetName>,
}

impl<S: DeploymentStrategy> Executor<S> for Inline<'_> {
    type Ran = InlineRan;
    const WAITS: bool = true;

    fn busy(&self) -> BTreeSet<AssetName> {
        BTreeSet::new()
    }

    async fn run(&mut self, obs: &Observation, strategy: &S) -> InlineRan {
        use futures_util::StreamExt;
        let plan = &obs.plan;
        for (name, why) in &plan.window_overrides {
            let by_uid = self.config.plan.override_windows.by_uid;
            super::record_window_override(self.store, name, why, by_uid);
        }
        let now = crate::store::now_ms();
        let mut runnable = Vec::new();
        let mut deferred = Vec::new();
        for action in &plan.actions {
            let waiting = obs
                .applied
                .get(&action.name)
                .and_then(|r| super::backing_off(action, r, now))
                .is_some();
            if self.config.respect_backoff && waiting {
                deferred.push(action.name.clone());
            } else {
                runnable.push(action.clone());
            }
        }
        let store = self.store;
        let outcomes = futures_util::stream::iter(runnable)
            .map(|action| {
                let record = obs.applied.get(&action.name).cloned().unwrap_or_default();
                super::execute(action, record, strategy, store)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        InlineRan { outcomes, deferred }
    }
}
