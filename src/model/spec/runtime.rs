//! Settings of the process and of the Swarm service beyond the seed's
//! parameters: what Compose files carry (`entrypoint`, `working_dir`,
//! `deploy.restart_policy`, network aliases, ...).
//!
//! Every field is left out of the canonical form when unset, so specs
//! written before these existed keep their hash (no redeploy on upgrade).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// Replaces the image's ENTRYPOINT (Swarm's `Command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// How long a stop waits before it kills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// `HOST:IP` lines for /etc/hosts, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// The Swarm service's own labels when they differ from the
    /// container's (Compose's `deploy.labels`); `None`: the spec's labels
    /// go on both, as for native manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_labels: Option<BTreeMap<String, String>>,
    /// Extra DNS names per network (network → aliases).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Swarm's restart policy of the tasks; `None` leaves Swarm's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    /// Swarm's update and rollback configs exactly as a Compose file
    /// writes them; `None` keeps assetd's safe rollout (`spec.update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_update: Option<RolloutConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_rollback: Option<RolloutConfig>,
}

/// `deploy.restart_policy` (or `restart:`), in Swarm's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ns: Option<i64>,
}

/// `deploy.update_config` / `deploy.rollback_config`, field for field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ns: Option<i64>,
    /// `continue`, `rollback` or `pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_ns: Option<i64>,
    /// As written (`0.1`): kept as text so the spec hashes exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<String>,
    /// `start-first` or `stop-first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

impl Runtime {
    pub fn is_empty(&self) -> bool {
        *self == Runtime::default()
    }
}
