//! The field tables of an OpenFactory app file (openfactory-core's
//! `schemas/apps.py` and `common.py`): every object refuses keys it does
//! not list, as OpenFactory's `extra="forbid"` does. The app-file schema
//! (`schema::openfactory`) is generated from these tables.

use crate::input::manifest::schema::openfactory as s;
use crate::input::manifest::shape::{field, required, Shape};

pub static APP_FILE: Shape = Shape {
    name: "appFile",
    engine_name: None,
    fields: &[required("apps", s::apps)],
};

pub static APP: Shape = Shape {
    name: "app",
    engine_name: None,
    fields: &[
        required("uuid", s::uuid),
        required("image", s::image),
        field("image_pull_policy", s::image_pull_policy),
        field("runtime_uid", s::runtime_id),
        field("runtime_gid", s::runtime_id),
        field("uns", s::uns),
        field("environment", s::environment),
        field("storage", s::storage),
        field("routing", s::routing),
        field("metrics", s::metrics),
        field("networks", s::networks),
        field("deploy", s::deploy),
    ],
};

pub static STORAGE_LOCAL: Shape = Shape {
    name: "storageLocal",
    engine_name: None,
    fields: &[
        required("type", s::storage_local_type),
        required("local_path", s::absolute_path),
        required("mount_point", s::absolute_path),
    ],
};

pub static STORAGE_NFS: Shape = Shape {
    name: "storageNfs",
    engine_name: None,
    fields: &[
        required("type", s::storage_nfs_type),
        required("server", s::nfs_server),
        required("remote_path", s::absolute_path),
        required("mount_point", s::absolute_path),
        field("mount_options", s::mount_options),
    ],
};

pub static ROUTING: Shape = Shape {
    name: "routing",
    engine_name: None,
    fields: &[
        field("expose", s::boolean),
        field("port", s::port),
        field("hostname", s::hostname),
    ],
};

pub static METRICS: Shape = Shape {
    name: "metrics",
    engine_name: None,
    fields: &[required("port", s::port), field("path", s::metrics_path)],
};

pub static DEPLOY: Shape = Shape {
    name: "deploy",
    engine_name: None,
    fields: &[
        field("replicas", s::replicas),
        field("resources", s::resources),
        field("placement", s::placement),
    ],
};

pub static RESOURCES: Shape = Shape {
    name: "deployResources",
    engine_name: None,
    fields: &[
        field("reservations", s::reservations),
        field("limits", s::limits),
    ],
};

pub static RESERVATIONS: Shape = Shape {
    name: "reservations",
    engine_name: None,
    fields: &[field("cpus", s::cpus), field("memory", s::memory)],
};

pub static LIMITS: Shape = Shape {
    name: "limits",
    engine_name: None,
    fields: &[
        field("cpus", s::cpus),
        field("memory", s::memory),
        field("open_files", s::open_files),
    ],
};

pub static PLACEMENT: Shape = Shape {
    name: "placement",
    engine_name: None,
    fields: &[field("constraints", s::constraints)],
};
