//! An engine in memory, for unit tests of passes without Docker.
//!
//! It keeps one object per asset (the spec hash and source it was
//! deployed with), lists them like a strategy lists by label, fails the
//! deploys it is told to fail, and counts the calls. The real strategies
//! are proven against a real engine in `tests/`; this one only lets the
//! layers above them (plan, reconcile, store) be tested fast.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::engine::strategy::{
    ActualAsset, Deployed, DeploymentStrategy, Ownership, Removed, ReplicaCounts, StrategyError,
};
use crate::model::spec::{AssetName, DeploySpec, SpecHash};

/// Clones share one engine, like clones of a Docker client.
#[derive(Clone, Default)]
pub struct FakeStrategy {
    engine: Arc<Mutex<FakeEngine>>,
}

#[derive(Default)]
struct FakeEngine {
    objects: BTreeMap<AssetName, FakeObject>,
    /// Deploys of these assets fail with this message.
    failing: BTreeMap<AssetName, String>,
    deploys: Vec<AssetName>,
    removes: Vec<AssetName>,
    next_id: u64,
}

#[derive(Clone, Debug)]
struct FakeObject {
    id: String,
    hash: SpecHash,
    source: String,
    /// Drift the next listing reports (a stopped container, say).
    drift: Vec<String>,
}

impl FakeStrategy {
    fn engine(&self) -> std::sync::MutexGuard<'_, FakeEngine> {
        self.engine.lock().expect("fake engine lock")
    }

    /// An object made outside this pass (by an earlier assetd whose store
    /// is lost): labelled with `hash` and `source`.
    pub fn insert(&self, name: &AssetName, hash: SpecHash, source: &str) {
        let mut engine = self.engine();
        let id = engine.new_id();
        engine.objects.insert(
            name.clone(),
            FakeObject {
                id,
                hash,
                source: source.into(),
                drift: vec![],
            },
        );
    }

    /// Deploys of `name` fail with `message` from now on.
    pub fn fail(&self, name: &AssetName, message: &str) {
        self.engine().failing.insert(name.clone(), message.into());
    }

    /// Deploys of `name` succeed again.
    pub fn heal(&self, name: &AssetName) {
        self.engine().failing.remove(name);
    }

    /// The next listings report `drift` for `name`.
    pub fn drift(&self, name: &AssetName, drift: &str) {
        if let Some(object) = self.engine().objects.get_mut(name) {
            object.drift = vec![drift.into()];
        }
    }

    /// The assets that have an object.
    pub fn names(&self) -> BTreeSet<AssetName> {
        self.engine().objects.keys().cloned().collect()
    }

    /// The assets deployed (writes only) and removed so far, in order.
    pub fn calls(&self) -> (Vec<AssetName>, Vec<AssetName>) {
        let engine = self.engine();
        (engine.deploys.clone(), engine.removes.clone())
    }
}

impl FakeEngine {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("fake-{}", self.next_id)
    }
}

impl DeploymentStrategy for FakeStrategy {
    async fn deploy(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> Result<Deployed, StrategyError> {
        let mut engine = self.engine();
        if let Some(message) = engine.failing.get(&spec.name) {
            return Err(StrategyError::Docker {
                op: "create container",
                target: spec.name.to_string(),
                message: message.clone(),
                status: Some(500),
            });
        }
        if let Some(object) = engine.objects.get(&spec.name) {
            if object.hash == owner.hash && object.drift.is_empty() {
                return Ok(Deployed {
                    object_ids: vec![object.id.clone()],
                    ..Default::default()
                });
            }
        }
        let id = engine.new_id();
        engine.deploys.push(spec.name.clone());
        engine.objects.insert(
            spec.name.clone(),
            FakeObject {
                id: id.clone(),
                hash: owner.hash.clone(),
                source: owner.source.clone(),
                drift: vec![],
            },
        );
        Ok(Deployed {
            object_ids: vec![id],
            wrote: true,
            ..Default::default()
        })
    }

    async fn remove(&self, name: &AssetName) -> Result<Removed, StrategyError> {
        let mut engine = self.engine();
        engine.removes.push(name.clone());
        Ok(match engine.objects.remove(name) {
            Some(_) => Removed::Removed,
            None => Removed::Absent,
        })
    }

    async fn list_managed(&self) -> Result<Vec<ActualAsset>, StrategyError> {
        let engine = self.engine();
        let listed = engine.objects.iter().map(|(name, object)| ActualAsset {
            name: name.clone(),
            spec_hash: Some(object.hash.clone()),
            source: Some(object.source.clone()),
            object_ids: vec![object.id.clone()],
            version: None,
            drift: object.drift.clone(),
            replicas: ReplicaCounts {
                desired: 1,
                running: u64::from(object.drift.is_empty()),
                ..Default::default()
            },
            writer: None,
            template_hash: None,
            rollout: None,
        });
        Ok(listed.collect())
    }
}
