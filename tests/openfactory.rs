//! OpenFactory app files (`tests/data/openfactory/`) deployed as they are,
//! on the local engine and on Swarm: every app becomes its asset, an edit
//! of one app updates only it, `validate` and `plan` read them, and a typo
//! is reported at its position.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::Once;

use assetd::report::status::Phase;
use bollard::models::{Service, TaskState};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
};
use common::harness::Assetd;
use common::{TestEnv, CONVERGE, IMAGE_1};

const MIB: i64 = 1 << 20;

/// The process environment the app files read: the routing's base
/// domain, and no historian replica (its NFS share cannot be mounted here).
fn openfactory_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("OPENFACTORY_BASE_DOMAIN", "factory.test");
        std::env::set_var("HISTORIAN_REPLICAS", "0");
    });
}

fn data_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openfactory")
}

/// Copies app files into the test's manifests: uuids get the test's
/// prefix, images are the offline test image, the local storage is a
/// directory of the test (allowed as a bind source).
fn install(env: &mut TestEnv, files: &[&str]) {
    openfactory_env();
    let cache = env.root.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    common::set_mode(&env.root, 0o755);
    env.allow_bind = vec![env.root.clone()];
    for file in files {
        let text = std::fs::read_to_string(data_dir().join(file)).unwrap();
        let text = for_test(
            env,
            &text.replace("/srv/openfactory/cache", cache.to_str().unwrap()),
        );
        env.write(
            Path::new(file).file_name().unwrap().to_str().unwrap(),
            &text,
        );
    }
}

fn for_test(env: &TestEnv, text: &str) -> String {
    let prefix = env.prefix.to_uppercase();
    text.lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            match line.trim_start().split_once(": ") {
                Some(("uuid", uuid)) => format!("{indent}uuid: {prefix}-{uuid}"),
                Some(("image", _)) => format!("{indent}image: {IMAGE_1}"),
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_failures(pass: &assetd::reconcile::PassReport) {
    let failures: Vec<String> = pass
        .outcomes
        .iter()
        .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.name)))
        .collect();
    assert!(failures.is_empty(), "failures: {failures:?}");
}

/// A pass after convergence plans nothing: what the engine reads back
/// (Swarm's defaults, the volume driver's options) is no change.
fn assert_converged(pass: &assetd::reconcile::PassReport) {
    assert!(!pass.plan.has_changes(), "{:?}", pass.plan.actions);
}

fn instance_filter(env: &TestEnv) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("io.assetd.instance={}", env.prefix)])])
}

/// The instance's containers: name → ID.
async fn containers(env: &TestEnv) -> BTreeMap<String, String> {
    let filters = instance_filter(env);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = env.docker.list_containers(Some(options)).await.unwrap();
    list.into_iter()
        .map(|c| {
            let name = c.names.unwrap_or_default()[0]
                .trim_start_matches('/')
                .to_string();
            (name, c.id.unwrap_or_default())
        })
        .collect()
}

/// The instance's services: name → service.
async fn services(env: &TestEnv) -> BTreeMap<String, Service> {
    let filters = instance_filter(env);
    let options = ListServicesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let list = env.docker.list_services(Some(options)).await.unwrap();
    list.into_iter()
        .map(|s| (s.spec.clone().unwrap().name.unwrap(), s))
        .collect()
}

fn edit_dashboard(env: &TestEnv) {
    let path = env.manifests.join("app_cell_tools.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("LOG_LEVEL=info"));
    env.write(
        "app_cell_tools.yml",
        &text.replace("LOG_LEVEL=info", "LOG_LEVEL=debug"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn app_files_deploy_on_the_local_engine_and_an_edit_updates_only_its_app() {
    let mut env = TestEnv::new("of-local").await;
    install(&mut env, &["app_scheduler.yml", "app_cell_tools.yml"]);
    assert_no_failures(&env.apply().await);
    assert_converged(&env.apply().await);
    let scheduler = env.name("app-scheduler");
    let before = containers(&env).await;
    let names: Vec<&str> = before.keys().map(String::as_str).collect();
    let want = [
        env.name("app-scheduler-1"),
        env.name("app-scheduler-2"),
        env.name("cell3-alarm-notifier"),
        env.name("cell3-dashboard"),
    ];
    assert_eq!(names, want.iter().map(String::as_str).collect::<Vec<_>>());

    let c = env.inspect(&format!("{scheduler}-1")).await;
    let config = c.config.unwrap();
    assert_eq!(config.user.as_deref(), Some("1234:5678"));
    let container_env = config.env.unwrap();
    assert!(container_env
        .contains(&"JDBC_URL=jdbc:postgresql://db:5432/ofa?ssl=true&sslmode=require".into()));
    assert!(container_env.contains(&format!("APP_UUID={}", scheduler.to_uppercase())));
    let labels = config.labels.unwrap();
    assert_eq!(
        labels[&format!("traefik.http.routers.ofa-{scheduler}.rule")],
        format!("Host(`{scheduler}.factory.test`) || Host(`scheduler-dashboard.factory.test`)")
    );
    assert_eq!(labels["prometheus.io/port"], "4000");
    assert_eq!(labels["openfactory.uns.workcenter"], "scheduler");
    let host = c.host_config.unwrap();
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(128 * MIB));
    let nofile = host.ulimits.unwrap();
    assert_eq!((nofile[0].soft, nofile[0].hard), (Some(4096), Some(4096)));
    let mount = &host.mounts.unwrap()[0];
    assert_eq!(mount.target.as_deref(), Some("/cache"));
    assert_eq!(c.state.unwrap().running, Some(true));

    edit_dashboard(&env);
    assert_no_failures(&env.apply().await);
    let after = containers(&env).await;
    for (name, id) in &before {
        if *name == env.name("cell3-dashboard") {
            assert_ne!(&after[name], id, "the edited app is updated");
        } else {
            assert_eq!(&after[name], id, "{name} is untouched");
        }
    }
    let dashboard = env.inspect(&env.name("cell3-dashboard")).await;
    assert!(dashboard
        .config
        .unwrap()
        .env
        .unwrap()
        .contains(&"LOG_LEVEL=debug".into()));
}

/// Waits until every service runs its replicas.
async fn wait_running(env: &TestEnv, want: &[(String, usize)]) {
    for (name, n) in want {
        common::eventually(
            &format!("{n} running task(s) of {name}"),
            CONVERGE,
            || async {
                let filters = HashMap::from([
                    ("service", vec![name.clone()]),
                    ("desired-state", vec!["running".to_string()]),
                ]);
                let options = ListTasksOptionsBuilder::default().filters(&filters).build();
                let tasks = env
                    .docker
                    .list_tasks(Some(options))
                    .await
                    .unwrap_or_default();
                let running = tasks
                    .iter()
                    .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
                    .count();
                (running == *n).then_some(())
            },
        )
        .await;
    }
}

fn version(service: &Service) -> u64 {
    service.version.as_ref().and_then(|v| v.index).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn app_files_deploy_on_swarm_with_constraints_kept_and_an_edit_updates_only_its_app() {
    let mut env = TestEnv::new("of-swarm").await;
    install(&mut env, &["app_scheduler.yml", "app_cell_tools.yml"]);
    let swarm = env.swarm();
    assert_no_failures(&env.apply_with(&swarm).await);
    let (scheduler, dashboard) = (env.name("app-scheduler"), env.name("cell3-dashboard"));
    let notifier = env.name("cell3-alarm-notifier");
    wait_running(
        &env,
        &[
            (scheduler.clone(), 2),
            (dashboard.clone(), 1),
            (notifier.clone(), 1),
        ],
    )
    .await;

    assert_converged(&env.apply_with(&swarm).await);
    let before = services(&env).await;
    let spec = before[&scheduler].spec.clone().unwrap();
    let task = spec.task_template.unwrap();
    assert_eq!(
        task.placement.unwrap().constraints.unwrap(),
        ["node.role == manager", "node.hostname != nosuchhost"]
    );
    let container = task.container_spec.unwrap();
    assert_eq!(container.user.as_deref(), Some("1234:5678"));
    let limits = task.resources.unwrap().limits.unwrap();
    assert_eq!(
        (limits.nano_cpus, limits.memory_bytes),
        (Some(500_000_000), Some(128 * MIB))
    );
    let labels = spec.labels.unwrap();
    assert_eq!(
        labels[&format!("traefik.http.services.ofa-{scheduler}.loadbalancer.server.port")],
        "8000"
    );
    let dashboard_task = before[&dashboard]
        .spec
        .clone()
        .unwrap()
        .task_template
        .unwrap();
    assert_eq!(
        dashboard_task.placement.unwrap().constraints.unwrap(),
        ["node.role == manager"]
    );

    edit_dashboard(&env);
    assert_no_failures(&env.apply_with(&swarm).await);
    let after = services(&env).await;
    for (name, service) in &before {
        assert_eq!(after[name].id, service.id, "{name} keeps its ID");
        if *name == dashboard {
            assert!(
                version(&after[name]) > version(service),
                "the edited app is updated"
            );
        } else {
            assert_eq!(
                version(&after[name]),
                version(service),
                "{name} is untouched"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_nfs_storage_becomes_a_local_driver_volume_on_the_swarm_service() {
    let mut env = TestEnv::new("of-nfs").await;
    install(&mut env, &["nfs/app_historian.yml"]);
    // No replica (HISTORIAN_REPLICAS=0): no task tries to mount the share.
    let swarm = env.swarm();
    assert_no_failures(&env.apply_with(&swarm).await);
    assert_converged(&env.apply_with(&swarm).await);
    let services = services(&env).await;
    let spec = services[&env.name("historian")].spec.clone().unwrap();
    let mounts = spec
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
        .mounts
        .unwrap();
    assert_eq!(
        mounts[0].source.as_deref(),
        Some("nfs_deskfab_openfactory_com_nfs_deskfab_archive")
    );
    assert_eq!(mounts[0].target.as_deref(), Some("/mnt/archive"));
    let driver = mounts[0]
        .volume_options
        .clone()
        .unwrap()
        .driver_config
        .unwrap();
    assert_eq!(driver.name.as_deref(), Some("local"));
    let options = driver.options.unwrap();
    assert_eq!(options["type"], "nfs");
    assert_eq!(options["o"], "addr=deskfab.openfactory.com,ro,vers=4.1");
    assert_eq!(options["device"], ":/nfs/deskfab/archive");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_and_plan_read_app_files_and_a_typo_is_reported_at_its_position() {
    let mut env = TestEnv::new("of-cli").await;
    install(&mut env, &["app_cell_tools.yml"]);
    let assetd = Assetd::new(&env, "local");
    let plan = assetd.output(&["plan"], &[]);
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(stdout.contains(&env.name("cell3-dashboard")), "{stdout}");
    assert!(
        stdout.contains(&env.name("cell3-alarm-notifier")),
        "{stdout}"
    );

    let apply = assetd.output(&["apply", "--once"], &[]);
    assert_eq!(apply.status.code(), Some(0), "{apply:?}");
    let status = assetd.status().expect("status reads the engine");
    let phases: Vec<(String, Phase)> = status
        .assets
        .iter()
        .map(|a| (a.name.to_string(), a.phase))
        .collect();
    assert_eq!(
        phases,
        [
            (env.name("cell3-alarm-notifier"), Phase::Running),
            (env.name("cell3-dashboard"), Phase::Running),
        ]
    );

    let path = env.manifests.join("app_cell_tools.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    env.write(
        "app_cell_tools.yml",
        &text.replace("    metrics:", "    metric:"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(["validate", path.to_str().unwrap()])
        .env("ASSETD_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "app_cell_tools.yml:20:5",
        "unknown field `metric`",
        "apps.alarm-notifier.metric",
    ] {
        assert!(stderr.contains(part), "{part} in {stderr}");
    }
}
