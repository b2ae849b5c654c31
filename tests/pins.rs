//! Literal pins of what assetd writes on every object it creates: the
//! spec hash (`io.assetd.spec-hash`, sha256 of the canonical JSON of a
//! `DeploySpec`) and the Swarm fingerprint label (`io.assetd.fingerprint`).
//!
//! Every other test compares a hash with a hash computed by the same
//! build, so a change of the serialisation (a field renamed, reordered or
//! added, a default spelt differently, another JSON library) keeps them
//! all green. On the fleet it does not: after the upgrade no running
//! object matches its manifest any more, and every container and service
//! of every fleet is redeployed at once. A change of one of these
//! literals is therefore a breaking change: make it only on purpose, say
//! so in the release notes, and update the literal here.

use std::collections::BTreeMap;

use assetd::engine::strategy::swarm::{service_spec, FINGERPRINT};
use assetd::engine::strategy::Ownership;
use assetd::model::spec::{
    AssetName, DeploySpec, Mode, Mount, MountKind, PortMapping, Protocol, ResourceSet, Resources,
};

/// One spec with every seed parameter set.
fn sample() -> DeploySpec {
    DeploySpec {
        name: AssetName::new("cnc-mill-01-agent").unwrap(),
        image: "ghcr.io/example/mtcagent:2.5".into(),
        env: vec!["MTC_AGENT_UUID=CNC-MILL-01".into(), "B=2".into()],
        labels: BTreeMap::from([("zone".to_string(), "cell-3".to_string())]),
        command: Some(vec![
            "mtcagent".into(),
            "run".into(),
            "/etc/agent.cfg".into(),
        ]),
        ports: vec![
            PortMapping {
                host: 5000,
                container: 5000,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                host: 5001,
                container: 5001,
                protocol: Protocol::Udp,
            },
        ],
        networks: vec!["factory-net".into()],
        constraints: vec!["node.labels.zone == cell-3".into()],
        resources: Resources {
            limits: ResourceSet {
                nano_cpus: Some(1_000_000_000),
                memory_bytes: Some(512 * 1024 * 1024),
            },
            reservations: ResourceSet {
                nano_cpus: Some(500_000_000),
                memory_bytes: Some(128 * 1024 * 1024),
            },
        },
        mode: Mode::Replicated { replicas: 2 },
        mounts: vec![
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
        ],
        healthcheck: None,
        update: None,
        user: None,
        ulimits: vec![],
        pull_policy: None,
        secrets: vec![],
        configs: vec![],
        runtime: Default::default(),
    }
}

#[test]
fn the_spec_hash_of_a_sample_spec_is_pinned() {
    // What is hashed, so that a change shows which field moved.
    assert_eq!(
        serde_json::to_string(&sample()).unwrap(),
        r#"{"name":"cnc-mill-01-agent","image":"ghcr.io/example/mtcagent:2.5","env":["MTC_AGENT_UUID=CNC-MILL-01","B=2"],"labels":{"zone":"cell-3"},"command":["mtcagent","run","/etc/agent.cfg"],"ports":[{"host":5000,"container":5000,"protocol":"tcp"},{"host":5001,"container":5001,"protocol":"udp"}],"networks":["factory-net"],"constraints":["node.labels.zone == cell-3"],"resources":{"limits":{"nano_cpus":1000000000,"memory_bytes":536870912},"reservations":{"nano_cpus":500000000,"memory_bytes":134217728}},"mode":{"replicated":{"replicas":2}},"mounts":[{"kind":"bind","source":"/srv/cfg","target":"/etc/cfg","read_only":true},{"kind":"volume","source":"data","target":"/data","read_only":false}]}"#,
        "the canonical JSON of a spec changed: every fleet would be redeployed on upgrade"
    );
    // A change here redeploys every asset of every fleet on upgrade.
    assert_eq!(
        sample().hash().0,
        "0dd8e90a3fbd8c36d396717d02e3e7227604b4005fe083161215ab7bf66f8708",
        "the spec hash changed: every running object of every fleet would be redeployed on upgrade"
    );
    // Replica count aside, the template hash is pinned too (local scaling
    // keeps containers by it).
    assert_eq!(
        sample().template_hash().0,
        "dfa7d6e3bc042ee44d5b73d8efce6724f15ad5e2f99cc2fce9ebf0e940035999",
        "the template hash changed: every local replica would be recreated on upgrade"
    );
}

#[test]
fn the_swarm_fingerprint_label_of_a_sample_spec_is_pinned() {
    let spec = sample();
    let owner = Ownership {
        hash: spec.hash(),
        source: "cell-3/mill.yaml".into(),
        revision: None,
    };
    let service = service_spec(&spec, &owner, "default", &["netid123".into()]);
    let label = service.labels.as_ref().unwrap()[FINGERPRINT].clone();
    // A change here makes every service of every Swarm fleet look drifted
    // on upgrade, and be updated (its tasks restarted).
    assert_eq!(
        label, "image=60cfd23c05a2,command=9f97c89d176d,entrypoint=74234e98afe7,env=64f52ecf70c8,labels=3fd2bc572de9,container labels=3fd2bc572de9,mounts=a5dbbd95a9f1,resources=76df57187392,constraints=1b30173a4d3d,networks=bab0b4e55b4f,ports=8af9065d418a,mode=728365a56edf",
        "the Swarm fingerprint changed: every service of every fleet would be updated on upgrade"
    );
}
