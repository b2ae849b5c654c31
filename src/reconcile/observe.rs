//! Gathering a pass's inputs: the manifests, the engine's listing (with
//! moved tags when due), the store's records, the stack; then the plan
//! (`crate::core::plan::pass`).

use std::collections::BTreeMap;

use futures_util::StreamExt;

use crate::core::plan::Plan;
use crate::engine::strategy::stack_engine::StackActual;
use crate::engine::strategy::{ActualAsset, DeploymentStrategy};
use crate::input::desired::Desired;
use crate::model::spec::AssetName;
use crate::store::{now_ms, AppliedRecord, Store};

use super::*;

/// The manifests as `config` reads them (see [`read_manifests`]).
pub async fn load_desired(config: &PassConfig) -> Desired {
    read_manifests(config, config.load.clone(), false)
        .await
        .desired
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
    /// The manifests directory was walked for this pass (not the last
    /// read reused).
    pub walked: bool,
    /// The networks, volumes, secrets and configs found (none for an
    /// engine without them).
    pub stack: Option<StackActual>,
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
    // A resync reads the directory again, as it lists the engine again.
    let fresh = config.check_moved_tags;
    let (read, actual) = tokio::join!(read_manifests(config, load, fresh), strategy.list_managed());
    let ManifestsRead {
        desired,
        revision,
        walked,
    } = read;
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
        walked,
        ended_pins,
        desired,
        actual,
        applied,
        plan,
    })
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
pub(super) async fn note_moved_tags<S: DeploymentStrategy>(
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
pub(super) fn with_adopted(
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
