//! Health per asset, beside its sync phase, in Argo CD's vocabulary: does
//! what runs work? A phase says whether the engine holds what the
//! manifests ask for; health says whether that is serving. An asset can
//! be `Running` in sync and `Degraded` (a container turned unhealthy), or
//! held and `Healthy` (the old version runs on).

use serde::{Deserialize, Serialize};

use crate::model::actual::ReplicaCounts;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// Every wanted replica runs (and is healthy where it is checked).
    Healthy,
    /// On its way: being deployed, tasks starting, a healthcheck's start.
    Progressing,
    /// Crash-looping, unhealthy, failing tasks, or a rollout that was
    /// stopped or rolled back: with the engine's own reason.
    Degraded,
    /// Nothing to judge by: not deployed, or the engine not read.
    #[default]
    Unknown,
}

impl Health {
    pub const ALL: [Health; 4] = [
        Health::Healthy,
        Health::Progressing,
        Health::Degraded,
        Health::Unknown,
    ];
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What one asset's health is judged from.
pub struct Evidence<'a> {
    /// Replica counts of its objects on the engine (with the count the
    /// manifest asks for); `None` when it has none or they were not read.
    pub replicas: Option<&'a ReplicaCounts>,
    /// A rollout that failed its gate (rolled back, or paused), with why
    /// and what runs instead.
    pub stopped_rollout: Option<&'a str>,
    /// A deploy of it is queued, in flight or about to be.
    pub changing: bool,
}

/// The health and, when not healthy, why.
pub fn assess(e: &Evidence) -> (Health, Option<String>) {
    let Some(replicas) = e.replicas else {
        let health = if e.changing {
            Health::Progressing
        } else {
            Health::Unknown
        };
        return (health, None);
    };
    if let Some(why) = e.stopped_rollout {
        return (Health::Degraded, Some(why.to_string()));
    }
    if let Some(why) = &replicas.failing {
        return (Health::Degraded, Some(why.clone()));
    }
    if let Some(why) = &replicas.unhealthy {
        return (Health::Degraded, Some(why.clone()));
    }
    if let Some(why) = &replicas.missing_nodes {
        return (Health::Degraded, Some(why.clone()));
    }
    if replicas.running < replicas.desired {
        let why = format!("{}/{} running", replicas.running, replicas.desired);
        let why = match &replicas.pending_reason {
            Some(reason) => format!("{why}: {reason}"),
            None => why,
        };
        return (Health::Progressing, Some(why));
    }
    if replicas.rolling {
        return (
            Health::Progressing,
            Some("the engine is rolling out an update".into()),
        );
    }
    if e.changing {
        return (Health::Progressing, None);
    }
    (Health::Healthy, None)
}

/// A rollout the engine stopped (paused, rolled back), or one this assetd
/// rolled back, of the version the manifest still asks for: a failure,
/// whatever else holds.
pub fn stopped_rollout(
    have: Option<&crate::model::actual::ActualAsset>,
    record: Option<&crate::model::applied::AppliedRecord>,
    wanted: Option<&crate::model::spec::SpecHash>,
) -> Option<String> {
    let rolled_back_here = record
        .and_then(|r| r.rolled_back.as_ref())
        // A hook's hold stops nothing that runs: the plan's hold says it.
        .filter(|r| Some(&r.hash) == wanted && !r.held)
        .map(|r| {
            let how = if r.held { "held" } else { "rolled back" };
            format!("{how}: {}", r.reason)
        });
    have.and_then(|h| h.failed_rollout(wanted))
        .or(rolled_back_here)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(desired: u64, running: u64) -> ReplicaCounts {
        ReplicaCounts {
            desired,
            running,
            ..Default::default()
        }
    }

    fn judge(
        replicas: &ReplicaCounts,
        stopped: Option<&str>,
        changing: bool,
    ) -> (Health, Option<String>) {
        assess(&Evidence {
            replicas: Some(replicas),
            stopped_rollout: stopped,
            changing,
        })
    }

    #[test]
    fn the_engines_reason_decides_degraded_before_anything_else() {
        let mut r = counts(1, 0);
        r.failing = Some("container a: exited 3, restarted 5 times".into());
        assert_eq!(judge(&r, None, true), (Health::Degraded, r.failing.clone()));
        let mut r = counts(1, 1);
        r.unhealthy = Some("container a: unhealthy: connection refused".into());
        assert_eq!(judge(&r, None, false).0, Health::Degraded);
        let r = counts(1, 1);
        let (health, why) = judge(&r, Some("rolled back: exited 3"), false);
        assert_eq!(health, Health::Degraded);
        assert!(why.unwrap().contains("rolled back"));
    }

    #[test]
    fn all_running_is_healthy_and_fewer_is_progressing() {
        assert_eq!(judge(&counts(2, 2), None, false), (Health::Healthy, None));
        assert_eq!(judge(&counts(2, 2), None, true).0, Health::Progressing);
        let (health, why) = judge(&counts(2, 1), None, false);
        assert_eq!(health, Health::Progressing);
        assert_eq!(why.as_deref(), Some("1/2 running"));
    }

    #[test]
    fn without_objects_health_is_unknown_unless_a_deploy_is_coming() {
        let none = Evidence {
            replicas: None,
            stopped_rollout: None,
            changing: false,
        };
        assert_eq!(assess(&none).0, Health::Unknown);
        let coming = Evidence {
            changing: true,
            ..none
        };
        assert_eq!(assess(&coming).0, Health::Progressing);
    }
}
