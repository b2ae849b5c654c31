//! Sync windows in the plan: a change a window closes is held with the
//! window's words, and so is a change that depends on a held one (a
//! consumer does not move ahead of its broker). See [`crate::core::window`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Action, ActionKind, HoldReason, Op, Plan};
use crate::core::window::{closed_for, Closed, Overrides, Repairs, SyncWindow};
use crate::input::desired::Desired;
use crate::model::spec::AssetName;

/// Holds every change a window closes, then every change that depends
/// on a held one (a consumer does not move ahead of its broker). Returns
/// the assets an override let through, for their history.
pub fn hold_closed(
    plan: &mut Plan,
    windows: &[SyncWindow],
    desired: &Desired,
    now: DateTime<Utc>,
    overrides: &Overrides,
) -> Vec<(AssetName, String)> {
    let mut overridden = Vec::new();
    if windows.is_empty() {
        return overridden;
    }
    for action in &mut plan.actions {
        let kind = action.kind();
        if kind == ActionKind::Hold {
            continue;
        }
        let labels = desired.assets.get(&action.name).map(|d| &d.spec.labels);
        let Some(closed) = closed_for(windows, &action.name, labels, now) else {
            continue;
        };
        if kind == ActionKind::Repair && closed.repairs == Repairs::Allow {
            continue;
        }
        if overrides.covers(&action.name) {
            overridden.push((action.name.clone(), closed.why));
            continue;
        }
        hold(action, closed);
    }
    let held: BTreeMap<AssetName, Closed> = plan
        .actions
        .iter()
        .filter_map(|a| match a.hold() {
            Some(HoldReason::Window { closed, .. }) => Some((a.name.clone(), closed.clone())),
            _ => None,
        })
        .collect();
    for action in &mut plan.actions {
        if !matches!(action.kind(), ActionKind::Create | ActionKind::Update) {
            continue;
        }
        let Some(want) = desired.assets.get(&action.name) else {
            continue;
        };
        let Some((dep, closed)) = want.depends_on.iter().find_map(|d| Some((d, held.get(d)?)))
        else {
            continue;
        };
        if overrides.covers(&action.name) {
            continue;
        }
        let mut closed = closed.clone();
        closed.dependency = Some(dep.clone());
        hold(action, closed);
    }
    overridden
}

fn hold(action: &mut Action, closed: Closed) {
    let placeholder = Op::Remove(super::RemoveReason { was_in: None });
    let then = std::mem::replace(&mut action.op, placeholder);
    action.op = Op::Hold(HoldReason::Window {
        closed,
        then: Box::new(Action {
            name: action.name.clone(),
            op: then,
        }),
    });
}

#[cfg(test)]
mod tests;
