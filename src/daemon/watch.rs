//! Triggers: the manifests directory, Docker events and the resync timer.
//!
//! Triggers are hints, never data: each one only asks for a full pass, and
//! the pass recomputes everything from listings. So a watcher may drop
//! events when its channel is full (one pending trigger is enough), and
//! a watcher that fails only costs latency until the next resync. The file
//! watcher also tells the manifest cache that the directory changed (or
//! may have), before it asks for the pass: a pass walks the directory
//! only then ([`crate::reconcile::ManifestCache`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::daemon::metrics::WatchCounters;
use crate::reconcile::ManifestCache;

/// How soon a pass should follow a trigger; a more urgent trigger that
/// arrives while waiting cuts the wait short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// A container stopped: what usually follows settles it (`destroy`
    /// for `docker rm -f`, which is `Now`; the restart policy's start
    /// after a crash, which needs nothing from us). Wait for it rather
    /// than race the engine over a container it is still handling. Also an
    /// action finishing while others are queued: their passes coalesce.
    Later,
    /// Something that may still be in progress (a file being written):
    /// wait a short debounce so the pass sees the finished state.
    Soon,
    /// Something complete (a file closed after writing, renamed into
    /// place, a container destroyed, the resync timer): run a pass at once.
    Now,
}

impl Trigger {
    /// How long a pass waits after this trigger for more to arrive.
    pub fn debounce(self) -> Duration {
        match self {
            Trigger::Later => Duration::from_secs(1),
            Trigger::Soon => Duration::from_millis(150),
            Trigger::Now => Duration::ZERO,
        }
    }
}

/// How often the directory's existence and identity are checked, on top of
/// the events: notify cannot report a directory that appears where none
/// was watched, or one replaced by another under the same name.
const RECHECK: Duration = Duration::from_millis(500);

/// A second look after a directory appears inside the watched tree: notify
/// adds its watch only after reporting it, so files written into it in
/// between produce no event of their own.
const FOLLOW_UP: Duration = Duration::from_millis(250);

/// At most one warning about lost file events per this long: one burst of
/// writes can overflow the queue many times over.
const LOST_EVENTS_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Keeps the warning about lost file events to one per burst.
#[derive(Default)]
struct LostEvents {
    last_warned: Option<std::time::Instant>,
}

impl LostEvents {
    /// Whether a loss seen at `now` is worth a warning.
    fn warn_now(&mut self, now: std::time::Instant) -> bool {
        if self
            .last_warned
            .is_some_and(|at| now.duration_since(at) < LOST_EVENTS_WARNING_EVERY)
        {
            return false;
        }
        self.last_warned = Some(now);
        true
    }
}

/// What one file event asks for.
#[derive(Clone, Copy, Debug)]
struct Hint {
    trigger: Trigger,
    /// A directory may have appeared (created, renamed or swapped in).
    structural: bool,
}

/// Classifies a file event; `None` for events that cannot change what a
/// pass reads.
fn classify(kind: &EventKind) -> Option<Hint> {
    let (trigger, structural) = match kind {
        // Closed after writing: the file is complete.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => (Trigger::Now, false),
        // Opens and reads change nothing, and every pass opens and reads
        // every manifest: reacting to them would make each pass trigger
        // the next, forever.
        EventKind::Access(_) => return None,
        // Renamed into place (an editor's save, a `..data` symlink swap)
        // or a new directory: complete, but maybe with content notify did
        // not see arrive.
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Create(CreateKind::Folder) => {
            (Trigger::Now, true)
        }
        EventKind::Remove(_) => (Trigger::Now, false),
        // Created, written to, chmod-ed: possibly still in progress.
        _ => (Trigger::Soon, false),
    };
    Some(Hint {
        trigger,
        structural,
    })
}

/// The paths whose events matter: the manifests directory as named, and
/// as resolved when the name is a symlink (git-sync's `--link`). The
/// parent's watch reports its other entries too; those are ignored.
struct Scope {
    named: PathBuf,
    resolved: Option<PathBuf>,
}

impl Scope {
    fn covers(&self, path: &Path) -> bool {
        path.starts_with(&self.named)
            || self
                .resolved
                .as_deref()
                .is_some_and(|r| path.starts_with(r))
    }
}

/// Watches `root` recursively, and its parent so that a directory that is
/// missing at start, or deleted and recreated, is picked up again.
pub async fn watch_manifests(
    root: PathBuf,
    cache: Option<Arc<ManifestCache>>,
    triggers: mpsc::Sender<Trigger>,
    counters: Arc<WatchCounters>,
    shutdown: CancellationToken,
) {
    // Event paths are absolute; compare them with an absolute root.
    let root = std::path::absolute(&root).unwrap_or(root);
    let scope = Arc::new(RwLock::new(Scope {
        named: root.clone(),
        resolved: None,
    }));
    let (events_tx, mut events_rx) = mpsc::channel::<Hint>(256);
    // Without a cache (none is kept) the watcher only triggers passes.
    let cache = cache.unwrap_or_default();
    let callback = on_file_event(scope.clone(), counters, cache.clone(), events_tx);
    let mut watcher = match notify::recommended_watcher(callback) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the file watcher; relying on the resync timer");
            return;
        }
    };
    let mut armed = Armed::default();
    let mut watched = false;
    let mut check = tokio::time::interval(RECHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut follow_up: Option<Instant> = None;
    loop {
        let rearmed = armed.rearm(&mut watcher, &root, &scope);
        // A watch that failed to be placed is no watch: passes walk.
        if rearmed || armed.root.is_some() != watched {
            watched = armed.root.is_some();
            cache.watching(watched);
        }
        if rearmed {
            // The directory (re)appeared or went: its content is new to us.
            let _ = triggers.try_send(Trigger::Now);
        }
        let follow_up_due = async {
            match follow_up {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(hint) = events_rx.recv() => {
                if hint.structural {
                    follow_up = Some(Instant::now() + FOLLOW_UP);
                }
                let _ = triggers.try_send(hint.trigger);
            }
            _ = follow_up_due => {
                follow_up = None;
                cache.changed();
                let _ = triggers.try_send(Trigger::Now);
            }
            _ = check.tick() => {}
        }
    }
}

/// The watcher's callback: classifies each event, warns (at most once a
/// burst) when events were lost, and hands hints to the watch loop.
fn on_file_event(
    scope: Arc<RwLock<Scope>>,
    counters: Arc<WatchCounters>,
    cache: Arc<ManifestCache>,
    events_tx: mpsc::Sender<Hint>,
) -> impl FnMut(notify::Result<notify::Event>) + Send + 'static {
    // Separate limits, so an overflow burst cannot hide a watcher error
    // (the inotify watch limit reached, say) that follows it.
    let (mut overflows, mut errors) = (LostEvents::default(), LostEvents::default());
    move |result: notify::Result<notify::Event>| {
        // An error or a rescan flag (inotify's queue overflowed) means
        // events may be lost: look at everything again.
        let rescan = Hint {
            trigger: Trigger::Now,
            structural: true,
        };
        let hint = match &result {
            Err(e) => {
                if errors.warn_now(std::time::Instant::now()) {
                    tracing::warn!(error = %e, "file watcher error; rescanning the manifests directory");
                }
                // A watch may be missing (the inotify limit): every pass
                // reads the directory from now on.
                cache.watching(false);
                rescan
            }
            Ok(event) if event.need_rescan() => {
                counters.file_overflows.fetch_add(1, Ordering::Relaxed);
                if overflows.warn_now(std::time::Instant::now()) {
                    tracing::warn!("file events were lost (inotify queue overflow); rescanning the manifests directory");
                }
                rescan
            }
            Ok(event) => {
                let Some(hint) = classify(&event.kind) else {
                    return;
                };
                let scope = scope.read().expect("scope lock");
                if !event.paths.iter().any(|p| scope.covers(p)) {
                    return;
                }
                hint
            }
        };
        counters.file_events.fetch_add(1, Ordering::Relaxed);
        // Before the trigger, so the pass it brings reads the directory.
        cache.changed();
        // Full channel: triggers are pending already, which is enough.
        let _ = events_tx.try_send(hint);
    }
}

/// A watched directory: its resolved path and its identity, so that a
/// directory deleted and recreated under the same name (a new inode the
/// old watch cannot see) is watched again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Watched {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Watched {
    fn resolve(path: &Path) -> Option<Self> {
        let path = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        meta.is_dir().then(|| Watched {
            dev: meta.dev(),
            ino: meta.ino(),
            path,
        })
    }
}

/// Which watches are in place.
#[derive(Default)]
struct Armed {
    root: Option<Watched>,
    parent: Option<PathBuf>,
    /// The last failure to watch the root, logged once rather than on
    /// every check.
    last_error: Option<String>,
}

impl Armed {
    /// Brings the watches in line with what exists; true when the root
    /// watch changed (established, replaced or lost).
    fn rearm(
        &mut self,
        watcher: &mut notify::RecommendedWatcher,
        root: &Path,
        scope: &RwLock<Scope>,
    ) -> bool {
        if self.parent.is_none() {
            if let Some(parent) = root.parent().filter(|p| p.is_dir()) {
                if watcher.watch(parent, RecursiveMode::NonRecursive).is_ok() {
                    self.parent = Some(parent.to_path_buf());
                }
            }
        }
        let current = Watched::resolve(root);
        if current == self.root {
            return false;
        }
        if let Some(old) = self.root.take() {
            // notify may have dropped the watch already (deleted directory).
            let _ = watcher.unwatch(&old.path);
            match &current {
                None => {
                    tracing::warn!(dir = %root.display(), "manifest directory disappeared; nothing is pruned while it is missing")
                }
                Some(_) => tracing::info!(dir = %root.display(), "manifest directory was replaced"),
            }
        }
        // Publish the new path before watching it, so its first events
        // pass the filter.
        scope.write().expect("scope lock").resolved = current.as_ref().map(|w| w.path.clone());
        let Some(current) = current else { return true };
        match watcher.watch(&current.path, RecursiveMode::Recursive) {
            Ok(()) => {
                tracing::info!(dir = %root.display(), resolved = %current.path.display(), "watching manifest directory");
                self.root = Some(current);
                self.last_error = None;
                true
            }
            Err(e) => {
                let message = e.to_string();
                if self.last_error.as_ref() != Some(&message) {
                    tracing::warn!(dir = %root.display(), error = %message, "cannot watch manifest directory; retrying");
                    self.last_error = Some(message);
                }
                false
            }
        }
    }
}

/// Container events that may mean drift on a managed container, and how
/// soon to look. `kill`, `die`, `oom` and `stop` open sequences (`docker
/// rm -f` is kill, die, destroy; a crash is die, then the restart policy's
/// start; `docker restart` is kill, die, stop, start): the pass waits for
/// the rest, or for a `Now` event ending it. A pass at `stop` would start
/// the container the engine is about to start itself: under a storm of
/// restarts, one needless write per restart.
fn container_event_urgency(action: &str) -> Option<Trigger> {
    match action {
        "destroy" | "pause" | "rename" | "update" => Some(Trigger::Now),
        "die" | "kill" | "oom" | "stop" => Some(Trigger::Later),
        // `health_status: unhealthy` and back: no drift, but the asset's
        // health changed, and status must say so within seconds.
        a if a.starts_with("health_status") => Some(Trigger::Soon),
        _ => None,
    }
}

/// A managed container's `die` with a non-zero exit code: its ID and
/// the code.
fn crash_of(event: &bollard::models::EventMessage, instance: &str) -> Option<(String, i64)> {
    use crate::engine::strategy::labels::{INSTANCE, MANAGED};
    if event.typ != Some(bollard::models::EventMessageTypeEnum::CONTAINER)
        || event.action.as_deref() != Some("die")
    {
        return None;
    }
    let actor = event.actor.as_ref()?;
    let attrs = actor.attributes.as_ref()?;
    let ours = attrs.get(MANAGED).map(String::as_str) == Some("true")
        && attrs.get(INSTANCE).map(String::as_str) == Some(instance);
    let code: i64 = attrs.get("exitCode")?.parse().ok()?;
    (ours && code != 0).then(|| (actor.id.clone().unwrap_or_default(), code))
}

/// How long after a `pause`, `stop` or `die` a second pass looks again.
const SECOND_LOOK: Duration = Duration::from_secs(1);

/// The engine announces a container's `pause` (and may announce its
/// `stop`, and its `die` before the network and mounts are torn down)
/// before the state its listings read is saved, so the pass the event
/// starts can still see it running: one more look a moment later makes
/// sure the change is seen, rather than at the next resync.
fn needs_a_second_look(event: &bollard::models::EventMessage) -> bool {
    event.typ == Some(bollard::models::EventMessageTypeEnum::CONTAINER)
        && matches!(event.action.as_deref(), Some("pause" | "stop" | "die"))
}

/// Follows Docker's event stream; reconnects with backoff when it ends
/// (dockerd restarted) and asks for a full pass after every reconnect,
/// since events were missed meanwhile.
pub async fn watch_docker(
    docker: Docker,
    instance: String,
    sinks: DockerSinks,
    shutdown: CancellationToken,
) {
    // However this watcher ends, its view is no longer fed.
    let _unfed = Unfed(sinks.view.clone());
    // Events resume quickly after a dockerd restart; a long outage is
    // retried every 15 s (the daemon's own reconnect says it is down).
    let mut delay = crate::daemon::scheduler::Doubling::new(
        Duration::from_millis(250),
        Duration::from_secs(15),
    );
    loop {
        let mut stream = docker.events(Some(events_options()));
        if let Some(view) = &sinks.view {
            view.stream_opened();
        }
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    delay.succeeded();
                    sinks.hand_on(&event, &instance);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Docker event stream failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("Docker event stream ended; reconnecting");
                    break;
                }
            }
        }
        if let Some(view) = &sinks.view {
            view.stream_lost();
        }
        sinks
            .counters
            .docker_reconnects
            .fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay.failed()) => {}
        }
        // Whatever happened while the stream was down was not seen.
        let _ = sinks.triggers.try_send(Trigger::Now);
    }
}

/// The event types the watcher follows, from a moment back: the engine
/// replays what happened while the subscription was on its way, so the
/// view misses nothing between its full listing and the stream (a
/// replayed event costs one read).
fn events_options() -> bollard::query_parameters::EventsOptions {
    let filters = std::collections::HashMap::from([(
        "type".to_string(),
        ["container", "service", "network", "volume", "image"]
            .map(String::from)
            .to_vec(),
    )]);
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(REPLAY_SECS));
    EventsOptionsBuilder::default()
        .since(&since.to_string())
        .filters(&filters)
        .build()
}

impl DockerSinks {
    /// What one engine event tells the loop, the view and the crash notes.
    fn hand_on(&self, event: &bollard::models::EventMessage, instance: &str) {
        if brings_a_dependency(event) {
            // A converged fleet waits for nothing: a network, volume or
            // image appearing changes no plan (the resync still looks).
            if !self.hints.waiting_for_dependencies() {
                return;
            }
            self.hints.retry_failed();
        }
        if let Some(asset) = updated_in_place(event, instance) {
            self.hints.verify(asset);
        }
        if let (Some(view), Some(id)) = (&self.view, changed_container(event, instance)) {
            view.touch_container(id);
        }
        if let Some(asset) = managed_asset(event, instance) {
            let action = event.action.as_deref().unwrap_or_default();
            self.hints
                .stops
                .note(asset, action, std::time::Instant::now());
        }
        if let (Some(crashes), Some((id, code))) = (&self.crashes, crash_of(event, instance)) {
            crashes.note(&id, code);
        }
        let Some(trigger) = relevance(event, instance) else {
            return;
        };
        self.counters.docker_events.fetch_add(1, Ordering::Relaxed);
        let _ = self.triggers.try_send(trigger);
        if needs_a_second_look(event) {
            let triggers = self.triggers.clone();
            // The view reads the container again too: the first read may
            // have found it unchanged.
            let again = self
                .view
                .clone()
                .zip(managed_container(event, instance).map(str::to_string));
            tokio::spawn(async move {
                tokio::time::sleep(SECOND_LOOK).await;
                if let Some((view, id)) = again {
                    view.touch_container(&id);
                }
                let _ = triggers.try_send(Trigger::Now);
            });
        }
    }
}

/// What the watcher tells the loop besides "look again": written here,
/// read and reset by the loop (and set by SIGHUP too).
#[derive(Default)]
pub struct Hints {
    /// Something an asset may have failed for appeared (a network, a
    /// volume, an image): its retry must not wait out its backoff.
    retry_failed: std::sync::atomic::AtomicBool,
    /// Assets changed in place by hand (`docker update`): the next pass
    /// deploys them again, which compares what no listing shows.
    to_verify: std::sync::Mutex<std::collections::BTreeSet<crate::model::spec::AssetName>>,
    /// The last pass left something to do (a hold, a failure, a change
    /// not yet made): what appears on the engine may be what it waits
    /// for. Set by each pass; false before the first.
    converged: std::sync::atomic::AtomicBool,
    /// Managed containers stopped lately: their repair waits for the
    /// engine's own start a moment.
    pub stops: crate::daemon::stops::Stops,
}

impl Hints {
    /// What the last pass planned: anything at all means something may
    /// wait for a network, a volume or an image to appear.
    pub fn set_converged(&self, converged: bool) {
        self.converged.store(converged, Ordering::Relaxed);
    }

    fn waiting_for_dependencies(&self) -> bool {
        !self.converged.load(Ordering::Relaxed)
    }

    pub fn retry_failed(&self) {
        self.retry_failed.store(true, Ordering::Relaxed);
    }

    /// Whether failed assets are to be retried now; resets it.
    pub fn take_retry_failed(&self) -> bool {
        self.retry_failed.swap(false, Ordering::Relaxed)
    }

    pub fn verify(&self, name: crate::model::spec::AssetName) {
        self.to_verify.lock().expect("verify lock").insert(name);
    }

    pub fn take_verify(&self) -> std::collections::BTreeSet<crate::model::spec::AssetName> {
        std::mem::take(&mut *self.to_verify.lock().expect("verify lock"))
    }
}

/// Where the Docker watcher reports.
pub struct DockerSinks {
    pub triggers: mpsc::Sender<Trigger>,
    pub counters: Arc<WatchCounters>,
    /// What the loop learns besides "look again".
    pub hints: Arc<Hints>,
    /// Local engine: where the exit codes of crashes are noted.
    pub crashes: Option<crate::engine::strategy::local::CrashNotes>,
    /// Local engine: the view of the managed containers, told which
    /// ones an event named and when the stream opens or is lost.
    pub view: Option<crate::engine::strategy::local::view::ContainerView>,
}

/// How far back a (re)opened event stream starts.
const REPLAY_SECS: u64 = 2;

/// Marks the view unfed when the watcher ends (shutdown, a new connection).
struct Unfed(Option<crate::engine::strategy::local::view::ContainerView>);

impl Drop for Unfed {
    fn drop(&mut self) {
        if let Some(view) = &self.0 {
            view.stream_lost();
        }
    }
}

/// The ID of one of this instance's containers whose listing an event may
/// have changed. A healthcheck's `exec_*` events, `attach`, `resize` and
/// the like change nothing a listing shows.
fn changed_container<'e>(
    event: &'e bollard::models::EventMessage,
    instance: &str,
) -> Option<&'e str> {
    let action = event.action.as_deref().unwrap_or_default();
    let changes = matches!(
        action,
        "create"
            | "start"
            | "restart"
            | "die"
            | "kill"
            | "oom"
            | "stop"
            | "pause"
            | "unpause"
            | "destroy"
            | "rename"
            | "update"
    ) || action.starts_with("health_status");
    changes
        .then(|| managed_container(event, instance))
        .flatten()
}

/// The ID of one of this instance's containers that an event names.
fn managed_container<'e>(
    event: &'e bollard::models::EventMessage,
    instance: &str,
) -> Option<&'e str> {
    use crate::engine::strategy::labels::{INSTANCE, MANAGED};
    if event.typ != Some(bollard::models::EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let actor = event.actor.as_ref()?;
    let attrs = actor.attributes.as_ref()?;
    let ours = attrs.get(MANAGED).map(String::as_str) == Some("true")
        && attrs.get(INSTANCE).map(String::as_str) == Some(instance);
    ours.then_some(actor.id.as_deref()?)
}

/// The asset of one of this instance's containers that an event names.
fn managed_asset(
    event: &bollard::models::EventMessage,
    instance: &str,
) -> Option<crate::model::spec::AssetName> {
    use crate::engine::strategy::labels::ASSET;
    managed_container(event, instance)?;
    let attrs = event.actor.as_ref()?.attributes.as_ref()?;
    crate::model::spec::AssetName::new(attrs.get(ASSET)?).ok()
}

/// A network, volume or image that appeared may be what a failed asset
/// was missing: its retry must not wait out a backoff of minutes.
fn brings_a_dependency(event: &bollard::models::EventMessage) -> bool {
    use bollard::models::EventMessageTypeEnum;
    let action = event.action.as_deref().unwrap_or_default();
    match event.typ {
        Some(EventMessageTypeEnum::NETWORK | EventMessageTypeEnum::VOLUME) => action == "create",
        // Not `pull`: Swarm pulls for every task it starts, and a busy
        // engine would keep every failed asset from backing off.
        Some(EventMessageTypeEnum::IMAGE) => matches!(action, "tag" | "load" | "import"),
        _ => false,
    }
}

/// The asset of one of our containers changed in place (`docker update`
/// of its limits or restart policy): no listing shows that, so the next
/// pass deploys it again, which compares and repairs.
fn updated_in_place(
    event: &bollard::models::EventMessage,
    instance: &str,
) -> Option<crate::model::spec::AssetName> {
    use crate::engine::strategy::labels;
    if event.typ != Some(bollard::models::EventMessageTypeEnum::CONTAINER)
        || event.action.as_deref() != Some("update")
    {
        return None;
    }
    let attrs = event.actor.as_ref()?.attributes.as_ref()?;
    // A candidate gets its restart policy from assetd itself.
    let container = attrs.get("name").map(String::as_str).unwrap_or_default();
    if container.ends_with(".assetd-candidate") {
        return None;
    }
    let (name, _, _) = labels::owner_of(attrs, instance)?;
    Some(name)
}

fn relevance(event: &bollard::models::EventMessage, instance: &str) -> Option<Trigger> {
    use bollard::models::EventMessageTypeEnum;
    let action = event.action.as_deref().unwrap_or_default();
    if brings_a_dependency(event) {
        return Some(Trigger::Now);
    }
    match event.typ {
        // Service events carry no labels to tell ours from others', and
        // most are the echo of our own writes: a wave of 200 creates
        // would otherwise ask for 200 passes, each listing every service
        // and task. A short debounce folds a wave into a few passes; a
        // service removed by hand is still back well within a second.
        Some(EventMessageTypeEnum::SERVICE) => Some(Trigger::Soon),
        Some(EventMessageTypeEnum::CONTAINER) => {
            use crate::engine::strategy::labels::{INSTANCE, MANAGED};
            let attrs = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
            let label = |key: &str| attrs.and_then(|a| a.get(key)).map(String::as_str);
            let managed = label(MANAGED) == Some("true") && label(INSTANCE) == Some(instance);
            // A Swarm task's container starting is what turns a service's
            // status from Pending to Running; nothing else says so.
            // (Local starts are our own writes' echo: not a trigger.)
            let task_started = action == "start" && label("com.docker.swarm.task.id").is_some();
            if managed && task_started {
                return Some(Trigger::Soon);
            }
            managed.then(|| container_event_urgency(action)).flatten()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, RemoveKind, RenameMode};

    #[test]
    fn a_managed_containers_crash_is_noted_with_its_exit_code() {
        let die = |instance: &str, code: &str| bollard::models::EventMessage {
            typ: Some(bollard::models::EventMessageTypeEnum::CONTAINER),
            action: Some("die".into()),
            actor: Some(bollard::models::EventActor {
                id: Some("c1".into()),
                attributes: Some(std::collections::HashMap::from([
                    ("io.assetd.managed".to_string(), "true".to_string()),
                    ("io.assetd.instance".to_string(), instance.to_string()),
                    ("exitCode".to_string(), code.to_string()),
                ])),
            }),
            ..Default::default()
        };
        assert_eq!(crash_of(&die("a", "3"), "a"), Some(("c1".into(), 3)));
        assert_eq!(crash_of(&die("a", "0"), "a"), None, "a clean exit");
        assert_eq!(crash_of(&die("b", "3"), "a"), None, "another instance's");
    }

    #[test]
    fn the_view_reads_again_only_what_an_event_may_have_changed() {
        let event = |action: &str, instance: &str| bollard::models::EventMessage {
            typ: Some(bollard::models::EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(bollard::models::EventActor {
                id: Some("c1".into()),
                attributes: Some(std::collections::HashMap::from([
                    ("io.assetd.managed".to_string(), "true".to_string()),
                    ("io.assetd.instance".to_string(), instance.to_string()),
                ])),
            }),
            ..Default::default()
        };
        for action in [
            "create",
            "die",
            "destroy",
            "pause",
            "rename",
            "health_status: unhealthy",
        ] {
            assert_eq!(
                changed_container(&event(action, "a"), "a"),
                Some("c1"),
                "{action}"
            );
        }
        // A healthcheck's probe, every interval: nothing a listing shows.
        for action in [
            "exec_create: test -e /ok",
            "exec_start: test -e /ok",
            "exec_die",
            "attach",
            "resize",
        ] {
            assert_eq!(
                changed_container(&event(action, "a"), "a"),
                None,
                "{action}"
            );
        }
        assert_eq!(
            changed_container(&event("die", "b"), "a"),
            None,
            "another instance's"
        );
    }

    #[test]
    fn a_dependency_appearing_triggers_a_pass_only_while_something_waits() {
        let (triggers, mut passes) = mpsc::channel(8);
        let sinks = DockerSinks {
            triggers,
            counters: Default::default(),
            hints: Default::default(),
            crashes: None,
            view: None,
        };
        let created = bollard::models::EventMessage {
            typ: Some(bollard::models::EventMessageTypeEnum::NETWORK),
            action: Some("create".into()),
            ..Default::default()
        };
        // Before the first pass, and while a pass left work: a pass, now,
        // and failed assets retry without waiting out their backoff.
        sinks.hand_on(&created, "i");
        assert_eq!(passes.try_recv().ok(), Some(Trigger::Now));
        assert!(sinks.hints.take_retry_failed());
        // Converged: nothing waits for it.
        sinks.hints.set_converged(true);
        sinks.hand_on(&created, "i");
        assert!(passes.try_recv().is_err());
        assert!(!sinks.hints.take_retry_failed());
        sinks.hints.set_converged(false);
        sinks.hand_on(&created, "i");
        assert_eq!(passes.try_recv().ok(), Some(Trigger::Now));
    }

    #[test]
    fn a_watcher_error_ends_the_reuse_of_the_last_read() {
        let scope = Arc::new(RwLock::new(Scope {
            named: PathBuf::from("/m"),
            resolved: None,
        }));
        let cache = Arc::new(ManifestCache::default());
        cache.watching(true);
        let (hints, mut got) = mpsc::channel(8);
        let mut callback = on_file_event(scope, Default::default(), cache.clone(), hints);
        callback(Err(notify::Error::generic("inotify watch limit reached")));
        assert!(!cache.is_watched(), "a watch may be missing: passes walk");
        assert!(got.try_recv().is_ok_and(|hint| hint.structural));
    }

    #[test]
    fn reads_and_opens_never_trigger_a_pass() {
        // A pass reads every manifest; these must not start the next one.
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(classify(&kind).is_none(), "{kind:?}");
        }
    }

    #[test]
    fn complete_changes_act_at_once_and_partial_ones_wait() {
        let trigger = |kind| classify(&kind).map(|h| h.trigger);
        assert_eq!(
            trigger(EventKind::Access(AccessKind::Close(AccessMode::Write))),
            Some(Trigger::Now)
        );
        assert_eq!(
            trigger(EventKind::Modify(ModifyKind::Name(RenameMode::To))),
            Some(Trigger::Now)
        );
        assert_eq!(
            trigger(EventKind::Remove(RemoveKind::File)),
            Some(Trigger::Now)
        );
        assert_eq!(
            trigger(EventKind::Create(CreateKind::File)),
            Some(Trigger::Soon)
        );
        assert_eq!(
            trigger(EventKind::Modify(ModifyKind::Data(DataChange::Any))),
            Some(Trigger::Soon)
        );
    }

    #[test]
    fn new_directories_get_a_second_look() {
        assert!(
            classify(&EventKind::Create(CreateKind::Folder))
                .unwrap()
                .structural
        );
        assert!(
            classify(&EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
                .unwrap()
                .structural
        );
        assert!(
            !classify(&EventKind::Create(CreateKind::File))
                .unwrap()
                .structural
        );
    }

    #[test]
    fn lost_events_are_warned_about_once_per_burst() {
        let mut lost = LostEvents::default();
        let start = std::time::Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(lost.warn_now(at(0)));
        assert!(!lost.warn_now(at(5)));
        assert!(!lost.warn_now(at(9_999)));
        assert!(lost.warn_now(at(10_000)));
        assert!(!lost.warn_now(at(10_001)));
    }

    #[test]
    fn scope_covers_the_directory_as_named_and_as_resolved() {
        let scope = Scope {
            named: PathBuf::from("/git/current"),
            resolved: Some(PathBuf::from("/git/.worktrees/abc")),
        };
        assert!(scope.covers(Path::new("/git/current")));
        assert!(scope.covers(Path::new("/git/.worktrees/abc/a.yaml")));
        assert!(!scope.covers(Path::new("/git/.worktrees/def/a.yaml")));
        assert!(!scope.covers(Path::new("/git/current.lock")));
    }

    #[test]
    fn rm_f_acts_on_destroy_and_waits_for_it_after_die() {
        assert_eq!(container_event_urgency("destroy"), Some(Trigger::Now));
        assert_eq!(container_event_urgency("die"), Some(Trigger::Later));
        assert_eq!(
            container_event_urgency("health_status: unhealthy"),
            Some(Trigger::Soon)
        );
        assert_eq!(container_event_urgency("kill"), Some(Trigger::Later));
        // `docker restart`: kill, die, stop, then the engine's own start.
        assert_eq!(container_event_urgency("stop"), Some(Trigger::Later));
        assert_eq!(container_event_urgency("start"), None);
        assert_eq!(container_event_urgency("exec_start: sh"), None);
    }
}
