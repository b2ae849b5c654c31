//! Three Swarm managers on this machine (`scripts/multinode.sh up`), one
//! assetd per manager: only the leader's writes; placement constraints
//! land tasks on the right node; when the leader's engine dies, the new
//! leader's assetd takes over; never two services of one asset.
//!
//! Built only with `--features multinode` and run by
//! `scripts/test-multinode.sh`, which brings the nodes up first.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use bollard::Docker;
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

/// One assetd daemon per node, killed in `Drop`.
struct Daemon {
    child: Child,
    host: String,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(host: &str, manifests: &std::path::Path, state: PathBuf, log: PathBuf) -> Daemon {
    let socket = state.join("assetd.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args([
            "run",
            "--strategy",
            "swarm",
            "--instance",
            INSTANCE,
            "--resync",
            "2s",
        ])
        .arg("--manifests")
        .arg(manifests)
        .arg("--state-dir")
        .arg(&state)
        .env("DOCKER_HOST", host)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("assetd starts");
    Daemon {
        child,
        host: host.to_string(),
        socket,
    }
}

async fn role(daemon: &Daemon) -> Option<String> {
    assetd::api::fetch_status(&daemon.socket).await.ok()?.role
}

async fn our_services(docker: &Docker) -> Vec<bollard::models::Service> {
    let filters = HashMap::from([("label", vec![format!("io.assetd.asset={ASSET}")])]);
    docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default()
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

fn write(dir: &std::path::Path, text: &str) {
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
    let daemons: Vec<Daemon> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            start_daemon(
                h,
                &manifests,
                root.join(format!("state-{i}")),
                root.join(format!("n{i}.log")),
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
        assert_eq!(
            r, expected,
            "daemon on node {i} ({}) reports {r}",
            daemons[i].host
        );
    }

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
    assert_eq!(role(&daemons[new_leader]).await.as_deref(), Some("leader"));
    for &i in &survivors {
        if i != new_leader {
            let r = eventually("the other survivor's role", Duration::from_secs(20), || {
                role(&daemons[i])
            })
            .await;
            assert_eq!(r, "standby");
        }
    }

    for s in our_services(&dockers[new_leader]).await {
        let _ = dockers[new_leader]
            .delete_service(s.id.as_deref().unwrap())
            .await;
    }
    drop(daemons);
    let _ = std::fs::remove_dir_all(&root);
}
