//! What the bench creates, each labelled with the run (and figure, and
//! pid) so cleanup finds it: asset manifests, a stack file, bare
//! containers and services, the overlay network.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use bollard::models::{
    ContainerCreateBody, HostConfig, Ipam, IpamConfig, NetworkAttachmentConfig,
    NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum, ServiceSpec, TaskSpec,
    TaskSpecContainerSpec,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use crate::bench::Bench;
use crate::{FIG_LABEL, IMAGE, LABEL, PID_LABEL};

impl Bench {
    /// The labels of every object of figure `fig` in this run.
    pub fn labels(&self, fig: &str) -> [(&'static str, String); 3] {
        [
            (LABEL, self.rid.clone()),
            (FIG_LABEL, fig.to_string()),
            (PID_LABEL, std::process::id().to_string()),
        ]
    }

    /// [`Self::labels`] as the engine API wants them.
    fn label_map(&self, fig: &str) -> HashMap<String, String> {
        self.labels(fig)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    pub fn asset_yaml(&self, name: &str, fig: &str, spec_extra: &str) -> String {
        let mut labels = String::new();
        for (k, v) in self.labels(fig) {
            let _ = writeln!(labels, "    {k}: \"{v}\"");
        }
        format!("apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {name}\n  labels:\n{labels}spec:\n  image: {IMAGE}\n{spec_extra}")
    }

    /// Writes the manifest of asset `name` into `dir` as `{name}.yaml`.
    pub fn write_asset(&self, dir: &Path, name: &str, fig: &str, spec_extra: &str) -> Result<()> {
        write_atomic(
            dir,
            &format!("{name}.yaml"),
            &self.asset_yaml(name, fig, spec_extra),
        )
    }

    pub fn write_assets(
        &self,
        dir: &Path,
        names: &[String],
        fig: &str,
        spec_extra: &str,
    ) -> Result<()> {
        for name in names {
            self.write_asset(dir, name, fig, spec_extra)?;
        }
        Ok(())
    }

    /// `n` services named like assetd's for `docker stack deploy`, on the
    /// external `network`.
    pub fn stack_yaml(&self, fig: &str, n: usize, network: &str) -> String {
        let mut labels = String::new();
        for (k, v) in self.labels(fig) {
            let _ = writeln!(labels, "        {k}: \"{v}\"");
        }
        let mut out = format!("version: \"3.8\"\nnetworks:\n  net:\n    external: true\n    name: {network}\nservices:\n");
        for i in 0..n {
            let _ = write!(
                out,
                "  b{}-{fig}-{i}:\n    image: {IMAGE}\n    networks: [ net ]\n    labels:\n{}    deploy:\n      labels:\n{}",
                self.rid,
                labels.replace("        ", "      "),
                labels
            );
        }
        out
    }

    pub fn bare_service(&self, name: &str, fig: &str, network: Option<&str>) -> ServiceSpec {
        let labels = self.label_map(fig);
        ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(IMAGE.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                }),
                networks: network.map(|n| {
                    vec![NetworkAttachmentConfig {
                        target: Some(n.to_string()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// bollard create + start: the fairest bare baseline (one persistent
    /// connection, no CLI start-up).
    pub async fn bollard_run(&self, name: &str, fig: &str) -> Result<()> {
        let body = ContainerCreateBody {
            image: Some(IMAGE.to_string()),
            labels: Some(self.label_map(fig)),
            host_config: Some(HostConfig {
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .with_context(|| format!("create container {name}"))?;
        self.docker
            .start_container(&created.id, None)
            .await
            .with_context(|| format!("start container {name}"))?;
        Ok(())
    }

    /// One overlay network with a /16 for the Swarm cold start: the
    /// default /24 runs out near 125 services (tasks then sit in `New`).
    /// Made once per run: the figures that need it share it.
    pub async fn overlay_network(&self) -> Result<String> {
        let name = format!("b{}-net", self.rid);
        if self
            .docker
            .inspect_network(
                &name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok()
        {
            return Ok(name);
        }
        let mut last = None;
        // The next /16 when creating on one fails (e.g. it overlaps an
        // existing network).
        for second in 231..=250u8 {
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("overlay".into()),
                attachable: Some(true),
                labels: Some(self.label_map("net")),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(format!("10.{second}.0.0/16")),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match self.docker.create_network(request).await {
                Ok(_) => return Ok(name),
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow!("cannot create the overlay network: {last:?}"))
    }
}

/// Writes `dir/name` atomically (hidden temp file, then rename), mode
/// 0644 as assetd's permission check wants.
pub fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}
