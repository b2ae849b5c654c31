//! The writer lease on Swarm: exactly one assetd of an instance writes,
//! whichever manager it runs on (ARCHITECTURE.md, "HA on Swarm: the
//! writer lease", says why this is safe).
//!
//! The lease is a Swarm config `assetd-lease-<instance>` whose labels name
//! the holder. Configs can change only their labels, and every change is
//! an update with the version index read before it: Raft makes it a
//! compare-and-swap, so of two daemons racing for one version exactly one
//! wins. The holder renews every `renew`; a follower that has seen the
//! same version for `expiry` on its own monotonic clock takes the lease
//! over. The holder writes only until `expiry - margin` after it *sent*
//! its last successful renewal, which is before any follower can have
//! seen that version for `expiry`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{Config, ConfigSpec};
use bollard::query_parameters::UpdateConfigOptionsBuilder;
use bollard::Docker;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::now_ms;

const HOLDER: &str = "io.assetd.lease.holder";
const SINCE: &str = "io.assetd.lease.since";
const RENEWALS: &str = "io.assetd.lease.renewals";
const INSTANCE: &str = "io.assetd.lease.instance";
/// The manifests revision the holder applied (`crate::input::revision`).
const REVISION: &str = "io.assetd.lease.revision";
/// Who applied that revision: the holder that recorded it. It stays
/// after a hand-over, so a daemon restarted on the same host and state
/// dir knows the revision on record is its own copy's.
const APPLIED_BY: &str = "io.assetd.lease.applied-by";
/// Config data may not be empty; nothing reads it.
const DATA: &str = "YXNzZXRkIHdyaXRlciBsZWFzZQ=="; // "assetd writer lease"

/// The lease's timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How often the holder renews, and followers look.
    pub renew: Duration,
    /// A version unchanged this long (as a follower sees it) has expired.
    pub expiry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            renew: Duration::from_secs(2),
            expiry: Duration::from_secs(10),
        }
    }
}

impl Timings {
    /// What the holder keeps back from `expiry`: for the followers'
    /// polling delay and clock rates.
    pub fn margin(&self) -> Duration {
        self.expiry / 5
    }

    /// Every lease call gives up after this: a write in flight at the
    /// holder's deadline ends before a follower may take over.
    pub fn request_timeout(&self) -> Duration {
        self.margin() / 2
    }

    /// Refuses timings that cannot keep one writer.
    pub fn check(&self) -> Result<(), String> {
        if self.renew + self.margin() >= self.expiry - self.margin() {
            return Err(format!(
                "--lease-renew {:?} must be well below --lease-expiry {:?} (at most {:?})",
                self.renew,
                self.expiry,
                self.expiry * 3 / 5 - Duration::from_millis(1)
            ));
        }
        Ok(())
    }
}

/// The lease as this daemon sees it, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// Who holds it (`host:state-dir#start`), if anyone.
    pub holder: Option<String>,
    /// Unix ms when the holder took it (its own clock).
    pub since_ms: Option<u64>,
    /// Whether this daemon holds it (and may write).
    pub mine: bool,
    /// Seconds without a live holder, as this daemon observed.
    pub missing_secs: Option<u64>,
    /// Why the lease cannot be read or held, when it cannot.
    pub error: Option<String>,
    /// The manifests revision the holder last applied, as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Times this daemon took the lease from another holder.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub takeovers: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whom this daemon took the lease from, and what that writer applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    pub from: String,
    /// The revision label it recorded, if any.
    pub revision: Option<String>,
}

/// What the lease loop shares with the daemon.
#[derive(Default)]
struct State {
    /// This daemon may write until then.
    write_until: Option<Instant>,
    view: LeaseView,
    /// When this daemon last saw a live holder (or started looking).
    holder_seen: Option<Instant>,
    /// The revision label this daemon records on its renewals.
    applied: Option<String>,
    /// Set when this daemon took the lease from another writer; taken by
    /// the daemon's next pass (the revision guard).
    takeover: Option<Takeover>,
    /// How many times that happened.
    takeovers: u64,
}

/// This daemon's handle on the lease.
#[derive(Clone)]
pub struct Lease {
    docker: Docker,
    name: String,
    instance: String,
    me: String,
    timings: Timings,
    state: Arc<Mutex<State>>,
    /// The version last seen, and when it was first seen.
    seen: Arc<Mutex<Option<(u64, Instant)>>>,
    /// Called when this daemon gains the lease (the daemon runs a pass).
    on_gain: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// What one look at the lease object found.
enum Found {
    Missing,
    Present(Box<Config>),
}

impl Lease {
    pub fn new(docker: Docker, instance: &str, me: String, timings: Timings) -> Self {
        Self {
            docker,
            name: format!("assetd-lease-{instance}"),
            instance: instance.to_string(),
            me,
            timings,
            state: Default::default(),
            seen: Default::default(),
            on_gain: None,
        }
    }

    pub fn with_on_gain(mut self, on_gain: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.on_gain = Some(on_gain);
        self
    }

    /// Records `label` as the revision this daemon applies, on the lease
    /// itself before anything is written: a writer that dies right after
    /// leaves it on record. False when the lease could not be renewed.
    pub async fn record(&self, label: String) -> bool {
        let unchanged = {
            let mut state = self.state.lock().expect("lease lock");
            let unchanged = state.applied.as_deref() == Some(label.as_str());
            state.applied = Some(label);
            unchanged
        };
        if !unchanged {
            self.step().await;
        }
        self.may_write()
    }

    /// The takeover since the last call, if any.
    pub fn take_takeover(&self) -> Option<Takeover> {
        self.state.lock().expect("lease lock").takeover.take()
    }

    /// Whether this daemon holds the lease now.
    pub fn may_write(&self) -> bool {
        let state = self.state.lock().expect("lease lock");
        state
            .write_until
            .is_some_and(|until| Instant::now() < until)
    }

    pub fn view(&self) -> LeaseView {
        let state = self.state.lock().expect("lease lock");
        let mut view = state.view.clone();
        view.takeovers = state.takeovers;
        view.mine = state
            .write_until
            .is_some_and(|until| Instant::now() < until);
        view.missing_secs = match (&view.holder, view.mine) {
            (_, true) => None,
            (Some(_), false) if !self.expired() => None,
            _ => state.holder_seen.map(|at| at.elapsed().as_secs()),
        };
        view
    }

    fn expired(&self) -> bool {
        let seen = self.seen.lock().expect("lease lock");
        seen.is_some_and(|(_, at)| at.elapsed() >= self.timings.expiry)
    }

    /// Renews or watches until `stop`, every `renew`; then hands the lease
    /// over if this daemon holds it.
    pub async fn run(self, stop: CancellationToken) {
        self.state.lock().expect("lease lock").holder_seen = Some(Instant::now());
        loop {
            self.step().await;
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.timings.renew) => {}
            }
        }
        self.release().await;
    }

    /// One look: renew, take, or note what the holder did.
    pub async fn step(&self) {
        let found = match self.read().await {
            Ok(found) => found,
            Err(e) => return self.failed(e),
        };
        let config = match found {
            Found::Missing => return self.outcome(self.create().await),
            Found::Present(config) => config,
        };
        let labels = labels_of(&config);
        let holder = labels.get(HOLDER).cloned().unwrap_or_default();
        let version = config.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        let fresh = self.note_version(version);
        let mine = holder == self.me;
        let free = holder.is_empty() || self.previous_me(&holder);
        if mine || free || (!fresh && self.expired()) {
            let since = match mine {
                true => labels.get(SINCE).cloned(),
                false => None,
            };
            let recorded = labels.get(REVISION).cloned();
            let recorded_by = labels.get(APPLIED_BY).cloned();
            let taken = self
                .write(
                    &config,
                    version,
                    since,
                    recorded.clone(),
                    recorded_by.clone(),
                )
                .await;
            if !mine && taken.is_ok() {
                tracing::warn!(previous = %holder, "took the writer lease");
                let mut state = self.state.lock().expect("lease lock");
                if !holder.is_empty() {
                    state.takeovers += 1;
                }
                // This daemon's previous process applied its own copy,
                // whether it crashed holding the lease or handed it over.
                let own_copy = self.previous_me(&holder)
                    || recorded_by
                        .as_deref()
                        .is_some_and(|by| self.previous_me(by));
                if !own_copy {
                    state.takeover = Some(Takeover {
                        from: holder.clone(),
                        revision: recorded,
                    });
                }
            }
            return self.outcome(taken);
        }
        self.following(holder, &labels);
    }

    /// A holder that is this daemon's previous process (same host and
    /// state dir, another start): it is gone, since this one holds the
    /// state dir's lock.
    fn previous_me(&self, holder: &str) -> bool {
        let base = |id: &str| id.rsplit_once('#').map(|(b, _)| b.to_string());
        base(holder).is_some() && base(holder) == base(&self.me)
    }

    /// Records `version`; true when it differs from the one seen before.
    fn note_version(&self, version: u64) -> bool {
        let mut seen = self.seen.lock().expect("lease lock");
        let fresh = seen.is_none_or(|(v, _)| v != version);
        if fresh {
            *seen = Some((version, Instant::now()));
        }
        fresh
    }

    fn following(&self, holder: String, labels: &HashMap<String, String>) {
        let mut state = self.state.lock().expect("lease lock");
        if state.write_until.take().is_some() {
            tracing::error!(holder = %holder, "lost the writer lease; standing by");
        }
        if !self.expired() {
            state.holder_seen = Some(Instant::now());
        }
        state.view = LeaseView {
            since_ms: labels.get(SINCE).and_then(|s| s.parse().ok()),
            holder: Some(holder),
            revision: labels.get(REVISION).cloned(),
            ..Default::default()
        };
    }

    /// After a write attempt that started at `sent`.
    fn outcome(&self, result: Result<(Instant, u64), String>) {
        match result {
            Ok((sent, since_ms)) => {
                let mut state = self.state.lock().expect("lease lock");
                let gained = state
                    .write_until
                    .is_none_or(|until| until <= Instant::now());
                if gained {
                    tracing::info!(lease = %self.name, "holding the writer lease");
                    if let Some(on_gain) = &self.on_gain {
                        on_gain();
                    }
                }
                let t = self.timings;
                state.write_until = Some(sent + t.expiry - t.margin());
                state.holder_seen = Some(Instant::now());
                state.view = LeaseView {
                    holder: Some(self.me.clone()),
                    since_ms: Some(since_ms),
                    revision: state.applied.clone(),
                    ..Default::default()
                };
            }
            // Another daemon won the race: the next look says who.
            Err(e) => self.failed(e),
        }
    }

    /// A lease call failed: keep writing only until the deadline the last
    /// renewal set (`may_write` checks it).
    fn failed(&self, error: String) {
        let mut state = self.state.lock().expect("lease lock");
        tracing::debug!(error = %error, "lease call failed");
        state.view.error = Some(error);
    }

    async fn read(&self) -> Result<Found, String> {
        let call = self.docker.inspect_config(&self.name);
        match tokio::time::timeout(self.timings.request_timeout(), call).await {
            Err(_) => Err("the engine did not answer in time".into()),
            Ok(Ok(config)) => Ok(Found::Present(Box::new(config))),
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(Found::Missing),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }

    async fn create(&self) -> Result<(Instant, u64), String> {
        let sent = Instant::now();
        let since = now_ms();
        let spec = self.spec(since, 0, None, None);
        let call = self.docker.create_config(spec);
        match tokio::time::timeout(self.timings.request_timeout(), call).await {
            Ok(Ok(_)) => Ok((sent, since)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the engine did not answer in time".into()),
        }
    }

    /// Renews (or takes) the lease at `version`; `since`: when a renewal
    /// keeps the holder's start.
    async fn write(
        &self,
        config: &Config,
        version: u64,
        since: Option<String>,
        recorded: Option<String>,
        recorded_by: Option<String>,
    ) -> Result<(Instant, u64), String> {
        let sent = Instant::now();
        let since = since.and_then(|s| s.parse().ok()).unwrap_or_else(now_ms);
        let renewals = labels_of(config)
            .get(RENEWALS)
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0);
        let spec = self.spec(since, renewals + 1, recorded, recorded_by);
        let id = config.id.clone().unwrap_or_else(|| self.name.clone());
        let options = UpdateConfigOptionsBuilder::default()
            .version(version as i64)
            .build();
        let call = self.docker.update_config(&id, spec, options);
        match tokio::time::timeout(self.timings.request_timeout(), call).await {
            Ok(Ok(())) => Ok((sent, since)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the engine did not answer in time".into()),
        }
    }

    /// The lease's labels with this daemon as holder; the revision: what
    /// this daemon applied, else what was recorded before.
    fn spec(
        &self,
        since_ms: u64,
        renewals: u64,
        recorded: Option<String>,
        recorded_by: Option<String>,
    ) -> ConfigSpec {
        let revision = self.revision_on_record(recorded, recorded_by);
        self.spec_for(&self.me, since_ms, renewals, revision)
    }

    /// What this daemon applied (and that it did), else what was on
    /// record before (and by whom).
    fn revision_on_record(
        &self,
        recorded: Option<String>,
        recorded_by: Option<String>,
    ) -> Option<(String, Option<String>)> {
        let applied = self.state.lock().expect("lease lock").applied.clone();
        match applied {
            Some(applied) => Some((applied, Some(self.me.clone()))),
            None => recorded.map(|r| (r, recorded_by)),
        }
    }

    fn spec_for(
        &self,
        holder: &str,
        since_ms: u64,
        renewals: u64,
        revision: Option<(String, Option<String>)>,
    ) -> ConfigSpec {
        let mut labels = HashMap::from([
            (HOLDER.to_string(), holder.to_string()),
            (SINCE.to_string(), since_ms.to_string()),
            (RENEWALS.to_string(), renewals.to_string()),
            (INSTANCE.to_string(), self.instance.clone()),
        ]);
        if let Some((revision, by)) = revision {
            labels.insert(REVISION.to_string(), revision);
            if let Some(by) = by {
                labels.insert(APPLIED_BY.to_string(), by);
            }
        }
        ConfigSpec {
            name: Some(self.name.clone()),
            labels: Some(labels),
            data: Some(DATA.to_string()),
            templating: None,
        }
    }

    /// Hands the lease over at once (SIGTERM): clears the holder with a
    /// compare-and-swap, so a follower takes it at its next look.
    pub async fn release(&self) {
        if !self.may_write() {
            return;
        }
        self.state.lock().expect("lease lock").write_until = None;
        let Ok(Found::Present(config)) = self.read().await else {
            return;
        };
        if labels_of(&config).get(HOLDER) != Some(&self.me) {
            return;
        }
        let version = config.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        let id = config.id.clone().unwrap_or_else(|| self.name.clone());
        let options = UpdateConfigOptionsBuilder::default()
            .version(version as i64)
            .build();
        // The applied revision, and who applied it, stay on record for
        // the next writer.
        let labels = labels_of(&config);
        let revision = self.revision_on_record(
            labels.get(REVISION).cloned(),
            labels.get(APPLIED_BY).cloned(),
        );
        let spec = self.spec_for("", 0, 0, revision);
        match self.docker.update_config(&id, spec, options).await {
            Ok(()) => tracing::info!("handed the writer lease over"),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand the writer lease over; it expires")
            }
        }
    }

    /// For `apply --once`: takes the lease, waiting at most `expiry` (plus
    /// a look) for a holder that has stopped renewing; `Err` names a live
    /// holder (one whose version changed while this one looked).
    pub async fn acquire(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.timings.expiry + self.timings.renew;
        self.state.lock().expect("lease lock").holder_seen = Some(Instant::now());
        self.step().await;
        let first = self.seen_version();
        loop {
            if self.may_write() {
                return Ok(());
            }
            let view = self.view();
            let renewed = self.seen_version() != first;
            if (view.holder.is_some() && renewed) || Instant::now() >= deadline {
                let holder = view.holder.unwrap_or_else(|| "nobody".into());
                let error = view.error.map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(format!("the writer lease is held by {holder}{error}"));
            }
            tokio::time::sleep(self.timings.renew / 2).await;
            self.step().await;
        }
    }

    fn seen_version(&self) -> Option<u64> {
        self.seen.lock().expect("lease lock").map(|(v, _)| v)
    }
}

fn labels_of(config: &Config) -> HashMap<String, String> {
    config
        .spec
        .as_ref()
        .and_then(|s| s.labels.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_stops_before_a_follower_may_take_over() {
        let t = Timings::default();
        assert_eq!(t.margin(), Duration::from_secs(2));
        assert!(t.request_timeout() < t.margin());
        // The holder's deadline counts from the send, the follower's
        // from when it saw the version: later.
        assert!(t.expiry - t.margin() < t.expiry);
        assert!(t.check().is_ok());
        let bad = Timings {
            renew: Duration::from_secs(8),
            expiry: Duration::from_secs(10),
        };
        assert!(bad.check().is_err());
    }
}
