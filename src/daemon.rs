//! `assetd run`: the long-running controller.
//!
//! One loop owns the passes. Triggers (file events, Docker events, the
//! resync timer, finished actions, SIGHUP) only wake it; every pass
//! observes everything, plans, and hands the actions to the scheduler. The
//! scheduler runs each asset's action on its own task under a concurrency
//! limit and never runs two actions of one asset at once, so a slow or
//! failing asset never holds up the next pass or the other assets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bollard::Docker;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Shared};
use crate::engine::{self, StrategyChoice};
use crate::metrics::{ActionLabels, Metrics};
use crate::plan::ActionKind;
use crate::reconcile::{self, PassConfig};
use crate::spec::AssetName;
use crate::status::{self, StatusReport};
use crate::store::{now_ms, SledStore, Store};
use crate::strategy::AnyStrategy;
use crate::watch::{self, Trigger, WatchCounters};

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub pass: PassConfig,
    pub state_dir: PathBuf,
    pub strategy: StrategyChoice,
    /// `--instance`: whose objects this daemon manages.
    pub instance: String,
    /// A full pass at least this often.
    pub resync: Duration,
    pub socket: PathBuf,
    pub listen: Option<std::net::SocketAddr>,
    pub listen_public: bool,
    /// How long in-flight actions may run on after SIGTERM.
    pub grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Api(#[from] api::ApiError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
}

/// How long to wait for more triggers after a `Soon` one, so a file still
/// being written is read once, finished.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Control requests from signal handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: reconnect to Docker, re-choose the strategy, full pass.
    Reload,
}

/// Runs until `shutdown` is cancelled; then lets in-flight actions finish
/// within the grace period and flushes the store.
pub async fn run(
    config: DaemonConfig,
    shutdown: CancellationToken,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let (store, report) = SledStore::open(&config.state_dir)?;
    if let Some(aside) = report.moved_aside {
        tracing::warn!(moved_to = %aside.display(), "the state store was unreadable; rebuilt from Docker labels");
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let counters = Arc::new(WatchCounters::default());
    let watchdog = sd_watchdog();
    let shared = Arc::new(Shared {
        status: RwLock::new(StatusReport {
            source: "daemon".into(),
            ..Default::default()
        }),
        ready: Default::default(),
        last_tick_ms: now_ms().into(),
        stall_ms: (config.resync.max(watchdog.unwrap_or_default()) * 3).as_millis() as u64,
        metrics: Metrics::new(counters.clone()),
    });
    let api_stop = CancellationToken::new();
    let mut servers =
        vec![api::serve_socket(&config.socket, shared.clone(), api_stop.clone()).await?];
    if let Some(addr) = config.listen {
        servers.push(
            api::serve_http(addr, config.listen_public, shared.clone(), api_stop.clone()).await?,
        );
    }

    let (triggers_tx, mut triggers) = mpsc::channel::<Trigger>(256);
    let watchers = CancellationToken::new();
    tokio::spawn(watch::watch_manifests(
        config.pass.manifests.clone(),
        triggers_tx.clone(),
        counters.clone(),
        watchers.clone(),
    ));

    let mut scheduler = Scheduler::new(config.pass.concurrency, triggers_tx.clone());
    let mut engine: Option<Engine> = None;
    let mut engine_delay = Duration::from_millis(250);
    let mut next_wake = tokio::time::Instant::now();
    let mut pending: Option<Trigger> = Some(Trigger::Now);
    let mut docker_watch: Option<CancellationToken> = None;
    loop {
        shared.last_tick_ms.store(now_ms(), Ordering::Relaxed);
        if watchdog.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
        // Wait for a trigger, the next timer, or shutdown.
        if pending.is_none() {
            let wake = next_wake.min(
                tokio::time::Instant::now() + watchdog.map(|w| w / 2).unwrap_or(config.resync),
            );
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(c) = control.recv() => {
                    tracing::info!(?c, "reload requested: reconnecting and running a full pass");
                    engine = None;
                    pending = Some(Trigger::Now);
                }
                Some(t) = triggers.recv() => pending = Some(t),
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= next_wake {
                        pending = Some(Trigger::Now);
                    }
                }
            }
            if pending.is_none() {
                continue;
            }
        }
        // Coalesce everything already queued; debounce only `Soon`.
        while let Ok(t) = triggers.try_recv() {
            pending = pending.max(Some(t));
        }
        if pending == Some(Trigger::Soon) {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(DEBOUNCE) => {}
            }
            while triggers.try_recv().is_ok() {}
        }
        pending = None;

        // Connect (again) when needed: the engine may be absent at start.
        if engine.is_none() {
            match Engine::connect(config.strategy, &config.instance).await {
                Ok(e) => {
                    tracing::info!(strategy = %e.strategy.kind(), "connected to Docker");
                    if let Some(old) = docker_watch.take() {
                        old.cancel();
                    }
                    let token = watchers.child_token();
                    tokio::spawn(watch::watch_docker(
                        e.docker.clone(),
                        config.instance.clone(),
                        triggers_tx.clone(),
                        counters.clone(),
                        token.clone(),
                    ));
                    docker_watch = Some(token);
                    engine = Some(e);
                    engine_delay = Duration::from_millis(250);
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_ms = engine_delay.as_millis() as u64, "Docker engine unreachable");
                    shared.status.write().expect("status lock").engine_error = Some(e.to_string());
                    next_wake = tokio::time::Instant::now() + engine_delay;
                    engine_delay = (engine_delay * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        let current = engine.as_mut().expect("connected above");
        match pass(&config, current, &store, &mut scheduler, &shared).await {
            Ok(wake_in) => {
                next_wake = tokio::time::Instant::now() + wake_in.min(config.resync);
                if !shared.ready.swap(true, Ordering::Relaxed) {
                    tracing::info!("first full pass done; ready");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            Err(e) => {
                shared.metrics.docker_errors.inc();
                tracing::error!(error = %e, "pass failed; reconnecting");
                shared.status.write().expect("status lock").engine_error = Some(e.to_string());
                engine = None;
                next_wake = tokio::time::Instant::now() + engine_delay;
                engine_delay = (engine_delay * 2).min(Duration::from_secs(30));
            }
        }
    }

    tracing::info!(
        in_flight = scheduler.in_flight().len(),
        "shutting down; letting in-flight actions finish"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    watchers.cancel();
    if tokio::time::timeout(config.grace, scheduler.drain())
        .await
        .is_err()
    {
        tracing::warn!(
            "grace period over; abandoning in-flight actions (the next start converges them)"
        );
    }
    if let Err(e) = store.flush() {
        tracing::warn!(error = %e, "could not flush the state store");
    }
    api_stop.cancel();
    for s in servers {
        let _ = s.await;
    }
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// systemd's watchdog interval, when the unit sets `WatchdogSec=`.
fn sd_watchdog() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// The connection and what it decided.
struct Engine {
    docker: Docker,
    strategy: AnyStrategy,
    /// Our Swarm node, to ask on every pass whether it leads.
    swarm_node: Option<String>,
}

impl Engine {
    async fn connect(choice: StrategyChoice, instance: &str) -> Result<Self, engine::EngineError> {
        let docker = engine::connect()?;
        let strategy = engine::choose(&docker, choice, instance).await?;
        let swarm_node = match strategy {
            AnyStrategy::Swarm(_) => engine::swarm_node_id(&docker).await.ok(),
            AnyStrategy::Local(_) => None,
        };
        Ok(Self {
            docker,
            strategy,
            swarm_node,
        })
    }

    /// Only the Swarm leader's assetd writes; the others stand by. A
    /// manager that cannot tell stands by too: two writers are worse than
    /// a short pause.
    async fn is_standby(&self) -> bool {
        match &self.swarm_node {
            None => false,
            Some(node) => !engine::is_leader(&self.docker, node).await,
        }
    }
}

/// One pass: observe, plan, dispatch. Returns how soon the loop should
/// look again (the earliest backoff expiry).
async fn pass(
    config: &DaemonConfig,
    engine: &mut Engine,
    store: &Arc<dyn Store>,
    scheduler: &mut Scheduler,
    shared: &Shared,
) -> Result<Duration, reconcile::PassError> {
    let started = std::time::Instant::now();
    scheduler.reap(&shared.metrics);
    let standby = engine.is_standby().await;
    let (desired, actual, applied, plan) =
        reconcile::observe(&config.pass, &engine.strategy, store.as_ref()).await?;
    shared.metrics.passes.inc();
    let mut wake_in = config.resync;
    if !standby {
        reconcile::persist_adopted(store.as_ref(), &applied);
        let now = now_ms();
        for action in &plan.actions {
            let record = applied.get(&action.name).cloned().unwrap_or_default();
            let retry_at = record.next_retry_ms.unwrap_or(0);
            if action.kind != ActionKind::Hold && retry_at > now {
                wake_in = wake_in.min(Duration::from_millis(retry_at - now));
                continue;
            }
            if action.kind == ActionKind::Hold
                && record.last_error.as_deref() == Some(&action.reason)
            {
                // Already recorded as held for this reason: no write.
                continue;
            }
            scheduler.dispatch(
                action.clone(),
                record,
                engine.strategy.clone(),
                store.clone(),
            );
        }
    }
    let in_flight = scheduler.in_flight();
    let assets = status::from_pass(&desired, &actual, &store.all(), &plan, &in_flight, standby);
    shared.metrics.set_phases(&assets);
    shared
        .metrics
        .pass_seconds
        .observe(started.elapsed().as_secs_f64());
    let role = match (&engine.swarm_node, standby) {
        (None, _) => "local",
        (Some(_), true) => "standby",
        (Some(_), false) => "leader",
    };
    *shared.status.write().expect("status lock") = StatusReport {
        source: "daemon".into(),
        strategy: Some(engine.strategy.kind().to_string()),
        role: Some(role.into()),
        ready: true,
        engine_error: None,
        last_pass_ms: Some(now_ms()),
        manifest_errors: desired.errors().iter().map(ToString::to_string).collect(),
        assets,
    };
    tracing::debug!(
        actions = plan.actions.len(),
        in_flight = in_flight.len(),
        ms = started.elapsed().as_millis() as u64,
        "pass"
    );
    Ok(wake_in)
}

/// Runs actions on their own tasks: at most `limit` at once, one per asset.
struct Scheduler {
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<BTreeSet<AssetName>>>,
    tasks: JoinSet<(ActionKind, bool)>,
    /// Finished actions ask for a pass: the world changed.
    done: mpsc::Sender<Trigger>,
}

impl Scheduler {
    fn new(limit: usize, done: mpsc::Sender<Trigger>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            in_flight: Default::default(),
            tasks: JoinSet::new(),
            done,
        }
    }

    fn in_flight(&self) -> BTreeSet<AssetName> {
        self.in_flight.lock().expect("in-flight lock").clone()
    }

    fn dispatch(
        &mut self,
        action: crate::plan::Action,
        record: crate::store::AppliedRecord,
        strategy: AnyStrategy,
        store: Arc<dyn Store>,
    ) {
        if !self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .insert(action.name.clone())
        {
            return; // Its current action will trigger a new pass when done.
        }
        let permits = self.permits.clone();
        let in_flight = self.in_flight.clone();
        let done = self.done.clone();
        self.tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let name = action.name.clone();
            let kind = action.kind;
            let outcome = reconcile::execute(action, record, &strategy, store.as_ref()).await;
            in_flight.lock().expect("in-flight lock").remove(&name);
            if kind != ActionKind::Hold {
                let _ = done.try_send(Trigger::Now);
            }
            (kind, outcome.error.is_none())
        });
    }

    /// Collects finished tasks into the metrics.
    fn reap(&mut self, metrics: &Metrics) {
        while let Some(result) = self.tasks.try_join_next() {
            if let Ok((kind, ok)) = result {
                metrics
                    .actions
                    .get_or_create(&ActionLabels {
                        kind: kind.to_string(),
                        result: if ok { "ok" } else { "failed" }.into(),
                    })
                    .inc();
                if !ok {
                    metrics.docker_errors.inc();
                }
            }
        }
    }

    async fn drain(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The records the daemon would show without a running daemon.
pub fn offline_status(state_dir: &std::path::Path) -> Result<StatusReport, String> {
    let store = SledStore::open_nowait(state_dir).ok_or_else(|| {
        format!(
            "no daemon answers and no readable store in {}",
            state_dir.display()
        )
    })?;
    let applied: BTreeMap<AssetName, _> = store.all();
    Ok(StatusReport {
        source: "store".into(),
        assets: status::from_store(&applied),
        ..Default::default()
    })
}
