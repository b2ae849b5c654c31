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

use crate::desired::{Desired, DesiredAsset, DirState};
use crate::spec::{diff, AssetName, FieldChange, Mode};
use crate::store::AppliedRecord;
use crate::strategy::ActualAsset;

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
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Create,
    Update,
    Repair,
    Remove,
    Hold,
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActionKind::Create => "create",
            ActionKind::Update => "update",
            ActionKind::Repair => "repair",
            ActionKind::Remove => "remove",
            ActionKind::Hold => "hold",
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Action {
    pub name: AssetName,
    pub kind: ActionKind,
    /// Why, in one line (`spec.image: a:1 → a:2`, `container x is exited`).
    pub reason: String,
    /// Field-level changes for an update, when the previous spec is known.
    pub changes: Vec<FieldChange>,
    /// What to deploy, for create, update and repair.
    #[serde(skip)]
    pub desired: Option<DesiredAsset>,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.name, self.reason)
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
}

impl Plan {
    /// Whether anything would be written to Docker.
    pub fn has_changes(&self) -> bool {
        self.actions.iter().any(|a| a.kind != ActionKind::Hold)
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
        let want = desired.assets.get(name);
        let have = actual.get(name).copied();
        let record = applied.get(name);
        match decide(name, want, have, record, desired, config) {
            Decision::Nothing => result.unchanged.push(name.clone()),
            Decision::Act(action) if action.kind == ActionKind::Remove => removals.push(*action),
            Decision::Act(action) => result.actions.push(*action),
        }
    }

    let managed = actual.len().max(applied.len());
    let (confirmed, guarded): (Vec<Action>, Vec<Action>) = removals
        .into_iter()
        .partition(|r| config.confirmed.contains(&r.name));
    let mut removals = guarded;
    if let Some(hold) = known_desired_guard(desired) {
        removals.extend(confirmed);
        hold_all(&mut removals, &hold);
    } else {
        if let Some(hold) = mass_prune_guard(desired, removals.len(), managed, config) {
            hold_all(&mut removals, &hold);
            result.confirmable = removals.iter().map(|r| r.name.clone()).collect();
        }
        removals.extend(confirmed);
    }
    result.actions.extend(removals);
    result.actions.sort_by(|a, b| a.name.cmp(&b.name));
    result
}

enum Decision {
    Nothing,
    Act(Box<Action>),
}

fn decide(
    name: &AssetName,
    want: Option<&DesiredAsset>,
    have: Option<&ActualAsset>,
    record: Option<&AppliedRecord>,
    desired: &Desired,
    config: &PlanConfig,
) -> Decision {
    let act = |kind, reason: String, changes, desired: Option<&DesiredAsset>| {
        Decision::Act(Box::new(Action {
            name: name.clone(),
            kind,
            reason,
            changes,
            desired: desired.cloned(),
        }))
    };
    match (want, have) {
        // This very version failed its rollout gate here before: the
        // previous one runs on, and the upgrade waits for a new manifest
        // or the operator (`assetd retry`). The previous version is still
        // looked after: drift is repaired with it, never with the version
        // that failed.
        (Some(want), have) if rolled_back_here(want, record) && !config.retry.contains(name) => {
            let why = record
                .and_then(|r| r.rolled_back.as_ref())
                .map(|r| r.reason.clone())
                .unwrap_or_default();
            let previous = record.and_then(|r| previous_version(r, want));
            let intact = have.is_some_and(|h| {
                h.drift.is_empty() && previous.as_ref().is_some_and(|p| runs_spec(p, h))
            });
            match previous {
                Some(previous) if !intact => {
                    let drift = have.map_or("nothing runs".into(), |h| h.drift.join("; "));
                    act(
                        ActionKind::Repair,
                        format!("{drift} (repaired with the version that ran before the rollback)"),
                        vec![],
                        Some(&previous),
                    )
                }
                _ => act(
                    ActionKind::Hold,
                    format!(
                        "rolled back: {why}; not deployed again until the manifest changes or `assetd retry {name}`"
                    ),
                    vec![],
                    None,
                ),
            }
        }
        // Scaled to zero and applied: no objects is exactly what is wanted
        // (the local engine lists nothing for it).
        (Some(want), None)
            if want.spec.mode == (Mode::Replicated { replicas: 0 })
                && record.and_then(|r| r.hash.as_ref()) == Some(&want.hash) =>
        {
            Decision::Nothing
        }
        // Nothing runs and the manifest changed since it was applied (a
        // scale up from zero, say): an update, with its field diff.
        (Some(want), None)
            if record.is_some_and(|r| {
                r.applied_ms.is_some() && r.hash.as_ref().is_some_and(|h| h != &want.hash)
            }) =>
        {
            let changes = record
                .and_then(|r| r.spec.as_ref())
                .map(|old| diff(old, &want.spec))
                .unwrap_or_default();
            let reason = update_reason(&changes, "spec hash differs from the one applied");
            act(ActionKind::Update, reason, changes, Some(want))
        }
        (Some(want), None) => match record.and_then(|r| r.applied_ms) {
            Some(_) => act(
                ActionKind::Repair,
                "nothing runs: removed outside assetd".into(),
                vec![],
                Some(want),
            ),
            None => act(
                ActionKind::Create,
                format!("declared in {}", want.source),
                vec![],
                Some(want),
            ),
        },
        // The engine rolled this very version back (its tasks failed):
        // deploying it again would fail again, for ever. It waits for a
        // new manifest, or for the operator (`assetd retry`).
        (Some(want), Some(have))
            if have.rollout.as_ref().is_some_and(|r| r.rolled_back)
                && record.and_then(|r| r.hash.as_ref()) == Some(&want.hash)
                && have.spec_hash.as_ref() != Some(&want.hash)
                && !config.retry.contains(name) =>
        {
            let rollout = have.rollout.as_ref().expect("checked above");
            act(
                ActionKind::Hold,
                format!(
                    "rolled back by the engine ({}: {}); the previous version runs; not deployed again until the manifest changes or `assetd retry {name}`",
                    rollout.state, rollout.message
                ),
                vec![],
                None,
            )
        }
        // Local containers kept through a scale carry the spec hash of the
        // count they were created for: the template and the number of
        // containers are what must match.
        (Some(want), Some(have)) if !runs_spec(want, have) => {
            if record.and_then(|r| r.hash.as_ref()) == Some(&want.hash)
                && have.template_hash == Some(want.spec.template_hash())
            {
                let count = have.object_ids.len();
                let wanted = want.spec.local_replicas();
                return act(
                    ActionKind::Repair,
                    format!("{count} containers, {wanted} wanted"),
                    vec![],
                    Some(want),
                );
            }
            let changes = record
                .and_then(|r| r.spec.as_ref())
                .filter(|old| old.hash() == *have.spec_hash.as_ref().unwrap_or(&want.hash))
                .map(|old| diff(old, &want.spec))
                .unwrap_or_default();
            let reason = update_reason(&changes, "spec hash differs from the running objects");
            act(ActionKind::Update, reason, changes, Some(want))
        }
        (Some(want), Some(have)) if !have.drift.is_empty() => act(
            ActionKind::Repair,
            have.drift.join("; "),
            vec![],
            Some(want),
        ),
        // Swarm's version index is not compared: Swarm bumps it itself
        // (update status, task bookkeeping); strategies report changes
        // made by hand as drift from a fingerprint of the fields we set.
        (Some(_), Some(_)) => Decision::Nothing,
        (None, _) => {
            if let Some(reason) = desired.held.get(name) {
                return act(ActionKind::Hold, reason.clone(), vec![], None);
            }
            // The record is kept current when a file moves unchanged; the
            // labels keep the path the objects were created from.
            let source = record
                .and_then(|r| r.source.clone())
                .or_else(|| have.and_then(|h| h.source.clone()));
            if let Some(errors) = source.as_deref().and_then(|s| desired.invalid_source(s)) {
                let first = errors
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "invalid".into());
                return act(
                    ActionKind::Hold,
                    format!("its manifest is invalid, left as it runs: {first}"),
                    vec![],
                    None,
                );
            }
            let reason = match source {
                Some(source) => format!("no manifest declares it any more (was in {source})"),
                None => "no manifest declares it".into(),
            };
            act(ActionKind::Remove, reason, vec![], None)
        }
    }
}

fn hold_all(removals: &mut [Action], reason: &str) {
    for removal in removals {
        removal.kind = ActionKind::Hold;
        removal.reason = format!("{reason} (would remove: {})", removal.reason);
    }
}

/// An update's reason: its field changes, or `unknown` when the previous
/// spec is not known.
fn update_reason(changes: &[FieldChange], unknown: &str) -> String {
    if changes.is_empty() {
        return unknown.to_string();
    }
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `want`'s very version failed its rollout gate here.
fn rolled_back_here(want: &DesiredAsset, record: Option<&AppliedRecord>) -> bool {
    record
        .and_then(|r| r.rolled_back.as_ref())
        .is_some_and(|r| r.hash == want.hash)
}

/// The version that ran before a rollback, as a deployable asset (the
/// store keeps the last spec that deployed successfully).
fn previous_version(record: &AppliedRecord, want: &DesiredAsset) -> Option<DesiredAsset> {
    Some(DesiredAsset {
        spec: record.spec.clone()?,
        hash: record.hash.clone()?,
        source: record.source.clone().unwrap_or_else(|| want.source.clone()),
        pos: want.pos.clone(),
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
fn known_desired_guard(desired: &Desired) -> Option<String> {
    // An unreadable or refused directory says nothing about what is
    // wanted: never prune on it, not even with --allow-mass-prune.
    match &desired.dir {
        DirState::Unreadable(why) => {
            return Some(format!(
                "manifest directory unreadable ({why}); nothing is pruned"
            ))
        }
        DirState::Refused(why) => {
            return Some(format!(
                "manifest directory refused ({why}); nothing is pruned"
            ))
        }
        _ => {}
    }
    // A file that does not parse may declare any asset, whatever the
    // labels say (it may have been moved, or the label may be stale): while
    // one is invalid or unreadable, no removal is trusted.
    if let Some((file, errors)) = desired.invalid_files.iter().next() {
        let more = desired.invalid_files.len() - 1;
        let first = errors
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "invalid".into());
        let others = if more > 0 {
            format!(" and {more} other file(s)")
        } else {
            String::new()
        };
        return Some(format!(
            "removals wait while {file}{others} is invalid ({first}); fix it to prune"
        ));
    }
    None
}

/// Why this pass's removals must wait for the operator, if they must.
fn mass_prune_guard(
    desired: &Desired,
    removals: usize,
    managed: usize,
    config: &PlanConfig,
) -> Option<String> {
    if removals == 0 || config.allow_mass_prune {
        return None;
    }
    match &desired.dir {
        DirState::Missing => {
            return Some(
                "manifest directory is missing (unmounted volume? failed sync?); confirm with `assetd prune --confirm` (or --allow-mass-prune) to remove everything"
                    .into(),
            )
        }
        DirState::Present { files: 0 } => {
            return Some(
                "manifest directory holds no manifest file; confirm with `assetd prune --confirm` (or --allow-mass-prune) to remove everything"
                    .into(),
            )
        }
        _ => {}
    }
    let recent = config.recent;
    let fleet = recent.fleet.unwrap_or(managed).max(1);
    let total = removals + recent.removed;
    let share = total as f64 / fleet as f64;
    if total > config.always_allowed_removals && share > config.max_prune_fraction {
        let earlier = if recent.removed > 0 {
            format!(
                " ({} already removed within the prune window)",
                recent.removed
            )
        } else {
            String::new()
        };
        return Some(format!(
            "removing {removals} more would make {total} of {fleet} managed assets{earlier}, more than {:.0} %; confirm with `assetd prune --confirm` or --allow-mass-prune",
            config.max_prune_fraction * 100.0
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DesiredAsset;
    use crate::manifest::{ManifestError, SourcePos};
    use crate::spec::{DeploySpec, Mode, Resources};

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
        }
    }

    fn want(n: &str, image: &str, file: &str) -> DesiredAsset {
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
        }
    }

    fn desired(assets: Vec<DesiredAsset>) -> Desired {
        Desired {
            dir: DirState::Present { files: 1 },
            assets: assets
                .into_iter()
                .map(|a| (a.spec.name.clone(), a))
                .collect(),
            invalid_files: BTreeMap::new(),
            held: BTreeMap::new(),
            conflicts: vec![],
        }
    }

    fn running(n: &str, image: &str, file: &str) -> ActualAsset {
        ActualAsset {
            name: name(n),
            spec_hash: Some(spec(n, image).hash()),
            source: Some(file.into()),
            object_ids: vec![format!("id-{n}")],
            version: None,
            drift: vec![],
            replicas: Default::default(),
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
            .map(|a| (a.name.to_string(), a.kind))
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
        assert!(plan.actions[0].desired.is_some());
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
        assert_eq!(plan.actions[0].reason, "spec.image: i:1 → i:2");
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
        assert!(plan.actions[0].changes.is_empty());
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
        assert_eq!(plan.actions[0].reason, "container a is exited");
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
        assert!(plan.actions[0].reason.contains("b.yaml"));
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
        assert!(plan.actions[0].reason.contains("b.yaml:3:1"));
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
            plan.actions[0].reason.contains("sub/keep.yaml:2:7"),
            "names the file that blocks removals: {}",
            plan.actions[0].reason
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
            held.actions[0].reason.contains("250 of 300"),
            "{}",
            held.actions[0].reason
        );
        assert_eq!(held.confirmable, vec![name("r")]);

        let mut confirmed = windowed.clone();
        confirmed.confirmed.insert(name("r"));
        let pruned = plan(&desired(keep), &BTreeMap::new(), &have, &confirmed);
        assert_eq!(kinds(&pruned), vec![("r".into(), ActionKind::Remove)]);
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
            plan.actions[0].reason.contains("spec.mode"),
            "{}",
            plan.actions[0].reason
        );
    }

    #[test]
    fn a_version_the_engine_rolled_back_is_not_deployed_again_until_retried() {
        let w = want("a", "i:2", "a.yaml");
        let mut have = running("a", "i:1", "a.yaml");
        have.rollout = Some(crate::strategy::Rollout {
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
            held.actions[0].reason.contains("assetd retry"),
            "{}",
            held.actions[0].reason
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
            rolled_back: Some(crate::store::RolledBack {
                hash: new.hash.clone(),
                reason: "exited 3".into(),
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
        let deployed = repaired.actions[0].desired.as_ref().unwrap();
        assert_eq!(deployed.spec.image, "i:1", "never the version that failed");

        let gone = plan(&desired(vec![new]), &applied, &[], &PlanConfig::default());
        assert_eq!(gone.actions[0].desired.as_ref().unwrap().spec.image, "i:1");
    }

    #[test]
    fn held_names_are_held() {
        let mut d = desired(vec![]);
        d.held.insert(name("dup"), "declared twice".into());
        let plan = plan(
            &d,
            &BTreeMap::new(),
            &[running("dup", "i:1", "x.yaml")],
            &PlanConfig::default(),
        );
        assert_eq!(kinds(&plan), vec![("dup".into(), ActionKind::Hold)]);
        assert_eq!(plan.actions[0].reason, "declared twice");
    }

    #[test]
    fn a_missing_directory_prunes_nothing_without_confirmation() {
        let mut d = desired(vec![]);
        d.dir = DirState::Missing;
        let have = [running("a", "i:1", "a.yaml")];
        let held = plan(&d, &BTreeMap::new(), &have, &PlanConfig::default());
        assert_eq!(kinds(&held), vec![("a".into(), ActionKind::Hold)]);
        assert!(held.actions[0].reason.contains("--allow-mass-prune"));

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
        assert!(plan.actions.iter().all(|a| a.kind == ActionKind::Hold));
        assert!(plan.actions[0].reason.contains("7 of 10"));
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
            .filter(|a| a.kind == ActionKind::Remove)
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
        assert!(plan.actions[0].changes.is_empty());
    }
}
