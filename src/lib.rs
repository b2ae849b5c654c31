//! assetd makes a Docker engine (containers) or a Docker Swarm (services)
//! look like the YAML asset manifests in one directory, and keeps it so.
//!
//! The folders, lowest first; each imports only from those before it
//! (`tests/layout.rs` holds the code to that):
//!
//! - [`model`]: plain data every layer shares (spec, actual, applied,
//!   control entries, windows, writer stamps).
//! - [`input`]: the manifests directory → `Desired` (format, schema,
//!   walk, holds, declared stack, revision).
//! - [`core`]: pure decisions: the plan, sync windows, health, backoff.
//! - [`store`]: the last-applied records and control entries (sled).
//! - [`engine`]: the Docker side: strategies, stack objects, lease.
//! - [`reconcile`]: one pass: observe, plan, execute, record.
//! - [`report`]: plans, passes and status for people and scripts.
//! - [`daemon`]: `assetd run`: the loop, watchers, scheduler, API,
//!   metrics, dashboard.
//!
//! Invariants: `plan` does no IO; nothing without the
//! `io.assetd.managed=true` label is ever listed, changed or removed; a
//! broken manifest never causes a removal.

pub mod core;
pub mod daemon;
pub mod engine;
pub mod input;
pub mod model;
pub mod reconcile;
pub mod report;
pub mod store;
