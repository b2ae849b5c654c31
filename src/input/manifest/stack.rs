//! `kind: Network`, `Volume`, `Secret` and `Config` documents, and an
//! asset's `secrets:` and `configs:` (see [`crate::input::stack`]).

use std::collections::BTreeMap;

use super::decoder::{join, Decoder};
use super::shape::{CONFIG_SPEC, FILE_REF, METADATA, NETWORK_SPEC, SECRET_SPEC, VOLUME_SPEC};
use super::yaml::{Kind, Node};
use super::{Reference, SourcePos};
use crate::input::stack::{
    ContentSource, Decrypt, NetworkSpec, ParsedResource, ResourceKind, ResourceSpec, VolumeSpec,
};
use crate::model::spec::values::DockerName;
use crate::model::spec::FileRef;

/// Where a relative secret target lands, as Swarm and compose put it.
pub const SECRETS_DIR: &str = "/run/secrets";

impl Decoder<'_> {
    /// The rest of a document whose `kind` is `kind`: recorded in
    /// `self.resources` when valid.
    pub(super) fn resource_document(
        &mut self,
        kind: ResourceKind,
        metadata: Option<&Node>,
        spec: Option<&Node>,
    ) {
        let errors_before = self.errors.len();
        let (name, pos, labels) = match metadata {
            Some(node) => self.resource_metadata(node),
            None => (None, None, BTreeMap::new()),
        };
        let spec = spec.and_then(|node| match kind {
            ResourceKind::Network => self.network_spec(node).map(ResourceSpec::Network),
            ResourceKind::Volume => self.volume_spec(node).map(ResourceSpec::Volume),
            ResourceKind::Secret => self
                .content_source(node, &SECRET_SPEC, false)
                .map(ResourceSpec::Secret),
            ResourceKind::Config => self
                .content_source(node, &CONFIG_SPEC, true)
                .map(ResourceSpec::Config),
        });
        if self.errors.len() > errors_before {
            return;
        }
        if let (Some(name), Some(pos), Some(spec)) = (name, pos, spec) {
            self.resources.push(ParsedResource {
                name,
                pos,
                labels,
                spec,
            });
        }
    }

    /// `metadata` of a resource: its name is a Docker object name.
    pub(super) fn resource_metadata(
        &mut self,
        node: &Node,
    ) -> (Option<String>, Option<SourcePos>, BTreeMap<String, String>) {
        let Some(fields) = self.object(node, "metadata", &METADATA) else {
            return (None, None, BTreeMap::new());
        };
        let mut name = None;
        let mut pos = None;
        if let Some(value) = self.required(&fields, "name", node, "metadata") {
            pos = Some(self.pos(value));
            name = self.docker_name(value, "metadata.name");
        }
        let labels = fields
            .get("labels")
            .map(|n| self.labels(n))
            .unwrap_or_default();
        (name, pos, labels)
    }

    fn docker_name(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        match text.parse::<DockerName>() {
            Ok(_) if text.len() <= 48 => Some(text),
            Ok(_) => {
                // Room for the `-<version>` suffix of secrets and configs.
                self.error(
                    node,
                    path,
                    format!("name `{text}` is longer than 48 characters"),
                );
                None
            }
            Err(why) => {
                self.error(node, path, format!("name {why}"));
                None
            }
        }
    }

    fn network_spec(&mut self, node: &Node) -> Option<NetworkSpec> {
        const P: &str = "spec";
        let fields = self.object(node, P, &NETWORK_SPEC)?;
        let mut spec = NetworkSpec {
            driver: fields
                .get("driver")
                .and_then(|n| self.docker_name(n, "spec.driver")),
            attachable: fields
                .get("attachable")
                .and_then(|n| self.boolean(n, "spec.attachable"))
                .unwrap_or(false),
            internal: fields
                .get("internal")
                .and_then(|n| self.boolean(n, "spec.internal"))
                .unwrap_or(false),
            options: fields
                .get("options")
                .map(|n| self.string_map(n, "spec.options"))
                .unwrap_or_default(),
            ..Default::default()
        };
        if let Some(items) = fields
            .get("subnets")
            .and_then(|n| self.list(n, "spec.subnets"))
        {
            for (i, item) in items.iter().enumerate() {
                let path = format!("spec.subnets[{i}]");
                if let Some(cidr) = self.cidr(item, &path) {
                    spec.subnets.push(cidr);
                }
            }
        }
        for (key, slot) in [
            ("gateway", &mut spec.gateway),
            ("ipRange", &mut spec.ip_range),
        ] {
            let Some(value) = fields.get(key) else {
                continue;
            };
            let path = join(P, key);
            if spec.subnets.len() != 1 {
                self.error(value, &path, "needs exactly one entry in spec.subnets");
                continue;
            }
            *slot = if key == "gateway" {
                self.ip(value, &path)
            } else {
                self.cidr(value, &path)
            };
        }
        Some(spec)
    }

    fn cidr(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        let valid = text.split_once('/').is_some_and(|(ip, bits)| {
            let max = match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => 32,
                Ok(std::net::IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            bits.parse::<u8>().is_ok_and(|b| b <= max)
        });
        if !valid {
            self.error(
                node,
                path,
                format!("`{text}` is not an address range such as 10.20.0.0/16"),
            );
            return None;
        }
        Some(text)
    }

    fn ip(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        if text.parse::<std::net::IpAddr>().is_err() {
            self.error(node, path, format!("`{text}` is not an IP address"));
            return None;
        }
        Some(text)
    }

    fn volume_spec(&mut self, node: &Node) -> Option<VolumeSpec> {
        let fields = self.object(node, "spec", &VOLUME_SPEC)?;
        Some(VolumeSpec {
            driver: fields
                .get("driver")
                .and_then(|n| self.docker_name(n, "spec.driver")),
            driver_opts: fields
                .get("driverOpts")
                .map(|n| self.string_map(n, "spec.driverOpts"))
                .unwrap_or_default(),
        })
    }

    /// A mapping of strings to strings (driver options).
    fn string_map(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, path, "a mapping of strings");
            return out;
        };
        for (key, value) in entries {
            let Some(k) = self.map_key(key, path) else {
                continue;
            };
            if let Some(v) = self.string(value, &join(path, &k)) {
                out.insert(k, v);
            }
        }
        out
    }

    /// Exactly one of `file`, `fromEnv` and (configs) `data`.
    fn content_source(
        &mut self,
        node: &Node,
        shape: &'static super::shape::Shape,
        inline: bool,
    ) -> Option<ContentSource> {
        let fields = self.object(node, "spec", shape)?;
        let keys: &[&str] = if inline {
            &["file", "fromEnv", "data"]
        } else {
            &["file", "fromEnv"]
        };
        let given: Vec<(&str, &Node)> = keys
            .iter()
            .filter_map(|k| fields.get(k).map(|n| (*k, n)))
            .collect();
        let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        let wanted = match quoted.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        let [(key, value)] = given.as_slice() else {
            let at = given.get(1).map_or(node, |(_, n)| n);
            self.error(at, "spec", format!("give exactly one of {wanted}"));
            return None;
        };
        let decrypt = match fields.get("decrypt") {
            Some(node) => Some(self.decrypt(node, key)?),
            None => None,
        };
        let path = join("spec", key);
        let text = self.string(value, &path)?;
        let pos = self.pos(value);
        match *key {
            "file" if text.is_empty() => {
                self.error(value, &path, "file name must not be empty");
                None
            }
            "file" if decrypt.is_none() && text.ends_with(".age") => {
                self.error(
                    value,
                    &path,
                    format!("`{text}` looks like an age file: say `decrypt: age` (or `decrypt: none` to use its bytes as they are)"),
                );
                None
            }
            "file" => Some(ContentSource::File {
                path: text,
                pos,
                decrypt: decrypt.unwrap_or_default(),
            }),
            "fromEnv" if text.is_empty() => {
                self.error(value, &path, "variable name must not be empty");
                None
            }
            "fromEnv" => Some(ContentSource::FromEnv { var: text, pos }),
            _ => Some(ContentSource::Inline(text)),
        }
    }

    /// `spec.decrypt`: only beside `file`.
    fn decrypt(&mut self, node: &Node, source: &str) -> Option<Decrypt> {
        let text = self.string(node, "spec.decrypt")?;
        let decrypt = match text.as_str() {
            "age" => Decrypt::Age,
            "none" => Decrypt::None,
            _ => {
                self.error(
                    node,
                    "spec.decrypt",
                    format!("`{text}` is not a way to decrypt: `age` or `none`"),
                );
                return None;
            }
        };
        if source != "file" {
            self.error(node, "spec.decrypt", "decrypts a `file` only");
            return None;
        }
        Some(decrypt)
    }

    /// `spec.secrets` or `spec.configs` of an asset.
    pub(super) fn file_refs(&mut self, node: &Node, kind: ResourceKind) -> Vec<FileRef> {
        let p = match kind {
            ResourceKind::Secret => "spec.secrets",
            _ => "spec.configs",
        };
        let mut out: Vec<FileRef> = Vec::new();
        let Some(items) = self.list(node, p) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{p}[{i}]");
            if let Some(file_ref) = self.file_ref(item, &path, kind) {
                if out.iter().any(|r| r.target == file_ref.target) {
                    let message = format!("target `{}` is used twice", file_ref.target);
                    self.error(item, &path, message);
                } else {
                    out.push(file_ref);
                }
            }
        }
        out
    }

    fn file_ref(&mut self, node: &Node, path: &str, kind: ResourceKind) -> Option<FileRef> {
        // `- kafka-creds` is short for `{ source: kafka-creds }`.
        if !matches!(node.kind, Kind::Map(_)) {
            let source = self.docker_name(node, path)?;
            self.refer(kind, &source, node, path);
            return Some(FileRef {
                target: default_target(kind, &source),
                source,
                uid: "0".into(),
                gid: "0".into(),
                mode: default_mode(kind),
                version: None,
            });
        }
        let errors_before = self.errors.len();
        let fields = self.object(node, path, &FILE_REF)?;
        let source_path = join(path, "source");
        let source = self.required(&fields, "source", node, path).and_then(|n| {
            let name = self.docker_name(n, &source_path)?;
            self.refer(kind, &name, n, &source_path);
            Some(name)
        });
        let target = match fields.get("target") {
            None => source.as_ref().map(|s| default_target(kind, s)),
            Some(value) => {
                let target_path = join(path, "target");
                let text = self.string(value, &target_path)?;
                if kind == ResourceKind::Secret && !text.starts_with('/') && !text.is_empty() {
                    Some(format!("{SECRETS_DIR}/{text}"))
                } else {
                    self.mount_target(value, &target_path)
                }
            }
        };
        let mut id = |key: &str| -> String {
            let Some(value) = fields.get(key) else {
                return "0".into();
            };
            let id_path = join(path, key);
            match self.integer(value, &id_path) {
                Some(n) if (0..=u32::MAX as i128).contains(&n) => n.to_string(),
                Some(_) => {
                    self.error(value, &id_path, "must be a numeric ID from 0 to 4294967295");
                    "0".into()
                }
                None => "0".into(),
            }
        };
        let (uid, gid) = (id("uid"), id("gid"));
        let mode = match fields.get("mode") {
            None => default_mode(kind),
            Some(value) => self.file_mode(value, &join(path, "mode")).unwrap_or(0),
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(FileRef {
            source: source?,
            target: target?,
            uid,
            gid,
            mode,
            version: None,
        })
    }

    /// `0400`, `0o400` or `"0400"`: octal, as `chmod` and compose read it
    /// (YAML 1.2 would read a bare `0400` as four hundred).
    pub(super) fn file_mode(&mut self, node: &Node, path: &str) -> Option<u32> {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            _ => self.scalar_text(node)?.to_string(),
        };
        let digits = text.strip_prefix("0o").unwrap_or(&text);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o777 => Some(mode),
            _ => {
                self.error(
                    node,
                    path,
                    format!("mode `{text}` is not an octal file mode such as 0400"),
                );
                None
            }
        }
    }

    /// Records that the asset uses `name` of `kind` (checked once every
    /// file is read and the engine listed).
    /// Docker's own networks (`bridge`, `host`, `none`) always exist and
    /// are never ours: not references (nor a reason to look at the stack).
    pub(super) fn refer(&mut self, kind: ResourceKind, name: &str, node: &Node, path: &str) {
        if kind == ResourceKind::Network && matches!(name, "bridge" | "host" | "none") {
            return;
        }
        let pos = self.pos(node);
        self.references.push(Reference {
            kind,
            name: name.to_string(),
            pos,
            field: path.to_string(),
        });
    }
}

fn default_target(kind: ResourceKind, source: &str) -> String {
    match kind {
        ResourceKind::Secret => format!("{SECRETS_DIR}/{source}"),
        _ => format!("/{source}"),
    }
}

fn default_mode(kind: ResourceKind) -> u32 {
    match kind {
        ResourceKind::Secret => 0o400,
        _ => 0o444,
    }
}

#[cfg(test)]
mod tests {
    use crate::input::manifest::{parse_documents, ParsedFile, Policy};
    use crate::input::stack::{ContentSource, ResourceKind, ResourceSpec};

    fn parse(text: &str) -> Result<ParsedFile, Vec<String>> {
        parse_documents("s.yaml", text, &|_| None, &Policy::default())
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
    }

    const HEAD: &str = "apiVersion: assetd/v1\n";

    #[test]
    fn each_kind_is_read_with_its_spec() {
        let text = format!(
            "{HEAD}kind: Network\nmetadata: {{ name: factory-net, labels: {{ site: a }} }}\nspec: {{ driver: overlay, attachable: true, subnets: [10.20.0.0/16], gateway: 10.20.0.1 }}\n---\n\
             {HEAD}kind: Volume\nmetadata: {{ name: historian-data }}\nspec: {{ driverOpts: {{ type: nfs, o: \"addr=nfs.example\" }} }}\n---\n\
             {HEAD}kind: Secret\nmetadata: {{ name: kafka-creds }}\nspec: {{ fromEnv: KAFKA_CREDS }}\n---\n\
             {HEAD}kind: Config\nmetadata: {{ name: agent-cfg }}\nspec: {{ data: \"a=1\" }}\n"
        );
        let parsed = parse(&text).unwrap();
        let kinds: Vec<ResourceKind> = parsed.resources.iter().map(|r| r.kind()).collect();
        assert_eq!(kinds, ResourceKind::ALL);
        let ResourceSpec::Network(net) = &parsed.resources[0].spec else {
            panic!()
        };
        assert_eq!(net.driver.as_deref(), Some("overlay"));
        assert_eq!(net.gateway.as_deref(), Some("10.20.0.1"));
        assert_eq!(parsed.resources[0].labels["site"], "a");
        let ResourceSpec::Secret(ContentSource::FromEnv { var, pos }) = &parsed.resources[2].spec
        else {
            panic!()
        };
        assert_eq!(
            (var.as_str(), pos.line, pos.column),
            ("KAFKA_CREDS", 14, 18)
        );
    }

    #[test]
    fn mistakes_are_reported_where_they_are() {
        let cases = [
            // A secret in a manifest would be in git.
            ("kind: Secret\nmetadata: { name: s }\nspec: { data: x }\n", "s.yaml:4:9: spec.data: unknown field `data`"),
            ("kind: Config\nmetadata: { name: c }\nspec: { file: a, data: b }\n", "s.yaml:4:24: spec: give exactly one of `file`, `fromEnv` or `data`"),
            ("kind: Network\nmetadata: { name: n }\nspec: { gateway: 10.0.0.1 }\n", "s.yaml:4:18: spec.gateway: needs exactly one entry in spec.subnets"),
            ("kind: Network\nmetadata: { name: n }\nspec: { subnets: [10.0.0.0/33] }\n", "s.yaml:4:19: spec.subnets[0]: `10.0.0.0/33` is not an address range such as 10.20.0.0/16"),
            ("kind: Volume\nmetadata: { name: /data }\nspec: {}\n", "s.yaml:3:19: metadata.name: name `/data` may contain only letters"),
        ];
        for (doc, expected) in cases {
            let errors = parse(&format!("{HEAD}{doc}")).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{doc}: {errors:?}"
            );
        }
    }

    #[test]
    fn an_assets_secrets_take_defaults_and_octal_modes() {
        let text = format!(
            "{HEAD}kind: Asset\nmetadata: {{ name: a }}\nspec:\n  image: i\n  secrets: [ kafka-creds, {{ source: tls, target: /etc/tls.pem, uid: 1000, mode: 0440 }} ]\n  configs: [ {{ source: cfg, target: agent.cfg }} ]\n"
        );
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("spec.configs[0].target: target `agent.cfg`"),
            "{errors:?}"
        );
        let ok = parse(&text.replace("target: agent.cfg", "target: /etc/agent.cfg")).unwrap();
        let spec = &ok.assets[0].spec;
        assert_eq!(spec.secrets[0].target, "/run/secrets/kafka-creds");
        assert_eq!((spec.secrets[0].mode, spec.secrets[1].mode), (0o400, 0o440));
        assert_eq!(spec.secrets[1].uid, "1000");
        assert_eq!(spec.configs[0].mode, 0o444);
        let names: Vec<String> = ok.assets[0]
            .references
            .iter()
            .map(|r| format!("{} {}", r.kind, r.name))
            .collect();
        assert_eq!(names, ["secret kafka-creds", "secret tls", "config cfg"]);
    }
}
