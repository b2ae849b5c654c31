//! The schema of `kind: SyncWindow` documents, from the same field table
//! the decoder reads them with.

use serde_json::{json, Value};

use super::{labels, object};
use crate::input::manifest::shape::{Spelling, WINDOW_SPEC};
use crate::input::manifest::{API_VERSION, WINDOW_KIND};

/// One SyncWindow document.
pub(crate) fn document() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": { "const": API_VERSION },
            "kind": { "const": WINDOW_KIND },
            "metadata": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "properties": {
                    "name": super::stack::object_name(Spelling::Friendly),
                    "labels": labels(Spelling::Friendly),
                },
            },
            "spec": object(&WINDOW_SPEC, Spelling::Friendly),
        },
    })
}

pub(crate) fn effect(_: Spelling) -> Value {
    json!({ "description": "allow: changes go only while the window is in force; deny: no change goes while it is", "enum": ["allow", "deny"] })
}

pub(crate) fn schedule(_: Spelling) -> Value {
    json!({ "description": "when the window opens: five-field cron (minute hour day-of-month month day-of-week) in timeZone", "type": "string", "minLength": 9 })
}

pub(crate) fn time_zone(_: Spelling) -> Value {
    json!({ "description": "IANA time zone, e.g. Europe/Berlin; default the host's", "type": "string", "minLength": 1 })
}

pub(crate) fn name_globs(_: Spelling) -> Value {
    json!({ "description": "asset name globs, e.g. cell3-*", "type": "array", "items": { "type": "string", "minLength": 1 } })
}

pub(crate) fn repairs(_: Spelling) -> Value {
    json!({ "description": "allow (default): drift repairs of the declared version still run; deny: held too", "enum": ["allow", "deny"] })
}
