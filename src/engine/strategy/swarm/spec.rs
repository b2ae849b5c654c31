//! What a `DeploySpec` becomes on Swarm: the service spec we set, and
//! that spec merged into the service's current one.

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, Limit, Mount as DockerMount, MountType, NetworkAttachmentConfig, ResourceObject,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use super::labels;
use super::rollout;
use super::Ownership;
use crate::model::spec::{
    DeploySpec, FailureAction, Mode, MountKind, Protocol, UpdateOrder, UpdatePolicy,
};

use super::*;

/// The service spec for a [`DeploySpec`]: every seed parameter, with
/// `networks` already resolved to the targets to send.
pub fn service_spec(
    spec: &DeploySpec,
    owner: &Ownership,
    instance: &str,
    networks: &[String],
) -> ServiceSpec {
    let object_labels = labels::service_labels(spec, owner, instance);
    let container_spec = container_spec(spec, owner, instance);
    let policy = spec.update.clone().unwrap_or_default();
    let runtime = &spec.runtime;
    // Empty sets are left out, as stack deploy leaves them.
    let resources = TaskSpecResources {
        limits: (!spec.resources.limits.is_empty()).then_some(Limit {
            nano_cpus: spec.resources.limits.nano_cpus,
            memory_bytes: spec.resources.limits.memory_bytes,
            pids: None,
        }),
        reservations: (!spec.resources.reservations.is_empty()).then_some(ResourceObject {
            nano_cpus: spec.resources.reservations.nano_cpus,
            memory_bytes: spec.resources.reservations.memory_bytes,
            generic_resources: None,
        }),
        ..Default::default()
    };
    let task_template = TaskSpec {
        container_spec: Some(container_spec),
        resources: Some(resources),
        placement: Some(TaskSpecPlacement {
            constraints: Some(spec.constraints.clone()),
            ..Default::default()
        }),
        networks: Some(
            networks
                .iter()
                .zip(&spec.networks)
                .map(|(target, name)| NetworkAttachmentConfig {
                    target: Some(target.clone()),
                    aliases: runtime.aliases.get(name).cloned(),
                    ..Default::default()
                })
                .collect(),
        ),
        restart_policy: runtime.restart.as_ref().map(restart_policy),
        ..Default::default()
    };
    let mut service = ServiceSpec {
        name: Some(spec.name.to_string()),
        labels: Some(object_labels),
        task_template: Some(task_template),
        mode: Some(service_mode(spec.mode)),
        update_config: Some(match &runtime.swarm_update {
            Some(config) => rollout::update_config(config),
            None => update_config(&policy),
        }),
        rollback_config: Some(match &runtime.swarm_rollback {
            Some(config) => rollout::rollback_config(config),
            None => rollback_config(&policy),
        }),
        endpoint_spec: Some(EndpointSpec {
            ports: Some(published_ports(spec)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let print = fingerprint(&service);
    if let Some(labels) = service.labels.as_mut() {
        labels.insert(FINGERPRINT.into(), print);
    }
    service
}

/// The task's container: the process and its files.
fn container_spec(spec: &DeploySpec, owner: &Ownership, instance: &str) -> TaskSpecContainerSpec {
    // The revision goes on the service only: a new commit must not
    // restart tasks whose spec did not change.
    let mut container_labels = labels::object_labels(spec, owner, instance);
    container_labels.remove(labels::REVISION);
    let runtime = &spec.runtime;
    TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(container_labels),
        // `command` replaces the image's CMD and keeps its ENTRYPOINT, as
        // on the local engine: Swarm calls that `Args`.
        args: spec.command.clone(),
        command: runtime.entrypoint.clone(),
        dir: runtime.working_dir.clone(),
        hostname: runtime.hostname.clone(),
        stop_grace_period: runtime.stop_grace_period_ns,
        stop_signal: runtime.stop_signal.clone(),
        init: runtime.init,
        read_only: runtime.read_only.then_some(true),
        capability_add: (!runtime.cap_add.is_empty()).then(|| runtime.cap_add.clone()),
        capability_drop: (!runtime.cap_drop.is_empty()).then(|| runtime.cap_drop.clone()),
        hosts: (!runtime.extra_hosts.is_empty()).then(|| swarm_hosts(&runtime.extra_hosts)),
        // As stack deploy sends it: present, empty.
        privileges: Some(Default::default()),
        env: Some(spec.env.clone()),
        mounts: Some(spec.mounts.iter().map(docker_mount).collect()),
        health_check: spec
            .healthcheck
            .as_ref()
            .map(crate::engine::strategy::health_config),
        user: spec.user.clone(),
        ulimits: crate::engine::strategy::ulimits(spec),
        ..Default::default()
    }
}

pub(super) fn service_mode(mode: Mode) -> ServiceSpecMode {
    match mode {
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
        // A job asset runs as a hook job does; never as a service of its
        // own, but this is what it would be.
        Mode::Job => ServiceSpecMode {
            replicated_job: Some(bollard::models::ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        },
    }
}

/// Every port through the ingress (the routing mesh): old and new tasks
/// can both serve during a start-first update.
pub(super) fn published_ports(spec: &DeploySpec) -> Vec<EndpointPortConfig> {
    spec.ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(match p.protocol {
                Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
            }),
            target_port: Some(p.container as i64),
            published_port: Some(p.host as i64),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::INGRESS),
            ..Default::default()
        })
        .collect()
}

/// A change that cannot run never takes down what runs: by default the
/// new task starts before the old one stops (published ports go through
/// the ingress, so both may run), and a task that fails within the monitor
/// window rolls the service back to what ran. `spec.update` tunes it.
pub(super) fn update_config(policy: &UpdatePolicy) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(policy.parallelism() as i64),
        delay: Some(policy.delay().as_nanos() as i64),
        failure_action: Some(match policy.failure_action() {
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        }),
        monitor: Some(policy.monitor_or(ROLLOUT_MONITOR).as_nanos() as i64),
        max_failure_ratio: Some(0.0),
        order: Some(match policy.order {
            Some(UpdateOrder::StopFirst) => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

/// Going back follows the same order and pace; a rollback that fails too
/// pauses (Swarm's default), leaving what runs for the operator.
pub(super) fn rollback_config(policy: &UpdatePolicy) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(policy.parallelism() as i64),
        delay: Some(policy.delay().as_nanos() as i64),
        monitor: Some(policy.monitor_or(ROLLOUT_MONITOR).as_nanos() as i64),
        max_failure_ratio: Some(0.0),
        order: Some(match policy.order {
            Some(UpdateOrder::StopFirst) => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            _ => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
        ..Default::default()
    }
}

/// `current` with every field assetd sets taken from `desired`. Everything
/// else is kept: Swarm's filled-in defaults, `ForceUpdate` (resetting it
/// would restart every task), and what an operator tuned that manifests
/// cannot express (secrets, ...). The update and rollback policy are
/// assetd's: they are what keeps a failing change from taking down what
/// runs.
pub(super) fn merged(mut current: ServiceSpec, desired: &ServiceSpec) -> ServiceSpec {
    let want = desired.task_template.clone().unwrap_or_default();
    let want_container = want.container_spec.unwrap_or_default();
    current.name = desired.name.clone();
    current.labels = desired.labels.clone();
    current.mode = desired.mode.clone();
    current.update_config = desired.update_config.clone();
    current.rollback_config = desired.rollback_config.clone();
    let task = current.task_template.get_or_insert_with(Default::default);
    let container = task.container_spec.get_or_insert_with(Default::default);
    container.image = want_container.image;
    container.labels = want_container.labels;
    container.args = want_container.args;
    container.command = want_container.command;
    container.env = want_container.env;
    container.mounts = want_container.mounts;
    container.user = want_container.user;
    container.ulimits = want_container.ulimits;
    container.secrets = want_container.secrets;
    container.configs = want_container.configs;
    // Never read back (see `managed_fields`): always the manifest's.
    container.health_check = want_container.health_check;
    container.dir = want_container.dir;
    container.hostname = want_container.hostname;
    container.stop_grace_period = want_container.stop_grace_period;
    container.stop_signal = want_container.stop_signal;
    container.init = want_container.init;
    container.read_only = want_container.read_only;
    container.capability_add = want_container.capability_add;
    container.capability_drop = want_container.capability_drop;
    container.hosts = want_container.hosts;
    task.restart_policy = want.restart_policy;
    let want_resources = want.resources.unwrap_or_default();
    let resources = task.resources.get_or_insert_with(Default::default);
    resources.limits = want_resources.limits;
    resources.reservations = want_resources.reservations;
    task.networks = want.networks;
    let placement = task.placement.get_or_insert_with(Default::default);
    placement.constraints = want.placement.and_then(|p| p.constraints);
    let endpoint = current.endpoint_spec.get_or_insert_with(Default::default);
    endpoint.ports = desired.endpoint_spec.as_ref().and_then(|e| e.ports.clone());
    current
}

pub(super) fn docker_mount(m: &crate::model::spec::Mount) -> DockerMount {
    DockerMount {
        target: Some(m.target.clone()),
        source: m.source.clone(),
        typ: Some(match m.kind {
            MountKind::Bind => MountType::BIND,
            MountKind::Volume => MountType::VOLUME,
            MountKind::Tmpfs => MountType::TMPFS,
        }),
        read_only: Some(m.read_only),
        volume_options: crate::engine::strategy::volume_options(m),
        ..Default::default()
    }
}

/// Compose's `HOST:IP` as Swarm writes /etc/hosts lines: `IP HOST`.
fn swarm_hosts(extra_hosts: &[String]) -> Vec<String> {
    extra_hosts
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(host, ip)| format!("{ip} {host}"))
        .collect()
}

fn restart_policy(policy: &crate::model::spec::RestartPolicy) -> TaskSpecRestartPolicy {
    TaskSpecRestartPolicy {
        condition: policy.condition.as_deref().map(|c| match c {
            "none" => TaskSpecRestartPolicyConditionEnum::NONE,
            "on-failure" => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            _ => TaskSpecRestartPolicyConditionEnum::ANY,
        }),
        delay: policy.delay_ns,
        max_attempts: policy.max_attempts.map(|n| n as i64),
        window: policy.window_ns,
    }
}
