//! One Compose service → one asset, as `docker stack deploy` converts it:
//! `entrypoint` is Swarm's `Command` and `command` its `Args` (a string is
//! split as a shell would), the environment is sorted `KEY=VALUE`, the
//! service joins `PROJECT_default` when it names no network and is
//! reachable by its short name on each network it joins.

use std::collections::BTreeMap;

use super::super::decoder::{join, Decoder};
use super::super::shape::Fields;
use super::super::yaml::{Kind, Node};
use super::super::ParsedAsset;
use super::shape::{SERVICE, SERVICE_NETWORK};
use super::{Project, IMAGE_LABEL};
use crate::input::stack::ResourceKind;
use crate::model::spec::{AssetName, DeploySpec, PullPolicy, RestartPolicy, Runtime};

impl Decoder<'_> {
    /// One service; `None` when it has problems (recorded) or its
    /// profiles are not active.
    pub(super) fn compose_service(
        &mut self,
        key_node: &Node,
        node: &Node,
        project: &mut Project,
        active_profiles: &[String],
    ) -> Option<ParsedAsset> {
        let key = self.key_text(key_node).into_owned();
        let path = join("services", &key);
        let errors_before = self.errors.len();
        self.references.clear();
        let fields = self.object(node, &path, &SERVICE)?;
        let at = |k: &str| join(&path, k);
        if let Some(n) = fields.get("profiles") {
            let profiles = self.compose_strings(n, &at("profiles"));
            if !profiles.iter().any(|p| active_profiles.contains(p)) {
                return None;
            }
        }
        let name = self.compose_asset_name(key_node, &key, project, &path);
        let image = self.compose_image(&fields, node, &path);
        self.compose_expose(&fields, &path);
        let command = fields
            .get("command")
            .and_then(|n| self.compose_argv(n, &at("command")));
        let entrypoint = fields
            .get("entrypoint")
            .and_then(|n| self.compose_argv(n, &at("entrypoint")));
        let env = self.compose_environment(&fields, &path);
        let (ports, ports_pos) = match fields.get("ports") {
            Some(n) => self.compose_ports(n, &at("ports")),
            None => (vec![], vec![]),
        };
        let (networks, aliases) =
            self.compose_networks(fields.get("networks"), &key, project, &path, node);
        let mounts = self.compose_service_mounts(&fields, &path, project);
        let (secrets, configs) = self.compose_service_files(&fields, &path, project);
        let healthcheck = fields
            .get("healthcheck")
            .and_then(|n| self.compose_healthcheck(n, &at("healthcheck")));
        let depends_on = match fields.get("depends_on") {
            Some(n) => self.compose_depends_on(n, &at("depends_on"), project),
            None => vec![],
        };
        let deploy = self.compose_deploy(fields.get("deploy"), &at("deploy"));
        let restart = match (&deploy.restart, fields.get("restart")) {
            (Some(policy), _) => Some(policy.clone()),
            (None, Some(n)) => self.compose_restart(n, &at("restart")),
            (None, None) => None,
        };
        let (labels, mut service_labels) =
            self.compose_both_labels(&fields, &path, project, &deploy);
        let (process, user, ulimits, pull_policy) = self.compose_process(&fields, &path);
        let name = name?;
        let image = image?;
        if self.errors.len() > errors_before {
            return None;
        }
        service_labels.insert(IMAGE_LABEL.to_string(), image.written.clone());
        let spec = DeploySpec {
            name,
            image: image.normalised,
            env,
            labels,
            command,
            ports,
            networks,
            constraints: deploy.constraints,
            resources: deploy.resources,
            mode: deploy.mode,
            mounts,
            healthcheck,
            update: deploy.update,
            user,
            ulimits,
            pull_policy,
            secrets,
            configs,
            runtime: Runtime {
                entrypoint,
                service_labels: Some(service_labels),
                aliases,
                restart,
                swarm_update: deploy.swarm_update,
                swarm_rollback: deploy.swarm_rollback,
                ..process
            },
        };
        Some(ParsedAsset {
            name_field: path,
            hash: spec.hash(),
            spec,
            pos: self.pos(key_node),
            ports_pos,
            depends_on,
            references: std::mem::take(&mut self.references),
            hooks: Default::default(),
            redactions: Default::default(),
        })
    }

    /// `expose:` is a note: on a Swarm or local network every port of
    /// a container is reachable by its peers already.
    fn compose_expose(&mut self, fields: &Fields, path: &str) {
        if let Some(n) = fields.get("expose") {
            self.note(
                n,
                &join(path, "expose"),
                "accepted without effect: a port is reachable on the project's networks already",
            );
        }
    }

    /// `PROJECT_SERVICE`, when that is a valid asset name (reported).
    fn compose_asset_name(
        &mut self,
        key_node: &Node,
        key: &str,
        project: &Project,
        path: &str,
    ) -> Option<AssetName> {
        match AssetName::new(&project.scoped(key)) {
            Ok(name) => Some(name),
            Err(why) => {
                self.error(key_node, path, format!("{why}: the service is named PROJECT_SERVICE, so use lower-case letters, digits, `-` and `_` in the service key"));
                None
            }
        }
    }

    /// The container's labels and the service's (`deploy.labels`), each
    /// with the project's namespace, as stack deploy labels them.
    fn compose_both_labels(
        &mut self,
        fields: &Fields<'_>,
        path: &str,
        project: &Project,
        deploy: &super::deploy::ComposeDeploy,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut labels = match fields.get("labels") {
            Some(n) => self.compose_labels(n, &join(path, "labels")),
            None => BTreeMap::new(),
        };
        labels.extend(project.namespace_labels());
        let mut service_labels = deploy.labels.clone();
        service_labels.extend(project.namespace_labels());
        (labels, service_labels)
    }

    /// The process settings of a service: where and as what it runs, how
    /// it stops, what it may do.
    fn compose_process(&mut self, fields: &Fields<'_>, path: &str) -> Process {
        let at = |k: &str| join(path, k);
        let string = |this: &mut Self, k: &str| fields.get(k).and_then(|n| this.string(n, &at(k)));
        let working_dir = string(self, "working_dir");
        let hostname = string(self, "hostname");
        let stop_signal = string(self, "stop_signal");
        let stop_grace_period_ns = fields.get("stop_grace_period").and_then(|n| {
            self.duration_or_zero_ns(
                n,
                &at("stop_grace_period"),
                super::super::shape::Spelling::Friendly,
            )
        });
        let init = fields
            .get("init")
            .and_then(|n| self.boolean(n, &at("init")));
        let read_only = fields
            .get("read_only")
            .and_then(|n| self.boolean(n, &at("read_only")))
            .unwrap_or(false);
        let cap_add = fields
            .get("cap_add")
            .map(|n| capabilities(self.compose_strings(n, &at("cap_add"))))
            .unwrap_or_default();
        let cap_drop = fields
            .get("cap_drop")
            .map(|n| capabilities(self.compose_strings(n, &at("cap_drop"))))
            .unwrap_or_default();
        let extra_hosts = fields
            .get("extra_hosts")
            .map(|n| self.compose_extra_hosts(n, &at("extra_hosts")))
            .unwrap_or_default();
        let user = string(self, "user");
        let ulimits = fields
            .get("ulimits")
            .map(|n| self.ulimits_at(n, &at("ulimits")))
            .unwrap_or_default();
        let pull_policy = fields
            .get("pull_policy")
            .and_then(|n| self.compose_pull_policy(n, &at("pull_policy")));
        let runtime = Runtime {
            working_dir,
            hostname,
            stop_grace_period_ns,
            stop_signal,
            init,
            read_only,
            cap_add,
            cap_drop,
            extra_hosts,
            ..Runtime::default()
        };
        (runtime, user, ulimits, pull_policy)
    }

    /// `image:` (with `build:` it is used as it is; `build:` alone is
    /// refused: assetd deploys images, it does not build them).
    fn compose_image(
        &mut self,
        fields: &Fields<'_>,
        node: &Node,
        path: &str,
    ) -> Option<ComposeImage> {
        let Some(n) = fields.get("image") else {
            let message = if fields.get("build").is_some() {
                "`build:` without `image:`: assetd deploys images and does not build them; build and push the image, then name it in `image:`"
            } else {
                "missing required field `image`"
            };
            self.error(
                fields.get("build").unwrap_or(node),
                &join(path, "image"),
                message,
            );
            return None;
        };
        let written = self.image_at(n, &join(path, "image"))?;
        if let Some(build) = fields.get("build") {
            let message = format!(
                "accepted without effect: the image `{written}` is deployed; assetd does not build"
            );
            self.note(build, &join(path, "build"), message);
        }
        Some(ComposeImage {
            normalised: familiar_with_tag(&written),
            written,
        })
    }

    /// `command:` / `entrypoint:`: a list as it is, a string split as a
    /// shell would (no expansion).
    pub(super) fn compose_argv(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        match &node.kind {
            Kind::Seq(items) => {
                let argv: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
                    .collect();
                (argv.len() == items.len()).then_some(argv)
            }
            _ => {
                let text = self.string(node, path)?;
                match shell_words::split(&text) {
                    Ok(argv) if argv.is_empty() => None,
                    Ok(argv) => Some(argv),
                    Err(_) => {
                        self.error(node, path, format!("`{text}` has an unterminated quote"));
                        None
                    }
                }
            }
        }
    }

    /// `networks:` of a service (a list, or a map of `{ aliases }`), sorted
    /// by name as stack deploy sends them; each with the service's short
    /// name as an alias.
    fn compose_networks(
        &mut self,
        node: Option<&Node>,
        service: &str,
        project: &mut Project,
        path: &str,
        service_node: &Node,
    ) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
        let at = join(path, "networks");
        let mut joined: Vec<(String, Vec<String>, &Node)> = Vec::new();
        match node.map(|n| &n.kind) {
            None => joined.push(("default".into(), vec![], service_node)),
            Some(Kind::Seq(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(key) = self.string(item, &format!("{at}[{i}]")) {
                        joined.push((key, vec![], item));
                    }
                }
            }
            Some(Kind::Map(entries)) => {
                for (k, v) in entries {
                    let key = self.key_text(k).into_owned();
                    let item_at = join(&at, &key);
                    let aliases = match v.kind {
                        Kind::Null => vec![],
                        _ => match self.object(v, &item_at, &SERVICE_NETWORK) {
                            Some(f) => f
                                .get("aliases")
                                .map(|n| self.compose_strings(n, &join(&item_at, "aliases")))
                                .unwrap_or_default(),
                            None => vec![],
                        },
                    };
                    joined.push((key, aliases, k));
                }
            }
            Some(_) => {
                if let Some(n) = node {
                    self.wrong_type(n, &at, "a list of networks or a mapping of networks");
                }
            }
        }
        let mut networks = Vec::new();
        let mut aliases = BTreeMap::new();
        for (key, mut names, key_node) in joined {
            let name = match project.networks.get(&key) {
                Some(declared) => declared.name.clone(),
                None if key == "default" => {
                    project.uses_default_network = true;
                    project.scoped("default")
                }
                None => {
                    self.error(
                        key_node,
                        &at,
                        format!("network `{key}` is not declared under the top-level `networks:`"),
                    );
                    continue;
                }
            };
            self.refer(ResourceKind::Network, &name, key_node, &at);
            names.push(service.to_string());
            aliases.insert(name.clone(), names);
            networks.push(name);
        }
        networks.sort();
        networks.dedup();
        (networks, aliases)
    }

    /// `restart:` when `deploy.restart_policy` is absent, as stack deploy
    /// reads it: `always` and `unless-stopped` are `any`, `on-failure[:N]`,
    /// `no` leaves Swarm's default.
    fn compose_restart(&mut self, node: &Node, path: &str) -> Option<RestartPolicy> {
        let text = self.string(node, path)?;
        let (policy, count) = match text.split_once(':') {
            Some((p, n)) => (p, Some(n)),
            None => (text.as_str(), None),
        };
        match (policy, count) {
            ("" | "no", None) => None,
            ("always" | "unless-stopped", None) => Some(RestartPolicy {
                condition: Some("any".into()),
                ..Default::default()
            }),
            ("on-failure", count) => {
                let max_attempts = match count.map(str::parse::<u64>) {
                    None => Some(0),
                    Some(Ok(n)) => Some(n),
                    Some(Err(_)) => {
                        self.error(
                            node,
                            path,
                            format!("`{text}`: the retry count must be a whole number"),
                        );
                        return None;
                    }
                };
                Some(RestartPolicy {
                    condition: Some("on-failure".into()),
                    max_attempts,
                    ..Default::default()
                })
            }
            _ => {
                self.error(node, path, format!("restart policy `{text}` is not no, always, unless-stopped or on-failure[:N]"));
                None
            }
        }
    }

    /// `extra_hosts:` as `HOST:IP` lines (a list, or a map of host to IP).
    fn compose_extra_hosts(&mut self, node: &Node, path: &str) -> Vec<String> {
        let lines: Vec<String> = match &node.kind {
            Kind::Map(_) => self
                .compose_labels(node, path)
                .into_iter()
                .map(|(host, ip)| format!("{host}:{ip}"))
                .collect(),
            _ => self.compose_strings(node, path),
        };
        for line in &lines {
            if !line.contains(':') {
                self.error(node, path, format!("`{line}` is not HOST:IP"));
            }
        }
        lines
    }

    fn compose_pull_policy(&mut self, node: &Node, path: &str) -> Option<PullPolicy> {
        match self.string(node, path)?.as_str() {
            "always" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            "missing" | "if_not_present" => Some(PullPolicy::IfNotPresent),
            other => {
                self.error(node, path, format!("pull policy `{other}` is not always, never, missing or if_not_present (assetd does not build)"));
                None
            }
        }
    }

    /// A string or a list of strings.
    pub(super) fn compose_strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.kind {
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
                .collect(),
            _ => self.string(node, path).into_iter().collect(),
        }
    }
}

/// What a service's process settings make: the runtime fields, the user,
/// the ulimits and the pull policy.
type Process = (
    Runtime,
    Option<String>,
    Vec<crate::model::spec::Ulimit>,
    Option<PullPolicy>,
);

struct ComposeImage {
    /// As written, for the `com.docker.stack.image` label.
    written: String,
    /// As the Docker client sends it: `:latest` added when there is no tag
    /// or digest, Docker Hub's default prefixes dropped.
    normalised: String,
}

fn familiar_with_tag(image: &str) -> String {
    let short = image
        .strip_prefix("docker.io/library/")
        .or_else(|| image.strip_prefix("docker.io/"))
        .or_else(|| image.strip_prefix("index.docker.io/library/"))
        .unwrap_or(image);
    let last = short.rsplit('/').next().unwrap_or(short);
    if last.contains(':') || short.contains('@') {
        short.to_string()
    } else {
        format!("{short}:latest")
    }
}

/// Capabilities as Docker normalises them: upper case with `CAP_`, sorted,
/// once each; `ALL` stands alone.
fn capabilities(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .map(|n| n.trim().to_ascii_uppercase())
        .map(|n| match n.as_str() {
            "ALL" => n,
            _ if n.starts_with("CAP_") => n,
            _ => format!("CAP_{n}"),
        })
        .collect();
    if out.iter().any(|n| n == "ALL") {
        return vec!["ALL".into()];
    }
    out.sort();
    out.dedup();
    out
}
