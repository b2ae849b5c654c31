//! The local strategy against the real engine: every seed parameter, each
//! observed with `docker inspect`, and the reconcile cases of the core.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use assetd::core::plan::ActionKind;
use assetd::engine::strategy::{DeploymentStrategy, Removed};
use assetd::model::spec::AssetName;
use bollard::models::{ContainerCreateBody, MountType, NetworkCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListNetworksOptionsBuilder};
use common::{TestEnv, IMAGE_1, IMAGE_2, TEST_LABEL};

fn kinds(pass: &assetd::reconcile::PassReport) -> Vec<ActionKind> {
    pass.outcomes.iter().map(|o| o.kind).collect()
}

fn assert_no_failures(pass: &assetd::reconcile::PassReport) {
    let failures: Vec<String> = pass
        .outcomes
        .iter()
        .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.name)))
        .collect();
    assert!(failures.is_empty(), "failures: {failures:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_name_and_ownership_labels_are_set() {
    let env = TestEnv::new("lc-image").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Create]);

    let c = env.inspect(&env.name("a")).await;
    let config = c.config.unwrap();
    assert_eq!(config.image.as_deref(), Some(IMAGE_1));
    assert_eq!(
        c.name.as_deref(),
        Some(format!("/{}", env.name("a")).as_str())
    );
    assert!(c.state.unwrap().running.unwrap());
    let labels = config.labels.unwrap();
    assert_eq!(labels["io.assetd.managed"], "true");
    assert_eq!(labels["io.assetd.asset"], env.name("a"));
    assert_eq!(labels["io.assetd.source"], "a.yaml");
    assert_eq!(labels["io.assetd.spec-hash"].len(), 64);
    assert_eq!(labels[TEST_LABEL], env.prefix);
}

#[tokio::test(flavor = "multi_thread")]
async fn env_list_and_map_reach_the_container() {
    let env = TestEnv::new("lc-env").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  env: [ \"MTC_AGENT_UUID=CNC-MILL-01\", \"EMPTY=\" ]\n",
        ),
    );
    env.write(
        "b.yaml",
        &env.asset("b", IMAGE_1, "  env:\n    ZONE: cell-3\n    PORT: 5000\n"),
    );
    assert_no_failures(&env.apply().await);
    let a = env
        .inspect(&env.name("a"))
        .await
        .config
        .unwrap()
        .env
        .unwrap();
    assert!(
        a.contains(&"MTC_AGENT_UUID=CNC-MILL-01".to_string()),
        "{a:?}"
    );
    assert!(a.contains(&"EMPTY=".to_string()), "{a:?}");
    let b = env
        .inspect(&env.name("b"))
        .await
        .config
        .unwrap()
        .env
        .unwrap();
    assert!(b.contains(&"ZONE=cell-3".to_string()), "{b:?}");
    assert!(b.contains(&"PORT=5000".to_string()), "{b:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_labels_are_set_beside_ours() {
    let env = TestEnv::new("lc-labels").await;
    let text = format!(
        "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {}\n  labels:\n    {TEST_LABEL}: {}\n    zone: cell-3\n    traefik.http.routers.x.rule: \"Host(`x`)\"\nspec:\n  image: {IMAGE_1}\n",
        env.name("a"),
        env.prefix
    );
    env.write("a.yaml", &text);
    assert_no_failures(&env.apply().await);
    let labels = env
        .inspect(&env.name("a"))
        .await
        .config
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(labels["zone"], "cell-3");
    assert_eq!(labels["traefik.http.routers.x.rule"], "Host(`x`)");
}

#[tokio::test(flavor = "multi_thread")]
async fn command_is_split_like_a_shell_and_not_run_by_one() {
    let env = TestEnv::new("lc-cmd").await;
    let text = env.asset(
        "a",
        IMAGE_1,
        "  command: \"sh -c 'echo \\\"hi there\\\" > /tmp/x; sleep 3600'\"\n",
    );
    env.write("a.yaml", &text);
    env.write(
        "b.yaml",
        &env.asset("b", IMAGE_1, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply().await);
    let a = env
        .inspect(&env.name("a"))
        .await
        .config
        .unwrap()
        .cmd
        .unwrap();
    assert_eq!(
        a,
        vec!["sh", "-c", "echo \"hi there\" > /tmp/x; sleep 3600"]
    );
    let b = env
        .inspect(&env.name("b"))
        .await
        .config
        .unwrap()
        .cmd
        .unwrap();
    assert_eq!(b, vec!["sleep", "3600"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn published_port_answers_on_the_host() {
    let env = TestEnv::new("lc-ports").await;
    let text = env.asset(
        "web",
        IMAGE_1,
        "  command: httpd -f -p 80 -h /etc\n  ports: { 18311: 80, \"18312/udp\": 5000 }\n",
    );
    env.write("a.yaml", &text);
    assert_no_failures(&env.apply().await);
    let c = env.inspect(&env.name("web")).await;
    let bindings = c.host_config.unwrap().port_bindings.unwrap();
    let tcp = bindings["80/tcp"].as_ref().unwrap();
    assert_eq!(tcp[0].host_port.as_deref(), Some("18311"));
    let udp = bindings["5000/udp"].as_ref().unwrap();
    assert_eq!(udp[0].host_port.as_deref(), Some("18312"));

    // The port really serves: busybox httpd answers a GET through it.
    let body = common::eventually(
        "httpd on 127.0.0.1:18311",
        Duration::from_secs(10),
        || async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect("127.0.0.1:18311")
                .await
                .ok()?;
            s.write_all(b"GET /assetd-test-version HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            out.contains("200").then_some(out)
        },
    )
    .await;
    assert!(
        body.trim_end().ends_with('1'),
        "served the :1 image's file: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_network_is_attached() {
    let env = TestEnv::new("lc-nets").await;
    let nets = [env.name("front"), env.name("back")];
    for net in &nets {
        env.docker
            .create_network(NetworkCreateRequest {
                name: net.clone(),
                labels: Some(HashMap::from([(
                    TEST_LABEL.to_string(),
                    env.prefix.clone(),
                )])),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            &format!("  networks: [ {}, {} ]\n", nets[0], nets[1]),
        ),
    );
    let pass = env.apply().await;
    let c = env.inspect(&env.name("a")).await;
    let attached = c.network_settings.unwrap().networks.unwrap();
    remove_networks(&env).await;
    assert_no_failures(&pass);
    assert!(attached.contains_key(&nets[0]), "{:?}", attached.keys());
    assert!(attached.contains_key(&nets[1]), "{:?}", attached.keys());
    assert_eq!(attached.len(), 2);
}

async fn remove_networks(env: &TestEnv) {
    // The container must go first: a network in use cannot be removed.
    common::cleanup(&env.docker, &env.prefix).await;
    let filters = HashMap::from([("label", vec![format!("{TEST_LABEL}={}", env.prefix)])]);
    let networks = env
        .docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    for n in networks {
        let _ = env.docker.remove_network(&n.id.unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_network_is_held_at_plan_time_and_others_converge() {
    let env = TestEnv::new("lc-nonet").await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  networks: [ no-such-net-lc ]\n"),
    );
    env.write("b.yaml", &env.asset("b", IMAGE_1, ""));
    let pass = env.apply().await;
    assert_no_failures(&pass);
    let held = pass
        .plan
        .actions
        .iter()
        .find(|a| a.name.as_str() == env.name("a"))
        .expect("a is held");
    let reason = held.op.to_string();
    assert!(
        reason.contains(
            "a.yaml:9:15: spec.networks[0]: network `no-such-net-lc` is neither declared"
        ),
        "{reason}"
    );
    assert!(env
        .inspect(&env.name("b"))
        .await
        .state
        .unwrap()
        .running
        .unwrap());
    assert_eq!(env.containers().await.len(), 1, "nothing was created for a");
}

#[tokio::test(flavor = "multi_thread")]
async fn constraints_are_ignored_with_a_warning() {
    let env = TestEnv::new("lc-constr").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  constraints: [ \"node.labels.zone == cell-3\", \"node.role != manager\" ]\n",
        ),
    );
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert!(pass.outcomes[0]
        .warnings
        .iter()
        .any(|w| w.contains("constraints")));
    assert!(env
        .inspect(&env.name("a"))
        .await
        .state
        .unwrap()
        .running
        .unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_limits_and_reservations_are_set() {
    let env = TestEnv::new("lc-res").await;
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  resources:\n    limits: { cpus: 0.5, memory: 64Mi }\n    reservations: { memory: 16Mi }\n",
        ),
    );
    env.write(
        "b.yaml",
        &env.asset(
            "b",
            IMAGE_1,
            "  resources:\n    Limits: { NanoCPUs: 250000000, MemoryBytes: 33554432 }\n",
        ),
    );
    assert_no_failures(&env.apply().await);
    let a = env.inspect(&env.name("a")).await.host_config.unwrap();
    assert_eq!(a.nano_cpus, Some(500_000_000));
    assert_eq!(a.memory, Some(64 * 1024 * 1024));
    assert_eq!(a.memory_reservation, Some(16 * 1024 * 1024));
    let b = env.inspect(&env.name("b")).await.host_config.unwrap();
    assert_eq!(b.nano_cpus, Some(250_000_000));
    assert_eq!(b.memory, Some(32 * 1024 * 1024));
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_scale_up_to_three_and_back_to_one() {
    let env = TestEnv::new("lc-repl").await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  mode: { replicated: { replicas: 3 } }\n"),
    );
    assert_no_failures(&env.apply().await);
    let mut names: Vec<String> = env
        .containers()
        .await
        .iter()
        .map(|c| {
            c.names.as_ref().unwrap()[0]
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    names.sort();
    let base = env.name("a");
    assert_eq!(
        names,
        vec![
            format!("{base}-1"),
            format!("{base}-2"),
            format!("{base}-3")
        ]
    );

    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  mode: { Replicated: { Replicas: 1 } }\n"),
    );
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    let containers = env.containers().await;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].names.as_ref().unwrap()[0], format!("/{base}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn global_mode_runs_one_container() {
    let env = TestEnv::new("lc-global").await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  mode: { global: {} }\n"),
    );
    assert_no_failures(&env.apply().await);
    assert_eq!(env.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_volume_and_tmpfs_mounts_are_set() {
    let mut env = TestEnv::new("lc-mounts").await;
    let host_dir = env.root.join("cfg");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("agent.cfg"), "x").unwrap();
    env.allow_bind = vec![env.root.clone()];
    let volume = env.name("data");
    env.write(
        "volume.yaml",
        &format!(
            "apiVersion: assetd/v1\nkind: Volume\nmetadata: {{ name: {volume} }}\nspec: {{}}\n"
        ),
    );
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            &format!(
                "  mounts:\n    - {{ type: bind, source: {}, target: /etc/cfg, readOnly: true }}\n    - {{ type: volume, source: {volume}, target: /data }}\n    - {{ Type: tmpfs, Target: /scratch }}\n",
                host_dir.display()
            ),
        ),
    );
    let pass = env.apply().await;
    assert_no_failures(&pass);
    let c = env.inspect(&env.name("a")).await;
    let mounts = c.host_config.unwrap().mounts.unwrap();
    let by_target: HashMap<String, _> = mounts
        .into_iter()
        .map(|m| (m.target.clone().unwrap(), m))
        .collect();
    let bind = &by_target["/etc/cfg"];
    assert_eq!(bind.typ, Some(MountType::BIND));
    assert_eq!(bind.source.as_deref(), Some(host_dir.to_str().unwrap()));
    assert_eq!(bind.read_only, Some(true));
    let vol = &by_target["/data"];
    assert_eq!(vol.typ, Some(MountType::VOLUME));
    assert_eq!(vol.source.as_deref(), Some(volume.as_str()));
    assert_eq!(by_target["/scratch"].typ, Some(MountType::TMPFS));
    common::cleanup(&env.docker, &env.prefix).await;
    let _ = env
        .docker
        .remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_change_leaves_exactly_one_container_with_the_new_image() {
    let env = TestEnv::new("lc-upd-img").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply().await);
    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    assert_eq!(
        pass.outcomes[0].reason,
        format!("spec.image: {IMAGE_1} → {IMAGE_2}")
    );
    let containers = env.containers().await;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some(IMAGE_2));
}

#[tokio::test(flavor = "multi_thread")]
async fn env_change_leaves_exactly_one_container_with_the_new_env() {
    let env = TestEnv::new("lc-upd-env").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, "  env: [ A=1 ]\n"));
    assert_no_failures(&env.apply().await);
    env.write("a.yaml", &env.asset("a", IMAGE_1, "  env: [ A=2 ]\n"));
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    let containers = env.containers().await;
    assert_eq!(containers.len(), 1);
    let e = env
        .inspect(containers[0].id.as_ref().unwrap())
        .await
        .config
        .unwrap()
        .env
        .unwrap();
    assert!(e.contains(&"A=2".to_string()), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_manifest_removes_only_its_own_container() {
    let env = TestEnv::new("lc-prune").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    env.write("keep.yaml", &env.asset("keep", IMAGE_1, ""));
    assert_no_failures(&env.apply().await);
    // An unmanaged container whose name looks like ours.
    let lookalike = format!("{}-1", env.name("a"));
    let body = ContainerCreateBody {
        image: Some(IMAGE_1.into()),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        labels: Some(HashMap::from([
            (TEST_LABEL.to_string(), env.prefix.clone()),
            ("io.assetd.asset".to_string(), env.name("a")),
        ])),
        ..Default::default()
    };
    env.docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&lookalike)
                    .build(),
            ),
            body,
        )
        .await
        .unwrap();

    env.remove("a.yaml");
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Remove]);
    let mut left: Vec<String> = env
        .containers()
        .await
        .iter()
        .map(|c| {
            c.names.as_ref().unwrap()[0]
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    left.sort();
    let mut expected = vec![lookalike, env.name("keep")];
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_file_keeps_the_last_valid_deployment_running() {
    let env = TestEnv::new("lc-invalid").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply().await);
    let before = env.containers().await[0].id.clone();

    env.write("a.yaml", &env.asset("a", IMAGE_2, "  bogus: 1\n"));
    let pass = env.apply().await;
    let errors = pass.desired.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "a.yaml");
    assert_eq!(errors[0].line, 9);
    assert!(errors[0].to_string().contains("bogus"), "{}", errors[0]);
    assert_eq!(kinds(&pass), vec![ActionKind::Hold]);
    let after = env.containers().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before);
    assert_eq!(after[0].image.as_deref(), Some(IMAGE_1));
}

#[tokio::test(flavor = "multi_thread")]
async fn comment_and_key_order_changes_write_nothing() {
    let env = TestEnv::new("lc-noop").await;
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  env: [ A=1 ]\n  ports: { 18321: 80 }\n"),
    );
    assert_no_failures(&env.apply().await);
    let before = env.inspect(&env.name("a")).await;

    let reordered = format!(
        "# a comment\nkind: Asset   # trailing\napiVersion: assetd/v1\nspec:\n  ports: {{ 18321: 80 }}\n  env: [ A=1 ]\n  image: {IMAGE_1}\nmetadata:\n  labels:\n    {TEST_LABEL}: {}\n  name: {}\n",
        env.prefix,
        env.name("a")
    );
    env.write("a.yaml", &reordered);
    let pass = env.apply().await;
    assert!(pass.outcomes.is_empty(), "{:?}", pass.outcomes);
    let after = env.inspect(&env.name("a")).await;
    assert_eq!(after.id, before.id);
    assert_eq!(after.created, before.created);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_removed_by_hand_is_repaired() {
    let env = TestEnv::new("lc-repair").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply().await);
    common::cleanup(&env.docker, &env.prefix).await;
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Repair]);
    assert!(env
        .inspect(&env.name("a"))
        .await
        .state
        .unwrap()
        .running
        .unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_container_is_started_again() {
    let env = TestEnv::new("lc-stopped").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply().await);
    let id = env.containers().await[0].id.clone().unwrap();
    env.docker
        .stop_container(
            &id,
            Some(
                bollard::query_parameters::StopContainerOptionsBuilder::default()
                    .t(0)
                    .build(),
            ),
        )
        .await
        .unwrap();
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Repair]);
    assert!(
        pass.outcomes[0].reason.contains("exited"),
        "{}",
        pass.outcomes[0].reason
    );
    let c = env.inspect(&id).await;
    assert!(
        c.state.unwrap().running.unwrap(),
        "the same container runs again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_container_with_our_name_is_never_touched() {
    let env = TestEnv::new("lc-foreign").await;
    let name = env.name("a");
    let body = ContainerCreateBody {
        image: Some(IMAGE_1.into()),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        labels: Some(HashMap::from([(
            TEST_LABEL.to_string(),
            env.prefix.clone(),
        )])),
        ..Default::default()
    };
    let foreign = env
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .unwrap();
    // Running, so a stop or restart of it would show.
    env.docker.start_container(&foreign.id, None).await.unwrap();
    let before = env.inspect(&name).await.state.unwrap();
    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));
    let pass = env.apply().await;
    assert!(pass.outcomes[0]
        .error
        .as_ref()
        .unwrap()
        .contains("not managed by this assetd instance"));
    let c = env.inspect(&name).await;
    assert_eq!(c.id.as_deref(), Some(foreign.id.as_str()));
    assert_eq!(c.config.unwrap().image.as_deref(), Some(IMAGE_1));
    let after = c.state.unwrap();
    assert_eq!(after.running, Some(true));
    assert_eq!(
        after.started_at, before.started_at,
        "never stopped or restarted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_an_absent_asset_is_success() {
    let env = TestEnv::new("lc-absent").await;
    let removed = match env.local() {
        assetd::engine::strategy::AnyStrategy::Local(local) => local
            .remove(&AssetName::new(&env.name("nothing")).unwrap())
            .await
            .unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(removed, Removed::Absent);
}

/// Moves `from` to `to` inside the manifests directory, unchanged.
fn move_manifest(env: &TestEnv, from: &str, to: &str) {
    let to = env.manifests.join(to);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(env.manifests.join(from), to).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_file_made_invalid_removes_nothing_and_holds_every_removal() {
    let env = TestEnv::new("lc-moved").await;
    env.write("keep.yaml", &env.asset("keep", IMAGE_1, ""));
    env.write("gone.yaml", &env.asset("gone", IMAGE_1, ""));
    assert_no_failures(&env.apply().await);
    let keep = env.inspect(&env.name("keep")).await.id;

    // An unchanged move is a no-op for Docker; the store follows it.
    move_manifest(&env, "keep.yaml", "sub/keep.yaml");
    let pass = env.apply().await;
    assert!(pass.outcomes.is_empty(), "{:?}", pass.outcomes);
    let name = AssetName::new(&env.name("keep")).unwrap();
    assert_eq!(
        env.store.get(&name).and_then(|r| r.source).as_deref(),
        Some("sub/keep.yaml")
    );

    // Broken in its new place, while another file is deleted: nothing at
    // all is removed, and the hold names the file that blocks removals.
    env.write(
        "sub/keep.yaml",
        &env.asset("keep", IMAGE_1, "  image: [unclosed\n"),
    );
    env.remove("gone.yaml");
    let pass = env.apply().await;
    assert!(
        pass.outcomes.iter().all(|o| o.kind == ActionKind::Hold),
        "{:?}",
        pass.outcomes
    );
    let gone = pass
        .outcomes
        .iter()
        .find(|o| o.name.as_str() == env.name("gone"))
        .expect("the deleted file's asset is held");
    assert!(gone.reason.contains("sub/keep.yaml"), "{}", gone.reason);
    assert_eq!(env.inspect(&env.name("keep")).await.id, keep);
    assert_eq!(env.containers().await.len(), 2, "nothing removed");

    // Fixed: the deleted file's asset goes, the moved one stays.
    env.write("sub/keep.yaml", &env.asset("keep", IMAGE_1, ""));
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Remove]);
    assert_eq!(env.inspect(&env.name("keep")).await.id, keep);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_strategy_never_lists_swarm_task_containers() {
    use bollard::models::{ServiceSpec, TaskSpec, TaskSpecContainerSpec};
    let env = TestEnv::new("lc-swarmtask").await;
    env.write("other.yaml", &env.asset("other", IMAGE_1, ""));
    // A service of the same instance: its task containers carry the
    // service's ownership labels.
    let name = env.name("svc");
    let labels: HashMap<String, String> = HashMap::from([
        ("io.assetd.managed".into(), "true".into()),
        ("io.assetd.instance".into(), env.prefix.clone()),
        ("io.assetd.asset".into(), name.clone()),
        (TEST_LABEL.into(), env.prefix.clone()),
    ]);
    env.docker
        .create_service(
            ServiceSpec {
                name: Some(name.clone()),
                labels: Some(labels.clone()),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(IMAGE_1.into()),
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let task = common::eventually(
        "the service's task container",
        Duration::from_secs(60),
        || async {
            env.containers()
                .await
                .into_iter()
                .find(|c| {
                    c.labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key("com.docker.swarm.task.id"))
                        && c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                })
                .and_then(|c| c.id)
        },
    )
    .await;

    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert!(
        pass.outcomes.iter().all(|o| o.name.as_str() != name),
        "the task container is the Swarm's: {:?}",
        pass.outcomes
    );
    let still = env.inspect(&task).await;
    assert_eq!(still.state.and_then(|s| s.running), Some(true));
}

/// Container name → ID of this test's containers.
async fn ids_by_name(env: &TestEnv) -> std::collections::BTreeMap<String, String> {
    env.containers()
        .await
        .into_iter()
        .map(|c| {
            (
                c.names.unwrap()[0].trim_start_matches('/').to_string(),
                c.id.unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_touches_only_the_replicas_concerned_and_a_rename_by_hand_is_undone() {
    let env = TestEnv::new("lc-scale").await;
    let base = env.name("a");
    let replicas = |n: u64| {
        env.asset(
            "a",
            IMAGE_1,
            &format!("  mode: {{ replicated: {{ replicas: {n} }} }}\n"),
        )
    };
    env.write("a.yaml", &replicas(2));
    assert_no_failures(&env.apply().await);
    let two = ids_by_name(&env).await;
    assert_eq!(two.len(), 2);

    // 2 → 3: the two keep their containers; one is added.
    env.write("a.yaml", &replicas(3));
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    let three = ids_by_name(&env).await;
    assert_eq!(three.len(), 3);
    for (name, id) in &two {
        assert_eq!(three.get(name), Some(id), "{name} kept");
    }
    assert!(
        env.apply().await.outcomes.is_empty(),
        "converged: nothing more to do"
    );

    // 3 → 2: only the third goes.
    env.write("a.yaml", &replicas(2));
    assert_no_failures(&env.apply().await);
    assert_eq!(ids_by_name(&env).await, two);
    assert!(env.apply().await.outcomes.is_empty());

    // A replica removed by hand is the only one recreated.
    env.docker
        .remove_container(
            &format!("{base}-2"),
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Repair]);
    let repaired = ids_by_name(&env).await;
    assert_eq!(
        repaired.get(&format!("{base}-1")),
        two.get(&format!("{base}-1"))
    );
    assert_eq!(repaired.len(), 2);

    // 2 → 1: the first is renamed, not recreated.
    env.write("a.yaml", &replicas(1));
    assert_no_failures(&env.apply().await);
    let one = ids_by_name(&env).await;
    assert_eq!(one.len(), 1);
    assert_eq!(
        one.get(&base),
        two.get(&format!("{base}-1")),
        "renamed, same container"
    );
    assert!(env.apply().await.outcomes.is_empty());

    // `docker rename` by hand is drift, undone by a rename back.
    env.docker
        .rename_container(
            &base,
            bollard::query_parameters::RenameContainerOptionsBuilder::default()
                .name(&format!("{base}-by-hand"))
                .build(),
        )
        .await
        .unwrap();
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Repair]);
    assert_eq!(
        ids_by_name(&env).await,
        one,
        "the same container, named back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_of_another_instance_is_never_touched_and_the_error_names_its_owner() {
    let env = TestEnv::new("lc-otherinst").await;
    let name = env.name("a");
    let body = ContainerCreateBody {
        image: Some(IMAGE_1.into()),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        labels: Some(HashMap::from([
            (TEST_LABEL.to_string(), env.prefix.clone()),
            ("io.assetd.managed".to_string(), "true".to_string()),
            ("io.assetd.instance".to_string(), "cell-9".to_string()),
            ("io.assetd.asset".to_string(), name.clone()),
        ])),
        ..Default::default()
    };
    let foreign = env
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .unwrap();
    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));
    let pass = env.apply().await;
    let error = pass.outcomes[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("belongs to assetd instance `cell-9`"),
        "{error}"
    );
    let c = env.inspect(&name).await;
    assert_eq!(c.id.as_deref(), Some(foreign.id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_up_from_zero_is_reported_as_an_update_of_the_mode() {
    let env = TestEnv::new("lc-fromzero").await;
    let replicas = |n: u64| {
        env.asset(
            "a",
            IMAGE_1,
            &format!("  mode: {{ replicated: {{ replicas: {n} }} }}\n"),
        )
    };
    env.write("a.yaml", &replicas(1));
    assert_no_failures(&env.apply().await);
    env.write("a.yaml", &replicas(0));
    assert_no_failures(&env.apply().await);
    assert!(env.containers().await.is_empty());
    env.write("a.yaml", &replicas(1));
    let pass = env.apply().await;
    assert_no_failures(&pass);
    assert_eq!(kinds(&pass), vec![ActionKind::Update]);
    assert!(
        pass.outcomes[0].reason.contains("spec.mode")
            && !pass.outcomes[0].reason.contains("removed outside"),
        "{}",
        pass.outcomes[0].reason
    );
    assert_eq!(env.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpullable_image_on_update_leaves_the_running_container_running() {
    let env = TestEnv::new("lc-badtag").await;
    env.write("a.yaml", &env.asset("a", IMAGE_1, ""));
    assert_no_failures(&env.apply().await);
    let before = env.inspect(&env.name("a")).await.id;

    env.write(
        "a.yaml",
        &env.asset("a", "127.0.0.1:9/assetd-test/busybox:nope", ""),
    );
    let pass = env.apply().await;
    let error = pass.outcomes[0].error.clone().expect("the update fails");
    assert!(error.contains("pull image"), "Docker's reason: {error}");
    let c = env.inspect(&env.name("a")).await;
    assert_eq!(c.id, before, "the old container is untouched");
    assert_eq!(c.state.and_then(|s| s.running), Some(true));

    // Fixing the tag converges.
    env.write("a.yaml", &env.asset("a", IMAGE_2, ""));
    assert_no_failures(&env.apply().await);
    let c = env.inspect(&env.name("a")).await;
    assert_eq!(c.config.and_then(|c| c.image).as_deref(), Some(IMAGE_2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_that_crashes_is_rolled_back_and_the_old_one_runs_on() {
    let env = TestEnv::new("lc-rollback").await;
    let a = env.name("a");
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply().await);
    let before = env.inspect(&a).await.id;

    // No host port: start-first. The candidate exits 3 inside the gate.
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_2, "  command: [sh, -c, \"exit 3\"]\n"),
    );
    let pass = env.apply().await;
    let error = pass.outcomes[0]
        .error
        .clone()
        .expect("the update is rolled back");
    assert!(
        error.contains("rolled back") && error.contains("exited 3"),
        "{error}"
    );
    let c = env.inspect(&a).await;
    assert_eq!(c.id, before, "the old container runs on");
    assert_eq!(c.state.and_then(|s| s.running), Some(true));
    assert_eq!(env.containers().await.len(), 1, "no candidate left");

    // Not deployed again: held, saying why, until the manifest changes.
    let pass = env.apply().await;
    assert_eq!(kinds(&pass), vec![ActionKind::Hold]);
    assert!(
        pass.outcomes[0].reason.contains("rolled back"),
        "{}",
        pass.outcomes[0].reason
    );
    assert_eq!(env.inspect(&a).await.id, before);

    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_2, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply().await);
    let c = env.inspect(&a).await;
    assert_ne!(c.id, before);
    assert_eq!(c.config.and_then(|c| c.image).as_deref(), Some(IMAGE_2));
    assert_eq!(env.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_host_port_the_old_version_is_stopped_first_and_started_again_on_failure() {
    let env = TestEnv::new("lc-stopfirst").await;
    let a = env.name("a");
    let port = "  ports: { 18351: 80 }\n";
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            &format!("  command: httpd -f -p 80 -h /etc\n{port}"),
        ),
    );
    assert_no_failures(&env.apply().await);
    let before = env.inspect(&a).await.id;

    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_2,
            &format!("  command: [sh, -c, \"exit 3\"]\n{port}"),
        ),
    );
    let pass = env.apply().await;
    let error = pass.outcomes[0].error.clone().expect("rolled back");
    assert!(error.contains("exited 3"), "{error}");
    let c = env.inspect(&a).await;
    assert_eq!(c.id, before, "the old container is started again");
    assert_eq!(c.state.and_then(|s| s.running), Some(true));
    let answer = tokio::net::TcpStream::connect("127.0.0.1:18351").await;
    assert!(answer.is_ok(), "the old version serves its port again");

    // A good version passes the gate and takes the port.
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_2,
            &format!("  command: httpd -f -p 80 -h /etc\n{port}"),
        ),
    );
    assert_no_failures(&env.apply().await);
    let c = env.inspect(&a).await;
    assert_eq!(c.config.and_then(|c| c.image).as_deref(), Some(IMAGE_2));
    assert_eq!(env.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_left_by_an_interrupted_update_is_removed_and_the_update_redone() {
    let env = TestEnv::new("lc-candidate").await;
    let a = env.name("a");
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply().await);
    // What a kill -9 between "candidate started" and "swap" leaves.
    let labels = env.inspect(&a).await.config.unwrap().labels.unwrap();
    env.docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&format!("{a}.assetd-candidate"))
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(IMAGE_2.into()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_2, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply().await);
    let names: Vec<String> = ids_by_name(&env).await.into_keys().collect();
    assert_eq!(names, vec![a.clone()], "exactly the wanted container");
    let c = env.inspect(&a).await;
    assert_eq!(c.config.and_then(|c| c.image).as_deref(), Some(IMAGE_2));
    assert!(env.apply().await.outcomes.is_empty(), "converged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_must_be_healthy_before_it_replaces_the_old_one() {
    let env = TestEnv::new("lc-health").await;
    let a = env.name("a");
    let health = |test: &str| {
        format!("  command: [sleep, \"3600\"]\n  healthcheck: {{ test: [CMD, {test}], interval: 500ms, timeout: 1s, retries: 1 }}\n")
    };
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply().await);
    let before = env.inspect(&a).await.id;

    // Failing its healthcheck: rolled back, the old one runs on.
    env.write("a.yaml", &env.asset("a", IMAGE_2, &health("\"false\"")));
    let pass = env.apply().await;
    let error = pass.outcomes[0].error.clone().expect("rolled back");
    assert!(error.contains("unhealthy"), "{error}");
    assert_eq!(env.inspect(&a).await.id, before);
    assert_eq!(env.containers().await.len(), 1);

    // Passing it: the update completes, with the healthcheck set.
    env.write("a.yaml", &env.asset("a", IMAGE_2, &health("\"true\"")));
    assert_no_failures(&env.apply().await);
    let c = env.inspect(&a).await;
    assert_ne!(c.id, before);
    let test = c.config.and_then(|c| c.healthcheck).and_then(|h| h.test);
    assert_eq!(test, Some(vec!["CMD".to_string(), "true".to_string()]));
    let status = c.state.and_then(|s| s.health).and_then(|h| h.status);
    assert_eq!(status.map(|s| s.to_string()).as_deref(), Some("healthy"));
    assert!(env.apply().await.outcomes.is_empty(), "converged");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_update_policy_sets_the_order_and_the_monitor_window() {
    let env = TestEnv::new("lc-policy").await;
    let a = env.name("a");
    env.write(
        "a.yaml",
        &env.asset("a", IMAGE_1, "  command: [sleep, \"3600\"]\n"),
    );
    assert_no_failures(&env.apply().await);
    let old = env.inspect(&a).await;
    let started = |c: &bollard::models::ContainerInspectResponse| {
        c.state.as_ref().and_then(|s| s.started_at.clone())
    };
    // Exits 3 two seconds after it starts: too soon for the default 3 s.
    let late_crash = "  command: [sh, -c, \"sleep 2; exit 3\"]\n";

    // Default order without ports or writable mounts: start-first, so
    // the old container was never stopped.
    env.write("a.yaml", &env.asset("a", IMAGE_2, late_crash));
    let error = env.apply().await.outcomes[0]
        .error
        .clone()
        .expect("rolled back");
    assert!(error.contains("exited 3 within 3s"), "{error}");
    let now = env.inspect(&a).await;
    assert_eq!(
        (now.id.clone(), started(&now)),
        (old.id.clone(), started(&old))
    );

    // `order: stop-first`: the old one is stopped first, then started again.
    let stop_first = format!("{late_crash}  update: {{ order: stop-first }}\n");
    env.write("a.yaml", &env.asset("a", IMAGE_2, &stop_first));
    let error = env.apply().await.outcomes[0]
        .error
        .clone()
        .expect("rolled back");
    assert!(error.contains("runs again"), "{error}");
    let now = env.inspect(&a).await;
    assert_eq!(now.id, old.id);
    assert_ne!(started(&now), started(&old), "stopped and started again");
    assert_eq!(now.state.and_then(|s| s.running), Some(true));

    // `monitor: 1s`: the same version passes the shorter window.
    let short = format!("{late_crash}  update: {{ monitor: 1s }}\n");
    env.write("a.yaml", &env.asset("a", IMAGE_2, &short));
    assert_no_failures(&env.apply().await);
    let now = env.inspect(&a).await;
    assert_ne!(now.id, old.id);
    assert_eq!(now.config.and_then(|c| c.image).as_deref(), Some(IMAGE_2));
    assert_eq!(env.containers().await.len(), 1);
}

/// The state a `kill -9` of assetd leaves at each step of the local update
/// protocol, then the next pass: exactly the wanted containers, no
/// temporary names. The kill is real (`apply --once` in a child process,
/// killed while its candidate is on trial); the later steps are reached
/// from there by doing by hand what the protocol does next.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_each_step_of_the_local_update_converges_to_exactly_the_right_containers() {
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// Killed during the gate: candidate running, old running.
        OnTrial,
        /// Killed after the candidate passed (restart policy set).
        Passed,
        /// Killed after the old container was removed, before the rename.
        OldRemoved,
        /// Stop-first, killed during the gate; the operator reverts the
        /// manifest: the old container runs again, with its ID.
        StopFirstReverted,
    }
    let env = TestEnv::new("lc-kill9").await;
    let a = env.name("a");
    let candidate = format!("{a}.assetd-candidate");
    let v1 = env.asset("a", IMAGE_1, "  command: [sleep, \"3600\"]\n");
    for step in [
        Step::OnTrial,
        Step::Passed,
        Step::OldRemoved,
        Step::StopFirstReverted,
    ] {
        common::cleanup(&env.docker, &env.prefix).await;
        env.write("a.yaml", &v1);
        assert_no_failures(&env.apply().await);
        let old = env.inspect(&a).await.id.unwrap();
        let order = match step {
            Step::StopFirstReverted => "stop-first",
            _ => "start-first",
        };
        let v2 = env.asset(
            "a",
            IMAGE_2,
            &format!("  command: [sleep, \"3600\"]\n  update: {{ order: {order}, monitor: 4s }}\n"),
        );
        env.write("a.yaml", &v2);
        let assetd = common::harness::Assetd {
            state: env.root.join("cli-state"),
            ..common::harness::Assetd::new(&env, "local")
        };
        let mut apply = assetd.spawn(&["apply", "--once"], &[]);
        let trial = common::eventually(
            "the candidate on trial",
            Duration::from_secs(60),
            || async {
                let c = env.docker.inspect_container(&candidate, None).await.ok()?;
                (c.state?.running == Some(true)).then(|| c.id.unwrap())
            },
        )
        .await;
        assert!(apply.kill9(), "killed while the candidate was on trial");
        let restart = bollard::models::ContainerUpdateBody {
            restart_policy: Some(bollard::models::RestartPolicy {
                name: Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED),
                ..Default::default()
            }),
            ..Default::default()
        };
        match step {
            Step::OnTrial | Step::StopFirstReverted => {}
            Step::Passed => env.docker.update_container(&trial, restart).await.unwrap(),
            Step::OldRemoved => {
                env.docker.update_container(&trial, restart).await.unwrap();
                let force = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build();
                env.docker
                    .remove_container(&old, Some(force))
                    .await
                    .unwrap();
            }
        }
        if let Step::StopFirstReverted = step {
            let stopped = env.inspect(&a).await.state.unwrap();
            assert_eq!(
                stopped.running,
                Some(false),
                "stop-first stopped the old one"
            );
            env.write("a.yaml", &v1);
        }
        assert_no_failures(&env.apply().await);
        let names: Vec<String> = ids_by_name(&env).await.into_keys().collect();
        assert_eq!(
            names,
            vec![a.clone()],
            "{step:?}: exactly the wanted container"
        );
        let now = env.inspect(&a).await;
        assert_eq!(
            now.state.as_ref().and_then(|s| s.running),
            Some(true),
            "{step:?}"
        );
        let image = now.config.as_ref().and_then(|c| c.image.clone());
        match step {
            Step::OnTrial => assert_eq!(image.as_deref(), Some(IMAGE_2), "{step:?}: redone"),
            Step::Passed | Step::OldRemoved => {
                assert_eq!(
                    now.id.as_deref(),
                    Some(trial.as_str()),
                    "{step:?}: the passed candidate"
                );
            }
            Step::StopFirstReverted => {
                assert_eq!(
                    now.id.as_deref(),
                    Some(old.as_str()),
                    "{step:?}: the old one again"
                );
            }
        }
        assert!(env.apply().await.outcomes.is_empty(), "{step:?}: converged");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_and_ulimits_reach_the_container() {
    let env = TestEnv::new("lc-user").await;
    let a = env.name("a");
    env.write(
        "a.yaml",
        &env.asset(
            "a",
            IMAGE_1,
            "  user: \"1000:1000\"\n  ulimits: { nofile: { soft: 1024, hard: 2048 }, nproc: 512 }\n",
        ),
    );
    assert_no_failures(&env.apply().await);
    let c = env.inspect(&a).await;
    assert_eq!(c.config.and_then(|c| c.user).as_deref(), Some("1000:1000"));
    let mut limits: Vec<(String, i64, i64)> = c
        .host_config
        .and_then(|h| h.ulimits)
        .unwrap_or_default()
        .into_iter()
        .map(|u| (u.name.unwrap(), u.soft.unwrap(), u.hard.unwrap()))
        .collect();
    limits.sort();
    assert_eq!(
        limits,
        vec![("nofile".into(), 1024, 2048), ("nproc".into(), 512, 512)]
    );
    assert_eq!(c.state.and_then(|s| s.running), Some(true));
    assert!(env.apply().await.outcomes.is_empty(), "converged");
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_policy_never_refuses_a_missing_image_and_leaves_the_running_version() {
    let env = TestEnv::new("lc-pullnever").await;
    let missing = "assetd-test/busybox:never-pulled";
    // A new asset: nothing is created.
    env.write("b.yaml", &env.asset("b", missing, "  pullPolicy: Never\n"));
    env.write("a.yaml", &env.asset("a", IMAGE_1, "  pullPolicy: Never\n"));
    let pass = env.apply().await;
    let b = pass
        .outcomes
        .iter()
        .find(|o| o.name.as_str().ends_with("-b"))
        .unwrap();
    let error = b.error.clone().expect("a missing image with Never fails");
    assert!(
        error.contains(missing) && error.contains("pullPolicy is Never"),
        "{error}"
    );
    let a = env.inspect(&env.name("a")).await;
    assert_eq!(
        a.state.and_then(|s| s.running),
        Some(true),
        "a present image runs"
    );
    assert_eq!(env.containers().await.len(), 1, "no container for b");

    // An update to a missing image: the running version stays.
    env.write("a.yaml", &env.asset("a", missing, "  pullPolicy: Never\n"));
    let pass = env.apply().await;
    let error = pass.outcomes[0].error.clone().expect("the update fails");
    assert!(error.contains("pullPolicy is Never"), "{error}");
    let c = env.inspect(&env.name("a")).await;
    assert_eq!(c.id, a.id, "the running container is untouched");
    assert_eq!(c.state.and_then(|s| s.running), Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_policy_always_pulls_before_an_update_and_a_failed_pull_leaves_what_runs() {
    let env = TestEnv::new("lc-pullalways").await;
    let tag = common::UnpullableTag::new(&env).await;
    env.write("a.yaml", &env.asset("a", &tag.tag, ""));
    assert_no_failures(&env.apply().await);
    let before = env.inspect(&env.name("a")).await.id;

    // Same image, now Always: the pull is tried although the engine has
    // the image, and its failure touches nothing.
    env.write(
        "a.yaml",
        &env.asset("a", &tag.tag, "  pullPolicy: Always\n"),
    );
    let pass = env.apply().await;
    let error = pass.outcomes[0].error.clone().expect("the pull fails");
    assert!(
        error.contains("pull image") && error.contains(&tag.tag),
        "names the image and the engine's reason: {error}"
    );
    let c = env.inspect(&env.name("a")).await;
    assert_eq!(c.id, before, "the running container is untouched");
    assert_eq!(c.state.and_then(|s| s.running), Some(true));
}
