//! The objects assets stand on: `kind: Network`, `Volume`, `Secret` and
//! `Config`. They are created before the assets that use them (a pass's
//! first step), removed only when undeclared and unused (its last), and
//! never touched without our ownership labels.
//!
//! - [`content`]: a Secret's or Config's bytes, read each pass, known to
//!   everything but the engine only by their hash.
//! - [`plan`]: the pure diff of declared against present objects.
//! - [`engine`]: the Docker calls, per strategy (Swarm objects, or local
//!   files for secrets and configs on a plain engine).

pub mod content;
pub mod encrypted;
pub mod plan;
pub mod version_key;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::spec::SourcePos;

/// The four kinds of object assets refer to by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Network,
    Volume,
    Secret,
    Config,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 4] = [
        ResourceKind::Network,
        ResourceKind::Volume,
        ResourceKind::Secret,
        ResourceKind::Config,
    ];

    /// The manifest's `kind:`.
    pub fn manifest_kind(self) -> &'static str {
        match self {
            ResourceKind::Network => "Network",
            ResourceKind::Volume => "Volume",
            ResourceKind::Secret => "Secret",
            ResourceKind::Config => "Config",
        }
    }

    pub fn from_manifest_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.manifest_kind() == kind)
    }

    /// Lower case, for messages and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
            ResourceKind::Secret => "secret",
            ResourceKind::Config => "config",
        }
    }

    pub fn from_str_lower(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind: Network`'s spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    /// `None`: `overlay` on Swarm, `bridge` on a local engine.
    pub driver: Option<String>,
    pub attachable: bool,
    pub internal: bool,
    pub subnets: Vec<String>,
    /// For the first subnet.
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// `kind: Volume`'s spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    /// `None`: `local`.
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
}

/// Where a Secret's or Config's content comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ContentSource {
    /// A file relative to the manifest that declares it, inside the
    /// manifests directory.
    File {
        path: String,
        #[serde(skip)]
        pos: SourcePos,
        /// `decrypt: age`: the file is an age file, decrypted in memory.
        decrypt: Decrypt,
    },
    /// An environment variable of the daemon.
    FromEnv {
        var: String,
        #[serde(skip)]
        pos: SourcePos,
    },
    /// `data:` (Config only: a secret in a manifest would be in git).
    Inline(String),
}

/// What a content file is: the value itself, or an age file of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decrypt {
    #[default]
    None,
    Age,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ResourceSpec {
    Network(NetworkSpec),
    Volume(VolumeSpec),
    Secret(ContentSource),
    Config(ContentSource),
}

impl ResourceSpec {
    pub fn kind(&self) -> ResourceKind {
        match self {
            ResourceSpec::Network(_) => ResourceKind::Network,
            ResourceSpec::Volume(_) => ResourceKind::Volume,
            ResourceSpec::Secret(_) => ResourceKind::Secret,
            ResourceSpec::Config(_) => ResourceKind::Config,
        }
    }
}

/// One decoded Network, Volume, Secret or Config document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedResource {
    pub name: String,
    /// Position of its `metadata.name`.
    pub pos: SourcePos,
    pub labels: BTreeMap<String, String>,
    pub spec: ResourceSpec,
}

impl ParsedResource {
    pub fn kind(&self) -> ResourceKind {
        self.spec.kind()
    }
}

/// A declared object, read and ready to be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredResource {
    pub kind: ResourceKind,
    pub name: String,
    pub source: String,
    pub pos: SourcePos,
    pub labels: BTreeMap<String, String>,
    pub spec: ResourceSpec,
    /// Secrets and configs: the bytes (never shown) and their version.
    pub content: Option<content::Content>,
    /// What the object is compared by (`io.assetd.spec-hash` on it): the
    /// spec's canonical JSON for networks and volumes, the content's
    /// version for secrets and configs.
    pub hash: String,
}

impl DesiredResource {
    /// The hash of a network's or volume's spec and labels.
    pub fn spec_hash(spec: &ResourceSpec, labels: &BTreeMap<String, String>) -> String {
        let json = serde_json::to_vec(&(spec, labels)).expect("a spec always serialises");
        hex(&Sha256::digest(json))[..16].to_string()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every declared object, by kind and name.
pub type DesiredResources = BTreeMap<(ResourceKind, String), DesiredResource>;
