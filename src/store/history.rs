//! What was deployed before, and going back to it.
//!
//! The store keeps the last [`KEPT`] revisions of each asset (spec, time,
//! result, and the operator's control actions) in its control entries.
//! `assetd rollback NAME [--to N]` pins the asset to an earlier revision:
//! the pass deploys the pinned spec instead of the manifest's until the
//! manifest changes again or the operator resumes the asset.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::model::control::{Pin, PinView};
use crate::model::spec::{AssetName, DeploySpec, SpecHash};
use crate::store::{now_ms, Store, StoreError};

/// Revisions kept per asset.
pub const KEPT: usize = 10;
const PINS: &str = "pins";

fn history_key(name: &AssetName) -> String {
    format!("history/{name}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    RolledBack,
    /// Not a deploy: an operator's action (suspend, resume, rollback).
    Control,
}

/// One entry of an asset's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, 3, ... per asset; kept across the entries dropped.
    pub n: u64,
    pub at_ms: u64,
    pub outcome: Outcome,
    /// What happened, e.g. `update: spec.image: a:1 → a:2`.
    pub action: String,
    /// The spec deployed (none for a control action).
    pub spec: Option<DeploySpec>,
    pub hash: Option<SpecHash>,
    /// The uid of the operator, for control actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_uid: Option<u32>,
    /// The manifests revision a deploy came from (`3f2a91c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// An asset's kept revisions, oldest first.
pub fn load(store: &dyn Store, name: &AssetName) -> Vec<Revision> {
    store
        .control(&history_key(name))
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Appends an entry, numbered after the last; keeps the last [`KEPT`]. A
/// deploy of the spec the last entry already records with the same
/// outcome (a repair) adds nothing.
pub fn append(store: &dyn Store, name: &AssetName, mut entry: Revision) -> Result<(), StoreError> {
    let mut revisions = load(store, name);
    let last = revisions.last();
    let repeat = last.is_some_and(|l| {
        entry.outcome != Outcome::Control && l.hash == entry.hash && l.outcome == entry.outcome
    });
    if repeat {
        return Ok(());
    }
    entry.n = last.map_or(1, |l| l.n + 1);
    revisions.push(entry);
    let excess = revisions.len().saturating_sub(KEPT);
    revisions.drain(..excess);
    let bytes = serde_json::to_vec(&revisions).map_err(|e| StoreError::Io(e.to_string()))?;
    store.set_control(&history_key(name), Some(&bytes))
}

/// A deploy's entry.
pub fn deployed(spec: &DeploySpec, hash: &SpecHash, outcome: Outcome, action: String) -> Revision {
    Revision {
        n: 0,
        at_ms: now_ms(),
        outcome,
        action,
        spec: Some(spec.clone()),
        hash: Some(hash.clone()),
        by_uid: None,
        revision: None,
    }
}

/// An operator's action's entry.
pub fn control(action: String, by_uid: Option<u32>) -> Revision {
    Revision {
        n: 0,
        at_ms: now_ms(),
        outcome: Outcome::Control,
        action,
        spec: None,
        hash: None,
        by_uid,
        revision: None,
    }
}

pub fn load_pins(store: &dyn Store) -> BTreeMap<AssetName, Pin> {
    store
        .control(PINS)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub fn save_pins(store: &dyn Store, pins: &BTreeMap<AssetName, Pin>) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(pins).map_err(|e| StoreError::Io(e.to_string()))?;
    store.set_control(PINS, (!pins.is_empty()).then_some(bytes.as_slice()))?;
    store.flush()
}

/// The revision `rollback` goes to: `to`, or the newest successful one
/// before the one deployed last.
pub fn target(revisions: &[Revision], to: Option<u64>) -> Result<&Revision, String> {
    let deployed = |r: &&Revision| r.outcome == Outcome::Ok && r.spec.is_some();
    match to {
        Some(n) => revisions
            .iter()
            .find(|r| r.n == n)
            .filter(deployed)
            .ok_or_else(|| format!("revision {n} is not a kept successful deploy")),
        None => {
            let current = revisions
                .iter()
                .rev()
                .find(deployed)
                .and_then(|r| r.hash.clone());
            revisions
                .iter()
                .rev()
                .filter(deployed)
                .find(|r| r.hash != current)
                .ok_or_else(|| "no earlier successful revision is kept".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(image: &str, outcome: Outcome) -> Revision {
        let mut spec = crate::model::spec::tests::sample();
        spec.image = image.parse().unwrap();
        let hash = spec.hash();
        deployed(&spec, &hash, outcome, format!("update to {image}"))
    }

    #[test]
    fn history_numbers_keeps_the_last_ten_and_skips_repairs() {
        let store = crate::store::MemoryStore::default();
        let name = AssetName::new("mill").unwrap();
        for i in 0..12 {
            append(&store, &name, entry(&format!("a:{i}"), Outcome::Ok)).unwrap();
        }
        append(&store, &name, entry("a:11", Outcome::Ok)).unwrap();
        let kept = load(&store, &name);
        let numbers: Vec<u64> = kept.iter().map(|r| r.n).collect();
        assert_eq!(numbers, (3..=12).collect::<Vec<u64>>());
    }

    #[test]
    fn rollback_goes_to_the_last_good_other_version_or_the_one_asked_for() {
        let mut revisions = vec![
            entry("a:1", Outcome::Ok),
            entry("a:2", Outcome::Ok),
            entry("a:3", Outcome::RolledBack),
            entry("a:2", Outcome::Ok),
        ];
        for (i, r) in revisions.iter_mut().enumerate() {
            r.n = i as u64 + 1;
        }
        assert_eq!(target(&revisions, None).unwrap().n, 1);
        assert_eq!(target(&revisions, Some(2)).unwrap().n, 2);
        assert!(target(&revisions, Some(3)).is_err(), "a rolled-back one");
        assert!(target(&revisions, Some(9)).is_err());
    }
}
