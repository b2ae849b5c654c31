//! Secrets and configs kept in git as age files (`decrypt: age`), on the
//! real engine with the reference tool (Debian's `age`, `age-keygen`):
//! the container or task reads the plaintext; the plaintext is in no
//! output, log or store record; an open identity file is refused; a file
//! for another recipient holds its users and what runs stays; the same
//! value re-encrypted rotates nothing; a new value rotates.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bollard::query_parameters::{InspectServiceOptions, ListTasksOptionsBuilder};
use common::{all_text, eventually, TestEnv, IMAGE_1};

const FIRST: &str = "plc-password-5f3a9e";
const SECOND: &str = "plc-password-rotated-c81d";
const CONFIG: &str = "historian-interval-17s";

/// `age-keygen -o FILE`: the file and its public key.
fn keygen(path: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .expect("age-keygen (Debian's age, installed by scripts/testenv.sh)");
    assert!(out.status.success(), "{}", all_text(&out));
    common::set_mode(path, 0o600);
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `age -e` of `plaintext` for `recipients` into `to`.
fn age_encrypt(plaintext: &str, recipients: &[&str], armor: bool, to: &Path) {
    let source = to.with_extension("plain");
    std::fs::write(&source, plaintext).unwrap();
    let mut age = Command::new("age");
    age.arg("-e");
    for r in recipients {
        age.args(["-r", r]);
    }
    if armor {
        age.arg("-a");
    }
    let out = age.arg("-o").arg(to).arg(&source).output().unwrap();
    std::fs::remove_file(&source).unwrap();
    assert!(out.status.success(), "{}", all_text(&out));
    common::set_mode(to, 0o644);
}

struct Keys {
    old: PathBuf,
    old_public: String,
    other: PathBuf,
    other_public: String,
}

fn keys(env: &TestEnv) -> Keys {
    let dir = env.root.join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let (old, other) = (dir.join("manager.key"), dir.join("other.key"));
    Keys {
        old_public: keygen(&old),
        other_public: keygen(&other),
        old,
        other,
    }
}

fn manifests(env: &TestEnv) -> String {
    let p = &env.prefix;
    let stack = format!(
        "apiVersion: assetd/v1\nkind: Secret\nmetadata: {{ name: {p}-plc }}\nspec: {{ file: secrets/plc.env.age, decrypt: age }}\n---\n\
         apiVersion: assetd/v1\nkind: Config\nmetadata: {{ name: {p}-cfg }}\nspec: {{ file: secrets/agent.cfg.age, decrypt: age }}\n---\n"
    );
    stack
        + &env.asset(
            "app",
            IMAGE_1,
            &format!(
                "  command: sleep 3600\n  secrets: [ {{ source: {p}-plc, target: plc }} ]\n  configs: [ {{ source: {p}-cfg, target: /etc/agent.cfg }} ]\n"
            ),
        )
}

fn cli(env: &TestEnv, strategy: &str, key: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    let key = key.display().to_string();
    all.extend(["--age-identity", &key]);
    common::assetd_cli(env, &all, strategy)
}

fn apply(env: &TestEnv, strategy: &str, key: &Path) -> Output {
    cli(env, strategy, key, &["apply", "--once", "--wait", "2m"])
}

/// The one container that runs the asset: local, or the Swarm task's.
async fn running_container(env: &TestEnv, strategy: &str) -> String {
    let app = env.name("app");
    if strategy == "local" {
        return env.inspect(&app).await.id.unwrap();
    }
    eventually("a running task", Duration::from_secs(60), || async {
        let filters = std::collections::HashMap::from([
            ("service".to_string(), vec![app.clone()]),
            ("desired-state".to_string(), vec!["running".to_string()]),
        ]);
        let tasks = env
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .ok()?;
        let running: Vec<String> = tasks
            .into_iter()
            .filter_map(|t| {
                let status = t.status?;
                (status.state? == bollard::models::TaskState::RUNNING)
                    .then_some(status.container_status?.container_id?)
            })
            .collect();
        (running.len() == 1).then(|| running[0].clone())
    })
    .await
}

/// What the running container reads at `path`, once it holds `want`.
async fn reads(env: &TestEnv, strategy: &str, path: &str, want: &str) {
    eventually(
        &format!("{want} at {path}"),
        Duration::from_secs(60),
        || async {
            let container = running_container(env, strategy).await;
            let out = Command::new("docker")
                .args([
                    "-H",
                    &common::docker_host(),
                    "exec",
                    &container,
                    "cat",
                    path,
                ])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains(want)
                .then_some(())
        },
    )
    .await
}

/// The running version: the container's ID locally, the service's
/// version index on Swarm.
async fn running_version(env: &TestEnv, strategy: &str) -> String {
    if strategy == "local" {
        return env.inspect(&env.name("app")).await.id.unwrap();
    }
    let service = env
        .docker
        .inspect_service(&env.name("app"), None::<InspectServiceOptions>)
        .await
        .unwrap();
    format!(
        "{}@{}",
        service.id.unwrap(),
        service.version.unwrap().index.unwrap()
    )
}

/// Every byte of the CLI's state dir but the local engine's secret files
/// (the 0700 files the container mounts: the engine's copy).
fn store_bytes(env: &TestEnv) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dirs = vec![env.root.join("cli-state")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.ends_with("stack") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.extend(bytes);
            }
        }
    }
    out
}

/// The first 12 hex digits of a value's plain sha256: what a version
/// was before it was keyed, and what would let anyone who can list the
/// engine's secrets test guesses of a short value.
fn unkeyed_version(value: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..12]
        .to_string()
}

fn assert_hidden(what: &str, haystack: &[u8]) {
    for value in [FIRST, SECOND, CONFIG] {
        assert!(
            !haystack.windows(value.len()).any(|w| w == value.as_bytes()),
            "{what} shows a plaintext"
        );
        let unkeyed = unkeyed_version(value);
        assert!(
            !haystack.windows(12).any(|w| w == unkeyed.as_bytes()),
            "{what} shows the unkeyed hash of a plaintext"
        );
    }
}

/// Versions are keyed: the engine's secret names (Swarm) or the local
/// version directories carry a version that is not the value's plain
/// hash; the local key file is the owner's alone.
async fn assert_versions_keyed(env: &TestEnv, strategy: &str) {
    let names: Vec<String> = if strategy == "swarm" {
        common::secret_versions(env).await
    } else {
        let stack = env.root.join("cli-state/stack");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(stack.join("version.key"))
                .expect("the local version key")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the version key's mode");
        let mut names = Vec::new();
        for kind in ["secret", "config"] {
            // One directory per version: `<name>-<version>`.
            for entry in std::fs::read_dir(stack.join(kind)).unwrap().flatten() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names
    };
    assert!(!names.is_empty(), "no secret versions on the engine");
    assert_hidden("the engine's secret versions", names.join(" ").as_bytes());
}

async fn the_whole_age_workflow(prefix: &str, strategy: &str) {
    let env = TestEnv::new(prefix).await;
    let keys = keys(&env);
    let secrets = env.manifests.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let (secret, config) = (secrets.join("plc.env.age"), secrets.join("agent.cfg.age"));
    // The secret armored, the config binary: both as `age` writes them.
    age_encrypt(FIRST, &[&keys.old_public], true, &secret);
    age_encrypt(CONFIG, &[&keys.old_public], false, &config);
    env.write("app.yaml", &manifests(&env));
    let mut seen = Vec::new();

    let out = apply(&env, strategy, &keys.old);
    seen.extend(all_text(&out).into_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    reads(&env, strategy, "/run/secrets/plc", FIRST).await;
    reads(&env, strategy, "/etc/agent.cfg", CONFIG).await;
    let first = running_version(&env, strategy).await;
    assert_versions_keyed(&env, strategy).await;

    // An identity file open to others is refused, saying how to fix it;
    // nothing is touched.
    let open = env.root.join("keys/open.key");
    std::fs::copy(&keys.old, &open).unwrap();
    common::set_mode(&open, 0o644);
    let out = apply(&env, strategy, &open);
    seen.extend(all_text(&out).into_bytes());
    assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
    assert!(all_text(&out).contains("chmod 600"), "{}", all_text(&out));

    // The same value re-encrypted (binary now, and to a second
    // recipient) rotates nothing.
    age_encrypt(
        FIRST,
        &[&keys.old_public, &keys.other_public],
        false,
        &secret,
    );
    let out = cli(&env, strategy, &keys.old, &["plan"]);
    seen.extend(all_text(&out).into_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let out = apply(&env, strategy, &keys.old);
    seen.extend(all_text(&out).into_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    assert_eq!(running_version(&env, strategy).await, first);

    // A file for another recipient holds the asset, naming the file and
    // why; what runs stays.
    age_encrypt(SECOND, &[&keys.other_public], true, &secret);
    let out = apply(&env, strategy, &keys.old);
    let text = all_text(&out);
    seen.extend(text.clone().into_bytes());
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("secrets/plc.env.age") && text.contains("not encrypted to any age identity"),
        "{text}"
    );
    assert!(text.contains(&keys.old_public), "{text}");
    let out = cli(&env, strategy, &keys.old, &["status", "-o", "json"]);
    seen.extend(all_text(&out).into_bytes());
    assert_eq!(running_version(&env, strategy).await, first);
    reads(&env, strategy, "/run/secrets/plc", FIRST).await;

    // With the new key beside the old one (a rotation), the new value
    // goes out: a new container locally, the same service on Swarm, with
    // one secret version left.
    let out = common::assetd_cli(
        &env,
        &[
            "apply",
            "--once",
            "--wait",
            "2m",
            "--age-identity",
            &keys.old.display().to_string(),
            "--age-identity",
            &keys.other.display().to_string(),
        ],
        strategy,
    );
    seen.extend(all_text(&out).into_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    reads(&env, strategy, "/run/secrets/plc", SECOND).await;
    let after = running_version(&env, strategy).await;
    assert_ne!(after, first);
    if strategy == "swarm" {
        assert_eq!(after.split('@').next(), first.split('@').next());
        eventually(
            "one secret version left",
            Duration::from_secs(60),
            || async {
                let _ = common::assetd_cli(
                    &env,
                    &[
                        "apply",
                        "--once",
                        "--wait",
                        "2m",
                        "--age-identity",
                        &keys.other.display().to_string(),
                    ],
                    strategy,
                );
                (common::secret_versions(&env).await.len() == 1).then_some(())
            },
        )
        .await;
    }

    assert_hidden("the CLI's output", &seen);
    assert_hidden("the state dir", &store_bytes(&env));
}

#[tokio::test(flavor = "multi_thread")]
async fn age_secrets_on_the_local_engine() {
    the_whole_age_workflow("age-local", "local").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn age_secrets_on_swarm() {
    the_whole_age_workflow("age-swarm", "swarm").await;
}

/// Both directions through the reference tool: `assetd secret encrypt`
/// opens with `age -d`; `assetd secret recipients` finds the identity
/// that opens an `age -e` file.
#[test]
fn assetd_and_the_age_tool_read_each_other() {
    let dir = std::env::temp_dir().join(format!("assetd-age-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (key, stranger) = (dir.join("k.key"), dir.join("s.key"));
    let public = keygen(&key);
    keygen(&stranger);
    let assetd = env!("CARGO_BIN_EXE_assetd");
    for armor in [false, true] {
        let plain = dir.join(format!("v{armor}.env"));
        std::fs::write(&plain, FIRST).unwrap();
        let mut args = vec!["secret", "encrypt", plain.to_str().unwrap(), "-r", &public];
        if armor {
            args.push("--armor");
        }
        let out = Command::new(assetd).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", all_text(&out));
        assert!(!all_text(&out).contains(FIRST));
        let sealed = dir.join(format!("v{armor}.env.age"));
        let bytes = std::fs::read(&sealed).unwrap();
        assert_eq!(
            bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
            armor
        );
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(&sealed)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            FIRST,
            "{}",
            all_text(&out)
        );
        // Never over an existing file.
        let out = Command::new(assetd).args(&args).output().unwrap();
        assert!(!out.status.success());
    }
    let by_age = dir.join("by-age.age");
    age_encrypt(SECOND, &[&public], false, &by_age);
    let recipients = |identity: &Path| {
        Command::new(assetd)
            .args([
                "secret",
                "recipients",
                by_age.to_str().unwrap(),
                "--age-identity",
            ])
            .arg(identity)
            .output()
            .unwrap()
    };
    let out = recipients(&key);
    assert!(out.status.success(), "{}", all_text(&out));
    assert!(all_text(&out).contains(&public), "{}", all_text(&out));
    assert!(all_text(&out).contains("1 recipient"), "{}", all_text(&out));
    let out = recipients(&stranger);
    assert_eq!(out.status.code(), Some(1), "{}", all_text(&out));
    assert!(all_text(&out).contains("no identity tried opens it"));
    std::fs::remove_dir_all(&dir).unwrap();
}
