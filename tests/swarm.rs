//! The Swarm strategy against a real one-node Swarm: every seed parameter,
//! each observed with `docker service inspect`, updates in place, drift
//! made by hand and repaired, foreign services left alone, and the
//! failure modes an operator meets (missing network, unplaceable tasks).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use assetd::core::plan::ActionKind;
use assetd::engine::strategy::{AnyStrategy, DeploymentStrategy, Ownership, Removed, Swarm};
use assetd::model::spec::AssetName;
use assetd::reconcile::PassReport;
use bollard::models::{
    MountType, NetworkCreateRequest, Service, ServiceSpec, Task, TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, InspectServiceOptions,
    ListServicesOptionsBuilder, ListTasksOptionsBuilder, RemoveVolumeOptions,
};
use bollard::Docker;
use common::proxy::Proxy;
use common::{docker_cli, TestEnv, IMAGE_1, IMAGE_2, TEST_LABEL};

/// Long enough for a task to be scheduled, started and, on an update,
/// stopped and replaced (stop-first) on a loaded test machine.
const CONVERGE: Duration = Duration::from_secs(60);

fn kinds(pass: &PassReport) -> Vec<ActionKind> {
    pass.outcomes.iter().map(|o| o.kind).collect()
}

fn assert_no_failures(pass: &PassReport) {
    let failures: Vec<String> = pass
        .outcomes
        .iter()
        .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.name)))
        .collect();
    assert!(failures.is_empty(), "failures: {failures:?}");
}

/// Applies and asserts the pass wrote nothing, `times` times: what Swarm
/// does on its own (defaults, version bumps, rolling tasks) is no drift.
async fn assert_converged(env: &TestEnv, times: usize) {
    for _ in 0..times {
        let pass = env.apply_with(&env.swarm()).await;
        assert!(
            pass.outcomes.is_empty(),
            "a converged pass acted: {:?}",
            pass.outcomes
        );
        assert!(!pass.plan.has_changes(), "{:?}", pass.plan.actions);
    }
}

async fn service(env: &TestEnv, suffix: &str) -> Service {
    let name = env.name(suffix);
    env.docker
        .inspect_service(&name, None::<InspectServiceOptions>)
        .await
        .unwrap_or_else(|e| panic!("inspect service {name}: {e}"))
}

fn spec_of(service: &Service) -> ServiceSpec {
    service.spec.clone().expect("a service has a spec")
}

fn container_spec(service: &Service) -> TaskSpecContainerSpec {
    spec_of(service)
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
}

fn version(service: &Service) -> u64 {
    service.version.as_ref().and_then(|v| v.index).unwrap()
}

/// Services carrying this test's label, managed or not.
async fn services(env: &TestEnv) -> Vec<Service> {
    let filters = HashMap::from([("label", vec![format!("{TEST_LABEL}={}", env.prefix)])]);
    let options = ListServicesOptionsBuilder::default()
        .filters(&filters)
        .build();
    env.docker.list_services(Some(options)).await.unwrap()
}

/// Tasks of a service that are running and meant to stay so.
async fn running_tasks(docker: &Docker, service: &str) -> Vec<Task> {
    let filters = HashMap::from([
        ("service", vec![service.to_string()]),
        ("desired-state", vec!["running".to_string()]),
    ]);
    let options = ListTasksOptionsBuilder::default().filters(&filters).build();
    let tasks = docker.list_tasks(Some(options)).await.unwrap_or_default();
    tasks
        .into_iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .collect()
}

/// Waits until Swarm reports the asset's rollout in `state` (`paused`,
/// `rollback_completed`, ...), as assetd reads it.
async fn wait_rollout(
    swarm: &AnyStrategy,
    name: &AssetName,
    state: &str,
) -> assetd::engine::strategy::Rollout {
    common::eventually(
        &format!("Swarm to report the rollout {state}"),
        Duration::from_secs(120),
        || async {
            let actual = swarm.list_managed().await.unwrap();
            actual
                .into_iter()
                .find(|a| &a.name == name)?
                .rollout
                .filter(|r| r.state == state)
        },
    )
    .await
}

fn task_image(task: &Task) -> String {
    let spec = task.spec.clone().unwrap().container_spec.unwrap();
    spec.image.unwrap()
}

/// Waits until exactly `n` tasks of the asset run, every one of `image`.
async fn wait_running(env: &TestEnv, suffix: &str, n: usize, image: &str) -> Vec<Task> {
    let name = env.name(suffix);
    common::eventually(
        &format!("{n} running task(s) of {name} with {image}"),
        CONVERGE,
        || async {
            let tasks = running_tasks(&env.docker, &name).await;
            let all_match = tasks
                .iter()
                .all(|t| task_image(t).split('@').next() == Some(image));
            (tasks.len() == n && all_match).then_some(tasks)
        },
    )
    .await
}

/// Runs the docker CLI against the test engine, as an operator would.
fn swarm_of(strategy: &AnyStrategy) -> &Swarm {
    match strategy {
        AnyStrategy::Swarm(swarm) => swarm,
        AnyStrategy::Local(_) => unreachable!("a Swarm strategy"),
    }
}

fn asset_name(env: &TestEnv, suffix: &str) -> AssetName {
    AssetName::new(&env.name(suffix)).unwrap()
}

/// A service created by hand (not by assetd), with this test's label so
/// that cleanup finds it.
async fn create_unmanaged(env: &TestEnv, name: &str, extra_labels: &[(&str, &str)]) -> String {
    let mut labels = HashMap::from([(TEST_LABEL.to_string(), env.prefix.clone())]);
    labels.extend(
        extra_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let spec = ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(labels),
        task_template: Some(bollard::models::TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(IMAGE_1.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    env.docker
        .create_service(spec, None)
        .await
        .unwrap()
        .id
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn image_name_and_labels_are_set_on_the_service_and_its_containers() {
    let env = TestEnv::new("sw-image").await;
    let text = format!(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {}\n  labels:\n    {TEST_LABEL}: {}\n    zone: cell-3\n    traefik.http.routers.x.rule: \"Host(`x`)\"\nspec:\n  image: {IMAGE_1}\n",
        env.name("a"),
        env.prefix
    );
    env.write("a.yaml", &text);
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Create]);

    let s = service(&env, "a").await;
    let spec = spec_of(&s);
    assert_eq!(spec.name.as_deref(), Some(env.name("a").as_str()));
    let container = container_spec(&s);
    assert_eq!(container.image.as_deref(), Some(IMAGE_1));
    assert_eq!(container.args, None, "no command keeps the image's CMD");
    assert_eq!(container.command, None, "the ENTRYPOINT is never replaced");
    let service_labels = spec.labels.unwrap();
    let container_labels = container.labels.unwrap();
    for labels in [&service_labels, &container_labels] {
        assert_eq!(labels["io.assetd.managed"], "true");
        assert_eq!(labels["io.assetd.instance"], env.prefix);
        assert_eq!(labels["io.assetd.asset"], env.name("a"));
        assert_eq!(labels["io.assetd.source"], "a.yaml");
        assert_eq!(labels["io.assetd.spec-hash"].len(), 64);
        assert_eq!(labels["zone"], "cell-3");
        assert_eq!(labels["traefik.http.routers.x.rule"], "Host(`x`)");
        assert_eq!(labels[TEST_LABEL], env.prefix);
    }
    assert_eq!(
        service_labels["io.assetd.spec-hash"],
        container_labels["io.assetd.spec-hash"]
    );
    let tasks = wait_running(&env, "a", 1, IMAGE_1).await;
    let record = env.store.get(&asset_name(&env, "a")).unwrap();
    assert_eq!(record.object_ids, vec![s.id.clone().unwrap()]);
    assert_eq!(tasks[0].service_id, s.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn env_list_and_map_reach_the_container_spec() {
    let env = TestEnv::new("sw-env").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  env: [ \"MTC_AGENT_UUID=CNC-MILL-01\", \"EMPTY=\" ]\n",
        ),
    );
    env.write(
        "b.yaml",
        &env.asset("b", IMAGE_1, "  env:\n    ZONE: cell-3\n    PORT: 5000\n"),
    );
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let a = container_spec(&service(&env, "a").await).env.unwrap();
    assert_eq!(a, vec!["MTC_AGENT_UUID=CNC-MILL-01", "EMPTY="]);
    let b = container_spec(&service(&env, "b").await).env.unwrap();
    assert_eq!(b, vec!["PORT=5000", "ZONE=cell-3"]);
    // The task's container really has them.
    let task = &wait_running(&env, "a", 1, IMAGE_1).await[0];
    let id = task
        .status
        .clone()
        .unwrap()
        .container_status
        .unwrap()
        .container_id
        .unwrap();
    let c = env
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let e = c.config.unwrap().env.unwrap();
    assert!(
        e.contains(&"MTC_AGENT_UUID=CNC-MILL-01".to_string()),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn command_becomes_args_split_like_a_shell() {
    let env = TestEnv::new("sw-cmd").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  command: \"sh -c 'trap \\\"exit 0\\\" TERM; echo \\\"hi there\\\"; sleep 3600 & wait'\"\n",
        ),
    );
    env.write(
        "b.yaml",
        &env.asset(
            "b",
            IMAGE_1,
            "  command: [sh, -c, \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n",
        ),
    );
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let a = container_spec(&service(&env, "a").await);
    assert_eq!(
        a.args.unwrap(),
        vec![
            "sh",
            "-c",
            "trap \"exit 0\" TERM; echo \"hi there\"; sleep 3600 & wait"
        ]
    );
    assert_eq!(a.command, None);
    let b = container_spec(&service(&env, "b").await);
    assert_eq!(
        b.args.unwrap(),
        vec!["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    );
    wait_running(&env, "a", 1, IMAGE_1).await;
    wait_running(&env, "b", 1, IMAGE_1).await;
    assert_converged(&env, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ports_are_published_through_the_ingress() {
    let env = TestEnv::new("sw-ports").await;
    env.write(
        "a.yaml",
        &env.asset(
            "web",
            IMAGE_1,
            "  command: sh -c 'trap \"exit 0\" TERM; httpd -f -p 80 & wait'\n  ports: { 18401: 80, \"18402/udp\": 5000 }\n",
        ),
    );
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let s = service(&env, "web").await;
    let mut ports: Vec<(String, i64, i64, String)> = spec_of(&s)
        .endpoint_spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.protocol.unwrap().to_string(),
                p.published_port.unwrap(),
                p.target_port.unwrap(),
                p.publish_mode.unwrap().to_string(),
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        vec![
            ("tcp".to_string(), 18401, 80, "ingress".to_string()),
            ("udp".to_string(), 18402, 5000, "ingress".to_string()),
        ]
    );
    let task = wait_running(&env, "web", 1, IMAGE_1).await.remove(0);
    // Swarm allocated the published ports on the service's endpoint.
    let endpoint_ports = service(&env, "web").await.endpoint.unwrap().ports.unwrap();
    assert!(
        endpoint_ports
            .iter()
            .any(|p| p.published_port == Some(18401)),
        "{endpoint_ports:?}"
    );

    let body = if Path::new("/proc/net/ip_vs").exists() {
        http_get("127.0.0.1:18401".into()).await
    } else {
        // The routing mesh balances with IPVS; a kernel without it (the CI
        // VMs') accepts the service but never answers on the published
        // port. Only an explicit waiver (scripts/testenv.sh sets it when
        // the kernel cannot have the module) lets the test prove less: the
        // target port serves, on the task's address on docker_gwbridge.
        assert_eq!(
            std::env::var("ASSETD_TEST_NO_IP_VS").as_deref(),
            Ok("1"),
            "no /proc/net/ip_vs: the ingress cannot be probed; load ip_vs or waive with ASSETD_TEST_NO_IP_VS=1"
        );
        eprintln!("WAIVED (ASSETD_TEST_NO_IP_VS=1): no IPVS in this kernel; checking the task's target port, not the routing mesh");
        let container = task
            .status
            .unwrap()
            .container_status
            .unwrap()
            .container_id
            .unwrap();
        let gw = env
            .docker
            .inspect_network("docker_gwbridge", None::<InspectNetworkOptions>)
            .await
            .unwrap();
        let ip = gw.containers.unwrap()[&container]
            .ipv4_address
            .clone()
            .unwrap();
        let ip = ip.split('/').next().unwrap().to_string();
        http_get(format!("{ip}:80")).await
    };
    assert!(
        body.contains("assetd-test/busybox:1"),
        "served the :1 image's index.html: {body}"
    );
}

async fn http_get(addr: String) -> String {
    common::eventually(&format!("httpd on {addr}"), CONVERGE, || {
        let addr = addr.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
            let mut out = String::new();
            tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
                .await
                .ok()?
                .ok()?;
            out.contains("200").then_some(out)
        }
    })
    .await
}

async fn create_overlay(env: &TestEnv, name: &str) -> String {
    env.docker
        .create_network(NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(HashMap::from([(
                TEST_LABEL.to_string(),
                env.prefix.clone(),
            )])),
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

/// Removes the test's services, then its network once no task holds it.
async fn remove_network(env: &TestEnv, id: &str) {
    common::cleanup(&env.docker, &env.prefix).await;
    common::eventually("the network to be free and removed", CONVERGE, || async {
        env.docker.remove_network(id).await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn networks_are_attached_by_id() {
    let env = TestEnv::new("sw-nets").await;
    let net = env.name("net");
    let net_id = create_overlay(&env, &net).await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, &format!("  networks: [ {net} ]\n")),
    );
    let pass = env.apply_with(&env.swarm()).await;
    let s = service(&env, "a").await;
    let targets: Vec<String> = spec_of(&s)
        .task_template
        .unwrap()
        .networks
        .unwrap()
        .into_iter()
        .map(|n| n.target.unwrap())
        .collect();
    let task = wait_running(&env, "a", 1, IMAGE_1).await.remove(0);
    let container = task
        .status
        .unwrap()
        .container_status
        .unwrap()
        .container_id
        .unwrap();
    let attached = env
        .docker
        .inspect_container(&container, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .network_settings
        .unwrap()
        .networks
        .unwrap();
    // Swarm stores the network's ID where the spec named it: no drift.
    let converged = env.apply_with(&env.swarm()).await;
    remove_network(&env, &net_id).await;
    assert_no_failures(&pass);
    assert_eq!(targets, vec![net_id]);
    assert!(attached.contains_key(&net), "{:?}", attached.keys());
    assert!(converged.outcomes.is_empty(), "{:?}", converged.outcomes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_swapped_by_hand_is_repaired() {
    let env = TestEnv::new("sw-drift-net").await;
    let (front, back) = (env.name("front"), env.name("back"));
    let front_id = create_overlay(&env, &front).await;
    let back_id = create_overlay(&env, &back).await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, &format!("  networks: [ {front} ]\n")),
    );
    let first = env.apply_with(&env.swarm()).await;
    let name = env.name("a");
    docker_cli(&[
        "service",
        "update",
        "--detach",
        "--network-rm",
        &front,
        "--network-add",
        &back,
        &name,
    ]);
    let repair = env.apply_with(&env.swarm()).await;
    let targets: Vec<String> = spec_of(&service(&env, "a").await)
        .task_template
        .unwrap()
        .networks
        .unwrap()
        .into_iter()
        .map(|n| n.target.unwrap())
        .collect();
    let again = env.apply_with(&env.swarm()).await;
    remove_network(&env, &front_id).await;
    remove_network(&env, &back_id).await;
    assert_no_failures(&first);
    assert_no_failures(&repair);
    assert_eq!(kinds(&repair), vec![ActionKind::Repair]);
    assert!(
        repair.outcomes[0]
            .reason
            .starts_with("networks changed outside assetd"),
        "{}",
        repair.outcomes[0].reason
    );
    assert_eq!(targets, vec![front_id]);
    assert!(again.outcomes.is_empty(), "{:?}", again.outcomes);
}

#[tokio::test(flavor = "multi_thread")]
async fn constraints_are_kept_exactly_as_written_and_tasks_run() {
    let env = TestEnv::new("sw-constr").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  constraints: [ \"node.role == manager\", \"node.labels.zone != cell-9\" ]\n",
        ),
    );
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let placement = spec_of(&service(&env, "a").await)
        .task_template
        .unwrap()
        .placement
        .unwrap();
    assert_eq!(
        placement.constraints.unwrap(),
        vec!["node.role == manager", "node.labels.zone != cell-9"]
    );
    wait_running(&env, "a", 1, IMAGE_1).await;
    assert_converged(&env, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_limits_and_reservations_are_set() {
    let env = TestEnv::new("sw-res").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  resources:\n    limits: { cpus: 0.5, memory: 64Mi }\n    reservations: { cpus: 0.1, memory: 16Mi }\n",
        ),
    );
    env.write(
        "b.yaml",
        &env.asset(
            "b",
            IMAGE_1,
            "  resources:\n    Limits: { NanoCPUs: 250000000 }\n",
        ),
    );
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let a = spec_of(&service(&env, "a").await)
        .task_template
        .unwrap()
        .resources
        .unwrap();
    let limits = a.limits.unwrap();
    assert_eq!(limits.nano_cpus, Some(500_000_000));
    assert_eq!(limits.memory_bytes, Some(64 * 1024 * 1024));
    let reservations = a.reservations.unwrap();
    assert_eq!(reservations.nano_cpus, Some(100_000_000));
    assert_eq!(reservations.memory_bytes, Some(16 * 1024 * 1024));
    let b = spec_of(&service(&env, "b").await)
        .task_template
        .unwrap()
        .resources
        .unwrap();
    assert_eq!(b.limits.unwrap().nano_cpus, Some(250_000_000));
    // The task's container is limited.
    let task = wait_running(&env, "a", 1, IMAGE_1).await.remove(0);
    let container = task
        .status
        .unwrap()
        .container_status
        .unwrap()
        .container_id
        .unwrap();
    let host = env
        .docker
        .inspect_container(&container, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    wait_running(&env, "b", 1, IMAGE_1).await;
    assert_converged(&env, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicated_and_global_modes_are_set() {
    let env = TestEnv::new("sw-mode").await;
    env.write(
        "a.yaml",
        &env.asset("r", IMAGE_1, "  mode: { replicated: { replicas: 2 } }\n"),
    );
    env.write(
        "b.yaml",
        &env.asset("g", IMAGE_1, "  mode: { global: {} }\n"),
    );
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let r = spec_of(&service(&env, "r").await).mode.unwrap();
    assert_eq!(r.replicated.unwrap().replicas, Some(2));
    assert!(r.global.is_none());
    let g = spec_of(&service(&env, "g").await).mode.unwrap();
    assert!(g.global.is_some());
    assert!(g.replicated.is_none());
    wait_running(&env, "r", 2, IMAGE_1).await;
    wait_running(&env, "g", 1, IMAGE_1).await; // one node, one task
    assert_converged(&env, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mode_change_between_replicated_and_global_replaces_the_service() {
    let env = TestEnv::new("sw-mode-chg").await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  ports: { 18404: 80 }\n"),
    );
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let before = service(&env, "a").await.id;
    // Swarm refuses an in-place change of mode; the service is replaced,
    // and its published port is free again at once for the new one.
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  ports: { 18404: 80 }\n  mode: { global: {} }\n",
        ),
    );
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    let after = service(&env, "a").await;
    assert_ne!(after.id, before);
    assert!(spec_of(&after).mode.unwrap().global.is_some());
    assert_eq!(services(&env).await.len(), 1);
    wait_running(&env, "a", 1, IMAGE_1).await;
    assert_converged(&env, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_volume_and_tmpfs_mounts_are_set() {
    let mut env = TestEnv::new("sw-mounts").await;
    let host_dir = env.root.join("cfg");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("agent.cfg"), "x").unwrap();
    env.allow_bind = vec![env.root.clone()];
    let volume = env.name("data");
    env.write(
        "volume.yaml",
        &format!(
            "apiVersion: assetd/v1\nkind: Volume\nmetadata: {{ name: {volume} }}\nspec: {{}}\n"
        ),
    );
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            &format!(
                "  mounts:\n    - {{ type: bind, source: {}, target: /etc/cfg, readOnly: true }}\n    - {{ type: volume, source: {volume}, target: /data }}\n    - {{ Type: tmpfs, Target: /scratch }}\n",
                host_dir.display()
            ),
        ),
    );
    let pass = env.apply_with(&env.swarm()).await;
    let mounts = container_spec(&service(&env, "a").await).mounts.unwrap();
    // The task starts: the bind source exists and the volume is created.
    let task = wait_running(&env, "a", 1, IMAGE_1).await.remove(0);
    let container = task
        .status
        .unwrap()
        .container_status
        .unwrap()
        .container_id
        .unwrap();
    let container_mounts = env
        .docker
        .inspect_container(&container, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .mounts
        .unwrap();
    let converged = env.apply_with(&env.swarm()).await;
    common::cleanup(&env.docker, &env.prefix).await;
    // The cleanup removes the instance's volume once its task is gone.
    common::eventually("the volume to be free and removed", CONVERGE, || async {
        let _ = env
            .docker
            .remove_volume(&volume, None::<RemoveVolumeOptions>)
            .await;
        env.docker
            .inspect_volume(&volume)
            .await
            .is_err()
            .then_some(())
    })
    .await;

    assert_no_failures(&pass);
    let by_target: HashMap<String, _> = mounts
        .into_iter()
        .map(|m| (m.target.clone().unwrap(), m))
        .collect();
    let bind = &by_target["/etc/cfg"];
    assert_eq!(bind.typ, Some(MountType::BIND));
    assert_eq!(bind.source.as_deref(), Some(host_dir.to_str().unwrap()));
    assert_eq!(bind.read_only, Some(true));
    let vol = &by_target["/data"];
    assert_eq!(vol.typ, Some(MountType::VOLUME));
    assert_eq!(vol.source.as_deref(), Some(volume.as_str()));
    assert_eq!(by_target["/scratch"].typ, Some(MountType::TMPFS));
    let destinations: Vec<String> = container_mounts
        .iter()
        .filter_map(|m| m.destination.clone())
        .collect();
    for target in ["/etc/cfg", "/data", "/scratch"] {
        assert!(
            destinations.iter().any(|d| d == target),
            "{target} in {destinations:?}"
        );
    }
    assert!(converged.outcomes.is_empty(), "{:?}", converged.outcomes);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_change_updates_the_service_in_place() {
    let env = TestEnv::new("sw-upd-img").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let before = service(&env, "a").await;
    wait_running(&env, "a", 1, IMAGE_1).await;

    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    assert_eq!(
        pass.outcomes[0].reason,
        format!("spec.image: {IMAGE_1} → {IMAGE_2}")
    );
    let after = service(&env, "a").await;
    assert_eq!(after.id, before.id, "updated in place, same service");
    assert!(version(&after) > version(&before));
    assert_eq!(container_spec(&after).image.as_deref(), Some(IMAGE_2));
    // The record holds the version right after our write; Swarm bumps it
    // again on its own as the rollout progresses.
    let recorded = env
        .store
        .get(&asset_name(&env, "a"))
        .unwrap()
        .version
        .unwrap();
    assert!(recorded > version(&before) && recorded <= version(&after));
    wait_running(&env, "a", 1, IMAGE_2).await;
    assert_eq!(services(&env).await.len(), 1);
    assert_converged(&env, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_scale_up_to_three_and_back_to_one() {
    let env = TestEnv::new("sw-scale").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let id = service(&env, "a").await.id;
    wait_running(&env, "a", 1, IMAGE_1).await;

    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  mode: { replicated: { replicas: 3 } }\n"),
    );
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    assert_eq!(
        pass.outcomes[0].reason,
        "spec.mode.replicated.replicas: 1 → 3"
    );
    wait_running(&env, "a", 3, IMAGE_1).await;

    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  mode: { Replicated: { Replicas: 1 } }\n"),
    );
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    wait_running(&env, "a", 1, IMAGE_1).await;
    assert_eq!(service(&env, "a").await.id, id);
    assert_converged(&env, 1).await;
}

/// Deploys `a`, lets `change` alter it by hand, and checks that the next
/// pass repairs it, naming the field, and that three more passes do
/// nothing.
async fn drift_is_repaired(env: &TestEnv, change: &[&str], field: &str, spec_extra: &str) {
    env.write("a.yaml", &env.asset("a", IMAGE_1, spec_extra));
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let before = service(env, "a").await;
    wait_running(env, "a", 1, IMAGE_1).await;

    let name = env.name("a");
    let mut args = vec!["service", "update", "--detach"];
    args.extend_from_slice(change);
    args.push(&name);
    docker_cli(&args);
    let changed = service(env, "a").await;
    assert!(version(&changed) > version(&before));

    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Repair]);
    let reason = &pass.outcomes[0].reason;
    assert!(
        reason.starts_with(&format!("{field} changed outside assetd")),
        "{reason}"
    );
    let repaired = service(env, "a").await;
    assert_eq!(repaired.id, before.id, "repaired in place");
    let container = container_spec(&repaired);
    assert_eq!(container.image.as_deref(), Some(IMAGE_1));
    assert_eq!(
        container.env.unwrap_or_default(),
        container_spec(&before).env.unwrap_or_default()
    );
    assert_eq!(spec_of(&repaired).mode, spec_of(&before).mode);
    // The env that runs is the one the spec-hash label stands for.
    let desired = assetd::reconcile::load_desired(&env.config()).await;
    let want = &desired.assets[&asset_name(env, "a")];
    let labels = spec_of(&repaired).labels.unwrap();
    assert_eq!(labels["io.assetd.spec-hash"], want.hash.0);
    assert_eq!(
        container_spec(&repaired).env.unwrap_or_default(),
        want.spec.env
    );

    // No endless update loop: Swarm rolls the tasks and bumps its version
    // on its own while these passes run, and none of that is drift.
    assert_converged(env, 1).await;
    wait_running(env, "a", 1, IMAGE_1).await;
    assert_converged(env, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_changed_by_hand_is_repaired() {
    let env = TestEnv::new("sw-drift-img").await;
    drift_is_repaired(&env, &["--image", IMAGE_2], "image", "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_changed_by_hand_are_repaired() {
    let env = TestEnv::new("sw-drift-repl").await;
    drift_is_repaired(&env, &["--replicas", "3"], "mode", "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn env_added_by_hand_is_repaired() {
    let env = TestEnv::new("sw-drift-env").await;
    drift_is_repaired(&env, &["--env-add", "X=1"], "env", "  env: [ A=1 ]\n").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_removed_by_hand_is_recreated() {
    let env = TestEnv::new("sw-drift-rm").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let before = service(&env, "a").await.id;
    env.docker.delete_service(&env.name("a")).await.unwrap();

    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Repair]);
    let after = service(&env, "a").await;
    assert_ne!(after.id, before);
    wait_running(&env, "a", 1, IMAGE_1).await;
    assert_converged(&env, 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_manifest_removes_only_its_own_service() {
    let env = TestEnv::new("sw-prune").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    env.write("keep.yaml", &env.asset("keep", IMAGE_1, ""));
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    // Unmanaged services whose names and labels look like ours.
    let lookalike = format!("{}-1", env.name("a"));
    let lookalike_id =
        create_unmanaged(&env, &lookalike, &[("io.assetd.asset", &env.name("a"))]).await;
    let prefix_id = create_unmanaged(&env, &format!("{}x", env.name("a")), &[]).await;

    env.remove("a.yaml");
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Remove]);
    let mut left: Vec<String> = services(&env)
        .await
        .iter()
        .map(|s| s.id.clone().unwrap())
        .collect();
    left.sort();
    let mut expected = vec![
        lookalike_id,
        prefix_id,
        service(&env, "keep").await.id.unwrap(),
    ];
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmanaged_service_with_our_name_is_never_touched() {
    let env = TestEnv::new("sw-foreign").await;
    let id = create_unmanaged(&env, &env.name("a"), &[]).await;
    let before = service(&env, "a").await;
    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));
    let pass = env.apply_with(&env.swarm()).await;
    assert_eq!(pass.outcomes.len(), 1);
    let error = pass.outcomes[0].error.as_ref().expect("the deploy fails");
    assert!(
        error.contains("not managed by this assetd instance"),
        "{error}"
    );
    let after = service(&env, "a").await;
    assert_eq!(after.id.as_deref(), Some(id.as_str()));
    assert_eq!(version(&after), version(&before));
    assert_eq!(container_spec(&after).image.as_deref(), Some(IMAGE_1));

    // Removing the asset leaves it alone too: it is not the asset's.
    let removed = swarm_of(&env.swarm()).remove(&asset_name(&env, "a")).await;
    assert_eq!(removed.unwrap(), Removed::Absent);
    assert_eq!(version(&service(&env, "a").await), version(&before));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asset_named_like_another_services_id_prefix_gets_its_own_service() {
    // The engine resolves /services/{x} by ID prefix when no service is
    // named x: a lookup by name must not pick someone else's service.
    let env = TestEnv::new("sw-idprefix").await;
    let mut other = create_unmanaged(&env, &env.name("other"), &[]).await;
    while !other.as_bytes()[0].is_ascii_lowercase() {
        env.docker.delete_service(&other).await.unwrap();
        other = create_unmanaged(&env, &env.name("other"), &[]).await;
    }
    let name = other[..12].to_string();
    let text = format!(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {name}\n  labels:\n    {TEST_LABEL}: {}\nspec:\n  image: {IMAGE_2}\n",
        env.prefix
    );
    let swarm = env.swarm();
    assert_eq!(
        swarm_of(&swarm)
            .remove(&AssetName::new(&name).unwrap())
            .await
            .unwrap(),
        Removed::Absent
    );
    env.write("a.yaml", &text);
    let pass = env.apply_with(&swarm).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Create]);
    let mine = env
        .docker
        .inspect_service(&name, None::<InspectServiceOptions>)
        .await
        .unwrap();
    assert_ne!(mine.id.as_deref(), Some(other.as_str()));
    let untouched = service(&env, "other").await;
    assert_eq!(container_spec(&untouched).image.as_deref(), Some(IMAGE_1));
    assert_eq!(services(&env).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_network_is_held_at_plan_time_and_others_converge() {
    let env = TestEnv::new("sw-nonet").await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  networks: [ no-such-net-sw ]\n"),
    );
    env.write("b.yaml", &env.asset("b", IMAGE_1, ""));
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    let held = pass
        .plan
        .actions
        .iter()
        .find(|a| a.name.as_str() == env.name("a"))
        .expect("a is held");
    let reason = held.op.to_string();
    assert!(
        reason.contains(
            "a.yaml:9:15: spec.networks[0]: network `no-such-net-sw` is neither declared"
        ),
        "{reason}"
    );
    assert_eq!(services(&env).await.len(), 1, "nothing was created for a");
    wait_running(&env, "b", 1, IMAGE_1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsatisfiable_constraint_leaves_tasks_pending_and_says_so() {
    let env = TestEnv::new("sw-pending").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  constraints: [ \"node.labels.nope == x\" ]\n",
        ),
    );
    let pass = env.apply_with(&env.swarm()).await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Create]);
    let tasks_of_a = HashMap::from([("service", vec![env.name("a")])]);
    common::eventually(
        "the task to be pending for want of a node",
        CONVERGE,
        || async {
            let options = ListTasksOptionsBuilder::default()
                .filters(&tasks_of_a)
                .build();
            let tasks = env.docker.list_tasks(Some(options)).await.ok()?;
            let status = tasks.first()?.status.clone()?;
            let unplaceable = status.err.is_some_and(|e| e.contains("no suitable node"));
            (status.state == Some(TaskState::PENDING) && unplaceable).then_some(())
        },
    )
    .await;
    let actual = env.swarm().list_managed().await.unwrap();
    let replicas = &actual[0].replicas;
    assert_eq!(replicas.desired, 1);
    assert_eq!(replicas.running, 0);
    assert!(replicas.pending_secs.is_some(), "{replicas:?}");
    let reason = replicas.pending_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("no suitable node"), "{replicas:?}");
    // Pending is not drift: assetd does not rewrite the service for it.
    assert_converged(&env, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deploys_of_one_asset_all_land() {
    // Writers racing on one service make Swarm answer "update out of
    // sequence"; each deploy reads the service again and retries. Four
    // writers: each round has a winner, so the retry budget suffices.
    let env = TestEnv::new("sw-race").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, "  env: [ N=0 ]\n"));
    assert_no_failures(&env.apply_with(&env.swarm()).await);
    let record = env.store.get(&asset_name(&env, "a")).unwrap();
    let base = record.spec.unwrap();
    let swarm = env.swarm();
    let deploys = (1..=4).map(|n| {
        let mut spec = base.clone();
        spec.env = vec![format!("N={n}")];
        let owner = Ownership {
            hash: spec.hash(),
            source: "a.yaml".into(),
            revision: None,
        };
        let swarm = swarm.clone();
        tokio::spawn(async move { swarm.deploy(&spec, &owner).await })
    });
    for result in futures_util::future::join_all(deploys).await {
        let deployed = result.unwrap().expect("every racing deploy lands");
        assert!(deployed.wrote);
    }
    assert_eq!(services(&env).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_an_absent_asset_is_success() {
    let env = TestEnv::new("sw-absent").await;
    let removed = swarm_of(&env.swarm())
        .remove(&asset_name(&env, "nothing"))
        .await
        .unwrap();
    assert_eq!(removed, Removed::Absent);
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_makes_three_calls_and_a_converged_pass_writes_nothing() {
    let env = TestEnv::new("sw-calls").await;
    let calls = Calls::start(&env.root).await;
    let socket = calls.proxy.path.clone();
    let docker = Docker::connect_with_host(&format!("unix://{}", socket.display())).unwrap();
    let swarm = AnyStrategy::Swarm(Swarm::new(docker, &env.prefix));

    // Nothing managed: one call.
    assert!(swarm.list_managed().await.unwrap().is_empty());
    assert_eq!(calls.take(), vec!["GET /services"]);

    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  ports: { 18403: 80 }\n"),
    );
    env.write(
        "b.yaml",
        &env.asset("b", IMAGE_1, "  mode: { replicated: { replicas: 2 } }\n"),
    );
    assert_no_failures(&env.apply_with(&swarm).await);
    wait_running(&env, "a", 1, IMAGE_1).await;
    wait_running(&env, "b", 2, IMAGE_1).await;
    calls.take();

    // Services, their tasks, and this engine's unhealthy task containers
    // (a task turning unhealthy is Degraded before Swarm replaces it).
    let listing = vec!["GET /services", "GET /tasks", "GET /containers/json"];
    let actual = swarm.list_managed().await.unwrap();
    assert_eq!(calls.take(), listing);
    assert_eq!(actual.len(), 2);
    assert!(actual.iter().all(|a| a.drift.is_empty()), "{actual:?}");
    let b = actual
        .iter()
        .find(|a| a.name == asset_name(&env, "b"))
        .unwrap();
    assert_eq!(
        (
            b.replicas.desired,
            b.replicas.running,
            b.replicas.pending_secs
        ),
        (2, 2, None)
    );

    // A converged pass: one listing, no action, no write.
    let pass = env.apply_with(&swarm).await;
    assert!(pass.plan.actions.is_empty(), "{:?}", pass.plan.actions);
    assert_eq!(pass.plan.unchanged.len(), 2);
    assert_eq!(calls.take(), listing);

    // A deploy of what runs already reads and writes nothing.
    let record = env.store.get(&asset_name(&env, "a")).unwrap();
    let owner = Ownership {
        hash: record.hash.unwrap(),
        source: record.source.unwrap(),
        revision: None,
    };
    let deployed = swarm.deploy(&record.spec.unwrap(), &owner).await.unwrap();
    assert!(!deployed.wrote);
    let calls = calls.take();
    assert!(calls.iter().all(|c| c.starts_with("GET ")), "{calls:?}");
}

/// The calls a strategy made through the counting proxy since the last
/// `take`, as `METHOD /path` (without the API version and the query).
struct Calls {
    proxy: Proxy,
    mark: std::cell::Cell<usize>,
}

impl Calls {
    async fn start(dir: &Path) -> Self {
        let upstream = common::docker_host().trim_start_matches("unix://").into();
        let proxy = Proxy::start(&dir.join("proxy.sock"), upstream)
            .await
            .expect("the counting proxy starts");
        Self {
            mark: std::cell::Cell::new(proxy.mark()),
            proxy,
        }
    }

    fn take(&self) -> Vec<String> {
        let calls = self.proxy.calls_since(self.mark.get());
        self.mark.set(self.proxy.mark());
        calls
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpullable_image_is_failing_with_swarms_own_reason() {
    let env = TestEnv::new("sw-nopull").await;
    let swarm = env.swarm();
    env.write("a.yaml", &env.asset("a", "assetd-test/no-such-image:1", ""));
    let pass = env.apply_with(&swarm).await;
    assert_eq!(kinds(&pass), vec![ActionKind::Create]);
    let name = asset_name(&env, "a");
    let failing = common::eventually(
        "the rejected task's reason",
        Duration::from_secs(90),
        || async {
            let actual = swarm.list_managed().await.unwrap();
            actual
                .into_iter()
                .find(|a| a.name == name)?
                .replicas
                .failing
        },
    )
    .await;
    assert!(
        failing.contains("rejected") && failing.contains("no-such-image"),
        "Swarm's own words: {failing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_file_made_invalid_removes_no_service() {
    let env = TestEnv::new("sw-moved").await;
    let swarm = env.swarm();
    env.write("keep.yaml", &env.asset("keep", IMAGE_1, ""));
    env.write("gone.yaml", &env.asset("gone", IMAGE_1, ""));
    assert_no_failures(&env.apply_with(&swarm).await);
    let keep = service(&env, "keep").await.id;

    let sub = env.manifests.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::rename(env.manifests.join("keep.yaml"), sub.join("keep.yaml")).unwrap();
    let pass = env.apply_with(&swarm).await;
    assert!(
        pass.outcomes.is_empty(),
        "an unchanged move is a no-op: {:?}",
        pass.outcomes
    );

    env.write(
        "sub/keep.yaml",
        &env.asset("keep", IMAGE_1, "  image: [unclosed\n"),
    );
    env.remove("gone.yaml");
    let pass = env.apply_with(&swarm).await;
    assert!(
        pass.outcomes.iter().all(|o| o.kind == ActionKind::Hold),
        "{:?}",
        pass.outcomes
    );
    assert_eq!(services(&env).await.len(), 2, "no service removed");
    assert_eq!(service(&env, "keep").await.id, keep);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_crashes_is_rolled_back_by_swarm_and_not_deployed_again() {
    let env = TestEnv::new("sw-rollback").await;
    let swarm = env.swarm();
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply_with(&swarm).await);
    wait_running(&env, "a", 1, IMAGE_1).await;

    // The new version exits 3: the failed update rolls the service back.
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_2, "  command: [sh, -c, \"exit 3\"]\n"),
    );
    let pass = env.apply_with(&swarm).await;
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    let name = asset_name(&env, "a");
    let rollout = wait_rollout(&swarm, &name, "rollback_completed").await;
    assert!(rollout.rolled_back);
    // The previous version runs again. (Without a healthcheck Swarm
    // counts the new task as started as soon as it runs, so start-first
    // stopped the old one before the crash; the rollback restores it.)
    wait_running(&env, "a", 1, IMAGE_1).await;

    // No fight loop: the failed version is not deployed again, and the
    // asset reads as failed, with Swarm's words.
    for _ in 0..3 {
        let pass = env.apply_with(&swarm).await;
        assert_eq!(kinds(&pass), vec![ActionKind::Hold], "{:?}", pass.outcomes);
        assert!(
            pass.outcomes[0].reason.contains("rolled back"),
            "{}",
            pass.outcomes[0].reason
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let spec = spec_of(&service(&env, "a").await);
    let image = spec
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
        .image
        .unwrap();
    assert!(image.starts_with(IMAGE_1), "{image}");
    let actual = swarm.list_managed().await.unwrap();
    let have = actual.iter().find(|a| a.name == name).unwrap();
    let wanted = env.config();
    let desired = assetd::reconcile::load_desired(&wanted).await;
    let why = have.failed_rollout(desired.assets.get(&name).map(|d| &d.hash));
    let why = why.unwrap_or_default();
    assert!(why.contains("rollback_completed"), "{why}");
    assert!(
        why.contains("exit code 3"),
        "the failed task's words: {why}"
    );

    // A fixed manifest is a new version: deployed.
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_2, "  command: [sleep, \"3600\"]\n"),
    );
    let pass = env.apply_with(&swarm).await;
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    wait_running(&env, "a", 1, IMAGE_2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthcheck_reaches_the_service_and_causes_no_drift() {
    let env = TestEnv::new("sw-health").await;
    let swarm = env.swarm();
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  command: [sleep, \"3600\"]\n  healthcheck: { test: [CMD, \"true\"], interval: 1s, retries: 2 }\n",
        ),
    );
    assert_no_failures(&env.apply_with(&swarm).await);
    // bollard 0.21 cannot read the engine's `Healthcheck` back: ask the CLI.
    let check = docker_cli(&[
        "service",
        "inspect",
        &env.name("a"),
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck}}",
    ]);
    assert!(
        check.contains(r#""Test":["CMD","true"]"#) && check.contains(r#""Interval":1000000000"#),
        "{check}"
    );
    wait_running(&env, "a", 1, IMAGE_1).await;
    let pass = env.apply_with(&swarm).await;
    assert!(pass.outcomes.is_empty(), "no drift: {:?}", pass.outcomes);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_update_policy_reaches_swarm_and_pause_stops_a_failing_rollout() {
    use bollard::models::{
        ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfigFailureActionEnum,
        ServiceSpecUpdateConfigOrderEnum,
    };
    let env = TestEnv::new("sw-policy").await;
    let swarm = env.swarm();
    let policy = "  update: { order: stop-first, monitor: 2s, failureAction: pause, parallelism: 2, delay: 1s }\n";
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            &format!("  command: [sleep, \"3600\"]\n{policy}"),
        ),
    );
    assert_no_failures(&env.apply_with(&swarm).await);
    let spec = spec_of(&service(&env, "a").await);
    let update = spec.update_config.expect("an UpdateConfig");
    assert_eq!(
        update.order,
        Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
    );
    assert_eq!(
        update.failure_action,
        Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE)
    );
    assert_eq!(update.monitor, Some(2_000_000_000));
    assert_eq!(update.parallelism, Some(2));
    assert_eq!(update.delay, Some(1_000_000_000));
    let rollback = spec.rollback_config.expect("a RollbackConfig");
    assert_eq!(
        rollback.order,
        Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST)
    );
    wait_running(&env, "a", 1, IMAGE_1).await;

    // A version that exits 3 under `failureAction: pause`: Swarm pauses
    // the update and assetd says so, with Swarm's words.
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_2,
            &format!("  command: [sh, -c, \"exit 3\"]\n{policy}"),
        ),
    );
    let pass = env.apply_with(&swarm).await;
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    let name = asset_name(&env, "a");
    let rollout = wait_rollout(&swarm, &name, "paused").await;
    assert!(!rollout.rolled_back);
    assert!(rollout.message.contains("paused"), "{}", rollout.message);
    // The paused spec is the manifest's: nothing to redo (no fight), and
    // the rollout reads as failed, not Running.
    let pass = env.apply_with(&swarm).await;
    assert!(pass.outcomes.is_empty(), "{:?}", pass.outcomes);
    let actual = swarm.list_managed().await.unwrap();
    let have = actual.iter().find(|a| a.name == name).unwrap();
    let desired = assetd::reconcile::load_desired(&env.config()).await;
    let why = have.failed_rollout(desired.assets.get(&name).map(|d| &d.hash));
    assert!(why.is_some_and(|w| w.contains("paused")));
}

/// One HTTP GET, once: whether it answered 200 within a second.
async fn answers(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.contains("200").then_some(())
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Where a client reaches the service: the published port through the
/// routing mesh; without IPVS (waived, see the ingress test) each running
/// task's own address on docker_gwbridge, so the check is that some task
/// serves at every moment.
async fn serving(env: &TestEnv, name: &str, port: u16) -> bool {
    if Path::new("/proc/net/ip_vs").exists() {
        return answers(&format!("127.0.0.1:{port}")).await;
    }
    let Ok(gw) = env
        .docker
        .inspect_network("docker_gwbridge", None::<InspectNetworkOptions>)
        .await
    else {
        return false;
    };
    let attached = gw.containers.unwrap_or_default();
    for task in running_tasks(&env.docker, name).await {
        let container = task
            .status
            .and_then(|s| s.container_status)
            .and_then(|c| c.container_id);
        let ip = container
            .and_then(|id| attached.get(&id).cloned())
            .and_then(|c| c.ipv4_address);
        if let Some(ip) = ip {
            let ip = ip.split('/').next().unwrap_or_default().to_string();
            if answers(&format!("{ip}:80")).await {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_update_start_first_never_leaves_the_service_unserved() {
    let env = TestEnv::new("sw-zero").await;
    let swarm = env.swarm();
    let name = env.name("web");
    if !Path::new("/proc/net/ip_vs").exists() {
        assert_eq!(std::env::var("ASSETD_TEST_NO_IP_VS").as_deref(), Ok("1"));
        eprintln!("WAIVED (ASSETD_TEST_NO_IP_VS=1): polling each task's own address, not the routing mesh");
    }
    let web = |image: &str| {
        env.asset(
            "web",
            image,
            "  command: sh -c 'trap \"exit 0\" TERM; httpd -f -p 80 & wait'\n  ports: { 18411: 80 }\n",
        )
    };
    env.write("web.yaml", &web(IMAGE_1));
    assert_no_failures(&env.apply_with(&swarm).await);
    wait_running(&env, "web", 1, IMAGE_1).await;
    common::eventually("the service serving", CONVERGE, || async {
        serving(&env, &name, 18411).await.then_some(())
    })
    .await;

    env.write("web.yaml", &web(IMAGE_2));
    assert_no_failures(&env.apply_with(&swarm).await);
    let (mut probes, mut failed) = (0, 0);
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        probes += 1;
        if !serving(&env, &name, 18411).await {
            failed += 1;
        }
        let tasks = running_tasks(&env.docker, &name).await;
        let done = tasks.len() == 1 && task_image(&tasks[0]).starts_with(IMAGE_2);
        if done || std::time::Instant::now() > deadline {
            assert!(done, "the update completed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{probes} probes through the update, {failed} unanswered");
    assert!(probes > 3, "the update was observed ({probes} probes)");
    assert_eq!(failed, 0, "no probe unanswered in {probes}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_and_ulimits_reach_the_service_and_its_task_without_drift() {
    let env = TestEnv::new("sw-user").await;
    let swarm = env.swarm();
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  user: \"1000:1000\"\n  ulimits: { nofile: { soft: 1024, hard: 2048 } }\n",
        ),
    );
    assert_no_failures(&env.apply_with(&swarm).await);
    let container = container_spec(&service(&env, "a").await);
    assert_eq!(container.user.as_deref(), Some("1000:1000"));
    let limits: Vec<(String, i64, i64)> = container
        .ulimits
        .unwrap_or_default()
        .into_iter()
        .map(|u| (u.name.unwrap(), u.soft.unwrap(), u.hard.unwrap()))
        .collect();
    assert_eq!(limits, vec![("nofile".into(), 1024, 2048)]);
    let task = wait_running(&env, "a", 1, IMAGE_1).await.remove(0);
    let id = task
        .status
        .unwrap()
        .container_status
        .unwrap()
        .container_id
        .unwrap();
    let c = env.inspect(&id).await;
    assert_eq!(c.config.and_then(|c| c.user).as_deref(), Some("1000:1000"));
    let nofile = c
        .host_config
        .and_then(|h| h.ulimits)
        .unwrap_or_default()
        .into_iter()
        .find(|u| u.name.as_deref() == Some("nofile"))
        .map(|u| (u.soft, u.hard));
    assert_eq!(
        nofile,
        Some((Some(1024), Some(2048))),
        "the task runs under it"
    );
    let pass = env.apply_with(&swarm).await;
    assert!(pass.outcomes.is_empty(), "no drift: {:?}", pass.outcomes);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_policy_always_pulls_on_the_manager_first_and_a_failed_pull_leaves_the_service() {
    let env = TestEnv::new("sw-pullalways").await;
    let tag = common::UnpullableTag::new(&env).await;
    let swarm = env.swarm();
    env.write("a.yaml", &env.asset("a", &tag.tag, ""));
    assert_no_failures(&env.apply_with(&swarm).await);
    let before = service(&env, "a").await;

    env.write(
        "a.yaml",
        &env.asset("a", &tag.tag, "  pullPolicy: Always\n"),
    );
    let pass = env.apply_with(&swarm).await;
    let error = pass.outcomes[0].error.clone().expect("the pull fails");
    assert!(
        error.contains("pull image") && error.contains(&tag.tag),
        "names the image and the engine's reason: {error}"
    );
    let after = service(&env, "a").await;
    assert_eq!(after.id, before.id);
    assert_eq!(
        version(&after),
        version(&before),
        "the service is untouched"
    );
}
