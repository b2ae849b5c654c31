//! Where an instance's version key (`crate::input::stack::version_key`) is
//! kept: on Swarm a config `assetd-version-key-<instance>` (the Docker
//! API is root's), on a plain engine a 0600 file in the state dir's stack
//! directory.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt};
use std::path::Path;

use base64::Engine as _;
use bollard::models::ConfigSpec;
use bollard::Docker;

use super::StrategyError;
use crate::input::stack::version_key::VersionKey;

/// The label that marks the key's config (with the instance label, and
/// without the managed label: it is no declared object, never pruned).
pub const KEY_LABEL: &str = "io.assetd.version-key";

fn config_name(instance: &str) -> String {
    format!("assetd-version-key-{instance}")
}

/// The instance's key on Swarm: read from its config, or made and stored
/// (when two managers race, the one that loses reads the winner's).
pub async fn on_swarm(docker: &Docker, instance: &str) -> Result<VersionKey, StrategyError> {
    let name = config_name(instance);
    for _ in 0..3 {
        match docker.inspect_config(&name).await {
            Ok(config) => {
                let data = config.spec.and_then(|s| s.data).unwrap_or_default();
                // The API gives a config's data base64-encoded; the data is
                // the key, base64-encoded again.
                let text = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .ok()
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .unwrap_or_default();
                return VersionKey::from_base64(&text).ok_or_else(|| {
                    StrategyError::Refused(format!(
                        "config {name} holds no version key; remove it to make a new one (every secret and config gets a new version)"
                    ))
                });
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(StrategyError::docker("inspect config", &name, e)),
        }
        let key = VersionKey::random().map_err(StrategyError::Refused)?;
        let spec = ConfigSpec {
            name: Some(name.clone()),
            labels: Some(std::collections::HashMap::from([
                (KEY_LABEL.to_string(), "true".to_string()),
                (
                    crate::engine::strategy::labels::INSTANCE.to_string(),
                    instance.to_string(),
                ),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(key.to_base64())),
            templating: None,
        };
        match docker.create_config(spec).await {
            Ok(_) => {
                tracing::info!(config = %name, "made the key of secret and config versions");
                return Ok(key);
            }
            // Another manager made it first: read theirs.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => continue,
            Err(e) => return Err(StrategyError::docker("create config", &name, e)),
        }
    }
    Err(StrategyError::Refused(format!(
        "config {name} could be neither read nor made"
    )))
}

/// The instance's key on a plain engine: `<stack dir>/version.key`, mode
/// 0600, made on first use.
pub fn in_dir(dir: &Path) -> Result<VersionKey, StrategyError> {
    let path = dir.join("version.key");
    let refused =
        |e: std::io::Error| StrategyError::Refused(format!("version key {}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return VersionKey::from_base64(&text).ok_or_else(|| {
                StrategyError::Refused(format!(
                    "{} holds no version key; remove it to make a new one (every secret and config gets a new version)",
                    path.display()
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refused(e)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(refused)?;
    let key = VersionKey::random().map_err(StrategyError::Refused)?;
    let partial = dir.join(".version.key.partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(refused)?;
    file.write_all(key.to_base64().as_bytes())
        .map_err(refused)?;
    file.sync_all().map_err(refused)?;
    // A concurrent first use by another process: the first link wins and
    // both read it.
    match std::fs::hard_link(&partial, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refused(e)),
    }
    let _ = std::fs::remove_file(&partial);
    in_dir_existing(&path)
}

fn in_dir_existing(path: &Path) -> Result<VersionKey, StrategyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StrategyError::Refused(format!("version key {}: {e}", path.display())))?;
    VersionKey::from_base64(&text)
        .ok_or_else(|| StrategyError::Refused(format!("{} holds no version key", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Sha256;

    #[test]
    fn a_version_is_keyed_and_stable() {
        let dir = std::env::temp_dir().join(format!("assetd-vkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = in_dir(&dir).unwrap();
        let again = in_dir(&dir).unwrap();
        assert_eq!(key, again, "made once, then read");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("version.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pin = b"4711";
        let plain =
            crate::input::stack::hex(&<Sha256 as sha2::Digest>::digest(pin))[..12].to_string();
        assert_ne!(key.version_of(pin), plain, "not the unkeyed hash");
        assert_eq!(key.version_of(pin), again.version_of(pin));
        assert_ne!(
            key.version_of(pin),
            VersionKey::random().unwrap().version_of(pin)
        );
        assert_eq!(key.version_of(pin).len(), 12);
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
