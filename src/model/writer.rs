//! Writer stamps: who wrote an object of the instance, and when (the rule
//! built on them is `crate::engine::strategy::writer`).

use serde::{Deserialize, Serialize};

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
