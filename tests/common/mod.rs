//! Shared set-up for tests against the real Docker engine.
//!
//! Every test gets its own [`TestEnv`]: a manifests directory, a state
//! directory and a label (`assetd.test=<prefix>`) put on everything it
//! creates, so tests run in parallel on one engine and clean up after
//! themselves, also when they fail (cleanup runs in `Drop`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assetd::core::plan::PlanConfig;
use assetd::engine::strategy::{AnyStrategy, LocalDocker, Swarm};
use assetd::input::desired::LoadOptions;
use assetd::input::manifest::Policy;
use assetd::reconcile::{self, PassConfig, PassReport};
use assetd::store::{SledStore, Store};
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, ListServicesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;

pub mod dockerd;
pub mod harness;
/// The bench's counting proxy: one for the bench and the tests.
#[path = "../../src/bin/assetd-bench/proxy.rs"]
pub mod proxy;

pub const IMAGE_1: &str = "assetd-test/busybox:1";
pub const IMAGE_2: &str = "assetd-test/busybox:2";
/// The one deadline every test derives its waits from: how long
/// convergence may take while other tests load the engine (six test
/// threads on two cores). A deadline, not a sleep: a passing test returns
/// as soon as it converges. Speed is measured by `assetd-bench`, never
/// asserted here.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// The label every test object carries, valued with the test's prefix.
pub const TEST_LABEL: &str = "assetd.test";

/// The engine the tests use: `DOCKER_HOST`, else the one
/// `scripts/testenv.sh` starts. A missing engine fails the test.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///run/assetd-test/docker.sock".into())
}

/// Whether a Swarm write lost a race on the object's version index (the
/// engine answers 500 "update out of sequence"): read it again and retry,
/// as DESIGN.md says.
pub fn out_of_sequence(message: &str) -> bool {
    message.contains("out of sequence")
}

/// Runs the docker CLI against the test engine and returns its stdout,
/// failing the test when it fails. A Swarm write that lost a version race
/// (`docker service update` reads the spec and writes it back) is run
/// again: each run reads the current version.
pub fn docker_cli(args: &[&str]) -> String {
    for _ in 0..20 {
        let out = std::process::Command::new("/usr/bin/docker")
            .arg("-H")
            .arg(docker_host())
            .args(args)
            .output()
            .expect("the docker CLI runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        assert!(out_of_sequence(&stderr), "docker {args:?}: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("docker {args:?}: still out of sequence after 20 tries");
}

/// `assetd ARGS` as an operator runs it on `env`'s manifests, with a
/// state dir of its own (`cli-state`), `--strategy` and the test's
/// `--instance`.
pub fn assetd_cli(env: &TestEnv, args: &[&str], strategy: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(args)
        .args(["--manifests", &env.manifests.display().to_string()])
        .args([
            "--state-dir",
            &env.root.join("cli-state").display().to_string(),
        ])
        .args(["--strategy", strategy, "--instance", &env.prefix])
        .env("DOCKER_HOST", docker_host())
        .output()
        .unwrap()
}

/// What a command printed, stdout then stderr.
pub fn all_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The names of the Swarm secrets the test's instance owns.
pub async fn secret_versions(env: &TestEnv) -> Vec<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("io.assetd.instance={}", env.prefix)],
    )]);
    let options = bollard::query_parameters::ListSecretsOptionsBuilder::default()
        .filters(&filters)
        .build();
    env.docker
        .list_secrets(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| s.spec.and_then(|s| s.name))
        .collect()
}

pub async fn docker() -> Docker {
    let host = docker_host();
    let docker = Docker::connect_with_host(&host).expect("a Docker client for DOCKER_HOST");
    docker.ping().await.unwrap_or_else(|e| {
        panic!(
            "no Docker engine answers at {host} ({e}); run `eval \"$(scripts/testenv.sh)\"` first"
        )
    });
    docker
}

pub struct TestEnv {
    pub prefix: String,
    pub root: PathBuf,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub docker: Docker,
    pub store: Arc<dyn Store>,
    pub allow_bind: Vec<PathBuf>,
}

impl TestEnv {
    /// `prefix` must be unique among all tests: it names the assets.
    pub async fn new(prefix: &str) -> Self {
        let docker = docker().await;
        let root = std::env::temp_dir().join(format!("assetd-it-{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let manifests = root.join("manifests");
        let state = root.join("state");
        std::fs::create_dir_all(&manifests).unwrap();
        set_mode(&root, 0o700);
        set_mode(&manifests, 0o755);
        let (store, _) = SledStore::open(&state).unwrap();
        let env = Self {
            prefix: prefix.to_string(),
            root,
            manifests,
            state,
            docker,
            store: Arc::new(store),
            allow_bind: vec![],
        };
        env.cleanup_objects().await;
        env
    }

    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Writes a manifest file (relative path) atomically.
    pub fn write(&self, file: &str, text: &str) {
        let path = self.manifests.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("writing~");
        std::fs::write(&tmp, text).unwrap();
        set_mode(&tmp, 0o644);
        std::fs::rename(&tmp, &path).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// A minimal asset manifest with this test's label; `spec_extra` is
    /// YAML lines at the `spec:` level (indented by four spaces).
    pub fn asset(&self, suffix: &str, image: &str, spec_extra: &str) -> String {
        format!(
            "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {}\n  labels:\n    {TEST_LABEL}: {}\nspec:\n  image: {image}\n{spec_extra}",
            self.name(suffix),
            self.prefix
        )
    }

    pub fn config(&self) -> PassConfig {
        PassConfig {
            manifests: self.manifests.clone(),
            load: LoadOptions {
                policy: Policy {
                    allow_bind: self.allow_bind.clone(),
                },
                check_permissions: true,
                age: Default::default(),
                version_key: None,
            },
            plan: PlanConfig::default(),
            concurrency: 4,
            respect_backoff: false,
            manifest_cache: None,
            check_moved_tags: true,
        }
    }

    pub fn local(&self) -> AnyStrategy {
        AnyStrategy::Local(LocalDocker::new(self.docker.clone(), &self.prefix))
            .with_stack_dir(self.state.join("stack"))
    }

    pub fn swarm(&self) -> AnyStrategy {
        AnyStrategy::Swarm(Swarm::new(self.docker.clone(), &self.prefix))
    }

    pub async fn apply_with(&self, strategy: &AnyStrategy) -> PassReport {
        let pass = reconcile::run_pass(&self.config(), strategy, &self.store)
            .await
            .expect("a pass lists the engine");
        for outcome in &pass.outcomes {
            if let Some(e) = &outcome.error {
                eprintln!("outcome {} {}: {e}", outcome.kind, outcome.name);
            }
        }
        pass
    }

    pub async fn apply(&self) -> PassReport {
        self.apply_with(&self.local()).await
    }

    /// Containers carrying this test's label, managed or not.
    pub async fn containers(&self) -> Vec<ContainerSummary> {
        let filters = HashMap::from([("label", vec![format!("{TEST_LABEL}={}", self.prefix)])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker.list_containers(Some(options)).await.unwrap()
    }

    pub async fn inspect(&self, container: &str) -> ContainerInspectResponse {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .unwrap_or_else(|e| panic!("inspect {container}: {e}"))
    }

    async fn cleanup_objects(&self) {
        cleanup(&self.docker, &self.prefix).await;
    }
}

pub async fn cleanup(docker: &Docker, prefix: &str) {
    // The test's label, and the ownership label of its `--instance` (the
    // prefix): objects made from files that carry no test label (an
    // OpenFactory app file) are the instance's all the same.
    for label in [
        format!("{TEST_LABEL}={prefix}"),
        format!("io.assetd.instance={prefix}"),
    ] {
        cleanup_labelled(docker, label).await;
    }
    cleanup_stack(docker, &format!("io.assetd.instance={prefix}")).await;
    // The instance's Swarm writer lease (a config), when it ran on Swarm.
    let _ = docker
        .delete_config(&format!("assetd-lease-{prefix}"))
        .await;
}

/// Everything of a Compose project (`docker stack deploy`'s or assetd's),
/// by the project's namespace label: services, networks, secrets,
/// configs and the volumes the engine made for it.
pub async fn cleanup_namespace(docker: &Docker, project: &str) {
    let label = format!("com.docker.stack.namespace={project}");
    cleanup_labelled(docker, label.clone()).await;
    // Tasks take a moment to go after their service; their networks and
    // volumes cannot be removed before.
    for _ in 0..20 {
        let filters = HashMap::from([("label".to_string(), vec![label.clone()])]);
        let tasks = docker
            .list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap_or_default();
        if tasks.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    cleanup_stack(docker, &label).await;
}

/// Networks, volumes, secrets and configs the instance made (after its
/// containers and services, which use them).
async fn cleanup_stack(docker: &Docker, label: &str) {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let networks = bollard::query_parameters::ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    for n in docker
        .list_networks(Some(networks))
        .await
        .unwrap_or_default()
    {
        if let Some(id) = n.id {
            let _ = docker.remove_network(&id).await;
        }
    }
    let volumes = bollard::query_parameters::ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    if let Ok(list) = docker.list_volumes(Some(volumes)).await {
        for v in list.volumes.unwrap_or_default() {
            let _ = docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        }
    }
    let secrets = bollard::query_parameters::ListSecretsOptionsBuilder::default()
        .filters(&filters)
        .build();
    for s in docker.list_secrets(Some(secrets)).await.unwrap_or_default() {
        if let Some(id) = s.id {
            let _ = docker.delete_secret(&id).await;
        }
    }
    let configs = bollard::query_parameters::ListConfigsOptionsBuilder::default()
        .filters(&filters)
        .build();
    for c in docker.list_configs(Some(configs)).await.unwrap_or_default() {
        if let Some(id) = c.id {
            let _ = docker.delete_config(&id).await;
        }
    }
}

async fn cleanup_labelled(docker: &Docker, label: String) {
    let filters = HashMap::from([("label", vec![label])]);
    if let Ok(services) = docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
    {
        for s in services {
            if let Some(id) = s.id {
                let _ = docker.delete_service(&id).await;
            }
        }
    }
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    if let Ok(containers) = docker.list_containers(Some(options)).await {
        for c in containers {
            if let Some(id) = c.id {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let root = self.root.clone();
        // Drop cannot await; a fresh runtime on its own thread does the
        // cleanup whether the test passed or panicked.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                if let Ok(docker) = Docker::connect_with_host(&docker_host()) {
                    cleanup(&docker, &prefix).await;
                }
            });
            let _ = std::fs::remove_dir_all(root);
        })
        .join();
    }
}

/// A local tag under an unreachable registry: present, so IfNotPresent
/// runs it, but every pull of it fails at once (connection refused).
pub struct UnpullableTag {
    docker: Docker,
    pub tag: String,
}

impl UnpullableTag {
    pub async fn new(env: &TestEnv) -> Self {
        let repo = format!("127.0.0.1:9/{}/busybox", env.prefix);
        let options = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(&repo)
            .tag("1")
            .build();
        env.docker.tag_image(IMAGE_1, Some(options)).await.unwrap();
        Self {
            docker: env.docker.clone(),
            tag: format!("{repo}:1"),
        }
    }
}

impl Drop for UnpullableTag {
    fn drop(&mut self) {
        let (docker, tag) = (self.docker.clone(), self.tag.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let _ = rt.block_on(docker.remove_image(
                &tag,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            ));
        })
        .join();
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Polls `check` until it returns `Some`, or panics after `timeout` saying
/// what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `cmd` in container `id` and waits for it (a healthcheck's file
/// removed, say); panics when the engine refuses.
pub async fn exec_in(docker: &bollard::Docker, id: &str, cmd: &[&str]) {
    let config = bollard::models::ExecConfig {
        cmd: Some(cmd.iter().map(|c| c.to_string()).collect()),
        ..Default::default()
    };
    let exec = docker.create_exec(id, config).await.unwrap();
    docker.start_exec(&exec.id, None).await.unwrap();
}
