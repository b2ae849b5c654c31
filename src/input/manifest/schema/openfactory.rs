//! `assetd schema --kind openfactory`: the JSON Schema of an OpenFactory
//! app file, generated from the app file's field tables
//! (`manifest::openfactory::shape`) like the manifest schema is.

use serde_json::{json, Map, Value};

use super::{object, or_variable, whole_number, VARIABLE};
use crate::input::manifest::openfactory::shape::{
    APP, APP_FILE, DEPLOY, LIMITS, METRICS, PLACEMENT, RESERVATIONS, RESOURCES, ROUTING,
    STORAGE_LOCAL, STORAGE_NFS,
};
use crate::input::manifest::shape::Spelling;
use crate::input::manifest::MAX_REPLICAS;
use crate::model::spec::values::{BinaryMemoryBytes, DockerName, NanoCpus};

/// The app-file schema as a JSON value.
pub fn schema() -> Value {
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    root.insert(
        "title".into(),
        json!("OpenFactory app file, as assetd reads it"),
    );
    if let Value::Object(body) = object(&APP_FILE, Spelling::Friendly) {
        root.extend(body);
    }
    Value::Object(root)
}

/// The app-file schema as pretty JSON.
pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).expect("a JSON value always serialises")
}

fn closed(shape: &crate::input::manifest::shape::Shape) -> Value {
    object(shape, Spelling::Friendly)
}

fn text(pattern: &str) -> Value {
    json!({ "type": "string", "pattern": or_variable(pattern) })
}

pub(crate) fn apps(_: Spelling) -> Value {
    json!({ "type": "object", "additionalProperties": closed(&APP) })
}

pub(crate) fn uuid(_: Spelling) -> Value {
    json!({
        "description": "The app's UUID; the asset (service) is named by it in lower case",
        "type": "string",
        "minLength": 1,
    })
}

pub(crate) fn image(_: Spelling) -> Value {
    json!({ "type": "string", "minLength": 1, "pattern": "^\\S+$" })
}

pub(crate) fn image_pull_policy(_: Spelling) -> Value {
    json!({ "anyOf": [
        { "enum": ["missing", "always"] },
        { "type": "string", "pattern": VARIABLE },
    ] })
}

pub(crate) fn runtime_id(_: Spelling) -> Value {
    json!({
        "description": "uid or gid, 1 and up; runtime_uid and runtime_gid go together",
        "allOf": [whole_number(1, u32::MAX as i64)],
    })
}

pub(crate) fn uns(_: Spelling) -> Value {
    json!({
        "description": "Unified Namespace levels, kept as labels openfactory.uns.<level>",
        "type": "object",
        "additionalProperties": { "type": ["string", "number", "boolean"] },
    })
}

pub(crate) fn environment(_: Spelling) -> Value {
    json!({
        "description": "KEY=VALUE; the value keeps any `=` it holds",
        "type": "array",
        "items": text("^[^=]+="),
    })
}

pub(crate) fn storage(_: Spelling) -> Value {
    json!({
        "type": "object",
        "propertyNames": { "pattern": "^[a-zA-Z0-9_-]+$" },
        "additionalProperties": { "oneOf": [closed(&STORAGE_LOCAL), closed(&STORAGE_NFS)] },
    })
}

pub(crate) fn storage_local_type(_: Spelling) -> Value {
    json!({ "const": "local" })
}

pub(crate) fn storage_nfs_type(_: Spelling) -> Value {
    json!({ "const": "nfs" })
}

pub(crate) fn absolute_path(_: Spelling) -> Value {
    text("^/")
}

pub(crate) fn nfs_server(_: Spelling) -> Value {
    text("^([a-zA-Z0-9-]+\\.)*[a-zA-Z0-9-]+$|^\\[[0-9a-fA-F:]+\\]$")
}

pub(crate) fn mount_options(_: Spelling) -> Value {
    json!({ "type": "array", "items": { "type": "string", "pattern": "^[^,]*$" } })
}

pub(crate) fn boolean(_: Spelling) -> Value {
    json!({ "type": ["boolean", "string"], "pattern": or_variable("^(true|false)$") })
}

pub(crate) fn port(_: Spelling) -> Value {
    whole_number(1, 65535)
}

pub(crate) fn hostname(_: Spelling) -> Value {
    json!({ "type": "string", "minLength": 1 })
}

pub(crate) fn metrics_path(_: Spelling) -> Value {
    text("^/")
}

pub(crate) fn routing(_: Spelling) -> Value {
    closed(&ROUTING)
}

pub(crate) fn metrics(_: Spelling) -> Value {
    closed(&METRICS)
}

pub(crate) fn networks(_: Spelling) -> Value {
    json!({ "type": "array", "uniqueItems": true, "items": text(DockerName::PATTERN) })
}

pub(crate) fn deploy(_: Spelling) -> Value {
    closed(&DEPLOY)
}

pub(crate) fn replicas(_: Spelling) -> Value {
    whole_number(0, MAX_REPLICAS as i64)
}

pub(crate) fn resources(_: Spelling) -> Value {
    closed(&RESOURCES)
}

pub(crate) fn reservations(_: Spelling) -> Value {
    closed(&RESERVATIONS)
}

pub(crate) fn limits(_: Spelling) -> Value {
    closed(&LIMITS)
}

pub(crate) fn placement(_: Spelling) -> Value {
    closed(&PLACEMENT)
}

pub(crate) fn cpus(_: Spelling) -> Value {
    json!({
        "description": "CPUs, e.g. 0.5 (OpenFactory reserves 0.5 and limits to 1.0 when unset)",
        "type": ["number", "string"],
        "exclusiveMinimum": 0,
        "pattern": or_variable(NanoCpus::PATTERN),
    })
}

pub(crate) fn memory(_: Spelling) -> Value {
    json!({
        "description": "bytes, or a number with k, kb, m, mb, mi, g, gb or gi (powers of 1024)",
        "type": ["integer", "string"],
        "pattern": or_variable(&BinaryMemoryBytes::pattern()),
    })
}

pub(crate) fn open_files(_: Spelling) -> Value {
    json!({ "description": "the nofile ulimit (soft and hard)", "allOf": [whole_number(0, i64::MAX)] })
}

pub(crate) fn constraints(_: Spelling) -> Value {
    json!({
        "description": "Swarm placement constraints; `=` is read as `==`, `!=` is kept",
        "type": "array",
        "items": text("(==|!=|=)"),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::schema;

    fn validator() -> jsonschema::Validator {
        jsonschema::draft7::new(&schema()).expect("a valid schema")
    }

    fn loaded(text: &str) -> serde_json::Value {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn the_app_file_schema_is_valid_draft_7() {
        assert!(jsonschema::draft7::meta::is_valid(&schema()));
    }

    #[test]
    fn the_test_app_files_are_valid_by_the_schema() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openfactory");
        for file in [
            "app_scheduler.yml",
            "app_cell_tools.yml",
            "nfs/app_historian.yml",
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let errors: Vec<String> = validator()
                .iter_errors(&loaded(&text))
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{file}: {errors:?}");
        }
    }

    #[test]
    fn the_schema_refuses_what_the_decoder_refuses_for_its_shape() {
        for text in [
            "apps: {a: {uuid: A, image: i, enviroment: []}}",
            "apps: {a: {image: i}}",
            "apps: {a: {uuid: A, image: i, storage: {d: {type: nfs, local_path: /x, mount_point: /d}}}}",
            "apps: {a: {uuid: A, image: i, image_pull_policy: never}}",
            "apps: {a: {uuid: A, image: i, deploy: {resources: {limits: {memory: 1Tb}}}}}",
            "apps: {}\nversion: 2",
        ] {
            assert!(!validator().is_valid(&loaded(text)), "{text}");
        }
    }
}
