//! The field tables of a Compose file: every key of the design's list,
//! and the Compose keys assetd refuses, each with why (so the error and
//! the schema can say it). `x-*` keys are allowed wherever Compose
//! allows them (the top level, a service, `deploy`), and left alone.

use crate::input::manifest::schema::compose as s;
use crate::input::manifest::shape::{field, Shape};

pub static FILE: Shape = Shape {
    name: "composeFile",
    engine_name: None,
    fields: &[
        field("version", s::version),
        field("name", s::project_name),
        field("services", s::services),
        field("networks", s::networks),
        field("volumes", s::volumes),
        field("secrets", s::secrets),
        field("configs", s::configs),
    ],
};

pub static SERVICE: Shape = Shape {
    name: "composeService",
    engine_name: None,
    fields: &[
        field("image", s::image),
        field("build", s::build),
        field("command", s::command),
        field("entrypoint", s::command),
        field("environment", s::environment),
        field("env_file", s::string_or_list),
        field("ports", s::ports),
        field("expose", s::expose),
        field("networks", s::service_networks),
        field("volumes", s::service_volumes),
        field("secrets", s::file_refs),
        field("configs", s::file_refs),
        field("healthcheck", s::healthcheck),
        field("depends_on", s::depends_on),
        field("labels", s::labels),
        field("deploy", s::deploy),
        field("restart", s::restart),
        field("user", s::string),
        field("ulimits", s::ulimits),
        field("working_dir", s::string),
        field("hostname", s::string),
        field("stop_grace_period", s::duration),
        field("stop_signal", s::string),
        field("init", s::boolean),
        field("cap_add", s::string_list),
        field("cap_drop", s::string_list),
        field("read_only", s::boolean),
        field("tmpfs", s::string_or_list),
        field("extra_hosts", s::extra_hosts),
        field("pull_policy", s::pull_policy),
        field("profiles", s::string_list),
    ],
};

/// Compose keys of a service that assetd does not apply, with why. A file
/// that uses one is refused at the key, rather than deployed without it.
pub const REFUSED_SERVICE_KEYS: &[(&str, &str)] = &[
    (
        "container_name",
        "Swarm and assetd name containers themselves (PROJECT_SERVICE); remove it",
    ),
    (
        "privileged",
        "Swarm services cannot run privileged; use cap_add for the capability needed",
    ),
    ("devices", "Swarm services cannot map devices"),
    (
        "network_mode",
        "Swarm services join networks through `networks:`",
    ),
    (
        "pid",
        "Swarm services cannot share the host's PID namespace",
    ),
    ("ipc", "Swarm services cannot share an IPC namespace"),
    (
        "links",
        "services on a network reach each other by name; remove it",
    ),
    (
        "external_links",
        "services on a network reach each other by name; remove it",
    ),
    (
        "extends",
        "not implemented; use anchors and `<<:` merge keys",
    ),
    (
        "volumes_from",
        "declare the volume at the top level and mount it in each service",
    ),
    ("volume_driver", "set the driver on the top-level volume"),
    ("cpu_shares", "set limits under deploy.resources"),
    ("cpu_quota", "set limits under deploy.resources"),
    ("cpuset", "set limits under deploy.resources"),
    ("cpus", "set limits under deploy.resources"),
    ("mem_limit", "set limits under deploy.resources"),
    ("mem_reservation", "set reservations under deploy.resources"),
    ("memswap_limit", "set limits under deploy.resources"),
    ("security_opt", "not applied by Swarm services"),
    (
        "shm_size",
        "not applied by Swarm services; mount a tmpfs at /dev/shm",
    ),
    ("sysctls", "not applied by assetd yet"),
    ("dns", "not applied by assetd yet"),
    ("dns_search", "not applied by assetd yet"),
    (
        "logging",
        "not applied by assetd yet; configure the engine's log driver",
    ),
    ("tty", "not applied by assetd yet"),
    ("stdin_open", "not applied by assetd yet"),
    ("isolation", "not applied on Linux"),
    ("platform", "not applied by assetd yet"),
    ("scale", "use deploy.replicas"),
    ("userns_mode", "not applied by Swarm services"),
    ("cgroup_parent", "not applied by Swarm services"),
    ("domainname", "not applied by Swarm services"),
    ("mac_address", "not applied by Swarm services"),
];

pub static HEALTHCHECK: Shape = Shape {
    name: "composeHealthcheck",
    engine_name: None,
    fields: &[
        field("test", s::health_test),
        field("interval", s::duration),
        field("timeout", s::duration),
        field("retries", s::whole),
        field("start_period", s::duration),
        field("disable", s::boolean),
    ],
};

pub static DEPENDENCY: Shape = Shape {
    name: "composeDependency",
    engine_name: None,
    fields: &[field("condition", s::condition)],
};

pub static SERVICE_NETWORK: Shape = Shape {
    name: "composeServiceNetwork",
    engine_name: None,
    fields: &[field("aliases", s::string_list)],
};

pub static PORT: Shape = Shape {
    name: "composePort",
    engine_name: None,
    fields: &[
        field("target", s::whole),
        field("published", s::whole),
        field("protocol", s::protocol),
        field("mode", s::port_mode),
    ],
};

pub static VOLUME_MOUNT: Shape = Shape {
    name: "composeVolumeMount",
    engine_name: None,
    fields: &[
        field("type", s::mount_type),
        field("source", s::string),
        field("target", s::string),
        field("read_only", s::boolean),
    ],
};

pub static FILE_REF: Shape = Shape {
    name: "composeFileRef",
    engine_name: None,
    fields: &[
        field("source", s::string),
        field("target", s::string),
        field("uid", s::string),
        field("gid", s::string),
        field("mode", s::mode),
    ],
};

pub static DEPLOY: Shape = Shape {
    name: "composeDeploy",
    engine_name: None,
    fields: &[
        field("mode", s::deploy_mode),
        field("replicas", s::whole),
        field("labels", s::labels),
        field("resources", s::resources),
        field("placement", s::placement),
        field("update_config", s::rollout_config),
        field("rollback_config", s::rollout_config),
        field("restart_policy", s::restart_policy),
        field("endpoint_mode", s::endpoint_mode),
    ],
};

pub static RESOURCES: Shape = Shape {
    name: "composeResources",
    engine_name: None,
    fields: &[
        field("limits", s::resource_set),
        field("reservations", s::resource_set),
    ],
};

pub static RESOURCE_SET: Shape = Shape {
    name: "composeResourceSet",
    engine_name: None,
    fields: &[field("cpus", s::cpus), field("memory", s::memory)],
};

pub static PLACEMENT: Shape = Shape {
    name: "composePlacement",
    engine_name: None,
    fields: &[field("constraints", s::string_list)],
};

pub static ROLLOUT_CONFIG: Shape = Shape {
    name: "composeRolloutConfig",
    engine_name: None,
    fields: &[
        field("parallelism", s::whole),
        field("delay", s::duration),
        field("failure_action", s::failure_action),
        field("monitor", s::duration),
        field("max_failure_ratio", s::ratio),
        field("order", s::order),
    ],
};

pub static RESTART_POLICY: Shape = Shape {
    name: "composeRestartPolicy",
    engine_name: None,
    fields: &[
        field("condition", s::restart_condition),
        field("delay", s::duration),
        field("max_attempts", s::whole),
        field("window", s::duration),
    ],
};

pub static NETWORK: Shape = Shape {
    name: "composeNetwork",
    engine_name: None,
    fields: &[
        field("name", s::string),
        field("external", s::boolean),
        field("driver", s::string),
        field("driver_opts", s::labels),
        field("attachable", s::boolean),
        field("internal", s::boolean),
        field("labels", s::labels),
    ],
};

pub static VOLUME: Shape = Shape {
    name: "composeVolume",
    engine_name: None,
    fields: &[
        field("name", s::string),
        field("external", s::boolean),
        field("driver", s::string),
        field("driver_opts", s::labels),
        field("labels", s::labels),
    ],
};

pub static SECRET: Shape = Shape {
    name: "composeSecret",
    engine_name: None,
    fields: &[
        field("name", s::string),
        field("external", s::boolean),
        field("file", s::string),
        field("environment", s::string),
        field("decrypt", s::decrypt),
        field("labels", s::labels),
    ],
};

pub static CONFIG: Shape = Shape {
    name: "composeConfig",
    engine_name: None,
    fields: &[
        field("name", s::string),
        field("external", s::boolean),
        field("file", s::string),
        field("environment", s::string),
        field("content", s::string),
        field("labels", s::labels),
    ],
};
