//! What the engine runs, as every layer sees it: one listed asset, its
//! replicas and a rollout the engine stopped (the Docker side that lists
//! it is `crate::engine::strategy`).

use serde::{Deserialize, Serialize};

use super::spec::{AssetName, SpecHash};
use super::writer::WriterStamp;

/// One managed asset as Docker reports it, built from a single listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualAsset {
    pub name: AssetName,
    /// `io.assetd.spec-hash` of the objects; `None` when they disagree or
    /// the label is missing (both count as drift).
    pub spec_hash: Option<SpecHash>,
    /// `io.assetd.source` of the objects.
    pub source: Option<String>,
    pub object_ids: Vec<String>,
    /// Swarm's version index of the service.
    pub version: Option<u64>,
    /// Drift visible from the objects alone: stopped or missing replicas,
    /// replicas changed by hand. Empty when the objects look as deployed.
    pub drift: Vec<String>,
    /// Desired vs running tasks or containers, for status.
    pub replicas: ReplicaCounts,
    /// Who last wrote the objects, when they carry a stamp.
    pub writer: Option<WriterStamp>,
    /// Local engine: the template hash all containers share, when they
    /// share one. The spec-hash labels of kept containers tell the count
    /// they were created for, so after a scale the asset matches its spec
    /// when its template and its number of containers do.
    #[serde(default)]
    pub template_hash: Option<SpecHash>,
    /// Swarm: the last rollout was stopped (paused, or rolled back).
    #[serde(default)]
    pub rollout: Option<Rollout>,
}

impl ActualAsset {
    /// Why its last rollout counts as failed, if it does: paused, or
    /// rolled back while the manifest still asks for the version that
    /// failed (`wanted`: the desired spec hash).
    pub fn failed_rollout(&self, wanted: Option<&SpecHash>) -> Option<String> {
        let rollout = self.rollout.as_ref()?;
        let runs_wanted = wanted.is_some() && self.spec_hash.as_ref() == wanted;
        if rollout.rolled_back && runs_wanted {
            return None;
        }
        Some(format!(
            "update {} by the engine: {}",
            rollout.state, rollout.message
        ))
    }
}

/// A rollout the engine stopped, in its own words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Swarm's `UpdateStatus.State`: `paused`, `rollback_completed`, ...
    pub state: String,
    /// The service runs the previous spec again.
    pub rolled_back: bool,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCounts {
    pub desired: u64,
    pub running: u64,
    /// Seconds the oldest not-yet-running task has been waiting (Swarm).
    pub pending_secs: Option<u64>,
    /// Why a task is not running, as Swarm says it (`no suitable node
    /// ...`, `No such image ...`), when it says anything.
    pub pending_reason: Option<String>,
    /// Fewer run than desired because they fail, in the engine's own
    /// words with the exit code (`task rejected: No such image ...`,
    /// `container x: Restarting (3) 2 seconds ago`): the asset is Failed.
    #[serde(default)]
    pub failing: Option<String>,
    /// A running container its healthcheck calls unhealthy, with the
    /// check's last output: the asset is Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<String>,
    /// Swarm is replacing tasks: an update or a rollback is under way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolling: bool,
    /// A global service's nodes that are down or drained (which Swarm
    /// leaves out of its count): the asset is Degraded, naming them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_nodes: Option<String>,
    /// Seconds the youngest running replica has been up: a dependency is
    /// ready for what depends on it only once it ran its monitor window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_secs: Option<u64>,
    /// A replica came back lately after a crash of its version and runs:
    /// not counted yet (one turn of a crash loop, or a recovery); the
    /// verdict comes when it dies again or stays up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settling: bool,
}
