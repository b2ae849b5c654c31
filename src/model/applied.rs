//! What assetd knows of each asset beyond what Docker shows: the record
//! the store keeps (the store itself is `crate::store`).

use serde::{Deserialize, Serialize};

use super::spec::{AssetName, DeploySpec, SpecHash};

/// What assetd knows of one asset beyond what Docker shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// The spec last deployed successfully; `None` when the record was
    /// rebuilt from labels (the hash is known, the fields are not).
    pub spec: Option<DeploySpec>,
    pub hash: Option<SpecHash>,
    /// Manifest file, relative to the manifests directory.
    pub source: Option<String>,
    pub object_ids: Vec<String>,
    /// Swarm version index after our last write: any other index means the
    /// service was changed behind our back.
    pub version: Option<u64>,
    /// The last action with its reason, e.g. `update: spec.image: a → b`.
    pub last_action: Option<String>,
    pub last_result: Option<ActionResult>,
    pub last_error: Option<String>,
    pub warnings: Vec<String>,
    /// Failures in a row; reset by a success. Drives the backoff.
    pub attempts: u32,
    /// Unix milliseconds before which a failed asset is not retried.
    pub next_retry_ms: Option<u64>,
    /// The spec hash whose deploy failed: a changed manifest is a new
    /// attempt, not a retry, and does not wait out the old backoff.
    #[serde(default)]
    pub failed_hash: Option<SpecHash>,
    /// The version that failed its rollout gate, and why: it is not
    /// deployed again until the manifest changes or the operator retries.
    #[serde(default)]
    pub rolled_back: Option<RolledBack>,
    /// Its `dependsOn` when last deployed: once its manifest is gone, it
    /// is still removed before what it depended on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<AssetName>,
    /// Unix milliseconds of the last successful deploy.
    pub applied_ms: Option<u64>,
    /// Unix milliseconds of the last change to this record.
    pub updated_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub hash: SpecHash,
    pub reason: String,
    /// Held by a hook rather than rolled back: what runs may be the new
    /// version (`postDeploy` with `failureAction: pause`) or the old one
    /// (`preDeploy`, which deploys nothing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// When a hook failed: the digest of the hooks it ran with, so that a
    /// fixed hook is a new attempt ([`crate::model::hooks::Hooks::digest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionResult {
    Ok,
    Failed,
    Held,
}
