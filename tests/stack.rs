//! The whole stack from the manifests, on the real engine: networks and
//! volumes created before the assets that use them, kept while used,
//! networks removed once undeclared and unused, volumes (and their data)
//! never; secrets and configs rotated by content hash (one version left,
//! the same Swarm service), their values in no output; a reference to
//! nothing is an error at plan time, at its position.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use assetd::engine::strategy::AnyStrategy;
use assetd::reconcile::PassReport;
use bollard::query_parameters::{InspectServiceOptions, ListTasksOptionsBuilder};
use common::{all_text, eventually, TestEnv, IMAGE_1};

/// A value no output may contain.
const SECRET_VALUE: &str = "broker-password-7e1d0c";
const ROTATED_VALUE: &str = "broker-password-rotated-44b2";

fn stack(env: &TestEnv, net: &str, vol: &str) -> String {
    format!(
        "apiVersion: assetd/v1\nkind: Network\nmetadata: {{ name: {net} }}\nspec: {{ attachable: true }}\n---\n\
         apiVersion: assetd/v1\nkind: Volume\nmetadata: {{ name: {vol} }}\nspec: {{ driver: local }}\n---\n\
         apiVersion: assetd/v1\nkind: Secret\nmetadata: {{ name: {p}-creds }}\nspec: {{ file: secrets/kafka.env }}\n---\n\
         apiVersion: assetd/v1\nkind: Config\nmetadata: {{ name: {p}-cfg }}\nspec: {{ data: \"interval=5\" }}\n",
        p = env.prefix
    )
}

fn user(env: &TestEnv, net: &str, vol: &str) -> String {
    env.asset(
        "app",
        IMAGE_1,
        &format!(
            "  command: sleep 3600\n  networks: [ {net} ]\n  mounts: [ {{ type: volume, source: {vol}, target: /data }} ]\n  secrets: [ {{ source: {p}-creds, target: kafka, uid: 1000, mode: 0440 }} ]\n  configs: [ {{ source: {p}-cfg, target: /etc/agent.cfg }} ]\n",
            p = env.prefix
        ),
    )
}

fn write_secret(env: &TestEnv, value: &str) {
    let dir = env.manifests.join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kafka.env");
    std::fs::write(&path, value).unwrap();
    common::set_mode(&path, 0o600);
}

fn assert_no_failures(pass: &PassReport) {
    let failed: Vec<String> = pass
        .outcomes
        .iter()
        .filter_map(|o| o.error.clone())
        .chain(pass.stack.iter().filter_map(|o| o.error.clone()))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

async fn try_inspect_network(
    env: &TestEnv,
    name: &str,
) -> Result<bollard::models::NetworkInspect, bollard::errors::Error> {
    env.docker
        .inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
}

async fn inspect_network(env: &TestEnv, name: &str) -> bollard::models::NetworkInspect {
    try_inspect_network(env, name).await.unwrap()
}

async fn network_exists(env: &TestEnv, name: &str) -> bool {
    try_inspect_network(env, name).await.is_ok()
}

async fn volume_exists(env: &TestEnv, name: &str) -> bool {
    env.docker.inspect_volume(name).await.is_ok()
}

/// The running container's view of a file.
async fn exec(env: &TestEnv, container: &str, cmd: &str) -> String {
    let out = Command::new("docker")
        .args([
            "-H",
            &common::docker_host(),
            "exec",
            container,
            "sh",
            "-c",
            cmd,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = env;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assetd(env: &TestEnv, args: &[&str], strategy: &str) -> Output {
    common::assetd_cli(env, args, strategy)
}

/// Every file below `dir`, as bytes (the sled store).
fn bytes_below(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.extend(bytes);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn local_engine_network_volume_secret_and_config_lifecycle() {
    let env = TestEnv::new("st-local").await;
    let (net, vol) = (env.name("net"), env.name("data"));
    write_secret(&env, SECRET_VALUE);
    env.write("stack.yaml", &stack(&env, &net, &vol));
    env.write("app.yaml", &user(&env, &net, &vol));

    let pass = env.apply().await;
    assert_no_failures(&pass);
    let app = env.name("app");
    assert!(network_exists(&env, &net).await && volume_exists(&env, &vol).await);
    let listing = exec(
        &env,
        &app,
        "ls -ln /run/secrets/kafka; cat /run/secrets/kafka; echo; cat /etc/agent.cfg",
    )
    .await;
    assert!(
        listing.contains("-r--r-----") && listing.contains(" 1000 "),
        "{listing}"
    );
    assert!(
        listing.contains(SECRET_VALUE) && listing.contains("interval=5"),
        "{listing}"
    );
    exec(&env, &app, "echo kept > /data/probe").await;
    let files = env.state.join("stack/secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(
            std::fs::read_dir(&files)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap()
        .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700, "a secret's directory is 0700");

    // Rotation: the container gets the new value, one version is left.
    write_secret(&env, ROTATED_VALUE);
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert!(exec(&env, &app, "cat /run/secrets/kafka")
        .await
        .contains(ROTATED_VALUE));
    assert_eq!(
        std::fs::read_dir(&files).unwrap().count(),
        1,
        "one version left"
    );

    // The value is in no output and no label.
    let outputs = [
        assetd(&env, &["plan", "-o", "json"], "local"),
        assetd(&env, &["apply", "--once", "-o", "json"], "local"),
        assetd(&env, &["status", "-o", "json"], "local"),
    ];
    for out in &outputs {
        let text = all_text(out);
        assert!(
            !text.contains(SECRET_VALUE) && !text.contains(ROTATED_VALUE),
            "{text}"
        );
    }
    let inspect = serde_json::to_string(&env.inspect(&app).await.config.unwrap().labels).unwrap();
    assert!(!inspect.contains(ROTATED_VALUE), "{inspect}");
    // The stores (the test's and the CLI's) know the asset, and its
    // secret's version, never the value.
    for db in [env.state.join("db"), env.root.join("cli-state/db")] {
        let bytes = bytes_below(&db);
        assert!(contains(&bytes, &app), "{} was read", db.display());
        for value in [SECRET_VALUE, ROTATED_VALUE] {
            assert!(!contains(&bytes, value), "{} holds the value", db.display());
        }
    }
    // Only the file the engine mounts holds it.
    assert!(contains(&bytes_below(&files), ROTATED_VALUE));

    // Undeclared while used: all kept, and the asset runs on.
    env.remove("stack.yaml");
    let pass = env.apply().await;
    let holds: Vec<String> = pass.plan.stack.iter().map(|a| a.to_string()).collect();
    assert!(
        holds
            .iter()
            .any(|h| h.contains(&net) && h.contains("still used by")),
        "{holds:?}"
    );
    assert!(network_exists(&env, &net).await);

    // Undeclared and unused: the network goes, the volume and its data
    // stay. (Another asset keeps the directory from being empty, which
    // holds every removal.)
    env.write(
        "app.yaml",
        &env.asset("keep", IMAGE_1, "  command: sleep 3600\n"),
    );
    let pass = env.apply_with(&env.local()).await;
    assert_no_failures(&pass);
    assert!(!network_exists(&env, &net).await, "{:?}", pass.stack);
    assert!(
        volume_exists(&env, &vol).await,
        "a volume is never deleted by a pass"
    );
    assert_eq!(
        std::fs::read_dir(&files).unwrap().count(),
        0,
        "no version left"
    );
    let held: Vec<String> = pass.plan.stack.iter().map(|a| a.to_string()).collect();
    assert!(
        held.iter()
            .any(|h| h.contains(&vol) && h.contains("data is kept")),
        "{held:?}"
    );
    let out = Command::new("docker")
        .args([
            "-H",
            &common::docker_host(),
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/data"),
            IMAGE_1,
            "cat",
            "/data/probe",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kept");

    // Only the operator deletes it.
    let out = assetd(&env, &["delete-volume", &vol], "local");
    assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
    let out = assetd(&env, &["delete-volume", &vol, "--confirm"], "local");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    assert!(!volume_exists(&env, &vol).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_to_nothing_is_a_plan_time_error_and_what_runs_keeps_running() {
    let env = TestEnv::new("st-ref").await;
    let net = env.name("net");
    env.write(
        "net.yaml",
        &format!("apiVersion: assetd/v1\nkind: Network\nmetadata: {{ name: {net} }}\nspec: {{}}\n"),
    );
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            &format!("  command: sleep 3600\n  networks: [ {net} ]\n"),
        ),
    );
    env.write(
        "b.yaml",
        &env.asset("b", IMAGE_1, "  command: sleep 3600\n"),
    );
    assert_no_failures(&env.apply().await);
    let a = env.name("a");
    let before = env.inspect(&a).await.id.unwrap();

    // A typo in the network's name: held with the position; b still goes.
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            &format!("  command: sleep 3600\n  networks: [ {net}x ]\n"),
        ),
    );
    env.write(
        "b.yaml",
        &env.asset("b", IMAGE_1, "  command: sleep 3601\n"),
    );
    let out = assetd(&env, &["plan"], "local");
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("a.yaml:10:15: spec.networks[0]: network `{net}x` is neither declared (kind: Network) nor present on the engine")),
        "{text}"
    );
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(
        env.inspect(&a).await.id.unwrap(),
        before,
        "a runs on untouched"
    );
    let b_cmd = env
        .inspect(&env.name("b"))
        .await
        .config
        .unwrap()
        .cmd
        .unwrap();
    assert_eq!(b_cmd.join(" "), "sleep 3601", "the other assets go on");
    assert!(network_exists(&env, &net).await, "still used by a");

    // A secret nobody declared, and a volume neither declared nor there.
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, &format!("  command: sleep 3600\n  networks: [ {net} ]\n  secrets: [ {p}-nothing ]\n  mounts: [ {{ type: volume, source: {p}-novol, target: /d }} ]\n", p = env.prefix)),
    );
    let text = all_text(&assetd(&env, &["plan"], "local"));
    assert!(
        text.contains(&format!(
            "a.yaml:11:14: spec.secrets[0]: secret `{}-nothing` is neither declared",
            env.prefix
        )),
        "{text}"
    );
    // The engine creates a named volume on first use: never a hold.
    assert!(
        !text.contains(&format!(
            "volume `{}-novol` is neither declared",
            env.prefix
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "note: volume `{}-novol` is not declared: the engine creates it on first use (mounted by {a})",
            env.prefix
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_secret_rotation_keeps_the_service_and_leaves_one_version() {
    let env = TestEnv::new("st-swarm").await;
    let (net, vol) = (env.name("net"), env.name("data"));
    write_secret(&env, SECRET_VALUE);
    env.write("stack.yaml", &stack(&env, &net, &vol));
    env.write("app.yaml", &user(&env, &net, &vol));
    let swarm: AnyStrategy = env.swarm();
    assert_no_failures(&env.apply_with(&swarm).await);
    let app = env.name("app");
    let service = env
        .docker
        .inspect_service(&app, None::<InspectServiceOptions>)
        .await
        .unwrap();
    let id = service.id.clone().unwrap();
    let driver = inspect_network(&env, &net).await.driver;
    assert_eq!(driver.as_deref(), Some("overlay"));

    let versions = || common::secret_versions(&env);
    let first = versions().await;
    assert_eq!(first.len(), 1, "{first:?}");

    write_secret(&env, ROTATED_VALUE);
    assert_no_failures(&env.apply_with(&swarm).await);
    let after = env
        .docker
        .inspect_service(&app, None::<InspectServiceOptions>)
        .await
        .unwrap();
    assert_eq!(after.id.unwrap(), id, "the same service, updated in place");
    // Both versions while the update may still roll back; then one.
    let names = eventually(
        "one version left once the update finished",
        Duration::from_secs(60),
        || async {
            let _ = env.apply_with(&swarm).await;
            let names = versions().await;
            (names.len() == 1).then_some(names)
        },
    )
    .await;
    assert_ne!(names, first);
    let refs = after
        .spec
        .unwrap()
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
        .secrets
        .unwrap();
    assert_eq!(refs[0].secret_name.as_deref(), Some(names[0].as_str()));

    // The task really reads the new value (the engine's own file).
    let container = eventually(
        "a task of the new version running",
        Duration::from_secs(60),
        || async {
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
            tasks.into_iter().find_map(|t| {
                let status = t.status?;
                (status.state? == bollard::models::TaskState::RUNNING)
                    .then_some(status.container_status?.container_id?)
                    .filter(|_| t.version.is_some())
            })
        },
    )
    .await;
    let value = eventually(
        "the rotated value in the task",
        Duration::from_secs(60),
        || async {
            let out = Command::new("docker")
                .args([
                    "-H",
                    &common::docker_host(),
                    "exec",
                    &container,
                    "cat",
                    "/run/secrets/kafka",
                ])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(ROTATED_VALUE).then_some(text)
        },
    )
    .await;
    assert!(value.contains(ROTATED_VALUE));

    // Labels carry the version, never the value.
    let labels = serde_json::to_string(
        &env.docker
            .inspect_service(&app, None::<InspectServiceOptions>)
            .await
            .unwrap()
            .spec,
    )
    .unwrap();
    assert!(!labels.contains(ROTATED_VALUE) && !labels.contains(SECRET_VALUE));

    // Undeclared while the service uses it: the network stays.
    env.remove("stack.yaml");
    let pass = env.apply_with(&swarm).await;
    assert!(network_exists(&env, &net).await, "{:?}", pass.plan.stack);
    env.write(
        "app.yaml",
        &env.asset("keep", IMAGE_1, "  command: sleep 3600\n"),
    );
    let _ = env.apply_with(&swarm).await;
    // Swarm detaches the network a moment after the service is gone.
    eventually(
        "the undeclared, unused network removed",
        Duration::from_secs(30),
        || async {
            let _ = env.apply_with(&swarm).await;
            (!network_exists(&env, &net).await).then_some(())
        },
    )
    .await;
    assert!(volume_exists(&env, &vol).await, "the volume is kept");
    assert!(versions().await.is_empty(), "no secret version left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_whose_spec_changed_is_held_until_the_operator_recreates_it() {
    let env = TestEnv::new("st-change").await;
    let net = env.name("net");
    let network = |internal: bool| {
        format!("apiVersion: assetd/v1\nkind: Network\nmetadata: {{ name: {net} }}\nspec: {{ internal: {internal} }}\n")
    };
    env.write("net.yaml", &network(false));
    env.write(
        "keep.yaml",
        &env.asset("keep", IMAGE_1, "  command: sleep 3600\n"),
    );
    assert_no_failures(&env.apply().await);
    let first = inspect_network(&env, &net).await;
    assert_eq!(first.internal, Some(false));

    // The engine cannot change a network in place: held, said, untouched.
    env.write("net.yaml", &network(true));
    let pass = env.apply().await;
    let held: Vec<String> = pass.plan.stack.iter().map(|a| a.to_string()).collect();
    assert!(
        held.iter()
            .any(|h| h.contains(&format!("assetd recreate network {net} --confirm"))),
        "{held:?}"
    );
    let same = inspect_network(&env, &net).await;
    assert_eq!(same.id, first.id, "left as it is");

    // The operator's word: removed now, created from the manifest next pass.
    let out = assetd(&env, &["recreate", "network", &net, "--confirm"], "local");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    assert_no_failures(&env.apply().await);
    let second = inspect_network(&env, &net).await;
    assert_ne!(second.id, first.id);
    assert_eq!(second.internal, Some(true));
    assert!(env.apply().await.plan.stack.is_empty(), "converged");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_creates_the_stack_first_and_rotates_a_secret_when_its_file_changes() {
    let _engine = common::harness::shared().await;
    let env = TestEnv::new("st-daemon").await;
    let (net, vol) = (env.name("net"), env.name("data"));
    write_secret(&env, SECRET_VALUE);
    env.write("stack.yaml", &stack(&env, &net, &vol));
    env.write("app.yaml", &user(&env, &net, &vol));
    let assetd = common::harness::Assetd::new(&env, "local");
    let daemon = assetd.spawn(&["run"], &["--resync", "300s"]);
    let app = env.name("app");
    let read = |expected: &'static str| {
        let app = app.clone();
        async move {
            let out = Command::new("docker")
                .args([
                    "-H",
                    &common::docker_host(),
                    "exec",
                    &app,
                    "cat",
                    "/run/secrets/kafka",
                ])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains(expected)
                .then_some(())
        }
    };
    eventually(
        "the asset running with its secret",
        common::CONVERGE,
        || read(SECRET_VALUE),
    )
    .await;
    assert!(network_exists(&env, &net).await && volume_exists(&env, &vol).await);

    // Only the secret's file changes (not its manifest): the daemon sees
    // it, creates the new version and updates the asset.
    write_secret(&env, ROTATED_VALUE);
    eventually(
        "the rotated secret in the container",
        common::CONVERGE,
        || read(ROTATED_VALUE),
    )
    .await;
    let files = assetd.state.join("stack/secret");
    eventually(
        "the old version removed once unused",
        common::CONVERGE,
        || async { (std::fs::read_dir(&files).ok()?.count() == 1).then_some(()) },
    )
    .await;
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(
        log.contains("stack object converged"),
        "the daemon's log was read"
    );
    assert!(
        !log.contains(SECRET_VALUE) && !log.contains(ROTATED_VALUE),
        "the value in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_that_wait_for_the_operator_make_plan_pending_and_apply_exit_3() {
    let env = TestEnv::new("st-exit3").await;
    let net = env.name("net");
    let network = |subnet: &str| {
        format!("apiVersion: assetd/v1\nkind: Network\nmetadata: {{ name: {net} }}\nspec: {{ subnets: [\"{subnet}\"] }}\n")
    };
    env.write("net.yaml", &network("10.231.7.0/24"));
    let configs: Vec<String> = (0..7).map(|i| env.name(&format!("cfg{i}"))).collect();
    for c in &configs {
        env.write(
            &format!("{c}.yaml"),
            &format!("apiVersion: assetd/v1\nkind: Config\nmetadata: {{ name: {c} }}\nspec: {{ data: \"{c}\" }}\n"),
        );
    }
    let first = assetd(&env, &["apply", "--once"], "local");
    assert_eq!(first.status.code(), Some(0), "{}", all_text(&first));

    // A subnet the engine cannot change in place: waits for `assetd
    // recreate`, so the engine does not match the manifests.
    env.write("net.yaml", &network("10.231.8.0/24"));
    let plan = assetd(&env, &["plan"], "local");
    assert_eq!(plan.status.code(), Some(2), "{}", all_text(&plan));
    let held = assetd(&env, &["apply", "--once"], "local");
    let text = all_text(&held);
    assert_eq!(held.status.code(), Some(3), "{text}");
    assert!(text.contains("assetd recreate network"), "{text}");
    env.write("net.yaml", &network("10.231.7.0/24"));

    // The stack's own mass-prune guard: 7 of 8 objects at once.
    for c in &configs {
        env.remove(&format!("{c}.yaml"));
    }
    let plan = assetd(&env, &["plan"], "local");
    assert_eq!(plan.status.code(), Some(2), "{}", all_text(&plan));
    let held = assetd(&env, &["apply", "--once"], "local");
    let text = all_text(&held);
    assert_eq!(held.status.code(), Some(3), "{text}");
    assert!(text.contains("--allow-mass-prune"), "{text}");
    let allowed = assetd(&env, &["apply", "--once", "--allow-mass-prune"], "local");
    assert_eq!(allowed.status.code(), Some(0), "{}", all_text(&allowed));
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_once_on_swarm_leaves_one_secret_version_after_a_rotation() {
    let env = TestEnv::new("st-once-rot").await;
    write_secret(&env, SECRET_VALUE);
    let creds = env.name("creds");
    env.write(
        "creds.yaml",
        &format!("apiVersion: assetd/v1\nkind: Secret\nmetadata: {{ name: {creds} }}\nspec: {{ file: secrets/kafka.env }}\n"),
    );
    env.write(
        "app.yaml",
        &env.asset(
            "app",
            IMAGE_1,
            &format!(
                "  command: sleep 3600\n  secrets: [ {{ source: {creds}, target: kafka }} ]\n"
            ),
        ),
    );
    let first = assetd(&env, &["apply", "--once"], "swarm");
    assert_eq!(first.status.code(), Some(0), "{}", all_text(&first));
    write_secret(&env, ROTATED_VALUE);
    let rotated = assetd(&env, &["apply", "--once"], "swarm");
    let text = all_text(&rotated);
    assert_eq!(rotated.status.code(), Some(0), "{text}");
    let versions = common::secret_versions(&env).await;
    assert_eq!(
        versions.len(),
        1,
        "the replaced version is gone in the same run: {versions:?}\n{text}"
    );
}
