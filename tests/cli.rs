//! The CLI contract, by running the binary: exit codes, output, refusals.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TestEnv, IMAGE_1, IMAGE_2};

/// Runs `assetd ARGS` against the test engine.
fn assetd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(args)
        .env("DOCKER_HOST", common::docker_host())
        .env("ASSETD_LOG", "warn")
        .output()
        .expect("the assetd binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--manifests M --state-dir S --strategy local --instance PREFIX`, with
/// a state dir of the CLI's own (the TestEnv holds its store's lock).
fn common_args(env: &TestEnv) -> Vec<String> {
    vec![
        "--manifests".into(),
        env.manifests.display().to_string(),
        "--state-dir".into(),
        env.root.join("cli-state").display().to_string(),
        "--strategy".into(),
        "local".into(),
        "--instance".into(),
        env.prefix.clone(),
    ]
}

fn run(cmd: &[&str], env: &TestEnv, extra: &[&str]) -> Output {
    let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    args.extend(common_args(env));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assetd(&refs)
}

/// Asserts exit code `code` and that stderr says `reason`.
fn assert_exit(out: &Output, code: i32, reason: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(code), "{stdout}{stderr}");
    assert!(
        stderr.contains(reason),
        "exit {code} should say `{reason}`:\n{stdout}{stderr}"
    );
}

#[test]
fn bad_usage_exits_64() {
    assert_exit(&assetd(&["--no-such-flag"]), 64, "--no-such-flag");
    // apply without --once
    assert_exit(&assetd(&["apply"]), 64, "--once");
    assert_exit(&assetd(&["run", "--resync", "0s"]), 64, "--resync");
    assert_exit(
        &assetd(&["run", "--strategy", "kubernetes"]),
        64,
        "kubernetes",
    );
    // validate needs a path
    assert_exit(&assetd(&["validate"]), 64, "PATH");
    assert_eq!(assetd(&["--help"]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_points_at_file_line_and_column() {
    let env = TestEnv::new("cli-validate").await;
    env.write("good.yaml", &env.asset("good", IMAGE_1, ""));
    env.write(
        "bad.yaml",
        &env.asset("bad", IMAGE_1, "  ports: { 70000: 80 }\n"),
    );
    let out = assetd(&["validate", env.manifests.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("bad.yaml:9:"), "{stderr}");
    assert!(stderr.contains("spec.ports"), "{stderr}");
    assert!(
        stdout.contains("1 asset(s) valid, 1 problem(s)"),
        "{stdout}"
    );

    let json = assetd(&[
        "validate",
        "-o",
        "json",
        env.manifests.join("bad.yaml").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["errors"][0]["line"], 9);
    assert!(v["errors"][0]["field"]
        .as_str()
        .unwrap()
        .starts_with("spec.ports"));

    env.remove("bad.yaml");
    let ok = assetd(&["validate", env.manifests.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_field_changes_and_exits_2_until_applied() {
    let env = TestEnv::new("cli-plan").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let first = run(&["plan"], &env, &[]);
    let (stdout, _) = text(&first);
    assert_eq!(first.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("+ create {}", env.name("a"))),
        "{stdout}"
    );

    let applied = run(&["apply", "--once"], &env, &[]);
    assert_eq!(applied.status.code(), Some(0), "{:?}", text(&applied));
    let converged = run(&["plan"], &env, &[]);
    assert_eq!(converged.status.code(), Some(0), "{:?}", text(&converged));

    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));
    let changed = run(&["plan"], &env, &[]);
    let (stdout, _) = text(&changed);
    assert_eq!(changed.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("~ update {}", env.name("a"))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("spec.image: {IMAGE_1} → {IMAGE_2}")),
        "{stdout}"
    );
    assert!(!stdout.contains("\x1b["), "no colour when piped");

    let json = run(&["plan"], &env, &["-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["changes_pending"], true);
    assert_eq!(v["strategy"], "local");
    assert_eq!(v["actions"][0]["kind"], "update");
    assert_eq!(v["actions"][0]["changes"][0]["path"], "spec.image");
    assert_eq!(v["actions"][0]["changes"][0]["after"], IMAGE_2);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_exits_1_when_an_asset_fails_and_still_converges_the_rest() {
    let env = TestEnv::new("cli-fail").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            "assetd-test/no-such-image-cli:1",
            "  pullPolicy: Never\n",
        ),
    );
    env.write("b.yaml", &env.asset("b", IMAGE_1, ""));
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(
        format!("{stdout}{stderr}").contains("no-such-image-cli"),
        "the reason, naming the image: {stdout}{stderr}"
    );
    assert!(env
        .inspect(&env.name("b"))
        .await
        .state
        .unwrap()
        .running
        .unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_strategy_picks_swarm_on_a_manager() {
    let env = TestEnv::new("cli-auto").await;
    let mut args = common_args(&env);
    let i = args.iter().position(|a| a == "local").unwrap();
    args[i] = "auto".into();
    let mut full = vec!["plan".to_string()];
    full.extend(args);
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    let out = assetd(&refs);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    // The test engine is a one-node Swarm manager (scripts/testenv.sh).
    assert!(stdout.starts_with("strategy: swarm"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writable_manifest_is_refused_and_nothing_is_applied() {
    let env = TestEnv::new("cli-perm").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    common::set_mode(&env.manifests.join("a.yaml"), 0o666);
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("chmod"),
        "{stdout}{stderr}"
    );
    assert!(env.containers().await.is_empty());
    // `validate` checks content; it warns that apply would refuse it.
    let path = env.manifests.join("a.yaml");
    let out = assetd(&["validate", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("warning: `assetd apply` and `assetd run` would refuse this")
            && stderr.contains("chmod"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writable_manifest_directory_is_refused() {
    let env = TestEnv::new("cli-permdir").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    common::set_mode(&env.manifests, 0o777);
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("chmod go-w"),
        "says why and how to fix it: {stdout}{stderr}"
    );
    assert!(env.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_mounts_need_allow_bind_and_the_error_says_how() {
    let env = TestEnv::new("cli-bind").await;
    let src = env.root.join("cfg");
    std::fs::create_dir_all(&src).unwrap();
    let mount = format!(
        "  mounts:\n    - {{ type: bind, source: {}, target: /etc/cfg }}\n",
        src.display()
    );
    env.write("a.yaml", &env.asset("a", IMAGE_1, &mount));
    let refused = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        format!("{stdout}{stderr}").contains("--allow-bind"),
        "{stdout}{stderr}"
    );
    assert!(env.containers().await.is_empty());

    let allowed = run(
        &["apply", "--once"],
        &env,
        &["--allow-bind", env.root.to_str().unwrap()],
    );
    assert_eq!(allowed.status.code(), Some(0), "{:?}", text(&allowed));
    assert_eq!(env.containers().await.len(), 1);
}

#[test]
fn committed_schema_is_current() {
    let out = assetd(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let fresh: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/assetd.schema.json");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&committed_path)
            .expect("manifests/assetd.schema.json is committed"),
    )
    .unwrap();
    assert_eq!(
        fresh, committed,
        "manifests/assetd.schema.json is stale: run `assetd schema > manifests/assetd.schema.json`"
    );
    assert_eq!(fresh["$schema"], "http://json-schema.org/draft-07/schema#");
}

#[test]
fn example_manifests_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let out = assetd(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains("6 asset(s), 1 network(s) valid, 0 problem(s)"),
        "{:?}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_exits_1_on_an_invalid_manifest_and_says_which() {
    let env = TestEnv::new("cli-plan-invalid").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, "  bogus: 1\n"));
    let out = run(&["plan"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("a.yaml:9")
            && format!("{stdout}{stderr}").contains("bogus"),
        "names file and line: {stdout}{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_exits_3_when_it_held_removals() {
    let env = TestEnv::new("cli-apply-held").await;
    for i in 0..7 {
        env.write(
            &format!("a{i}.yaml"),
            &env.asset(&format!("a{i}"), IMAGE_1, ""),
        );
    }
    env.write("keep.yaml", &env.asset("keep", IMAGE_1, ""));
    let out = run(&["apply", "--once"], &env, &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    for i in 0..7 {
        env.remove(&format!("a{i}.yaml"));
    }
    // 7 of 8 at once: held, and the exit code says the engine does not
    // match the manifests.
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("held"), "{stderr}");
    assert_eq!(env.containers().await.len(), 8, "nothing removed");
    let out = run(&["apply", "--once"], &env, &["--allow-mass-prune"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(env.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_asset_fails_apply_and_status_with_its_exit_code() {
    let env = TestEnv::new("cli-crashloop").await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sh, -c, \"exit 3\"]\n"),
    );
    let first = run(&["apply", "--once"], &env, &[]);
    assert!(
        matches!(first.status.code(), Some(0 | 1)),
        "{:?}",
        text(&first)
    );
    // Once the engine has seen it crash, apply says so with the code.
    let deadline = std::time::Instant::now() + common::CONVERGE;
    loop {
        let out = run(&["apply", "--once"], &env, &[]);
        let (stdout, stderr) = text(&out);
        if out.status.code() == Some(1) && stderr.contains("(3)") {
            assert!(stderr.contains(&env.name("a")), "{stderr}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "apply never said the asset fails: {stdout}{stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // Failed whenever it is looked at; caught up between two crashes it
    // has no exit code yet (`crash-looping, N restarts`), so the code is
    // waited for.
    let deadline = std::time::Instant::now() + common::CONVERGE;
    loop {
        let out = run(&["status"], &env, &["-o", "json"]);
        let report: assetd::report::status::StatusReport =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
        let a = report
            .assets
            .iter()
            .find(|a| a.name.as_str() == env.name("a"))
            .unwrap();
        assert_eq!(a.phase, assetd::report::status::Phase::Failed, "{a:?}");
        if a.last_error.as_deref().unwrap_or_default().contains("(3)") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never the exit code: {a:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A read-only bind mount of a directory onto itself; undone on drop.
struct ReadOnlyMount(std::path::PathBuf);

impl ReadOnlyMount {
    fn new(dir: &Path) -> Self {
        let sh = |args: &[&str]| {
            let out = Command::new("mount")
                .args(args)
                .output()
                .expect("mount runs");
            assert!(out.status.success(), "mount {args:?}: {:?}", text(&out));
        };
        let dir_text = dir.to_str().unwrap();
        sh(&["--bind", dir_text, dir_text]);
        let mount = Self(dir.to_path_buf());
        sh(&["-o", "remount,ro,bind", dir_text]);
        mount
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_state_dir_is_said_to_be_read_only_and_never_moved_aside() {
    let env = TestEnv::new("cli-rostate").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let out = run(&["apply", "--once"], &env, &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let state = env.root.join("cli-state");
    let _mount = ReadOnlyMount::new(&state);
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("not writable"), "{stderr}");
    assert!(!stderr.contains("moving it aside"), "{stderr}");
    let aside = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("db.corrupt"));
    assert!(!aside, "nothing moved aside");
}

/// The user `scripts/testenv.sh` creates to own a manifest that is not
/// ours; its absence fails the test (it must not pass by skipping).
const OTHER_USER: &str = "assetd-test-other";

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_owned_by_another_user_is_refused() {
    let env = TestEnv::new("cli-owner").await;
    let id = Command::new("id")
        .args(["-u", OTHER_USER])
        .output()
        .expect("run id");
    assert!(
        id.status.success(),
        "no user {OTHER_USER}: run scripts/testenv.sh, which creates it"
    );
    let uid: u32 = String::from_utf8_lossy(&id.stdout).trim().parse().unwrap();
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    env.write("b.yaml", &env.asset("b", IMAGE_1, ""));
    let theirs = env.manifests.join("a.yaml");
    std::os::unix::fs::chown(&theirs, Some(uid), None).unwrap_or_else(|e| {
        panic!(
            "chown {} to {OTHER_USER} (needs root): {e}",
            theirs.display()
        )
    });
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains(&format!("owned by uid {uid}")),
        "names the owner: {stdout}{stderr}"
    );
    let names: Vec<String> = env
        .containers()
        .await
        .iter()
        .flat_map(|c| c.names.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        vec![format!("/{}", env.name("b"))],
        "only the file of our own is applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_replicas_cannot_share_host_ports_and_are_refused_with_the_reason() {
    let env = TestEnv::new("cli-replports").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  ports: { 28471: 80 }\n  mode: { replicated: { replicas: 2 } }\n",
        ),
    );
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}")
            .contains("spec.ports: 2 replicas cannot share host ports on one engine"),
        "{stdout}{stderr}"
    );
    assert!(env.containers().await.is_empty(), "no replica started");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_prune_0_2_holds_what_the_default_0_5_allows() {
    let env = TestEnv::new("cli-maxprune").await;
    for i in 0..12 {
        env.write(
            &format!("a{i:02}.yaml"),
            &env.asset(&format!("a{i:02}"), IMAGE_1, ""),
        );
    }
    let out = run(&["apply", "--once"], &env, &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(env.containers().await.len(), 12);
    // Six of twelve: half, more than 5 (always allowed below that).
    for i in 0..6 {
        env.remove(&format!("a{i:02}.yaml"));
    }
    let held = run(&["apply", "--once"], &env, &["--max-prune", "0.2"]);
    let (stdout, stderr) = text(&held);
    assert_eq!(held.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("more than 20 %"),
        "{stdout}{stderr}"
    );
    assert_eq!(env.containers().await.len(), 12, "nothing removed");
    let allowed = run(&["apply", "--once"], &env, &[]);
    assert_eq!(allowed.status.code(), Some(0), "{:?}", text(&allowed));
    assert_eq!(env.containers().await.len(), 6);
}

/// `apply --once` on Swarm waits for the rollout it started to end: a
/// version that exits 3 is rolled back by Swarm, and the exit code and
/// output say so (the update call itself succeeded).
#[tokio::test(flavor = "multi_thread")]
async fn apply_once_on_swarm_waits_for_the_rollout_and_reports_its_rollback() {
    let env = TestEnv::new("cli-swarm-wait").await;
    let mut args: Vec<String> = common_args(&env);
    let strategy = args.iter().position(|a| a == "local").unwrap();
    args[strategy] = "swarm".into();
    let apply = |args: &[String]| {
        let mut all = vec!["apply".to_string(), "--once".into()];
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assetd(&refs)
    };
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sleep, \"3600\"]\n"),
    );
    let out = apply(&args);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_2, "  command: [sh, -c, \"exit 3\"]\n"),
    );
    let out = apply(&args);
    assert_exit(&out, 1, "rollback");
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains(&format!("failed: {}", env.name("a"))),
        "{stdout}{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_deploy_that_dies_within_its_monitor_window_fails_apply() {
    let env = TestEnv::new("cli-createmon").await;
    // Runs a few seconds, then dies: a first deploy that never came up.
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  command: [sh, -c, \"sleep 3; exit 3\"]\n  update: { monitor: 8s }\n",
        ),
    );
    let out = run(&["apply", "--once"], &env, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("failed: {}", env.name("a"))),
        "{stdout}{stderr}"
    );
}
