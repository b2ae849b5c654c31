//! A hook on the local engine: a one-shot container of the asset's spec
//! (`hook_job::job_spec`), without a restart policy, waited for up to its
//! timeout, killed past it, its output's tail read, and removed.

use std::time::Instant;

use bollard::models::{EndpointSettings, NetworkConnectRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptions,
};
use futures_util::StreamExt;

use super::{container_body, LocalDocker};
use crate::engine::strategy::hook_job::{self, failed_to_run};
use crate::engine::strategy::{labels, Ownership};
use crate::model::hooks::{Hook, HookKind, HookRun};
use crate::model::spec::{AssetName, DeploySpec};

impl LocalDocker {
    pub(super) async fn run_hook_container(
        &self,
        spec: &DeploySpec,
        kind: HookKind,
        hook: &Hook,
    ) -> HookRun {
        let started = Instant::now();
        let job = hook_job::job_spec(spec, kind, hook);
        let name = hook_job::job_name(spec, kind);
        self.remove_hook_container(&name).await;
        if let Err(e) = self.ensure_image(&job).await {
            return failed_to_run(kind, started, e.to_string());
        }
        let owner = Ownership {
            hash: job.hash(),
            source: String::new(),
            revision: None,
        };
        let mut body = container_body(&job, &owner, &self.instance, 0, self.stack_dir.as_deref());
        body.labels = Some(labels::hook_labels(&self.instance, &spec.name, kind));
        if let Some(host) = body.host_config.as_mut() {
            host.restart_policy = None;
        }
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        if let Err(e) = self.docker.create_container(Some(options), body).await {
            return failed_to_run(kind, started, format!("create {name}: {e}"));
        }
        for network in job.networks.iter().skip(1) {
            let request = NetworkConnectRequest {
                container: name.clone(),
                endpoint_config: Some(EndpointSettings::default()),
            };
            if let Err(e) = self.docker.connect_network(network, request).await {
                self.remove_hook_container(&name).await;
                return failed_to_run(kind, started, format!("connect {network}: {e}"));
            }
        }
        if let Err(e) = self.docker.start_container(&name, None).await {
            self.remove_hook_container(&name).await;
            return failed_to_run(kind, started, format!("start {name}: {e}"));
        }
        let mut wait = self
            .docker
            .wait_container(&name, None::<WaitContainerOptions>);
        let timed_out = tokio::time::timeout(hook.timeout, wait.next())
            .await
            .is_err();
        if timed_out {
            let _ = self
                .docker
                .kill_container(&name, None::<KillContainerOptions>)
                .await;
        }
        let exit_code = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state?.exit_code)
            .filter(|_| !timed_out);
        let output = self.hook_output(&name).await;
        self.remove_hook_container(&name).await;
        HookRun {
            kind,
            exit_code,
            timed_out,
            output_tail: hook_job::tail(&output),
            elapsed: started.elapsed(),
            error: None,
        }
    }

    /// Its stdout and stderr, interleaved as written.
    async fn hook_output(&self, name: &str) -> Vec<u8> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail("200")
            .build();
        let mut out = Vec::new();
        let mut logs = self.docker.logs(name, Some(options));
        while let Some(Ok(chunk)) = logs.next().await {
            out.extend(chunk.into_bytes());
        }
        out
    }

    async fn remove_hook_container(&self, name: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = self.docker.remove_container(name, Some(options)).await;
    }

    /// Removes the asset's hook containers (a crash mid-hook leaves one;
    /// its hooks run one at a time, so none of them is live here).
    pub(super) async fn sweep_hook_containers(&self, asset: &AssetName) {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&labels::hook_filter(&self.instance, asset))
            .build();
        let Ok(found) = self.docker.list_containers(Some(options)).await else {
            return;
        };
        for container in found {
            if let Some(id) = container.id {
                tracing::info!(container = %id, "removing a hook container left behind");
                self.remove_hook_container(&id).await;
            }
        }
    }
}
