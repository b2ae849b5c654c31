//! The `assetd` binary: parses the command line, checks the configuration
//! before any runtime starts, and hands over to the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use assetd::desired::{self, LoadOptions};
use assetd::engine::{self, StrategyChoice};
use assetd::manifest::Policy;
use assetd::plan::PlanConfig;
use assetd::reconcile::{self, PassConfig};
use assetd::report;
use assetd::stack::encrypted::AgeKeys;
use assetd::store::{MemoryStore, SledStore, Store};

mod cli;
use cli::control::{self, plan};

/// Exit codes of the CLI contract.
const EXIT_OK: u8 = 0;
const EXIT_FAILED: u8 = 1;
const EXIT_PENDING: u8 = 2;
/// `apply --once`: nothing failed, but something was held (removals
/// waiting for confirmation, an asset left as it runs): the engine does
/// not match the manifests.
const EXIT_HELD: u8 = 3;
/// `apply --once` on Swarm: another assetd holds the writer lease.
const EXIT_NOT_WRITER: u8 = 4;
const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "assetd",
    version,
    about = "Keeps Docker (containers or Swarm services) in line with a directory of YAML asset manifests"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "ASSETD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: watch the manifests and reconcile continuously.
    Run(RunArgs),
    /// Run one reconcile pass and exit (CI, cron, first deploy).
    Apply {
        /// Required: one pass, then exit (`assetd run` is the daemon).
        #[arg(long)]
        once: bool,
        /// How long to wait for the rollouts the pass started to end (Swarm
        /// watches new tasks for the monitor window and may roll back);
        /// `0s` returns as soon as the engine took every change.
        #[arg(long, default_value = "3m", value_parser = parse_wait)]
        wait: Duration,
        /// Apply also the changes sync windows hold now, this once; each
        /// is recorded in the asset's history with your uid.
        #[arg(long)]
        override_window: bool,
        #[command(flatten)]
        common: CommonArgs,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Output,
    },
    /// Show what a pass would do now; exit 2 when changes are pending.
    /// Asks the running daemon when one answers (it knows the
    /// last-applied specs: changes field by field).
    Plan {
        #[command(flatten)]
        common: CommonArgs,
        /// The daemon's socket (default: assetd.sock in the state dir).
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Output,
    },
    /// Show each asset's phase, last result and error.
    Status {
        #[command(flatten)]
        common: CommonArgs,
        /// The daemon's status socket (default: assetd.sock in the state dir).
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Output,
    },
    /// Confirm, once, the removals the running daemon holds (the
    /// mass-prune guard), without putting --allow-mass-prune in its unit.
    Prune {
        /// Required: say that the held removals may go ahead.
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// After this daemon took the Swarm writer lease, apply its copy of
    /// the manifests although it cannot be ordered against the revision
    /// the previous writer applied (diverged git histories, no git).
    Takeover {
        /// Required: say that this copy may be applied.
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// Deploy once more a version the engine rolled back (through the
    /// running daemon); a changed manifest needs no retry.
    Retry {
        name: String,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// Let these assets' changes through their sync windows once (through
    /// the running daemon); recorded in their history with your uid.
    Sync {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// Hands off: the running daemon leaves these assets exactly as they
    /// run (no update, repair or removal) until `assetd resume`; kept
    /// across restarts. `plan` still shows what resuming would do.
    Suspend {
        #[command(flatten)]
        targets: Targets,
        /// Why, for status and the log (e.g. "spindle maintenance").
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// The last revisions deployed of an asset (and the operator's
    /// actions on it), oldest first.
    History {
        name: String,
        #[command(flatten)]
        daemon: DaemonSocket,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Output,
    },
    /// Deploy an earlier revision (default: the last good one before the
    /// current) and pin the asset there until its manifest changes or
    /// `assetd resume NAME`.
    Rollback {
        name: String,
        /// The revision number, as `assetd history` shows it.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// End a suspension or a rollback's pin; the next pass converges the
    /// assets.
    Resume {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// Delete a volume assetd created, and its data: the only way assetd
    /// ever deletes a volume. Refused while a container or service uses it.
    DeleteVolume {
        name: String,
        /// Required: say that the volume's data may be deleted.
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Remove a network or volume assetd created whose spec changed (the
    /// engine cannot change it in place), so that the next pass creates it
    /// from the manifest. Refused while it is in use. A volume's data is
    /// deleted with it.
    Recreate {
        #[arg(value_enum)]
        kind: RecreateKind,
        name: String,
        /// Required: say that the object may be removed and created again.
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// The running daemon's phase and health changes (applied, degraded,
    /// healed, rolled back, held, failed, suspended, ...).
    Events {
        /// Keep printing new events as they come.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        daemon: DaemonSocket,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Output,
    },
    /// Parse and check manifest files or directories, without Docker.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long = "allow-bind", value_name = "PREFIX")]
        allow_bind: Vec<PathBuf>,
        /// Decrypt `decrypt: age` files with this identity (repeatable);
        /// without one, only their age header is checked.
        #[arg(long = "age-identity", value_name = "FILE")]
        age_identity: Vec<PathBuf>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Output,
    },
    /// Print the JSON Schema of the manifest format (or, with `--kind
    /// openfactory`, of an OpenFactory app file).
    Schema {
        #[arg(long, value_enum, default_value = "asset")]
        kind: SchemaKind,
    },
    /// age files for `decrypt: age` secrets and configs.
    Secret {
        #[command(subcommand)]
        command: cli::secret::SecretCommand,
    },
    /// Print the completion script for a shell (bash, zsh, fish, ...).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (assetd.1, assetd-COMMAND.1) into DIR: for the
    /// package build.
    #[command(hide = true)]
    GenerateMan { dir: PathBuf },
}

/// Which format `assetd schema` describes.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum SchemaKind {
    /// assetd's own manifests (`kind: Asset`).
    Asset,
    /// OpenFactory app files (a top-level `apps:`).
    Openfactory,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RecreateKind {
    Network,
    Volume,
}

/// The assets a control command acts on.
#[derive(Args, Debug, Clone)]
struct Targets {
    /// Asset names.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    names: Vec<String>,
    /// Every asset of the instance, also those declared later.
    #[arg(long)]
    all: bool,
}

/// Where a control command finds the running daemon.
#[derive(Args, Debug, Clone)]
struct DaemonSocket {
    /// Where the daemon keeps its state (its socket is found there).
    #[arg(
        long = "state-dir",
        env = "ASSETD_STATE_DIR",
        default_value = "/var/lib/assetd",
        value_parser = absolute_path
    )]
    state_dir: PathBuf,
    /// The daemon's socket (default: assetd.sock in the state dir).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl DaemonSocket {
    fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("assetd.sock"))
    }
}

#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// The manifests directory (recursive).
    #[arg(
        long,
        env = "ASSETD_MANIFESTS",
        default_value = "/etc/assetd/manifests"
    )]
    manifests: PathBuf,
    /// Where the last-applied state is kept.
    #[arg(
        long = "state-dir",
        env = "ASSETD_STATE_DIR",
        default_value = "/var/lib/assetd",
        value_parser = absolute_path
    )]
    state_dir: PathBuf,
    #[arg(long, value_enum, env = "ASSETD_STRATEGY", default_value = "auto")]
    strategy: StrategyChoice,
    /// Name of this assetd instance: it manages only objects labelled
    /// with it, so several instances can share one engine.
    #[arg(long, env = "ASSETD_INSTANCE", default_value = "default", value_parser = parse_instance)]
    instance: String,
    /// Allow bind mounts whose source is under PREFIX (repeatable; `/`
    /// allows all). None are allowed by default.
    #[arg(long = "allow-bind", value_name = "PREFIX")]
    allow_bind: Vec<PathBuf>,
    /// Confirm a removal the mass-prune guard holds back.
    #[arg(long = "allow-mass-prune")]
    allow_mass_prune: bool,
    /// Largest share of managed assets one pass may remove unconfirmed.
    #[arg(long = "max-prune", default_value = "0.5", value_parser = parse_fraction)]
    max_prune: f64,
    /// How many Docker writes run at once.
    #[arg(long, default_value = "8", value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Accept manifest files and directories writable by group/other or
    /// owned by another user (refused by default: they start containers).
    #[arg(long = "insecure-permissions")]
    insecure_permissions: bool,
    /// Docker client config to take registry credentials from (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(
        long = "registry-config",
        value_name = "PATH",
        env = "ASSETD_REGISTRY_CONFIG"
    )]
    registry_config: Option<PathBuf>,
    /// An age identity file that opens `decrypt: age` secrets and configs
    /// (repeatable: old and new key while rotating). Default:
    /// /etc/assetd/age.key when it exists. Must be mode 0600 (or 0400),
    /// owned by root or the daemon's user.
    #[arg(long = "age-identity", value_name = "FILE", value_parser = absolute_path)]
    age_identity: Vec<PathBuf>,
    /// Swarm writer lease: how often its holder renews it.
    #[arg(long = "lease-renew", default_value = "2s", value_parser = parse_duration)]
    lease_renew: Duration,
    /// Swarm writer lease: unrenewed this long, another daemon takes it.
    #[arg(long = "lease-expiry", default_value = "10s", value_parser = parse_duration)]
    lease_expiry: Duration,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Full pass at least this often, whatever the events say.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    resync: Duration,
    /// Optional HTTP listener for /metrics, /healthz, /readyz.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Allow a non-loopback --listen address.
    #[arg(long = "listen-public")]
    listen_public: bool,
    /// The status API socket (default: assetd.sock in the state dir).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// After SIGTERM, how long in-flight Docker calls may run on.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    grace: Duration,
    /// The mass-prune guard (--max-prune) counts removals over this long,
    /// against the fleet as it was when the window opened.
    #[arg(long = "prune-window", default_value = "10m", value_parser = parse_duration)]
    prune_window: Duration,
    /// POST each phase or health change as JSON to this http:// URL
    /// (repeatable); see README, "Notifications".
    #[arg(long = "notify", value_name = "URL")]
    notify: Vec<assetd::notify::Target>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For people: tables and diffs (`table` is accepted too).
    #[value(alias = "table")]
    Text,
    /// For scripts: exact and stable.
    Json,
    /// The JSON document, as YAML.
    Yaml,
}

/// Prints a JSON document as JSON or, for `-o yaml`, as the same document in
/// YAML.
/// Prints `value` as JSON (written by `json`: compact or pretty) or, for
/// `-o yaml`, as the same document in YAML.
fn print_structured<T: serde::Serialize>(
    value: &T,
    output: Output,
    json: fn(&T) -> serde_json::Result<String>,
) {
    let json = || json(value).unwrap_or_default();
    if output != Output::Yaml {
        println!("{}", json());
        return;
    }
    match serde_saphyr::to_string(value) {
        Ok(yaml) => print!("{yaml}"),
        // Not expected for our own documents; the JSON still says everything.
        Err(e) => {
            eprintln!("assetd: cannot render YAML ({e}); printing JSON instead");
            println!("{}", json());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// A path made absolute once, at start: a relative `--state-dir` would
/// otherwise reach the engine as a relative bind source (a local
/// secret's file), which it refuses, and would change meaning with the
/// working directory.
fn absolute_path(s: &str) -> Result<PathBuf, String> {
    std::path::absolute(s).map_err(|e| format!("{s}: {e}"))
}

fn parse_instance(s: &str) -> Result<String, String> {
    assetd::spec::AssetName::new(s)
        .map(|n| n.to_string())
        .map_err(|e| format!("instance {e}"))
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// As [`parse_duration`], and `0s` (do not wait).
fn parse_wait(s: &str) -> Result<Duration, String> {
    match s.trim_end_matches(|c: char| c.is_ascii_alphabetic()) {
        "0" => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

/// `30s`, `5m`, `1h`, `500ms` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5m)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if d.is_zero() {
        return Err("a duration must be more than zero".into());
    }
    Ok(d)
}

impl CommonArgs {
    /// Reads the age identities once at start: a key file that is open to
    /// others, unreadable or not a key is bad configuration. With keys in
    /// memory, the process is made undumpable so no core file holds them
    /// or a plaintext.
    fn check_age_identities(&self, command: &str) -> Result<(), u8> {
        match AgeKeys::given(self.age_identity.clone()).load() {
            Ok(keys) => {
                if !keys.is_empty() {
                    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers
                    // and touches no memory of ours.
                    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
                }
                Ok(())
            }
            Err(e) => {
                eprintln!("assetd {command}: {e}");
                Err(EXIT_USAGE)
            }
        }
    }

    /// The lease timings, or why they cannot keep one writer.
    fn lease(&self) -> Result<assetd::lease::Timings, String> {
        let timings = assetd::lease::Timings {
            renew: self.lease_renew,
            expiry: self.lease_expiry,
        };
        timings.check().map(|()| timings)
    }

    fn pass_config(&self, respect_backoff: bool) -> PassConfig {
        PassConfig {
            manifests: self.manifests.clone(),
            load: LoadOptions {
                policy: Policy {
                    allow_bind: self.allow_bind.clone(),
                },
                check_permissions: !self.insecure_permissions,
                age: AgeKeys::given(self.age_identity.clone()),
                version_key: None,
            },
            plan: PlanConfig {
                allow_mass_prune: self.allow_mass_prune,
                max_prune_fraction: self.max_prune,
                ..PlanConfig::default()
            },
            concurrency: self.concurrency as usize,
            respect_backoff,
            parse_cache: None,
            check_moved_tags: true,
        }
    }
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("assetd: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let given = Given::from_matches(&matches);
    let code = runtime.block_on(dispatch(cli.command, given));
    ExitCode::from(code)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ASSETD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// What the operator said on the command line (or in the environment),
/// as opposed to a default: some commands act differently on it.
#[derive(Clone, Copy, Debug, Default)]
struct Given {
    /// `plan --manifests DIR` (or `ASSETD_MANIFESTS`): plan that directory,
    /// even while a daemon of another directory answers.
    plan_manifests: bool,
}

impl Given {
    fn from_matches(matches: &clap::ArgMatches) -> Self {
        let plan_manifests = matches
            .subcommand_matches("plan")
            .and_then(|plan| plan.value_source("manifests"))
            .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue);
        Given { plan_manifests }
    }
}

async fn dispatch(command: Command, given: Given) -> u8 {
    match command {
        Command::Validate {
            paths,
            allow_bind,
            age_identity,
            output,
        } => validate(paths, allow_bind, age_identity, output),
        Command::Secret { command } => cli::secret::run(command),
        Command::Completions { shell } => cli::docs::completions(shell),
        Command::GenerateMan { dir } => cli::docs::man_pages(&dir),
        Command::Schema { kind } => {
            match kind {
                SchemaKind::Asset => println!("{}", assetd::schema::schema_json()),
                SchemaKind::Openfactory => {
                    println!("{}", assetd::schema::openfactory::schema_json())
                }
            }
            EXIT_OK
        }
        Command::Apply {
            once,
            common,
            output,
            wait,
            override_window,
        } => {
            if !once {
                eprintln!("assetd apply: pass --once (the long-running daemon is `assetd run`)");
                return EXIT_USAGE;
            }
            cli::apply::apply_once(common, output, wait, override_window).await
        }
        Command::Sync { names, daemon } => cli::apply::sync(&names, &daemon.path()).await,
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
        Command::Retry { name, daemon } => {
            let Ok(name) = assetd::spec::AssetName::new(&name) else {
                eprintln!("assetd retry: `{name}` is not an asset name");
                return EXIT_USAGE;
            };
            let socket = daemon.path();
            match assetd::api::retry(&socket, &name).await {
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
        Command::Takeover { confirm, daemon } => {
            if !confirm {
                eprintln!(
                    "assetd takeover: pass --confirm to apply this daemon's copy of the manifests"
                );
                return EXIT_USAGE;
            }
            match assetd::api::confirm_takeover(&daemon.path()).await {
                Ok(()) => {
                    println!("confirmed: the daemon applies its copy of the manifests");
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!(
                        "assetd takeover: {e} (daemon socket {})",
                        daemon.path().display()
                    );
                    EXIT_FAILED
                }
            }
        }
        Command::DeleteVolume {
            name,
            confirm,
            common,
        } => {
            if !confirm {
                eprintln!(
                    "assetd delete-volume: pass --confirm to delete volume {name} and its data"
                );
                return EXIT_USAGE;
            }
            remove_stack_object(&common, assetd::stack::ResourceKind::Volume, &name).await
        }
        Command::Recreate {
            kind,
            name,
            confirm,
            common,
        } => {
            if !confirm {
                eprintln!("assetd recreate: pass --confirm to remove {name} so that the next pass creates it from its manifest");
                return EXIT_USAGE;
            }
            let kind = match kind {
                RecreateKind::Network => assetd::stack::ResourceKind::Network,
                RecreateKind::Volume => assetd::stack::ResourceKind::Volume,
            };
            remove_stack_object(&common, kind, &name).await
        }
        Command::Prune { confirm, daemon } => {
            if !confirm {
                eprintln!("assetd prune: pass --confirm to let the held removals go ahead");
                return EXIT_USAGE;
            }
            prune_confirm(daemon.path()).await
        }
    }
}

/// `delete-volume` and `recreate`: removes one of our unused networks or
/// volumes at the operator's word.
async fn remove_stack_object(
    common: &CommonArgs,
    kind: assetd::stack::ResourceKind,
    name: &str,
) -> u8 {
    use assetd::strategy::DeploymentStrategy as _;
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
    match assetd::api::confirm_prune(&socket).await {
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
            // `6 asset(s), 1 network(s), 2 secret(s) valid, 0 problem(s)`.
            let mut counts = vec![format!("{} asset(s)", desired.assets.len())];
            for kind in assetd::stack::ResourceKind::ALL {
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
async fn strategy_for(common: &CommonArgs) -> Result<assetd::strategy::AnyStrategy, u8> {
    let docker = engine::connect().map_err(|e| {
        eprintln!("assetd: {e}");
        EXIT_USAGE
    })?;
    let auth = assetd::registry_auth::RegistryAuth::new(common.registry_config.clone());
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
    let report = match assetd::api::fetch_status(&socket).await {
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
        Output::Text => print!("{}", assetd::status::render_table(&report)),
    }
    let failing = report
        .assets
        .iter()
        .any(|a| a.phase == assetd::status::Phase::Failed);
    if failing {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// Status computed from a read-only look at the engine, the manifests
/// and the store, as a pass would see it; `None` when the engine cannot
/// be read.
async fn engine_status(common: &CommonArgs) -> Option<assetd::status::StatusReport> {
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
    Some(assetd::status::StatusReport {
        source: "engine".into(),
        strategy: Some(strategy.kind().to_string()),
        ready: false,
        last_pass_ms: Some(assetd::store::now_ms()),
        manifest_errors: desired.errors().iter().map(ToString::to_string).collect(),
        assets: assetd::status::from_pass(
            &desired,
            &actual,
            &applied,
            &plan,
            &Default::default(),
            false,
        ),
        stack: plan
            .stack
            .iter()
            .filter(|a| !a.writes())
            .map(ToString::to_string)
            .collect(),
        windows: plan.windows.clone(),
        ..Default::default()
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
            parse_cache: Some(Default::default()),
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
        writer: assetd::writer::Writer::this_process(
            &args.common.state_dir,
            assetd::store::now_ms(),
        ),
        notify: args.notify.clone(),
        lease,
        registry: assetd::registry_auth::RegistryAuth::new(args.common.registry_config.clone()),
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
