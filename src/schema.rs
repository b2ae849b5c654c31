//! `assetd schema`: the JSON Schema (draft-07, what yaml-language-server
//! reads) of one manifest document, for editors.
//!
//! The manifest decoder works on a position-carrying YAML tree rather than
//! on serde-derived structs (so every error can name its line and column),
//! so the schema is written out here. A test keeps its object keys equal
//! to the decoder's tables of accepted keys, and `manifests/` carries a
//! committed copy that a test compares with this output.

use serde_json::{json, Value};

const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

/// Keys per object, in both spellings where the format has two. A test
/// checks them against the decoder's own tables (`manifest::shapes`).
pub const OBJECT_KEYS: &[(&str, &[&str])] = &[
    ("top", &["apiVersion", "kind", "metadata", "spec"]),
    ("metadata", &["name", "labels"]),
    (
        "spec",
        &[
            "image",
            "command",
            "env",
            "ports",
            "networks",
            "constraints",
            "resources",
            "mode",
            "mounts",
            "healthcheck",
            "update",
        ],
    ),
    ("resources", &["limits", "reservations"]),
    ("Resources", &["Limits", "Reservations"]),
    ("resourceSet", &["cpus", "memory"]),
    ("ResourceSet", &["NanoCPUs", "MemoryBytes"]),
    ("mode", &["replicated", "global"]),
    ("Mode", &["Replicated", "Global"]),
    ("replicated", &["replicas"]),
    ("Replicated", &["Replicas"]),
    ("mount", &["type", "source", "target", "readOnly"]),
    ("Mount", &["Type", "Source", "Target", "ReadOnly"]),
    (
        "healthcheck",
        &["test", "interval", "timeout", "retries", "startPeriod"],
    ),
    (
        "Healthcheck",
        &["Test", "Interval", "Timeout", "Retries", "StartPeriod"],
    ),
    (
        "update",
        &["order", "monitor", "failureAction", "parallelism", "delay"],
    ),
    (
        "UpdateConfig",
        &["Order", "Monitor", "FailureAction", "Parallelism", "Delay"],
    ),
];

fn scalar() -> Value {
    json!({ "type": ["string", "number", "boolean"] })
}

fn closed(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

fn one_key(key: &str, value: Value) -> Value {
    closed(json!({ key: value }), &[key])
}

fn health_test() -> Value {
    json!({
        "description": "[CMD, argv...], [CMD-SHELL, command], [NONE], or a command line for the shell",
        "oneOf": [
            { "type": "string", "minLength": 1 },
            { "type": "array", "minItems": 1, "items": { "type": "string" } },
        ],
    })
}

fn healthcheck() -> Value {
    let duration = json!({
        "description": "e.g. 5s, 500ms, 1m30s",
        "type": "string",
        "pattern": "^([0-9]+(h|m|s|ms|us|ns))+$",
    });
    closed(
        json!({
            "test": health_test(),
            "interval": duration,
            "timeout": duration,
            "retries": { "type": ["integer", "string"] },
            "startPeriod": duration,
        }),
        &["test"],
    )
}

fn engine_healthcheck() -> Value {
    let ns = json!({ "description": "nanoseconds", "type": ["integer", "string"] });
    closed(
        json!({
            "Test": health_test(),
            "Interval": ns,
            "Timeout": ns,
            "Retries": { "type": ["integer", "string"] },
            "StartPeriod": ns,
        }),
        &["Test"],
    )
}

fn update_policy() -> Value {
    let duration = json!({
        "description": "e.g. 5s, 500ms, 1m30s",
        "type": "string",
        "pattern": "^([0-9]+(h|m|s|ms|us|ns))+$",
    });
    closed(
        json!({
            "order": { "enum": crate::spec::UpdateOrder::NAMES },
            "monitor": duration,
            "failureAction": { "enum": crate::spec::FailureAction::NAMES },
            "parallelism": { "description": "replicas at a time, 0 = all", "type": ["integer", "string"] },
            "delay": duration,
        }),
        &[],
    )
}

fn engine_update_policy() -> Value {
    let ns = json!({ "description": "nanoseconds", "type": ["integer", "string"] });
    closed(
        json!({
            "Order": { "enum": crate::spec::UpdateOrder::NAMES },
            "Monitor": ns,
            "FailureAction": { "enum": crate::spec::FailureAction::NAMES },
            "Parallelism": { "type": ["integer", "string"] },
            "Delay": ns,
        }),
        &[],
    )
}

/// The schema as a JSON value.
pub fn schema() -> Value {
    let memory = json!({
        "description": "Bytes, or a number with a unit: b, k, Ki, M, Mi, G, Gi (e.g. 512Mi)",
        "type": ["integer", "string"],
        "pattern": "^[0-9]+(\\.[0-9]+)?\\s*(b|k|Ki|K|M|Mi|G|Gi)?$",
    });
    let resource_set = closed(
        json!({
            "cpus": { "description": "CPUs, e.g. 0.5", "type": ["number", "string"] },
            "memory": memory,
        }),
        &[],
    );
    let engine_resource_set = closed(
        json!({
            "NanoCPUs": { "description": "billionths of a CPU", "type": "integer", "minimum": 1 },
            "MemoryBytes": { "type": "integer", "minimum": 1 },
        }),
        &[],
    );
    let mount = closed(
        json!({
            "type": { "enum": ["bind", "volume", "tmpfs"] },
            "source": { "type": "string", "description": "host path (bind, under --allow-bind) or volume name" },
            "target": { "type": "string", "pattern": "^/" },
            "readOnly": { "type": "boolean" },
        }),
        &["type", "target"],
    );
    let engine_mount = closed(
        json!({
            "Type": { "enum": ["bind", "volume", "tmpfs"] },
            "Source": { "type": "string" },
            "Target": { "type": "string", "pattern": "^/" },
            "ReadOnly": { "type": "boolean" },
        }),
        &["Type", "Target"],
    );
    let spec = closed(
        json!({
            "image": { "type": "string", "minLength": 1, "maxLength": crate::manifest::MAX_IMAGE_BYTES, "pattern": "^\\S+$" },
            "command": {
                "description": "A string split like a POSIX shell (no shell runs), or argv as a list",
                "oneOf": [
                    { "type": "string", "minLength": 1 },
                    { "type": "array", "minItems": 1, "items": { "type": "string" } },
                ],
            },
            "env": {
                "description": "KEY=VALUE strings, or a map; ${VAR} and ${VAR:-default} expand from the daemon's environment",
                "oneOf": [
                    { "type": "array", "items": { "type": "string", "pattern": "^[^=]+=" } },
                    { "type": "object", "additionalProperties": scalar() },
                ],
            },
            "ports": {
                "description": "host port (optionally /tcp or /udp) → container port",
                "type": "object",
                "propertyNames": { "pattern": "^[0-9]{1,5}(/(tcp|udp))?$" },
                "additionalProperties": { "type": "integer", "minimum": 1, "maximum": 65535 },
            },
            "networks": { "type": "array", "uniqueItems": true, "items": { "type": "string", "minLength": 1 } },
            "constraints": {
                "description": "Swarm placement constraints, kept exactly as written",
                "type": "array",
                "items": { "type": "string", "pattern": "(==|!=)" },
            },
            "resources": {
                "oneOf": [
                    closed(json!({ "limits": resource_set, "reservations": resource_set }), &[]),
                    closed(json!({ "Limits": engine_resource_set, "Reservations": engine_resource_set }), &[]),
                ],
            },
            "mode": {
                "oneOf": [
                    one_key("replicated", one_key("replicas", json!({ "type": "integer", "minimum": 0 }))),
                    one_key("global", json!({ "type": "object", "maxProperties": 0 })),
                    one_key("Replicated", one_key("Replicas", json!({ "type": "integer", "minimum": 0 }))),
                    one_key("Global", json!({ "type": "object", "maxProperties": 0 })),
                ],
            },
            "mounts": { "type": "array", "items": { "oneOf": [mount, engine_mount] } },
            "healthcheck": { "oneOf": [healthcheck(), engine_healthcheck()] },
            // anyOf: `update: {}` fits both spellings.
            "update": { "anyOf": [update_policy(), engine_update_policy()] },
        }),
        &["image"],
    );
    let metadata = closed(
        json!({
            "name": {
                "description": "A DNS label, unique across the manifests directory",
                "type": "string",
                "pattern": NAME_PATTERN,
            },
            "labels": {
                "type": "object",
                "propertyNames": { "not": { "pattern": "^io\\.assetd\\." } },
                "additionalProperties": scalar(),
            },
        }),
        &["name"],
    );
    let body = closed(
        json!({
            "apiVersion": { "const": "assetd/v1" },
            "kind": { "const": "Asset" },
            "metadata": metadata,
            "spec": spec,
        }),
        &["apiVersion", "kind", "metadata", "spec"],
    );
    let mut root = serde_json::Map::new();
    root.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    root.insert("title".into(), json!("assetd Asset manifest (assetd/v1)"));
    root.extend(body.as_object().expect("an object").clone());
    Value::Object(root)
}

/// The schema as pretty JSON.
pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(v: &Value) -> Vec<String> {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn schema_objects_list_the_keys_the_decoder_accepts() {
        let s = schema();
        let spec = &s["properties"]["spec"];
        let lookup: std::collections::BTreeMap<&str, &[&str]> =
            OBJECT_KEYS.iter().copied().collect();
        assert_eq!(keys_of(&s), lookup["top"]);
        assert_eq!(keys_of(&s["properties"]["metadata"]), lookup["metadata"]);
        assert_eq!(keys_of(spec), lookup["spec"]);
        let resources = &spec["properties"]["resources"]["oneOf"];
        assert_eq!(keys_of(&resources[0]), lookup["resources"]);
        assert_eq!(keys_of(&resources[1]), lookup["Resources"]);
        assert_eq!(
            keys_of(&resources[0]["properties"]["limits"]),
            lookup["resourceSet"]
        );
        assert_eq!(
            keys_of(&resources[1]["properties"]["Limits"]),
            lookup["ResourceSet"]
        );
        let mounts = &spec["properties"]["mounts"]["items"]["oneOf"];
        assert_eq!(keys_of(&mounts[0]), lookup["mount"]);
        assert_eq!(keys_of(&mounts[1]), lookup["Mount"]);
        let health = &spec["properties"]["healthcheck"]["oneOf"];
        assert_eq!(keys_of(&health[0]), lookup["healthcheck"]);
        assert_eq!(keys_of(&health[1]), lookup["Healthcheck"]);
        let update = &spec["properties"]["update"]["anyOf"];
        assert_eq!(keys_of(&update[0]), lookup["update"]);
        assert_eq!(keys_of(&update[1]), lookup["UpdateConfig"]);
        for (shape, keys) in crate::manifest::shapes() {
            assert_eq!(
                lookup[shape],
                keys.as_slice(),
                "the decoder's table `{shape}`"
            );
        }
    }
}
