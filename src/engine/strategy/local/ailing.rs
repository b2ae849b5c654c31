//! Why a container is not well, in the engine's own words: the exit code
//! and restart count of a crash loop, the last output of a failing
//! healthcheck. A listing shows only `Restarting (3) 2 seconds ago` or
//! `Up 5 minutes (unhealthy)`; one inspect per ailing container (never
//! for those that are fine) says the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;

use super::container_name;
use super::view::Generation;

/// What is wrong with one container.
pub(super) enum Ailment {
    /// Exited with an error or restarting: the crash, with its count.
    Failing(String),
    /// Running, and its healthcheck says unhealthy.
    Unhealthy(String),
}

/// Longest healthcheck output quoted (probes print whole pages).
const MAX_OUTPUT: usize = 200;
/// A container up for less than this since a restart may be between two
/// crashes of a loop: its restart count decides.
const RESTART_SETTLE_SECS: u64 = 10;

/// Containers seen failing lately, by ID: one of them up again for a few
/// seconds is between two crashes, until it stays up.
#[derive(Clone, Default)]
pub(super) struct FailedLately(Arc<Mutex<HashMap<String, Failure>>>);

/// When a container was last seen failing, and its exit code then.
type Failure = (Instant, Option<i64>);

/// How long a failure is remembered.
const REMEMBERED: Duration = Duration::from_secs(60);

impl FailedLately {
    fn contains(&self, id: &str) -> bool {
        let seen = self.0.lock().expect("failures lock");
        seen.get(id)
            .is_some_and(|(at, _)| at.elapsed() < REMEMBERED)
    }

    /// The exit code of the container's last crash seen, if any.
    fn last_exit(&self, id: &str) -> Option<i64> {
        self.0.lock().expect("failures lock").get(id)?.1
    }

    /// A crash the engine announced (`die` with a non-zero exit code):
    /// the container's code is known even when the listing next sees it
    /// running again, between two crashes of a loop.
    pub(super) fn note_exit(&self, id: &str, code: i64) {
        let mut seen = self.0.lock().expect("failures lock");
        seen.insert(id.to_string(), (Instant::now(), Some(code)));
    }

    fn remember(&self, ailments: &HashMap<String, (Ailment, Option<i64>)>) {
        let mut seen = self.0.lock().expect("failures lock");
        seen.retain(|_, (at, _)| at.elapsed() < REMEMBERED);
        for (id, (ailment, code)) in ailments {
            if matches!(ailment, Ailment::Failing(_)) {
                let code = code.or_else(|| seen.get(id).and_then(|(_, c)| *c));
                seen.insert(id.clone(), (Instant::now(), code));
            }
        }
    }
}

/// The last inspect of each ailing container, with its
/// [`Generation`] then: under a storm of restarts, a container up for a
/// few seconds is looked at by every pass, but only an event changes what
/// an inspect says of it (an unhealthy one's probe output excepted).
#[derive(Clone, Default)]
pub(super) struct Inspections(Arc<Mutex<HashMap<String, Kept>>>);

type Inspected = bollard::models::ContainerInspectResponse;
/// An inspect, and the container's generation when it was made.
type Kept = (Generation, Arc<Inspected>);

impl Inspections {
    fn reusable(&self, c: &ContainerSummary, now: Option<Generation>) -> Option<Arc<Inspected>> {
        let unhealthy = c
            .status
            .as_deref()
            .unwrap_or_default()
            .ends_with("(unhealthy)");
        let seen = self.0.lock().expect("inspections lock");
        let (then, inspected) = seen.get(c.id.as_deref()?)?;
        (!unhealthy && Some(*then) == now).then(|| inspected.clone())
    }

    /// Keeps these inspects, and forgets containers no longer ailing.
    fn keep(&self, inspected: Vec<(String, Option<Generation>, Arc<Inspected>)>) {
        let mut seen = self.0.lock().expect("inspections lock");
        seen.clear();
        for (id, generation, inspect) in inspected {
            if let Some(generation) = generation {
                seen.insert(id, (generation, inspect));
            }
        }
    }
}

fn ailing(c: &ContainerSummary, failed: &FailedLately) -> bool {
    let status = c.status.as_deref().unwrap_or_default();
    match c.state {
        Some(ContainerSummaryStateEnum::RESTARTING) => true,
        Some(ContainerSummaryStateEnum::EXITED) => !status.starts_with("Exited (0)"),
        Some(ContainerSummaryStateEnum::RUNNING) => {
            let up_briefly = up_secs(status).is_some_and(|s| s < RESTART_SETTLE_SECS);
            let failed_before = c.id.as_deref().is_some_and(|id| failed.contains(id));
            status.ends_with("(unhealthy)") || restarted_lately(c) || (up_briefly && failed_before)
        }
        _ => false,
    }
}

/// Up for a few seconds only, though created well before: started again
/// since (a crash loop caught between two crashes looks like this).
fn restarted_lately(c: &ContainerSummary) -> bool {
    let Some(up) = c.status.as_deref().and_then(up_secs) else {
        return false;
    };
    let created = c.created.unwrap_or_default().max(0) as u64;
    let now = crate::store::now_ms() / 1000;
    up < RESTART_SETTLE_SECS && created + up + 2 < now
}

/// `0` from `Up Less than a second`, `4` from `Up 4 seconds (healthy)`;
/// `None` for longer spans (`Up 2 minutes`) and other states.
pub(super) fn up_secs(status: &str) -> Option<u64> {
    let rest = status.strip_prefix("Up ")?;
    if rest.starts_with("Less than a second") {
        return Some(0);
    }
    let (n, unit) = rest.split_once(' ')?;
    unit.starts_with("second").then(|| n.parse().ok()).flatten()
}

/// What the diagnosis keeps between passes, and what it asks the view.
pub(super) struct Memory<'a, G: Fn(&str) -> Option<Generation>> {
    pub failed: &'a FailedLately,
    pub inspections: &'a Inspections,
    /// A container's generation in the event-fed view, if one feeds it.
    pub generation: G,
}

/// Container ID → what ails it, for the containers a listing shows ailing.
pub(super) async fn diagnose<G: Fn(&str) -> Option<Generation>>(
    docker: &Docker,
    containers: &[ContainerSummary],
    memory: Memory<'_, G>,
) -> HashMap<String, Ailment> {
    let failed = memory.failed;
    let ailing: Vec<&ContainerSummary> = containers.iter().filter(|c| ailing(c, failed)).collect();
    let inspections = futures_util::future::join_all(ailing.iter().map(|c| {
        let id = c.id.clone().unwrap_or_default();
        // Read before the inspect: an event during it makes it stale.
        // A listing that is ahead of its container's events (the event
        // still on its way) may reuse an inspect from before them for
        // this pass; the event, when it lands, brings the pass that
        // inspects again.
        let generation = (memory.generation)(&id);
        let reusable = memory.inspections.reusable(c, generation);
        async move {
            let found = match reusable {
                Some(inspected) => Ok(inspected),
                None => docker
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                    .map(Arc::new),
            };
            (id, generation, found)
        }
    }))
    .await;
    let mut out = HashMap::new();
    let mut kept = Vec::new();
    for (summary, (id, generation, found)) in ailing.into_iter().zip(inspections) {
        // Gone meanwhile, or the engine busy: the listing's words do.
        let Ok(inspect) = found else { continue };
        if let Some(described) = describe(summary, &inspect, failed.last_exit(&id)) {
            out.insert(id.clone(), described);
        }
        kept.push((id, generation, inspect));
    }
    memory.inspections.keep(kept);
    failed.remember(&out);
    out.into_iter()
        .map(|(id, (ailment, _))| (id, ailment))
        .collect()
}

/// What ails the container, and the exit code of its crash when known.
fn describe(
    summary: &ContainerSummary,
    inspect: &bollard::models::ContainerInspectResponse,
    last_exit: Option<i64>,
) -> Option<(Ailment, Option<i64>)> {
    let name = container_name(summary);
    let status = summary.status.clone().unwrap_or_default();
    let state = inspect.state.clone().unwrap_or_default();
    let restarts = inspect.restart_count.unwrap_or_default();
    let unhealthy = status.ends_with("(unhealthy)");
    let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
    if running && !unhealthy {
        // Up again lately: a crash loop when the restart policy did it,
        // else (started by hand) nothing is wrong.
        // Running again, it has no exit code: the last crash's, if seen.
        let exited = last_exit
            .map(|c| format!("exited {c}, "))
            .unwrap_or_default();
        return (restarts > 0).then(|| {
            let why = format!(
                "container {name}: crash-looping, {exited}{restarts} restarts{} ({status})",
                in_secs(summary)
            );
            (Ailment::Failing(why), last_exit)
        });
    }
    if running {
        let health = state.health.unwrap_or_default();
        let output = health
            .log
            .and_then(|log| log.last().and_then(|l| l.output.clone()))
            .unwrap_or_default();
        let output: String = output.trim().chars().take(MAX_OUTPUT).collect();
        let streak = health.failing_streak.unwrap_or_default();
        let why = format!("container {name}: unhealthy, {streak} failed checks in a row: {output}");
        return Some((Ailment::Unhealthy(why), None));
    }
    // While restarting, the engine's state already reads exit code 0;
    // the listing's `Restarting (3)` keeps the code of the crash.
    let code = exit_code_in(&status).unwrap_or(state.exit_code.unwrap_or_default());
    let mut why = format!("container {name}: exited {code}");
    if restarts > 0 {
        why.push_str(&format!(", {restarts} restarts{}", in_secs(summary)));
    }
    Some((Ailment::Failing(format!("{why} ({status})")), Some(code)))
}

/// ` in 12 s`: since the container was created.
fn in_secs(summary: &ContainerSummary) -> String {
    match summary.created {
        Some(created) => {
            let secs = (crate::store::now_ms() / 1000).saturating_sub(created.max(0) as u64);
            format!(" in {secs} s")
        }
        None => String::new(),
    }
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
    fn an_inspect_is_reused_until_an_event_names_its_container() {
        use super::{ContainerSummary, Inspections};
        use std::sync::Arc;
        let summary = |status: &str| ContainerSummary {
            id: Some("c1".into()),
            status: Some(status.into()),
            ..Default::default()
        };
        let inspections = Inspections::default();
        let inspected = Arc::new(Default::default());
        inspections.keep(vec![("c1".into(), Some((1, 7)), inspected)]);
        let up = summary("Up 3 seconds");
        assert!(inspections.reusable(&up, Some((1, 7))).is_some());
        assert!(
            inspections.reusable(&up, Some((1, 8))).is_none(),
            "an event since"
        );
        assert!(
            inspections.reusable(&up, Some((2, 7))).is_none(),
            "the view was dropped"
        );
        assert!(inspections.reusable(&up, None).is_none(), "no event stream");
        let sick = summary("Up 3 seconds (unhealthy)");
        assert!(
            inspections.reusable(&sick, Some((1, 7))).is_none(),
            "a failing probe's output changes without events"
        );
        inspections.keep(vec![("c1".into(), None, Arc::new(Default::default()))]);
        assert!(
            inspections.reusable(&up, None).is_none(),
            "kept without a stream"
        );
        assert!(
            inspections.reusable(&up, Some((1, 7))).is_none(),
            "forgotten"
        );
    }

    #[test]
    fn the_exit_code_is_read_from_the_listing() {
        assert_eq!(super::exit_code_in("Restarting (3) 1 second ago"), Some(3));
        assert_eq!(super::exit_code_in("Exited (137) 5 seconds ago"), Some(137));
        assert_eq!(super::exit_code_in("Up 2 seconds (unhealthy)"), None);
    }

    #[test]
    fn short_uptimes_are_read_and_long_ones_are_not_counted() {
        assert_eq!(super::up_secs("Up Less than a second"), Some(0));
        assert_eq!(super::up_secs("Up 1 second"), Some(1));
        assert_eq!(super::up_secs("Up 4 seconds (healthy)"), Some(4));
        assert_eq!(super::up_secs("Up 2 minutes"), None);
        assert_eq!(super::up_secs("Exited (3) 2 seconds ago"), None);
    }
}
