//! The schema of `kind: Network`, `Volume`, `Secret` and `Config`
//! documents and of an asset's `secrets:` and `configs:`, from the same
//! field tables the decoder reads them with.

use serde_json::{json, Value};

use super::{labels, object, or_variable};
use crate::input::manifest::shape::{
    Shape, Spelling, CONFIG_SPEC, FILE_REF, NETWORK_SPEC, SECRET_SPEC, VOLUME_SPEC,
};
use crate::input::manifest::API_VERSION;
use crate::input::stack::ResourceKind;
use crate::model::spec::values::DockerName;

/// One document of `kind`.
pub(crate) fn document(kind: ResourceKind) -> Value {
    let spec: &Shape = match kind {
        ResourceKind::Network => &NETWORK_SPEC,
        ResourceKind::Volume => &VOLUME_SPEC,
        ResourceKind::Secret => &SECRET_SPEC,
        ResourceKind::Config => &CONFIG_SPEC,
    };
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": { "const": API_VERSION },
            "kind": { "const": kind.manifest_kind() },
            "metadata": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "properties": {
                    "name": object_name(Spelling::Friendly),
                    "labels": labels(Spelling::Friendly),
                },
            },
            "spec": object(spec, Spelling::Friendly),
        },
    })
}

pub(crate) fn object_name(_: Spelling) -> Value {
    json!({ "type": "string", "maxLength": 48, "pattern": or_variable(DockerName::PATTERN) })
}

fn refs(what: &str) -> Value {
    json!({
        "description": what,
        "type": "array",
        "items": { "anyOf": [object_name(Spelling::Friendly), object(&FILE_REF, Spelling::Friendly)] },
    })
}

pub(crate) fn secret_refs(_: Spelling) -> Value {
    refs("kind: Secret objects delivered as files (a relative target lands under /run/secrets/)")
}

pub(crate) fn config_refs(_: Spelling) -> Value {
    refs("kind: Config objects delivered as files")
}

pub(crate) fn file_target(_: Spelling) -> Value {
    json!({ "type": "string", "minLength": 1 })
}

pub(crate) fn numeric_id(_: Spelling) -> Value {
    json!({ "type": ["integer", "string"], "minimum": 0, "maximum": u32::MAX, "pattern": or_variable("^[0-9]+$") })
}

pub(crate) fn file_mode(_: Spelling) -> Value {
    json!({ "description": "octal, e.g. 0400", "type": ["integer", "string"], "pattern": "^(0o)?[0-7]{1,4}$" })
}

pub(crate) fn cidr(_: Spelling) -> Value {
    json!({ "type": "string", "pattern": or_variable("^[0-9a-fA-F.:]+/[0-9]{1,3}$") })
}

pub(crate) fn cidrs(s: Spelling) -> Value {
    json!({ "type": "array", "items": cidr(s) })
}

pub(crate) fn ip(_: Spelling) -> Value {
    json!({ "type": "string", "pattern": or_variable("^[0-9a-fA-F.:]+$") })
}

pub(crate) fn string_map(_: Spelling) -> Value {
    json!({ "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] } })
}

pub(crate) fn content_file(_: Spelling) -> Value {
    json!({ "description": "relative to this manifest, inside the manifests directory", "type": "string", "minLength": 1 })
}

pub(crate) fn decrypt(_: Spelling) -> Value {
    json!({ "description": "`age`: `file` is an age file (binary or armored), decrypted in memory with the daemon's --age-identity", "enum": ["age", "none"] })
}

pub(crate) fn from_env(_: Spelling) -> Value {
    json!({ "description": "an environment variable of the daemon", "type": "string", "minLength": 1 })
}

pub(crate) fn inline_data(_: Spelling) -> Value {
    json!({ "type": "string" })
}
