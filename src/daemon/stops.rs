//! Stops under way: a managed container that was killed, died or stopped
//! a moment ago may be restarting (`docker restart` is kill, die, stop,
//! start; a restart policy is die, start). Until its `start` (or its
//! `destroy`) or a short settle, an exited container is not repaired:
//! on a busy engine, a repair at `stop` races the engine's own start and
//! is one needless write per restart. A `docker rm -f` ends with
//! `destroy`, so a removed container is still recreated at once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::spec::AssetName;

/// How long after its last stop-like event an asset's repair waits for
/// the engine's own start.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Assets whose containers stopped lately, with when.
#[derive(Default)]
pub struct Stops(Mutex<BTreeMap<AssetName, Instant>>);

impl Stops {
    /// A managed container of `asset` had `action` (`kill`, `start`, ...).
    pub fn note(&self, asset: AssetName, action: &str, now: Instant) {
        let mut stops = self.0.lock().expect("stops lock");
        stops.retain(|_, at| now.duration_since(*at) < SETTLE);
        match action {
            "kill" | "die" | "oom" | "stop" => {
                stops.insert(asset, now);
            }
            "start" | "destroy" => {
                stops.remove(&asset);
            }
            _ => {}
        }
    }

    /// How long a repair of `asset` must still wait, if at all.
    pub fn settling(&self, asset: &AssetName, now: Instant) -> Option<Duration> {
        let stops = self.0.lock().expect("stops lock");
        let left = SETTLE.saturating_sub(now.duration_since(*stops.get(asset)?));
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> AssetName {
        AssetName::new(s).unwrap()
    }

    #[test]
    fn a_stop_settles_until_the_start_or_the_settle_time() {
        let stops = Stops::default();
        let t0 = Instant::now();
        stops.note(name("a"), "kill", t0);
        stops.note(name("a"), "die", t0 + Duration::from_millis(100));
        let left = stops.settling(&name("a"), t0 + Duration::from_millis(600));
        assert_eq!(left, Some(SETTLE - Duration::from_millis(500)));
        assert_eq!(stops.settling(&name("b"), t0), None, "only the asset named");
        assert_eq!(stops.settling(&name("a"), t0 + SETTLE * 2), None, "settled");
        stops.note(name("a"), "start", t0 + Duration::from_millis(700));
        assert_eq!(
            stops.settling(&name("a"), t0 + Duration::from_millis(800)),
            None,
            "the engine started it again"
        );
    }

    #[test]
    fn a_removal_is_repaired_at_once() {
        let stops = Stops::default();
        let t0 = Instant::now();
        for action in ["kill", "die", "destroy"] {
            stops.note(name("a"), action, t0);
        }
        assert_eq!(stops.settling(&name("a"), t0), None);
    }

    #[test]
    fn other_events_change_nothing_and_old_stops_are_forgotten() {
        let stops = Stops::default();
        let t0 = Instant::now();
        stops.note(name("a"), "stop", t0);
        stops.note(name("b"), "exec_start", t0);
        assert!(stops.settling(&name("a"), t0).is_some());
        assert_eq!(stops.settling(&name("b"), t0), None);
        stops.note(name("b"), "stop", t0 + SETTLE);
        assert_eq!(stops.0.lock().unwrap().len(), 1, "a's stop was forgotten");
    }
}
