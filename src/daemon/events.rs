//! Phase and health changes as events: what `assetd events` shows and
//! `--notify` posts. An event is a *change* between two published
//! statuses, so a steady state says nothing and a crash loop that stays
//! degraded is one event, not one per restart.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::core::health::Health;
use crate::model::spec::AssetName;
use crate::report::status::{AssetStatus, Phase};

/// How many events the daemon keeps for `assetd events`.
const KEPT: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Deployed and running as declared.
    Applied,
    /// Running, but not working (crash loop, unhealthy, failing tasks).
    Degraded,
    /// Working again after being degraded or failed.
    Healed,
    /// The new version failed its rollout; the previous one runs.
    RolledBack,
    /// Left as it runs by a guard (or an invalid manifest).
    Held,
    /// A deploy failed.
    Failed,
    Suspended,
    Resumed,
    /// No longer managed: removed.
    Removed,
    /// One of its hooks ran (the reason says which, how it ended, and
    /// the tail of its output).
    Hook,
}

impl std::fmt::Display for EventKind {
    /// As in the JSON: `rolled_back`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self).ok();
        f.write_str(name.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// Phase and health at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub phase: Phase,
    pub health: Health,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event of this daemon process.
    pub seq: u64,
    /// Unix ms.
    pub at_ms: u64,
    pub asset: AssetName,
    pub event: EventKind,
    pub before: Option<State>,
    pub after: Option<State>,
    /// The engine's or the guard's words, when there are any.
    pub reason: Option<String>,
    /// The manifests revision the daemon works from, when known.
    pub revision: Option<String>,
}

/// What changed from one published status to the next.
pub fn changes(before: &[AssetStatus], after: &[AssetStatus]) -> Vec<(AssetName, EventKind)> {
    let old: BTreeMap<&AssetName, &AssetStatus> = before.iter().map(|a| (&a.name, a)).collect();
    let new: BTreeMap<&AssetName, &AssetStatus> = after.iter().map(|a| (&a.name, a)).collect();
    let mut events: Vec<(AssetName, EventKind)> = after
        .iter()
        .filter_map(|a| Some((a.name.clone(), transition(old.get(&a.name).copied(), a)?)))
        .collect();
    events.extend(
        before
            .iter()
            .filter(|a| !new.contains_key(&a.name))
            .map(|a| (a.name.clone(), EventKind::Removed)),
    );
    events
}

/// The event of one asset's change, if it is one.
fn transition(old: Option<&AssetStatus>, new: &AssetStatus) -> Option<EventKind> {
    let was = |phase: Phase| old.is_some_and(|o| o.phase == phase);
    let was_degraded = old.is_some_and(|o| o.health == Health::Degraded);
    let same = old.is_some_and(|o| o.phase == new.phase && o.health == new.health);
    if same {
        return None;
    }
    Some(match new.phase {
        Phase::Suspended if !was(Phase::Suspended) => EventKind::Suspended,
        _ if was(Phase::Suspended) && new.phase != Phase::Suspended => EventKind::Resumed,
        Phase::Failed if !was(Phase::Failed) => match rolled_back(new) {
            true => EventKind::RolledBack,
            false => EventKind::Failed,
        },
        Phase::Held | Phase::Invalid if !was(Phase::Held) && !was(Phase::Invalid) => {
            EventKind::Held
        }
        _ if new.health == Health::Degraded && !was_degraded => EventKind::Degraded,
        Phase::Running if new.health == Health::Healthy && (was_degraded || was(Phase::Failed)) => {
            EventKind::Healed
        }
        Phase::Running | Phase::Completed
            if new.health == Health::Healthy
                && old.is_none_or(|o| matches!(o.phase, Phase::Pending | Phase::Updating)) =>
        {
            EventKind::Applied
        }
        _ => return None,
    })
}

fn rolled_back(status: &AssetStatus) -> bool {
    let says = |text: &Option<String>| text.as_deref().is_some_and(|t| t.contains("rolled back"));
    says(&status.last_error) || says(&status.health_reason)
}

/// The events the daemon keeps for `assetd events` (the last [`KEPT`]).
pub struct EventLog {
    inner: Mutex<(u64, VecDeque<Event>)>,
    /// The last event's `seq`, for those who wait for the next (the
    /// dashboard's live updates).
    last: tokio::sync::watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            inner: Mutex::default(),
            last: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl EventLog {
    /// Records the changes from `before` to `after`; returns the new
    /// events (for the notifier).
    pub fn record(
        &self,
        before: &[AssetStatus],
        after: &[AssetStatus],
        revision: Option<&str>,
        at_ms: u64,
    ) -> Vec<Event> {
        let old: BTreeMap<&AssetName, &AssetStatus> = before.iter().map(|a| (&a.name, a)).collect();
        let new: BTreeMap<&AssetName, &AssetStatus> = after.iter().map(|a| (&a.name, a)).collect();
        let mut inner = self.inner.lock().expect("event log lock");
        let mut recorded = Vec::new();
        for (asset, event) in changes(before, after) {
            inner.0 += 1;
            let (was, now) = (old.get(&asset), new.get(&asset));
            let reason = now.and_then(|a| {
                a.last_error
                    .clone()
                    .or_else(|| a.health_reason.clone())
                    .or_else(|| a.last_action.clone())
            });
            recorded.push(Event {
                seq: inner.0,
                at_ms,
                asset,
                event,
                before: was.map(|a| state_of(a)),
                after: now.map(|a| state_of(a)),
                reason,
                revision: revision.map(str::to_string),
            });
        }
        inner.1.extend(recorded.iter().cloned());
        while inner.1.len() > KEPT {
            inner.1.pop_front();
        }
        if !recorded.is_empty() {
            self.last.send_replace(inner.0);
        }
        recorded
    }

    /// Records an event that is no change of status (a hook's run).
    pub fn note(&self, asset: &AssetName, event: EventKind, reason: String, at_ms: u64) -> Event {
        let mut inner = self.inner.lock().expect("event log lock");
        inner.0 += 1;
        let recorded = Event {
            seq: inner.0,
            at_ms,
            asset: asset.clone(),
            event,
            before: None,
            after: None,
            reason: Some(reason),
            revision: None,
        };
        inner.1.push_back(recorded.clone());
        while inner.1.len() > KEPT {
            inner.1.pop_front();
        }
        self.last.send_replace(inner.0);
        recorded
    }

    /// Wakes on every new event; reads the `seq` of the last one.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.last.subscribe()
    }

    /// The kept events after `seq`.
    pub fn after(&self, seq: u64) -> Vec<Event> {
        let inner = self.inner.lock().expect("event log lock");
        inner.1.iter().filter(|e| e.seq > seq).cloned().collect()
    }
}

fn state_of(a: &AssetStatus) -> State {
    State {
        phase: a.phase,
        health: a.health,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, phase: Phase, health: Health) -> AssetStatus {
        AssetStatus {
            name: AssetName::new(name).unwrap(),
            phase,
            health,
            health_reason: None,
            source: None,
            image: None,
            last_action: None,
            next_action: None,
            last_error: None,
            attempts: 0,
            next_retry_ms: None,
            replicas: None,
            warnings: vec![],
            updated_ms: None,
            suspended: None,
            pinned: None,
        }
    }

    fn kinds(before: &[AssetStatus], after: &[AssetStatus]) -> Vec<EventKind> {
        changes(before, after).into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn a_deploy_a_crash_loop_and_its_healing_are_one_event_each() {
        use EventKind::*;
        let pending = [status("kafka", Phase::Pending, Health::Progressing)];
        let running = [status("kafka", Phase::Running, Health::Healthy)];
        let looping = [status("kafka", Phase::Failed, Health::Degraded)];
        assert_eq!(kinds(&pending, &running), [Applied]);
        assert_eq!(kinds(&running, &running), []);
        assert_eq!(kinds(&running, &looping), [Failed]);
        assert_eq!(
            kinds(&looping, &looping),
            [],
            "one event per change, not per pass"
        );
        assert_eq!(kinds(&looping, &running), [Healed]);
        assert_eq!(kinds(&running, &[]), [Removed]);
    }

    #[test]
    fn rollbacks_holds_and_suspensions_are_named() {
        use EventKind::*;
        let running = [status("mill", Phase::Running, Health::Healthy)];
        let mut rolled = status("mill", Phase::Failed, Health::Degraded);
        rolled.last_error = Some("rolled back: exited 3".into());
        assert_eq!(kinds(&running, &[rolled]), [RolledBack]);
        let held = [status("mill", Phase::Held, Health::Healthy)];
        assert_eq!(kinds(&running, &held), [Held]);
        let suspended = [status("mill", Phase::Suspended, Health::Healthy)];
        assert_eq!(kinds(&running, &suspended), [Suspended]);
        assert_eq!(kinds(&suspended, &running), [Resumed]);
        let degraded = [status("mill", Phase::Running, Health::Degraded)];
        assert_eq!(kinds(&running, &degraded), [Degraded]);
    }

    #[test]
    fn the_log_numbers_events_and_keeps_the_last_ones() {
        let log = EventLog::default();
        let pending = [status("a", Phase::Pending, Health::Progressing)];
        let running = [status("a", Phase::Running, Health::Healthy)];
        let first = log.record(&pending, &running, Some("3f2a91c"), 1);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].revision.as_deref(), Some("3f2a91c"));
        log.record(&running, &[], None, 2);
        let seqs: Vec<u64> = log.after(0).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(log.after(1).len(), 1);
    }

    #[test]
    fn a_hook_run_is_an_event_of_its_own() {
        let log = EventLog::default();
        let name = AssetName::new("mes").unwrap();
        let why = "preDeploy hook exited 3 after 0.2 s: refused";
        let noted = log.note(&name, EventKind::Hook, why.into(), 5);
        assert_eq!(noted.seq, 1);
        let kept = log.after(0);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].event.to_string(), "hook");
        assert_eq!(kept[0].reason.as_deref(), Some(why));
    }
}
