//! Container `create` and `start` events of this run, with the engine's
//! own timestamps: the clock every container figure is timed by.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use crate::clock::{now_ns, secs};
use crate::LABEL;

/// Every `create` and `start` event of a container labelled with this
/// run, with the engine's timestamp, from one event subscription.
pub struct StartLog {
    /// (container name, action, engine time in Unix ns).
    events: Mutex<Vec<(String, String, i128)>>,
}

impl StartLog {
    /// Subscribes (again whenever the stream ends) on a task of its own.
    pub fn start(docker: Docker, rid: String) -> Arc<Self> {
        let log = Arc::new(Self {
            events: Mutex::new(Vec::new()),
        });
        let sink = log.clone();
        tokio::spawn(async move {
            loop {
                let filters = HashMap::from([
                    ("type", vec!["container".to_string()]),
                    (
                        "event",
                        ["create", "start", "die", "rename"]
                            .map(String::from)
                            .to_vec(),
                    ),
                    ("label", vec![format!("{LABEL}={rid}")]),
                ]);
                let mut stream = docker.events(Some(
                    EventsOptionsBuilder::default().filters(&filters).build(),
                ));
                while let Some(Ok(event)) = stream.next().await {
                    let name = event
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|a| a.get("name").cloned())
                        .unwrap_or_default();
                    let action = event.action.unwrap_or_default();
                    let at = event.time_nano.map(i128::from).unwrap_or_else(now_ns);
                    sink.events.lock().expect("events").push((name, action, at));
                }
                eprintln!("assetd-bench: the event stream ended; resubscribing");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        log
    }

    /// The first start of container `name` at or after `t0`.
    pub async fn wait_one(&self, name: &str, t0: i128, timeout: Duration) -> Result<i128> {
        self.wait_event(name, "start", t0, timeout).await
    }

    /// The first `action` (create, start, die, rename: a rename is logged
    /// under the new name) of container `name` at or after `t0`.
    pub async fn wait_event(
        &self,
        name: &str,
        wanted: &str,
        t0: i128,
        timeout: Duration,
    ) -> Result<i128> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .events
                .lock()
                .expect("events")
                .iter()
                .filter(|(n, action, at)| n == name && action == wanted && *at >= t0)
                .map(|(_, _, at)| *at)
                .min();
            if let Some(at) = found {
                return Ok(at);
            }
            if Instant::now() > deadline {
                bail!("no {wanted} of container {name} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When the `n`-th distinct container named `prefix*` started (at or
    /// after `t0`).
    pub async fn wait_all(
        &self,
        prefix: &str,
        n: usize,
        t0: i128,
        timeout: Duration,
    ) -> Result<i128> {
        let deadline = Instant::now() + timeout;
        let mut progress = (0usize, Instant::now());
        loop {
            let firsts: BTreeMap<String, i128> = {
                let events = self.events.lock().expect("events");
                let mut m = BTreeMap::new();
                for (name, _, at) in events.iter().filter(|(nm, action, at)| {
                    nm.starts_with(prefix) && action == "start" && *at >= t0
                }) {
                    m.entry(name.clone())
                        .and_modify(|v: &mut i128| *v = (*v).min(*at))
                        .or_insert(*at);
                }
                m
            };
            if firsts.len() >= n {
                let mut times: Vec<i128> = firsts.values().copied().collect();
                times.sort_unstable();
                return Ok(times[n - 1]);
            }
            if firsts.len() > progress.0 {
                progress = (firsts.len(), Instant::now());
            }
            if Instant::now() > deadline || progress.1.elapsed() > Duration::from_secs(120) {
                bail!(
                    "only {} of {n} containers {prefix}* started after {:.0} s",
                    firsts.len(),
                    secs(now_ns() - t0)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Self::wait_all`], plus the seconds from `t0` until the last of
    /// them was created (NaN if no create event was seen).
    pub async fn wait_all_with_create_end(
        &self,
        prefix: &str,
        n: usize,
        t0: i128,
        timeout: Duration,
    ) -> Result<(i128, f64)> {
        let at = self.wait_all(prefix, n, t0, timeout).await?;
        let created = self
            .last_create(prefix, t0)
            .map_or(f64::NAN, |c| secs(c - t0));
        Ok((at, created))
    }

    /// When the last container named `prefix*` was created (at or after
    /// `t0`): the end of the create phase.
    fn last_create(&self, prefix: &str, t0: i128) -> Option<i128> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|(nm, action, at)| nm.starts_with(prefix) && action == "create" && *at >= t0)
            .map(|(_, _, at)| *at)
            .max()
    }
}
