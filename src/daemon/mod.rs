//! `assetd run`: the long-running controller and everything only it has:
//! the loop (here), `pass`, `connection`, the watchers (`watch`), the
//! `scheduler`, the `prune` window, `events`, `notify`, `metrics` and the
//! socket and HTTP `api` (with the dashboard, `api/web`).
//!
//! One loop owns the passes: [`Daemon`] waits for a trigger (file events,
//! Docker events, the resync timer, finished actions, SIGHUP), debounces,
//! connects when it must, and runs a pass: observe everything, plan, and
//! offer the actions to the [`Scheduler`], which runs each asset's action
//! on its own task under a concurrency limit and never two of one asset
//! at once, so a slow or failing asset never holds up the next pass or
//! the other assets. On shutdown it drains.
//!
//! Here: the loop's steps. [`pass`]: what one pass does.
//! [`connection`]: the connection to Docker and the reconnect backoff.

pub mod api;
pub mod events;
pub mod metrics;
pub mod notify;
pub mod prune;
pub mod scheduler;
mod stops;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::daemon::api::{Published, Shared};
use crate::daemon::metrics::Metrics;
use crate::daemon::metrics::WatchCounters;
use crate::daemon::prune::PruneWindow;
use crate::daemon::scheduler::Scheduler;
use crate::daemon::watch::Trigger;
use crate::engine::strategy::writer::Writer;
use crate::engine::{self, StrategyChoice};
use crate::model::spec::AssetName;
use crate::reconcile::PassConfig;
use crate::report::status::StatusReport;
use crate::store::{now_ms, SledStore, Store};

mod connection;
mod pass;

use self::connection::{Connection, Reconnect};
use self::pass::{new_scheduler, Finished, Prunes};

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
    /// This daemon's stamp on what it writes (see [`crate::engine::strategy::writer`]).
    pub writer: Writer,
    /// `--notify`: where events are posted.
    pub notify: Vec<crate::daemon::notify::Target>,
    /// The Swarm writer lease's timings.
    pub lease: crate::engine::lease::Timings,
    /// Where registry credentials come from.
    pub registry: crate::engine::registry_auth::RegistryAuth,
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
    /// When the registries were last asked about moved tags: once per
    /// resync interval, not at every event.
    tags_checked: Option<Instant>,
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
    /// Posts the events to the `--notify` URLs.
    notifier: crate::daemon::notify::Notifier,
    /// On Swarm: the writer lease, renewed (or watched) by its own task
    /// from the first connection on, across reconnects.
    lease: Option<crate::engine::lease::Lease>,
    lease_task: Option<JoinHandle<()>>,
    /// After a takeover: the writer this daemon took the lease from and
    /// the revision it applied, until this copy is known not to be behind.
    guard: Option<(String, crate::input::revision::Revision)>,
    /// The guard's last reason, logged once.
    last_revision_hold: Option<String>,
    /// The invalid manifest files as last logged (file → its errors): a
    /// file is logged once per change, not at every pass.
    logged_invalid: BTreeMap<String, Vec<String>>,
    /// Stops the lease task, which then hands the lease over: after the
    /// drain, when nothing writes any more.
    lease_stop: CancellationToken,
}

/// The API servers and what stops them (after the drain, so status is
/// served while actions finish).
struct Api {
    stop: CancellationToken,
    servers: Vec<JoinHandle<()>>,
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
        let identity = crate::engine::strategy::writer::LiveWriter {
            instance: config.instance.clone(),
            writer: config.writer.clone(),
        };
        let shared = new_shared(
            stall,
            Metrics::new(counters.clone()),
            store.clone(),
            identity,
        );
        let api = Api::serve(&config, &shared).await?;
        let (triggers_tx, triggers) = mpsc::channel::<Trigger>(256);
        let watchers = CancellationToken::new();
        tokio::spawn(watch::watch_manifests(
            config.pass.manifests.clone(),
            config.pass.manifest_cache.clone(),
            triggers_tx.clone(),
            counters.clone(),
            watchers.clone(),
        ));
        let scheduler = new_scheduler(config.pass.concurrency, &triggers_tx, &shutdown);
        let notifier = crate::daemon::notify::Notifier::start(
            &config.notify,
            &config.instance,
            shared.published.metrics.notifications.clone(),
            &api.stop,
        );
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
            tags_checked: None,
            connection: None,
            reconnect: Reconnect::new(),
            next_pass: Instant::now(),
            pending: Some(Trigger::Now),
            heartbeat,
            watchdog: watchdog.is_some(),
            api,
            notifier,
            logged_invalid: BTreeMap::new(),
            lease: None,
            lease_task: None,
            guard: None,
            last_revision_hold: None,
            lease_stop: CancellationToken::new(),
        })
    }

    /// Tells `/healthz` and systemd's watchdog that the loop turns.
    fn tick(&self) {
        self.shared
            .published
            .last_tick_ms
            .store(now_ms(), Ordering::Relaxed);
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
                _ = self.shared.requests.wake.notified() => Woke::Trigger(Trigger::Now),
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
        self.shared.hints.retry_failed();
        // A full pass reads the directory too (an `env_file` outside it
        // sends no event).
        if let Some(cache) = &self.config.pass.manifest_cache {
            cache.changed();
        }
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
                self.shared.published.metrics.engine_up.set(1);
                self.shared.published.metrics.ready.set(1);
                if !self.shared.published.ready.swap(true, Ordering::Relaxed) {
                    tracing::info!("first full pass done; ready");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            Err(error) => {
                self.shared.published.metrics.docker_errors.inc();
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
        let opened = Connection::open(config);
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
                hints: self.shared.hints.clone(),
                crashes: match &connection.strategy {
                    crate::engine::strategy::AnyStrategy::Local(local) => Some(local.crash_notes()),
                    crate::engine::strategy::AnyStrategy::Swarm(_) => None,
                },
                view: match &connection.strategy {
                    crate::engine::strategy::AnyStrategy::Local(local) => {
                        Some(local.container_view())
                    }
                    crate::engine::strategy::AnyStrategy::Swarm(_) => None,
                },
            },
            connection.watch.clone(),
        ));
        if connection.swarm_node.is_some() && self.lease.is_none() {
            self.start_lease(&connection.docker);
        }
        self.connection = Some(connection);
        true
    }

    /// Starts renewing or watching the writer lease; gaining it asks for
    /// a pass at once.
    fn start_lease(&mut self, docker: &bollard::Docker) {
        let me = format!(
            "{}#{}",
            self.config.writer.id, self.config.writer.started_ms
        );
        let triggers = self.triggers_tx.clone();
        let on_gain = Arc::new(move || {
            let _ = triggers.try_send(Trigger::Now);
        });
        let lease = crate::engine::lease::Lease::new(
            docker.clone(),
            &self.config.instance,
            me,
            self.config.lease,
        )
        .with_on_gain(on_gain);
        self.lease_task = Some(tokio::spawn(lease.clone().run(self.lease_stop.clone())));
        *self.shared.published.lease.write().expect("lease lock") = Some(lease.clone());
        self.lease = Some(lease);
    }

    /// Whether this daemon must not write now: on Swarm, unless it holds
    /// the lease.
    fn lease_standby(&self, swarm: bool) -> bool {
        swarm && !self.lease.as_ref().is_some_and(|l| l.may_write())
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
        self.shared.published.metrics.engine_up.set(0);
        let lease = self.lease.as_ref().map(|l| l.view());
        let mut status = self.shared.published.status.write().expect("status lock");
        status.engine_error = Some(error);
        // Roles from the present: with no engine, this daemon writes
        // nothing, whatever the last pass said.
        if status.role.as_deref() == Some("leader") {
            status.role = Some("standby".into());
        }
        if lease.is_some() {
            status.lease = lease;
        }
        drop(status);
        if let Some(old) = self.connection.take() {
            old.watch.cancel();
        }
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
        // Nothing writes any more: hand the lease over.
        self.lease_stop.cancel();
        if let Some(task) = self.lease_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
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

fn new_shared(
    stall: Duration,
    metrics: Metrics,
    store: Arc<dyn Store>,
    identity: crate::engine::strategy::writer::LiveWriter,
) -> Arc<Shared> {
    Arc::new(Shared {
        published: Published {
            status: RwLock::new(StatusReport {
                source: crate::report::status::Source::Daemon,
                ..Default::default()
            }),
            ready: Default::default(),
            last_tick_ms: now_ms().into(),
            stall_ms: stall.as_millis() as u64,
            metrics,
            planner: Default::default(),
            events: Default::default(),
            lease: Default::default(),
            identity,
        },
        requests: Default::default(),
        hints: Default::default(),
        store,
        control_lock: Default::default(),
    })
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

/// The records the daemon would show without a running daemon.
pub fn offline_status(state_dir: &std::path::Path) -> Result<StatusReport, String> {
    let store = SledStore::open_nowait(state_dir).ok_or_else(|| {
        format!(
            "no daemon answers and no readable store in {}",
            state_dir.display()
        )
    })?;
    let applied: BTreeMap<AssetName, _> = store.all();
    Ok(StatusReport::of_store(&applied))
}
