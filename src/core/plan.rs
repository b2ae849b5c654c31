//! The pure diff: `plan(desired, applied, actual) -> Plan`.
//!
//! No IO and no failure: every problem becomes data (a `Hold` with its
//! reason). Each asset is decided by one `match` on what is known of it, so
//! the table of cases below is the whole policy:
//!
//! | desired | actual | condition                                  | action |
//! |---------|--------|--------------------------------------------|--------|
//! | yes     | no     | never deployed                             | Create |
//! | yes     | no     | deployed before (store has it)             | Repair |
//! | yes     | yes    | spec hash differs                          | Update |
//! | yes     | yes    | same hash, drift seen on the objects       | Repair |
//! | yes     | yes    | same hash, no drift                        | none   |
//! | no      | any    | its file is invalid, or the name is held   | Hold   |
//! | no      | any    | the directory is missing/refused/empty     | Hold   |
//! | no      | any    | any manifest file is invalid or unreadable | Hold   |
//! | no      | any    | too many removed within the prune window   | Hold   |
//! | no      | yes/no | otherwise (file or document deleted)       | Remove |
//!
//! Objects without our ownership label never reach this function: the
//! strategies list by label.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

mod action;
pub mod dependencies;
pub mod pass;
pub mod suspended;
pub mod windows;

pub use self::action::{Action, ActionKind, HoldReason, Op, RemovalGuard, RemoveReason};
use crate::input::desired::{Desired, DesiredAsset, DirState};
use crate::input::manifest::ManifestError;
use crate::model::actual::ActualAsset;
use crate::model::applied::AppliedRecord;
use crate::model::spec::{diff, AssetName, FieldChange, Mode, SpecHash};

/// Thresholds of the mass-prune guard.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    /// `--allow-mass-prune`: the operator confirms a large removal.
    pub allow_mass_prune: bool,
    /// `--max-prune`: the largest share of managed assets one pass may
    /// remove without confirmation.
    pub max_prune_fraction: f64,
    /// Removals up to this many are always allowed (deleting a few files on
    /// purpose must just work, even on a small fleet).
    pub always_allowed_removals: usize,
    /// What was already removed within the current prune window: the
    /// guard bounds removals over time, not per pass, so files deleted
    /// one by one add up like files deleted at once.
    pub recent: RecentRemovals,
    /// Removals the operator confirmed once (`assetd prune --confirm`):
    /// not counted by the mass-prune guard. The guards that say "we do
    /// not know what is desired" (an invalid file, an unreadable
    /// directory) still hold them.
    pub confirmed: BTreeSet<AssetName>,
    /// Assets the operator asked to deploy once more although the engine
    /// rolled their version back (`assetd retry NAME`).
    pub retry: BTreeSet<AssetName>,
    /// Changes let through although a sync window holds them, once.
    pub override_windows: crate::core::window::Overrides,
    /// Assets whose containers were changed in place by hand (`docker
    /// update`: limits no listing shows). One that has no other action is
    /// repaired: the deploy compares what the listing cannot.
    pub changed_in_place: BTreeSet<AssetName>,
}

/// Removals since the prune window opened, and the fleet size then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentRemovals {
    pub removed: usize,
    /// Managed assets when the window opened; `None` when no window is
    /// open (the fleet as this pass sees it counts).
    pub fleet: Option<usize>,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            allow_mass_prune: false,
            max_prune_fraction: 0.5,
            always_allowed_removals: 5,
            recent: RecentRemovals::default(),
            confirmed: BTreeSet::new(),
            retry: BTreeSet::new(),
            override_windows: Default::default(),
            changed_in_place: BTreeSet::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Desired assets that match what runs: nothing to do.
    pub unchanged: Vec<AssetName>,
    /// Removals held by the mass-prune guard, which an operator may
    /// confirm (`assetd prune --confirm`).
    pub confirmable: Vec<AssetName>,
    /// Assets the operator suspended (`assetd suspend`), planned or not.
    pub suspended: BTreeMap<AssetName, crate::model::control::Suspension>,
    /// Assets pinned to an earlier revision (`assetd rollback`), and how
    /// that differs from their manifests.
    pub pinned: BTreeMap<AssetName, crate::model::control::PinView>,
    /// Networks, volumes, secrets and configs: created before the assets'
    /// actions, removed after them (see [`crate::input::stack`]).
    pub stack: Vec<crate::input::stack::plan::StackAction>,
    /// The sync windows at planning time (`crate::core::window`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<crate::core::window::WindowView>,
    /// When a window next opens or closes: the daemon looks again then.
    #[serde(skip)]
    pub next_window_change: Option<chrono::DateTime<chrono::Utc>>,
    /// Changes a window would hold that an override let through, with
    /// the window's words: each goes into the asset's history.
    #[serde(skip)]
    pub window_overrides: Vec<(AssetName, String)>,
}

impl Plan {
    /// Whether anything would be written to Docker.
    pub fn has_changes(&self) -> bool {
        self.actions.iter().any(|a| a.kind() != ActionKind::Hold)
            || self.stack.iter().any(|a| a.writes())
    }

    /// Whether an action waits for a dependency that is coming up (not
    /// one that is stuck): ready by time passing (its monitor window) or
    /// by an engine event.
    pub fn waits_for_a_dependency(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a.hold(), Some(HoldReason::Waiting { stuck: false, .. })))
    }

    /// Whether a change is held until the operator acts: removals the
    /// mass-prune guard holds, a network changed in a way only `assetd
    /// recreate` applies. The engine does not match the manifests.
    pub fn held_by_a_window(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a.hold(), Some(HoldReason::Window { .. })))
    }

    pub fn awaits_operator(&self) -> bool {
        !self.confirmable.is_empty() || self.stack.iter().any(|a| a.awaits_operator)
    }
}

pub fn plan(
    desired: &Desired,
    applied: &BTreeMap<AssetName, AppliedRecord>,
    actual: &[ActualAsset],
    config: &PlanConfig,
) -> Plan {
    let actual: BTreeMap<&AssetName, &ActualAsset> = actual.iter().map(|a| (&a.name, a)).collect();
    let names: BTreeSet<&AssetName> = desired
        .assets
        .keys()
        .chain(desired.held.keys())
        .chain(applied.keys())
        .chain(actual.keys().copied())
        .collect();

    let mut result = Plan::default();
    let mut removals = Vec::new();
    for name in names {
        let known = Known {
            name,
            want: desired.assets.get(name),
            have: actual.get(name).copied(),
            record: applied.get(name),
        };
        match decide(&known, desired, config) {
            None => result.unchanged.push(name.clone()),
            Some(Op::Remove(why)) => removals.push((name.clone(), why)),
            Some(op) => result.actions.push(Action {
                name: name.clone(),
                op,
            }),
        }
    }

    let managed = actual.len().max(applied.len());
    let (confirmed, guarded): (Vec<_>, Vec<_>) = removals
        .into_iter()
        .partition(|(name, _)| config.confirmed.contains(name));
    let mut removals = guarded;
    let guard = match known_desired_guard(desired) {
        Some(guard) => {
            removals.extend(confirmed.iter().cloned());
            Some(guard)
        }
        None => mass_prune_guard(desired, removals.len(), managed, config),
    };
    if let Some(guard) = &guard {
        if guard.confirmable() {
            result.confirmable = removals.iter().map(|(name, _)| name.clone()).collect();
        }
    }
    let removals = removals.into_iter().map(|(name, would_remove)| {
        let op = match &guard {
            Some(guard) => Op::Hold(HoldReason::Removal {
                guard: guard.clone(),
                would_remove,
            }),
            None => Op::Remove(would_remove),
        };
        Action { name, op }
    });
    result.actions.extend(removals);
    if guard.as_ref().is_none_or(RemovalGuard::confirmable) {
        // Confirmed by the operator: the mass-prune guard does not count
        // them, the guards of an unknown desired state (above) do.
        result
            .actions
            .extend(confirmed.into_iter().map(|(name, why)| Action {
                name,
                op: Op::Remove(why),
            }));
    }
    result.actions.sort_by(|a, b| a.name.cmp(&b.name));
    result
}

/// What is known of one asset: the state tuple `decide` matches on.
struct Known<'a> {
    name: &'a AssetName,
    want: Option<&'a DesiredAsset>,
    have: Option<&'a ActualAsset>,
    record: Option<&'a AppliedRecord>,
}

impl Known<'_> {
    fn applied_hash(&self) -> Option<&SpecHash> {
        self.record.and_then(|r| r.hash.as_ref())
    }
}

/// The action for one asset; `None` when nothing is to be done.
fn decide(known: &Known, desired: &Desired, config: &PlanConfig) -> Option<Op> {
    let Known {
        name, have, record, ..
    } = *known;
    let retry = config.retry.contains(name);
    let Some(want) = known.want else {
        return Some(undeclared(known, desired));
    };
    match have {
        // This very version failed its rollout gate here before: the
        // previous one runs on, and the upgrade waits for a new manifest
        // or the operator (`assetd retry`).
        _ if rolled_back_here(want, record) && !retry => Some(after_rollback(known, want)),
        // A job that ran to completion for this version: nothing runs,
        // and nothing is to be done until its manifest changes.
        None if want.spec.is_job() && known.applied_hash() == Some(&want.hash) => None,
        // Scaled to zero and applied: no objects is exactly what is wanted
        // (the local engine lists nothing for it).
        None if want.spec.mode == (Mode::Replicated { replicas: 0 })
            && known.applied_hash() == Some(&want.hash) =>
        {
            None
        }
        // Nothing runs and the manifest changed since it was applied (a
        // scale up from zero, say): an update, with its field diff.
        None if record.is_some_and(|r| {
            r.applied_ms.is_some() && r.hash.as_ref().is_some_and(|h| h != &want.hash)
        }) =>
        {
            let changes = record
                .and_then(|r| r.spec.as_ref())
                .map(|old| diff(old, &want.spec))
                .unwrap_or_default();
            Some(update(
                want,
                changes,
                "spec hash differs from the one applied",
            ))
        }
        None => Some(match record.and_then(|r| r.applied_ms) {
            Some(_) => repair(want, "nothing runs: removed outside assetd".into()),
            None => Op::Create(want.clone()),
        }),
        // The engine rolled this very version back (its tasks failed):
        // deploying it again would fail again, for ever. It waits for a
        // new manifest, or for the operator (`assetd retry`).
        Some(have)
            if have.rollout.as_ref().is_some_and(|r| r.rolled_back)
                && known.applied_hash() == Some(&want.hash)
                && have.spec_hash.as_ref() != Some(&want.hash)
                && !retry =>
        {
            let rollout = have.rollout.as_ref().expect("checked above");
            Some(Op::Hold(HoldReason::RolledBackByEngine {
                name: name.clone(),
                state: rollout.state.clone(),
                message: rollout.message.clone(),
            }))
        }
        // Swarm is rolling the service back: a write now would restart
        // the rollout Swarm is undoing, for ever. (An update under way
        // may be superseded: Swarm starts over from the new spec.)
        Some(have) if rolling_back(have) && (!runs_spec(want, have) || !have.drift.is_empty()) => {
            let then = match runs_spec(want, have) {
                false => changed(known, want, have),
                true => repair(want, have.drift.join("; ")),
            };
            let state = have
                .rollout
                .as_ref()
                .map_or("updating".to_string(), |r| r.state.clone());
            Some(Op::Hold(HoldReason::EngineRolling {
                state,
                then: Box::new(Action {
                    name: name.clone(),
                    op: then,
                }),
            }))
        }
        Some(have) if !runs_spec(want, have) => Some(changed(known, want, have)),
        Some(have) if !have.drift.is_empty() => Some(repair(want, have.drift.join("; "))),
        Some(_) if config.changed_in_place.contains(name) => Some(repair(
            want,
            "a container was changed in place (docker update)".into(),
        )),
        // Swarm's version index is not compared: Swarm bumps it itself
        // (update status, task bookkeeping); strategies report changes
        // made by hand as drift from a fingerprint of the fields we set.
        Some(_) => None,
    }
}

fn update(want: &DesiredAsset, changes: Vec<FieldChange>, unknown: &'static str) -> Op {
    Op::Update {
        desired: want.clone(),
        changes,
        unknown,
    }
}

fn repair(want: &DesiredAsset, reason: String) -> Op {
    Op::Repair {
        desired: want.clone(),
        reason,
    }
}

/// The objects do not run `want`'s spec: a scale of kept local containers
/// (a repair), or an update.
fn changed(known: &Known, want: &DesiredAsset, have: &ActualAsset) -> Op {
    // Local containers kept through a scale carry the spec hash of the
    // count they were created for: the template and the number of
    // containers are what must match.
    if known.applied_hash() == Some(&want.hash)
        && have.template_hash == Some(want.spec.template_hash())
    {
        let count = have.object_ids.len();
        let wanted = want.spec.local_replicas();
        return repair(want, format!("{count} containers, {wanted} wanted"));
    }
    let changes = known
        .record
        .and_then(|r| r.spec.as_ref())
        .filter(|old| old.hash() == *have.spec_hash.as_ref().unwrap_or(&want.hash))
        .map(|old| diff(old, &want.spec))
        .unwrap_or_else(|| replica_change(want, have).into_iter().collect());
    update(want, changes, "spec hash differs from the running objects")
}

/// Swarm is rolling the service back right now.
fn rolling_back(have: &ActualAsset) -> bool {
    have.replicas.rolling && have.rollout.as_ref().is_some_and(|r| r.rolled_back)
}

/// Without the spec last applied (a store rebuilt from labels, a plan from
/// the labels alone), the engine's own count still names a scale
/// (`spec.mode.replicated.replicas: 0 → 2`).
fn replica_change(want: &DesiredAsset, have: &ActualAsset) -> Option<FieldChange> {
    let Mode::Replicated { replicas } = want.spec.mode else {
        return None;
    };
    (have.replicas.desired != replicas).then(|| FieldChange {
        path: "spec.mode.replicated.replicas".into(),
        before: have.replicas.desired.to_string(),
        after: replicas.to_string(),
    })
}

/// `want`'s version failed its rollout gate here: the previous version
/// is still looked after (drift is repaired with it, never with the
/// version that failed); otherwise it is held.
fn after_rollback(known: &Known, want: &DesiredAsset) -> Op {
    let record = known.record;
    let why = record
        .and_then(|r| r.rolled_back.as_ref())
        .map(|r| r.reason.clone())
        .unwrap_or_default();
    let held_by_hook = record
        .and_then(|r| r.rolled_back.as_ref())
        .is_some_and(|r| r.held);
    let previous = record.and_then(|r| previous_version(r, want));
    let intact = known
        .have
        .is_some_and(|h| h.drift.is_empty() && previous.as_ref().is_some_and(|p| runs_spec(p, h)));
    match previous {
        // A job runs nothing to repair: the version before it completed.
        Some(previous) if !intact && !want.spec.is_job() => {
            let drift = known
                .have
                .map_or("nothing runs".into(), |h| h.drift.join("; "));
            Op::Repair {
                desired: previous,
                reason: format!("{drift} (repaired with the version that ran before the rollback)"),
            }
        }
        _ if held_by_hook => Op::Hold(HoldReason::HookHeld {
            name: known.name.clone(),
            why,
        }),
        _ => Op::Hold(HoldReason::RolledBack {
            name: known.name.clone(),
            why,
        }),
    }
}

/// No manifest declares the asset: held (a conflict, an invalid file),
/// or removed (the removal guards may still hold it).
fn undeclared(known: &Known, desired: &Desired) -> Op {
    if let Some(conflicts) = desired.held.get(known.name) {
        return Op::Hold(HoldReason::Conflicts(conflicts.clone()));
    }
    // The record is kept current when a file moves unchanged; the
    // labels keep the path the objects were created from.
    let source = known
        .record
        .and_then(|r| r.source.clone())
        .or_else(|| known.have.and_then(|h| h.source.clone()));
    if let Some(errors) = source.as_deref().and_then(|s| desired.invalid_source(s)) {
        return Op::Hold(HoldReason::InvalidManifest {
            first_error: first_error(errors),
        });
    }
    Op::Remove(RemoveReason { was_in: source })
}

fn first_error(errors: &[ManifestError]) -> String {
    errors
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "invalid".into())
}

/// Whether `want`'s very version failed its rollout gate here.
fn rolled_back_here(want: &DesiredAsset, record: Option<&AppliedRecord>) -> bool {
    record
        .and_then(|r| r.rolled_back.as_ref())
        .is_some_and(|r| {
            // A version a hook held is tried again once the hooks change.
            r.hash == want.hash && r.hooks.as_ref().is_none_or(|d| *d == want.hooks.digest())
        })
}

/// The version that ran before a rollback, as a deployable asset (the
/// store keeps the last spec that deployed successfully).
fn previous_version(record: &AppliedRecord, want: &DesiredAsset) -> Option<DesiredAsset> {
    Some(DesiredAsset {
        spec: record.spec.clone()?,
        hash: record.hash.clone()?,
        source: record.source.clone().unwrap_or_else(|| want.source.clone()),
        pos: want.pos.clone(),
        depends_on: want.depends_on.clone(),
        revision: want.revision.clone(),
        references: want.references.clone(),
        hooks: want.hooks.clone(),
        redactions: want.redactions.clone(),
    })
}

/// Whether the objects run `want`'s spec: by their spec hash, or (local
/// engine, after a scale) by their template and number of containers.
fn runs_spec(want: &DesiredAsset, have: &ActualAsset) -> bool {
    let same_hash = have.spec_hash.as_ref() == Some(&want.hash);
    match &have.template_hash {
        // Local containers: their number is part of the spec.
        Some(template) => {
            have.object_ids.len() as u64 == want.spec.local_replicas()
                && (same_hash || *template == want.spec.template_hash())
        }
        None => same_hash,
    }
}

/// Why nothing may be removed at all, not even with the operator's
/// confirmation: the manifests do not say what is desired.
fn known_desired_guard(desired: &Desired) -> Option<RemovalGuard> {
    // An unreadable or refused directory says nothing about what is
    // wanted: never prune on it, not even with --allow-mass-prune.
    match &desired.dir {
        DirState::Unreadable(why) => return Some(RemovalGuard::DirUnreadable(why.clone())),
        DirState::Refused(why) => return Some(RemovalGuard::DirRefused(why.clone())),
        _ => {}
    }
    // A file that does not parse may declare any asset, whatever the
    // labels say (it may have been moved, or the label may be stale): while
    // one is invalid or unreadable, no removal is trusted.
    let (file, errors) = desired.invalid_files.iter().next()?;
    Some(RemovalGuard::InvalidFiles {
        file: file.clone(),
        others: desired.invalid_files.len() - 1,
        first_error: first_error(errors),
    })
}

/// Why this pass's removals must wait for the operator, if they must.
fn mass_prune_guard(
    desired: &Desired,
    removals: usize,
    managed: usize,
    config: &PlanConfig,
) -> Option<RemovalGuard> {
    if removals == 0 || config.allow_mass_prune {
        return None;
    }
    match &desired.dir {
        DirState::Missing => return Some(RemovalGuard::DirMissing),
        DirState::Present { files: 0 } => return Some(RemovalGuard::DirEmpty),
        _ => {}
    }
    let recent = config.recent;
    let fleet = recent.fleet.unwrap_or(managed).max(1);
    let total = removals + recent.removed;
    let share = total as f64 / fleet as f64;
    (total > config.always_allowed_removals && share > config.max_prune_fraction).then_some(
        RemovalGuard::MassPrune {
            removals,
            total,
            fleet,
            earlier: recent.removed,
            max_fraction: config.max_prune_fraction,
        },
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::input::desired::DesiredAsset;
    use crate::input::manifest::SourcePos;
    use crate::model::spec::{DeploySpec, Mode, Resources};

    fn name(n: &str) -> AssetName {
        AssetName::new(n).unwrap()
    }

    fn spec(n: &str, image: &str) -> DeploySpec {
        DeploySpec {
            name: name(n),
            image: image.into(),
            env: vec![],
            labels: Default::default(),
            command: None,
            ports: vec![],
            networks: vec![],
            constraints: vec![],
            resources: Resources::default(),
            mode: Mode::default(),
            mounts: vec![],
            healthcheck: None,
            update: None,
            user: None,
            ulimits: vec![],
            pull_policy: None,
            secrets: Vec::new(),
            configs: Vec::new(),
            runtime: Default::default(),
        }
    }

    pub(crate) fn want(n: &str, image: &str, file: &str) -> DesiredAsset {
        let spec = spec(n, image);
        DesiredAsset {
            hash: spec.hash(),
            spec,
            source: file.into(),
            pos: SourcePos {
                file: file.into(),
                line: 4,
                column: 9,
            },
            depends_on: vec![],
            revision: None,
            references: vec![],
            hooks: Default::default(),
            redactions: Default::default(),
        }
    }

    pub(crate) fn desired(assets: Vec<DesiredAsset>) -> Desired {
        Desired {
            dir: DirState::Present { files: 1 },
            assets: assets
                .into_iter()
                .map(|a| (a.spec.name.clone(), a))
                .collect(),
            invalid_files: BTreeMap::new(),
            held: BTreeMap::new(),
            conflicts: vec![],
            resources: Default::default(),
            held_resources: Default::default(),
            implicit_volumes: Default::default(),
            windows: vec![],
            notes: vec![],
        }
    }

    pub(crate) fn running(n: &str, image: &str, file: &str) -> ActualAsset {
        ActualAsset {
            name: name(n),
            spec_hash: Some(spec(n, image).hash()),
            source: Some(file.into()),
            object_ids: vec![format!("id-{n}")],
            version: None,
            drift: vec![],
            replicas: crate::model::actual::ReplicaCounts {
                desired: 1,
                running: 1,
                ..Default::default()
            },
            writer: None,
            template_hash: None,
            rollout: None,
        }
    }

    fn applied(n: &str, image: &str, file: &str) -> (AssetName, AppliedRecord) {
        let s = spec(n, image);
        (
            name(n),
            AppliedRecord {
                hash: Some(s.hash()),
                spec: Some(s),
                source: Some(file.into()),
                applied_ms: Some(1),
                ..Default::default()
            },
        )
    }

    fn kinds(plan: &Plan) -> Vec<(String, ActionKind)> {
        plan.actions
            .iter()
            .map(|a| (a.name.to_string(), a.kind()))
            .collect()
    }

    #[test]
    fn desired_and_not_running_is_created() {
        let plan = plan(
            &desired(vec![want("a", "i:1", "a.yaml")]),
            &BTreeMap::new(),
            &[],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Create)]);
        assert!(plan.actions[0].desired().is_some());
    }

    #[test]
    fn changed_image_is_an_update_with_a_field_level_reason() {
        let store = BTreeMap::from([applied("a", "i:1", "a.yaml")]);
        let plan = plan(
            &desired(vec![want("a", "i:2", "a.yaml")]),
            &store,
            &[running("a", "i:1", "a.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Update)]);
        assert_eq!(plan.actions[0].reason(), "spec.image: i:1 → i:2");
    }

    #[test]
    fn update_without_a_stored_spec_still_happens() {
        let plan = plan(
            &desired(vec![want("a", "i:2", "a.yaml")]),
            &BTreeMap::new(),
            &[running("a", "i:1", "a.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Update)]);
        assert!(plan.actions[0].changes().is_empty());
    }

    #[test]
    fn drifted_objects_are_repaired() {
        let mut have = running("a", "i:1", "a.yaml");
        have.drift = vec!["container a is exited".into()];
        let plan = plan(
            &desired(vec![want("a", "i:1", "a.yaml")]),
            &BTreeMap::new(),
            &[have],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Repair)]);
        assert_eq!(plan.actions[0].reason(), "container a is exited");
    }

    #[test]
    fn objects_removed_by_hand_are_repaired() {
        let store = BTreeMap::from([applied("a", "i:1", "a.yaml")]);
        let plan = plan(
            &desired(vec![want("a", "i:1", "a.yaml")]),
            &store,
            &[],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Repair)]);
    }

    #[test]
    fn an_applied_asset_scaled_to_zero_needs_nothing() {
        let mut zero = want("a", "i:1", "a.yaml");
        zero.spec.mode = Mode::Replicated { replicas: 0 };
        zero.hash = zero.spec.hash();
        let (n, mut record) = applied("a", "i:1", "a.yaml");
        record.hash = Some(zero.hash.clone());
        let plan = plan(
            &desired(vec![zero]),
            &BTreeMap::from([(n, record)]),
            &[],
            &PlanConfig::default(),
        );
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    }

    #[test]
    fn converged_asset_needs_nothing() {
        let (n, mut record) = applied("a", "i:1", "a.yaml");
        record.version = Some(10);
        let mut have = running("a", "i:1", "a.yaml");
        have.version = Some(10);
        let plan = plan(
            &desired(vec![want("a", "i:1", "a.yaml")]),
            &BTreeMap::from([(n, record)]),
            &[have],
            &PlanConfig::default(),
        );
        assert!(plan.actions.is_empty());
        assert_eq!(plan.unchanged, vec![name("a")]);
        assert!(!plan.has_changes());
    }

    #[test]
    fn undeclared_asset_is_pruned() {
        let plan = plan(
            &desired(vec![want("a", "i:1", "a.yaml")]),
            &BTreeMap::new(),
            &[running("a", "i:1", "a.yaml"), running("b", "i:1", "b.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("b".into(), ActionKind::Remove)]);
        assert!(plan.actions[0].reason().contains("b.yaml"));
    }

    #[test]
    fn a_record_without_objects_is_pruned_too() {
        let store = BTreeMap::from([applied("gone", "i:1", "g.yaml")]);
        let plan = plan(&desired(vec![]), &store, &[], &PlanConfig::default());
        // One of one managed assets: guarded only because the directory is
        // a valid, non-empty one here (files: 1).
        assert_eq!(kinds(&plan), vec![("gone".into(), ActionKind::Remove)]);
    }

    #[test]
    fn assets_of_an_invalid_file_are_held_not_pruned() {
        let mut d = desired(vec![]);
        d.invalid_files.insert(
            "b.yaml".into(),
            vec![ManifestError {
                file: "b.yaml".into(),
                line: 3,
                column: 1,
                field: "spec".into(),
                message: "broken".into(),
            }],
        );
        let plan = plan(
            &d,
            &BTreeMap::new(),
            &[running("b", "i:1", "b.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("b".into(), ActionKind::Hold)]);
        assert!(plan.actions[0].reason().contains("b.yaml:3:1"));
        assert!(!plan.has_changes());
    }

    #[test]
    fn any_invalid_file_holds_every_removal_whatever_the_labels_say() {
        // keep.yaml moved to sub/keep.yaml, then broken: the labels still
        // name keep.yaml, which no longer exists.
        let mut d = desired(vec![]);
        d.invalid_files.insert(
            "sub/keep.yaml".into(),
            vec![ManifestError {
                file: "sub/keep.yaml".into(),
                line: 2,
                column: 7,
                field: "spec".into(),
                message: "broken".into(),
            }],
        );
        let mut confirmed = PlanConfig {
            allow_mass_prune: true,
            ..PlanConfig::default()
        };
        confirmed.confirmed.insert(name("keep"));
        let plan = plan(
            &d,
            &BTreeMap::new(),
            &[running("keep", "i:1", "keep.yaml")],
            &confirmed,
        );
        assert_eq!(kinds(&plan), vec![("keep".into(), ActionKind::Hold)]);
        assert!(
            plan.actions[0].reason().contains("sub/keep.yaml:2:7"),
            "names the file that blocks removals: {}",
            plan.actions[0].reason()
        );
        assert!(plan.confirmable.is_empty(), "not the operator's to confirm");
    }

    #[test]
    fn removals_earlier_in_the_prune_window_count_against_the_guard() {
        // 300 assets, 249 already removed one by one: the next one is held.
        let keep: Vec<DesiredAsset> = (0..50)
            .map(|i| want(&format!("k{i}"), "i:1", "k.yaml"))
            .collect();
        let mut have: Vec<ActualAsset> = (0..50)
            .map(|i| running(&format!("k{i}"), "i:1", "k.yaml"))
            .collect();
        have.push(running("r", "i:1", "r.yaml"));
        let fresh = plan(
            &desired(keep.clone()),
            &BTreeMap::new(),
            &have,
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&fresh), vec![("r".into(), ActionKind::Remove)]);

        let windowed = PlanConfig {
            recent: RecentRemovals {
                removed: 249,
                fleet: Some(300),
            },
            ..PlanConfig::default()
        };
        let held = plan(&desired(keep.clone()), &BTreeMap::new(), &have, &windowed);
        assert_eq!(kinds(&held), vec![("r".into(), ActionKind::Hold)]);
        assert!(
            held.actions[0].reason().contains("250 of 300"),
            "{}",
            held.actions[0].reason()
        );
        assert_eq!(held.confirmable, vec![name("r")]);

        let mut confirmed = windowed.clone();
        confirmed.confirmed.insert(name("r"));
        let pruned = plan(&desired(keep), &BTreeMap::new(), &have, &confirmed);
        assert_eq!(kinds(&pruned), vec![("r".into(), ActionKind::Remove)]);
    }

    #[test]
    fn a_scale_is_named_from_the_engine_count_without_a_recorded_spec() {
        let mut scaled = want("a", "i:1", "a.yaml");
        scaled.spec.mode = Mode::Replicated { replicas: 2 };
        scaled.hash = scaled.spec.hash();
        // A service scaled to zero, known from its labels only.
        let mut have = running("a", "i:1", "a.yaml");
        have.replicas.desired = 0;
        have.replicas.running = 0;
        let plan = plan(
            &desired(vec![scaled]),
            &BTreeMap::new(),
            &[have],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Update)]);
        assert_eq!(
            plan.actions[0].reason(),
            "spec.mode.replicated.replicas: 0 → 2"
        );
    }

    #[test]
    fn scaling_up_from_zero_is_an_update_not_a_repair() {
        let mut scaled = want("a", "i:1", "a.yaml");
        scaled.spec.mode = Mode::Replicated { replicas: 2 };
        scaled.hash = scaled.spec.hash();
        let mut zero = spec("a", "i:1");
        zero.mode = Mode::Replicated { replicas: 0 };
        let record = AppliedRecord {
            hash: Some(zero.hash()),
            spec: Some(zero),
            applied_ms: Some(1),
            ..Default::default()
        };
        let plan = plan(
            &desired(vec![scaled]),
            &BTreeMap::from([(name("a"), record)]),
            &[],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Update)]);
        assert!(
            plan.actions[0].reason().contains("spec.mode"),
            "{}",
            plan.actions[0].reason()
        );
    }

    #[test]
    fn a_converged_asset_changed_in_place_is_repaired_with_its_spec() {
        let w = want("a", "i:1", "a.yaml");
        let have = running("a", "i:1", "a.yaml");
        let record = AppliedRecord {
            hash: Some(w.hash.clone()),
            spec: Some(w.spec.clone()),
            applied_ms: Some(1),
            ..Default::default()
        };
        let applied = BTreeMap::from([(name("a"), record)]);
        let quiet = plan(
            &desired(vec![w.clone()]),
            &applied,
            std::slice::from_ref(&have),
            &PlanConfig::default(),
        );
        assert!(quiet.actions.is_empty(), "{:?}", kinds(&quiet));
        let config = PlanConfig {
            changed_in_place: BTreeSet::from([name("a")]),
            ..Default::default()
        };
        let repaired = plan(&desired(vec![w]), &applied, &[have], &config);
        assert_eq!(kinds(&repaired), vec![("a".into(), ActionKind::Repair)]);
        assert!(repaired.actions[0].reason().contains("changed in place"));
    }

    #[test]
    fn a_version_the_engine_rolled_back_is_not_deployed_again_until_retried() {
        let w = want("a", "i:2", "a.yaml");
        let mut have = running("a", "i:1", "a.yaml");
        have.rollout = Some(crate::model::actual::Rollout {
            state: "rollback_completed".into(),
            rolled_back: true,
            message: "rollback completed".into(),
        });
        let record = AppliedRecord {
            hash: Some(w.hash.clone()),
            spec: Some(w.spec.clone()),
            applied_ms: Some(1),
            ..Default::default()
        };
        let applied = BTreeMap::from([(name("a"), record)]);
        let held = plan(
            &desired(vec![w.clone()]),
            &applied,
            &[have.clone()],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&held), vec![("a".into(), ActionKind::Hold)]);
        assert!(
            held.actions[0].reason().contains("assetd retry"),
            "{}",
            held.actions[0].reason()
        );

        let mut retry = PlanConfig::default();
        retry.retry.insert(name("a"));
        let again = plan(&desired(vec![w.clone()]), &applied, &[have.clone()], &retry);
        assert_eq!(kinds(&again), vec![("a".into(), ActionKind::Update)]);

        // A new manifest is a new version: deployed.
        let fixed = want("a", "i:3", "a.yaml");
        let new = plan(
            &desired(vec![fixed]),
            &applied,
            &[have],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&new), vec![("a".into(), ActionKind::Update)]);
    }

    #[test]
    fn after_a_local_rollback_drift_is_repaired_with_the_previous_version() {
        let new = want("a", "i:2", "a.yaml");
        let old = spec("a", "i:1");
        let record = AppliedRecord {
            hash: Some(old.hash()),
            spec: Some(old.clone()),
            applied_ms: Some(1),
            rolled_back: Some(crate::model::applied::RolledBack {
                hash: new.hash.clone(),
                reason: "exited 3".into(),
                held: false,
                hooks: None,
            }),
            ..Default::default()
        };
        let applied = BTreeMap::from([(name("a"), record)]);
        let running_old = running("a", "i:1", "a.yaml");
        let held = plan(
            &desired(vec![new.clone()]),
            &applied,
            std::slice::from_ref(&running_old),
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&held), vec![("a".into(), ActionKind::Hold)]);

        let mut stopped = running_old;
        stopped.drift = vec!["container a is exited".into()];
        let repaired = plan(
            &desired(vec![new.clone()]),
            &applied,
            &[stopped],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&repaired), vec![("a".into(), ActionKind::Repair)]);
        let deployed = repaired.actions[0].desired().unwrap();
        assert_eq!(deployed.spec.image, "i:1", "never the version that failed");

        let gone = plan(&desired(vec![new]), &applied, &[], &PlanConfig::default());
        assert_eq!(gone.actions[0].desired().unwrap().spec.image, "i:1");
    }

    #[test]
    fn held_names_are_held() {
        let mut d = desired(vec![]);
        let error = ManifestError {
            file: "x.yaml".into(),
            line: 2,
            column: 9,
            field: "metadata.name".into(),
            message: "declared twice".into(),
        };
        let conflict = crate::input::desired::Conflict {
            kind: crate::input::desired::ConflictKind::DuplicateName,
            error,
        };
        d.held.insert(
            name("dup"),
            crate::input::desired::Conflicts(vec![conflict]),
        );
        let plan = plan(
            &d,
            &BTreeMap::new(),
            &[running("dup", "i:1", "x.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("dup".into(), ActionKind::Hold)]);
        assert_eq!(
            plan.actions[0].reason(),
            "x.yaml:2:9: metadata.name: declared twice"
        );
    }

    #[test]
    fn a_missing_directory_prunes_nothing_without_confirmation() {
        let mut d = desired(vec![]);
        d.dir = DirState::Missing;
        let have = [running("a", "i:1", "a.yaml")];
        let held = plan(&d, &BTreeMap::new(), &have, &PlanConfig::default());
        assert_eq!(kinds(&held), vec![("a".into(), ActionKind::Hold)]);
        assert!(held.actions[0].reason().contains("--allow-mass-prune"));

        let confirmed = PlanConfig {
            allow_mass_prune: true,
            ..Default::default()
        };
        let pruned = plan(&d, &BTreeMap::new(), &have, &confirmed);
        assert_eq!(kinds(&pruned), vec![("a".into(), ActionKind::Remove)]);
    }

    #[test]
    fn an_empty_directory_prunes_nothing_without_confirmation() {
        let mut d = desired(vec![]);
        d.dir = DirState::Present { files: 0 };
        let plan = plan(
            &d,
            &BTreeMap::new(),
            &[running("a", "i:1", "a.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Hold)]);
    }

    #[test]
    fn an_unreadable_directory_never_prunes() {
        let mut d = desired(vec![]);
        d.dir = DirState::Unreadable("permission denied".into());
        let confirmed = PlanConfig {
            allow_mass_prune: true,
            ..Default::default()
        };
        let plan = plan(
            &d,
            &BTreeMap::new(),
            &[running("a", "i:1", "a.yaml")],
            &confirmed,
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Hold)]);
    }

    #[test]
    fn pruning_most_of_a_fleet_at_once_is_held() {
        let keep: Vec<DesiredAsset> = (0..3)
            .map(|i| want(&format!("k{i}"), "i:1", "k.yaml"))
            .collect();
        let mut have: Vec<ActualAsset> = (0..3)
            .map(|i| running(&format!("k{i}"), "i:1", "k.yaml"))
            .collect();
        have.extend((0..7).map(|i| running(&format!("r{i}"), "i:1", "r.yaml")));
        let plan = plan(
            &desired(keep),
            &BTreeMap::new(),
            &have,
            &PlanConfig::default(),
        );
        assert_eq!(plan.actions.len(), 7);
        assert!(plan.actions.iter().all(|a| a.kind() == ActionKind::Hold));
        assert!(plan.actions[0].reason().contains("7 of 10"));
    }

    #[test]
    fn pruning_a_few_at_once_is_allowed() {
        let have: Vec<ActualAsset> = (0..5)
            .map(|i| running(&format!("r{i}"), "i:1", "r.yaml"))
            .collect();
        let plan = plan(
            &desired(vec![want("k", "i:1", "k.yaml")]),
            &BTreeMap::new(),
            &have,
            &PlanConfig::default(),
        );
        let removes = plan
            .actions
            .iter()
            .filter(|a| a.kind() == ActionKind::Remove)
            .count();
        assert_eq!(removes, 5);
    }

    #[test]
    fn a_spec_hash_from_labels_alone_is_enough_to_see_no_change() {
        // The store was lost: only the labels say what runs.
        let plan = plan(
            &desired(vec![want("a", "i:1", "a.yaml")]),
            &BTreeMap::new(),
            &[running("a", "i:1", "a.yaml")],
            &PlanConfig::default(),
        );
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn stale_hash_of_an_old_record_gives_no_misleading_field_diff() {
        // The store holds i:0, but i:1 runs (changed by another assetd
        // instance); the diff must not claim i:0 → i:2.
        let store = BTreeMap::from([applied("a", "i:0", "a.yaml")]);
        let plan = plan(
            &desired(vec![want("a", "i:2", "a.yaml")]),
            &store,
            &[running("a", "i:1", "a.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("a".into(), ActionKind::Update)]);
        assert!(plan.actions[0].changes().is_empty());
    }
}
