//! The command line: every command and flag (clap), the exit codes of
//! the CLI contract, and what the flags make of a pass's configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use assetd::core::plan::PlanConfig;
use assetd::engine::StrategyChoice;
use assetd::input::desired::LoadOptions;
use assetd::input::manifest::Policy;
use assetd::input::stack::encrypted::AgeKeys;
use assetd::reconcile::PassConfig;

/// Exit codes of the CLI contract.
pub(crate) const EXIT_OK: u8 = 0;
pub(crate) const EXIT_FAILED: u8 = 1;
pub(crate) const EXIT_PENDING: u8 = 2;
/// `apply --once`: nothing failed, but something was held (removals
/// waiting for confirmation, an asset left as it runs): the engine does
/// not match the manifests.
pub(crate) const EXIT_HELD: u8 = 3;
/// `apply --once` on Swarm: another assetd holds the writer lease.
pub(crate) const EXIT_NOT_WRITER: u8 = 4;
pub(crate) const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "assetd",
    version,
    about = "Keeps Docker (containers or Swarm services) in line with a directory of YAML asset manifests"
)]
pub(crate) struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "ASSETD_LOG_FORMAT"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
        command: super::secret::SecretCommand,
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
pub(crate) enum SchemaKind {
    /// assetd's own manifests (`kind: Asset`).
    Asset,
    /// OpenFactory app files (a top-level `apps:`).
    Openfactory,
    /// A Compose file, as assetd reads it.
    Compose,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum RecreateKind {
    Network,
    Volume,
}

/// The assets a control command acts on.
#[derive(Args, Debug, Clone)]
pub(crate) struct Targets {
    /// Asset names.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) names: Vec<String>,
    /// Every asset of the instance, also those declared later.
    #[arg(long)]
    pub(crate) all: bool,
}

/// Where a control command finds the running daemon.
#[derive(Args, Debug, Clone)]
pub(crate) struct DaemonSocket {
    /// Where the daemon keeps its state (its socket is found there).
    #[arg(
        long = "state-dir",
        env = "ASSETD_STATE_DIR",
        default_value = "/var/lib/assetd",
        value_parser = absolute_path
    )]
    pub(crate) state_dir: PathBuf,
    /// The daemon's socket (default: assetd.sock in the state dir).
    #[arg(long)]
    pub(crate) socket: Option<PathBuf>,
}

impl DaemonSocket {
    pub(crate) fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("assetd.sock"))
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct CommonArgs {
    /// The manifests directory (recursive).
    #[arg(
        long,
        env = "ASSETD_MANIFESTS",
        default_value = "/etc/assetd/manifests"
    )]
    pub(crate) manifests: PathBuf,
    /// Where the last-applied state is kept.
    #[arg(
        long = "state-dir",
        env = "ASSETD_STATE_DIR",
        default_value = "/var/lib/assetd",
        value_parser = absolute_path
    )]
    pub(crate) state_dir: PathBuf,
    #[arg(long, value_enum, env = "ASSETD_STRATEGY", default_value = "auto")]
    pub(crate) strategy: StrategyChoice,
    /// Name of this assetd instance: it manages only objects labelled
    /// with it, so several instances can share one engine.
    #[arg(long, env = "ASSETD_INSTANCE", default_value = "default", value_parser = parse_instance)]
    pub(crate) instance: String,
    /// Allow bind mounts whose source is under PREFIX (repeatable; `/`
    /// allows all). None are allowed by default.
    #[arg(long = "allow-bind", value_name = "PREFIX")]
    pub(crate) allow_bind: Vec<PathBuf>,
    /// Confirm a removal the mass-prune guard holds back.
    #[arg(long = "allow-mass-prune")]
    pub(crate) allow_mass_prune: bool,
    /// Largest share of managed assets one pass may remove unconfirmed.
    #[arg(long = "max-prune", default_value = "0.5", value_parser = parse_fraction)]
    pub(crate) max_prune: f64,
    /// How many Docker writes run at once.
    #[arg(long, default_value = "8", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) concurrency: u16,
    /// Accept manifest files and directories writable by group/other or
    /// owned by another user (refused by default: they start containers).
    #[arg(long = "insecure-permissions")]
    pub(crate) insecure_permissions: bool,
    /// Docker client config to take registry credentials from (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(
        long = "registry-config",
        value_name = "PATH",
        env = "ASSETD_REGISTRY_CONFIG"
    )]
    pub(crate) registry_config: Option<PathBuf>,
    /// An age identity file that opens `decrypt: age` secrets and configs
    /// (repeatable: old and new key while rotating). Default:
    /// /etc/assetd/age.key when it exists. Must be mode 0600 (or 0400),
    /// owned by root or the daemon's user.
    #[arg(long = "age-identity", value_name = "FILE", value_parser = absolute_path)]
    pub(crate) age_identity: Vec<PathBuf>,
    /// Swarm writer lease: how often its holder renews it.
    #[arg(long = "lease-renew", default_value = "2s", value_parser = parse_duration)]
    pub(crate) lease_renew: Duration,
    /// Swarm writer lease: unrenewed this long, another daemon takes it.
    #[arg(long = "lease-expiry", default_value = "10s", value_parser = parse_duration)]
    pub(crate) lease_expiry: Duration,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Full pass at least this often, whatever the events say.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) resync: Duration,
    /// Optional HTTP listener for /metrics, /healthz, /readyz.
    #[arg(long)]
    pub(crate) listen: Option<std::net::SocketAddr>,
    /// Allow a non-loopback --listen address.
    #[arg(long = "listen-public")]
    pub(crate) listen_public: bool,
    /// The status API socket (default: assetd.sock in the state dir).
    #[arg(long)]
    pub(crate) socket: Option<PathBuf>,
    /// After SIGTERM, how long in-flight Docker calls may run on.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) grace: Duration,
    /// The mass-prune guard (--max-prune) counts removals over this long,
    /// against the fleet as it was when the window opened.
    #[arg(long = "prune-window", default_value = "10m", value_parser = parse_duration)]
    pub(crate) prune_window: Duration,
    /// POST each phase or health change as JSON to this http:// URL
    /// (repeatable); see README, "Notifications".
    #[arg(long = "notify", value_name = "URL")]
    pub(crate) notify: Vec<assetd::daemon::notify::Target>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
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
pub(crate) fn print_structured<T: serde::Serialize>(
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
pub(crate) enum LogFormat {
    Human,
    Json,
}

/// A path made absolute once, at start: a relative `--state-dir` would
/// otherwise reach the engine as a relative bind source (a local
/// secret's file), which it refuses, and would change meaning with the
/// working directory.
pub(crate) fn absolute_path(s: &str) -> Result<PathBuf, String> {
    std::path::absolute(s).map_err(|e| format!("{s}: {e}"))
}

pub(crate) fn parse_instance(s: &str) -> Result<String, String> {
    assetd::model::spec::AssetName::new(s)
        .map(|n| n.to_string())
        .map_err(|e| format!("instance {e}"))
}

pub(crate) fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// As [`parse_duration`], and `0s` (do not wait).
pub(crate) fn parse_wait(s: &str) -> Result<Duration, String> {
    match s.trim_end_matches(|c: char| c.is_ascii_alphabetic()) {
        "0" => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

/// `30s`, `5m`, `1h`, `500ms` or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
    pub(crate) fn check_age_identities(&self, command: &str) -> Result<(), u8> {
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
    pub(crate) fn lease(&self) -> Result<assetd::engine::lease::Timings, String> {
        let timings = assetd::engine::lease::Timings {
            renew: self.lease_renew,
            expiry: self.lease_expiry,
        };
        timings.check().map(|()| timings)
    }

    pub(crate) fn pass_config(&self, respect_backoff: bool) -> PassConfig {
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
            manifest_cache: None,
            check_moved_tags: true,
        }
    }
}
