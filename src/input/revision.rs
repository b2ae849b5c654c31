//! Which revision of the manifests a daemon works from: the git commit
//! when the directory is in a git work tree (a git-sync link resolves to
//! one), else a digest of what the manifests declare. The writer records
//! the revision it applied on the lease, so a new writer whose copy is
//! behind does not roll the fleet back.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::input::desired::Desired;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Git,
    Digest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub kind: Kind,
    /// The full commit, or the digest in hex.
    pub id: String,
}

/// How this copy's revision stands to the one applied last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Same,
    /// This copy is ahead (the applied one is its ancestor).
    Newer,
    /// This copy is behind (an ancestor of the applied one, or it does
    /// not even have the applied commit).
    Older,
    /// Neither: diverged histories, or digests that cannot be ordered.
    Unordered,
}

impl Revision {
    /// The revision of the manifests in `dir`, as loaded into `desired`.
    pub fn of(dir: &Path, desired: &Desired) -> Self {
        match git(dir, &["rev-parse", "--verify", "HEAD"]) {
            Some(commit) => Revision {
                kind: Kind::Git,
                id: commit,
            },
            None => Revision {
                kind: Kind::Digest,
                id: digest(desired),
            },
        }
    }

    /// `3f2a91c` (a commit) or `digest:5e1b0c4d`.
    pub fn short(&self) -> String {
        let id: String = self
            .id
            .chars()
            .take(if self.kind == Kind::Git { 7 } else { 8 })
            .collect();
        match self.kind {
            Kind::Git => id,
            Kind::Digest => format!("digest:{id}"),
        }
    }

    /// As stored on the lease: `git:<commit>` or `digest:<hex>`.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Git => format!("git:{}", self.id),
            Kind::Digest => format!("digest:{}", self.id),
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        let (kind, id) = label.split_once(':')?;
        let kind = match kind {
            "git" => Kind::Git,
            "digest" => Kind::Digest,
            _ => return None,
        };
        Some(Self {
            kind,
            id: id.to_string(),
        })
    }

    /// How this copy (in `dir`) stands to `applied`.
    pub fn compare(&self, applied: &Revision, dir: &Path) -> Order {
        if self == applied {
            return Order::Same;
        }
        if self.kind != Kind::Git || applied.kind != Kind::Git {
            return Order::Unordered;
        }
        // A commit this copy has never fetched is from its future.
        if git(
            dir,
            &["cat-file", "-e", &format!("{}^{{commit}}", applied.id)],
        )
        .is_none()
        {
            return Order::Older;
        }
        if is_ancestor(dir, &self.id, &applied.id) {
            Order::Older
        } else if is_ancestor(dir, &applied.id, &self.id) {
            Order::Newer
        } else {
            Order::Unordered
        }
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}

fn is_ancestor(dir: &Path, older: &str, newer: &str) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["merge-base", "--is-ancestor", older, newer])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `git -C DIR ARGS` when it succeeds: its first line. `git` itself
/// missing is the same as no work tree.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let out = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_string())
}

/// What the manifests declare, hashed: names and spec hashes, in order.
fn digest(desired: &Desired) -> String {
    let mut hasher = Sha256::new();
    for (name, asset) in &desired.assets {
        hasher.update(name.as_str().as_bytes());
        hasher.update(b"=");
        hasher.update(asset.hash.0.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `git -C dir ARGS` with a throw-away identity; panics unless it succeeds.
#[cfg(test)]
pub(crate) fn git_in(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "git {args:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_ordered_by_history_and_digests_are_not() {
        let dir = std::env::temp_dir().join(format!("assetd-rev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        git_in(&dir, &["init", "-q"]);
        std::fs::write(dir.join("a.yaml"), "1").unwrap();
        git_in(&dir, &["add", "."]);
        git_in(&dir, &["commit", "-qm", "one"]);
        let desired = crate::input::desired::load_dir(&dir, &Default::default(), &|_| None);
        let one = Revision::of(&dir, &desired);
        std::fs::write(dir.join("a.yaml"), "2").unwrap();
        git_in(&dir, &["commit", "-qam", "two"]);
        let two = Revision::of(&dir, &desired);
        assert_eq!(one.kind, Kind::Git);
        assert_eq!(one.short().len(), 7);
        assert_eq!(two.compare(&one, &dir), Order::Newer);
        assert_eq!(one.compare(&two, &dir), Order::Older);
        assert_eq!(two.compare(&two, &dir), Order::Same);
        let unknown = Revision {
            kind: Kind::Git,
            id: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        assert_eq!(
            two.compare(&unknown, &dir),
            Order::Older,
            "a commit never fetched"
        );
        let a = Revision {
            kind: Kind::Digest,
            id: "aa".into(),
        };
        assert_eq!(a.compare(&two, &dir), Order::Unordered);
        assert_eq!(Revision::from_label(&two.label()), Some(two));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
