//! The manifest decoder's tests: the data-driven fixtures of
//! `tests/data/manifests/` and the rules they do not show well.

use super::decoder::MAX_MESSAGE_CHARS;
use super::*;
use crate::model::spec::values::{ImageRef, MemoryBytes, NanoCpus, MAX_IMAGE_NAME_BYTES};
use crate::model::spec::{Mode, Mount, MountKind, PortMapping};
use std::path::PathBuf;

/// The environment every fixture is parsed with (see tests/data/manifests/README.md).
pub(crate) fn test_env(name: &str) -> Option<String> {
    match name {
        "IMAGE_TAG" => Some("2.5".into()),
        "GREETING" => Some("hello".into()),
        "EMPTY" => Some(String::new()),
        "REPLICAS" => Some("3".into()),
        "LONG" => Some("x".repeat(4096)),
        _ => None,
    }
}

/// `text` as bytes of memory, or the error's text.
fn parse_memory(text: &str) -> Result<i64, String> {
    text.parse::<MemoryBytes>().map(|m| m.0).map_err(|e| e.0)
}

/// `text` as nano-CPUs, if it is one.
fn parse_cpus(text: &str) -> Option<i64> {
    text.parse::<NanoCpus>().ok().map(|c| c.0)
}

/// Whether `image` is a valid reference, or why not.
fn check_image_reference(image: &str) -> Result<(), String> {
    image.parse::<ImageRef>().map(|_| ()).map_err(|e| e.0)
}

fn test_policy() -> Policy {
    Policy {
        allow_bind: vec![PathBuf::from("/srv")],
    }
}

fn data_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/manifests")
        .join(kind)
}

fn parse(text: &str) -> Result<Vec<ParsedAsset>, Vec<ManifestError>> {
    parse_file("t.yaml", text, &test_env, &test_policy())
}

fn parse_one(text: &str) -> DeploySpec {
    match parse(text) {
        Ok(mut assets) if assets.len() == 1 => assets.remove(0).spec,
        Ok(assets) => panic!("expected one asset, got {}", assets.len()),
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn errors_of(text: &str) -> Vec<ManifestError> {
    match parse(text) {
        Ok(assets) => panic!("expected errors, got {} assets", assets.len()),
        Err(errors) => errors,
    }
}

fn with_spec(spec: &str) -> String {
    format!("apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a1\nspec:\n{spec}")
}

fn parse_data(kind: &str, name: &str) -> Result<Vec<ParsedAsset>, Vec<ManifestError>> {
    let bytes = std::fs::read(data_dir(kind).join(name)).unwrap();
    parse_bytes(name, &bytes, &test_env, &test_policy()).map(|file| file.assets)
}

/// Each `bad/NAME.yaml` has a `bad/NAME.expect`: one line per error,
/// in order, `LINE:COLUMN: FIELD: MESSAGE FRAGMENT` (`-` for no field).
#[test]
fn every_bad_manifest_reports_its_position_field_and_message() {
    let dir = data_dir("bad");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 30, "only {} bad manifests", names.len());
    let mut failures = Vec::new();
    for name in &names {
        let expect_path = dir.join(name.replace(".yaml", ".expect"));
        let expect = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|_| panic!("{} has no .expect file", name));
        let expected: Vec<&str> = expect.lines().filter(|l| !l.trim().is_empty()).collect();
        let actual = match parse_data("bad", name) {
            Ok(assets) => {
                failures.push(format!(
                    "{name}: parsed into {} assets, expected errors",
                    assets.len()
                ));
                continue;
            }
            Err(errors) => errors,
        };
        if actual.len() != expected.len() {
            failures.push(format!(
                "{name}: expected {} errors, got {actual:#?}",
                expected.len()
            ));
            continue;
        }
        for (want, got) in expected.iter().zip(&actual) {
            let mut parts = want.splitn(3, ": ");
            let (at, field, fragment) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let (line, column) = at.split_once(':').unwrap();
            let field = if field == "-" { "" } else { field };
            let ok = got.file == *name
                && got.line.to_string() == line
                && got.column.to_string() == column
                && got.field == field
                && got.message.contains(fragment);
            if !ok {
                failures.push(format!("{name}: expected `{want}`, got `{got}`"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad manifests:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

#[test]
fn hostile_input_fails_fast_with_a_position() {
    let mut billion_laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let (prev, next) = (w[0], w[1]);
        let refs = vec![format!("*{prev}"); 9].join(", ");
        billion_laughs.push_str(&format!("{next}: &{next} [{refs}]\n"));
    }
    let huge_image = with_spec(&format!("  image: {}\n", "x".repeat(2 << 20)));
    let deep_block: String = (0..100)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    let cases: Vec<(&str, String, usize, usize, &str)> = vec![
        (
            "deep flow nesting",
            "[".repeat(100_000),
            1,
            256,
            "recursion limit",
        ),
        (
            "deep block nesting",
            deep_block,
            33,
            33,
            "nested more than 32 levels",
        ),
        (
            "alias bomb",
            billion_laughs,
            5,
            12,
            "too large or too complex",
        ),
        (
            "huge scalar",
            huge_image,
            6,
            10,
            "adds up to more than 1024 KiB",
        ),
        (
            "NUL byte",
            "apiVersion: assetd/v1\0\n".into(),
            1,
            22,
            "unexpected character",
        ),
        (
            "binary garbage",
            "\u{1}\u{2}\u{7f}garbage\u{0}".into(),
            1,
            1,
            "unexpected character",
        ),
    ];
    for (what, text, line, column, fragment) in cases {
        let started = std::time::Instant::now();
        let errors = parse(&text).expect_err(what);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{what} took {:?}",
            started.elapsed()
        );
        assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
        let e = &errors[0];
        assert_eq!((e.line, e.column), (line, column), "{what}: {e}");
        assert!(e.message.contains(fragment), "{what}: {e}");
    }
}

#[test]
fn messages_escape_control_characters_and_stay_short() {
    let errors = errors_of(&format!(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: \"a\\e[31mb\"\nspec:\n  image: i\n  env: [ \"{}\" ]\n",
        "k".repeat(5000)
    ));
    assert!(errors[0].message.contains("a\\u{1b}[31mb"), "{}", errors[0]);
    assert!(errors[1].message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    assert!(errors[1].message.ends_with('…'));
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let text = "#".repeat(MAX_FILE_BYTES + 1);
    let errors = parse(&text).unwrap_err();
    assert_eq!(errors[0].line, 0);
    assert!(
        errors[0].to_string().starts_with("t.yaml: file is"),
        "{}",
        errors[0]
    );
}

#[test]
fn empty_and_comment_only_files_hold_no_assets() {
    for text in [
        "",
        "\n\n",
        "# only a comment\n# and another\n",
        "---\n",
        "---\n...\n---\n# c\n",
        "\u{feff}",
    ] {
        assert_eq!(parse(text).unwrap().len(), 0, "{text:?}");
    }
}

#[test]
fn invalid_utf8_is_reported_at_the_bad_byte() {
    let errors = parse_bytes(
        "x.yaml",
        b"a: 1\nb: \xc3\xa9\xff\n",
        &test_env,
        &test_policy(),
    )
    .unwrap_err();
    assert_eq!((errors[0].line, errors[0].column), (2, 5));
    assert!(errors[0].message.contains("0xff"));
}

#[test]
fn friendly_and_engine_spellings_give_the_same_spec() {
    let friendly = parse_data("good", "friendly.yaml").unwrap();
    let engine = parse_data("good", "engine.yaml").unwrap();
    assert_eq!(friendly[0].spec, engine[0].spec);
    assert_eq!(friendly[0].spec.hash(), engine[0].spec.hash());

    let spec = &friendly[0].spec;
    assert_eq!(spec.name.as_str(), "cnc-mill-01-agent");
    assert_eq!(spec.image, "ghcr.io/example/mtcagent:2.5");
    assert_eq!(
        spec.command.as_deref().unwrap(),
        ["mtcagent", "run", "/etc/agent dir/agent.cfg"]
    );
    assert_eq!(spec.env, ["MTC_AGENT_UUID=CNC-MILL-01", "LOG=info"]);
    assert_eq!(spec.labels.get("version").map(String::as_str), Some("1.10"));
    assert_eq!(
        spec.ports,
        [
            PortMapping {
                host: 5000,
                container: 5000,
                protocol: Protocol::Tcp
            },
            PortMapping {
                host: 5001,
                container: 5001,
                protocol: Protocol::Udp
            },
        ]
    );
    assert_eq!(spec.networks, ["factory-net", "backend"]);
    assert_eq!(
        spec.constraints,
        ["node.labels.zone == cell-3", "node.role != manager"]
    );
    assert_eq!(spec.resources.limits.nano_cpus, Some(1_000_000_000));
    assert_eq!(spec.resources.limits.memory_bytes, Some(512 << 20));
    assert_eq!(spec.resources.reservations.nano_cpus, Some(500_000_000));
    assert_eq!(spec.resources.reservations.memory_bytes, Some(128 << 20));
    assert_eq!(spec.mode, Mode::Replicated { replicas: 2 });
    assert_eq!(
        spec.mounts,
        [
            Mount {
                kind: MountKind::Bind,
                source: Some("/srv/cfg".into()),
                target: "/etc/cfg".into(),
                read_only: true,
                volume_driver: None,
                volume_labels: Default::default(),
            },
            Mount {
                kind: MountKind::Volume,
                source: Some("data".into()),
                target: "/data".into(),
                read_only: false,
                volume_driver: None,
                volume_labels: Default::default(),
            },
            Mount {
                kind: MountKind::Tmpfs,
                source: None,
                target: "/run/cache".into(),
                read_only: false,
                volume_driver: None,
                volume_labels: Default::default(),
            },
        ]
    );
    assert_eq!(
        friendly[0].pos,
        SourcePos {
            file: "friendly.yaml".into(),
            line: 5,
            column: 9
        }
    );
    assert_eq!(
        friendly[0].ports_pos[1],
        (
            5001,
            Protocol::Udp,
            SourcePos {
                file: "friendly.yaml".into(),
                line: 11,
                column: 24
            }
        )
    );
}

#[test]
fn comments_key_order_and_style_do_not_change_the_hash() {
    let a = "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a1\n  labels: {b: '2', a: '1'}\nspec:\n  image: i:1\n  env: {Y: 2, X: 1}\n  ports: {80: 8080, 443: 8443}\n";
    let b = "# leading comment\nkind: Asset   # trailing\napiVersion: \"assetd/v1\"\nspec:\n  ports:\n    443: 8443\n    \"80\": 8080\n\n  env:\n    X: \"1\"\n    Y: '2'\n  image: 'i:1'\nmetadata:\n  labels:\n    a: \"1\"\n    b: \"2\"\n  name: a1\n";
    let (a, b) = (parse_one(a), parse_one(b));
    assert_eq!(a, b);
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.env, ["X=1", "Y=2"]);
}

#[test]
fn multi_document_files_keep_document_order_and_positions() {
    let assets = parse_data("good", "multi.yaml").unwrap();
    let names: Vec<&str> = assets.iter().map(|a| a.spec.name.as_str()).collect();
    assert_eq!(names, ["press-01", "press-02", "press-03"]);
    assert_eq!(assets[1].pos.line, 17);
    // ${VAR:-default} with the variable unset.
    assert_eq!(assets[0].spec.image, "registry.local/press:1.0");
    // Map values keep their text: 1.50 is not the float 1.5.
    assert_eq!(
        assets[0].spec.env,
        ["DEBUG=false", "SCALE=1.50", "ZONE=cell-2"]
    );
    assert_eq!(assets[1].spec.mode, Mode::Global);
    assert_eq!(
        assets[1].spec.command.as_deref().unwrap(),
        ["sh", "-c", "echo $HOME hello"]
    );
    // Empty (null) optional fields are the same as absent ones.
    let p3 = &assets[2].spec;
    assert!(p3.labels.is_empty() && p3.ports.is_empty() && p3.env.is_empty());
    assert_eq!(p3.mode, Mode::Replicated { replicas: 0 });
    assert_eq!(p3.resources.limits.memory_bytes, Some(3 << 29));
    assert_eq!(p3.resources.limits.nano_cpus, Some(250_000_000));
}

#[test]
fn variables_expand_with_defaults_and_dollar_escapes() {
    let spec = parse_one(&with_spec(
        "  image: \"img:${IMAGE_TAG}\"\n  env:\n    - A=${MISSING:-fallback}\n    - B=${EMPTY:-was-empty}\n    - C=${EMPTY}\n    - D=$$HOME and $PATH and $${X}\n  mode: { replicated: { replicas: \"${REPLICAS}\" } }\n",
    ));
    assert_eq!(spec.image, "img:2.5");
    assert_eq!(
        spec.env,
        [
            "A=fallback",
            "B=was-empty",
            "C=",
            "D=$HOME and $PATH and ${X}"
        ]
    );
    assert_eq!(spec.mode, Mode::Replicated { replicas: 3 });

    let errors = errors_of(&with_spec("  image: i\n  env: [\"A=${1BAD}\"]\n"));
    assert!(
        errors[0].message.contains("is not a variable reference"),
        "{}",
        errors[0]
    );
}

#[test]
fn image_references_follow_dockers_grammar() {
    for good in [
        "i",
        "img:2.5",
        "busybox",
        "assetd-test/busybox:1",
        "ghcr.io/example/mtcagent:2.5",
        "registry.local/press:1.0",
        "localhost/app",
        "localhost:5000/team/app:v1.2-rc_3",
        "[::1]:5000/app:1",
        "Registry.Example.com/app",
        "a--b/c__d/e.f:TAG_1",
        "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "ghcr.io/x/y:2.5@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert_eq!(check_image_reference(good), Ok(()), "{good}");
    }
    for (bad, why) in [
        ("", "must not be empty"),
        ("a b", "whitespace"),
        ("a\u{7f}", "control"),
        ("a\u{feff}b", "`a\\u{feff}b` must be ASCII"),
        ("App:1", "must be lowercase"),
        ("team/App", "must be lowercase"),
        ("img:", "the tag ``"),
        ("img:-1", "the tag `-1`"),
        ("img:a/b", "`img:a` is not a registry"),
        ("img__x..y", "part `img__x..y`"),
        ("-img", "part `-img`"),
        ("img-", "part `img-`"),
        ("a___b", "part `a___b`"),
        ("team//app", "part ``"),
        ("/app", "part ``"),
        ("app/", "part ``"),
        (":1", "part ``"),
        ("a$b", "part `a$b`"),
        ("host.-x/app", "`host.-x` is not a registry"),
        ("host:99999999/app", "is not a registry"),
        ("host:/app", "is not a registry"),
        ("img@sha256:abc", "the digest"),
        ("img@sha256:", "the digest"),
        ("img@:0123456789abcdef0123456789abcdef", "the digest"),
        ("img@md5", "the digest"),
    ] {
        let got = check_image_reference(bad).expect_err(bad);
        assert!(got.contains(why), "{bad:?}: {got}");
    }
    let tag = "t".repeat(129);
    assert!(check_image_reference(&format!("img:{tag}")).is_err());
    assert_eq!(check_image_reference(&format!("img:{}", &tag[1..])), Ok(()));
    let name = "a".repeat(MAX_IMAGE_NAME_BYTES);
    assert_eq!(check_image_reference(&name), Ok(()));
    let got = check_image_reference(&format!("{name}a")).unwrap_err();
    assert!(got.contains("longer than 255"), "{got}");
    let got = check_image_reference(&"a".repeat(MAX_IMAGE_BYTES + 1)).unwrap_err();
    assert!(got.contains("513 bytes long"), "{got}");
}

#[test]
fn expansion_is_bounded_per_value_and_per_document() {
    // 15 × 4 KiB stays under the 64 KiB limit, 16 do not.
    let at_limit = parse_one(&with_spec(&format!(
        "  image: img:1\n  env: [ \"A={}\" ]\n",
        "${LONG}".repeat(15)
    )));
    assert_eq!(at_limit.env[0].len(), 2 + 15 * 4096);
    let errors = errors_of(&with_spec(&format!(
        "  image: \"{}\"\n",
        "${LONG}".repeat(1000)
    )));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].message.contains("longer than 64 KiB"),
        "{}",
        errors[0]
    );
    // Reported once per document, and each document has its own budget.
    let line = format!("\"{}\"", "${LONG}".repeat(15));
    let document = with_spec(&format!(
        "  image: img:1\n  command: [ {} ]\n",
        vec![line; 40].join(", ")
    ));
    let errors = errors_of(&format!("{document}---\n{document}"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[1].message.contains("add up to more than 1024 KiB"));
    assert_eq!(errors[0].field, "spec.command[17]");
}

#[test]
fn only_what_expansion_adds_counts_against_its_limits() {
    // A long inline script that merely mentions `$1` and `$$` grows by
    // nothing: it is bounded like any scalar, not by the 64 KiB limit.
    let script = format!("echo $1 $$; {}", "x".repeat(70 * 1024));
    let parsed = parse_one(&with_spec(&format!(
        "  image: img:1\n  command: [ \"sh\", \"-c\", \"{script}\" ]\n"
    )));
    assert_eq!(
        parsed.command.as_ref().unwrap()[2],
        script.replace("$$", "$")
    );
}

#[test]
fn expansion_is_bounded_per_file_over_many_documents() {
    let document = |i: usize| {
        format!(
            "---\napiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a{i}\nspec:\n  image: i\n  env: [ \"A={}\" ]\n",
            "${LONG}".repeat(15)
        )
    };
    let text: String = (0..300).map(document).collect();
    let errors = errors_of(&text);
    // 16 MiB holds 273 values of 15 × 4 KiB (and `A=`); each document
    // after them reports it once.
    assert_eq!(errors.len(), 300 - 273, "{:#?}", errors[0]);
    assert!(
        errors[0]
            .message
            .contains("file add up to more than 16 MiB"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].line, 273 * 8 + 8, "the env line of document 274");
}

#[test]
fn only_core_schema_tags_are_accepted() {
    let spec = parse_one(&with_spec(
        "  image: !!str img:1\n  env: !!map { A: !!int 1, B: ! 2 }\n  networks: !<tag:yaml.org,2002:seq> [ n ]\n",
    ));
    assert_eq!(spec.env, ["A=1", "B=2"]);
    let errors = errors_of(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: a1\n  labels: !!omap { a: b }\nspec:\n  image: img:1\n  env: { B: !!binary aGk= }\n  command: [ run, !x y ]\n",
    );
    let tags: Vec<(&str, &str)> = errors
        .iter()
        .filter(|e| e.message.starts_with("tag "))
        .map(|e| (e.field.as_str(), e.message.split('`').nth(1).unwrap()))
        .collect();
    assert_eq!(
        tags,
        [
            ("metadata.labels", "!!omap"),
            ("spec.env.B", "!!binary"),
            ("spec.command[1]", "!x")
        ],
        "{errors:#?}"
    );
}

#[test]
fn env_map_and_list_are_both_accepted() {
    let list = parse_one(&with_spec("  image: i\n  env: [ \"B=2\", \"A=1=one\" ]\n"));
    let map = parse_one(&with_spec("  image: i\n  env: { B: 2, A: \"1=one\" }\n"));
    // A list keeps its order; a map is sorted by key.
    assert_eq!(list.env, ["B=2", "A=1=one"]);
    assert_eq!(map.env, ["A=1=one", "B=2"]);
    let map = parse_one(&with_spec(
        "  image: i\n  env: { ON: on, T: true, F: 010, N: 1e3 }\n",
    ));
    assert_eq!(map.env, ["F=010", "N=1e3", "ON=on", "T=true"]);
}

#[test]
fn ports_are_sorted_and_protocols_come_from_the_key() {
    let spec = parse_one(&with_spec(
        "  image: i\n  ports: { \"9000/udp\": 9000, 8080: 80, \"9000\": 9001, 22: \"2222\" }\n",
    ));
    let ports: Vec<(u16, u16, Protocol)> = spec
        .ports
        .iter()
        .map(|p| (p.host, p.container, p.protocol))
        .collect();
    assert_eq!(
        ports,
        [
            (22, 2222, Protocol::Tcp),
            (8080, 80, Protocol::Tcp),
            (9000, 9001, Protocol::Tcp),
            (9000, 9000, Protocol::Udp)
        ]
    );
}

#[test]
fn bind_mounts_follow_the_policy_by_whole_path_components() {
    let manifest = |source: &str| {
        with_spec(&format!(
            "  image: i\n  mounts: [ {{ type: bind, source: {source}, target: /m }} ]\n"
        ))
    };
    let allow = |prefixes: &[&str]| Policy {
        allow_bind: prefixes.iter().map(PathBuf::from).collect(),
    };
    let ok = |source: &str, policy: &Policy| {
        parse_file("t.yaml", &manifest(source), &test_env, policy).is_ok()
    };
    assert!(ok("/srv/cfg", &allow(&["/srv"])));
    assert!(ok("/srv", &allow(&["/srv/"])));
    assert!(!ok("/srv2/cfg", &allow(&["/srv"])));
    assert!(!ok("/srv/cfg", &allow(&[])));
    assert!(ok("/etc/passwd", &allow(&["/"])));
    assert!(!ok("relative/dir", &allow(&["/"])));
    let errors = parse_file("t.yaml", &manifest("/opt/x"), &test_env, &allow(&[])).unwrap_err();
    assert!(
        errors[0].message.contains("--allow-bind PREFIX"),
        "{}",
        errors[0]
    );
}

#[test]
fn memory_sizes_and_cpus_are_exact() {
    assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
    assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
    assert_eq!(parse_memory("1.5Gi"), Ok(3 << 29));
    assert_eq!(parse_memory("64k"), Ok(64_000));
    assert_eq!(parse_memory("2Ki"), Ok(2048));
    assert_eq!(parse_memory("100b"), Ok(100));
    assert_eq!(parse_memory("7000000"), Ok(7_000_000));
    assert!(parse_memory("512m")
        .unwrap_err()
        .contains("unknown unit `m`"));
    assert!(parse_memory("0.5b")
        .unwrap_err()
        .contains("whole number of bytes"));
    assert!(parse_memory("Mi").is_err());
    let docker_style = parse_memory("512m").unwrap_err();
    assert!(docker_style.contains("`512Mi` here"), "{docker_style}");
    assert!(parse_memory("1.2.3Mi").is_err());
    assert_eq!(parse_cpus("0.5"), Some(500_000_000));
    assert_eq!(parse_cpus("2"), Some(2_000_000_000));
    assert_eq!(parse_cpus(".25"), Some(250_000_000));
    assert_eq!(parse_cpus("0.0000000001"), None);
    assert_eq!(parse_cpus("1e3"), None);
    let spec = parse_one(&with_spec(
        "  image: i\n  resources: { limits: { cpus: 2, memory: 6Mi } }\n",
    ));
    assert_eq!(spec.resources.limits.nano_cpus, Some(2_000_000_000));
}

#[test]
fn error_text_has_the_file_line_column_field_form() {
    let errors = errors_of(&with_spec("  image: i\n  ports: { 0: 80 }\n"));
    assert_eq!(
        errors[0].to_string(),
        "t.yaml:7:12: spec.ports: host port 0 is out of range 1-65535"
    );
    let whole = ManifestError::whole_file("x.yaml", "is unreadable");
    assert_eq!(whole.to_string(), "x.yaml: is unreadable");
}
