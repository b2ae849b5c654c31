//! Compose files: a document whose top level has `services:` (and neither
//! `apiVersion` nor `apps`) is read as `docker stack deploy -c FILE
//! PROJECT` reads it, one asset per service, named and labelled as stack
//! deploy names them (`DESIGN.md`, "Compose files").
//!
//! - The project is the top-level `name:`, else the directory holding the
//!   file. A file at the top of the manifests directory needs `name:`: the
//!   directory's own name depends on where it is mounted, and renaming it
//!   must not rename (and so redeploy) every service.
//! - `${…}` follows Compose's rules (all six forms, `$VAR` included), with
//!   values from assetd's environment, then from `.env` beside the file.
//! - Every key has a fate: honoured, accepted without effect (`version`,
//!   `build` beside `image`, `expose`, `x-*`), or refused at its position
//!   with why ([`shape::REFUSED_SERVICE_KEYS`]).
//!
//! The modules: [`shape`] (the key tables), [`service`] (one service),
//! [`deploy`] (its `deploy:`), [`objects`] (top-level networks, volumes,
//! secrets and configs).

mod deploy;
mod environment;
mod mounts;
mod objects;
mod ports;
mod references;
mod service;
pub(crate) mod shape;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use super::decoder::Decoder;
use super::yaml::{Kind, Node};
use super::ParsedAsset;
use shape::FILE;

/// The top-level key that makes a document a Compose file.
pub const SERVICES_KEY: &str = "services";
/// The label `docker stack deploy` puts on everything of a project, so
/// `docker stack ps PROJECT` and `docker stack services PROJECT` work.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The service label stack deploy records the image as written in.
pub const IMAGE_LABEL: &str = "com.docker.stack.image";
/// The file beside a Compose file that `${VAR}` falls back to.
pub const DOTENV: &str = ".env";

/// Why a known Compose key is refused in `shape`, if it is.
pub(super) fn refused(shape: &super::shape::Shape, key: &str) -> Option<&'static str> {
    if !std::ptr::eq(shape, &shape::SERVICE) {
        return None;
    }
    shape::REFUSED_SERVICE_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, why)| *why)
}

/// A top-level network, volume, secret or config as services refer to
/// it: its engine name, and whether the project owns it.
#[derive(Clone, Debug, Default)]
pub(super) struct Declared {
    pub name: String,
    pub external: bool,
    /// Volumes: the driver and its options, and the labels stack deploy
    /// puts on the volume mount.
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// What every service of one file shares.
pub(super) struct Project {
    pub name: String,
    pub networks: BTreeMap<String, Declared>,
    pub volumes: BTreeMap<String, Declared>,
    pub secrets: BTreeMap<String, Declared>,
    pub configs: BTreeMap<String, Declared>,
    /// The services' keys, for `depends_on`.
    pub services: Vec<String>,
    /// Whether some service joins `default` (then `PROJECT_default` is
    /// created).
    pub uses_default_network: bool,
    /// Services others wait for with `service_completed_successfully`:
    /// one-shot jobs (`Mode::Job`).
    pub jobs: std::collections::BTreeSet<String>,
}

impl Project {
    /// `PROJECT_KEY`, stack deploy's scoped name.
    pub fn scoped(&self, key: &str) -> String {
        format!("{}_{key}", self.name)
    }

    pub fn namespace_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(NAMESPACE_LABEL.to_string(), self.name.clone())])
    }
}

impl Decoder<'_> {
    /// Whether `root` is a Compose file: a mapping with `services` and
    /// without `apiVersion` or `apps`.
    pub(in crate::input::manifest) fn is_compose_file(&self, root: &Node) -> bool {
        let Kind::Map(entries) = &root.kind else {
            return false;
        };
        let has = |key: &str| entries.iter().any(|(k, _)| self.key_text(k) == key);
        has(SERVICES_KEY) && !has("apiVersion") && !has(super::openfactory::APPS_KEY)
    }

    /// Every valid service of a Compose file; the networks, secrets and
    /// configs it declares go to `self.resources`.
    pub(in crate::input::manifest) fn compose_file(&mut self, root: &Node) -> Vec<ParsedAsset> {
        self.compose = Some(self.dotenv());
        let assets = self.compose_project(root);
        self.compose = None;
        assets
    }

    fn compose_project(&mut self, root: &Node) -> Vec<ParsedAsset> {
        let Some(top) = self.object(root, "", &FILE) else {
            return vec![];
        };
        let Some(name) = self.project_name(top.get("name"), root) else {
            return vec![];
        };
        let Some(services) = top.get(SERVICES_KEY) else {
            self.error(
                root,
                SERVICES_KEY,
                "a Compose file needs at least one service",
            );
            return vec![];
        };
        let Kind::Map(entries) = &services.kind else {
            self.wrong_type(
                services,
                SERVICES_KEY,
                "a mapping of service names to services",
            );
            return vec![];
        };
        let mut project = Project {
            name,
            networks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            services: entries
                .iter()
                .map(|(k, _)| self.key_text(k).into_owned())
                .collect(),
            uses_default_network: false,
            jobs: Default::default(),
        };
        self.compose_objects(&top, &mut project);
        let active = self.active_profiles();
        let mut assets: Vec<ParsedAsset> = entries
            .iter()
            .filter_map(|(key, service)| self.compose_service(key, service, &mut project, &active))
            .collect();
        for asset in &mut assets {
            let key = asset.name_field.trim_start_matches("services.");
            if project.jobs.contains(key) {
                asset.spec.mode = crate::model::spec::Mode::Job;
                asset.hash = asset.spec.hash();
            }
        }
        if project.uses_default_network && !project.networks.contains_key("default") {
            self.default_network(&project, root);
        }
        assets
    }

    /// `name:`, else the directory the file is in, lower-cased as
    /// Compose does; `None` when neither gives a valid name (reported).
    fn project_name(&mut self, node: Option<&Node>, root: &Node) -> Option<String> {
        let (text, at) = match node {
            Some(n) => (self.string(n, "name")?, n),
            None => {
                let dir = std::path::Path::new(self.file)
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|d| d.to_string_lossy().into_owned());
                let Some(dir) = dir else {
                    self.error(
                        root,
                        "name",
                        "a Compose file at the top of the manifests directory needs `name:` (the project); or put it in a directory named after the project",
                    );
                    return None;
                };
                (dir, root)
            }
        };
        let name: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid || name.len() > 40 {
            self.error(
                at,
                "name",
                format!("project name `{text}` must start with a letter or digit and have at most 40 letters, digits, `-` or `_`"),
            );
            return None;
        }
        Some(name)
    }

    /// Profiles to activate: `COMPOSE_PROFILES` (comma-separated) from
    /// assetd's environment.
    fn active_profiles(&self) -> Vec<String> {
        (self.env)("COMPOSE_PROFILES")
            .map(|list| {
                list.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The variables of `.env` beside the file (none when there is no such
    /// file). Read as Compose reads it: `KEY=VALUE` lines, `#` comments,
    /// optional `export `, matching quotes removed.
    fn dotenv(&mut self) -> BTreeMap<String, String> {
        match self.read_beside(DOTENV) {
            Some(Ok(text)) => parse_env_file(&text, true)
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// A file beside this one: `None` when it does not exist (or the text
    /// is parsed without a directory), `Some(Err)` when it cannot be read.
    /// Remembered either way, so a change to it re-reads this file.
    pub(super) fn read_beside(&mut self, relative: &str) -> Option<Result<String, String>> {
        let dir = self.dir?;
        let path = dir.join(relative);
        self.side_files.push(path.clone());
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() > 1024 * 1024 => {
                Some(Err(format!("`{relative}` is larger than 1 MiB")))
            }
            Ok(bytes) => Some(
                String::from_utf8(bytes).map_err(|_| format!("`{relative}` is not UTF-8 text")),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(format!("cannot read `{relative}`: {e}"))),
        }
    }
}

/// `KEY=VALUE` lines of an env file: `#` comments, leading blanks
/// ignored. A line without `=` is a key with no value (`None`). `.env` is
/// read as Compose reads it (`export ` and matching quotes removed);
/// `env_file:` as `docker stack deploy` does (values verbatim).
pub(super) fn parse_env_file(text: &str, dotenv: bool) -> Vec<(String, Option<String>)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = if dotenv {
            line.strip_prefix("export ").unwrap_or(line)
        } else {
            line
        };
        let Some((key, value)) = line.split_once('=') else {
            out.push((line.trim_end().to_string(), None));
            continue;
        };
        let value = if dotenv {
            let value = value.trim_end();
            ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(value)
        } else {
            value
        };
        out.push((key.to_string(), Some(value.to_string())));
    }
    out
}
