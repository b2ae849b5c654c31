//! The operator at the wheel, against the real engine and the real
//! binary: `plan` through the running daemon (field-level), `suspend` and
//! `resume` across a daemon restart.

mod common;

use std::time::Duration;

use assetd::report::status::Phase;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;
use common::harness::{shared, Assetd, Daemon};
use common::{eventually, TestEnv, CONVERGE, IMAGE_1, IMAGE_2};

/// How long an asset must stay untouched to count as left alone: the
/// daemon repairs an `rm -f` within a second when it is not suspended.
const LEFT_ALONE: Duration = Duration::from_secs(4);

async fn running_image(docker: &Docker, name: &str) -> Option<String> {
    let c = docker.inspect_container(name, None).await.ok()?;
    let running = c.state?.running?;
    running.then(|| c.config?.image).flatten()
}

async fn wait_running(docker: &Docker, name: &str, image: &str) {
    eventually(&format!("{name} running {image}"), CONVERGE, || async {
        (running_image(docker, name).await.as_deref() == Some(image)).then_some(())
    })
    .await;
}

fn uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `assetd VERB ARGS --state-dir ...` (a control command: no manifests).
fn control(assetd: &Assetd, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(args)
        .arg("--state-dir")
        .arg(&assetd.state)
        .output()
        .expect("assetd runs")
}

fn plan_json(assetd: &Assetd) -> (Option<i32>, serde_json::Value, String) {
    let out = assetd.output(&["plan"], &["-o", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plan -o json: {e}: {stderr}"));
    (out.status.code(), doc, stderr)
}

/// Asserts `name` stays absent for [`LEFT_ALONE`].
async fn assert_left_absent(docker: &Docker, name: &str, daemon: &Daemon) {
    let until = std::time::Instant::now() + LEFT_ALONE;
    while std::time::Instant::now() < until {
        assert!(
            docker.inspect_container(name, None).await.is_err(),
            "{name} was re-created while suspended:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_through_the_running_daemon_shows_fields_and_a_suspended_asset_is_left_alone_across_a_restart(
) {
    let _engine = shared().await;
    let env = TestEnv::new("ctl-susp").await;
    let assetd = Assetd::new(&env, "local");
    let name = env.name("mill");
    env.write("mill.yaml", &env.asset("mill", IMAGE_1, ""));
    let daemon = assetd.daemon(&["--resync", "300s"]);
    wait_running(&env.docker, &name, IMAGE_1).await;
    daemon.wait_cli_phase(&name, Phase::Running).await;

    let out = control(
        &assetd,
        &["suspend", &name, "--reason", "spindle maintenance"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let suspended = daemon.wait_cli_phase(&name, Phase::Suspended).await;
    let by = suspended.suspended.expect("who suspended it");
    assert_eq!(by.by_uid, Some(uid()), "the socket peer's uid");
    assert_eq!(by.reason.as_deref(), Some("spindle maintenance"));

    // A manifest change and a removal by hand: both left alone.
    env.write("mill.yaml", &env.asset("mill", IMAGE_2, ""));
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    env.docker
        .remove_container(&name, Some(options))
        .await
        .unwrap();
    assert_left_absent(&env.docker, &name, &daemon).await;

    // The daemon's plan knows the last-applied spec: the field and values.
    let (code, plan, stderr) = plan_json(&assetd);
    assert_eq!(
        code,
        Some(0),
        "a suspended asset is not a pending write: {plan} {stderr}"
    );
    let action = &plan["actions"][0];
    assert_eq!(action["kind"], "hold", "{plan}");
    let reason = action["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("suspended by uid {}", uid()))
            && reason.contains("spindle maintenance")
            && reason.contains("on resume:"),
        "{reason}"
    );
    let change = &action["changes"][0];
    assert_eq!(change["path"], "spec.image", "{plan}");
    assert_eq!(change["before"], IMAGE_1, "{plan}");
    assert_eq!(change["after"], IMAGE_2, "{plan}");

    // Across a restart: still suspended, by the same operator, since then.
    let mut daemon = daemon;
    daemon.process.terminate(CONVERGE);
    let daemon = assetd.daemon(&["--resync", "300s"]);
    let after = daemon.wait_cli_phase(&name, Phase::Suspended).await;
    assert_eq!(
        after.suspended.as_ref().map(|s| s.since_ms),
        Some(by.since_ms)
    );
    assert_left_absent(&env.docker, &name, &daemon).await;

    let out = control(&assetd, &["resume", &name]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_running(&env.docker, &name, IMAGE_2).await;
    daemon.wait_cli_phase(&name, Phase::Running).await;
    assetd.assert_plan_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_refuses_an_unknown_asset_and_needs_a_running_daemon() {
    let _engine = shared().await;
    let env = TestEnv::new("ctl-unknown").await;
    let assetd = Assetd::new(&env, "local");
    let out = control(&assetd, &["suspend", "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "no daemon: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("through the running daemon"),
        "{out:?}"
    );
    let out = control(&assetd, &["suspend"]);
    assert_eq!(out.status.code(), Some(64), "no name, no --all: {out:?}");

    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&env.name("a"), Phase::Running).await;
    let out = control(&assetd, &["suspend", &env.name("nosuch")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no asset"),
        "{out:?}"
    );
}

/// A webhook receiver on loopback: every JSON body posted to it.
struct Receiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    async fn start() -> Self {
        use axum::routing::post;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, got }
    }

    /// The kinds of events received for `asset`, in order.
    fn kinds(&self, asset: &str) -> Vec<String> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|e| e["asset"] == asset)
            .map(|e| e["event"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_posts_a_deploy_and_a_crash_loop_once_each_and_events_shows_them() {
    let _engine = shared().await;
    let env = TestEnv::new("ctl-notify").await;
    let assetd = Assetd::new(&env, "local");
    let receiver = Receiver::start().await;
    let daemon = assetd.daemon(&["--resync", "300s", "--notify", &receiver.url]);
    daemon.wait_ready().await;
    let (good, looping) = (env.name("good"), env.name("loop"));
    env.write("good.yaml", &env.asset("good", IMAGE_1, ""));
    env.write(
        "loop.yaml",
        &env.asset("loop", IMAGE_1, "  command: [sh, -c, \"exit 3\"]\n"),
    );
    eventually("the deploy and the crash loop posted", CONVERGE, || async {
        let seen = receiver.kinds(&good) == ["applied"] && !receiver.kinds(&looping).is_empty();
        seen.then_some(())
    })
    .await;
    // Crash after crash, restart after restart: still one event.
    tokio::time::sleep(LEFT_ALONE).await;
    assert_eq!(receiver.kinds(&good), ["applied"], "{}", daemon.log());
    // Its deploy may be seen running before the first crash (`applied`);
    // then one failure, and no "healed" between two crashes.
    let looped = receiver.kinds(&looping);
    let failures: Vec<&String> = looped.iter().filter(|k| *k != "applied").collect();
    assert!(
        failures == ["failed"] || failures == ["degraded"],
        "one event for the crash loop, got {looped:?}:\n{}",
        daemon.log()
    );
    let posted = receiver.got.lock().unwrap().clone();
    let crash = posted
        .iter()
        .find(|e| e["asset"] == looping.as_str() && e["event"] != "applied")
        .unwrap();
    assert!(
        crash["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("exit"),
        "the engine's reason: {crash}"
    );
    assert!(
        crash["id"].as_str().is_some() && crash["text"].as_str().is_some(),
        "{crash}"
    );

    // `assetd events` shows the same stream.
    let out = control(&assetd, &["events", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = shown
        .iter()
        .map(|e| (e["asset"].as_str().unwrap(), e["event"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&(good.as_str(), "applied")), "{kinds:?}");
    assert_eq!(shown.len(), posted.len(), "{kinds:?}");
}

/// When the engine started `name`'s container.
async fn started_at(docker: &Docker, name: &str) -> Option<time::OffsetDateTime> {
    let c = docker.inspect_container(name, None).await.ok()?;
    let at = c.state?.started_at?;
    time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn depends_on_starts_the_dependent_once_its_dependency_is_healthy_and_removes_it_first() {
    let _engine = shared().await;
    let env = TestEnv::new("ctl-dep").await;
    let assetd = Assetd::new(&env, "local");
    let (broker, producer) = (env.name("broker"), env.name("producer"));
    // Healthy only 2 s after it starts.
    let slow = "  command: [sh, -c, \"sleep 2; touch /tmp/ok; exec sleep 3600\"]\n  healthcheck: { test: [CMD, test, -e, /tmp/ok], interval: 500ms, timeout: 1s, retries: 20 }\n";
    env.write("keep.yaml", &env.asset("keep", IMAGE_1, ""));
    env.write("broker.yaml", &env.asset("broker", IMAGE_1, slow));
    let needs = format!("  dependsOn: [{broker}]\n");
    env.write("producer.yaml", &env.asset("producer", IMAGE_1, &needs));
    let daemon = assetd.daemon(&["--resync", "300s", "--max-prune", "1"]);
    wait_running(&env.docker, &producer, IMAGE_1).await;
    let broker_started = started_at(&env.docker, &broker).await.unwrap();
    let producer_started = started_at(&env.docker, &producer).await.unwrap();
    assert!(
        producer_started >= broker_started + time::Duration::seconds(2),
        "the producer started at {producer_started}, the broker at {broker_started}: before it was healthy"
    );
    assert!(
        daemon.log().contains(&format!("waiting for {broker}")),
        "the wait was said:\n{}",
        daemon.log()
    );

    // Both files deleted: the producer goes first.
    env.remove("broker.yaml");
    env.remove("producer.yaml");
    eventually("both removed, the dependent first", CONVERGE, || async {
        let broker_there = env.docker.inspect_container(&broker, None).await.is_ok();
        let producer_there = env.docker.inspect_container(&producer, None).await.is_ok();
        assert!(
            broker_there || !producer_there,
            "the broker was removed while the producer ran:\n{}",
            daemon.log()
        );
        (!broker_there && !producer_there).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_dependency_and_a_cycle_are_refused_at_their_position() {
    let env = TestEnv::new("ctl-cycle").await;
    let (a, b) = (env.name("a"), env.name("b"));
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, &format!("  dependsOn: [{b}]\n")),
    );
    env.write(
        "b.yaml",
        &env.asset("b", IMAGE_1, &format!("  dependsOn: [{a}]\n")),
    );
    env.write(
        "c.yaml",
        &env.asset("c", IMAGE_1, "  dependsOn: [nosuch]\n"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .arg("validate")
        .arg(&env.manifests)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<String> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap().rsplit('/').next().unwrap();
            format!(
                "{file}:{}:{}: {}: {}",
                e["line"],
                e["column"],
                e["field"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            format!("a.yaml:9:15: spec.dependsOn: dependency cycle: {a} → {b} → {a}"),
            format!("b.yaml:9:15: spec.dependsOn: dependency cycle: {b} → {a} → {b}"),
            "c.yaml:9:15: spec.dependsOn: depends on `nosuch`, which no valid manifest declares"
                .to_string(),
        ]
    );
}

fn history_of(assetd: &Assetd, name: &str) -> Vec<serde_json::Value> {
    let out = control(assetd, &["history", name, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_runs_the_previous_revision_pinned_until_the_manifest_changes() {
    let _engine = shared().await;
    let env = TestEnv::new("ctl-rollback").await;
    let assetd = Assetd::new(&env, "local");
    let name = env.name("mill");
    env.write("mill.yaml", &env.asset("mill", IMAGE_1, ""));
    let daemon = assetd.daemon(&["--resync", "300s"]);
    wait_running(&env.docker, &name, IMAGE_1).await;
    env.write("mill.yaml", &env.asset("mill", IMAGE_2, ""));
    wait_running(&env.docker, &name, IMAGE_2).await;
    daemon.wait_cli_phase(&name, Phase::Running).await;
    let revisions = history_of(&assetd, &name);
    let images: Vec<&str> = revisions
        .iter()
        .map(|r| r["spec"]["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, [IMAGE_1, IMAGE_2], "{revisions:?}");

    let out = control(&assetd, &["rollback", &name]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_running(&env.docker, &name, IMAGE_1).await;
    let status = eventually("status to say it is pinned", CONVERGE, || async {
        let s = daemon
            .cli_status()?
            .assets
            .into_iter()
            .find(|a| a.name.as_str() == name)?;
        (s.phase == Phase::Running && s.pinned.is_some()).then_some(s)
    })
    .await;
    let pin = status.pinned.unwrap();
    assert_eq!(pin.revision, 1);
    assert_eq!(pin.by_uid, Some(uid()));
    let differs: Vec<String> = pin.differs.iter().map(ToString::to_string).collect();
    assert_eq!(differs, [format!("spec.image: {IMAGE_2} → {IMAGE_1}")]);
    assetd.assert_plan_clean();
    // The operator's action, then the deploy it caused.
    let revisions = history_of(&assetd, &name);
    let [.., asked, done] = revisions.as_slice() else {
        panic!("{revisions:?}")
    };
    assert_eq!(asked["outcome"], "control", "{asked}");
    assert_eq!(
        asked["action"],
        format!("rolled back to revision 1 by uid {}", uid())
    );
    assert_eq!(
        (&done["outcome"], &done["spec"]["image"]),
        (&"ok".into(), &IMAGE_1.into())
    );

    // The next manifest change ends the pin.
    env.write(
        "mill.yaml",
        &env.asset("mill", IMAGE_2, "  env: { LINE: \"4\" }\n"),
    );
    wait_running(&env.docker, &name, IMAGE_2).await;
    eventually("the pin to end", CONVERGE, || async {
        let s = daemon
            .cli_status()?
            .assets
            .into_iter()
            .find(|a| a.name.as_str() == name)?;
        (s.phase == Phase::Running && s.pinned.is_none()).then_some(())
    })
    .await;
    // The manifests revision: in status, on the object, in its history.
    let synced = daemon.cli_status().unwrap().revision.expect("synced to");
    let container = env.docker.inspect_container(&name, None).await.unwrap();
    let labels = container.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("io.assetd.revision"), Some(&synced));
    let last = history_of(&assetd, &name).pop().unwrap();
    assert_eq!(last["revision"], synced.as_str(), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_once_deploys_a_dependency_then_its_dependent_once_it_is_healthy() {
    let _engine = shared().await;
    let env = TestEnv::new("ctl-dep-once").await;
    let assetd = Assetd::new(&env, "local");
    let (broker, producer) = (env.name("broker"), env.name("producer"));
    let slow = "  command: [sh, -c, \"sleep 2; touch /tmp/ok; exec sleep 3600\"]\n  healthcheck: { test: [CMD, test, -e, /tmp/ok], interval: 500ms, timeout: 1s, retries: 20 }\n";
    env.write("broker.yaml", &env.asset("broker", IMAGE_1, slow));
    let needs = format!("  dependsOn: [{broker}]\n");
    env.write("producer.yaml", &env.asset("producer", IMAGE_1, &needs));
    let out = assetd.output(&["apply", "--once"], &["-o", "json", "--wait", "60s"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}\n{out:?}");
    let created: Vec<&str> = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "create")
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(created, [broker.as_str(), producer.as_str()], "{report}");
    let broker_started = started_at(&env.docker, &broker).await.unwrap();
    let producer_started = started_at(&env.docker, &producer).await.unwrap();
    assert!(
        producer_started >= broker_started + time::Duration::seconds(2),
        "the producer started at {producer_started}, the broker at {broker_started}"
    );
}
