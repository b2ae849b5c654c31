//! A hook on Swarm: a `replicated-job` service (one completion, no
//! restart) of the asset's spec (`hook_job::job_spec`), followed by its
//! task up to the timeout, its output read from the task's container
//! when it ran on this node, and removed. Also: waiting for a rollout to
//! end before `postDeploy` runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::spec::service_spec;
use super::Swarm;
use crate::engine::strategy::hook_job::{self, failed_to_run};
use crate::engine::strategy::{labels, DeploymentStrategy, Ownership};
use crate::model::hooks::{Hook, HookKind, HookRun};
use crate::model::spec::{AssetName, DeploySpec};

const POLL: Duration = Duration::from_millis(500);

impl Swarm {
    pub(super) async fn run_hook_job(
        &self,
        spec: &DeploySpec,
        kind: HookKind,
        hook: &Hook,
    ) -> HookRun {
        let started = Instant::now();
        let job = hook_job::job_spec(spec, kind, hook);
        let name = hook_job::job_name(spec, kind);
        let _ = self.docker.delete_service(&name).await;
        let owner = Ownership {
            hash: job.hash(),
            source: String::new(),
            revision: None,
        };
        let networks = self.network_targets(&job.networks).await;
        let mut service = service_spec(&job, &owner, &self.instance, &networks);
        let hook_labels = labels::hook_labels(&self.instance, &spec.name, kind);
        service.name = Some(name.clone());
        service.labels = Some(hook_labels.clone());
        service.mode = Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        });
        service.update_config = None;
        service.rollback_config = None;
        service.endpoint_spec = None;
        let (secrets, configs) = match self.file_refs(&job).await {
            Ok(refs) => refs,
            Err(e) => return failed_to_run(kind, started, e.to_string()),
        };
        if let Some(task) = service.task_template.as_mut() {
            task.restart_policy = Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            });
            if let Some(container) = task.container_spec.as_mut() {
                container.labels = Some(hook_labels);
                container.secrets = (!secrets.is_empty()).then_some(secrets);
                container.configs = (!configs.is_empty()).then_some(configs);
            }
        }
        let credentials = match self.credentials(&job.image) {
            Ok(c) => c,
            Err(e) => return failed_to_run(kind, started, e.to_string()),
        };
        if let Err(e) = self.docker.create_service(service, credentials).await {
            return failed_to_run(kind, started, format!("create {name}: {e}"));
        }
        let (exit_code, container, error, timed_out) = self.follow_job(&name, hook.timeout).await;
        let output = match &container {
            Some(id) => self.container_output(id).await,
            None => Vec::new(),
        };
        let _ = self.docker.delete_service(&name).await;
        // Swarm keeps a finished job's container after its service is
        // gone; the ones on this node go with it.
        if let Some(id) = &container {
            self.remove_container(id).await;
        }
        self.sweep_hook_job_containers(&spec.name).await;
        HookRun {
            kind,
            exit_code,
            timed_out,
            output_tail: hook_job::tail(&output),
            elapsed: started.elapsed(),
            error,
        }
    }

    /// Polls the job's task until it completes, fails or `timeout` passes:
    /// its exit code, its container, why it could not run, and whether
    /// it timed out.
    async fn follow_job(
        &self,
        name: &str,
        timeout: Duration,
    ) -> (Option<i64>, Option<String>, Option<String>, bool) {
        let deadline = Instant::now() + timeout;
        let filters = HashMap::from([("service".to_string(), vec![name.to_string()])]);
        loop {
            let options = ListTasksOptionsBuilder::default().filters(&filters).build();
            let tasks = self
                .docker
                .list_tasks(Some(options))
                .await
                .unwrap_or_default();
            if let Some(status) = tasks.into_iter().find_map(|t| t.status) {
                let container = status
                    .container_status
                    .as_ref()
                    .and_then(|c| c.container_id.clone());
                let code = status.container_status.as_ref().and_then(|c| c.exit_code);
                match status.state {
                    Some(TaskState::COMPLETE) => {
                        return (Some(code.unwrap_or(0)), container, None, false)
                    }
                    Some(TaskState::FAILED) if code.is_some() => {
                        return (code, container, None, false)
                    }
                    Some(TaskState::FAILED | TaskState::REJECTED) => {
                        let why = status
                            .err
                            .or(status.message)
                            .unwrap_or_else(|| "the task failed".into());
                        return (None, container, Some(why), false);
                    }
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return (None, None, None, true);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A task container's output, when it is on this node.
    async fn container_output(&self, id: &str) -> Vec<u8> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail("200")
            .build();
        let mut out = Vec::new();
        let mut logs = self.docker.logs(id, Some(options));
        while let Some(Ok(chunk)) = logs.next().await {
            out.extend(chunk.into_bytes());
        }
        out
    }

    async fn remove_container(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = self.docker.remove_container(id, Some(options)).await;
    }

    /// Removes the asset's hook services left behind by a crash, then the
    /// containers of its finished or orphaned hook jobs on this node
    /// (Swarm keeps a job's container after its service is gone, and one
    /// may still be starting when its service goes).
    pub(super) async fn sweep_hook_services(&self, asset: &AssetName) {
        let filters = labels::hook_filter(&self.instance, asset);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        for service in self
            .docker
            .list_services(Some(options))
            .await
            .unwrap_or_default()
        {
            if let Some(id) = service.id {
                tracing::info!(service = %id, "removing a hook job left behind");
                let _ = self.docker.delete_service(&id).await;
            }
        }
        self.sweep_hook_job_containers(asset).await;
    }

    /// Removes the asset's hook containers on this node: its hooks run one
    /// at a time, and this runs when none of them does.
    async fn sweep_hook_job_containers(&self, asset: &AssetName) {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&labels::hook_filter(&self.instance, asset))
            .build();
        for container in self
            .docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default()
        {
            if let Some(id) = container.id {
                self.remove_container(&id).await;
            }
        }
    }

    /// Waits until Swarm has finished rolling `name` out: `Err` when it
    /// paused or rolled back, or its tasks fail.
    pub(super) async fn wait_rolled_out(
        &self,
        name: &AssetName,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        // Swarm starts rolling a moment after it took the spec.
        tokio::time::sleep(Duration::from_secs(1)).await;
        loop {
            let listed = self.list_managed().await.map_err(|e| e.to_string())?;
            let Some(asset) = listed.into_iter().find(|a| &a.name == name) else {
                return Err("the service is gone".into());
            };
            let r = &asset.replicas;
            if let Some(rollout) = &asset.rollout {
                return Err(format!(
                    "update {} by the engine: {}",
                    rollout.state, rollout.message
                ));
            }
            if let Some(failing) = &r.failing {
                return Err(failing.clone());
            }
            if !r.rolling && !r.settling && r.running >= r.desired {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("still rolling out after {} s", limit.as_secs()));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
