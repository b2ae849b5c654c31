//! The parse cache: a file whose stat or bytes did not change is not
//! parsed again.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::input::manifest::{self, ManifestError};

/// What one file parsed to, valid assets or its errors.
pub(super) type FileResult = Result<manifest::ParsedFile, Vec<ManifestError>>;

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
    pub(super) entries: Mutex<HashMap<String, CacheEntry>>,
}

#[derive(Debug)]
pub(super) struct CacheEntry {
    /// `None` while the file is too fresh for its stat to be trusted.
    pub(super) stamp: Option<FileStamp>,
    pub(super) digest: ContentDigest,
    pub(super) result: FileResult,
    /// Files read beside this one (a Compose file's `.env`, `env_file:`):
    /// the result holds while each is as it was.
    pub(super) side: Vec<SideFile>,
}

/// A file read beside a manifest, and its stat when read (`None`: it did
/// not exist).
#[derive(Debug)]
pub(super) struct SideFile {
    path: PathBuf,
    stamp: Option<FileStamp>,
}

impl SideFile {
    pub(super) fn of(path: PathBuf) -> Self {
        let stamp = fs_stamp(&path);
        SideFile { path, stamp }
    }

    /// Whether the file is as it was. A file changed within the last
    /// moments cannot be told apart by its stat, so it counts as changed.
    fn unchanged(&self) -> bool {
        let now = fs_stamp(&self.path);
        now == self.stamp && now.is_none_or(|s| s.settled())
    }
}

fn fs_stamp(path: &std::path::Path) -> Option<FileStamp> {
    std::fs::metadata(path).ok().map(|m| FileStamp::of(&m))
}

pub(super) type ContentDigest = [u8; 32];

/// What `stat` says of a file, as far as its content and permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime_ns: i128,
    pub(super) ctime_ns: i128,
    pub(super) mode: u32,
    pub(super) uid: u32,
}

/// How old a file's last change must be before its stat alone is trusted.
pub(super) const STAT_TRUST_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl FileStamp {
    pub(super) fn of(meta: &Metadata) -> Self {
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
    pub(super) fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let newest = self.mtime_ns.max(self.ctime_ns);
        now - newest > STAT_TRUST_AFTER.as_nanos() as i128
    }
}

impl ParseCache {
    /// The result of a file whose stat has not changed since it was read.
    pub(super) fn by_stamp(&self, source: &str, stamp: &FileStamp) -> Option<FileResult> {
        let entries = self.entries.lock().expect("parse cache lock");
        let entry = entries.get(source)?;
        (entry.stamp.as_ref() == Some(stamp) && entry.side.iter().all(SideFile::unchanged))
            .then(|| entry.result.clone())
    }

    /// The result of the same bytes, parsed before; records the stamp.
    pub(super) fn by_digest(
        &self,
        source: &str,
        digest: &ContentDigest,
        stamp: Option<FileStamp>,
    ) -> Option<FileResult> {
        let mut entries = self.entries.lock().expect("parse cache lock");
        let entry = entries
            .get_mut(source)
            .filter(|e| &e.digest == digest && e.side.iter().all(SideFile::unchanged))?;
        entry.stamp = stamp;
        Some(entry.result.clone())
    }

    pub(super) fn put(&self, source: &str, entry: CacheEntry) {
        let mut entries = self.entries.lock().expect("parse cache lock");
        entries.insert(source.to_string(), entry);
    }

    /// Forgets files that are gone, so the cache holds only what the
    /// directory holds.
    pub(super) fn keep_only(&self, sources: &[(PathBuf, String)]) {
        let live: std::collections::HashSet<&str> =
            sources.iter().map(|(_, s)| s.as_str()).collect();
        let mut entries = self.entries.lock().expect("parse cache lock");
        entries.retain(|source, _| live.contains(source.as_str()));
    }

    /// How many files' results are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().expect("parse cache lock").len()
    }
}
