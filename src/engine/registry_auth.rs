//! Registry credentials, from Docker's own client configuration, so that
//! a `docker login` on the manager is all a private registry needs:
//! `auths` (the `auth` field, base64 of `user:password`), `credHelpers`
//! (per registry) and `credsStore` (all registries) through the
//! `docker-credential-<name>` helper programs. Read at every pull and
//! service write, so a new login needs no restart. Credentials go to the
//! engine only: they are never logged, and errors name the registry and
//! where its credentials came from, never their values.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

/// Where the client configuration is read from.
#[derive(Clone, Debug, Default)]
pub struct RegistryAuth {
    /// `--registry-config`; else `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`.
    explicit: Option<PathBuf>,
}

/// The registry Docker Hub images are pulled from, as `auths` names it.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

#[derive(Debug, Default, Deserialize)]
struct ClientConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    #[serde(rename = "identitytoken")]
    identity_token: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Credentials for one image's registry, and where they came from.
pub struct Found {
    pub credentials: DockerCredentials,
    /// `auths in /root/.docker/config.json`, `helper docker-credential-x`.
    pub source: String,
}

impl RegistryAuth {
    pub fn new(explicit: Option<PathBuf>) -> Self {
        Self { explicit }
    }

    fn config_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.explicit {
            return Some(path.clone());
        }
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        let home = std::env::var_os("HOME")?;
        Some(PathBuf::from(home).join(".docker/config.json"))
    }

    /// The credentials for `image`'s registry; `Ok(None)` when none are
    /// configured (a public image, or no login).
    pub fn for_image(&self, image: &str) -> Result<Option<Found>, String> {
        let Some(path) = self.config_path() else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.explicit.is_none() => {
                return Ok(None)
            }
            Err(e) => return Err(format!("registry config {}: {e}", path.display())),
        };
        let config: ClientConfig = serde_json::from_str(&text).map_err(|e| {
            format!(
                "registry config {}: not Docker's config.json: {e}",
                path.display()
            )
        })?;
        let registry = registry_of(image);
        let helper = config
            .cred_helpers
            .get(&registry)
            .or(config.creds_store.as_ref());
        if let Some(helper) = helper {
            return from_helper(helper, &registry).map(Some);
        }
        let Some(entry) = config
            .auths
            .iter()
            .find(|(key, _)| normalize(key) == registry)
            .map(|(_, entry)| entry)
        else {
            return Ok(None);
        };
        let source = format!("auths in {}", path.display());
        from_entry(entry, &registry, &source).map(|credentials| {
            Some(Found {
                credentials,
                source,
            })
        })
    }
}

fn from_entry(
    entry: &AuthEntry,
    registry: &str,
    source: &str,
) -> Result<DockerCredentials, String> {
    if let Some(token) = &entry.identity_token {
        return Ok(DockerCredentials {
            identitytoken: Some(token.clone()),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        });
    }
    let decoded = entry
        .auth
        .as_deref()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(format!(
            "the {source} entry for registry {registry} is not base64 user:password"
        ));
    };
    Ok(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    })
}

/// `docker-credential-<helper> get`, the server on stdin.
fn from_helper(helper: &str, registry: &str) -> Result<Found, String> {
    let program = format!("docker-credential-{helper}");
    let source = format!("helper {program}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("registry {registry}: cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("registry {registry}: {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "registry {registry}: {program} found no credentials"
        ));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!("registry {registry}: {program} gave no credentials Docker could read")
    })?;
    let credentials = match answer.username.as_str() {
        "<token>" => DockerCredentials {
            identitytoken: Some(answer.secret),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        },
        _ => DockerCredentials {
            username: Some(answer.username),
            password: Some(answer.secret),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        },
    };
    Ok(Found {
        credentials,
        source,
    })
}

/// The registry of an image reference as Docker's client config names
/// it: the first path component when it looks like a host, else Docker
/// Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => DOCKER_HUB.to_string(),
    }
}

/// `https://reg.example:5000/v2/` → `reg.example:5000` (Docker Hub's key
/// stays as it is).
fn normalize(key: &str) -> String {
    if key == DOCKER_HUB {
        return key.to_string();
    }
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    host.split('/').next().unwrap_or(host).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_first_component_when_it_is_a_host() {
        assert_eq!(
            registry_of("127.0.0.1:5599/factory/opcua:2"),
            "127.0.0.1:5599"
        );
        assert_eq!(registry_of("registry.example/x"), "registry.example");
        assert_eq!(registry_of("localhost/x:1"), "localhost");
        assert_eq!(registry_of("assetd-test/busybox:1"), DOCKER_HUB);
        assert_eq!(registry_of("busybox"), DOCKER_HUB);
        assert_eq!(normalize("https://127.0.0.1:5599/v2/"), "127.0.0.1:5599");
    }

    #[test]
    fn auths_entries_are_read_and_a_bad_one_is_named_without_its_value() {
        let dir = std::env::temp_dir().join(format!("assetd-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        // base64("ops:s3cret") and a broken entry.
        std::fs::write(
            &path,
            r#"{"auths": {"127.0.0.1:5599": {"auth": "b3BzOnMzY3JldA=="}, "bad.example": {"auth": "%%%"}}}"#,
        )
        .unwrap();
        let auth = RegistryAuth::new(Some(path.clone()));
        let found = auth.for_image("127.0.0.1:5599/a/b:1").unwrap().unwrap();
        assert_eq!(found.credentials.username.as_deref(), Some("ops"));
        assert_eq!(found.credentials.password.as_deref(), Some("s3cret"));
        assert!(auth.for_image("other.example/x").unwrap().is_none());
        let error = auth.for_image("bad.example/x").err().unwrap();
        assert!(
            error.contains("bad.example") && !error.contains("%%%"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
