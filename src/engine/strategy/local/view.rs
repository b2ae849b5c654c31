//! The local engine's managed containers as an event-fed view (a
//! reflector): one full listing, then only the containers and assets an
//! event or one of our own writes named are read again. A pass over a
//! quiet fleet reads the view and makes no Docker call.
//!
//! Correctness never rests on the events: the view is dropped (and the
//! next read lists everything) when the event stream (re)opens or is
//! lost, at every resync, and after a reconnect (a new connection has a
//! new view). A lost event costs latency until the next resync, nothing
//! more. Events only say *which* objects to read again, never what they
//! became, so their order does not matter. A container that is still
//! settling (up for seconds only, restarting, its health starting) is
//! read again at every pass: what the listing says of it changes with
//! time alone (a restart is told by "Up 3 seconds" on an old container).
//!
//! Without a watcher feeding it (`apply --once`, `plan`), every read is
//! a full listing, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::ContainerSummary;

use crate::model::spec::AssetName;

/// More changes than this at once: one full listing is cheaper.
const MAX_TARGETED: usize = 32;

/// Up for less than this, a container is read again at every pass (the
/// crash-loop rule looks at the first 10 s).
const SETTLING_SECS: u64 = 20;

/// Containers still settling are read again at most this often: the
/// listing counts their uptime in whole seconds, and a storm of restarts
/// would otherwise have every pass read dozens of them.
const SETTLING_EVERY: Duration = Duration::from_secs(1);

/// How long after the event stream is opened a full listing may be
/// trusted to follow every event since: the subscription reaches the
/// engine a moment after the stream is created.
const SUBSCRIBE_MARGIN: Duration = Duration::from_millis(300);

/// A handle on one connection's view; clones share it (the daemon's
/// passes, and `assetd plan` through its socket).
#[derive(Clone, Default)]
pub struct ContainerView {
    state: Arc<Mutex<State>>,
    /// One read at a time: an older read landing after a newer one would
    /// put back what the newer one replaced.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// One read of the engine under way, holding the view's turn. Unless it
/// is finished (`full`, `targeted`, `cached`), dropping it (an error, a
/// cancelled request) drops the view: the next read lists in full.
pub struct Reading {
    view: ContainerView,
    _turn: tokio::sync::OwnedMutexGuard<()>,
    pub read: Read,
    finished: bool,
}

impl Reading {
    /// The full listing `listed` ended.
    pub fn full(mut self, listed: &[ContainerSummary]) {
        if let Read::Full { keep } = self.read {
            self.view.full(keep, listed);
            self.finished = true;
        }
    }

    /// The targeted reads found `found`; the view's containers after it.
    pub fn targeted(mut self, found: Vec<ContainerSummary>) -> Option<Vec<ContainerSummary>> {
        if let Read::Targeted { ids, assets, epoch } = &self.read {
            self.view.targeted(*epoch, ids, assets, found);
            self.finished = true;
        }
        self.view.containers()
    }

    /// Nothing to read: the view's containers (`None` if a resync dropped
    /// it meanwhile).
    pub fn cached(mut self) -> Option<Vec<ContainerSummary>> {
        self.finished = true;
        self.view.containers()
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if !self.finished {
            self.view.invalidate();
        }
    }
}

#[derive(Default)]
struct State {
    /// The managed containers by ID; `None` until a full listing that
    /// counts made it whole (and again after every invalidation).
    containers: Option<BTreeMap<String, ContainerSummary>>,
    /// Containers named by events since they were last read.
    dirty_ids: BTreeSet<String>,
    /// Assets this process wrote since they were last read.
    dirty_assets: BTreeSet<AssetName>,
    /// Bumped by each invalidation: a read begun before it is not kept.
    epoch: u64,
    /// Since when the event stream is up; `None` while it is down (or no
    /// watcher feeds this view).
    fed_since: Option<Instant>,
    /// The last event seen for each container, numbered in arrival order.
    touched: BTreeMap<String, u64>,
    /// The number of the next event.
    touches: u64,
    /// When the settling containers were last read again.
    settling_read: Option<Instant>,
}

/// Which events a container has had: equal generations mean no event
/// named it in between, so what an inspect read of it then (its restart
/// count, its exit code) still holds.
pub type Generation = (u64, u64);

/// What the next read of the engine must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// List every managed container; keep it if `keep` (the epoch is
    /// still the same when it ends).
    Full { keep: Option<u64> },
    /// Read these containers and assets again, then use the view.
    Targeted {
        ids: Vec<String>,
        assets: Vec<AssetName>,
        epoch: u64,
    },
    /// Nothing changed: the view is the listing.
    Cached,
}

impl ContainerView {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("container view lock")
    }

    /// Waits for the view's turn and says what the next read must be; the
    /// changes it covers are taken.
    pub async fn begin_read(&self) -> Reading {
        let turn = self.turn.clone().lock_owned().await;
        self.reading(turn, Instant::now())
    }

    fn reading(&self, turn: tokio::sync::OwnedMutexGuard<()>, now: Instant) -> Reading {
        Reading {
            view: self.clone(),
            _turn: turn,
            read: self.next_read_at(now),
            finished: false,
        }
    }

    /// The watcher's event stream is open (again): what happened while
    /// it was not is unknown, so everything is read again.
    pub fn stream_opened(&self) {
        let mut state = self.state();
        state.invalidate();
        state.fed_since = Some(Instant::now());
    }

    /// The event stream ended or failed: every read lists in full until
    /// it is open again.
    pub fn stream_lost(&self) {
        let mut state = self.state();
        state.invalidate();
        state.fed_since = None;
    }

    /// The next read lists in full (a resync).
    pub fn invalidate(&self) {
        self.state().invalidate();
    }

    /// An event named this container.
    pub fn touch_container(&self, id: &str) {
        let mut state = self.state();
        state.dirty_ids.insert(id.to_string());
        state.touches += 1;
        let touch = state.touches;
        state.touched.insert(id.to_string(), touch);
    }

    /// The container's [`Generation`]; `None` while no event stream
    /// feeds the view (an event may be missed: nothing read is reused).
    pub fn generation(&self, id: &str) -> Option<Generation> {
        let state = self.state();
        state.fed_since?;
        Some((state.epoch, state.touched.get(id).copied().unwrap_or(0)))
    }

    /// This process wrote (or is writing) this asset's containers.
    pub fn touch_asset(&self, name: &AssetName) {
        self.state().dirty_assets.insert(name.clone());
    }

    fn next_read_at(&self, now: Instant) -> Read {
        let mut state = self.state();
        let subscribed = state
            .fed_since
            .is_some_and(|since| now >= since + SUBSCRIBE_MARGIN);
        let due = state
            .settling_read
            .is_none_or(|at| now.saturating_duration_since(at) >= SETTLING_EVERY);
        if due && state.containers.is_some() {
            let settling: Vec<String> = state
                .containers
                .iter()
                .flatten()
                .filter(|(_, c)| settling(c))
                .map(|(id, _)| id.clone())
                .collect();
            state.dirty_ids.extend(settling);
            state.settling_read = Some(now);
        }
        let changes = state.dirty_ids.len() + state.dirty_assets.len();
        if state.containers.is_none() || !subscribed || changes > MAX_TARGETED {
            // Until the listing lands, there is no view to fall back on.
            state.containers = None;
            state.dirty_ids.clear();
            state.dirty_assets.clear();
            return Read::Full {
                keep: subscribed.then_some(state.epoch),
            };
        }
        if changes == 0 {
            return Read::Cached;
        }
        Read::Targeted {
            ids: std::mem::take(&mut state.dirty_ids).into_iter().collect(),
            assets: std::mem::take(&mut state.dirty_assets)
                .into_iter()
                .collect(),
            epoch: state.epoch,
        }
    }

    /// A full listing ended: it becomes the view when nothing
    /// invalidated it meanwhile.
    fn full(&self, keep: Option<u64>, listed: &[ContainerSummary]) {
        let mut state = self.state();
        if keep != Some(state.epoch) {
            return;
        }
        let by_id = listed
            .iter()
            .filter_map(|c| Some((c.id.clone()?, c.clone())))
            .collect::<BTreeMap<_, _>>();
        // The events of containers gone are of no more use.
        state.touched.retain(|id, _| by_id.contains_key(id));
        state.containers = Some(by_id);
    }

    /// What a targeted read found: `ids` and the containers of `assets`
    /// are replaced by `found` (one that is not in it is gone).
    fn targeted(
        &self,
        epoch: u64,
        ids: &[String],
        assets: &[AssetName],
        found: Vec<ContainerSummary>,
    ) {
        let mut state = self.state();
        if epoch != state.epoch {
            return;
        }
        let State {
            containers,
            touched,
            ..
        } = &mut *state;
        let Some(containers) = containers.as_mut() else {
            return;
        };
        containers.retain(|id, c| !ids.contains(id) && !belongs_to(c, assets));
        for c in found {
            if let Some(id) = c.id.clone() {
                containers.insert(id, c);
            }
        }
        // The events of containers gone are of no more use.
        touched.retain(|id, _| !ids.contains(id) || containers.contains_key(id));
    }

    /// The view's containers (after a `Targeted` or `Cached` read).
    fn containers(&self) -> Option<Vec<ContainerSummary>> {
        let state = self.state();
        Some(state.containers.as_ref()?.values().cloned().collect())
    }
}

impl State {
    fn invalidate(&mut self) {
        self.epoch += 1;
        self.containers = None;
        self.dirty_ids.clear();
        self.dirty_assets.clear();
    }
}

/// Whether what the listing says of `c` may change with time alone.
fn settling(c: &ContainerSummary) -> bool {
    use bollard::models::ContainerSummaryStateEnum as S;
    let status = c.status.as_deref().unwrap_or_default();
    let young = super::ailing::up_secs(status).is_some_and(|s| s < SETTLING_SECS);
    young
        || status.contains("(health: starting)")
        || matches!(c.state, Some(S::RESTARTING | S::CREATED | S::REMOVING))
}

fn belongs_to(container: &ContainerSummary, assets: &[AssetName]) -> bool {
    let asset = container
        .labels
        .as_ref()
        .and_then(|l| l.get(super::labels::ASSET));
    asset.is_some_and(|a| assets.iter().any(|n| n.as_str() == a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, asset: &str, state: &str) -> ContainerSummary {
        ContainerSummary {
            id: Some(id.into()),
            labels: Some([(super::super::labels::ASSET.to_string(), asset.to_string())].into()),
            status: Some(state.into()),
            ..Default::default()
        }
    }

    fn name(s: &str) -> AssetName {
        AssetName::new(s).unwrap()
    }

    /// A view fed by a stream opened long enough ago.
    fn fed() -> (ContainerView, Instant) {
        let view = ContainerView::default();
        view.stream_opened();
        (view, Instant::now() + SUBSCRIBE_MARGIN)
    }

    fn ids(view: &ContainerView) -> Vec<(String, String)> {
        let mut out: Vec<_> = view
            .containers()
            .unwrap()
            .into_iter()
            .map(|c| (c.id.unwrap(), c.status.unwrap()))
            .collect();
        out.sort();
        out
    }

    /// The next read, which must be a targeted one.
    fn targeted(view: &ContainerView, now: Instant) -> (Vec<String>, Vec<AssetName>, u64) {
        match view.next_read_at(now) {
            Read::Targeted { ids, assets, epoch } => (ids, assets, epoch),
            other => panic!("a targeted read, not {other:?}"),
        }
    }

    /// Full listing at first, then the view until something changes.
    fn filled(list: &[ContainerSummary]) -> (ContainerView, Instant) {
        let (view, now) = fed();
        let Read::Full { keep } = view.next_read_at(now) else {
            panic!("a new view lists in full");
        };
        assert!(keep.is_some());
        view.full(keep, list);
        (view, now)
    }

    #[test]
    fn without_a_watcher_every_read_is_a_full_listing_that_is_not_kept() {
        let view = ContainerView::default();
        for _ in 0..2 {
            let read = view.next_read_at(Instant::now() + Duration::from_secs(9));
            assert_eq!(read, Read::Full { keep: None });
            view.full(None, &[container("c1", "a", "up")]);
        }
        assert!(view.containers().is_none());
    }

    #[test]
    fn a_listing_begun_before_the_subscription_reached_the_engine_is_not_kept() {
        let view = ContainerView::default();
        view.stream_opened();
        assert_eq!(view.next_read_at(Instant::now()), Read::Full { keep: None });
    }

    #[test]
    fn a_quiet_fleet_is_read_from_the_view() {
        let (view, now) = filled(&[container("c1", "a", "up"), container("c2", "b", "up")]);
        assert_eq!(view.next_read_at(now), Read::Cached);
        assert_eq!(view.next_read_at(now), Read::Cached);
        assert_eq!(ids(&view).len(), 2);
    }

    #[test]
    fn create_update_and_destroy_read_only_the_containers_named() {
        let (view, now) = filled(&[container("c1", "a", "up"), container("c2", "b", "up")]);
        // c3 created, c1 changed, c2 destroyed: in any order.
        for id in ["c2", "c3", "c1", "c3"] {
            view.touch_container(id);
        }
        let (read, assets, epoch) = targeted(&view, now);
        assert_eq!(read, ["c1", "c2", "c3"]);
        assert!(assets.is_empty());
        let found = vec![container("c1", "a", "exited"), container("c3", "c", "up")];
        view.targeted(epoch, &read, &assets, found);
        assert_eq!(
            ids(&view),
            [("c1".into(), "exited".into()), ("c3".into(), "up".into())]
        );
        assert_eq!(view.next_read_at(now), Read::Cached);
    }

    #[test]
    fn our_own_write_reads_the_assets_containers_again() {
        let (view, now) = filled(&[container("old", "a", "up"), container("c2", "b", "up")]);
        view.touch_asset(&name("a"));
        let (read, assets, epoch) = targeted(&view, now);
        view.targeted(epoch, &read, &assets, vec![container("new", "a", "up")]);
        assert_eq!(
            ids(&view),
            [("c2".into(), "up".into()), ("new".into(), "up".into())]
        );
    }

    #[test]
    fn a_gap_in_the_stream_forces_a_full_listing() {
        let (view, now) = filled(&[container("c1", "a", "up")]);
        view.stream_lost();
        assert_eq!(view.next_read_at(now), Read::Full { keep: None });
        // The stream restarts: listed in full once more, then kept.
        view.stream_opened();
        let later = now + SUBSCRIBE_MARGIN * 2;
        let Read::Full { keep: Some(epoch) } = view.next_read_at(later) else {
            panic!("a full listing to keep");
        };
        view.full(Some(epoch), &[container("c9", "a", "up")]);
        assert_eq!(view.next_read_at(later), Read::Cached);
        assert_eq!(ids(&view), [("c9".into(), "up".into())]);
    }

    #[test]
    fn a_read_overtaken_by_an_invalidation_is_dropped() {
        let (view, now) = filled(&[container("c1", "a", "up")]);
        view.touch_container("c1");
        let (read, assets, epoch) = targeted(&view, now);
        view.invalidate(); // a resync, while the read was under way
        view.targeted(epoch, &read, &assets, vec![]);
        assert!(view.containers().is_none());
        assert!(matches!(
            view.next_read_at(now),
            Read::Full { keep: Some(_) }
        ));
    }

    #[test]
    fn an_event_during_a_read_is_read_next_time() {
        let (view, now) = filled(&[container("c1", "a", "up")]);
        view.touch_container("c1");
        let (read, assets, epoch) = targeted(&view, now);
        view.touch_container("c1"); // while the read was under way
        view.targeted(epoch, &read, &assets, vec![container("c1", "a", "up")]);
        let Read::Targeted { ids: again, .. } = view.next_read_at(now) else {
            panic!("targeted again");
        };
        assert_eq!(again, ["c1"]);
    }

    #[test]
    fn a_read_that_fails_or_is_cancelled_drops_the_view_and_reads_wait_their_turn() {
        let (view, now) = filled(&[container("c1", "a", "up")]);
        view.touch_container("c1");
        let turn = view.turn.clone().try_lock_owned().unwrap();
        let reading = view.reading(turn, now);
        assert!(matches!(reading.read, Read::Targeted { .. }));
        // A second reader waits while the first holds the turn.
        assert!(view.turn.clone().try_lock_owned().is_err());
        drop(reading); // the request went away mid-read
        assert!(view.containers().is_none(), "dropped");
        let turn = view
            .turn
            .clone()
            .try_lock_owned()
            .expect("the turn is free");
        let reading = view.reading(turn, now);
        assert!(matches!(reading.read, Read::Full { keep: Some(_) }));
        reading.full(&[container("c1", "a", "exited")]);
        let turn = view.turn.clone().try_lock_owned().unwrap();
        let reading = view.reading(turn, now);
        assert_eq!(reading.read, Read::Cached);
        let listed = reading.cached().unwrap();
        assert_eq!(listed[0].status.as_deref(), Some("exited"));
    }

    #[test]
    fn a_full_read_that_fails_leaves_no_view_to_fall_back_on() {
        let (view, now) = filled(&[container("c1", "a", "up")]);
        for i in 0..=MAX_TARGETED {
            view.touch_container(&format!("c{i}"));
        }
        assert!(matches!(view.next_read_at(now), Read::Full { .. }));
        assert!(view.containers().is_none());
    }

    #[test]
    fn a_container_up_for_seconds_only_is_read_every_second_until_it_settles() {
        let (view, mut now) = filled(&[
            container("young", "a", "Up 3 seconds"),
            container("old", "b", "Up 2 hours"),
        ]);
        for _ in 0..2 {
            now += SETTLING_EVERY;
            let (read, assets, epoch) = targeted(&view, now);
            assert_eq!(read, ["young"]);
            view.targeted(
                epoch,
                &read,
                &assets,
                vec![container("young", "a", "Up 5 seconds")],
            );
            assert_eq!(
                view.next_read_at(now + SETTLING_EVERY / 2),
                Read::Cached,
                "read again within the second"
            );
        }
        now += SETTLING_EVERY;
        let (read, assets, epoch) = targeted(&view, now);
        view.targeted(
            epoch,
            &read,
            &assets,
            vec![container("young", "a", "Up 25 seconds")],
        );
        assert_eq!(
            view.next_read_at(now + SETTLING_EVERY),
            Read::Cached,
            "settled"
        );
    }

    #[test]
    fn many_changes_at_once_are_one_full_listing() {
        let (view, now) = filled(&[]);
        for i in 0..=MAX_TARGETED {
            view.touch_container(&format!("c{i}"));
        }
        assert!(matches!(
            view.next_read_at(now),
            Read::Full { keep: Some(_) }
        ));
    }
}
