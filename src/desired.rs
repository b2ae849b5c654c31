//! The manifests directory → the desired set of assets, plus everything
//! that must be held rather than acted on.
//!
//! Reading is deliberately conservative, because the planner treats "not
//! desired" as "prune":
//!
//! - Only complete files count: `*.yaml` / `*.yml`, no dotfiles or hidden
//!   directories (git's `.git`, git-sync's and Kubernetes' `..data`
//!   internals), no editor temp or backup names. Symlinked files are
//!   followed (the `foo.yaml -> ..data/foo.yaml` layout of git-sync and
//!   ConfigMaps); symlinked directories are not, so there are no cycles.
//! - A file that fails to parse is reported in [`Desired::invalid_files`];
//!   the assets it declared last are held by the planner, never pruned.
//!   A directory that cannot be read is reported the same way, with a key
//!   ending in `/` that covers every file below it.
//! - A name declared twice, or two assets publishing the same host port,
//!   put every asset involved in [`Desired::held`]: neither wins.
//! - With [`LoadOptions::check_permissions`], files and directories that
//!   others could write are refused like sshd's `StrictModes`: manifests
//!   start containers, so they are root-equivalent.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::manifest::{self, ManifestError, ParsedAsset, Policy, SourcePos};
use crate::spec::{AssetName, DeploySpec, SpecHash};

/// How to read the manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub policy: Policy,
    /// Refuse directories and files writable by group or others, or owned
    /// by a user other than root or the one assetd runs as.
    pub check_permissions: bool,
}

/// One asset the manifests ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredAsset {
    pub spec: DeploySpec,
    pub hash: SpecHash,
    /// The file that declares it, relative to the manifests directory
    /// (recorded in the `io.assetd.source` label).
    pub source: String,
    /// Position of its `metadata.name`.
    pub pos: SourcePos,
}

/// What the manifests directory itself looked like. Anything but
/// `Present` means "we do not know what is desired": the planner must not
/// prune on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirState {
    /// Read; `files` manifest files were found (valid or not).
    Present { files: usize },
    Missing,
    Unreadable(String),
    /// Unsafe permissions on the directory itself; the reason says how to
    /// fix them.
    Refused(String),
}

/// The desired state as the manifests describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub dir: DirState,
    /// Assets to converge to: valid, uniquely named, without conflicts.
    pub assets: BTreeMap<AssetName, DesiredAsset>,
    /// Files that failed to read, parse or validate (relative path → its
    /// errors). A key ending in `/` is a directory that could not be read
    /// or was refused; it covers every file below it (see
    /// [`Desired::invalid_source`]). Assets such files last declared are
    /// held by the planner, which finds them via their recorded source.
    pub invalid_files: BTreeMap<String, Vec<ManifestError>>,
    /// Names that must be held although no file is invalid as a whole:
    /// declared more than once, or publishing a host port another asset
    /// publishes too. Name → reason (the full error text).
    pub held: BTreeMap<AssetName, String>,
    /// The errors behind `held`, one per declaration involved.
    pub conflicts: Vec<ManifestError>,
}

impl Desired {
    /// Every problem, sorted by file, line and column.
    pub fn errors(&self) -> Vec<ManifestError> {
        let mut errors: Vec<ManifestError> = self
            .invalid_files
            .values()
            .flatten()
            .chain(&self.conflicts)
            .cloned()
            .collect();
        errors.sort();
        errors
    }

    /// Manifest files found, valid or not (0 unless the directory is
    /// present).
    pub fn file_count(&self) -> usize {
        match self.dir {
            DirState::Present { files } => files,
            _ => 0,
        }
    }

    /// True when every manifest file was read and is valid and no asset is
    /// held.
    pub fn is_clean(&self) -> bool {
        matches!(self.dir, DirState::Present { .. })
            && self.invalid_files.is_empty()
            && self.held.is_empty()
    }

    /// The errors that make `source` (a file relative to the manifests
    /// directory, as recorded on an asset) untrustworthy: its own, or
    /// those of a directory above it that could not be read.
    pub fn invalid_source(&self, source: &str) -> Option<&[ManifestError]> {
        if let Some(errors) = self.invalid_files.get(source) {
            return Some(errors);
        }
        let mut prefix = source;
        while let Some(i) = prefix.rfind('/') {
            prefix = &prefix[..i];
            if let Some(errors) = self.invalid_files.get(&source[..i + 1]) {
                return Some(errors);
            }
        }
        None
    }
}

/// Reads the manifests directory `dir`. Sources are relative to it.
pub fn load_dir(dir: &Path, opts: &LoadOptions, env: &dyn Fn(&str) -> Option<String>) -> Desired {
    let mut loader = Loader::new(opts, env);
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return loader.finish(DirState::Missing),
        Err(err) => {
            return loader.finish(DirState::Unreadable(format!("{}: {err}", dir.display())));
        }
    };
    if !meta.is_dir() {
        return loader.finish(DirState::Unreadable(format!("{} is not a directory", dir.display())));
    }
    if opts.check_permissions {
        if let Some(why) = insecure(&meta) {
            let path = dir.display();
            return loader.finish(DirState::Refused(format!(
                "manifest directory {path} {why}; manifests start containers, so only root or assetd's user may change them: {}",
                fix_hint(&meta, &path.to_string())
            )));
        }
    }
    if let Err(err) = loader.walk(dir, "", 0) {
        return loader.finish(DirState::Unreadable(format!("{}: {err}", dir.display())));
    }
    let files = loader.files;
    loader.finish(DirState::Present { files })
}

/// Reads the given files and directories (`assetd validate PATH...`).
/// Files are read whatever their name; directories as by [`load_dir`].
/// Sources are the paths as given (`manifests/cell3.yaml`).
pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions, env: &dyn Fn(&str) -> Option<String>) -> Desired {
    let mut loader = Loader::new(opts, env);
    for path in paths {
        let shown = path.display().to_string();
        match fs::metadata(path) {
            Err(err) => loader.invalid(&shown, format!("cannot read: {err}")),
            Ok(meta) if meta.is_dir() => {
                let prefix = format!("{}/", shown.trim_end_matches('/'));
                if opts.check_permissions {
                    if let Some(why) = insecure(&meta) {
                        loader.invalid(&prefix, format!("directory {why}; {}", fix_hint(&meta, &shown)));
                        continue;
                    }
                }
                if let Err(err) = loader.walk(path, &prefix, 0) {
                    loader.invalid(&prefix, format!("cannot read directory: {err}"));
                }
            }
            Ok(_) => loader.load_file(path, &shown),
        }
    }
    let files = loader.files;
    loader.finish(DirState::Present { files })
}

/// Directories deeper than this below the manifests directory are not
/// read (and reported).
const MAX_DIR_DEPTH: usize = 32;

struct Loader<'a> {
    opts: &'a LoadOptions,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Manifest files found, valid or not.
    files: usize,
    /// Every declaration of every valid file, with its source.
    parsed: Vec<(String, ParsedAsset)>,
    invalid_files: BTreeMap<String, Vec<ManifestError>>,
}

impl<'a> Loader<'a> {
    fn new(opts: &'a LoadOptions, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Loader {
            opts,
            env,
            files: 0,
            parsed: Vec::new(),
            invalid_files: BTreeMap::new(),
        }
    }

    fn invalid(&mut self, source: &str, message: String) {
        self.invalid_files
            .entry(source.to_string())
            .or_default()
            .push(ManifestError::whole_file(source, message));
    }

    /// Reads `dir` (shown as `prefix`, which is empty or ends in `/`) and
    /// below, in name order. Fails only if `dir` itself cannot be listed.
    fn walk(&mut self, dir: &Path, prefix: &str, depth: usize) -> io::Result<()> {
        let mut entries: Vec<(String, PathBuf, fs::FileType)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                // Not UTF-8: cannot be one of ours unless it ends in
                // `.yaml`, which is worth a word.
                let lossy = name.to_string_lossy();
                if is_manifest_name(&lossy) {
                    let source = format!("{prefix}{lossy}");
                    self.invalid(&source, "file name is not valid UTF-8; rename it".to_string());
                }
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            entries.push((name.to_string(), entry.path(), entry.file_type()?));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, path, file_type) in entries {
            let source = format!("{prefix}{name}");
            if file_type.is_dir() {
                self.subdir(&path, &source, depth + 1);
            } else if !is_manifest_name(&name) {
                continue;
            } else if file_type.is_symlink() {
                // Follow links to files (git-sync / ConfigMap layout), not
                // to directories: a link back up would loop.
                match fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => self.load_file(&path, &source),
                    Ok(_) => {}
                    Err(err) => {
                        self.files += 1;
                        self.invalid(&source, format!("cannot follow symlink: {err}"));
                    }
                }
            } else if file_type.is_file() {
                self.load_file(&path, &source);
            }
            // Sockets, FIFOs and devices are never manifests; opening a
            // FIFO would block.
        }
        Ok(())
    }

    fn subdir(&mut self, path: &Path, source: &str, depth: usize) {
        let key = format!("{source}/");
        if depth > MAX_DIR_DEPTH {
            self.invalid(&key, format!("directories nested more than {MAX_DIR_DEPTH} deep are not read"));
            return;
        }
        if self.opts.check_permissions {
            match fs::symlink_metadata(path) {
                Ok(meta) => {
                    if let Some(why) = insecure(&meta) {
                        let shown = path.display().to_string();
                        self.invalid(&key, format!("directory {why}; {}", fix_hint(&meta, &shown)));
                        return;
                    }
                }
                Err(err) => {
                    self.invalid(&key, format!("cannot read directory: {err}"));
                    return;
                }
            }
        }
        if let Err(err) = self.walk(path, &key, depth) {
            self.invalid(&key, format!("cannot read directory: {err}"));
        }
    }

    /// Reads, checks and parses one manifest file.
    fn load_file(&mut self, path: &Path, source: &str) {
        self.files += 1;
        match self.read(path) {
            Ok(bytes) => match manifest::parse_bytes(source, &bytes, self.env, &self.opts.policy) {
                Ok(assets) => self.parsed.extend(assets.into_iter().map(|a| (source.to_string(), a))),
                Err(errors) => {
                    self.invalid_files.entry(source.to_string()).or_default().extend(errors);
                }
            },
            Err(message) => self.invalid(source, message),
        }
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
        // Check what was opened, not what the name pointed to a moment ago.
        let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
        if !meta.is_file() {
            return Err("is not a regular file".to_string());
        }
        if self.opts.check_permissions {
            if let Some(why) = insecure(&meta) {
                return Err(format!("file {why}; {}", fix_hint(&meta, &path.display().to_string())));
            }
        }
        let limit = manifest::MAX_FILE_BYTES as u64;
        if meta.len() > limit {
            return Err(format!(
                "file is {} bytes; manifest files are limited to {limit} bytes",
                meta.len()
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
        Ok(bytes)
    }

    /// Resolves duplicates and port conflicts into `held`.
    fn finish(self, dir: DirState) -> Desired {
        let Loader {
            parsed,
            invalid_files,
            ..
        } = self;
        let mut conflicts: Vec<ManifestError> = Vec::new();
        let mut held: BTreeMap<AssetName, String> = BTreeMap::new();
        let hold = |held: &mut BTreeMap<AssetName, String>, name: &AssetName, error: &ManifestError| {
            held.entry(name.clone())
                .and_modify(|reason| {
                    reason.push_str("; ");
                    reason.push_str(&error.to_string());
                })
                .or_insert_with(|| error.to_string());
        };

        // Names declared more than once: an error at each declaration.
        let mut by_name: BTreeMap<&AssetName, Vec<usize>> = BTreeMap::new();
        for (i, (_, asset)) in parsed.iter().enumerate() {
            by_name.entry(&asset.spec.name).or_default().push(i);
        }
        for (name, indexes) in &by_name {
            if indexes.len() < 2 {
                continue;
            }
            for &i in indexes {
                let others: Vec<String> = indexes
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| parsed[j].1.pos.to_string())
                    .collect();
                let error = ManifestError::at(
                    &parsed[i].1.pos,
                    "metadata.name",
                    format!(
                        "asset `{name}` is also declared at {}; names must be unique across the directory",
                        others.join(", ")
                    ),
                );
                hold(&mut held, name, &error);
                conflicts.push(error);
            }
        }

        // Host ports published by more than one asset: an error at each.
        type PortKey = (u16, crate::spec::Protocol);
        let mut by_port: BTreeMap<PortKey, Vec<(&AssetName, &SourcePos)>> = BTreeMap::new();
        for (_, asset) in &parsed {
            for (port, protocol, pos) in &asset.ports_pos {
                by_port.entry((*port, *protocol)).or_default().push((&asset.spec.name, pos));
            }
        }
        for ((port, protocol), users) in &by_port {
            for (name, pos) in users {
                let others: Vec<String> = users
                    .iter()
                    .filter(|(other, _)| other != name)
                    .map(|(other, other_pos)| format!("{other} ({other_pos})"))
                    .collect();
                if others.is_empty() {
                    continue;
                }
                let label = match protocol {
                    crate::spec::Protocol::Tcp => port.to_string(),
                    crate::spec::Protocol::Udp => format!("{port}/udp"),
                };
                let error = ManifestError::at(
                    pos,
                    "spec.ports",
                    format!("host port {label} is used by {}", others.join(", ")),
                );
                hold(&mut held, name, &error);
                conflicts.push(error);
            }
        }
        conflicts.sort();

        let mut assets = BTreeMap::new();
        for (source, asset) in parsed {
            if held.contains_key(&asset.spec.name) {
                continue;
            }
            let hash = asset.spec.hash();
            assets.insert(
                asset.spec.name.clone(),
                DesiredAsset {
                    spec: asset.spec,
                    hash,
                    source,
                    pos: asset.pos,
                },
            );
        }
        Desired {
            dir,
            assets,
            invalid_files,
            held,
            conflicts,
        }
    }
}

/// `*.yaml` / `*.yml`, not hidden, not an editor's temp, backup or lock
/// file.
fn is_manifest_name(name: &str) -> bool {
    let has_extension = name.ends_with(".yaml") || name.ends_with(".yml");
    let stem_len = name.len() - if name.ends_with(".yaml") { 5 } else { 4 };
    has_extension && stem_len > 0 && !name.starts_with('.') && !is_editor_temp(name)
}

/// Names editors and merge tools leave next to real files. Most cannot end
/// in `.yaml` anyway; the check keeps the rule explicit if that changes.
fn is_editor_temp(name: &str) -> bool {
    const SUFFIXES: [&str; 7] = ["~", ".swp", ".swx", ".tmp", ".bak", ".orig", ".rej"];
    name.starts_with('#') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Why `meta` may not be trusted, if it may not: writable by group or
/// others, or owned by someone other than root or us.
fn insecure(meta: &Metadata) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("its group"),
        (false, true) => Some("others"),
        (false, false) => None,
    };
    if let Some(who) = who {
        return Some(format!("is writable by {who} (mode {mode:04o})"));
    }
    let uid = meta.uid();
    let euid = effective_uid();
    if uid != 0 && Some(uid) != euid {
        let us = euid.map_or_else(|| "assetd's user".to_string(), |e| format!("uid {e}"));
        return Some(format!("is owned by uid {uid}, not by root or {us}"));
    }
    None
}

fn fix_hint(meta: &Metadata, path: &str) -> String {
    if meta.mode() & 0o022 != 0 {
        format!("fix with `chmod go-w {path}`")
    } else {
        format!("fix with `chown root {path}` (or run assetd as its owner)")
    }
}

/// The user assetd runs as, from `/proc/self/status` (std has no
/// `geteuid`, and a libc dependency for one call is not worth it).
fn effective_uid() -> Option<u32> {
    static EUID: OnceLock<Option<u32>> = OnceLock::new();
    *EUID.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        // Uid: real effective saved filesystem
        line.split_whitespace().nth(2)?.parse().ok()
    })
}
