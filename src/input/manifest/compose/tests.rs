//! Compose files → assets and stack objects: names and labels, the six
//! interpolation forms and `.env`, anchors and merge keys, every refused
//! key at its position, and hashes that move with one service only.

use std::collections::BTreeMap;

use crate::input::manifest::{parse_documents, parse_documents_in, ParsedFile, Policy};
use crate::input::stack::ResourceSpec;

fn env(name: &str) -> Option<String> {
    match name {
        "SITE" => Some("plant7".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(text: &str) -> ParsedFile {
    parse_documents("line1/compose.yaml", text, &env, &Policy::default())
        .unwrap_or_else(|e| panic!("{e:#?}"))
}

fn errors(text: &str) -> Vec<String> {
    parse_documents("line1/compose.yaml", text, &env, &Policy::default())
        .expect_err("errors expected")
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn env_of(file: &ParsedFile, service: &str) -> Vec<String> {
    let asset = file
        .assets
        .iter()
        .find(|a| a.spec.name.as_str() == service)
        .unwrap_or_else(|| panic!("no {service}"));
    asset.spec.env.clone()
}

#[test]
fn services_are_named_and_labelled_as_stack_deploy_names_them() {
    let file = parse(
        "services:\n  broker:\n    image: eclipse-mosquitto\n    deploy: { labels: { team: controls } }\n    labels: { site: a }\nnetworks: {}\n",
    );
    let broker = &file.assets[0].spec;
    assert_eq!(broker.name.as_str(), "line1_broker");
    assert_eq!(broker.image, "eclipse-mosquitto:latest");
    assert_eq!(broker.networks, ["line1_default"]);
    assert_eq!(broker.runtime.aliases["line1_default"], ["broker"]);
    assert_eq!(broker.labels["com.docker.stack.namespace"], "line1");
    let service = broker.runtime.service_labels.as_ref().unwrap();
    assert_eq!(service["team"], "controls");
    assert_eq!(service["com.docker.stack.image"], "eclipse-mosquitto");
    assert_eq!(file.resources.len(), 1, "the default network");
    assert_eq!(file.resources[0].name, "line1_default");
}

#[test]
fn the_six_interpolation_forms_and_bare_variables() {
    let file = parse(concat!(
        "services:\n  a:\n    image: busybox:1\n    environment:\n",
        "      - PLAIN=${SITE}\n",
        "      - BARE=$SITE/x\n",
        "      - DEFAULT=${MISSING:-d1}\n",
        "      - EMPTY_DEFAULT=${EMPTY:-d2}\n",
        "      - UNSET_ONLY=${EMPTY-d3}\n",
        "      - UNSET=${MISSING-d4}\n",
        "      - REQUIRED=${SITE:?site needed}\n",
        "      - ESCAPED=$$HOME\n",
        "      - NOTHING=${MISSING}\n",
    ));
    assert_eq!(
        env_of(&file, "line1_a"),
        [
            "BARE=plant7/x",
            "DEFAULT=d1",
            "EMPTY_DEFAULT=d2",
            "ESCAPED=$HOME",
            "NOTHING=",
            "PLAIN=plant7",
            "REQUIRED=plant7",
            "UNSET=d4",
            "UNSET_ONLY=",
        ]
    );
}

#[test]
fn required_variables_are_errors_at_their_position() {
    let errs = errors("services:\n  a:\n    image: busybox:1\n    command: echo ${PLC_HOST:?set the PLC address}\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("line1/compose.yaml:4:14: services.a.command: variable `PLC_HOST` is not set: set the PLC address"),
        "{errs:?}"
    );
    let errs = errors("services:\n  a:\n    image: busybox:1\n    command: echo ${EMPTY:?}\n");
    assert!(errs[0].contains("`EMPTY` is empty"), "{errs:?}");
    let errs = errors("services:\n  a:\n    image: busybox:1\n    command: echo $1\n");
    assert!(errs[0].contains("write `$$` for a literal `$`"), "{errs:?}");
}

#[test]
fn dotenv_beside_the_file_comes_after_the_environment() {
    let dir = std::env::temp_dir().join(format!("assetd-compose-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "SITE=from-dotenv\nLINE='7'\n# comment\nexport SHIFT=night\n",
    )
    .unwrap();
    std::fs::write(dir.join("app.env"), "FROM_FILE=yes\nQUOTED=\"kept\"\n").unwrap();
    let text = "services:\n  a:\n    image: busybox:1\n    env_file: app.env\n    environment: [ \"S=${SITE}\", \"L=${LINE}\", \"N=${SHIFT}\" ]\n";
    let (parsed, side) = parse_documents_in(
        "line1/compose.yaml",
        text,
        &env,
        &Policy::default(),
        Some(&dir),
    );
    let file = parsed.unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        env_of(&file, "line1_a"),
        [
            "FROM_FILE=yes",
            "L=7",
            "N=night",
            "QUOTED=\"kept\"",
            "S=plant7"
        ]
    );
    assert_eq!(side, [dir.join(".env"), dir.join("app.env")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn anchors_merge_keys_and_extension_fields() {
    let file = parse(concat!(
        "x-base: &base\n  image: busybox:1\n  environment: { A: \"1\" }\n  x-note: ignored\n",
        "services:\n  one:\n    <<: *base\n  two:\n    <<: *base\n    image: busybox:2\n",
    ));
    assert_eq!(file.assets.len(), 2);
    assert_eq!(file.assets[1].spec.image, "busybox:2");
    assert_eq!(env_of(&file, "line1_one"), ["A=1"]);
}

#[test]
fn every_refused_key_is_an_error_at_its_position() {
    for (key, _) in super::shape::REFUSED_SERVICE_KEYS {
        let errs = errors(&format!(
            "services:\n  a:\n    image: busybox:1\n    {key}: x\n"
        ));
        assert_eq!(errs.len(), 1, "{key}: {errs:?}");
        assert!(
            errs[0].starts_with(&format!("line1/compose.yaml:4:5: services.a.{key}: the Compose key `{key}` is not applied by assetd")),
            "{errs:?}"
        );
    }
    let errs = errors("services:\n  a:\n    build: .\n");
    assert!(errs[0].contains("`build:` without `image:`"), "{errs:?}");
    let file =
        parse("services:\n  a:\n    build: .\n    image: registry.local/a:1\n    expose: [80]\n");
    assert_eq!(file.assets[0].spec.image, "registry.local/a:1");
    let notes: Vec<String> = file.notes.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].starts_with("line1/compose.yaml:3:12: services.a.build: accepted without effect: the image `registry.local/a:1` is deployed"), "{notes:?}");
    assert!(
        notes[1].contains("services.a.expose: accepted without effect"),
        "{notes:?}"
    );
    let errs = errors("services:\n  a:\n    image: busybox:1\n    imgae: x\n");
    assert!(errs[0].contains("services.a.imgae"), "{errs:?}");
}

#[test]
fn a_change_to_one_service_changes_only_its_hash() {
    let text = |tag: &str| {
        format!("services:\n  a:\n    image: busybox:1\n  b:\n    image: busybox:{tag}\n")
    };
    let before = parse(&text("1"));
    let after = parse(&text("2"));
    assert_eq!(before.assets[0].hash, after.assets[0].hash);
    assert_ne!(before.assets[1].hash, after.assets[1].hash);
    // Comments and key order change nothing.
    let reordered =
        parse("# line 1\nservices:\n  b:\n    image: busybox:1\n  a:\n    image: busybox:1\n");
    let hashes = |f: &ParsedFile| {
        f.assets
            .iter()
            .map(|a| (a.spec.name.to_string(), a.hash.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(hashes(&before), hashes(&reordered));
}

#[test]
fn external_objects_are_referred_to_and_never_declared() {
    let file = parse(concat!(
        "services:\n  a:\n    image: busybox:1\n    networks: [plant]\n    secrets: [key]\n",
        "networks:\n  plant: { external: true, name: plant-net }\n",
        "secrets:\n  key: { external: true }\n",
    ));
    assert!(file.resources.is_empty(), "{:?}", file.resources);
    let refs: Vec<&str> = file.assets[0]
        .references
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(refs, ["plant-net", "key"]);
    let errs = errors("services:\n  a:\n    image: busybox:1\nnetworks:\n  n: { external: true, driver: overlay }\n");
    assert!(errs[0].contains("`external: true` network"), "{errs:?}");
}

#[test]
fn project_secrets_and_configs_become_stack_objects() {
    let file = parse(concat!(
        "services:\n  a:\n    image: busybox:1\n    secrets: [pw]\n    configs: [{ source: cfg, target: /etc/a.ini }]\n",
        "secrets:\n  pw: { file: ./pw.txt }\n",
        "configs:\n  cfg: { file: ./a.ini }\n",
    ));
    let kinds: Vec<(String, bool)> = file
        .resources
        .iter()
        .map(|r| (r.name.clone(), matches!(r.spec, ResourceSpec::Secret(_))))
        .collect();
    assert!(kinds.contains(&("line1_pw".into(), true)), "{kinds:?}");
    assert!(kinds.contains(&("line1_cfg".into(), false)), "{kinds:?}");
    let spec = &file.assets[0].spec;
    assert_eq!(spec.secrets[0].target, "/run/secrets/pw");
    assert_eq!(spec.secrets[0].mode, 0o444);
    assert_eq!(spec.configs[0].source, "line1_cfg");
}

#[test]
fn a_file_at_the_top_needs_a_project_name() {
    let errs = parse_documents(
        "compose.yaml",
        "services:\n  a:\n    image: busybox:1\n",
        &env,
        &Policy::default(),
    )
    .expect_err("no project");
    assert!(errs[0].to_string().contains("needs `name:`"), "{errs:?}");
    let file = parse_documents(
        "compose.yaml",
        "name: Line-2\nservices:\n  a:\n    image: busybox:1\n",
        &env,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(file.assets[0].spec.name.as_str(), "line-2_a");
}

#[test]
fn a_service_others_wait_to_complete_is_a_job() {
    let file = parse(concat!(
        "services:\n  migrate:\n    image: busybox:1\n    command: [sh, -c, 'echo ok']\n",
        "  app:\n    image: busybox:1\n    depends_on:\n      migrate: { condition: service_completed_successfully }\n",
    ));
    let migrate = file
        .assets
        .iter()
        .find(|a| a.spec.name.as_str() == "line1_migrate")
        .unwrap();
    let app = file
        .assets
        .iter()
        .find(|a| a.spec.name.as_str() == "line1_app")
        .unwrap();
    assert!(migrate.spec.is_job());
    assert_eq!(migrate.hash, migrate.spec.hash(), "the hash is the job's");
    assert!(!app.spec.is_job());
    assert_eq!(app.depends_on[0].0.as_str(), "line1_migrate");
}
