//! An asset's phase: one decision over what a pass knows of it.
//!
//! | row | what holds                                          | phase     |
//! |-----|-----------------------------------------------------|-----------|
//! | 1   | this daemon stands by                               | Standby   |
//! | 2   | an action of it is queued or running                | Updating  |
//! | 3   | the operator suspended it                           | Suspended |
//! | 4   | its rollout was stopped or rolled back              | Failed    |
//! | 5   | held: its manifest is invalid                       | Invalid   |
//! | 6   | held for any other reason                           | Held      |
//! | 7   | the engine shows it failing, or it last failed with work left | Failed |
//! | 8   | a job whose version ran to completion               | Completed |
//! | 9   | work left, or fewer replicas run than wanted        | Pending   |
//! | 10  | none of the above                                   | Running   |
//!
//! The rows are tried in order: the first that matches decides. So a
//! crash loop is never `Running`, a held change never `Failed`, and a
//! suspended asset reads `Suspended` whatever else is true of it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Deployed as declared and running.
    Running,
    /// Declared, not (all) running yet: about to be deployed, or tasks
    /// waiting to start.
    Pending,
    /// A deploy or removal is queued (waiting for a `--concurrency`
    /// slot) or in progress.
    Updating,
    /// The last deploy failed; retried with backoff.
    Failed,
    /// Left as it runs on purpose (duplicate name, mass-prune guard).
    Held,
    /// Left as it runs because its manifest is invalid.
    Invalid,
    /// This assetd is not the Swarm leader's; it only watches.
    Standby,
    /// The operator suspended it (`assetd suspend`): left as it runs,
    /// not updated, repaired or removed until `assetd resume`.
    Suspended,
    /// A job (`Mode::Job`) whose version ran to completion (exit 0).
    Completed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Why an asset's action is a hold, as far as its phase goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Held {
    #[default]
    No,
    InvalidManifest,
    Other,
}

/// What a pass knows of one asset that decides its phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub standby: bool,
    pub in_flight: bool,
    pub suspended: bool,
    pub rollout_stopped: bool,
    pub held: Held,
    pub failing: bool,
    pub work_left: bool,
    pub replicas_short: bool,
    pub job_completed: bool,
}

pub fn decide(f: &Facts) -> Phase {
    match f {
        Facts { standby: true, .. } => Phase::Standby,
        Facts {
            in_flight: true, ..
        } => Phase::Updating,
        Facts {
            suspended: true, ..
        } => Phase::Suspended,
        Facts {
            rollout_stopped: true,
            ..
        } => Phase::Failed,
        Facts {
            held: Held::InvalidManifest,
            ..
        } => Phase::Invalid,
        Facts {
            held: Held::Other, ..
        } => Phase::Held,
        Facts { failing: true, .. } => Phase::Failed,
        Facts {
            job_completed: true,
            ..
        } => Phase::Completed,
        Facts {
            work_left: true, ..
        }
        | Facts {
            replicas_short: true,
            ..
        } => Phase::Pending,
        _ => Phase::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything true: each row must win over the rows below it.
    fn all() -> Facts {
        Facts {
            standby: true,
            in_flight: true,
            suspended: true,
            rollout_stopped: true,
            held: Held::InvalidManifest,
            failing: true,
            work_left: true,
            replicas_short: true,
            job_completed: true,
        }
    }

    #[test]
    fn row_1_standby() {
        assert_eq!(decide(&all()), Phase::Standby);
    }

    #[test]
    fn row_2_updating() {
        let f = Facts {
            standby: false,
            ..all()
        };
        assert_eq!(decide(&f), Phase::Updating);
    }

    #[test]
    fn row_3_suspended() {
        let f = Facts {
            standby: false,
            in_flight: false,
            ..all()
        };
        assert_eq!(decide(&f), Phase::Suspended);
    }

    #[test]
    fn row_4_a_stopped_rollout_is_failed_even_when_held() {
        let f = Facts {
            standby: false,
            in_flight: false,
            suspended: false,
            ..all()
        };
        assert_eq!(decide(&f), Phase::Failed);
    }

    #[test]
    fn row_5_invalid() {
        let f = Facts {
            held: Held::InvalidManifest,
            failing: true,
            ..Facts::default()
        };
        assert_eq!(decide(&f), Phase::Invalid);
    }

    #[test]
    fn row_6_held_is_never_failed() {
        let f = Facts {
            held: Held::Other,
            failing: true,
            work_left: true,
            ..Facts::default()
        };
        assert_eq!(decide(&f), Phase::Held);
    }

    #[test]
    fn row_7_a_crash_loop_is_never_running() {
        let f = Facts {
            failing: true,
            ..Facts::default()
        };
        assert_eq!(decide(&f), Phase::Failed);
    }

    #[test]
    fn row_8_a_job_that_ran_is_completed_not_pending() {
        let f = Facts {
            job_completed: true,
            replicas_short: true,
            ..Facts::default()
        };
        assert_eq!(decide(&f), Phase::Completed);
        let failed = Facts { failing: true, ..f };
        assert_eq!(decide(&failed), Phase::Failed);
    }

    #[test]
    fn row_9_pending() {
        assert_eq!(
            decide(&Facts {
                work_left: true,
                ..Facts::default()
            }),
            Phase::Pending
        );
        assert_eq!(
            decide(&Facts {
                replicas_short: true,
                ..Facts::default()
            }),
            Phase::Pending
        );
    }

    #[test]
    fn row_10_running() {
        assert_eq!(decide(&Facts::default()), Phase::Running);
    }
}
