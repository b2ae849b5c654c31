//! How the rollouts of one `apply --once` pass ended, as the engine tells
//! it. A deploy call that returned says only that the engine took the
//! change: Swarm then replaces the tasks, watches them for the monitor
//! window and may roll back. `apply --once` waits (bounded) for that to
//! end, so its exit code and output say how every rollout ended.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::core::plan::ActionKind;
use crate::engine::strategy::{ActualAsset, DeploymentStrategy};
use crate::model::spec::AssetName;
use crate::reconcile::PassReport;
use crate::store::Store;

const POLL: Duration = Duration::from_millis(500);
/// Swarm starts a rollout a moment after it took the new spec: until it
/// is seen under way (or this long has passed: a change that restarts
/// no task never rolls), the old tasks running say nothing of how it
/// ends.
const SWARM_START: Duration = Duration::from_secs(2);

/// Whether one deployed asset's rollout has ended: nothing being replaced
/// any more, and rolled back or paused, failing, or every replica running.
fn ended(asset: &ActualAsset, pass: &PassReport) -> bool {
    let wanted = pass.desired.assets.get(&asset.name).map(|d| &d.hash);
    let r = &asset.replicas;
    // Tasks the scheduler cannot place wait for a node, not for time.
    let unplaceable = r
        .pending_reason
        .as_deref()
        .is_some_and(|why| why.starts_with("no suitable node"));
    // A rollback under way is waited for too: the answer is how it ends;
    // so is a replica back up after a crash (a loop, or a recovery).
    !r.rolling
        && !r.settling
        && (asset.failed_rollout(wanted).is_some()
            || r.failing.is_some()
            || r.running >= r.desired
            || unplaceable)
}

/// Waits up to `limit` for the rollouts this pass started, then returns
/// the engine's view. `swarm`: the engine rolls updates out after the
/// pass (see [`SWARM_START`]).
pub async fn wait_for_rollouts<S: DeploymentStrategy + ?Sized>(
    strategy: &S,
    pass: &PassReport,
    limit: Duration,
    swarm: bool,
) -> Result<Vec<ActualAsset>, String> {
    let started = tokio::time::Instant::now();
    let updated: BTreeSet<&AssetName> = pass
        .outcomes
        .iter()
        .filter(|o| swarm && o.error.is_none() && o.kind == ActionKind::Update)
        .map(|o| &o.name)
        .collect();
    let mut seen_rolling: BTreeSet<AssetName> = BTreeSet::new();
    let deployed: Vec<&AssetName> = pass
        .outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .filter(|o| {
            matches!(
                o.kind,
                ActionKind::Create | ActionKind::Update | ActionKind::Repair
            )
        })
        .map(|o| &o.name)
        .collect();
    // A first deploy is watched for its monitor window too: a container
    // that dies after a few seconds has not come up (the strategies'
    // update gates cover updates; nothing covers a create).
    let created_until: BTreeMap<&AssetName, tokio::time::Instant> = pass
        .outcomes
        .iter()
        .filter(|o| o.error.is_none() && o.kind == ActionKind::Create)
        .filter_map(|o| {
            // A job ran to its end within the pass.
            let spec = &pass
                .desired
                .assets
                .get(&o.name)
                .filter(|d| !d.spec.is_job())?
                .spec;
            Some((
                &o.name,
                started + spec.monitor_or(strategy.default_monitor()),
            ))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let actual = strategy
            .list_managed()
            .await
            .map_err(|e| format!("cannot list the engine after the pass: {e}"))?;
        seen_rolling.extend(
            actual
                .iter()
                .filter(|a| {
                    let wanted = pass.desired.assets.get(&a.name).map(|d| &d.hash);
                    a.replicas.rolling || a.failed_rollout(wanted).is_some()
                })
                .map(|a| a.name.clone()),
        );
        let starting = started.elapsed() < SWARM_START;
        let pending: Vec<&AssetName> = deployed
            .iter()
            .copied()
            .filter(|name| {
                let not_started =
                    starting && updated.contains(name) && !seen_rolling.contains(*name);
                let monitored = created_until
                    .get(*name)
                    .is_some_and(|until| tokio::time::Instant::now() < *until);
                not_started
                    || monitored
                    || actual
                        .iter()
                        .find(|a| &a.name == *name)
                        .is_some_and(|a| !ended(a, pass))
            })
            .collect();
        if pending.is_empty() {
            return Ok(actual);
        }
        if tokio::time::Instant::now() >= deadline {
            let names: Vec<String> = pending.iter().map(|n| n.to_string()).collect();
            eprintln!(
                "assetd: rollouts still under way after {}s: {}",
                limit.as_secs(),
                names.join(", ")
            );
            return Ok(actual);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every asset that did not end well, with why: a rollout the engine
/// stopped, crash-looping or unhealthy containers, failing tasks, a
/// version this assetd rolled back, and rollouts that had not ended.
pub fn failures(
    actual: &[ActualAsset],
    pass: &PassReport,
    store: &dyn Store,
) -> Vec<(AssetName, String)> {
    let applied = store.all();
    let by_name: BTreeMap<&AssetName, &ActualAsset> = actual.iter().map(|a| (&a.name, a)).collect();
    let names: BTreeSet<&AssetName> = by_name.keys().copied().chain(applied.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let have = by_name.get(name).copied();
            let wanted = pass.desired.assets.get(name).map(|d| &d.hash);
            let r = have.map(|a| &a.replicas);
            // The same reasons status gives, so both tell one story.
            let why = crate::core::health::stopped_rollout(have, applied.get(name), wanted)
                .or_else(|| r?.failing.clone())
                .or_else(|| r?.unhealthy.clone())
                .or_else(|| r?.rolling.then(|| "its rollout had not ended".to_string()))?;
            Some((name.clone(), why))
        })
        .collect()
}
