//! App files → assets: the realistic set in `tests/data/openfactory/`
//! field by field, and mistakes reported at their positions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::input::manifest::{parse_file, ManifestError, ParsedAsset, Policy};
use crate::model::spec::{Mode, Mount, MountKind, PullPolicy, Ulimit, VolumeDriver};

fn env(name: &str) -> Option<String> {
    match name {
        "OPENFACTORY_BASE_DOMAIN" => Some("factory.test".into()),
        other => crate::input::manifest::tests::test_env(other),
    }
}

fn policy() -> Policy {
    Policy {
        allow_bind: vec![PathBuf::from("/srv")],
    }
}

fn data(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/openfactory")
        .join(file);
    std::fs::read_to_string(path).unwrap()
}

fn parse(file: &str) -> Vec<ParsedAsset> {
    parse_file(file, &data(file), &env, &policy()).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// The errors of `text`, rendered.
fn errors(text: &str) -> Vec<String> {
    let result = parse_file("app.yml", text, &env, &policy());
    let errors: Vec<ManifestError> = result.expect_err("errors expected");
    errors.iter().map(ToString::to_string).collect()
}

const GIB: i64 = 1 << 30;
const MIB: i64 = 1 << 20;

#[test]
fn the_scheduler_app_maps_field_by_field() {
    let assets = parse("app_scheduler.yml");
    assert_eq!(assets.len(), 1);
    let (asset, spec) = (&assets[0], &assets[0].spec);
    assert_eq!(
        spec.name.as_str(),
        "app-scheduler",
        "the uuid in lower case"
    );
    assert_eq!(asset.pos.to_string(), "app_scheduler.yml:4:11");
    assert_eq!(spec.image, "ghcr.io/openfactoryio/scheduler:v1.0.0");
    assert_eq!(spec.pull_policy, Some(PullPolicy::IfNotPresent));
    assert_eq!(spec.user.as_deref(), Some("1234:5678"));
    assert_eq!(
        spec.env,
        [
            "APP_UUID=APP-SCHEDULER",
            "DOCKER_SERVICE=app-scheduler",
            r#"STORAGE={"cache":{"type":"local","local_path":"/srv/openfactory/cache","mount_point":"/cache"}}"#,
            "ENV=production",
            "KAFKA_BROKER=broker:29092",
            "JDBC_URL=jdbc:postgresql://db:5432/ofa?ssl=true&sslmode=require",
        ]
    );
    let labels: BTreeMap<&str, &str> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        BTreeMap::from([
            ("openfactory.uns.location", "building-a"),
            ("openfactory.uns.workcenter", "scheduler"),
            ("openfactory.uuid", "APP-SCHEDULER"),
            ("prometheus.io/path", "/metrics"),
            ("prometheus.io/port", "4000"),
            ("prometheus.io/scrape", "true"),
            ("traefik.enable", "true"),
            (
                "traefik.http.routers.ofa-app-scheduler.rule",
                "Host(`app-scheduler.factory.test`) || Host(`scheduler-dashboard.factory.test`)"
            ),
            (
                "traefik.http.routers.ofa-app-scheduler.service",
                "ofa-app-scheduler"
            ),
            (
                "traefik.http.services.ofa-app-scheduler.loadbalancer.server.port",
                "8000"
            ),
        ])
    );
    assert_eq!(
        spec.mounts,
        [Mount {
            kind: MountKind::Bind,
            source: Some("/srv/openfactory/cache".into()),
            target: "/cache".into(),
            read_only: false,
            volume_driver: None,
            volume_labels: Default::default(),
        }]
    );
    assert_eq!(spec.mode, Mode::Replicated { replicas: 2 });
    assert_eq!(spec.resources.reservations.nano_cpus, Some(250_000_000));
    assert_eq!(spec.resources.reservations.memory_bytes, Some(64 * MIB));
    assert_eq!(spec.resources.limits.nano_cpus, Some(500_000_000));
    assert_eq!(
        spec.resources.limits.memory_bytes,
        Some(128 * MIB),
        "1024-based"
    );
    assert_eq!(
        spec.ulimits,
        [Ulimit {
            name: "nofile".into(),
            soft: 4096,
            hard: 4096
        }]
    );
    assert_eq!(
        spec.constraints,
        ["node.role == manager", "node.hostname != nosuchhost"],
        "`!=` stays intact"
    );
}

#[test]
fn two_apps_of_one_file_take_openfactory_defaults() {
    let assets = parse("app_cell_tools.yml");
    let names: Vec<&str> = assets.iter().map(|a| a.spec.name.as_str()).collect();
    assert_eq!(names, ["cell3-dashboard", "cell3-alarm-notifier"]);
    let dashboard = &assets[0].spec;
    assert_eq!(dashboard.mode, Mode::Replicated { replicas: 1 });
    assert_eq!(
        dashboard.resources.reservations.nano_cpus,
        Some(500_000_000)
    );
    assert_eq!(dashboard.resources.limits.nano_cpus, Some(1_000_000_000));
    assert_eq!(
        dashboard.constraints,
        ["node.role == manager"],
        "`=` is `==`"
    );
    assert!(
        dashboard
            .env
            .contains(&"DASHBOARD_QUERY=state=ACTIVE&since==1h".to_string()),
        "values keep their `=`: {:?}",
        dashboard.env
    );
    assert_eq!(dashboard.pull_policy, None, "missing is the default");
    assert!(!dashboard.labels.keys().any(|k| k.starts_with("traefik")));
    let notifier = &assets[1].spec;
    assert_eq!(notifier.labels["prometheus.io/path"], "/stats");
    assert_eq!(notifier.labels["prometheus.io/port"], "9100");
    assert_eq!(notifier.resources.limits.memory_bytes, Some(96 * MIB));
    assert_eq!(notifier.resources.limits.nano_cpus, Some(1_000_000_000));
}

#[test]
fn nfs_storage_is_a_local_driver_volume_with_openfactorys_options() {
    let assets = parse("nfs/app_historian.yml");
    let spec = &assets[0].spec;
    assert!(
        spec.env.contains(&r#"STORAGE={"archive":{"type":"nfs","server":"deskfab.openfactory.com","remote_path":"/nfs/deskfab/archive","mount_point":"/mnt/archive","mount_options":["ro","vers=4.1"]}}"#.to_string()),
        "{:?}",
        spec.env
    );
    assert_eq!(
        spec.mode,
        Mode::Replicated { replicas: 1 },
        "${{VAR:-default}}"
    );
    assert_eq!(
        spec.mounts,
        [Mount {
            kind: MountKind::Volume,
            source: Some("nfs_deskfab_openfactory_com_nfs_deskfab_archive".into()),
            target: "/mnt/archive".into(),
            read_only: false,
            volume_driver: Some(VolumeDriver {
                name: "local".into(),
                options: BTreeMap::from([
                    ("device".into(), ":/nfs/deskfab/archive".into()),
                    (
                        "o".into(),
                        "addr=deskfab.openfactory.com,ro,vers=4.1".into()
                    ),
                    ("type".into(), "nfs".into()),
                ]),
            }),
            volume_labels: Default::default(),
        }]
    );
}

#[test]
fn the_same_app_file_parses_to_the_same_hash() {
    let a = parse("app_scheduler.yml");
    let b = parse("app_scheduler.yml");
    assert_eq!(a[0].hash, b[0].hash);
}

#[test]
fn memory_units_are_powers_of_1024_in_any_case() {
    use crate::model::spec::values::BinaryMemoryBytes;
    let parse = |t: &str| t.parse::<BinaryMemoryBytes>().map(|m| m.0);
    assert_eq!(parse("512Mi"), Ok(512 * MIB));
    assert_eq!(parse("1g"), Ok(GIB));
    assert_eq!(parse("1GB"), Ok(GIB));
    assert_eq!(parse("1.5gi"), Ok(GIB + GIB / 2));
    assert_eq!(parse("2k"), Ok(2048));
    assert_eq!(parse("2kb"), Ok(2048));
    assert_eq!(parse("100"), Ok(100));
    assert!(parse("1t").is_err());
    assert!(parse("1 Mo").is_err());
    assert!(parse("-1m").is_err());
}

#[test]
fn the_schema_memory_pattern_accepts_what_the_parser_parses() {
    use crate::model::spec::values::BinaryMemoryBytes;
    let pattern = BinaryMemoryBytes::pattern();
    let validator = jsonschema::draft7::new(&serde_json::json!({ "pattern": pattern })).unwrap();
    for sample in [
        "512Mi", "1g", "1GB", "1.5gi", "2k", "2kb", "2Ki", "100", " 64 m ", "1t", "1Mo", "-1m",
        "m", "", ".5G",
    ] {
        let parses = sample.parse::<BinaryMemoryBytes>().is_ok();
        let matches = validator.is_valid(&serde_json::json!(sample));
        assert_eq!(parses, matches, "`{sample}`");
    }
}

#[test]
fn a_typo_is_reported_at_its_position_with_a_suggestion() {
    let text = "apps:\n  scheduler:\n    uuid: APP-SCHEDULER\n    image: ghcr.io/x/scheduler:1\n    enviroment:\n      - A=1\n";
    assert_eq!(
        errors(text),
        ["app.yml:5:5: apps.scheduler.enviroment: unknown field `enviroment`; expected one of `uuid`, `image`, `image_pull_policy`, `runtime_uid`, `runtime_gid`, `uns`, `environment`, `storage`, `routing`, `metrics`, `networks`, `deploy` (did you mean `environment`?)"]
    );
    let nested = "apps:\n  a:\n    uuid: A\n    image: img:1\n    deploy:\n      resources:\n        limits:\n          open_file: 10\n";
    let got = errors(nested);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("app.yml:8:11: apps.a.deploy.resources.limits.open_file: unknown field")
            && got[0].contains("did you mean `open_files`?"),
        "{got:?}"
    );
}

#[test]
fn mistakes_are_reported_with_file_line_column_and_field() {
    let cases = [
        (
            "apps:\n  a:\n    uuid: A_B\n    image: img:1\n",
            "app.yml:3:11: apps.a.uuid: OpenFactory names the service after the uuid in lower case",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    image_pull_policy: never\n",
            "app.yml:5:24: apps.a.image_pull_policy: image pull policy `never` is not `missing` or `always`",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    runtime_uid: 1000\n",
            "app.yml:5:18: apps.a: runtime_uid and runtime_gid go together",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    storage:\n      d: {type: local, local_path: /etc, mount_point: /d}\n",
            "app.yml:6:36: apps.a.storage.d.local_path: bind mount of `/etc` refused",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    storage:\n      d: {type: s3, mount_point: /d}\n",
            "app.yml:6:17: apps.a.storage.d.type: storage type `s3` is not `local` or `nfs`",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    deploy: {resources: {limits: {memory: 1Tb}}}\n",
            "app.yml:5:43: apps.a.deploy.resources.limits.memory: memory `1Tb` must be",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    deploy: {placement: {constraints: [node.role]}}\n",
            "app.yml:5:40: apps.a.deploy.placement.constraints[0]: constraint `node.role` needs an operator",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    deploy: {resources: {reservations: {cpus: 2}}}\n",
            "app.yml:5:25: apps.a.deploy.resources: reservations.cpus (2) is above limits.cpus (1",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    metrics: {path: /m}\n",
            "app.yml:5:14: apps.a.metrics.port: missing required field `port`",
        ),
        (
            "apps:\n  a:\n    uuid: A\n    image: img:1\n    metrics: {port: \"99999\"}\n",
            "app.yml:5:21: apps.a.metrics.port: port 99999 is out of range 1-65535",
        ),
        (
            "apps:\n  a:\n    image: img:1\n",
            "app.yml:3:5: apps.a.uuid: missing required field `uuid`",
        ),
        (
            "apps: {}\nversion: 2\n",
            "app.yml:2:1: version: unknown field `version`; expected one of `apps`",
        ),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "want {want}\n got {got:#?}"
        );
    }
}

#[test]
fn routing_without_a_base_domain_says_which_variable_to_set() {
    let text =
        "apps:\n  a:\n    uuid: A\n    image: img:1\n    routing: {expose: true, port: 80}\n";
    let none = |_: &str| None;
    let errors = parse_file("app.yml", text, &none, &policy()).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "app.yml:5:14: apps.a.routing.expose: routing an app needs the base domain it is served under: set OPENFACTORY_BASE_DOMAIN in assetd's environment, as for OpenFactory"
    );
}

#[test]
fn the_order_of_storages_and_keys_changes_no_hash() {
    let a = "apps:\n  a:\n    uuid: A\n    image: img:1\n    storage:\n      x: {type: local, local_path: /srv/x, mount_point: /x}\n      y: {type: local, local_path: /srv/y, mount_point: /y}\n";
    let b = "apps:\n  a:\n    image: img:1\n    storage:\n      y: {mount_point: /y, local_path: /srv/y, type: local}\n      x: {type: local, local_path: /srv/x, mount_point: /x}\n    uuid: A\n";
    let hash = |text: &str| {
        parse_file("f.yml", text, &env, &policy()).unwrap()[0]
            .hash
            .clone()
    };
    assert_eq!(hash(a), hash(b));
}

#[test]
fn a_port_may_be_a_quoted_number_or_a_variable() {
    let text = "apps:\n  a:\n    uuid: A\n    image: img:1\n    metrics: {port: \"9100\"}\n    routing: {expose: true, port: \"${PORT:-8080}\"}\n";
    let assets = parse_file("f.yml", text, &env, &policy()).unwrap();
    let labels = &assets[0].spec.labels;
    assert_eq!(labels["prometheus.io/port"], "9100");
    assert_eq!(
        labels["traefik.http.services.ofa-a.loadbalancer.server.port"],
        "8080"
    );
}
