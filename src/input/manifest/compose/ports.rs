//! A service's `ports:`, short and long, as the routing mesh publishes
//! them.

use super::super::decoder::{join, Decoder};
use super::super::yaml::{Kind, Node};
use super::shape::PORT;
use crate::model::spec::{PortMapping, Protocol, SourcePos};

impl Decoder<'_> {
    /// `ports:`, short (`8080:80`, `8080:80/udp`, `9000-9001:9000-9001`) or
    /// long (`{ target, published, protocol, mode: ingress }`). A port
    /// must be published: an unpublished one is reachable on the
    /// project's network already.
    pub(super) fn compose_ports(
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

    pub(super) fn compose_short_port(
        &mut self,
        node: &Node,
        path: &str,
    ) -> Option<Vec<PortMapping>> {
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

    pub(super) fn compose_long_port(&mut self, node: &Node, path: &str) -> Option<PortMapping> {
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

    pub(super) fn compose_protocol(
        &mut self,
        text: &str,
        node: &Node,
        path: &str,
    ) -> Option<Protocol> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            other => {
                self.error(node, path, format!("protocol `{other}` is not tcp or udp"));
                None
            }
        }
    }
}
