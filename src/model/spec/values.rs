//! The value types of a manifest: each one parses (`FromStr`) the text a
//! person writes into the exact form the spec holds (bytes, nano-CPUs,
//! nanoseconds, a normal path) and says in its error what to write instead.
//!
//! They live beside [`DeploySpec`](super::DeploySpec) rather than in the
//! decoder so that the schema (`schema.rs`) reads its unit patterns from
//! the same tables the parsers use, and so that code outside `manifest`
//! can check a value the same way.

use std::fmt;
use std::path::{Component, Path};
use std::str::FromStr;

/// Longest image reference accepted. Docker refuses a repository name
/// (registry and path) over 255 characters; a tag and a digest come on
/// top of it.
pub const MAX_IMAGE_BYTES: usize = 512;
/// Docker's limit on the repository name part of an image reference.
pub(crate) const MAX_IMAGE_NAME_BYTES: usize = 255;
/// Docker refuses memory limits and reservations below 6 MiB
/// (`linuxMinMemory` in the engine since 20.10), so we refuse them here
/// rather than at deploy time.
pub const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;

/// A value that does not parse; the text says why and what to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

impl From<String> for InvalidValue {
    fn from(message: String) -> Self {
        InvalidValue(message)
    }
}

/// `(Ki|Mi|k|M)`: one of `units` as a regular expression group (ECMA 262,
/// as JSON Schema reads it), longest first so `Mi` is tried before `M`.
fn unit_group(units: &[&str]) -> String {
    let mut units: Vec<&str> = units.iter().copied().filter(|u| !u.is_empty()).collect();
    units.sort_by_key(|u| std::cmp::Reverse(u.len()));
    format!("({})", units.join("|"))
}

/// Memory in bytes: `512Mi`, `1G`, `1.5Gi`, `1048576`. Units are
/// Kubernetes': k, M, G, T are powers of 1000, Ki, Mi, Gi, Ti powers of
/// 1024; `b` or none is bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryBytes(pub i64);

impl MemoryBytes {
    /// The units [`FromStr`] accepts.
    pub fn units() -> impl Iterator<Item = &'static str> {
        MEMORY_UNITS.iter().map(|(unit, _)| *unit)
    }

    /// What [`FromStr`] accepts, as a regular expression (for the schema).
    pub fn pattern() -> String {
        let units: Vec<&str> = Self::units().collect();
        // The unit is optional: the table's "" is plain bytes.
        format!(
            "^\\s*([0-9]+\\.?[0-9]*|\\.[0-9]+){}?\\s*$",
            unit_group(&units)
        )
    }
}

impl FromStr for MemoryBytes {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        let bytes = parse_memory(text)?;
        i64::try_from(bytes)
            .map(MemoryBytes)
            .map_err(|_| InvalidValue(format!("memory `{text}` is too large")))
    }
}

/// Memory as OpenFactory writes it: a number with a 1024-based unit, any
/// case (`k`, `kb`, `m`, `mb`, `mi`, `g`, `gb`, `gi`: `512Mi`, `1g`,
/// `1.5GB`); a bare number is bytes. Fractions of a byte are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BinaryMemoryBytes(pub i64);

impl BinaryMemoryBytes {
    /// The units [`FromStr`] accepts, lower case, with their power of 1024.
    pub const UNITS: [(&'static str, u32); 8] = [
        ("k", 1),
        ("kb", 1),
        ("m", 2),
        ("mb", 2),
        ("mi", 2),
        ("g", 3),
        ("gb", 3),
        ("gi", 3),
    ];

    /// What [`FromStr`] accepts, as a regular expression (for the schema).
    pub fn pattern() -> String {
        "^\\s*([0-9]+\\.?[0-9]*|\\.[0-9]+)\\s*([kK][bB]?|[mMgG][bBiI]?)?\\s*$".to_string()
    }
}

impl FromStr for BinaryMemoryBytes {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        let wrong = || {
            InvalidValue(format!(
                "memory `{text}` must be a number of bytes or a number with a unit k, kb, m, mb, mi, g, gb or gi (powers of 1024), e.g. 512Mi"
            ))
        };
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let power = match Self::UNITS.iter().find(|(u, _)| *u == unit) {
            Some((_, power)) => *power,
            None if unit.is_empty() => 0,
            None => return Err(wrong()),
        };
        // Nine decimal places are plenty: 1024³ × 10⁹ still fits a u128.
        let scaled = parse_decimal(number, 9).ok_or_else(wrong)?;
        let bytes = scaled * 1024u128.pow(power) / 1_000_000_000;
        i64::try_from(bytes)
            .map(BinaryMemoryBytes)
            .map_err(|_| InvalidValue(format!("memory `{text}` is too large")))
    }
}

/// CPUs in billionths (Docker's `NanoCPUs`): `cpus: 1.5` is 1 500 000 000,
/// computed from the decimal text so no float rounding can change a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NanoCpus(pub i64);

impl NanoCpus {
    /// What [`FromStr`] accepts, as a regular expression (for the schema).
    pub const PATTERN: &'static str = "^\\s*([0-9]+\\.?[0-9]{0,9}|\\.[0-9]{1,9})\\s*$";
}

impl FromStr for NanoCpus {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        let positive = || InvalidValue(format!("cpus must be greater than 0, found `{text}`"));
        match parse_decimal(text, 9) {
            Some(0) => Err(positive()),
            Some(nanos) => i64::try_from(nanos)
                .map(NanoCpus)
                .map_err(|_| InvalidValue(format!("cpus `{text}` is too large"))),
            None if text.starts_with('-') => Err(positive()),
            None => Err(InvalidValue(format!(
                "cpus `{text}` must be a decimal number such as 0.5 or 2 (at most 9 decimal places)"
            ))),
        }
    }
}

impl fmt::Display for NanoCpus {
    /// As CPUs, e.g. `1.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cpus_label(self.0))
    }
}

/// A duration in nanoseconds, written Go's way: `5s`, `500ms`, `1m30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationNs(pub i64);

impl DurationNs {
    /// What [`FromStr`] accepts, as a regular expression (for the schema).
    pub fn pattern() -> String {
        let units: Vec<&str> = DURATION_UNITS.iter().map(|(u, _)| *u).collect();
        format!("^\\s*([0-9]+{})+\\s*$", unit_group(&units))
    }
}

impl FromStr for DurationNs {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        Ok(DurationNs(parse_duration_ns(text.trim())?))
    }
}

/// An image reference that Docker's reference parser accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef(pub String);

impl FromStr for ImageRef {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        check_image_reference(text)?;
        Ok(ImageRef(text.to_string()))
    }
}

/// An absolute path in normal form (see [`normal_absolute_path`]). The
/// error is the end of a sentence about the path (`must not contain ..`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsPath(pub String);

impl FromStr for AbsPath {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        normal_absolute_path(text)
            .map(AbsPath)
            .map_err(|why| InvalidValue(why.to_string()))
    }
}

/// A network or volume name, by Docker's rule `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerName(pub String);

impl DockerName {
    /// What [`FromStr`] accepts, as a regular expression (for the schema).
    pub const PATTERN: &'static str = "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$";
}

impl FromStr for DockerName {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        if is_docker_object_name(text) {
            Ok(DockerName(text.to_string()))
        } else {
            Err(InvalidValue(format!(
                "`{text}` may contain only letters, digits, `_`, `.` and `-`, and must start with a letter or digit"
            )))
        }
    }
}

/// Who a container's process runs as: `uid`, `uid:gid`, `name` or
/// `name:group`, as Docker's `User` takes it. Numeric IDs must fit a
/// `uid_t`; root needs no name (`0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessUser(pub String);

impl ProcessUser {
    /// What [`FromStr`] accepts, as a regular expression (for the schema).
    pub const PATTERN: &'static str =
        "^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$";
}

impl FromStr for ProcessUser {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        let wrong = || {
            InvalidValue(format!(
                "`{text}` is not a user; write `uid`, `uid:gid`, `name` or `name:group` (e.g. 1000:1000)"
            ))
        };
        let mut parts = text.split(':');
        let (user, group) = (parts.next().unwrap_or_default(), parts.next());
        if parts.next().is_some() {
            return Err(wrong());
        }
        for part in std::iter::once(user).chain(group) {
            let starts_well = part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            let chars_ok = part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !starts_well || !chars_ok || part.len() > 32 {
                return Err(wrong());
            }
            if part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u32>().is_err() {
                return Err(InvalidValue(format!(
                    "`{part}` in user `{text}` is beyond the largest uid/gid (4294967295)"
                )));
            }
        }
        Ok(ProcessUser(text.to_string()))
    }
}

const DURATION_UNITS: [(&str, i128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

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
        let unit = &rest[..unit_len];
        let Some(&(_, factor)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(wrong());
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

/// Checks an image reference against the grammar of Docker's reference
/// parser (distribution's `reference` package):
/// `[HOST[:PORT]/]PATH[:TAG][@ALGORITHM:HEX]`. Refusing here points at
/// the manifest line instead of a failed pull on every pass.
fn check_image_reference(image: &str) -> Result<(), String> {
    check_image_characters(image)?;
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

/// Length and characters: what can be said of an image reference before
/// its grammar.
fn check_image_characters(image: &str) -> Result<(), String> {
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
