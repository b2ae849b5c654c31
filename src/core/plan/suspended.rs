//! Suspensions in the plan: every action on a suspended asset becomes a
//! hold that says what resuming would do (see [`crate::store::suspend`]).

use super::{Action, HoldReason, Op, Plan};
use crate::model::control::Suspensions;

/// Turns every action on a suspended asset into a hold that says what
/// resuming would do, and records which assets are suspended.
pub fn hold_suspended(plan: &mut Plan, suspensions: &Suspensions) {
    if suspensions.is_empty() {
        return;
    }
    for action in &mut plan.actions {
        let Some(suspension) = suspensions.of(&action.name) else {
            continue;
        };
        if matches!(action.hold(), Some(HoldReason::Suspended { .. })) {
            continue;
        }
        let placeholder = Op::Remove(super::RemoveReason { was_in: None });
        let would = std::mem::replace(&mut action.op, placeholder);
        action.op = Op::Hold(HoldReason::Suspended {
            suspension: suspension.clone(),
            on_resume: Box::new(Action {
                name: action.name.clone(),
                op: would,
            }),
        });
    }
    let named = plan
        .actions
        .iter()
        .map(|a| &a.name)
        .chain(plan.unchanged.iter());
    plan.suspended = named
        .filter_map(|name| Some((name.clone(), suspensions.of(name)?.clone())))
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::RemoveReason;
    use crate::model::spec::AssetName;
    use crate::store::suspend::tests::by_ops;

    fn name(n: &str) -> AssetName {
        AssetName::new(n).unwrap()
    }

    fn removal(n: &str) -> Action {
        Action {
            name: name(n),
            op: Op::Remove(RemoveReason {
                was_in: Some("mill.yaml".into()),
            }),
        }
    }

    #[test]
    fn a_suspended_asset_is_held_and_says_what_resume_would_do() {
        let mut plan = Plan {
            actions: vec![removal("mill"), removal("lathe")],
            unchanged: vec![name("press")],
            ..Default::default()
        };
        let suspensions = Suspensions {
            assets: [(name("mill"), by_ops()), (name("press"), by_ops())].into(),
            ..Default::default()
        };
        hold_suspended(&mut plan, &suspensions);
        assert_eq!(
            plan.actions[0].reason(),
            "suspended by uid 1000 since 2025-12-02T14:10:00Z (spindle maintenance); on resume: remove: no manifest declares it any more (was in mill.yaml)"
        );
        assert!(plan.actions[1].hold().is_none(), "lathe is not suspended");
        let suspended: Vec<&str> = plan.suspended.keys().map(AssetName::as_str).collect();
        assert_eq!(suspended, ["mill", "press"]);
    }
}
