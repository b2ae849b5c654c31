//! `${VAR}` and `${VAR:-default}` expansion of scalar values, bounded so
//! that a few bytes as written cannot ask for gigabytes.

use super::decoder::Decoder;
use super::yaml::{Node, MAX_EXPANDED_VALUE_BYTES, MAX_SCALAR_BYTES};
use super::MAX_FILE_BYTES;

impl Decoder<'_> {
    /// Expands `${VAR}` and `${VAR:-default}` from the environment and
    /// `$$` to `$`. Any other `$` is kept, so shell snippets like
    /// `echo $HOME` pass through untouched.
    ///
    /// The parser's budget only sees the text as written, so the result is
    /// bounded here: a few bytes of `${LONG}` repeated would otherwise ask
    /// for gigabytes (and the daemon reparses on every pass).
    pub(super) fn expand(&mut self, s: &str, node: &Node, path: &str) -> Option<String> {
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
            let bare = self.compose.is_some().then(|| bare_name(after)).flatten();
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(name) = bare {
                // Compose reads `$VAR` as `${VAR}`.
                out.push_str(&self.reference(name, node, path)?);
                rest = &after[name.len()..];
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    self.error(
                        node,
                        path,
                        format!("unterminated `${{` in `{s}`; write `$$` for a literal `$`"),
                    );
                    return None;
                };
                out.push_str(&self.reference(&body[..end], node, path)?);
                rest = &body[end + 1..];
                // Checked after each reference: one variable adds at most
                // its own length (the kernel caps those at 128 KiB). Only
                // what expansion added counts: the text as written is
                // already bounded by the parser's budget.
                let grown = out.len().saturating_sub(s.len() - rest.len());
                if !self.within_expansion_limits(grown, node, path) {
                    return None;
                }
            } else if self.compose.is_some() {
                self.error(
                    node,
                    path,
                    format!("invalid interpolation in `{s}`: `$` must start $VAR or ${{VAR}}; write `$$` for a literal `$`"),
                );
                return None;
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

    /// The value of one `${inner}`: the variable, or its default when it
    /// is unset (or empty, with `:-`). Reports a malformed or unset one.
    fn reference(&mut self, inner: &str, node: &Node, path: &str) -> Option<String> {
        if self.compose.is_some() {
            return self.compose_reference(inner, node, path);
        }
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
            (Some(value), Some(default)) if value.is_empty() => Some(default.to_string()),
            (Some(value), _) => Some(value),
            (None, Some(default)) => Some(default.to_string()),
            (None, None) => {
                self.error(
                    node,
                    path,
                    format!("environment variable `{name}` is not set; set it or write ${{{name}:-default}}"),
                );
                None
            }
        }
    }

    /// One `${inner}` as Compose reads it: `VAR`, `VAR:-default` (also
    /// when empty), `VAR-default` (only when unset), `VAR:?message` (an
    /// error when unset or empty), `VAR?message` (when unset). An unset
    /// plain `${VAR}` is empty, as in Compose. Values come from assetd's
    /// environment, then from the `.env` file beside the Compose file.
    fn compose_reference(&mut self, inner: &str, node: &Node, path: &str) -> Option<String> {
        let split = inner.find([':', '-', '?']);
        let (name, op) = match split {
            Some(j) => (&inner[..j], &inner[j..]),
            None => (inner, ""),
        };
        if !is_env_name(name) {
            self.error(
                node,
                path,
                format!("`${{{inner}}}` is not a variable reference; Compose takes ${{VAR}}, ${{VAR:-default}}, ${{VAR-default}}, ${{VAR:?message}} or ${{VAR?message}}, and `$$` for a literal `$`"),
            );
            return None;
        }
        if op.contains("${") {
            self.error(
                node,
                path,
                format!("nested `${{…}}` is not supported in `${{{inner}}}`; the default or message must be plain text"),
            );
            return None;
        }
        let value = (self.env)(name).or_else(|| {
            self.compose
                .as_ref()
                .and_then(|dotenv| dotenv.get(name).cloned())
        });
        let empty = value.as_deref().is_none_or(str::is_empty);
        let required = |message: &str| {
            let why = if message.is_empty() {
                "is required".to_string()
            } else {
                message.to_string()
            };
            format!(
                "variable `{name}` {}: {why}",
                if value.is_none() {
                    "is not set"
                } else {
                    "is empty"
                }
            )
        };
        let (result, problem) = if let Some(default) = op.strip_prefix(":-") {
            (
                if empty {
                    default.to_string()
                } else {
                    value.clone().unwrap_or_default()
                },
                None,
            )
        } else if let Some(default) = op.strip_prefix('-') {
            (value.clone().unwrap_or_else(|| default.to_string()), None)
        } else if let Some(message) = op.strip_prefix(":?") {
            (
                value.clone().unwrap_or_default(),
                empty.then(|| required(message)),
            )
        } else if let Some(message) = op.strip_prefix('?') {
            (
                value.clone().unwrap_or_default(),
                value.is_none().then(|| required(message)),
            )
        } else if op.is_empty() {
            (value.clone().unwrap_or_default(), None)
        } else {
            (String::new(), Some(format!("`${{{inner}}}` is not a variable reference; Compose takes ${{VAR}}, ${{VAR:-default}}, ${{VAR-default}}, ${{VAR:?message}} or ${{VAR?message}}")))
        };
        match problem {
            Some(message) => {
                self.error(node, path, message);
                None
            }
            None => Some(result),
        }
    }

    /// Whether a value that expansion has grown by `len` bytes so far
    /// stays within the per-value limit and the document's and the file's
    /// expansion budgets; reports it when not.
    pub(super) fn within_expansion_limits(&mut self, len: usize, node: &Node, path: &str) -> bool {
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
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the names `${...}` may refer to.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The variable name of an unbraced `$VAR` (Compose only), if `after`
/// (the text after the `$`) starts with one.
fn bare_name(after: &str) -> Option<&str> {
    let end = after
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    let name = &after[..end];
    is_env_name(name).then_some(name)
}
