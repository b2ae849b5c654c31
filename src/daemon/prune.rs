//! The prune guard's clock that a single pure plan cannot keep:
//! [`PruneWindow`], what was removed within the last `--prune-window`, so
//! the mass-prune guard bounds removals over time, not per pass (250
//! files deleted one by one add up like 250 deleted at once). The other
//! clock, the settle time of a removal, is the scheduler's
//! ([`crate::daemon::scheduler`]).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::plan::RecentRemovals;
use crate::model::spec::AssetName;

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
