//! `assetd schema --kind compose`: the JSON Schema of the Compose files
//! assetd accepts, generated from the key tables
//! (`manifest::compose::shape`) like the manifest schema is. A refused key
//! is in the schema with `not: {}` and its reason, so an editor says why.

use serde_json::{json, Map, Value};

use super::object;
use crate::input::manifest::compose::shape::{
    CONFIG, DEPENDENCY, DEPLOY, FILE, FILE_REF, HEALTHCHECK, NETWORK, PLACEMENT, PORT,
    REFUSED_SERVICE_KEYS, RESOURCES, RESOURCE_SET, RESTART_POLICY, ROLLOUT_CONFIG, SECRET, SERVICE,
    SERVICE_NETWORK, VOLUME, VOLUME_MOUNT,
};
use crate::input::manifest::shape::{Shape, Spelling};
use crate::model::spec::values::{BinaryMemoryBytes, DurationNs, NanoCpus};

/// The Compose schema as a JSON value.
pub fn schema() -> Value {
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    root.insert("title".into(), json!("Compose file, as assetd reads it"));
    if let Value::Object(body) = open(&FILE) {
        root.extend(body);
    }
    Value::Object(root)
}

pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).expect("a JSON value always serialises")
}

/// An object of `shape` that also takes `x-*` extension keys.
fn open(shape: &Shape) -> Value {
    let mut value = object(shape, Spelling::Friendly);
    if let Value::Object(map) = &mut value {
        map.insert("patternProperties".into(), json!({ "^x-": {} }));
    }
    value
}

fn map_of(value: Value) -> Value {
    json!({ "type": "object", "additionalProperties": value })
}

fn or_null(value: Value) -> Value {
    json!({ "anyOf": [value, { "type": "null" }] })
}

pub(crate) fn version(_: Spelling) -> Value {
    json!({ "type": "string", "description": "accepted without effect" })
}
pub(crate) fn project_name(_: Spelling) -> Value {
    json!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$" })
}
pub(crate) fn services(_: Spelling) -> Value {
    let mut service = open(&SERVICE);
    if let Some(Value::Object(props)) = service.get_mut("properties") {
        for (key, why) in REFUSED_SERVICE_KEYS {
            props.insert(
                (*key).into(),
                json!({ "not": {}, "description": format!("refused: {why}") }),
            );
        }
    }
    map_of(service)
}
pub(crate) fn networks(_: Spelling) -> Value {
    map_of(or_null(open(&NETWORK)))
}
pub(crate) fn volumes(_: Spelling) -> Value {
    map_of(or_null(open(&VOLUME)))
}
pub(crate) fn secrets(_: Spelling) -> Value {
    map_of(open(&SECRET))
}
pub(crate) fn configs(_: Spelling) -> Value {
    map_of(open(&CONFIG))
}
pub(crate) fn image(_: Spelling) -> Value {
    json!({ "type": "string", "minLength": 1 })
}
pub(crate) fn build(_: Spelling) -> Value {
    json!({ "description": "accepted beside image (the image is deployed); refused alone" })
}
pub(crate) fn string(_: Spelling) -> Value {
    json!({ "type": ["string", "number", "boolean"] })
}
pub(crate) fn string_list(_: Spelling) -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}
pub(crate) fn string_or_list(s: Spelling) -> Value {
    json!({ "anyOf": [string(s), string_list(s)] })
}
pub(crate) fn command(s: Spelling) -> Value {
    string_or_list(s)
}
pub(crate) fn labels(_: Spelling) -> Value {
    json!({ "anyOf": [
        { "type": "object", "additionalProperties": { "type": ["string", "number", "boolean", "null"] } },
        { "type": "array", "items": { "type": "string" } },
    ] })
}
pub(crate) fn environment(s: Spelling) -> Value {
    labels(s)
}
pub(crate) fn extra_hosts(s: Spelling) -> Value {
    labels(s)
}
pub(crate) fn ports(_: Spelling) -> Value {
    json!({ "type": "array", "items": { "anyOf": [
        { "type": ["string", "integer"] },
        object(&PORT, Spelling::Friendly),
    ] } })
}
pub(crate) fn expose(_: Spelling) -> Value {
    json!({ "description": "accepted without effect (ports on the project's network are reachable already)" })
}
pub(crate) fn service_networks(_: Spelling) -> Value {
    json!({ "anyOf": [
        { "type": "array", "items": { "type": "string" } },
        map_of(or_null(object(&SERVICE_NETWORK, Spelling::Friendly))),
    ] })
}
pub(crate) fn service_volumes(_: Spelling) -> Value {
    json!({ "type": "array", "items": { "anyOf": [
        { "type": "string" },
        object(&VOLUME_MOUNT, Spelling::Friendly),
    ] } })
}
pub(crate) fn file_refs(_: Spelling) -> Value {
    json!({ "type": "array", "items": { "anyOf": [
        { "type": "string" },
        object(&FILE_REF, Spelling::Friendly),
    ] } })
}
pub(crate) fn healthcheck(_: Spelling) -> Value {
    object(&HEALTHCHECK, Spelling::Friendly)
}
pub(crate) fn health_test(s: Spelling) -> Value {
    string_or_list(s)
}
pub(crate) fn depends_on(_: Spelling) -> Value {
    json!({ "anyOf": [
        { "type": "array", "items": { "type": "string" } },
        map_of(object(&DEPENDENCY, Spelling::Friendly)),
    ] })
}
pub(crate) fn condition(_: Spelling) -> Value {
    json!({ "enum": ["service_started", "service_healthy", "service_completed_successfully"] })
}
pub(crate) fn deploy(_: Spelling) -> Value {
    open(&DEPLOY)
}
pub(crate) fn restart(_: Spelling) -> Value {
    json!({ "type": "string", "pattern": "^(no|always|unless-stopped|on-failure(:[0-9]+)?)$" })
}
pub(crate) fn ulimits(_: Spelling) -> Value {
    map_of(json!({ "anyOf": [
        { "type": "integer" },
        { "type": "object", "properties": { "soft": { "type": "integer" }, "hard": { "type": "integer" } } },
    ] }))
}
pub(crate) fn duration(_: Spelling) -> Value {
    json!({ "type": "string", "pattern": DurationNs::pattern() })
}
pub(crate) fn boolean(_: Spelling) -> Value {
    json!({ "type": "boolean" })
}
pub(crate) fn whole(_: Spelling) -> Value {
    json!({ "type": ["integer", "string"] })
}
pub(crate) fn pull_policy(_: Spelling) -> Value {
    json!({ "enum": ["always", "never", "missing", "if_not_present"] })
}
pub(crate) fn protocol(_: Spelling) -> Value {
    json!({ "enum": ["tcp", "udp"] })
}
pub(crate) fn port_mode(_: Spelling) -> Value {
    json!({ "enum": ["ingress"] })
}
pub(crate) fn mount_type(_: Spelling) -> Value {
    json!({ "enum": ["volume", "bind", "tmpfs"] })
}
pub(crate) fn mode(_: Spelling) -> Value {
    json!({ "type": ["integer", "string"], "description": "octal file mode, e.g. 0440" })
}
pub(crate) fn deploy_mode(_: Spelling) -> Value {
    json!({ "enum": ["replicated", "global"] })
}
pub(crate) fn resources(_: Spelling) -> Value {
    object(&RESOURCES, Spelling::Friendly)
}
pub(crate) fn resource_set(_: Spelling) -> Value {
    object(&RESOURCE_SET, Spelling::Friendly)
}
pub(crate) fn cpus(_: Spelling) -> Value {
    json!({ "type": ["string", "number"], "pattern": NanoCpus::PATTERN })
}
pub(crate) fn memory(_: Spelling) -> Value {
    json!({ "type": "string", "pattern": BinaryMemoryBytes::pattern() })
}
pub(crate) fn placement(_: Spelling) -> Value {
    object(&PLACEMENT, Spelling::Friendly)
}
pub(crate) fn rollout_config(_: Spelling) -> Value {
    object(&ROLLOUT_CONFIG, Spelling::Friendly)
}
pub(crate) fn restart_policy(_: Spelling) -> Value {
    object(&RESTART_POLICY, Spelling::Friendly)
}
pub(crate) fn endpoint_mode(_: Spelling) -> Value {
    json!({ "enum": ["vip"] })
}
pub(crate) fn failure_action(_: Spelling) -> Value {
    json!({ "enum": ["continue", "rollback", "pause"] })
}
pub(crate) fn ratio(_: Spelling) -> Value {
    json!({ "type": ["number", "string"] })
}
pub(crate) fn order(_: Spelling) -> Value {
    json!({ "enum": ["start-first", "stop-first"] })
}
pub(crate) fn restart_condition(_: Spelling) -> Value {
    json!({ "enum": ["none", "on-failure", "any"] })
}
pub(crate) fn decrypt(_: Spelling) -> Value {
    json!({ "enum": ["age", "none"] })
}
