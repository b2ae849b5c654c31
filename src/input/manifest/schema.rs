//! `assetd schema`: the JSON Schema (draft-07, what yaml-language-server
//! reads) of one manifest document, for editors.
//!
//! It is generated from the decoder's own field tables
//! (`manifest::shape`): every object's keys, its two spellings and its
//! required fields come from there, and each field's value schema is one
//! of the functions below, named in the table. Enums and unit patterns come
//! from the value types the decoder parses with (`spec::values`,
//! `UpdateOrder::NAMES`, ...), so the schema and the decoder cannot drift
//! apart. `manifests/` carries a committed copy that a test compares with
//! this output.
//!
//! Wherever the decoder expands `${VAR}` before reading a value, a string
//! holding `${` is accepted as well: the schema sees the file as written.

use serde_json::{json, Map, Value};

use crate::input::manifest::shape::{
    Shape, Spelling, HEALTHCHECK, METADATA, MODE, MOUNT, REPLICATED, RESOURCES, RESOURCE_SET, SPEC,
    TOP, ULIMIT, UPDATE,
};
use crate::input::manifest::{
    API_VERSION, KIND, MAX_IMAGE_BYTES, MAX_REPLICAS, RESERVED_LABEL_PREFIX,
};
use crate::model::spec::values::{
    DockerName, DurationNs, MemoryBytes, NanoCpus, ProcessUser, MIN_MEMORY_BYTES,
};
use crate::model::spec::{
    AssetName, FailureAction, MountKind, Protocol, PullPolicy, Ulimit, UpdateOrder,
};

/// The schema as a JSON value.
pub fn schema() -> Value {
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    root.insert(
        "title".into(),
        json!(format!("assetd manifest ({API_VERSION})")),
    );
    // One branch per kind; `kind` is a constant in each, so exactly one
    // matches a valid document.
    let mut kinds = vec![object(&TOP, Spelling::Friendly)];
    kinds.extend(crate::input::stack::ResourceKind::ALL.map(stack::document));
    kinds.push(window::document());
    root.insert("oneOf".into(), Value::Array(kinds));
    Value::Object(root)
}

/// The schema as pretty JSON.
pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).expect("a JSON value always serialises")
}

// -- objects, from the tables -----------------------------------------------

/// One spelling of an object: its keys and nothing else.
pub(crate) fn object(shape: &Shape, spelling: Spelling) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in shape.fields {
        let key = field.spelled(spelling);
        let value = (field.schema)(spelling);
        if field.required {
            required.push(key);
            properties.insert(key.into(), value);
        } else {
            properties.insert(key.into(), or_null(value));
        }
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

/// An object in either of its spellings. `anyOf`, not `oneOf`: `{}` is
/// both, and a mixed object is neither (each spelling is closed).
fn spelled(shape: &Shape) -> Value {
    match shape.spellings() {
        [one] => object(shape, *one),
        all => json!({ "anyOf": all.iter().map(|s| object(shape, *s)).collect::<Vec<_>>() }),
    }
}

/// An optional field may be written with nothing after it (`ports:`),
/// which the decoder reads as leaving it out.
fn or_null(mut value: Value) -> Value {
    let description = value.as_object_mut().and_then(|o| o.remove("description"));
    let mut either = json!({ "anyOf": [value, { "type": "null" }] });
    if let Some(description) = description {
        either["description"] = description;
    }
    either
}

// -- `${VAR}` and scalars --------------------------------------------------

/// A string `${VAR}` may stand in for (the check happens after expansion).
const VARIABLE: &str = "\\$\\{";

/// `pattern` (anchored), or any string with a `${` in it.
pub(crate) fn or_variable(pattern: &str) -> String {
    format!("{pattern}|{VARIABLE}")
}

/// A whole number from `min` to `max`, or a string holding one or `${VAR}`
/// (`replicas: ${REPLICAS}`).
fn whole_number(min: i64, max: i64) -> Value {
    json!({
        "type": ["integer", "string"],
        "minimum": min,
        "maximum": max,
        "pattern": or_variable("^\\s*[+-]?[0-9]+\\s*$"),
    })
}

/// One of `names`, or `${VAR}`.
fn one_of(names: &[&str]) -> Value {
    json!({ "anyOf": [
        { "enum": names },
        { "type": "string", "pattern": VARIABLE },
    ] })
}

/// What a label or env map value may be: any scalar but null.
fn scalar() -> Value {
    json!({ "type": ["string", "number", "boolean"] })
}

fn command_line(what: &str) -> Value {
    json!({
        "description": what,
        "oneOf": [
            { "type": "string", "minLength": 1 },
            { "type": "array", "minItems": 1, "items": { "type": "string" } },
        ],
    })
}

// -- the values, one function per field of the tables ---------------------

pub(crate) fn api_version(_: Spelling) -> Value {
    json!({ "const": API_VERSION })
}

pub(crate) fn kind(_: Spelling) -> Value {
    json!({ "const": KIND })
}

pub(crate) fn metadata(_: Spelling) -> Value {
    spelled(&METADATA)
}

pub(crate) fn spec(_: Spelling) -> Value {
    spelled(&SPEC)
}

pub(crate) fn asset_name(_: Spelling) -> Value {
    json!({
        "description": "A DNS label, unique across the manifests directory",
        "type": "string",
        "pattern": or_variable(AssetName::PATTERN),
    })
}

pub(crate) fn labels(_: Spelling) -> Value {
    let reserved = format!("^{}", RESERVED_LABEL_PREFIX.replace('.', "\\."));
    json!({
        "type": "object",
        "propertyNames": { "not": { "pattern": reserved } },
        "additionalProperties": scalar(),
    })
}

pub(crate) fn image(_: Spelling) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": MAX_IMAGE_BYTES, "pattern": "^\\S+$" })
}

pub(crate) fn command(_: Spelling) -> Value {
    command_line("A string split like a POSIX shell (no shell runs), or argv as a list")
}

pub(crate) fn env(_: Spelling) -> Value {
    json!({
        "description": "KEY=VALUE strings, or a map; ${VAR} and ${VAR:-default} expand from the daemon's environment",
        "oneOf": [
            { "type": "array", "items": { "type": "string", "pattern": or_variable("^[^=]+=") } },
            {
                "type": "object",
                "propertyNames": { "pattern": "^[^=]+$" },
                "additionalProperties": scalar(),
            },
        ],
    })
}

pub(crate) fn ports(_: Spelling) -> Value {
    let protocols = Protocol::NAMES.join("|");
    json!({
        "description": "host port (optionally /tcp or /udp) → container port",
        "type": "object",
        "propertyNames": { "pattern": format!("^0*[1-9][0-9]{{0,4}}(/({protocols}))?$") },
        "additionalProperties": whole_number(1, 65535),
    })
}

pub(crate) fn depends_on(_: Spelling) -> Value {
    json!({
        "description": "Assets that must run and be healthy before this one is created or updated (and are removed after it)",
        "type": "array",
        "uniqueItems": true,
        "items": { "type": "string", "pattern": or_variable(AssetName::PATTERN) },
    })
}

pub(crate) fn networks(_: Spelling) -> Value {
    json!({
        "type": "array",
        "uniqueItems": true,
        "items": { "type": "string", "pattern": or_variable(DockerName::PATTERN) },
    })
}

pub(crate) fn constraints(_: Spelling) -> Value {
    json!({
        "description": "Swarm placement constraints, kept exactly as written",
        "type": "array",
        "items": { "type": "string", "pattern": or_variable("(==|!=)") },
    })
}

pub(crate) fn resources(_: Spelling) -> Value {
    spelled(&RESOURCES)
}

pub(crate) fn resource_set(_: Spelling) -> Value {
    spelled(&RESOURCE_SET)
}

pub(crate) fn cpus(spelling: Spelling) -> Value {
    match spelling {
        Spelling::Friendly => json!({
            "description": "CPUs, e.g. 0.5",
            "type": ["number", "string"],
            "exclusiveMinimum": 0,
            "pattern": or_variable(NanoCpus::PATTERN),
        }),
        Spelling::Engine => json!({
            "description": "billionths of a CPU",
            "allOf": [whole_number(1, i64::MAX)],
        }),
    }
}

pub(crate) fn memory(spelling: Spelling) -> Value {
    let units: Vec<&str> = MemoryBytes::units().filter(|u| !u.is_empty()).collect();
    match spelling {
        Spelling::Friendly => json!({
            "description": format!("Bytes, or a number with a unit: {} (e.g. 512Mi)", units.join(", ")),
            "type": ["integer", "string"],
            "minimum": MIN_MEMORY_BYTES,
            "pattern": or_variable(&MemoryBytes::pattern()),
        }),
        Spelling::Engine => whole_number(MIN_MEMORY_BYTES, i64::MAX),
    }
}

pub(crate) fn mode(_: Spelling) -> Value {
    // Exactly one of the two keys.
    let mut mode = spelled(&MODE);
    for variant in mode["anyOf"].as_array_mut().into_iter().flatten() {
        variant["minProperties"] = json!(1);
        variant["maxProperties"] = json!(1);
    }
    mode
}

pub(crate) fn replicated(_: Spelling) -> Value {
    spelled(&REPLICATED)
}

pub(crate) fn global(_: Spelling) -> Value {
    json!({ "type": "object", "maxProperties": 0 })
}

pub(crate) fn replicas(_: Spelling) -> Value {
    whole_number(0, MAX_REPLICAS as i64)
}

pub(crate) fn mounts(_: Spelling) -> Value {
    json!({ "type": "array", "items": spelled(&MOUNT) })
}

pub(crate) fn mount_type(_: Spelling) -> Value {
    one_of(&MountKind::NAMES)
}

pub(crate) fn mount_source(_: Spelling) -> Value {
    json!({ "type": "string", "description": "host path (bind, under --allow-bind) or volume name" })
}

pub(crate) fn mount_target(_: Spelling) -> Value {
    json!({ "type": "string", "pattern": or_variable("^/") })
}

pub(crate) fn boolean(_: Spelling) -> Value {
    json!({ "type": ["boolean", "string"], "pattern": or_variable("^(true|false)$") })
}

pub(crate) fn hooks(_: Spelling) -> Value {
    object(&super::shape::HOOKS, Spelling::Friendly)
}

pub(crate) fn hook(_: Spelling) -> Value {
    let mut hook = object(&super::shape::HOOK, Spelling::Friendly);
    if let Value::Object(map) = &mut hook {
        map.insert(
            "description".into(),
            json!("A one-shot job with the asset's networks, env, secrets and configs; the asset's image unless `image` is given; killed and failed after `timeout` (2m when unset)"),
        );
    }
    hook
}

pub(crate) fn healthcheck(_: Spelling) -> Value {
    spelled(&HEALTHCHECK)
}

pub(crate) fn health_test(_: Spelling) -> Value {
    command_line("[CMD, argv...], [CMD-SHELL, command], [NONE], or a command line for the shell")
}

pub(crate) fn retries(_: Spelling) -> Value {
    whole_number(0, 1000)
}

/// At least 1 ms: `5s`, `500ms`, `1m30s`; nanoseconds in the Engine-API
/// spelling.
pub(crate) fn duration(spelling: Spelling) -> Value {
    match spelling {
        Spelling::Friendly => json!({
            "description": "e.g. 5s, 500ms, 1m30s",
            "type": "string",
            "pattern": or_variable(&DurationNs::pattern()),
        }),
        Spelling::Engine => json!({
            "description": "nanoseconds",
            "allOf": [whole_number(1_000_000, i64::MAX)],
        }),
    }
}

/// A duration that may be zero (`delay: 0s`).
pub(crate) fn duration_or_zero(spelling: Spelling) -> Value {
    match spelling {
        Spelling::Friendly => duration(spelling),
        Spelling::Engine => whole_number(0, i64::MAX),
    }
}

pub(crate) fn update(_: Spelling) -> Value {
    spelled(&UPDATE)
}

pub(crate) fn update_order(_: Spelling) -> Value {
    one_of(&UpdateOrder::NAMES)
}

pub(crate) fn failure_action(_: Spelling) -> Value {
    one_of(&FailureAction::NAMES)
}

pub(crate) fn parallelism(_: Spelling) -> Value {
    json!({ "description": "replicas at a time, 0 = all", "allOf": [whole_number(0, 1000)] })
}

pub(crate) fn user(_: Spelling) -> Value {
    json!({
        "description": "uid, uid:gid, name or name:group",
        "type": ["string", "integer"],
        "minimum": 0,
        "maximum": u32::MAX,
        "pattern": or_variable(ProcessUser::PATTERN),
    })
}

pub(crate) fn ulimits(_: Spelling) -> Value {
    json!({
        "description": "limit name → a number (soft = hard) or { soft, hard }; -1 is unlimited",
        "type": "object",
        "propertyNames": { "enum": Ulimit::NAMES },
        "additionalProperties": { "anyOf": [ulimit_value(Spelling::Friendly), spelled(&ULIMIT)] },
    })
}

pub(crate) fn pull_policy(_: Spelling) -> Value {
    let mut value = one_of(&PullPolicy::NAMES);
    value["description"] = json!("IfNotPresent (the default), Always or Never");
    value
}

pub(crate) fn ulimit_value(_: Spelling) -> Value {
    whole_number(-1, i64::MAX)
}

pub mod compose;
pub mod openfactory;
pub(crate) mod stack;
pub(crate) mod window;

#[cfg(test)]
mod tests;
