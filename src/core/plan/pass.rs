//! One pass's plan, made in one place and one order, pure: `observe`
//! gathers the inputs (`crate::reconcile`), this decides.
//!
//! The order, and why:
//!
//! 1. **Missing references.** An asset naming a network, secret or config
//!    that is neither declared nor on the engine is held at its position
//!    (a named volume is the engine's to create): it must not reach the
//!    planner as deployable.
//! 2. **The revision stamp** on every desired asset: it is part of what
//!    is deployed and recorded.
//! 3. **Rollback pins** replace a pinned asset's manifest spec by the
//!    pinned one, so that the planner compares with what the operator
//!    chose.
//! 4. **`plan()`**, the decide table (`super`), with its guards.
//! 5. **`dependsOn`** orders what is left: a deploy waits for its
//!    dependencies, a removal for its dependents.
//! 6. **Suspensions**, then **sync windows**, then the **stack plan**.
//!    A suspension wins over everything (what resuming would do is
//!    kept); a window holds what is not suspended; the stack's removals
//!    wait while any asset removal is held by a guard, so they come last.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{plan, Plan, PlanConfig};
use crate::input::desired::Desired;
use crate::input::stack::plan::{ActualResource, MassGuard, Removals};
use crate::input::stack::ResourceKind;
use crate::model::actual::ActualAsset;
use crate::model::applied::AppliedRecord;
use crate::model::control::{Pin, PinView, Suspensions};
use crate::model::spec::{diff, AssetName};

/// The engine's stack as a pass saw it: every name present (whoever made
/// it), and the objects of ours or of a declared name.
pub type StackSeen<'a> = (&'a BTreeSet<(ResourceKind, String)>, &'a [ActualResource]);

/// Everything a pass's plan is decided on.
pub struct PassInputs<'a> {
    /// As read; completed here (holds, revision, pins).
    pub desired: Desired,
    /// The manifests revision, short form, stamped on every asset.
    pub revision: String,
    pub applied: &'a BTreeMap<AssetName, AppliedRecord>,
    pub actual: &'a [ActualAsset],
    /// The engine's networks, volumes, secrets and configs, when looked
    /// at.
    pub stack: Option<StackSeen<'a>>,
    pub pins: &'a BTreeMap<AssetName, Pin>,
    pub suspensions: &'a Suspensions,
    pub config: &'a PlanConfig,
    /// The strategy's monitor window, for dependencies without their own.
    pub default_monitor: Duration,
    pub now: DateTime<Utc>,
}

/// A pass's plan and the desired state it was made from.
pub struct PassPlan {
    pub desired: Desired,
    pub plan: Plan,
    /// Rollback pins whose manifest changed since: they have ended.
    pub ended_pins: Vec<AssetName>,
}

/// The six steps, in the order above.
pub fn plan_pass(inputs: PassInputs) -> PassPlan {
    let PassInputs {
        mut desired,
        revision,
        applied,
        actual,
        stack,
        pins,
        suspensions,
        config,
        default_monitor,
        now,
    } = inputs;
    if let Some((present, _)) = stack {
        desired.hold_missing_references(present);
    }
    for want in desired.assets.values_mut() {
        want.revision = Some(revision.clone());
    }
    let (pinned, ended_pins) = apply_pins(&mut desired, pins);
    let mut plan = plan(&desired, applied, actual, config);
    plan.pinned = pinned;
    super::dependencies::order(&mut plan, &desired, applied, actual, default_monitor);
    super::suspended::hold_suspended(&mut plan, suspensions);
    let windows = &desired.windows;
    plan.window_overrides =
        super::windows::hold_closed(&mut plan, windows, &desired, now, &config.override_windows);
    plan.windows = crate::core::window::views(windows, now);
    plan.next_window_change = crate::core::window::next_change(windows, now);
    if let Some((_, objects)) = stack {
        let removals = stack_removals(&desired, &plan);
        plan.stack = crate::input::stack::plan::plan(
            &desired.resources,
            &desired.held_resources,
            objects,
            &removals,
            mass_guard(config),
        );
    }
    PassPlan {
        desired,
        plan,
        ended_pins,
    }
}

/// Puts each pinned asset's pinned spec in place of its manifest's, as
/// long as the manifest is the one it was pinned against; returns how
/// each differs from its manifest. Pins whose manifest changed are
/// returned apart: they have ended.
fn apply_pins(
    desired: &mut Desired,
    pins: &BTreeMap<AssetName, Pin>,
) -> (BTreeMap<AssetName, PinView>, Vec<AssetName>) {
    let mut views = BTreeMap::new();
    let mut ended = Vec::new();
    for (name, pin) in pins {
        let Some(want) = desired.assets.get_mut(name) else {
            continue;
        };
        if want.hash != pin.manifest_hash {
            ended.push(name.clone());
            continue;
        }
        let differs = diff(&want.spec, &pin.spec);
        want.spec = pin.spec.clone();
        want.hash = pin.hash.clone();
        views.insert(
            name.clone(),
            PinView {
                revision: pin.revision,
                by_uid: pin.by_uid,
                since_ms: pin.since_ms,
                differs,
            },
        );
    }
    (views, ended)
}

/// Whether this pass may remove networks, secrets and configs: not while
/// the directory or a manifest is unreadable or invalid (it may declare
/// them), nor while the asset plan holds removals of its own.
pub fn stack_removals(desired: &Desired, plan: &Plan) -> Removals {
    // An empty directory is no reason of its own: what is removed is
    // unused, and a volume is never removed.
    if !matches!(desired.dir, crate::input::desired::DirState::Present { .. }) {
        return Removals::Held("the manifests directory is missing or unreadable".into());
    }
    if let Some((file, _)) = desired.invalid_files.iter().next() {
        return Removals::Held(format!("removals wait while {file} is invalid"));
    }
    let guarded = plan
        .actions
        .iter()
        .any(|a| matches!(a.hold(), Some(super::HoldReason::Removal { .. })));
    if guarded {
        return Removals::Held("asset removals are held by a guard; these wait with them".into());
    }
    Removals::Allowed
}

/// The assets' `--max-prune` and `--allow-mass-prune`, for the stack.
pub fn mass_guard(config: &PlanConfig) -> MassGuard {
    MassGuard {
        allow: config.allow_mass_prune,
        max_fraction: config.max_prune_fraction,
        always_allowed: config.always_allowed_removals,
    }
}

#[cfg(test)]
mod tests;
