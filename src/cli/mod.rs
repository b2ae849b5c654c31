//! The command families of the `assetd` binary that are not the daemon.

/// `apply --once` and `sync`.
pub mod apply;
/// The commands that talk to the running daemon.
pub mod control;
/// Man pages and shell completions, generated from the clap definitions.
pub mod docs;
/// `assetd secret`: age files for `decrypt: age`.
pub mod secret;
