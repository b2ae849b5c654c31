//! Private registries, for real: Debian's docker-registry on loopback
//! with htpasswd auth (started by `scripts/testenv.sh`, which logs in with
//! a client config of its own). Images only the registry has are pulled
//! with the credentials of `docker login` (auths), of a credential helper,
//! locally and on Swarm; wrong credentials are a clear error that names
//! the registry, shows no secret, and leaves what runs alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bollard::Docker;
use common::harness::{shared, Assetd};
use common::{eventually, TestEnv, IMAGE_1};

/// A password no output may contain.
const WRONG_PASSWORD: &str = "not-the-password-9f3c";

fn registry() -> String {
    std::env::var("ASSETD_TEST_REGISTRY")
        .expect("ASSETD_TEST_REGISTRY is set by scripts/testenv.sh")
}

fn client_config() -> PathBuf {
    PathBuf::from(
        std::env::var("ASSETD_TEST_DOCKER_CONFIG")
            .expect("ASSETD_TEST_DOCKER_CONFIG is set by scripts/testenv.sh"),
    )
}

/// `docker --config <the test login> ARGS` on the test engine.
fn docker_cli(args: &[&str]) {
    let out = Command::new("docker")
        .arg("--config")
        .arg(client_config())
        .args(["-H", &common::docker_host()])
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes IMAGE_1 as `<registry>/assetd-test/<tag>` and removes that
/// name from the engine, so a deploy must pull it.
fn only_in_registry(tag: &str) -> String {
    let image = format!("{}/assetd-test/{tag}", registry());
    docker_cli(&["tag", IMAGE_1, &image]);
    docker_cli(&["push", "-q", &image]);
    docker_cli(&["rmi", &image]);
    image
}

async fn running_image(docker: &Docker, name: &str) -> Option<String> {
    let c = docker.inspect_container(name, None).await.ok()?;
    c.state?.running?.then_some(())?;
    c.config?.image
}

/// A client config dir holding `config` as its config.json.
fn config_dir(env: &TestEnv, name: &str, config: &str) -> PathBuf {
    let dir = env.root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    dir
}

fn with_config(env: &TestEnv, strategy: &'static str, config: &Path) -> Assetd {
    let mut assetd = Assetd::new(env, strategy);
    assetd
        .env
        .push(("DOCKER_CONFIG", config.display().to_string()));
    assetd
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_only_the_private_registry_has_is_pulled_with_the_login_and_swarm_writes_read_the_same_config(
) {
    let _engine = shared().await;
    let env = TestEnv::new("reg-login").await;
    let local = only_in_registry("reg-login-local:1");
    env.write("a.yaml", &env.asset("a", &local, ""));
    let assetd = with_config(&env, "local", &client_config());
    let out = assetd.output(&["apply", "--once"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let name = env.name("a");
    assert_eq!(
        running_image(&env.docker, &name).await.as_deref(),
        Some(local.as_str())
    );

    // Swarm: every service write carries the image's registry
    // credentials (X-Registry-Auth, as `--with-registry-auth`), read from
    // the client config at that moment: a broken config stops the write
    // with its path named, and nothing is created. (That the nodes pull
    // with them is not observable here: the test engines never pull for
    // tasks, DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1.)
    let broken = config_dir(&env, "broken", "{ not json");
    let image = only_in_registry("reg-login-swarm:1");
    env.write("b.yaml", &env.asset("b", &image, ""));
    let swarm = with_config(&env, "swarm", &broken);
    let out = swarm.output(&["apply", "--once"], &["--wait", "0s"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "registry config {}",
            broken.join("config.json").display()
        )),
        "{said}"
    );
    assert!(
        env.docker
            .inspect_service(&env.name("b"), None)
            .await
            .is_err(),
        "created anyway"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_helper_is_used_and_wrong_credentials_leave_what_runs() {
    let _engine = shared().await;
    let env = TestEnv::new("reg-helper").await;
    let name = env.name("a");
    // A helper program on PATH, answering with the test login.
    let bin = env.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-assetdtest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"assetd\",\"Secret\":\"assetd-test-password\"}' \"$server\"\n",
    )
    .unwrap();
    common::set_mode(&helper, 0o755);
    let helper_config = config_dir(
        &env,
        "helper-config",
        &format!(r#"{{"credHelpers": {{"{}": "assetdtest"}}}}"#, registry()),
    );
    let first = only_in_registry("reg-helper:1");
    env.write("a.yaml", &env.asset("a", &first, ""));
    let mut assetd = with_config(&env, "local", &helper_config);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    assetd.env.push(("PATH", path));
    let out = assetd.output(&["apply", "--once"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        running_image(&env.docker, &name).await.as_deref(),
        Some(first.as_str())
    );

    // Wrong credentials for the next version: refused, clearly, and the
    // running version stays.
    let wrong = format!("assetd:{WRONG_PASSWORD}");
    let auth = base64_of(&wrong);
    let wrong_config = config_dir(
        &env,
        "wrong-config",
        &format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, registry()),
    );
    let second = only_in_registry("reg-helper:2");
    env.write("a.yaml", &env.asset("a", &second, ""));
    let assetd = with_config(&env, "local", &wrong_config);
    let out = assetd.output(&["apply", "--once"], &["-o", "json"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "registry {} refused the credentials from auths in",
            registry()
        )),
        "{said}"
    );
    let status =
        String::from_utf8_lossy(&assetd.output(&["status"], &["-o", "json"]).stdout).into_owned();
    for shown in [&said, &status] {
        assert!(
            !shown.contains(WRONG_PASSWORD) && !shown.contains(&auth),
            "a secret shown: {shown}"
        );
    }
    let runs = eventually(
        "the first version still running",
        Duration::from_secs(5),
        || async { running_image(&env.docker, &name).await },
    )
    .await;
    assert_eq!(runs, first, "what ran was touched");
}

/// Standard base64, as `docker login` writes `auth`.
fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Pushes `local` (a local image) as `image` and drops the local tag.
fn push_as(local: &str, image: &str) {
    docker_cli(&["tag", local, image]);
    docker_cli(&["push", "-q", image]);
    docker_cli(&["rmi", image]);
}

async fn image_id(docker: &Docker, image: &str) -> String {
    docker.inspect_image(image).await.unwrap().id.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_moved_in_the_registry_is_noticed_and_rolled_out_with_pull_policy_always() {
    let _engine = shared().await;
    let env = TestEnv::new("reg-moved").await;
    let (first, second) = (
        image_id(&env.docker, IMAGE_1).await,
        image_id(&env.docker, common::IMAGE_2).await,
    );
    let local_tag = format!("{}/assetd-test/reg-moved-local:live", registry());
    let swarm_tag = format!("{}/assetd-test/reg-moved-swarm:live", registry());
    push_as(IMAGE_1, &local_tag);
    push_as(IMAGE_1, &swarm_tag);
    let always = "  command: sleep 3600\n  pullPolicy: Always\n";
    env.write("a.yaml", &env.asset("a", &local_tag, always));
    let local = with_config(&env, "local", &client_config());
    let out = local.output(&["apply", "--once"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let a = env.name("a");
    let container = env.inspect(&a).await;
    assert_eq!(container.image.as_deref(), Some(first.as_str()));

    // Nothing moved: a pass writes nothing.
    let out = local.output(&["apply", "--once"], &[]);
    assert!(text(&out).contains("0 action(s)"), "{}", text(&out));

    // The tag moves to another image: the next pass rolls it out.
    push_as(common::IMAGE_2, &local_tag);
    let out = local.output(&["plan"], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "image tag {local_tag} moved in its registry to sha256:"
        )),
        "{said}"
    );
    let out = local.output(&["apply", "--once"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let container = env.inspect(&a).await;
    assert_eq!(
        container.image.as_deref(),
        Some(second.as_str()),
        "runs the moved tag's image"
    );
    assert!(container.state.unwrap().running.unwrap());

    // Swarm: pinned to the digest; a moved tag updates the same service.
    env.write("a.yaml", "");
    env.remove("a.yaml");
    env.write("b.yaml", &env.asset("b", &swarm_tag, always));
    let swarm = with_config(&env, "swarm", &client_config());
    let out = swarm.output(&["apply", "--once"], &["--allow-mass-prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pinned = |service: bollard::models::Service| {
        service
            .spec
            .unwrap()
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .image
            .unwrap()
    };
    let b = env.name("b");
    let service = env.docker.inspect_service(&b, None).await.unwrap();
    let id = service.id.clone().unwrap();
    let before = pinned(service);
    assert!(
        before.starts_with(&format!("{swarm_tag}@sha256:")),
        "{before}"
    );
    push_as(common::IMAGE_2, &swarm_tag);
    let out = swarm.output(&["apply", "--once"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let service = env.docker.inspect_service(&b, None).await.unwrap();
    assert_eq!(
        service.id.clone().unwrap(),
        id,
        "the same service, updated in place"
    );
    let after = pinned(service);
    assert!(
        after.starts_with(&format!("{swarm_tag}@sha256:")) && after != before,
        "{before} → {after}"
    );
    // Swarm's task runs the new image.
    eventually(
        "a task of the moved tag running",
        Duration::from_secs(60),
        || async {
            let filters = std::collections::HashMap::from([
                (
                    "label".to_string(),
                    vec![format!("com.docker.swarm.service.name={b}")],
                ),
                ("status".to_string(), vec!["running".to_string()]),
            ]);
            let listed = env
                .docker
                .list_containers(Some(
                    bollard::query_parameters::ListContainersOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                ))
                .await
                .ok()?;
            listed
                .iter()
                .any(|c| c.image_id.as_deref() == Some(second.as_str()))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_moved_to_a_broken_image_is_rolled_back_once_not_at_every_resync() {
    let _engine = shared().await;
    let env = TestEnv::new("reg-broken").await;
    let tag = format!("{}/assetd-test/reg-broken:live", registry());
    push_as(IMAGE_1, &tag);
    // A host port: the update is stop-first, so every retry would take
    // the port down.
    let always = "  pullPolicy: Always\n  ports: { 18651: 80 }\n";
    env.write("a.yaml", &env.asset("a", &tag, always));
    let mut local = with_config(&env, "local", &client_config());
    local.env.push(("ASSETD_LOG", "info".into()));
    let daemon = local.daemon(&["--resync", "2s"]);
    let a = env.name("a");
    daemon
        .wait_cli_phase(&a, assetd::report::status::Phase::Running)
        .await;

    // The tag moves to an image that exits at once.
    let builder = env.name("broken-src");
    docker_cli(&[
        "create",
        "--name",
        &builder,
        "--label",
        &format!("assetd.test={}", env.prefix),
        IMAGE_1,
    ]);
    let broken = format!("assetd-test/{}:broken", env.prefix);
    docker_cli(&[
        "commit",
        "--change",
        "CMD [\"sh\", \"-c\", \"exit 3\"]",
        &builder,
        &broken,
    ]);
    push_as(&broken, &tag);
    docker_cli(&["rmi", &broken]);

    daemon
        .wait_cli_phase(&a, assetd::report::status::Phase::Failed)
        .await;
    let started = |docker: Docker, name: String| async move {
        let state = docker.inspect_container(&name, None).await.ok()?.state?;
        (state.running == Some(true)).then_some(state.started_at?)
    };
    let before = eventually(
        "the previous version running again",
        common::CONVERGE,
        || started(env.docker.clone(), a.clone()),
    )
    .await;
    // Several resyncs: the failed digest is not tried again, so what runs
    // is never stopped again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = started(env.docker.clone(), a.clone()).await;
    assert_eq!(
        after.as_deref(),
        Some(before.as_str()),
        "restarted:\n{}",
        daemon.log()
    );
}
