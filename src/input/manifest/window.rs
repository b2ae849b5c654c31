//! `kind: SyncWindow` documents (see [`crate::core::window`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::decoder::Decoder;
use super::shape::{Spelling, WINDOW_SPEC};
use super::yaml::Node;
use super::SourcePos;
use crate::model::window::{self, Effect, Repairs, Selector, SyncWindow};

/// A valid SyncWindow document, with where its name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedWindow {
    pub window: SyncWindow,
    pub pos: SourcePos,
}

impl Decoder<'_> {
    /// The rest of a SyncWindow document: recorded in `self.windows`
    /// when valid.
    pub(super) fn window_document(&mut self, metadata: Option<&Node>, spec: Option<&Node>) {
        let errors_before = self.errors.len();
        let (name, pos, _) = match metadata {
            Some(node) => self.resource_metadata(node),
            None => (None, None, BTreeMap::new()),
        };
        let spec = spec.and_then(|node| self.window_spec(node));
        if self.errors.len() > errors_before {
            return;
        }
        if let (Some(name), Some(pos), Some(mut window)) = (name, pos, spec) {
            window.name = name;
            self.windows.push(ParsedWindow { window, pos });
        }
    }

    fn window_spec(&mut self, node: &Node) -> Option<SyncWindow> {
        const P: &str = "spec";
        let fields = self.object(node, P, &WINDOW_SPEC)?;
        let effect = self.required(&fields, "kind", node, P).and_then(|n| {
            self.word(
                n,
                "spec.kind",
                &[("allow", Effect::Allow), ("deny", Effect::Deny)],
            )
        });
        let schedule = self.required(&fields, "schedule", node, P).and_then(|n| {
            let text = self.string(n, "spec.schedule")?;
            match window::schedule(&text) {
                Ok(_) => Some(text),
                Err(why) => {
                    self.error(n, "spec.schedule", why);
                    None
                }
            }
        });
        let duration = self
            .required(&fields, "duration", node, P)
            .and_then(|n| self.duration_ns(n, "spec.duration", Spelling::Friendly))
            .map(|ns| Duration::from_nanos(ns as u64));
        let zone = match fields.get("timeZone") {
            Some(n) => {
                let text = self.string(n, "spec.timeZone");
                match text.as_deref().map(window::zone) {
                    Some(Ok(tz)) => Some(tz),
                    Some(Err(why)) => {
                        self.error(n, "spec.timeZone", why);
                        None
                    }
                    None => None,
                }
            }
            None => Some(host_zone()),
        };
        let repairs = match fields.get("repairs") {
            Some(n) => self.word(
                n,
                "spec.repairs",
                &[("allow", Repairs::Allow), ("deny", Repairs::Deny)],
            ),
            None => Some(Repairs::Allow),
        };
        let selector = self.window_selector(node, fields.get("assets"), fields.get("selector"));
        Some(SyncWindow {
            name: String::new(),
            effect: effect?,
            schedule: schedule?,
            duration: duration?,
            zone: zone?,
            selector: selector?,
            repairs: repairs?,
        })
    }

    /// Exactly one of `assets` (name globs) and `selector` (labels).
    fn window_selector(
        &mut self,
        spec: &Node,
        assets: Option<&Node>,
        selector: Option<&Node>,
    ) -> Option<Selector> {
        match (assets, selector) {
            (Some(_), Some(n)) => {
                self.error(
                    n,
                    "spec.selector",
                    "give either `assets` or `selector`, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    spec,
                    "spec",
                    "say which assets the window covers: `assets: [\"cell3-*\"]` (name globs; `[\"*\"]` for all) or `selector: { zone: cell-3 }`",
                );
                None
            }
            (Some(n), None) => {
                let items = self.list(n, "spec.assets")?;
                let mut globs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = format!("spec.assets[{i}]");
                    let Some(text) = self.string(item, &path) else {
                        continue;
                    };
                    match glob::Pattern::new(&text) {
                        Ok(_) => globs.push(text),
                        Err(e) => {
                            self.error(item, &path, format!("`{text}` is not a name glob: {e}"))
                        }
                    }
                }
                if globs.is_empty() && !items.is_empty() {
                    return None;
                }
                Some(Selector::Names(globs))
            }
            (None, Some(n)) => Some(Selector::Labels(self.labels(n))),
        }
    }

    /// One of `choices`' words.
    fn word<T: Copy>(&mut self, node: &Node, path: &str, choices: &[(&str, T)]) -> Option<T> {
        let text = self.string(node, path)?;
        match choices.iter().find(|(w, _)| *w == text) {
            Some((_, value)) => Some(*value),
            None => {
                let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
                self.error(
                    node,
                    path,
                    format!("must be `{}`; found `{text}`", words.join("` or `")),
                );
                None
            }
        }
    }
}

/// The host's time zone, the default of `timeZone`; UTC when the host
/// names none.
fn host_zone() -> chrono_tz::Tz {
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| name.parse().ok())
        .unwrap_or(chrono_tz::Tz::UTC)
}
