//! What a service refers to beyond itself: its secrets and configs, its
//! healthcheck, and the services it depends on.

use super::super::decoder::{join, Decoder};
use super::super::shape::Fields;
use super::super::yaml::{Kind, Node};
use super::shape::{DEPENDENCY, FILE_REF, HEALTHCHECK};
use super::Project;
use crate::input::stack::ResourceKind;
use crate::model::spec::{AssetName, FileRef, Healthcheck, SourcePos};

impl Decoder<'_> {
    /// `secrets:` and `configs:` of a service.
    pub(super) fn compose_service_files(
        &mut self,
        fields: &Fields<'_>,
        path: &str,
        project: &Project,
    ) -> (Vec<FileRef>, Vec<FileRef>) {
        let mut refs = |key: &str, kind: ResourceKind| match fields.get(key) {
            Some(n) => self.compose_file_refs(n, &join(path, key), kind, project),
            None => vec![],
        };
        let secrets = refs("secrets", ResourceKind::Secret);
        let configs = refs("configs", ResourceKind::Config);
        (secrets, configs)
    }

    /// `secrets:` / `configs:` of a service: names, or `{ source, target,
    /// uid, gid, mode }`; uid and gid 0 and mode 0444 unless written.
    pub(super) fn compose_file_refs(
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

    pub(super) fn compose_healthcheck(&mut self, node: &Node, path: &str) -> Option<Healthcheck> {
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
    pub(super) fn compose_depends_on(
        &mut self,
        node: &Node,
        path: &str,
        project: &mut Project,
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
                                // The dependency is a one-shot job: it runs
                                // to completion once per version.
                                Some("service_completed_successfully") => {
                                    project.jobs.insert(key.clone());
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
}
