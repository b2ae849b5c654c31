//! `dependsOn`: the broker before its producers. After the per-asset
//! decisions, a create, update or repair whose dependencies do not all run
//! healthy waits (a hold that says for what), and a removal waits while
//! an asset that depends on it still runs. Waiting is not failing: the
//! asset is Held, and the pass that sees its dependency healthy (an
//! engine event triggers it) lets it go.
//!
//! Whether a dependency is ready (`not_ready`), rows tried in order:
//!
//! | row | the dependency                                        | its dependent            |
//! |-----|-------------------------------------------------------|--------------------------|
//! | 1   | is not listed on the engine                           | waits: not running yet   |
//! | 2   | is being created, updated or repaired this pass       | waits: being deployed    |
//! | 3   | is Degraded (crash loop, unhealthy, missing nodes)    | waits, stuck, with why   |
//! | 4   | is Progressing or Unknown (replicas short, rolling)   | waits, with why          |
//! | 5   | is Healthy but up for less than its monitor window    | waits: Progressing (up Ns of its Ms) |
//! | 6   | is Healthy and ran its monitor window                 | goes                     |
//!
//! A job (`Mode::Job`) is ready once its version ran to completion
//! (exit 0); while it runs its dependents wait, and its failure leaves
//! them waiting, stuck, with its exit code and output.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, ActionKind, HoldReason, Op, Plan};
use crate::core::health::{self, Health};
use crate::input::desired::Desired;
use crate::model::actual::ActualAsset;
use crate::model::applied::AppliedRecord;
use crate::model::spec::AssetName;

/// Holds the actions that must wait for a dependency, or for a dependent
/// to go first. `default_monitor`: the strategy's monitor window, for a
/// dependency whose `spec.update.monitor` is not set: a dependency is
/// ready once it ran that long without dying (a broker that crash-loops
/// a few seconds after its start is not ready).
pub fn order(
    plan: &mut Plan,
    desired: &Desired,
    applied: &BTreeMap<AssetName, AppliedRecord>,
    actual: &[ActualAsset],
    default_monitor: std::time::Duration,
) {
    let actual: BTreeMap<&AssetName, &ActualAsset> = actual.iter().map(|a| (&a.name, a)).collect();
    let changing: BTreeSet<AssetName> = plan
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a.kind(),
                ActionKind::Create | ActionKind::Update | ActionKind::Repair
            )
        })
        .map(|a| a.name.clone())
        .collect();
    let dependents = dependents(desired, applied);
    for action in &mut plan.actions {
        let wait = match action.kind() {
            ActionKind::Create | ActionKind::Update | ActionKind::Repair => {
                desired.assets.get(&action.name).and_then(|want| {
                    want.depends_on.iter().find_map(|dep| {
                        let dependency = desired.assets.get(dep);
                        if let Some(job) = dependency.filter(|d| d.spec.is_job()) {
                            return job_not_done(dep, job, applied.get(dep), &changing);
                        }
                        let monitor = dependency
                            .map_or(default_monitor, |d| d.spec.monitor_or(default_monitor));
                        not_ready(dep, &actual, &changing, monitor)
                    })
                })
            }
            ActionKind::Remove => dependents
                .get(&action.name)
                .and_then(|users| users.iter().find(|u| actual.contains_key(u)))
                .map(|user| {
                    (
                        user.clone(),
                        "still runs; removed after it".to_string(),
                        false,
                    )
                }),
            ActionKind::Hold => None,
        };
        if let Some((on, state, stuck)) = wait {
            let placeholder = Op::Remove(super::RemoveReason { was_in: None });
            let then = std::mem::replace(&mut action.op, placeholder);
            action.op = Op::Hold(HoldReason::Waiting {
                on,
                state,
                stuck,
                then: Box::new(Action {
                    name: action.name.clone(),
                    op: then,
                }),
            });
        }
    }
}

/// Who depends on whom: from the manifests, and for assets no longer
/// declared, from what was recorded when they were deployed.
fn dependents(
    desired: &Desired,
    applied: &BTreeMap<AssetName, AppliedRecord>,
) -> BTreeMap<AssetName, BTreeSet<AssetName>> {
    let declared = desired.assets.iter().map(|(n, a)| (n, &a.depends_on));
    let recorded = applied
        .iter()
        .filter(|(n, _)| !desired.assets.contains_key(*n))
        .map(|(n, r)| (n, &r.depends_on));
    let mut out: BTreeMap<AssetName, BTreeSet<AssetName>> = BTreeMap::new();
    for (user, deps) in declared.chain(recorded) {
        for dep in deps {
            out.entry(dep.clone()).or_default().insert(user.clone());
        }
    }
    out
}

/// Why the job `dep` has not done its work for its dependents, if it
/// has not: it goes once its version ran to completion (exit 0).
fn job_not_done(
    dep: &AssetName,
    job: &crate::input::desired::DesiredAsset,
    record: Option<&AppliedRecord>,
    changing: &BTreeSet<AssetName>,
) -> Option<(AssetName, String, bool)> {
    let done = record.is_some_and(|r| {
        r.hash.as_ref() == Some(&job.hash)
            && r.last_result == Some(crate::model::applied::ActionResult::Ok)
    });
    if done {
        return None;
    }
    let failed = record
        .and_then(|r| r.rolled_back.as_ref())
        .filter(|r| r.hash == job.hash);
    let (state, stuck) = match failed {
        Some(failed) => (format!("Failed ({})", failed.reason), true),
        None if changing.contains(dep) => ("running to completion".to_string(), false),
        None => ("not completed yet".to_string(), false),
    };
    Some((dep.clone(), state, stuck))
}

/// Why `dep` is not ready for its dependents, if it is not: missing,
/// being deployed this pass, or not running healthy (in the engine's
/// words).
fn not_ready(
    dep: &AssetName,
    actual: &BTreeMap<&AssetName, &ActualAsset>,
    changing: &BTreeSet<AssetName>,
    monitor: std::time::Duration,
) -> Option<(AssetName, String, bool)> {
    let mut stuck = false;
    let state = match actual.get(dep) {
        None => "not running yet".to_string(),
        Some(_) if changing.contains(dep) => "being deployed".to_string(),
        Some(have) => {
            let evidence = health::Evidence {
                replicas: Some(&have.replicas),
                stopped_rollout: None,
                changing: false,
            };
            let (health, why) = health::assess(&evidence);
            stuck = health == Health::Degraded;
            match (health, why) {
                (Health::Healthy, _) => match have.replicas.up_secs {
                    Some(up) if up < monitor.as_secs() => format!(
                        "Progressing (up {up}s of its {}s monitor window)",
                        monitor.as_secs()
                    ),
                    _ => return None,
                },
                (health, Some(why)) => format!("{health} ({why})"),
                (health, None) => health.to_string(),
            }
        }
    };
    Some((dep.clone(), state, stuck))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::tests::running;
    use crate::model::actual::ReplicaCounts;

    const MONITOR: std::time::Duration = std::time::Duration::from_secs(5);

    fn ask(have: Option<ReplicaCounts>, changing: bool) -> Option<(String, bool)> {
        let dep = AssetName::new("broker").unwrap();
        let listed = have.map(|replicas| ActualAsset {
            replicas,
            ..running("broker", "img:1", "b.yaml")
        });
        let actual: BTreeMap<&AssetName, &ActualAsset> = listed.iter().map(|a| (&dep, a)).collect();
        let changing: BTreeSet<AssetName> = changing.then(|| dep.clone()).into_iter().collect();
        not_ready(&dep, &actual, &changing, MONITOR).map(|(_, state, stuck)| (state, stuck))
    }

    fn up(secs: u64) -> ReplicaCounts {
        ReplicaCounts {
            desired: 1,
            running: 1,
            up_secs: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn row_1_not_listed() {
        assert_eq!(ask(None, false), Some(("not running yet".into(), false)));
    }

    #[test]
    fn row_2_being_deployed() {
        assert_eq!(
            ask(Some(up(60)), true),
            Some(("being deployed".into(), false))
        );
    }

    #[test]
    fn row_3_degraded_is_stuck_with_the_engines_reason() {
        let crash = ReplicaCounts {
            failing: Some("crash-looping, exited 3".into()),
            ..up(60)
        };
        let (state, stuck) = ask(Some(crash), false).unwrap();
        assert!(stuck);
        assert!(state.contains("exited 3"), "{state}");
    }

    #[test]
    fn row_4_progressing_waits_not_stuck() {
        let short = ReplicaCounts {
            running: 0,
            ..up(60)
        };
        let (state, stuck) = ask(Some(short), false).unwrap();
        assert!(!stuck);
        assert!(state.contains("0/1 running"), "{state}");
    }

    #[test]
    fn row_5_healthy_within_its_monitor_window_waits() {
        let (state, stuck) = ask(Some(up(2)), false).unwrap();
        assert!(!stuck);
        assert_eq!(state, "Progressing (up 2s of its 5s monitor window)");
    }

    #[test]
    fn row_6_healthy_past_its_monitor_window_is_ready() {
        assert_eq!(ask(Some(up(5)), false), None);
    }
}
