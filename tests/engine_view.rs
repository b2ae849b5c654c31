//! The daemon's event-fed view of the local engine (issue 30), counted
//! through the recording proxy: a quiet fleet costs no listing between
//! resyncs, a change reads only what changed, and lost events cost
//! latency, never correctness (held events: repaired at the resync; a
//! cut stream: listed in full at once).

mod common;

use std::time::Duration;

use assetd::report::status::Phase;
use common::harness::{shared, Assetd, Daemon};
use common::proxy::{Proxy, Req};
use common::{eventually, TestEnv, CONVERGE, IMAGE_1};

const SLEEPER: &str = "  command: [sleep, \"3600\"]\n";

/// A daemon on the local engine that reaches it through a counting proxy.
async fn counted_daemon(env: &TestEnv, assets: &[&str], resync: &str) -> (Proxy, Daemon) {
    for a in assets {
        env.write(&format!("{a}.yaml"), &env.asset(a, IMAGE_1, SLEEPER));
    }
    let upstream = common::docker_host().trim_start_matches("unix://").into();
    let proxy = Proxy::start(&env.root.join("proxy.sock"), upstream)
        .await
        .expect("the counting proxy starts");
    let mut assetd = Assetd::new(env, "local");
    assetd.docker_host = format!("unix://{}", proxy.path.display());
    let daemon = assetd.daemon(&["--resync", resync]);
    let names: Vec<String> = assets.iter().map(|a| env.name(a)).collect();
    daemon.wait_phase(&names, Phase::Running).await;
    proxy
        .wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    (proxy, daemon)
}

/// A counter of the daemon's metrics (`passes`, `manifest_walks`).
async fn counter(daemon: &Daemon, name: &str) -> u64 {
    let metrics = daemon.metrics().await;
    let series = format!("assetd_{name}_total ");
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series}in:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn passes(daemon: &Daemon) -> u64 {
    counter(daemon, "passes").await
}

fn full_listings(proxy: &Proxy, mark: usize) -> usize {
    let calls = proxy.calls_since(mark);
    calls
        .iter()
        .filter(|r| r.is_full_container_listing())
        .count()
}

fn listings(proxy: &Proxy, mark: usize) -> Vec<Req> {
    let calls = proxy.calls_since(mark);
    calls
        .into_iter()
        .filter(Req::is_container_listing)
        .collect()
}

async fn container_id(env: &TestEnv, name: &str) -> Option<String> {
    let c = env.docker.inspect_container(name, None).await.ok()?;
    c.state?.running?.then_some(())?;
    c.id
}

/// `docker rm -f NAME`.
async fn remove_by_hand(env: &TestEnv, name: &str) {
    let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
        .force(true)
        .build();
    env.docker
        .remove_container(name, Some(options))
        .await
        .unwrap();
}

/// Holds the event streams, then removes `name` by hand: the daemon hears
/// nothing of it. Returns the proxy's mark from just before.
async fn remove_unheard(env: &TestEnv, proxy: &Proxy, name: &str) -> usize {
    proxy.hold_events(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mark = proxy.mark();
    remove_by_hand(env, name).await;
    mark
}

/// Until `name` runs in a container other than `old`.
async fn replaced(env: &TestEnv, name: &str, old: &str) -> String {
    eventually(&format!("{name} running again"), CONVERGE, || async {
        container_id(env, name).await.filter(|id| id != old)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_fleet_is_read_from_the_view_and_a_change_reads_only_itself() {
    let _engine = shared().await;
    let env = TestEnv::new("ev-quiet").await;
    let (proxy, daemon) = counted_daemon(&env, &["a", "b", "c"], "300s").await;
    // Containers up for seconds only are read at every pass (a restart
    // shows as "Up 3 seconds"); past 20 s they have settled.
    tokio::time::sleep(Duration::from_secs(21)).await;
    // One pass reads them as settled.
    let settled = passes(&daemon).await + 1;
    env.write("b.yaml", &env.asset("b", IMAGE_1, SLEEPER));
    eventually("a pass that reads them settled", CONVERGE, || async {
        (passes(&daemon).await >= settled).then_some(())
    })
    .await;
    proxy
        .wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    let before = passes(&daemon).await;
    let walks = counter(&daemon, "manifest_walks").await;
    let mark = proxy.mark();
    // Networks someone else creates: they could be what a failed asset
    // waits for, but in a converged fleet nothing waits. No pass at all.
    for i in 0..3 {
        let net = env.name(&format!("foreign{i}"));
        let config = bollard::models::NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        };
        env.docker.create_network(config).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        env.docker.remove_network(&net).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        passes(&daemon).await,
        before,
        "a converged fleet ran a pass for a foreign network"
    );
    assert_eq!(
        listings(&proxy, mark).len(),
        0,
        "a quiet fleet listed the engine: {:?}",
        proxy.calls_since(mark)
    );
    // A signal the container ignores: its `kill` event may have stopped
    // it, so a pass looks (at that container only), and reuses the last
    // read of the manifests: nothing in the directory changed.
    let options = bollard::query_parameters::KillContainerOptionsBuilder::default()
        .signal("SIGWINCH")
        .build();
    env.docker
        .kill_container(&env.name("c"), Some(options))
        .await
        .unwrap();
    eventually("a pass for the kill event", CONVERGE, || async {
        (passes(&daemon).await > before).then_some(())
    })
    .await;
    assert_eq!(
        counter(&daemon, "manifest_walks").await,
        walks,
        "an engine event made the daemon read the manifests again"
    );
    // A manifest saved unchanged: a pass that reads the directory.
    env.write("a.yaml", &env.asset("a", IMAGE_1, SLEEPER));
    eventually("a pass that reads the saved file", CONVERGE, || async {
        (counter(&daemon, "manifest_walks").await > walks).then_some(())
    })
    .await;
    assert_eq!(
        full_listings(&proxy, mark),
        0,
        "a quiet fleet listed every container: {:?}",
        listings(&proxy, mark)
    );

    // Removed by hand: its events name it, and only it is read again.
    let a = env.name("a");
    let old = container_id(&env, &a).await.expect("a runs");
    remove_by_hand(&env, &a).await;
    replaced(&env, &a, &old).await;
    assert_eq!(
        full_listings(&proxy, mark),
        0,
        "a change of one container listed every one: {:?}",
        listings(&proxy, mark)
    );
    assert!(!listings(&proxy, mark).is_empty(), "the change was read");
}

#[tokio::test(flavor = "multi_thread")]
async fn held_events_cost_latency_until_the_resync_never_correctness() {
    let _engine = shared().await;
    let env = TestEnv::new("ev-held").await;
    let (proxy, daemon) = counted_daemon(&env, &["a"], "5s").await;
    let a = env.name("a");
    let old = container_id(&env, &a).await.expect("a runs");
    // The engine's events stall on their way: the daemon hears nothing
    // of the removal, and its view still shows the container.
    let mark = remove_unheard(&env, &proxy, &a).await;
    replaced(&env, &a, &old).await;
    proxy.hold_events(false);
    assert!(
        full_listings(&proxy, mark) >= 1,
        "repaired without the resync's full listing: {:?}\n{}",
        listings(&proxy, mark),
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_in_the_event_stream_forces_a_full_listing_at_once() {
    let _engine = shared().await;
    let env = TestEnv::new("ev-gap").await;
    // No resync within the test: what repairs is the gap's re-list.
    let (proxy, daemon) = counted_daemon(&env, &["a"], "300s").await;
    let a = env.name("a");
    let old = container_id(&env, &a).await.expect("a runs");
    let mark = remove_unheard(&env, &proxy, &a).await;
    // The stream, with the removal's events in it, is dropped: a gap.
    proxy.cut_events();
    proxy.hold_events(false);
    replaced(&env, &a, &old).await;
    assert!(
        full_listings(&proxy, mark) >= 1,
        "a gap did not re-list: {:?}\n{}",
        listings(&proxy, mark),
        daemon.log()
    );
}

/// A stop is repaired, but only once the engine has had a moment to start
/// the container itself (a `docker restart` is kill, die, stop, start): a
/// repair at `stop` races the restart, one needless write per restart
/// under a storm. A removal is still recreated at once (its `destroy`
/// ends the wait), as the quiet-fleet test shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_is_repaired_after_the_engine_had_a_moment_to_restart_it() {
    let _engine = shared().await;
    let env = TestEnv::new("ev-stop").await;
    let (proxy, _daemon) = counted_daemon(&env, &["a"], "1h").await;
    let a = env.name("a");

    let mark = proxy.mark();
    // Before the stop: its `die` event cannot come earlier.
    let before = std::time::Instant::now();
    let options = bollard::query_parameters::StopContainerOptionsBuilder::default()
        .t(0)
        .build();
    env.docker.stop_container(&a, Some(options)).await.unwrap();
    eventually("a started again after a stop by hand", CONVERGE, || async {
        container_id(&env, &a).await
    })
    .await;
    let start = proxy
        .calls_since(mark)
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/start"))
        .expect("the daemon started it");
    // 2 s from the `die`; without the wait, a pass a second after it.
    assert!(
        start.at.duration_since(before) >= Duration::from_millis(1_800),
        "repaired {:?} after the stop began, before the engine had its moment",
        start.at.duration_since(before)
    );
}
