//! OpenFactory app files: a document with a top-level `apps:` map is read
//! as openfactory-core reads an app file (`schemas/apps.py`), one asset
//! per app, named and defaulted as `ofa apps up` deploys it, with the
//! native manifests' positions, `${VAR}` expansion and checks.
//!
//! Where OpenFactory's own deployment loses information, assetd does not:
//! a constraint's `=` is read as `==` but `!=` stays intact, environment
//! values keep every `=` after the first, memory limits apply on both
//! strategies. What each part becomes is in the sibling modules:
//! [`deploy`] (replicas, resources, open files, placement), [`storage`]
//! (bind mounts and NFS volumes) and [`labels`] (UNS, Traefik routing,
//! Prometheus discovery).

mod deploy;
mod labels;
pub(crate) mod shape;
mod storage;

use std::collections::BTreeMap;

use super::decoder::{join, Decoder};
use super::yaml::{Kind, Node};
use super::ParsedAsset;
use crate::model::spec::{AssetName, DeploySpec, PullPolicy};
use shape::{APP, APP_FILE};

/// The top-level key that makes a document an OpenFactory app file.
pub const APPS_KEY: &str = "apps";

/// The environment variables OpenFactory gives every app that assetd can
/// know without OpenFactory's configuration.
const APP_UUID_VAR: &str = "APP_UUID";
const DOCKER_SERVICE_VAR: &str = "DOCKER_SERVICE";
const STORAGE_VAR: &str = "STORAGE";

impl Decoder<'_> {
    /// Whether `root` is an app file: a mapping with an `apps` key.
    pub(in crate::input::manifest) fn is_app_file(&self, root: &Node) -> bool {
        matches!(&root.kind, Kind::Map(entries)
            if entries.iter().any(|(key, _)| self.key_text(key) == APPS_KEY))
    }

    /// Every valid app of an app file; the others' problems are recorded.
    pub(in crate::input::manifest) fn app_file(&mut self, root: &Node) -> Vec<ParsedAsset> {
        let Some(top) = self.object(root, "", &APP_FILE) else {
            return vec![];
        };
        let Some(apps) = self.required(&top, APPS_KEY, root, "") else {
            return vec![];
        };
        let Kind::Map(entries) = &apps.kind else {
            self.wrong_type(apps, APPS_KEY, "a mapping of app keys to apps");
            return vec![];
        };
        entries
            .iter()
            .filter_map(|(key, app)| self.app(key, app))
            .collect()
    }

    /// One app → its asset; `None` when it has problems (recorded).
    fn app(&mut self, key: &Node, node: &Node) -> Option<ParsedAsset> {
        let path = join(APPS_KEY, &self.key_text(key));
        let errors_before = self.errors.len();
        self.references.clear();
        let fields = self.object(node, &path, &APP)?;
        let at = |key: &str| join(&path, key);
        let uuid_node = self.required(&fields, "uuid", node, &path);
        let named = uuid_node.and_then(|n| self.app_name(n, &at("uuid")));
        let image = self
            .required(&fields, "image", node, &path)
            .and_then(|n| self.image_at(n, &at("image")));
        let pull_policy = fields
            .get("image_pull_policy")
            .and_then(|n| self.app_pull_policy(n, &at("image_pull_policy")));
        let user = self.runtime_user(&fields, &path);
        let env = fields
            .get("environment")
            .map(|n| self.app_environment(n, &at("environment")))
            .unwrap_or_default();
        let (mounts, storage) = fields
            .get("storage")
            .map(|n| self.storage(n, &at("storage")))
            .unwrap_or_default();
        let networks = fields
            .get("networks")
            .map(|n| self.networks_at(n, &at("networks")))
            .unwrap_or_default();
        let deploy = self.app_deploy(fields.get("deploy"), &at("deploy"));
        let labels = self.app_labels(&fields, &path, named.as_ref());
        let (uuid, name) = named?;
        if self.errors.len() > errors_before {
            return None;
        }
        let spec = DeploySpec {
            env: with_openfactory_env(env, &uuid, &name, &storage),
            labels,
            networks,
            mounts,
            user,
            pull_policy,
            ..deploy.into_spec(name, image?)
        };
        Some(ParsedAsset {
            name_field: at("uuid"),
            hash: spec.hash(),
            spec,
            pos: self.pos(uuid_node?),
            ports_pos: vec![],
            // OpenFactory apps have no ordering of their own.
            depends_on: vec![],
            references: std::mem::take(&mut self.references),
            hooks: Default::default(),
            redactions: Default::default(),
        })
    }

    /// The app's labels: its uuid, its UNS levels, and the Traefik and
    /// Prometheus labels of its `routing` and `metrics`.
    fn app_labels(
        &mut self,
        fields: &super::shape::Fields<'_>,
        path: &str,
        named: Option<&(String, AssetName)>,
    ) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if let Some(n) = fields.get("uns") {
            self.uns_labels(n, &join(path, "uns"), &mut labels);
        }
        if let Some(n) = fields.get("routing") {
            let field = join(path, "routing");
            let routing = self.routing(n, &field);
            if let (Some(routing), Some((_, name))) = (routing, named) {
                self.routing_labels(&routing, name, n, &field, &mut labels);
            }
        }
        if let Some(n) = fields.get("metrics") {
            if let Some(metrics) = self.metrics(n, &join(path, "metrics")) {
                labels::metrics_labels(&metrics, &mut labels);
            }
        }
        if let Some((uuid, _)) = named {
            labels.insert(labels::UUID_LABEL.into(), uuid.clone());
        }
        labels
    }

    /// The uuid and the asset name OpenFactory gives the service: the
    /// uuid in lower case.
    fn app_name(&mut self, node: &Node, path: &str) -> Option<(String, AssetName)> {
        let uuid = self.string(node, path)?;
        let uuid = uuid.trim().to_string();
        match AssetName::dns_label(&uuid.to_lowercase()) {
            Ok(name) => Some((uuid, name)),
            Err(why) => {
                self.error(
                    node,
                    path,
                    format!("OpenFactory names the service after the uuid in lower case, and {why}: asset names are DNS labels (letters, digits, `-`)"),
                );
                None
            }
        }
    }

    /// `image_pull_policy: missing | always`.
    fn app_pull_policy(&mut self, node: &Node, path: &str) -> Option<PullPolicy> {
        match self.string(node, path)?.trim() {
            "missing" => Some(PullPolicy::IfNotPresent),
            "always" => Some(PullPolicy::Always),
            other => {
                let message = format!("image pull policy `{other}` is not `missing` or `always`");
                self.error(node, path, message);
                None
            }
        }
    }

    /// `runtime_uid` and `runtime_gid` → `uid:gid`; both or neither, each
    /// 1 and up.
    fn runtime_user(&mut self, fields: &super::shape::Fields<'_>, path: &str) -> Option<String> {
        let uid = fields.get("runtime_uid");
        let gid = fields.get("runtime_gid");
        let mut id = |key: &str, n: &Node| {
            let field = join(path, key);
            match self.integer(n, &field)? {
                v @ 1..=0xffff_ffff => Some(v),
                v => {
                    self.error(
                        n,
                        &field,
                        format!("{key} must be 1 to 4294967295, found {v}"),
                    );
                    None
                }
            }
        };
        let uid = uid.map(|n| (n, id("runtime_uid", n)));
        let gid = gid.map(|n| (n, id("runtime_gid", n)));
        match (uid, gid) {
            (None, None) => None,
            (Some((_, Some(u))), Some((_, Some(g)))) => Some(format!("{u}:{g}")),
            (Some((n, _)), None) | (None, Some((n, _))) => {
                self.error(
                    n,
                    path,
                    "runtime_uid and runtime_gid go together: set both or neither",
                );
                None
            }
            _ => None,
        }
    }

    /// `environment: [KEY=VALUE, ...]`, read as native `env` lists are.
    fn app_environment(&mut self, node: &Node, path: &str) -> Vec<String> {
        match self.list(node, path) {
            Some(items) => self.env_list(items, path),
            None => Vec::new(),
        }
    }
}

/// OpenFactory's own variables first (`APP_UUID`, `DOCKER_SERVICE` and,
/// with storage, `STORAGE` as JSON), unless the app sets them, then the
/// app's.
fn with_openfactory_env(
    env: Vec<String>,
    uuid: &str,
    name: &AssetName,
    storage: &serde_json::Value,
) -> Vec<String> {
    let sets = |var: &str| {
        env.iter()
            .any(|e| e.split_once('=').map(|(k, _)| k) == Some(var))
    };
    let mut out = Vec::with_capacity(env.len() + 2);
    if !sets(APP_UUID_VAR) {
        out.push(format!("{APP_UUID_VAR}={uuid}"));
    }
    if !sets(DOCKER_SERVICE_VAR) {
        out.push(format!("{DOCKER_SERVICE_VAR}={name}"));
    }
    if !storage.is_null() && !sets(STORAGE_VAR) {
        out.push(format!("{STORAGE_VAR}={storage}"));
    }
    out.extend(env);
    out
}

#[cfg(test)]
mod tests;
