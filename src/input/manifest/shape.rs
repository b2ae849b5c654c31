//! The field tables: which keys each object of the format accepts, in
//! which spellings, which are required, and what each value looks like in
//! the JSON Schema. The decoder looks fields up here by name and the schema
//! (`schema.rs`) is generated from the same tables, so a new field is one
//! line here, its value type, and the decoder code that reads it.

use serde_json::Value;

use super::yaml::{Kind, Node};
use crate::input::manifest::schema as s;
use crate::input::manifest::schema::stack as ss;
use crate::input::manifest::schema::window as sw;

/// Which spelling an object is written in; decided per object by its
/// first known key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    Friendly,
    Engine,
}

/// One key of an object.
pub struct Field {
    /// The friendly spelling; the decoder asks for fields by this name.
    pub key: &'static str,
    /// Engine-API casing, for objects that have it.
    pub engine: Option<&'static str>,
    /// Reported as missing when absent (or null).
    pub required: bool,
    /// The value's JSON Schema, in the spelling of the enclosing object.
    pub schema: fn(Spelling) -> Value,
}

/// The keys of one object.
pub struct Shape {
    /// The object's name in [`super::shapes`] (and the schema's tests).
    pub name: &'static str,
    /// The name of its Engine-API spelling, when it has one.
    pub engine_name: Option<&'static str>,
    pub fields: &'static [Field],
}

impl Shape {
    /// The keys in `spelling`, in table order.
    pub fn keys(&self, spelling: Spelling) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.spelled(spelling)).collect()
    }

    /// The spellings this object accepts.
    pub fn spellings(&self) -> &'static [Spelling] {
        match self.engine_name {
            Some(_) => &[Spelling::Friendly, Spelling::Engine],
            None => &[Spelling::Friendly],
        }
    }
}

impl Field {
    pub fn spelled(&self, spelling: Spelling) -> &'static str {
        match spelling {
            Spelling::Engine => self.engine.unwrap_or(self.key),
            Spelling::Friendly => self.key,
        }
    }
}

pub(super) const fn field(key: &'static str, schema: fn(Spelling) -> Value) -> Field {
    Field {
        key,
        engine: None,
        required: false,
        schema,
    }
}

pub(super) const fn required(key: &'static str, schema: fn(Spelling) -> Value) -> Field {
    Field {
        required: true,
        ..field(key, schema)
    }
}

const fn both(key: &'static str, engine: &'static str, schema: fn(Spelling) -> Value) -> Field {
    Field {
        engine: Some(engine),
        ..field(key, schema)
    }
}

pub static TOP: Shape = Shape {
    name: "top",
    engine_name: None,
    fields: &[
        required("apiVersion", s::api_version),
        required("kind", s::kind),
        required("metadata", s::metadata),
        required("spec", s::spec),
    ],
};

pub static METADATA: Shape = Shape {
    name: "metadata",
    engine_name: None,
    fields: &[required("name", s::asset_name), field("labels", s::labels)],
};

pub static SPEC: Shape = Shape {
    name: "spec",
    engine_name: None,
    fields: &[
        required("image", s::image),
        field("command", s::command),
        field("env", s::env),
        field("ports", s::ports),
        field("networks", s::networks),
        field("constraints", s::constraints),
        field("resources", s::resources),
        field("mode", s::mode),
        field("mounts", s::mounts),
        field("healthcheck", s::healthcheck),
        field("update", s::update),
        field("user", s::user),
        field("ulimits", s::ulimits),
        field("dependsOn", s::depends_on),
        field("pullPolicy", s::pull_policy),
        field("secrets", ss::secret_refs),
        field("configs", ss::config_refs),
        field("hooks", s::hooks),
    ],
};

/// `spec.hooks`.
pub static HOOKS: Shape = Shape {
    name: "hooks",
    engine_name: None,
    fields: &[
        field("preDeploy", s::hook),
        field("postDeploy", s::hook),
        field("onFailure", s::hook),
    ],
};

/// One hook of `spec.hooks`.
pub static HOOK: Shape = Shape {
    name: "hook",
    engine_name: None,
    fields: &[
        field("image", s::image),
        field("command", s::command),
        field("timeout", s::duration),
    ],
};

/// An entry of an asset's `secrets:` or `configs:`.
pub static FILE_REF: Shape = Shape {
    name: "fileRef",
    engine_name: None,
    fields: &[
        required("source", ss::object_name),
        field("target", ss::file_target),
        field("uid", ss::numeric_id),
        field("gid", ss::numeric_id),
        field("mode", ss::file_mode),
    ],
};

pub static NETWORK_SPEC: Shape = Shape {
    name: "networkSpec",
    engine_name: None,
    fields: &[
        field("driver", ss::object_name),
        field("attachable", s::boolean),
        field("internal", s::boolean),
        field("subnets", ss::cidrs),
        field("gateway", ss::ip),
        field("ipRange", ss::cidr),
        field("options", ss::string_map),
    ],
};

pub static VOLUME_SPEC: Shape = Shape {
    name: "volumeSpec",
    engine_name: None,
    fields: &[
        field("driver", ss::object_name),
        field("driverOpts", ss::string_map),
    ],
};

pub static SECRET_SPEC: Shape = Shape {
    name: "secretSpec",
    engine_name: None,
    fields: &[
        field("file", ss::content_file),
        field("fromEnv", ss::from_env),
        field("decrypt", ss::decrypt),
    ],
};

pub static WINDOW_SPEC: Shape = Shape {
    name: "syncWindowSpec",
    engine_name: None,
    fields: &[
        required("kind", sw::effect),
        required("schedule", sw::schedule),
        required("duration", s::duration),
        field("timeZone", sw::time_zone),
        field("assets", sw::name_globs),
        field("selector", s::labels),
        field("repairs", sw::repairs),
    ],
};

pub static CONFIG_SPEC: Shape = Shape {
    name: "configSpec",
    engine_name: None,
    fields: &[
        field("file", ss::content_file),
        field("fromEnv", ss::from_env),
        field("data", ss::inline_data),
        field("decrypt", ss::decrypt),
    ],
};

pub static ULIMIT: Shape = Shape {
    name: "ulimit",
    engine_name: None,
    fields: &[
        required("soft", s::ulimit_value),
        required("hard", s::ulimit_value),
    ],
};

pub static UPDATE: Shape = Shape {
    name: "update",
    engine_name: Some("UpdateConfig"),
    fields: &[
        both("order", "Order", s::update_order),
        both("monitor", "Monitor", s::duration),
        both("failureAction", "FailureAction", s::failure_action),
        both("parallelism", "Parallelism", s::parallelism),
        both("delay", "Delay", s::duration_or_zero),
    ],
};

pub static HEALTHCHECK: Shape = Shape {
    name: "healthcheck",
    engine_name: Some("Healthcheck"),
    fields: &[
        Field {
            required: true,
            ..both("test", "Test", s::health_test)
        },
        both("interval", "Interval", s::duration),
        both("timeout", "Timeout", s::duration),
        both("retries", "Retries", s::retries),
        both("startPeriod", "StartPeriod", s::duration),
    ],
};

pub static RESOURCES: Shape = Shape {
    name: "resources",
    engine_name: Some("Resources"),
    fields: &[
        both("limits", "Limits", s::resource_set),
        both("reservations", "Reservations", s::resource_set),
    ],
};

pub static RESOURCE_SET: Shape = Shape {
    name: "resourceSet",
    engine_name: Some("ResourceSet"),
    fields: &[
        both("cpus", "NanoCPUs", s::cpus),
        both("memory", "MemoryBytes", s::memory),
    ],
};

pub static MODE: Shape = Shape {
    name: "mode",
    engine_name: Some("Mode"),
    fields: &[
        both("replicated", "Replicated", s::replicated),
        both("global", "Global", s::global),
    ],
};

pub static REPLICATED: Shape = Shape {
    name: "replicated",
    engine_name: Some("Replicated"),
    fields: &[both("replicas", "Replicas", s::replicas)],
};

pub static MOUNT: Shape = Shape {
    name: "mount",
    engine_name: Some("Mount"),
    fields: &[
        Field {
            required: true,
            ..both("type", "Type", s::mount_type)
        },
        both("source", "Source", s::mount_source),
        Field {
            required: true,
            ..both("target", "Target", s::mount_target)
        },
        both("readOnly", "ReadOnly", s::boolean),
    ],
};

/// Every table, for [`super::shapes`].
pub static ALL: [&Shape; 11] = [
    &TOP,
    &METADATA,
    &SPEC,
    &RESOURCES,
    &RESOURCE_SET,
    &MODE,
    &REPLICATED,
    &MOUNT,
    &HEALTHCHECK,
    &UPDATE,
    &ULIMIT,
];

/// The fields of one decoded object, looked up by their friendly key.
pub(super) struct Fields<'n> {
    shape: &'static Shape,
    values: Vec<Option<&'n Node>>,
    pub(super) spelling: Spelling,
}

impl<'n> Fields<'n> {
    pub(super) fn new(shape: &'static Shape, spelling: Spelling) -> Self {
        Fields {
            shape,
            values: vec![None; shape.fields.len()],
            spelling,
        }
    }

    fn index(&self, key: &str) -> usize {
        self.shape
            .fields
            .iter()
            .position(|f| f.key == key)
            .unwrap_or_else(|| panic!("`{key}` is not in the table `{}`", self.shape.name))
    }

    /// The table entry of `key`.
    pub(super) fn field(&self, key: &str) -> &'static Field {
        &self.shape.fields[self.index(key)]
    }

    /// Records the value of the field at `index` unless one is there.
    pub(super) fn set(&mut self, index: usize, value: &'n Node, replace: bool) {
        let slot = &mut self.values[index];
        if replace || slot.is_none() {
            *slot = Some(value);
        }
    }

    /// The value as written, an explicit null included.
    pub(super) fn raw(&self, key: &str) -> Option<&'n Node> {
        self.values[self.index(key)]
    }

    /// The value; an explicit null is the same as leaving the field out.
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.raw(key).filter(|n| !matches!(n.kind, Kind::Null))
    }

    /// The value as written, or `None` when the table has no `key`
    /// (objects that share code but not every key).
    pub(super) fn raw_if_known(&self, key: &str) -> Option<&'n Node> {
        let index = self.shape.fields.iter().position(|f| f.key == key)?;
        self.values[index]
    }

    /// Any value of the object, for a position when no key is at fault.
    pub(super) fn any_node(&self) -> Option<&'n Node> {
        self.values.iter().flatten().next().copied()
    }

    /// The key as this object spells it.
    pub(super) fn name(&self, key: &str) -> &'static str {
        self.field(key).spelled(self.spelling)
    }

    /// `parent.key`, in this object's spelling.
    pub(super) fn path(&self, parent: &str, key: &str) -> String {
        super::decoder::join(parent, self.name(key))
    }
}
