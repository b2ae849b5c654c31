//! An app's `storage`: `type: local` is a bind mount (subject to
//! `--allow-bind`, as native binds are); `type: nfs` is a named volume of
//! the `local` driver with NFS options, named and optioned as OpenFactory
//! does (`nfs_<server>_<remote path>`, `type=nfs`, `o=addr=SERVER,OPTIONS`,
//! `device=:REMOTE_PATH`), so the engine mounts the share itself.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::super::decoder::{join, Decoder};
use super::super::yaml::{Kind, Node};
use super::shape::{STORAGE_LOCAL, STORAGE_NFS};
use crate::model::spec::values::AbsPath;
use crate::model::spec::{Mount, MountKind, VolumeDriver};

impl Decoder<'_> {
    /// The mounts, and the storage as the JSON OpenFactory gives the app
    /// in `STORAGE` (name → backend, as validated).
    pub(super) fn storage(&mut self, node: &Node, path: &str) -> (Vec<Mount>, Value) {
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, path, "a mapping of storage names to backends");
            return (vec![], Value::Null);
        };
        // By name, so that the order of the keys changes nothing.
        let mut out: BTreeMap<String, Mount> = BTreeMap::new();
        let mut described: BTreeMap<String, Value> = BTreeMap::new();
        for (key, value) in entries {
            let Some(name) = self.map_key(key, path) else {
                continue;
            };
            let field = join(path, &name);
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                let message =
                    format!("storage name `{name}` may contain only letters, digits, `_` and `-`");
                self.error(key, &field, message);
                continue;
            }
            let Some((mount, backend)) = self.backend(value, &field) else {
                continue;
            };
            if out.values().any(|m| m.target == mount.target) {
                let message = format!("mount_point `{}` is used by another storage", mount.target);
                self.error(value, &join(&field, "mount_point"), message);
                continue;
            }
            out.insert(name.clone(), mount);
            described.insert(name, backend);
        }
        (out.into_values().collect(), json!(described))
    }

    /// One backend, by its `type`.
    fn backend(&mut self, node: &Node, path: &str) -> Option<(Mount, Value)> {
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, path, "a mapping with type local or nfs");
            return None;
        };
        let field = join(path, "type");
        let Some((_, kind)) = entries.iter().find(|(k, _)| self.key_text(k) == "type") else {
            self.error(node, &field, "missing required field `type` (local or nfs)");
            return None;
        };
        match self.string(kind, &field)?.trim() {
            "local" => self.local_storage(node, path),
            "nfs" => self.nfs_storage(node, path),
            other => {
                let message = format!("storage type `{other}` is not `local` or `nfs`");
                self.error(kind, &field, message);
                None
            }
        }
    }

    fn local_storage(&mut self, node: &Node, path: &str) -> Option<(Mount, Value)> {
        let fields = self.object(node, path, &STORAGE_LOCAL)?;
        let source = self
            .required(&fields, "local_path", node, path)
            .and_then(|n| self.bind_source(n, &join(path, "local_path")));
        let target = self
            .required(&fields, "mount_point", node, path)
            .and_then(|n| self.mount_target(n, &join(path, "mount_point")));
        let (source, target) = (source?, target?);
        let described = json!({ "type": "local", "local_path": source, "mount_point": target });
        let mount = Mount {
            kind: MountKind::Bind,
            source: Some(source),
            target,
            read_only: false,
            volume_driver: None,
            volume_labels: Default::default(),
        };
        Some((mount, described))
    }

    fn nfs_storage(&mut self, node: &Node, path: &str) -> Option<(Mount, Value)> {
        let fields = self.object(node, path, &STORAGE_NFS)?;
        let server = self
            .required(&fields, "server", node, path)
            .and_then(|n| self.nfs_server(n, &join(path, "server")));
        let remote = self
            .required(&fields, "remote_path", node, path)
            .and_then(|n| self.remote_path(n, &join(path, "remote_path")));
        let target = self
            .required(&fields, "mount_point", node, path)
            .and_then(|n| self.mount_target(n, &join(path, "mount_point")));
        let options = fields
            .get("mount_options")
            .map(|n| self.nfs_options(n, &join(path, "mount_options")))
            .unwrap_or_default();
        let (server, remote, target) = (server?, remote?, target?);
        let mut described = json!({
            "type": "nfs",
            "server": server,
            "remote_path": remote,
            "mount_point": target,
        });
        if fields.get("mount_options").is_some() {
            described["mount_options"] = json!(options);
        }
        let mount = Mount {
            kind: MountKind::Volume,
            source: Some(nfs_volume_name(&server, &remote)),
            target,
            read_only: false,
            volume_driver: Some(nfs_driver(&server, &remote, &options)),
            volume_labels: Default::default(),
        };
        Some((mount, described))
    }

    /// A host name, an IPv4 address or an IPv6 address in brackets.
    fn nfs_server(&mut self, node: &Node, path: &str) -> Option<String> {
        let server = self.string(node, path)?.trim().to_string();
        let label =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let ipv6 = server
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(|a| {
                !a.is_empty() && a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
            });
        if ipv6 || server.split('.').all(label) {
            return Some(server);
        }
        let message = format!("server `{server}` must be a host name, an IPv4 address or an IPv6 address in [brackets]");
        self.error(node, path, message);
        None
    }

    fn remote_path(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        match text.trim().parse::<AbsPath>() {
            Ok(AbsPath(p)) => Some(p),
            Err(why) => {
                self.error(node, path, format!("remote_path `{text}` {why}"));
                None
            }
        }
    }

    /// The options, trimmed, empty ones dropped (as OpenFactory does).
    fn nfs_options(&mut self, node: &Node, path: &str) -> Vec<String> {
        let Some(items) = self.list(node, path) else {
            return vec![];
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("{path}[{i}]");
            let Some(option) = self.string(item, &field) else {
                continue;
            };
            let option = option.trim();
            if option.contains(',') {
                let message =
                    format!("mount option `{option}` holds a `,`: give one option per item");
                self.error(item, &field, message);
            } else if !option.is_empty() {
                out.push(option.to_string());
            }
        }
        out
    }
}

/// OpenFactory's volume name for a share: `nfs_<server>_<remote path>`,
/// with `.` and `/` (and anything else Docker refuses in a name) as `_`.
pub fn nfs_volume_name(server: &str, remote_path: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "nfs_{}_{}",
        safe(server),
        safe(remote_path.trim_matches('/'))
    )
}

/// The `local` driver's options that mount an NFS share.
pub fn nfs_driver(server: &str, remote_path: &str, options: &[String]) -> VolumeDriver {
    let mut o = format!("addr={server}");
    for option in options {
        o.push(',');
        o.push_str(option);
    }
    VolumeDriver {
        name: "local".into(),
        options: BTreeMap::from([
            ("type".to_string(), "nfs".to_string()),
            ("o".to_string(), o),
            ("device".to_string(), format!(":{remote_path}")),
        ]),
    }
}
