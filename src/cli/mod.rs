//! The `assetd` command line: `args` defines it, `dispatch` runs the
//! command; the command families that are not the daemon have a module
//! each.

/// `apply --once` and `sync`.
pub mod apply;
/// The command line's definition.
pub(crate) mod args;
/// The commands that talk to the running daemon.
pub mod control;
/// Man pages and shell completions, generated from the clap definitions.
pub mod docs;
/// `assetd secret`: age files for `decrypt: age`.
pub mod secret;

use std::path::PathBuf;

use assetd::engine;
use assetd::input::desired::{self, LoadOptions};
use assetd::input::manifest::Policy;
use assetd::input::stack::encrypted::AgeKeys;
use assetd::reconcile::{self, PassConfig};
use assetd::report;
use assetd::store::{MemoryStore, SledStore, Store};

pub(crate) use args::*;
use control::plan;

/// What the operator said on the command line (or in the environment),
/// as opposed to a default: some commands act differently on it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Given {
    /// `plan --manifests DIR` (or `ASSETD_MANIFESTS`): plan that directory,
    /// even while a daemon of another directory answers.
    pub(crate) plan_manifests: bool,
}

impl Given {
    pub(crate) fn from_matches(matches: &clap::ArgMatches) -> Self {
        let plan_manifests = matches
            .subcommand_matches("plan")
            .and_then(|plan| plan.value_source("manifests"))
            .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue);
        Given { plan_manifests }
    }
}

pub(crate) async fn dispatch(command: Command, given: Given) -> u8 {
    match command {
        Command::Validate {
            paths,
            allow_bind,
            age_identity,
            output,
        } => validate(paths, allow_bind, age_identity, output),
        Command::Secret { command } => secret::run(command),
        Command::Completions { shell } => docs::completions(shell),
        Command::GenerateMan { dir } => docs::man_pages(&dir),
        Command::Schema { kind } => print_schema(kind),
        Command::Apply {
            once,
            common,
            output,
            wait,
            override_window,
        } => match once {
            true => apply::apply_once(common, output, wait, override_window).await,
            false => {
                eprintln!("assetd apply: pass --once (the long-running daemon is `assetd run`)");
                EXIT_USAGE
            }
        },
        Command::Sync { names, daemon } => apply::sync(&names, &daemon.path()).await,
        Command::Plan {
            common,
            socket,
            output,
        } => plan(common, socket, output, given.plan_manifests).await,
        Command::Suspend {
            targets,
            reason,
            daemon,
        } => control::suspend_or_resume("suspend", targets, reason, daemon.path()).await,
        Command::Events {
            follow,
            daemon,
            output,
        } => control::events(follow, daemon.path(), output).await,
        Command::History {
            name,
            daemon,
            output,
        } => control::history(&name, daemon, output).await,
        Command::Rollback { name, to, daemon } => control::rollback(&name, to, daemon.path()).await,
        Command::Resume { targets, daemon } => {
            control::suspend_or_resume("resume", targets, None, daemon.path()).await
        }
        Command::Status {
            common,
            socket,
            output,
        } => status(common, socket, output).await,
        Command::Run(args) => run(args).await,
        Command::Retry { name, daemon } => control::retry(&name, &daemon.path()).await,
        Command::Takeover { confirm, daemon } => control::takeover(confirm, &daemon.path()).await,
        Command::DeleteVolume {
            name,
            confirm,
            common,
        } => {
            let refusal =
                format!("delete-volume: pass --confirm to delete volume {name} and its data");
            if let Some(code) = unconfirmed(confirm, &refusal) {
                return code;
            }
            remove_stack_object(&common, assetd::input::stack::ResourceKind::Volume, &name).await
        }
        Command::Recreate {
            kind,
            name,
            confirm,
            common,
        } => {
            let refusal = format!("recreate: pass --confirm to remove {name} so that the next pass creates it from its manifest");
            if let Some(code) = unconfirmed(confirm, &refusal) {
                return code;
            }
            let kind = match kind {
                RecreateKind::Network => assetd::input::stack::ResourceKind::Network,
                RecreateKind::Volume => assetd::input::stack::ResourceKind::Volume,
            };
            remove_stack_object(&common, kind, &name).await
        }
        Command::Prune { confirm, daemon } => {
            let refusal = "prune: pass --confirm to let the held removals go ahead";
            if let Some(code) = unconfirmed(confirm, refusal) {
                return code;
            }
            prune_confirm(daemon.path()).await
        }
    }
}

/// `assetd schema`.
fn print_schema(kind: SchemaKind) -> u8 {
    let schema = match kind {
        SchemaKind::Asset => assetd::input::manifest::schema::schema_json(),
        SchemaKind::Openfactory => assetd::input::manifest::schema::openfactory::schema_json(),
        SchemaKind::Compose => assetd::input::manifest::schema::compose::schema_json(),
    };
    println!("{schema}");
    EXIT_OK
}

/// A command that acts only on `--confirm`: without it, says so (exit 64).
fn unconfirmed(confirm: bool, refusal: &str) -> Option<u8> {
    (!confirm).then(|| {
        eprintln!("assetd {refusal}");
        EXIT_USAGE
    })
}

/// `delete-volume` and `recreate`: removes one of our unused networks or
/// volumes at the operator's word.
async fn remove_stack_object(
    common: &CommonArgs,
    kind: assetd::input::stack::ResourceKind,
    name: &str,
) -> u8 {
    use assetd::engine::strategy::DeploymentStrategy as _;
    let strategy = match strategy_for(common).await {
        Ok(strategy) => strategy,
        Err(code) => return code,
    };
    let Some(stack) = strategy.stack() else {
        eprintln!("assetd: this engine has no {kind}s");
        return EXIT_FAILED;
    };
    match stack.remove_confirmed(kind, name).await {
        Ok(()) => {
            println!("removed {kind} {name}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("assetd: {e}");
            EXIT_FAILED
        }
    }
}

async fn prune_confirm(socket: PathBuf) -> u8 {
    match assetd::daemon::api::confirm_prune(&socket).await {
        Ok(names) if names.is_empty() => {
            println!("nothing is held for confirmation");
            EXIT_OK
        }
        Ok(names) => {
            println!("confirmed the removal of {} asset(s):", names.len());
            for name in names {
                println!("  {name}");
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!(
                "assetd: no daemon answers on {} ({e}); with no daemon running, use `assetd apply --once --allow-mass-prune`",
                socket.display()
            );
            EXIT_FAILED
        }
    }
}

fn validate(
    paths: Vec<PathBuf>,
    allow_bind: Vec<PathBuf>,
    age_identity: Vec<PathBuf>,
    output: Output,
) -> u8 {
    let options = LoadOptions {
        policy: Policy { allow_bind },
        check_permissions: false,
        age: AgeKeys::given(age_identity).header_only_without_keys(),
        version_key: None,
    };
    let env = |k: &str| std::env::var(k).ok();
    let desired = desired::load_paths(&paths, &options, &env);
    let errors = desired.errors();
    // Permissions belong to the deployed copy, not to the content (a CI
    // checkout differs from the copy on the manager): warn, do not fail.
    let strict = desired::load_paths(
        &paths,
        &LoadOptions {
            check_permissions: true,
            ..options.clone()
        },
        &env,
    );
    let content_errors: std::collections::BTreeSet<String> =
        errors.iter().map(ToString::to_string).collect();
    for e in strict.errors() {
        if !content_errors.contains(&e.to_string()) {
            eprintln!("warning: `assetd apply` and `assetd run` would refuse this: {e}");
        }
    }
    match output {
        Output::Json | Output::Yaml => print_structured(
            &report::validate_document(&desired),
            output,
            serde_json::to_string,
        ),
        Output::Text => {
            // `validate` names files by the paths it was given.
            for text in report::render_errors(&errors, std::path::Path::new("")) {
                eprintln!("{text}");
            }
            for note in &desired.notes {
                eprintln!("note: {note}");
            }
            // `6 asset(s), 1 network(s), 2 secret(s) valid, 0 problem(s)`.
            let mut counts = vec![format!("{} asset(s)", desired.assets.len())];
            for kind in assetd::input::stack::ResourceKind::ALL {
                let n = desired.resources.keys().filter(|(k, _)| *k == kind).count();
                if n > 0 {
                    counts.push(format!("{n} {kind}(s)"));
                }
            }
            println!("{} valid, {} problem(s)", counts.join(", "), errors.len());
        }
    }
    if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// Connects and resolves `--strategy`; the error is already printed.
pub(crate) async fn strategy_for(
    common: &CommonArgs,
) -> Result<assetd::engine::strategy::AnyStrategy, u8> {
    let docker = engine::connect().map_err(|e| {
        eprintln!("assetd: {e}");
        EXIT_USAGE
    })?;
    let auth = assetd::engine::registry_auth::RegistryAuth::new(common.registry_config.clone());
    engine::choose(&docker, common.strategy, &common.instance)
        .await
        .map(|strategy| {
            strategy
                .with_registry_auth(auth)
                .with_stack_dir(common.state_dir.join("stack"))
        })
        .map_err(|e| {
            eprintln!("assetd: {e}");
            EXIT_FAILED
        })
}

async fn status(common: CommonArgs, socket: Option<PathBuf>, output: Output) -> u8 {
    let socket = socket.unwrap_or_else(|| common.state_dir.join("assetd.sock"));
    // The daemon holds the database lock, so ask it; read the store
    // directly only when no daemon answers.
    let report = match assetd::daemon::api::fetch_status(&socket).await {
        Ok(report) => report,
        Err(daemon_error) => match engine_status(&common).await {
            // No daemon: what the engine shows now beats what the store
            // last recorded (a container may have stopped since).
            Some(report) => {
                eprintln!(
                    "assetd: no daemon answers on {} ({daemon_error}); showing the engine as it is now",
                    socket.display()
                );
                report
            }
            None => match assetd::daemon::offline_status(&common.state_dir) {
                Ok(report) => {
                    eprintln!(
                        "assetd: no daemon answers on {} ({daemon_error}) and the engine cannot be read; showing the results last recorded in the store (AGE says when)",
                        socket.display()
                    );
                    report
                }
                Err(e) => {
                    eprintln!("assetd: {e}");
                    return EXIT_FAILED;
                }
            },
        },
    };
    match output {
        Output::Json | Output::Yaml => {
            print_structured(&report, output, serde_json::to_string_pretty)
        }
        Output::Text => print!("{}", assetd::report::status::render_table(&report)),
    }
    let failing = report
        .assets
        .iter()
        .any(|a| a.phase == assetd::report::status::Phase::Failed);
    if failing {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// Status computed from a read-only look at the engine, the manifests
/// and the store, as a pass would see it; `None` when the engine cannot
/// be read.
async fn engine_status(common: &CommonArgs) -> Option<assetd::report::status::StatusReport> {
    let strategy = strategy_for(common).await.ok()?;
    let store: Box<dyn Store> = match SledStore::open_nowait(&common.state_dir) {
        Some(store) => Box::new(store),
        None => Box::new(MemoryStore::default()),
    };
    let config = common.pass_config(false);
    let reconcile::Observation {
        desired,
        actual,
        applied,
        plan,
        ..
    } = reconcile::observe(&config, &strategy, store.as_ref())
        .await
        .ok()?;
    let assets = assetd::report::status::from_pass(
        &desired,
        &actual,
        &applied,
        &plan,
        &Default::default(),
        false,
    );
    use assetd::report::status::{Source, StatusReport};
    Some(StatusReport {
        ready: false,
        ..StatusReport::of_pass(Source::Engine, strategy.kind(), &desired, &plan, assets)
    })
}

async fn run(args: RunArgs) -> u8 {
    use assetd::daemon::{self, Control, DaemonConfig};
    use futures_util::StreamExt;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

    // Bad configuration is bad usage, refused before anything starts.
    if let Some(addr) = args.listen.filter(|a| !a.ip().is_loopback()) {
        if !args.listen_public {
            eprintln!("assetd run: --listen {addr} is not a loopback address and the API has no authentication; pass --listen-public to allow it");
            return EXIT_USAGE;
        }
    }

    let lease = match args.common.lease() {
        Ok(lease) => lease,
        Err(e) => {
            eprintln!("assetd run: {e}");
            return EXIT_USAGE;
        }
    };
    if let Err(code) = args.common.check_age_identities("run") {
        return code;
    }
    let config = DaemonConfig {
        pass: PassConfig {
            manifest_cache: Some(Default::default()),
            ..args.common.pass_config(true)
        },
        state_dir: args.common.state_dir.clone(),
        strategy: args.common.strategy,
        instance: args.common.instance.clone(),
        resync: args.resync,
        socket: args
            .socket
            .clone()
            .unwrap_or_else(|| args.common.state_dir.join("assetd.sock")),
        listen: args.listen,
        listen_public: args.listen_public,
        grace: args.grace,
        prune_window: args.prune_window,
        writer: assetd::engine::strategy::writer::Writer::this_process(
            &args.common.state_dir,
            assetd::store::now_ms(),
        ),
        notify: args.notify.clone(),
        lease,
        registry: assetd::engine::registry_auth::RegistryAuth::new(
            args.common.registry_config.clone(),
        ),
    };
    let mut signals = match signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("assetd: cannot install signal handlers: {e}");
            return EXIT_FAILED;
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(4);
    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => {
                    let _ = control_tx.try_send(Control::Reload);
                }
                // First TERM/INT: stop taking work, finish what runs.
                // Second: the operator means it.
                _ if signal_shutdown.is_cancelled() => {
                    eprintln!("assetd: second signal, exiting now");
                    std::process::exit(130);
                }
                _ => {
                    tracing::info!(signal, "stopping");
                    signal_shutdown.cancel();
                }
            }
        }
    });
    match daemon::run(config, shutdown, control_rx).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("assetd: {e}");
            EXIT_FAILED
        }
    }
}
