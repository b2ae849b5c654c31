//! The shipped examples in `manifests/` deploy on an empty engine, with
//! both strategies: the README's first command (`scripts/demo.sh`) must
//! never break again unnoticed.
//!
//! Tests share one engine, and `scripts/demo.sh` may have left the
//! examples running under their own names and ports. So each test copies
//! the files as they are and gives every declared name (and every named
//! volume they mount) its own prefix, and every host port its own number;
//! nothing else changes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use assetd::input::desired::{load_dir, LoadOptions};
use assetd::input::stack::ResourceKind;
use assetd::report::status::{Phase, StatusReport};
use common::{all_text, eventually, set_mode, TestEnv, CONVERGE};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");

#[tokio::test(flavor = "multi_thread")]
async fn shipped_examples_run_on_an_empty_local_engine() {
    let env = TestEnv::new("ex-local").await;
    shipped_examples_run(&env, "local", &[(5000, 18641), (8080, 18642)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_examples_run_on_an_empty_swarm() {
    let env = TestEnv::new("ex-swarm").await;
    shipped_examples_run(&env, "swarm", &[(5000, 18643), (8080, 18644)]).await;
}

async fn shipped_examples_run(env: &TestEnv, strategy: &str, ports: &[(u16, u16)]) {
    let names = declared_names();
    let volume = env.name("historian-data");
    let _volume = VolumeGuard {
        docker: env.docker.clone(),
        prefix: env.prefix.clone(),
        name: volume.clone(),
    };
    copy_renamed(Path::new(EXAMPLES), &env.manifests, env, &names, ports);

    // The example's volume is not declared and not on the engine: the
    // engine creates it on first use, so plan holds nothing and says so.
    let plan = assetd(env, strategy, &["plan"]);
    let text = all_text(&plan);
    assert_eq!(plan.status.code(), Some(2), "changes pending:\n{text}");
    assert!(
        text.contains(&format!(
            "note: volume `{volume}` is not declared: the engine creates it on first use"
        )),
        "{text}"
    );
    assert!(
        text.contains(" change(s), 0 held, "),
        "nothing held:\n{text}"
    );

    let apply = assetd(env, strategy, &["apply", "--once"]);
    assert_eq!(apply.status.code(), Some(0), "{}", all_text(&apply));

    let assets: BTreeSet<String> = names
        .iter()
        .filter(|(kind, _)| kind.is_none())
        .map(|(_, n)| env.name(n))
        .collect();
    assert_eq!(assets.len(), 6, "every example asset: {assets:?}");
    let report = eventually("every example Running", CONVERGE, || async {
        let out = assetd(env, strategy, &["status", "-o", "json"]);
        let report: StatusReport = serde_json::from_slice(&out.stdout).ok()?;
        let running: BTreeSet<String> = report
            .assets
            .iter()
            .filter(|a| a.phase == Phase::Running)
            .map(|a| a.name.as_str().to_string())
            .collect();
        (running == assets).then_some(report)
    })
    .await;
    assert!(report.manifest_errors.is_empty(), "{report:?}");
}

/// Every name the examples declare (`None`: an asset) and every named
/// volume their assets mount.
fn declared_names() -> Vec<(Option<ResourceKind>, String)> {
    let desired = load_dir(Path::new(EXAMPLES), &LoadOptions::default(), &|_| None);
    assert!(desired.errors().is_empty(), "{:?}", desired.errors());
    let mut names: Vec<(Option<ResourceKind>, String)> = desired
        .assets
        .keys()
        .map(|n| (None, n.as_str().to_string()))
        .collect();
    names.extend(
        desired
            .resources
            .keys()
            .map(|(kind, name)| (Some(*kind), name.clone())),
    );
    for asset in desired.assets.values() {
        for r in &asset.references {
            if !names.iter().any(|(_, n)| *n == r.name) {
                names.push((Some(r.kind), r.name.clone()));
            }
        }
    }
    // Longest first, so that `historian-data` is not renamed through
    // `historian`.
    names.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
    names
}

fn copy_renamed(
    from: &Path,
    to: &Path,
    env: &TestEnv,
    names: &[(Option<ResourceKind>, String)],
    ports: &[(u16, u16)],
) {
    std::fs::create_dir_all(to).unwrap();
    set_mode(to, 0o755);
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_renamed(&path, &target, env, names, ports);
            continue;
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (_, name) in names {
            text = replace_word(&text, name, &env.name(name));
        }
        for (shipped, ours) in ports {
            text = text.replace(&format!("{{ {shipped}: "), &format!("{{ {ours}: "));
        }
        std::fs::write(&target, text).unwrap();
        set_mode(&target, 0o644);
    }
}

/// `text` with every whole-word `word` (a DNS name) replaced.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_name_char) || after.is_some_and(is_name_char) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

fn assetd(env: &TestEnv, strategy: &str, args: &[&str]) -> Output {
    common::assetd_cli(env, args, strategy)
}

/// The engine made the volume on first use, without our labels, so the
/// test's cleanup (by label) does not see it: removed here, once the
/// containers and services that use it are gone.
struct VolumeGuard {
    docker: bollard::Docker,
    prefix: String,
    name: String,
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let (docker, prefix, name) = (self.docker.clone(), self.prefix.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                common::cleanup(&docker, &prefix).await;
                // A Swarm task's container goes a moment after its service.
                for _ in 0..60 {
                    let removed = docker
                        .remove_volume(
                            &name,
                            None::<bollard::query_parameters::RemoveVolumeOptions>,
                        )
                        .await;
                    match removed {
                        Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 409,
                            ..
                        }) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                        _ => return,
                    }
                }
            });
        })
        .join();
    }
}
