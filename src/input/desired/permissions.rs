//! Who may write the manifests: files and directories others could
//! write are refused, like sshd's `StrictModes`.

use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// Why `meta` may not be trusted, if it may not: writable by group or
/// others, or owned by someone other than root or us.
pub(super) fn insecure(meta: &Metadata) -> Option<String> {
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

pub(super) fn fix_hint(meta: &Metadata, path: &str) -> String {
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
