//! Step 1 of parsing: each `---` document becomes a small tree of
//! [`Node`]s, every node carrying its source position, under the parser
//! limits of [`yaml_options`]. Syntax errors, duplicate keys, alias bombs,
//! deep nesting and oversized scalars are stopped here.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned, Tagged};

use super::MAX_FILE_BYTES;

pub(super) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES + 1),
            max_documents: MAX_FILE_BYTES / 4,
            max_events: 2 * MAX_NODES,
            max_nodes: MAX_NODES,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: MAX_DEPTH,
            max_total_scalar_bytes: MAX_SCALAR_BYTES,
        },
        alias_limits: {
            let mut limits = serde_saphyr::options::AliasLimits::default();
            limits.max_total_replayed_events = 20_000;
            limits.max_replay_stack_depth = 16;
            limits.max_alias_expansions_per_anchor = 1_000;
            limits
        },
        // YAML 1.2 booleans only: `on`, `yes`, `n` stay strings.
        strict_booleans: true,
        with_snippet: false,
    }
}

pub(super) const MAX_NODES: usize = 50_000;
pub(super) const MAX_DEPTH: usize = 32;
pub(super) const MAX_SCALAR_BYTES: usize = 1024 * 1024;
/// Longest value `${…}` expansion may produce; the document as a whole is
/// bounded by [`MAX_SCALAR_BYTES`] of expanded text too.
pub(super) const MAX_EXPANDED_VALUE_BYTES: usize = 64 * 1024;

/// Says which limit of [`yaml_options`] a document hit, in its terms.
pub(super) fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Depth { .. } => {
            format!("nested more than {MAX_DEPTH} levels deep; a manifest needs far fewer")
        }
        B::ScalarBytes { .. } => format!(
            "the text of this document adds up to more than {} KiB",
            MAX_SCALAR_BYTES / 1024
        ),
        B::Nodes { .. } | B::Events { .. } => {
            format!("this document has more than {MAX_NODES} values; split it")
        }
        B::Aliases { .. }
        | B::Anchors { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. }
        | B::MergeKeys { .. } => "too many anchors, aliases or merge keys".to_string(),
        other => format!("document too large or too complex ({other:?})"),
    }
}

/// One YAML node with its position. Scalars keep their YAML type so that a
/// number can be told from a quoted string; the text as written is
/// recovered from the source when a string is wanted (see
/// [`Decoder::scalar_text`]).
#[derive(Debug)]
pub(super) struct Node {
    pub kind: Kind,
    /// Where the node is used (for an alias, the `*alias`).
    pub at: Location,
    /// Where the node is written (for an alias, the anchored node).
    pub defined: Location,
    /// The YAML tag, resolved (`!!str` is `tag:yaml.org,2002:str`), when
    /// one is written.
    pub tag: Option<String>,
}

#[derive(Debug)]
pub(super) enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Kind {
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Tagged<Kind>>::deserialize(deserializer)?;
        let Tagged(kind, tag) = spanned.value;
        Ok(Node {
            kind,
            at: spanned.referenced,
            defined: spanned.defined,
            tag,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        Kind::deserialize(deserializer)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(i128::try_from(v).map_or(Kind::Float(v as f64), Kind::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        match std::str::from_utf8(v) {
            Ok(s) => Ok(Kind::Str(s.to_string())),
            Err(_) => Err(E::custom("binary data is not allowed here")),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Kind::Map(entries))
    }
}

pub(super) const YAML_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// The non-specific tag `!` and the tags of YAML 1.2's core schema: they
/// only say what the value already is.
pub(super) fn is_core_tag(tag: &str) -> bool {
    tag == "!"
        || tag.strip_prefix(YAML_TAG_PREFIX).is_some_and(|name| {
            matches!(
                name,
                "str" | "int" | "float" | "bool" | "null" | "seq" | "map"
            )
        })
}
