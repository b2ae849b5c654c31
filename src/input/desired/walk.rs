//! The walk: which files of the directory are manifests, reading each
//! safely, parsing them (in parallel when there are many), and
//! assembling `Desired`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::input::manifest::{self, ManifestError, ParsedAsset};
use crate::input::stack::{ContentSource, ParsedResource, ResourceSpec};

use super::*;

/// Directories deeper than this below the manifests directory are not
/// read (and reported).
pub(super) const MAX_DIR_DEPTH: usize = 32;

/// Below this many files, parsing on one thread is faster than starting
/// more.
pub(super) const PARALLEL_THRESHOLD: usize = 256;

pub(super) struct Loader<'a> {
    pub(super) opts: &'a LoadOptions,
    /// What sources are relative to (secrets' and configs' files too).
    pub(super) root: &'a Path,
    pub(super) env: &'a Env,
    pub(super) cache: Option<&'a ParseCache>,
    /// Manifest files found, valid or not.
    pub(super) files: usize,
    /// Files found by the walk, to be read and parsed: (path, source).
    pub(super) pending: Vec<(PathBuf, String)>,
    pub(super) invalid_files: BTreeMap<String, Vec<ManifestError>>,
    /// What the valid files accept without effect (see `ParsedFile`).
    pub(super) notes: Vec<ManifestError>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(opts: &'a LoadOptions, env: &'a Env, root: &'a Path) -> Self {
        Loader {
            opts,
            root,
            env,
            cache: None,
            files: 0,
            pending: Vec::new(),
            invalid_files: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    pub(super) fn invalid(&mut self, source: &str, message: String) {
        self.invalid_files
            .entry(source.to_string())
            .or_default()
            .push(ManifestError::whole_file(source, message));
    }

    /// Reads `dir` (shown as `prefix`, which is empty or ends in `/`) and
    /// below, in name order. Fails only if `dir` itself cannot be listed.
    /// With `distrust`, every manifest file found is invalid for that
    /// reason instead of being read (it is below an unsafe directory).
    pub(super) fn walk(
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
    pub(super) fn subdir(
        &mut self,
        path: &Path,
        source: &str,
        depth: usize,
        distrust: Option<&str>,
    ) {
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
    pub(super) fn load_file(&mut self, path: &Path, source: &str) {
        self.files += 1;
        self.pending.push((path.to_path_buf(), source.to_string()));
    }

    /// Reads and parses every queued file, on several threads when there
    /// are many; the result does not depend on how the work was split.
    #[allow(clippy::type_complexity)]
    pub(super) fn parse_pending(&mut self) -> Parsed {
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
                    self.notes.extend(file.notes);
                }
                Err(errors) => self.invalid_files.entry(source).or_default().extend(errors),
            }
        }
        (parsed, resources, windows)
    }

    /// Parses what was found and resolves duplicates and port conflicts
    /// into `held`.
    pub(super) fn finish(mut self, dir: DirState) -> Desired {
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
                    hooks: asset.hooks,
                    redactions: asset.redactions,
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
            notes: self.notes,
        }
    }
}

/// What the pending files declare, each with its file.
pub(super) type Parsed = (
    Vec<(String, ParsedAsset)>,
    Vec<(String, ParsedResource)>,
    Vec<(String, manifest::ParsedWindow)>,
);

/// The files that Secrets and Configs read their content from, as
/// [`lexical`] spells their sources.
pub(super) fn data_files(resources: &[(String, ParsedResource)]) -> BTreeSet<String> {
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
pub(super) fn lexical(path: &Path) -> String {
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

/// Reads, checks and parses one manifest file.
pub(super) fn parse_one(
    path: &Path,
    source: &str,
    opts: &LoadOptions,
    env: &Env,
    cache: Option<&ParseCache>,
) -> FileResult {
    // The directory a Compose file reads `.env` and `env_file:` in.
    let dir = path.parent().and_then(|d| std::path::absolute(d).ok());
    let parse =
        |bytes: &[u8]| manifest::parse_bytes_in(source, bytes, env, &opts.policy, dir.as_deref());
    let Some(cache) = cache else {
        return match read_manifest(path, opts) {
            Ok((bytes, _)) => parse(&bytes).0,
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
    let (result, side_files) = parse(&bytes);
    cache.put(
        source,
        CacheEntry {
            stamp,
            digest,
            result: result.clone(),
            side: side_files.into_iter().map(SideFile::of).collect(),
        },
    );
    result
}

/// The file's bytes and the metadata of the file they were read from.
pub(super) fn read_manifest(
    path: &Path,
    opts: &LoadOptions,
) -> Result<(Vec<u8>, Metadata), String> {
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
pub(super) fn is_manifest_name(name: &str) -> bool {
    // A name shorter than its extension (a secret's file `k`) is not one.
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"));
    stem.is_some_and(|stem| !stem.is_empty()) && !name.starts_with('.') && !is_editor_temp(name)
}

/// Names editors and merge tools leave next to real files. Most cannot end
/// in `.yaml` anyway; the check keeps the rule explicit if that changes.
pub(super) fn is_editor_temp(name: &str) -> bool {
    const SUFFIXES: [&str; 7] = ["~", ".swp", ".swx", ".tmp", ".bak", ".orig", ".rej"];
    name.starts_with('#') || SUFFIXES.iter().any(|s| name.ends_with(s))
}
