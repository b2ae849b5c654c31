//! `assetd apply --once`: one pass from this process, with the writer
//! lease on Swarm, and the exit code that says how it ended; and `assetd
//! sync`, the running daemon's counterpart for held changes.

use std::sync::Arc;
use std::time::Duration;

use assetd::reconcile::{self, rollout_result};
use assetd::report;
use assetd::store::{SledStore, Store};

use super::{
    engine, print_structured, strategy_for, CommonArgs, Output, EXIT_FAILED, EXIT_HELD,
    EXIT_NOT_WRITER, EXIT_OK, EXIT_USAGE,
};

/// `assetd sync NAME...`.
pub(crate) async fn sync(names: &[String], socket: &std::path::Path) -> u8 {
    let mut code = EXIT_OK;
    for name in names {
        let Ok(name) = assetd::model::spec::AssetName::new(name) else {
            eprintln!("assetd sync: `{name}` is not an asset name");
            return EXIT_USAGE;
        };
        match assetd::daemon::api::sync(socket, &name).await {
            Ok(()) => println!("{name}: its change goes through its sync windows once"),
            Err(e) => {
                eprintln!("assetd sync: {e} (daemon socket {})", socket.display());
                code = EXIT_FAILED;
            }
        }
    }
    code
}

pub(crate) async fn apply_once(
    common: CommonArgs,
    output: Output,
    wait: Duration,
    override_window: bool,
) -> u8 {
    if let Err(code) = common.check_age_identities("apply") {
        return code;
    }
    let strategy = match strategy_for(&common).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(daemon) = running_daemon(&common.state_dir).await {
        eprintln!("{daemon}");
        return EXIT_NOT_WRITER;
    }
    let store: Arc<dyn Store> = match SledStore::open_async(&common.state_dir).await {
        Ok((store, _)) => Arc::new(store),
        Err(e) => {
            eprintln!("assetd: {e}");
            return EXIT_FAILED;
        }
    };
    eprintln!("assetd: strategy {}", strategy.kind());
    let lease = match take_lease(&common, &strategy).await {
        Ok(lease) => lease,
        Err(code) => return code,
    };
    let mut config = common.pass_config(false);
    if override_window {
        config.plan.override_windows.all = true;
        // SAFETY: geteuid cannot fail and touches no memory.
        config.plan.override_windows.by_uid = Some(unsafe { libc::geteuid() });
    }
    match reconcile::run_passes_in_order(&config, &strategy, &store, wait).await {
        Ok(pass) => {
            let dir_problem = report::dir_problem(&pass.desired, &config.manifests);
            if let Some(problem) = &dir_problem {
                eprintln!("error: {problem}");
            }
            match output {
                Output::Json | Output::Yaml => print_structured(
                    &report::pass_document(&pass, strategy.kind()),
                    output,
                    serde_json::to_string,
                ),
                Output::Text => print!("{}", report::pass_text(&pass, &config.manifests)),
            }
            let swarm = strategy.kind() == assetd::engine::strategy::StrategyKind::Swarm;
            let ending = rollout_result::wait_for_rollouts(&strategy, &pass, wait, swarm).await;
            // The versions a rollout replaced are unused once it ended.
            if pass.plan.stack.iter().any(|a| !a.writes()) {
                let swept =
                    reconcile::remove_unused_stack(&config, &strategy, &pass.desired, &pass.plan)
                        .await;
                if matches!(output, Output::Text) {
                    for done in &swept {
                        match &done.error {
                            None => println!("{}", done.action),
                            Some(err) => println!("{} FAILED: {err}", done.action),
                        }
                    }
                }
            }
            if let Some(lease) = lease {
                lease.stop.cancel();
                let _ = lease.task.await;
            }
            apply_exit_code(&pass, ending, store.as_ref(), dir_problem.is_some())
        }
        Err(e) => {
            eprintln!("assetd: {e}");
            EXIT_FAILED
        }
    }
}

/// What to tell an operator who runs `apply --once` on the state dir of
/// a running daemon: that daemon holds the store and applies the
/// manifests itself; its held removals are confirmed through it.
async fn running_daemon(state_dir: &std::path::Path) -> Option<String> {
    let socket = state_dir.join("assetd.sock");
    let status = assetd::daemon::api::fetch_status(&socket).await.ok()?;
    let role = status.role.as_deref().unwrap_or("running");
    Some(format!(
        "assetd: a daemon ({role}) runs on --state-dir {dir} and holds its store; it applies the manifests itself, so nothing was written. \
         See what it does with `assetd status --state-dir {dir}`; confirm the removals it holds with `assetd prune --confirm --state-dir {dir}`.",
        dir = state_dir.display()
    ))
}

/// The writer lease `apply --once` holds on Swarm, renewed while it runs.
struct HeldLease {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// On Swarm, takes the writer lease for the pass (waiting out one that
/// has stopped being renewed), or refuses while a daemon holds it.
async fn take_lease(
    common: &CommonArgs,
    strategy: &assetd::engine::strategy::AnyStrategy,
) -> Result<Option<HeldLease>, u8> {
    let assetd::engine::strategy::AnyStrategy::Swarm(_) = strategy else {
        return Ok(None);
    };
    let timings = common.lease().map_err(|e| {
        eprintln!("assetd apply: {e}");
        EXIT_USAGE
    })?;
    let docker = engine::connect().map_err(|e| {
        eprintln!("assetd: {e}");
        EXIT_USAGE
    })?;
    let writer = assetd::engine::strategy::writer::Writer::this_process(
        &common.state_dir,
        assetd::store::now_ms(),
    );
    let me = format!("{}#{}", writer.id, writer.started_ms);
    let lease = assetd::engine::lease::Lease::new(docker, &common.instance, me, timings);
    if let Err(holder) = lease.acquire().await {
        eprintln!("assetd apply: {holder}: another assetd writes this instance; nothing was written (exit {EXIT_NOT_WRITER})");
        return Err(EXIT_NOT_WRITER);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(lease.run(stop.clone()));
    Ok(Some(HeldLease { stop, task }))
}

/// The exit code of `apply --once`, from what the engine says once the
/// rollouts ended: an asset that crash-loops, is unhealthy or was rolled
/// back did not deploy, whatever the API calls answered. An invalid
/// manifest is a failed asset too: it was not applied.
fn apply_exit_code(
    pass: &reconcile::PassReport,
    ending: Result<Vec<assetd::engine::strategy::ActualAsset>, String>,
    store: &dyn Store,
    dir_problem: bool,
) -> u8 {
    let actual = match ending {
        Ok(actual) => actual,
        Err(e) => {
            eprintln!("assetd: {e}");
            return EXIT_FAILED;
        }
    };
    let failing = rollout_result::failures(&actual, pass, store);
    for (name, why) in &failing {
        eprintln!("failed: {name}: {why}");
    }
    if pass.failed() > 0 || !failing.is_empty() || !pass.desired.errors().is_empty() || dir_problem
    {
        EXIT_FAILED
    } else if pass.held() > 0 {
        eprintln!(
            "assetd: {} action(s) held: the engine does not match the manifests (exit {EXIT_HELD})",
            pass.held()
        );
        EXIT_HELD
    } else {
        EXIT_OK
    }
}
