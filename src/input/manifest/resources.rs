//! `spec.resources` (CPU and memory limits and reservations) and
//! `spec.mode` (replicas or global).

use std::str::FromStr;

use super::decoder::Decoder;
use super::shape::{Spelling, MODE, REPLICATED, RESOURCES, RESOURCE_SET};
use super::yaml::{Kind, Node};
use super::MAX_REPLICAS;
use crate::model::spec::values::{InvalidValue, MemoryBytes, NanoCpus, MIN_MEMORY_BYTES};
use crate::model::spec::{Mode, ResourceSet, Resources};

impl Decoder<'_> {
    pub(super) fn resources(&mut self, node: &Node) -> Resources {
        const P: &str = "spec.resources";
        let Some(fields) = self.object(node, P, &RESOURCES) else {
            return Resources::default();
        };
        let mut sets = [ResourceSet::default(), ResourceSet::default()];
        for (key, set) in ["limits", "reservations"].into_iter().zip(&mut sets) {
            if let Some(value) = fields.get(key) {
                let path = fields.path(P, key);
                *set = self.resource_set(value, &path);
            }
        }
        let [limits, reservations] = sets;
        if let (Some(limit), Some(reservation)) = (limits.nano_cpus, reservations.nano_cpus) {
            if reservation > limit {
                let at = fields
                    .get("reservations")
                    .expect("reservations were decoded");
                self.error(
                    at,
                    &fields.path(P, "reservations"),
                    format!(
                        "cpu reservation ({}) is above the limit ({})",
                        NanoCpus(reservation),
                        NanoCpus(limit)
                    ),
                );
            }
        }
        if let (Some(limit), Some(reservation)) = (limits.memory_bytes, reservations.memory_bytes) {
            if reservation > limit {
                let at = fields
                    .get("reservations")
                    .expect("reservations were decoded");
                self.error(
                    at,
                    &fields.path(P, "reservations"),
                    format!("memory reservation ({reservation} bytes) is above the limit ({limit} bytes)"),
                );
            }
        }
        Resources {
            limits,
            reservations,
        }
    }

    /// One of `limits` / `reservations`. Each object has its own spelling:
    /// `cpus`/`memory` or `NanoCPUs`/`MemoryBytes`.
    pub(super) fn resource_set(&mut self, node: &Node, path: &str) -> ResourceSet {
        let Some(fields) = self.object(node, path, &RESOURCE_SET) else {
            return ResourceSet::default();
        };
        let spelling = fields.spelling;
        let mut set = ResourceSet::default();
        if let Some(value) = fields.get("cpus") {
            let path = fields.path(path, "cpus");
            set.nano_cpus = match spelling {
                Spelling::Friendly => self.cpus(value, &path),
                Spelling::Engine => self.integer(value, &path).and_then(|n| {
                    if n <= 0 {
                        self.error(
                            value,
                            &path,
                            format!("NanoCPUs must be greater than 0, found {n}"),
                        );
                        None
                    } else {
                        self.checked_i64(value, &path, n)
                    }
                }),
            };
        }
        if let Some(value) = fields.get("memory") {
            let path = fields.path(path, "memory");
            set.memory_bytes = match spelling {
                Spelling::Friendly => self.memory(value, &path),
                Spelling::Engine => self
                    .integer(value, &path)
                    .and_then(|n| self.checked_i64(value, &path, n)),
            };
            if let Some(bytes) = set.memory_bytes {
                if bytes < MIN_MEMORY_BYTES {
                    self.error(
                        value,
                        &path,
                        format!("memory must be at least 6Mi ({MIN_MEMORY_BYTES} bytes), Docker's minimum; found {bytes} bytes"),
                    );
                    set.memory_bytes = None;
                }
            }
        }
        set
    }

    fn checked_i64(&mut self, node: &Node, path: &str, n: i128) -> Option<i64> {
        match i64::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(node, path, format!("{n} is too large"));
                None
            }
        }
    }

    /// `cpus: 1.5` → 1 500 000 000 nano-CPUs (see [`NanoCpus`]).
    pub(super) fn cpus(&mut self, node: &Node, path: &str) -> Option<i64> {
        let text = self.number_text(node, path, "a number of CPUs such as 0.5")?;
        self.parsed::<NanoCpus>(node, path, &text).map(|c| c.0)
    }

    /// `memory: 512Mi` → bytes (see [`MemoryBytes`]).
    pub(super) fn memory(&mut self, node: &Node, path: &str) -> Option<i64> {
        let text = self.number_text(node, path, "a size such as 512Mi")?;
        self.parsed::<MemoryBytes>(node, path, &text).map(|m| m.0)
    }

    /// A number as written, or a string with `${VAR}` expanded.
    fn number_text(&mut self, node: &Node, path: &str, expected: &str) -> Option<String> {
        match &node.kind {
            Kind::Int(_) | Kind::Float(_) => {
                Some(self.scalar_text(node).unwrap_or("?").to_string())
            }
            Kind::Str(s) => self.expand(s, node, path),
            _ => {
                self.wrong_type(node, path, expected);
                None
            }
        }
    }

    /// `text` as a `T`, its error reported at `node`.
    pub(super) fn parsed<T>(&mut self, node: &Node, path: &str, text: &str) -> Option<T>
    where
        T: FromStr<Err = InvalidValue>,
    {
        match text.parse() {
            Ok(value) => Some(value),
            Err(InvalidValue(why)) => {
                self.error(node, path, why);
                None
            }
        }
    }

    pub(super) fn mode(&mut self, node: &Node) -> Mode {
        const P: &str = "spec.mode";
        let errors_before = self.errors.len();
        let Some(fields) = self.object(node, P, &MODE) else {
            return Mode::default();
        };
        match (fields.raw("replicated"), fields.raw("global")) {
            // An unknown key was reported already.
            (None, None) if self.errors.len() > errors_before => Mode::default(),
            (None, None) => {
                self.error(
                    node,
                    P,
                    "mode needs `replicated: { replicas: N }` or `global: {}`",
                );
                Mode::default()
            }
            (Some(value), None) => self.replicated(value, &fields.path(P, "replicated")),
            (None, Some(value)) => {
                match &value.kind {
                    Kind::Null => {}
                    Kind::Map(entries) if entries.is_empty() => {}
                    _ => {
                        let path = fields.path(P, "global");
                        self.error(value, &path, "global mode takes no settings; write `{}`");
                    }
                }
                Mode::Global
            }
            (Some(_), Some(_)) => {
                self.error(node, P, "choose one of replicated or global, not both");
                Mode::default()
            }
        }
    }

    /// `replicated: { replicas: N }`; left out, null or `{}` is one.
    fn replicated(&mut self, value: &Node, path: &str) -> Mode {
        if matches!(value.kind, Kind::Null) {
            return Mode::default();
        }
        let Some(inner) = self.object(value, path, &REPLICATED) else {
            return Mode::default();
        };
        let Some(replicas_node) = inner.get("replicas") else {
            return Mode::default();
        };
        let path = inner.path(path, "replicas");
        match self.integer(replicas_node, &path) {
            Some(n) if (0..=i128::from(MAX_REPLICAS)).contains(&n) => {
                Mode::Replicated { replicas: n as u64 }
            }
            Some(n) => {
                self.error(
                    replicas_node,
                    &path,
                    format!("replicas must be 0 to {MAX_REPLICAS}, found {n}"),
                );
                Mode::default()
            }
            None => Mode::default(),
        }
    }
}
