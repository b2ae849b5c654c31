//! Why a container is not well, in the engine's own words: the exit code
//! and restart count of a crash loop, the last output of a failing
//! healthcheck. A listing shows only `Restarting (3) 2 seconds ago` or
//! `Up 5 minutes (unhealthy)`; one inspect per ailing container (never
//! for those that are fine) says the rest.

use std::collections::HashMap;

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;

use super::container_name;

/// What is wrong with one container.
pub(super) enum Ailment {
    /// Exited with an error or restarting: the crash, with its count.
    Failing(String),
    /// Running, and its healthcheck says unhealthy.
    Unhealthy(String),
}

/// Longest healthcheck output quoted (probes print whole pages).
const MAX_OUTPUT: usize = 200;

fn ailing(c: &ContainerSummary) -> bool {
    let status = c.status.as_deref().unwrap_or_default();
    match c.state {
        Some(ContainerSummaryStateEnum::RESTARTING) => true,
        Some(ContainerSummaryStateEnum::EXITED) => !status.starts_with("Exited (0)"),
        Some(ContainerSummaryStateEnum::RUNNING) => status.ends_with("(unhealthy)"),
        _ => false,
    }
}

/// Container ID → what ails it, for the containers a listing shows ailing.
pub(super) async fn diagnose(
    docker: &Docker,
    containers: &[ContainerSummary],
) -> HashMap<String, Ailment> {
    let ailing: Vec<&ContainerSummary> = containers.iter().filter(|c| ailing(c)).collect();
    let inspections = futures_util::future::join_all(ailing.iter().map(|c| {
        let id = c.id.clone().unwrap_or_default();
        async move {
            let found = docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await;
            (id, found)
        }
    }))
    .await;
    let mut out = HashMap::new();
    for (summary, (id, found)) in ailing.into_iter().zip(inspections) {
        // Gone meanwhile, or the engine busy: the listing's words do.
        let Ok(inspect) = found else { continue };
        out.insert(id, describe(summary, &inspect));
    }
    out
}

fn describe(
    summary: &ContainerSummary,
    inspect: &bollard::models::ContainerInspectResponse,
) -> Ailment {
    let name = container_name(summary);
    let status = summary.status.clone().unwrap_or_default();
    let state = inspect.state.clone().unwrap_or_default();
    if summary.state == Some(ContainerSummaryStateEnum::RUNNING) {
        let health = state.health.unwrap_or_default();
        let output = health
            .log
            .and_then(|log| log.last().and_then(|l| l.output.clone()))
            .unwrap_or_default();
        let output: String = output.trim().chars().take(MAX_OUTPUT).collect();
        let streak = health.failing_streak.unwrap_or_default();
        return Ailment::Unhealthy(format!(
            "container {name}: unhealthy, {streak} failed checks in a row: {output}"
        ));
    }
    // While restarting, the engine's state already reads exit code 0;
    // the listing's `Restarting (3)` keeps the code of the crash.
    let code = exit_code_in(&status).unwrap_or(state.exit_code.unwrap_or_default());
    let restarts = inspect.restart_count.unwrap_or_default();
    let mut why = format!("container {name}: exited {code}");
    if restarts > 0 {
        let age = summary
            .created
            .map(|created| crate::store::now_ms() / 1000 - created.max(0) as u64);
        match age {
            Some(secs) => why.push_str(&format!(", {restarts} restarts in {secs} s")),
            None => why.push_str(&format!(", {restarts} restarts")),
        }
    }
    Ailment::Failing(format!("{why} ({status})"))
}

/// `3` from `Restarting (3) 1 second ago` or `Exited (3) 5 seconds ago`.
fn exit_code_in(status: &str) -> Option<i64> {
    let open = status.find('(')?;
    let close = open + status[open..].find(')')?;
    status[open + 1..close].parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exit_code_is_read_from_the_listing() {
        assert_eq!(super::exit_code_in("Restarting (3) 1 second ago"), Some(3));
        assert_eq!(super::exit_code_in("Exited (137) 5 seconds ago"), Some(137));
        assert_eq!(super::exit_code_in("Up 2 seconds (unhealthy)"), None);
    }
}
