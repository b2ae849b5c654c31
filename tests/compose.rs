//! Compose files (`tests/data/compose/`) deployed as they are, judged by
//! the reference client: each file goes out once with `docker stack
//! deploy` (the Docker CLI of the test engine, 20.10) under one project
//! name and once with assetd under another, and the two `docker service
//! inspect` specs must agree field by field. Then the lifecycle: a second
//! pass plans nothing, an edit to one service leaves the others' version
//! alone, and removing the file prunes the project but keeps its volumes.
//!
//! The differences allowed, and why (README, "Compose files"):
//! - assetd's own labels (`io.assetd.*`) and the project name;
//! - secret and config names and IDs: assetd versions them by content so
//!   that a new value can roll out (stack deploy cannot replace a secret
//!   in use); the file each one becomes must be the same;
//! - `UpdateConfig` and `RollbackConfig` when the file sets none: assetd
//!   keeps its safe rollout (start-first, roll back on failure) there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{all_text, docker_host, eventually, TestEnv};
use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/compose")
}

/// The Docker CLI that comes with the test engine (Debian's docker.io).
fn docker_cli() -> Command {
    let mut cmd = Command::new("/usr/bin/docker");
    cmd.args(["-H", &docker_host()]);
    cmd
}

/// Removes both projects' objects when the test ends, passed or not.
struct Projects(Vec<String>);

impl Drop for Projects {
    fn drop(&mut self) {
        let projects = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                if let Ok(docker) = bollard::Docker::connect_with_host(&docker_host()) {
                    for p in &projects {
                        common::cleanup_namespace(&docker, p).await;
                    }
                }
            });
        })
        .join();
    }
}

/// Copies a corpus file and the files beside it into `dir`.
fn copy_project(file: &str, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(corpus()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yml") && name != file {
            continue;
        }
        let to = dir.join(&name);
        std::fs::copy(entry.path(), &to).unwrap();
        common::set_mode(&to, 0o644);
    }
    dir.join(file)
}

fn stack_deploy(file: &Path, project: &str) {
    let out = docker_cli()
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(file)
        .arg(project)
        .current_dir(file.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker stack deploy: {}",
        all_text(&out)
    );
}

/// `docker service inspect`'s spec of every service of `project`, by
/// service key.
fn service_specs(project: &str) -> Vec<(String, Value)> {
    let out = docker_cli()
        .args([
            "service",
            "ls",
            "--filter",
            &format!("label=com.docker.stack.namespace={project}"),
            "--format",
            "{{.Name}}",
        ])
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let out = docker_cli()
                .args(["service", "inspect", &name, "--format", "{{json .Spec}}"])
                .output()
                .unwrap();
            let spec: Value = serde_json::from_slice(&out.stdout).unwrap();
            let key = name
                .strip_prefix(&format!("{project}_"))
                .unwrap()
                .to_string();
            (key, spec)
        })
        .collect()
}

/// Network ID → name, so that the two projects' attachments compare by
/// name.
fn network_names() -> std::collections::HashMap<String, String> {
    let out = docker_cli()
        .args([
            "network",
            "ls",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Name}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect()
}

/// The spec with what may differ taken out (see the module doc), and the
/// project name replaced by `PROJECT` everywhere.
fn comparable(
    spec: &Value,
    project: &str,
    networks: &std::collections::HashMap<String, String>,
    file_sets_rollout: bool,
) -> Value {
    let text = serde_json::to_string(spec).unwrap();
    let mut spec: Value = serde_json::from_str(&text).unwrap();
    fn strip_labels(v: &mut Value) {
        if let Some(labels) = v.as_object_mut() {
            labels.retain(|k, _| !k.starts_with("io.assetd."));
        }
    }
    strip_labels(&mut spec["Labels"]);
    strip_labels(&mut spec["TaskTemplate"]["ContainerSpec"]["Labels"]);
    if let Some(attached) = spec["TaskTemplate"]["Networks"].as_array_mut() {
        for n in attached {
            let target = n["Target"].as_str().unwrap_or_default().to_string();
            n["Target"] = Value::String(networks.get(&target).cloned().unwrap_or(target));
        }
    }
    for (list, name, id) in [
        ("Secrets", "SecretName", "SecretID"),
        ("Configs", "ConfigName", "ConfigID"),
    ] {
        if let Some(refs) = spec["TaskTemplate"]["ContainerSpec"][list].as_array_mut() {
            for r in refs.iter_mut() {
                let object = r.as_object_mut().unwrap();
                object.remove(id);
                object.remove(name);
            }
            refs.sort_by_key(|r| r["File"]["Name"].as_str().unwrap_or_default().to_string());
        }
    }
    if !file_sets_rollout {
        let object = spec.as_object_mut().unwrap();
        object.remove("UpdateConfig");
        object.remove("RollbackConfig");
    }
    let text = serde_json::to_string(&spec)
        .unwrap()
        .replace(project, "PROJECT");
    serde_json::from_str(&text).unwrap()
}

/// The path of the first field where `a` and `b` differ, with both values.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}[{i}]"), p, q)),
        _ if a == b => None,
        _ => Some(format!(
            "{path}: docker stack deploy has {a}, assetd has {b}"
        )),
    }
}

async fn running_tasks(env: &TestEnv, service: &str, want: usize) {
    eventually(
        &format!("{want} running task(s) of {service}"),
        Duration::from_secs(90),
        || async {
            let out = docker_cli()
                .args([
                    "service",
                    "ps",
                    service,
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.CurrentState}}",
                ])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (text.lines().filter(|l| l.starts_with("Running")).count() >= want).then_some(())
        },
    )
    .await;
    let _ = env;
}

fn version_index(service: &str) -> u64 {
    let out = docker_cli()
        .args([
            "service",
            "inspect",
            service,
            "--format",
            "{{.Version.Index}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

async fn same_specs_as_stack_deploy(prefix: &str, file: &str, sets_rollout: &[&str]) {
    let env = TestEnv::new(prefix).await;
    let ours = format!("{prefix}a");
    let theirs = format!("{prefix}s");
    let _cleanup = Projects(vec![ours.clone(), theirs.clone()]);
    common::cleanup_namespace(&env.docker, &theirs).await;
    common::cleanup_namespace(&env.docker, &ours).await;

    // One after the other: both publish the same ingress ports.
    let reference = copy_project(file, &env.root.join("reference"));
    stack_deploy(&reference, &theirs);
    let mut networks = network_names();
    let theirs_specs = service_specs(&theirs);
    common::cleanup_namespace(&env.docker, &theirs).await;
    // The project is the directory's name.
    copy_project(file, &env.manifests.join(&ours));
    let out = eventually(
        "assetd's apply, once the ports are free",
        Duration::from_secs(60),
        || async {
            let out = common::assetd_cli(&env, &["apply", "--once", "--wait", "3m"], "swarm");
            let text = all_text(&out);
            if text.contains("is already in use by service") {
                return None;
            }
            Some(out)
        },
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    networks.extend(network_names());
    let ours_specs = service_specs(&ours);
    let keys = |specs: &[(String, Value)]| specs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&theirs_specs),
        keys(&ours_specs),
        "the services of {file}"
    );
    for ((key, a), (_, b)) in theirs_specs.iter().zip(&ours_specs) {
        let rollout = sets_rollout.contains(&key.as_str());
        let a = comparable(a, &theirs, &networks, rollout);
        let b = comparable(b, &ours, &networks, rollout);
        if let Ok(dir) = std::env::var("ASSETD_TEST_COMPOSE_DUMP") {
            std::fs::write(format!("{dir}/{key}.theirs.json"), format!("{a:#}")).unwrap();
            std::fs::write(format!("{dir}/{key}.ours.json"), format!("{b:#}")).unwrap();
        }
        if let Some(difference) = first_difference(key, &a, &b) {
            panic!("{file}: {difference}\n\nstack deploy: {a:#}\n\nassetd: {b:#}");
        }
    }

    // A second pass plans nothing.
    let out = common::assetd_cli(&env, &["plan"], "swarm");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second plan: {}",
        all_text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn line_monitoring_deploys_as_docker_stack_deploy_does() {
    same_specs_as_stack_deploy("cmpline", "line-monitoring.yml", &["broker"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn web_and_db_deploys_as_docker_stack_deploy_does() {
    same_specs_as_stack_deploy("cmpweb", "web-and-db.yml", &[]).await;
}

/// One project's life on Swarm: an edit to one service touches only that
/// service; removing the file prunes the project and keeps its volumes.
#[tokio::test(flavor = "multi_thread")]
async fn a_compose_project_lives_and_goes_on_swarm() {
    let env = TestEnv::new("cmplife").await;
    let project = "cmplifea".to_string();
    let _cleanup = Projects(vec![project.clone()]);
    common::cleanup_namespace(&env.docker, &project).await;
    let file = copy_project("web-and-db.yml", &env.manifests.join(&project));
    // Its own ingress port: the other Swarm tests publish 18080.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("18080:8080", "18082:8080");
    std::fs::write(&file, text).unwrap();
    let out = common::assetd_cli(&env, &["apply", "--once", "--wait", "3m"], "swarm");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let (db, web) = (format!("{project}_db"), format!("{project}_web"));
    running_tasks(&env, &web, 1).await;
    let db_version = version_index(&db);
    let web_version = version_index(&web);

    // The web service reads the config and the secret as stack deploy
    // would give them.
    let out = docker_cli()
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={db}"),
        ])
        .output()
        .unwrap();
    let container = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let out = docker_cli()
        .args([
            "exec",
            &container,
            "cat",
            "/run/secrets/db-password",
            "/run/secrets/db_password_copy",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "s3cret-db-pws3cret-db-pw",
        "{}",
        all_text(&out)
    );
    let out = docker_cli()
        .args(["exec", &container, "env"])
        .output()
        .unwrap();
    let env_text = String::from_utf8_lossy(&out.stdout).to_string();
    for want in [
        "DB_HOST=db",
        "GREETING=hello world",
        "DB_NAME=mes",
        "TZ=Europe/Berlin",
    ] {
        assert!(env_text.contains(want), "{want} in {env_text}");
    }

    // An edit to one service changes that service only.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("DB_NAME: mes", "DB_NAME: mes2");
    std::fs::write(&file, text).unwrap();
    let out = common::assetd_cli(&env, &["plan"], "swarm");
    assert_eq!(out.status.code(), Some(2), "{}", all_text(&out));
    assert!(
        all_text(&out).contains(&db) && !all_text(&out).contains(&format!("update {web}")),
        "{}",
        all_text(&out)
    );
    let out = common::assetd_cli(&env, &["apply", "--once", "--wait", "3m"], "swarm");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    assert!(
        version_index(&db) > db_version,
        "the edited service was updated"
    );
    assert_eq!(
        version_index(&web),
        web_version,
        "the other service was left alone"
    );

    // Removing the file removes the project's services, networks, secrets
    // and configs, and keeps its volume.
    std::fs::remove_file(&file).unwrap();
    let out = common::assetd_cli(
        &env,
        &["apply", "--once", "--wait", "3m", "--allow-mass-prune"],
        "swarm",
    );
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let left = |what: &str| {
        let out = docker_cli()
            .args([
                what,
                "ls",
                "-q",
                "--filter",
                &format!("label=com.docker.stack.namespace={project}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(left("service"), 0, "services left");
    assert_eq!(left("secret"), 0, "secrets left");
    assert_eq!(left("config"), 0, "configs left");
    // Swarm detaches the network a moment after the services are gone;
    // the daemon's next pass removes it, as this apply does.
    eventually(
        "the project's network removed",
        Duration::from_secs(60),
        || async {
            let _ = common::assetd_cli(&env, &["apply", "--once", "--allow-mass-prune"], "swarm");
            (left("network") == 0).then_some(())
        },
    )
    .await;
    assert_eq!(left("volume"), 1, "the project's volume is kept");
}

/// The same file on the local engine: containers with the env, command,
/// ports and mounts the file says.
#[tokio::test(flavor = "multi_thread")]
async fn a_compose_file_runs_on_the_local_engine() {
    let env = TestEnv::new("cmploc").await;
    let project = "cmploca".to_string();
    let _cleanup = Projects(vec![project.clone()]);
    common::cleanup_namespace(&env.docker, &project).await;
    let file = copy_project("web-and-db.yml", &env.manifests.join(&project));
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("18080:8080", "18081:8080");
    std::fs::write(&file, text).unwrap();
    let out = common::assetd_cli(&env, &["apply", "--once", "--wait", "2m"], "local");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let db = env.inspect(&format!("{project}_db")).await;
    let config = db.config.unwrap();
    let env_list = config.env.unwrap_or_default();
    for want in ["DB_HOST=db", "DB_NAME=mes", "GREETING=hello world"] {
        assert!(env_list.iter().any(|e| e == want), "{want} in {env_list:?}");
    }
    assert_eq!(config.cmd.unwrap_or_default(), ["sleep", "3600"]);
    let web = env.inspect(&format!("{project}_web")).await;
    let bindings = web.host_config.unwrap().port_bindings.unwrap_or_default();
    assert!(bindings.contains_key("8080/tcp"), "{bindings:?}");
    // Reachable by its short name on the project's network.
    let out = docker_cli()
        .args([
            "exec",
            &format!("{project}_web"),
            "wget",
            "-q",
            "-O",
            "-",
            "-T",
            "3",
            "http://db:1/",
        ])
        .output()
        .unwrap();
    assert!(
        !all_text(&out).contains("bad address"),
        "`db` resolves: {}",
        all_text(&out)
    );
    let out = common::assetd_cli(&env, &["plan"], "local");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second plan: {}",
        all_text(&out)
    );
}

fn migration_project(project: &str, job_exit: &str, app_env: &str) -> String {
    format!(
        "name: {project}\nservices:\n  migrate:\n    image: assetd-test/busybox:1\n    command: [\"sh\", \"-c\", \"echo migrated > /data/done; echo schema v7; exit {job_exit}\"]\n    volumes: [ \"data:/data\" ]\n  app:\n    image: assetd-test/busybox:1\n    command: [\"sh\", \"-c\", \"cat /data/done; sleep 3600\"]\n    environment: [ \"RUN={app_env}\" ]\n    volumes: [ \"data:/data\" ]\n    depends_on:\n      migrate: {{ condition: service_completed_successfully }}\nvolumes:\n  data:\n"
    )
}

/// The status line of `name` in `assetd status`.
fn status_line(env: &TestEnv, strategy: &str, name: &str) -> String {
    let out = common::assetd_cli(env, &["status"], strategy);
    all_text(&out)
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_default()
        .to_string()
}

/// `service_completed_successfully`: the job runs to completion before
/// what waits for it starts, once per version; a failing version holds
/// its dependents and what runs stays.
async fn a_migration_job_goes_first(prefix: &str, strategy: &str) {
    let env = TestEnv::new(prefix).await;
    let project = format!("{prefix}a").replace('-', "");
    let _cleanup = Projects(vec![project.clone()]);
    common::cleanup_namespace(&env.docker, &project).await;
    env.write("migration.yaml", &migration_project(&project, "0", "1"));
    let out = common::assetd_cli(&env, &["apply", "--once", "--wait", "2m"], strategy);
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let (job, app) = (format!("{project}_migrate"), format!("{project}_app"));
    assert!(
        status_line(&env, strategy, &job).contains("Completed"),
        "{}",
        status_line(&env, strategy, &job)
    );
    assert!(
        status_line(&env, strategy, &app).contains("Running"),
        "{}",
        status_line(&env, strategy, &app)
    );
    // The app found what the job wrote: the job ran first.
    let container = if strategy == "local" {
        app.clone()
    } else {
        let out = docker_cli()
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={app}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    eventually("the app's log", Duration::from_secs(30), || async {
        let out = docker_cli().args(["logs", &container]).output().ok()?;
        all_text(&out).contains("migrated").then_some(())
    })
    .await;
    let history = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_assetd"))
            .args(["history", name, "--state-dir"])
            .arg(env.root.join("cli-state"))
            .output()
            .unwrap();
        all_text(&out)
    };
    assert!(
        history(&job).contains("job exited 0") && history(&job).contains("schema v7"),
        "{}",
        history(&job)
    );
    // Once per version: a second pass plans nothing.
    let out = common::assetd_cli(&env, &["plan"], strategy);
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));

    // A new version of the job that fails holds the app's update; the app
    // runs on.
    env.write("migration.yaml", &migration_project(&project, "3", "2"));
    let out = common::assetd_cli(&env, &["apply", "--once", "--wait", "1m"], strategy);
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("job exited 3"), "{text}");
    let line = status_line(&env, strategy, &app);
    assert!(
        line.contains("Held") && line.contains(&format!("waiting for {job}")),
        "{line}"
    );
    assert!(
        status_line(&env, strategy, &job).contains("held: job exited 3"),
        "{}",
        status_line(&env, strategy, &job)
    );
    let out = docker_cli()
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=io.assetd.hook",
            "--filter",
            &format!("label=io.assetd.instance={}", env.prefix),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "no job container is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_job_goes_first_on_the_local_engine() {
    a_migration_job_goes_first("cmp-jobl", "local").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_job_goes_first_on_swarm() {
    a_migration_job_goes_first("cmp-jobs", "swarm").await;
}
