//! The canonical, validated form of one asset: what the strategies deploy,
//! what the store records and what the spec hash is computed over.
//!
//! Manifests come in two spellings and with optional fields; `manifest`
//! normalises them into a [`DeploySpec`] so that two manifests meaning the
//! same thing produce the same value, the same JSON and so the same hash.
//! Every collection here has a fixed order (sorted maps, sorted ports) for
//! that reason.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod runtime;
pub mod values;

pub use runtime::{RestartPolicy, RolloutConfig, Runtime};

/// A validated asset name: lower-case letters, digits, `-` and `_`,
/// 1..=63 characters, starting with a letter and ending with a letter or
/// digit, so that it is a valid container name and service name at once.
/// Native manifests and app files name assets with DNS labels (no `_`,
/// see [`AssetName::dns_label`]); `_` is what `docker stack deploy` puts
/// between a Compose project and its service (`line1_broker`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetName(String);

impl AssetName {
    /// Longest name accepted. Replicas get a `-N` suffix on the local
    /// engine, which still fits Docker's limits.
    pub const MAX_LEN: usize = 63;
    /// The rule of [`AssetName::dns_label`] as a regular expression (for
    /// the schema).
    pub const PATTERN: &'static str = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

    pub fn new(name: &str) -> Result<Self, String> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if name.is_empty() {
            Err("name is empty".into())
        } else if name.len() > Self::MAX_LEN {
            Err(format!(
                "name `{name}` is {} characters long; at most {} are allowed",
                name.len(),
                Self::MAX_LEN
            ))
        } else if !valid_chars {
            Err(format!(
                "name `{name}` may contain only lower-case letters, digits and `-`"
            ))
        } else if !name.as_bytes()[0].is_ascii_lowercase() {
            Err(format!("name `{name}` must start with a lower-case letter"))
        } else if name.ends_with('-') || name.ends_with('_') {
            Err(format!(
                "name `{name}` must not end with `{}`",
                &name[name.len() - 1..]
            ))
        } else {
            Ok(Self(name.to_string()))
        }
    }

    /// A name that is also a DNS label (no `_`): what a manifest's
    /// `metadata.name` must be.
    pub fn dns_label(name: &str) -> Result<Self, String> {
        if name.contains('_') {
            return Err(format!(
                "name `{name}` may contain only lower-case letters, digits and `-`"
            ));
        }
        Self::new(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AssetName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AssetName::new(&value)
    }
}

impl From<AssetName> for String {
    fn from(value: AssetName) -> Self {
        value.0
    }
}

impl fmt::Display for AssetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything the seed's `deploy(...)` takes, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    pub name: AssetName,
    pub image: String,
    /// `KEY=VALUE`, in manifest order for a list, sorted by key for a map.
    pub env: Vec<String>,
    /// The user's labels (`metadata.labels`); ownership labels are added by
    /// the strategies and are not part of the spec.
    pub labels: BTreeMap<String, String>,
    /// argv; `None` keeps the image's default command.
    pub command: Option<Vec<String>>,
    /// Sorted by (host port, protocol).
    pub ports: Vec<PortMapping>,
    pub networks: Vec<String>,
    pub constraints: Vec<String>,
    pub resources: Resources,
    pub mode: Mode,
    pub mounts: Vec<Mount>,
    /// Left out of the canonical form when absent, so specs written
    /// before the field existed keep their hash (no redeploy on upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// How a new version replaces the running one; absent = the safe
    /// defaults of [`UpdatePolicy`] (and the hash of older specs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdatePolicy>,
    /// `spec.user`: who the process runs as, as Docker takes it (`1000`,
    /// `1000:1000`, `app`, `app:staff`); `None` keeps the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `spec.ulimits`, sorted by name; empty keeps the engine's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// `spec.pullPolicy`; `None` is [`PullPolicy::IfNotPresent`], left out
    /// of the canonical form so specs written before it keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// `spec.secrets`: `kind: Secret` objects delivered as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    /// `spec.configs`: `kind: Config` objects delivered as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
    /// Process and service settings beyond the seed's (Compose's
    /// `entrypoint`, `working_dir`, restart policy, ...), flattened so
    /// their fields read as `spec.entrypoint` in plans.
    #[serde(flatten)]
    pub runtime: Runtime,
}

/// One `secrets:` or `configs:` entry of an asset: which object, where
/// its file appears in the container, and as whom.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileRef {
    /// The `metadata.name` of the Secret or Config.
    pub source: String,
    /// Absolute path in the container (a relative secret target has been
    /// put under `/run/secrets/` already).
    pub target: String,
    pub uid: String,
    pub gid: String,
    /// File mode, e.g. 0o400; written `"0400"` in plans and the store.
    #[serde(with = "octal_mode")]
    pub mode: u32,
    /// The content's version (keyed: `stack::version_key`),
    /// filled in once every file is read: a rotation changes the asset's
    /// hash, so the asset is updated to the new version. Never the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A file mode as people write it: `"0440"` rather than 288.
mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        u32::from_str_radix(&text, 8).map_err(serde::de::Error::custom)
    }
}

impl FileRef {
    /// The engine's name of the version this reference uses:
    /// `kafka-creds-3f2a91c04b1e` (Swarm objects are immutable, so each
    /// content gets its own name).
    pub fn versioned_name(&self) -> String {
        match &self.version {
            Some(v) => format!("{}-{v}", self.source),
            None => self.source.clone(),
        }
    }
}

/// When the image is pulled before a create or an update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Pull only when the engine lacks the image (the default).
    #[default]
    IfNotPresent,
    /// Pull before every create and update, so a moved tag is followed.
    Always,
    /// Never pull: the image must be on the engine already.
    Never,
}

impl PullPolicy {
    pub const NAMES: [&'static str; 3] = ["IfNotPresent", "Always", "Never"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Always" => Some(PullPolicy::Always),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }
}

impl DeploySpec {
    /// The pull policy, with the default filled in.
    pub fn pull_policy(&self) -> PullPolicy {
        self.pull_policy.unwrap_or_default()
    }
}

/// One resource limit of the process (`nofile`, `nproc`, ...), as
/// `setrlimit` takes it; -1 is unlimited.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// The limits Docker knows (`docker run --ulimit`).
    pub const NAMES: [&'static str; 15] = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
}

/// `spec.update`: the rollout policy. Every field is optional; what is not
/// set takes the strategy's safe default (see the accessors).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// `None`: start-first unless old and new cannot run side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
    /// How long a new version must run (and be healthy) to count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<FailureAction>,
    /// Replicas replaced at a time; 0 = all at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    /// Pause between two batches of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ns: Option<i64>,
}

impl UpdatePolicy {
    /// Replicas per batch: one at a time unless told otherwise.
    pub fn parallelism(&self) -> u64 {
        self.parallelism.unwrap_or(1)
    }

    pub fn delay(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.delay_ns.unwrap_or(0).max(0) as u64)
    }

    pub fn failure_action(&self) -> FailureAction {
        self.failure_action.unwrap_or(FailureAction::Rollback)
    }

    /// The monitor window, or `default` (the strategy's) when unset.
    pub fn monitor_or(&self, default: std::time::Duration) -> std::time::Duration {
        self.monitor_ns.map_or(default, |ns| {
            std::time::Duration::from_nanos(ns.max(0) as u64)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StartFirst,
    StopFirst,
}

impl UpdateOrder {
    pub const NAMES: [&'static str; 2] = ["start-first", "stop-first"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "start-first" => Some(UpdateOrder::StartFirst),
            "stop-first" => Some(UpdateOrder::StopFirst),
            _ => None,
        }
    }
}

/// What a rollout does when a new version fails its gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Back to the version that ran (the default).
    Rollback,
    /// Stop where it failed: on Swarm the replicas already updated stay;
    /// locally the previous version runs on and the failed container is
    /// kept, stopped, for `docker logs`.
    Pause,
}

impl FailureAction {
    pub const NAMES: [&'static str; 2] = ["rollback", "pause"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "rollback" => Some(FailureAction::Rollback),
            "pause" => Some(FailureAction::Pause),
            _ => None,
        }
    }
}

/// Docker's healthcheck, in the engine's units. A rollout waits for a
/// new version to be healthy before it replaces the old one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", argv...]`, `["CMD-SHELL", "command"]` or `["NONE"]`.
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_ns: Option<i64>,
}

impl Healthcheck {
    /// Whether it checks anything (`["NONE"]` switches the image's off).
    pub fn checks(&self) -> bool {
        self.test.first().map(String::as_str) != Some("NONE")
    }

    /// How long an image's own HEALTHCHECK may take, by Docker's defaults.
    pub fn default_deadline() -> std::time::Duration {
        Healthcheck {
            test: vec![],
            interval_ns: None,
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
        }
        .deadline()
    }

    /// The longest a new container may take to report healthy, per
    /// Docker's defaults (30 s interval and timeout, 3 retries).
    pub fn deadline(&self) -> std::time::Duration {
        let ns = |v: Option<i64>, default: i64| v.filter(|v| *v > 0).unwrap_or(default) as u64;
        let second = 1_000_000_000;
        let interval = ns(self.interval_ns, 30 * second);
        let timeout = ns(self.timeout_ns, 30 * second);
        let retries = ns(self.retries, 3);
        let start = ns(self.start_period_ns, 0);
        std::time::Duration::from_nanos(start + (interval + timeout) * (retries + 1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const NAMES: [&'static str; 2] = ["tcp", "udp"];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port: `host` on the node maps to `container` in the asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub limits: ResourceSet,
    pub reservations: ResourceSet,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.reservations.is_empty()
    }
}

/// CPUs in billionths of a CPU (Docker's `NanoCPUs`) and memory in bytes,
/// so the spec holds integers only and hashes exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSet {
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
}

impl ResourceSet {
    pub fn is_empty(&self) -> bool {
        self.nano_cpus.is_none() && self.memory_bytes.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Replicated {
        replicas: u64,
    },
    Global,
    /// Runs to completion once per version, as a one-shot job (a Compose
    /// service others wait for with `service_completed_successfully`):
    /// nothing keeps running, and what depends on it goes once it exited 0.
    Job,
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Replicated { replicas: 1 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

impl MountKind {
    pub const NAMES: [&'static str; 3] = ["bind", "volume", "tmpfs"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "bind" => Some(MountKind::Bind),
            "volume" => Some(MountKind::Volume),
            "tmpfs" => Some(MountKind::Tmpfs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path (bind) or volume name (volume); `None` for tmpfs and for
    /// an anonymous volume.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// The driver that creates a named volume, with its options (an
    /// OpenFactory NFS storage: `local` with `type=nfs`, `o`, `device`).
    /// Left out when unset, so older specs keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_driver: Option<VolumeDriver>,
    /// Labels the engine gives a named volume it creates on first use
    /// (a Compose project's); left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_labels: BTreeMap<String, String>,
}

/// A volume driver and its options, as `docker volume create --driver
/// NAME --opt KEY=VALUE` takes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDriver {
    pub name: String,
    pub options: BTreeMap<String, String>,
}

/// sha256 of the canonical JSON of a [`DeploySpec`], hex encoded. It is
/// stored on every object we create (`io.assetd.spec-hash`), so "does the
/// running object match the manifest" is a string comparison that needs
/// neither the store nor a field-by-field look at Docker's defaults.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecHash(pub String);

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeploySpec {
    pub fn hash(&self) -> SpecHash {
        // Serialising plain structs, sorted maps and strings cannot fail.
        let canonical = serde_json::to_vec(self).expect("a DeploySpec always serialises");
        let digest = Sha256::digest(&canonical);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        SpecHash(hex)
    }

    /// The hash of everything but the replica count: containers of one
    /// template can be kept when only the count changes (local scaling).
    pub fn template_hash(&self) -> SpecHash {
        let mut template = self.clone();
        template.mode = Mode::Replicated { replicas: 1 };
        template.hash()
    }

    /// How many containers or tasks this spec asks for on one engine.
    /// How long a new version must run to count: `spec.update.monitor`,
    /// else the strategy's `default`.
    pub fn monitor_or(&self, default: std::time::Duration) -> std::time::Duration {
        self.update
            .as_ref()
            .map_or(default, |policy| policy.monitor_or(default))
    }

    pub fn local_replicas(&self) -> u64 {
        match self.mode {
            Mode::Replicated { replicas } => replicas,
            Mode::Global | Mode::Job => 1,
        }
    }

    /// Whether it runs to completion rather than on (see [`Mode::Job`]).
    pub fn is_job(&self) -> bool {
        self.mode == Mode::Job
    }
}

/// One field that differs between two specs, for reasons shown to operators
/// (`spec.image: a:1 → a:2`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub path: String,
    pub before: String,
    pub after: String,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.path, self.before, self.after)
    }
}

/// The fields that differ from `old` to `new`, in spec order. Nested
/// objects (resources, mode) are compared leaf by leaf so that the reason
/// names the one number that changed.
pub fn diff(old: &DeploySpec, new: &DeploySpec) -> Vec<FieldChange> {
    let old = serde_json::to_value(old).expect("a DeploySpec always serialises");
    let new = serde_json::to_value(new).expect("a DeploySpec always serialises");
    let mut changes = Vec::new();
    diff_values("spec", &old, &new, &mut changes);
    changes
}

fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<FieldChange>,
) {
    use serde_json::Value;
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) if path.starts_with("spec") && !is_label_map(path) => {
            // Keys of `a` in spec order, then any only `b` has.
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                let null = Value::Null;
                let av = a.get(key).unwrap_or(&null);
                let bv = b.get(key).unwrap_or(&null);
                diff_values(&format!("{path}.{key}"), av, bv, out);
            }
        }
        _ => out.push(FieldChange {
            path: path.to_string(),
            before: render(old),
            after: render(new),
        }),
    }
}

fn is_label_map(path: &str) -> bool {
    path == "spec.labels"
}

fn render(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// Where an asset or a problem is in the manifests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePos {
    /// The file as given to the parser (relative to the manifests
    /// directory when loaded by `desired`).
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

impl std::fmt::Display for SourcePos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> DeploySpec {
        DeploySpec {
            name: AssetName::new("cnc-mill-01").unwrap(),
            image: "img:1".into(),
            env: vec!["A=1".into()],
            labels: BTreeMap::new(),
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

    #[test]
    fn a_file_mode_reads_as_octal_and_no_secrets_keep_older_hashes() {
        let mut spec = sample();
        let before = spec.hash();
        assert!(!serde_json::to_string(&spec).unwrap().contains("secrets"));
        spec.secrets.push(FileRef {
            source: "creds".into(),
            target: "/run/secrets/creds".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o440,
            version: Some("3f2a91c04b1e".into()),
        });
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains(r#""mode":"0440""#), "{json}");
        let back: DeploySpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        assert_ne!(spec.hash(), before);
        assert_eq!(spec.secrets[0].versioned_name(), "creds-3f2a91c04b1e");
    }

    #[test]
    fn an_unset_pull_policy_keeps_the_hash_of_older_specs() {
        let spec = sample();
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("pull_policy"), "{json}");
        let mut always = sample();
        always.pull_policy = Some(PullPolicy::Always);
        assert_ne!(spec.hash(), always.hash());
        assert_eq!(spec.pull_policy(), PullPolicy::IfNotPresent);
    }

    #[test]
    fn asset_names_follow_dns_label_rules() {
        assert!(AssetName::new("cnc-mill-01").is_ok());
        assert!(AssetName::new("").is_err());
        assert!(AssetName::new("Upper").is_err());
        assert!(AssetName::new("1abc").is_err());
        assert!(AssetName::new("abc-").is_err());
        assert!(AssetName::dns_label("a_b").is_err());
        assert!(AssetName::new("a_b").is_ok());
        assert!(AssetName::new("a_").is_err());
        assert!(AssetName::new(&"a".repeat(64)).is_err());
        assert!(AssetName::new(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn equal_specs_hash_equal_and_any_change_changes_the_hash() {
        let a = sample();
        let mut b = sample();
        assert_eq!(a.hash(), b.hash());
        b.image = "img:2".into();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().0.len(), 64);
    }

    #[test]
    fn diff_names_the_changed_leaf() {
        let a = sample();
        let mut b = sample();
        b.image = "img:2".into();
        b.resources.limits.memory_bytes = Some(1024);
        b.mode = Mode::Replicated { replicas: 3 };
        let changes: Vec<String> = diff(&a, &b).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            changes,
            vec![
                "spec.image: img:1 → img:2",
                "spec.resources.limits.memory_bytes: (none) → 1024",
                "spec.mode.replicated.replicas: 1 → 3",
            ]
        );
    }
}
