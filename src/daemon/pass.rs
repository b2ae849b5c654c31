//! One pass of the daemon: observe, plan, offer the actions to the
//! scheduler, record holds, publish the status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Daemon, FILE_QUIET, PRUNE_SETTLE};
use crate::core::plan::{Action, ActionKind};
use crate::core::standing::{decide, Facts, Role, Why};
use crate::daemon::api::Shared;
use crate::daemon::metrics::{ActionLabels, Metrics};
use crate::daemon::prune::PruneWindow;
use crate::daemon::scheduler::{Admission, Scheduler, SchedulerConfig};
use crate::daemon::watch::Trigger;
use crate::engine::strategy::writer::{self, Writer};
use crate::engine::strategy::{ActualAsset, AnyStrategy, StrategyKind};
use crate::input::revision::{Order, Revision};
use crate::model::spec::AssetName;
use crate::reconcile::{self, pipeline, Observation, PassConfig};
use crate::report::status::{self, StatusReport};
use crate::store::{now_ms, AppliedRecord};

/// An action the scheduler ran to its end.
pub(super) struct Finished {
    kind: ActionKind,
    ok: bool,
}

/// The prune guard's window and the removals under way.
pub(super) struct Prunes {
    pub(super) window: PruneWindow,
    /// Removals under way, with the fleet size when they were
    /// dispatched (the window's base if it opens); `None` when the
    /// operator confirmed it: not counted.
    pub(super) removing: BTreeMap<AssetName, Option<usize>>,
}

/// Whether this daemon writes, and who else does.
struct Standing {
    role: Role,
    writer_conflict: Option<String>,
    other_writers: Vec<String>,
    /// Why this lease holder does not apply its copy of the manifests.
    revision_hold: Option<String>,
    /// The revision of this daemon's manifests copy.
    revision: Option<String>,
}

impl Daemon {
    /// One pass: observe, plan, dispatch, publish the status. Returns how
    /// soon the loop should look again (the earliest backoff expiry).
    pub(super) async fn pass(&mut self) -> Result<Duration, reconcile::PassError> {
        let started = std::time::Instant::now();
        self.reap_finished();
        // What this pass sees of an asset with an action running may be
        // from before or after that action: it is left alone, and the
        // action's end triggers the pass that decides on it.
        let busy = self.scheduler.in_flight();
        let connection = self.connection.as_ref().expect("connected before a pass");
        let strategy = connection.strategy.clone();
        let swarm = connection.swarm_node.is_some();
        let follower = self.lease_standby(swarm);
        let config = self.pass_config();
        // A resync (due on the moved-tag check's clock) reads the whole
        // engine again, not the view the events keep: a lost event costs
        // at most a resync of latency.
        if config.check_moved_tags {
            strategy.relist();
        }
        // When this pass began reading the world: an engine event after
        // it may not be in what it read.
        let observed = Instant::now();
        let obs = reconcile::observe(&config, &strategy, self.store.as_ref()).await?;
        self.log_invalid_files(&obs.desired);
        *self.shared.published.planner.write().expect("planner lock") =
            Some(crate::daemon::api::Planner {
                config,
                strategy: strategy.clone(),
            });
        self.shared.published.metrics.passes.inc();
        if obs.walked {
            self.shared.published.metrics.manifest_walks.inc();
        }
        let revision = obs.revision.clone();
        let mut standing = self.standing(&strategy, &obs.actual).await;
        let mut facts = Facts {
            swarm,
            lease_mine: !follower,
            elder_writer: standing.writer_conflict.clone(),
            revision_hold: None,
            lease_recorded: true,
        };
        if !follower {
            standing.revision_hold = self.revision_guard(&revision);
            facts.revision_hold = standing.revision_hold.clone();
        }
        standing.role = decide(&facts);
        // The lease takes this pass's revision only from a daemon that
        // would write (IO, so asked here and fed back).
        if standing.role.writes() {
            if let Some(lease) = &self.lease {
                facts.lease_recorded = lease.record(revision.label()).await;
                standing.role = decide(&facts);
            }
        }
        let standby = !standing.role.writes();
        // A removal settles while this daemon writes: one that a change
        // of writer causes waits its settle time from the takeover.
        let removals = match standby {
            true => BTreeSet::new(),
            false => obs
                .plan
                .actions
                .iter()
                .filter(|a| a.kind() == ActionKind::Remove)
                .map(|a| a.name.clone())
                .collect(),
        };
        self.scheduler.plan_settling(removals, observed);
        self.shared
            .hints
            .set_converged(obs.plan.actions.is_empty() && obs.plan.stack.is_empty());
        self.shared.set_confirmable(&obs.plan);
        let mut wake_in = self.config.resync;
        if !standby {
            wake_in = self.carry_out(&obs, &strategy, busy, observed).await;
        } else if standing.writer_conflict.is_some() {
            // The elder's stop sends no engine event: ask it again soon,
            // as a lease follower would.
            wake_in = wake_in.min(WRITER_LOOK);
        }
        // A window opening or closing sends no engine event.
        if let Some(at) = obs.plan.next_window_change {
            let until = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            wake_in = wake_in.min(until + WINDOW_MARGIN);
        }
        standing.revision = Some(revision.short());
        self.publish(&obs, &standing, &strategy, started);
        // A standby carries out nothing, so the pipeline's flush does not
        // run: what the API wrote meanwhile (history, retries) is made
        // durable here. Nothing to write costs nothing.
        if let Err(e) = self.store.flush() {
            tracing::warn!(error = %e, "could not flush the state store");
        }
        Ok(wake_in)
    }

    /// This writer's part of a pass: the pipeline with the scheduler as
    /// its executor. Returns how soon to look again.
    async fn carry_out(
        &mut self,
        obs: &Observation,
        strategy: &AnyStrategy,
        busy: BTreeSet<AssetName>,
        observed: Instant,
    ) -> Duration {
        end_pins(&self.shared, &obs.ended_pins);
        let store = self.store.clone();
        let pass_config = self.config.pass.clone();
        let mut dispatcher = Dispatcher {
            daemon: self,
            busy,
            observed,
        };
        let carried =
            pipeline::carry_out(&pass_config, obs, strategy, store.as_ref(), &mut dispatcher).await;
        log_stack(&carried.stack);
        // A dependency still coming up becomes ready by time passing (its
        // monitor window), which no engine event announces.
        match obs.plan.waits_for_a_dependency() {
            true => carried.ran.min(DEPENDENCY_LOOK),
            false => carried.ran,
        }
    }

    /// One WARN per invalid manifest file and per change of its errors,
    /// each naming the position; one INFO when it is valid again.
    fn log_invalid_files(&mut self, desired: &crate::input::desired::Desired) {
        let now: BTreeMap<String, Vec<String>> = desired
            .invalid_files
            .iter()
            .map(|(file, errors)| (file.clone(), errors.iter().map(|e| e.to_string()).collect()))
            .collect();
        for (file, errors) in &now {
            if self.logged_invalid.get(file) != Some(errors) {
                tracing::warn!(
                    file = %file,
                    errors = %errors.join("; "),
                    "invalid manifest: what it declared is left as it runs, and nothing is removed until it is fixed"
                );
            }
        }
        for file in self.logged_invalid.keys().filter(|f| !now.contains_key(*f)) {
            tracing::info!(file = %file, "manifest valid again (or gone)");
        }
        self.logged_invalid = now;
    }

    /// The pass configuration with what the loop keeps between passes:
    /// the prune window, the operator's confirmations and retries.
    fn pass_config(&mut self) -> PassConfig {
        let mut config = self.config.pass.clone();
        config.plan.recent = self.prunes.window.recent(Instant::now());
        config.plan.confirmed = self.shared.confirmed_removals();
        config.plan.retry = self
            .shared
            .requests
            .retries
            .lock()
            .expect("retry lock")
            .clone();
        config.plan.override_windows.names = self
            .shared
            .requests
            .syncs
            .lock()
            .expect("sync lock")
            .clone();
        config.plan.changed_in_place = self.shared.hints.take_verify();
        let due = self
            .tags_checked
            .is_none_or(|at| at.elapsed() >= self.config.resync);
        config.check_moved_tags = due;
        if due {
            self.tags_checked = Some(Instant::now());
        }
        config
    }

    /// Counts finished actions; only what was really removed counts
    /// against the prune window, once, and a removal the operator
    /// confirmed does not.
    fn reap_finished(&mut self) {
        for (name, done) in self.scheduler.reap() {
            count_action(&self.shared.published.metrics, done.kind, done.ok);
            let dispatched = self.prunes.removing.remove(&name);
            if let (ActionKind::Remove, true, Some(Some(fleet))) = (done.kind, done.ok, dispatched)
            {
                self.prunes.window.record(Instant::now(), fleet, name);
            }
        }
    }

    /// Who else writes this instance. On Swarm the leader rule already
    /// makes one writer, and a rollback or a failover rewrites stamps
    /// without a fight: only the local engine needs the writers' rule.
    async fn standing(&self, strategy: &AnyStrategy, actual: &[ActualAsset]) -> Standing {
        let (writer_conflict, other_writers) = match strategy.kind() {
            StrategyKind::Local => {
                let live = live_writers(&self.config.instance, &self.config.writer, actual).await;
                writers(&self.config.writer, actual, &live, &self.shared)
            }
            StrategyKind::Swarm => (None, vec![]),
        };
        Standing {
            // Decided once every fact is in (`core::standing::decide`).
            role: Role::Standby(Why::Follower),
            writer_conflict,
            other_writers,
            revision_hold: None,
            revision: None,
        }
    }

    /// Offers every planned action to the scheduler; returns how soon the
    /// earliest one refused for now may go.
    async fn dispatch(
        &mut self,
        obs: &Observation,
        strategy: &AnyStrategy,
        busy: &BTreeSet<AssetName>,
        observed: Instant,
    ) -> Duration {
        // SIGHUP, or an engine event that may have brought a missing
        // dependency (a network, volume or image created): retry now.
        let retry_now = self.shared.hints.take_retry_failed();
        let fleet = obs.actual.len().max(obs.applied.len());
        let now = now_ms();
        let mut wake_in = self.config.resync;
        for action in &obs.plan.actions {
            // Busy when the pass began: what it read of the asset may be
            // from before its action ended (a container read as `created`
            // before the create's start), and the action's end brings a
            // pass of its own. The scheduler only knows about now.
            if busy.contains(&action.name) {
                continue;
            }
            let record = obs.applied.get(&action.name).cloned().unwrap_or_default();
            let backoff = reconcile::backing_off(action, &record, now).filter(|_| !retry_now);
            // Stopped a moment ago: the engine may be restarting it.
            let stops = &self.shared.hints.stops;
            let restarting = (action.kind() == ActionKind::Repair)
                .then(|| stops.hold(&action.name, observed.into_std(), std::time::Instant::now()))
                .flatten();
            let manifests = &self.config.pass.manifests;
            let quiet = || {
                record
                    .source
                    .as_deref()
                    .and_then(|s| quiet_for(&manifests.join(s)))
            };
            match self
                .scheduler
                .admit(&action.name, backoff.max(restarting), quiet, observed)
            {
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
            // A retry or a sync asked for is used up by the deploy it
            // causes.
            let retries = &self.shared.requests.retries;
            retries.lock().expect("retry lock").remove(&action.name);
            self.shared
                .requests
                .syncs
                .lock()
                .expect("sync lock")
                .remove(&action.name);
            if let Some((_, why)) = obs
                .plan
                .window_overrides
                .iter()
                .find(|(n, _)| *n == action.name)
            {
                reconcile::record_window_override(self.store.as_ref(), &action.name, why, None);
            }
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
        count_action(&self.shared.published.metrics, ActionKind::Hold, true);
    }

    /// Hands `action` to the scheduler (a no-op if its asset is busy).
    fn run_action(&mut self, action: Action, record: AppliedRecord, strategy: &AnyStrategy) {
        let name = action.name.clone();
        let kind = action.kind();
        let strategy = strategy.clone();
        let store = self.store.clone();
        let shared = self.shared.clone();
        let notifier = self.notifier.clone();
        let work = async move {
            let outcome = reconcile::execute(action, record, &strategy, store.as_ref()).await;
            let events: Vec<_> = outcome
                .hooks
                .iter()
                .map(|run| {
                    let kind = crate::daemon::events::EventKind::Hook;
                    shared
                        .published
                        .events
                        .note(&outcome.name, kind, run.clone(), now_ms())
                })
                .collect();
            notifier.offer(&events);
            Finished {
                kind,
                ok: outcome.error.is_none(),
            }
        };
        self.scheduler.dispatch(name, work);
    }

    /// The status the API serves after this pass, and its metrics.
    fn publish(
        &self,
        obs: &Observation,
        standing: &Standing,
        strategy: &AnyStrategy,
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
            !standing.role.writes(),
        );
        let metrics = &self.shared.published.metrics;
        metrics.set_phases(&assets);
        metrics.set_windows(&obs.plan.windows);
        metrics
            .pass_seconds
            .observe(started.elapsed().as_secs_f64());
        self.announce(&assets, !standing.role.writes());
        let role = standing.role.as_str();
        let seen = StatusReport::of_pass(
            crate::report::status::Source::Daemon,
            strategy.kind(),
            &obs.desired,
            &obs.plan,
            assets,
        );
        *self.shared.published.status.write().expect("status lock") = StatusReport {
            role: Some(role.into()),
            ready: true,
            writer_conflict: standing.writer_conflict.clone(),
            other_writers: standing.other_writers.clone(),
            lease: self.lease_view(),
            revision: standing.revision.clone(),
            revision_hold: standing.revision_hold.clone(),
            ..seen
        };
        tracing::debug!(
            actions = obs.plan.actions.len(),
            in_flight = in_flight.len(),
            ms = started.elapsed().as_millis() as u64,
            "pass"
        );
    }
}

impl Daemon {
    /// The revision guard: after taking the lease from another writer,
    /// this daemon applies its copy only when it is not behind what that
    /// writer applied; one that cannot be ordered waits for the
    /// operator. Returns why it holds, when it does.
    fn revision_guard(&mut self, mine: &Revision) -> Option<String> {
        if let Some(takeover) = self.lease.as_ref().and_then(|l| l.take_takeover()) {
            let recorded = takeover.revision.as_deref().and_then(Revision::from_label);
            self.guard = recorded.map(|r| (takeover.from, r));
        }
        let (from, applied) = self.guard.as_ref()?;
        let dir = &self.config.pass.manifests;
        let why = match mine.compare(applied, dir) {
            Order::Same | Order::Newer => None,
            Order::Unordered if self.shared.requests.takeover_confirmed.swap(false, Ordering::Relaxed) => {
                tracing::warn!(applied = %applied, here = %mine, "the operator confirmed applying this copy");
                None
            }
            Order::Older => Some(format!(
                "manifests here are at {mine}, behind the applied {applied} (by {from}); waiting for the copy to catch up"
            )),
            Order::Unordered => Some(format!(
                "manifests here are at {mine}, which cannot be ordered against the applied {applied} (by {from}); `assetd takeover --confirm` applies them"
            )),
        };
        match &why {
            None => self.guard = None,
            Some(why) if self.last_revision_hold.as_ref() != Some(why) => {
                tracing::error!(reason = %why, "holding: not applying this copy of the manifests");
            }
            Some(_) => {}
        }
        self.last_revision_hold.clone_from(&why);
        why
    }

    /// The lease as this daemon sees it, also as metrics.
    fn lease_view(&self) -> Option<crate::engine::lease::LeaseView> {
        let view = self.lease.as_ref()?.view();
        let metrics = &self.shared.published.metrics;
        metrics.lease_held.set(i64::from(view.mine));
        let counted = metrics.lease_takeovers.get();
        if view.takeovers > counted {
            metrics.lease_takeovers.inc_by(view.takeovers - counted);
        }
        metrics
            .lease_holder_missing
            .set(view.missing_secs.unwrap_or(0) as i64);
        Some(view)
    }

    /// Records and posts the phase and health changes since the last
    /// published status. Only the writer speaks (on Swarm every manager's
    /// daemon sees the same changes), and not of its first pass, which
    /// changes nothing.
    fn announce(&self, assets: &[status::AssetStatus], standby: bool) {
        let before = self.shared.published.status.read().expect("status lock");
        if standby || before.last_pass_ms.is_none() || before.role.as_deref() == Some("standby") {
            return;
        }
        let events = self
            .shared
            .published
            .events
            .record(&before.assets, assets, None, now_ms());
        drop(before);
        for event in &events {
            tracing::info!(asset = %event.asset, event = ?event.event, reason = event.reason.as_deref().unwrap_or_default(), "event");
            if event.event == crate::daemon::events::EventKind::RolledBack {
                self.shared.published.metrics.rollbacks.inc();
            }
        }
        self.notifier.offer(&events);
    }
}

/// How often a pass looks again while an asset waits for a dependency
/// that is still coming up.
const DEPENDENCY_LOOK: Duration = Duration::from_secs(1);

/// After a window's change: its minute has begun on every clock.
const WINDOW_MARGIN: Duration = Duration::from_millis(200);

/// How often a daemon that gives way to another writer asks whether it
/// still runs: the lease's renewal period.
const WRITER_LOOK: Duration = Duration::from_secs(2);

/// The scheduler of the daemon's actions. A finished action asks for a
/// pass: the last of a batch at once (status, follow-ups); while others
/// are still queued a pass could not dispatch them anyway, so finishing
/// ones coalesce into about one pass a second instead of one each.
pub(super) fn new_scheduler(
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

/// What the pass's stack writes did, in the log (the daemon has no report).
fn log_stack(done: &[reconcile::StackOutcome]) {
    for outcome in done {
        match &outcome.error {
            None => tracing::info!(action = %outcome.action, "stack object converged"),
            Some(error) => tracing::warn!(action = %outcome.action, %error, "stack object failed"),
        }
    }
}

/// The daemon's executor: actions are offered to the scheduler, which
/// runs them in the background (`reconcile::pipeline`).
struct Dispatcher<'a> {
    daemon: &'a mut Daemon,
    /// In flight when the pass began: left to their actions.
    busy: BTreeSet<AssetName>,
    observed: Instant,
}

impl pipeline::Executor<AnyStrategy> for Dispatcher<'_> {
    /// How soon the earliest action refused for now may go.
    type Ran = Duration;
    const WAITS: bool = false;

    fn busy(&self) -> BTreeSet<AssetName> {
        self.busy.clone()
    }

    async fn run(&mut self, obs: &Observation, strategy: &AnyStrategy) -> Duration {
        self.daemon
            .dispatch(obs, strategy, &self.busy, self.observed)
            .await
    }
}

/// Whether another daemon writes this instance and this one must give
/// way (and why, for status), and the younger ones seen writing. Logged
/// when it changes: an operator must give the daemons their own
/// `--instance`.
fn writers(
    me: &Writer,
    actual: &[ActualAsset],
    live: &writer::Live,
    shared: &Shared,
) -> (Option<String>, Vec<String>) {
    let conflict = writer::elder_writer(actual, me, live).map(|(name, stamp, started_ms)| {
        let answers = match live.contains_key(&stamp.writer.id) {
            true => "; it runs and answers on its socket",
            false => "",
        };
        format!(
            "another assetd writes instance objects ({}, started {} ms before this one{answers}; it wrote {name}): this one stands by and writes nothing; give each daemon its own --instance",
            stamp.writer.id,
            me.started_ms.saturating_sub(started_ms)
        )
    });
    let younger: Vec<String> = writer::younger_writers(actual, me)
        .into_iter()
        .map(|s| s.writer.id.clone())
        .collect();
    let before = shared.published.status.read().expect("status lock").clone();
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

/// Asks each other writer of this host whose stamp is on an object of
/// the instance whether it still runs, on its state dir's socket. One
/// that does not answer in time (stopped, moved, or on another
/// `--socket`) is not counted as live.
async fn live_writers(instance: &str, me: &Writer, actual: &[ActualAsset]) -> writer::Live {
    let mut live = writer::Live::new();
    for other in writer::others_here(actual, me) {
        let Some(dir) = other.state_dir_here() else {
            continue;
        };
        let socket = dir.join("assetd.sock");
        let asked = tokio::time::timeout(
            Duration::from_secs(1),
            crate::daemon::api::fetch_writer(&socket),
        )
        .await;
        if let Ok(Ok(answer)) = asked {
            if answer.instance == instance && answer.writer.id == other.id {
                live.insert(other.id.clone(), answer.writer.started_ms);
            }
        }
    }
    live
}

/// Forgets the rollback pins whose manifest changed since: the next
/// manifest change unpins.
fn end_pins(shared: &Shared, ended: &[AssetName]) {
    if ended.is_empty() {
        return;
    }
    let _serial = shared.control_lock.lock().expect("control lock");
    let store = shared.store.as_ref();
    let mut pins = crate::store::history::load_pins(store);
    pins.retain(|name, _| !ended.contains(name));
    tracing::info!(assets = ?ended, "the manifest changed: rollback pins end");
    if let Err(e) = crate::store::history::save_pins(store, &pins) {
        tracing::warn!(error = %e, "could not end the rollback pins");
    }
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
