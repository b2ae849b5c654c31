//! The pure diff of declared against present networks, volumes, secrets
//! and configs: what to create before the assets are deployed, what to
//! remove after, and what to leave with a reason. No IO.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::{DesiredResources, ResourceKind};

/// One object on the engine (or, for secrets and configs on a local
/// engine, one version directory under the state dir).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActualResource {
    pub kind: ResourceKind,
    /// The engine's name: the declared name for networks and volumes, the
    /// versioned name (`kafka-creds-3f2a91c04b1e`) for secrets and configs.
    pub engine_name: String,
    pub id: String,
    /// Ours: this instance's ownership labels.
    pub owned: bool,
    /// The declared name it was created for (`io.assetd.resource`).
    pub declared: Option<String>,
    /// `io.assetd.spec-hash`: the spec's hash, or the content's version.
    pub hash: Option<String>,
    /// Containers or services that use it, by name.
    pub users: Vec<String>,
}

/// What a pass does with one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum StackOp {
    /// Declared and absent (secrets, configs: this version is absent).
    Create,
    /// Ours, no longer declared (or an old version) and unused.
    Remove,
    /// Left as it is, for the reason given.
    Hold(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StackAction {
    pub kind: ResourceKind,
    /// The engine's name of the object.
    pub name: String,
    pub op: StackOp,
    /// A hold that lasts until the operator acts (`assetd recreate`,
    /// `--allow-mass-prune`): the engine does not match the manifests,
    /// so `plan` says changes are pending and `apply --once` exits 3.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub awaits_operator: bool,
}

impl StackAction {
    /// Whether carrying it out writes to Docker (not a hold).
    pub fn writes(&self) -> bool {
        !matches!(self.op, StackOp::Hold(_))
    }
}

impl fmt::Display for StackAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            StackOp::Create => write!(f, "create {} {}", self.kind, self.name),
            StackOp::Remove => write!(f, "remove {} {}", self.kind, self.name),
            StackOp::Hold(why) => write!(f, "hold {} {}: {why}", self.kind, self.name),
        }
    }
}

/// Whether removals may run at all this pass: not while any manifest is
/// unreadable or invalid, or the asset plan holds removals of its own
/// (the prune guard counts these with the assets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removals {
    Allowed,
    Held(String),
}

/// `desired` against `actual`.
/// The mass-prune guard, for the objects that are no longer declared at
/// all (old versions of declared secrets are not counted): more than
/// `always_allowed` of them at once, and more than `max_fraction` of ours,
/// wait for `--allow-mass-prune`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MassGuard {
    pub allow: bool,
    pub max_fraction: f64,
    pub always_allowed: usize,
}

impl Default for MassGuard {
    fn default() -> Self {
        MassGuard {
            allow: false,
            max_fraction: 0.5,
            always_allowed: 5,
        }
    }
}

/// `held`: declared names that cannot be read this pass (a secret's file
/// is missing): none of their versions is removed.
pub fn plan(
    desired: &DesiredResources,
    held: &BTreeSet<(ResourceKind, String)>,
    actual: &[ActualResource],
    removals: &Removals,
    guard: MassGuard,
) -> Vec<StackAction> {
    let mut actions = Vec::new();
    let by_name: BTreeMap<(ResourceKind, &str), &ActualResource> = actual
        .iter()
        .map(|a| ((a.kind, a.engine_name.as_str()), a))
        .collect();
    let mut wanted: BTreeSet<(ResourceKind, String)> = BTreeSet::new();
    for ((kind, _), want) in desired {
        let engine_name = engine_name(want);
        wanted.insert((*kind, engine_name.clone()));
        let action = |op| StackAction {
            kind: *kind,
            name: engine_name.clone(),
            op,
            awaits_operator: false,
        };
        match by_name.get(&(*kind, engine_name.as_str())) {
            None => actions.push(action(StackOp::Create)),
            Some(found) if !found.owned => actions.push(action(StackOp::Hold(format!(
                "a {kind} `{engine_name}` exists and is not managed by this assetd instance; it is used as it is and never changed"
            )))),
            Some(found) if found.hash.as_deref() != Some(want.hash.as_str()) => {
                actions.push(StackAction {
                    awaits_operator: true,
                    ..action(StackOp::Hold(changed(*kind, &engine_name, found)))
                })
            }
            Some(_) => {}
        }
    }
    for found in actual {
        if !found.owned || wanted.contains(&(found.kind, found.engine_name.clone())) {
            continue;
        }
        let declared = found.declared.clone().unwrap_or_default();
        if held.contains(&(found.kind, declared)) {
            continue;
        }
        let action = |op| StackAction {
            kind: found.kind,
            name: found.engine_name.clone(),
            op,
            awaits_operator: false,
        };
        if found.kind == ResourceKind::Volume {
            actions.push(action(StackOp::Hold(format!(
                "no longer declared; its data is kept (delete it with `assetd delete-volume {} --confirm`)",
                found.engine_name
            ))));
        } else if !found.users.is_empty() {
            let what = match &found.declared {
                Some(d) if desired.contains_key(&(found.kind, d.clone())) => "an earlier version",
                _ => "no longer declared",
            };
            actions.push(action(StackOp::Hold(format!(
                "{what}, still used by {}",
                found.users.join(", ")
            ))));
        } else if let Removals::Held(why) = removals {
            actions.push(action(StackOp::Hold(format!("no longer declared; {why}"))));
        } else {
            actions.push(action(StackOp::Remove));
        }
    }
    mass_prune_guard(&mut actions, desired, actual, guard);
    actions
}

/// Holds the removals of undeclared objects when there are too many at
/// once (a manifests directory emptied by a bad sync).
fn mass_prune_guard(
    actions: &mut [StackAction],
    desired: &DesiredResources,
    actual: &[ActualResource],
    guard: MassGuard,
) {
    let undeclared = |a: &StackAction| {
        let declared = actual
            .iter()
            .find(|o| o.kind == a.kind && o.engine_name == a.name)
            .and_then(|o| o.declared.clone());
        !declared.is_some_and(|d| desired.contains_key(&(a.kind, d)))
    };
    let removing = actions
        .iter()
        .filter(|a| a.op == StackOp::Remove && undeclared(a))
        .count();
    let ours = actual.iter().filter(|a| a.owned).count().max(1);
    let share = removing as f64 / ours as f64;
    if guard.allow || removing <= guard.always_allowed || share <= guard.max_fraction {
        return;
    }
    for action in actions.iter_mut() {
        if action.op == StackOp::Remove && undeclared(action) {
            action.op = StackOp::Hold(format!(
                "no longer declared; {removing} of assetd's {ours} networks, secrets and configs would go at once, more than --max-prune: pass --allow-mass-prune if that is meant"
            ));
            action.awaits_operator = true;
        }
    }
}

/// Networks and volumes keep their name; a secret's or config's engine
/// name carries its content's version.
pub fn engine_name(want: &super::DesiredResource) -> String {
    match want.kind {
        ResourceKind::Network | ResourceKind::Volume => want.name.clone(),
        ResourceKind::Secret | ResourceKind::Config => format!("{}-{}", want.name, want.hash),
    }
}

fn changed(kind: ResourceKind, name: &str, found: &ActualResource) -> String {
    let users = if found.users.is_empty() {
        "it is unused".to_string()
    } else {
        format!("used by {}", found.users.join(", "))
    };
    let data = if kind == ResourceKind::Volume {
        " (this deletes the volume's data)"
    } else {
        ""
    };
    format!(
        "its spec changed and the engine cannot change a {kind} in place ({users}); to recreate it, run `assetd recreate {kind} {name} --confirm`{data}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::stack::{DesiredResource, NetworkSpec, ResourceSpec};

    fn declared(
        kind: ResourceKind,
        name: &str,
        hash: &str,
    ) -> ((ResourceKind, String), DesiredResource) {
        let spec = match kind {
            ResourceKind::Network => ResourceSpec::Network(NetworkSpec::default()),
            _ => ResourceSpec::Volume(Default::default()),
        };
        (
            (kind, name.to_string()),
            DesiredResource {
                kind,
                name: name.into(),
                source: "a.yaml".into(),
                pos: crate::input::manifest::SourcePos {
                    file: "a.yaml".into(),
                    line: 1,
                    column: 1,
                },
                labels: Default::default(),
                spec,
                content: None,
                hash: hash.into(),
            },
        )
    }

    fn present(kind: ResourceKind, name: &str, hash: &str, users: &[&str]) -> ActualResource {
        ActualResource {
            kind,
            engine_name: name.into(),
            id: format!("id-{name}"),
            owned: true,
            declared: Some(name.into()),
            hash: Some(hash.into()),
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    /// The plan with nothing held, removals allowed, the default guard.
    fn plan_of(desired: &DesiredResources, actual: &[ActualResource]) -> Vec<StackAction> {
        plan(
            desired,
            &BTreeSet::new(),
            actual,
            &Removals::Allowed,
            MassGuard::default(),
        )
    }

    fn ops(actions: &[StackAction]) -> Vec<String> {
        actions.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn declared_and_absent_is_created_and_matching_is_left() {
        let desired = DesiredResources::from([
            declared(ResourceKind::Network, "net-a", "h1"),
            declared(ResourceKind::Network, "net-b", "h2"),
        ]);
        let actual = [present(ResourceKind::Network, "net-b", "h2", &[])];
        let got = ops(&plan_of(&desired, &actual));
        assert_eq!(got, ["create network net-a"]);
    }

    #[test]
    fn undeclared_networks_go_only_when_unused_and_volumes_never() {
        let actual = [
            present(ResourceKind::Network, "used", "h", &["cnc-agent"]),
            present(ResourceKind::Network, "unused", "h", &[]),
            present(ResourceKind::Volume, "data", "h", &[]),
        ];
        let got = ops(&plan_of(&DesiredResources::new(), &actual));
        assert_eq!(
            got[0],
            "hold network used: no longer declared, still used by cnc-agent"
        );
        assert_eq!(got[1], "remove network unused");
        assert!(
            got[2].starts_with("hold volume data: no longer declared; its data is kept"),
            "{}",
            got[2]
        );
        let held = Removals::Held("a manifest is invalid".into());
        let got = ops(&plan(
            &DesiredResources::new(),
            &BTreeSet::new(),
            &actual[1..2],
            &held,
            MassGuard::default(),
        ));
        assert_eq!(
            got,
            ["hold network unused: no longer declared; a manifest is invalid"]
        );
    }

    #[test]
    fn many_undeclared_at_once_wait_for_allow_mass_prune() {
        let actual: Vec<ActualResource> = (0..8)
            .map(|i| present(ResourceKind::Network, &format!("n{i}"), "h", &[]))
            .collect();
        let none = DesiredResources::new();
        let got = ops(&plan_of(&none, &actual));
        assert!(
            got.iter().all(|h| h.contains("more than --max-prune")),
            "{got:?}"
        );
        let allow = MassGuard {
            allow: true,
            ..MassGuard::default()
        };
        let got = ops(&plan(
            &none,
            &BTreeSet::new(),
            &actual,
            &Removals::Allowed,
            allow,
        ));
        assert!(
            got.iter().all(|h| h.starts_with("remove network")),
            "{got:?}"
        );
        // A few at a time always go.
        let got = ops(&plan_of(&none, &actual[..5]));
        assert!(
            got.iter().all(|h| h.starts_with("remove network")),
            "{got:?}"
        );
    }

    #[test]
    fn a_changed_spec_is_held_and_a_foreign_object_never_touched() {
        let desired = DesiredResources::from([
            declared(ResourceKind::Network, "net", "new"),
            declared(ResourceKind::Volume, "theirs", "h"),
        ]);
        let mut foreign = present(ResourceKind::Volume, "theirs", "x", &[]);
        foreign.owned = false;
        let mut stranger = present(ResourceKind::Network, "other", "x", &[]);
        stranger.owned = false;
        let actual = [
            present(ResourceKind::Network, "net", "old", &["a"]),
            foreign,
            stranger,
        ];
        let got = ops(&plan_of(&desired, &actual));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].contains("assetd recreate network net --confirm"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("used by a"), "{}", got[0]);
        assert!(
            got[1].contains("not managed by this assetd instance"),
            "{}",
            got[1]
        );
    }
}
