//! What the planner decides: an [`Action`] per asset, its [`Op`] carrying
//! the data it needs, and the reasons as types ([`HoldReason`],
//! [`RemovalGuard`], [`RemoveReason`]) whose `Display` is the text people
//! and scripts see. Status phases are read from these types, never from
//! the text.

use serde::Serialize;

use crate::input::desired::{Conflicts, DesiredAsset};
use crate::model::spec::{AssetName, FieldChange};

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

/// What the planner decided for one asset. Serialized as
/// `{name, kind, reason, changes}`: the reason is the op's `Display`.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub name: AssetName,
    pub op: Op,
}

/// An action with the data it needs: a deploy carries what to deploy, a
/// hold why.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Never deployed: create it.
    Create(DesiredAsset),
    /// The spec changed: `changes` field by field when the previous spec
    /// is known, else `unknown` says why it is an update at all.
    Update {
        desired: DesiredAsset,
        changes: Vec<FieldChange>,
        unknown: &'static str,
    },
    /// Same spec, but what runs drifted from it (`reason`: how).
    Repair {
        desired: DesiredAsset,
        reason: String,
    },
    /// No manifest declares it any more.
    Remove(RemoveReason),
    /// Left as it runs.
    Hold(HoldReason),
}

/// Why an asset is removed: its declaration is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveReason {
    /// The file that declared it last, when known.
    pub was_in: Option<String>,
}

impl std::fmt::Display for RemoveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.was_in {
            Some(source) => write!(f, "no manifest declares it any more (was in {source})"),
            None => f.write_str("no manifest declares it"),
        }
    }
}

/// Why an asset is left as it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum HoldReason {
    /// The file that declares it does not parse (its first error).
    InvalidManifest { first_error: String },
    /// Declared twice, or publishing a host port another asset publishes.
    Conflicts(Conflicts),
    /// This version failed its rollout gate here (`why`).
    RolledBack { name: AssetName, why: String },
    /// A hook of this version failed (`why`); what runs stays.
    HookHeld { name: AssetName, why: String },
    /// The engine rolled this version back (Swarm's state and message).
    RolledBackByEngine {
        name: AssetName,
        state: String,
        message: String,
    },
    /// Swarm is rolling the service back: a write now would fight its
    /// rollback. The rollback's end (a service event) starts the next
    /// pass.
    EngineRolling { state: String, then: Box<Action> },
    /// A removal that a guard holds.
    Removal {
        guard: RemovalGuard,
        would_remove: RemoveReason,
    },
    /// `dependsOn`: `then` waits for `on` (a dependency not yet running
    /// healthy, or a dependent to be removed first), which is in `state`.
    Waiting {
        on: AssetName,
        state: String,
        /// `on` is degraded: nothing will come of waiting until it heals.
        stuck: bool,
        then: Box<Action>,
    },
    /// The operator suspended the asset (`assetd suspend`); what the
    /// planner decided is what resuming would do.
    Suspended {
        suspension: crate::model::control::Suspension,
        on_resume: Box<Action>,
    },
    /// A sync window closes the asset (or a dependency of it) now;
    /// `then` goes when it opens.
    Window {
        closed: crate::core::window::Closed,
        then: Box<Action>,
    },
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldReason::InvalidManifest { first_error } => {
                write!(f, "its manifest is invalid, left as it runs: {first_error}")
            }
            HoldReason::Conflicts(conflicts) => conflicts.fmt(f),
            HoldReason::RolledBack { name, why } => write!(
                f,
                "rolled back: {why}; not deployed again until the manifest changes or `assetd retry {name}`"
            ),
            HoldReason::HookHeld { name, why } => write!(
                f,
                "held: {why}; not tried again until the manifest or its hooks change or `assetd retry {name}`"
            ),
            HoldReason::RolledBackByEngine { name, state, message } => write!(
                f,
                "rolled back by the engine ({state}: {message}); the previous version runs; not deployed again until the manifest changes or `assetd retry {name}`"
            ),
            HoldReason::EngineRolling { state, then } => write!(
                f,
                "the engine is rolling the service back ({state}): nothing is written to it until that ends; then {}: {}",
                then.kind(),
                then.op
            ),
            HoldReason::Removal { guard, would_remove } => {
                write!(f, "{guard} (would remove: {would_remove})")
            }
            HoldReason::Waiting {
                on, state, then, ..
            } => write!(
                f,
                "waiting for {on}: {state}; then {}: {}",
                then.kind(),
                then.op
            ),
            HoldReason::Suspended {
                suspension,
                on_resume,
            } => write!(
                f,
                "{suspension}; on resume: {}: {}",
                on_resume.kind(),
                on_resume.op
            ),
            HoldReason::Window { closed, then } => {
                write!(f, "{closed}; then {}: {}", then.kind(), then.op)
            }
        }
    }
}

/// Why no removal may run now.
#[derive(Clone, Debug, PartialEq)]
pub enum RemovalGuard {
    /// The directory cannot be listed: nothing is known to be undesired.
    DirUnreadable(String),
    /// The directory's permissions are unsafe.
    DirRefused(String),
    /// A manifest file is invalid or unreadable: it may declare anything.
    InvalidFiles {
        file: String,
        others: usize,
        first_error: String,
    },
    /// The directory is gone (an unmounted volume, a failed sync?).
    DirMissing,
    /// The directory holds no manifest file.
    DirEmpty,
    /// More than `--max-prune` of the fleet within the prune window.
    MassPrune {
        removals: usize,
        total: usize,
        fleet: usize,
        earlier: usize,
        max_fraction: f64,
    },
}

impl RemovalGuard {
    /// Whether `assetd prune --confirm` may let these removals go: only
    /// when the manifests say what is desired.
    pub fn confirmable(&self) -> bool {
        matches!(
            self,
            RemovalGuard::DirMissing | RemovalGuard::DirEmpty | RemovalGuard::MassPrune { .. }
        )
    }
}

impl std::fmt::Display for RemovalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const CONFIRM: &str =
            "confirm with `assetd prune --confirm` (or --allow-mass-prune) to remove everything";
        match self {
            RemovalGuard::DirUnreadable(why) => {
                write!(
                    f,
                    "manifest directory unreadable ({why}); nothing is pruned"
                )
            }
            RemovalGuard::DirRefused(why) => {
                write!(f, "manifest directory refused ({why}); nothing is pruned")
            }
            RemovalGuard::InvalidFiles {
                file,
                others,
                first_error,
            } => {
                let others = match others {
                    0 => String::new(),
                    n => format!(" and {n} other file(s)"),
                };
                write!(
                    f,
                    "removals wait while {file}{others} is invalid ({first_error}); fix it to prune"
                )
            }
            RemovalGuard::DirMissing => write!(
                f,
                "manifest directory is missing (unmounted volume? failed sync?); {CONFIRM}"
            ),
            RemovalGuard::DirEmpty => {
                write!(f, "manifest directory holds no manifest file; {CONFIRM}")
            }
            RemovalGuard::MassPrune {
                removals,
                total,
                fleet,
                earlier,
                max_fraction,
            } => {
                let earlier = match earlier {
                    0 => String::new(),
                    n => format!(" ({n} already removed within the prune window)"),
                };
                write!(
                    f,
                    "removing {removals} more would make {total} of {fleet} managed assets{earlier}, more than {:.0} %; confirm with `assetd prune --confirm` or --allow-mass-prune",
                    max_fraction * 100.0
                )
            }
        }
    }
}

impl Op {
    pub fn kind(&self) -> ActionKind {
        match self {
            Op::Create(_) => ActionKind::Create,
            Op::Update { .. } => ActionKind::Update,
            Op::Repair { .. } => ActionKind::Repair,
            Op::Remove(_) => ActionKind::Remove,
            Op::Hold(_) => ActionKind::Hold,
        }
    }
}

impl std::fmt::Display for Op {
    /// The reason, in one line (`spec.image: a:1 → a:2`, `container x is
    /// exited`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Create(want) => write!(f, "declared in {}", want.source),
            Op::Update {
                changes, unknown, ..
            } if changes.is_empty() => f.write_str(unknown),
            Op::Update { changes, .. } => {
                for (i, change) in changes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{change}")?;
                }
                Ok(())
            }
            Op::Repair { reason, .. } => f.write_str(reason),
            Op::Remove(why) => why.fmt(f),
            Op::Hold(why) => why.fmt(f),
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        self.op.kind()
    }

    /// Why, in one line.
    pub fn reason(&self) -> String {
        self.op.to_string()
    }

    /// Field-level changes of an update, when the previous spec is known.
    pub fn changes(&self) -> &[FieldChange] {
        match &self.op {
            Op::Update { changes, .. } => changes,
            Op::Hold(HoldReason::Suspended { on_resume, .. }) => on_resume.changes(),
            Op::Hold(HoldReason::Waiting { then, .. }) => then.changes(),
            Op::Hold(HoldReason::EngineRolling { then, .. }) => then.changes(),
            _ => &[],
        }
    }

    /// What a create, update or repair deploys.
    pub fn desired(&self) -> Option<&DesiredAsset> {
        match &self.op {
            Op::Create(want)
            | Op::Update { desired: want, .. }
            | Op::Repair { desired: want, .. } => Some(want),
            Op::Remove(_) | Op::Hold(_) => None,
        }
    }

    /// The hold's reason, when it is one.
    pub fn hold(&self) -> Option<&HoldReason> {
        match &self.op {
            Op::Hold(why) => Some(why),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind(), self.name, self.op)
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            name: &'a AssetName,
            kind: ActionKind,
            reason: String,
            changes: &'a [FieldChange],
        }
        Shown {
            name: &self.name,
            kind: self.kind(),
            reason: self.reason(),
            changes: self.changes(),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> AssetName {
        AssetName::new("mill").unwrap()
    }

    fn removal(guard: RemovalGuard) -> String {
        HoldReason::Removal {
            guard,
            would_remove: RemoveReason {
                was_in: Some("a.yaml".into()),
            },
        }
        .to_string()
    }

    /// The reasons read exactly as they did when they were format strings:
    /// scripts and monitors match on them.
    #[test]
    fn reasons_read_as_before() {
        let invalid = HoldReason::InvalidManifest {
            first_error: "a.yaml:3:1: spec: broken".into(),
        };
        assert_eq!(
            invalid.to_string(),
            "its manifest is invalid, left as it runs: a.yaml:3:1: spec: broken"
        );
        let rolled = HoldReason::RolledBack {
            name: name(),
            why: "exited 3".into(),
        };
        assert_eq!(
            rolled.to_string(),
            "rolled back: exited 3; not deployed again until the manifest changes or `assetd retry mill`"
        );
        let engine = HoldReason::RolledBackByEngine {
            name: name(),
            state: "rollback_completed".into(),
            message: "done".into(),
        };
        assert_eq!(
            engine.to_string(),
            "rolled back by the engine (rollback_completed: done); the previous version runs; not deployed again until the manifest changes or `assetd retry mill`"
        );
        assert_eq!(
            removal(RemovalGuard::DirMissing),
            "manifest directory is missing (unmounted volume? failed sync?); confirm with `assetd prune --confirm` (or --allow-mass-prune) to remove everything (would remove: no manifest declares it any more (was in a.yaml))"
        );
        assert_eq!(
            removal(RemovalGuard::DirEmpty),
            "manifest directory holds no manifest file; confirm with `assetd prune --confirm` (or --allow-mass-prune) to remove everything (would remove: no manifest declares it any more (was in a.yaml))"
        );
        assert_eq!(
            removal(RemovalGuard::DirUnreadable("permission denied".into())),
            "manifest directory unreadable (permission denied); nothing is pruned (would remove: no manifest declares it any more (was in a.yaml))"
        );
        assert_eq!(
            removal(RemovalGuard::InvalidFiles {
                file: "b.yaml".into(),
                others: 2,
                first_error: "b.yaml:1:1: kind: broken".into(),
            }),
            "removals wait while b.yaml and 2 other file(s) is invalid (b.yaml:1:1: kind: broken); fix it to prune (would remove: no manifest declares it any more (was in a.yaml))"
        );
        assert_eq!(
            removal(RemovalGuard::MassPrune {
                removals: 1,
                total: 250,
                fleet: 300,
                earlier: 249,
                max_fraction: 0.5,
            }),
            "removing 1 more would make 250 of 300 managed assets (249 already removed within the prune window), more than 50 %; confirm with `assetd prune --confirm` or --allow-mass-prune (would remove: no manifest declares it any more (was in a.yaml))"
        );
        assert_eq!(
            RemoveReason { was_in: None }.to_string(),
            "no manifest declares it"
        );
    }

    #[test]
    fn only_the_guards_of_a_known_desired_state_are_the_operators_to_confirm() {
        assert!(RemovalGuard::DirMissing.confirmable());
        assert!(RemovalGuard::DirEmpty.confirmable());
        assert!(!RemovalGuard::DirRefused("0777".into()).confirmable());
        assert!(!RemovalGuard::DirUnreadable("EACCES".into()).confirmable());
    }
}
