//! The local Docker engine strategy: each asset is one container, or
//! containers `NAME-1..N` for `replicated: N > 1`.
//!
//! Updates recreate: a container whose spec-hash label differs from the
//! desired hash is removed and created anew (Docker cannot change image, env
//! or mounts of a container in place). Containers that already match are
//! kept, so a repair of one missing replica leaves the others running.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, HostConfig,
    Mount as DockerMount, MountTmpfsOptions, MountType, NetworkConnectRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
};
use bollard::Docker;

use super::labels::{self, REPLICA, REPLICAS};
use super::pull;
use super::{
    is_not_found, status_code, ActualAsset, Deployed, DeploymentStrategy, Ownership, Removed,
    ReplicaCounts, StrategyError,
};
use crate::engine::strategy::writer::Writer;
use crate::model::spec::{AssetName, DeploySpec, Mode, MountKind, PullPolicy, SpecHash};

mod ailing;
mod hook;
mod rollout;
pub mod view;

/// Where the daemon's Docker watcher notes the crashes it sees (`die`
/// events with their exit codes), so a crash loop's reason carries its
/// exit code even when the next listing finds the container up again.
#[derive(Clone)]
pub struct CrashNotes(ailing::FailedLately);

impl CrashNotes {
    pub fn note(&self, container_id: &str, exit_code: i64) {
        self.0.note_exit(container_id, exit_code);
    }
}

/// How long a new container must run (and be healthy) to count, unless
/// `spec.update.monitor` says otherwise.
pub const DEFAULT_MONITOR: std::time::Duration = rollout::MONITOR;
use ailing::Ailment;
use rollout::Previous;

#[derive(Clone)]
pub struct LocalDocker {
    docker: Docker,
    instance: String,
    /// Assets that had containers in the last listing. An asset not in it
    /// is created straight away (create + start, as `docker run` does);
    /// if a container with its name turns up after all (a conflict), the
    /// deploy falls back to listing and reconciling its containers.
    listed: Arc<Mutex<HashSet<AssetName>>>,
    /// Stamped on every container created (see [`crate::engine::strategy::writer`]).
    writer: Option<Writer>,
    /// Containers seen crash-looping lately (see `ailing`).
    failed_lately: ailing::FailedLately,
    /// The last inspects of ailing containers (see `ailing`).
    inspections: ailing::Inspections,
    /// Credentials for private registries, sent on pulls.
    registry: crate::engine::registry_auth::RegistryAuth,
    /// `<state-dir>/stack`: secrets' and configs' files, bind-mounted.
    stack_dir: Option<std::path::PathBuf>,
    stack_seen: crate::engine::strategy::stack_engine::SeenOurs,
    /// The managed containers, fed by the daemon's watcher (`view`).
    view: view::ContainerView,
}

impl LocalDocker {
    pub fn new(docker: Docker, instance: &str) -> Self {
        Self {
            docker,
            instance: instance.to_string(),
            listed: Default::default(),
            writer: None,
            failed_lately: Default::default(),
            inspections: Default::default(),
            registry: Default::default(),
            stack_dir: None,
            stack_seen: Default::default(),
            view: Default::default(),
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

    /// Where secrets and configs are kept as files.
    pub fn with_stack_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.stack_dir = Some(dir);
        self
    }

    /// See [`DeploymentStrategy::moved_image`]: the running containers'
    /// images against the digest the registry gives for the tag.
    pub async fn moved_image(&self, spec: &DeploySpec, have: &ActualAsset) -> Option<String> {
        let digest = pull::digest_if_known(&self.docker, &spec.image, &self.registry).await?;
        for id in &have.object_ids {
            let container = self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .ok()?;
            let image = self.docker.inspect_image(&container.image?).await.ok()?;
            if !pull::has_digest(&image.repo_digests.unwrap_or_default(), &digest) {
                return Some(pull::moved_message(&spec.image, &digest));
            }
        }
        None
    }

    /// The view of the managed containers the Docker watcher feeds.
    pub fn container_view(&self) -> view::ContainerView {
        self.view.clone()
    }

    /// The handle the Docker watcher notes crashes through.
    pub fn crash_notes(&self) -> CrashNotes {
        CrashNotes(self.failed_lately.clone())
    }

    pub fn stack(&self) -> Option<crate::engine::strategy::stack_engine::StackEngine> {
        Some(crate::engine::strategy::stack_engine::StackEngine::new(
            self.docker.clone(),
            false,
            &self.instance,
            self.stack_dir.clone(),
            self.stack_seen.clone(),
        ))
    }

    fn was_listed(&self, name: &AssetName) -> bool {
        self.listed.lock().expect("listing lock").contains(name)
    }

    /// The container names an asset should have: `NAME` for one replica,
    /// `NAME-1..N` for more.
    pub fn container_names(spec: &DeploySpec) -> Vec<String> {
        replica_names(&spec.name, spec.local_replicas())
    }

    /// The managed containers: from the view where the watcher keeps it
    /// whole, reading again only what changed; a full listing otherwise.
    async fn managed_containers(&self) -> Result<Vec<ContainerSummary>, StrategyError> {
        let list = |filters: HashMap<String, Vec<String>>| async move {
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            self.docker
                .list_containers(Some(options))
                .await
                .map_err(|e| StrategyError::docker("list containers", "managed", e))
        };
        // An error returns with `reading` unfinished: the view is dropped.
        let reading = self.view.begin_read().await;
        tracing::debug!(read = ?reading.read, "container view");
        let in_view = match reading.read.clone() {
            view::Read::Full { .. } => {
                let listed = list(labels::managed_filter(&self.instance)).await?;
                reading.full(&listed);
                return Ok(listed);
            }
            view::Read::Targeted { ids, assets, .. } => {
                let mut reads: Vec<_> = assets
                    .iter()
                    .map(|name| labels::asset_filter(&self.instance, name))
                    .collect();
                if !ids.is_empty() {
                    let mut by_id = labels::managed_filter(&self.instance);
                    by_id.insert("id".to_string(), ids);
                    reads.push(by_id);
                }
                let mut found = Vec::new();
                for filters in reads {
                    found.append(&mut list(filters).await?);
                }
                reading.targeted(found)
            }
            view::Read::Cached => reading.cached(),
        };
        match in_view {
            Some(containers) => Ok(containers),
            // A resync or a gap dropped the view meanwhile.
            None => list(labels::managed_filter(&self.instance)).await,
        }
    }

    async fn list_asset(&self, name: &AssetName) -> Result<Vec<ContainerSummary>, StrategyError> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&labels::asset_filter(&self.instance, name))
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| StrategyError::docker("list containers of", name.as_str(), e))
    }

    async fn remove_container(&self, id: &str) -> Result<Removed, StrategyError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(false)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(Removed::Removed),
            Err(e) if is_not_found(&e) => Ok(Removed::Absent),
            // Another remover (the engine's own auto-remove, a second
            // assetd pass) is already at it: the outcome is the same.
            Err(e)
                if status_code(&e) == Some(409)
                    && e.to_string().contains("already in progress") =>
            {
                Ok(Removed::Removed)
            }
            Err(e) => Err(StrategyError::docker("remove container", id, e)),
        }
    }

    /// Makes the spec's image present as its pull policy says: pulled
    /// when the engine lacks it, always, or never (see [`pull::pull_step`]).
    async fn ensure_image(&self, spec: &DeploySpec) -> Result<(), StrategyError> {
        let image = spec.image.as_str();
        let present = match spec.pull_policy() {
            // Always pulls whatever the engine has: no look-up needed.
            PullPolicy::Always => None,
            _ => match self.docker.inspect_image(image).await {
                Ok(_) => Some(true),
                Err(e) if is_not_found(&e) => Some(false),
                Err(e) => return Err(StrategyError::docker("inspect image", image, e)),
            },
        };
        self.take_pull_step(spec, present).await
    }

    /// Carries out the pull decision for the spec's image.
    async fn take_pull_step(
        &self,
        spec: &DeploySpec,
        present: Option<bool>,
    ) -> Result<(), StrategyError> {
        match pull::pull_step(spec.pull_policy(), present) {
            pull::PullStep::UseLocal => Ok(()),
            pull::PullStep::Pull => {
                pull::pull_image(&self.docker, &spec.image, &self.registry).await
            }
            pull::PullStep::Refuse => Err(StrategyError::Refused(pull::never_pulled_message(
                &spec.image,
            ))),
        }
    }

    async fn create_and_start(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
        container_name: &str,
        replica: u64,
    ) -> Result<String, StrategyError> {
        let body = container_body(
            spec,
            owner,
            &self.instance,
            replica,
            self.stack_dir.as_deref(),
        );
        self.create_and_start_body(body, spec, container_name).await
    }

    async fn create_and_start_body(
        &self,
        mut body: ContainerCreateBody,
        spec: &DeploySpec,
        container_name: &str,
    ) -> Result<String, StrategyError> {
        if let Some(labels) = body.labels.as_mut() {
            labels::stamp(labels, self.writer.as_ref());
        }
        let options = CreateContainerOptionsBuilder::default()
            .name(container_name)
            .build();
        let mut result = self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await;
        if matches!(&result, Err(e) if is_not_found(e) && e.to_string().contains("No such image")) {
            self.take_pull_step(spec, Some(false)).await?;
            result = self.docker.create_container(Some(options), body).await;
        }
        let created = match result {
            Ok(created) => created,
            Err(e) if status_code(&e) == Some(409) => {
                // Our own previous container still being removed also
                // holds the name: that is worth a retry, not a warning.
                let holder = self
                    .docker
                    .inspect_container(container_name, None::<InspectContainerOptions>)
                    .await
                    .ok()
                    .and_then(|c| c.config?.labels)
                    .unwrap_or_default();
                if labels::owner_of(&holder, &self.instance).is_some() {
                    return Err(StrategyError::docker("create container", container_name, e));
                }
                return Err(StrategyError::Foreign {
                    kind: "container",
                    name: container_name.to_string(),
                    owner: labels::owning_instance(&holder),
                });
            }
            Err(e) => return Err(StrategyError::docker("create container", container_name, e)),
        };
        // The first network was given at create time; Docker attaches one
        // network per create, so the others are connected before start.
        for network in spec.networks.iter().skip(1) {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint_settings(spec, network)),
            };
            if let Err(e) = self.docker.connect_network(network, request).await {
                let _ = self.remove_container(&created.id).await;
                return Err(StrategyError::docker(
                    "connect network",
                    network.as_str(),
                    e,
                ));
            }
        }
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            // A created-but-not-started container would hold the name and
            // the ports; remove it so the retry starts clean.
            let _ = self.remove_container(&created.id).await;
            return Err(StrategyError::docker("start container", container_name, e));
        }
        Ok(created.id)
    }
}

impl LocalDocker {
    /// Sorts an asset's containers: those of this spec (or of this spec
    /// at another replica count: scaling keeps them) that run or can be
    /// made to run; and those of a previous version, which the rollout
    /// replaces. Anything else (a leftover candidate, a container of this
    /// spec that cannot be run) is removed.
    async fn sort(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
        existing: &[ContainerSummary],
        wrote: &mut bool,
    ) -> Result<(Vec<(String, String)>, Vec<Previous>), StrategyError> {
        let template = spec.template_hash();
        let mut usable = Vec::new();
        let mut previous = Vec::new();
        for container in existing {
            let id = container.id.clone().unwrap_or_default();
            let name = container_name(container);
            let fits = label(container, labels::SPEC_HASH) == Some(owner.hash.0.as_str())
                || label(container, labels::TEMPLATE_HASH) == Some(template.0.as_str());
            if rollout::is_candidate(&name) {
                // A candidate whose restart policy is set had passed its
                // gate when assetd stopped: it takes its slot. Any other
                // is the trial of an interrupted update: redone.
                if fits && self.resources_as_declared(&id, spec).await? {
                    usable.push((name, id));
                    continue;
                }
                tracing::info!(container = %name, "removing the candidate of an interrupted update");
            } else if !fits {
                previous.push(Previous {
                    name,
                    id,
                    running: container.state == Some(ContainerSummaryStateEnum::RUNNING),
                });
                continue;
            } else if self.resources_as_declared(&id, spec).await?
                && self.make_running(container, &id, wrote).await
            {
                usable.push((name, id));
                continue;
            }
            self.remove_container(&id).await?;
            *wrote = true;
        }
        previous.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((usable, previous))
    }

    /// Each wanted name keeps the container of that name; the other
    /// usable containers fill the names left free (a rename keeps the
    /// container: `docker rename` by hand, or 1 ↔ N replicas), and the
    /// rest go (scaled down).
    async fn fill_slots(
        &self,
        wanted: &[String],
        usable: Vec<(String, String)>,
        previous: &mut Vec<Previous>,
        wrote: &mut bool,
    ) -> Result<BTreeMap<String, String>, StrategyError> {
        let mut kept: BTreeMap<String, String> = BTreeMap::new();
        let (named, mut spare): (Vec<_>, Vec<_>) = usable
            .into_iter()
            .partition(|(name, _)| wanted.contains(name));
        for (name, id) in named {
            kept.insert(name, id);
        }
        spare.sort();
        let free: Vec<String> = wanted
            .iter()
            .filter(|n| !kept.contains_key(*n))
            .cloned()
            .collect();
        for name in free {
            if spare.is_empty() {
                break;
            }
            let (old, id) = spare.remove(0);
            // A previous version still holding the name gives it up.
            if let Some(i) = previous.iter().position(|p| p.name == name) {
                let holder = previous.remove(i);
                self.remove_container(&holder.id).await?;
            }
            self.docker
                .rename_container(
                    &id,
                    RenameContainerOptionsBuilder::default().name(&name).build(),
                )
                .await
                .map_err(|e| StrategyError::docker("rename container", old.as_str(), e))?;
            tracing::info!(from = %old, to = %name, "renamed container");
            kept.insert(name, id);
            *wrote = true;
        }
        for (_, id) in spare {
            self.remove_container(&id).await?;
            *wrote = true;
        }
        Ok(kept)
    }

    /// Whether a container's limits and restart policy are still the ones
    /// it was created with (`docker update` changes them in place, and
    /// no label shows it). Read only on a deploy, never on a listing.
    async fn resources_as_declared(
        &self,
        id: &str,
        spec: &DeploySpec,
    ) -> Result<bool, StrategyError> {
        // A failed inspect is an error to retry, not a reason to recreate
        // a healthy container.
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| StrategyError::docker("inspect container", id, e))?;
        let host = inspect.host_config.unwrap_or_default();
        let wanted = container_host_config(spec);
        let zero_is_none = |v: Option<i64>| v.filter(|v| *v != 0);
        let same = zero_is_none(host.memory) == zero_is_none(wanted.memory)
            && zero_is_none(host.nano_cpus) == zero_is_none(wanted.nano_cpus)
            && zero_is_none(host.memory_reservation) == zero_is_none(wanted.memory_reservation)
            && host.restart_policy.and_then(|p| p.name)
                == wanted.restart_policy.and_then(|p| p.name);
        if !same {
            tracing::info!(
                container = id,
                "limits or restart policy changed by hand; recreating"
            );
        }
        Ok(same)
    }

    /// Brings a container of the right spec to running: unpaused (keeps
    /// its state; recreating would lose it) or started. False when that
    /// fails; it is then recreated.
    async fn make_running(&self, container: &ContainerSummary, id: &str, wrote: &mut bool) -> bool {
        let result = match container.state {
            Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING) => {
                return true
            }
            Some(ContainerSummaryStateEnum::PAUSED) => self.docker.unpause_container(id).await,
            _ => self.docker.start_container(id, None).await,
        };
        *wrote = true;
        result.is_ok()
    }

    /// Creates and starts every replica of an asset that had no
    /// containers: the fast path of a first deploy.
    async fn create_all(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
        names: &[String],
    ) -> Result<Vec<String>, StrategyError> {
        let mut ids = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            ids.push(
                self.create_and_start(spec, owner, name, index as u64 + 1)
                    .await?,
            );
        }
        self.listed
            .lock()
            .expect("listing lock")
            .insert(spec.name.clone());
        Ok(ids)
    }
}

impl LocalDocker {
    /// What this strategy cannot deploy, whatever the engine says.
    fn deployable_here(&self, spec: &DeploySpec, replicas: usize) -> Result<(), StrategyError> {
        let has_files = !spec.secrets.is_empty() || !spec.configs.is_empty();
        if has_files && self.stack_dir.is_none() {
            return Err(StrategyError::Refused(
                "spec.secrets/spec.configs: on a local engine they are files under the state dir, and this run has none".into(),
            ));
        }
        if replicas > 1 && !spec.ports.is_empty() {
            return Err(StrategyError::Refused(format!(
                "spec.ports: {replicas} replicas cannot share host ports on one engine; use replicas: 1 (or the Swarm strategy, whose ingress shares them)"
            )));
        }
        Ok(())
    }

    /// After a pull: when the tag moved, containers of the old image are a
    /// previous version, replaced through the same gate as any update.
    async fn forget_moved_tag(&self, spec: &DeploySpec, existing: &mut [ContainerSummary]) {
        let Ok(pulled) = self.docker.inspect_image(&spec.image).await else {
            return;
        };
        for container in existing.iter_mut() {
            if pulled.id.is_some() && container.image_id != pulled.id {
                if let Some(labels) = container.labels.as_mut() {
                    labels.remove(labels::SPEC_HASH);
                    labels.remove(labels::TEMPLATE_HASH);
                }
            }
        }
    }
}

impl LocalDocker {
    /// [`DeploymentStrategy::deploy`], before the view is told.
    async fn write_asset(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> Result<Deployed, StrategyError> {
        let wanted = Self::container_names(spec);
        self.deployable_here(spec, wanted.len())?;
        let warnings = ignored_here(spec);

        // Always pulls before anything is created or replaced, once.
        let pulled = spec.pull_policy() == PullPolicy::Always;
        if pulled {
            self.take_pull_step(spec, None).await?;
        }
        if !self.was_listed(&spec.name) {
            match self.create_all(spec, owner, &wanted).await {
                Ok(object_ids) => {
                    return Ok(Deployed {
                        object_ids,
                        version: None,
                        warnings,
                        wrote: true,
                    })
                }
                // Something holds one of the names (another's container,
                // or one of ours a lost event kept from the listing): look
                // before acting.
                Err(StrategyError::Foreign { .. }) => {}
                Err(StrategyError::Docker {
                    status: Some(409), ..
                }) => {}
                Err(e) => return Err(e),
            }
        }

        let mut existing = self.list_asset(&spec.name).await?;
        // The image first: a tag that cannot be pulled must leave what
        // runs running, not remove it and then fail to create.
        if !pulled {
            self.ensure_image(spec).await?;
        } else {
            self.forget_moved_tag(spec, &mut existing).await;
        }
        let mut wrote = false;
        let (usable, mut previous) = self.sort(spec, owner, &existing, &mut wrote).await?;
        let mut kept = self
            .fill_slots(&wanted, usable, &mut previous, &mut wrote)
            .await?;
        // Slots still empty: where a previous version's container runs,
        // the new version replaces it through the gate (all slots
        // together); elsewhere a container is simply created.
        let mut replacements = Vec::new();
        let mut fresh = Vec::new();
        for (index, name) in wanted.iter().enumerate() {
            if kept.contains_key(name) {
                continue;
            }
            let same_name = previous.iter().position(|p| &p.name == name);
            match same_name.or((!previous.is_empty()).then_some(0)) {
                Some(i) => replacements.push(rollout::Replacement {
                    old: previous.remove(i),
                    slot: name.clone(),
                    replica: index as u64 + 1,
                }),
                None => fresh.push((index, name.clone())),
            }
        }
        if !replacements.is_empty() {
            kept.extend(self.replace(spec, owner, replacements).await?);
            wrote = true;
        }
        for (index, name) in fresh {
            let id = self
                .create_and_start(spec, owner, &name, index as u64 + 1)
                .await?;
            kept.insert(name, id);
            wrote = true;
        }
        for old in previous {
            self.remove_container(&old.id).await?;
            wrote = true;
        }
        Ok(Deployed {
            object_ids: wanted.iter().filter_map(|n| kept.get(n).cloned()).collect(),
            version: None,
            warnings,
            wrote,
        })
    }

    /// [`DeploymentStrategy::remove`], before the view is told.
    async fn remove_asset(&self, name: &AssetName) -> Result<Removed, StrategyError> {
        self.listed.lock().expect("listing lock").remove(name);
        let existing = self.list_asset(name).await?;
        let mut result = Removed::Absent;
        for container in existing {
            if let Some(id) = container.id {
                if self.remove_container(&id).await? == Removed::Removed {
                    result = Removed::Removed;
                }
            }
        }
        Ok(result)
    }
}

impl DeploymentStrategy for LocalDocker {
    async fn deploy(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> Result<Deployed, StrategyError> {
        let deployed = self.write_asset(spec, owner).await;
        // Whatever it did, the asset's containers are read again.
        self.view.touch_asset(&spec.name);
        deployed
    }

    async fn remove(&self, name: &AssetName) -> Result<Removed, StrategyError> {
        let removed = self.remove_asset(name).await;
        self.view.touch_asset(name);
        removed
    }

    async fn list_managed(&self) -> Result<Vec<ActualAsset>, StrategyError> {
        let containers = self.managed_containers().await?;
        let memory = ailing::Memory {
            failed: &self.failed_lately,
            inspections: &self.inspections,
            generation: |id: &str| self.view.generation(id),
        };
        let ailments = ailing::diagnose(&self.docker, &containers, memory).await;
        let assets = group_into_assets(containers, &self.instance, &ailments);
        *self.listed.lock().expect("listing lock") =
            assets.iter().map(|a| a.name.clone()).collect();
        Ok(assets)
    }

    async fn run_hook(
        &self,
        spec: &DeploySpec,
        kind: crate::model::hooks::HookKind,
        hook: &crate::model::hooks::Hook,
    ) -> crate::model::hooks::HookRun {
        let run = self.run_hook_container(spec, kind, hook).await;
        self.view.touch_asset(&spec.name);
        run
    }

    async fn sweep_hooks(&self, name: &AssetName) {
        self.sweep_hook_containers(name).await;
        self.view.touch_asset(name);
    }
}

/// What of the spec a single engine cannot honour, for status.
fn ignored_here(spec: &DeploySpec) -> Vec<String> {
    let mut warnings = Vec::new();
    if !spec.constraints.is_empty() {
        warnings.push("spec.constraints are ignored by the local strategy".to_string());
    }
    if spec.resources.reservations.nano_cpus.is_some() {
        warnings
            .push("spec.resources.reservations.cpus is ignored by the local strategy".to_string());
    }
    if spec.mode == Mode::Global {
        warnings.push("mode global runs one container on the local engine".to_string());
    }
    warnings
}

/// Folds a container listing into one [`ActualAsset`] per asset label,
/// noting drift that the containers themselves show.
fn group_into_assets(
    containers: Vec<ContainerSummary>,
    instance: &str,
    ailments: &HashMap<String, Ailment>,
) -> Vec<ActualAsset> {
    let mut by_asset: BTreeMap<AssetName, Vec<ContainerSummary>> = BTreeMap::new();
    for container in containers {
        // A container being removed is already gone as far as the plan
        // goes; its `destroy` event triggers the next pass.
        if container.state == Some(ContainerSummaryStateEnum::REMOVING) {
            continue;
        }
        // A Swarm task's container carries its service's labels, ours
        // included: it belongs to the Swarm, which restarts it, and
        // removing it here would start a fight with the Swarm.
        if label(&container, SWARM_TASK).is_some() {
            continue;
        }
        let owner = container
            .labels
            .as_ref()
            .and_then(|labels| labels::owner_of(labels, instance));
        if let Some((name, _, _)) = owner {
            by_asset.entry(name).or_default().push(container);
        }
    }
    by_asset
        .into_iter()
        .map(|(name, mut containers)| {
            containers.sort_by_key(container_name);
            asset_of(name, &containers, ailments)
        })
        .collect()
}

/// One asset from its containers (sorted by name).
fn asset_of(
    name: AssetName,
    containers: &[ContainerSummary],
    ailments: &HashMap<String, Ailment>,
) -> ActualAsset {
    let spec_hash = shared_label(containers, labels::SPEC_HASH).map(SpecHash);
    let template = shared_label(containers, labels::TEMPLATE_HASH).map(SpecHash);
    let source = containers
        .iter()
        .find_map(|c| label(c, labels::SOURCE))
        .map(str::to_string);
    // The replica count the containers were created for; only trusted
    // while they agree on one spec (after a scale, kept containers still
    // carry the count they were created with).
    let labelled: u64 = containers
        .iter()
        .find_map(|c| label(c, REPLICAS).and_then(|r| r.parse().ok()))
        .unwrap_or(1);
    let count = containers.len() as u64;
    // One caught up between two crashes of a loop does not count.
    let crash_looping = |c: &ContainerSummary| {
        let ailment = c.id.as_deref().and_then(|id| ailments.get(id));
        matches!(ailment, Some(Ailment::Failing(_)))
    };
    // Nor one whose healthcheck has not passed yet: it does not work yet
    // (and what depends on it must wait).
    let starting = |c: &ContainerSummary| {
        let status = c.status.as_deref().unwrap_or_default();
        status.ends_with("(health: starting)")
    };
    let running = containers
        .iter()
        .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
        .filter(|c| !crash_looping(c) && !starting(c))
        .count() as u64;
    let pending_reason = containers
        .iter()
        .find(|c| starting(c))
        .map(|c| format!("container {}: healthcheck starting", container_name(c)));

    let desired = if spec_hash.is_some() { labelled } else { count };
    let drift = drift_of(&name, containers, &spec_hash, &template, labelled);
    ActualAsset {
        name,
        spec_hash,
        source,
        object_ids: containers.iter().filter_map(|c| c.id.clone()).collect(),
        version: None,
        drift,
        replicas: ReplicaCounts {
            desired,
            running,
            pending_secs: None,
            pending_reason,
            failing: failing_reason(containers, ailments).filter(|_| running < desired),
            unhealthy: unhealthy_reason(containers, ailments),
            // A local rollout is over when its deploy call returns.
            rolling: false,
            missing_nodes: None,
            up_secs: up_secs(containers),
            // A container restarted lately is judged by its restart count
            // (`ailing`), at once.
            settling: false,
        },
        writer: writer_stamp(containers),
        template_hash: template,
        rollout: None,
    }
}

/// What the containers show that was done outside assetd: renamed,
/// stopped, of mixed versions, or more or fewer than were created.
fn drift_of(
    name: &AssetName,
    containers: &[ContainerSummary],
    spec_hash: &Option<SpecHash>,
    template: &Option<SpecHash>,
    labelled: u64,
) -> Vec<String> {
    let count = containers.len() as u64;
    let mut drift = Vec::new();
    // Named as `labelled` replicas (some may be gone) or as `count` (after
    // a scale): anything else was renamed by hand.
    let mut allowed = replica_names(name, labelled);
    allowed.extend(replica_names(name, count));
    let strays: Vec<String> = containers
        .iter()
        .map(container_name)
        .filter(|n| !allowed.contains(n))
        .collect();
    for stray in &strays {
        drift.push(format!(
            "container {stray} is not named as assetd named it (renamed by hand?)"
        ));
    }
    if spec_hash.is_none() && template.is_none() && !containers.is_empty() {
        drift.push("containers carry different spec hashes".to_string());
    }
    for c in containers {
        // `restarting` is the engine's restart policy at work:
        // racing it with a recreate helps nobody.
        let healthy = matches!(
            c.state,
            Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING)
        );
        if !healthy {
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            drift.push(format!("container {} is {state}", container_name(c)));
        }
    }
    // Containers with a template label leave the count to the planner,
    // which knows how many are wanted.
    if spec_hash.is_some() && template.is_none() && count != labelled {
        drift.push(format!("{count} containers, {labelled} wanted"));
    }
    drift
}

/// How long the youngest running container has existed, never more
/// than it has (the listing's creation time is in whole seconds); a
/// restart is told by its restart count, see `ailing`.
fn up_secs(containers: &[ContainerSummary]) -> Option<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    containers
        .iter()
        .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
        .filter_map(|c| c.created)
        .map(|created| (now - created - 1).max(0) as u64)
        .min()
}

/// The value of `key` when every container has the same one.
fn shared_label(containers: &[ContainerSummary], key: &str) -> Option<String> {
    let first = label(containers.first()?, key)?;
    containers
        .iter()
        .all(|c| label(c, key) == Some(first))
        .then(|| first.to_string())
}

/// The container names of `n` replicas: `NAME` for one, `NAME-1..N`.
fn replica_names(name: &AssetName, n: u64) -> Vec<String> {
    match n {
        1 => vec![name.to_string()],
        n => (1..=n).map(|i| format!("{name}-{i}")).collect(),
    }
}

/// A container that crash-loops (the restart policy at work) or exited
/// with an error, in the engine's words (`Restarting (3) 2 seconds ago`).
fn failing_reason(
    containers: &[ContainerSummary],
    ailments: &HashMap<String, Ailment>,
) -> Option<String> {
    let inspected = containers
        .iter()
        .find_map(|c| match ailments.get(c.id.as_deref()?) {
            Some(Ailment::Failing(why)) => Some(why.clone()),
            _ => None,
        });
    inspected.or_else(|| {
        containers.iter().find_map(|c| {
            let status = c.status.as_deref().unwrap_or_default();
            let crashed = match c.state {
                Some(ContainerSummaryStateEnum::RESTARTING) => true,
                Some(ContainerSummaryStateEnum::EXITED) => !status.starts_with("Exited (0)"),
                _ => false,
            };
            crashed.then(|| format!("container {}: {status}", container_name(c)))
        })
    })
}

/// A running container whose healthcheck fails, with its last output.
fn unhealthy_reason(
    containers: &[ContainerSummary],
    ailments: &HashMap<String, Ailment>,
) -> Option<String> {
    containers.iter().find_map(|c| {
        let status = c.status.as_deref().unwrap_or_default();
        match ailments.get(c.id.as_deref()?) {
            Some(Ailment::Unhealthy(why)) => Some(why.clone()),
            None if status.ends_with("(unhealthy)") => {
                Some(format!("container {}: {status}", container_name(c)))
            }
            _ => None,
        }
    })
}

/// The newest writer's stamp on the containers.
fn writer_stamp(
    containers: &[ContainerSummary],
) -> Option<crate::engine::strategy::writer::WriterStamp> {
    containers
        .iter()
        .filter_map(|c| {
            let written_ms = c.created? as u64 * 1000;
            labels::writer_of(c.labels.as_ref()?, written_ms)
        })
        .max_by_key(|stamp| stamp.written_ms)
}

/// The label the engine puts on a Swarm task's container.
const SWARM_TASK: &str = "com.docker.swarm.task.id";

/// A container's name as the engine lists it, without the leading `/`.
pub(crate) fn container_name(container: &ContainerSummary) -> String {
    container
        .names
        .as_ref()
        .and_then(|names| names.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

fn label<'a>(container: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    container.labels.as_ref()?.get(key).map(String::as_str)
}

/// The host settings `docker update` can change in place: limits and the
/// restart policy.
fn container_host_config(spec: &DeploySpec) -> HostConfig {
    HostConfig {
        nano_cpus: spec.resources.limits.nano_cpus,
        memory: spec.resources.limits.memory_bytes,
        memory_reservation: spec.resources.reservations.memory_bytes,
        // Containers come back after an engine or host restart even
        // before assetd is up again; a stop by hand is drift we repair.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    }
}

/// The asset's endpoint on `network`: its aliases there, if any.
fn endpoint_settings(spec: &DeploySpec, network: &str) -> EndpointSettings {
    EndpointSettings {
        aliases: spec.runtime.aliases.get(network).cloned(),
        ..Default::default()
    }
}

/// Secrets and configs: each version's file for the reference's owner
/// and mode, read-only at its target (`crate::engine::strategy::stack_engine` writes them).
fn file_mounts<'a>(
    spec: &'a DeploySpec,
    stack_dir: Option<&'a std::path::Path>,
) -> impl Iterator<Item = DockerMount> + 'a {
    use crate::input::stack::ResourceKind;
    let secrets = spec.secrets.iter().map(|r| (ResourceKind::Secret, r));
    let configs = spec.configs.iter().map(|r| (ResourceKind::Config, r));
    secrets.chain(configs).filter_map(move |(kind, file_ref)| {
        Some(DockerMount {
            target: Some(file_ref.target.clone()),
            source: Some(
                crate::engine::strategy::stack_engine::local_file(stack_dir?, kind, file_ref)
                    .to_string_lossy()
                    .into_owned(),
            ),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        })
    })
}

/// The create body: every seed parameter mapped onto the Engine API.
fn container_body(
    spec: &DeploySpec,
    owner: &Ownership,
    instance: &str,
    replica: u64,
    stack_dir: Option<&std::path::Path>,
) -> ContainerCreateBody {
    let mut labels = labels::object_labels(spec, owner, instance);
    labels.insert(REPLICAS.into(), spec.local_replicas().to_string());
    labels.insert(labels::TEMPLATE_HASH.into(), spec.template_hash().0);
    labels.insert(REPLICA.into(), replica.to_string());

    let runtime = &spec.runtime;
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for port in &spec.ports {
        let key = format!("{}/{}", port.container, port.protocol.as_str());
        exposed.push(key.clone());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(port.host.to_string()),
            });
    }

    let mounts: Vec<DockerMount> = spec
        .mounts
        .iter()
        .map(|m| DockerMount {
            target: Some(m.target.clone()),
            source: m.source.clone(),
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                MountKind::Volume => MountType::VOLUME,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            tmpfs_options: (m.kind == MountKind::Tmpfs).then(MountTmpfsOptions::default),
            volume_options: super::volume_options(m),
            ..Default::default()
        })
        .chain(file_mounts(spec, stack_dir))
        .collect();

    let networking_config = spec.networks.first().map(|first| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            first.clone(),
            endpoint_settings(spec, first),
        )])),
    });

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(spec.env.clone()),
        healthcheck: spec.healthcheck.as_ref().map(super::health_config),
        cmd: spec.command.clone(),
        entrypoint: runtime.entrypoint.clone(),
        working_dir: runtime.working_dir.clone(),
        hostname: runtime.hostname.clone(),
        stop_signal: runtime.stop_signal.clone(),
        // Docker takes whole seconds here; Compose's `10s` is exact.
        stop_timeout: runtime
            .stop_grace_period_ns
            .map(|ns| (ns + 999_999_999) / 1_000_000_000),
        user: spec.user.clone(),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            mounts: (!mounts.is_empty()).then_some(mounts),
            network_mode: spec.networks.first().cloned(),
            ulimits: super::ulimits(spec),
            init: runtime.init,
            readonly_rootfs: runtime.read_only.then_some(true),
            cap_add: (!runtime.cap_add.is_empty()).then(|| runtime.cap_add.clone()),
            cap_drop: (!runtime.cap_drop.is_empty()).then(|| runtime.cap_drop.clone()),
            extra_hosts: (!runtime.extra_hosts.is_empty()).then(|| runtime.extra_hosts.clone()),
            ..container_host_config(spec)
        }),
        networking_config,
        ..Default::default()
    }
}
