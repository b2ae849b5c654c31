//! The Docker side of networks, volumes, secrets and configs: one look at
//! what exists (ours and not) and who uses it, and the writes the stack
//! plan asks for. On Swarm, secrets and configs are engine objects; on a
//! plain engine they are read-only files under the state dir, bind-mounted
//! by the local strategy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, Ipam, IpamConfig, NetworkCreateRequest, SecretSpec, VolumeCreateRequest,
};
use bollard::query_parameters::{
    ListConfigsOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListSecretsOptionsBuilder, ListServicesOptionsBuilder, ListVolumesOptions,
};
use bollard::Docker;

use super::labels::{self, INSTANCE, MANAGED, SOURCE, SPEC_HASH};
use super::StrategyError;
use crate::input::desired::DesiredAsset;
use crate::input::stack::plan::{ActualResource, StackAction, StackOp};
use crate::input::stack::version_key::VersionKey;
use crate::input::stack::{DesiredResource, DesiredResources, ResourceKind, ResourceSpec};
use crate::model::spec::{AssetName, FileRef};

/// The declared name an object was created for.
pub const RESOURCE: &str = "io.assetd.resource";

/// Everything a pass needs to know of the stack's objects.
#[derive(Clone, Debug, Default)]
pub struct StackActual {
    /// Ours, and others' objects of a declared name.
    pub objects: Vec<ActualResource>,
    /// Every name present on the engine, whoever made it: an asset may use
    /// a network someone created by hand.
    pub present: BTreeSet<(ResourceKind, String)>,
}

/// Networks, volumes, secrets and configs of one engine.
#[derive(Clone)]
pub struct StackEngine {
    docker: Docker,
    swarm: bool,
    instance: String,
    /// `<state-dir>/stack`: secrets and configs on a plain engine.
    files: Option<PathBuf>,
    /// Whether the last look found objects of ours (true until a first
    /// look): shared by the strategy's clones.
    seen_ours: SeenOurs,
}

/// What a strategy's stack engines remember between passes: whether the
/// last look found objects of ours (starts true, so that the first pass
/// of a process looks), and the version key once read.
#[derive(Clone, Debug)]
pub struct SeenOurs(Arc<AtomicBool>, Arc<tokio::sync::OnceCell<VersionKey>>);

impl Default for SeenOurs {
    fn default() -> Self {
        SeenOurs(Arc::new(AtomicBool::new(true)), Default::default())
    }
}

impl StackEngine {
    pub fn new(
        docker: Docker,
        swarm: bool,
        instance: &str,
        files: Option<PathBuf>,
        seen_ours: SeenOurs,
    ) -> Self {
        StackEngine {
            docker,
            swarm,
            instance: instance.to_string(),
            files,
            seen_ours,
        }
    }

    /// The key of secret and config versions (`crate::input::stack::version_key`), read
    /// or made once per process.
    pub async fn version_key(&self) -> Result<VersionKey, StrategyError> {
        self.seen_ours
            .1
            .get_or_try_init(|| async {
                match (&self.files, self.swarm) {
                    (_, true) => super::version_key::on_swarm(&self.docker, &self.instance).await,
                    (Some(dir), false) => super::version_key::in_dir(dir),
                    // No state dir: no secret can be written here anyway.
                    (None, false) => Ok(VersionKey::ephemeral()),
                }
            })
            .await
            .cloned()
    }

    /// Whether a pass must look at the stack: something is declared or
    /// referred to, or objects of ours were there last time (to remove
    /// them). A fleet without any is spared this look (three or more
    /// list calls, every container among them) at every pass.
    pub fn worth_a_look(&self, desired: &crate::input::desired::Desired) -> bool {
        !desired.resources.is_empty()
            || !desired.held_resources.is_empty()
            || desired.assets.values().any(|a| !a.references.is_empty())
            || self.seen_ours.0.load(Ordering::Relaxed)
    }

    /// One look: networks and volumes (two calls), secrets and configs
    /// (two more on Swarm, a directory listing locally), and their users
    /// (the containers, and on Swarm the services).
    pub async fn observe(&self) -> Result<StackActual, StrategyError> {
        let users = self.users().await?;
        let mut actual = StackActual::default();
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::default().build()))
            .await
            .map_err(|e| StrategyError::docker("list networks", "all", e))?;
        for network in networks {
            let (Some(name), Some(id)) = (network.name, network.id) else {
                continue;
            };
            let mut using = users.get(&(ResourceKind::Network, name.clone())).cloned();
            if let Some(by_id) = users.get(&(ResourceKind::Network, id.clone())) {
                using
                    .get_or_insert_with(BTreeSet::new)
                    .extend(by_id.iter().cloned());
            }
            self.found(
                &mut actual,
                ResourceKind::Network,
                name,
                id,
                network.labels,
                using,
            );
        }
        let volumes = self
            .docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(|e| StrategyError::docker("list volumes", "all", e))?;
        for volume in volumes.volumes.unwrap_or_default() {
            let using = users
                .get(&(ResourceKind::Volume, volume.name.clone()))
                .cloned();
            let labels = Some(volume.labels);
            self.found(
                &mut actual,
                ResourceKind::Volume,
                volume.name.clone(),
                volume.name,
                labels,
                using,
            );
        }
        if self.swarm {
            self.found_swarm_files(&users, &mut actual).await?;
        } else if let Some(root) = &self.files {
            found_local_files(root, &users, &mut actual);
        }
        let ours = actual.objects.iter().any(|a| a.owned);
        self.seen_ours.0.store(ours, Ordering::Relaxed);
        Ok(actual)
    }

    /// Swarm's secrets and configs, each with the services that use any
    /// version of it.
    async fn found_swarm_files(
        &self,
        users: &Users,
        actual: &mut StackActual,
    ) -> Result<(), StrategyError> {
        let secrets = self
            .docker
            .list_secrets(Some(ListSecretsOptionsBuilder::default().build()))
            .await
            .map_err(|e| StrategyError::docker("list secrets", "all", e))?;
        for secret in secrets {
            let spec = secret.spec.unwrap_or_default();
            let (Some(name), Some(id)) = (spec.name, secret.id) else {
                continue;
            };
            let using = with_any_version(users, ResourceKind::Secret, &name, spec.labels.as_ref());
            self.found(actual, ResourceKind::Secret, name, id, spec.labels, using);
        }
        let configs = self
            .docker
            .list_configs(Some(ListConfigsOptionsBuilder::default().build()))
            .await
            .map_err(|e| StrategyError::docker("list configs", "all", e))?;
        for config in configs {
            let spec = config.spec.unwrap_or_default();
            let (Some(name), Some(id)) = (spec.name, config.id) else {
                continue;
            };
            let using = with_any_version(users, ResourceKind::Config, &name, spec.labels.as_ref());
            self.found(actual, ResourceKind::Config, name, id, spec.labels, using);
        }
        Ok(())
    }

    fn found(
        &self,
        actual: &mut StackActual,
        kind: ResourceKind,
        name: String,
        id: String,
        object_labels: Option<HashMap<String, String>>,
        users: Option<BTreeSet<String>>,
    ) {
        actual.present.insert((kind, name.clone()));
        let object_labels = object_labels.unwrap_or_default();
        let owner = labels::owning_instance(&object_labels);
        let owned = owner.as_deref() == Some(self.instance.as_str());
        // Others' objects are listed only so that a declared name taken by
        // someone else is reported; they are never written.
        if owner.is_some() && !owned {
            return;
        }
        actual.objects.push(ActualResource {
            kind,
            engine_name: name,
            id,
            owned,
            declared: object_labels.get(RESOURCE).cloned(),
            hash: object_labels.get(SPEC_HASH).cloned(),
            users: users.unwrap_or_default().into_iter().collect(),
        });
    }

    /// Who uses what: (kind, engine name or ID or local file dir) → the
    /// containers' and services' names.
    async fn users(
        &self,
    ) -> Result<BTreeMap<(ResourceKind, String), BTreeSet<String>>, StrategyError> {
        let mut users: BTreeMap<(ResourceKind, String), BTreeSet<String>> = BTreeMap::new();
        let mut add = |kind, key: String, user: &str| {
            users
                .entry((kind, key))
                .or_default()
                .insert(user.to_string());
        };
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default().all(true).build(),
            ))
            .await
            .map_err(|e| StrategyError::docker("list containers", "all", e))?;
        for container in containers {
            let name = super::local::container_name(&container);
            // A stopped container holds no endpoint: it does not keep a
            // network (it does keep its volumes and files).
            let running =
                container.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
            let networks = container.network_settings.and_then(|s| s.networks);
            for network in networks.unwrap_or_default().into_keys().filter(|_| running) {
                add(ResourceKind::Network, network, &name);
            }
            for mount in container.mounts.unwrap_or_default() {
                if let Some(volume) = mount.name {
                    add(ResourceKind::Volume, volume, &name);
                }
                if let (Some(source), Some(root)) = (mount.source, &self.files) {
                    // A local secret's file: count its version directory.
                    if let Ok(rest) = Path::new(&source).strip_prefix(root) {
                        let parts: Vec<_> = rest.components().take(2).collect();
                        if let [kind, version] = parts.as_slice() {
                            let kind_text = kind.as_os_str().to_string_lossy();
                            if let Some(kind) = ResourceKind::from_str_lower(&kind_text) {
                                let dir = root.join(kind.as_str()).join(version.as_os_str());
                                add(kind, dir.to_string_lossy().into_owned(), &name);
                            }
                        }
                    }
                }
            }
        }
        if !self.swarm {
            return Ok(users);
        }
        let services = self
            .docker
            .list_services(Some(ListServicesOptionsBuilder::default().build()))
            .await
            .map_err(|e| StrategyError::docker("list services", "all", e))?;
        for service in services {
            let unfinished = update_unfinished(&service);
            let Some(spec) = service.spec else {
                continue;
            };
            let name = spec.name.unwrap_or_default();
            let task = spec.task_template.unwrap_or_default();
            for network in task.networks.unwrap_or_default() {
                if let Some(target) = network.target {
                    add(ResourceKind::Network, target, &name);
                }
            }
            let container = task.container_spec.unwrap_or_default();
            let secrets = container.secrets.unwrap_or_default().into_iter();
            let configs = container.configs.unwrap_or_default().into_iter();
            let files = secrets
                .filter_map(|s| s.secret_name.map(|n| (ResourceKind::Secret, n)))
                .chain(configs.filter_map(|c| c.config_name.map(|n| (ResourceKind::Config, n))));
            for (kind, file) in files {
                // While an update is not finished, Swarm may roll back to
                // the previous spec: every version of the object is kept.
                if let (true, Some((declared, _))) = (unfinished, file.rsplit_once('-')) {
                    let waiting = format!("{name} (its update has not finished)");
                    add(kind, format!("{ANY_VERSION}{declared}"), &waiting);
                }
                add(kind, file, &name);
            }
            for mount in container.mounts.unwrap_or_default() {
                if let Some(source) = mount.source {
                    add(ResourceKind::Volume, source, &name);
                }
            }
        }
        Ok(users)
    }

    /// Carries out one create or remove of the stack plan (holds do
    /// nothing). `assets` give the local files' owners and modes.
    pub async fn apply(
        &self,
        action: &StackAction,
        desired: &DesiredResources,
        actual: &StackActual,
        assets: &BTreeMap<AssetName, DesiredAsset>,
    ) -> Result<(), StrategyError> {
        match &action.op {
            StackOp::Hold(_) => Ok(()),
            StackOp::Create => {
                let want = desired
                    .values()
                    .find(|w| {
                        w.kind == action.kind
                            && crate::input::stack::plan::engine_name(w) == action.name
                    })
                    .ok_or_else(|| StrategyError::Refused(format!("{action}: not declared")))?;
                self.create(want, assets).await
            }
            StackOp::Remove => {
                let found = actual
                    .objects
                    .iter()
                    .find(|a| a.kind == action.kind && a.engine_name == action.name && a.owned)
                    .ok_or_else(|| StrategyError::Refused(format!("{action}: not ours")))?;
                self.remove(found).await
            }
        }
    }

    fn labels_of(&self, want: &DesiredResource) -> HashMap<String, String> {
        let mut out: HashMap<String, String> = want.labels.clone().into_iter().collect();
        out.insert(MANAGED.into(), "true".into());
        out.insert(INSTANCE.into(), self.instance.clone());
        out.insert(RESOURCE.into(), want.name.clone());
        out.insert(SPEC_HASH.into(), want.hash.clone());
        out.insert(SOURCE.into(), want.source.clone());
        out
    }

    async fn create(
        &self,
        want: &DesiredResource,
        assets: &BTreeMap<AssetName, DesiredAsset>,
    ) -> Result<(), StrategyError> {
        let name = crate::input::stack::plan::engine_name(want);
        let labels = Some(self.labels_of(want));
        match &want.spec {
            ResourceSpec::Network(spec) => {
                let default_driver = if self.swarm { "overlay" } else { "bridge" };
                let mut config: Vec<IpamConfig> = spec
                    .subnets
                    .iter()
                    .map(|subnet| IpamConfig {
                        subnet: Some(subnet.clone()),
                        ..Default::default()
                    })
                    .collect();
                if let Some(first) = config.first_mut() {
                    first.gateway = spec.gateway.clone();
                    first.ip_range = spec.ip_range.clone();
                }
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some(spec.driver.clone().unwrap_or_else(|| default_driver.into())),
                    attachable: spec.attachable.then_some(true),
                    internal: spec.internal.then_some(true),
                    ipam: (!config.is_empty()).then(|| Ipam {
                        config: Some(config),
                        ..Default::default()
                    }),
                    options: Some(spec.options.clone().into_iter().collect()),
                    labels,
                    ..Default::default()
                };
                self.docker
                    .create_network(request)
                    .await
                    .map_err(|e| StrategyError::docker("create network", &name, e))?;
            }
            ResourceSpec::Volume(spec) => {
                let request = VolumeCreateRequest {
                    name: Some(name.clone()),
                    driver: Some(spec.driver.clone().unwrap_or_else(|| "local".into())),
                    driver_opts: Some(spec.driver_opts.clone().into_iter().collect()),
                    labels,
                    ..Default::default()
                };
                self.docker
                    .create_volume(request)
                    .await
                    .map_err(|e| StrategyError::docker("create volume", &name, e))?;
            }
            ResourceSpec::Secret(_) | ResourceSpec::Config(_) => {
                let content = want.content.as_ref().ok_or_else(|| {
                    StrategyError::Refused(format!("{} {name}: no content", want.kind))
                })?;
                if !self.swarm {
                    return self.write_files(want, assets);
                }
                let data = Some(base64::engine::general_purpose::STANDARD.encode(content.expose()));
                if want.kind == ResourceKind::Secret {
                    let spec = SecretSpec {
                        name: Some(name.clone()),
                        labels,
                        data,
                        ..Default::default()
                    };
                    self.docker
                        .create_secret(spec)
                        .await
                        .map_err(|e| StrategyError::docker("create secret", &name, e))?;
                } else {
                    let spec = ConfigSpec {
                        name: Some(name.clone()),
                        labels,
                        data,
                        ..Default::default()
                    };
                    self.docker
                        .create_config(spec)
                        .await
                        .map_err(|e| StrategyError::docker("create config", &name, e))?;
                }
            }
        }
        tracing::info!(kind = %want.kind, name = %name, "created");
        Ok(())
    }

    async fn remove(&self, found: &ActualResource) -> Result<(), StrategyError> {
        let name = &found.engine_name;
        let result = match found.kind {
            ResourceKind::Network => self
                .docker
                .remove_network(&found.id)
                .await
                .map_err(|e| StrategyError::docker("remove network", name, e)),
            ResourceKind::Volume => Err(StrategyError::Refused(format!(
                "volume {name}: a volume's data is deleted only by `assetd delete-volume {name} --confirm`"
            ))),
            ResourceKind::Secret | ResourceKind::Config if !self.swarm => {
                std::fs::remove_dir_all(&found.id).map_err(|e| {
                    StrategyError::Refused(format!("remove {} files {}: {e}", found.kind, found.id))
                })
            }
            ResourceKind::Secret => self
                .docker
                .delete_secret(&found.id)
                .await
                .map_err(|e| StrategyError::docker("remove secret", name, e)),
            ResourceKind::Config => self
                .docker
                .delete_config(&found.id)
                .await
                .map_err(|e| StrategyError::docker("remove config", name, e)),
        };
        if result.is_ok() {
            tracing::info!(kind = %found.kind, name = %name, "removed: no longer declared and unused");
        }
        result
    }

    /// Removes one of our objects at the operator's request (`assetd
    /// delete-volume`, `assetd recreate`): refused for others' objects and
    /// for objects in use.
    pub async fn remove_confirmed(
        &self,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), StrategyError> {
        let actual = self.observe().await?;
        let Some(found) = actual
            .objects
            .iter()
            .find(|a| a.kind == kind && a.engine_name == name)
        else {
            return Err(StrategyError::Refused(format!(
                "no {kind} `{name}` on this engine"
            )));
        };
        if !found.owned {
            return Err(StrategyError::Foreign {
                kind: kind.as_str(),
                name: name.to_string(),
                owner: None,
            });
        }
        if !found.users.is_empty() {
            return Err(StrategyError::Refused(format!(
                "{kind} `{name}` is in use by {}; remove or stop them first",
                found.users.join(", ")
            )));
        }
        if kind == ResourceKind::Volume {
            return self
                .docker
                .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await
                .map_err(|e| StrategyError::docker("remove volume", name, e));
        }
        self.remove(found).await
    }

    /// Local engine: the files of one secret or config version, one per
    /// owner and mode its users ask for, in a 0700 directory.
    pub fn write_files(
        &self,
        want: &DesiredResource,
        assets: &BTreeMap<AssetName, DesiredAsset>,
    ) -> Result<(), StrategyError> {
        let (Some(root), Some(content)) = (&self.files, &want.content) else {
            return Err(StrategyError::Refused(
                "secrets and configs on a local engine need a state dir".into(),
            ));
        };
        let dir = root
            .join(want.kind.as_str())
            .join(crate::input::stack::plan::engine_name(want));
        let refused = |e: std::io::Error| {
            StrategyError::Refused(format!(
                "{} {}: cannot write its files: {e}",
                want.kind, want.name
            ))
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(refused)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(refused)?;
        for file_ref in refs_to(want, assets) {
            let path = dir.join(variant(&file_ref));
            if path.exists() {
                continue;
            }
            // Written aside and renamed: a container never sees half a file.
            let partial = dir.join(format!(".{}.partial", variant(&file_ref)));
            std::fs::write(&partial, content.expose()).map_err(refused)?;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(file_ref.mode))
                .map_err(refused)?;
            let (uid, gid) = (file_ref.uid.parse().ok(), file_ref.gid.parse().ok());
            std::os::unix::fs::chown(&partial, uid, gid).map_err(refused)?;
            std::fs::rename(&partial, &path).map_err(refused)?;
        }
        Ok(())
    }

    /// Local engine: makes sure every declared version has the files its
    /// users need (a new user may ask for another owner or mode).
    pub fn ensure_files(
        &self,
        desired: &DesiredResources,
        assets: &BTreeMap<AssetName, DesiredAsset>,
    ) -> Vec<(String, StrategyError)> {
        if self.swarm || self.files.is_none() {
            return Vec::new();
        }
        desired
            .values()
            .filter(|w| w.content.is_some())
            .filter_map(|w| {
                self.write_files(w, assets)
                    .err()
                    .map(|e| (w.name.clone(), e))
            })
            .collect()
    }
}

/// The key under which services mid-update hold every version of a
/// declared secret or config.
const ANY_VERSION: &str = "any version of ";

/// The users of one secret or config version: its own, and the services
/// mid-update that hold every version of its declared name.
/// The local engine's secret and config versions: directories under the
/// state dir, each with the containers that mount it.
fn found_local_files(root: &std::path::Path, users: &Users, actual: &mut StackActual) {
    for kind in [ResourceKind::Secret, ResourceKind::Config] {
        for (name, version) in local_versions(root, kind) {
            let dir = root.join(kind.as_str()).join(&name);
            let using = users
                .get(&(kind, dir.to_string_lossy().into_owned()))
                .cloned()
                .unwrap_or_default();
            actual.present.insert((kind, name.clone()));
            actual.objects.push(ActualResource {
                kind,
                declared: name.rsplit_once('-').map(|(d, _)| d.to_string()),
                engine_name: name,
                id: dir.to_string_lossy().into_owned(),
                owned: true,
                hash: Some(version),
                users: using.into_iter().collect(),
            });
        }
    }
}

/// Who uses each network, volume, secret and config: (kind, name or ID) → users.
type Users = BTreeMap<(ResourceKind, String), BTreeSet<String>>;

fn with_any_version(
    users: &BTreeMap<(ResourceKind, String), BTreeSet<String>>,
    kind: ResourceKind,
    name: &str,
    object_labels: Option<&HashMap<String, String>>,
) -> Option<BTreeSet<String>> {
    let own = users.get(&(kind, name.to_string())).cloned();
    let declared = object_labels.and_then(|l| l.get(RESOURCE));
    let held = declared.and_then(|d| users.get(&(kind, format!("{ANY_VERSION}{d}"))));
    match (own, held) {
        (None, None) => None,
        (own, held) => Some(
            own.into_iter()
                .flatten()
                .chain(held.into_iter().flatten().cloned())
                .collect(),
        ),
    }
}

/// Whether a service's last update is still under way or stopped half
/// way (Swarm could still roll it back).
fn update_unfinished(service: &bollard::models::Service) -> bool {
    use bollard::models::ServiceUpdateStatusStateEnum as State;
    let state = service.update_status.as_ref().and_then(|s| s.state);
    !matches!(
        state,
        None | Some(State::COMPLETED | State::ROLLBACK_COMPLETED | State::EMPTY)
    )
}

/// Where a reference's file is on the host (local engine).
pub fn local_file(root: &Path, kind: ResourceKind, file_ref: &FileRef) -> PathBuf {
    root.join(kind.as_str())
        .join(file_ref.versioned_name())
        .join(variant(file_ref))
}

fn variant(file_ref: &FileRef) -> String {
    format!("{}-{}-{:o}", file_ref.uid, file_ref.gid, file_ref.mode)
}

fn refs_to(want: &DesiredResource, assets: &BTreeMap<AssetName, DesiredAsset>) -> Vec<FileRef> {
    let mut out: Vec<FileRef> = assets
        .values()
        .flat_map(|a| match want.kind {
            ResourceKind::Secret => a.spec.secrets.iter(),
            _ => a.spec.configs.iter(),
        })
        .filter(|r| r.source == want.name)
        .cloned()
        .collect();
    out.sort();
    out.dedup_by(|a, b| variant(a) == variant(b));
    out
}

/// The version directories under `<root>/<kind>/`: (engine name, version).
fn local_versions(root: &Path, kind: ResourceKind) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(root.join(kind.as_str())) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| {
            let version = name.rsplit_once('-')?.1.to_string();
            Some((name, version))
        })
        .collect()
}
