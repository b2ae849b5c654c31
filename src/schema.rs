//! `assetd schema`: the JSON Schema (draft-07) of the manifest format.

/// The schema as pretty JSON.
pub fn schema_json() -> String {
    String::from("{}")
}
