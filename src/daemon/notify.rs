//! `--notify URL`: each event POSTed as one JSON document to each URL.
//!
//! Never in the reconcile loop's way: the loop only offers events to a
//! bounded queue per URL (full: the event is dropped and counted); one
//! task per URL delivers them in order, retrying with backoff. A receiver
//! that got an event whose answer was lost sees it again with the same
//! `id`, which is what it de-duplicates on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::daemon::events::Event;
use crate::daemon::metrics::{NotificationCounters, ResultLabels};

/// Events waiting per URL before new ones are dropped.
const QUEUE: usize = 256;
/// Tries per event, the first at once, then 0.5 s, 1 s, 2 s, ... apart.
const TRIES: u32 = 6;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A URL `--notify` accepts: `http://host[:port][/path]`.
#[derive(Clone, Debug)]
pub struct Target(hyper::Uri);

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let uri: hyper::Uri = s.parse().map_err(|e| format!("`{s}`: {e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(_)) => Ok(Target(uri)),
            (Some("https"), _) => Err(format!(
                "`{s}`: https is not supported; post to a local relay over http"
            )),
            _ => Err(format!("`{s}`: not an http://host[:port]/path URL")),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a receiver gets: the event, who sent it, and a line for chats
/// (`text`, which Slack- and Mattermost-style webhooks show as is).
#[derive(Serialize)]
struct Payload<'a> {
    /// Unique per event and daemon process: the receiver's dedup key.
    id: String,
    instance: &'a str,
    text: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// The queues of the `--notify` URLs.
#[derive(Clone, Default)]
pub struct Notifier {
    queues: Vec<mpsc::Sender<Arc<Event>>>,
    /// Events dropped because a queue was full.
    pub dropped: Arc<AtomicU64>,
    counters: NotificationCounters,
}

impl Notifier {
    /// One delivery task per target, until `stop`.
    pub fn start(
        targets: &[Target],
        instance: &str,
        counters: NotificationCounters,
        stop: &CancellationToken,
    ) -> Self {
        let started = crate::store::now_ms();
        let queues = targets
            .iter()
            .map(|target| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let sender = Sender {
                    target: target.clone(),
                    instance: instance.to_string(),
                    started,
                    counters: counters.clone(),
                };
                tokio::spawn(sender.run(rx, stop.clone()));
                tx
            })
            .collect();
        Self {
            queues,
            dropped: Default::default(),
            counters,
        }
    }

    /// Offers `events` to every queue; never waits.
    pub fn offer(&self, events: &[Event]) {
        for event in events {
            let event = Arc::new(event.clone());
            for queue in &self.queues {
                if queue.try_send(event.clone()).is_err() {
                    count(&self.counters, "dropped");
                    let before = self.dropped.fetch_add(1, Ordering::Relaxed);
                    if before.is_power_of_two() || before == 0 {
                        tracing::warn!(
                            dropped = before + 1,
                            "a --notify receiver is too slow; events dropped"
                        );
                    }
                }
            }
        }
    }
}

/// Delivers one URL's events in order.
struct Sender {
    target: Target,
    instance: String,
    /// This process's start: with the event's seq, a unique id.
    started: u64,
    counters: NotificationCounters,
}

fn count(counters: &NotificationCounters, result: &str) {
    counters
        .get_or_create(&ResultLabels {
            result: result.into(),
        })
        .inc();
}

impl Sender {
    async fn run(self, mut events: mpsc::Receiver<Arc<Event>>, stop: CancellationToken) {
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                event = events.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            self.deliver(&event, &stop).await;
        }
    }

    async fn deliver(&self, event: &Event, stop: &CancellationToken) {
        let payload = Payload {
            id: format!("{}-{}-{}", self.instance, self.started, event.seq),
            instance: &self.instance,
            text: headline(event),
            event,
        };
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=TRIES {
            match post(&self.target.0, body.clone()).await {
                Ok(()) => {
                    count(&self.counters, "delivered");
                    return;
                }
                Err(e) if attempt == TRIES => {
                    count(&self.counters, "failed");
                    tracing::error!(url = %self.target, error = %e, event = payload.id, "notification not delivered; giving up on it");
                }
                Err(e) => {
                    tracing::debug!(url = %self.target, error = %e, attempt, "notification failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait *= 2;
                }
            }
        }
    }
}

/// `mill: rolled_back (Running → Failed): rolled back: exited 3`.
fn headline(event: &Event) -> String {
    let phase = |s: &Option<crate::daemon::events::State>| match s {
        Some(s) => s.phase.to_string(),
        None => "-".into(),
    };
    let mut text = format!(
        "{}: {} ({} → {})",
        event.asset,
        event.event,
        phase(&event.before),
        phase(&event.after)
    );
    if let Some(reason) = &event.reason {
        text.push_str(": ");
        text.push_str(reason);
    }
    text
}

async fn post(uri: &hyper::Uri, body: Vec<u8>) -> Result<(), String> {
    tokio::time::timeout(REQUEST_TIMEOUT, post_once(uri, body))
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

async fn post_once(uri: &hyper::Uri, body: Vec<u8>) -> Result<(), String> {
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = hyper::Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("user-agent", concat!("assetd/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    match response.status() {
        s if s.is_success() => Ok(()),
        s => Err(format!("answered {s}")),
    }
}
