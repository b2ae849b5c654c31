//! Replacing a running container with a new version without an outage:
//! the local engine's update protocol.
//!
//! The new version starts as a *candidate* beside the old one (named
//! `NAME.assetd-candidate`), must pass a gate (running for the monitor
//! window without exiting or restarting), and only then takes the old
//! one's place: the old container is removed and the candidate renamed.
//! When host ports are published the two cannot run at once, so the old
//! one is stopped first (kept), and started again if the candidate fails.
//! A candidate left behind by a crash of assetd is removed by the next
//! deploy, which then starts the protocol over: it always converges to
//! exactly the wanted containers.

use std::time::Duration;

use bollard::models::ContainerUpdateBody;
use bollard::query_parameters::{
    InspectContainerOptions, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};

use super::{LocalDocker, StrategyError};
use crate::spec::{DeploySpec, Healthcheck};
use crate::strategy::Ownership;

/// The name suffix that marks a candidate (a label cannot be changed
/// after creation, a name can: once renamed, it is no candidate).
pub(super) const CANDIDATE_SUFFIX: &str = ".assetd-candidate";

/// How long a new version must run, without exiting or restarting,
/// before it replaces the old one.
pub(super) const MONITOR: Duration = Duration::from_secs(3);

const GATE_POLL: Duration = Duration::from_millis(250);

/// A container of an older version that the new one replaces.
pub(super) struct Previous {
    pub name: String,
    pub id: String,
    pub running: bool,
}

pub(super) fn is_candidate(name: &str) -> bool {
    name.ends_with(CANDIDATE_SUFFIX)
}

impl LocalDocker {
    /// Replaces `old` by a container of `spec` named `slot`; on a failed
    /// gate the old one runs on (again) and the error says why.
    pub(super) async fn replace(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
        old: &Previous,
        slot: &str,
        replica: u64,
    ) -> Result<String, StrategyError> {
        let candidate = format!("{slot}{CANDIDATE_SUFFIX}");
        let stop_first = !spec.ports.is_empty();
        if stop_first && old.running {
            let options = StopContainerOptionsBuilder::default().t(10).build();
            self.docker
                .stop_container(&old.id, Some(options))
                .await
                .map_err(|e| StrategyError::docker("stop container", old.name.as_str(), e))?;
        }
        // No restart policy while on trial: an exit shows as an exit, with
        // its code; it gets its policy once it passed the gate.
        let mut body = super::container_body(spec, owner, &self.instance, replica);
        if let Some(host) = body.host_config.as_mut() {
            host.restart_policy = None;
        }
        let id = match self.create_and_start_body(body, spec, &candidate).await {
            Ok(id) => id,
            Err(e) => {
                self.restore(old, stop_first).await;
                return Err(e);
            }
        };
        let healthcheck = spec.healthcheck.as_ref().filter(|h| h.checks());
        if let Err(why) = self.gate(&id, healthcheck).await {
            let _ = self.remove_container(&id).await;
            self.restore(old, stop_first).await;
            let runs = if old.running {
                "the previous version runs on"
            } else {
                "the previous container is left as it was"
            };
            return Err(StrategyError::RolledBack(format!(
                "the new version {why} within {}s of starting; {runs}",
                MONITOR.as_secs()
            )));
        }
        let policy = ContainerUpdateBody {
            restart_policy: super::container_host_config(spec).restart_policy,
            ..Default::default()
        };
        if let Err(e) = self.docker.update_container(&id, policy).await {
            let _ = self.remove_container(&id).await;
            self.restore(old, stop_first).await;
            return Err(StrategyError::docker(
                "update container",
                candidate.as_str(),
                e,
            ));
        }
        self.remove_container(&old.id).await?;
        self.docker
            .rename_container(
                &id,
                RenameContainerOptionsBuilder::default().name(slot).build(),
            )
            .await
            .map_err(|e| StrategyError::docker("rename container", candidate.as_str(), e))?;
        tracing::info!(
            container = slot,
            "new version passed its gate and replaced the old one"
        );
        Ok(id)
    }

    /// Starts the old container again after a stop-first attempt failed.
    async fn restore(&self, old: &Previous, stopped: bool) {
        if stopped && old.running {
            if let Err(e) = self.docker.start_container(&old.id, None).await {
                tracing::error!(container = %old.name, error = %e, "cannot start the previous version again");
            }
        }
    }

    /// Running for [`MONITOR`] without exiting and, when a healthcheck is
    /// declared, healthy (waiting as long as the check's own timing
    /// allows). The candidate has no restart policy yet, so an exit shows
    /// as one. The error says what happened, in the engine's terms.
    async fn gate(&self, id: &str, healthcheck: Option<&Healthcheck>) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let give_up = started + MONITOR + healthcheck.map_or(Duration::ZERO, Healthcheck::deadline);
        loop {
            let inspect = self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| format!("could not be inspected ({e})"))?;
            let state = inspect.state.unwrap_or_default();
            if state.running != Some(true) {
                return Err(format!("exited {}", state.exit_code.unwrap_or_default()));
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
            let now = tokio::time::Instant::now();
            let healthy = healthcheck.is_none() || status == "healthy";
            if healthy && now >= started + MONITOR {
                return Ok(());
            }
            if now >= give_up {
                return Err(format!("was not healthy in time (health: {status})"));
            }
            tokio::time::sleep(GATE_POLL).await;
        }
    }
}
