//! An app's `deploy`: replicas (1 when unset), CPUs and memory (OpenFactory
//! reserves 0.5 CPU and limits to 1.0 CPU when unset; memory in 1024-based
//! units), `limits.open_files` (the nofile ulimit) and placement
//! constraints (`=` read as `==`, `!=` kept as written).

use super::super::decoder::{join, Decoder};
use super::super::yaml::Node;
use super::shape::{DEPLOY, LIMITS, PLACEMENT, RESERVATIONS, RESOURCES};
use crate::input::manifest::MAX_REPLICAS;
use crate::model::spec::values::{BinaryMemoryBytes, NanoCpus, MIN_MEMORY_BYTES};
use crate::model::spec::{AssetName, DeploySpec, Mode, ResourceSet, Resources, Ulimit};

/// CPUs OpenFactory reserves when the app does not say (0.5).
pub const DEFAULT_CPU_RESERVATION: i64 = 500_000_000;
/// The CPU limit OpenFactory sets when the app does not say (1.0).
pub const DEFAULT_CPU_LIMIT: i64 = 1_000_000_000;

/// What `deploy` says, with OpenFactory's defaults filled in.
pub(super) struct AppDeploy {
    replicas: u64,
    resources: Resources,
    open_files: Option<i64>,
    constraints: Vec<String>,
}

impl Default for AppDeploy {
    fn default() -> Self {
        AppDeploy {
            replicas: 1,
            resources: Resources::default(),
            open_files: None,
            constraints: vec![],
        }
    }
}

impl AppDeploy {
    /// A spec with these fields; the caller fills in the others.
    pub(super) fn into_spec(mut self, name: AssetName, image: String) -> DeploySpec {
        let cpus = &mut self.resources;
        cpus.reservations
            .nano_cpus
            .get_or_insert(DEFAULT_CPU_RESERVATION);
        cpus.limits.nano_cpus.get_or_insert(DEFAULT_CPU_LIMIT);
        DeploySpec {
            name,
            image,
            env: vec![],
            labels: Default::default(),
            command: None,
            ports: vec![],
            networks: vec![],
            constraints: self.constraints,
            resources: self.resources,
            mode: Mode::Replicated {
                replicas: self.replicas,
            },
            mounts: vec![],
            healthcheck: None,
            update: None,
            user: None,
            ulimits: self
                .open_files
                .map(|n| Ulimit {
                    name: "nofile".into(),
                    soft: n,
                    hard: n,
                })
                .into_iter()
                .collect(),
            pull_policy: None,
            secrets: Vec::new(),
            configs: Vec::new(),
            runtime: Default::default(),
        }
    }
}

impl Decoder<'_> {
    pub(super) fn app_deploy(&mut self, node: Option<&Node>, path: &str) -> AppDeploy {
        let mut out = AppDeploy::default();
        let Some(fields) = node.and_then(|n| self.object(n, path, &DEPLOY)) else {
            return out;
        };
        if let Some(n) = fields.get("replicas") {
            let field = join(path, "replicas");
            match self.integer(n, &field) {
                Some(r @ 0..) if r <= MAX_REPLICAS as i128 => out.replicas = r as u64,
                Some(r) => self.error(
                    n,
                    &field,
                    format!("replicas must be 0 to {MAX_REPLICAS}, found {r}"),
                ),
                None => {}
            }
        }
        if let Some(n) = fields.get("resources") {
            self.app_resources(n, &join(path, "resources"), &mut out);
        }
        if let Some(n) = fields.get("placement") {
            let field = join(path, "placement");
            if let Some(placement) = self.object(n, &field, &PLACEMENT) {
                if let Some(list) = placement.get("constraints") {
                    out.constraints = self.app_constraints(list, &join(&field, "constraints"));
                }
            }
        }
        out
    }

    fn app_resources(&mut self, node: &Node, path: &str, out: &mut AppDeploy) {
        let Some(fields) = self.object(node, path, &RESOURCES) else {
            return;
        };
        if let Some(n) = fields.get("reservations") {
            let field = join(path, "reservations");
            if let Some(set) = self.object(n, &field, &RESERVATIONS) {
                out.resources.reservations = self.app_resource_set(&set, &field);
            }
        }
        if let Some(n) = fields.get("limits") {
            let field = join(path, "limits");
            if let Some(set) = self.object(n, &field, &LIMITS) {
                out.resources.limits = self.app_resource_set(&set, &field);
                if let Some(v) = set.get("open_files") {
                    out.open_files = self.open_files(v, &join(&field, "open_files"));
                }
            }
        }
        let reserved = out.resources.reservations.nano_cpus;
        let limit = out.resources.limits.nano_cpus.unwrap_or(DEFAULT_CPU_LIMIT);
        if let Some(reserved) = reserved.filter(|r| *r > limit) {
            let (reserved, limit) = (NanoCpus(reserved), NanoCpus(limit));
            self.error(
                node,
                path,
                format!("reservations.cpus ({reserved}) is above limits.cpus ({limit}; OpenFactory's limit is 1.0 when unset)"),
            );
        }
    }

    fn app_resource_set(
        &mut self,
        set: &crate::input::manifest::shape::Fields<'_>,
        path: &str,
    ) -> ResourceSet {
        let mut out = ResourceSet::default();
        if let Some(n) = set.get("cpus") {
            let field = join(path, "cpus");
            if let Some(text) = self.string(n, &field) {
                match text.parse::<NanoCpus>() {
                    Ok(cpus) => out.nano_cpus = Some(cpus.0),
                    Err(why) => self.error(n, &field, why.0),
                }
            }
        }
        if let Some(n) = set.get("memory") {
            let field = join(path, "memory");
            if let Some(text) = self.string(n, &field) {
                match text.parse::<BinaryMemoryBytes>() {
                    Ok(m) if m.0 < MIN_MEMORY_BYTES => self.error(
                        n,
                        &field,
                        format!("memory `{text}` is below Docker's minimum of 6 MiB"),
                    ),
                    Ok(m) => out.memory_bytes = Some(m.0),
                    Err(why) => self.error(n, &field, why.0),
                }
            }
        }
        out
    }

    fn open_files(&mut self, node: &Node, path: &str) -> Option<i64> {
        match self.integer(node, path)? {
            n @ 0..=0x7fff_ffff_ffff_ffff => Some(n as i64),
            n => {
                self.error(
                    node,
                    path,
                    format!("open_files must be 0 or more, found {n}"),
                );
                None
            }
        }
    }

    /// Each constraint with `=` read as `==`; `==` and `!=` kept.
    fn app_constraints(&mut self, node: &Node, path: &str) -> Vec<String> {
        let Some(items) = self.list(node, path) else {
            return vec![];
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let Some(text) = self.string(item, &path) else {
                continue;
            };
            match swarm_constraint(&text) {
                Some(constraint) => out.push(constraint),
                None => self.error(
                    item,
                    &path,
                    format!("constraint `{}` needs an operator, `==`, `!=` or `=` (e.g. node.labels.zone == building-a)", text.trim()),
                ),
            }
        }
        out
    }
}

/// `node.role=manager` → `node.role == manager`; one with `==` or `!=` is
/// kept as written (OpenFactory's text replacement would turn `!=` into
/// `! == `).
fn swarm_constraint(text: &str) -> Option<String> {
    let text = text.trim();
    if text.contains("==") || text.contains("!=") {
        return Some(text.to_string());
    }
    let (key, value) = text.split_once('=')?;
    let (key, value) = (key.trim(), value.trim());
    (!key.is_empty() && !value.is_empty() && !value.contains('='))
        .then(|| format!("{key} == {value}"))
}

#[cfg(test)]
mod tests {
    use super::swarm_constraint;

    #[test]
    fn constraints_read_a_single_equals_as_double_and_keep_not_equals() {
        let cases = [
            ("node.role=manager", Some("node.role == manager")),
            (" node.labels.zone = a ", Some("node.labels.zone == a")),
            (
                "node.hostname != nosuchhost",
                Some("node.hostname != nosuchhost"),
            ),
            ("node.role==manager", Some("node.role==manager")),
            ("node.role", None),
            ("=x", None),
            ("a=b=c", None),
        ];
        for (text, want) in cases {
            assert_eq!(swarm_constraint(text).as_deref(), want, "{text}");
        }
    }
}
