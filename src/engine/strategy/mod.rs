//! Deployment strategies: how a [`DeploySpec`] becomes Docker objects.
//!
//! One trait, after OpenFactory's `OpenFactoryServiceDeploymentStrategy`
//! (`deploy(image, name, env, labels, command, ports, networks, constraints,
//! resources, mode, mounts)` and `remove(name)`), plus the one listing call a
//! reconcile pass needs. [`LocalDocker`] runs containers on one engine,
//! [`Swarm`] runs services on a Swarm cluster. [`AnyStrategy`] picks one at
//! run time (`--strategy auto|local|swarm`).

#[cfg(test)]
pub mod fake;
pub mod hook_job;
pub mod labels;
pub mod local;
pub mod pull;
pub mod stack_engine;
pub mod swarm;
pub mod version_key;
pub mod writer;

use std::future::Future;

use serde::{Deserialize, Serialize};

pub use crate::model::actual::{ActualAsset, ReplicaCounts, Rollout};
use crate::model::spec::{AssetName, DeploySpec, SpecHash};
use crate::model::writer::Writer;

pub use local::LocalDocker;
pub use swarm::Swarm;

/// What assetd writes on every object it creates besides the spec itself:
/// enough for a later pass (or a rebuilt store) to know the object is ours,
/// which spec it runs and which file declared it.
#[derive(Clone, Debug)]
pub struct Ownership {
    pub hash: SpecHash,
    /// Manifest file, relative to the manifests directory.
    pub source: String,
    /// The manifests revision that wrote the object (`io.assetd.revision`):
    /// informative, in no hash or fingerprint.
    pub revision: Option<String>,
}

/// The result of a successful `deploy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    /// Container IDs (local) or the service ID (Swarm).
    pub object_ids: Vec<String>,
    /// Swarm's version index after our write; `None` on the local engine.
    pub version: Option<u64>,
    /// Parameters the strategy could not honour (e.g. constraints on a
    /// local engine), shown in status.
    pub warnings: Vec<String>,
    /// Whether Docker was written to at all (false when everything already
    /// matched, e.g. a repair that found nothing left to do).
    pub wrote: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Removed {
    Removed,
    /// Nothing was there: the desired end state holds already.
    Absent,
}

#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// A Docker API call failed.
    #[error("{op} {target}: {message}")]
    Docker {
        op: &'static str,
        target: String,
        message: String,
        status: Option<u16>,
    },
    /// The spec cannot be deployed by this strategy, whatever Docker says.
    #[error("{0}")]
    Refused(String),
    /// The new version failed its gate and the previous one runs on: the
    /// version is not deployed again until its manifest changes.
    #[error("rolled back: {0}")]
    RolledBack(String),
    /// A hook failed: the change is held (what runs stays) until the
    /// manifest changes or the operator retries.
    #[error("held: {0}")]
    HookHeld(String),
    /// An object with our name exists but is not ours: we never touch it.
    #[error("{kind} `{name}` exists and is not managed by this assetd instance ({}); it is left alone: rename the asset or remove that {kind} by hand", owner_text(.owner))]
    Foreign {
        kind: &'static str,
        name: String,
        /// The `--instance` that owns it, when another assetd does.
        owner: Option<String>,
    },
}

fn owner_text(owner: &Option<String>) -> String {
    match owner {
        Some(instance) => format!("it belongs to assetd instance `{instance}`"),
        None => "no io.assetd.managed label: assetd did not create it".into(),
    }
}

impl StrategyError {
    pub fn docker(
        op: &'static str,
        target: impl Into<String>,
        err: bollard::errors::Error,
    ) -> Self {
        let status = status_code(&err);
        let message = match &err {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
            other => other.to_string(),
        };
        StrategyError::Docker {
            op,
            target: target.into(),
            message,
            status,
        }
    }
}

/// A healthcheck as both engines take it.
pub fn health_config(check: &crate::model::spec::Healthcheck) -> bollard::models::HealthConfig {
    bollard::models::HealthConfig {
        test: Some(check.test.clone()),
        interval: check.interval_ns,
        timeout: check.timeout_ns,
        retries: check.retries,
        start_period: check.start_period_ns,
        ..Default::default()
    }
}

/// The spec's ulimits as both engines take them; `None` when it has none
/// (the engine's defaults).
pub fn ulimits(
    spec: &crate::model::spec::DeploySpec,
) -> Option<Vec<bollard::models::ResourcesUlimits>> {
    let limits: Vec<_> = spec
        .ulimits
        .iter()
        .map(|u| bollard::models::ResourcesUlimits {
            name: Some(u.name.clone()),
            soft: Some(u.soft),
            hard: Some(u.hard),
        })
        .collect();
    (!limits.is_empty()).then_some(limits)
}

/// A volume mount's driver and options, for the mount we send.
pub fn volume_options(
    mount: &crate::model::spec::Mount,
) -> Option<bollard::models::MountVolumeOptions> {
    if mount.volume_driver.is_none() && mount.volume_labels.is_empty() {
        return None;
    }
    Some(bollard::models::MountVolumeOptions {
        driver_config: mount.volume_driver.as_ref().map(|driver| {
            bollard::models::MountVolumeOptionsDriverConfig {
                name: Some(driver.name.clone()),
                options: Some(driver.options.clone().into_iter().collect()),
            }
        }),
        labels: (!mount.volume_labels.is_empty())
            .then(|| mount.volume_labels.clone().into_iter().collect()),
        ..Default::default()
    })
}

/// The HTTP status of a Docker error response, if it was one.
pub fn status_code(err: &bollard::errors::Error) -> Option<u16> {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub fn is_not_found(err: &bollard::errors::Error) -> bool {
    status_code(err) == Some(404)
}

/// The deployment-strategy interface of the seed.
pub trait DeploymentStrategy: Send + Sync {
    /// Create the asset, or bring an existing one in line with `spec`
    /// (update in place on Swarm, recreate changed containers locally).
    /// Idempotent: calling it on a converged asset writes nothing.
    fn deploy(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> impl Future<Output = Result<Deployed, StrategyError>> + Send;

    /// Remove every object of the asset. Absent is success.
    fn remove(
        &self,
        name: &AssetName,
    ) -> impl Future<Output = Result<Removed, StrategyError>> + Send;

    /// Every asset with our ownership label, from one listing call (two on
    /// Swarm: services and their tasks).
    fn list_managed(&self) -> impl Future<Output = Result<Vec<ActualAsset>, StrategyError>> + Send;

    /// With `pullPolicy: Always`: whether `spec.image`'s tag now names
    /// another digest in its registry than the one `have` runs, said as
    /// drift. `None` when it does not, or the registry cannot be asked.
    fn moved_image(
        &self,
        spec: &DeploySpec,
        have: &ActualAsset,
    ) -> impl Future<Output = Option<String>> + Send {
        let _ = (spec, have);
        std::future::ready(None)
    }

    /// The networks, volumes, secrets and configs of this engine; `None`
    /// for an engine without them (the tests' engine in memory).
    fn stack(&self) -> Option<crate::engine::strategy::stack_engine::StackEngine> {
        None
    }

    /// How long a new version must run to count when its manifest sets
    /// no `spec.update.monitor`.
    fn default_monitor(&self) -> std::time::Duration {
        local::DEFAULT_MONITOR
    }

    /// Runs one hook of the asset `spec` as a one-shot job (a container
    /// locally, a `replicated-job` service on Swarm), owned by label,
    /// killed at its timeout and removed after.
    fn run_hook(
        &self,
        spec: &DeploySpec,
        kind: crate::model::hooks::HookKind,
        hook: &crate::model::hooks::Hook,
    ) -> impl Future<Output = crate::model::hooks::HookRun> + Send {
        let _ = (spec, hook);
        std::future::ready(hook_job::failed_to_run(
            kind,
            std::time::Instant::now(),
            "this engine runs no hooks".into(),
        ))
    }

    /// Removes the hook objects of asset `name` a crash left behind (the
    /// other assets' hooks may be running in the same pass).
    fn sweep_hooks(&self, name: &AssetName) -> impl Future<Output = ()> + Send {
        let _ = name;
        std::future::ready(())
    }

    /// Waits, up to `limit`, until the rollout of `name` that the last
    /// deploy started has ended (Swarm rolls after the call returns; a
    /// local deploy returns after its gate). `Err` says why it failed.
    fn rollout_ended(
        &self,
        name: &AssetName,
        limit: std::time::Duration,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (name, limit);
        std::future::ready(Ok(()))
    }
}

/// Which strategy a pass runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    Local,
    Swarm,
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StrategyKind::Local => "local",
            StrategyKind::Swarm => "swarm",
        })
    }
}

/// The strategy chosen at start-up. An enum rather than `dyn` because the
/// trait's methods are `async`.
#[derive(Clone)]
pub enum AnyStrategy {
    Local(LocalDocker),
    Swarm(Swarm),
}

impl AnyStrategy {
    /// Stamps this daemon's identity on every object it writes.
    pub fn with_writer(self, writer: Writer) -> Self {
        match self {
            AnyStrategy::Local(s) => AnyStrategy::Local(s.with_writer(writer)),
            AnyStrategy::Swarm(s) => AnyStrategy::Swarm(s.with_writer(writer)),
        }
    }

    /// Where secrets and configs are kept as files on a local engine
    /// (`<state-dir>/stack`).
    pub fn with_stack_dir(self, dir: std::path::PathBuf) -> Self {
        match self {
            AnyStrategy::Local(s) => AnyStrategy::Local(s.with_stack_dir(dir)),
            AnyStrategy::Swarm(s) => AnyStrategy::Swarm(s),
        }
    }

    /// Sends these registry credentials on pulls and service writes.
    pub fn with_registry_auth(self, auth: crate::engine::registry_auth::RegistryAuth) -> Self {
        match self {
            AnyStrategy::Local(s) => AnyStrategy::Local(s.with_registry_auth(auth)),
            AnyStrategy::Swarm(s) => AnyStrategy::Swarm(s.with_registry_auth(auth)),
        }
    }

    pub fn kind(&self) -> StrategyKind {
        match self {
            AnyStrategy::Local(_) => StrategyKind::Local,
            AnyStrategy::Swarm(_) => StrategyKind::Swarm,
        }
    }

    /// The next listing reads everything from the engine (a resync): a
    /// view kept from events is dropped. Swarm lists every pass anyway.
    pub fn relist(&self) {
        if let AnyStrategy::Local(s) = self {
            s.container_view().invalidate();
        }
    }
}

impl DeploymentStrategy for AnyStrategy {
    async fn deploy(
        &self,
        spec: &DeploySpec,
        owner: &Ownership,
    ) -> Result<Deployed, StrategyError> {
        match self {
            AnyStrategy::Local(s) => s.deploy(spec, owner).await,
            AnyStrategy::Swarm(s) => s.deploy(spec, owner).await,
        }
    }

    async fn remove(&self, name: &AssetName) -> Result<Removed, StrategyError> {
        match self {
            AnyStrategy::Local(s) => s.remove(name).await,
            AnyStrategy::Swarm(s) => s.remove(name).await,
        }
    }

    async fn list_managed(&self) -> Result<Vec<ActualAsset>, StrategyError> {
        match self {
            AnyStrategy::Local(s) => s.list_managed().await,
            AnyStrategy::Swarm(s) => s.list_managed().await,
        }
    }

    async fn moved_image(&self, spec: &DeploySpec, have: &ActualAsset) -> Option<String> {
        match self {
            AnyStrategy::Local(s) => s.moved_image(spec, have).await,
            AnyStrategy::Swarm(s) => s.moved_image(spec, have).await,
        }
    }

    fn stack(&self) -> Option<crate::engine::strategy::stack_engine::StackEngine> {
        match self {
            AnyStrategy::Local(s) => s.stack(),
            AnyStrategy::Swarm(s) => s.stack(),
        }
    }

    async fn run_hook(
        &self,
        spec: &DeploySpec,
        kind: crate::model::hooks::HookKind,
        hook: &crate::model::hooks::Hook,
    ) -> crate::model::hooks::HookRun {
        match self {
            AnyStrategy::Local(s) => s.run_hook(spec, kind, hook).await,
            AnyStrategy::Swarm(s) => s.run_hook(spec, kind, hook).await,
        }
    }

    async fn sweep_hooks(&self, name: &AssetName) {
        match self {
            AnyStrategy::Local(s) => s.sweep_hooks(name).await,
            AnyStrategy::Swarm(s) => s.sweep_hooks(name).await,
        }
    }

    async fn rollout_ended(
        &self,
        name: &AssetName,
        limit: std::time::Duration,
    ) -> Result<(), String> {
        match self {
            AnyStrategy::Local(s) => s.rollout_ended(name, limit).await,
            AnyStrategy::Swarm(s) => s.rollout_ended(name, limit).await,
        }
    }

    fn default_monitor(&self) -> std::time::Duration {
        match self {
            AnyStrategy::Local(s) => s.default_monitor(),
            AnyStrategy::Swarm(s) => s.default_monitor(),
        }
    }
}
