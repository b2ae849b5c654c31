//! The operator's decisions as data: suspensions and rollback pins (the
//! store keeps them: `crate::store::suspend`, `crate::store::history`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{AssetName, DeploySpec, FieldChange, SpecHash};

/// Who suspended what, why and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The unix uid of the socket peer that asked.
    pub by_uid: Option<u32>,
    pub reason: Option<String>,
    /// Unix ms.
    pub since_ms: u64,
}

impl std::fmt::Display for Suspension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("suspended")?;
        if let Some(uid) = self.by_uid {
            write!(f, " by uid {uid}")?;
        }
        write!(f, " since {}", rfc3339(self.since_ms))?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// Every suspension in force: the whole instance's (`--all`, which also
/// covers assets declared later) and each asset's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspensions {
    pub all: Option<Suspension>,
    pub assets: BTreeMap<AssetName, Suspension>,
}

impl Suspensions {
    /// The suspension that covers `name`, if any: its own before the
    /// instance's.
    pub fn of(&self, name: &AssetName) -> Option<&Suspension> {
        self.assets.get(name).or(self.all.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.assets.is_empty()
    }
}

/// `2026-12-02T14:10:00Z`.
pub fn rfc3339(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{ms} ms"))
}

/// How a pinned asset differs from its manifest, for status and plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinView {
    pub revision: u64,
    pub by_uid: Option<u32>,
    pub since_ms: u64,
    /// From the manifest's spec to the pinned one.
    pub differs: Vec<FieldChange>,
}

impl std::fmt::Display for PinView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pinned to revision {}", self.revision)?;
        if let Some(uid) = self.by_uid {
            write!(f, " by uid {uid}")?;
        }
        f.write_str(" (`assetd resume` or a manifest change ends it)")?;
        for (i, change) in self.differs.iter().enumerate() {
            let lead = if i == 0 { "; the manifest has " } else { ", " };
            write!(
                f,
                "{lead}{}: {} (runs {})",
                change.path, change.before, change.after
            )?;
        }
        Ok(())
    }
}

/// An asset held at an earlier revision by `assetd rollback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub revision: u64,
    pub spec: DeploySpec,
    pub hash: SpecHash,
    /// The manifest's spec hash when pinned: a manifest changed since
    /// ends the pin.
    pub manifest_hash: SpecHash,
    pub by_uid: Option<u32>,
    pub since_ms: u64,
}
