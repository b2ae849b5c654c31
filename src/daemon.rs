//! `assetd run`: the long-running controller.
//!
//! One loop owns the passes: [`Daemon`] waits for a trigger (file events,
//! Docker events, the resync timer, finished actions, SIGHUP), debounces,
//! connects when it must, and runs a pass: observe everything, plan, and
//! offer the actions to the [`Scheduler`], which runs each asset's action
//! on its own task under a concurrency limit and never two of one asset
//! at once, so a slow or failing asset never holds up the next pass or
//! the other assets. On shutdown it drains.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::Docker;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Shared};
use crate::engine::{self, StrategyChoice};
use crate::metrics::{ActionLabels, Metrics};
use crate::plan::{Action, ActionKind, Op};
use crate::prune::PruneWindow;
use crate::reconcile::{self, Observation, PassConfig};
use crate::scheduler::{Admission, Doubling, Scheduler, SchedulerConfig};
use crate::spec::AssetName;
use crate::status::{self, StatusReport};
use crate::store::{now_ms, AppliedRecord, SledStore, Store};
use crate::strategy::{ActualAsset, AnyStrategy, StrategyKind};
use crate::watch::{self, Trigger, WatchCounters};
use crate::writer::{self, Writer};

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
    /// `--prune-window`: the mass-prune guard counts removals over this
    /// long, not per pass.
    pub prune_window: Duration,
    /// This daemon's stamp on what it writes (see [`crate::writer`]).
    pub writer: Writer,
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

/// Longest a pass (observe and plan) may take: Docker calls that hang
/// would otherwise stop the loop, its watchdog pings and its timers. The
/// loop pings before each pass and waits at most half the watchdog
/// interval, so a pass bounded by this stays inside `WatchdogSec=60`.
const PASS_TIMEOUT: Duration = Duration::from_secs(25);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a removal must stay planned, pass after pass, before it runs.
/// Deleting a directory (`rm -rf`, an unmount, a git checkout rewriting
/// files) removes its files one by one: a pass in between sees a few
/// "deleted" files that are only the start of "the directory is gone",
/// which the mass-prune guard holds once it is complete.
const PRUNE_SETTLE: Duration = Duration::from_secs(1);
/// When the asset's file still exists (a document gone from it), the file
/// must also have been quiet this long: a multi-document file rewritten
/// slowly in place shows its later documents "removed" until written.
const FILE_QUIET: Duration = Duration::from_secs(5);

/// Reconnect delays while Docker is unreachable: short at first (an engine
/// restart takes seconds), capped so a long outage is noticed soon after
/// it ends.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// Control requests from signal handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: reconnect to Docker, re-choose the strategy, full pass.
    Reload,
}

/// Runs until `shutdown` is cancelled; then starts no new action, lets the
/// running ones finish within the grace period and flushes the store.
pub async fn run(
    config: DaemonConfig,
    shutdown: CancellationToken,
    control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let store = open_store(&config.state_dir).await?;
    let mut daemon = Daemon::start(config, store, shutdown, control).await?;
    while let Some(trigger) = daemon.wait_for_trigger().await {
        if !daemon.debounce(trigger).await {
            break;
        }
        daemon.connect_and_pass().await;
    }
    daemon.drain().await;
    Ok(())
}

/// Opens the store off the async runtime: a store locked by a daemon
/// that is still exiting is retried with sleeps.
async fn open_store(state_dir: &std::path::Path) -> Result<Arc<dyn Store>, DaemonError> {
    let (store, report) = SledStore::open_async(state_dir).await?;
    if let Some(aside) = report.moved_aside {
        tracing::warn!(moved_to = %aside.display(), "the state store was unreadable; rebuilt from Docker labels");
    }
    Ok(Arc::new(store))
}

/// The loop's state between its steps.
struct Daemon {
    config: DaemonConfig,
    store: Arc<dyn Store>,
    /// What the API serves; the loop writes it.
    shared: Arc<Shared>,
    counters: Arc<WatchCounters>,
    shutdown: CancellationToken,
    control: mpsc::Receiver<Control>,
    triggers: mpsc::Receiver<Trigger>,
    /// Handed to watchers and to the scheduler (a finished action asks
    /// for a pass).
    triggers_tx: mpsc::Sender<Trigger>,
    /// Stops every watcher at shutdown; each connection's Docker watcher
    /// has a child token of its own.
    watchers: CancellationToken,
    scheduler: Scheduler<AssetName, Finished>,
    prunes: Prunes,
    /// `None` while Docker is unreachable (or after SIGHUP).
    connection: Option<Connection>,
    reconnect: Reconnect,
    /// When the resync timer or a backoff expiry asks for the next pass.
    next_pass: Instant,
    /// A trigger seen but not yet acted on.
    pending: Option<Trigger>,
    /// The loop turns at least this often, to ping the watchdog.
    heartbeat: Duration,
    watchdog: bool,
    api: Api,
}

/// The API servers and what stops them (after the drain, so status is
/// served while actions finish).
struct Api {
    stop: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

/// An action the scheduler ran to its end.
struct Finished {
    kind: ActionKind,
    ok: bool,
}

/// The prune guard's window and the removals under way.
struct Prunes {
    window: PruneWindow,
    /// Removals under way, with the fleet size when they were
    /// dispatched (the window's base if it opens); `None` when the
    /// operator confirmed it: not counted.
    removing: BTreeMap<AssetName, Option<usize>>,
}

/// Whether this daemon writes, and who else does.
struct Standing {
    standby: bool,
    writer_conflict: Option<String>,
    other_writers: Vec<String>,
}

impl Daemon {
    async fn start(
        config: DaemonConfig,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
        control: mpsc::Receiver<Control>,
    ) -> Result<Self, DaemonError> {
        let counters = Arc::new(WatchCounters::default());
        let watchdog = sd_notify::watchdog_enabled();
        let heartbeat = watchdog
            .map(|w| w / 2)
            .unwrap_or(config.resync)
            .min(config.resync);
        let stall = (heartbeat + PASS_TIMEOUT + CONNECT_TIMEOUT) * 3;
        let shared = new_shared(stall, Metrics::new(counters.clone()));
        let api = Api::serve(&config, &shared).await?;
        let (triggers_tx, triggers) = mpsc::channel::<Trigger>(256);
        let watchers = CancellationToken::new();
        tokio::spawn(watch::watch_manifests(
            config.pass.manifests.clone(),
            triggers_tx.clone(),
            counters.clone(),
            watchers.clone(),
        ));
        let scheduler = new_scheduler(config.pass.concurrency, &triggers_tx, &shutdown);
        let prunes = Prunes {
            window: PruneWindow::new(config.prune_window),
            removing: BTreeMap::new(),
        };
        Ok(Self {
            config,
            store,
            shared,
            counters,
            shutdown,
            control,
            triggers,
            triggers_tx,
            watchers,
            scheduler,
            prunes,
            connection: None,
            reconnect: Reconnect::new(),
            next_pass: Instant::now(),
            pending: Some(Trigger::Now),
            heartbeat,
            watchdog: watchdog.is_some(),
            api,
        })
    }

    /// Tells `/healthz` and systemd's watchdog that the loop turns.
    fn tick(&self) {
        self.shared.last_tick_ms.store(now_ms(), Ordering::Relaxed);
        if self.watchdog {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }

    /// Waits for a trigger, the next timer, or shutdown (`None`).
    async fn wait_for_trigger(&mut self) -> Option<Trigger> {
        enum Woke {
            Stop,
            Control(Control),
            Trigger(Trigger),
            Timer,
        }
        loop {
            self.tick();
            if let Some(trigger) = self.pending.take() {
                return Some(trigger);
            }
            let wake = self.next_pass.min(Instant::now() + self.heartbeat);
            let woke = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Woke::Stop,
                Some(c) = self.control.recv() => Woke::Control(c),
                Some(t) = self.triggers.recv() => Woke::Trigger(t),
                _ = self.shared.wake.notified() => Woke::Trigger(Trigger::Now),
                _ = tokio::time::sleep_until(wake) => Woke::Timer,
            };
            match woke {
                Woke::Stop => return None,
                Woke::Control(c) => self.reload(c),
                Woke::Trigger(t) => self.pending = Some(t),
                Woke::Timer if Instant::now() >= self.next_pass => {
                    self.pending = Some(Trigger::Now)
                }
                Woke::Timer => {}
            }
        }
    }

    /// SIGHUP: a new connection, a full pass, failed assets retried.
    fn reload(&mut self, control: Control) {
        tracing::info!(
            ?control,
            "reload requested: reconnecting and running a full pass"
        );
        if let Some(old) = self.connection.take() {
            old.watch.cancel();
        }
        self.reconnect = Reconnect::new();
        self.shared.retry_failed.store(true, Ordering::Relaxed);
        self.pending = Some(Trigger::Now);
    }

    /// Coalesces everything already queued, then waits as long as the
    /// most urgent trigger allows: a file still being written is read
    /// once, finished; a `Now` ends the wait. `false` on shutdown.
    async fn debounce(&mut self, first: Trigger) -> bool {
        let mut pending = first;
        while let Ok(t) = self.triggers.try_recv() {
            pending = pending.max(t);
        }
        let mut until = Instant::now() + pending.debounce();
        while Instant::now() < until {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => {}
                Some(t) = self.triggers.recv() => until = until.min(Instant::now() + t.debounce()),
            }
        }
        while self.triggers.try_recv().is_ok() {}
        true
    }

    /// Connects (again) when needed, then runs one pass within
    /// [`PASS_TIMEOUT`]. A failed pass drops the connection.
    async fn connect_and_pass(&mut self) {
        if self.connection.is_none() && !self.connect().await {
            return;
        }
        self.tick();
        let result = match tokio::time::timeout(PASS_TIMEOUT, self.pass()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("the pass did not finish within {PASS_TIMEOUT:?}")),
        };
        match result {
            Ok(wake_in) => {
                self.next_pass = Instant::now() + wake_in.min(self.config.resync);
                self.reconnect.succeeded();
                if !self.shared.ready.swap(true, Ordering::Relaxed) {
                    tracing::info!("first full pass done; ready");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            Err(error) => {
                self.shared.metrics.docker_errors.inc();
                self.disconnected(error, "pass failed; reconnecting");
            }
        }
    }

    /// Opens a connection unless the reconnect backoff says not yet;
    /// starts its Docker event watcher. `true` when connected.
    async fn connect(&mut self) -> bool {
        if let Some(at) = self.reconnect.not_before(Instant::now()) {
            self.next_pass = at;
            return false;
        }
        self.tick();
        let config = &self.config;
        let opened = Connection::open(config.strategy, &config.instance, &config.writer);
        let connected = match tokio::time::timeout(CONNECT_TIMEOUT, opened).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "Docker at {} did not answer within {CONNECT_TIMEOUT:?}",
                engine::docker_host()
            )),
        };
        let mut connection = match connected {
            Ok(connection) => connection,
            Err(error) => {
                self.disconnected(error, "Docker engine unreachable");
                return false;
            }
        };
        tracing::info!(strategy = %connection.strategy.kind(), "connected to Docker");
        connection.watch = self.watchers.child_token();
        tokio::spawn(watch::watch_docker(
            connection.docker.clone(),
            self.config.instance.clone(),
            watch::DockerSinks {
                triggers: self.triggers_tx.clone(),
                counters: self.counters.clone(),
                shared: self.shared.clone(),
            },
            connection.watch.clone(),
        ));
        self.connection = Some(connection);
        true
    }

    /// Docker failed us: shows why, drops the connection (the event
    /// stream of a dead engine only fails again and again) and schedules
    /// the reconnect. Retried on its own: a warning, until the outage
    /// lasts long enough for the operator to look.
    fn disconnected(&mut self, error: String, what: &str) {
        let retry_in = self.reconnect.failed(Instant::now());
        self.next_pass = Instant::now() + retry_in;
        let retry_in_ms = retry_in.as_millis() as u64;
        if self.reconnect.is_long() {
            tracing::error!(%error, retry_in_ms, "{what}");
        } else {
            tracing::warn!(%error, retry_in_ms, "{what}");
        }
        self.shared
            .status
            .write()
            .expect("status lock")
            .engine_error = Some(error);
        if let Some(old) = self.connection.take() {
            old.watch.cancel();
        }
    }

    /// One pass: observe, plan, dispatch, publish the status. Returns how
    /// soon the loop should look again (the earliest backoff expiry).
    async fn pass(&mut self) -> Result<Duration, reconcile::PassError> {
        let started = std::time::Instant::now();
        self.reap_finished();
        // What this pass sees of an asset with an action running may be
        // from before or after that action: it is left alone, and the
        // action's end triggers the pass that decides on it.
        let busy = self.scheduler.in_flight();
        let connection = self.connection.as_ref().expect("connected before a pass");
        let strategy = connection.strategy.clone();
        let follower = connection.is_standby().await;
        let swarm = connection.swarm_node.is_some();
        let obs = reconcile::observe(&self.pass_config(), &strategy, self.store.as_ref()).await?;
        self.shared.metrics.passes.inc();
        let observed = Instant::now();
        let removals = obs
            .plan
            .actions
            .iter()
            .filter(|a| a.kind() == ActionKind::Remove)
            .map(|a| a.name.clone())
            .collect();
        self.scheduler.plan_settling(removals, observed);
        self.shared.set_confirmable(&obs.plan);
        let standing = self.standing(follower, &strategy, &obs.actual);
        let mut wake_in = self.config.resync;
        if !standing.standby {
            persist_settled(self.store.as_ref(), &obs, &busy);
            wake_in = self.dispatch(&obs, &strategy, observed).await;
            self.verify_changed_in_place(&obs, &strategy);
        }
        self.publish(&obs, &standing, &strategy, swarm, started);
        Ok(wake_in)
    }

    /// The pass configuration with what the loop keeps between passes:
    /// the prune window, the operator's confirmations and retries.
    fn pass_config(&mut self) -> PassConfig {
        let mut config = self.config.pass.clone();
        config.plan.recent = self.prunes.window.recent(Instant::now());
        config.plan.confirmed = self.shared.confirmed_removals();
        config.plan.retry = self.shared.retries.lock().expect("retry lock").clone();
        config
    }

    /// Counts finished actions; only what was really removed counts
    /// against the prune window, once, and a removal the operator
    /// confirmed does not.
    fn reap_finished(&mut self) {
        for (name, done) in self.scheduler.reap() {
            count_action(&self.shared.metrics, done.kind, done.ok);
            let dispatched = self.prunes.removing.remove(&name);
            if let (ActionKind::Remove, true, Some(Some(fleet))) = (done.kind, done.ok, dispatched)
            {
                self.prunes.window.record(Instant::now(), fleet, name);
            }
        }
    }

    /// Whether this daemon writes. On Swarm the leader rule already makes
    /// one writer, and a rollback or a failover rewrites stamps without a
    /// fight: only the local engine needs the writers' rule.
    fn standing(&self, follower: bool, strategy: &AnyStrategy, actual: &[ActualAsset]) -> Standing {
        let (writer_conflict, other_writers) = match strategy.kind() {
            StrategyKind::Local => writers(&self.config.writer, actual, &self.shared),
            StrategyKind::Swarm => (None, vec![]),
        };
        Standing {
            standby: follower || writer_conflict.is_some(),
            writer_conflict,
            other_writers,
        }
    }

    /// Offers every planned action to the scheduler; returns how soon the
    /// earliest one refused for now may go.
    async fn dispatch(
        &mut self,
        obs: &Observation,
        strategy: &AnyStrategy,
        observed: Instant,
    ) -> Duration {
        // SIGHUP, or an engine event that may have brought a missing
        // dependency (a network, volume or image created): retry now.
        let retry_now = self.shared.retry_failed.swap(false, Ordering::Relaxed);
        let fleet = obs.actual.len().max(obs.applied.len());
        let now = now_ms();
        let mut wake_in = self.config.resync;
        for action in &obs.plan.actions {
            let record = obs.applied.get(&action.name).cloned().unwrap_or_default();
            let backoff = reconcile::backing_off(action, &record, now).filter(|_| !retry_now);
            let manifests = &self.config.pass.manifests;
            let quiet = || {
                record
                    .source
                    .as_deref()
                    .and_then(|s| quiet_for(&manifests.join(s)))
            };
            match self.scheduler.admit(&action.name, backoff, quiet, observed) {
                Admission::Go => {}
                Admission::Busy => continue,
                Admission::Wait(wait) => {
                    wake_in = wake_in.min(wait);
                    continue;
                }
            }
            if action.kind() == ActionKind::Hold {
                self.record_hold(action, record, strategy).await;
                continue;
            }
            if action.kind() == ActionKind::Remove {
                let confirmed = self.shared.take_confirmed(&action.name);
                let counted = (!confirmed).then_some(fleet);
                self.prunes.removing.insert(action.name.clone(), counted);
            }
            // A retry asked for is used up by the deploy it causes.
            let mut retries = self.shared.retries.lock().expect("retry lock");
            retries.remove(&action.name);
            drop(retries);
            self.run_action(action.clone(), record, strategy);
        }
        wake_in
    }

    /// A hold only records why, once per reason: done here, not on the
    /// scheduler, so the status of this pass already shows it held.
    async fn record_hold(&self, action: &Action, record: AppliedRecord, strategy: &AnyStrategy) {
        if record.last_error.as_deref() == Some(action.reason().as_str()) {
            return;
        }
        reconcile::execute(action.clone(), record, strategy, self.store.as_ref()).await;
        count_action(&self.shared.metrics, ActionKind::Hold, true);
    }

    /// Hands `action` to the scheduler (a no-op if its asset is busy).
    fn run_action(&mut self, action: Action, record: AppliedRecord, strategy: &AnyStrategy) {
        let name = action.name.clone();
        let kind = action.kind();
        let strategy = strategy.clone();
        let store = self.store.clone();
        let work = async move {
            let outcome = reconcile::execute(action, record, &strategy, store.as_ref()).await;
            Finished {
                kind,
                ok: outcome.error.is_none(),
            }
        };
        self.scheduler.dispatch(name, work);
    }

    /// Deploys again the assets changed in place by hand that this pass
    /// has no action for: the deploy compares what no listing shows
    /// (limits).
    fn verify_changed_in_place(&mut self, obs: &Observation, strategy: &AnyStrategy) {
        let planned: BTreeSet<&AssetName> = obs.plan.actions.iter().map(|a| &a.name).collect();
        for name in self.shared.take_verify() {
            let Some(want) = obs.desired.assets.get(&name) else {
                continue;
            };
            if planned.contains(&name) {
                continue;
            }
            let action = Action {
                name: name.clone(),
                op: Op::Repair {
                    desired: want.clone(),
                    reason: "a container was changed in place (docker update)".into(),
                },
            };
            let record = self.store.get(&name).unwrap_or_default();
            self.run_action(action, record, strategy);
        }
    }

    /// The status the API serves after this pass, and its metrics.
    fn publish(
        &self,
        obs: &Observation,
        standing: &Standing,
        strategy: &AnyStrategy,
        swarm: bool,
        started: std::time::Instant,
    ) {
        let in_flight = self.scheduler.in_flight();
        let applied = self.store.all();
        let assets = status::from_pass(
            &obs.desired,
            &obs.actual,
            &applied,
            &obs.plan,
            &in_flight,
            standing.standby,
        );
        let metrics = &self.shared.metrics;
        metrics.set_phases(&assets);
        metrics
            .pass_seconds
            .observe(started.elapsed().as_secs_f64());
        let role = match (swarm, standing.standby) {
            (_, true) => "standby",
            (false, false) => "local",
            (true, false) => "leader",
        };
        *self.shared.status.write().expect("status lock") = StatusReport {
            source: "daemon".into(),
            strategy: Some(strategy.kind().to_string()),
            role: Some(role.into()),
            ready: true,
            engine_error: None,
            last_pass_ms: Some(now_ms()),
            manifest_errors: obs
                .desired
                .errors()
                .iter()
                .map(ToString::to_string)
                .collect(),
            writer_conflict: standing.writer_conflict.clone(),
            other_writers: standing.other_writers.clone(),
            assets,
        };
        tracing::debug!(
            actions = obs.plan.actions.len(),
            in_flight = in_flight.len(),
            ms = started.elapsed().as_millis() as u64,
            "pass"
        );
    }

    /// Starts no new action, lets the running ones finish within the
    /// grace period, flushes the store, stops the API.
    async fn drain(mut self) {
        let queued = self.scheduler.in_flight().len();
        tracing::info!(
            queued,
            "shutting down: starting no new action, letting running ones finish"
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.watchers.cancel();
        if tokio::time::timeout(self.config.grace, self.scheduler.drain())
            .await
            .is_err()
        {
            tracing::warn!(
                abandoned = self.scheduler.in_flight().len(),
                "grace period over; abandoning running actions (the next start converges them)"
            );
        }
        if let Err(e) = self.store.flush() {
            tracing::warn!(error = %e, "could not flush the state store");
        }
        self.api.stop.cancel();
        for server in self.api.servers {
            // An idle keep-alive client must not hold the exit up.
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
        let _ = std::fs::remove_file(&self.config.socket);
        tracing::info!("stopped");
    }
}

fn new_shared(stall: Duration, metrics: Metrics) -> Arc<Shared> {
    Arc::new(Shared {
        status: RwLock::new(StatusReport {
            source: "daemon".into(),
            ..Default::default()
        }),
        ready: Default::default(),
        last_tick_ms: now_ms().into(),
        stall_ms: stall.as_millis() as u64,
        metrics,
        prunes: Default::default(),
        wake: Default::default(),
        retry_failed: Default::default(),
        to_verify: Default::default(),
        retries: Default::default(),
    })
}

/// The scheduler of the daemon's actions. A finished action asks for a
/// pass: the last of a batch at once (status, follow-ups); while others
/// are still queued a pass could not dispatch them anyway, so finishing
/// ones coalesce into about one pass a second instead of one each.
fn new_scheduler(
    concurrency: usize,
    triggers: &mpsc::Sender<Trigger>,
    stop: &CancellationToken,
) -> Scheduler<AssetName, Finished> {
    let done = triggers.clone();
    let config = SchedulerConfig {
        concurrency,
        settle: PRUNE_SETTLE,
        quiet: FILE_QUIET,
    };
    let on_finish = Arc::new(move |idle: bool| {
        let _ = done.try_send(if idle { Trigger::Now } else { Trigger::Later });
    });
    Scheduler::new(config, stop.clone(), on_finish)
}

impl Api {
    async fn serve(config: &DaemonConfig, shared: &Arc<Shared>) -> Result<Self, DaemonError> {
        let stop = CancellationToken::new();
        let mut servers =
            vec![api::serve_socket(&config.socket, shared.clone(), stop.clone()).await?];
        if let Some(addr) = config.listen {
            let http = api::serve_http(addr, config.listen_public, shared.clone(), stop.clone());
            servers.push(http.await?);
        }
        Ok(Self { stop, servers })
    }
}

/// Records adopted from labels, moved files and resolved errors, for the
/// assets with no action running: a running action writes its own record,
/// and one from a listing taken mid-action would only race it.
fn persist_settled(store: &dyn Store, obs: &Observation, busy: &BTreeSet<AssetName>) {
    let settled: BTreeMap<AssetName, AppliedRecord> = obs
        .applied
        .iter()
        .filter(|(name, _)| !busy.contains(*name))
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    reconcile::persist_adopted(store, &settled);
    reconcile::persist_moves(store, &obs.desired, &obs.applied);
    let settled_plan = crate::plan::Plan {
        unchanged: obs
            .plan
            .unchanged
            .iter()
            .filter(|n| !busy.contains(*n))
            .cloned()
            .collect(),
        ..Default::default()
    };
    reconcile::persist_resolved(store, &settled_plan, &obs.applied);
}

/// The reconnect delay while Docker is unreachable: one backoff for a
/// failed connect and a failed pass alike.
struct Reconnect {
    delay: Doubling,
    /// No attempt before this.
    at: Instant,
}

impl Reconnect {
    fn new() -> Self {
        Self {
            delay: Doubling::new(RECONNECT_FIRST, RECONNECT_MAX),
            at: Instant::now(),
        }
    }

    /// When the next attempt may be made, if not now.
    fn not_before(&self, now: Instant) -> Option<Instant> {
        (now < self.at).then_some(self.at)
    }

    /// After a failure: how long until the next attempt.
    fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.delay.failed();
        self.at = now + delay;
        delay
    }

    /// A pass succeeded: the next outage starts short again.
    fn succeeded(&mut self) {
        self.delay.succeeded();
    }

    /// The outage has lasted long enough for an operator to look.
    fn is_long(&self) -> bool {
        self.delay.at_max()
    }
}

/// The connection to Docker and what it decided.
struct Connection {
    docker: Docker,
    strategy: AnyStrategy,
    /// Our Swarm node, to ask on every pass whether it leads.
    swarm_node: Option<String>,
    /// Stops this connection's event watcher.
    watch: CancellationToken,
}

impl Connection {
    async fn open(
        choice: StrategyChoice,
        instance: &str,
        writer: &Writer,
    ) -> Result<Self, engine::EngineError> {
        let docker = engine::connect()?;
        // The client connects lazily: ask once, so an engine that is down
        // is found here, not by a pass, and no event watcher is started
        // against it.
        docker
            .ping()
            .await
            .map_err(|e| engine::EngineError::Unreachable {
                host: engine::docker_host(),
                message: e.to_string(),
            })?;
        let strategy = engine::choose(&docker, choice, instance)
            .await?
            .with_writer(writer.clone());
        let swarm_node = match strategy {
            AnyStrategy::Swarm(_) => engine::swarm_node_id(&docker).await.ok(),
            AnyStrategy::Local(_) => None,
        };
        Ok(Self {
            docker,
            strategy,
            swarm_node,
            watch: CancellationToken::new(),
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

/// Whether another daemon writes this instance and this one must give
/// way (and why, for status), and the younger ones seen writing. Logged
/// when it changes: an operator must give the daemons their own
/// `--instance`.
fn writers(me: &Writer, actual: &[ActualAsset], shared: &Shared) -> (Option<String>, Vec<String>) {
    let conflict = writer::elder_writer(actual, me).map(|(name, stamp)| {
        format!(
            "another assetd writes instance objects ({}, started {} ms before this one; it last wrote {name}): this one stands by and writes nothing; give each daemon its own --instance",
            stamp.writer.id,
            me.started_ms - stamp.writer.started_ms
        )
    });
    let younger: Vec<String> = writer::younger_writers(actual, me)
        .into_iter()
        .map(|s| s.writer.id.clone())
        .collect();
    let before = shared.status.read().expect("status lock").clone();
    if conflict.is_some() && before.writer_conflict.is_none() {
        tracing::error!(
            conflict = conflict.as_deref().unwrap_or_default(),
            "giving way to another writer"
        );
    }
    if !younger.is_empty() && before.other_writers != younger {
        tracing::warn!(writers = ?younger, "another assetd started later wrote objects of this instance; it will stand by");
    }
    (conflict, younger)
}

/// How long the file at `path` has not changed; `None` when it is gone.
fn quiet_for(path: &std::path::Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        std::time::SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default(),
    )
}

fn count_action(metrics: &Metrics, kind: ActionKind, ok: bool) {
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
