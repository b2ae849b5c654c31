//! A Compose file's top-level `networks`, `volumes`, `secrets` and
//! `configs`: the project's own become the stack kinds that exist
//! (`PROJECT_KEY` unless `name:` is given, labelled with the project), an
//! `external: true` one is only referred to.
//!
//! Volumes are not created by assetd, as stack deploy does not: the engine
//! creates a named volume on first use on each node, from the mount's
//! driver and labels. So removing a project never removes its data.

use std::collections::BTreeMap;

use super::super::decoder::{join, Decoder};
use super::super::shape::{Fields, Shape};
use super::super::yaml::{Kind, Node};
use super::shape::{CONFIG, NETWORK, SECRET, VOLUME};
use super::{Declared, Project};
use crate::input::stack::{ContentSource, Decrypt, NetworkSpec, ParsedResource, ResourceSpec};

impl Decoder<'_> {
    /// Reads the four top-level maps into `project`, and declares the
    /// networks, secrets and configs it owns.
    pub(super) fn compose_objects(&mut self, top: &Fields<'_>, project: &mut Project) {
        for (key, shape) in [
            ("networks", &NETWORK),
            ("volumes", &VOLUME),
            ("secrets", &SECRET),
            ("configs", &CONFIG),
        ] {
            let Some(node) = top.get(key) else {
                continue;
            };
            let Kind::Map(entries) = &node.kind else {
                self.wrong_type(node, key, "a mapping of names to definitions");
                continue;
            };
            for (name_node, value) in entries {
                let name = self.key_text(name_node).into_owned();
                let path = join(key, &name);
                if let Some(declared) =
                    self.compose_object(key, &name, name_node, value, shape, project, &path)
                {
                    let map = match key {
                        "networks" => &mut project.networks,
                        "volumes" => &mut project.volumes,
                        "secrets" => &mut project.secrets,
                        _ => &mut project.configs,
                    };
                    map.insert(name, declared);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compose_object(
        &mut self,
        kind: &str,
        key: &str,
        key_node: &Node,
        node: &Node,
        shape: &'static Shape,
        project: &Project,
        path: &str,
    ) -> Option<Declared> {
        // `name:` (null) means "all defaults", as `name: {}` does.
        let fields = match node.kind {
            Kind::Null => Fields::new(shape, super::super::shape::Spelling::Friendly),
            _ => self.object(node, path, shape)?,
        };
        let at = |k: &str| join(path, k);
        let external = match fields.get("external") {
            Some(n) => self.boolean(n, &at("external"))?,
            None => false,
        };
        let name = match fields.get("name") {
            Some(n) => self.string(n, &at("name"))?,
            None if external => key.to_string(),
            None => project.scoped(key),
        };
        let mut labels = match fields.get("labels") {
            Some(n) => self.compose_labels(n, &at("labels")),
            None => BTreeMap::new(),
        };
        let driver = match fields
            .raw_if_known("driver")
            .filter(|n| !matches!(n.kind, Kind::Null))
        {
            Some(n) => Some(self.string(n, &at("driver"))?),
            None => None,
        };
        let driver_opts = match fields
            .raw_if_known("driver_opts")
            .filter(|n| !matches!(n.kind, Kind::Null))
        {
            Some(n) => self.compose_labels(n, &at("driver_opts")),
            None => BTreeMap::new(),
        };
        if external {
            self.nothing_to_create(&fields, kind, path);
            return Some(Declared {
                name,
                external,
                ..Default::default()
            });
        }
        labels.extend(project.namespace_labels());
        let pos = self.pos(key_node);
        let spec = match kind {
            "networks" => ResourceSpec::Network(NetworkSpec {
                driver: driver.clone(),
                options: driver_opts.clone(),
                ..self.compose_network_flags(&fields, path)
            }),
            "volumes" => {
                return Some(Declared {
                    name,
                    external,
                    driver,
                    driver_opts,
                    labels,
                });
            }
            _ => ResourceSpec::Secret(self.compose_content(&fields, kind, path, key_node)?),
        };
        let spec = match (kind, spec) {
            ("configs", ResourceSpec::Secret(content)) => ResourceSpec::Config(content),
            (_, spec) => spec,
        };
        // A network only some service uses is created; stack deploy
        // creates the others too but they serve nothing, so neither do.
        self.resources.push(ParsedResource {
            name: name.clone(),
            pos,
            labels,
            spec,
        });
        Some(Declared {
            name,
            external,
            ..Default::default()
        })
    }

    /// An `external: true` object is not the project's, so nothing that
    /// would create it applies.
    fn nothing_to_create(&mut self, fields: &Fields<'_>, kind: &str, path: &str) {
        let at = |k: &str| join(path, k);
        for owned in [
            "driver",
            "driver_opts",
            "labels",
            "file",
            "environment",
            "content",
        ] {
            if let Some(n) = fields.raw_if_known(owned) {
                self.error(
                n,
                &at(owned),
                format!("an `external: true` {} is not created by the project, so `{owned}` cannot apply", singular(kind)),
                );
            }
        }
    }

    /// A network's `attachable` and `internal`.
    fn compose_network_flags(&mut self, fields: &Fields<'_>, path: &str) -> NetworkSpec {
        let mut flag = |k: &str| {
            fields
                .get(k)
                .and_then(|n| self.boolean(n, &join(path, k)))
                .unwrap_or(false)
        };
        NetworkSpec {
            attachable: flag("attachable"),
            internal: flag("internal"),
            ..Default::default()
        }
    }

    /// Where a secret's or config's content comes from: `file` (relative to
    /// the Compose file; `decrypt: age` for an age file), `environment`
    /// (a variable of the daemon) or, configs only, `content`.
    fn compose_content(
        &mut self,
        fields: &Fields<'_>,
        kind: &str,
        path: &str,
        key_node: &Node,
    ) -> Option<ContentSource> {
        let at = |k: &str| join(path, k);
        let given: Vec<(&str, &Node)> = ["file", "environment", "content"]
            .into_iter()
            .filter_map(|k| fields.raw_if_known(k).map(|n| (k, n)))
            .collect();
        let [(source, node)] = given.as_slice() else {
            let message = format!(
                "a {} needs exactly one of `file`, `environment`{} (or `external: true`)",
                singular(kind),
                if kind == "configs" {
                    " or `content`"
                } else {
                    ""
                }
            );
            match given.get(1) {
                Some((k, n)) => self.error(n, &at(k), message),
                None => {
                    let at_node = fields.any_node().unwrap_or(key_node);
                    self.error(at_node, path, message);
                }
            }
            return None;
        };
        let text = self.string(node, &at(source))?;
        let pos = self.pos(node);
        let decrypt = match fields
            .raw_if_known("decrypt")
            .filter(|n| !matches!(n.kind, Kind::Null))
        {
            Some(n) => match self.string(n, &at("decrypt"))?.as_str() {
                "age" => Decrypt::Age,
                "none" => Decrypt::None,
                other => {
                    self.error(
                        n,
                        &at("decrypt"),
                        format!("`{other}` is not a way to decrypt: `age` or `none`"),
                    );
                    return None;
                }
            },
            None if text.ends_with(".age") && *source == "file" => {
                self.error(node, &at("file"), format!("`{text}` looks like an age file: say `decrypt: age` (or `decrypt: none` to use its bytes as they are)"));
                return None;
            }
            None => Decrypt::None,
        };
        match *source {
            "file" if text.is_empty() => {
                self.error(node, &at("file"), "file name must not be empty");
                None
            }
            "file" => Some(ContentSource::File {
                path: text,
                pos,
                decrypt,
            }),
            "environment" => Some(ContentSource::FromEnv { var: text, pos }),
            _ if kind == "configs" => Some(ContentSource::Inline(text)),
            _ => {
                self.error(
                    node,
                    &at(source),
                    "a secret's value never sits in the file: use `file` or `environment`",
                );
                None
            }
        }
    }

    /// `PROJECT_default`: the network of services that name none, an
    /// overlay (a bridge locally) labelled with the project.
    pub(super) fn default_network(&mut self, project: &Project, root: &Node) {
        self.resources.push(ParsedResource {
            name: project.scoped("default"),
            pos: self.pos(root),
            labels: project.namespace_labels(),
            spec: ResourceSpec::Network(NetworkSpec::default()),
        });
    }

    /// A map of strings, or a list of `KEY=VALUE` (labels, driver options).
    pub(super) fn compose_labels(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &node.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let key = self.key_text(k).into_owned();
                    let at = join(path, &key);
                    let value = match v.kind {
                        Kind::Null => String::new(),
                        _ => match self.string(v, &at) {
                            Some(v) => v,
                            None => continue,
                        },
                    };
                    out.insert(key, value);
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    let Some(text) = self.string(item, &at) else {
                        continue;
                    };
                    let (k, v) = text.split_once('=').unwrap_or((&text, ""));
                    out.insert(k.to_string(), v.to_string());
                }
            }
            _ => self.wrong_type(node, path, "a mapping or a list of KEY=VALUE"),
        }
        out
    }
}

fn singular(kind: &str) -> &str {
    kind.strip_suffix('s').unwrap_or(kind)
}
