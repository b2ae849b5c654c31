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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Shared};
use crate::engine::{self, StrategyChoice};
use crate::metrics::{ActionLabels, Metrics};
use crate::plan::ActionKind;
use crate::prune::{PruneWindow, Settle};
use crate::reconcile::{self, PassConfig};
use crate::spec::AssetName;
use crate::status::{self, StatusReport};
use crate::store::{now_ms, SledStore, Store};
use crate::strategy::{ActualAsset, AnyStrategy};
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
    mut control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let (store, report) = SledStore::open(&config.state_dir)?;
    if let Some(aside) = report.moved_aside {
        tracing::warn!(moved_to = %aside.display(), "the state store was unreadable; rebuilt from Docker labels");
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let counters = Arc::new(WatchCounters::default());
    let watchdog = sd_notify::watchdog_enabled();
    // The loop turns at least this often, to ping the watchdog.
    let heartbeat = watchdog
        .map(|w| w / 2)
        .unwrap_or(config.resync)
        .min(config.resync);
    let shared = Arc::new(Shared {
        status: RwLock::new(StatusReport {
            source: "daemon".into(),
            ..Default::default()
        }),
        ready: Default::default(),
        last_tick_ms: now_ms().into(),
        stall_ms: ((heartbeat + PASS_TIMEOUT + CONNECT_TIMEOUT) * 3).as_millis() as u64,
        metrics: Metrics::new(counters.clone()),
        prunes: Default::default(),
        wake: Default::default(),
        retry_failed: Default::default(),
        to_verify: Default::default(),
        retries: Default::default(),
    });
    let tick = || {
        shared.last_tick_ms.store(now_ms(), Ordering::Relaxed);
        if watchdog.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    };
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

    let mut scheduler = Scheduler::new(
        config.pass.concurrency,
        triggers_tx.clone(),
        shutdown.clone(),
    );
    let mut prunes = Prunes {
        settle: Settle::new(PRUNE_SETTLE, FILE_QUIET),
        window: PruneWindow::new(config.prune_window),
        removing: BTreeMap::new(),
    };
    let mut engine: Option<Engine> = None;
    let mut reconnect_delay = RECONNECT_FIRST;
    // While Docker is unreachable, triggers wait for this: a burst of file
    // events must not turn the backoff into a busy loop.
    let mut reconnect_at = Instant::now();
    // When the resync timer or a backoff expiry asks for the next pass.
    let mut next_pass = Instant::now();
    let mut pending: Option<Trigger> = Some(Trigger::Now);
    'run: loop {
        tick();
        // Wait for a trigger, the next timer, or shutdown.
        if pending.is_none() {
            let wake = next_pass.min(Instant::now() + heartbeat);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(c) = control.recv() => {
                    tracing::info!(?c, "reload requested: reconnecting and running a full pass");
                    if let Some(old) = engine.take() {
                        old.watch.cancel();
                    }
                    reconnect_at = Instant::now();
                    reconnect_delay = RECONNECT_FIRST;
                    shared.retry_failed.store(true, Ordering::Relaxed);
                    pending = Some(Trigger::Now);
                }
                Some(t) = triggers.recv() => pending = Some(t),
                _ = shared.wake.notified() => pending = Some(Trigger::Now),
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_pass {
                        pending = Some(Trigger::Now);
                    }
                }
            }
            if pending.is_none() {
                continue;
            }
        }
        // Coalesce everything already queued, then wait as long as the
        // most urgent trigger allows: a file still being written is read
        // once, finished; a `Now` ends the wait.
        while let Ok(t) = triggers.try_recv() {
            pending = pending.max(Some(t));
        }
        let mut until = Instant::now() + pending.map_or(Duration::ZERO, Trigger::debounce);
        while Instant::now() < until {
            tokio::select! {
                _ = shutdown.cancelled() => break 'run,
                _ = tokio::time::sleep_until(until) => {}
                Some(t) = triggers.recv() => until = until.min(Instant::now() + t.debounce()),
            }
        }
        while triggers.try_recv().is_ok() {}
        pending = None;

        // Connect (again) when needed: the engine may be absent at start,
        // or gone since the last pass.
        if engine.is_none() {
            if Instant::now() < reconnect_at {
                next_pass = reconnect_at;
                continue;
            }
            tick();
            let connected = match tokio::time::timeout(
                CONNECT_TIMEOUT,
                Engine::connect(config.strategy, &config.instance, &config.writer),
            )
            .await
            {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "Docker at {} did not answer within {CONNECT_TIMEOUT:?}",
                    engine::docker_host()
                )),
            };
            match connected {
                Ok(mut e) => {
                    tracing::info!(strategy = %e.strategy.kind(), "connected to Docker");
                    e.watch = watchers.child_token();
                    tokio::spawn(watch::watch_docker(
                        e.docker.clone(),
                        config.instance.clone(),
                        watch::DockerSinks {
                            triggers: triggers_tx.clone(),
                            counters: counters.clone(),
                            shared: shared.clone(),
                        },
                        e.watch.clone(),
                    ));
                    engine = Some(e);
                }
                Err(error) => {
                    tracing::error!(%error, retry_in_ms = reconnect_delay.as_millis() as u64, "Docker engine unreachable");
                    shared.status.write().expect("status lock").engine_error = Some(error);
                    reconnect_at = Instant::now() + reconnect_delay;
                    next_pass = reconnect_at;
                    reconnect_delay = (reconnect_delay * 2).min(RECONNECT_MAX);
                    continue;
                }
            }
        }
        let current = engine.as_mut().expect("connected above");
        tick();
        let result = match tokio::time::timeout(
            PASS_TIMEOUT,
            pass(
                &config,
                current,
                &store,
                &mut scheduler,
                &mut prunes,
                &shared,
            ),
        )
        .await
        {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("the pass did not finish within {PASS_TIMEOUT:?}")),
        };
        match result {
            Ok(wake_in) => {
                next_pass = Instant::now() + wake_in.min(config.resync);
                reconnect_delay = RECONNECT_FIRST;
                if !shared.ready.swap(true, Ordering::Relaxed) {
                    tracing::info!("first full pass done; ready");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            Err(error) => {
                shared.metrics.docker_errors.inc();
                tracing::error!(%error, retry_in_ms = reconnect_delay.as_millis() as u64, "pass failed; reconnecting");
                shared.status.write().expect("status lock").engine_error = Some(error);
                // The event stream of a dead engine only fails again and
                // again; the reconnect starts a new one.
                if let Some(old) = engine.take() {
                    old.watch.cancel();
                }
                reconnect_at = Instant::now() + reconnect_delay;
                next_pass = reconnect_at;
                reconnect_delay = (reconnect_delay * 2).min(RECONNECT_MAX);
            }
        }
    }

    let queued = scheduler.in_flight().len();
    tracing::info!(
        queued,
        "shutting down: starting no new action, letting running ones finish"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    watchers.cancel();
    if tokio::time::timeout(config.grace, scheduler.drain())
        .await
        .is_err()
    {
        tracing::warn!(
            abandoned = scheduler.in_flight().len(),
            "grace period over; abandoning running actions (the next start converges them)"
        );
    }
    if let Err(e) = store.flush() {
        tracing::warn!(error = %e, "could not flush the state store");
    }
    api_stop.cancel();
    for server in servers {
        // An idle keep-alive client must not hold the exit up.
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("stopped");
    Ok(())
}

/// The connection and what it decided.
struct Engine {
    docker: Docker,
    strategy: AnyStrategy,
    /// Our Swarm node, to ask on every pass whether it leads.
    swarm_node: Option<String>,
    /// Stops this connection's event watcher.
    watch: CancellationToken,
}

impl Engine {
    async fn connect(
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

/// One pass: observe, plan, dispatch. Returns how soon the loop should
/// look again (the earliest backoff expiry).
async fn pass(
    config: &DaemonConfig,
    engine: &mut Engine,
    store: &Arc<dyn Store>,
    scheduler: &mut Scheduler,
    prunes: &mut Prunes,
    shared: &Shared,
) -> Result<Duration, reconcile::PassError> {
    let started = std::time::Instant::now();
    for done in scheduler.reap(&shared.metrics) {
        // Only what was really removed counts against the window, once;
        // a removal the operator confirmed does not.
        let dispatched = prunes.removing.remove(&done.name);
        if let (ActionKind::Remove, true, Some(Some(fleet))) = (done.kind, done.ok, dispatched) {
            prunes.window.record(Instant::now(), fleet, done.name);
        }
    }
    // What this pass sees of an asset with an action running may be from
    // before or after that action: it is left alone, and the action's end
    // triggers the pass that decides on it.
    let busy = scheduler.in_flight();
    let follower = engine.is_standby().await;
    let mut pass_config = config.pass.clone();
    pass_config.plan.recent = prunes.window.recent(Instant::now());
    pass_config.plan.confirmed = shared.confirmed_removals();
    pass_config.plan.retry = shared.retries.lock().expect("retry lock").clone();
    let reconcile::Observation {
        desired,
        actual,
        applied,
        plan,
    } = reconcile::observe(&pass_config, &engine.strategy, store.as_ref()).await?;
    shared.metrics.passes.inc();
    let mut wake_in = config.resync;
    let observed = Instant::now();
    prunes.settle.observe(&plan, observed);
    scheduler.cancel_stale_removals(&plan);
    shared.set_confirmable(&plan);
    let fleet = actual.len().max(applied.len());
    // On Swarm the leader rule already makes one writer, and a rollback
    // or a failover rewrites stamps without a fight: only the local engine
    // needs the writers' rule.
    let (writer_conflict, other_writers) = match engine.strategy.kind() {
        crate::strategy::StrategyKind::Local => writers(&config.writer, &actual, shared),
        crate::strategy::StrategyKind::Swarm => (None, vec![]),
    };
    let standby = follower || writer_conflict.is_some();
    if !standby {
        // A running action writes its own record; adopting one for it from
        // a listing taken mid-action would only race it.
        let settled = applied.iter().filter(|(name, _)| !busy.contains(*name));
        reconcile::persist_adopted(
            store.as_ref(),
            &settled.map(|(n, r)| (n.clone(), r.clone())).collect(),
        );
        reconcile::persist_moves(store.as_ref(), &desired, &applied);
        let settled_plan = crate::plan::Plan {
            unchanged: plan
                .unchanged
                .iter()
                .filter(|n| !busy.contains(*n))
                .cloned()
                .collect(),
            ..Default::default()
        };
        reconcile::persist_resolved(store.as_ref(), &settled_plan, &applied);
        // SIGHUP, or an engine event that may have brought a missing
        // dependency (a network, volume or image created): retry now.
        let retry_now = shared.retry_failed.swap(false, Ordering::Relaxed);
        let now = now_ms();
        for action in &plan.actions {
            if busy.contains(&action.name) {
                continue;
            }
            let quiet_for = applied
                .get(&action.name)
                .and_then(|r| r.source.as_deref())
                .and_then(|source| quiet_for(&config.pass.manifests.join(source)));
            if let Some(wait) = prunes.settle.wait(&action.name, observed, quiet_for) {
                wake_in = wake_in.min(wait);
                continue;
            }
            let record = applied.get(&action.name).cloned().unwrap_or_default();
            if let Some(wait) = reconcile::backing_off(action, &record, now) {
                if !retry_now {
                    wake_in = wake_in.min(wait);
                    continue;
                }
            }
            if action.kind() == ActionKind::Hold {
                // A hold only records why, once per reason: done here, so
                // the status below already shows it held, not updating.
                if record.last_error.as_deref() != Some(action.reason().as_str()) {
                    reconcile::execute(action.clone(), record, &engine.strategy, store.as_ref())
                        .await;
                    count_action(&shared.metrics, ActionKind::Hold, true);
                }
                continue;
            }
            if action.kind() == ActionKind::Remove {
                let confirmed = shared.take_confirmed(&action.name);
                let fleet = (!confirmed).then_some(fleet);
                prunes.removing.insert(action.name.clone(), fleet);
            }
            // A retry asked for is used up by the deploy it causes.
            shared
                .retries
                .lock()
                .expect("retry lock")
                .remove(&action.name);
            scheduler.dispatch(
                action.clone(),
                record,
                engine.strategy.clone(),
                store.clone(),
            );
        }
    }
    if !standby {
        verify_changed_in_place(&desired, &plan, store, scheduler, engine, shared);
    }
    let in_flight = scheduler.in_flight();
    let assets = status::from_pass(&desired, &actual, &store.all(), &plan, &in_flight, standby);
    shared.metrics.set_phases(&assets);
    shared
        .metrics
        .pass_seconds
        .observe(started.elapsed().as_secs_f64());
    let role = match (&engine.swarm_node, standby) {
        (_, true) => "standby",
        (None, false) => "local",
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
        writer_conflict,
        other_writers,
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

/// Deploys again the assets changed in place by hand that this pass has
/// no action for: the deploy compares what no listing shows (limits).
fn verify_changed_in_place(
    desired: &crate::desired::Desired,
    plan: &crate::plan::Plan,
    store: &Arc<dyn Store>,
    scheduler: &mut Scheduler,
    engine: &Engine,
    shared: &Shared,
) {
    let planned: BTreeSet<&AssetName> = plan.actions.iter().map(|a| &a.name).collect();
    for name in shared.take_verify() {
        let Some(want) = desired.assets.get(&name) else {
            continue;
        };
        if planned.contains(&name) {
            continue;
        }
        let action = crate::plan::Action {
            name: name.clone(),
            op: crate::plan::Op::Repair {
                desired: want.clone(),
                reason: "a container was changed in place (docker update)".into(),
            },
        };
        let record = store.get(&name).unwrap_or_default();
        scheduler.dispatch(action, record, engine.strategy.clone(), store.clone());
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

/// The prune guard's clocks (see [`crate::prune`]).
struct Prunes {
    settle: Settle,
    window: PruneWindow,
    /// Removals under way, with the fleet size when they were
    /// dispatched (the window's base if it opens); `None` when the
    /// operator confirmed it: not counted.
    removing: BTreeMap<AssetName, Option<usize>>,
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

/// An action the scheduler ran to its end.
struct Finished {
    name: AssetName,
    kind: ActionKind,
    ok: bool,
}

/// Runs actions on their own tasks: at most `limit` at once, one per asset.
struct Scheduler {
    permits: Arc<Semaphore>,
    /// Assets with an action queued or running; an asset is in it from
    /// dispatch until its result is recorded.
    in_flight: Arc<Mutex<BTreeSet<AssetName>>>,
    /// `None`: the action never started (shutdown came first).
    tasks: JoinSet<Option<Finished>>,
    /// Finished actions ask for a pass: the world changed (at once when
    /// nothing else is queued, coalesced otherwise).
    done: mpsc::Sender<Trigger>,
    /// Once cancelled, queued actions are dropped instead of started;
    /// running ones finish.
    stop: CancellationToken,
    /// Removals waiting for a permit. A pass that no longer plans one
    /// (its file came back, a file turned invalid) cancels it: the guards
    /// were checked at dispatch, and must still hold when it starts.
    waiting_removals: Arc<Mutex<BTreeMap<AssetName, CancellationToken>>>,
}

impl Scheduler {
    fn new(limit: usize, done: mpsc::Sender<Trigger>, stop: CancellationToken) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            in_flight: Default::default(),
            tasks: JoinSet::new(),
            waiting_removals: Default::default(),
            done,
            stop,
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
        let stop = self.stop.clone();
        let waiting = self.waiting_removals.clone();
        if action.kind() == ActionKind::Remove {
            waiting
                .lock()
                .expect("waiting lock")
                .insert(action.name.clone(), CancellationToken::new());
        }
        self.tasks.spawn(async move {
            let name = action.name.clone();
            let kind = action.kind();
            let permit = tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                permit = permits.acquire_owned() => permit.ok(),
            };
            let dropped = waiting
                .lock()
                .expect("waiting lock")
                .remove(&name)
                .is_some_and(|t| t.is_cancelled());
            if dropped {
                tracing::info!(asset = %name, "removal no longer planned; dropped before it started");
            }
            let result = match permit {
                // Stopping: the next start plans this asset again.
                None => None,
                // A later pass no longer plans this removal.
                Some(_) if dropped => None,
                Some(permit) => {
                    let outcome =
                        reconcile::execute(action, record, &strategy, store.as_ref()).await;
                    drop(permit);
                    Some(Finished {
                        name: name.clone(),
                        kind,
                        ok: outcome.error.is_none(),
                    })
                }
            };
            let idle = {
                let mut in_flight = in_flight.lock().expect("in-flight lock");
                in_flight.remove(&name);
                in_flight.is_empty()
            };
            if result.is_some() {
                // The last action of a batch asks for a pass at once (status,
                // follow-ups); while others are still queued, a pass could
                // not dispatch them anyway, so finishing ones coalesce into
                // about one pass a second instead of one each.
                let _ = done.try_send(if idle { Trigger::Now } else { Trigger::Later });
            }
            result
        });
    }

    /// Cancels the waiting removals `plan` no longer asks for.
    fn cancel_stale_removals(&self, plan: &crate::plan::Plan) {
        let planned: BTreeSet<&AssetName> = plan
            .actions
            .iter()
            .filter(|a| a.kind() == ActionKind::Remove)
            .map(|a| &a.name)
            .collect();
        for (name, token) in self.waiting_removals.lock().expect("waiting lock").iter() {
            if !planned.contains(name) {
                token.cancel();
            }
        }
    }

    /// Collects finished tasks into the metrics; returns them.
    fn reap(&mut self, metrics: &Metrics) -> Vec<Finished> {
        let mut finished = Vec::new();
        while let Some(result) = self.tasks.try_join_next() {
            if let Ok(Some(done)) = result {
                count_action(metrics, done.kind, done.ok);
                finished.push(done);
            }
        }
        finished
    }

    async fn drain(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
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
