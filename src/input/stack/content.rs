//! A Secret's or Config's content: read every pass (the file may change
//! without its manifest changing), shown to nothing but the engine. Its
//! version, keyed so that it gives nothing away (`super::version_key`),
//! is what logs, plan, status, labels and the store see.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::encrypted::AgeKeys;
use super::version_key::VersionKey;
use super::{ContentSource, Decrypt};

/// Swarm's limit for secrets and configs.
pub const MAX_CONTENT_BYTES: usize = 500 * 1024;

/// The bytes and their version. `Debug` prints the version only.
#[derive(Clone, PartialEq, Eq)]
pub struct Content {
    pub version: String,
    bytes: Arc<Vec<u8>>,
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Content {{ version: {}, bytes: <redacted> }}",
            self.version
        )
    }
}

impl Content {
    pub fn new(bytes: Vec<u8>, key: &VersionKey) -> Self {
        let version = key.version_of(&bytes);
        Content {
            version,
            bytes: Arc::new(bytes),
        }
    }

    /// The value, for the engine only.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads the content `source` names. `manifests` is the manifests
/// directory, `manifest` the file that declares the object (relative to
/// it). The error says what is wrong without the value.
pub fn read(
    source: &ContentSource,
    manifests: &Path,
    manifest: &str,
    env: &dyn Fn(&str) -> Option<String>,
    keys: &AgeKeys,
    version_key: &VersionKey,
) -> Result<Content, String> {
    let bytes = match source {
        ContentSource::Inline(text) => text.clone().into_bytes(),
        ContentSource::FromEnv { var, .. } => match env(var) {
            Some(value) => value.into_bytes(),
            None => {
                return Err(format!(
                    "environment variable `{var}` is not set in the daemon's environment"
                ))
            }
        },
        ContentSource::File { path, decrypt, .. } => {
            let bytes = read_file(&resolve(path, manifests, manifest)?, path)?;
            match decrypt {
                Decrypt::None => bytes,
                Decrypt::Age => super::encrypted::decrypt(&bytes, keys, path)?,
            }
        }
    };
    if bytes.len() > MAX_CONTENT_BYTES {
        return Err(format!(
            "content is {} bytes; the engine takes at most {MAX_CONTENT_BYTES}",
            bytes.len()
        ));
    }
    Ok(Content::new(bytes, version_key))
}

/// The file `path` (relative to the manifest's directory) must resolve,
/// links followed, to a file inside the manifests directory.
fn resolve(path: &str, manifests: &Path, manifest: &str) -> Result<PathBuf, String> {
    if Path::new(path).is_absolute() {
        return Err(format!(
            "file `{path}` must be relative to the manifest, inside the manifests directory"
        ));
    }
    let base = Path::new(manifest).parent().unwrap_or(Path::new(""));
    let wanted = manifests.join(base).join(path);
    let root = manifests
        .canonicalize()
        .map_err(|e| format!("cannot resolve the manifests directory: {e}"))?;
    let found = wanted
        .canonicalize()
        .map_err(|e| format!("file `{path}`: {}", io_reason(&e)))?;
    if !found.starts_with(&root) {
        return Err(format!(
            "file `{path}` is outside the manifests directory; secrets and configs are read only from inside it"
        ));
    }
    Ok(found)
}

fn read_file(found: &Path, shown: &str) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(found).map_err(|e| format!("file `{shown}`: {}", io_reason(&e)))?;
    if !meta.is_file() {
        return Err(format!("file `{shown}` is not a regular file"));
    }
    if meta.len() > MAX_CONTENT_BYTES as u64 {
        return Err(format!(
            "file `{shown}` is {} bytes; the engine takes at most {MAX_CONTENT_BYTES}",
            meta.len()
        ));
    }
    std::fs::read(found).map_err(|e| format!("file `{shown}`: {}", io_reason(&e)))
}

pub(super) fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_version_and_never_the_value() {
        let content = Content::new(b"password=hunter2".to_vec(), &VersionKey::ephemeral());
        let shown = format!("{content:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(&content.version), "{shown}");
        assert_eq!(content.version.len(), 12);
    }

    #[test]
    fn a_file_outside_the_manifests_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("assetd-content-{}", std::process::id()));
        let manifests = dir.join("m");
        std::fs::create_dir_all(manifests.join("secrets")).unwrap();
        std::fs::write(dir.join("outside"), "x").unwrap();
        std::fs::write(manifests.join("secrets/k.env"), "v").unwrap();
        let env = |_: &str| None;
        let keys = AgeKeys::default();
        let read_ = |source: &ContentSource,
                     manifests: &Path,
                     manifest: &str,
                     env: &dyn Fn(&str) -> Option<String>| {
            read(
                source,
                manifests,
                manifest,
                env,
                &keys,
                &VersionKey::ephemeral(),
            )
        };
        let file = |path: &str| ContentSource::File {
            path: path.into(),
            pos: crate::input::manifest::SourcePos {
                file: "a.yaml".into(),
                line: 1,
                column: 1,
            },
            decrypt: Decrypt::None,
        };
        let err = read_(&file("../outside"), &manifests, "a.yaml", &env).unwrap_err();
        assert!(err.contains("outside the manifests directory"), "{err}");
        let err = read_(&file("/etc/passwd"), &manifests, "a.yaml", &env).unwrap_err();
        assert!(err.contains("must be relative"), "{err}");
        let err = read_(&file("secrets/none"), &manifests, "a.yaml", &env).unwrap_err();
        assert!(err.contains("no such file"), "{err}");
        let ok = read_(&file("secrets/k.env"), &manifests, "a.yaml", &env).unwrap();
        assert_eq!(ok.expose(), b"v");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
