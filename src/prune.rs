//! When the daemon may carry out a planned removal: the two clocks of the
//! prune guard that a single pure plan cannot keep.
//!
//! - [`Settle`]: a removal runs only after it has stayed planned for a
//!   settle time (a directory deleted file by file is seen half-way by
//!   some pass) and, when the file that last declared the asset still
//!   exists, after that file has been quiet for longer (a file rewritten
//!   slowly in place shows its later documents missing until written).
//! - [`PruneWindow`]: what was removed within the last `--prune-window`,
//!   so the mass-prune guard bounds removals over time, not per pass
//!   (250 files deleted one by one add up like 250 deleted at once).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::plan::{ActionKind, Plan, RecentRemovals};
use crate::spec::AssetName;

/// Since when each removal has been planned without interruption.
#[derive(Debug)]
pub struct Settle {
    time: Duration,
    /// How long a file that still exists must have been quiet before a
    /// document gone from it counts as removed.
    quiet: Duration,
    since: BTreeMap<AssetName, Instant>,
}

impl Settle {
    pub fn new(time: Duration, quiet: Duration) -> Self {
        Self {
            time,
            quiet,
            since: BTreeMap::new(),
        }
    }

    /// Starts the clock of new removals; forgets those no longer planned
    /// (the file came back, or the whole directory is now held).
    pub fn observe(&mut self, plan: &Plan, now: Instant) {
        let removing: BTreeSet<&AssetName> = plan
            .actions
            .iter()
            .filter(|a| a.kind() == ActionKind::Remove)
            .map(|a| &a.name)
            .collect();
        self.since.retain(|name, _| removing.contains(name));
        for name in removing {
            self.since.entry(name.clone()).or_insert(now);
        }
    }

    /// How long the removal of `name` must still wait, if it is one.
    /// `quiet_for` is how long the file that last declared it has not
    /// changed (`None`: it is gone, which is final).
    pub fn wait(
        &self,
        name: &AssetName,
        now: Instant,
        quiet_for: Option<Duration>,
    ) -> Option<Duration> {
        let due = *self.since.get(name)? + self.time;
        let planned = due.saturating_duration_since(now);
        let file = quiet_for.map_or(Duration::ZERO, |q| self.quiet.saturating_sub(q));
        Some(planned.max(file)).filter(|d| !d.is_zero())
    }
}

/// Removals within the current window, and the fleet when it opened.
#[derive(Debug)]
pub struct PruneWindow {
    length: Duration,
    /// When the window opened (the first removal in it) and how many
    /// assets were managed then.
    opened: Option<(Instant, usize)>,
    /// Assets removed in the window (a set: a retried removal is one).
    removed: BTreeSet<AssetName>,
}

impl PruneWindow {
    pub fn new(length: Duration) -> Self {
        Self {
            length,
            opened: None,
            removed: BTreeSet::new(),
        }
    }

    /// What the planner must count as already removed; closes a window
    /// that has run out.
    pub fn recent(&mut self, now: Instant) -> RecentRemovals {
        if self
            .opened
            .is_some_and(|(at, _)| now.saturating_duration_since(at) >= self.length)
        {
            self.reset();
        }
        RecentRemovals {
            removed: self.removed.len(),
            fleet: self.opened.map(|(_, fleet)| fleet),
        }
    }

    /// Counts an asset removed; `fleet` is the number of managed assets
    /// before it went (the window's base if it opens now).
    pub fn record(&mut self, now: Instant, fleet: usize, name: AssetName) {
        self.opened.get_or_insert((now, fleet));
        self.removed.insert(name);
    }

    /// The operator confirmed what was held: count from zero again.
    pub fn reset(&mut self) {
        self.opened = None;
        self.removed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Op, RemoveReason};

    const SETTLE: Duration = Duration::from_secs(1);
    const QUIET: Duration = Duration::from_secs(5);

    fn plan(removals: &[&str]) -> Plan {
        Plan {
            actions: removals
                .iter()
                .map(|name| Action {
                    name: AssetName::new(name).unwrap(),
                    op: Op::Remove(RemoveReason { was_in: None }),
                })
                .collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn a_removal_runs_only_after_staying_planned_for_the_settle_time() {
        let a = AssetName::new("a").unwrap();
        let t0 = Instant::now();
        let mut settle = Settle::new(SETTLE, QUIET);
        settle.observe(&plan(&["a"]), t0);
        assert_eq!(settle.wait(&a, t0, None), Some(SETTLE));
        let half = t0 + SETTLE / 2;
        settle.observe(&plan(&["a"]), half);
        assert_eq!(settle.wait(&a, half, None), Some(SETTLE / 2));
        let due = t0 + SETTLE;
        settle.observe(&plan(&["a"]), due);
        assert_eq!(settle.wait(&a, due, None), None);
    }

    #[test]
    fn a_removal_interrupted_by_one_pass_starts_its_clock_again() {
        // `rm -rf` seen mid-way: one pass plans the removal, the next sees
        // the directory gone (a hold, no removal), the last sees it back.
        let a = AssetName::new("a").unwrap();
        let t0 = Instant::now();
        let mut settle = Settle::new(SETTLE, QUIET);
        settle.observe(&plan(&["a"]), t0);
        let later = t0 + SETTLE;
        settle.observe(&plan(&[]), later);
        assert_eq!(
            settle.wait(&a, later, None),
            None,
            "not planned: nothing to wait for"
        );
        settle.observe(&plan(&["a"]), later);
        assert_eq!(settle.wait(&a, later, None), Some(SETTLE));
    }

    #[test]
    fn a_removal_waits_until_its_file_has_been_quiet_for_the_settle_time() {
        // A multi-document file rewritten slowly in place: the document
        // not written yet looks removed while the file is still changing.
        let a = AssetName::new("a").unwrap();
        let t0 = Instant::now();
        let mut settle = Settle::new(SETTLE, QUIET);
        settle.observe(&plan(&["a"]), t0);
        let due = t0 + SETTLE;
        settle.observe(&plan(&["a"]), due);
        assert_eq!(
            settle.wait(&a, due, Some(Duration::from_millis(2300))),
            Some(Duration::from_millis(2700))
        );
        assert_eq!(settle.wait(&a, due, Some(QUIET)), None);
    }

    #[test]
    fn the_window_counts_removals_until_it_runs_out_or_is_reset() {
        let window_length = Duration::from_secs(600);
        let t0 = Instant::now();
        let mut window = PruneWindow::new(window_length);
        assert_eq!(window.recent(t0), RecentRemovals::default());
        let n = |s: &str| AssetName::new(s).unwrap();
        window.record(t0, 300, n("a"));
        window.record(t0 + Duration::from_secs(1), 299, n("b"));
        window.record(t0 + Duration::from_secs(1), 299, n("b"));
        assert_eq!(
            window.recent(t0 + Duration::from_secs(2)),
            RecentRemovals {
                removed: 2,
                fleet: Some(300)
            },
            "the fleet is the one the window opened with"
        );
        assert_eq!(window.recent(t0 + window_length), RecentRemovals::default());
        window.record(t0 + window_length, 298, n("c"));
        window.reset();
        assert_eq!(window.recent(t0 + window_length), RecentRemovals::default());
    }
}
