//! Polling the engine until an object runs or is gone. Swarm has no
//! event for a task turning `running` that carries its timestamp, so the
//! task list is polled and its `Status.Timestamp` used.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bollard::models::TaskState;
use bollard::query_parameters::{
    InspectContainerOptions, InspectServiceOptions, ListTasksOptionsBuilder,
};

use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::FIG_LABEL;

impl Bench {
    /// Polls until a task of `service` runs; returns when it turned
    /// `running` by the engine's clock.
    pub async fn wait_task_running(&self, service: &str, timeout: Duration) -> Result<i128> {
        let deadline = Instant::now() + timeout;
        let filters = HashMap::from([("service", vec![service.to_string()])]);
        loop {
            if let Ok(tasks) = self
                .docker
                .list_tasks(Some(
                    ListTasksOptionsBuilder::default().filters(&filters).build(),
                ))
                .await
            {
                let running = tasks
                    .iter()
                    .filter_map(|t| t.status.as_ref())
                    .filter(|s| s.state == Some(TaskState::RUNNING))
                    .filter_map(|s| s.timestamp.map(|ts| ts.unix_timestamp_nanos()))
                    .min();
                if let Some(at) = running {
                    return Ok(at);
                }
            }
            if Instant::now() > deadline {
                bail!("no task of {service} running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `n` services labelled `fig` each have a running task;
    /// returns when the last of them turned `running` (engine clock) and
    /// how long after `t0` the last service was created.
    pub async fn wait_services_running(
        &self,
        fig: &str,
        n: usize,
        t0: i128,
        timeout: Duration,
    ) -> Result<(i128, f64)> {
        let deadline = Instant::now() + timeout;
        let selector = format!("{FIG_LABEL}={fig}");
        let task_filter = HashMap::from([("desired-state", vec!["running".to_string()])]);
        let mut progress = (0usize, Instant::now());
        loop {
            let services = self.services_labelled(&selector).await;
            let last_created = services
                .iter()
                .filter_map(|s| s.created_at.map(|c| c.unix_timestamp_nanos()))
                .max()
                .map_or(f64::NAN, |c| secs(c - t0));
            let ids: BTreeSet<String> = services.into_iter().filter_map(|s| s.id).collect();
            let tasks = self
                .docker
                .list_tasks(Some(
                    ListTasksOptionsBuilder::default()
                        .filters(&task_filter)
                        .build(),
                ))
                .await
                .unwrap_or_default();
            let mut running: BTreeMap<String, i128> = BTreeMap::new();
            let mut states: BTreeMap<String, usize> = BTreeMap::new();
            for task in &tasks {
                let Some(service) = task.service_id.as_ref().filter(|s| ids.contains(*s)) else {
                    continue;
                };
                let status = task.status.clone().unwrap_or_default();
                *states
                    .entry(status.state.map(|s| s.to_string()).unwrap_or_default())
                    .or_default() += 1;
                if status.state == Some(TaskState::RUNNING) {
                    if let Some(ts) = status.timestamp {
                        let at = ts.unix_timestamp_nanos();
                        running
                            .entry(service.clone())
                            .and_modify(|v| *v = (*v).min(at))
                            .or_insert(at);
                    }
                }
            }
            if running.len() >= n {
                return Ok((running.values().copied().max().unwrap_or(t0), last_created));
            }
            if running.len() > progress.0 {
                progress = (running.len(), Instant::now());
            }
            if Instant::now() > deadline || progress.1.elapsed() > Duration::from_secs(120) {
                bail!("{fig}: {} of {n} services running ({} services exist; task states {states:?}) after {:.0} s", running.len(), ids.len(), secs(now_ns() - t0));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Until no container (running or not) is labelled `key=value`.
    pub async fn wait_no_containers(
        &self,
        key: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let selector = format!("{key}={value}");
        loop {
            let left = self.containers_labelled(&selector).await.len();
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{left} container(s) labelled {key}={value} still there after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_container_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        wait_gone(&format!("container {name}"), timeout, || {
            self.docker
                .inspect_container(name, None::<InspectContainerOptions>)
        })
        .await
    }

    pub async fn wait_service_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        wait_gone(&format!("service {name}"), timeout, || {
            self.docker
                .inspect_service(name, None::<InspectServiceOptions>)
        })
        .await
    }
}

/// Polls `inspect` until the engine answers 404 for `what`.
async fn wait_gone<T, F, Fut>(what: &str, timeout: Duration, mut inspect: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, bollard::errors::Error>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match inspect().await {
            Err(e) if is_404(&e) => return Ok(()),
            _ if Instant::now() > deadline => {
                bail!("{what} still there after {timeout:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
