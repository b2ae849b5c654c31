//! The Docker Swarm strategy: each asset is one service.
//!
//! Updates happen in place (`service update` with the current version
//! index), so the service keeps its ID and Swarm rolls the tasks by its
//! update config. Drift is found by a fingerprint of the fields we set,
//! written as a label at deploy time and recomputed from the listed spec:
//! Swarm's defaults, image digests and its own bookkeeping never show as
//! drift, while `service update --image/--replicas/--env-add` by hand does.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointSpec, Limit, Mount as DockerMount,
    MountTmpfsOptions, MountType, NetworkAttachmentConfig, ResourceObject, Service, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement, TaskSpecResources, TaskState,
};
use bollard::query_parameters::{
    InspectServiceOptions, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    UpdateServiceOptionsBuilder,
};
use bollard::Docker;
use sha2::{Digest, Sha256};

use super::labels::{self};
use super::{
    is_not_found, status_code, ActualAsset, Deployed, DeploymentStrategy, Ownership, Removed,
    ReplicaCounts, StrategyError,
};
use crate::spec::{AssetName, DeploySpec, Mode, MountKind, Protocol};

/// Label holding the fingerprint of the fields we set.
pub const FINGERPRINT: &str = "io.assetd.fingerprint";

/// How often an update that lost a race with another writer ("update out
/// of sequence") is re-inspected and retried.
const UPDATE_RETRIES: usize = 5;

#[derive(Clone)]
pub struct Swarm {
    docker: Docker,
    instance: String,
}

impl Swarm {
    pub fn new(docker: Docker, instance: &str) -> Self {
        Self {
            docker,
            instance: instance.to_string(),
        }
    }

    async fn inspect(&self, name: &str) -> Result<Option<Service>, StrategyError> {
        match self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(service) => Ok(Some(service)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(StrategyError::docker("inspect service", name, e)),
        }
    }

    /// Inspects a service and refuses it unless it carries our label.
    async fn inspect_owned(&self, name: &str) -> Result<Option<Service>, StrategyError> {
        let Some(service) = self.inspect(name).await? else {
            return Ok(None);
        };
        let labels = service
            .spec
            .as_ref()
            .and_then(|s| s.labels.clone())
            .unwrap_or_default();
        if labels::owner_of(&labels, &self.instance).is_none() {
            return Err(StrategyError::Foreign {
                kind: "service",
                name: name.to_string(),
            });
        }
        Ok(Some(service))
    }
}

impl DeploymentStrategy for Swarm {
    async fn deploy(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> Result<Deployed, StrategyError> {
        let name = spec.name.as_str();
        let service_spec = service_spec(spec, owner, &self.instance);
        let mut warnings = Vec::new();
        let Some(mut current) = self.inspect_owned(name).await? else {
            let created = self
                .docker
                .create_service(service_spec, None)
                .await
                .map_err(|e| StrategyError::docker("create service", name, e))?;
            warnings.extend(created.warnings.unwrap_or_default());
            let version = self
                .inspect(name)
                .await?
                .and_then(|s| s.version)
                .and_then(|v| v.index);
            return Ok(Deployed {
                object_ids: created.id.into_iter().collect(),
                version,
                warnings,
                wrote: true,
            });
        };
        for attempt in 1..=UPDATE_RETRIES {
            let version = current.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            let options = UpdateServiceOptionsBuilder::default()
                .version(version as i32)
                .build();
            match self
                .docker
                .update_service(name, service_spec.clone(), options, None)
                .await
            {
                Ok(response) => {
                    warnings.extend(response.warnings.unwrap_or_default());
                    let after = self.inspect(name).await?;
                    return Ok(Deployed {
                        object_ids: current.id.into_iter().collect(),
                        version: after.and_then(|s| s.version).and_then(|v| v.index),
                        warnings,
                        wrote: true,
                    });
                }
                // Someone else wrote the service since we read it (the
                // engine answers 500 "update out of sequence"): read the
                // new version and try again.
                Err(e) if is_out_of_sequence(&e) && attempt < UPDATE_RETRIES => {
                    tracing::debug!(
                        service = name,
                        attempt,
                        "update out of sequence; re-inspecting"
                    );
                    current = match self.inspect_owned(name).await? {
                        Some(service) => service,
                        None => {
                            return Err(StrategyError::docker("update service", name, e));
                        }
                    };
                }
                Err(e) => return Err(StrategyError::docker("update service", name, e)),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn remove(&self, name: &AssetName) -> Result<Removed, StrategyError> {
        if self.inspect_owned(name.as_str()).await?.is_none() {
            return Ok(Removed::Absent);
        }
        match self.docker.delete_service(name.as_str()).await {
            Ok(()) => Ok(Removed::Removed),
            Err(e) if is_not_found(&e) => Ok(Removed::Absent),
            Err(e) => Err(StrategyError::docker("remove service", name.as_str(), e)),
        }
    }

    async fn list_managed(&self) -> Result<Vec<ActualAsset>, StrategyError> {
        let options = ListServicesOptionsBuilder::default()
            .filters(&labels::managed_filter(&self.instance))
            .build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| StrategyError::docker("list services", "managed", e))?;
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
        let tasks = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(|e| StrategyError::docker("list tasks", "running", e))?;
        let mut tasks_by_service: HashMap<String, Vec<Task>> = HashMap::new();
        for task in tasks {
            if let Some(id) = task.service_id.clone() {
                tasks_by_service.entry(id).or_default().push(task);
            }
        }
        let mut assets = BTreeMap::new();
        for service in services {
            let Some(spec) = service.spec.as_ref() else {
                continue;
            };
            let labels = spec.labels.clone().unwrap_or_default();
            let Some((name, spec_hash, source)) = labels::owner_of(&labels, &self.instance) else {
                continue;
            };
            let id = service.id.clone().unwrap_or_default();
            let tasks = tasks_by_service.remove(&id).unwrap_or_default();
            let replicas = replica_counts(spec, &tasks);
            let mut drift = Vec::new();
            if labels.get(FINGERPRINT) != Some(&fingerprint(spec)) {
                drift.push("service spec changed outside assetd".to_string());
            }
            assets.insert(
                name.clone(),
                ActualAsset {
                    name,
                    spec_hash,
                    source,
                    object_ids: vec![id],
                    version: service.version.and_then(|v| v.index),
                    drift,
                    replicas,
                },
            );
        }
        Ok(assets.into_values().collect())
    }
}

fn is_out_of_sequence(e: &bollard::errors::Error) -> bool {
    status_code(e).is_some_and(|s| s == 500 || s == 409)
        && e.to_string().contains("out of sequence")
}

fn replica_counts(spec: &ServiceSpec, tasks: &[Task]) -> ReplicaCounts {
    let running = tasks
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .count() as u64;
    let desired = match spec.mode.as_ref().and_then(|m| m.replicated.as_ref()) {
        Some(replicated) => replicated.replicas.unwrap_or(1).max(0) as u64,
        None => tasks.len() as u64,
    };
    let now = time::OffsetDateTime::now_utc();
    let pending_secs = tasks
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) != Some(TaskState::RUNNING))
        .filter_map(|t| t.created_at)
        .map(|created| (now - created).whole_seconds().max(0) as u64)
        .max();
    ReplicaCounts {
        desired,
        running,
        pending_secs,
    }
}

/// The service spec for a [`DeploySpec`]: every seed parameter.
pub fn service_spec(spec: &DeploySpec, owner: &Ownership, instance: &str) -> ServiceSpec {
    let object_labels = labels::object_labels(spec, owner, instance);
    let container_spec = TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(object_labels.clone()),
        // `command` replaces the image's CMD and keeps its ENTRYPOINT, as
        // on the local engine: Swarm calls that `Args`.
        args: spec.command.clone(),
        env: Some(spec.env.clone()),
        mounts: (!spec.mounts.is_empty()).then(|| spec.mounts.iter().map(docker_mount).collect()),
        ..Default::default()
    };
    let resources = (!spec.resources.is_empty()).then(|| TaskSpecResources {
        limits: (!spec.resources.limits.is_empty()).then(|| Limit {
            nano_cpus: spec.resources.limits.nano_cpus,
            memory_bytes: spec.resources.limits.memory_bytes,
            pids: None,
        }),
        reservations: (!spec.resources.reservations.is_empty()).then(|| ResourceObject {
            nano_cpus: spec.resources.reservations.nano_cpus,
            memory_bytes: spec.resources.reservations.memory_bytes,
            generic_resources: None,
        }),
        ..Default::default()
    });
    let task_template = TaskSpec {
        container_spec: Some(container_spec),
        resources,
        placement: (!spec.constraints.is_empty()).then(|| TaskSpecPlacement {
            constraints: Some(spec.constraints.clone()),
            ..Default::default()
        }),
        networks: (!spec.networks.is_empty()).then(|| {
            spec.networks
                .iter()
                .map(|n| NetworkAttachmentConfig {
                    target: Some(n.clone()),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    let mode = match spec.mode {
        Mode::Replicated { replicas } => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas as i64),
            }),
            ..Default::default()
        },
        Mode::Global => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
    };
    let endpoint_spec = EndpointSpec {
        ports: Some(
            spec.ports
                .iter()
                .map(|p| EndpointPortConfig {
                    protocol: Some(match p.protocol {
                        Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                        Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                    }),
                    target_port: Some(p.container as i64),
                    published_port: Some(p.host as i64),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    let mut service = ServiceSpec {
        name: Some(spec.name.to_string()),
        labels: Some(object_labels),
        task_template: Some(task_template),
        mode: Some(mode),
        endpoint_spec: Some(endpoint_spec),
        ..Default::default()
    };
    let print = fingerprint(&service);
    if let Some(labels) = service.labels.as_mut() {
        labels.insert(FINGERPRINT.into(), print);
    }
    service
}

fn docker_mount(m: &crate::spec::Mount) -> DockerMount {
    DockerMount {
        target: Some(m.target.clone()),
        source: m.source.clone(),
        typ: Some(match m.kind {
            MountKind::Bind => MountType::BIND,
            MountKind::Volume => MountType::VOLUME,
            MountKind::Tmpfs => MountType::TMPFS,
        }),
        read_only: Some(m.read_only),
        tmpfs_options: (m.kind == MountKind::Tmpfs).then(MountTmpfsOptions::default),
        ..Default::default()
    }
}

/// sha256 over the fields assetd sets, read the same way from the spec we
/// send and from the spec Swarm returns. Left out on purpose: the image
/// digest Swarm may pin (`@sha256:...`), network targets (Swarm turns names
/// into IDs; their count is kept), and every field Swarm fills with its
/// defaults.
pub fn fingerprint(spec: &ServiceSpec) -> String {
    let task = spec.task_template.clone().unwrap_or_default();
    let container = task.container_spec.clone().unwrap_or_default();
    let image = container.image.unwrap_or_default();
    let image = image.split('@').next().unwrap_or_default().to_string();
    let container_labels: BTreeMap<String, String> = container
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != FINGERPRINT)
        .collect();
    let mounts: Vec<(String, String, String, bool)> = container
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.typ.map(|t| t.to_string()).unwrap_or_default(),
                m.source.unwrap_or_default(),
                m.target.unwrap_or_default(),
                m.read_only.unwrap_or(false),
            )
        })
        .collect();
    let resources = task.resources.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let reservations = resources.reservations.unwrap_or_default();
    let mode = spec.mode.clone().unwrap_or_default();
    let replicas = mode.replicated.and_then(|r| r.replicas);
    let global = mode.global.is_some();
    let mut ports: Vec<(String, i64, i64)> = spec
        .endpoint_spec
        .clone()
        .unwrap_or_default()
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.protocol
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "tcp".into()),
                p.published_port.unwrap_or(0),
                p.target_port.unwrap_or(0),
            )
        })
        .collect();
    ports.sort();
    let constraints = task
        .placement
        .and_then(|p| p.constraints)
        .unwrap_or_default();
    let network_count = task.networks.map(|n| n.len()).unwrap_or(0);
    let canonical = serde_json::json!({
        "image": image,
        "args": container.args,
        "command": container.command,
        "env": container.env.unwrap_or_default(),
        "labels": container_labels,
        "mounts": mounts,
        "limits": [limits.nano_cpus, limits.memory_bytes],
        "reservations": [reservations.nano_cpus, reservations.memory_bytes],
        "replicas": replicas,
        "global": global,
        "ports": ports,
        "constraints": constraints,
        "networks": network_count,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
