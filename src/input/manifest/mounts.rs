//! `spec.mounts`: bind mounts (only under `--allow-bind`), volumes and
//! tmpfs.

use std::path::Path;

use super::decoder::{join, Decoder};
use super::shape::{Fields, MOUNT};
use super::yaml::Node;
use crate::model::spec::values::{AbsPath, DockerName};
use crate::model::spec::{Mount, MountKind};

impl Decoder<'_> {
    pub(super) fn mounts(&mut self, node: &Node) -> Vec<Mount> {
        const P: &str = "spec.mounts";
        let mut out: Vec<Mount> = Vec::new();
        // Normalised target → line, for duplicate messages.
        let mut targets: Vec<(String, u64)> = Vec::new();
        let Some(items) = self.list(node, P) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{P}[{i}]");
            let Some(mount) = self.mount(item, &path) else {
                continue;
            };
            if let Some((_, line)) = targets.iter().find(|(t, _)| *t == mount.target) {
                let line = *line;
                self.error(
                    item,
                    &join(&path, "target"),
                    format!(
                        "target `{}` is already mounted on line {line}",
                        mount.target
                    ),
                );
                continue;
            }
            targets.push((mount.target.clone(), item.at.line()));
            out.push(mount);
        }
        out
    }

    fn mount(&mut self, node: &Node, path: &str) -> Option<Mount> {
        let fields = self.object(node, path, &MOUNT)?;
        let errors_before = self.errors.len();
        let kind = match self.required(&fields, "type", node, path) {
            // A type that is not even a string ends the mount here.
            Some(value) => self.mount_kind(value, &fields.path(path, "type"))?,
            None => None,
        };
        let target = match self.required(&fields, "target", node, path) {
            Some(value) => self.mount_target(value, &fields.path(path, "target")),
            None => None,
        };
        let read_only = match fields.get("readOnly") {
            Some(value) => self
                .boolean(value, &fields.path(path, "readOnly"))
                .unwrap_or(false),
            None => false,
        };
        let source = self.mount_source(kind, &fields, node, path);
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Mount {
            kind: kind?,
            source,
            target: target?,
            read_only,
            volume_driver: None,
            volume_labels: Default::default(),
        })
    }

    /// `None` when the type is not a string, `Some(None)` when it is not
    /// a known type (both reported).
    fn mount_kind(&mut self, value: &Node, path: &str) -> Option<Option<MountKind>> {
        let text = self.string(value, path)?;
        Some(match MountKind::parse(&text) {
            Some(kind) => Some(kind),
            None => {
                let other = text;
                let names = MountKind::NAMES.join(", ");
                self.error(
                    value,
                    path,
                    format!("mount type `{other}` is not one of {names}"),
                );
                None
            }
        })
    }

    pub(super) fn mount_target(&mut self, value: &Node, path: &str) -> Option<String> {
        let text = self.string(value, path)?;
        match text.parse::<AbsPath>() {
            Ok(AbsPath(p)) if p == "/" => {
                self.error(value, path, "target must not be `/`");
                None
            }
            Ok(AbsPath(p)) => Some(p),
            Err(why) => {
                self.error(value, path, format!("target `{text}` {why}"));
                None
            }
        }
    }

    /// The source, by the mount's type: a bind needs an allowed host path,
    /// a volume takes a name (or none: anonymous), a tmpfs none.
    fn mount_source(
        &mut self,
        kind: Option<MountKind>,
        fields: &Fields<'_>,
        node: &Node,
        path: &str,
    ) -> Option<String> {
        let source_path = fields.path(path, "source");
        match (kind, fields.get("source")) {
            (Some(MountKind::Bind), None) => {
                self.error(
                    node,
                    &source_path,
                    "a bind mount needs a source (an absolute host path)",
                );
                None
            }
            (Some(MountKind::Bind), Some(value)) => self.bind_source(value, &source_path),
            (Some(MountKind::Volume), Some(value)) => self.volume_source(value, &source_path),
            (Some(MountKind::Tmpfs), Some(value)) => {
                self.error(value, &source_path, "a tmpfs mount has no source");
                None
            }
            _ => None,
        }
    }

    pub(super) fn bind_source(&mut self, value: &Node, path: &str) -> Option<String> {
        let text = self.string(value, path)?;
        let p = match text.parse::<AbsPath>() {
            Ok(AbsPath(p)) => p,
            Err(why) => {
                self.error(value, path, format!("bind source `{text}` {why}"));
                return None;
            }
        };
        if self.bind_allowed(&p) {
            return Some(p);
        }
        let allowed = if self.policy.allow_bind.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self
                .policy
                .allow_bind
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!(" (allowed now: {})", list.join(", "))
        };
        self.error(
            value,
            path,
            format!("bind mount of `{p}` refused{allowed}: bind mounts are refused unless --allow-bind PREFIX covers the source; e.g. --allow-bind {p}"),
        );
        None
    }

    fn volume_source(&mut self, value: &Node, path: &str) -> Option<String> {
        let text = self.string(value, path)?;
        if text.starts_with('/') {
            self.error(
                value,
                path,
                format!(
                    "volume source `{text}` must be a volume name; use type: bind for a host path"
                ),
            );
            None
        } else if text.parse::<DockerName>().is_err() || text.len() < 2 {
            self.error(
                value,
                path,
                format!("volume name `{text}` must be at least 2 characters of letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
            );
            None
        } else {
            self.refer(
                crate::input::stack::ResourceKind::Volume,
                &text,
                value,
                path,
            );
            Some(text)
        }
    }

    pub(super) fn bind_allowed(&self, source: &str) -> bool {
        let source = Path::new(source);
        self.policy
            .allow_bind
            .iter()
            .any(|prefix| source.starts_with(prefix))
    }
}
