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
//! - OpenFactory app files (`app_*.yml`, a top-level `apps:`) sit beside
//!   manifests: the parser reads each app as an asset
//!   ([`crate::input::manifest::openfactory`]), and from here on an app is an
//!   asset like any other (names unique across both kinds of file).
//! - A file that fails to parse is reported in [`Desired::invalid_files`];
//!   the assets it declared last are held by the planner, never pruned.
//!   A directory that cannot be read is reported the same way, with a key
//!   ending in `/` that covers every file below it.
//! - A name declared twice, or two assets publishing the same host port,
//!   put every asset involved in [`Desired::held`]: neither wins.
//! - With [`LoadOptions::check_permissions`], files and directories that
//!   others could write are refused like sshd's `StrictModes`: manifests
//!   start containers, so they are root-equivalent.

/// The declared networks, volumes, secrets and configs, completed.
pub mod declared;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::input::manifest::{self, ManifestError, ParsedAsset, Policy, SourcePos};
use crate::input::stack::{ContentSource, ParsedResource, ResourceKind, ResourceSpec};
use crate::model::spec::{AssetName, DeploySpec, SpecHash};

/// How to read the manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub policy: Policy,
    /// Refuse directories and files writable by group or others, or owned
    /// by a user other than root or the one assetd runs as.
    pub check_permissions: bool,
    /// The identities that open `decrypt: age` files.
    pub age: crate::input::stack::encrypted::AgeKeys,
    /// The key of secret and config versions, from the engine (the pass
    /// sets it); none: a key of this process (nothing is deployed).
    pub version_key: Option<crate::input::stack::version_key::VersionKey>,
}

/// What one file parsed to, valid assets or its errors.
type FileResult = Result<manifest::ParsedFile, Vec<ManifestError>>;

/// Parse results of files, kept from one pass to the next. Every pass
/// looks at every file (level-triggered), but most find nothing changed,
/// and reading and parsing are most of an idle pass's CPU.
///
/// A result depends on the bytes, the source name, the policy and the
/// environment; the last two are fixed for the life of the process. A
/// file whose `stat` (device, inode, size, mtime, ctime, mode, owner) is
/// the one recorded is not even opened (a change of content, of
/// permissions or a rename over it changes one of those); otherwise it is
/// read, checked and, if its bytes are the ones already parsed, not parsed
/// again. Like git's index, a stat taken within a moment of the file's
/// last change is not trusted: a write in the same clock tick could hide.
#[derive(Debug, Default)]
pub struct ParseCache {
    entries: Mutex<HashMap<String, CacheEntry>>,
}

#[derive(Debug)]
struct CacheEntry {
    /// `None` while the file is too fresh for its stat to be trusted.
    stamp: Option<FileStamp>,
    digest: ContentDigest,
    result: FileResult,
}

type ContentDigest = [u8; 32];

/// What `stat` says of a file, as far as its content and permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    mode: u32,
    uid: u32,
}

/// How old a file's last change must be before its stat alone is trusted.
const STAT_TRUST_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl FileStamp {
    fn of(meta: &Metadata) -> Self {
        let ns = |secs: i64, nanos: i64| secs as i128 * 1_000_000_000 + nanos as i128;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            mode: meta.mode(),
            uid: meta.uid(),
        }
    }

    /// Whether the file last changed long enough ago.
    fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let newest = self.mtime_ns.max(self.ctime_ns);
        now - newest > STAT_TRUST_AFTER.as_nanos() as i128
    }
}

impl ParseCache {
    /// The result of a file whose stat has not changed since it was read.
    fn by_stamp(&self, source: &str, stamp: &FileStamp) -> Option<FileResult> {
        let entries = self.entries.lock().expect("parse cache lock");
        let entry = entries.get(source)?;
        (entry.stamp.as_ref() == Some(stamp)).then(|| entry.result.clone())
    }

    /// The result of the same bytes, parsed before; records the stamp.
    fn by_digest(
        &self,
        source: &str,
        digest: &ContentDigest,
        stamp: Option<FileStamp>,
    ) -> Option<FileResult> {
        let mut entries = self.entries.lock().expect("parse cache lock");
        let entry = entries.get_mut(source).filter(|e| &e.digest == digest)?;
        entry.stamp = stamp;
        Some(entry.result.clone())
    }

    fn put(&self, source: &str, entry: CacheEntry) {
        let mut entries = self.entries.lock().expect("parse cache lock");
        entries.insert(source.to_string(), entry);
    }

    /// Forgets files that are gone, so the cache holds only what the
    /// directory holds.
    fn keep_only(&self, sources: &[(PathBuf, String)]) {
        let live: std::collections::HashSet<&str> =
            sources.iter().map(|(_, s)| s.as_str()).collect();
        let mut entries = self.entries.lock().expect("parse cache lock");
        entries.retain(|source, _| live.contains(source.as_str()));
    }

    /// How many files' results are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("parse cache lock").len()
    }
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
    /// `spec.dependsOn`: created and updated only once these run and are
    /// healthy; removed before them.
    pub depends_on: Vec<AssetName>,
    /// The revision of the manifests copy it was read from (`3f2a91c`),
    /// set by `reconcile::observe`: labelled on the objects it deploys and
    /// kept in their history.
    pub revision: Option<String>,
    /// The networks, volumes, secrets and configs it names.
    pub references: Vec<manifest::Reference>,
}

/// What the manifests directory itself looked like. Anything but
/// `Present` means "we do not know what is desired": the planner must not
/// prune on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirState {
    /// Read; `files` manifest files were found (valid or not).
    Present {
        files: usize,
    },
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
    /// Files that failed to read, parse or validate, or sit below a
    /// directory with unsafe permissions (relative path → its errors).
    /// Assets such files last declared are held by the planner, which
    /// finds them via their recorded source. A key ending in `/` is a
    /// directory that could not be listed at all; it covers every file
    /// below it (see [`Desired::invalid_source`]).
    pub invalid_files: BTreeMap<String, Vec<ManifestError>>,
    /// Names that must be held although no file is invalid as a whole:
    /// declared more than once, or publishing a host port another asset
    /// publishes too. Name → the conflicts, each with its error.
    pub held: BTreeMap<AssetName, Conflicts>,
    /// The errors behind `held`, one per declaration involved.
    pub conflicts: Vec<ManifestError>,
    /// Networks, volumes, secrets and configs to create before the
    /// assets.
    pub resources: crate::input::stack::DesiredResources,
    /// Declared objects that cannot be used this pass (declared twice, a
    /// secret's file missing): none of their versions is removed.
    pub held_resources: BTreeSet<(ResourceKind, String)>,
    /// Named volumes that assets mount but that are neither declared nor
    /// on the engine: the engine creates them on first use, so they hold
    /// nothing; `plan` says so (volume name → the assets that mount it).
    pub implicit_volumes: BTreeMap<String, Vec<AssetName>>,
    /// `kind: SyncWindow`: when changes may go (`crate::core::window`).
    pub windows: Vec<crate::model::window::SyncWindow>,
}

/// Why a name is held although its file is valid: one entry per
/// declaration problem, shown as their errors joined by `; `.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub error: ManifestError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// The name is declared more than once.
    DuplicateName,
    /// A host port another asset publishes too.
    PortConflict,
    /// A network, volume, secret or config it names is neither declared
    /// nor on the engine, or is declared but unusable.
    Reference,
    /// `spec.dependsOn` names an undeclared asset, or is part of a cycle.
    Dependency,
}

impl std::fmt::Display for Conflicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, conflict) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", conflict.error)?;
        }
        Ok(())
    }
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

impl Desired {
    /// Holds every asset that names a network, secret or config that is
    /// neither declared nor in `present` (the engine's names), with an
    /// error at the name: it could only fail at deploy time, and the
    /// version that runs must keep running. A named volume is not held:
    /// the engine creates it on first use (`docker run -v name:/x`, and a
    /// Swarm mount on each node, where the manager cannot even list a
    /// worker's volumes); it is noted in `implicit_volumes` instead.
    pub fn hold_missing_references(&mut self, present: &BTreeSet<(ResourceKind, String)>) {
        self.implicit_volumes.clear();
        let mut missing: Vec<(AssetName, ManifestError)> = Vec::new();
        for (name, asset) in &self.assets {
            for r in &asset.references {
                let key = (r.kind, r.name.clone());
                // A mount with its own driver (an OpenFactory NFS share)
                // is created by the engine from the mount itself.
                let self_defined = r.kind == ResourceKind::Volume
                    && asset.spec.mounts.iter().any(|m| {
                        m.source.as_deref() == Some(r.name.as_str()) && m.volume_driver.is_some()
                    });
                if self_defined
                    || self.resources.contains_key(&key)
                    || self.held_resources.contains(&key)
                    || present.contains(&key)
                {
                    continue;
                }
                if r.kind == ResourceKind::Volume {
                    let users = self.implicit_volumes.entry(r.name.clone()).or_default();
                    if !users.contains(name) {
                        users.push(name.clone());
                    }
                    continue;
                }
                let message = format!(
                    "{} `{}` is neither declared (kind: {}) nor present on the engine",
                    r.kind,
                    r.name,
                    r.kind.manifest_kind()
                );
                missing.push((name.clone(), ManifestError::at(&r.pos, &r.field, message)));
            }
        }
        for (name, error) in missing {
            self.assets.remove(&name);
            self.held.entry(name).or_default().0.push(Conflict {
                kind: ConflictKind::Reference,
                error: error.clone(),
            });
            self.conflicts.push(error);
        }
        self.conflicts.sort();
    }
}

/// Where `${VAR}` values come from (the daemon passes `std::env::var`).
pub type Env = dyn Fn(&str) -> Option<String> + Sync;

/// Reads the manifests directory `dir`. Sources are relative to it.
///
/// `env` answers `${VAR}` references; it is called from several threads
/// when there are many files.
pub fn load_dir(dir: &Path, opts: &LoadOptions, env: &Env) -> Desired {
    load_dir_cached(dir, opts, env, None)
}

/// [`load_dir`], reusing the results of files whose content `cache` has
/// seen (the daemon's passes).
pub fn load_dir_cached(
    dir: &Path,
    opts: &LoadOptions,
    env: &Env,
    cache: Option<&ParseCache>,
) -> Desired {
    let mut loader = Loader::new(opts, env, dir);
    loader.cache = cache;
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return loader.finish(DirState::Missing)
        }
        Err(err) => {
            return loader.finish(DirState::Unreadable(format!("{}: {err}", dir.display())));
        }
    };
    if !meta.is_dir() {
        return loader.finish(DirState::Unreadable(format!(
            "{} is not a directory",
            dir.display()
        )));
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
    if let Err(err) = loader.walk(dir, "", 0, None) {
        return loader.finish(DirState::Unreadable(format!("{}: {err}", dir.display())));
    }
    let files = loader.files;
    loader.finish(DirState::Present { files })
}

/// Reads the given files and directories (`assetd validate PATH...`).
/// Files are read whatever their name; directories as by [`load_dir`].
/// Sources are the paths as given (`manifests/cell3.yaml`).
pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions, env: &Env) -> Desired {
    let mut loader = Loader::new(opts, env, Path::new("."));
    for path in paths {
        let shown = path.display().to_string();
        match fs::metadata(path) {
            Err(err) => loader.invalid(&shown, format!("cannot read: {err}")),
            Ok(meta) if meta.is_dir() => {
                let prefix = format!("{}/", shown.trim_end_matches('/'));
                if opts.check_permissions {
                    if let Some(why) = insecure(&meta) {
                        loader.invalid(
                            &prefix,
                            format!("directory {why}; {}", fix_hint(&meta, &shown)),
                        );
                        continue;
                    }
                }
                if let Err(err) = loader.walk(path, &prefix, 0, None) {
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

/// Below this many files, parsing on one thread is faster than starting
/// more.
const PARALLEL_THRESHOLD: usize = 256;

struct Loader<'a> {
    opts: &'a LoadOptions,
    /// What sources are relative to (secrets' and configs' files too).
    root: &'a Path,
    env: &'a Env,
    cache: Option<&'a ParseCache>,
    /// Manifest files found, valid or not.
    files: usize,
    /// Files found by the walk, to be read and parsed: (path, source).
    pending: Vec<(PathBuf, String)>,
    invalid_files: BTreeMap<String, Vec<ManifestError>>,
}

impl<'a> Loader<'a> {
    fn new(opts: &'a LoadOptions, env: &'a Env, root: &'a Path) -> Self {
        Loader {
            opts,
            root,
            env,
            cache: None,
            files: 0,
            pending: Vec::new(),
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
    /// With `distrust`, every manifest file found is invalid for that
    /// reason instead of being read (it is below an unsafe directory).
    fn walk(
        &mut self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        distrust: Option<&str>,
    ) -> io::Result<()> {
        let mut entries: Vec<(String, PathBuf, fs::FileType)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                // Not UTF-8: cannot be one of ours unless it ends in
                // `.yaml`, which is worth a word.
                let lossy = name.to_string_lossy();
                if is_manifest_name(&lossy) {
                    self.files += 1;
                    let source = format!("{prefix}{lossy}");
                    self.invalid(
                        &source,
                        "file name is not valid UTF-8; rename it".to_string(),
                    );
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
                self.subdir(&path, &source, depth + 1, distrust);
            } else if !is_manifest_name(&name) {
                continue;
            } else if let Some(why) = distrust {
                self.files += 1;
                self.invalid(&source, why.to_string());
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

    /// A directory below the manifests directory. If it is unsafe, the
    /// files below it are still listed, so that each is reported (and
    /// its assets held) by name, but none is read.
    fn subdir(&mut self, path: &Path, source: &str, depth: usize, distrust: Option<&str>) {
        let key = format!("{source}/");
        if depth > MAX_DIR_DEPTH {
            self.invalid(
                &key,
                format!("directories nested more than {MAX_DIR_DEPTH} deep are not read"),
            );
            return;
        }
        let mut unsafe_here = None;
        if self.opts.check_permissions && distrust.is_none() {
            match fs::symlink_metadata(path) {
                Ok(meta) => {
                    if let Some(why) = insecure(&meta) {
                        let shown = path.display().to_string();
                        unsafe_here = Some(format!(
                            "directory {key} {why}; {}",
                            fix_hint(&meta, &shown)
                        ));
                    }
                }
                Err(err) => {
                    self.invalid(&key, format!("cannot read directory: {err}"));
                    return;
                }
            }
        }
        let distrust = unsafe_here.as_deref().or(distrust);
        if let Err(err) = self.walk(path, &key, depth, distrust) {
            self.invalid(&key, format!("cannot read directory: {err}"));
        }
    }

    /// Queues one manifest file to be read and parsed by [`Self::finish`].
    fn load_file(&mut self, path: &Path, source: &str) {
        self.files += 1;
        self.pending.push((path.to_path_buf(), source.to_string()));
    }

    /// Reads and parses every queued file, on several threads when there
    /// are many; the result does not depend on how the work was split.
    #[allow(clippy::type_complexity)]
    fn parse_pending(&mut self) -> Parsed {
        let pending = std::mem::take(&mut self.pending);
        let (opts, env, cache) = (self.opts, self.env, self.cache);
        if let Some(cache) = cache {
            cache.keep_only(&pending);
        }
        let parse_all = |files: &[(PathBuf, String)]| -> Vec<FileResult> {
            files
                .iter()
                .map(|(path, source)| parse_one(path, source, opts, env, cache))
                .collect()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let results = if threads < 2 || pending.len() < PARALLEL_THRESHOLD {
            parse_all(&pending)
        } else {
            let chunk = pending.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let parse_all = &parse_all;
                let parts: Vec<_> = pending
                    .chunks(chunk)
                    .map(|part| {
                        // If no thread can be started, parse right here.
                        std::thread::Builder::new()
                            .name("assetd-manifests".into())
                            .spawn_scoped(scope, move || parse_all(part))
                            .map_err(|_| part)
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|part| match part {
                        Ok(handle) => handle.join().expect("parsing a manifest does not panic"),
                        Err(part) => parse_all(part),
                    })
                    .collect()
            })
        };
        let mut parsed = Vec::new();
        let mut resources = Vec::new();
        let mut windows = Vec::new();
        for ((_, source), result) in pending.into_iter().zip(results) {
            match result {
                Ok(file) => {
                    parsed.extend(file.assets.into_iter().map(|a| (source.clone(), a)));
                    resources.extend(file.resources.into_iter().map(|r| (source.clone(), r)));
                    windows.extend(file.windows.into_iter().map(|w| (source.clone(), w)));
                }
                Err(errors) => self.invalid_files.entry(source).or_default().extend(errors),
            }
        }
        (parsed, resources, windows)
    }

    /// Parses what was found and resolves duplicates and port conflicts
    /// into `held`.
    fn finish(mut self, dir: DirState) -> Desired {
        let (mut parsed, mut resources, mut windows) = self.parse_pending();
        // A file a Secret or Config reads is data, never a manifest, even
        // with a YAML name (`secrets/db-creds.yaml`): what its parse found
        // or said (its lines, the value among them) is dropped unseen.
        let data = data_files(&resources);
        let mut invalid_files = self.invalid_files;
        let is_data = |source: &str| data.contains(&lexical(Path::new(source)));
        invalid_files.retain(|source, _| !is_data(source));
        parsed.retain(|(source, _)| !is_data(source));
        resources.retain(|(source, _)| !is_data(source));
        windows.retain(|(source, _)| !is_data(source));
        let version_key = self
            .opts
            .version_key
            .clone()
            .unwrap_or_else(crate::input::stack::version_key::VersionKey::ephemeral);
        let declared = crate::input::desired::declared::declare(
            resources,
            self.root,
            self.env,
            &self.opts.age,
            &version_key,
        );
        let mut holds = Holds::default();
        holds.conflicts.extend(declared.errors.iter().cloned());
        for (_, asset) in parsed.iter_mut() {
            if let Err(error) = declared.complete(asset) {
                holds.hold(&asset.spec.name.clone(), ConflictKind::Reference, error);
            }
        }
        holds.duplicate_names(&parsed);
        holds.port_conflicts(&parsed);
        holds.dependencies(&parsed);
        holds.duplicate_windows(&windows);
        holds.conflicts.sort();
        let mut assets = BTreeMap::new();
        for (source, asset) in parsed {
            if holds.held.contains_key(&asset.spec.name) {
                continue;
            }
            assets.insert(
                asset.spec.name.clone(),
                DesiredAsset {
                    spec: asset.spec,
                    hash: asset.hash,
                    source,
                    pos: asset.pos,
                    depends_on: asset.depends_on.into_iter().map(|(n, _)| n).collect(),
                    revision: None,
                    references: asset.references,
                },
            );
        }
        Desired {
            dir,
            assets,
            invalid_files,
            held: holds.held,
            conflicts: holds.conflicts,
            held_resources: declared.held.into_keys().collect(),
            resources: declared.resources,
            implicit_volumes: BTreeMap::new(),
            // Every window counts, a duplicate's too: dropping one could
            // let through a change a deny window holds.
            windows: windows.into_iter().map(|(_, w)| w.window).collect(),
        }
    }
}

/// What the pending files declare, each with its file.
type Parsed = (
    Vec<(String, ParsedAsset)>,
    Vec<(String, ParsedResource)>,
    Vec<(String, manifest::ParsedWindow)>,
);

/// The files that Secrets and Configs read their content from, as
/// [`lexical`] spells their sources.
fn data_files(resources: &[(String, ParsedResource)]) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for (source, resource) in resources {
        let (ResourceSpec::Secret(ContentSource::File { path, .. })
        | ResourceSpec::Config(ContentSource::File { path, .. })) = &resource.spec
        else {
            continue;
        };
        let base = Path::new(source).parent().unwrap_or(Path::new(""));
        files.insert(lexical(&base.join(path)));
    }
    files
}

/// `path` with `.` and `..` resolved by its spelling alone (a source is
/// relative to the manifests directory, or, for `validate DIR`, spelled
/// from DIR), so that two spellings of one file compare equal.
fn lexical(path: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    let mut root = "";
    for part in path.components() {
        match part {
            std::path::Component::Normal(p) => parts.push(p),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::RootDir => root = "/",
            std::path::Component::CurDir | std::path::Component::Prefix(_) => {}
        }
    }
    let joined: Vec<String> = parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    format!("{root}{}", joined.join("/"))
}

/// Assets left as they run because their declarations conflict, and the
/// errors that say so (one at each declaration involved).
#[derive(Default)]
struct Holds {
    held: BTreeMap<AssetName, Conflicts>,
    conflicts: Vec<ManifestError>,
}

impl Holds {
    fn hold(&mut self, name: &AssetName, kind: ConflictKind, error: ManifestError) {
        self.held.entry(name.clone()).or_default().0.push(Conflict {
            kind,
            error: error.clone(),
        });
        self.conflicts.push(error);
    }

    /// Names declared more than once: an error at each declaration.
    fn duplicate_names(&mut self, parsed: &[(String, ParsedAsset)]) {
        let mut by_name: BTreeMap<&AssetName, Vec<usize>> = BTreeMap::new();
        for (i, (_, asset)) in parsed.iter().enumerate() {
            by_name.entry(&asset.spec.name).or_default().push(i);
        }
        for (name, indexes) in by_name.iter().filter(|(_, i)| i.len() > 1) {
            for &i in indexes {
                let others: Vec<String> = indexes
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| parsed[j].1.pos.to_string())
                    .collect();
                let error = ManifestError::at(
                    &parsed[i].1.pos,
                    &parsed[i].1.name_field,
                    format!(
                        "asset `{name}` is also declared at {}; names must be unique across the directory",
                        others.join(", ")
                    ),
                );
                self.hold(name, ConflictKind::DuplicateName, error);
            }
        }
    }

    /// Sync windows declared more than once: an error at each (all of
    /// them still count).
    fn duplicate_windows(&mut self, windows: &[(String, manifest::ParsedWindow)]) {
        for (i, (_, parsed)) in windows.iter().enumerate() {
            let name = &parsed.window.name;
            let others: Vec<String> = windows
                .iter()
                .enumerate()
                .filter(|(j, (_, w))| *j != i && w.window.name == *name)
                .map(|(_, (_, w))| w.pos.to_string())
                .collect();
            if !others.is_empty() {
                self.conflicts.push(ManifestError::at(
                    &parsed.pos,
                    "metadata.name",
                    format!(
                        "sync window `{name}` is also declared at {}; names must be unique across the directory",
                        others.join(", ")
                    ),
                ));
            }
        }
    }

    /// Host ports published by more than one asset: an error at each.
    fn port_conflicts(&mut self, parsed: &[(String, ParsedAsset)]) {
        type PortKey = (u16, crate::model::spec::Protocol);
        let mut by_port: BTreeMap<PortKey, Vec<(&AssetName, &SourcePos)>> = BTreeMap::new();
        for (_, asset) in parsed {
            for (port, protocol, pos) in &asset.ports_pos {
                by_port
                    .entry((*port, *protocol))
                    .or_default()
                    .push((&asset.spec.name, pos));
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
                    crate::model::spec::Protocol::Tcp => port.to_string(),
                    crate::model::spec::Protocol::Udp => format!("{port}/udp"),
                };
                let error = ManifestError::at(
                    pos,
                    "spec.ports",
                    format!("host port {label} is used by {}", others.join(", ")),
                );
                self.hold(name, ConflictKind::PortConflict, error);
            }
        }
    }
}

impl Holds {
    /// `spec.dependsOn` entries naming no declared asset, and cycles: an
    /// error at the entry, and the asset held.
    fn dependencies(&mut self, parsed: &[(String, ParsedAsset)]) {
        let by_name: BTreeMap<&AssetName, &ParsedAsset> =
            parsed.iter().map(|(_, a)| (&a.spec.name, a)).collect();
        for (_, asset) in parsed {
            for (dep, pos) in &asset.depends_on {
                let message = if !by_name.contains_key(dep) {
                    format!("depends on `{dep}`, which no valid manifest declares")
                } else if let Some(cycle) = cycle_through(&by_name, &asset.spec.name, dep) {
                    format!("dependency cycle: {}", cycle.join(" → "))
                } else {
                    continue;
                };
                let error = ManifestError::at(pos, "spec.dependsOn", message);
                self.hold(&asset.spec.name, ConflictKind::Dependency, error);
            }
        }
    }
}

/// The path `from → dep → ... → from`, when `dep` leads back to `from`.
fn cycle_through(
    by_name: &BTreeMap<&AssetName, &ParsedAsset>,
    from: &AssetName,
    dep: &AssetName,
) -> Option<Vec<String>> {
    // Depth-first from `dep`, remembering how each name was first reached.
    let mut came_from: BTreeMap<&AssetName, &AssetName> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![dep];
    while let Some(at) = stack.pop() {
        if at == from {
            let mut back = vec![];
            let mut step = from;
            while step != dep {
                step = came_from[step];
                back.push(step.to_string());
            }
            back.reverse();
            let path = std::iter::once(from.to_string())
                .chain(back)
                .chain(std::iter::once(from.to_string()));
            return Some(path.collect());
        }
        if !seen.insert(at) {
            continue;
        }
        let next = by_name.get(at).map(|a| a.depends_on.as_slice());
        for (next, _) in next.unwrap_or_default() {
            came_from.entry(next).or_insert(at);
            stack.push(next);
        }
    }
    None
}

/// Reads, checks and parses one manifest file.
fn parse_one(
    path: &Path,
    source: &str,
    opts: &LoadOptions,
    env: &Env,
    cache: Option<&ParseCache>,
) -> FileResult {
    let Some(cache) = cache else {
        return match read_manifest(path, opts) {
            Ok((bytes, _)) => manifest::parse_bytes(source, &bytes, env, &opts.policy),
            Err(message) => Err(vec![ManifestError::whole_file(source, message)]),
        };
    };
    let current = fs::metadata(path).ok().map(|meta| FileStamp::of(&meta));
    if let Some(result) = current.as_ref().and_then(|s| cache.by_stamp(source, s)) {
        return result;
    }
    let (bytes, opened) = match read_manifest(path, opts) {
        Ok(read) => read,
        Err(message) => return Err(vec![ManifestError::whole_file(source, message)]),
    };
    // Recorded with the bytes: the stat of the file actually read, not of
    // whatever the path named at the lookup (a link may have moved since).
    let stamp = Some(FileStamp::of(&opened)).filter(FileStamp::settled);
    let digest: ContentDigest = Sha256::digest(&bytes).into();
    if let Some(result) = cache.by_digest(source, &digest, stamp) {
        return result;
    }
    let result = manifest::parse_bytes(source, &bytes, env, &opts.policy);
    cache.put(
        source,
        CacheEntry {
            stamp,
            digest,
            result: result.clone(),
        },
    );
    result
}

/// The file's bytes and the metadata of the file they were read from.
fn read_manifest(path: &Path, opts: &LoadOptions) -> Result<(Vec<u8>, Metadata), String> {
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    // Check what was opened, not what the name pointed to a moment ago.
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    if opts.check_permissions {
        if let Some(why) = insecure(&meta) {
            return Err(format!(
                "file {why}; {}",
                fix_hint(&meta, &path.display().to_string())
            ));
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
    Ok((bytes, meta))
}

/// `*.yaml` / `*.yml`, not hidden, not an editor's temp, backup or lock
/// file.
fn is_manifest_name(name: &str) -> bool {
    // A name shorter than its extension (a secret's file `k`) is not one.
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"));
    stem.is_some_and(|stem| !stem.is_empty()) && !name.starts_with('.') && !is_editor_temp(name)
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
pub(crate) fn effective_uid() -> Option<u32> {
    static EUID: OnceLock<Option<u32>> = OnceLock::new();
    *EUID.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        // Uid: real effective saved filesystem
        line.split_whitespace().nth(2)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("assetd-desired-{}-{test}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            TempDir(path)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn asset(name: &str, ports: &str) -> String {
        format!("apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {name}\nspec:\n  image: img:1\n  ports: {{{ports}}}\n")
    }

    fn load(dir: &Path) -> Desired {
        load_dir(dir, &LoadOptions::default(), &|_| None)
    }

    fn strict(dir: &Path) -> Desired {
        let opts = LoadOptions {
            check_permissions: true,
            ..LoadOptions::default()
        };
        load_dir(dir, &opts, &|_| None)
    }

    fn names(d: &Desired) -> Vec<&str> {
        d.assets.keys().map(|n| n.as_str()).collect()
    }

    fn name(n: &str) -> AssetName {
        AssetName::new(n).unwrap()
    }

    #[test]
    fn names_shorter_than_an_extension_are_not_manifests() {
        for name in ["k", "ab", "yml", ".yml", "x.yml~"] {
            assert!(!is_manifest_name(name), "{name}");
        }
        for name in ["a.yml", "a.yaml", "cell3.yaml"] {
            assert!(is_manifest_name(name), "{name}");
        }
    }

    #[test]
    fn secrets_are_read_per_pass_and_their_users_carry_the_version() {
        let dir = TempDir::new("stack");
        let doc = |kind: &str, name: &str, spec: &str| {
            format!("apiVersion: assetd/v1\nkind: {kind}\nmetadata: {{ name: {name} }}\nspec: {spec}\n---\n")
        };
        dir.write(
            "stack.yaml",
            &format!(
                "{}{}",
                doc("Secret", "creds", "{ file: secrets/creds }"),
                doc("Network", "net", "{}")
            ),
        );
        dir.write("secrets/creds", "v1");
        dir.write(
            "a.yaml",
            "apiVersion: assetd/v1\nkind: Asset\nmetadata: { name: a }\nspec: { image: i, networks: [net], secrets: [creds] }\n",
        );
        let first = load(&dir.0);
        assert!(first.errors().is_empty(), "{:?}", first.errors());
        let a = &first.assets[&name("a")];
        let version = a.spec.secrets[0].version.clone().unwrap();
        assert_eq!(
            version,
            first.resources[&(ResourceKind::Secret, "creds".into())].hash
        );

        // The file changes, the manifest does not: a new version, a new hash.
        dir.write("secrets/creds", "v2");
        let second = load(&dir.0);
        let b = &second.assets[&name("a")];
        assert_ne!(b.spec.secrets[0].version.as_ref(), Some(&version));
        assert_ne!(b.hash, a.hash, "a rotation updates the asset");

        // The file is gone: the asset is held at the reference, the
        // secret's versions kept.
        std::fs::remove_file(dir.0.join("secrets/creds")).unwrap();
        let third = load(&dir.0);
        assert!(third.assets.is_empty());
        let errors: Vec<String> = third.errors().iter().map(|e| e.to_string()).collect();
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("stack.yaml:4:15: spec.file: file `secrets/creds`: no such file")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("a.yaml:4:46: spec.secrets[0]: secret `creds` cannot be used")),
            "{errors:?}"
        );
        assert!(third
            .held_resources
            .contains(&(ResourceKind::Secret, "creds".into())));
    }

    #[test]
    fn a_name_declared_twice_per_kind_is_an_error_at_both_and_other_kinds_may_share_it() {
        let dir = TempDir::new("stack-dup");
        let doc = |kind: &str| {
            format!(
                "apiVersion: assetd/v1\nkind: {kind}\nmetadata: {{ name: shared }}\nspec: {{}}\n"
            )
        };
        dir.write("one.yaml", &doc("Network"));
        dir.write("two.yaml", &doc("Network"));
        dir.write("three.yaml", &doc("Volume"));
        let desired = load(&dir.0);
        let errors: Vec<String> = desired.errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("one.yaml:3:19: metadata.name: network `shared` is declared 2 times"),
            "{errors:?}"
        );
        assert!(desired
            .resources
            .contains_key(&(ResourceKind::Volume, "shared".into())));
        assert!(desired
            .held_resources
            .contains(&(ResourceKind::Network, "shared".into())));
    }

    #[test]
    fn an_openfactory_app_file_is_read_beside_manifests_and_its_names_count_too() {
        let t = TempDir::new("ofapp");
        t.write("a.yaml", &asset("mill", ""));
        t.write(
            "app_tools.yml",
            "apps:\n  mill:\n    uuid: MILL\n    image: img:1\n  press:\n    uuid: PRESS\n    image: img:1\n",
        );
        let d = load(&t.0);
        assert_eq!(names(&d), ["press"]);
        let errors: Vec<String> = d.errors().iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "a.yaml:4:9: metadata.name: asset `mill` is also declared at app_tools.yml:3:11; names must be unique across the directory",
                "app_tools.yml:3:11: apps.mill.uuid: asset `mill` is also declared at a.yaml:4:9; names must be unique across the directory",
            ]
        );
    }

    #[test]
    fn a_name_declared_in_two_files_is_held_and_reported_at_both() {
        let t = TempDir::new("dup");
        t.write("a.yaml", &asset("mill", ""));
        t.write("b.yaml", &format!("# moved here\n{}", asset("mill", "")));
        t.write("c.yaml", &asset("press", ""));
        let d = load(&t.0);
        assert_eq!(names(&d), ["press"]);
        assert!(d.held.contains_key(&name("mill")));
        let errors: Vec<String> = d.errors().iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "a.yaml:4:9: metadata.name: asset `mill` is also declared at b.yaml:5:9; names must be unique across the directory",
                "b.yaml:5:9: metadata.name: asset `mill` is also declared at a.yaml:4:9; names must be unique across the directory",
            ]
        );
        assert!(d.held[&name("mill")]
            .to_string()
            .starts_with("a.yaml:4:9: metadata.name:"));
        assert_eq!(d.dir, DirState::Present { files: 3 });
        assert!(d.invalid_files.is_empty());
    }

    #[test]
    fn a_host_port_published_twice_holds_both_assets() {
        let t = TempDir::new("ports");
        t.write(
            "cell3.yaml",
            &format!(
                "{}---\n{}",
                asset("cnc-mill-01", "5000: 5000, 6000: 6000"),
                asset("cnc-mill-02", "\"5000/tcp\": 80, \"6000/udp\": 6000")
            ),
        );
        t.write("other.yaml", &asset("press", "7000: 7000"));
        let d = load(&t.0);
        assert_eq!(names(&d), ["press"]);
        let errors: Vec<String> = d.errors().iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "cell3.yaml:7:11: spec.ports: host port 5000 is used by cnc-mill-02 (cell3.yaml:15:11)",
                "cell3.yaml:15:11: spec.ports: host port 5000 is used by cnc-mill-01 (cell3.yaml:7:11)",
            ]
        );
        assert!(
            d.held.contains_key(&name("cnc-mill-01")) && d.held.contains_key(&name("cnc-mill-02"))
        );
    }

    #[test]
    fn hidden_temp_and_foreign_files_are_skipped() {
        let t = TempDir::new("skip");
        t.write("real.yaml", &asset("real", ""));
        t.write("short.yml", &asset("short", ""));
        for skipped in [
            ".hidden.yaml",
            "real.yaml~",
            ".real.yaml.swp",
            "real.yaml.swp",
            "real.yaml.swx",
            "real.yaml.tmp",
            "#real.yaml#",
            "real.yaml.bak",
            "real.yaml.orig",
            "real.yaml.rej",
            "notes.txt",
            "README.md",
            ".git/config.yaml",
            ".yaml",
        ] {
            t.write(skipped, &asset("real", ""));
        }
        let d = load(&t.0);
        assert_eq!(names(&d), ["real", "short"]);
        assert!(d.is_clean(), "{:?}", d.errors());
        assert_eq!(d.file_count(), 2);
    }

    #[test]
    fn subdirectories_are_read_and_sources_are_relative() {
        let t = TempDir::new("subdirs");
        t.write("top.yaml", &asset("top", ""));
        t.write("cell-3/mills.yaml", &asset("mill", ""));
        t.write("cell-3/deeper/press.yml", &asset("press", ""));
        let d = load(&t.0);
        assert_eq!(names(&d), ["mill", "press", "top"]);
        assert_eq!(d.assets[&name("press")].source, "cell-3/deeper/press.yml");
        assert_eq!(d.assets[&name("press")].pos.file, "cell-3/deeper/press.yml");
        assert_eq!(
            d.assets[&name("mill")].hash,
            d.assets[&name("mill")].spec.hash()
        );
    }

    #[test]
    fn git_sync_symlink_swap_layout_is_read_once_and_links_do_not_loop() {
        let t = TempDir::new("swap");
        // dir/..2024_01/foo.yaml, dir/..data -> ..2024_01, dir/foo.yaml -> ..data/foo.yaml
        t.write("..2024_01/foo.yaml", &asset("foo", ""));
        t.write("..2024_01/bar.yaml", &asset("bar", ""));
        symlink("..2024_01", t.0.join("..data")).unwrap();
        symlink("..data/foo.yaml", t.0.join("foo.yaml")).unwrap();
        symlink("..data/bar.yaml", t.0.join("bar.yaml")).unwrap();
        // A directory link back up must not be followed.
        fs::create_dir(t.0.join("sub")).unwrap();
        symlink("..", t.0.join("sub/loop")).unwrap();
        symlink(&t.0, t.0.join("sub/loop.yaml")).unwrap();
        let d = load(&t.0);
        assert_eq!(names(&d), ["bar", "foo"]);
        assert_eq!(d.assets[&name("foo")].source, "foo.yaml");
        assert!(d.is_clean(), "{:?}", d.errors());

        // Swap to a new revision without `foo`: it is simply gone.
        t.write("..2024_02/bar.yaml", &asset("bar", "80: 80"));
        symlink("..2024_02", t.0.join("..data.tmp")).unwrap();
        fs::rename(t.0.join("..data.tmp"), t.0.join("..data")).unwrap();
        let d = load(&t.0);
        assert_eq!(names(&d), ["bar"]);
        assert_eq!(d.assets[&name("bar")].spec.ports.len(), 1);
        // ...and the dangling foo.yaml link makes foo.yaml invalid, not
        // silently empty, so its asset is held rather than pruned.
        assert!(d.invalid_files["foo.yaml"][0]
            .message
            .contains("cannot follow symlink"));
    }

    #[test]
    fn a_missing_or_empty_directory_is_reported_as_such() {
        let t = TempDir::new("missing");
        assert_eq!(load(&t.0.join("nope")).dir, DirState::Missing);
        assert_eq!(load(&t.0).dir, DirState::Present { files: 0 });
        let file = t.write("file.yaml", "");
        assert!(matches!(load(&file).dir, DirState::Unreadable(_)));
        // A file with no documents is a manifest file with no assets.
        assert_eq!(load(&t.0).dir, DirState::Present { files: 1 });
    }

    #[test]
    fn an_invalid_file_is_reported_and_the_others_still_load() {
        let t = TempDir::new("invalid");
        t.write("good.yaml", &asset("good", ""));
        t.write(
            "bad.yaml",
            "apiVersion: assetd/v1\nkind: Asset\nmetadata: { name: Bad }\nspec: { image: i }\n",
        );
        let d = load(&t.0);
        assert_eq!(names(&d), ["good"]);
        assert_eq!(d.invalid_files["bad.yaml"][0].to_string(), "bad.yaml:3:19: metadata.name: name `Bad` may contain only lower-case letters, digits and `-`");
        assert_eq!(d.errors().len(), 1);
        assert!(d.invalid_source("bad.yaml").is_some());
        assert!(d.invalid_source("good.yaml").is_none());
    }

    #[test]
    fn the_parse_cache_gives_the_same_answer_and_follows_every_change() {
        let t = TempDir::new("cache");
        let a = t.write("a.yaml", &asset("a", ""));
        t.write("b.yaml", &asset("b", ""));
        let opts = LoadOptions {
            check_permissions: true,
            ..LoadOptions::default()
        };
        let cache = ParseCache::default();
        let cached = |cache: &ParseCache| load_dir_cached(&t.0, &opts, &|_| None, Some(cache));

        let first = cached(&cache);
        assert_eq!(first, strict(&t.0));
        assert_eq!(cache.len(), 2);
        // Unchanged: the same answer, from the cache.
        assert_eq!(cached(&cache), first);

        // A changed file is parsed again, comments and all.
        t.write("a.yaml", &asset("a", "8080: 80"));
        let changed = cached(&cache);
        assert_eq!(changed, strict(&t.0));
        assert_ne!(
            changed.assets[&name("a")].hash,
            first.assets[&name("a")].hash
        );

        // An invalid file stays invalid while its bytes do not change.
        t.write("b.yaml", "apiVersion: assetd/v1\nkind: Nope\n");
        assert!(cached(&cache).invalid_source("b.yaml").is_some());
        assert!(cached(&cache).invalid_source("b.yaml").is_some());

        // Permissions are checked on every pass, cached content or not.
        fs::set_permissions(&a, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(cached(&cache).invalid_source("a.yaml").is_some());
        fs::set_permissions(&a, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cached(&cache).invalid_source("a.yaml").is_none());

        // A deleted file leaves the cache.
        fs::remove_file(t.0.join("b.yaml")).unwrap();
        assert_eq!(names(&cached(&cache)), ["a"]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_settled_file_is_trusted_by_its_stat_until_anything_about_it_changes() {
        let t = TempDir::new("stamp");
        let a = t.write("a.yaml", &asset("a", "8080: 80"));
        t.write("b.yaml", &asset("b", ""));
        let opts = LoadOptions {
            check_permissions: true,
            ..LoadOptions::default()
        };
        let cache = ParseCache::default();
        let cached = || load_dir_cached(&t.0, &opts, &|_| None, Some(&cache));
        std::thread::sleep(STAT_TRUST_AFTER + std::time::Duration::from_millis(200));
        let first = cached();
        assert_eq!(cached(), first);

        // Same size, new content: the stat differs (mtime, ctime).
        fs::write(&a, asset("a", "8081: 80")).unwrap();
        let edited = cached();
        assert_eq!(edited, strict(&t.0));
        assert_ne!(
            edited.assets[&name("a")].hash,
            first.assets[&name("a")].hash
        );

        // A rename over the file (an editor's save) is a new inode.
        std::thread::sleep(STAT_TRUST_AFTER + std::time::Duration::from_millis(200));
        assert_eq!(cached(), edited);
        let tmp = t.write(".a.yaml.tmp", &asset("a", "8082: 80"));
        fs::rename(&tmp, &a).unwrap();
        assert_eq!(cached(), strict(&t.0));
        assert_ne!(
            cached().assets[&name("a")].hash,
            edited.assets[&name("a")].hash
        );

        // Permissions are part of the stat.
        std::thread::sleep(STAT_TRUST_AFTER + std::time::Duration::from_millis(200));
        fs::set_permissions(&a, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(cached().invalid_source("a.yaml").is_some());
    }

    #[test]
    fn unsafe_permissions_are_refused_like_sshd_strict_modes() {
        let t = TempDir::new("perms");
        let writable = t.write("writable.yaml", &asset("writable", ""));
        t.write("fine.yaml", &asset("fine", ""));
        t.write("open/inside.yaml", &asset("inside", ""));
        fs::set_permissions(&writable, fs::Permissions::from_mode(0o666)).unwrap();
        fs::set_permissions(t.0.join("open"), fs::Permissions::from_mode(0o777)).unwrap();

        // Without the check everything loads.
        assert_eq!(names(&load(&t.0)), ["fine", "inside", "writable"]);

        let d = strict(&t.0);
        assert_eq!(names(&d), ["fine"]);
        let file_error = &d.invalid_files["writable.yaml"][0];
        assert!(
            file_error
                .message
                .contains("writable by group and others (mode 0666)"),
            "{file_error}"
        );
        assert!(file_error.message.contains("chmod go-w"), "{file_error}");
        // Each file below the unsafe directory is reported by name.
        let inside = &d.invalid_files["open/inside.yaml"][0];
        assert!(
            inside
                .message
                .contains("directory open/ is writable by group and others (mode 0777)"),
            "{inside}"
        );
        assert_eq!(d.file_count(), 3);

        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o777)).unwrap();
        match strict(&t.0).dir {
            DirState::Refused(why) => assert!(
                why.contains("mode 0777") && why.contains("chmod go-w"),
                "{why}"
            ),
            other => panic!("expected Refused, got {other:?}"),
        }
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn an_unlistable_directory_covers_every_file_below_it() {
        let mut d = load(&TempDir::new("unlistable").0);
        let error = ManifestError::whole_file("cell/", "cannot read directory: permission denied");
        d.invalid_files.insert("cell/".into(), vec![error]);
        assert!(d.invalid_source("cell/a.yaml").is_some());
        assert!(d.invalid_source("cell/deep/b.yaml").is_some());
        assert!(d.invalid_source("cells/a.yaml").is_none());
        assert!(d.invalid_source("a.yaml").is_none());
    }

    #[test]
    fn files_owned_by_another_user_are_refused() {
        if effective_uid() != Some(0) {
            return; // Only root can give a file away.
        }
        let t = TempDir::new("owner");
        let theirs = t.write("theirs.yaml", &asset("theirs", ""));
        std::os::unix::fs::chown(&theirs, Some(4321), None).unwrap();
        let d = strict(&t.0);
        assert!(d.assets.is_empty());
        assert!(d.invalid_files["theirs.yaml"][0]
            .message
            .contains("owned by uid 4321"));
    }

    #[test]
    fn load_paths_reads_files_and_directories_as_given() {
        let t = TempDir::new("paths");
        let single = t.write("one.txt", &asset("one", ""));
        t.write("dir/two.yaml", &asset("two", "80: 80"));
        let paths = [single.clone(), t.0.join("dir/"), t.0.join("absent.yaml")];
        let d = load_paths(&paths, &LoadOptions::default(), &|_| None);
        assert_eq!(names(&d), ["one", "two"]);
        let dir_shown = format!("{}/", t.0.join("dir").display());
        assert_eq!(
            d.assets[&name("two")].source,
            format!("{dir_shown}two.yaml")
        );
        assert_eq!(d.assets[&name("one")].source, single.display().to_string());
        let absent = t.0.join("absent.yaml").display().to_string();
        assert!(d.invalid_files[&absent][0].message.contains("cannot read"));
        assert_eq!(d.file_count(), 2);
    }
}
