//! What a service's tasks say: replica counts, crash loops, a rollout
//! Swarm stopped or rolled back.

use std::collections::HashMap;

use bollard::models::{Service, ServiceSpec, ServiceUpdateStatusStateEnum, Task, TaskState};

use super::ReplicaCounts;

/// A global service runs one task per available node, and Swarm counts
/// only those: a node it ran on that is down or drained now is named, and
/// counted as a replica that does not run.
pub(super) fn with_missing_nodes(
    mut counts: ReplicaCounts,
    spec: &ServiceSpec,
    tasks: &[Task],
    unavailable: &HashMap<String, String>,
) -> ReplicaCounts {
    if !is_global(spec) || unavailable.is_empty() {
        return counts;
    }
    let mut missing: Vec<&String> = tasks
        .iter()
        .filter_map(|t| unavailable.get(t.node_id.as_deref()?))
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return counts;
    }
    let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
    // Tasks on the available nodes, whatever Swarm still keeps of the others.
    let here: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .filter(|t| {
            !t.node_id
                .as_deref()
                .is_some_and(|n| unavailable.contains_key(n))
        })
        .collect();
    let running = here
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .count();
    counts.desired = (here.len() + missing.len()) as u64;
    counts.running = running as u64;
    counts.missing_nodes = Some(format!("no task on node {}", names.join(", ")));
    counts
}

/// The image a service spec runs, as written (with its digest, if any).
pub(super) fn image_of(spec: &ServiceSpec) -> &str {
    let container = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref());
    container
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default()
}

pub(super) fn is_global(spec: &ServiceSpec) -> bool {
    spec.mode.as_ref().is_some_and(|m| m.global.is_some())
}

/// `since`: the service's last update; older failures belong to what ran
/// before it.
pub(super) fn replica_counts(
    spec: &ServiceSpec,
    all_tasks: &[Task],
    since: Option<time::OffsetDateTime>,
) -> ReplicaCounts {
    let tasks: Vec<&Task> = all_tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let is_running =
        |t: &&&Task| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING);
    // A task started lately, after a task of this version failed, is one
    // turn of a crash loop (Swarm's restart policy at work), as a local
    // container restarted lately is: it does not count as running until
    // it has stayed up, so the asset does not flip between Failed and
    // Running with every restart.
    let last_failed = last_failed_task(all_tasks, since).and_then(task_time);
    let between_crashes = |t: &&&Task| {
        let started = task_time(t);
        match (last_failed, started) {
            (Some(failed), Some(started)) => {
                started >= failed && (now - started).whole_seconds() < CRASH_SETTLE_SECS
            }
            _ => false,
        }
    };
    let running = tasks
        .iter()
        .filter(is_running)
        .filter(|t| !between_crashes(t))
        .count() as u64;
    let settling = tasks.iter().filter(is_running).any(|t| between_crashes(&t));
    // How long the youngest running task has run: what depends on this
    // asset waits for its monitor window.
    let up_secs = tasks
        .iter()
        .filter(is_running)
        .filter_map(|t| task_time(t))
        .map(|started| (now - started).whole_seconds().max(0) as u64)
        .min();
    let desired = match spec.mode.as_ref().and_then(|m| m.replicated.as_ref()) {
        Some(replicated) => replicated.replicas.unwrap_or(1).max(0) as u64,
        None => tasks.len() as u64,
    };
    let waiting: Vec<&&Task> = tasks.iter().filter(|t| !is_running(t)).collect();
    let pending_secs = waiting
        .iter()
        .filter_map(|t| t.created_at)
        .map(|created| (now - created).whole_seconds().max(0) as u64)
        .max();
    let pending_reason = waiting.iter().find_map(|t| {
        let status = t.status.as_ref()?;
        status
            .err
            .clone()
            .or_else(|| status.message.clone())
            .filter(|m| !m.is_empty())
    });
    ReplicaCounts {
        desired,
        running,
        pending_secs,
        pending_reason,
        failing: (running < desired)
            .then(|| last_failure(all_tasks, since))
            .flatten(),
        // Swarm replaces an unhealthy task itself; that shows as a
        // failing task, above.
        unhealthy: None,
        rolling: false,
        missing_nodes: None,
        up_secs,
        settling,
    }
}

/// A task up for less than this since a task of its version failed may
/// be between two crashes of a loop.
pub(super) const CRASH_SETTLE_SECS: i64 = 10;

/// When the task reached its current state, as Swarm recorded it.
pub(super) fn task_time(task: &Task) -> Option<time::OffsetDateTime> {
    task.status.as_ref()?.timestamp
}

/// The newest failed or rejected task since the service's last update.
pub(super) fn last_failed_task(
    tasks: &[Task],
    since: Option<time::OffsetDateTime>,
) -> Option<&Task> {
    tasks
        .iter()
        .filter(|t| match (since, t.created_at) {
            (Some(since), Some(created)) => created >= since,
            _ => true,
        })
        .filter(|t| {
            matches!(
                t.status.as_ref().and_then(|s| s.state),
                Some(TaskState::FAILED | TaskState::REJECTED)
            )
        })
        .max_by_key(|t| t.updated_at.or(t.created_at))
}

/// Swarm is replacing tasks (an update or its rollback is under way):
/// what runs now says nothing yet about how it ends.
pub(super) fn rolling(service: &Service) -> bool {
    let state = service.update_status.as_ref().and_then(|s| s.state);
    matches!(
        state,
        Some(
            ServiceUpdateStatusStateEnum::UPDATING | ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
        )
    )
}

/// The newest failed or rejected task, in Swarm's words with its exit
/// code: why the service does not run.
pub(super) fn last_failure(tasks: &[Task], since: Option<time::OffsetDateTime>) -> Option<String> {
    let failed = last_failed_task(tasks, since)?;
    let status = failed.status.as_ref()?;
    let state = status.state.map(|s| s.to_string()).unwrap_or_default();
    let err = status
        .err
        .clone()
        .or_else(|| status.message.clone())
        .unwrap_or_default();
    let code = status
        .container_status
        .as_ref()
        .and_then(|c| c.exit_code)
        .filter(|c| *c != 0)
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default();
    Some(format!("task {state}: {err}{code}"))
}

/// A rollout Swarm stopped: paused, or rolled back to the previous spec,
/// in Swarm's words. `None` while updating or when it completed.
pub(super) fn stopped_rollout(service: &Service) -> Option<crate::engine::strategy::Rollout> {
    let status = service.update_status.as_ref()?;
    let state = status.state?;
    let rolled_back = match state {
        ServiceUpdateStatusStateEnum::PAUSED => false,
        ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
        | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED
        | ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => true,
        _ => return None,
    };
    Some(crate::engine::strategy::Rollout {
        state: state.to_string(),
        rolled_back,
        message: status.message.clone().unwrap_or_default(),
    })
}
