//! A service's environment: `env_file:` then `environment:` (a list or a
//! map), sorted as `docker stack deploy` sends it.

use super::super::decoder::{join, Decoder};
use super::super::shape::Fields;
use super::super::yaml::Kind;
use std::collections::BTreeMap;

impl Decoder<'_> {
    /// `env_file:` then `environment:` (list or map), sorted, as stack
    /// deploy sends them. A key with no value (or an empty one) takes
    /// assetd's own value when it has one; else a key with no value is
    /// passed bare.
    pub(super) fn compose_environment(&mut self, fields: &Fields<'_>, path: &str) -> Vec<String> {
        let mut vars: BTreeMap<String, Option<String>> = BTreeMap::new();
        if let Some(n) = fields.get("env_file") {
            let at = join(path, "env_file");
            for (i, file) in self.compose_strings(n, &at).into_iter().enumerate() {
                let item = format!("{at}[{i}]");
                match self.read_beside(&file) {
                    Some(Ok(text)) => {
                        for (k, v) in super::parse_env_file(&text, false) {
                            if k.chars().any(char::is_whitespace) {
                                self.error(
                                    n,
                                    &item,
                                    format!(
                                        "`{file}` has a variable name with a blank in it: `{k}`"
                                    ),
                                );
                                continue;
                            }
                            let v = v.or_else(|| (self.env)(&k));
                            if v.is_some() {
                                vars.insert(k, v);
                            }
                        }
                    }
                    Some(Err(why)) => self.error(n, &item, why),
                    None if self.dir.is_none() => self.error(
                        n,
                        &item,
                        "an env_file is read beside the Compose file, which is not on disk here",
                    ),
                    None => self.error(
                        n,
                        &item,
                        format!("env file `{file}` does not exist beside the Compose file"),
                    ),
                }
            }
        }
        if let Some(n) = fields.get("environment") {
            let at = join(path, "environment");
            match &n.kind {
                Kind::Map(entries) => {
                    for (k, v) in entries {
                        let key = self.key_text(k).into_owned();
                        let value = match v.kind {
                            Kind::Null => None,
                            _ => self.string(v, &join(&at, &key)),
                        };
                        vars.insert(key, value);
                    }
                }
                Kind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let Some(text) = self.string(item, &format!("{at}[{i}]")) else {
                            continue;
                        };
                        match text.split_once('=') {
                            Some((k, v)) => vars.insert(k.to_string(), Some(v.to_string())),
                            None => vars.insert(text, None),
                        };
                    }
                }
                _ => self.wrong_type(n, &at, "a mapping or a list of KEY=VALUE"),
            }
        }
        vars.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Some(v) if !v.is_empty() => Some(v),
                    other => (self.env)(&k).or(other),
                };
                match v {
                    Some(v) => format!("{k}={v}"),
                    None => k,
                }
            })
            .collect()
    }
}
