//! Three Swarm managers on this machine (`scripts/multinode.sh up`), one
//! assetd per manager: only the leader's writes; placement constraints
//! land tasks on the right node; when the leader's engine dies, the new
//! leader's assetd takes over; never two services of one asset; the dead
//! node is restored by `scripts/multinode.sh up` and its assetd stands by.
//!
//! "Only the leader writes" is counted, not inferred from the roles: each
//! daemon talks to its engine through the bench's counting proxy, and a
//! standby's proxy must see no write at all (the leader's must see some).
//!
//! Built only with `--features multinode` and run by
//! `scripts/test-multinode.sh`, which brings the nodes up first.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use bollard::Docker;
use common::harness::{Assetd, Process};
use common::proxy::Proxy;
use common::{eventually, set_mode, IMAGE_1, IMAGE_2};

const INSTANCE: &str = "mn-test";
const ASSET: &str = "mn-agent";

fn node_hosts() -> Vec<String> {
    let hosts = std::env::var("ASSETD_MN_HOSTS")
        .expect("ASSETD_MN_HOSTS is set by `eval \"$(scripts/multinode.sh up)\"`");
    let hosts: Vec<String> = hosts.split(',').map(str::to_string).collect();
    assert_eq!(hosts.len(), 3, "three manager nodes");
    hosts
}

/// One assetd daemon per node (killed when dropped), and its socket.
struct Daemon {
    _process: Process,
    socket: PathBuf,
}

fn start_daemon(host: &str, manifests: &Path, state: PathBuf) -> Daemon {
    let assetd = Assetd {
        manifests: manifests.to_path_buf(),
        state: state.clone(),
        instance: INSTANCE.to_string(),
        strategy: "swarm",
        docker_host: host.to_string(),
        log_level: "info",
        env: vec![],
    };
    Daemon {
        _process: assetd.spawn(&["run"], &["--resync", "2s"]),
        socket: state.join("assetd.sock"),
    }
}

async fn role(daemon: &Daemon) -> Option<String> {
    assetd::api::fetch_status(&daemon.socket).await.ok()?.role
}

/// The asset's services. A listing error fails the test: read as "none",
/// it would make every "never two services" check pass.
async fn our_services(docker: &Docker) -> Vec<bollard::models::Service> {
    let filters = HashMap::from([("label", vec![format!("io.assetd.asset={ASSET}")])]);
    docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_else(|e| panic!("listing the services of {ASSET}: {e}"))
}

/// The writes (POST, DELETE, PUT) a daemon sent through `proxy` since
/// `mark`, as "METHOD path".
fn writes_since(proxy: &Proxy, mark: usize) -> Vec<String> {
    proxy
        .calls_since(mark)
        .into_iter()
        .filter(|r| r.is_write())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The engine socket of a `unix://` host.
fn socket_of(host: &str) -> PathBuf {
    PathBuf::from(host.trim_start_matches("unix://"))
}

/// Asserts that the daemons `standbys` sent no write since `marks`, and
/// did call their engine through the proxy (else "no write" proves
/// nothing).
fn assert_no_writes(proxies: &[Proxy], standbys: &[usize], marks: &[usize], when: &str) {
    for &i in standbys {
        let calls = proxies[i].calls_since(marks[i]);
        let writes = writes_since(&proxies[i], marks[i]);
        eprintln!(
            "{when}: standby on node {i}: {} calls, {} writes",
            calls.len(),
            writes.len()
        );
        assert!(
            !calls.is_empty(),
            "{when}: the standby on node {i} made no call through its proxy"
        );
        assert!(
            writes.is_empty(),
            "{when}: the standby on node {i} wrote to Docker: {writes:?}"
        );
    }
}

async fn leader_index(dockers: &[Docker], alive: &[usize]) -> Option<usize> {
    for &i in alive {
        let Ok(info) = dockers[i].info().await else {
            continue;
        };
        let node_id = info.swarm.and_then(|s| s.node_id).unwrap_or_default();
        if assetd::engine::is_leader(&dockers[i], &node_id).await {
            return Some(i);
        }
    }
    None
}

fn manifest(image: &str) -> String {
    format!(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {ASSET}\nspec:\n  image: {image}\n  constraints: [ \"node.labels.zone == n2\" ]\n"
    )
}

fn write(dir: &Path, text: &str) {
    let tmp = dir.join(".a.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    set_mode(&tmp, 0o644);
    std::fs::rename(&tmp, dir.join("a.yaml")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_writes_and_a_new_leader_takes_over() {
    let hosts = node_hosts();
    let dockers: Vec<Docker> = hosts
        .iter()
        .map(|h| Docker::connect_with_host(h).expect("node client"))
        .collect();
    let root = std::env::temp_dir().join(format!("assetd-mn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let manifests = root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    set_mode(&root, 0o755);
    set_mode(&manifests, 0o755);
    for d in &dockers {
        for s in our_services(d).await {
            let _ = d.delete_service(s.id.as_deref().unwrap()).await;
        }
    }

    write(&manifests, &manifest(IMAGE_1));
    // Each daemon reaches its engine through a counting proxy.
    let mut proxies = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let path = root.join(format!("proxy-n{i}.sock"));
        proxies.push(Proxy::start(&path, socket_of(h)).await.expect("proxy"));
    }
    let start = vec![0; proxies.len()];
    let daemons: Vec<Daemon> = proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            start_daemon(
                &format!("unix://{}", p.path.display()),
                &manifests,
                root.join(format!("state-{i}")),
            )
        })
        .collect();

    let alive: Vec<usize> = vec![0, 1, 2];
    let leader = leader_index(&dockers, &alive)
        .await
        .expect("the Swarm has a leader");
    let roles = eventually(
        "every daemon to report its role",
        Duration::from_secs(30),
        || async {
            let mut roles = Vec::new();
            for d in &daemons {
                roles.push(role(d).await?);
            }
            Some(roles)
        },
    )
    .await;
    for (i, r) in roles.iter().enumerate() {
        let expected = if i == leader { "leader" } else { "standby" };
        assert_eq!(r, expected, "daemon on node {i} ({}) reports {r}", hosts[i]);
    }
    let standbys: Vec<usize> = alive.iter().copied().filter(|&i| i != leader).collect();

    // The constraint puts the task on n2 (zone=n2), whoever leads.
    let n2 = &dockers[1];
    let n2_id = n2.info().await.unwrap().swarm.unwrap().node_id.unwrap();
    eventually("a running task on n2", Duration::from_secs(60), || async {
        let services = our_services(&dockers[leader]).await;
        assert!(
            services.len() <= 1,
            "two services of one asset: {}",
            services.len()
        );
        let id = services.first()?.id.clone()?;
        let filters = HashMap::from([("service", vec![id])]);
        let tasks = dockers[leader]
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .ok()?;
        tasks
            .iter()
            .any(|t| {
                t.node_id.as_deref() == Some(n2_id.as_str())
                    && t.status.as_ref().and_then(|s| s.state)
                        == Some(bollard::models::TaskState::RUNNING)
            })
            .then_some(())
    })
    .await;

    // The leader created the service; the standbys, listening to the
    // same events and resyncing every 2 s, wrote nothing.
    assert_no_writes(&proxies, &standbys, &start, "before the leader died");
    let created = writes_since(&proxies[leader], 0);
    eprintln!("the leader (node {leader}) wrote: {created:?}");
    assert!(
        !created.is_empty(),
        "the leader (node {leader}) sent no write: is the proxy in its path?"
    );

    // Kill the leader's engine outright; a new leader is elected.
    let pidfile = hosts[leader]
        .trim_start_matches("unix://")
        .replace("docker.sock", "docker.pid");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    let survivors: Vec<usize> = alive.into_iter().filter(|&i| i != leader).collect();
    let new_leader = eventually("a new Swarm leader", Duration::from_secs(90), || async {
        leader_index(&dockers, &survivors).await
    })
    .await;
    // Up to the election the survivors were standbys.
    assert_no_writes(
        &proxies,
        &survivors,
        &start,
        "until the new leader was elected",
    );
    let elected: Vec<usize> = proxies.iter().map(Proxy::mark).collect();

    // The new leader's assetd applies a manifest change.
    write(&manifests, &manifest(IMAGE_2));
    eventually(
        "the new image on the service",
        Duration::from_secs(90),
        || async {
            let services = our_services(&dockers[new_leader]).await;
            assert!(
                services.len() <= 1,
                "two services of one asset: {}",
                services.len()
            );
            let image = services
                .first()?
                .spec
                .as_ref()?
                .task_template
                .as_ref()?
                .container_spec
                .as_ref()?
                .image
                .clone()?;
            image.starts_with(IMAGE_2).then_some(())
        },
    )
    .await;
    // Counted first: a standby that wrote may well have made the change.
    let other: Vec<usize> = survivors
        .iter()
        .copied()
        .filter(|&i| i != new_leader)
        .collect();
    assert_no_writes(&proxies, &other, &start, "after the new leader applied");
    assert!(
        !writes_since(&proxies[new_leader], elected[new_leader]).is_empty(),
        "the new leader (node {new_leader}) applied the change without a write?"
    );
    assert_eq!(role(&daemons[new_leader]).await.as_deref(), Some("leader"));
    for &i in &other {
        let r = eventually("the other survivor's role", Duration::from_secs(20), || {
            role(&daemons[i])
        })
        .await;
        assert_eq!(r, "standby");
    }

    // Restore the dead node the way an operator (or a test) would: the
    // script restarts its dockerd and it rejoins as a manager. Its assetd,
    // still running, reconnects and stands by, writing nothing.
    let restored = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/multinode.sh"))
        .arg("up")
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/multinode.sh up");
    assert!(
        restored.success(),
        "multinode.sh up after a node died: {restored}"
    );
    let back = proxies[leader].mark();
    eventually(
        "the restored node's assetd to reconnect and stand by",
        Duration::from_secs(90),
        || async {
            let status = assetd::api::fetch_status(&daemons[leader].socket)
                .await
                .ok()?;
            (status.engine_error.is_none() && status.role.as_deref() == Some("standby"))
                .then_some(())
        },
    )
    .await;
    // A few resyncs (every 2 s) as a standby.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_no_writes(
        &proxies,
        &[leader],
        &[back; 3],
        "after the node was restored",
    );
    assert_no_writes(&proxies, &other, &start, "at the end");
    assert_eq!(our_services(&dockers[leader]).await.len(), 1);

    for s in our_services(&dockers[new_leader]).await {
        let _ = dockers[new_leader]
            .delete_service(s.id.as_deref().unwrap())
            .await;
    }
    drop(daemons);
    let _ = std::fs::remove_dir_all(&root);
}
