//! What an app says about itself to other tools, as labels on its
//! containers and services: `uns` as `openfactory.uns.<level>`, `routing`
//! as the Traefik labels of OpenFactory's router `ofa-<name>`, `metrics`
//! as the `prometheus.io/*` discovery labels.

use std::collections::BTreeMap;

use super::super::decoder::{join, Decoder};
use super::super::yaml::{Kind, Node};
use super::shape::{METRICS, ROUTING};

/// The app's uuid as written (the asset name is it in lower case).
pub const UUID_LABEL: &str = "openfactory.uuid";
/// Prefix of the UNS levels' labels.
pub const UNS_LABEL_PREFIX: &str = "openfactory.uns.";
/// The daemon's environment variable holding the domain apps are routed
/// under (OpenFactory's `OPENFACTORY_BASE_DOMAIN`).
pub const BASE_DOMAIN_VAR: &str = "OPENFACTORY_BASE_DOMAIN";

/// `routing`, decoded.
pub(super) struct Routing {
    expose: bool,
    port: Option<u16>,
    hostname: Option<String>,
}

/// `metrics`, decoded.
pub(super) struct Metrics {
    port: u16,
    path: String,
}

impl Decoder<'_> {
    pub(super) fn uns_labels(
        &mut self,
        node: &Node,
        path: &str,
        labels: &mut BTreeMap<String, String>,
    ) {
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, path, "a mapping of UNS levels to values");
            return;
        };
        for (key, value) in entries {
            let Some(level) = self.map_key(key, path) else {
                continue;
            };
            let field = join(path, &level);
            if matches!(value.kind, Kind::Map(_) | Kind::Seq(_) | Kind::Null) {
                self.wrong_type(value, &field, "a string");
            } else if let Some(v) = self.string(value, &field) {
                labels.insert(format!("{UNS_LABEL_PREFIX}{level}"), v);
            }
        }
    }

    pub(super) fn routing(&mut self, node: &Node, path: &str) -> Option<Routing> {
        let fields = self.object(node, path, &ROUTING)?;
        let expose = fields
            .get("expose")
            .and_then(|n| self.boolean(n, &join(path, "expose")));
        let port = fields
            .get("port")
            .map(|n| self.app_port(n, &join(path, "port")));
        let hostname = fields
            .get("hostname")
            .and_then(|n| self.string(n, &join(path, "hostname")));
        Some(Routing {
            expose: expose.unwrap_or(false),
            port: port.flatten(),
            hostname,
        })
    }

    /// The Traefik labels of an exposed app: router and service
    /// `ofa-<name>`, the rule `Host(`<name>.<domain>`)` (or the alias
    /// hostname's), the port when given.
    pub(super) fn routing_labels(
        &mut self,
        routing: &Routing,
        name: &crate::model::spec::AssetName,
        node: &Node,
        path: &str,
        labels: &mut BTreeMap<String, String>,
    ) {
        if !routing.expose {
            return;
        }
        let Some(domain) = (self.env)(BASE_DOMAIN_VAR).filter(|d| !d.trim().is_empty()) else {
            self.error(
                node,
                &join(path, "expose"),
                format!("routing an app needs the base domain it is served under: set {BASE_DOMAIN_VAR} in assetd's environment, as for OpenFactory"),
            );
            return;
        };
        let mut rule = format!("Host(`{name}.{}`)", domain.trim());
        if let Some(hostname) = &routing.hostname {
            let alias = dns_label(hostname);
            if alias.is_empty() || alias.len() > 63 {
                let message = format!("hostname `{hostname}` does not make a DNS label of 1 to 63 characters (`{alias}`)");
                self.error(node, &join(path, "hostname"), message);
                return;
            }
            rule.push_str(&format!(" || Host(`{alias}.{}`)", domain.trim()));
        }
        let router = format!("ofa-{name}");
        labels.insert("traefik.enable".into(), "true".into());
        labels.insert(format!("traefik.http.routers.{router}.rule"), rule);
        labels.insert(
            format!("traefik.http.routers.{router}.service"),
            router.clone(),
        );
        if let Some(port) = routing.port {
            labels.insert(
                format!("traefik.http.services.{router}.loadbalancer.server.port"),
                port.to_string(),
            );
        }
    }

    /// A port, 1 to 65535, written as a number or a string (`${PORT}`).
    fn app_port(&mut self, node: &Node, path: &str) -> Option<u16> {
        let text = self.string(node, path)?;
        self.port_number(node, path, &text, "port")
    }

    pub(super) fn metrics(&mut self, node: &Node, path: &str) -> Option<Metrics> {
        let fields = self.object(node, path, &METRICS)?;
        let port = self
            .required(&fields, "port", node, path)
            .and_then(|n| self.app_port(n, &join(path, "port")));
        let metrics_path = match fields.get("path") {
            Some(n) => {
                let field = join(path, "path");
                let text = self.string(n, &field)?;
                if !text.starts_with('/') {
                    self.error(n, &field, format!("path `{text}` must start with `/`"));
                    return None;
                }
                text
            }
            None => "/metrics".to_string(),
        };
        Some(Metrics {
            port: port?,
            path: metrics_path,
        })
    }
}

/// The Prometheus discovery labels of an app with `metrics`.
pub(super) fn metrics_labels(metrics: &Metrics, labels: &mut BTreeMap<String, String>) {
    labels.insert("prometheus.io/scrape".into(), "true".into());
    labels.insert("prometheus.io/port".into(), metrics.port.to_string());
    labels.insert("prometheus.io/path".into(), metrics.path.clone());
}

/// A DNS label made of `text` as OpenFactory makes one: lower case, `_`
/// and anything else not a letter, digit or `-` as `-`, runs of `-` as
/// one, none at either end.
pub fn dns_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.to_lowercase().chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_matches('-').to_string()
}
