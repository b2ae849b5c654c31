//! The store: the only place that knows sled. Per asset, what was
//! deployed, from which file, with what result, and when to retry after a
//! failure (`crate::model::applied`); the control entries: suspensions
//! (`suspend`), history and rollback pins (`history`). Knows nothing of
//! Docker.
//!
//! The store is a cache of what the ownership labels already say: losing it
//! costs the field-level history and the backoff timers, never correctness.
//! sled types stay inside this module; the rest of assetd sees [`Store`].

pub mod history;
pub mod suspend;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::model::applied::{ActionResult, AppliedRecord, RolledBack};
use crate::model::spec::AssetName;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store at {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("state store: {0}")]
    Io(String),
}

/// The storage interface the reconciler uses.
pub trait Store: Send + Sync {
    fn all(&self) -> BTreeMap<AssetName, AppliedRecord>;
    fn get(&self, name: &AssetName) -> Option<AppliedRecord>;
    /// Whether a record exists, without copying it.
    fn contains(&self, name: &AssetName) -> bool {
        self.get(name).is_some()
    }
    fn put(&self, name: &AssetName, record: &AppliedRecord) -> Result<(), StoreError>;
    fn delete(&self, name: &AssetName) -> Result<(), StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// The operator's decisions that outlive a process (suspensions), by
    /// key: apart from the records, which actions rewrite.
    fn control(&self, key: &str) -> Option<Vec<u8>>;
    /// Sets (`Some`) or clears (`None`) a control entry (durable after
    /// the next [`Store::flush`]).
    fn set_control(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError>;
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The on-disk store. sled is the durable copy; reads are served from a
/// copy in memory, written through on every change, because every pass
/// reads every record (and this process is the database's only user:
/// sled locks it).
pub struct SledStore {
    db: sled::Db,
    applied: sled::Tree,
    control: sled::Tree,
    records: RwLock<BTreeMap<AssetName, AppliedRecord>>,
    /// Written since the last flush: a pass that wrote nothing does not
    /// flush (nor walk the directory to keep its files private).
    unflushed: AtomicBool,
    /// The database directory, kept 0700 with 0600 files.
    path: PathBuf,
}

/// What happened while opening the store, for the log and for status.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Where a store that could not be opened was moved to.
    pub moved_aside: Option<PathBuf>,
}

impl SledStore {
    /// Opens `state_dir/db`. A database that cannot be opened (corrupt,
    /// truncated, garbage) is moved aside and a fresh one started: its
    /// contents are rebuilt from the ownership labels on the next pass. A
    /// database locked by another process is retried for a while, since
    /// systemd may start us while the previous instance is still exiting.
    ///
    /// The store holds environment values, so the state dir (when this
    /// creates it), the database dir and every file in it are the owner's
    /// only (0700, 0600) whatever the umask: outside systemd nothing else
    /// sets them.
    pub fn open(state_dir: &Path) -> Result<(Self, OpenReport), StoreError> {
        let open_error = |path: &Path, e: std::io::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        create_private_dir(state_dir).map_err(|e| open_error(state_dir, e))?;
        check_writable(state_dir)?;
        let path = state_dir.join("db");
        let mut report = OpenReport::default();
        let mut delay = Duration::from_millis(50);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            create_private_dir(&path).map_err(|e| open_error(&path, e))?;
            match Self::open_at(&path) {
                Ok(store) => {
                    make_private(&path).map_err(|e| open_error(&path, e))?;
                    return Ok((store, report));
                }
                Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) if is_lock_error(&e) => {
                    return Err(StoreError::Open {
                        path,
                        message: format!("{e} (is another assetd using this --state-dir?)"),
                    })
                }
                // Not ours to write is not broken: never move it aside.
                Err(sled::Error::Io(io)) if is_not_writable(&io) => {
                    return Err(not_writable(&path, &io));
                }
                Err(e) if report.moved_aside.is_none() => {
                    let aside = state_dir.join(format!("db.corrupt-{}", now_ms()));
                    tracing::warn!(
                        error = %e,
                        moved_to = %aside.display(),
                        "state store cannot be opened; moving it aside and rebuilding from Docker labels"
                    );
                    std::fs::rename(&path, &aside).map_err(|e| StoreError::Open {
                        path: path.clone(),
                        message: format!("cannot move the broken store aside: {e}"),
                    })?;
                    // It holds the same values; an older version may have
                    // left it readable by others.
                    if let Err(e) = make_private(&aside) {
                        tracing::warn!(error = %e, path = %aside.display(), "cannot restrict the moved-aside store to its owner");
                    }
                    report.moved_aside = Some(aside);
                }
                Err(e) => {
                    return Err(StoreError::Open {
                        path,
                        message: e.to_string(),
                    })
                }
            }
        }
    }

    /// [`SledStore::open`] on a blocking thread: its retries sleep, which
    /// must not stall the async runtime's workers.
    pub async fn open_async(state_dir: &Path) -> Result<(Self, OpenReport), StoreError> {
        let state_dir = state_dir.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open(&state_dir))
            .await
            .expect("opening the store does not panic")
    }

    /// Opens the store only if that is possible at once (no retry, no
    /// repair): for read-only commands beside a running daemon.
    pub fn open_nowait(state_dir: &Path) -> Option<Self> {
        let path = state_dir.join("db");
        if !path.exists() {
            return None;
        }
        Self::open_at(&path).ok()
    }

    fn open_at(path: &Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(8 * 1024 * 1024)
            // Every write is followed by an explicit flush (an action's
            // end, a pass, a decision): sled's own flusher, waking twice
            // a second, was most of an idle daemon's CPU.
            .flush_every_ms(None)
            .open()?;
        let applied = db.open_tree("applied")?;
        let control = db.open_tree("control")?;
        let records = applied
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| decode(&k, &v))
            .collect();
        Ok(Self {
            db,
            applied,
            control,
            records: RwLock::new(records),
            unflushed: AtomicBool::new(false),
            path: path.to_path_buf(),
        })
    }
}

/// Directories of the store: the owner's only.
const DIR_MODE: u32 = 0o700;
/// Files of the store: the owner's only.
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (its parents as usual) with mode 0700. An existing
/// directory is left as it is: the state dir may be the operator's (or
/// systemd's `StateDirectoryMode=`).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        other => other?,
    }
    // The umask can only take bits away from 0700; set it anyway, so the
    // mode is exactly this whatever the umask.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
}

/// Restricts `dir` and everything below it to its owner: 0700 for
/// directories, 0600 for files. sled creates its files with the default
/// 0666 less the umask, and more of them later (snapshots, blobs): those
/// are inside the 0700 directory, and made 0600 at the next open or flush.
fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() {
        if meta.permissions().mode() & 0o7777 != DIR_MODE {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
        }
        for entry in std::fs::read_dir(dir)? {
            make_private(&entry?.path())?;
        }
    } else if meta.is_file() && meta.permissions().mode() & 0o7777 != FILE_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

fn is_not_writable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

fn not_writable(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        message: format!(
            "not writable ({e}); assetd keeps its last-applied state here: make it writable (or pass another --state-dir; under systemd StateDirectory=assetd does it)"
        ),
    }
}

/// A state dir assetd cannot write (a read-only mount, another owner) is
/// said as such before sled reports it as a broken database.
fn check_writable(state_dir: &Path) -> Result<(), StoreError> {
    let probe = state_dir.join(format!(".assetd-write-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if is_not_writable(&e) => Err(not_writable(state_dir, &e)),
        Err(e) => Err(StoreError::Open {
            path: state_dir.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("lock"))
}

impl Store for SledStore {
    fn all(&self) -> BTreeMap<AssetName, AppliedRecord> {
        self.records.read().expect("store lock").clone()
    }

    fn get(&self, name: &AssetName) -> Option<AppliedRecord> {
        self.records.read().expect("store lock").get(name).cloned()
    }

    fn contains(&self, name: &AssetName) -> bool {
        self.records.read().expect("store lock").contains_key(name)
    }

    fn put(&self, name: &AssetName, record: &AppliedRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).map_err(|e| StoreError::Io(e.to_string()))?;
        // The lock spans both writes, so memory and disk agree on the
        // order of concurrent writes to one record.
        let mut records = self.records.write().expect("store lock");
        self.applied
            .insert(name.as_str().as_bytes(), value)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        records.insert(name.clone(), record.clone());
        self.unflushed.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn delete(&self, name: &AssetName) -> Result<(), StoreError> {
        let mut records = self.records.write().expect("store lock");
        self.applied
            .remove(name.as_str().as_bytes())
            .map_err(|e| StoreError::Io(e.to_string()))?;
        records.remove(name);
        self.unflushed.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        if !self.unflushed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        if let Err(e) = self.db.flush() {
            self.unflushed.store(true, Ordering::SeqCst);
            return Err(StoreError::Io(e.to_string()));
        }
        // Files sled created since the open (under the 0700 directory).
        make_private(&self.path).map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(())
    }

    fn control(&self, key: &str) -> Option<Vec<u8>> {
        self.control.get(key).ok().flatten().map(|v| v.to_vec())
    }

    fn set_control(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let io = |e: sled::Error| StoreError::Io(e.to_string());
        match value {
            Some(value) => self.control.insert(key, value).map_err(io)?,
            None => self.control.remove(key).map_err(io)?,
        };
        self.unflushed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// A record that does not decode (written by a future version, or
/// damaged) is skipped: the next pass rebuilds it from the labels.
fn decode(key: &[u8], value: &[u8]) -> Option<(AssetName, AppliedRecord)> {
    let name = AssetName::new(std::str::from_utf8(key).ok()?).ok()?;
    let record = serde_json::from_slice(value).ok()?;
    Some((name, record))
}

/// An in-memory store, for `plan` (which must not take the database lock
/// from a running daemon) and for tests.
#[derive(Default, Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<BTreeMap<AssetName, AppliedRecord>>>,
    control: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    pub fn with(records: BTreeMap<AssetName, AppliedRecord>) -> Self {
        Self {
            records: Arc::new(Mutex::new(records)),
            ..Default::default()
        }
    }
}

impl Store for MemoryStore {
    fn all(&self) -> BTreeMap<AssetName, AppliedRecord> {
        self.records.lock().expect("store lock").clone()
    }
    fn get(&self, name: &AssetName) -> Option<AppliedRecord> {
        self.records.lock().expect("store lock").get(name).cloned()
    }
    fn put(&self, name: &AssetName, record: &AppliedRecord) -> Result<(), StoreError> {
        self.records
            .lock()
            .expect("store lock")
            .insert(name.clone(), record.clone());
        Ok(())
    }
    fn delete(&self, name: &AssetName) -> Result<(), StoreError> {
        self.records.lock().expect("store lock").remove(name);
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn control(&self, key: &str) -> Option<Vec<u8>> {
        self.control.lock().expect("store lock").get(key).cloned()
    }
    fn set_control(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut control = self.control.lock().expect("store lock");
        match value {
            Some(value) => control.insert(key.to_string(), value.to_vec()),
            None => control.remove(key),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::SpecHash;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("assetd-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopen() {
        let dir = temp_dir("reopen");
        let name = AssetName::new("a").unwrap();
        {
            let (store, _) = SledStore::open(&dir).unwrap();
            let record = AppliedRecord {
                hash: Some(SpecHash("h".into())),
                attempts: 3,
                ..Default::default()
            };
            store.put(&name, &record).unwrap();
            store.flush().unwrap();
        }
        let (store, report) = SledStore::open(&dir).unwrap();
        assert!(report.moved_aside.is_none());
        assert_eq!(store.get(&name).unwrap().attempts, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every directory at or below `dir` with its mode, and every file.
    fn modes_below(dir: &Path) -> Vec<(PathBuf, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = vec![(
            dir.to_path_buf(),
            std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
        )];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(modes_below(&path));
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
                out.push((path, mode));
            }
        }
        out
    }

    const UMASK_CHILD: &str = "ASSETD_STORE_TEST_UMASK_CHILD";

    /// Runs in a child of this test binary started under `umask 022` (the
    /// umask is per process, and this one's is not known): sled's files
    /// would be 0644 and a plain `create_dir_all` 0755.
    #[test]
    fn the_store_is_private_to_its_owner_whatever_the_umask() {
        let name = "store::tests::the_store_is_private_to_its_owner_whatever_the_umask";
        if std::env::var_os(UMASK_CHILD).is_none() {
            let out = std::process::Command::new("sh")
                .args(["-c", r#"umask 022 && exec "$0" "$@""#])
                .arg(std::env::current_exe().unwrap())
                .args([name, "--exact", "--nocapture", "--test-threads=1"])
                .env(UMASK_CHILD, "1")
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{text}");
            // A filter that matched nothing would pass as well.
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let root = temp_dir("modes");
        // A file created the ordinary way: the umask is in force.
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("plain"), b"").unwrap();
        let plain = std::fs::metadata(root.join("plain")).unwrap().permissions();
        assert_eq!(plain.mode() & 0o777, 0o644, "umask 022 in the child");

        let state = root.join("state");
        let name = AssetName::new("a").unwrap();
        let record = AppliedRecord {
            hash: Some(SpecHash("h".into())),
            ..Default::default()
        };
        let assert_private = |when: &str| {
            let modes = modes_below(&state);
            assert!(modes.len() > 3, "{when}: sled files: {modes:?}");
            for (path, mode) in &modes {
                let want = if path.is_dir() { 0o700 } else { 0o600 };
                assert_eq!(*mode, want, "{when}: {} is {mode:o}", path.display());
            }
        };
        {
            let (store, _) = SledStore::open(&state).unwrap();
            store.put(&name, &record).unwrap();
            store.flush().unwrap();
            assert_private("new store");
        }
        // A store an older version left readable by others is restricted
        // at the next open.
        for (path, _) in modes_below(&state) {
            let mode = if path.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        {
            let (store, _) = SledStore::open(&state).unwrap();
            assert_eq!(store.get(&name), Some(record.clone()));
            assert_private("reopened");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_garbage_database_is_moved_aside_and_a_fresh_one_opened() {
        let dir = temp_dir("garbage");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(dir.join("db").join("conf"), b"\xff\xfe garbage \x00\x01").unwrap();
        std::fs::write(dir.join("db").join("db"), vec![0xAB; 4096]).unwrap();
        let (store, report) = SledStore::open(&dir).unwrap();
        let aside = report.moved_aside.expect("the broken store is moved aside");
        assert!(aside.exists());
        assert!(store.all().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
