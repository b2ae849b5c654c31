//! The container's own fields of `spec`: image, command, env, ports,
//! networks and placement constraints.

use std::collections::BTreeMap;

use super::decoder::{join, parse_int, Decoder};
use super::yaml::{Kind, Node};
use super::SourcePos;
use crate::model::spec::values::{DockerName, ImageRef};
use crate::model::spec::{PortMapping, Protocol, PullPolicy};

/// The field path of `spec.env`.
const ENV: &str = "spec.env";

impl Decoder<'_> {
    pub(super) fn image(&mut self, node: &Node) -> Option<String> {
        self.image_at(node, "spec.image")
    }

    /// An image reference at field path `path`.
    pub(super) fn image_at(&mut self, node: &Node, path: &str) -> Option<String> {
        let image = self.string(node, path)?;
        match image.parse::<ImageRef>() {
            Ok(ImageRef(image)) => Some(image),
            Err(why) => {
                self.error(node, path, why.0);
                None
            }
        }
    }

    /// `pullPolicy: IfNotPresent | Always | Never`.
    pub(super) fn pull_policy(&mut self, node: &Node) -> Option<PullPolicy> {
        const P: &str = "spec.pullPolicy";
        let text = self.string(node, P)?;
        let policy = PullPolicy::parse(text.trim());
        if policy.is_none() {
            let names = PullPolicy::NAMES.join(", ");
            self.error(
                node,
                P,
                format!("pull policy `{text}` is not one of {names}"),
            );
        }
        policy
    }

    pub(super) fn command(&mut self, node: &Node) -> Option<Vec<String>> {
        const P: &str = "spec.command";
        let argv = match &node.kind {
            Kind::Seq(items) => {
                let mut argv = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    argv.push(self.string(item, &format!("{P}[{i}]"))?);
                }
                argv
            }
            Kind::Map(_) | Kind::Null => {
                self.wrong_type(node, P, "a string or a list of strings");
                return None;
            }
            _ => {
                let line = self.string(node, P)?;
                match shell_words::split(&line) {
                    Ok(argv) => argv,
                    Err(err) => {
                        self.error(
                            node,
                            P,
                            format!("cannot split `{line}` into arguments: {err}"),
                        );
                        return None;
                    }
                }
            }
        };
        if argv.is_empty() {
            self.error(
                node,
                P,
                "command is empty; leave it out to keep the image's default command",
            );
            return None;
        }
        // An empty first argument is left alone: with the image's
        // ENTRYPOINT it is just an argument, and the image is not known
        // here.
        Some(argv)
    }

    /// `env: [KEY=VALUE, ...]` (kept in order) or `env: { KEY: value }`
    /// (sorted by key).
    pub(super) fn env(&mut self, node: &Node) -> Vec<String> {
        match &node.kind {
            Kind::Seq(items) => self.env_list(items, ENV),
            Kind::Map(entries) => self.env_map(entries),
            _ => {
                self.wrong_type(node, ENV, "a list of KEY=VALUE strings or a mapping");
                Vec::new()
            }
        }
    }

    /// `KEY=VALUE` strings at field path `at`, in order; a value keeps
    /// every `=` after the first. Native `env` and app files' `environment`.
    pub(super) fn env_list(&mut self, items: &[Node], at: &str) -> Vec<String> {
        // name → line of its first definition, for duplicate messages.
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{at}[{i}]");
            if matches!(item.kind, Kind::Map(_) | Kind::Seq(_) | Kind::Null) {
                self.wrong_type(item, &path, "a `KEY=VALUE` string");
                continue;
            }
            let Some(entry) = self.string(item, &path) else {
                continue;
            };
            let Some((key, _)) = entry.split_once('=') else {
                self.error(
                    item,
                    &path,
                    format!("`{entry}` must have the form KEY=VALUE"),
                );
                continue;
            };
            if self.env_key(key, item, &path, &mut seen) {
                out.push(entry);
            }
        }
        out
    }

    fn env_map(&mut self, entries: &[(Node, Node)]) -> Vec<String> {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut pairs = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(k) = self.map_key(key, ENV) else {
                continue;
            };
            if k.contains("${") {
                self.error(
                    key,
                    ENV,
                    format!("`{k}`: `${{…}}` is not expanded in keys; write the variable name out, or use the list form [\"NAME=VALUE\"]"),
                );
                continue;
            }
            if !self.env_key(&k, key, ENV, &mut seen) {
                continue;
            }
            if matches!(value.kind, Kind::Null) {
                self.error(
                    value,
                    &join(ENV, &k),
                    "value is empty; write \"\" for an empty value",
                );
                continue;
            }
            if let Some(v) = self.string(value, &join(ENV, &k)) {
                pairs.push((k, v));
            }
        }
        pairs.sort();
        pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// Checks one environment variable name; false when it was reported.
    pub(super) fn env_key(
        &mut self,
        key: &str,
        node: &Node,
        path: &str,
        seen: &mut BTreeMap<String, u64>,
    ) -> bool {
        if key.is_empty() {
            self.error(node, path, "environment variable name must not be empty");
            return false;
        }
        if key.contains('=') {
            self.error(
                node,
                path,
                format!("environment variable name `{key}` must not contain `=`"),
            );
            return false;
        }
        if key.contains('\0') {
            self.error(node, path, "environment variable name must not contain NUL");
            return false;
        }
        if let Some(line) = seen.get(key) {
            self.error(
                node,
                path,
                format!("environment variable `{key}` is already set on line {line}"),
            );
            return false;
        }
        seen.insert(key.to_string(), node.at.line());
        true
    }

    pub(super) fn ports(
        &mut self,
        node: &Node,
    ) -> (Vec<PortMapping>, Vec<(u16, Protocol, SourcePos)>) {
        const P: &str = "spec.ports";
        let mut ports: Vec<(PortMapping, SourcePos)> = Vec::new();
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(
                node,
                P,
                "a mapping of host port to container port, e.g. { 5000: 5000 }",
            );
            return (Vec::new(), Vec::new());
        };
        for (key, value) in entries {
            let host = self.host_port(key);
            let container = self.container_port(value);
            let (Some((host, protocol)), Some(container)) = (host, container) else {
                continue;
            };
            if let Some((_, first)) = ports
                .iter()
                .find(|(p, _)| p.host == host && p.protocol == protocol)
            {
                let line = first.line;
                self.error(
                    key,
                    P,
                    format!(
                        "host port {} is already published on line {line}",
                        port_label(host, protocol)
                    ),
                );
                continue;
            }
            ports.push((
                PortMapping {
                    host,
                    container,
                    protocol,
                },
                self.pos(key),
            ));
        }
        ports.sort_by_key(|(p, _)| (p.host, p.protocol));
        let positions = ports
            .iter()
            .map(|(p, pos)| (p.host, p.protocol, pos.clone()))
            .collect();
        (ports.into_iter().map(|(p, _)| p).collect(), positions)
    }

    /// A `spec.ports` key: `5000`, `"5000/tcp"` or `"5001/udp"`.
    pub(super) fn host_port(&mut self, key: &Node) -> Option<(u16, Protocol)> {
        const P: &str = "spec.ports";
        let text = match &key.kind {
            Kind::Int(_) | Kind::Str(_) => self.key_text(key).into_owned(),
            _ => {
                self.wrong_type(key, P, "a host port such as 5000 or \"5001/udp\"");
                return None;
            }
        };
        let (number, protocol) = match text.split_once('/') {
            None => (text.as_str(), Protocol::Tcp),
            Some((n, "tcp")) => (n, Protocol::Tcp),
            Some((n, "udp")) => (n, Protocol::Udp),
            Some((_, other)) => {
                self.error(
                    key,
                    P,
                    format!("host port `{text}`: protocol `{other}` is not tcp or udp"),
                );
                return None;
            }
        };
        let port = self.port_number(key, P, number, "host port")?;
        Some((port, protocol))
    }

    pub(super) fn container_port(&mut self, value: &Node) -> Option<u16> {
        const P: &str = "spec.ports";
        let text = match &value.kind {
            Kind::Int(_) => self.scalar_text(value).unwrap_or("?").to_string(),
            Kind::Str(s) => self.expand(s, value, P)?,
            _ => {
                self.wrong_type(value, P, "a container port number");
                return None;
            }
        };
        if text.contains('/') {
            self.error(
                value,
                P,
                format!("container port `{text}`: the protocol goes on the host port key, e.g. \"5001/udp\": 5001"),
            );
            return None;
        }
        self.port_number(value, P, &text, "container port")
    }

    pub(super) fn port_number(
        &mut self,
        node: &Node,
        path: &str,
        text: &str,
        what: &str,
    ) -> Option<u16> {
        match parse_int(text.trim()) {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(n) => {
                self.error(node, path, format!("{what} {n} is out of range 1-65535"));
                None
            }
            None => {
                self.error(
                    node,
                    path,
                    format!("{what} `{text}` must be a number 1-65535 (host ports may add /tcp or /udp)"),
                );
                None
            }
        }
    }

    pub(super) fn networks(&mut self, node: &Node) -> Vec<String> {
        self.networks_at(node, "spec.networks")
    }

    /// A list of network names at field path `path`.
    pub(super) fn networks_at(&mut self, node: &Node, path: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let Some(items) = self.list(node, path) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let Some(name) = self.string(item, &path) else {
                continue;
            };
            if name.is_empty() {
                self.error(item, &path, "network name must not be empty");
            } else if name.parse::<DockerName>().is_err() {
                self.error(
                    item,
                    &path,
                    format!("network name `{name}` may contain only letters, digits, `_`, `.` and `-`, and must start with a letter or digit"),
                );
            } else if out.contains(&name) {
                self.error(item, &path, format!("network `{name}` is listed twice"));
            } else {
                self.refer(
                    crate::input::stack::ResourceKind::Network,
                    &name,
                    item,
                    &path,
                );
                out.push(name);
            }
        }
        out
    }

    pub(super) fn constraints(&mut self, node: &Node) -> Vec<String> {
        const P: &str = "spec.constraints";
        let mut out = Vec::new();
        let Some(items) = self.list(node, P) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{P}[{i}]");
            let Some(text) = self.string(item, &path) else {
                continue;
            };
            let constraint = text.trim();
            if constraint.is_empty() {
                self.error(item, &path, "constraint must not be empty");
            } else if !constraint.contains("==") && !constraint.contains("!=") {
                self.error(
                    item,
                    &path,
                    format!("constraint `{constraint}` needs an operator, `==` or `!=` (e.g. node.labels.zone == cell-3)"),
                );
            } else {
                out.push(constraint.to_string());
            }
        }
        out
    }
}

fn port_label(port: u16, protocol: Protocol) -> String {
    match protocol {
        Protocol::Tcp => port.to_string(),
        Protocol::Udp => format!("{port}/udp"),
    }
}
