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

//!
//! The modules, in the order a file goes through them: [`yaml`] (the
//! position-carrying tree and the parser's limits), [`decoder`] (errors,
//! fields of an object, scalars), [`expand`] (`${VAR}`), then one module
//! per part of a document: [`document`], [`container`], [`resources`],
//! [`mounts`], [`rollout`]. [`shape`] holds the field tables the decoder
//! looks fields up in and the schema is generated from; the value types
//! (memory, CPUs, durations, image references, paths) are in
//! [`crate::model::spec::values`].

use std::fmt;
use std::path::PathBuf;

pub use crate::model::spec::SourcePos;
use crate::model::spec::{DeploySpec, Protocol, SpecHash};

pub mod compose;
mod container;
mod decoder;
mod document;
mod expand;
mod hooks;
mod mounts;
pub mod openfactory;
mod process;
mod resources;
mod rollout;
pub mod schema;
pub(crate) mod shape;
pub mod stack;
mod window;

pub use window::ParsedWindow;
mod yaml;

#[cfg(test)]
pub(crate) mod tests;

use decoder::Decoder;
use yaml::{yaml_options, Node};

pub use crate::model::spec::values::{MAX_IMAGE_BYTES, MIN_MEMORY_BYTES};

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "assetd/v1";
/// The only `kind` this build understands.
pub const KIND: &str = "Asset";
/// The kind of a sync window document (`crate::core::window`).
pub const WINDOW_KIND: &str = "SyncWindow";
/// Files larger than this are refused before parsing. A manifest is a few
/// hundred bytes per asset; this leaves room for tens of thousands.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Label keys with this prefix are set by assetd itself (ownership labels).
pub const RESERVED_LABEL_PREFIX: &str = "io.assetd.";
/// Most replicas one asset may ask for.
pub const MAX_REPLICAS: u64 = 1000;

/// What manifests may ask of the host. Manifests are root-equivalent (they
/// start containers), so the risky parts are opt-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Bind mount sources must be under one of these prefixes (whole path
    /// components). Empty refuses every bind mount; `/` allows all.
    pub allow_bind: Vec<PathBuf>,
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
    /// Position of the `metadata.name` value (of an app's `uuid`).
    pub pos: SourcePos,
    /// The field `pos` points at: `metadata.name`, or `apps.KEY.uuid` in
    /// an OpenFactory app file (for messages about the name).
    pub name_field: String,
    /// Each published port with the position of its key in `spec.ports`, in
    /// the order of `spec.ports`, for host-port conflict messages.
    pub ports_pos: Vec<(u16, Protocol, SourcePos)>,
    /// `spec.dependsOn`, each name with its position.
    pub depends_on: Vec<(crate::model::spec::AssetName, SourcePos)>,
    /// The networks, volumes, secrets and configs it names, each where.
    pub references: Vec<Reference>,
    /// `spec.hooks` (not part of the spec's hash).
    pub hooks: crate::model::hooks::Hooks,
    /// Its secrets' values, for its hooks' output (filled in with the
    /// secrets' versions).
    pub redactions: crate::model::hooks::Redactions,
}

/// A network, volume, secret or config an asset names: it must be
/// declared or present on the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub kind: crate::input::stack::ResourceKind,
    pub name: String,
    pub pos: SourcePos,
    /// `spec.networks[0]`, `spec.mounts[1].source`, ...
    pub field: String,
}

/// Everything one file declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedFile {
    pub assets: Vec<ParsedAsset>,
    pub resources: Vec<crate::input::stack::ParsedResource>,
    pub windows: Vec<ParsedWindow>,
    /// Keys accepted without effect, each where it is written (a Compose
    /// file's `build:` beside `image:`, `expose:`).
    pub notes: Vec<ManifestError>,
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
    parse_documents(file, text, env, policy).map(|parsed| parsed.assets)
}

/// Like [`parse_file`], with the Network, Volume, Secret and Config
/// documents as well.
pub fn parse_documents(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    policy: &Policy,
) -> Result<ParsedFile, Vec<ManifestError>> {
    parse_documents_in(file, text, env, policy, None).0
}

/// [`parse_documents`] of a file in `dir` on disk, which a Compose file
/// reads `.env` and `env_file:` beside. Also returns the files it read
/// there (or looked for), so that a change to one is a change to it.
pub fn parse_documents_in(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    policy: &Policy,
    dir: Option<&std::path::Path>,
) -> (Result<ParsedFile, Vec<ManifestError>>, Vec<PathBuf>) {
    if text.len() > MAX_FILE_BYTES {
        let message = format!(
            "file is {} bytes; manifest files are limited to {} bytes",
            text.len(),
            MAX_FILE_BYTES
        );
        return (Err(vec![ManifestError::whole_file(file, message)]), vec![]);
    }
    // The parser would transcode a byte order mark away and shift every
    // offset by it; dropping it here keeps offsets into `text` exact.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut decoder = Decoder::new(file, text, env, policy);
    decoder.dir = dir;
    let mut assets = Vec::new();
    // The fast path parses the whole text at once. If that fails (or the
    // file is larger than the per-document budget allows in total), the
    // streaming reader parses it again document by document, which
    // recovers after an error so that each document reports its own.
    match serde_saphyr::from_multiple_with_options::<Node>(text, yaml_options()) {
        Ok(documents) => {
            for root in &documents {
                assets.extend(decoder.root(root));
            }
        }
        Err(_) => {
            let mut reader = text.as_bytes();
            for document in serde_saphyr::read_with_options::<_, Node>(&mut reader, yaml_options())
            {
                match document {
                    Ok(root) => assets.extend(decoder.root(&root)),
                    Err(err) => decoder.yaml_error(&err),
                }
            }
        }
    }
    let side_files = std::mem::take(&mut decoder.side_files);
    let result = if decoder.errors.is_empty() {
        Ok(ParsedFile {
            assets,
            resources: decoder.resources,
            windows: decoder.windows,
            notes: decoder.notes,
        })
    } else {
        let mut errors = decoder.errors;
        // Stable: problems at one position keep the order they were found.
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    };
    (result, side_files)
}

/// Like [`parse_file`], for raw file contents: invalid UTF-8 is reported
/// with the position of the first bad byte.
pub fn parse_bytes(
    file: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    policy: &Policy,
) -> Result<ParsedFile, Vec<ManifestError>> {
    parse_bytes_in(file, bytes, env, policy, None).0
}

/// [`parse_bytes`] of a file in `dir` (see [`parse_documents_in`]).
pub fn parse_bytes_in(
    file: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    policy: &Policy,
    dir: Option<&std::path::Path>,
) -> (Result<ParsedFile, Vec<ManifestError>>, Vec<PathBuf>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_documents_in(file, text, env, policy, dir),
        Err(err) => {
            let good = &bytes[..err.valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // The prefix is valid UTF-8, so columns count characters.
            let column = 1 + String::from_utf8_lossy(&good[line_start..]).chars().count();
            (
                Err(vec![ManifestError {
                    file: file.to_string(),
                    line,
                    column,
                    field: String::new(),
                    message: format!(
                        "invalid UTF-8 (byte 0x{:02x}); manifests must be UTF-8 text",
                        bytes[err.valid_up_to()]
                    ),
                }]),
                vec![],
            )
        }
    }
}

/// The keys each object accepts, in both spellings where it has two (the
/// schema's tests compare them with the schema's objects).
pub fn shapes() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out = Vec::new();
    for shape in shape::ALL {
        for &spelling in shape.spellings() {
            let name = match spelling {
                shape::Spelling::Friendly => shape.name,
                shape::Spelling::Engine => shape.engine_name.unwrap_or(shape.name),
            };
            out.push((name, shape.keys(spelling)));
        }
    }
    out
}
