//! `spec.hooks` on the real engine, both strategies: a failing
//! `preDeploy` holds the change (what runs stays) and is not run again
//! for the same version; `onFailure` runs after it; a failing
//! `postDeploy` takes the asset back to the version that ran; a hook past
//! its timeout is killed; secret values never reach the history; and no
//! hook object is left, also after `kill -9` of assetd mid-hook.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptionsBuilder, ListServicesOptionsBuilder};
use common::{all_text, eventually, TestEnv, IMAGE_1, IMAGE_2};

const TOKEN: &str = "hook-token-9c41f7";

fn manifest(env: &TestEnv, image: &str, stage: &str, hooks: &str) -> String {
    let p = &env.prefix;
    format!(
        "apiVersion: assetd/v1\nkind: Secret\nmetadata: {{ name: {p}-token }}\nspec: {{ file: token.txt }}\n---\n"
    ) + &env.asset(
        "app",
        image,
        &format!(
            "  command: sleep 3600\n  env: [ \"STAGE={stage}\" ]\n  secrets: [ {p}-token ]\n  hooks:\n{hooks}"
        ),
    )
}

fn hook(kind: &str, script: &str, timeout: &str) -> String {
    format!("    {kind}: {{ command: [ \"sh\", \"-c\", {script:?} ], timeout: {timeout} }}\n")
}

fn history(env: &TestEnv, _strategy: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(["history", &env.name("app"), "--state-dir"])
        .arg(env.root.join("cli-state"))
        .output()
        .unwrap();
    all_text(&out)
}

fn apply(env: &TestEnv, strategy: &str) -> std::process::Output {
    common::assetd_cli(env, &["apply", "--once", "--wait", "2m"], strategy)
}

/// The image the asset runs: its container's, or its service's.
async fn running_image(env: &TestEnv, strategy: &str) -> String {
    let name = env.name("app");
    let format = if strategy == "local" {
        "{{.Config.Image}}"
    } else {
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
    };
    let what = if strategy == "local" {
        "container"
    } else {
        "service"
    };
    let out = Command::new("docker")
        .args([
            "-H",
            &common::docker_host(),
            what,
            "inspect",
            &name,
            "--format",
            format,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What identifies the running version: the container's ID locally, the
/// service's version index on Swarm.
fn running_version(env: &TestEnv, strategy: &str) -> String {
    let name = env.name("app");
    let (what, format) = if strategy == "local" {
        ("container", "{{.Id}}")
    } else {
        ("service", "{{.Version.Index}}")
    };
    let out = Command::new("docker")
        .args([
            "-H",
            &common::docker_host(),
            what,
            "inspect",
            &name,
            "--format",
            format,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// When the asset's (first) container started, in Unix seconds.
fn started_at(env: &TestEnv, strategy: &str) -> i64 {
    let name = env.name("app");
    let container = if strategy == "local" {
        name
    } else {
        let out = Command::new("docker")
            .args(["-H", &common::docker_host(), "ps", "-q", "--filter"])
            .arg(format!("label=com.docker.swarm.service.name={name}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let out = Command::new("docker")
        .args([
            "-H",
            &common::docker_host(),
            "inspect",
            &container,
            "--format",
            "{{.State.StartedAt}}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    chrono::DateTime::parse_from_rfc3339(&text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp()
}

/// This instance's hook containers and services.
async fn hook_objects(env: &TestEnv) -> usize {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            "io.assetd.hook".to_string(),
            format!("io.assetd.instance={}", env.prefix),
        ],
    )]);
    let containers = env
        .docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    let services = env
        .docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    containers.len() + services.len()
}

async fn hooks_gate_rollouts(prefix: &str, strategy: &str) {
    let env = TestEnv::new(prefix).await;
    env.write("token.txt", TOKEN);
    // The hook says when it ran, then takes a second: the new version
    // must start after it ended.
    let ok = hook(
        "preDeploy",
        "echo pre-ok $STAGE at $(date +%s); sleep 1",
        "30s",
    ) + &hook("postDeploy", "echo post-ok", "30s");
    env.write("app.yaml", &manifest(&env, IMAGE_1, "line7", &ok));
    let out = apply(&env, strategy);
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let text = history(&env, strategy);
    assert!(
        text.contains("preDeploy hook exited 0") && text.contains("pre-ok line7"),
        "{text}"
    );
    assert!(text.contains("postDeploy hook exited 0"), "{text}");
    assert_eq!(running_image(&env, strategy).await, IMAGE_1);
    let hook_ran: i64 = text
        .split("pre-ok line7 at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| {
            t.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no time in {text}"));
    let started = started_at(&env, strategy);
    assert!(
        started > hook_ran,
        "the new version started at {started}, the hook ran at {hook_ran}"
    );
    let version = running_version(&env, strategy);

    // A failing preDeploy holds the update: what runs stays. Its output
    // is kept with the secret's value taken out; onFailure runs.
    let refusing = hook(
        "preDeploy",
        "cat /run/secrets/*; echo migration refused; exit 3",
        "30s",
    ) + &hook("onFailure", "echo cleaned-up", "30s");
    env.write("app.yaml", &manifest(&env, IMAGE_2, "line7", &refusing));
    let out = apply(&env, strategy);
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("preDeploy hook exited 3") && text.contains("migration refused"),
        "{text}"
    );
    assert_eq!(
        running_image(&env, strategy).await,
        IMAGE_1,
        "what runs stays"
    );
    assert_eq!(
        running_version(&env, strategy),
        version,
        "the same container, the same service version"
    );
    let text = history(&env, strategy);
    assert!(
        text.contains("onFailure hook exited 0") && text.contains("cleaned-up"),
        "{text}"
    );
    assert!(text.contains("<redacted>"), "{text}");
    let status = all_text(&common::assetd_cli(&env, &["status"], strategy));
    assert!(
        status.contains("Held") && status.contains("held: preDeploy hook exited 3"),
        "{status}"
    );
    for out in [&text, &status] {
        assert!(!out.contains(TOKEN), "a secret value in the output: {out}");
    }
    // Not run again for the same version.
    let runs = |t: &str| t.matches("preDeploy hook exited 3").count();
    let before = runs(&history(&env, strategy));
    let _ = apply(&env, strategy);
    assert_eq!(runs(&history(&env, strategy)), before, "the hook ran again");

    // A hook past its timeout is killed and holds the change.
    let slow = hook("preDeploy", "sleep 60", "2s");
    env.write("app.yaml", &manifest(&env, IMAGE_2, "line7", &slow));
    let out = apply(&env, strategy);
    assert!(
        all_text(&out).contains("preDeploy hook timed out"),
        "{}",
        all_text(&out)
    );
    assert_eq!(running_image(&env, strategy).await, IMAGE_1);

    // A failing postDeploy is a failed rollout: back to the version that
    // ran.
    let post_fails = hook("postDeploy", "echo smoke test failed; exit 4", "30s");
    env.write("app.yaml", &manifest(&env, IMAGE_2, "line7", &post_fails));
    let out = apply(&env, strategy);
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("postDeploy hook exited 4") && text.contains("smoke test failed"),
        "{text}"
    );
    eventually(
        "the previous version back",
        Duration::from_secs(60),
        || async { (running_image(&env, strategy).await == IMAGE_1).then_some(()) },
    )
    .await;
    // Swarm removes a job's task containers a moment after its service.
    eventually("no hook object left", Duration::from_secs(60), || async {
        (hook_objects(&env).await == 0).then_some(())
    })
    .await;

    // kill -9 of assetd while a hook runs leaves its object; the next
    // pass removes it before running its own.
    let slow = hook("preDeploy", "sleep 60", "2m");
    // A real change (a new environment), so that the hook runs.
    env.write("app.yaml", &manifest(&env, IMAGE_1, "line8", &slow));
    let mut child = Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(["apply", "--once", "--wait", "2m"])
        .args(["--manifests", &env.manifests.display().to_string()])
        .args([
            "--state-dir",
            &env.root.join("cli-state").display().to_string(),
        ])
        .args(["--strategy", strategy, "--instance", &env.prefix])
        .env("DOCKER_HOST", common::docker_host())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        "a hook object while the hook runs",
        Duration::from_secs(60),
        || async { (hook_objects(&env).await > 0).then_some(()) },
    )
    .await;
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        hook_objects(&env).await > 0,
        "the killed run left its hook object"
    );
    env.write(
        "app.yaml",
        &manifest(&env, IMAGE_1, "line8", &hook("preDeploy", "true", "30s")),
    );
    let out = apply(&env, strategy);
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    eventually(
        "the next pass removed it",
        Duration::from_secs(60),
        || async { (hook_objects(&env).await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_gate_rollouts_on_the_local_engine() {
    hooks_gate_rollouts("hk-loc", "local").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_gate_rollouts_on_swarm() {
    hooks_gate_rollouts("hk-sw", "swarm").await;
}
