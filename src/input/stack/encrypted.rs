//! Secrets and configs kept in git as age files (`decrypt: age`): read
//! with the identities of `--age-identity`, decrypted in memory, never
//! written anywhere but the engine. Errors name the file and why, never
//! a byte of the plaintext or of a key.
//!
//! Only native X25519 identities (what `age-keygen` writes) are read: a
//! plugin would run a program of the key file's choosing.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::x25519;

const NOT_AGE: &str = "is not an age file (no complete `age-encryption.org/v1` header)";

/// Where the daemon looks when `--age-identity` is not given.
pub const DEFAULT_IDENTITY: &str = "/etc/assetd/age.key";

/// Which identity files to read (the default path unless given), and what
/// to do without any: the daemon holds; `validate` checks the header only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgeKeys {
    files: Vec<PathBuf>,
    explicit: bool,
    header_only_without_keys: bool,
}

impl Default for AgeKeys {
    fn default() -> Self {
        AgeKeys::given(Vec::new())
    }
}

/// Identities read from their files, each with the file it came from.
pub struct Identities {
    keys: Vec<(PathBuf, x25519::Identity)>,
}

impl AgeKeys {
    /// `--age-identity` as given: none means the default file, if any.
    pub fn given(files: Vec<PathBuf>) -> Self {
        let explicit = !files.is_empty();
        let files = if explicit {
            files
        } else {
            vec![PathBuf::from(DEFAULT_IDENTITY)]
        };
        AgeKeys {
            files,
            explicit,
            header_only_without_keys: false,
        }
    }

    /// For `validate` in CI, where the private key is not: without an
    /// identity, check that the file is an age file and go on.
    pub fn header_only_without_keys(self) -> Self {
        AgeKeys {
            header_only_without_keys: true,
            ..self
        }
    }

    /// Reads every identity file. A given file must exist; the default one
    /// may be absent. Any file found must be private to root or to us.
    pub fn load(&self) -> Result<Identities, String> {
        let mut keys = Vec::new();
        for file in &self.files {
            let meta = match fs::metadata(file) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.explicit => continue,
                Err(e) => {
                    return Err(format!(
                        "age identity file {}: {}",
                        file.display(),
                        super::content::io_reason(&e)
                    ))
                }
            };
            check_private(file, &meta)?;
            let text =
                fs::read(file).map_err(|e| format!("age identity file {}: {e}", file.display()))?;
            for identity in parse_identities(&text, file)? {
                keys.push((file.clone(), identity));
            }
        }
        Ok(Identities { keys })
    }

    /// What an operator reads when no identity could be found.
    fn none_found(&self) -> String {
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        if self.explicit {
            format!(
                "the age identity files ({}) hold no identity",
                files.join(", ")
            )
        } else {
            format!(
                "no age identity: {DEFAULT_IDENTITY} does not exist; make one with \
                 `age-keygen -o {DEFAULT_IDENTITY}` (then `chmod 600`) or pass --age-identity FILE"
            )
        }
    }
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The files and the public keys (`age1...`) of the identities.
    pub fn recipients(&self) -> Vec<(PathBuf, String)> {
        self.keys
            .iter()
            .map(|(file, key)| (file.clone(), key.to_public().to_string()))
            .collect()
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|(_, key)| key as &dyn age::Identity)
    }
}

/// A key file readable or writable by anyone but its owner, or owned by
/// someone else than root or us, would let another user read every secret.
fn check_private(file: &Path, meta: &fs::Metadata) -> Result<(), String> {
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "age identity file {} is open to group or others (mode {mode:04o}); \
             fix with `chmod 600 {}`",
            file.display(),
            file.display()
        ));
    }
    let uid = meta.uid();
    // SAFETY: geteuid cannot fail and touches no memory.
    let us = Some(unsafe { libc::geteuid() });
    if uid != 0 && Some(uid) != us {
        return Err(format!(
            "age identity file {} is owned by uid {uid}, not by root or the daemon's user; \
             fix with `chown root {}`",
            file.display(),
            file.display()
        ));
    }
    Ok(())
}

/// The X25519 identities of a key file (`AGE-SECRET-KEY-1...` lines,
/// comments and blank lines skipped). An error gives the line number,
/// never the line.
fn parse_identities(text: &[u8], file: &Path) -> Result<Vec<x25519::Identity>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.map_err(|_| format!("age identity file {} is not text", file.display()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.parse::<x25519::Identity>().map_err(|_| {
            format!(
                "age identity file {}: line {} is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                file.display(),
                n + 1
            )
        })?;
        keys.push(key);
    }
    Ok(keys)
}

/// The plaintext of an age file (binary or armored). `shown` names the
/// file in errors. With no identity and `header_only_without_keys`, the
/// bytes are checked to be an age file and returned as they are.
pub fn decrypt(ciphertext: &[u8], keys: &AgeKeys, shown: &str) -> Result<Vec<u8>, String> {
    let identities = keys.load()?;
    if identities.is_empty() {
        if keys.header_only_without_keys {
            stanzas(ciphertext).map_err(|why| format!("file `{shown}` {why}"))?;
            return Ok(ciphertext.to_vec());
        }
        return Err(format!(
            "file `{shown}` cannot be decrypted: {}",
            keys.none_found()
        ));
    }
    decrypt_with(ciphertext, &identities).map_err(|why| format!("file `{shown}` {why}"))
}

fn decrypt_with(ciphertext: &[u8], identities: &Identities) -> Result<Vec<u8>, String> {
    let decryptor = age::Decryptor::new(ArmoredReader::new(ciphertext)).map_err(reason)?;
    let mut reader = decryptor
        .decrypt(identities.as_dyn())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => format!(
                "is not encrypted to any age identity of this daemon ({}): \
             re-encrypt it to one of their recipients",
                identities
                    .recipients()
                    .iter()
                    .map(|(file, key)| format!("{key} in {}", file.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => reason(other),
        })?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| format!("cannot be decrypted: {}", io_reason(&e)))?;
    Ok(plaintext)
}

/// Why an age file was refused, in an operator's words.
fn reason(error: age::DecryptError) -> String {
    match error {
        age::DecryptError::InvalidHeader
        | age::DecryptError::UnknownFormat
        | age::DecryptError::Io(_) => NOT_AGE.into(),
        age::DecryptError::InvalidMac | age::DecryptError::DecryptionFailed => {
            "cannot be decrypted: it was changed or cut after it was encrypted".into()
        }
        other => format!("cannot be decrypted: {other}"),
    }
}

/// A payload that does not authenticate ends early or was altered: age
/// cannot tell which, so neither can we.
fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
            "it was changed or cut after it was encrypted".into()
        }
        _ => error.to_string(),
    }
}

/// `assetd secret encrypt`: `plaintext` for the `age1...` recipients.
pub fn encrypt(plaintext: &[u8], recipients: &[String], armor: bool) -> Result<Vec<u8>, String> {
    let parsed: Vec<x25519::Recipient> = recipients
        .iter()
        .map(|r| {
            r.parse::<x25519::Recipient>()
                .map_err(|why| format!("recipient `{r}` is not an age public key (age1...): {why}"))
        })
        .collect::<Result<_, _>>()?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| format!("cannot encrypt: {e}"))?;
    let format = if armor {
        Format::AsciiArmor
    } else {
        Format::Binary
    };
    let write = || -> std::io::Result<Vec<u8>> {
        let armored = ArmoredWriter::wrap_output(Vec::new(), format)?;
        let mut writer = encryptor.wrap_output(armored)?;
        writer.write_all(plaintext)?;
        writer.finish()?.finish()
    };
    write().map_err(|e| format!("cannot encrypt: {e}"))
}

/// One recipient stanza of an age header: its type and, for the types
/// that write one, the tag that tells which key it is for.
#[derive(Debug, PartialEq, Eq)]
pub struct Stanza {
    pub kind: String,
    pub args: Vec<String>,
}

/// The recipient stanzas of an age file, read from its header without
/// decrypting anything. X25519 stanzas do not say their recipient (age
/// keeps them anonymous): only an identity can tell whether it opens one.
pub fn stanzas(file: &[u8]) -> Result<Vec<Stanza>, String> {
    let mut header = Vec::new();
    let mut reader = std::io::BufReader::new(ArmoredReader::new(file));
    let mut found = Vec::new();
    let mut first = true;
    loop {
        header.clear();
        let read = reader
            .read_until(b'\n', &mut header)
            .map_err(|_| NOT_AGE.to_string())?;
        if read == 0 {
            return Err(NOT_AGE.into());
        }
        let line = String::from_utf8_lossy(&header);
        let line = line.trim_end_matches('\n');
        if first {
            if line != "age-encryption.org/v1" {
                return Err(NOT_AGE.into());
            }
            first = false;
        } else if let Some(stanza) = line.strip_prefix("-> ") {
            let mut words = stanza.split(' ').map(str::to_string);
            let kind = words.next().unwrap_or_default();
            // Random stanzas age adds so that parsers stay lenient.
            if kind.ends_with("-grease") {
                continue;
            }
            found.push(Stanza {
                kind,
                args: words.collect(),
            });
        } else if line.starts_with("---") {
            return Ok(found);
        }
    }
}

/// The identities among `identities` that open `file` (its header only:
/// the payload is not read).
pub fn opened_by(file: &[u8], identities: &Identities) -> Vec<(PathBuf, String)> {
    identities
        .keys
        .iter()
        .filter(|(_, key)| {
            age::Decryptor::new(ArmoredReader::new(file)).is_ok_and(|d| {
                d.decrypt(std::iter::once(key as &dyn age::Identity))
                    .is_ok()
            })
        })
        .map(|(path, key)| (path.clone(), key.to_public().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_file(dir: &Path, name: &str, mode: u32) -> (PathBuf, String) {
        let key = x25519::Identity::generate();
        let path = dir.join(name);
        use age::secrecy::ExposeSecret;
        fs::write(
            &path,
            format!("# a comment\n{}\n", key.to_string().expose_secret()),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        (path, key.to_public().to_string())
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("assetd-age-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trip_binary_and_armored_and_a_second_identity_for_rotation() {
        let dir = temp("round");
        let (old, old_public) = key_file(&dir, "old.key", 0o600);
        let (new, new_public) = key_file(&dir, "new.key", 0o600);
        let keys = AgeKeys::given(vec![old, new.clone()]);
        for armor in [false, true] {
            let sealed = encrypt(b"user=plc\n", std::slice::from_ref(&new_public), armor).unwrap();
            assert_eq!(sealed.starts_with(b"-----BEGIN AGE"), armor);
            assert_eq!(decrypt(&sealed, &keys, "s.age").unwrap(), b"user=plc\n");
            assert_eq!(stanzas(&sealed).unwrap().len(), 1);
            assert_eq!(stanzas(&sealed).unwrap()[0].kind, "X25519");
            let opened = opened_by(&sealed, &keys.load().unwrap());
            assert_eq!(opened, vec![(new.clone(), new_public.clone())]);
        }
        let only_old = encrypt(b"v", &[old_public], false).unwrap();
        let err = decrypt(&only_old, &AgeKeys::given(vec![new]), "s.age").unwrap_err();
        assert!(
            err.contains("is not encrypted to any age identity"),
            "{err}"
        );
        assert!(err.contains(&new_public), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn open_keys_and_broken_files_are_refused_without_their_bytes() {
        let dir = temp("refuse");
        let (open, public) = key_file(&dir, "open.key", 0o644);
        let err = AgeKeys::given(vec![open.clone()]).load().err().unwrap();
        assert!(
            err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
        fs::set_permissions(&open, fs::Permissions::from_mode(0o600)).unwrap();
        let keys = AgeKeys::given(vec![open]);
        let sealed = encrypt(b"secret-value", &[public], false).unwrap();
        let cut = &sealed[..sealed.len() - 5];
        let err = decrypt(cut, &keys, "s.age").unwrap_err();
        assert!(err.contains("s.age") && err.contains("cut"), "{err}");
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = decrypt(&flipped, &keys, "s.age").unwrap_err();
        assert!(err.contains("changed or cut"), "{err}");
        let err = decrypt(b"secret-value", &keys, "s.age").unwrap_err();
        assert!(err.contains("is not an age file"), "{err}");
        assert!(!err.contains("secret-value"));
        let garbage = dir.join("garbage.key");
        fs::write(&garbage, "AGE-SECRET-KEY-1NOPE\n").unwrap();
        fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();
        let err = AgeKeys::given(vec![garbage]).load().err().unwrap();
        assert!(err.contains("line 1") && !err.contains("NOPE"), "{err}");
        let missing = AgeKeys::given(vec![dir.join("none.key")])
            .load()
            .err()
            .unwrap();
        assert!(missing.contains("no such file"), "{missing}");
        fs::remove_dir_all(dir).unwrap();
    }
}
