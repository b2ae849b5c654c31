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

mod cache;
/// The declared networks, volumes, secrets and configs, completed.
pub mod declared;
mod holds;
mod permissions;
mod walk;

pub use cache::ParseCache;
use cache::*;
use holds::*;
use permissions::*;
use walk::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::input::manifest::{self, ManifestError, Policy, SourcePos};
use crate::input::stack::ResourceKind;
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
    /// `spec.hooks`: jobs run around its creates and updates.
    pub hooks: crate::model::hooks::Hooks,
    /// Its secrets' values, taken out of its hooks' output.
    pub redactions: crate::model::hooks::Redactions,
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
    /// Keys accepted without effect, where they are (`validate` says so).
    pub notes: Vec<ManifestError>,
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
