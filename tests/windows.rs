//! Sync windows on the real engine, with the real binary: a deny window
//! in force now (Europe/Berlin) holds the changes it selects and lets the
//! others through; a repair inside it goes; an allow window closed now
//! (UTC) holds its assets until its file goes; `apply --once
//! --override-window` and `assetd sync` let a held change through once,
//! and say so in its history.

mod common;

use std::process::Output;

use assetd::report::status::{Phase, StatusReport};
use chrono::{Duration, Timelike, Utc};
use common::harness::{shared, Assetd};
use common::{all_text, assetd_cli, eventually, TestEnv, CONVERGE, IMAGE_1, IMAGE_2};

/// A cron schedule that fired `minutes_ago` minutes ago (negative: fires
/// that many minutes from now), daily, in `zone`.
fn daily_at(minutes_ago: i64, zone: chrono_tz::Tz) -> String {
    let at = (Utc::now() - Duration::minutes(minutes_ago)).with_timezone(&zone);
    format!("{} {} * * *", at.minute(), at.hour())
}

fn window(name: &str, kind: &str, schedule: &str, zone: &str, glob: &str) -> String {
    format!(
        "apiVersion: assetd/v1\nkind: SyncWindow\nmetadata: {{ name: {name} }}\nspec:\n  kind: {kind}\n  schedule: \"{schedule}\"\n  duration: 2h\n  timeZone: {zone}\n  assets: [\"{glob}\"]\n"
    )
}

/// The image the asset's container runs, and its ID.
async fn runs(env: &TestEnv, name: &str) -> Option<(String, String)> {
    let c = env.docker.inspect_container(name, None).await.ok()?;
    Some((c.config?.image?, c.id?))
}

fn cli(env: &TestEnv, args: &[&str]) -> Output {
    assetd_cli(env, args, "local")
}

fn status(env: &TestEnv) -> StatusReport {
    let out = cli(env, &["status", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", all_text(&out)))
}

fn history(state: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(["history", name, "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    all_text(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_windows_hold_what_they_select_and_overrides_are_recorded() {
    let _engine = shared().await;
    let env = TestEnv::new("win-cli").await;
    let p = env.prefix.clone();
    let (press, lathe, mill, drill) = (
        env.name("cell3-press"),
        env.name("cell4-lathe"),
        env.name("cell3-mill"),
        env.name("cell5-drill"),
    );
    for (file, suffix) in [
        ("press.yaml", "cell3-press"),
        ("lathe.yaml", "cell4-lathe"),
        ("mill.yaml", "cell3-mill"),
        ("drill.yaml", "cell5-drill"),
    ] {
        env.write(file, &env.asset(suffix, IMAGE_1, "  command: sleep 3600\n"));
    }
    let out = cli(&env, &["apply", "--once", "--wait", "0s"]);
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let (_, press_id) = runs(&env, &press).await.unwrap();

    // A shift in Berlin that began a minute ago; a maintenance slot in
    // UTC that opens in half an hour.
    let berlin = chrono_tz::Europe::Berlin;
    env.write(
        "shift.yaml",
        &window(
            &format!("{p}-shift"),
            "deny",
            &daily_at(1, berlin),
            "Europe/Berlin",
            &format!("{p}-cell3-*"),
        ),
    );
    env.write(
        "slot.yaml",
        &window(
            &format!("{p}-slot"),
            "allow",
            &daily_at(-30, chrono_tz::UTC),
            "UTC",
            &format!("{p}-cell5-*"),
        ),
    );
    for (file, suffix) in [
        ("press.yaml", "cell3-press"),
        ("lathe.yaml", "cell4-lathe"),
        ("drill.yaml", "cell5-drill"),
    ] {
        env.write(file, &env.asset(suffix, IMAGE_2, "  command: sleep 3600\n"));
    }
    let out = cli(&env, &["plan"]);
    let text = all_text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "held changes are pending: {text}"
    );
    assert!(
        text.contains(&format!("deny window `{p}-shift` is in force until"))
            && text.contains("UTC)")
            && text.contains(&format!("outside allow window `{p}-slot`: opens")),
        "{text}"
    );

    // Held: what runs stays. The unselected lathe goes.
    let out = cli(&env, &["apply", "--once", "--wait", "0s"]);
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(3), "held is exit 3: {text}");
    assert_eq!(
        runs(&env, &press).await.unwrap(),
        (IMAGE_1.into(), press_id.clone())
    );
    assert_eq!(runs(&env, &drill).await.unwrap().0, IMAGE_1);
    assert_eq!(runs(&env, &lathe).await.unwrap().0, IMAGE_2);
    let report = status(&env);
    let held = report
        .assets
        .iter()
        .find(|a| a.name.as_str() == press)
        .unwrap();
    assert_eq!(held.phase, Phase::Held, "{held:?}");
    assert!(
        report
            .windows
            .iter()
            .any(|w| w.name == format!("{p}-shift") && w.in_force),
        "{:?}",
        report.windows
    );

    // A repair of the declared version goes inside the deny window
    // (`repairs: allow`, the default).
    env.docker
        .remove_container(
            &mill,
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    let out = cli(&env, &["apply", "--once", "--wait", "0s"]);
    assert_eq!(out.status.code(), Some(3), "{}", all_text(&out));
    assert_eq!(runs(&env, &mill).await.unwrap().0, IMAGE_1);

    // The allow window's file goes: its change is released.
    std::fs::remove_file(env.manifests.join("slot.yaml")).unwrap();
    let out = cli(&env, &["apply", "--once", "--wait", "0s"]);
    assert_eq!(out.status.code(), Some(3), "{}", all_text(&out));
    assert_eq!(runs(&env, &drill).await.unwrap().0, IMAGE_2);
    assert_eq!(runs(&env, &press).await.unwrap().0, IMAGE_1);

    // The operator overrides once: applied, and on record with the uid.
    let out = cli(
        &env,
        &["apply", "--once", "--wait", "0s", "--override-window"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    assert_eq!(runs(&env, &press).await.unwrap().0, IMAGE_2);
    let shown = history(&env.root.join("cli-state"), &press);
    assert!(
        shown.contains("sync window overridden by uid") && shown.contains(&format!("{p}-shift")),
        "{shown}"
    );
    let _ = p;
}

/// `assetd sync NAME` through the running daemon lets exactly that
/// asset's held change through once.
#[tokio::test(flavor = "multi_thread")]
async fn assetd_sync_lets_one_held_change_through_the_running_daemon() {
    let _engine = shared().await;
    let env = TestEnv::new("win-sync").await;
    let p = env.prefix.clone();
    let (a, b) = (env.name("cell3-a"), env.name("cell3-b"));
    env.write(
        "a.yaml",
        &env.asset("cell3-a", IMAGE_1, "  command: sleep 3600\n"),
    );
    env.write(
        "b.yaml",
        &env.asset("cell3-b", IMAGE_1, "  command: sleep 3600\n"),
    );
    let assetd = Assetd::new(&env, "local");
    let daemon = assetd.daemon(&["--resync", "300s"]);
    daemon.wait_cli_phase(&a, Phase::Running).await;
    daemon.wait_cli_phase(&b, Phase::Running).await;
    env.write(
        "shift.yaml",
        &window(
            &format!("{p}-shift"),
            "deny",
            &daily_at(1, chrono_tz::Europe::Berlin),
            "Europe/Berlin",
            &format!("{p}-cell3-*"),
        ),
    );
    env.write(
        "a.yaml",
        &env.asset("cell3-a", IMAGE_2, "  command: sleep 3600\n"),
    );
    env.write(
        "b.yaml",
        &env.asset("cell3-b", IMAGE_2, "  command: sleep 3600\n"),
    );
    let held = daemon.wait_cli_phase(&a, Phase::Held).await;
    assert!(
        held.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("is in force until"),
        "{held:?}"
    );
    daemon.wait_cli_phase(&b, Phase::Held).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(["sync", &a, "--state-dir"])
        .arg(&assetd.state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_text(&out));
    eventually("a updated through the window", CONVERGE, || async {
        (runs(&env, &a).await?.0 == IMAGE_2).then_some(())
    })
    .await;
    // b stays held; and the override was used up by a's deploy.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(runs(&env, &b).await.unwrap().0, IMAGE_1);
    let shown = history(&assetd.state, &a);
    assert!(
        shown.contains("sync asked by uid") && shown.contains("sync window overridden"),
        "{shown}"
    );
    let _ = daemon;
}
