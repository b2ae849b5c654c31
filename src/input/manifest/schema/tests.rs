//! The schema is generated from the decoder's tables; these tests check
//! that the result is a valid Draft-7 schema and that an independent
//! validator agrees with the decoder on every fixture.

use std::path::{Path, PathBuf};

use super::*;
use crate::input::manifest::{self, Policy};

/// The decoder refuses these bad fixtures for reasons a JSON Schema cannot
/// express, so the schema accepts them. Each is checked to still be
/// accepted by the schema: when the schema learns to refuse one, it must
/// leave this list.
const BEYOND_A_SCHEMA: &[(&str, &str)] = &[
    (
        "bind_not_allowed",
        "bind sources outside --allow-bind (a daemon flag)",
    ),
    (
        "bind_parent_dir",
        "`..` in a bind source (path normalisation)",
    ),
    (
        "command_unbalanced_quote",
        "shell-word splitting of a command line",
    ),
    (
        "duplicate_env_key",
        "the same variable twice in the env list",
    ),
    (
        "duplicate_mount_target",
        "two mounts on one normalised target",
    ),
    ("duplicate_port", "`5000` and `5000/tcp` are one port"),
    ("env_expansion_document_budget", "env expansion budgets"),
    ("env_expansion_too_long", "env expansion budgets"),
    ("env_map_key_variable", "`${` in an env map key"),
    ("env_nested_default", "`${VAR}` syntax inside a default"),
    (
        "healthcheck_test_kind",
        "the CMD / CMD-SHELL / NONE grammar",
    ),
    ("image_bad_digest", "Docker's image reference grammar"),
    ("image_bad_separator", "Docker's image reference grammar"),
    ("image_bad_tag", "Docker's image reference grammar"),
    ("image_uppercase", "Docker's image reference grammar"),
    ("memory_too_small", "a minimum of a size with a unit"),
    ("reservation_above_limit", "a comparison of two fields"),
    ("tag_binary", "YAML tags (the schema sees the loaded value)"),
    ("tag_custom", "YAML tags (the schema sees the loaded value)"),
    ("unset_variable", "the daemon's environment"),
    (
        "unterminated_variable",
        "`${` syntax (any `${` passes the schema)",
    ),
    (
        "volume_source_is_path",
        "a volume source must be a name, by mount type",
    ),
    (
        "tmpfs_with_source",
        "a tmpfs takes no source, by mount type",
    ),
];

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/manifests")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Whether the decoder accepts the file (env and policy as in the
/// fixtures' README).
fn decoder_accepts(path: &Path, bytes: &[u8]) -> bool {
    let policy = Policy {
        allow_bind: vec![PathBuf::from("/srv")],
    };
    let name = path.file_name().unwrap().to_string_lossy();
    manifest::parse_bytes(
        &name,
        bytes,
        &crate::input::manifest::tests::test_env,
        &policy,
    )
    .is_ok()
}

/// Whether every document of the file is valid by the schema. A file
/// that a YAML loader refuses (bad syntax, duplicate keys, invalid UTF-8,
/// unknown anchors) never reaches a schema and counts as refused.
fn schema_accepts(validator: &jsonschema::Validator, bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    match serde_saphyr::from_multiple::<serde_json::Value>(text) {
        // An empty document holds no asset; the decoder skips it too.
        Ok(documents) => documents
            .iter()
            .filter(|d| !d.is_null())
            .all(|d| validator.is_valid(d)),
        Err(_) => false,
    }
}

#[test]
fn the_schema_is_valid_draft_7() {
    assert!(jsonschema::draft7::meta::is_valid(&schema()));
}

#[test]
fn schema_and_decoder_agree_on_every_fixture() {
    let validator = jsonschema::draft7::new(&schema()).expect("a valid schema");
    let mut disagreements = Vec::new();
    for path in fixtures("good") {
        let bytes = std::fs::read(&path).unwrap();
        let (decoder, schema) = (
            decoder_accepts(&path, &bytes),
            schema_accepts(&validator, &bytes),
        );
        if !(decoder && schema) {
            disagreements.push(format!(
                "good/{}: decoder {decoder}, schema {schema}",
                path.display()
            ));
        }
    }
    let bad = fixtures("bad");
    for path in &bad {
        let name = path.file_stem().unwrap().to_string_lossy();
        let bytes = std::fs::read(path).unwrap();
        assert!(!decoder_accepts(path, &bytes), "{name} is a bad fixture");
        let schema = schema_accepts(&validator, &bytes);
        let beyond = BEYOND_A_SCHEMA.iter().any(|(n, _)| *n == name);
        if schema != beyond {
            let why = if schema {
                "the schema accepts it"
            } else {
                "the schema refuses it: take it off BEYOND_A_SCHEMA"
            };
            disagreements.push(format!("bad/{name}: {why}"));
        }
    }
    for (name, _) in BEYOND_A_SCHEMA {
        assert!(
            bad.iter().any(|p| p.file_stem().unwrap() == *name),
            "no fixture {name}"
        );
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn schema_objects_list_the_keys_the_decoder_accepts() {
    let s = schema()["oneOf"][0].clone();
    let keys = |v: &Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let spec = &s["properties"]["spec"];
    assert_eq!(keys(&s), TOP.keys(Spelling::Friendly));
    assert_eq!(keys(spec), SPEC.keys(Spelling::Friendly));
    let mounts = &spec["properties"]["mounts"]["anyOf"][0]["items"]["anyOf"];
    assert_eq!(keys(&mounts[0]), MOUNT.keys(Spelling::Friendly));
    assert_eq!(keys(&mounts[1]), MOUNT.keys(Spelling::Engine));
    assert_eq!(keys(&mounts[1]), ["Type", "Source", "Target", "ReadOnly"]);
}

/// The unit patterns accept exactly what the value types parse, on
/// strings near the edges of each grammar.
#[test]
fn unit_patterns_accept_what_the_value_types_parse() {
    fn agree<T: std::str::FromStr>(pattern: &str, samples: &[&str]) {
        let validator = jsonschema::draft7::new(&json!({ "pattern": pattern })).unwrap();
        for sample in samples {
            let parses = sample.parse::<T>().is_ok();
            let matches = validator.is_valid(&json!(sample));
            assert_eq!(parses, matches, "`{sample}` against {pattern}");
        }
    }
    agree::<MemoryBytes>(
        &MemoryBytes::pattern(),
        &[
            "512Mi", "1Ti", "1T", "64k", "2Ki", "100b", "7000000", "1.5Gi", ".5Gi", "1.Gi",
            " 6Mi ", "512 Mi", "1K", "512m", "Mi", "1.2.3Mi", "-1Mi", "1e9", "",
        ],
    );
    agree::<DurationNs>(
        &DurationNs::pattern(),
        &[
            "5s",
            "500ms",
            "1m30s",
            "1h2m3s4ms5us6ns",
            "0s",
            " 5s ",
            "5",
            "s",
            "5 s",
            "1d",
            "5sec",
            "1.5s",
            "",
        ],
    );
    agree::<NanoCpus>(
        NanoCpus::PATTERN,
        &[
            "1",
            "0.5",
            ".25",
            "2.",
            "1.123456789",
            " 1 ",
            "abc",
            "1e3",
            "1.0000000001",
            "",
        ],
    );
}

/// The examples people copy from are valid by the schema their editor
/// loads.
#[test]
fn example_manifests_are_valid_by_the_schema() {
    let validator = jsonschema::draft7::new(&schema()).expect("a valid schema");
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let bytes = std::fs::read(&path).unwrap();
                assert!(schema_accepts(&validator, &bytes), "{}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 3, "only {seen} example manifests");
}
