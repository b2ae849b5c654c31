//! Three Swarm managers on this machine (`scripts/multinode.sh up`), one
//! assetd per manager: only the holder of the writer lease writes;
//! `apply --once` on another manager is refused; SIGTERM hands the lease
//! over at once; a holder killed (-9) is replaced within the expiry; when
//! the holder's engine dies, another manager's assetd takes over; never
//! two services of one asset; the dead node is restored by
//! `scripts/multinode.sh up` and its assetd stands by.
//!
//! "Only the holder writes" is counted, not inferred from the roles: each
//! daemon talks to its engine through the bench's counting proxy, and a
//! standby's proxy must see no write at all (the holder's must see some).
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
/// A global asset: one task per node.
const GLOBAL: &str = "mn-global";

fn node_hosts() -> Vec<String> {
    let hosts = std::env::var("ASSETD_MN_HOSTS")
        .expect("ASSETD_MN_HOSTS is set by `eval \"$(scripts/multinode.sh up)\"`");
    let hosts: Vec<String> = hosts.split(',').map(str::to_string).collect();
    assert_eq!(hosts.len(), 3, "three manager nodes");
    hosts
}

/// Short lease timings, so takeovers fit the suite's time.
const LEASE: [&str; 4] = ["--lease-renew", "1s", "--lease-expiry", "5s"];
const EXPIRY: Duration = Duration::from_secs(5);

/// One assetd daemon per node (killed when dropped), and its socket.
struct Daemon {
    process: Process,
    socket: PathBuf,
}

fn assetd_on(host: &str, manifests: &Path, state: PathBuf) -> Assetd {
    Assetd {
        manifests: manifests.to_path_buf(),
        state,
        instance: INSTANCE.to_string(),
        strategy: "swarm",
        docker_host: host.to_string(),
        log_level: "info",
        env: vec![],
    }
}

fn start_daemon(host: &str, manifests: &Path, state: PathBuf) -> Daemon {
    let assetd = assetd_on(host, manifests, state.clone());
    let mut args = vec!["--resync", "2s"];
    args.extend(LEASE);
    Daemon {
        process: assetd.spawn(&["run"], &args),
        socket: state.join("assetd.sock"),
    }
}

/// The one daemon among `alive` that reports holding the lease, once
/// exactly one does and the others name it as the holder.
async fn holder(daemons: &[Daemon], alive: &[usize], within: Duration) -> usize {
    eventually(
        "exactly one lease holder, named by the others",
        within,
        || async {
            let mut statuses = Vec::new();
            for &i in alive {
                statuses.push((
                    i,
                    assetd::daemon::api::fetch_status(&daemons[i].socket)
                        .await
                        .ok()?,
                ));
            }
            let holders: Vec<usize> = statuses
                .iter()
                .filter(|(_, s)| s.role.as_deref() == Some("leader"))
                .map(|(i, _)| *i)
                .collect();
            let [one] = holders[..] else { return None };
            let id = statuses
                .iter()
                .find(|(i, _)| *i == one)?
                .1
                .lease
                .as_ref()?
                .holder
                .clone()?;
            statuses
                .iter()
                .filter(|(i, _)| *i != one)
                .all(|(_, s)| {
                    s.role.as_deref() == Some("standby")
                        && s.lease.as_ref().and_then(|l| l.holder.as_ref()) == Some(&id)
                })
                .then_some(one)
        },
    )
    .await
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
/// `mark`, as "METHOD path": of the instance's objects, not the lease's
/// (taking the lease is a compare-and-swap every daemon may try).
fn writes_since(proxy: &Proxy, mark: usize) -> Vec<String> {
    proxy
        .calls_since(mark)
        .into_iter()
        .filter(|r| r.is_write() && !r.path.contains("/configs"))
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

fn manifest(image: &str) -> String {
    format!(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {ASSET}\nspec:\n  image: {image}\n  constraints: [ \"node.labels.zone == n2\" ]\n"
    )
}

fn global_manifest() -> String {
    format!(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {GLOBAL}\nspec:\n  image: {IMAGE_1}\n  mode: {{ global: {{}} }}\n"
    )
}

/// Sets `node`'s Swarm role (`manager` or `worker`) through `via`: a
/// read-modify-write of the node's spec, read again and retried when it
/// lost a version race ("update out of sequence").
async fn set_role(via: &Docker, node: &str, role: bollard::models::NodeSpecRoleEnum) {
    for _ in 0..20 {
        let current = via.inspect_node(node).await.unwrap();
        let mut spec = current.spec.unwrap();
        spec.role = Some(role);
        let version = current.version.and_then(|v| v.index).unwrap() as i64;
        let options = bollard::query_parameters::UpdateNodeOptionsBuilder::default()
            .version(version)
            .build();
        match via.update_node(node, spec, options).await {
            Ok(()) => return,
            Err(e) if common::out_of_sequence(&e.to_string()) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("setting {node}'s role: {e}"),
        }
    }
    panic!("setting {node}'s role: still out of sequence after 20 tries");
}

/// The health and reason of `asset` in a daemon's status.
async fn health_of(daemon: &Daemon, asset: &str) -> Option<(assetd::core::health::Health, String)> {
    let status = assetd::daemon::api::fetch_status(&daemon.socket)
        .await
        .ok()?;
    let a = status
        .assets
        .into_iter()
        .find(|a| a.name.as_str() == asset)?;
    Some((a.health, a.health_reason.unwrap_or_default()))
}

fn write(dir: &Path, text: &str) {
    let tmp = dir.join(".a.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    set_mode(&tmp, 0o644);
    std::fs::rename(&tmp, dir.join("a.yaml")).unwrap();
}

/// The image of the asset's one service, as `node` lists it.
async fn service_image(docker: &Docker) -> Option<String> {
    let services = our_services(docker).await;
    assert!(
        services.len() <= 1,
        "two services of one asset: {}",
        services.len()
    );
    let spec = services.first()?.spec.clone()?;
    spec.task_template?.container_spec?.image
}

/// The nodes' clients and an empty test root `name` (mode 0755), with
/// what an earlier run of the suite left of the instance removed: its
/// service and its lease.
async fn fresh(name: &str) -> (Vec<String>, Vec<Docker>, PathBuf) {
    let hosts = node_hosts();
    let dockers: Vec<Docker> = hosts
        .iter()
        .map(|h| Docker::connect_with_host(h).expect("node client"))
        .collect();
    let root = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    set_mode(&root, 0o755);
    for d in &dockers {
        for s in our_services(d).await {
            let _ = d.delete_service(s.id.as_deref().unwrap()).await;
        }
        let _ = d.delete_config(&format!("assetd-lease-{INSTANCE}")).await;
    }
    (hosts, dockers, root)
}

/// Waits up to `secs` until the asset's service runs `image`.
async fn wait_image(docker: &Docker, image: &str, what: &str, secs: u64) {
    eventually(what, Duration::from_secs(secs), || async {
        service_image(docker)
            .await?
            .starts_with(image)
            .then_some(())
    })
    .await;
}

fn others(alive: &[usize], but: usize) -> Vec<usize> {
    alive.iter().copied().filter(|&i| i != but).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_writes_and_another_takes_over_when_it_stops_or_dies() {
    let (hosts, dockers, root) = fresh("assetd-mn").await;
    let manifests = root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    set_mode(&manifests, 0o755);

    write(&manifests, &manifest(IMAGE_1));
    let global = manifests.join("global.yaml");
    std::fs::write(&global, global_manifest()).unwrap();
    set_mode(&global, 0o644);
    // Each daemon reaches its engine through a counting proxy.
    let mut proxies = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let path = root.join(format!("proxy-n{i}.sock"));
        proxies.push(Proxy::start(&path, socket_of(h)).await.expect("proxy"));
    }
    let proxy_host = |i: usize| format!("unix://{}", proxies[i].path.display());
    let state = |i: usize| root.join(format!("state-{i}"));
    let start = vec![0; proxies.len()];
    let mut daemons: Vec<Daemon> = (0..3)
        .map(|i| start_daemon(&proxy_host(i), &manifests, state(i)))
        .collect();

    let alive: Vec<usize> = vec![0, 1, 2];
    let first = holder(&daemons, &alive, Duration::from_secs(30)).await;
    let standbys = others(&alive, first);

    // The constraint puts the task on n2 (zone=n2), whoever writes.
    let n2_id = dockers[1]
        .info()
        .await
        .unwrap()
        .swarm
        .unwrap()
        .node_id
        .unwrap();
    eventually("a running task on n2", Duration::from_secs(60), || async {
        let services = our_services(&dockers[first]).await;
        assert!(
            services.len() <= 1,
            "two services of one asset: {}",
            services.len()
        );
        let id = services.first()?.id.clone()?;
        let filters = HashMap::from([("service", vec![id])]);
        let tasks = dockers[first]
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
    assert_no_writes(&proxies, &standbys, &start, "while the first holder wrote");
    let created = writes_since(&proxies[first], 0);
    eprintln!("the holder (node {first}) wrote: {created:?}");
    assert!(
        created
            .iter()
            .any(|w| w.starts_with("POST /services/create")),
        "the holder (node {first}) created no service: is the proxy in its path? {created:?}"
    );

    // `apply --once` on a follower's node, with a daemon holding the
    // lease: refused, non-zero, nothing written.
    let follower = standbys[0];
    let mark = proxies[follower].mark();
    let once = assetd_on(&proxy_host(follower), &manifests, root.join("state-once"));
    let mut args = vec!["--wait", "0s"];
    args.extend(LEASE);
    let out = once.output(&["apply", "--once"], &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "apply --once on a follower: {stderr}"
    );
    assert!(stderr.contains("the writer lease is held by"), "{stderr}");
    assert_no_writes(
        &proxies,
        &[follower],
        &[mark; 3],
        "apply --once on a follower",
    );

    // SIGTERM: the lease is handed over at once, well within the expiry.
    let marks: Vec<usize> = proxies.iter().map(Proxy::mark).collect();
    let stopped = std::time::Instant::now();
    daemons[first].process.terminate(Duration::from_secs(30));
    let second = holder(&daemons, &standbys, Duration::from_secs(30)).await;
    let handed = stopped.elapsed();
    eprintln!("SIGTERM → another holder in {handed:?}");
    assert!(
        handed < EXPIRY,
        "the lease was not handed over: taken after {handed:?}"
    );
    assert_no_writes(
        &proxies,
        &others(&standbys, second),
        &marks,
        "after the hand-over",
    );
    // The stopped daemon comes back as a follower.
    daemons[first] = start_daemon(&proxy_host(first), &manifests, state(first));
    assert_eq!(
        holder(&daemons, &alive, Duration::from_secs(30)).await,
        second
    );

    // kill -9 of the holder: another takes over within the expiry plus a
    // pass, applies a change and repairs a removal by hand; one writer.
    let marks: Vec<usize> = proxies.iter().map(Proxy::mark).collect();
    assert!(daemons[second].process.kill9());
    let killed = std::time::Instant::now();
    let survivors = others(&alive, second);
    let third = holder(&daemons, &survivors, Duration::from_secs(30)).await;
    eprintln!("kill -9 → another holder in {:?}", killed.elapsed());
    write(&manifests, &manifest(IMAGE_2));
    wait_image(&dockers[third], IMAGE_2, "the new image on the service", 60).await;
    for s in our_services(&dockers[third]).await {
        dockers[third]
            .delete_service(s.id.as_deref().unwrap())
            .await
            .unwrap();
    }
    wait_image(
        &dockers[third],
        IMAGE_2,
        "the service removed by hand back",
        60,
    )
    .await;
    assert_no_writes(
        &proxies,
        &others(&survivors, third),
        &marks,
        "after the kill",
    );
    assert!(!writes_since(&proxies[third], marks[third]).is_empty());
    // systemd would restart it: it comes back as a follower.
    daemons[second] = start_daemon(&proxy_host(second), &manifests, state(second));

    // The holder's engine dies: it cannot renew; another manager's assetd
    // takes over once the Swarm has a quorum again.
    eventually(
        "the global asset on all three nodes",
        Duration::from_secs(60),
        || async {
            let (health, _) = health_of(&daemons[third], GLOBAL).await?;
            (health == assetd::core::health::Health::Healthy).then_some(())
        },
    )
    .await;
    let dead_host = dockers[third].info().await.unwrap().name.unwrap();
    let pidfile = hosts[third]
        .trim_start_matches("unix://")
        .replace("docker.sock", "docker.pid");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    let rest = others(&alive, third);
    let fourth = holder(&daemons, &rest, Duration::from_secs(90)).await;
    // A global asset with a node down is Degraded, the node named.
    let why = eventually(
        "the global asset Degraded",
        Duration::from_secs(90),
        || async {
            let (health, why) = health_of(&daemons[fourth], GLOBAL).await?;
            (health == assetd::core::health::Health::Degraded).then_some(why)
        },
    )
    .await;
    assert!(why.contains(&dead_host), "{why} names {dead_host}");
    write(&manifests, &manifest(IMAGE_1));
    wait_image(
        &dockers[fourth],
        IMAGE_1,
        "the change applied after the engine died",
        90,
    )
    .await;

    // Restore the dead node the way an operator would: its assetd, still
    // running, reconnects and follows, writing nothing.
    let restored = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/multinode.sh"))
        .arg("up")
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/multinode.sh up");
    assert!(
        restored.success(),
        "multinode.sh up after a node died: {restored}"
    );
    let back = proxies[third].mark();
    eventually(
        "the restored node's assetd to follow",
        Duration::from_secs(90),
        || async {
            let status = assetd::daemon::api::fetch_status(&daemons[third].socket)
                .await
                .ok()?;
            (status.engine_error.is_none() && status.role.as_deref() == Some("standby"))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_no_writes(
        &proxies,
        &[third],
        &[back; 3],
        "after the node was restored",
    );
    assert_eq!(our_services(&dockers[fourth]).await.len(), 1);

    // Demote the holder's node: its daemon says it no longer holds the
    // lease (the engine's own words), another manager's takes over.
    let holder_now = holder(&daemons, &alive, Duration::from_secs(30)).await;
    let node = dockers[holder_now]
        .info()
        .await
        .unwrap()
        .swarm
        .unwrap()
        .node_id
        .unwrap();
    let via = others(&alive, holder_now)[0];
    set_role(
        &dockers[via],
        &node,
        bollard::models::NodeSpecRoleEnum::WORKER,
    )
    .await;
    let managers = others(&alive, holder_now);
    let after = holder(&daemons, &managers, Duration::from_secs(60)).await;
    // While the node steps down, its engine answers with passing errors
    // (the control socket going away); then it says what it is now.
    let error = eventually(
        "the demoted node to say so",
        Duration::from_secs(20),
        || async {
            let demoted = assetd::daemon::api::fetch_status(&daemons[holder_now].socket)
                .await
                .ok()?;
            assert_eq!(demoted.role.as_deref(), Some("standby"), "{demoted:?}");
            let error = demoted.lease?.error?;
            error.contains("not a swarm manager").then_some(error)
        },
    )
    .await;
    eprintln!("demoted node {holder_now}: node {after} holds the lease; it says: {error}");
    set_role(
        &dockers[after],
        &node,
        bollard::models::NodeSpecRoleEnum::MANAGER,
    )
    .await;

    for s in our_services(&dockers[after]).await {
        let _ = dockers[after]
            .delete_service(s.id.as_deref().unwrap())
            .await;
    }
    let filters = HashMap::from([("label", vec![format!("io.assetd.asset={GLOBAL}")])]);
    let options = ListServicesOptionsBuilder::default()
        .filters(&filters)
        .build();
    for s in dockers[after]
        .list_services(Some(options))
        .await
        .unwrap_or_default()
    {
        let _ = dockers[after]
            .delete_service(s.id.as_deref().unwrap())
            .await;
    }
    let _ = dockers[after]
        .delete_config(&format!("assetd-lease-{INSTANCE}"))
        .await;
    drop(daemons);
    let _ = std::fs::remove_dir_all(&root);
}

/// `git ARGS` in `dir`, as a committer; its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=assetd-test",
            "-c",
            "user.email=test@assetd",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commits `a.yaml` with `image` in `repo`; returns the commit.
fn commit(repo: &Path, image: &str) -> String {
    write(repo, &manifest(image));
    git(repo, &["add", "a.yaml"]);
    git(repo, &["commit", "-qm", image]);
    git(repo, &["rev-parse", "HEAD"])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_with_a_lagging_copy_rolls_nothing_back_and_applies_once_it_catches_up() {
    let (hosts, dockers, root) = fresh("assetd-mn-rev").await;
    let origin = root.join("origin");
    std::fs::create_dir_all(&origin).unwrap();
    set_mode(&origin, 0o755);
    git(&origin, &["init", "-q"]);
    let first = commit(&origin, IMAGE_1);
    let second = commit(&origin, IMAGE_2);
    // Each manager's own copy (git-sync per node): node 1's lags behind.
    let copy = |i: usize, at: &str| {
        let dir = root.join(format!("copy-{i}"));
        git(
            &root,
            &[
                "clone",
                "-q",
                origin.to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        git(&dir, &["checkout", "-q", at]);
        set_mode(&dir, 0o755);
        dir
    };
    let (ahead, behind) = (copy(0, &second), copy(1, &first));
    let mut daemons = vec![start_daemon(&hosts[0], &ahead, root.join("state-0"))];
    assert_eq!(holder(&daemons, &[0], Duration::from_secs(30)).await, 0);
    wait_image(&dockers[0], IMAGE_2, "the service at the newer image", 60).await;
    daemons.push(start_daemon(&hosts[1], &behind, root.join("state-1")));
    assert_eq!(holder(&daemons, &[0, 1], Duration::from_secs(30)).await, 0);

    // The writer stops; the lagging copy's daemon takes the lease and
    // holds, saying why, instead of rolling the image back.
    daemons[0].process.terminate(Duration::from_secs(30));
    let why = eventually(
        "the new writer to hold",
        Duration::from_secs(30),
        || async {
            let status = assetd::daemon::api::fetch_status(&daemons[1].socket)
                .await
                .ok()?;
            (status.role.as_deref() == Some("standby")).then_some(())?;
            status.revision_hold
        },
    )
    .await;
    assert!(
        why.contains(&format!(
            "at {}, behind the applied {}",
            &first[..7],
            &second[..7]
        )),
        "{why}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let image = service_image(&dockers[1]).await.unwrap();
    assert!(image.starts_with(IMAGE_2), "rolled back to {image}");

    // Its copy catches up, then moves on: it writes again, and applies.
    git(&behind, &["checkout", "-q", &second]);
    let third = commit(&origin, IMAGE_1);
    git(&behind, &["fetch", "-q", "origin"]);
    git(&behind, &["checkout", "-q", &third]);
    eventually(
        "the caught-up copy applied",
        Duration::from_secs(60),
        || async {
            let status = assetd::daemon::api::fetch_status(&daemons[1].socket)
                .await
                .ok()?;
            let synced = status.revision.as_deref() == Some(&third[..7]);
            let image = service_image(&dockers[1]).await?;
            (synced && status.revision_hold.is_none() && image.starts_with(IMAGE_1)).then_some(())
        },
    )
    .await;

    for s in our_services(&dockers[1]).await {
        let _ = dockers[1].delete_service(s.id.as_deref().unwrap()).await;
    }
    let _ = dockers[1]
        .delete_config(&format!("assetd-lease-{INSTANCE}"))
        .await;
    drop(daemons);
    let _ = std::fs::remove_dir_all(&root);
}

/// The login of the test registry (`scripts/testenv.sh`), from its client
/// config: the same for its bridge address, which serves the same users.
fn test_registry_auth() -> String {
    let dir = std::env::var("ASSETD_TEST_DOCKER_CONFIG")
        .expect("ASSETD_TEST_DOCKER_CONFIG is set by scripts/testenv.sh");
    let text = std::fs::read_to_string(Path::new(&dir).join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let registry = std::env::var("ASSETD_TEST_REGISTRY").unwrap();
    config["auths"][registry.as_str()]["auth"]
        .as_str()
        .expect("the test login")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_on_another_manager_pulls_from_the_private_registry_with_the_forwarded_login() {
    let (hosts, dockers, root) = fresh("assetd-mn-registry").await;
    let node_registry = std::env::var("ASSETD_MN_REGISTRY")
        .expect("ASSETD_MN_REGISTRY is set by `scripts/multinode.sh up`");
    // A tag no engine has: only the registry, so the task must pull it.
    let tag = format!("mn-forwarded-{}", std::process::id());
    let pushed = format!(
        "{}/assetd-test/{tag}:1",
        std::env::var("ASSETD_TEST_REGISTRY").unwrap()
    );
    let client = std::env::var("ASSETD_TEST_DOCKER_CONFIG").unwrap();
    for args in [
        vec!["tag", IMAGE_1, pushed.as_str()],
        vec!["push", "-q", pushed.as_str()],
        vec!["rmi", pushed.as_str()],
    ] {
        let out = Command::new("docker")
            .arg("--config")
            .arg(&client)
            .args(["-H", &common::docker_host()])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let image = format!("{node_registry}/assetd-test/{tag}:1");

    // assetd runs on n1; the task is placed on n3, the node whose tasks
    // pull (scripts/multinode.sh), which is neither n1 nor the leader (this
    // test runs first, before any other moves the leadership).
    let nodes = dockers[0].list_nodes(None).await.unwrap();
    let zone_of = |n: &bollard::models::Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get("zone").cloned())
    };
    let target = nodes
        .iter()
        .find(|n| zone_of(n).as_deref() == Some("n3"))
        .expect("node n3");
    assert_ne!(
        target.manager_status.as_ref().and_then(|m| m.leader),
        Some(true),
        "n3 leads the Swarm"
    );
    let zone = "n3";
    let target_docker = &dockers[2];
    assert!(
        target_docker.inspect_image(&image).await.is_err(),
        "the target node has the image already"
    );

    let config_dir = root.join("docker-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.json"),
        format!(
            "{{\"auths\": {{\"{node_registry}\": {{\"auth\": \"{}\"}}}}}}",
            test_registry_auth()
        ),
    )
    .unwrap();
    let manifests = root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    set_mode(&manifests, 0o755);
    write(
        &manifests,
        &format!(
            "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {ASSET}\nspec:\n  image: {image}\n  command: sleep 3600\n  constraints: [ \"node.labels.zone == {zone}\" ]\n"
        ),
    );
    let mut assetd = assetd_on(&hosts[0], &manifests, root.join("state"));
    assetd
        .env
        .push(("DOCKER_CONFIG", config_dir.display().to_string()));
    let out = assetd.output(&["apply", "--once"], &["--wait", "90s"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");

    // The task runs on the other node, which pulled the image itself with
    // the login the service write carried.
    eventually(
        "the task running on the other manager",
        Duration::from_secs(90),
        || async {
            let filters = HashMap::from([
                ("service".to_string(), vec![ASSET.to_string()]),
                ("desired-state".to_string(), vec!["running".to_string()]),
            ]);
            let tasks = dockers[0]
                .list_tasks(Some(
                    ListTasksOptionsBuilder::default().filters(&filters).build(),
                ))
                .await
                .ok()?;
            tasks
                .iter()
                .any(|t| {
                    t.node_id == target.id
                        && t.status.as_ref().and_then(|s| s.state)
                            == Some(bollard::models::TaskState::RUNNING)
                })
                .then_some(())
        },
    )
    .await;
    assert!(
        target_docker.inspect_image(&image).await.is_ok(),
        "pulled on the target node"
    );
    for s in our_services(&dockers[0]).await {
        let _ = dockers[0].delete_service(s.id.as_deref().unwrap()).await;
    }
    let _ = dockers[0]
        .delete_config(&format!("assetd-lease-{INSTANCE}"))
        .await;
}
