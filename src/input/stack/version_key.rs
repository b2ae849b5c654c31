//! The key behind secret and config versions. A version is the first 12
//! hex digits of HMAC-SHA256(key, content): an unkeyed hash would give a
//! short value away (a PIN, a dictionary password) to anyone who can read
//! `docker secret ls`, a plan, a status or a mount path.
//!
//! One key per instance, kept where every writer of the instance reads it
//! and no unprivileged user can (`crate::engine::strategy::version_key`). It is
//! made once, by the first pass that needs it, and never changes.

use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone, PartialEq, Eq)]
pub struct VersionKey(Arc<[u8; 32]>);

impl fmt::Debug for VersionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VersionKey(<redacted>)")
    }
}

impl VersionKey {
    /// The version of `content` under this key.
    pub fn version_of(&self, content: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(content);
        super::hex(&mac.finalize().into_bytes())[..12].to_string()
    }

    /// A key of this process only, for what deploys nothing (`validate`,
    /// a directory read without an engine): its versions are never
    /// compared with the engine's.
    pub fn ephemeral() -> VersionKey {
        static KEY: OnceLock<VersionKey> = OnceLock::new();
        KEY.get_or_init(|| VersionKey::random().expect("the system's random source"))
            .clone()
    }

    pub(crate) fn random() -> Result<VersionKey, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no random source: {e}"))?;
        Ok(VersionKey(Arc::new(key)))
    }

    pub(crate) fn from_base64(text: &str) -> Option<VersionKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(VersionKey(Arc::new(key)))
    }

    pub(crate) fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.as_slice())
    }
}
