//! assetd makes a Docker engine (containers) or a Docker Swarm (services)
//! look like the YAML asset manifests in one directory, and keeps it so.
//!
//! Data flows through the modules in this order:
//!
//! - [`spec`]: the canonical asset spec, its hash and field-level diff.
//! - [`manifest`]: one file's YAML → specs, or errors with positions.
//! - [`desired`]: the manifests directory → the desired set (+ held assets).
//! - [`store`]: the last-applied records (sled), a cache of the labels.
//! - [`strategy`]: the deployment strategies (local engine, Swarm).
//! - [`engine`]: connecting to Docker, choosing the strategy.
//! - [`plan`]: the pure diff of desired, applied and actual.
//! - [`reconcile`]: one pass: observe, plan, execute, record.
//! - [`prune`]: the daemon's prune clocks: settle time and prune window.
//! - [`report`]: plans and passes for people and scripts.
//! - [`status`]: per-asset phases for `assetd status`.
//! - [`watch`]: triggers from the directory, Docker events, timers.
//! - [`writer`]: who writes an instance: stamps, and giving way to an elder.
//! - [`scheduler`]: per-asset jobs: one at a time, bounded, backoff, settle.
//! - [`daemon`]: `assetd run`: the loop's steps, shutdown.
//! - [`api`], [`metrics`]: the status socket, `/metrics`, health.
//!
//! Invariants: `plan` does no IO; nothing without the
//! `io.assetd.managed=true` label is ever listed, changed or removed; a
//! broken manifest never causes a removal.

pub mod api;
pub mod daemon;
pub mod desired;
pub mod engine;
pub mod events;
pub mod health;
pub mod history;
pub mod lease;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod plan_answer;
pub mod prune;
pub mod reconcile;
pub mod registry_auth;
pub mod report;
pub mod revision;
pub mod rollout_result;
pub mod scheduler;
pub mod spec;
pub mod stack;
pub mod status;
pub mod store;
pub mod strategy;
pub mod suspend;
pub mod watch;
pub mod window;
