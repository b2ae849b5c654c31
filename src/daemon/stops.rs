//! Stops under way: a managed container that died or stopped a moment
//! ago may be restarting (`docker restart` is kill, die, stop, start; a
//! restart policy is die, start). Until its `start` (or its `destroy`)
//! or a short settle, an exited container is not repaired: on a busy
//! engine, a repair at `stop` races the engine's own start and is one
//! needless write per restart. A `docker rm -f` ends with `destroy`, so a
//! removed container is still recreated by the next pass.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::spec::AssetName;

/// How long after its first stop-like event an asset's repair waits for
/// the engine's own start.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Assets whose containers stopped or started lately.
#[derive(Default)]
pub struct Stops(Mutex<BTreeMap<AssetName, Seen>>);

/// What the events said of one asset's containers lately.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// The first `die` or `stop` since the last `start` or `destroy`.
    stopped: Option<Instant>,
    /// The last `die`, `stop`, `start` or `destroy`.
    last: Instant,
}

/// How soon a pass looks again at an asset whose containers changed
/// after the last pass began reading them (a `start` asks for no pass of
/// its own: the status must still catch up).
pub const RELOOK: Duration = Duration::from_millis(250);

impl Stops {
    /// A managed container of `asset` had `action` (`die`, `start`, ...).
    pub fn note(&self, asset: AssetName, action: &str, now: Instant) {
        let mut seen = self.0.lock().expect("stops lock");
        seen.retain(|_, s| now.saturating_duration_since(s.last) < SETTLE);
        let stopped = match action {
            // Not `kill` or `oom`: neither means the container stopped
            // (`docker kill -s HUP`, a child process killed).
            "die" | "stop" => seen.get(&asset).and_then(|s| s.stopped).or(Some(now)),
            "start" | "destroy" => None,
            _ => return,
        };
        seen.insert(asset, Seen { stopped, last: now });
    }

    /// How long a repair of `asset`, planned by a pass that began
    /// reading the engine at `began`, must still wait, if at all: its
    /// settle, or [`RELOOK`] when its containers changed after `began`
    /// (what the pass read may be from before a restart ended).
    pub fn hold(&self, asset: &AssetName, began: Instant, now: Instant) -> Option<Duration> {
        let seen = self.0.lock().expect("stops lock");
        let s = seen.get(asset)?;
        if s.last > began {
            return Some(RELOOK);
        }
        let at = s.stopped?;
        let left = SETTLE.saturating_sub(now.saturating_duration_since(at));
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> AssetName {
        AssetName::new(s).unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_stop_settles_from_its_first_event_until_the_start_or_the_settle_time() {
        let stops = Stops::default();
        let t0 = Instant::now();
        stops.note(name("a"), "die", t0);
        stops.note(name("a"), "stop", t0 + ms(100));
        let after = t0 + ms(200);
        assert_eq!(
            stops.hold(&name("a"), after, t0 + ms(600)),
            Some(SETTLE - ms(600)),
            "counted from the first event of the stop"
        );
        assert_eq!(
            stops.hold(&name("b"), after, t0),
            None,
            "only the asset named"
        );
        assert_eq!(stops.hold(&name("a"), after, t0 + SETTLE), None, "settled");
        stops.note(name("a"), "start", t0 + ms(700));
        let later = t0 + ms(800);
        assert_eq!(
            stops.hold(&name("a"), later, later),
            None,
            "the engine started it again"
        );
    }

    #[test]
    fn an_event_after_the_pass_began_leaves_the_repair_to_the_next_pass() {
        let stops = Stops::default();
        let began = Instant::now();
        // A `docker restart` ending while the pass listed: its listing
        // may show the container still exited.
        stops.note(name("a"), "start", began + ms(50));
        assert_eq!(stops.hold(&name("a"), began, began + ms(60)), Some(RELOOK));
        // `docker rm -f` (kill, die, destroy) seen before the pass began:
        // recreated at once.
        let stops = Stops::default();
        for action in ["kill", "die", "destroy"] {
            stops.note(name("a"), action, began);
        }
        assert_eq!(stops.hold(&name("a"), began + ms(1), began + ms(1)), None);
    }

    #[test]
    fn signals_and_other_events_hold_nothing_and_old_events_are_forgotten() {
        let stops = Stops::default();
        let t0 = Instant::now();
        stops.note(name("a"), "kill", t0);
        stops.note(name("a"), "oom", t0);
        stops.note(name("a"), "exec_start", t0);
        assert_eq!(
            stops.hold(&name("a"), t0, t0),
            None,
            "a signal stops nothing"
        );
        stops.note(name("b"), "die", t0);
        stops.note(name("c"), "die", t0 + SETTLE);
        assert_eq!(stops.0.lock().unwrap().len(), 1, "b's stop was forgotten");
    }
}
