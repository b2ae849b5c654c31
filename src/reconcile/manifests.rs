//! Reading the manifests for a pass, and not reading them again while
//! nothing in the directory changed.
//!
//! The daemon's file watcher counts every change it sees below the
//! manifests directory (overflows and watch errors included). A pass whose
//! count is the one of the last read reuses that read: no walk, no `stat`
//! per file, no `git rev-parse`. So a pass that an engine event asked for
//! costs no file IO, however many manifests there are. The directory is
//! walked again (the parse cache still spares unchanged files the parse):
//! at start; after any file event, rescan or watch change; at every
//! resync; whenever the directory is not watched; and while any file is
//! invalid (what fixes it may lie outside the directory: an age identity).
//! A change no watch can see (a symlink's target or an `env_file` outside
//! the directory) is read at the next resync, like a lost event.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::input::desired::{self, Desired, DirState, LoadOptions, ParseCache};
use crate::input::revision::{Kind, Revision};

use super::PassConfig;

/// What the daemon keeps of its manifests between passes: the parse
/// results of each file, and the last read of the whole directory with
/// the watcher's count of changes when it began.
#[derive(Debug, Default)]
pub struct ManifestCache {
    pub parse: ParseCache,
    /// Changes the watcher saw, counted from the start.
    changes: AtomicU64,
    /// Whether the watcher has the directory under watch right now.
    watched: AtomicBool,
    last: Mutex<Option<LastRead>>,
}

#[derive(Debug)]
struct LastRead {
    changes: u64,
    load: LoadOptions,
    desired: Desired,
    revision: Revision,
    /// The revision changes only with what the watcher sees: a digest, or
    /// a commit whose `.git` is inside the directory. Otherwise (the
    /// directory is a subdirectory of a clone) it is asked again each pass.
    revision_watched: bool,
}

impl ManifestCache {
    /// The watcher saw something change below the directory (or may have
    /// missed something): the next pass walks it.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The watcher has the directory under watch, or no longer has it.
    pub fn watching(&self, watched: bool) {
        self.watched.store(watched, Ordering::SeqCst);
        self.changed();
    }

    /// Whether the watcher counts a change as a walk's reason: false
    /// after a watch error or while the directory is not watched.
    #[cfg(test)]
    pub(crate) fn is_watched(&self) -> bool {
        self.watched.load(Ordering::SeqCst)
    }

    /// The last read, if nothing can have changed since and it was made
    /// with the same options (the version key comes from the engine); the
    /// revision is `None` when it must be asked again.
    fn reusable(&self, load: &LoadOptions) -> Option<(Desired, Option<Revision>)> {
        if !self.watched.load(Ordering::SeqCst) {
            return None;
        }
        let changes = self.changes.load(Ordering::SeqCst);
        let last = self.last.lock().expect("manifest cache lock");
        let last = last.as_ref()?;
        (last.changes == changes && &last.load == load).then(|| {
            let revision = last.revision_watched.then(|| last.revision.clone());
            (last.desired.clone(), revision)
        })
    }

    /// Keeps a read of `dir` that began when the count was `changes`, if
    /// it may be reused at all.
    fn keep(
        &self,
        changes: u64,
        load: LoadOptions,
        dir: &std::path::Path,
        desired: &Desired,
        revision: &Revision,
    ) {
        let worth_keeping =
            matches!(desired.dir, DirState::Present { .. }) && desired.invalid_files.is_empty();
        let revision_watched =
            revision.kind == Kind::Digest || std::fs::symlink_metadata(dir.join(".git")).is_ok();
        *self.last.lock().expect("manifest cache lock") = worth_keeping.then(|| LastRead {
            changes,
            load,
            desired: desired.clone(),
            revision: revision.clone(),
            revision_watched,
        });
    }
}

/// One read of the manifests.
#[derive(Debug)]
pub struct ManifestsRead {
    pub desired: Desired,
    /// The revision of the copy read.
    pub revision: Revision,
    /// The directory was walked (not the last read reused).
    pub walked: bool,
}

/// The manifests as `config` reads them (with `load`): the last read again
/// when nothing changed since and `fresh` (a resync) is not asked for;
/// else a walk of the directory, off the async runtime (plain blocking
/// file IO).
pub async fn read_manifests(config: &PassConfig, load: LoadOptions, fresh: bool) -> ManifestsRead {
    let cache = config.manifest_cache.clone();
    let dir = config.manifests.clone();
    if let Some(cache) = cache.as_deref().filter(|_| !fresh) {
        if let Some((desired, revision)) = cache.reusable(&load) {
            let revision = match revision {
                Some(revision) => revision,
                None => {
                    let desired = desired.clone();
                    tokio::task::spawn_blocking(move || Revision::of(&dir, &desired))
                        .await
                        .expect("asking git does not panic")
                }
            };
            return ManifestsRead {
                desired,
                revision,
                walked: false,
            };
        }
    }
    tokio::task::spawn_blocking(move || {
        // Counted before the walk: a change during it makes the next
        // pass walk again.
        let changes = cache.as_ref().map(|c| c.changes.load(Ordering::SeqCst));
        let parse = cache.as_deref().map(|c| &c.parse);
        let desired = desired::load_dir_cached(&dir, &load, &|k| std::env::var(k).ok(), parse);
        let revision = Revision::of(&dir, &desired);
        if let (Some(cache), Some(changes)) = (&cache, changes) {
            cache.keep(changes, load, &dir, &desired, &revision);
        }
        ManifestsRead {
            desired,
            revision,
            walked: true,
        }
    })
    .await
    .expect("loading manifests does not panic")
}

#[cfg(test)]
mod tests {
    use super::super::pass_tests::{config as pass_config, Dir};
    use super::*;
    use std::sync::Arc;

    fn cached(dir: &Dir, cache: &Arc<ManifestCache>) -> PassConfig {
        PassConfig {
            manifest_cache: Some(cache.clone()),
            ..pass_config(&dir.0)
        }
    }

    /// The names read, and whether the directory was walked for them.
    async fn read(config: &PassConfig, fresh: bool) -> (Vec<String>, bool) {
        let read = read_manifests(config, config.load.clone(), fresh).await;
        let names = read.desired.assets.keys().map(|n| n.to_string()).collect();
        (names, read.walked)
    }

    #[tokio::test]
    async fn a_read_is_reused_only_while_the_watcher_saw_no_change() {
        let dir = Dir::new("manifests-reuse");
        let cache = Arc::new(ManifestCache::default());
        let config = cached(&dir, &cache);
        dir.write("a", "busybox:1");
        // Not watched yet: every pass walks.
        assert_eq!(read(&config, false).await, (vec!["a".into()], true));
        dir.write("b", "busybox:1");
        let ab = vec!["a".to_string(), "b".into()];
        assert_eq!(read(&config, false).await, (ab.clone(), true));

        cache.watching(true);
        assert_eq!(
            read(&config, false).await,
            (ab.clone(), true),
            "the watch beginning is a change"
        );
        // A change the watcher did not report is not seen...
        dir.write("c", "busybox:1");
        assert_eq!(read(&config, false).await, (ab.clone(), false));
        // ...until a resync,
        let abc = vec!["a".to_string(), "b".into(), "c".into()];
        assert_eq!(read(&config, true).await, (abc.clone(), true));
        assert_eq!(read(&config, false).await, (abc, false));
        // or until the watcher reports one.
        std::fs::remove_file(dir.0.join("a.yaml")).unwrap();
        cache.changed();
        let bc = vec!["b".to_string(), "c".into()];
        assert_eq!(read(&config, false).await, (bc.clone(), true));
        assert_eq!(read(&config, false).await, (bc, false));

        // Other options are another read.
        let mut load = config.load.clone();
        load.policy.allow_bind = vec!["/srv".into()];
        assert!(read_manifests(&config, load, false).await.walked);

        // A lost watch: every pass walks again.
        cache.watching(false);
        assert!(read(&config, false).await.1);
        assert!(read(&config, false).await.1);
    }

    #[tokio::test]
    async fn a_subdirectory_of_a_clone_asks_git_for_its_revision_at_every_pass() {
        let repo = Dir::new("manifests-clone");
        let git = |args: &[&str]| crate::input::revision::git_in(&repo.0, args);
        let manifests = Dir(repo.0.join("m"));
        std::fs::create_dir_all(&manifests.0).unwrap();
        manifests.write("a", "busybox:1");
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-qm", "one"]);
        let cache = Arc::new(ManifestCache::default());
        let config = cached(&manifests, &cache);
        cache.watching(true);
        let first = read_manifests(&config, config.load.clone(), false).await;
        assert!(first.walked);
        // A commit outside the directory: no file event, no walk, but the
        // revision is the new commit.
        std::fs::write(repo.0.join("README"), "x").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "two"]);
        let second = read_manifests(&config, config.load.clone(), false).await;
        assert!(!second.walked);
        assert_ne!(second.revision, first.revision);
    }

    #[tokio::test]
    async fn an_invalid_file_or_a_missing_directory_is_read_again_every_pass() {
        let dir = Dir::new("manifests-invalid");
        let cache = Arc::new(ManifestCache::default());
        let config = cached(&dir, &cache);
        cache.watching(true);
        std::fs::write(dir.0.join("bad.yaml"), "apiVersion: [").unwrap();
        for _ in 0..2 {
            let read = read_manifests(&config, config.load.clone(), false).await;
            assert_eq!(read.desired.invalid_files.len(), 1);
            assert!(read.walked);
        }
        std::fs::remove_dir_all(&dir.0).unwrap();
        for _ in 0..2 {
            let read = read_manifests(&config, config.load.clone(), false).await;
            assert_eq!(read.desired.dir, DirState::Missing);
            assert!(read.walked);
        }
    }
}
