//! Who writes an instance's objects: two daemons started with the same
//! `--instance` on one engine would otherwise undo each other's work for
//! ever (each removes what the other's manifests do not declare).
//!
//! Every object a daemon creates or updates carries its [`Writer`] stamp
//! (host and state directory, and when the daemon started). A daemon that
//! sees an object of its instance written, since it started, by another
//! writer that started *earlier* stands by and says who that is: the
//! elder keeps the instance, the younger refuses to write.
//!
//! A stamp alone cannot tell a live elder from a dead one, so a daemon
//! asks: a stamp from this host names the writer's state directory, and
//! a daemon that answers on that directory's socket for this instance
//! ([`LiveWriter`]) is live. The younger of two live daemons stands by
//! before its first write, whatever either declares, and takes over when
//! the elder stops answering. A stamp from another host (a remote
//! `DOCKER_HOST`) cannot be asked: there, an elder counts as live once it
//! wrote since this daemon started. On Swarm the writer lease decides
//! instead (`crate::engine::lease`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ActualAsset;
use crate::model::spec::AssetName;
pub use crate::model::writer::{Writer, WriterStamp};

/// What a running daemon says of itself on its socket (`/v1/writer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveWriter {
    pub instance: String,
    pub writer: Writer,
}

/// The writers that answered on their sockets, by id: when each started.
pub type Live = BTreeMap<String, u64>;

impl Writer {
    /// This process, keeping its state in `state_dir`.
    pub fn this_process(state_dir: &Path, started_ms: u64) -> Self {
        let dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        Self {
            id: format!("{}:{}", this_host(), dir.display()),
            started_ms,
        }
    }

    /// The state directory of a writer on this host; `None` for another
    /// host's, which cannot be asked.
    pub fn state_dir_here(&self) -> Option<&Path> {
        let (host, dir) = self.id.split_once(':')?;
        (host == this_host()).then_some(Path::new(dir))
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// The other writers of this host whose stamps are on the instance's
/// objects: the daemons to ask whether they still run.
pub fn others_here<'a>(actual: &'a [ActualAsset], me: &Writer) -> Vec<&'a Writer> {
    let mut others: Vec<&Writer> = actual
        .iter()
        .filter_map(|a| a.writer.as_ref())
        .map(|s| &s.writer)
        .filter(|w| w.id != me.id && w.state_dir_here().is_some())
        .collect();
    others.sort_by(|a, b| a.id.cmp(&b.id));
    others.dedup_by(|a, b| a.id == b.id);
    others
}

/// Another live writer this daemon must give way to, and when it
/// started: one that answers on its socket and started before this one
/// (whatever it wrote when), or, if it cannot be asked, one that started
/// before this one and wrote an object of the instance since.
pub fn elder_writer<'a>(
    actual: &'a [ActualAsset],
    me: &Writer,
    live: &Live,
) -> Option<(&'a AssetName, &'a WriterStamp, u64)> {
    actual
        .iter()
        .filter_map(|a| Some((&a.name, a.writer.as_ref()?)))
        .filter(|(_, stamp)| stamp.writer.id != me.id)
        .filter_map(|(name, stamp)| match live.get(&stamp.writer.id) {
            Some(&started_ms) => {
                let elder = (started_ms, &stamp.writer.id) < (me.started_ms, &me.id);
                elder.then_some((name, stamp, started_ms))
            }
            None => {
                let elder = stamp.writer.started_ms < me.started_ms
                    // The local engine's clock has whole seconds.
                    && stamp.written_ms + 1000 >= me.started_ms;
                elder.then_some((name, stamp, stamp.writer.started_ms))
            }
        })
        .min_by_key(|(_, _, started_ms)| *started_ms)
}

/// Younger writers whose writes this daemon saw (they will stand by).
pub fn younger_writers<'a>(actual: &'a [ActualAsset], me: &Writer) -> Vec<&'a WriterStamp> {
    let mut seen: Vec<&WriterStamp> = actual
        .iter()
        .filter_map(|a| a.writer.as_ref())
        .filter(|s| s.writer.id != me.id && s.writer.started_ms > me.started_ms)
        .collect();
    seen.sort_by(|a, b| a.writer.id.cmp(&b.writer.id));
    seen.dedup_by(|a, b| a.writer.id == b.writer.id);
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::strategy::ReplicaCounts;

    fn object(name: &str, writer: &str, started_ms: u64, written_ms: u64) -> ActualAsset {
        ActualAsset {
            name: AssetName::new(name).unwrap(),
            spec_hash: None,
            source: None,
            object_ids: vec![],
            version: None,
            drift: vec![],
            replicas: ReplicaCounts::default(),
            writer: Some(WriterStamp {
                writer: Writer {
                    id: writer.into(),
                    started_ms,
                },
                written_ms,
            }),
            template_hash: None,
            rollout: None,
        }
    }

    fn me() -> Writer {
        Writer {
            id: "n1:/var/lib/assetd".into(),
            started_ms: 100_000,
        }
    }

    fn none_live() -> Live {
        Live::new()
    }

    #[test]
    fn an_elder_writer_that_wrote_since_we_started_is_given_way_to() {
        let actual = [object("a", "n1:/srv/other", 50_000, 120_000)];
        let (name, stamp, _) = elder_writer(&actual, &me(), &none_live()).expect("gives way");
        assert_eq!(name.as_str(), "a");
        assert_eq!(stamp.writer.id, "n1:/srv/other");
    }

    #[test]
    fn our_own_objects_from_before_a_restart_are_ours() {
        let actual = [object("a", "n1:/var/lib/assetd", 50_000, 120_000)];
        let live = Live::from([("n1:/var/lib/assetd".to_string(), 10_000)]);
        assert!(elder_writer(&actual, &me(), &live).is_none());
    }

    #[test]
    fn an_elder_writer_that_wrote_nothing_since_we_started_is_not_live() {
        let actual = [object("a", "n1:/srv/other", 50_000, 60_000)];
        assert!(elder_writer(&actual, &me(), &none_live()).is_none());
    }

    /// The case a stamp alone gets wrong: the elder wrote its objects
    /// before this daemon started. Asked, it answers: stand by before
    /// the first write.
    #[test]
    fn an_elder_that_answers_is_given_way_to_whenever_it_wrote() {
        let actual = [object("a", "n1:/srv/other", 50_000, 60_000)];
        let live = Live::from([("n1:/srv/other".to_string(), 50_000)]);
        let (_, _, started) = elder_writer(&actual, &me(), &live).expect("gives way");
        assert_eq!(started, 50_000);
    }

    /// Restarted since it stamped: what counts is when the live one
    /// started, so a daemon started after this one gives way to it.
    #[test]
    fn a_writer_restarted_after_us_is_the_younger() {
        let actual = [object("a", "n1:/srv/other", 50_000, 120_000)];
        let live = Live::from([("n1:/srv/other".to_string(), 150_000)]);
        assert!(elder_writer(&actual, &me(), &live).is_none());
    }

    #[test]
    fn a_younger_writer_gives_way_to_us() {
        let actual = [
            object("a", "n2:/var/lib/assetd", 150_000, 160_000),
            object("b", "n2:/var/lib/assetd", 150_000, 161_000),
        ];
        assert!(elder_writer(&actual, &me(), &none_live()).is_none());
        assert_eq!(younger_writers(&actual, &me()).len(), 1);
    }
}
