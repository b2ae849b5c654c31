//! `spec.user` and `spec.ulimits`: who the container's process runs as,
//! and the resource limits it runs under (OpenFactory's `runtime_uid`,
//! `runtime_gid` and `open_files` map here).

use super::decoder::{join, Decoder};
use super::shape::ULIMIT;
use super::yaml::{Kind, Node};
use crate::model::spec::values::ProcessUser;
use crate::model::spec::Ulimit;

impl Decoder<'_> {
    /// `user: 1000:1000`, `user: app`.
    pub(super) fn user(&mut self, node: &Node) -> Option<String> {
        const P: &str = "spec.user";
        let text = self.string(node, P)?;
        match text.trim().parse::<ProcessUser>() {
            Ok(user) => Some(user.0),
            Err(why) => {
                self.error(node, P, why.0);
                None
            }
        }
    }

    /// `ulimits: { nofile: { soft: 1024, hard: 65536 }, nproc: 512 }`: a
    /// number sets both limits. Sorted by name.
    pub(super) fn ulimits(&mut self, node: &Node) -> Vec<Ulimit> {
        self.ulimits_at(node, "spec.ulimits")
    }

    /// [`Self::ulimits`] at another field path (a Compose service's).
    pub(super) fn ulimits_at(&mut self, node: &Node, path: &str) -> Vec<Ulimit> {
        let p = path;
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(
                node,
                p,
                "a mapping such as { nofile: { soft: 1024, hard: 65536 } }",
            );
            return vec![];
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let Some(name) = self.map_key(key, p) else {
                continue;
            };
            let path = join(p, &name);
            if !Ulimit::NAMES.contains(&name.as_str()) {
                let names = Ulimit::NAMES.join(", ");
                self.error(key, &path, format!("ulimit `{name}` is not one of {names}"));
                continue;
            }
            if let Some(limit) = self.ulimit(name, value, &path) {
                out.push(limit);
            }
        }
        out.sort();
        out
    }

    fn ulimit(&mut self, name: String, node: &Node, path: &str) -> Option<Ulimit> {
        let (soft, hard) = match &node.kind {
            Kind::Map(_) => {
                let fields = self.object(node, path, &ULIMIT)?;
                let soft = self.required(&fields, "soft", node, path);
                let hard = self.required(&fields, "hard", node, path);
                let soft = soft.and_then(|n| self.limit_value(n, &join(path, "soft")));
                let hard = hard.and_then(|n| self.limit_value(n, &join(path, "hard")));
                (soft?, hard?)
            }
            _ => {
                let both = self.limit_value(node, path)?;
                (both, both)
            }
        };
        let unlimited = |v: i64| v == -1;
        if !unlimited(hard) && (unlimited(soft) || soft > hard) {
            self.error(
                node,
                path,
                format!("the soft limit ({soft}) must not exceed the hard limit ({hard})"),
            );
            return None;
        }
        Some(Ulimit { name, soft, hard })
    }

    /// A limit: 0 and up, or -1 for unlimited.
    fn limit_value(&mut self, node: &Node, path: &str) -> Option<i64> {
        match self.integer(node, path)? {
            n @ -1..=0x7fff_ffff_ffff_ffff => Some(n as i64),
            n => {
                self.error(
                    node,
                    path,
                    format!("a limit is -1 (unlimited) or 0 and up, found {n}"),
                );
                None
            }
        }
    }
}
