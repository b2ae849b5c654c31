//! Plain data every layer shares: the canonical asset spec and its value
//! types, what the engine runs (`actual`), what the store records
//! (`applied`), the operator's decisions (`control`), sync windows and
//! writer stamps. Knows no other folder; no IO; no bollard, sled, axum or
//! clap.

pub mod actual;
pub mod applied;
pub mod control;
pub mod hooks;
pub mod spec;
pub mod window;
pub mod writer;
