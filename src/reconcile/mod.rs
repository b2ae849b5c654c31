//! One reconcile pass as a use case: read desired, list actual, plan,
//! execute, record (`rollout_result`: what `apply --once` waits for).
//! Knows nothing of the daemon's loop, the API or the output formats.
//!
//! Every pass recomputes everything from listings (level-triggered), so it
//! is correct whatever triggered it and however many triggers were lost.
//! Actions run with bounded concurrency; each result is written to the
//! store as soon as it is known, and one failing asset never stops the
//! others: its failure becomes a backoff timer on its own record.

pub mod rollout_result;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tracing::Instrument;

use crate::core::backoff::backoff;
use crate::core::plan::{Action, ActionKind, Op, Plan, PlanConfig};
use crate::engine::strategy::stack_engine::{StackActual, StackEngine};
use crate::engine::strategy::{ActualAsset, DeploymentStrategy, Ownership, StrategyError};
use crate::input::desired::DesiredAsset;
use crate::input::desired::{self, Desired, LoadOptions, ParseCache};
use crate::input::stack::plan::{StackAction, StackOp};
use crate::model::spec::AssetName;
use crate::store::{now_ms, ActionResult, AppliedRecord, RolledBack, Store};

/// Everything a pass needs to know, fixed before the runtime starts.
#[derive(Clone, Debug)]
pub struct PassConfig {
    pub manifests: PathBuf,
    pub load: LoadOptions,
    pub plan: PlanConfig,
    /// How many Docker-writing actions run at once.
    pub concurrency: usize,
    /// Skip assets whose backoff has not expired (the daemon); `apply
    /// --once` retries everything because an operator asked for it.
    pub respect_backoff: bool,
    /// Parse results of unchanged files, shared by the passes of one
    /// process (and by clones of this config): the daemon's. A single
    /// pass (`apply --once`, `plan`) has nothing to reuse.
    pub parse_cache: Option<Arc<ParseCache>>,
    /// Ask the registries whether the tags of `pullPolicy: Always` assets
    /// moved (a resync, `apply --once`, `plan`): a moved tag is drift, and
    /// the asset is rolled out to the new digest.
    pub check_moved_tags: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Docker could not be listed: nothing was planned or changed.
    #[error("cannot list managed objects: {0}")]
    Engine(#[from] StrategyError),
}

/// What one pass saw and did.
#[derive(Debug, Serialize)]
pub struct PassReport {
    pub plan: Plan,
    pub outcomes: Vec<Outcome>,
    /// The networks, volumes, secrets and configs created or removed.
    pub stack: Vec<StackOutcome>,
    /// Actions left for later because their asset is backing off.
    pub deferred: Vec<AssetName>,
    #[serde(skip)]
    pub desired: Desired,
    pub duration_ms: u64,
}

impl PassReport {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
            + self.stack.iter().filter(|o| o.error.is_some()).count()
    }

    /// Actions held (left as it runs, or a removal waiting).
    /// Assets held, and networks, secrets and configs held until the
    /// operator acts.
    pub fn held(&self) -> usize {
        let assets = self
            .outcomes
            .iter()
            .filter(|o| o.kind == ActionKind::Hold)
            .count();
        assets + self.plan.stack.iter().filter(|a| a.awaits_operator).count()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: AssetName,
    pub kind: ActionKind,
    pub reason: String,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// One create or removal of a network, volume, secret or config.
#[derive(Debug, Clone, Serialize)]
pub struct StackOutcome {
    pub action: StackAction,
    pub error: Option<String>,
}

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

/// Reads the manifests directory off the async runtime: it is plain
/// blocking file IO.
pub async fn load_desired(config: &PassConfig) -> Desired {
    load_desired_with(config, config.load.clone()).await
}

async fn load_desired_with(config: &PassConfig, load: LoadOptions) -> Desired {
    let dir = config.manifests.clone();
    let cache = config.parse_cache.clone();
    tokio::task::spawn_blocking(move || {
        desired::load_dir_cached(&dir, &load, &|k| std::env::var(k).ok(), cache.as_deref())
    })
    .await
    .expect("loading manifests does not panic")
}

/// What one look at the world found, and the plan between its parts.
#[derive(Debug)]
pub struct Observation {
    pub desired: Desired,
    pub actual: Vec<ActualAsset>,
    /// The store's records, with those rebuilt from labels for managed
    /// objects it does not know.
    pub applied: BTreeMap<AssetName, AppliedRecord>,
    pub plan: Plan,
    /// Rollback pins whose manifest changed since: they have ended.
    pub ended_pins: Vec<AssetName>,
    /// The revision of the manifests copy read.
    pub revision: crate::input::revision::Revision,
    /// The networks, volumes, secrets and configs found (none for an
    /// engine without them).
    pub stack: Option<StackActual>,
}

/// Passes until nothing waits for a dependency that may still come up
/// (`dependsOn`), or `limit` is over: `apply --once` on an empty engine
/// creates the broker, then its producers once it runs healthy. The
/// report is the last pass's, with the earlier passes' actions first.
pub async fn run_passes_in_order<S: DeploymentStrategy>(
    config: &PassConfig,
    strategy: &S,
    store: &Arc<dyn Store>,
    limit: Duration,
) -> Result<PassReport, PassError> {
    let deadline = Instant::now() + limit;
    let mut report = run_pass(config, strategy, store).await?;
    let mut earlier = Vec::new();
    let mut earlier_stack = Vec::new();
    while report.plan.waits_for_a_dependency() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let done = std::mem::take(&mut report.outcomes);
        earlier.extend(done.into_iter().filter(|o| o.kind != ActionKind::Hold));
        earlier_stack.append(&mut report.stack);
        report = run_pass(config, strategy, store).await?;
    }
    earlier.append(&mut report.outcomes);
    report.outcomes = earlier;
    earlier_stack.append(&mut report.stack);
    report.stack = earlier_stack;
    Ok(report)
}

/// Desired, actual and applied, and the plan between them: no writes.
pub async fn observe<S: DeploymentStrategy>(
    config: &PassConfig,
    strategy: &S,
    store: &dyn Store,
) -> Result<Observation, PassError> {
    let mut load = config.load.clone();
    if let Some(engine) = strategy.stack() {
        load.version_key = Some(engine.version_key().await?);
    }
    let (desired, actual) = tokio::join!(load_desired_with(config, load), strategy.list_managed());
    let mut actual = actual?;
    if config.check_moved_tags {
        let records = store.all();
        note_moved_tags(
            strategy,
            &desired,
            &records,
            &config.plan.retry,
            &mut actual,
        )
        .await;
    }
    let stack = match strategy.stack() {
        Some(engine) if engine.worth_a_look(&desired) => Some(engine.observe().await?),
        _ => None,
    };
    let applied = with_adopted(store.all(), &actual);
    let revision = crate::input::revision::Revision::of(&config.manifests, &desired);
    let pins = crate::store::history::load_pins(store);
    let suspensions = crate::store::suspend::Suspensions::load(store);
    let crate::core::plan::pass::PassPlan {
        desired,
        plan,
        ended_pins,
    } = crate::core::plan::pass::plan_pass(crate::core::plan::pass::PassInputs {
        desired,
        revision: revision.short(),
        applied: &applied,
        actual: &actual,
        stack: stack.as_ref().map(|s| (&s.present, s.objects.as_slice())),
        pins: &pins,
        suspensions: &suspensions,
        config: &config.plan,
        default_monitor: strategy.default_monitor(),
        now: chrono::Utc::now(),
    });
    Ok(Observation {
        stack,
        revision,
        ended_pins,
        desired,
        actual,
        applied,
        plan,
    })
}

/// Writes into the history of `name` that an override let its change
/// through a sync window (`why`: the window's words).
pub fn record_window_override(store: &dyn Store, name: &AssetName, why: &str, by_uid: Option<u32>) {
    let by = by_uid.map(|u| format!(" by uid {u}")).unwrap_or_default();
    let entry =
        crate::store::history::control(format!("sync window overridden{by}: {why}"), by_uid);
    if let Err(e) = crate::store::history::append(store, name, entry) {
        tracing::warn!(asset = %name, error = %e, "could not record the window override");
    }
}

/// Asks the registries about the tags of `pullPolicy: Always` assets that
/// run their manifest's spec; a tag that moved becomes drift, which the
/// plan repairs by deploying the same spec (the strategy pulls and rolls
/// the new digest out). An unreachable registry is no drift: what runs
/// stays.
///
/// A version whose rollout failed here is not looked at again: the tag
/// still names (or names again) what failed, and deploying it would stop
/// what runs once more per resync. It waits, like any failed version, for
/// a new manifest or `assetd retry`.
async fn note_moved_tags<S: DeploymentStrategy>(
    strategy: &S,
    desired: &Desired,
    records: &BTreeMap<AssetName, AppliedRecord>,
    retry: &std::collections::BTreeSet<AssetName>,
    actual: &mut [ActualAsset],
) {
    let mut checks = Vec::new();
    for (i, have) in actual.iter().enumerate() {
        let Some(want) = desired.assets.get(&have.name) else {
            continue;
        };
        let failed_here = records
            .get(&have.name)
            .and_then(|r| r.rolled_back.as_ref())
            .is_some_and(|r| r.hash == want.hash);
        // Swarm rolled the service back (or is rolling it): the digest
        // the tag moved to is what failed.
        let engine_rolled_back =
            have.replicas.rolling || have.rollout.as_ref().is_some_and(|r| r.rolled_back);
        if (failed_here || engine_rolled_back) && !retry.contains(&have.name) {
            continue;
        }
        let runs_it = have.spec_hash.as_ref() == Some(&want.hash) && have.drift.is_empty();
        if runs_it && want.spec.pull_policy() == crate::model::spec::PullPolicy::Always {
            checks.push((i, want.spec.clone(), have.clone()));
        }
    }
    let found: Vec<(usize, Option<String>)> = futures_util::stream::iter(checks)
        .map(|(i, spec, have)| async move { (i, strategy.moved_image(&spec, &have).await) })
        .buffer_unordered(4)
        .collect()
        .await;
    for (i, moved) in found {
        if let Some(moved) = moved {
            tracing::info!(asset = %actual[i].name, %moved, "image tag moved");
            actual[i].drift.push(moved);
        }
    }
}

/// Records for managed objects the store does not know (a lost or new
/// store), rebuilt from their labels so nothing is redeployed for it.
fn with_adopted(
    mut applied: BTreeMap<AssetName, AppliedRecord>,
    actual: &[ActualAsset],
) -> BTreeMap<AssetName, AppliedRecord> {
    for asset in actual {
        applied
            .entry(asset.name.clone())
            .or_insert_with(|| AppliedRecord {
                hash: asset.spec_hash.clone(),
                source: asset.source.clone(),
                object_ids: asset.object_ids.clone(),
                version: asset.version,
                applied_ms: Some(now_ms()),
                updated_ms: now_ms(),
                ..Default::default()
            });
    }
    applied
}

/// Writes the records rebuilt from labels, so a lost store is whole again
/// after one pass.
pub fn persist_adopted(store: &dyn Store, applied: &BTreeMap<AssetName, AppliedRecord>) {
    for (name, record) in applied {
        if !store.contains(name) {
            tracing::info!(asset = %name, "adopting managed object into the store from its labels");
            let _ = store.put(name, record);
        }
    }
}

/// Records the new file of assets whose manifest moved without changing
/// what it declares (a no-op for Docker): a later error in the moved file
/// must be linked to the assets it declares.
pub fn persist_moves(
    store: &dyn Store,
    desired: &Desired,
    applied: &BTreeMap<AssetName, AppliedRecord>,
) {
    for (name, want) in &desired.assets {
        let Some(record) = applied.get(name) else {
            continue;
        };
        if record.hash.as_ref() == Some(&want.hash)
            && record.source.as_deref() != Some(want.source.as_str())
        {
            let Some(mut current) = store.get(name) else {
                continue;
            };
            tracing::info!(asset = %name, from = ?current.source, to = %want.source, "manifest moved; recording its new file");
            current.source = Some(want.source.clone());
            let _ = store.put(name, &current);
        }
    }
}

/// Whether `action` must wait for its asset's backoff: only a retry of
/// the very spec that failed does. A changed manifest is a new attempt.
pub fn backing_off(action: &Action, record: &AppliedRecord, now: u64) -> Option<Duration> {
    if action.kind() == ActionKind::Hold {
        return None;
    }
    let retry_at = record.next_retry_ms.filter(|at| *at > now)?;
    let same_spec = match (action.desired(), &record.failed_hash) {
        (Some(want), Some(failed)) => &want.hash == failed,
        // A removal, or a failure recorded before hashes were: wait.
        _ => true,
    };
    same_spec.then(|| Duration::from_millis(retry_at - now))
}

/// Clears the error of assets that converged since it was recorded (a
/// monitor alerting on `last_error` must see it go away).
pub fn persist_resolved(
    store: &dyn Store,
    plan: &Plan,
    applied: &BTreeMap<AssetName, AppliedRecord>,
) {
    for name in &plan.unchanged {
        let Some(record) = applied.get(name) else {
            continue;
        };
        if record.last_error.is_none() && record.last_result != Some(ActionResult::Failed) {
            continue;
        }
        let Some(mut current) = store.get(name) else {
            continue;
        };
        tracing::info!(asset = %name, "converged; clearing the recorded error");
        current.last_error = None;
        current.last_result = Some(ActionResult::Ok);
        current.attempts = 0;
        current.next_retry_ms = None;
        current.failed_hash = None;
        current.updated_ms = now_ms();
        let _ = store.put(name, &current);
    }
}

/// One full pass, waiting for every action (`apply --once`).
pub async fn run_pass<S: DeploymentStrategy>(
    config: &PassConfig,
    strategy: &S,
    store: &Arc<dyn Store>,
) -> Result<PassReport, PassError> {
    let started = Instant::now();
    let Observation {
        desired,
        applied,
        plan,
        stack,
        ..
    } = observe(config, strategy, store.as_ref()).await?;
    for (name, why) in &plan.window_overrides {
        record_window_override(
            store.as_ref(),
            name,
            why,
            config.plan.override_windows.by_uid,
        );
    }
    let mut stack_outcomes = Vec::new();
    if let (Some(engine), Some(found)) = (strategy.stack(), &stack) {
        stack_outcomes = apply_stack(&engine, (&desired, found, &plan.stack), false).await;
    }
    persist_adopted(store.as_ref(), &applied);
    persist_moves(store.as_ref(), &desired, &applied);
    persist_resolved(store.as_ref(), &plan, &applied);
    let now = now_ms();
    let mut runnable = Vec::new();
    let mut deferred = Vec::new();
    for action in &plan.actions {
        let waiting = applied
            .get(&action.name)
            .and_then(|r| backing_off(action, r, now))
            .is_some();
        if config.respect_backoff && waiting {
            deferred.push(action.name.clone());
        } else {
            runnable.push(action.clone());
        }
    }

    let outcomes: Vec<Outcome> = futures_util::stream::iter(runnable)
        .map(|action| {
            let record = applied.get(&action.name).cloned().unwrap_or_default();
            execute(action, record, strategy, store.as_ref())
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    if let Err(e) = store.flush() {
        tracing::warn!(error = %e, "could not flush the state store");
    }
    // Removals after the assets': what the pass removed frees networks
    // and old versions, so the stack is looked at again.
    let ours_before = stack
        .as_ref()
        .is_some_and(|s| s.objects.iter().any(|a| a.owned));
    if ours_before || !stack_outcomes.is_empty() {
        stack_outcomes.extend(remove_unused_stack(config, strategy, &desired, &plan).await);
    }
    Ok(PassReport {
        plan,
        outcomes,
        stack: stack_outcomes,
        deferred,
        desired,
        duration_ms: started.elapsed().as_millis() as u64,
    })
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
            Op::Create(want)
            | Op::Update { desired: want, .. }
            | Op::Repair { desired: want, .. } => deploy(strategy, want, &mut record)
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
async fn deploy<S: DeploymentStrategy>(
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

/// Adds the deploy to the asset's history.
fn record_revision(store: &dyn Store, want: &DesiredAsset, record: &AppliedRecord, action: String) {
    use crate::store::history::{self, Outcome};
    let outcome = match record.last_result {
        Some(ActionResult::Ok) => Outcome::Ok,
        _ if record
            .rolled_back
            .as_ref()
            .is_some_and(|r| r.hash == want.hash) =>
        {
            Outcome::RolledBack
        }
        _ => Outcome::Failed,
    };
    let mut entry = history::deployed(&want.spec, &want.hash, outcome, action);
    entry.revision.clone_from(&want.revision);
    if let Err(e) = history::append(store, &want.spec.name, entry) {
        tracing::warn!(error = %e, "could not record the revision");
    }
}

/// Records a failed action: a rolled-back version for the planner to
/// hold, anything else as a backoff timer. Returns the error text.
fn record_failure(
    record: &mut AppliedRecord,
    want: Option<&DesiredAsset>,
    error: StrategyError,
) -> String {
    record.last_result = Some(ActionResult::Failed);
    if let StrategyError::RolledBack(why) = &error {
        // Nothing to retry: the same version would fail the same way.
        // The planner holds it until the manifest changes.
        tracing::warn!(reason = %why, "rolled back");
        record.rolled_back = want.map(|d| RolledBack {
            hash: d.hash.clone(),
            reason: why.clone(),
        });
        record.next_retry_ms = None;
        record.last_error = Some(format!("rolled back: {why}"));
    } else {
        record.failed_hash = want.map(|d| d.hash.clone());
        record.attempts = record.attempts.saturating_add(1);
        let delay = backoff(record.attempts);
        record.next_retry_ms = Some(now_ms() + delay.as_millis() as u64);
        record.last_error = Some(error.to_string());
        // Retried on its own: a warning, not yet an operator's problem.
        tracing::warn!(%error, attempts = record.attempts, retry_in_s = delay.as_secs(), "failed");
    }
    record.last_error.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(hash: &str) -> Action {
        use crate::model::spec::SpecHash;
        // The backoff rule looks at hashes only; any spec will do.
        let spec = crate::model::spec::tests::sample();
        Action {
            name: spec.name.clone(),
            op: Op::Update {
                desired: DesiredAsset {
                    spec,
                    hash: SpecHash(hash.into()),
                    source: "a.yaml".into(),
                    pos: crate::input::manifest::SourcePos {
                        file: "a.yaml".into(),
                        line: 1,
                        column: 1,
                    },
                    depends_on: vec![],
                    revision: None,
                    references: vec![],
                },
                changes: vec![],
                unknown: "",
            },
        }
    }

    #[test]
    fn only_a_retry_of_the_spec_that_failed_waits_for_its_backoff() {
        let record = AppliedRecord {
            next_retry_ms: Some(10_000),
            failed_hash: Some(crate::model::spec::SpecHash("h1".into())),
            ..Default::default()
        };
        assert_eq!(
            backing_off(&action("h1"), &record, 4_000),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            backing_off(&action("h2"), &record, 4_000),
            None,
            "a fixed manifest goes at once"
        );
        assert_eq!(backing_off(&action("h1"), &record, 10_000), None, "expired");
    }
}

/// Whole passes against the in-memory engine: what the strategies do is
/// proven against Docker in `tests/`; this proves what a pass does with it.
#[cfg(test)]
mod pass_tests {
    use std::path::Path;

    use super::*;
    use crate::engine::strategy::fake::FakeStrategy;
    use crate::store::MemoryStore;

    /// A manifests directory of its own, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(test: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("assetd-pass-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn write(&self, name: &str, image: &str) {
            let yaml = format!(
                "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n"
            );
            std::fs::write(self.0.join(format!("{name}.yaml")), yaml).unwrap();
        }

        fn delete(&self, name: &str) {
            std::fs::remove_file(self.0.join(format!("{name}.yaml"))).unwrap();
        }

        fn config(&self) -> PassConfig {
            config(&self.0)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(manifests: &Path) -> PassConfig {
        PassConfig {
            manifests: manifests.to_path_buf(),
            load: LoadOptions {
                policy: Default::default(),
                check_permissions: false,
                age: Default::default(),
                version_key: None,
            },
            plan: PlanConfig::default(),
            concurrency: 4,
            respect_backoff: true,
            parse_cache: None,
            check_moved_tags: false,
        }
    }

    fn name(n: &str) -> AssetName {
        AssetName::new(n).unwrap()
    }

    fn names(list: &[&str]) -> std::collections::BTreeSet<AssetName> {
        list.iter().map(|n| name(n)).collect()
    }

    fn kinds(pass: &PassReport) -> Vec<(String, ActionKind)> {
        let mut kinds: Vec<_> = pass
            .outcomes
            .iter()
            .map(|o| (o.name.to_string(), o.kind))
            .collect();
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        kinds
    }

    fn store() -> Arc<dyn Store> {
        Arc::new(MemoryStore::default())
    }

    #[tokio::test]
    async fn a_pass_deploys_what_is_missing_and_the_next_one_writes_nothing() {
        let dir = Dir::new("missing");
        dir.write("a", "busybox:1");
        dir.write("b", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        let first = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(
            kinds(&first),
            vec![
                ("a".into(), ActionKind::Create),
                ("b".into(), ActionKind::Create)
            ]
        );
        assert_eq!(engine.names(), names(&["a", "b"]));
        assert!(store.get(&name("a")).unwrap().applied_ms.is_some());

        let second = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert!(second.outcomes.is_empty(), "{:?}", second.outcomes);
        assert_eq!(engine.calls().0.len(), 2, "no write for what is converged");
    }

    #[tokio::test]
    async fn objects_found_without_a_store_record_are_adopted_not_redeployed() {
        let dir = Dir::new("adopt");
        dir.write("a", "busybox:1");
        let desired = load_desired(&dir.config()).await;
        let want = &desired.assets[&name("a")];
        let engine = FakeStrategy::default();
        engine.insert(&name("a"), want.hash.clone(), "a.yaml");
        let store = store();

        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert!(pass.outcomes.is_empty(), "{:?}", pass.outcomes);
        assert_eq!(engine.calls(), (vec![], vec![]));
        let record = store.get(&name("a")).expect("adopted into the store");
        assert_eq!(record.hash.as_ref(), Some(&want.hash));
    }

    #[tokio::test]
    async fn drift_is_repaired_with_the_same_spec() {
        let dir = Dir::new("drift");
        dir.write("a", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        run_pass(&dir.config(), &engine, &store).await.unwrap();
        engine.drift(&name("a"), "container a is exited");
        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(kinds(&pass), vec![("a".into(), ActionKind::Repair)]);
        assert_eq!(pass.outcomes[0].reason, "container a is exited");
        assert_eq!(engine.calls().0.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_deploy_backs_off_and_a_changed_manifest_does_not_wait() {
        let dir = Dir::new("backoff");
        dir.write("a", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        engine.fail(&name("a"), "no space left on device");

        let failed = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(failed.failed(), 1);
        let record = store.get(&name("a")).unwrap();
        assert_eq!(record.attempts, 1);
        assert!(record.next_retry_ms.is_some_and(|at| at > now_ms()));
        assert!(record.last_error.unwrap().contains("no space left"));

        // The same spec waits out its backoff: not even tried.
        engine.heal(&name("a"));
        let waiting = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert!(waiting.outcomes.is_empty());
        assert_eq!(waiting.deferred, vec![name("a")]);
        assert!(engine.names().is_empty());

        // A changed manifest is a new attempt: at once.
        dir.write("a", "busybox:2");
        let fixed = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(kinds(&fixed), vec![("a".into(), ActionKind::Create)]);
        assert_eq!(fixed.failed(), 0);
        let record = store.get(&name("a")).unwrap();
        assert_eq!((record.attempts, record.next_retry_ms), (0, None));
    }

    #[tokio::test]
    async fn one_failing_asset_does_not_stop_the_others() {
        let dir = Dir::new("isolation");
        for n in ["a", "b", "c"] {
            dir.write(n, "busybox:1");
        }
        let (engine, store) = (FakeStrategy::default(), store());
        engine.fail(&name("b"), "pull access denied");
        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(pass.outcomes.len(), 3);
        let failed: Vec<&str> = pass
            .outcomes
            .iter()
            .filter(|o| o.error.is_some())
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(failed, vec!["b"]);
        assert_eq!(engine.names(), names(&["a", "c"]));
        assert_eq!(store.get(&name("a")).unwrap().attempts, 0);
        assert_eq!(store.get(&name("b")).unwrap().attempts, 1);
    }

    #[tokio::test]
    async fn deleting_most_manifests_at_once_holds_the_removals_until_confirmed() {
        let dir = Dir::new("prune");
        let all: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        for n in &all {
            dir.write(n, "busybox:1");
        }
        let (engine, store) = (FakeStrategy::default(), store());
        run_pass(&dir.config(), &engine, &store).await.unwrap();
        for n in &all[3..] {
            dir.delete(n);
        }

        let held = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(held.held(), 7);
        assert!(held.outcomes.iter().all(|o| o.reason.contains("7 of 10")));
        assert_eq!(held.plan.confirmable.len(), 7);
        assert_eq!(engine.names().len(), 10, "nothing removed");
        assert!(engine.calls().1.is_empty());

        let mut confirmed = dir.config();
        confirmed.plan.confirmed = held.plan.confirmable.iter().cloned().collect();
        let pruned = run_pass(&confirmed, &engine, &store).await.unwrap();
        assert_eq!(
            pruned
                .outcomes
                .iter()
                .filter(|o| o.kind == ActionKind::Remove && o.error.is_none())
                .count(),
            7
        );
        assert_eq!(engine.names(), names(&["a0", "a1", "a2"]));
        assert!(store.get(&name("a9")).is_none(), "its record goes with it");
    }

    #[tokio::test]
    async fn an_invalid_manifest_holds_its_asset_and_every_removal() {
        let dir = Dir::new("invalid");
        dir.write("a", "busybox:1");
        dir.write("b", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        run_pass(&dir.config(), &engine, &store).await.unwrap();
        std::fs::write(dir.0.join("a.yaml"), "kind: Asset\nspec: [\n").unwrap();
        dir.delete("b");

        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(
            kinds(&pass),
            vec![
                ("a".into(), ActionKind::Hold),
                ("b".into(), ActionKind::Hold)
            ]
        );
        let a = pass
            .plan
            .actions
            .iter()
            .find(|x| x.name == name("a"))
            .unwrap();
        assert!(matches!(
            a.hold(),
            Some(crate::core::plan::HoldReason::InvalidManifest { .. })
        ));
        assert_eq!(engine.names(), names(&["a", "b"]), "nothing removed");
    }
}
