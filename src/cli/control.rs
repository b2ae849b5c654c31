//! `assetd plan`, `suspend` and `resume`: through the running daemon's
//! socket when one answers.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use assetd::daemon::api::{self, SuspendRequest};
use assetd::model::spec::AssetName;
use assetd::report::plan_answer::{self, PlanAnswer, PlanFormat, PlanOutcome};
use assetd::store::{MemoryStore, SledStore, Store};

use super::{
    print_structured, strategy_for, CommonArgs, Output, Targets, EXIT_FAILED, EXIT_OK,
    EXIT_PENDING, EXIT_USAGE,
};

/// `assetd plan`: the daemon's own plan when it runs (it holds the store,
/// so it shows changes field by field), else one computed here from the
/// store or, when it is locked, from the labels alone — saying so.
///
/// `manifests_given`: the operator named a directory. When the daemon
/// works from another one (a CI gate planning a branch's copy), that
/// directory is planned here: the daemon's answer would be about the
/// wrong files.
pub(crate) async fn plan(
    common: CommonArgs,
    socket: Option<PathBuf>,
    output: Output,
    manifests_given: bool,
) -> u8 {
    let socket = socket.unwrap_or_else(|| common.state_dir.join("assetd.sock"));
    let format = match output {
        Output::Json | Output::Yaml => PlanFormat::Json,
        Output::Text => PlanFormat::Text {
            color: std::io::stdout().is_terminal(),
        },
    };
    let mut other_dir_said = false;
    let from_daemon = match api::fetch_plan(&socket, format).await {
        Ok(answer) if manifests_given && !same_dir(&answer.manifests, &common.manifests) => {
            other_dir_said = true;
            eprintln!(
                "assetd: the running daemon works from {}; planning --manifests {} here, from the labels (no field-level changes)",
                answer.manifests.display(),
                common.manifests.display()
            );
            None
        }
        Ok(answer) => {
            if !same_dir(&answer.manifests, &common.manifests) {
                eprintln!(
                    "assetd: planned by the running daemon from its manifests {}",
                    answer.manifests.display()
                );
            }
            Some(answer)
        }
        Err(_) => None,
    };
    let answer = match from_daemon {
        Some(answer) => answer,
        None => match offline_plan(&common, format, other_dir_said).await {
            Ok(answer) => answer,
            Err(code) => return code,
        },
    };
    for line in &answer.errors {
        eprintln!("{line}");
    }
    print_answer(&answer, output);
    match answer.outcome {
        PlanOutcome::InSync => EXIT_OK,
        PlanOutcome::Pending => EXIT_PENDING,
        PlanOutcome::Invalid => EXIT_FAILED,
    }
}

/// The plan computed by this process, with no daemon to ask.
async fn offline_plan(
    common: &CommonArgs,
    format: PlanFormat,
    quiet_when_locked: bool,
) -> Result<PlanAnswer, u8> {
    let strategy = strategy_for(common).await?;
    let store: Box<dyn Store> = match SledStore::open_nowait(&common.state_dir) {
        Some(store) => Box::new(store),
        None => {
            if common.state_dir.join("db").exists() && !quiet_when_locked {
                eprintln!(
                    "assetd: the store in {} is locked and no daemon answers on its socket: planning from the labels alone (no field-level changes)",
                    common.state_dir.display()
                );
            }
            Box::new(MemoryStore::default())
        }
    };
    let config = common.pass_config(false);
    plan_answer::plan_answer(&config, &strategy, store.as_ref(), format)
        .await
        .map_err(|e| {
            eprintln!("assetd: {e}");
            EXIT_FAILED
        })
}

fn print_answer(answer: &PlanAnswer, output: Output) {
    match output {
        Output::Text => print!("{}", answer.stdout),
        Output::Json => println!("{}", answer.stdout),
        Output::Yaml => match serde_json::from_str::<serde_json::Value>(&answer.stdout) {
            Ok(document) => print_structured(&document, output, serde_json::to_string),
            Err(_) => println!("{}", answer.stdout),
        },
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canonical(a) == canonical(b)
}

/// `assetd suspend|resume NAME...|--all`.
pub(crate) async fn suspend_or_resume(
    verb: &str,
    targets: Targets,
    reason: Option<String>,
    socket: PathBuf,
) -> u8 {
    let mut names = Vec::new();
    for name in &targets.names {
        match AssetName::new(name) {
            Ok(name) => names.push(name),
            Err(_) => {
                eprintln!("assetd {verb}: `{name}` is not an asset name");
                return EXIT_USAGE;
            }
        }
    }
    let request = SuspendRequest {
        names,
        all: targets.all,
        reason,
    };
    match api::suspend_or_resume(&socket, verb, &request).await {
        Ok(now) => {
            match &now.all {
                Some(all) => println!("all assets: {all}"),
                None => println!("{} asset(s) suspended", now.assets.len()),
            }
            for (name, suspension) in &now.assets {
                println!("  {name}: {suspension}");
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!(
                "assetd {verb}: {e} (daemon socket {}; suspend and resume go through the running daemon)",
                socket.display()
            );
            EXIT_FAILED
        }
    }
}

/// `assetd events [-f]`: the daemon's kept events, then (`-f`) new ones
/// as they come, one line (or one JSON document) each.
pub(crate) async fn events(follow: bool, socket: PathBuf, output: Output) -> u8 {
    let mut seen = 0;
    loop {
        let events = match api::fetch_events(&socket, seen).await {
            Ok(events) => events,
            Err(e) => {
                eprintln!("assetd events: {e} (daemon socket {})", socket.display());
                return EXIT_FAILED;
            }
        };
        for event in &events {
            seen = seen.max(event.seq);
            match output {
                Output::Text => println!("{}", event_line(event)),
                _ => println!("{}", serde_json::to_string(event).unwrap_or_default()),
            }
        }
        if !follow {
            return EXIT_OK;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn event_line(e: &assetd::daemon::events::Event) -> String {
    let state = |s: &Option<assetd::daemon::events::State>| match s {
        Some(s) => format!("{}/{}", s.phase, s.health),
        None => "-".into(),
    };
    let mut line = format!(
        "{}  {}  {}  {} → {}",
        assetd::store::suspend::rfc3339(e.at_ms),
        e.asset,
        e.event,
        state(&e.before),
        state(&e.after)
    );
    if let Some(reason) = &e.reason {
        line.push_str("  ");
        line.push_str(reason);
    }
    line
}

fn asset_name(verb: &str, name: &str) -> Result<AssetName, u8> {
    AssetName::new(name).map_err(|_| {
        eprintln!("assetd {verb}: `{name}` is not an asset name");
        EXIT_USAGE
    })
}

/// `assetd history NAME`: from the running daemon, else from the store.
pub(crate) async fn history(name: &str, daemon: super::DaemonSocket, output: Output) -> u8 {
    let name = match asset_name("history", name) {
        Ok(name) => name,
        Err(code) => return code,
    };
    let socket = daemon.path();
    let revisions = match api::fetch_history(&socket, &name).await {
        Ok(Some(revisions)) => revisions,
        Ok(None) => {
            eprintln!("assetd history: no asset `{name}`");
            return EXIT_FAILED;
        }
        Err(daemon_error) => match SledStore::open_nowait(&daemon.state_dir) {
            Some(store) => {
                eprintln!(
                    "assetd: no daemon answers on {} ({daemon_error}); reading the store",
                    socket.display()
                );
                let revisions = assetd::store::history::load(&store, &name);
                if revisions.is_empty() {
                    eprintln!("assetd history: no asset `{name}` in the store");
                    return EXIT_FAILED;
                }
                revisions
            }
            None => {
                eprintln!("assetd history: {daemon_error} (daemon socket {}), and the store cannot be opened", socket.display());
                return EXIT_FAILED;
            }
        },
    };
    match output {
        Output::Text => print!("{}", history_table(&revisions)),
        _ => print_structured(&revisions, output, serde_json::to_string_pretty),
    }
    EXIT_OK
}

fn history_table(revisions: &[assetd::store::history::Revision]) -> String {
    let mut out = String::from("REV  WHEN                  RESULT       REVISION  IMAGE  ACTION\n");
    for r in revisions {
        let image = r
            .spec
            .as_ref()
            .map(|s| s.image.to_string())
            .unwrap_or_else(|| "-".into());
        let outcome = serde_json::to_value(r.outcome).ok();
        let outcome = outcome.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        let revision = r.revision.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{:<4} {}  {outcome:<11}  {revision:<8}  {image}  {}\n",
            r.n,
            assetd::store::suspend::rfc3339(r.at_ms),
            r.action
        ));
    }
    out
}

/// `assetd rollback NAME [--to N]`, through the running daemon.
pub(crate) async fn rollback(name: &str, to: Option<u64>, socket: PathBuf) -> u8 {
    let name = match asset_name("rollback", name) {
        Ok(name) => name,
        Err(code) => return code,
    };
    match api::rollback(&socket, &name, to).await {
        Ok(pin) => {
            println!(
                "{name}: pinned to revision {} ({}); `assetd resume {name}` or a manifest change ends it",
                pin.revision, pin.spec.image
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("assetd rollback: {e} (daemon socket {})", socket.display());
            EXIT_FAILED
        }
    }
}

/// `assetd retry NAME`: deploy once more a version the engine rolled back.
pub(crate) async fn retry(name: &str, socket: &Path) -> u8 {
    let Ok(name) = AssetName::new(name) else {
        eprintln!("assetd retry: `{name}` is not an asset name");
        return EXIT_USAGE;
    };
    match api::retry(socket, &name).await {
        Ok(()) => {
            println!("{name}: deploying once more");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("assetd retry: {e} (daemon socket {})", socket.display());
            EXIT_FAILED
        }
    }
}

/// `assetd takeover --confirm`: apply this daemon's copy of the manifests
/// although it cannot be ordered against the last writer's.
pub(crate) async fn takeover(confirm: bool, socket: &Path) -> u8 {
    if !confirm {
        eprintln!("assetd takeover: pass --confirm to apply this daemon's copy of the manifests");
        return EXIT_USAGE;
    }
    match api::confirm_takeover(socket).await {
        Ok(()) => {
            println!("confirmed: the daemon applies its copy of the manifests");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("assetd takeover: {e} (daemon socket {})", socket.display());
            EXIT_FAILED
        }
    }
}
