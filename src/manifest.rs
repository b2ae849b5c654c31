//! One manifest file's text → validated [`DeploySpec`]s, or every problem
//! found in it, each with file, line, column and field path.
//!
//! The format is described in `DESIGN.md` ("Manifests"). Parsing happens in
//! two steps so that problems can be reported all at once and with a field
//! path, which a derived `Deserialize` cannot do:
//!
//! 1. serde-saphyr turns each `---` document into a small tree of [`Node`]s,
//!    every node carrying its source position. Syntax errors, duplicate
//!    keys, alias bombs, deep nesting and oversized scalars are stopped
//!    here, by saphyr's budget (see [`yaml_options`]).
//! 2. A hand-written decoder walks the tree, accepts both spellings
//!    (friendly and Engine-API casing), expands `${VAR}`, validates every
//!    field and normalises the result, collecting every problem instead of
//!    stopping at the first.
//!
//! Normalisation is what keeps hashes stable: comments, key order, flow vs
//! block style and friendly vs Engine-API spelling all produce the same
//! [`DeploySpec`]. Scalars that YAML would read as numbers or booleans are
//! kept as written when a string is wanted (`version: 1.10` is the label
//! `1.10`, not `1.1`), and booleans are YAML 1.2 (`on`, `yes`, `n` are
//! strings).
//!
//! Rules worth knowing when reading the decoder:
//!
//! - `${VAR}` and `${VAR:-default}` (default also when VAR is empty) are
//!   expanded in scalar values, never in keys; `$$` is a literal `$`; any
//!   other `$` is kept (`sh -c 'echo $HOME'` works). Numeric fields accept
//!   a string, so `replicas: ${REPLICAS}` works. A default cannot hold
//!   another `${…}`, and the expanded text is bounded (64 KiB per value,
//!   1 MiB per document, 16 MiB per file), since the parser's budget sees
//!   only the text as written.
//! - Tags other than YAML 1.2 core schema's (`!!binary`, `!custom`) are
//!   refused rather than decoded or ignored.
//! - `spec.image` follows Docker's reference grammar, so a typo is
//!   reported here rather than as a failed pull on every pass.
//! - An explicit null (`ports:` with nothing after it) is the same as
//!   leaving an optional field out.
//! - Spelling is decided per object by its first known key; the other
//!   spelling's keys in the same object are errors. Nested objects decide
//!   for themselves (`limits: { NanoCPUs: .. }` is accepted).
//! - Memory units are Kubernetes': k, M, G, T are powers of 1000, Ki, Mi,
//!   Gi, Ti powers of 1024 (`512m` is refused rather than guessed).
//! - Ports with `replicas` > 1 are valid here: Swarm's ingress publishes
//!   one port for all tasks. The local strategy refuses them at deploy
//!   time, where the engine is known.
//! - Host-port conflicts and duplicate names span files, so they are
//!   checked in `desired`, not here.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned, Tagged, UserMessageFormatter};

use crate::spec::{
    AssetName, DeploySpec, FailureAction, Healthcheck, Mode, Mount, MountKind, PortMapping,
    Protocol, ResourceSet, Resources, SpecHash, UpdateOrder, UpdatePolicy,
};

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "assetd/v1";
/// The only `kind` this build understands.
pub const KIND: &str = "Asset";
/// Files larger than this are refused before parsing. A manifest is a few
/// hundred bytes per asset; this leaves room for tens of thousands.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Label keys with this prefix are set by assetd itself (ownership labels).
pub const RESERVED_LABEL_PREFIX: &str = "io.assetd.";
/// Longest image reference accepted. Docker refuses a repository name
/// (registry and path) over 255 characters; a tag and a digest come on
/// top of it.
pub const MAX_IMAGE_BYTES: usize = 512;
/// Docker's limit on the repository name part of an image reference.
const MAX_IMAGE_NAME_BYTES: usize = 255;
/// Most replicas one asset may ask for.
pub const MAX_REPLICAS: u64 = 1000;
/// Docker refuses memory limits and reservations below 6 MiB
/// (`linuxMinMemory` in the engine since 20.10), so we refuse them here
/// rather than at deploy time.
pub const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;

/// What manifests may ask of the host. Manifests are root-equivalent (they
/// start containers), so the risky parts are opt-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Bind mount sources must be under one of these prefixes (whole path
    /// components). Empty refuses every bind mount; `/` allows all.
    pub allow_bind: Vec<PathBuf>,
}

/// Where an asset or a problem is in the manifests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePos {
    /// The file as given to the parser (relative to the manifests
    /// directory when loaded by `desired`).
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem in a manifest: `file:line:column: field: message`.
///
/// `line` and `column` are 0 for problems of the file as a whole (it cannot
/// be read, its permissions are unsafe); `field` is empty when no field is
/// concerned (syntax errors, whole documents). Both are left out of the
/// rendered text then.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field, e.g. `spec.ports` or `spec.mounts[1].target`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ManifestError {}

impl ManifestError {
    /// A problem at `pos`.
    pub fn at(pos: &SourcePos, field: &str, message: impl Into<String>) -> Self {
        ManifestError {
            file: pos.file.clone(),
            line: pos.line,
            column: pos.column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A problem of the file as a whole, with no position.
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        ManifestError {
            file: file.to_string(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
        }
    }

    /// Where the problem is.
    pub fn pos(&self) -> SourcePos {
        SourcePos {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

/// One valid asset of a manifest file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedAsset {
    pub spec: DeploySpec,
    /// `spec.hash()`, computed once: a file's parse is reused across
    /// passes while its bytes do not change.
    pub hash: SpecHash,
    /// Position of the `metadata.name` value.
    pub pos: SourcePos,
    /// Each published port with the position of its key in `spec.ports`, in
    /// the order of `spec.ports`, for host-port conflict messages.
    pub ports_pos: Vec<(u16, Protocol, SourcePos)>,
}

/// Parses every `---` document of `text`.
///
/// Returns the assets in document order, or every problem found: each
/// document is decoded even when an earlier one is invalid, and each
/// document reports all of its problems. A YAML syntax error ends the file
/// (the parser cannot resynchronise), so documents after it are not
/// checked. An empty file or one of only comments holds zero assets.
pub fn parse_file(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    policy: &Policy,
) -> Result<Vec<ParsedAsset>, Vec<ManifestError>> {
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![ManifestError::whole_file(
            file,
            format!(
                "file is {} bytes; manifest files are limited to {} bytes",
                text.len(),
                MAX_FILE_BYTES
            ),
        )]);
    }
    // The parser would transcode a byte order mark away and shift every
    // offset by it; dropping it here keeps offsets into `text` exact.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut decoder = Decoder::new(file, text, env, policy);
    let mut assets = Vec::new();
    // The fast path parses the whole text at once. If that fails (or the
    // file is larger than the per-document budget allows in total), the
    // streaming reader parses it again document by document, which
    // recovers after an error so that each document reports its own.
    match serde_saphyr::from_multiple_with_options::<Node>(text, yaml_options()) {
        Ok(documents) => {
            for root in &documents {
                if let Some(asset) = decoder.document(root) {
                    assets.push(asset);
                }
            }
        }
        Err(_) => {
            let mut reader = text.as_bytes();
            for document in serde_saphyr::read_with_options::<_, Node>(&mut reader, yaml_options())
            {
                match document {
                    Ok(root) => {
                        if let Some(asset) = decoder.document(&root) {
                            assets.push(asset);
                        }
                    }
                    Err(err) => decoder.yaml_error(&err),
                }
            }
        }
    }
    if decoder.errors.is_empty() {
        Ok(assets)
    } else {
        let mut errors = decoder.errors;
        // Stable: problems at one position keep the order they were found.
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }
}

/// Like [`parse_file`], for raw file contents: invalid UTF-8 is reported
/// with the position of the first bad byte.
pub fn parse_bytes(
    file: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    policy: &Policy,
) -> Result<Vec<ParsedAsset>, Vec<ManifestError>> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_file(file, text, env, policy),
        Err(err) => {
            let good = &bytes[..err.valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // The prefix is valid UTF-8, so columns count characters.
            let column = 1 + String::from_utf8_lossy(&good[line_start..]).chars().count();
            Err(vec![ManifestError {
                file: file.to_string(),
                line,
                column,
                field: String::new(),
                message: format!(
                    "invalid UTF-8 (byte 0x{:02x}); manifests must be UTF-8 text",
                    bytes[err.valid_up_to()]
                ),
            }])
        }
    }
}

/// The keys each object accepts, in both spellings where it has two, for
/// the schema's consistency test (`schema.rs`).
pub fn shapes() -> Vec<(&'static str, Vec<&'static str>)> {
    fn both<const N: usize>(
        friendly: &'static str,
        engine: &'static str,
        shape: &Shape<N>,
    ) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out = vec![(friendly, shape.friendly.to_vec())];
        if let Some(keys) = shape.engine {
            out.push((engine, keys.to_vec()));
        }
        out
    }
    [
        both("top", "", &TOP),
        both("metadata", "", &METADATA),
        both("spec", "", &SPEC),
        both("resources", "Resources", &RESOURCES),
        both("resourceSet", "ResourceSet", &RESOURCE_SET),
        both("mode", "Mode", &MODE),
        both("replicated", "Replicated", &REPLICATED),
        both("mount", "Mount", &MOUNT),
        both("healthcheck", "Healthcheck", &HEALTHCHECK),
        both("update", "UpdateConfig", &UPDATE),
    ]
    .concat()
}

/// Parser limits. Manifests are small and written by people; anything far
/// beyond that is an accident or an attack (alias bombs, deep nesting,
/// megabyte scalars) and must fail fast with a clear message. The budget is
/// enforced per document.
fn yaml_options() -> serde_saphyr::Options {
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

const MAX_NODES: usize = 50_000;
const MAX_DEPTH: usize = 32;
const MAX_SCALAR_BYTES: usize = 1024 * 1024;
/// Longest value `${…}` expansion may produce; the document as a whole is
/// bounded by [`MAX_SCALAR_BYTES`] of expanded text too.
const MAX_EXPANDED_VALUE_BYTES: usize = 64 * 1024;

/// Says which limit of [`yaml_options`] a document hit, in its terms.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
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

// ---------------------------------------------------------------------------
// Step 1: the position-carrying YAML tree.

/// One YAML node with its position. Scalars keep their YAML type so that a
/// number can be told from a quoted string; the text as written is
/// recovered from the source when a string is wanted (see
/// [`Decoder::scalar_text`]).
#[derive(Debug)]
struct Node {
    kind: Kind,
    /// Where the node is used (for an alias, the `*alias`).
    at: Location,
    /// Where the node is written (for an alias, the anchored node).
    defined: Location,
    /// The YAML tag, resolved (`!!str` is `tag:yaml.org,2002:str`), when
    /// one is written.
    tag: Option<String>,
}

#[derive(Debug)]
enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Kind {
    fn describe(&self) -> &'static str {
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

// ---------------------------------------------------------------------------
// Step 2: the decoder.

/// Field names of one object in its two accepted spellings.
struct Shape<const N: usize> {
    friendly: [&'static str; N],
    /// Engine-API casing, when the object has one.
    engine: Option<[&'static str; N]>,
}

const TOP: Shape<4> = Shape {
    friendly: ["apiVersion", "kind", "metadata", "spec"],
    engine: None,
};
const METADATA: Shape<2> = Shape {
    friendly: ["name", "labels"],
    engine: None,
};
const SPEC: Shape<11> = Shape {
    friendly: [
        "image",
        "command",
        "env",
        "ports",
        "networks",
        "constraints",
        "resources",
        "mode",
        "mounts",
        "healthcheck",
        "update",
    ],
    engine: None,
};
const UPDATE: Shape<5> = Shape {
    friendly: ["order", "monitor", "failureAction", "parallelism", "delay"],
    engine: Some(["Order", "Monitor", "FailureAction", "Parallelism", "Delay"]),
};
const HEALTHCHECK: Shape<5> = Shape {
    friendly: ["test", "interval", "timeout", "retries", "startPeriod"],
    engine: Some(["Test", "Interval", "Timeout", "Retries", "StartPeriod"]),
};
const RESOURCES: Shape<2> = Shape {
    friendly: ["limits", "reservations"],
    engine: Some(["Limits", "Reservations"]),
};
const RESOURCE_SET: Shape<2> = Shape {
    friendly: ["cpus", "memory"],
    engine: Some(["NanoCPUs", "MemoryBytes"]),
};
const MODE: Shape<2> = Shape {
    friendly: ["replicated", "global"],
    engine: Some(["Replicated", "Global"]),
};
const REPLICATED: Shape<1> = Shape {
    friendly: ["replicas"],
    engine: Some(["Replicas"]),
};
const MOUNT: Shape<4> = Shape {
    friendly: ["type", "source", "target", "readOnly"],
    engine: Some(["Type", "Source", "Target", "ReadOnly"]),
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Spelling {
    Friendly,
    Engine,
}

/// The fields of one decoded object, indexed like its [`Shape`].
struct Fields<'n, const N: usize> {
    values: [Option<&'n Node>; N],
    names: [&'static str; N],
    spelling: Spelling,
}

impl<'n, const N: usize> Fields<'n, N> {
    fn get(&self, i: usize) -> Option<&'n Node> {
        // An explicit null is the same as leaving the field out.
        self.values[i].filter(|n| !matches!(n.kind, Kind::Null))
    }
}

struct Decoder<'a> {
    file: &'a str,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    policy: &'a Policy,
    errors: Vec<ManifestError>,
    /// Byte offset of every character, built only when a non-ASCII file
    /// needs the source text of a scalar.
    char_offsets: OnceCell<Vec<usize>>,
    /// Bytes produced by `${…}` expansion in the current document, bounded
    /// by the parser's scalar budget.
    expanded_bytes: usize,
    /// The same over the whole file, bounded by [`MAX_FILE_BYTES`]: many
    /// small documents would otherwise add up to gigabytes.
    expanded_file_bytes: usize,
    /// An expansion budget ran out in the current document (and was
    /// reported).
    expansion_exhausted: bool,
}

/// `path.key`, or `key` at the top.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Decoder<'a> {
    fn new(
        file: &'a str,
        text: &'a str,
        env: &'a dyn Fn(&str) -> Option<String>,
        policy: &'a Policy,
    ) -> Self {
        Decoder {
            file,
            text,
            env,
            policy,
            errors: Vec::new(),
            char_offsets: OnceCell::new(),
            expanded_bytes: 0,
            expanded_file_bytes: 0,
            expansion_exhausted: false,
        }
    }

    fn pos(&self, node: &Node) -> SourcePos {
        self.pos_of(node.at)
    }

    fn pos_of(&self, loc: Location) -> SourcePos {
        SourcePos {
            file: self.file.to_string(),
            line: loc.line() as usize,
            column: loc.column() as usize,
        }
    }

    fn error(&mut self, node: &Node, field: &str, message: impl Into<String>) {
        self.errors.push(ManifestError {
            file: self.file.to_string(),
            line: node.at.line() as usize,
            column: node.at.column() as usize,
            field: printable(field),
            message: printable(&message.into()),
        });
    }

    /// A parser error: syntax, duplicate key or a budget limit.
    fn yaml_error(&mut self, err: &serde_saphyr::Error) {
        fn innermost(err: &serde_saphyr::Error) -> &serde_saphyr::Error {
            match err {
                serde_saphyr::Error::WithSnippet { error, .. }
                | serde_saphyr::Error::AliasError { error, .. } => innermost(error),
                other => other,
            }
        }
        let inner = innermost(err);
        let message = match inner {
            serde_saphyr::Error::Budget { breach, .. } => budget_message(breach),
            other => UserMessageFormatter.format_message(other).into_owned(),
        };
        let loc = err.location().or_else(|| inner.location());
        let (line, column) = loc.map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
        self.errors.push(ManifestError {
            file: self.file.to_string(),
            line: line.max(1),
            column: column.max(1),
            field: String::new(),
            message: printable(&message),
        });
    }

    // -- generic helpers ----------------------------------------------------

    /// The fields of a mapping, by name, in either spelling of `shape`.
    /// Unknown keys and mixed spellings are reported; `None` when `node`
    /// is not a mapping.
    fn object<'n, const N: usize>(
        &mut self,
        node: &'n Node,
        path: &str,
        shape: &Shape<N>,
    ) -> Option<Fields<'n, N>> {
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, path, "a mapping");
            return None;
        };
        // The first key that belongs to either spelling decides which one
        // this object uses.
        let mut spelling = Spelling::Friendly;
        if let Some(engine) = &shape.engine {
            for (key, _) in entries {
                let key = self.key_text(key);
                if shape.friendly.contains(&key.as_ref()) {
                    break;
                }
                if engine.contains(&key.as_ref()) {
                    spelling = Spelling::Engine;
                    break;
                }
            }
        }
        let (names, other) = match (spelling, &shape.engine) {
            (Spelling::Engine, Some(engine)) => (*engine, Some(&shape.friendly)),
            (_, engine) => (shape.friendly, engine.as_ref()),
        };
        let mut values = [None; N];
        for (key, value) in entries {
            let key_text = self.key_text(key);
            if let Some(i) = names.iter().position(|n| *n == key_text) {
                values[i] = Some(value);
            } else if let Some(i) = other.and_then(|o| o.iter().position(|n| *n == key_text)) {
                // Decode it anyway, so the one mistake is reported once
                // rather than again as a missing field.
                values[i] = values[i].or(Some(value));
                let (used, this) = match spelling {
                    Spelling::Friendly => ("friendly", "Engine-API"),
                    Spelling::Engine => ("Engine-API", "friendly"),
                };
                self.error(
                    key,
                    &join(path, &key_text),
                    format!(
                        "this object uses the {used} spelling, so write `{}` rather than the {this} `{key_text}`; use one spelling per object",
                        names[i]
                    ),
                );
            } else {
                let message = unknown_field_message(&key_text, &names);
                self.error(key, &join(path, &key_text), message);
            }
        }
        Some(Fields {
            values,
            names,
            spelling,
        })
    }

    fn required<'n, const N: usize>(
        &mut self,
        fields: &Fields<'n, N>,
        i: usize,
        parent: &Node,
        path: &str,
    ) -> Option<&'n Node> {
        let value = fields.get(i);
        if value.is_none() {
            let name = fields.names[i];
            let at = fields.values[i].unwrap_or(parent);
            self.error(
                at,
                &join(path, name),
                format!("missing required field `{name}`"),
            );
        }
        value
    }

    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        let found = node.kind.describe();
        self.error(node, field, format!("expected {expected}, found {found}"));
    }

    /// A mapping key as text (keys are read as written: `5000`, `on`).
    fn key_text<'n>(&self, key: &'n Node) -> Cow<'n, str>
    where
        'a: 'n,
    {
        match &key.kind {
            Kind::Str(s) => Cow::Borrowed(s.as_str()),
            Kind::Seq(_) | Kind::Map(_) => Cow::Borrowed("<complex key>"),
            _ => Cow::Borrowed(self.scalar_text(key).unwrap_or("<key>")),
        }
    }

    /// The text of a non-string scalar exactly as written in the file, so
    /// `1.10` stays `1.10` and `010` stays `010`.
    fn scalar_text(&self, node: &Node) -> Option<&'a str> {
        let span = node.defined.span();
        if let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) {
            let (start, len) = (usize::try_from(start).ok()?, usize::try_from(len).ok()?);
            return self.text.get(start..start.checked_add(len)?);
        }
        let start = usize::try_from(span.offset()).ok()?;
        let end = start.checked_add(usize::try_from(span.len()).ok()?)?;
        if self.text.is_ascii() {
            return self.text.get(start..end);
        }
        let offsets = self.char_offsets.get_or_init(|| {
            let mut offsets: Vec<usize> = self.text.char_indices().map(|(i, _)| i).collect();
            offsets.push(self.text.len());
            offsets
        });
        self.text.get(*offsets.get(start)?..*offsets.get(end)?)
    }

    /// A scalar as a string: strings with `${VAR}` expanded, numbers and
    /// booleans as written. Reports anything else.
    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => self.expand(s, node, path),
            Kind::Bool(b) => Some(
                self.scalar_text(node)
                    .map_or_else(|| b.to_string(), str::to_string),
            ),
            Kind::Int(i) => Some(
                self.scalar_text(node)
                    .map_or_else(|| i.to_string(), str::to_string),
            ),
            Kind::Float(f) => Some(
                self.scalar_text(node)
                    .map_or_else(|| f.to_string(), str::to_string),
            ),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    /// A whole number, written as a YAML integer or as a string (so that
    /// `${REPLICAS}` works).
    fn integer(&mut self, node: &Node, path: &str) -> Option<i128> {
        match &node.kind {
            Kind::Int(i) => Some(*i),
            Kind::Str(s) => {
                let text = self.expand(s, node, path)?;
                match parse_int(text.trim()) {
                    Some(i) => Some(i),
                    None => {
                        self.error(
                            node,
                            path,
                            format!("expected a whole number, found `{text}`"),
                        );
                        None
                    }
                }
            }
            Kind::Float(_) => {
                let text = self.scalar_text(node).unwrap_or("?").to_string();
                self.error(
                    node,
                    path,
                    format!("expected a whole number, found `{text}`"),
                );
                None
            }
            _ => {
                self.wrong_type(node, path, "a whole number");
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            Kind::Str(s) => match self.expand(s, node, path)?.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                other => {
                    self.error(
                        node,
                        path,
                        format!("expected true or false, found `{other}`"),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(node, path, "true or false");
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, path, "a list");
                None
            }
        }
    }

    /// Expands `${VAR}` and `${VAR:-default}` from the environment and
    /// `$$` to `$`. Any other `$` is kept, so shell snippets like
    /// `echo $HOME` pass through untouched.
    ///
    /// The parser's budget only sees the text as written, so the result is
    /// bounded here: a few bytes of `${LONG}` repeated would otherwise ask
    /// for gigabytes (and the daemon reparses on every pass).
    fn expand(&mut self, s: &str, node: &Node, path: &str) -> Option<String> {
        if !s.contains('$') {
            return Some(s.to_string());
        }
        if self.expansion_exhausted {
            // Reported once for the document; the rest would only repeat it.
            return None;
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    self.error(
                        node,
                        path,
                        format!("unterminated `${{` in `{s}`; write `$$` for a literal `$`"),
                    );
                    return None;
                };
                let inner = &body[..end];
                let (name, default) = match inner.find(":-") {
                    Some(j) => (&inner[..j], Some(&inner[j + 2..])),
                    None => (inner, None),
                };
                if !is_env_name(name) {
                    self.error(
                        node,
                        path,
                        format!("`${{{inner}}}` is not a variable reference; use ${{NAME}} or ${{NAME:-default}}, or `$$` for a literal `$`"),
                    );
                    return None;
                }
                // The reference ends at the first `}`, so a nested one
                // would silently leave a stray `}` in the value.
                if default.is_some_and(|d| d.contains("${")) {
                    self.error(
                        node,
                        path,
                        format!("nested `${{…}}` is not supported; the default of `${{{name}:-…}}` must be plain text (set `{name}` instead)"),
                    );
                    return None;
                }
                match ((self.env)(name), default) {
                    (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => {
                        self.error(
                            node,
                            path,
                            format!("environment variable `{name}` is not set; set it or write ${{{name}:-default}}"),
                        );
                        return None;
                    }
                }
                rest = &body[end + 1..];
                // Checked after each reference: one variable adds at most
                // its own length (the kernel caps those at 128 KiB). Only
                // what expansion added counts: the text as written is
                // already bounded by the parser's budget.
                let grown = out.len().saturating_sub(s.len() - rest.len());
                if !self.within_expansion_limits(grown, node, path) {
                    return None;
                }
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        let grown = out.len().saturating_sub(s.len());
        if !self.within_expansion_limits(grown, node, path) {
            return None;
        }
        self.expanded_bytes += grown;
        self.expanded_file_bytes += grown;
        Some(out)
    }

    /// Whether a value that expansion has grown by `len` bytes so far
    /// stays within the per-value limit and the document's and the file's
    /// expansion budgets; reports it when not.
    fn within_expansion_limits(&mut self, len: usize, node: &Node, path: &str) -> bool {
        if len > MAX_EXPANDED_VALUE_BYTES {
            self.error(
                node,
                path,
                format!(
                    "value is longer than {} KiB after `${{…}}` expansion; values are limited to that",
                    MAX_EXPANDED_VALUE_BYTES / 1024
                ),
            );
            return false;
        }
        let over = if self.expanded_bytes + len > MAX_SCALAR_BYTES {
            format!(
                "document add up to more than {} KiB",
                MAX_SCALAR_BYTES / 1024
            )
        } else if self.expanded_file_bytes + len > MAX_FILE_BYTES {
            format!("file add up to more than {} MiB", MAX_FILE_BYTES >> 20)
        } else {
            return true;
        };
        self.error(
            node,
            path,
            format!("the values of this {over} after `${{…}}` expansion"),
        );
        self.expansion_exhausted = true;
        false
    }

    /// Reports every tag outside YAML's core schema, anywhere in the
    /// document: saphyr would decode `!!binary` silently and ignore the
    /// others, so what the file says and what runs would differ.
    fn tags(&mut self, node: &Node, path: &str) {
        if let Some(tag) = node.tag.as_deref().filter(|t| !is_core_tag(t)) {
            let shown = match tag.strip_prefix(YAML_TAG_PREFIX) {
                Some(name) => format!("!!{name}"),
                None => tag.to_string(),
            };
            self.error(
                node,
                path,
                format!("tag `{shown}` is not supported; only YAML's core tags (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map) are allowed"),
            );
        }
        match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.tags(item, &format!("{path}[{i}]"));
                }
            }
            Kind::Map(entries) => {
                for (key, value) in entries {
                    let path = join(path, &self.key_text(key));
                    self.tags(key, &path);
                    self.tags(value, &path);
                }
            }
            _ => {}
        }
    }

    // -- the document -------------------------------------------------------

    /// Decodes one document; `None` when it has problems (recorded).
    fn document(&mut self, root: &Node) -> Option<ParsedAsset> {
        let errors_before = self.errors.len();
        self.expanded_bytes = 0;
        self.expansion_exhausted = false;
        self.tags(root, "");
        if !matches!(root.kind, Kind::Map(_)) {
            self.error(
                root,
                "",
                format!(
                    "a manifest document must be a mapping with apiVersion, kind, metadata and spec; found {}",
                    root.kind.describe()
                ),
            );
            return None;
        }
        let top = self.object(root, "", &TOP)?;

        // A document of some other format (a Kubernetes object, a compose
        // file) gets one clear error instead of a list of unknown fields.
        let api_version = self.required(&top, 0, root, "");
        let kind = self.required(&top, 1, root, "");
        let mut foreign = false;
        if let Some(node) = api_version {
            let value = self.string(node, "apiVersion");
            if value.as_deref().is_some_and(|v| v != API_VERSION) {
                let value = value.unwrap_or_default();
                self.error(
                    node,
                    "apiVersion",
                    format!("must be `{API_VERSION}`, found `{value}`"),
                );
                foreign = true;
            }
        }
        if let Some(node) = kind {
            let value = self.string(node, "kind");
            if value.as_deref().is_some_and(|v| v != KIND) {
                let value = value.unwrap_or_default();
                self.error(node, "kind", format!("must be `{KIND}`, found `{value}`"));
                foreign = true;
            }
        }
        if foreign {
            return None;
        }

        let metadata = self.required(&top, 2, root, "");
        let spec_node = self.required(&top, 3, root, "");
        let (name, name_pos, labels) = match metadata {
            Some(node) => self.metadata(node),
            None => (None, None, BTreeMap::new()),
        };
        let spec = spec_node.and_then(|node| self.spec(node));

        if self.errors.len() > errors_before {
            return None;
        }
        let (name, pos, (mut spec, ports_pos)) = (name?, name_pos?, spec?);
        spec.name = name;
        spec.labels = labels;
        Some(ParsedAsset {
            hash: spec.hash(),
            spec,
            pos,
            ports_pos,
        })
    }

    fn metadata(
        &mut self,
        node: &Node,
    ) -> (
        Option<AssetName>,
        Option<SourcePos>,
        BTreeMap<String, String>,
    ) {
        let Some(fields) = self.object(node, "metadata", &METADATA) else {
            return (None, None, BTreeMap::new());
        };
        let mut name = None;
        let mut name_pos = None;
        if let Some(value) = self.required(&fields, 0, node, "metadata") {
            name_pos = Some(self.pos(value));
            if let Some(text) = self.string(value, "metadata.name") {
                match AssetName::new(&text) {
                    Ok(n) => name = Some(n),
                    Err(message) => self.error(value, "metadata.name", message),
                }
            }
        }
        let labels = match fields.get(1) {
            Some(value) => self.labels(value),
            None => BTreeMap::new(),
        };
        (name, name_pos, labels)
    }

    fn labels(&mut self, node: &Node) -> BTreeMap<String, String> {
        const PATH: &str = "metadata.labels";
        let mut labels = BTreeMap::new();
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, PATH, "a mapping of label keys to values");
            return labels;
        };
        for (key, value) in entries {
            let Some(k) = self.map_key(key, PATH) else {
                continue;
            };
            if k.is_empty() {
                self.error(key, PATH, "label keys must not be empty");
                continue;
            }
            if k.starts_with(RESERVED_LABEL_PREFIX) {
                self.error(
                    key,
                    PATH,
                    format!("label `{k}`: keys starting with `{RESERVED_LABEL_PREFIX}` are reserved for assetd's own labels"),
                );
                continue;
            }
            if let Some(v) = self.string(value, &join(PATH, &k)) {
                labels.insert(k, v);
            }
        }
        labels
    }

    /// A mapping key that must be a plain scalar (label keys, env keys).
    fn map_key(&mut self, key: &Node, path: &str) -> Option<String> {
        match &key.kind {
            Kind::Seq(_) | Kind::Map(_) | Kind::Null => {
                self.wrong_type(key, path, "a string key");
                None
            }
            _ => Some(self.key_text(key).into_owned()),
        }
    }

    /// `spec` → a DeploySpec with a placeholder name and no labels (the
    /// caller fills them in from `metadata`), plus port positions.
    #[allow(clippy::type_complexity)]
    fn spec(&mut self, node: &Node) -> Option<(DeploySpec, Vec<(u16, Protocol, SourcePos)>)> {
        const P: &str = "spec";
        let fields = self.object(node, P, &SPEC)?;
        let image = self
            .required(&fields, 0, node, P)
            .and_then(|n| self.image(n));
        let command = fields.get(1).and_then(|n| self.command(n));
        let env = fields.get(2).map(|n| self.env(n)).unwrap_or_default();
        let (ports, ports_pos) = fields.get(3).map(|n| self.ports(n)).unwrap_or_default();
        let networks = fields.get(4).map(|n| self.networks(n)).unwrap_or_default();
        let constraints = fields
            .get(5)
            .map(|n| self.constraints(n))
            .unwrap_or_default();
        let resources = fields.get(6).map(|n| self.resources(n)).unwrap_or_default();
        let mode = fields.get(7).map(|n| self.mode(n)).unwrap_or_default();
        let mounts = fields.get(8).map(|n| self.mounts(n)).unwrap_or_default();
        let healthcheck = fields.get(9).and_then(|n| self.healthcheck(n));
        let update = fields.get(10).and_then(|n| self.update_policy(n));
        let spec = DeploySpec {
            // Replaced by the caller; a spec is only returned when the
            // whole document is valid, so this never escapes.
            name: AssetName::new("placeholder").expect("a valid name"),
            image: image?,
            env,
            labels: BTreeMap::new(),
            command,
            ports,
            networks,
            constraints,
            resources,
            mode,
            mounts,
            healthcheck,
            update,
        };
        Some((spec, ports_pos))
    }

    /// `update: { order: start-first, monitor: 5s, failureAction: rollback,
    /// parallelism: 1, delay: 0s }`; the Engine-API spelling is Swarm's
    /// `UpdateConfig`, durations in nanoseconds.
    fn update_policy(&mut self, node: &Node) -> Option<UpdatePolicy> {
        const P: &str = "spec.update";
        let fields = self.object(node, P, &UPDATE)?;
        let errors_before = self.errors.len();
        let path = |i: usize| join(P, fields.names[i]);
        let order = fields.get(0).and_then(|value| {
            let text = self.string(value, &path(0))?;
            let order = UpdateOrder::parse(text.trim());
            if order.is_none() {
                let names = UpdateOrder::NAMES.join(", ");
                self.error(
                    value,
                    &path(0),
                    format!("order `{text}` is not one of {names}"),
                );
            }
            order
        });
        let monitor_ns = fields
            .get(1)
            .and_then(|value| self.duration_ns(value, &path(1), fields.spelling));
        let failure_action = fields.get(2).and_then(|value| {
            let text = self.string(value, &path(2))?;
            let action = FailureAction::parse(text.trim());
            if action.is_none() {
                let names = FailureAction::NAMES.join(", ");
                let why = if text.trim() == "continue" {
                    format!("failureAction `continue` is not offered: a failing version would go on replacing working replicas; use one of {names}")
                } else {
                    format!("failureAction `{text}` is not one of {names}")
                };
                self.error(value, &path(2), why);
            }
            action
        });
        let parallelism = fields
            .get(3)
            .and_then(|value| match self.integer(value, &path(3))? {
                n @ 0..=1000 => Some(n as u64),
                n => {
                    let why = format!("parallelism must be 0 (all at once) to 1000, found {n}");
                    self.error(value, &path(3), why);
                    None
                }
            });
        let delay_ns = fields
            .get(4)
            .and_then(|value| self.duration_or_zero_ns(value, &path(4), fields.spelling));
        (self.errors.len() == errors_before).then_some(UpdatePolicy {
            order,
            monitor_ns,
            failure_action,
            parallelism,
            delay_ns,
        })
    }

    /// `healthcheck: { test: [CMD, ...], interval: 5s, ... }`; the
    /// Engine-API spelling takes nanoseconds, as Docker's API does.
    fn healthcheck(&mut self, node: &Node) -> Option<Healthcheck> {
        const P: &str = "spec.healthcheck";
        let fields = self.object(node, P, &HEALTHCHECK)?;
        let test = self
            .required(&fields, 0, node, P)
            .and_then(|n| self.health_test(n, &join(P, fields.names[0])));
        let mut durations = [None; 3];
        for (slot, i) in durations.iter_mut().zip([1, 2, 4]) {
            if let Some(value) = fields.get(i) {
                let path = join(P, fields.names[i]);
                *slot = self.duration_ns(value, &path, fields.spelling);
            }
        }
        let retries = match fields.get(3) {
            Some(value) => {
                let path = join(P, fields.names[3]);
                match self.integer(value, &path)? {
                    n @ 0..=1000 => Some(n as i64),
                    n => {
                        self.error(
                            value,
                            &path,
                            format!("retries must be 0 to 1000, found {n}"),
                        );
                        return None;
                    }
                }
            }
            None => None,
        };
        let [interval_ns, timeout_ns, start_period_ns] = durations;
        Some(Healthcheck {
            test: test?,
            interval_ns,
            timeout_ns,
            retries,
            start_period_ns,
        })
    }

    /// `["CMD", argv...]`, `["CMD-SHELL", "cmd"]`, `["NONE"]`, or a plain
    /// string (run by the image's shell, as compose does).
    fn health_test(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let test = match &node.kind {
            Kind::Seq(items) => {
                let mut test = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    test.push(self.string(item, &format!("{path}[{i}]"))?);
                }
                test
            }
            Kind::Map(_) | Kind::Null => {
                self.wrong_type(
                    node,
                    path,
                    "a list such as [CMD, curl, -f, http://localhost/] or a string",
                );
                return None;
            }
            _ => vec!["CMD-SHELL".into(), self.string(node, path)?],
        };
        let args = test.len().saturating_sub(1);
        let problem = match test.first().map(String::as_str) {
            Some("CMD") if args == 0 => Some("`CMD` needs the command to run after it"),
            Some("CMD-SHELL") if args != 1 => Some("`CMD-SHELL` takes exactly one command line"),
            Some("NONE") if args != 0 => Some("`NONE` takes nothing after it"),
            Some("CMD" | "CMD-SHELL" | "NONE") => None,
            _ => Some("the first item must be CMD, CMD-SHELL or NONE"),
        };
        if let Some(problem) = problem {
            self.error(node, path, problem);
            return None;
        }
        Some(test)
    }

    /// A duration: `5s`, `500ms`, `1m30s` (friendly) or nanoseconds
    /// (Engine-API spelling). At least 1 ms, as Docker requires.
    /// A duration that may be zero (`delay: 0s`).
    fn duration_or_zero_ns(&mut self, node: &Node, path: &str, spelling: Spelling) -> Option<i64> {
        let zero = match spelling {
            Spelling::Engine => matches!(node.kind, Kind::Int(0)),
            Spelling::Friendly => {
                matches!(&node.kind, Kind::Str(t) if parse_duration_ns(t.trim()) == Ok(0))
            }
        };
        if zero {
            return Some(0);
        }
        self.duration_ns(node, path, spelling)
    }

    fn duration_ns(&mut self, node: &Node, path: &str, spelling: Spelling) -> Option<i64> {
        let ns = match spelling {
            Spelling::Engine => i64::try_from(self.integer(node, path)?).ok(),
            Spelling::Friendly => {
                let text = self.string(node, path)?;
                match parse_duration_ns(text.trim()) {
                    Ok(ns) => Some(ns),
                    Err(why) => {
                        self.error(node, path, why);
                        return None;
                    }
                }
            }
        };
        match ns {
            Some(ns) if ns >= 1_000_000 => Some(ns),
            _ => {
                self.error(node, path, "a duration must be at least 1ms");
                None
            }
        }
    }

    fn image(&mut self, node: &Node) -> Option<String> {
        const P: &str = "spec.image";
        let image = self.string(node, P)?;
        match check_image_reference(&image) {
            Ok(()) => Some(image),
            Err(why) => {
                self.error(node, P, why);
                None
            }
        }
    }

    fn command(&mut self, node: &Node) -> Option<Vec<String>> {
        const P: &str = "spec.command";
        let argv = match &node.kind {
            Kind::Seq(items) => {
                let mut argv = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    argv.push(self.string(item, &format!("{P}[{i}]"))?);
                }
                argv
            }
            Kind::Map(_) | Kind::Null => {
                self.wrong_type(node, P, "a string or a list of strings");
                return None;
            }
            _ => {
                let line = self.string(node, P)?;
                match shell_words::split(&line) {
                    Ok(argv) => argv,
                    Err(err) => {
                        self.error(
                            node,
                            P,
                            format!("cannot split `{line}` into arguments: {err}"),
                        );
                        return None;
                    }
                }
            }
        };
        if argv.is_empty() {
            self.error(
                node,
                P,
                "command is empty; leave it out to keep the image's default command",
            );
            return None;
        }
        // An empty first argument is left alone: with the image's
        // ENTRYPOINT it is just an argument, and the image is not known
        // here.
        Some(argv)
    }

    fn env(&mut self, node: &Node) -> Vec<String> {
        const P: &str = "spec.env";
        // name → line of its first definition, for duplicate messages.
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut out = Vec::new();
        match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{P}[{i}]");
                    if matches!(item.kind, Kind::Map(_) | Kind::Seq(_) | Kind::Null) {
                        self.wrong_type(item, &path, "a `KEY=VALUE` string");
                        continue;
                    }
                    let Some(entry) = self.string(item, &path) else {
                        continue;
                    };
                    let Some((key, _)) = entry.split_once('=') else {
                        self.error(
                            item,
                            &path,
                            format!("`{entry}` must have the form KEY=VALUE"),
                        );
                        continue;
                    };
                    if self.env_key(key, item, &path, &mut seen) {
                        out.push(entry);
                    }
                }
            }
            Kind::Map(entries) => {
                let mut pairs = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let Some(k) = self.map_key(key, P) else {
                        continue;
                    };
                    if k.contains("${") {
                        self.error(
                            key,
                            P,
                            format!("`{k}`: `${{…}}` is not expanded in keys; write the variable name out, or use the list form [\"NAME=VALUE\"]"),
                        );
                        continue;
                    }
                    if !self.env_key(&k, key, P, &mut seen) {
                        continue;
                    }
                    if matches!(value.kind, Kind::Null) {
                        self.error(
                            value,
                            &join(P, &k),
                            "value is empty; write \"\" for an empty value",
                        );
                        continue;
                    }
                    if let Some(v) = self.string(value, &join(P, &k)) {
                        pairs.push((k, v));
                    }
                }
                pairs.sort();
                out = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            }
            _ => self.wrong_type(node, P, "a list of KEY=VALUE strings or a mapping"),
        }
        out
    }

    /// Checks one environment variable name; false when it was reported.
    fn env_key(
        &mut self,
        key: &str,
        node: &Node,
        path: &str,
        seen: &mut BTreeMap<String, u64>,
    ) -> bool {
        if key.is_empty() {
            self.error(node, path, "environment variable name must not be empty");
            return false;
        }
        if key.contains('=') {
            self.error(
                node,
                path,
                format!("environment variable name `{key}` must not contain `=`"),
            );
            return false;
        }
        if key.contains('\0') {
            self.error(node, path, "environment variable name must not contain NUL");
            return false;
        }
        if let Some(line) = seen.get(key) {
            self.error(
                node,
                path,
                format!("environment variable `{key}` is already set on line {line}"),
            );
            return false;
        }
        seen.insert(key.to_string(), node.at.line());
        true
    }

    fn ports(&mut self, node: &Node) -> (Vec<PortMapping>, Vec<(u16, Protocol, SourcePos)>) {
        const P: &str = "spec.ports";
        let mut ports: Vec<(PortMapping, SourcePos)> = Vec::new();
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(
                node,
                P,
                "a mapping of host port to container port, e.g. { 5000: 5000 }",
            );
            return (Vec::new(), Vec::new());
        };
        for (key, value) in entries {
            let host = self.host_port(key);
            let container = self.container_port(value);
            let (Some((host, protocol)), Some(container)) = (host, container) else {
                continue;
            };
            if let Some((_, first)) = ports
                .iter()
                .find(|(p, _)| p.host == host && p.protocol == protocol)
            {
                let line = first.line;
                self.error(
                    key,
                    P,
                    format!(
                        "host port {} is already published on line {line}",
                        port_label(host, protocol)
                    ),
                );
                continue;
            }
            ports.push((
                PortMapping {
                    host,
                    container,
                    protocol,
                },
                self.pos(key),
            ));
        }
        ports.sort_by_key(|(p, _)| (p.host, p.protocol));
        let positions = ports
            .iter()
            .map(|(p, pos)| (p.host, p.protocol, pos.clone()))
            .collect();
        (ports.into_iter().map(|(p, _)| p).collect(), positions)
    }

    /// A `spec.ports` key: `5000`, `"5000/tcp"` or `"5001/udp"`.
    fn host_port(&mut self, key: &Node) -> Option<(u16, Protocol)> {
        const P: &str = "spec.ports";
        let text = match &key.kind {
            Kind::Int(_) | Kind::Str(_) => self.key_text(key).into_owned(),
            _ => {
                self.wrong_type(key, P, "a host port such as 5000 or \"5001/udp\"");
                return None;
            }
        };
        let (number, protocol) = match text.split_once('/') {
            None => (text.as_str(), Protocol::Tcp),
            Some((n, "tcp")) => (n, Protocol::Tcp),
            Some((n, "udp")) => (n, Protocol::Udp),
            Some((_, other)) => {
                self.error(
                    key,
                    P,
                    format!("host port `{text}`: protocol `{other}` is not tcp or udp"),
                );
                return None;
            }
        };
        let port = self.port_number(key, P, number, "host port")?;
        Some((port, protocol))
    }

    fn container_port(&mut self, value: &Node) -> Option<u16> {
        const P: &str = "spec.ports";
        let text = match &value.kind {
            Kind::Int(_) => self.scalar_text(value).unwrap_or("?").to_string(),
            Kind::Str(s) => self.expand(s, value, P)?,
            _ => {
                self.wrong_type(value, P, "a container port number");
                return None;
            }
        };
        if text.contains('/') {
            self.error(
                value,
                P,
                format!("container port `{text}`: the protocol goes on the host port key, e.g. \"5001/udp\": 5001"),
            );
            return None;
        }
        self.port_number(value, P, &text, "container port")
    }

    fn port_number(&mut self, node: &Node, path: &str, text: &str, what: &str) -> Option<u16> {
        match parse_int(text.trim()) {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(n) => {
                self.error(node, path, format!("{what} {n} is out of range 1-65535"));
                None
            }
            None => {
                self.error(
                    node,
                    path,
                    format!("{what} `{text}` must be a number 1-65535 (host ports may add /tcp or /udp)"),
                );
                None
            }
        }
    }

    fn networks(&mut self, node: &Node) -> Vec<String> {
        const P: &str = "spec.networks";
        let mut out: Vec<String> = Vec::new();
        let Some(items) = self.list(node, P) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{P}[{i}]");
            let Some(name) = self.string(item, &path) else {
                continue;
            };
            if name.is_empty() {
                self.error(item, &path, "network name must not be empty");
            } else if !is_docker_object_name(&name) {
                self.error(
                    item,
                    &path,
                    format!("network name `{name}` may contain only letters, digits, `_`, `.` and `-`, and must start with a letter or digit"),
                );
            } else if out.contains(&name) {
                self.error(item, &path, format!("network `{name}` is listed twice"));
            } else {
                out.push(name);
            }
        }
        out
    }

    fn constraints(&mut self, node: &Node) -> Vec<String> {
        const P: &str = "spec.constraints";
        let mut out = Vec::new();
        let Some(items) = self.list(node, P) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{P}[{i}]");
            let Some(text) = self.string(item, &path) else {
                continue;
            };
            let constraint = text.trim();
            if constraint.is_empty() {
                self.error(item, &path, "constraint must not be empty");
            } else if !constraint.contains("==") && !constraint.contains("!=") {
                self.error(
                    item,
                    &path,
                    format!("constraint `{constraint}` needs an operator, `==` or `!=` (e.g. node.labels.zone == cell-3)"),
                );
            } else {
                out.push(constraint.to_string());
            }
        }
        out
    }

    fn resources(&mut self, node: &Node) -> Resources {
        const P: &str = "spec.resources";
        let Some(fields) = self.object(node, P, &RESOURCES) else {
            return Resources::default();
        };
        let mut sets = [ResourceSet::default(), ResourceSet::default()];
        for (i, set) in sets.iter_mut().enumerate() {
            if let Some(value) = fields.get(i) {
                let path = join(P, fields.names[i]);
                *set = self.resource_set(value, &path);
            }
        }
        let [limits, reservations] = sets;
        if let (Some(limit), Some(reservation)) = (limits.nano_cpus, reservations.nano_cpus) {
            if reservation > limit {
                let at = fields.get(1).expect("reservations were decoded");
                self.error(
                    at,
                    &join(P, fields.names[1]),
                    format!(
                        "cpu reservation ({}) is above the limit ({})",
                        cpus_label(reservation),
                        cpus_label(limit)
                    ),
                );
            }
        }
        if let (Some(limit), Some(reservation)) = (limits.memory_bytes, reservations.memory_bytes) {
            if reservation > limit {
                let at = fields.get(1).expect("reservations were decoded");
                self.error(
                    at,
                    &join(P, fields.names[1]),
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
    fn resource_set(&mut self, node: &Node, path: &str) -> ResourceSet {
        let Some(fields) = self.object(node, path, &RESOURCE_SET) else {
            return ResourceSet::default();
        };
        let spelling = fields.spelling;
        let mut set = ResourceSet::default();
        if let Some(value) = fields.get(0) {
            let path = join(path, fields.names[0]);
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
        if let Some(value) = fields.get(1) {
            let path = join(path, fields.names[1]);
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

    /// `cpus: 1.5` → 1 500 000 000 nano-CPUs, computed from the decimal
    /// text so no float rounding can change a hash.
    fn cpus(&mut self, node: &Node, path: &str) -> Option<i64> {
        let text = match &node.kind {
            Kind::Int(_) | Kind::Float(_) => self.scalar_text(node).unwrap_or("?").to_string(),
            Kind::Str(s) => self.expand(s, node, path)?,
            _ => {
                self.wrong_type(node, path, "a number of CPUs such as 0.5");
                return None;
            }
        };
        let text = text.trim();
        match parse_decimal(text, 9) {
            Some(nanos) if nanos > 0 => match i64::try_from(nanos) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(node, path, format!("cpus `{text}` is too large"));
                    None
                }
            },
            Some(_) => {
                self.error(
                    node,
                    path,
                    format!("cpus must be greater than 0, found `{text}`"),
                );
                None
            }
            None if text.starts_with('-') => {
                self.error(
                    node,
                    path,
                    format!("cpus must be greater than 0, found `{text}`"),
                );
                None
            }
            None => {
                self.error(
                    node,
                    path,
                    format!("cpus `{text}` must be a decimal number such as 0.5 or 2 (at most 9 decimal places)"),
                );
                None
            }
        }
    }

    /// `memory: 512Mi` → bytes. Units as in Kubernetes: k, M, G, T are
    /// powers of 1000, Ki, Mi, Gi, Ti powers of 1024; `b` or none is bytes.
    fn memory(&mut self, node: &Node, path: &str) -> Option<i64> {
        let text = match &node.kind {
            Kind::Int(_) | Kind::Float(_) => self.scalar_text(node).unwrap_or("?").to_string(),
            Kind::Str(s) => self.expand(s, node, path)?,
            _ => {
                self.wrong_type(node, path, "a size such as 512Mi");
                return None;
            }
        };
        let text = text.trim();
        match parse_memory(text) {
            Ok(bytes) => match i64::try_from(bytes) {
                Ok(b) => Some(b),
                Err(_) => {
                    self.error(node, path, format!("memory `{text}` is too large"));
                    None
                }
            },
            Err(message) => {
                self.error(node, path, message);
                None
            }
        }
    }

    fn mode(&mut self, node: &Node) -> Mode {
        const P: &str = "spec.mode";
        let errors_before = self.errors.len();
        let Some(fields) = self.object(node, P, &MODE) else {
            return Mode::default();
        };
        let present: Vec<usize> = (0..2).filter(|&i| fields.values[i].is_some()).collect();
        match present.as_slice() {
            // An unknown key was reported already.
            [] if self.errors.len() > errors_before => Mode::default(),
            [] => {
                self.error(
                    node,
                    P,
                    "mode needs `replicated: { replicas: N }` or `global: {}`",
                );
                Mode::default()
            }
            [0] => {
                let value = fields.values[0].expect("present");
                let path = join(P, fields.names[0]);
                if matches!(value.kind, Kind::Null) {
                    return Mode::default();
                }
                let Some(inner) = self.object(value, &path, &REPLICATED) else {
                    return Mode::default();
                };
                let Some(replicas_node) = inner.get(0) else {
                    return Mode::default();
                };
                let path = join(&path, inner.names[0]);
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
            [1] => {
                let value = fields.values[1].expect("present");
                match &value.kind {
                    Kind::Null => {}
                    Kind::Map(entries) if entries.is_empty() => {}
                    _ => {
                        let path = join(P, fields.names[1]);
                        self.error(value, &path, "global mode takes no settings; write `{}`");
                    }
                }
                Mode::Global
            }
            _ => {
                self.error(node, P, "choose one of replicated or global, not both");
                Mode::default()
            }
        }
    }

    fn mounts(&mut self, node: &Node) -> Vec<Mount> {
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
        let kind_path = join(path, fields.names[0]);
        let kind = match self.required(&fields, 0, node, path) {
            Some(value) => match self.string(value, &kind_path)?.as_str() {
                "bind" => Some(MountKind::Bind),
                "volume" => Some(MountKind::Volume),
                "tmpfs" => Some(MountKind::Tmpfs),
                other => {
                    self.error(
                        value,
                        &kind_path,
                        format!("mount type `{other}` is not one of bind, volume, tmpfs"),
                    );
                    None
                }
            },
            None => None,
        };
        let target_path = join(path, fields.names[2]);
        let target = match self.required(&fields, 2, node, path) {
            Some(value) => {
                self.string(value, &target_path)
                    .and_then(|t| match normal_absolute_path(&t) {
                        Ok(p) if p == "/" => {
                            self.error(value, &target_path, "target must not be `/`");
                            None
                        }
                        Ok(p) => Some(p),
                        Err(why) => {
                            self.error(value, &target_path, format!("target `{t}` {why}"));
                            None
                        }
                    })
            }
            None => None,
        };
        let read_only = match fields.get(3) {
            Some(value) => self
                .boolean(value, &join(path, fields.names[3]))
                .unwrap_or(false),
            None => false,
        };
        let source_path = join(path, fields.names[1]);
        let source_node = fields.get(1);
        let source = match (kind, source_node) {
            (Some(MountKind::Bind), None) => {
                self.error(
                    node,
                    &source_path,
                    "a bind mount needs a source (an absolute host path)",
                );
                None
            }
            (Some(MountKind::Bind), Some(value)) => {
                let text = self.string(value, &source_path)?;
                match normal_absolute_path(&text) {
                    Ok(p) => {
                        if self.bind_allowed(&p) {
                            Some(p)
                        } else {
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
                                &source_path,
                                format!("bind mount of `{p}` refused{allowed}: bind mounts are refused unless --allow-bind PREFIX covers the source; e.g. --allow-bind {p}"),
                            );
                            None
                        }
                    }
                    Err(why) => {
                        self.error(value, &source_path, format!("bind source `{text}` {why}"));
                        None
                    }
                }
            }
            (Some(MountKind::Volume), Some(value)) => {
                let text = self.string(value, &source_path)?;
                if text.starts_with('/') {
                    self.error(
                        value,
                        &source_path,
                        format!("volume source `{text}` must be a volume name; use type: bind for a host path"),
                    );
                    None
                } else if !is_docker_object_name(&text) || text.len() < 2 {
                    self.error(
                        value,
                        &source_path,
                        format!("volume name `{text}` must be at least 2 characters of letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
                    );
                    None
                } else {
                    Some(text)
                }
            }
            (Some(MountKind::Tmpfs), Some(value)) => {
                self.error(value, &source_path, "a tmpfs mount has no source");
                None
            }
            _ => None,
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Mount {
            kind: kind?,
            source,
            target: target?,
            read_only,
        })
    }

    fn bind_allowed(&self, source: &str) -> bool {
        let source = Path::new(source);
        self.policy
            .allow_bind
            .iter()
            .any(|prefix| source.starts_with(prefix))
    }
}

// ---------------------------------------------------------------------------
// Small pure helpers.

/// Longest message kept; messages quote values from the file, which may be
/// huge.
const MAX_MESSAGE_CHARS: usize = 400;

/// Messages go to terminals and logs on one line: control characters from
/// the file are escaped and very long text is cut.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS + 4));
    for (i, c) in text.chars().enumerate() {
        if i == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn unknown_field_message(key: &str, expected: &[&str]) -> String {
    let list: Vec<String> = expected.iter().map(|n| format!("`{n}`")).collect();
    let mut message = format!("unknown field `{key}`; expected one of {}", list.join(", "));
    if let Some(close) = expected
        .iter()
        .filter(|n| strsim::levenshtein(&key.to_ascii_lowercase(), &n.to_ascii_lowercase()) <= 2)
        .min_by_key(|n| strsim::levenshtein(key, n))
    {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    message
}

/// A decimal integer with an optional sign.
fn parse_int(text: &str) -> Option<i128> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `1.25` with `scale` 9 → 1 250 000 000. No sign, no exponent; more
/// fractional digits than `scale` is an error (rather than rounding).
fn parse_decimal(text: &str, scale: u32) -> Option<u128> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty())
        || !all_digits(int)
        || !all_digits(frac)
        || int.len() > 20
        || frac.len() > scale as usize
    {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let frac_scaled = frac_value * 10u128.pow(scale - frac.len() as u32);
    int.checked_mul(10u128.pow(scale))?.checked_add(frac_scaled)
}

const MEMORY_UNITS: [(&str, u128); 10] = [
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("Ki", 1 << 10),
    ("M", 1_000_000),
    ("Mi", 1 << 20),
    ("G", 1_000_000_000),
    ("Gi", 1 << 30),
    ("T", 1_000_000_000_000),
    ("Ti", 1 << 40),
];

/// `1h2m3s4ms` style durations → nanoseconds.
fn parse_duration_ns(text: &str) -> Result<i64, String> {
    let wrong = || format!("`{text}` is not a duration; write e.g. 5s, 500ms, 1m30s");
    if text.is_empty() {
        return Err(wrong());
    }
    let mut rest = text;
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(wrong());
        }
        let number: i128 = rest[..digits].parse().map_err(|_| wrong())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor: i128 = match &rest[..unit_len] {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" => 1_000,
            "ns" => 1,
            _ => return Err(wrong()),
        };
        rest = &rest[unit_len..];
        total = total
            .checked_add(number.checked_mul(factor).ok_or_else(wrong)?)
            .ok_or_else(wrong)?;
    }
    i64::try_from(total).map_err(|_| format!("`{text}` is too long a duration"))
}

fn parse_memory(text: &str) -> Result<u128, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if text.starts_with('-') {
        return Err(format!("memory must be positive, found `{text}`"));
    }
    let Some(&(_, factor)) = MEMORY_UNITS.iter().find(|(u, _)| *u == unit) else {
        // Docker's CLI and compose read `512m` as 512 MiB; here units are
        // Kubernetes' and `m` would be ambiguous, so say what to write.
        let docker_hint = match unit {
            "m" | "g" | "t" => format!(
                " (Docker's `{number}{unit}` is `{number}{}i` here)",
                unit.to_ascii_uppercase()
            ),
            _ => String::new(),
        };
        return Err(format!(
            "memory `{text}`: unknown unit `{unit}`; use b, k, Ki, M, Mi, G, Gi, T or Ti (Mi = 2^20 bytes, M = 10^6 bytes){docker_hint}"
        ));
    };
    // Up to 9 decimal places so `1.5Gi` works; the result must be whole bytes.
    let Some(scaled) = parse_decimal(number, 9) else {
        return Err(format!(
            "memory `{text}` must be a number with an optional unit, such as 512Mi"
        ));
    };
    let total = scaled
        .checked_mul(factor)
        .ok_or_else(|| format!("memory `{text}` is too large"))?;
    let billion = 1_000_000_000;
    if total % billion != 0 {
        return Err(format!("memory `{text}` is not a whole number of bytes"));
    }
    Ok(total / billion)
}

fn port_label(port: u16, protocol: Protocol) -> String {
    match protocol {
        Protocol::Tcp => port.to_string(),
        Protocol::Udp => format!("{port}/udp"),
    }
}

fn cpus_label(nano: i64) -> String {
    let whole = nano / 1_000_000_000;
    let frac = nano % 1_000_000_000;
    if frac == 0 {
        whole.to_string()
    } else {
        let frac = format!("{frac:09}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// The namespace of the tags written `!!name`.
const YAML_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// The non-specific tag `!` and the tags of YAML 1.2's core schema: they
/// only say what the value already is.
fn is_core_tag(tag: &str) -> bool {
    tag == "!"
        || tag.strip_prefix(YAML_TAG_PREFIX).is_some_and(|name| {
            matches!(
                name,
                "str" | "int" | "float" | "bool" | "null" | "seq" | "map"
            )
        })
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the names `${...}` may refer to.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks an image reference against the grammar of Docker's reference
/// parser (distribution's `reference` package):
/// `[HOST[:PORT]/]PATH[:TAG][@ALGORITHM:HEX]`. Refusing here points at
/// the manifest line instead of a failed pull on every pass.
fn check_image_reference(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("image must not be empty".into());
    }
    if image.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "image reference is {} bytes long; at most {MAX_IMAGE_BYTES} are allowed",
            image.len()
        ));
    }
    // escape_debug shows invisible characters such as U+FEFF.
    let shown = image.escape_debug();
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "image `{shown}` must not contain whitespace or control characters"
        ));
    }
    if !image.is_ascii() {
        return Err(format!(
            "image `{shown}` must be ASCII: letters, digits and `.`, `_`, `-`, `/`, `:`, `@`"
        ));
    }
    let invalid = |why: String| {
        Err(format!(
            "image `{image}` is not a valid image reference: {why}"
        ))
    };
    let (name_tag, digest) = match image.split_once('@') {
        Some((name_tag, digest)) => (name_tag, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        if !is_image_digest(digest) {
            return invalid(format!(
                "the digest `{digest}` must be ALGORITHM:HEX, e.g. sha256: and 64 lowercase hex digits"
            ));
        }
    }
    // The tag is after a `:` in the last path component; a `:` before a
    // `/` is a registry port.
    let last = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last..].find(':') {
        Some(i) => (&name_tag[..last + i], Some(&name_tag[last + i + 1..])),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        if !is_image_tag(tag) {
            return invalid(format!(
                "the tag `{tag}` must be 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
            ));
        }
    }
    if name.len() > MAX_IMAGE_NAME_BYTES {
        return invalid(format!(
            "the repository name is longer than {MAX_IMAGE_NAME_BYTES} characters"
        ));
    }
    // Docker's rule: the first component names a registry when it has a
    // `.` or `:`, is `localhost`, or has an uppercase letter.
    let path = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            if !is_registry_host(first) {
                return invalid(format!("`{first}` is not a registry HOST[:PORT]"));
            }
            rest
        }
        _ => name,
    };
    for component in path.split('/') {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return invalid("the repository name must be lowercase".into());
        }
        if !is_image_path_component(component) {
            return invalid(format!(
                "the repository name part `{component}` must be lowercase letters and digits, separated by one `.`, one or two `_`, or `-`s"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+` runs separated by `.`, `_`, `__` or one or more `-`.
fn is_image_path_component(component: &str) -> bool {
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if alphanumeric(first) && alphanumeric(last) => component
            .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            .filter(|separator| !separator.is_empty())
            .all(|separator| {
                matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
            }),
        _ => false,
    }
}

/// `HOST[:PORT]`: dot-separated DNS labels or a bracketed IPv6 address.
fn is_registry_host(domain: &str) -> bool {
    let (host_ok, port) = match domain.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (
                !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
                port,
            ),
            None => return false,
        },
        None => {
            let host = domain.split(':').next().unwrap_or_default();
            let label_ok = |label: &str| {
                let bytes = label.as_bytes();
                matches!((bytes.first(), bytes.last()), (Some(f), Some(l)) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric())
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            };
            (host.split('.').all(label_ok), &domain[host.len()..])
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_image_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut bytes = tag.bytes();
    tag.len() <= 128
        && bytes.next().is_some_and(word)
        && bytes.all(|b| word(b) || b == b'.' || b == b'-')
}

/// `ALGORITHM:HEX`, with the lengths Docker checks for sha256 and sha512.
fn is_image_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    let hex_ok = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let length_ok = match algorithm {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => hex.len() >= 32,
    };
    algorithm_ok && hex_ok && length_ok
}

/// Docker's rule for volume and network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_docker_object_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An absolute path in normal form (no `//`, `.` or trailing `/`), so that
/// spellings of one path compare and hash equal. `..` is refused: it would
/// let a bind source escape its `--allow-bind` prefix on paper.
fn normal_absolute_path(path: &str) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("must be an absolute path (start with `/`)");
    }
    if path.contains('\0') {
        return Err("must not contain NUL");
    }
    let mut out = String::with_capacity(path.len());
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => {
                out.push('/');
                out.push_str(part.to_str().expect("the path came from a str"));
            }
            Component::ParentDir => return Err("must not contain `..`"),
            Component::Prefix(_) => return Err("must be an absolute path (start with `/`)"),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn test_env(name: &str) -> Option<String> {
        match name {
            "IMAGE_TAG" => Some("2.5".into()),
            "GREETING" => Some("hello".into()),
            "EMPTY" => Some(String::new()),
            "REPLICAS" => Some("3".into()),
            "LONG" => Some("x".repeat(4096)),
            _ => None,
        }
    }

    fn test_policy() -> Policy {
        Policy {
            allow_bind: vec![PathBuf::from("/srv")],
        }
    }

    fn data_dir(kind: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/manifests")
            .join(kind)
    }

    fn parse(text: &str) -> Result<Vec<ParsedAsset>, Vec<ManifestError>> {
        parse_file("t.yaml", text, &test_env, &test_policy())
    }

    fn parse_one(text: &str) -> DeploySpec {
        match parse(text) {
            Ok(mut assets) if assets.len() == 1 => assets.remove(0).spec,
            Ok(assets) => panic!("expected one asset, got {}", assets.len()),
            Err(errors) => panic!("unexpected errors: {errors:#?}"),
        }
    }

    fn errors_of(text: &str) -> Vec<ManifestError> {
        match parse(text) {
            Ok(assets) => panic!("expected errors, got {} assets", assets.len()),
            Err(errors) => errors,
        }
    }

    fn with_spec(spec: &str) -> String {
        format!("apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a1\nspec:\n{spec}")
    }

    fn parse_data(kind: &str, name: &str) -> Result<Vec<ParsedAsset>, Vec<ManifestError>> {
        let bytes = std::fs::read(data_dir(kind).join(name)).unwrap();
        parse_bytes(name, &bytes, &test_env, &test_policy())
    }

    /// Each `bad/NAME.yaml` has a `bad/NAME.expect`: one line per error,
    /// in order, `LINE:COLUMN: FIELD: MESSAGE FRAGMENT` (`-` for no field).
    #[test]
    fn every_bad_manifest_reports_its_position_field_and_message() {
        let dir = data_dir("bad");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        names.sort();
        assert!(names.len() >= 30, "only {} bad manifests", names.len());
        let mut failures = Vec::new();
        for name in &names {
            let expect_path = dir.join(name.replace(".yaml", ".expect"));
            let expect = std::fs::read_to_string(&expect_path)
                .unwrap_or_else(|_| panic!("{} has no .expect file", name));
            let expected: Vec<&str> = expect.lines().filter(|l| !l.trim().is_empty()).collect();
            let actual = match parse_data("bad", name) {
                Ok(assets) => {
                    failures.push(format!(
                        "{name}: parsed into {} assets, expected errors",
                        assets.len()
                    ));
                    continue;
                }
                Err(errors) => errors,
            };
            if actual.len() != expected.len() {
                failures.push(format!(
                    "{name}: expected {} errors, got {actual:#?}",
                    expected.len()
                ));
                continue;
            }
            for (want, got) in expected.iter().zip(&actual) {
                let mut parts = want.splitn(3, ": ");
                let (at, field, fragment) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let (line, column) = at.split_once(':').unwrap();
                let field = if field == "-" { "" } else { field };
                let ok = got.file == *name
                    && got.line.to_string() == line
                    && got.column.to_string() == column
                    && got.field == field
                    && got.message.contains(fragment);
                if !ok {
                    failures.push(format!("{name}: expected `{want}`, got `{got}`"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} bad manifests:\n{}",
            failures.len(),
            names.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn hostile_input_fails_fast_with_a_position() {
        let mut billion_laughs =
            String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let (prev, next) = (w[0], w[1]);
            let refs = vec![format!("*{prev}"); 9].join(", ");
            billion_laughs.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        let huge_image = with_spec(&format!("  image: {}\n", "x".repeat(2 << 20)));
        let deep_block: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let cases: Vec<(&str, String, usize, usize, &str)> = vec![
            (
                "deep flow nesting",
                "[".repeat(100_000),
                1,
                256,
                "recursion limit",
            ),
            (
                "deep block nesting",
                deep_block,
                33,
                33,
                "nested more than 32 levels",
            ),
            (
                "alias bomb",
                billion_laughs,
                5,
                12,
                "too large or too complex",
            ),
            (
                "huge scalar",
                huge_image,
                6,
                10,
                "adds up to more than 1024 KiB",
            ),
            (
                "NUL byte",
                "apiVersion: assetd/v1\0\n".into(),
                1,
                22,
                "unexpected character",
            ),
            (
                "binary garbage",
                "\u{1}\u{2}\u{7f}garbage\u{0}".into(),
                1,
                1,
                "unexpected character",
            ),
        ];
        for (what, text, line, column, fragment) in cases {
            let started = std::time::Instant::now();
            let errors = parse(&text).expect_err(what);
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{what} took {:?}",
                started.elapsed()
            );
            assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
            let e = &errors[0];
            assert_eq!((e.line, e.column), (line, column), "{what}: {e}");
            assert!(e.message.contains(fragment), "{what}: {e}");
        }
    }

    #[test]
    fn messages_escape_control_characters_and_stay_short() {
        let errors = errors_of(&format!(
            "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: \"a\\e[31mb\"\nspec:\n  image: i\n  env: [ \"{}\" ]\n",
            "k".repeat(5000)
        ));
        assert!(errors[0].message.contains("a\\u{1b}[31mb"), "{}", errors[0]);
        assert!(errors[1].message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(errors[1].message.ends_with('…'));
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let text = "#".repeat(MAX_FILE_BYTES + 1);
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors[0].line, 0);
        assert!(
            errors[0].to_string().starts_with("t.yaml: file is"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn empty_and_comment_only_files_hold_no_assets() {
        for text in [
            "",
            "\n\n",
            "# only a comment\n# and another\n",
            "---\n",
            "---\n...\n---\n# c\n",
            "\u{feff}",
        ] {
            assert_eq!(parse(text).unwrap().len(), 0, "{text:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_reported_at_the_bad_byte() {
        let errors = parse_bytes(
            "x.yaml",
            b"a: 1\nb: \xc3\xa9\xff\n",
            &test_env,
            &test_policy(),
        )
        .unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (2, 5));
        assert!(errors[0].message.contains("0xff"));
    }

    #[test]
    fn friendly_and_engine_spellings_give_the_same_spec() {
        let friendly = parse_data("good", "friendly.yaml").unwrap();
        let engine = parse_data("good", "engine.yaml").unwrap();
        assert_eq!(friendly[0].spec, engine[0].spec);
        assert_eq!(friendly[0].spec.hash(), engine[0].spec.hash());

        let spec = &friendly[0].spec;
        assert_eq!(spec.name.as_str(), "cnc-mill-01-agent");
        assert_eq!(spec.image, "ghcr.io/example/mtcagent:2.5");
        assert_eq!(
            spec.command.as_deref().unwrap(),
            ["mtcagent", "run", "/etc/agent dir/agent.cfg"]
        );
        assert_eq!(spec.env, ["MTC_AGENT_UUID=CNC-MILL-01", "LOG=info"]);
        assert_eq!(spec.labels.get("version").map(String::as_str), Some("1.10"));
        assert_eq!(
            spec.ports,
            [
                PortMapping {
                    host: 5000,
                    container: 5000,
                    protocol: Protocol::Tcp
                },
                PortMapping {
                    host: 5001,
                    container: 5001,
                    protocol: Protocol::Udp
                },
            ]
        );
        assert_eq!(spec.networks, ["factory-net", "backend"]);
        assert_eq!(
            spec.constraints,
            ["node.labels.zone == cell-3", "node.role != manager"]
        );
        assert_eq!(spec.resources.limits.nano_cpus, Some(1_000_000_000));
        assert_eq!(spec.resources.limits.memory_bytes, Some(512 << 20));
        assert_eq!(spec.resources.reservations.nano_cpus, Some(500_000_000));
        assert_eq!(spec.resources.reservations.memory_bytes, Some(128 << 20));
        assert_eq!(spec.mode, Mode::Replicated { replicas: 2 });
        assert_eq!(
            spec.mounts,
            [
                Mount {
                    kind: MountKind::Bind,
                    source: Some("/srv/cfg".into()),
                    target: "/etc/cfg".into(),
                    read_only: true
                },
                Mount {
                    kind: MountKind::Volume,
                    source: Some("data".into()),
                    target: "/data".into(),
                    read_only: false
                },
                Mount {
                    kind: MountKind::Tmpfs,
                    source: None,
                    target: "/run/cache".into(),
                    read_only: false
                },
            ]
        );
        assert_eq!(
            friendly[0].pos,
            SourcePos {
                file: "friendly.yaml".into(),
                line: 5,
                column: 9
            }
        );
        assert_eq!(
            friendly[0].ports_pos[1],
            (
                5001,
                Protocol::Udp,
                SourcePos {
                    file: "friendly.yaml".into(),
                    line: 11,
                    column: 24
                }
            )
        );
    }

    #[test]
    fn comments_key_order_and_style_do_not_change_the_hash() {
        let a = "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a1\n  labels: {b: '2', a: '1'}\nspec:\n  image: i:1\n  env: {Y: 2, X: 1}\n  ports: {80: 8080, 443: 8443}\n";
        let b = "# leading comment\nkind: Asset   # trailing\napiVersion: \"assetd/v1\"\nspec:\n  ports:\n    443: 8443\n    \"80\": 8080\n\n  env:\n    X: \"1\"\n    Y: '2'\n  image: 'i:1'\nmetadata:\n  labels:\n    a: \"1\"\n    b: \"2\"\n  name: a1\n";
        let (a, b) = (parse_one(a), parse_one(b));
        assert_eq!(a, b);
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.env, ["X=1", "Y=2"]);
    }

    #[test]
    fn multi_document_files_keep_document_order_and_positions() {
        let assets = parse_data("good", "multi.yaml").unwrap();
        let names: Vec<&str> = assets.iter().map(|a| a.spec.name.as_str()).collect();
        assert_eq!(names, ["press-01", "press-02", "press-03"]);
        assert_eq!(assets[1].pos.line, 17);
        // ${VAR:-default} with the variable unset.
        assert_eq!(assets[0].spec.image, "registry.local/press:1.0");
        // Map values keep their text: 1.50 is not the float 1.5.
        assert_eq!(
            assets[0].spec.env,
            ["DEBUG=false", "SCALE=1.50", "ZONE=cell-2"]
        );
        assert_eq!(assets[1].spec.mode, Mode::Global);
        assert_eq!(
            assets[1].spec.command.as_deref().unwrap(),
            ["sh", "-c", "echo $HOME hello"]
        );
        // Empty (null) optional fields are the same as absent ones.
        let p3 = &assets[2].spec;
        assert!(p3.labels.is_empty() && p3.ports.is_empty() && p3.env.is_empty());
        assert_eq!(p3.mode, Mode::Replicated { replicas: 0 });
        assert_eq!(p3.resources.limits.memory_bytes, Some(3 << 29));
        assert_eq!(p3.resources.limits.nano_cpus, Some(250_000_000));
    }

    #[test]
    fn variables_expand_with_defaults_and_dollar_escapes() {
        let spec = parse_one(&with_spec(
            "  image: \"img:${IMAGE_TAG}\"\n  env:\n    - A=${MISSING:-fallback}\n    - B=${EMPTY:-was-empty}\n    - C=${EMPTY}\n    - D=$$HOME and $PATH and $${X}\n  mode: { replicated: { replicas: \"${REPLICAS}\" } }\n",
        ));
        assert_eq!(spec.image, "img:2.5");
        assert_eq!(
            spec.env,
            [
                "A=fallback",
                "B=was-empty",
                "C=",
                "D=$HOME and $PATH and ${X}"
            ]
        );
        assert_eq!(spec.mode, Mode::Replicated { replicas: 3 });

        let errors = errors_of(&with_spec("  image: i\n  env: [\"A=${1BAD}\"]\n"));
        assert!(
            errors[0].message.contains("is not a variable reference"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn image_references_follow_dockers_grammar() {
        for good in [
            "i",
            "img:2.5",
            "busybox",
            "assetd-test/busybox:1",
            "ghcr.io/example/mtcagent:2.5",
            "registry.local/press:1.0",
            "localhost/app",
            "localhost:5000/team/app:v1.2-rc_3",
            "[::1]:5000/app:1",
            "Registry.Example.com/app",
            "a--b/c__d/e.f:TAG_1",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ghcr.io/x/y:2.5@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image_reference(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "must not be empty"),
            ("a b", "whitespace"),
            ("a\u{7f}", "control"),
            ("a\u{feff}b", "`a\\u{feff}b` must be ASCII"),
            ("App:1", "must be lowercase"),
            ("team/App", "must be lowercase"),
            ("img:", "the tag ``"),
            ("img:-1", "the tag `-1`"),
            ("img:a/b", "`img:a` is not a registry"),
            ("img__x..y", "part `img__x..y`"),
            ("-img", "part `-img`"),
            ("img-", "part `img-`"),
            ("a___b", "part `a___b`"),
            ("team//app", "part ``"),
            ("/app", "part ``"),
            ("app/", "part ``"),
            (":1", "part ``"),
            ("a$b", "part `a$b`"),
            ("host.-x/app", "`host.-x` is not a registry"),
            ("host:99999999/app", "is not a registry"),
            ("host:/app", "is not a registry"),
            ("img@sha256:abc", "the digest"),
            ("img@sha256:", "the digest"),
            ("img@:0123456789abcdef0123456789abcdef", "the digest"),
            ("img@md5", "the digest"),
        ] {
            let got = check_image_reference(bad).expect_err(bad);
            assert!(got.contains(why), "{bad:?}: {got}");
        }
        let tag = "t".repeat(129);
        assert!(check_image_reference(&format!("img:{tag}")).is_err());
        assert_eq!(check_image_reference(&format!("img:{}", &tag[1..])), Ok(()));
        let name = "a".repeat(MAX_IMAGE_NAME_BYTES);
        assert_eq!(check_image_reference(&name), Ok(()));
        let got = check_image_reference(&format!("{name}a")).unwrap_err();
        assert!(got.contains("longer than 255"), "{got}");
        let got = check_image_reference(&"a".repeat(MAX_IMAGE_BYTES + 1)).unwrap_err();
        assert!(got.contains("513 bytes long"), "{got}");
    }

    #[test]
    fn expansion_is_bounded_per_value_and_per_document() {
        // 15 × 4 KiB stays under the 64 KiB limit, 16 do not.
        let at_limit = parse_one(&with_spec(&format!(
            "  image: img:1\n  env: [ \"A={}\" ]\n",
            "${LONG}".repeat(15)
        )));
        assert_eq!(at_limit.env[0].len(), 2 + 15 * 4096);
        let errors = errors_of(&with_spec(&format!(
            "  image: \"{}\"\n",
            "${LONG}".repeat(1000)
        )));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].message.contains("longer than 64 KiB"),
            "{}",
            errors[0]
        );
        // Reported once per document, and each document has its own budget.
        let line = format!("\"{}\"", "${LONG}".repeat(15));
        let document = with_spec(&format!(
            "  image: img:1\n  command: [ {} ]\n",
            vec![line; 40].join(", ")
        ));
        let errors = errors_of(&format!("{document}---\n{document}"));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[1].message.contains("add up to more than 1024 KiB"));
        assert_eq!(errors[0].field, "spec.command[17]");
    }

    #[test]
    fn only_what_expansion_adds_counts_against_its_limits() {
        // A long inline script that merely mentions `$1` and `$$` grows by
        // nothing: it is bounded like any scalar, not by the 64 KiB limit.
        let script = format!("echo $1 $$; {}", "x".repeat(70 * 1024));
        let parsed = parse_one(&with_spec(&format!(
            "  image: img:1\n  command: [ \"sh\", \"-c\", \"{script}\" ]\n"
        )));
        assert_eq!(
            parsed.command.as_ref().unwrap()[2],
            script.replace("$$", "$")
        );
    }

    #[test]
    fn expansion_is_bounded_per_file_over_many_documents() {
        let document = |i: usize| {
            format!(
                "---\napiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a{i}\nspec:\n  image: i\n  env: [ \"A={}\" ]\n",
                "${LONG}".repeat(15)
            )
        };
        let text: String = (0..300).map(document).collect();
        let errors = errors_of(&text);
        // 16 MiB holds 273 values of 15 × 4 KiB (and `A=`); each document
        // after them reports it once.
        assert_eq!(errors.len(), 300 - 273, "{:#?}", errors[0]);
        assert!(
            errors[0]
                .message
                .contains("file add up to more than 16 MiB"),
            "{}",
            errors[0]
        );
        assert_eq!(errors[0].line, 273 * 8 + 8, "the env line of document 274");
    }

    #[test]
    fn only_core_schema_tags_are_accepted() {
        let spec = parse_one(&with_spec(
            "  image: !!str img:1\n  env: !!map { A: !!int 1, B: ! 2 }\n  networks: !<tag:yaml.org,2002:seq> [ n ]\n",
        ));
        assert_eq!(spec.env, ["A=1", "B=2"]);
        let errors = errors_of(
            "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a1\n  labels: !!omap { a: b }\nspec:\n  image: img:1\n  env: { B: !!binary aGk= }\n  command: [ run, !x y ]\n",
        );
        let tags: Vec<(&str, &str)> = errors
            .iter()
            .filter(|e| e.message.starts_with("tag "))
            .map(|e| (e.field.as_str(), e.message.split('`').nth(1).unwrap()))
            .collect();
        assert_eq!(
            tags,
            [
                ("metadata.labels", "!!omap"),
                ("spec.env.B", "!!binary"),
                ("spec.command[1]", "!x")
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn env_map_and_list_are_both_accepted() {
        let list = parse_one(&with_spec("  image: i\n  env: [ \"B=2\", \"A=1=one\" ]\n"));
        let map = parse_one(&with_spec("  image: i\n  env: { B: 2, A: \"1=one\" }\n"));
        // A list keeps its order; a map is sorted by key.
        assert_eq!(list.env, ["B=2", "A=1=one"]);
        assert_eq!(map.env, ["A=1=one", "B=2"]);
        let map = parse_one(&with_spec(
            "  image: i\n  env: { ON: on, T: true, F: 010, N: 1e3 }\n",
        ));
        assert_eq!(map.env, ["F=010", "N=1e3", "ON=on", "T=true"]);
    }

    #[test]
    fn ports_are_sorted_and_protocols_come_from_the_key() {
        let spec = parse_one(&with_spec(
            "  image: i\n  ports: { \"9000/udp\": 9000, 8080: 80, \"9000\": 9001, 22: \"2222\" }\n",
        ));
        let ports: Vec<(u16, u16, Protocol)> = spec
            .ports
            .iter()
            .map(|p| (p.host, p.container, p.protocol))
            .collect();
        assert_eq!(
            ports,
            [
                (22, 2222, Protocol::Tcp),
                (8080, 80, Protocol::Tcp),
                (9000, 9001, Protocol::Tcp),
                (9000, 9000, Protocol::Udp)
            ]
        );
    }

    #[test]
    fn bind_mounts_follow_the_policy_by_whole_path_components() {
        let manifest = |source: &str| {
            with_spec(&format!(
                "  image: i\n  mounts: [ {{ type: bind, source: {source}, target: /m }} ]\n"
            ))
        };
        let allow = |prefixes: &[&str]| Policy {
            allow_bind: prefixes.iter().map(PathBuf::from).collect(),
        };
        let ok = |source: &str, policy: &Policy| {
            parse_file("t.yaml", &manifest(source), &test_env, policy).is_ok()
        };
        assert!(ok("/srv/cfg", &allow(&["/srv"])));
        assert!(ok("/srv", &allow(&["/srv/"])));
        assert!(!ok("/srv2/cfg", &allow(&["/srv"])));
        assert!(!ok("/srv/cfg", &allow(&[])));
        assert!(ok("/etc/passwd", &allow(&["/"])));
        assert!(!ok("relative/dir", &allow(&["/"])));
        let errors = parse_file("t.yaml", &manifest("/opt/x"), &test_env, &allow(&[])).unwrap_err();
        assert!(
            errors[0].message.contains("--allow-bind PREFIX"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn memory_sizes_and_cpus_are_exact() {
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_memory("64k"), Ok(64_000));
        assert_eq!(parse_memory("2Ki"), Ok(2048));
        assert_eq!(parse_memory("100b"), Ok(100));
        assert_eq!(parse_memory("7000000"), Ok(7_000_000));
        assert!(parse_memory("512m")
            .unwrap_err()
            .contains("unknown unit `m`"));
        assert!(parse_memory("0.5b")
            .unwrap_err()
            .contains("whole number of bytes"));
        assert!(parse_memory("Mi").is_err());
        let docker_style = parse_memory("512m").unwrap_err();
        assert!(docker_style.contains("`512Mi` here"), "{docker_style}");
        assert!(parse_memory("1.2.3Mi").is_err());
        assert_eq!(parse_decimal("0.5", 9), Some(500_000_000));
        assert_eq!(parse_decimal("2", 9), Some(2_000_000_000));
        assert_eq!(parse_decimal(".25", 9), Some(250_000_000));
        assert_eq!(parse_decimal("0.0000000001", 9), None);
        assert_eq!(parse_decimal("1e3", 9), None);
        let spec = parse_one(&with_spec(
            "  image: i\n  resources: { limits: { cpus: 2, memory: 6Mi } }\n",
        ));
        assert_eq!(spec.resources.limits.nano_cpus, Some(2_000_000_000));
    }

    #[test]
    fn error_text_has_the_file_line_column_field_form() {
        let errors = errors_of(&with_spec("  image: i\n  ports: { 0: 80 }\n"));
        assert_eq!(
            errors[0].to_string(),
            "t.yaml:7:12: spec.ports: host port 0 is out of range 1-65535"
        );
        let whole = ManifestError::whole_file("x.yaml", "is unreadable");
        assert_eq!(whole.to_string(), "x.yaml: is unreadable");
    }
}
