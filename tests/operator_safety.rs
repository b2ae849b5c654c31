//! What a new operator runs into first, against the real engine and the
//! real binary: a secret's YAML data file, a relative state dir, `plan`
//! of another directory beside a daemon, and control verbs the daemon
//! refuses (each a regression of issue 23).

mod common;

use std::process::Output;

use assetd::report::status::{Phase, StatusReport};
use common::harness::{shared, Assetd};
use common::{eventually, set_mode, TestEnv, CONVERGE, IMAGE_1, IMAGE_2};

/// A value nobody may ever see outside the engine.
const VALUE: &str = "hunter2-9f3a-do-not-print";

fn text(out: &Output) -> String {
    common::all_text(out)
}

fn write_data(env: &TestEnv, file: &str, content: &str) {
    let path = env.manifests.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    set_mode(&path, 0o600);
}

/// `assetd ARGS --state-dir STATE` (a control command: no manifests).
fn control(state: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("assetd runs")
}

async fn running(env: &TestEnv, name: &str) -> bool {
    let Ok(c) = env.docker.inspect_container(name, None).await else {
        return false;
    };
    c.state.and_then(|s| s.running) == Some(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secrets_yaml_data_file_is_never_parsed_shown_or_blocking_removals() {
    let _engine = shared().await;
    let env = TestEnv::new("os-yamlsecret").await;
    let assetd = Assetd::new(&env, "local");
    let creds = env.name("creds");
    // Credentials kept as YAML, and not even valid YAML: were it parsed
    // as a manifest, the error would quote this line, value and all.
    write_data(
        &env,
        "secrets/db-creds.yaml",
        &format!("user: historian\npassword: [{VALUE}\n"),
    );
    env.write(
        "creds.yaml",
        &format!(
            "apiVersion: assetd/v1\nkind: Secret\nmetadata: {{ name: {creds} }}\nspec: {{ file: secrets/db-creds.yaml }}\n"
        ),
    );
    env.write(
        "app.yaml",
        &env.asset(
            "app",
            IMAGE_1,
            &format!("  secrets: [ {{ source: {creds}, target: db }} ]\n"),
        ),
    );
    env.write("other.yaml", &env.asset("other", IMAGE_1, ""));

    let validate = std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .current_dir(&env.root)
        .args(["validate", "manifests"])
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate));
    let plan = assetd.output(&["plan"], &[]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let apply = assetd.output(&["apply", "--once"], &[]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    for out in [&validate, &plan, &apply] {
        let shown = text(out);
        assert!(!shown.contains(VALUE), "the value was printed:\n{shown}");
        assert!(!shown.contains("db-creds.yaml:"), "{shown}");
    }
    assert!(running(&env, &env.name("app")).await);

    // The data file is no invalid manifest: a removal goes ahead.
    env.remove("other.yaml");
    let apply = assetd.output(&["apply", "--once"], &[]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        env.docker
            .inspect_container(&env.name("other"), None)
            .await
            .is_err(),
        "other is removed: {}",
        text(&apply)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relative_state_dir_still_delivers_a_local_secret() {
    let _engine = shared().await;
    let env = TestEnv::new("os-relstate").await;
    let creds = env.name("creds");
    write_data(&env, "secrets/token", VALUE);
    env.write(
        "creds.yaml",
        &format!(
            "apiVersion: assetd/v1\nkind: Secret\nmetadata: {{ name: {creds} }}\nspec: {{ file: secrets/token }}\n"
        ),
    );
    env.write(
        "app.yaml",
        &env.asset(
            "app",
            IMAGE_1,
            &format!("  secrets: [ {{ source: {creds}, target: token }} ]\n"),
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .current_dir(&env.root)
        .args(["apply", "--once", "--strategy", "local"])
        .args(["--instance", &env.prefix])
        .args(["--manifests", "manifests", "--state-dir", "relative-state"])
        .env("DOCKER_HOST", common::docker_host())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let app = env.name("app");
    assert!(running(&env, &app).await, "{}", text(&out));
    let inspect = env.docker.inspect_container(&app, None).await.unwrap();
    let sources: Vec<String> = inspect
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.source)
        .collect();
    assert!(
        sources
            .iter()
            .any(|s| s.starts_with(&env.root.join("relative-state").display().to_string())),
        "the secret is bound from the absolute state dir: {sources:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_another_directory_beside_a_daemon_plans_that_directory() {
    let _engine = shared().await;
    let env = TestEnv::new("os-planother").await;
    let assetd = Assetd::new(&env, "local");
    let a = env.name("a");
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&a, Phase::Running).await;

    // A branch's copy with one more asset: a CI gate must see it pending.
    let branch = env.root.join("branch");
    std::fs::create_dir_all(&branch).unwrap();
    set_mode(&branch, 0o755);
    for (file, text) in [
        ("a.yaml", env.asset("a", IMAGE_1, "")),
        ("b.yaml", env.asset("b", IMAGE_1, "")),
    ] {
        std::fs::write(branch.join(file), text).unwrap();
        set_mode(&branch.join(file), 0o644);
    }
    let mut on_branch = assetd.clone();
    on_branch.manifests = branch;
    let out = on_branch.output(&["plan"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}\n{}", daemon.log());
    assert!(
        shown.contains(&format!("+ create {}", env.name("b"))),
        "{shown}"
    );

    // Without --manifests the daemon's own directory is planned.
    let own = control(&assetd.state, &["plan"]);
    assert_eq!(own.status.code(), Some(0), "{}", text(&own));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_refuses_unknown_names_and_apply_once_beside_it_names_it() {
    let _engine = shared().await;
    let env = TestEnv::new("os-refuse").await;
    let assetd = Assetd::new(&env, "local");
    let a = env.name("a");
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&a, Phase::Running).await;
    let typo = env.name("typo");

    // A name the daemon does not know: refused, and nothing recorded.
    for verb in ["suspend", "resume"] {
        let out = control(&assetd.state, &[verb, &typo]);
        assert_eq!(out.status.code(), Some(1), "{verb}: {}", text(&out));
    }
    let history = control(&assetd.state, &["history", &typo]);
    let shown = text(&history);
    assert_eq!(history.status.code(), Some(1), "{shown}");
    assert!(shown.contains(&format!("no asset `{typo}`")), "{shown}");
    let known = control(&assetd.state, &["history", &a]);
    assert_eq!(known.status.code(), Some(0), "{}", text(&known));

    // `apply --once` on the daemon's state dir: it names the daemon and
    // the verb that confirms removals through it, at once.
    let out = assetd.output(&["apply", "--once"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(4), "{shown}");
    assert!(
        shown.contains("runs on --state-dir") && shown.contains("assetd prune --confirm"),
        "{shown}"
    );
    eventually("a still running", CONVERGE, || async {
        running(&env, &a).await.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_invalid_manifest_is_logged_once_with_its_position() {
    let _engine = shared().await;
    let env = TestEnv::new("os-logbad").await;
    let assetd = Assetd::new(&env, "local");
    let a = env.name("a");
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&a, Phase::Running).await;

    let warned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("invalid manifest") && l.contains("bad.yaml:9:3"))
            .count()
    };
    env.write("bad.yaml", &env.asset("bad", IMAGE_1, "  bogus: 1\n"));
    eventually("a WARN naming bad.yaml:9:3", CONVERGE, || async {
        (warned(&daemon.log()) == 1).then_some(())
    })
    .await;
    // More passes (another asset comes and runs): not logged again.
    let b = env.name("b");
    env.write("b.yaml", &env.asset("b", IMAGE_1, ""));
    daemon.wait_cli_phase(&b, Phase::Running).await;
    let log = daemon.log();
    assert_eq!(warned(&log), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_restart_on_swarm_applies_an_edit_of_a_plain_directory() {
    let _engine = shared().await;
    let env = TestEnv::new("os-restart").await;
    let assetd = Assetd::new(&env, "swarm");
    let a = env.name("a");
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let mut first = assetd.daemon(&["--resync", "300s"]);
    first.wait_cli_phase(&a, Phase::Running).await;
    // `systemctl restart`: SIGTERM hands the lease over; meanwhile one
    // file is edited (the directory is no git work tree: a digest).
    first.signal("TERM");
    let (status, _) = first.wait_exit(CONVERGE);
    assert!(status.success(), "{}", first.log());
    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));

    let second = assetd.daemon(&["--resync", "300s"]);
    let image = |docker: bollard::Docker, name: String| async move {
        let spec = docker.inspect_service(&name, None).await.ok()?.spec?;
        spec.task_template?.container_spec?.image
    };
    eventually("the edit applied after the restart", CONVERGE, || async {
        let now = image(env.docker.clone(), a.clone()).await?;
        now.starts_with(IMAGE_2).then_some(())
    })
    .await;
    let report = second.cli_status().expect("the daemon answers");
    assert_eq!(report.revision_hold, None, "{}", second.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_that_dies_within_its_monitor_window_never_lets_its_consumer_start() {
    let _engine = shared().await;
    let env = TestEnv::new("os-depmon").await;
    let assetd = Assetd::new(&env, "local");
    let broker = env.name("broker");
    // No healthcheck; up two seconds, then a crash loop.
    env.write(
        "broker.yaml",
        &env.asset(
            "broker",
            IMAGE_1,
            "  command: [sh, -c, \"sleep 2; exit 3\"]\n  update: { monitor: 10s }\n",
        ),
    );
    env.write(
        "consumer.yaml",
        &env.asset("consumer", IMAGE_1, &format!("  dependsOn: [ {broker} ]\n")),
    );
    let out = assetd.output(&["apply", "--once"], &["--wait", "60s"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        env.docker
            .inspect_container(&env.name("consumer"), None)
            .await
            .is_err(),
        "the consumer was started beside a broker that then crashed:\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_crash_loop_stays_failed_between_restarts() {
    let _engine = shared().await;
    let env = TestEnv::new("os-swloop").await;
    let assetd = Assetd::new(&env, "swarm");
    let a = env.name("a");
    // Each task runs four seconds, then dies; Swarm restarts it after 5 s.
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sh, -c, \"sleep 4; exit 3\"]\n"),
    );
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&a, Phase::Failed).await;
    // Two restarts' worth: never Running again, whenever it is looked at.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < until {
        let report = daemon.status().await.expect("the daemon answers");
        let now = report.assets.iter().find(|s| s.name.as_str() == a).unwrap();
        assert_ne!(now.phase, Phase::Running, "{now:?}\n{}", daemon.log());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_starts_a_consumer_once_its_broker_ran_its_monitor_window() {
    let _engine = shared().await;
    let env = TestEnv::new("os-depdaemon").await;
    let assetd = Assetd::new(&env, "local");
    let (broker, consumer) = (env.name("broker"), env.name("consumer"));
    env.write(
        "broker.yaml",
        &env.asset("broker", IMAGE_1, "  update: { monitor: 4s }\n"),
    );
    env.write(
        "consumer.yaml",
        &env.asset("consumer", IMAGE_1, &format!("  dependsOn: [ {broker} ]\n")),
    );
    // No resync within the test: time passing, not an event, makes the
    // broker ready.
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&consumer, Phase::Running).await;
    let b = env.docker.inspect_container(&broker, None).await.unwrap();
    let c = env.docker.inspect_container(&consumer, None).await.unwrap();
    let (b, c) = (b.created.unwrap(), c.created.unwrap());
    assert!(
        (c - b).whole_milliseconds() >= 4000,
        "the consumer was created {} ms after its broker, within the broker's 4 s monitor window",
        (c - b).whole_milliseconds()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_names_a_scale_from_zero_even_without_the_spec_on_record() {
    let _engine = shared().await;
    let env = TestEnv::new("os-scale0").await;
    let assetd = Assetd::new(&env, "swarm");
    let scaled = |n: u32| {
        env.asset(
            "a",
            IMAGE_1,
            &format!("  mode: {{ replicated: {{ replicas: {n} }} }}\n"),
        )
    };
    env.write("a.yaml", &scaled(0));
    let out = assetd.output(&["apply", "--once"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    env.write("a.yaml", &scaled(2));
    // The store is lost (or locked): the plan has the labels and the
    // engine's own count.
    std::fs::remove_dir_all(assetd.state.join("db")).unwrap();
    let plan = assetd.output(&["plan"], &[]);
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("spec.mode.replicated.replicas: 0 → 2"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_to_a_revision_whose_secret_was_rotated_away_is_refused() {
    let _engine = shared().await;
    let env = TestEnv::new("os-rbsecret").await;
    let assetd = Assetd::new(&env, "local");
    let (app, creds) = (env.name("app"), env.name("creds"));
    write_data(&env, "secrets/token", "first-value-11");
    env.write(
        "creds.yaml",
        &format!("apiVersion: assetd/v1\nkind: Secret\nmetadata: {{ name: {creds} }}\nspec: {{ file: secrets/token }}\n"),
    );
    env.write(
        "app.yaml",
        &env.asset(
            "app",
            IMAGE_1,
            &format!("  secrets: [ {{ source: {creds}, target: token }} ]\n"),
        ),
    );
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&app, Phase::Running).await;
    let first = env.docker.inspect_container(&app, None).await.unwrap().id;
    write_data(&env, "secrets/token", "second-value-22");
    eventually("the app on the rotated value", CONVERGE, || async {
        let now = env.docker.inspect_container(&app, None).await.ok()?;
        let running = now.state?.running == Some(true);
        (running && now.id != first).then_some(())
    })
    .await;
    daemon.wait_cli_phase(&app, Phase::Running).await;
    let versions = assetd.state.join("stack").join("secret");
    eventually("the first value's version removed", CONVERGE, || async {
        let left = std::fs::read_dir(&versions).ok()?.count();
        (left == 1).then_some(())
    })
    .await;

    // Revision 1 used the first value, which no longer exists anywhere.
    let out = control(&assetd.state, &["rollback", &app, "--to", "1"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("was rotated away"), "{shown}");
    let status = daemon.cli_status().unwrap();
    let now = status
        .assets
        .iter()
        .find(|a| a.name.as_str() == app)
        .unwrap();
    assert!(now.pinned.is_none(), "{now:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_rollback_is_never_fought_and_stays_failed() {
    let _engine = shared().await;
    let env = TestEnv::new("os-swrollback").await;
    let assetd = Assetd::new(&env, "swarm");
    let a = env.name("a");
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  update: { order: start-first }\n"),
    );
    // A short resync: every pass is a chance to re-send the update.
    let daemon = assetd.daemon(&["--resync", "2s"]);
    daemon.wait_cli_phase(&a, Phase::Running).await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  update: { order: start-first }\n  command: [sh, -c, \"exit 3\"]\n",
        ),
    );
    let service = |docker: bollard::Docker, name: String| async move {
        let s = docker.inspect_service(&name, None).await.ok()?;
        let state = s
            .update_status
            .and_then(|u| u.state)
            .map(|st| st.to_string());
        Some((state, s.version?.index?))
    };
    let (_, settled) = eventually("Swarm's rollback completed", CONVERGE, || async {
        let (state, version) = service(env.docker.clone(), a.clone()).await?;
        (state.as_deref() == Some("rollback_completed")).then_some(((), version))
    })
    .await;
    daemon.wait_cli_phase(&a, Phase::Failed).await;
    // Several resyncs later: the service was not written again, and the
    // asset still reads Failed.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let (state, version) = service(env.docker.clone(), a.clone()).await.unwrap();
    assert_eq!(
        state.as_deref(),
        Some("rollback_completed"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        version,
        settled,
        "the service was written after its rollback:\n{}",
        daemon.log()
    );
    let report = daemon.cli_status().unwrap();
    let now = report.assets.iter().find(|s| s.name.as_str() == a).unwrap();
    assert_eq!(now.phase, Phase::Failed, "{now:?}");
}

/// The running task container of service `name` on this engine.
async fn task_container(env: &TestEnv, name: &str) -> Option<(String, String)> {
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.swarm.service.name={name}")],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .filters(&filters)
        .build();
    let containers = env.docker.list_containers(Some(options)).await.ok()?;
    let c = containers.into_iter().next()?;
    let name = c.names?.first()?.trim_start_matches('/').to_string();
    Some((c.id?, name))
}

/// Item 9: a Swarm task whose healthcheck starts failing is Degraded from
/// its container's health, naming it, while that container still runs:
/// not only once Swarm has replaced the task (which waits out the stop
/// grace period, 10 s by default). No resync helps (300 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_task_turning_unhealthy_is_degraded_before_swarm_replaces_it() {
    use assetd::core::health::Health;
    let _engine = shared().await;
    let env = TestEnv::new("os-swunhealthy").await;
    let assetd = Assetd::new(&env, "swarm");
    let a = env.name("a");
    let check = "  command: [sh, -c, \"touch /tmp/ok; exec sleep 3600\"]\n  healthcheck: { test: [CMD, test, -e, /tmp/ok], interval: 500ms, timeout: 1s, retries: 1 }\n";
    env.write("a.yaml", &env.asset("a", IMAGE_1, check));
    let daemon = assetd.daemon(&["--resync", "300s"]);
    let health = |report: StatusReport| {
        let asset = report.assets.into_iter().find(|x| x.name.as_str() == a)?;
        Some((
            asset.health,
            asset.health_reason.unwrap_or_default(),
            asset.phase,
        ))
    };
    eventually("a Healthy", CONVERGE, || async {
        (health(daemon.cli_status()?)?.0 == Health::Healthy).then_some(())
    })
    .await;
    let (id, container) = task_container(&env, &a).await.expect("a task container");
    common::exec_in(&env.docker, &id, &["rm", "/tmp/ok"]).await;
    let removed = std::time::Instant::now();
    let (why, phase) = eventually("a Degraded", CONVERGE, || async {
        let (health, why, phase) = health(daemon.cli_status()?)?;
        (health == Health::Degraded).then_some((why, phase))
    })
    .await;
    eprintln!("unhealthy → Degraded in {:?}: {why}", removed.elapsed());
    let state = env.docker.inspect_container(&id, None).await.unwrap().state;
    let still_running = state.and_then(|s| s.running) == Some(true);
    assert!(
        why.contains(&container) && why.contains("unhealthy"),
        "the reason names the unhealthy task container {container}: {why}"
    );
    assert!(
        still_running,
        "Degraded only once Swarm replaced the task: {why}"
    );
    assert_ne!(phase, Phase::Running, "never Running while unhealthy");
}
