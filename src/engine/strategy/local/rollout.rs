//! Replacing running containers with a new version without an outage:
//! the local engine's update protocol.
//!
//! The new version starts as *candidates* (one per replica, named
//! `NAME.assetd-candidate`) beside the old containers, with no restart
//! policy. Every candidate must pass the gate: running for the monitor
//! window without exiting and, when the container has a healthcheck,
//! healthy. Only then does each get its restart policy (which marks it as
//! having passed), the old container is removed and the candidate renamed
//! into its place. If any candidate fails, all candidates are removed and
//! the old containers run on: no mix of versions is left behind.
//!
//! When host ports are published, or the asset writes to a volume or bind
//! mount (unless `update.order` says start-first), old and new must not
//! run at once: the old containers are stopped first (kept), and started
//! again if the new version fails.
//!
//! `update.parallelism` replicas go through the gate at a time, with
//! `update.delay` between steps; the swap still waits for every replica,
//! so `failureAction` makes no difference here: the previous version
//! always runs on (Swarm's `pause` keeps the replicas already updated).
//!
//! After a crash of assetd at any step, the next deploy converges: a
//! candidate that passed (its restart policy is set) takes its slot, any
//! other candidate is removed and the update redone.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::ContainerUpdateBody;
use bollard::query_parameters::{
    InspectContainerOptions, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};

use super::{LocalDocker, StrategyError};
use crate::engine::strategy::Ownership;
use crate::model::spec::{DeploySpec, Healthcheck, MountKind, UpdateOrder, UpdatePolicy};

/// The name suffix that marks a candidate (a label cannot be changed
/// after creation, a name can: once renamed, it is no candidate).
pub(super) const CANDIDATE_SUFFIX: &str = ".assetd-candidate";

/// How long a new version must run, without exiting, before it replaces
/// the old one, unless `update.monitor` says otherwise.
pub(super) const MONITOR: Duration = Duration::from_secs(3);

const GATE_POLL: Duration = Duration::from_millis(250);

/// A container of an older version that the new one replaces.
pub(super) struct Previous {
    pub name: String,
    pub id: String,
    pub running: bool,
}

/// One replica to replace: the old container and the slot it holds.
pub(super) struct Replacement {
    pub old: Previous,
    pub slot: String,
    pub replica: u64,
}

pub(super) fn is_candidate(name: &str) -> bool {
    name.ends_with(CANDIDATE_SUFFIX)
}

/// Whether old and new must not run side by side. A published host port
/// leaves no choice on one engine (the new one could not bind it);
/// otherwise the policy's `order` decides, and without one, data written
/// to a volume or bind mount (two versions writing one database) does.
fn stop_first(spec: &DeploySpec, policy: &UpdatePolicy) -> bool {
    if !spec.ports.is_empty() {
        return true;
    }
    match policy.order {
        Some(order) => order == UpdateOrder::StopFirst,
        None => spec
            .mounts
            .iter()
            .any(|m| !m.read_only && m.kind != MountKind::Tmpfs),
    }
}

impl LocalDocker {
    /// Replaces every old container of `batch` by a container of `spec`
    /// in its slot, or none of them: on a failed gate the old ones run on
    /// (again) and the error says why. Returns slot → new container ID.
    pub(super) async fn replace(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
        batch: Vec<Replacement>,
    ) -> Result<BTreeMap<String, String>, StrategyError> {
        let policy = spec.update.clone().unwrap_or_default();
        let stop_first = stop_first(spec, &policy);
        let monitor = policy.monitor_or(MONITOR);
        let declared = spec.healthcheck.as_ref().filter(|h| h.checks());
        let per_step = match policy.parallelism() {
            0 => batch.len().max(1),
            n => n as usize,
        };
        // Candidates start `parallelism` at a time, each step gated
        // before the next begins; the swap waits for all of them.
        let mut candidates: Vec<(&Replacement, String)> = Vec::new();
        for (step, chunk) in batch.chunks(per_step).enumerate() {
            if step > 0 {
                tokio::time::sleep(policy.delay()).await;
            }
            if stop_first {
                if let Err(e) = self.stop_old(chunk).await {
                    self.abandon(&candidates, &batch, stop_first).await;
                    return Err(e);
                }
            }
            let first_new = candidates.len();
            for r in chunk {
                match self.start_candidate(spec, owner, r).await {
                    Ok(id) => candidates.push((r, id)),
                    Err(e) => {
                        self.abandon(&candidates, &batch, stop_first).await;
                        return Err(e);
                    }
                }
            }
            for (r, id) in &candidates[first_new..] {
                if let Err(why) = self.gate(id, declared, monitor).await {
                    let restored = self.abandon(&candidates, &batch, stop_first).await;
                    return Err(StrategyError::RolledBack(format!(
                        "the new version of {} {why}; {restored}",
                        r.slot
                    )));
                }
            }
        }
        let mut placed = BTreeMap::new();
        for (r, id) in &candidates {
            self.swap(spec, r, id).await?;
            placed.insert(r.slot.clone(), id.clone());
        }
        tracing::info!(
            replicas = placed.len(),
            "new version passed its gate and replaced the old one"
        );
        Ok(placed)
    }

    /// Stops the old containers of one step of a stop-first update (they
    /// are kept, to be started again if the new version fails).
    async fn stop_old(&self, chunk: &[Replacement]) -> Result<(), StrategyError> {
        for r in chunk.iter().filter(|r| r.old.running) {
            let options = StopContainerOptionsBuilder::default().t(10).build();
            self.docker
                .stop_container(&r.old.id, Some(options))
                .await
                .map_err(|e| StrategyError::docker("stop container", r.old.name.as_str(), e))?;
        }
        Ok(())
    }

    /// Creates and starts a candidate, without a restart policy while on
    /// trial: an exit shows as an exit, with its code.
    async fn start_candidate(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
        r: &Replacement,
    ) -> Result<String, StrategyError> {
        let mut body = super::container_body(
            spec,
            owner,
            &self.instance,
            r.replica,
            self.stack_dir.as_deref(),
        );
        if let Some(host) = body.host_config.as_mut() {
            host.restart_policy = None;
        }
        let name = format!("{}{CANDIDATE_SUFFIX}", r.slot);
        self.create_and_start_body(body, spec, &name).await
    }

    /// Marks a candidate as passed (its restart policy), removes the old
    /// container and gives the candidate its name.
    async fn swap(
        &self,
        spec: &DeploySpec,
        r: &Replacement,
        id: &str,
    ) -> Result<(), StrategyError> {
        let candidate = format!("{}{CANDIDATE_SUFFIX}", r.slot);
        let policy = ContainerUpdateBody {
            restart_policy: super::container_host_config(spec).restart_policy,
            ..Default::default()
        };
        self.docker
            .update_container(id, policy)
            .await
            .map_err(|e| StrategyError::docker("update container", candidate.as_str(), e))?;
        self.remove_container(&r.old.id).await?;
        self.docker
            .rename_container(
                id,
                RenameContainerOptionsBuilder::default()
                    .name(&r.slot)
                    .build(),
            )
            .await
            .map_err(|e| StrategyError::docker("rename container", candidate.as_str(), e))?;
        Ok(())
    }

    /// Removes the candidates and brings the old containers back; says
    /// what runs now, for the error.
    async fn abandon(
        &self,
        candidates: &[(&Replacement, String)],
        batch: &[Replacement],
        stop_first: bool,
    ) -> String {
        for (_, id) in candidates {
            let _ = self.remove_container(id).await;
        }
        self.restore(batch, stop_first).await
    }

    /// Starts the old containers again after a stop-first attempt, also
    /// those an interrupted earlier attempt had stopped (they are ours,
    /// and stopped is not how they should be).
    async fn restore(&self, batch: &[Replacement], stop_first: bool) -> String {
        if !stop_first {
            return "the previous version runs on".into();
        }
        let mut failures = Vec::new();
        for r in batch {
            if let Err(e) = self.docker.start_container(&r.old.id, None).await {
                tracing::error!(container = %r.old.name, error = %e, "cannot start the previous version again");
                failures.push(format!("{}: {e}", r.old.name));
            }
        }
        if failures.is_empty() {
            "the previous version runs again".into()
        } else {
            format!(
                "the previous version could not be started again ({})",
                failures.join("; ")
            )
        }
    }

    /// Running for `monitor` without exiting and, when the container has
    /// a healthcheck (declared, or the image's own), healthy: waiting as
    /// long as the check's timing allows. The error says what happened,
    /// in the engine's terms.
    async fn gate(
        &self,
        id: &str,
        declared: Option<&Healthcheck>,
        monitor: Duration,
    ) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let health_deadline =
            declared.map_or_else(Healthcheck::default_deadline, Healthcheck::deadline);
        let window = humantime_short(monitor);
        loop {
            let inspect = self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| format!("could not be inspected ({e})"))?;
            let state = inspect.state.unwrap_or_default();
            if state.running != Some(true) {
                let code = state.exit_code.unwrap_or_default();
                return Err(format!("exited {code} within {window} of starting"));
            }
            let health = state.health.unwrap_or_default();
            let status = health.status.map(|s| s.to_string()).unwrap_or_default();
            if status == "unhealthy" {
                let output = health
                    .log
                    .and_then(|log| log.last().and_then(|l| l.output.clone()))
                    .unwrap_or_default();
                return Err(format!("turned unhealthy ({})", output.trim()));
            }
            let checked = !matches!(status.as_str(), "" | "none");
            let now = tokio::time::Instant::now();
            if now >= started + monitor && (!checked || status == "healthy") {
                return Ok(());
            }
            if now >= started + monitor + health_deadline {
                return Err(format!("was not healthy in time (health: {status})"));
            }
            tokio::time::sleep(GATE_POLL).await;
        }
    }
}

/// `3s`, `1.5s`, `250ms`: a window as people write it.
fn humantime_short(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms if ms >= 1000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms => format!("{ms}ms"),
    }
}
