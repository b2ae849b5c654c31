//! The Docker Swarm strategy: each asset is one service.
//!
//! Updates happen in place (`service update` with the current version
//! index), so the service keeps its ID and Swarm rolls the tasks by its
//! update config. Drift is found by a fingerprint of the fields we set,
//! written as a label at deploy time and recomputed from the listed spec:
//! Swarm's defaults, image digests and its own bookkeeping never show as
//! drift, while `service update --image/--replicas/--env-add` by hand does,
//! and the drift reason names the field.
//!
//! Services are always looked up by exact name and then addressed by ID:
//! the engine resolves `/services/{x}` by ID, then name, then *ID prefix*,
//! so asking for an absent asset `ab` could return someone else's service
//! whose ID starts with `ab`.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{NodeSpecAvailabilityEnum, NodeState, Service, ServiceSpec, Task};
use bollard::query_parameters::{
    InspectNetworkOptionsBuilder, InspectServiceOptions, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, UpdateServiceOptionsBuilder,
};
use bollard::Docker;

use super::labels;
use super::pull;
use super::{
    is_not_found, status_code, ActualAsset, Deployed, DeploymentStrategy, Ownership, Removed,
    ReplicaCounts, StrategyError,
};
use crate::engine::strategy::writer::Writer;
use crate::model::spec::{AssetName, DeploySpec};

mod fingerprint;
mod hook;
mod rollout;
mod spec;
mod tasks;

use fingerprint::*;
pub use fingerprint::{fingerprint, FINGERPRINT};
pub use spec::service_spec;
use spec::*;
use tasks::*;

/// How often an update that lost a race with another writer ("update out
/// of sequence") is re-read and retried. Swarm's own orchestrator writes
/// the service too (update status), so there are more racers than
/// assetd's writers; a short growing pause spreads the retries out.
const UPDATE_RETRIES: usize = 10;

/// How long Swarm watches a new task before its update counts as done: a
/// task that fails within it rolls the service back.
/// How long new tasks must run to count, unless `spec.update.monitor`
/// says otherwise (Swarm's UpdateConfig.Monitor).
pub const ROLLOUT_MONITOR: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct Swarm {
    docker: Docker,
    instance: String,
    /// Stamped on the service labels we write (not on the container
    /// labels: a new writer must not restart every task).
    writer: Option<Writer>,
    /// Credentials for private registries, sent with every service
    /// write so each node can pull (as `--with-registry-auth` does).
    registry: crate::engine::registry_auth::RegistryAuth,
    stack_seen: crate::engine::strategy::stack_engine::SeenOurs,
}

impl Swarm {
    pub fn new(docker: Docker, instance: &str) -> Self {
        Self {
            docker,
            instance: instance.to_string(),
            writer: None,
            registry: Default::default(),
            stack_seen: Default::default(),
        }
    }

    pub fn with_writer(mut self, writer: Writer) -> Self {
        self.writer = Some(writer);
        self
    }

    pub fn with_registry_auth(mut self, auth: crate::engine::registry_auth::RegistryAuth) -> Self {
        self.registry = auth;
        self
    }

    /// See [`DeploymentStrategy::moved_image`]: the digest the service is
    /// pinned to (or, unpinned, the manager's copy) against the
    /// registry's.
    pub async fn moved_image(&self, spec: &DeploySpec, have: &ActualAsset) -> Option<String> {
        let digest = pull::digest_if_known(&self.docker, &spec.image, &self.registry).await?;
        let service = self
            .docker
            .inspect_service(have.object_ids.first()?, None::<InspectServiceOptions>)
            .await
            .ok()?;
        let image = service.spec?.task_template?.container_spec?.image?;
        let runs = match image.split_once('@') {
            Some((_, pinned)) => pinned == digest,
            None => {
                let local = self.docker.inspect_image(&image).await.ok()?;
                pull::has_digest(&local.repo_digests.unwrap_or_default(), &digest)
            }
        };
        (!runs).then(|| pull::moved_message(&spec.image, &digest))
    }

    pub fn stack(&self) -> Option<crate::engine::strategy::stack_engine::StackEngine> {
        Some(crate::engine::strategy::stack_engine::StackEngine::new(
            self.docker.clone(),
            true,
            &self.instance,
            None,
            self.stack_seen.clone(),
        ))
    }

    /// The service's secrets and configs, by the IDs of the versions its
    /// references name (Swarm takes both ID and name).
    async fn file_refs(
        &self,
        spec: &DeploySpec,
    ) -> Result<
        (
            Vec<bollard::models::TaskSpecContainerSpecSecrets>,
            Vec<bollard::models::TaskSpecContainerSpecConfigs>,
        ),
        StrategyError,
    > {
        use bollard::models::{
            TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
            TaskSpecContainerSpecSecrets,
        };
        let mut secrets = Vec::new();
        let mut configs = Vec::new();
        if spec.secrets.is_empty() && spec.configs.is_empty() {
            return Ok((secrets, configs));
        }
        let by_name = |names: Vec<(Option<String>, Option<String>)>| -> HashMap<String, String> {
            names
                .into_iter()
                .filter_map(|(name, id)| Some((name?, id?)))
                .collect()
        };
        let secret_ids = if spec.secrets.is_empty() {
            HashMap::new()
        } else {
            let listed = self
                .docker
                .list_secrets(None::<bollard::query_parameters::ListSecretsOptions>)
                .await
                .map_err(|e| StrategyError::docker("list secrets for", spec.name.as_str(), e))?;
            by_name(
                listed
                    .into_iter()
                    .map(|s| (s.spec.and_then(|s| s.name), s.id))
                    .collect(),
            )
        };
        let config_ids = if spec.configs.is_empty() {
            HashMap::new()
        } else {
            let listed = self
                .docker
                .list_configs(None::<bollard::query_parameters::ListConfigsOptions>)
                .await
                .map_err(|e| StrategyError::docker("list configs for", spec.name.as_str(), e))?;
            by_name(
                listed
                    .into_iter()
                    .map(|c| (c.spec.and_then(|s| s.name), c.id))
                    .collect(),
            )
        };
        let missing = |kind: &str, name: &str| {
            StrategyError::Refused(format!("{kind} `{name}` is not on the Swarm"))
        };
        for r in &spec.secrets {
            let name = r.versioned_name();
            let id = secret_ids
                .get(&name)
                .ok_or_else(|| missing("secret", &name))?;
            // Under /run/secrets a secret goes by its file name, as
            // `docker stack deploy` sends it (Swarm puts it there).
            let target = r
                .target
                .strip_prefix("/run/secrets/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&r.target);
            secrets.push(TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(target.to_string()),
                    uid: Some(r.uid.clone()),
                    gid: Some(r.gid.clone()),
                    mode: Some(r.mode),
                }),
                secret_id: Some(id.clone()),
                secret_name: Some(name),
            });
        }
        for r in &spec.configs {
            let name = r.versioned_name();
            let id = config_ids
                .get(&name)
                .ok_or_else(|| missing("config", &name))?;
            configs.push(TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(r.target.clone()),
                    uid: Some(r.uid.clone()),
                    gid: Some(r.gid.clone()),
                    mode: Some(r.mode),
                }),
                config_id: Some(id.clone()),
                config_name: Some(name),
                ..Default::default()
            });
        }
        Ok((secrets, configs))
    }

    /// The credentials of `image`'s registry, for a service write.
    fn credentials(
        &self,
        image: &str,
    ) -> Result<Option<bollard::auth::DockerCredentials>, StrategyError> {
        let found = self
            .registry
            .for_image(image)
            .map_err(StrategyError::Refused)?;
        Ok(found.map(|f| f.credentials))
    }

    /// The service named exactly `name`, ours or not. The list filter
    /// `name` matches prefixes, hence the exact comparison.
    async fn find(&self, name: &str) -> Result<Option<Service>, StrategyError> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| StrategyError::docker("find service", name, e))?;
        Ok(services
            .into_iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name)))
    }

    /// Like [`Swarm::find`], but a service without our labels is an error:
    /// it is never updated or removed.
    async fn find_owned(&self, name: &str) -> Result<Option<Service>, StrategyError> {
        let Some(service) = self.find(name).await? else {
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
                owner: labels::owning_instance(&labels),
            });
        }
        Ok(Some(service))
    }

    /// The version index of a service just written, for the record.
    async fn version_of(&self, id: &str) -> Option<u64> {
        let service = self
            .docker
            .inspect_service(id, None::<InspectServiceOptions>)
            .await
            .ok()?;
        service.version.and_then(|v| v.index)
    }

    /// Network names resolved to IDs. Swarm stores IDs where the spec said
    /// names, so sending IDs makes the spec read back as sent. A name that
    /// does not resolve to a swarm-scoped network is sent as written: Swarm
    /// then refuses it with its own reason.
    async fn network_targets(&self, networks: &[String]) -> Vec<String> {
        let mut targets = Vec::with_capacity(networks.len());
        for name in networks {
            let options = InspectNetworkOptionsBuilder::default()
                .scope("swarm")
                .build();
            let id = match self.docker.inspect_network(name, Some(options)).await {
                Ok(network) => network.id,
                Err(_) => None,
            };
            targets.push(id.unwrap_or_else(|| name.clone()));
        }
        targets
    }

    /// With `pullPolicy: Always`, the spec pinned to the digest its tag
    /// names now. Swarm has no pull policy of its own: each node's agent
    /// tries a pull at every task start and falls back to its local copy.
    /// For Always, the manager pulls first, so an unpullable tag fails
    /// here and the running service is not touched; the pin makes a moved
    /// tag a change of the service, rolled out by Swarm's update protocol
    /// (as `docker service create` pins). IfNotPresent and Never send the
    /// service as it is (see README, "pullPolicy").
    async fn pinned(&self, spec: &DeploySpec) -> Result<Option<DeploySpec>, StrategyError> {
        if pull::pull_step(spec.pull_policy(), None) != pull::PullStep::Pull {
            return Ok(None);
        }
        pull::pull_image(&self.docker, &spec.image, &self.registry).await?;
        let digest = pull::registry_digest(&self.docker, &spec.image, &self.registry).await;
        Ok(digest.ok().map(|digest| {
            let mut with_digest = spec.clone();
            with_digest.image = format!("{}@{digest}", spec.image);
            with_digest
        }))
    }

    /// The service spec to send: networks by ID, secrets and configs by
    /// the IDs of their versions, this writer's stamp.
    async fn desired_service(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> Result<ServiceSpec, StrategyError> {
        let networks = self.network_targets(&spec.networks).await;
        let (secrets, configs) = self.file_refs(spec).await?;
        let mut desired = service_spec(spec, owner, &self.instance, &networks);
        if let Some(container) = desired
            .task_template
            .as_mut()
            .and_then(|t| t.container_spec.as_mut())
        {
            // Not in the fingerprint: a rotation changes the spec hash
            // label, which is.
            container.secrets = (!secrets.is_empty()).then_some(secrets);
            container.configs = (!configs.is_empty()).then_some(configs);
        }
        if let Some(labels) = desired.labels.as_mut() {
            labels::stamp(labels, self.writer.as_ref());
        }
        Ok(desired)
    }

    async fn create(&self, name: &str, spec: ServiceSpec) -> Result<Deployed, StrategyError> {
        let credentials = self.credentials(image_of(&spec))?;
        let created = self
            .docker
            .create_service(spec, credentials)
            .await
            .map_err(|e| StrategyError::docker("create service", name, e))?;
        let id = created.id.unwrap_or_default();
        Ok(Deployed {
            version: self.version_of(&id).await,
            object_ids: vec![id],
            warnings: created.warnings.unwrap_or_default(),
            wrote: true,
        })
    }

    async fn delete(&self, id: &str) -> Result<Removed, StrategyError> {
        match self.docker.delete_service(id).await {
            Ok(()) => Ok(Removed::Removed),
            Err(e) if is_not_found(&e) => Ok(Removed::Absent),
            Err(e) => Err(StrategyError::docker("remove service", id, e)),
        }
    }
}

impl DeploymentStrategy for Swarm {
    async fn deploy(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> Result<Deployed, StrategyError> {
        let name = spec.name.as_str();
        let pinned = self.pinned(spec).await?;
        let spec = pinned.as_ref().unwrap_or(spec);
        let desired = self.desired_service(spec, owner).await?;
        let mut current = self.find_owned(name).await?;
        for attempt in 1..=UPDATE_RETRIES {
            let Some(service) = current.take() else {
                return self.create(name, desired).await;
            };
            let id = service.id.clone().unwrap_or_default();
            let version = service.version.as_ref().and_then(|v| v.index);
            let now = service.spec.unwrap_or_default();
            // The fingerprint leaves digests out (a pin of the CLI's is no
            // drift); our own pin (Always) is compared whole.
            let same_pin = pinned.is_none() || image_of(&now) == image_of(&desired);
            if labels::without_stamp(now.labels.as_ref())
                == labels::without_stamp(desired.labels.as_ref())
                && fingerprint(&now) == fingerprint(&desired)
                && same_pin
            {
                return Ok(Deployed {
                    object_ids: vec![id],
                    version,
                    warnings: vec![],
                    wrote: false,
                });
            }
            // Swarm refuses to turn a replicated service into a global one
            // or back ("service mode change is not allowed"): replace it.
            if is_global(&now) != is_global(&desired) {
                tracing::info!(
                    service = name,
                    "mode changes between replicated and global; recreating the service"
                );
                self.delete(&id).await?;
                return self.create(name, desired).await;
            }
            // The API takes the index as an int32; a larger one is refused
            // rather than wrapped into a wrong one.
            let index = version.unwrap_or(0);
            let index = i32::try_from(index).map_err(|_| {
                StrategyError::Refused(format!(
                    "service {name}: version index {index} does not fit the API's int32"
                ))
            })?;
            let options = UpdateServiceOptionsBuilder::default()
                .version(index)
                .build();
            match self
                .docker
                .update_service(
                    &id,
                    merged(now, &desired),
                    options,
                    self.credentials(image_of(&desired))?,
                )
                .await
            {
                Ok(response) => {
                    return Ok(Deployed {
                        version: self.version_of(&id).await,
                        object_ids: vec![id],
                        warnings: response.warnings.unwrap_or_default(),
                        wrote: true,
                    });
                }
                // Someone else wrote the service since we read it (the
                // engine answers 500 "update out of sequence"): read it
                // again and retry on the new version.
                Err(e) if is_out_of_sequence(&e) && attempt < UPDATE_RETRIES => {
                    tracing::debug!(
                        service = name,
                        attempt,
                        "update out of sequence; reading the service again"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
                    current = self.find_owned(name).await?;
                }
                Err(e) => return Err(StrategyError::docker("update service", name, e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Removes the services carrying the asset's ownership labels, as the
    /// local strategy does with containers: a foreign service of the same
    /// name is not the asset's, so it is left alone and the asset is absent.
    async fn remove(&self, name: &AssetName) -> Result<Removed, StrategyError> {
        let filters = labels::asset_filter(&self.instance, name);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| StrategyError::docker("list services of", name.as_str(), e))?;
        let mut result = Removed::Absent;
        for id in services.into_iter().filter_map(|s| s.id) {
            if self.delete(&id).await? == Removed::Removed {
                result = Removed::Removed;
            }
        }
        Ok(result)
    }

    /// Three calls: our services, their tasks (the task label filter
    /// matches the service's labels) and this engine's unhealthy task
    /// containers; the last two are skipped when there is no service.
    async fn list_managed(&self) -> Result<Vec<ActualAsset>, StrategyError> {
        let managed = labels::managed_filter(&self.instance);
        let options = ListServicesOptionsBuilder::default()
            .filters(&managed)
            .build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| StrategyError::docker("list services", "managed", e))?;
        if services.is_empty() {
            return Ok(Vec::new());
        }
        // Every task Swarm still keeps (its task history, a few per slot),
        // not only those meant to run: a rejected or failed task carries
        // the reason nothing runs ("No such image", "exited 3").
        let filters = managed;
        let tasks = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(|e| StrategyError::docker("list tasks", "managed", e))?;
        let mut tasks_by_service: HashMap<String, Vec<Task>> = HashMap::new();
        for task in tasks {
            if let Some(id) = task.service_id.clone() {
                tasks_by_service.entry(id).or_default().push(task);
            }
        }
        let unavailable = match services
            .iter()
            .any(|s| s.spec.as_ref().is_some_and(is_global))
        {
            true => self.unavailable_nodes().await,
            false => HashMap::new(),
        };
        // Asked whatever the specs say: an image's own HEALTHCHECK counts
        // too, and bollard reads a service's `Healthcheck` back as none
        // (it expects `HealthCheck`), so the spec cannot tell.
        let unhealthy = self.unhealthy_task_containers().await;
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
            let unhealthy_here = unhealthy.get(&id).cloned();
            assets.insert(
                name.clone(),
                ActualAsset {
                    name,
                    spec_hash,
                    source,
                    object_ids: vec![id],
                    version: service.version.as_ref().and_then(|v| v.index),
                    drift: drift(labels.get(FINGERPRINT).map(String::as_str), spec),
                    replicas: with_missing_nodes(
                        ReplicaCounts {
                            rolling: rolling(&service),
                            unhealthy: unhealthy_here,
                            ..replica_counts(spec, &tasks, service.updated_at)
                        },
                        spec,
                        &tasks,
                        &unavailable,
                    ),
                    writer: service.updated_at.and_then(|at| {
                        let ms = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
                        labels::writer_of(&labels, ms)
                    }),
                    template_hash: None,
                    // The failed task says why (`exit code 3`); Swarm's
                    // own message only that it rolled back.
                    rollout: stopped_rollout(&service).map(|mut r| {
                        if let Some(why) = last_failure(&tasks, None) {
                            r.message = format!("{}; {why}", r.message);
                        }
                        r
                    }),
                },
            );
        }
        Ok(assets.into_values().collect())
    }

    fn default_monitor(&self) -> std::time::Duration {
        ROLLOUT_MONITOR
    }

    async fn run_hook(
        &self,
        spec: &DeploySpec,
        kind: crate::model::hooks::HookKind,
        hook: &crate::model::hooks::Hook,
    ) -> crate::model::hooks::HookRun {
        self.run_hook_job(spec, kind, hook).await
    }

    async fn sweep_hooks(&self, name: &AssetName) {
        self.sweep_hook_services(name).await;
    }

    async fn rollout_ended(
        &self,
        name: &AssetName,
        limit: std::time::Duration,
    ) -> Result<(), String> {
        self.wait_rolled_out(name, limit).await
    }
}

impl Swarm {
    /// The task containers on this engine whose healthcheck fails, by
    /// service ID, in the engine's words. Swarm itself says so only once
    /// it replaces the task; the container's health is known at once
    /// (its `health_status` event starts the pass that reads this). Tasks
    /// on other nodes are seen when Swarm replaces them.
    async fn unhealthy_task_containers(&self) -> HashMap<String, String> {
        let mut filters = labels::managed_filter(&self.instance);
        filters.insert("health".to_string(), vec!["unhealthy".to_string()]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        let Ok(containers) = self.docker.list_containers(Some(options)).await else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        for c in containers {
            let Some(service) = c
                .labels
                .as_ref()
                .and_then(|l| l.get("com.docker.swarm.service.id"))
            else {
                continue;
            };
            let name = super::local::container_name(&c);
            let status = c.status.clone().unwrap_or_default();
            out.entry(service.clone())
                .or_insert_with(|| format!("task container {name}: {status}"));
        }
        out
    }

    /// Nodes that are down or drained, by ID, with how to name them.
    async fn unavailable_nodes(&self) -> HashMap<String, String> {
        let Ok(nodes) = self.docker.list_nodes(None).await else {
            return HashMap::new();
        };
        nodes
            .into_iter()
            .filter_map(|node| {
                let id = node.id.clone()?;
                let state = node.status.as_ref().and_then(|s| s.state);
                let availability = node.spec.as_ref().and_then(|s| s.availability);
                let why = match (state, availability) {
                    (Some(NodeState::READY), Some(NodeSpecAvailabilityEnum::ACTIVE) | None) => {
                        return None
                    }
                    (Some(NodeState::READY), Some(a)) => a.to_string(),
                    (state, _) => state
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                };
                let host = node
                    .description
                    .and_then(|d| d.hostname)
                    .unwrap_or_else(|| id.clone());
                Some((id, format!("{host} ({why})")))
            })
            .collect()
    }
}

fn is_out_of_sequence(e: &bollard::errors::Error) -> bool {
    status_code(e).is_some_and(|s| s == 500 || s == 409)
        && e.to_string().contains("out of sequence")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{Mode, PortMapping, Protocol, Resources};
    use bollard::models::{Limit, ResourceObject, TaskSpecResources};

    fn sample() -> (DeploySpec, Ownership) {
        let spec = DeploySpec {
            name: AssetName::new("cnc-mill-01").unwrap(),
            image: "img:1".into(),
            env: vec!["A=1".into()],
            labels: BTreeMap::from([("zone".into(), "cell-3".into())]),
            command: Some(vec!["run".into(), "--fast".into()]),
            ports: vec![PortMapping {
                host: 5000,
                container: 80,
                protocol: Protocol::Tcp,
            }],
            networks: vec!["factory-net".into()],
            constraints: vec!["node.labels.zone != cell-9".into()],
            resources: Resources::default(),
            mode: Mode::Replicated { replicas: 2 },
            mounts: vec![],
            healthcheck: None,
            update: None,
            user: None,
            ulimits: vec![],
            pull_policy: None,
            secrets: vec![],
            configs: vec![],
            runtime: Default::default(),
        };
        let owner = Ownership {
            hash: spec.hash(),
            source: "a.yaml".into(),
            revision: None,
        };
        (spec, owner)
    }

    /// What Swarm returns for a spec it was sent: IDs for network names,
    /// defaults filled in, empty lists and zero values dropped, and (after
    /// a `docker service update` by hand) a pinned digest.
    fn as_swarm_returns(mut s: ServiceSpec) -> ServiceSpec {
        let task = s.task_template.as_mut().unwrap();
        let container = task.container_spec.as_mut().unwrap();
        container.image = Some(format!("{}@sha256:abcd", container.image.clone().unwrap()));
        container.mounts = None;
        container.isolation = Some(bollard::models::TaskSpecContainerSpecIsolationEnum::DEFAULT);
        task.resources = Some(TaskSpecResources {
            limits: Some(Limit::default()),
            reservations: Some(ResourceObject::default()),
            ..Default::default()
        });
        task.force_update = Some(0);
        let endpoint = s.endpoint_spec.as_mut().unwrap();
        endpoint.mode = Some(bollard::models::EndpointSpecModeEnum::VIP);
        for p in endpoint.ports.iter_mut().flatten() {
            p.publish_mode = None;
        }
        s
    }

    #[test]
    fn swarm_defaults_and_digests_are_not_drift() {
        let (spec, owner) = sample();
        let sent = service_spec(&spec, &owner, "default", &["netid123".into()]);
        let label = sent.labels.as_ref().unwrap()[FINGERPRINT].clone();
        assert_eq!(
            drift(Some(&label), &as_swarm_returns(sent)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn changes_by_hand_are_drift_named_by_field() {
        let (spec, owner) = sample();
        let sent = service_spec(&spec, &owner, "default", &["netid123".into()]);
        let label = sent.labels.as_ref().unwrap()[FINGERPRINT].clone();
        let mut changed = as_swarm_returns(sent);
        let task = changed.task_template.as_mut().unwrap();
        task.container_spec.as_mut().unwrap().image = Some("img:2@sha256:ef01".into());
        task.container_spec
            .as_mut()
            .unwrap()
            .env
            .as_mut()
            .unwrap()
            .push("X=1".into());
        changed
            .mode
            .as_mut()
            .unwrap()
            .replicated
            .as_mut()
            .unwrap()
            .replicas = Some(3);
        assert_eq!(
            drift(Some(&label), &changed),
            vec![
                "image changed outside assetd (now img:2)",
                "env changed outside assetd (now [\"A=1\",\"X=1\"])",
                "mode changed outside assetd (now {\"replicated\":3})",
            ]
        );
    }

    #[test]
    fn merge_keeps_fields_assetd_does_not_set() {
        let (spec, owner) = sample();
        let desired = service_spec(&spec, &owner, "default", &[]);
        let mut current = as_swarm_returns(desired.clone());
        current.task_template.as_mut().unwrap().force_update = Some(4);
        current
            .task_template
            .as_mut()
            .unwrap()
            .container_spec
            .as_mut()
            .unwrap()
            .command = Some(vec!["sh".into()]);
        let merged = merged(current, &desired);
        assert_eq!(merged.task_template.as_ref().unwrap().force_update, Some(4));
        assert_eq!(fingerprint(&merged), fingerprint(&desired));
    }
}
