//! The document as a whole: `apiVersion`, `kind`, `metadata` and the
//! fields of `spec`, each decoded by its own module.

use std::collections::BTreeMap;

use super::decoder::{join, Decoder};
use super::shape::{METADATA, SPEC, TOP};
use super::yaml::{Kind, Node};
use super::{ParsedAsset, SourcePos, API_VERSION, KIND, RESERVED_LABEL_PREFIX, WINDOW_KIND};
use crate::input::stack::ResourceKind;
use crate::model::spec::{AssetName, DeploySpec, Protocol};

impl Decoder<'_> {
    /// Decodes one `---` document: an OpenFactory app file (a top-level
    /// `apps:`, see [`super::openfactory`]) or an assetd manifest.
    pub(super) fn root(&mut self, root: &Node) -> Vec<ParsedAsset> {
        if self.is_compose_file(root) {
            self.expanded_bytes = 0;
            self.expansion_exhausted = false;
            self.tags(root, "");
            return self.compose_file(root);
        }
        if !self.is_app_file(root) {
            return self.document(root).into_iter().collect();
        }
        self.expanded_bytes = 0;
        self.expansion_exhausted = false;
        self.tags(root, "");
        self.app_file(root)
    }

    /// Decodes one document; `None` when it has problems (recorded).
    pub(super) fn document(&mut self, root: &Node) -> Option<ParsedAsset> {
        let errors_before = self.errors.len();
        self.expanded_bytes = 0;
        self.expansion_exhausted = false;
        self.references.clear();
        self.hooks = Default::default();
        self.tags(root, "");
        if !matches!(root.kind, Kind::Map(_)) {
            self.error(
                root,
                "",
                format!(
                    "a manifest document must be a mapping with apiVersion, kind, metadata and spec; found {}",
                    root.kind.describe()
                ),
            );
            return None;
        }
        let top = self.object(root, "", &TOP)?;

        // A document of some other format (a Kubernetes object, a compose
        // file) gets one clear error instead of a list of unknown fields.
        let api_version = self.required(&top, "apiVersion", root, "");
        let kind = self.required(&top, "kind", root, "");
        let mut foreign = false;
        let mut stack_kind = None;
        let mut window = false;
        if let Some(node) = api_version {
            let value = self.string(node, "apiVersion");
            if value.as_deref().is_some_and(|v| v != API_VERSION) {
                let value = value.unwrap_or_default();
                self.error(
                    node,
                    "apiVersion",
                    format!("must be `{API_VERSION}`, found `{value}`"),
                );
                foreign = true;
            }
        }
        if let Some(node) = kind {
            let value = self.string(node, "kind");
            stack_kind = value.as_deref().and_then(ResourceKind::from_manifest_kind);
            window = value.as_deref() == Some(WINDOW_KIND);
            if value.as_deref().is_some_and(|v| v != KIND) && stack_kind.is_none() && !window {
                let value = value.unwrap_or_default();
                let kinds = ResourceKind::ALL
                    .map(ResourceKind::manifest_kind)
                    .join("`, `");
                self.error(
                    node,
                    "kind",
                    format!("must be one of `{KIND}`, `{kinds}`, `{WINDOW_KIND}`; found `{value}`"),
                );
                foreign = true;
            }
        }
        if foreign {
            return None;
        }

        let metadata = self.required(&top, "metadata", root, "");
        let spec_node = self.required(&top, "spec", root, "");
        if let Some(kind) = stack_kind {
            self.resource_document(kind, metadata, spec_node);
            return None;
        }
        if window {
            self.window_document(metadata, spec_node);
            return None;
        }
        let (name, name_pos, labels) = match metadata {
            Some(node) => self.metadata(node),
            None => (None, None, BTreeMap::new()),
        };
        let spec = spec_node.and_then(|node| self.spec(node));

        if self.errors.len() > errors_before {
            return None;
        }
        let (name, pos, (mut spec, ports_pos, depends_on)) = (name?, name_pos?, spec?);
        spec.name = name;
        spec.labels = labels;
        Some(ParsedAsset {
            name_field: "metadata.name".into(),
            hash: spec.hash(),
            spec,
            pos,
            ports_pos,
            depends_on,
            references: std::mem::take(&mut self.references),
            hooks: std::mem::take(&mut self.hooks),
            redactions: Default::default(),
        })
    }

    pub(super) fn metadata(
        &mut self,
        node: &Node,
    ) -> (
        Option<AssetName>,
        Option<SourcePos>,
        BTreeMap<String, String>,
    ) {
        let Some(fields) = self.object(node, "metadata", &METADATA) else {
            return (None, None, BTreeMap::new());
        };
        let mut name = None;
        let mut name_pos = None;
        if let Some(value) = self.required(&fields, "name", node, "metadata") {
            name_pos = Some(self.pos(value));
            if let Some(text) = self.string(value, "metadata.name") {
                match AssetName::dns_label(&text) {
                    Ok(n) => name = Some(n),
                    Err(message) => self.error(value, "metadata.name", message),
                }
            }
        }
        let labels = match fields.get("labels") {
            Some(value) => self.labels(value),
            None => BTreeMap::new(),
        };
        (name, name_pos, labels)
    }

    pub(super) fn labels(&mut self, node: &Node) -> BTreeMap<String, String> {
        const PATH: &str = "metadata.labels";
        let mut labels = BTreeMap::new();
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, PATH, "a mapping of label keys to values");
            return labels;
        };
        for (key, value) in entries {
            let Some(k) = self.map_key(key, PATH) else {
                continue;
            };
            if k.is_empty() {
                self.error(key, PATH, "label keys must not be empty");
                continue;
            }
            if k.starts_with(RESERVED_LABEL_PREFIX) {
                self.error(
                    key,
                    PATH,
                    format!("label `{k}`: keys starting with `{RESERVED_LABEL_PREFIX}` are reserved for assetd's own labels"),
                );
                continue;
            }
            if let Some(v) = self.string(value, &join(PATH, &k)) {
                labels.insert(k, v);
            }
        }
        labels
    }

    /// A mapping key that must be a plain scalar (label keys, env keys).
    pub(super) fn map_key(&mut self, key: &Node, path: &str) -> Option<String> {
        match &key.kind {
            Kind::Seq(_) | Kind::Map(_) | Kind::Null => {
                self.wrong_type(key, path, "a string key");
                None
            }
            _ => Some(self.key_text(key).into_owned()),
        }
    }

    /// `spec` → a DeploySpec with a placeholder name and no labels (the
    /// caller fills them in from `metadata`), plus port positions and the
    /// dependencies (not deploy parameters: the planner's).
    #[allow(clippy::type_complexity)]
    pub(super) fn spec(
        &mut self,
        node: &Node,
    ) -> Option<(
        DeploySpec,
        Vec<(u16, Protocol, SourcePos)>,
        Vec<(AssetName, SourcePos)>,
    )> {
        const P: &str = "spec";
        let fields = self.object(node, P, &SPEC)?;
        self.hooks = fields
            .get("hooks")
            .map(|n| self.hooks(n))
            .unwrap_or_default();
        let image = self
            .required(&fields, "image", node, P)
            .and_then(|n| self.image(n));
        let command = fields.get("command").and_then(|n| self.command(n));
        let env = fields.get("env").map(|n| self.env(n)).unwrap_or_default();
        let (ports, ports_pos) = fields
            .get("ports")
            .map(|n| self.ports(n))
            .unwrap_or_default();
        let networks = fields
            .get("networks")
            .map(|n| self.networks(n))
            .unwrap_or_default();
        let constraints = fields
            .get("constraints")
            .map(|n| self.constraints(n))
            .unwrap_or_default();
        let resources = fields
            .get("resources")
            .map(|n| self.resources(n))
            .unwrap_or_default();
        let mode = fields.get("mode").map(|n| self.mode(n)).unwrap_or_default();
        let mounts = fields
            .get("mounts")
            .map(|n| self.mounts(n))
            .unwrap_or_default();
        let healthcheck = fields.get("healthcheck").and_then(|n| self.healthcheck(n));
        let update = fields.get("update").and_then(|n| self.update_policy(n));
        let user = fields.get("user").and_then(|n| self.user(n));
        let ulimits = fields
            .get("ulimits")
            .map(|n| self.ulimits(n))
            .unwrap_or_default();
        let depends_on = fields
            .get("dependsOn")
            .map(|n| self.depends_on(n))
            .unwrap_or_default();
        let pull_policy = fields.get("pullPolicy").and_then(|n| self.pull_policy(n));
        let secrets = fields
            .get("secrets")
            .map(|n| self.file_refs(n, ResourceKind::Secret))
            .unwrap_or_default();
        let configs = fields
            .get("configs")
            .map(|n| self.file_refs(n, ResourceKind::Config))
            .unwrap_or_default();
        let spec = DeploySpec {
            // Replaced by the caller; a spec is only returned when the
            // whole document is valid, so this never escapes.
            name: AssetName::new("placeholder").expect("a valid name"),
            image: image?,
            env,
            labels: BTreeMap::new(),
            command,
            ports,
            networks,
            constraints,
            resources,
            mode,
            mounts,
            healthcheck,
            update,
            user,
            ulimits,
            pull_policy,
            secrets,
            configs,
            runtime: Default::default(),
        };
        Some((spec, ports_pos, depends_on))
    }

    /// `spec.dependsOn`: asset names, each with its position (an unknown
    /// name or a cycle is reported there once every file is read).
    fn depends_on(&mut self, node: &Node) -> Vec<(AssetName, SourcePos)> {
        const P: &str = "spec.dependsOn";
        let mut out: Vec<(AssetName, SourcePos)> = Vec::new();
        let Some(items) = self.list(node, P) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{P}[{i}]");
            let Some(text) = self.string(item, &path) else {
                continue;
            };
            match AssetName::new(&text) {
                Err(message) => self.error(item, &path, message),
                Ok(name) if out.iter().any(|(n, _)| *n == name) => {
                    self.error(item, &path, format!("`{name}` is listed twice"))
                }
                Ok(name) => out.push((name, self.pos(item))),
            }
        }
        out
    }
}
