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
use super::shape::{
    DEPENDENCY, FILE_REF, HEALTHCHECK, PORT, SERVICE, SERVICE_NETWORK, VOLUME_MOUNT,
};
use super::{Project, IMAGE_LABEL};
use crate::input::stack::ResourceKind;
use crate::model::spec::values::AbsPath;
use crate::model::spec::{
    AssetName, DeploySpec, FileRef, Healthcheck, Mount, MountKind, PortMapping, Protocol,
    PullPolicy, RestartPolicy, Runtime, SourcePos, VolumeDriver,
};

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
        let name = match AssetName::new(&project.scoped(&key)) {
            Ok(name) => Some(name),
            Err(why) => {
                self.error(key_node, &path, format!("{why}: the service is named PROJECT_SERVICE, so use lower-case letters, digits, `-` and `_` in the service key"));
                None
            }
        };
        let image = self.compose_image(&fields, node, &path);
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
        let mut mounts = match fields.get("volumes") {
            Some(n) => self.compose_mounts(n, &at("volumes"), project),
            None => vec![],
        };
        if let Some(n) = fields.get("tmpfs") {
            for target in self.compose_strings(n, &at("tmpfs")) {
                mounts.push(Mount {
                    kind: MountKind::Tmpfs,
                    source: None,
                    target,
                    read_only: false,
                    volume_driver: None,
                    volume_labels: BTreeMap::new(),
                });
            }
        }
        let secrets = match fields.get("secrets") {
            Some(n) => self.compose_file_refs(n, &at("secrets"), ResourceKind::Secret, project),
            None => vec![],
        };
        let configs = match fields.get("configs") {
            Some(n) => self.compose_file_refs(n, &at("configs"), ResourceKind::Config, project),
            None => vec![],
        };
        let healthcheck = fields
            .get("healthcheck")
            .and_then(|n| self.compose_healthcheck(n, &at("healthcheck")));
        let depends_on = match fields.get("depends_on") {
            Some(n) => self.compose_depends_on(n, &at("depends_on"), project),
            None => vec![],
        };
        let mut labels = match fields.get("labels") {
            Some(n) => self.compose_labels(n, &at("labels")),
            None => BTreeMap::new(),
        };
        labels.extend(project.namespace_labels());
        let deploy = self.compose_deploy(fields.get("deploy"), &at("deploy"));
        let restart = match (&deploy.restart, fields.get("restart")) {
            (Some(policy), _) => Some(policy.clone()),
            (None, Some(n)) => self.compose_restart(n, &at("restart")),
            (None, None) => None,
        };
        let mut service_labels = deploy.labels.clone();
        service_labels.extend(project.namespace_labels());
        let string = |this: &mut Self, k: &str| fields.get(k).and_then(|n| this.string(n, &at(k)));
        let user = string(self, "user");
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
        let ulimits = fields
            .get("ulimits")
            .map(|n| self.ulimits_at(n, &at("ulimits")))
            .unwrap_or_default();
        let pull_policy = fields
            .get("pull_policy")
            .and_then(|n| self.compose_pull_policy(n, &at("pull_policy")));
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
                working_dir,
                hostname,
                stop_grace_period_ns,
                stop_signal,
                init,
                read_only,
                cap_add,
                cap_drop,
                extra_hosts,
                service_labels: Some(service_labels),
                aliases,
                restart,
                swarm_update: deploy.swarm_update,
                swarm_rollback: deploy.swarm_rollback,
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
        })
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
        Some(ComposeImage {
            normalised: familiar_with_tag(&written),
            written,
        })
    }

    /// `command:` / `entrypoint:`: a list as it is, a string split as a
    /// shell would (no expansion).
    fn compose_argv(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
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

    /// `env_file:` then `environment:` (list or map), sorted, as stack
    /// deploy sends them. A key with no value (or an empty one) takes
    /// assetd's own value when it has one; else a key with no value is
    /// passed bare.
    fn compose_environment(&mut self, fields: &Fields<'_>, path: &str) -> Vec<String> {
        let mut vars: BTreeMap<String, Option<String>> = BTreeMap::new();
        if let Some(n) = fields.get("env_file") {
            let at = join(path, "env_file");
            for (i, file) in self.compose_strings(n, &at).into_iter().enumerate() {
                let item = format!("{at}[{i}]");
                match self.read_beside(&file) {
                    Some(Ok(text)) => {
                        for (k, v) in super::parse_env_file(&text, false) {
                            if k.chars().any(char::is_whitespace) {
                                self.error(
                                    n,
                                    &item,
                                    format!(
                                        "`{file}` has a variable name with a blank in it: `{k}`"
                                    ),
                                );
                                continue;
                            }
                            let v = v.or_else(|| (self.env)(&k));
                            if v.is_some() {
                                vars.insert(k, v);
                            }
                        }
                    }
                    Some(Err(why)) => self.error(n, &item, why),
                    None if self.dir.is_none() => self.error(
                        n,
                        &item,
                        "an env_file is read beside the Compose file, which is not on disk here",
                    ),
                    None => self.error(
                        n,
                        &item,
                        format!("env file `{file}` does not exist beside the Compose file"),
                    ),
                }
            }
        }
        if let Some(n) = fields.get("environment") {
            let at = join(path, "environment");
            match &n.kind {
                Kind::Map(entries) => {
                    for (k, v) in entries {
                        let key = self.key_text(k).into_owned();
                        let value = match v.kind {
                            Kind::Null => None,
                            _ => self.string(v, &join(&at, &key)),
                        };
                        vars.insert(key, value);
                    }
                }
                Kind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let Some(text) = self.string(item, &format!("{at}[{i}]")) else {
                            continue;
                        };
                        match text.split_once('=') {
                            Some((k, v)) => vars.insert(k.to_string(), Some(v.to_string())),
                            None => vars.insert(text, None),
                        };
                    }
                }
                _ => self.wrong_type(n, &at, "a mapping or a list of KEY=VALUE"),
            }
        }
        vars.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Some(v) if !v.is_empty() => Some(v),
                    other => (self.env)(&k).or(other),
                };
                match v {
                    Some(v) => format!("{k}={v}"),
                    None => k,
                }
            })
            .collect()
    }

    /// `ports:`, short (`8080:80`, `8080:80/udp`, `9000-9001:9000-9001`) or
    /// long (`{ target, published, protocol, mode: ingress }`). A port
    /// must be published: an unpublished one is reachable on the
    /// project's network already.
    fn compose_ports(
        &mut self,
        node: &Node,
        path: &str,
    ) -> (Vec<PortMapping>, Vec<(u16, Protocol, SourcePos)>) {
        let mut ports = Vec::new();
        let mut positions = Vec::new();
        let Some(items) = self.list(node, path) else {
            return (ports, positions);
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let found = match &item.kind {
                Kind::Map(_) => self.compose_long_port(item, &at).map(|p| vec![p]),
                _ => self.compose_short_port(item, &at),
            };
            for port in found.unwrap_or_default() {
                positions.push((port.host, port.protocol, self.pos(item)));
                ports.push(port);
            }
        }
        ports.sort_by_key(|p| (p.host, p.protocol));
        (ports, positions)
    }

    fn compose_short_port(&mut self, node: &Node, path: &str) -> Option<Vec<PortMapping>> {
        let text = self.string(node, path)?;
        let (spec, protocol) = match text.rsplit_once('/') {
            Some((spec, proto)) => (spec, self.compose_protocol(proto, node, path)?),
            None => (text.as_str(), Protocol::Tcp),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (published, target) = match parts.as_slice() {
            [published, target] => (*published, *target),
            [_, _, _] => {
                self.error(node, path, format!("`{text}` binds a host address: Swarm publishes on every address of every node (the routing mesh), so assetd does not take one; write PUBLISHED:TARGET"));
                return None;
            }
            _ => {
                self.error(node, path, format!("`{text}` publishes no port: write PUBLISHED:TARGET (an unpublished port is reachable on the project's network already)"));
                return None;
            }
        };
        let range = |this: &mut Self, text: &str| -> Option<(u16, u16)> {
            let (a, b) = text.split_once('-').unwrap_or((text, text));
            match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                (Ok(a), Ok(b)) if a > 0 && a <= b => Some((a, b)),
                _ => {
                    this.error(
                        node,
                        path,
                        format!("`{text}` is not a port (1-65535) or a range of ports"),
                    );
                    None
                }
            }
        };
        let (p_from, p_to) = range(self, published)?;
        let (t_from, t_to) = range(self, target)?;
        if p_to - p_from != t_to - t_from {
            self.error(
                node,
                path,
                format!("`{text}`: the published and target ranges differ in length"),
            );
            return None;
        }
        Some(
            (0..=(p_to - p_from))
                .map(|i| PortMapping {
                    host: p_from + i,
                    container: t_from + i,
                    protocol,
                })
                .collect(),
        )
    }

    fn compose_long_port(&mut self, node: &Node, path: &str) -> Option<PortMapping> {
        let fields = self.object(node, path, &PORT)?;
        let at = |k: &str| join(path, k);
        let number = |this: &mut Self, k: &str| -> Option<u16> {
            let n = fields.get(k)?;
            match this.integer(n, &at(k)) {
                Some(p @ 1..=65535) => Some(p as u16),
                Some(p) => {
                    this.error(n, &at(k), format!("port {p} is not 1-65535"));
                    None
                }
                None => None,
            }
        };
        let target = number(self, "target");
        let published = number(self, "published");
        let protocol = match fields.get("protocol") {
            Some(n) => {
                let text = self.string(n, &at("protocol"))?;
                self.compose_protocol(&text, n, &at("protocol"))?
            }
            None => Protocol::Tcp,
        };
        if let Some(n) = fields.get("mode") {
            match self.string(n, &at("mode"))?.as_str() {
                "ingress" => {}
                other => {
                    self.error(n, &at("mode"), format!("port mode `{other}` is not applied by assetd yet: use `ingress` (the routing mesh)"));
                    return None;
                }
            }
        }
        let Some(target) = target else {
            self.error(node, &at("target"), "missing required field `target`");
            return None;
        };
        let Some(published) = published else {
            self.error(node, &at("published"), "a port must be published here (an unpublished port is reachable on the project's network already)");
            return None;
        };
        Some(PortMapping {
            host: published,
            container: target,
            protocol,
        })
    }

    fn compose_protocol(&mut self, text: &str, node: &Node, path: &str) -> Option<Protocol> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            other => {
                self.error(node, path, format!("protocol `{other}` is not tcp or udp"));
                None
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

    /// `volumes:` of a service: `SOURCE:TARGET[:ro|rw]` or the long form.
    /// A source starting with `.`, `/` or `~` is a bind mount (relative to
    /// the Compose file), anything else a top-level volume.
    fn compose_mounts(&mut self, node: &Node, path: &str, project: &Project) -> Vec<Mount> {
        let Some(items) = self.list(node, path) else {
            return vec![];
        };
        let mut mounts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let parsed = match &item.kind {
                Kind::Map(_) => self.compose_long_mount(item, &at),
                _ => self.compose_short_mount(item, &at),
            };
            let Some((kind, source, target, read_only)) = parsed else {
                continue;
            };
            if let Some(mount) =
                self.compose_mount(kind, source, target, read_only, item, &at, project)
            {
                mounts.push(mount);
            }
        }
        mounts
    }

    fn compose_short_mount(
        &mut self,
        node: &Node,
        path: &str,
    ) -> Option<(MountKind, Option<String>, String, bool)> {
        let text = self.string(node, path)?;
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] => (None, *target, None),
            [source, target] => (Some(*source), *target, None),
            [source, target, mode] => (Some(*source), *target, Some(*mode)),
            _ => {
                self.error(node, path, format!("`{text}` is not SOURCE:TARGET[:ro]"));
                return None;
            }
        };
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => {
                self.error(node, path, format!("volume option `{other}` is not applied by assetd: use `ro` or `rw`, or the long syntax"));
                return None;
            }
        };
        let kind = match source {
            Some(s) if s.starts_with(['.', '/', '~']) => MountKind::Bind,
            _ => MountKind::Volume,
        };
        Some((
            kind,
            source.map(str::to_string),
            target.to_string(),
            read_only,
        ))
    }

    fn compose_long_mount(
        &mut self,
        node: &Node,
        path: &str,
    ) -> Option<(MountKind, Option<String>, String, bool)> {
        let fields = self.object(node, path, &VOLUME_MOUNT)?;
        let at = |k: &str| join(path, k);
        let kind = match fields.get("type") {
            Some(n) => match self.string(n, &at("type"))?.as_str() {
                "volume" => MountKind::Volume,
                "bind" => MountKind::Bind,
                "tmpfs" => MountKind::Tmpfs,
                other => {
                    self.error(
                        n,
                        &at("type"),
                        format!("volume type `{other}` is not volume, bind or tmpfs"),
                    );
                    return None;
                }
            },
            None => {
                self.error(node, &at("type"), "missing required field `type`");
                return None;
            }
        };
        let source = fields
            .get("source")
            .and_then(|n| self.string(n, &at("source")));
        let Some(target) = fields
            .get("target")
            .and_then(|n| self.string(n, &at("target")))
        else {
            self.error(node, &at("target"), "missing required field `target`");
            return None;
        };
        let read_only = fields
            .get("read_only")
            .and_then(|n| self.boolean(n, &at("read_only")))
            .unwrap_or(false);
        Some((kind, source, target, read_only))
    }

    #[allow(clippy::too_many_arguments)]
    fn compose_mount(
        &mut self,
        kind: MountKind,
        source: Option<String>,
        target: String,
        read_only: bool,
        node: &Node,
        path: &str,
        project: &Project,
    ) -> Option<Mount> {
        if !target.starts_with('/') {
            self.error(
                node,
                path,
                format!("target `{target}` must be an absolute path"),
            );
            return None;
        }
        let mut mount = Mount {
            kind,
            source: None,
            target,
            read_only,
            volume_driver: None,
            volume_labels: BTreeMap::new(),
        };
        match (kind, source) {
            (MountKind::Volume, None) | (MountKind::Tmpfs, None) => {}
            (MountKind::Tmpfs, Some(_)) => {
                self.error(node, path, "a tmpfs mount has no source");
                return None;
            }
            (MountKind::Volume, Some(key)) => {
                let Some(declared) = project.volumes.get(&key) else {
                    self.error(
                        node,
                        path,
                        format!("volume `{key}` is not declared under the top-level `volumes:`"),
                    );
                    return None;
                };
                mount.source = Some(declared.name.clone());
                if !declared.external {
                    mount.volume_labels = declared.labels.clone();
                    if declared.driver.is_some() || !declared.driver_opts.is_empty() {
                        mount.volume_driver = Some(VolumeDriver {
                            name: declared.driver.clone().unwrap_or_default(),
                            options: declared.driver_opts.clone(),
                        });
                    }
                }
            }
            (MountKind::Bind, None) => {
                self.error(node, path, "a bind mount needs a source");
                return None;
            }
            (MountKind::Bind, Some(source)) => {
                let absolute = self.compose_bind_source(&source, node, path)?;
                if !self.bind_allowed(&absolute) {
                    self.error(node, path, format!("bind mount of `{absolute}` is not allowed; start assetd with --allow-bind naming a directory that holds it"));
                    return None;
                }
                mount.source = Some(absolute);
            }
        }
        Some(mount)
    }

    /// A bind source made absolute: `./x` against the Compose file's
    /// directory, `~` against `$HOME`.
    fn compose_bind_source(&mut self, source: &str, node: &Node, path: &str) -> Option<String> {
        let joined = if let Some(rest) = source.strip_prefix('~') {
            match (self.env)("HOME") {
                Some(home) => format!("{home}{rest}"),
                None => {
                    self.error(node, path, "`~` needs HOME in assetd's environment");
                    return None;
                }
            }
        } else if source.starts_with('/') {
            source.to_string()
        } else {
            let Some(dir) = self.dir else {
                self.error(node, path, "a relative bind mount is read against the Compose file's directory, which is not on disk here");
                return None;
            };
            dir.join(source).to_string_lossy().into_owned()
        };
        match joined.parse::<AbsPath>() {
            Ok(AbsPath(path)) => Some(path),
            Err(why) => {
                self.error(node, path, format!("bind source `{joined}` {}", why.0));
                None
            }
        }
    }

    /// `secrets:` / `configs:` of a service: names, or `{ source, target,
    /// uid, gid, mode }`; uid and gid 0 and mode 0444 unless written.
    fn compose_file_refs(
        &mut self,
        node: &Node,
        path: &str,
        kind: ResourceKind,
        project: &Project,
    ) -> Vec<FileRef> {
        let Some(items) = self.list(node, path) else {
            return vec![];
        };
        let mut out: Vec<FileRef> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let (key, target, uid, gid, mode) = match &item.kind {
                Kind::Map(_) => {
                    let Some(f) = self.object(item, &at, &FILE_REF) else {
                        continue;
                    };
                    let s = |this: &mut Self, k: &str| {
                        f.get(k).and_then(|n| this.string(n, &join(&at, k)))
                    };
                    let Some(key) = s(self, "source") else {
                        self.error(
                            item,
                            &join(&at, "source"),
                            "missing required field `source`",
                        );
                        continue;
                    };
                    let mode = f
                        .get("mode")
                        .and_then(|n| self.file_mode(n, &join(&at, "mode")));
                    (key, s(self, "target"), s(self, "uid"), s(self, "gid"), mode)
                }
                _ => match self.string(item, &at) {
                    Some(key) => (key, None, None, None, None),
                    None => continue,
                },
            };
            let declared = match kind {
                ResourceKind::Secret => project.secrets.get(&key),
                _ => project.configs.get(&key),
            };
            let Some(declared) = declared else {
                self.error(
                    item,
                    &at,
                    format!("{kind} `{key}` is not declared under the top-level `{kind}s:`"),
                );
                continue;
            };
            self.refer(kind, &declared.name, item, &at);
            let target = target.unwrap_or_else(|| key.clone());
            let target = match (kind, target.starts_with('/')) {
                (_, true) => target,
                (ResourceKind::Secret, false) => {
                    format!("{}/{target}", crate::input::manifest::stack::SECRETS_DIR)
                }
                (_, false) => format!("/{target}"),
            };
            if out.iter().any(|r| r.target == target) {
                self.error(item, &at, format!("two {kind}s go to `{target}`"));
                continue;
            }
            out.push(FileRef {
                source: declared.name.clone(),
                target,
                uid: uid.unwrap_or_else(|| "0".into()),
                gid: gid.unwrap_or_else(|| "0".into()),
                mode: mode.unwrap_or(0o444),
                version: None,
            });
        }
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    fn compose_healthcheck(&mut self, node: &Node, path: &str) -> Option<Healthcheck> {
        let fields = self.object(node, path, &HEALTHCHECK)?;
        let at = |k: &str| join(path, k);
        let disable = fields
            .get("disable")
            .and_then(|n| self.boolean(n, &at("disable")))
            .unwrap_or(false);
        if disable {
            if let Some(n) = fields.get("test") {
                self.error(
                    n,
                    &at("test"),
                    "`test` and `disable: true` cannot both be set",
                );
                return None;
            }
            return Some(Healthcheck {
                test: vec!["NONE".into()],
                interval_ns: None,
                timeout_ns: None,
                retries: None,
                start_period_ns: None,
            });
        }
        let test = match fields.get("test") {
            Some(n) if matches!(n.kind, Kind::Seq(_)) => self.compose_argv(n, &at("test"))?,
            Some(n) => vec!["CMD-SHELL".into(), self.string(n, &at("test"))?],
            None => vec![],
        };
        let duration = |this: &mut Self, k: &str| {
            fields.get(k).and_then(|n| {
                this.duration_or_zero_ns(n, &at(k), super::super::shape::Spelling::Friendly)
            })
        };
        let interval_ns = duration(self, "interval");
        let timeout_ns = duration(self, "timeout");
        let start_period_ns = duration(self, "start_period");
        let retries = fields
            .get("retries")
            .and_then(|n| self.integer(n, &at("retries")))
            .map(|r| r as i64);
        if test.is_empty() {
            self.error(
                node,
                &at("test"),
                "a healthcheck needs `test` (or `disable: true`)",
            );
            return None;
        }
        Some(Healthcheck {
            test,
            interval_ns,
            timeout_ns,
            retries,
            start_period_ns,
        })
    }

    /// `depends_on:` as a list or a map of `{ condition }`. Both
    /// `service_started` and `service_healthy` wait through dependsOn: for
    /// the dependency to run, and to be healthy when it has a healthcheck.
    fn compose_depends_on(
        &mut self,
        node: &Node,
        path: &str,
        project: &Project,
    ) -> Vec<(AssetName, SourcePos)> {
        let mut keys: Vec<(String, &Node)> = Vec::new();
        match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(k) = self.string(item, &format!("{path}[{i}]")) {
                        keys.push((k, item));
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let key = self.key_text(k).into_owned();
                    let at = join(path, &key);
                    if let Some(f) = self.object(v, &at, &DEPENDENCY) {
                        if let Some(c) = f.get("condition") {
                            match self.string(c, &join(&at, "condition")).as_deref() {
                                Some("service_started" | "service_healthy") => {}
                                Some("service_completed_successfully") => {
                                    self.error(c, &join(&at, "condition"), "`service_completed_successfully` (one-shot jobs) is not applied by assetd yet; use service_started or service_healthy");
                                    continue;
                                }
                                Some(other) => {
                                    self.error(c, &join(&at, "condition"), format!("condition `{other}` is not service_started, service_healthy or service_completed_successfully"));
                                    continue;
                                }
                                None => continue,
                            }
                        }
                    }
                    keys.push((key, k));
                }
            }
            _ => self.wrong_type(
                node,
                path,
                "a list of services or a mapping of services to conditions",
            ),
        }
        let mut out = Vec::new();
        for (key, at) in keys {
            if !project.services.contains(&key) {
                self.error(
                    at,
                    path,
                    format!("service `{key}` is not a service of this file"),
                );
                continue;
            }
            if let Ok(name) = AssetName::new(&project.scoped(&key)) {
                out.push((name, self.pos(at)));
            }
        }
        out
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
