//! Who writes an instance's objects: two daemons started with the same
//! `--instance` on one engine would otherwise undo each other's work for
//! ever (each removes what the other's manifests do not declare).
//!
//! Every object a daemon creates or updates carries its [`Writer`] stamp
//! (host and state directory, and when the daemon started). A daemon that
//! sees an object of its instance written, since it started, by another
//! writer that started *earlier* stands by and says who that is: the
//! elder keeps the instance, the younger refuses to write. At most one
//! round of writes passes before the younger sees the elder's stamp. An
//! elder that writes nothing is not noticed, and then there is nothing to
//! fight over either. (The Swarm-wide writer lease of issue 17 would
//! replace this for Swarm.)

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spec::AssetName;
use crate::strategy::ActualAsset;

/// The writer's identity and start, as stamped on objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    /// `host:state-dir`: stable across restarts of the same daemon, so a
    /// restarted daemon recognises its own objects.
    pub id: String,
    /// Unix ms when the writing process started.
    pub started_ms: u64,
}

/// A writer's stamp seen on a listed object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterStamp {
    pub writer: Writer,
    /// Unix ms when the object was last created or updated (the engine's
    /// own clock; whole seconds on the local engine).
    pub written_ms: u64,
}

impl Writer {
    /// This process, keeping its state in `state_dir`.
    pub fn this_process(state_dir: &Path, started_ms: u64) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".into());
        let dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        Self {
            id: format!("{host}:{}", dir.display()),
            started_ms,
        }
    }
}

/// Another live writer this daemon must give way to: one that started
/// before it and wrote an object of the instance after it started.
pub fn elder_writer<'a>(
    actual: &'a [ActualAsset],
    me: &Writer,
) -> Option<(&'a AssetName, &'a WriterStamp)> {
    actual
        .iter()
        .filter_map(|a| Some((&a.name, a.writer.as_ref()?)))
        .filter(|(_, stamp)| {
            stamp.writer.id != me.id
                && stamp.writer.started_ms < me.started_ms
                // The local engine's clock has whole seconds.
                && stamp.written_ms + 1000 >= me.started_ms
        })
        .min_by_key(|(_, stamp)| stamp.writer.started_ms)
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
    use crate::strategy::ReplicaCounts;

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

    #[test]
    fn an_elder_writer_that_wrote_since_we_started_is_given_way_to() {
        let actual = [object("a", "n1:/srv/other", 50_000, 120_000)];
        let (name, stamp) = elder_writer(&actual, &me()).expect("gives way");
        assert_eq!(name.as_str(), "a");
        assert_eq!(stamp.writer.id, "n1:/srv/other");
    }

    #[test]
    fn our_own_objects_from_before_a_restart_are_ours() {
        let actual = [object("a", "n1:/var/lib/assetd", 50_000, 120_000)];
        assert!(elder_writer(&actual, &me()).is_none());
    }

    #[test]
    fn an_elder_writer_that_wrote_nothing_since_we_started_is_not_live() {
        let actual = [object("a", "n1:/srv/other", 50_000, 60_000)];
        assert!(elder_writer(&actual, &me()).is_none());
    }

    #[test]
    fn a_younger_writer_gives_way_to_us() {
        let actual = [
            object("a", "n2:/var/lib/assetd", 150_000, 160_000),
            object("b", "n2:/var/lib/assetd", 150_000, 161_000),
        ];
        assert!(elder_writer(&actual, &me()).is_none());
        assert_eq!(younger_writers(&actual, &me()).len(), 1);
    }
}
