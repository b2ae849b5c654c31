//! Triggers: the manifests directory, Docker events and the resync timer.
//!
//! Triggers are hints, never data: each one only asks for a full pass, and
//! the pass recomputes everything from listings. So a watcher may drop
//! events when its channel is full (one pending trigger is enough), and
//! a watcher that fails only costs latency until the next resync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How soon a pass should follow a trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// Something that may still be in progress (a file being written):
    /// wait a short debounce so the pass sees the finished state.
    Soon,
    /// Something complete (a file closed after writing, renamed into
    /// place, a Docker event, the resync timer): run a pass at once.
    Now,
}

/// Counts what the watchers saw, for `/metrics`.
#[derive(Default)]
pub struct WatchCounters {
    pub file_events: AtomicU64,
    pub docker_events: AtomicU64,
    pub docker_reconnects: AtomicU64,
}

/// Classifies a file event: complete writes and renames act at once.
fn urgency(kind: &EventKind) -> Trigger {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_)
        | EventKind::Create(CreateKind::Folder) => Trigger::Now,
        _ => Trigger::Soon,
    }
}

/// Watches `root` recursively, and its parent so that a directory that is
/// missing at start, or deleted and recreated, is picked up again.
pub async fn watch_manifests(
    root: PathBuf,
    triggers: mpsc::Sender<Trigger>,
    counters: Arc<WatchCounters>,
    shutdown: CancellationToken,
) {
    let (events_tx, mut events_rx) = mpsc::channel::<Trigger>(64);
    let callback_counters = counters.clone();
    let callback = move |result: notify::Result<notify::Event>| {
        callback_counters
            .file_events
            .fetch_add(1, Ordering::Relaxed);
        let trigger = match &result {
            Ok(event) if event.need_rescan() => Trigger::Now,
            Ok(event) => urgency(&event.kind),
            // A watcher error (e.g. queue overflow) means events were
            // lost: rescan everything.
            Err(_) => Trigger::Now,
        };
        // Full channel: a trigger is pending already, which is enough.
        let _ = events_tx.try_send(trigger);
    };
    let mut watcher = match notify::recommended_watcher(callback) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the file watcher; relying on the resync timer");
            return;
        }
    };
    let mut armed = Armed::default();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        if armed.rearm(&mut watcher, &root) {
            // The directory (re)appeared: its content is new to us.
            let _ = triggers.try_send(Trigger::Now);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(trigger) = events_rx.recv() => {
                let _ = triggers.try_send(trigger);
            }
            _ = check.tick() => {}
        }
    }
}

/// Which watches are in place.
#[derive(Default)]
struct Armed {
    root: bool,
    parent: Option<PathBuf>,
}

impl Armed {
    /// Brings the watches in line with what exists; true when the root
    /// watch was (re)established.
    fn rearm(&mut self, watcher: &mut notify::RecommendedWatcher, root: &Path) -> bool {
        let exists = root.is_dir();
        if self.root && !exists {
            let _ = watcher.unwatch(root);
            self.root = false;
            tracing::warn!(dir = %root.display(), "manifest directory disappeared");
        }
        let parent = root.parent().filter(|p| p.is_dir()).map(Path::to_path_buf);
        if self.parent.is_none() {
            if let Some(parent) = parent {
                if watcher.watch(&parent, RecursiveMode::NonRecursive).is_ok() {
                    self.parent = Some(parent);
                }
            }
        }
        if !self.root && exists {
            match watcher.watch(root, RecursiveMode::Recursive) {
                Ok(()) => {
                    self.root = true;
                    tracing::info!(dir = %root.display(), "watching manifest directory");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(dir = %root.display(), error = %e, "cannot watch manifest directory")
                }
            }
        }
        false
    }
}

/// Container events that may mean drift on a managed container.
const CONTAINER_ACTIONS: &[&str] = &[
    "die", "destroy", "stop", "kill", "pause", "oom", "rename", "update",
];

/// Follows Docker's event stream; reconnects with backoff when it ends
/// (dockerd restarted) and asks for a full pass after every reconnect,
/// since events were missed meanwhile.
pub async fn watch_docker(
    docker: Docker,
    instance: String,
    triggers: mpsc::Sender<Trigger>,
    counters: Arc<WatchCounters>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(250);
    loop {
        let filters = std::collections::HashMap::from([(
            "type".to_string(),
            vec!["container".to_string(), "service".to_string()],
        )]);
        let mut stream = docker.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        let mut connected = false;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    if !connected {
                        connected = true;
                    }
                    delay = Duration::from_millis(250);
                    if is_relevant(&event, &instance) {
                        counters.docker_events.fetch_add(1, Ordering::Relaxed);
                        let _ = triggers.try_send(Trigger::Now);
                    }
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
        counters.docker_reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(15));
        // Whatever happened while the stream was down was not seen.
        let _ = triggers.try_send(Trigger::Now);
    }
}

fn is_relevant(event: &bollard::models::EventMessage, instance: &str) -> bool {
    use bollard::models::EventMessageTypeEnum;
    let action = event.action.as_deref().unwrap_or_default();
    match event.typ {
        Some(EventMessageTypeEnum::SERVICE) => true,
        Some(EventMessageTypeEnum::CONTAINER) => {
            use crate::strategy::labels::{INSTANCE, MANAGED};
            let attrs = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
            let label = |key: &str| attrs.and_then(|a| a.get(key)).map(String::as_str);
            let managed = label(MANAGED) == Some("true") && label(INSTANCE) == Some(instance);
            managed && CONTAINER_ACTIONS.contains(&action)
        }
        _ => false,
    }
}
