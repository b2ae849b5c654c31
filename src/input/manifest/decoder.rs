//! Step 2 of parsing: the decoder's state and the helpers every object
//! uses: positions and errors, the fields of an object by its table
//! ([`Shape`]), scalars as strings, numbers and booleans, tags. The
//! objects themselves are decoded in the sibling modules, one
//! `impl Decoder` each.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_saphyr::{Location, MessageFormatter, UserMessageFormatter};

use super::shape::{Fields, Shape, Spelling};
use super::yaml::{budget_message, is_core_tag, Kind, Node, YAML_TAG_PREFIX};
use super::{ManifestError, Policy, SourcePos};

/// Decodes the documents of one file, collecting every problem.
pub(super) struct Decoder<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) policy: &'a Policy,
    pub(super) errors: Vec<ManifestError>,
    /// Byte offset of every character, built only when a non-ASCII file
    /// needs the source text of a scalar.
    pub(super) char_offsets: OnceCell<Vec<usize>>,
    /// Bytes produced by `${…}` expansion in the current document, bounded
    /// by the parser's scalar budget.
    pub(super) expanded_bytes: usize,
    /// The same over the whole file, bounded by [`MAX_FILE_BYTES`]: many
    /// small documents would otherwise add up to gigabytes.
    pub(super) expanded_file_bytes: usize,
    /// An expansion budget ran out in the current document (and was
    /// reported).
    pub(super) expansion_exhausted: bool,
    /// The valid Network, Volume, Secret and Config documents so far.
    pub(super) resources: Vec<crate::input::stack::ParsedResource>,
    /// The valid SyncWindow documents so far.
    pub(super) windows: Vec<super::window::ParsedWindow>,
    /// What the current asset refers to by name (see
    /// [`super::Reference`]).
    pub(super) references: Vec<super::Reference>,
    /// Inside a Compose file: `${…}` follows Compose's rules, and these
    /// are the variables of the `.env` file beside it.
    pub(super) compose: Option<std::collections::BTreeMap<String, String>>,
    /// The directory the file is in, for the files a Compose file reads
    /// beside it (`.env`, `env_file`); `None` when parsing text alone.
    pub(super) dir: Option<&'a std::path::Path>,
    /// The files read beside this one, so a change to them is a change
    /// of this file.
    pub(super) side_files: Vec<std::path::PathBuf>,
    /// The current asset's `spec.hooks`.
    pub(super) hooks: crate::model::hooks::Hooks,
    /// What is accepted without effect, said where it is written
    /// (`validate` prints them; nothing is silently dropped).
    pub(super) notes: Vec<ManifestError>,
}

/// `path.key`, or `key` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Decoder<'a> {
    pub(super) fn new(
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
            resources: Vec::new(),
            windows: Vec::new(),
            references: Vec::new(),
            compose: None,
            dir: None,
            side_files: Vec::new(),
            hooks: Default::default(),
            notes: Vec::new(),
        }
    }

    pub(super) fn pos(&self, node: &Node) -> SourcePos {
        self.pos_of(node.at)
    }

    pub(super) fn pos_of(&self, loc: Location) -> SourcePos {
        SourcePos {
            file: self.file.to_string(),
            line: loc.line() as usize,
            column: loc.column() as usize,
        }
    }

    pub(super) fn error(&mut self, node: &Node, field: &str, message: impl Into<String>) {
        self.errors.push(ManifestError {
            file: self.file.to_string(),
            line: node.at.line() as usize,
            column: node.at.column() as usize,
            field: printable(field),
            message: printable(&message.into()),
        });
    }

    /// A note at `node`: something accepted that changes nothing.
    pub(super) fn note(&mut self, node: &Node, field: &str, message: impl Into<String>) {
        self.notes.push(ManifestError {
            file: self.file.to_string(),
            line: node.at.line() as usize,
            column: node.at.column() as usize,
            field: printable(field),
            message: printable(&message.into()),
        });
    }

    /// A parser error: syntax, duplicate key or a budget limit.
    pub(super) fn yaml_error(&mut self, err: &serde_saphyr::Error) {
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

    /// The fields of a mapping in either spelling of `shape`. Unknown keys
    /// and mixed spellings are reported; `None` when `node` is not a
    /// mapping.
    pub(super) fn object<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        shape: &'static Shape,
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.wrong_type(node, path, "a mapping");
            return None;
        };
        let spelling = self.spelling_of(entries, shape);
        let mut fields = Fields::new(shape, spelling);
        let names = shape.keys(spelling);
        let other = (shape.engine_name.is_some()).then(|| match spelling {
            Spelling::Friendly => shape.keys(Spelling::Engine),
            Spelling::Engine => shape.keys(Spelling::Friendly),
        });
        for (key, value) in entries {
            let key_text = self.key_text(key);
            if let Some(i) = names.iter().position(|n| *n == key_text) {
                fields.set(i, value, true);
            } else if let Some(i) = other
                .as_ref()
                .and_then(|o| o.iter().position(|n| *n == key_text))
            {
                // Decode it anyway, so the one mistake is reported once
                // rather than again as a missing field.
                fields.set(i, value, false);
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
            } else if self.compose.is_some() && key_text.starts_with("x-") {
                // Compose's extension fields hold anchors; never applied.
            } else {
                let message = match self
                    .compose
                    .as_ref()
                    .and_then(|_| super::compose::refused(shape, &key_text))
                {
                    Some(why) => {
                        format!("the Compose key `{key_text}` is not applied by assetd: {why}")
                    }
                    None => unknown_field_message(&key_text, &names),
                };
                self.error(key, &join(path, &key_text), message);
            }
        }
        Some(fields)
    }

    /// The first key that belongs to either spelling decides which one an
    /// object uses.
    fn spelling_of(&self, entries: &[(Node, Node)], shape: &Shape) -> Spelling {
        if shape.engine_name.is_none() {
            return Spelling::Friendly;
        }
        for (key, _) in entries {
            let key = self.key_text(key);
            if let Some(field) = shape
                .fields
                .iter()
                .find(|f| f.key == key || f.engine == Some(&*key))
            {
                return if field.key == key {
                    Spelling::Friendly
                } else {
                    Spelling::Engine
                };
            }
        }
        Spelling::Friendly
    }

    /// The field `key` of `fields`, reported when missing. `parent` is
    /// the object, `path` its field path.
    pub(super) fn required<'n>(
        &mut self,
        fields: &Fields<'n>,
        key: &str,
        parent: &Node,
        path: &str,
    ) -> Option<&'n Node> {
        // The table says which fields are required; the schema reads it.
        debug_assert!(
            fields.field(key).required,
            "`{key}` is not required in the table"
        );
        let value = fields.get(key);
        if value.is_none() {
            let name = fields.name(key);
            let at = fields.raw(key).unwrap_or(parent);
            self.error(
                at,
                &join(path, name),
                format!("missing required field `{name}`"),
            );
        }
        value
    }

    pub(super) fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        let found = node.kind.describe();
        self.error(node, field, format!("expected {expected}, found {found}"));
    }

    /// A mapping key as text (keys are read as written: `5000`, `on`).
    pub(super) fn key_text<'n>(&self, key: &'n Node) -> Cow<'n, str>
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
    pub(super) fn scalar_text(&self, node: &Node) -> Option<&'a str> {
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
    pub(super) fn string(&mut self, node: &Node, path: &str) -> Option<String> {
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
    pub(super) fn integer(&mut self, node: &Node, path: &str) -> Option<i128> {
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

    pub(super) fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
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

    pub(super) fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, path, "a list");
                None
            }
        }
    }

    /// Reports every tag outside YAML's core schema, anywhere in the
    /// document: saphyr would decode `!!binary` silently and ignore the
    /// others, so what the file says and what runs would differ.
    pub(super) fn tags(&mut self, node: &Node, path: &str) {
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
}

/// Longest message kept; messages quote values from the file, which may be
/// huge.
pub(super) const MAX_MESSAGE_CHARS: usize = 400;

/// Messages go to terminals and logs on one line: control characters from
/// the file are escaped and very long text is cut.
pub(super) fn printable(text: &str) -> String {
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
pub(super) fn parse_int(text: &str) -> Option<i128> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
