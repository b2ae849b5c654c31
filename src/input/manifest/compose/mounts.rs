//! A service's `volumes:` (and `tmpfs:`): named volumes of the project,
//! bind mounts relative to the Compose file, tmpfs.

use super::super::decoder::{join, Decoder};
use super::super::yaml::{Kind, Node};
use std::collections::BTreeMap;

use super::super::shape::Fields;
use super::shape::VOLUME_MOUNT;
use super::Project;
use crate::model::spec::values::AbsPath;
use crate::model::spec::{Mount, MountKind, VolumeDriver};

impl Decoder<'_> {
    /// `volumes:` and `tmpfs:` of a service, in that order.
    pub(super) fn compose_service_mounts(
        &mut self,
        fields: &Fields<'_>,
        path: &str,
        project: &Project,
    ) -> Vec<Mount> {
        let mut mounts = match fields.get("volumes") {
            Some(n) => self.compose_mounts(n, &join(path, "volumes"), project),
            None => vec![],
        };
        if let Some(n) = fields.get("tmpfs") {
            for target in self.compose_strings(n, &join(path, "tmpfs")) {
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
        mounts
    }

    /// `volumes:` of a service: `SOURCE:TARGET[:ro|rw]` or the long form.
    /// A source starting with `.`, `/` or `~` is a bind mount (relative to
    /// the Compose file), anything else a top-level volume.
    pub(super) fn compose_mounts(
        &mut self,
        node: &Node,
        path: &str,
        project: &Project,
    ) -> Vec<Mount> {
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

    pub(super) fn compose_short_mount(
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

    pub(super) fn compose_long_mount(
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
    pub(super) fn compose_mount(
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
    pub(super) fn compose_bind_source(
        &mut self,
        source: &str,
        node: &Node,
        path: &str,
    ) -> Option<String> {
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
}
