//! The state every figure shares, and how it is set up: the engine
//! connection, the run id, the temporary directory, the proxy and the
//! start-event log.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bollard::Docker;

use crate::cli::{Args, Figure, Sizes};
use crate::procfs::loadavg;
use crate::proxy::Proxy;
use crate::report::Report;
use crate::start_log::StartLog;
use crate::IMAGE;

/// Everything a figure needs.
pub struct Bench {
    pub args: Args,
    pub sizes: Sizes,
    /// A direct client of the engine, for baselines and observation.
    pub docker: Docker,
    /// `DOCKER_HOST` of the engine.
    pub engine_host: String,
    /// Run id: on every object and in every name.
    pub rid: String,
    /// Temporary directory: manifests, state, logs.
    pub root: PathBuf,
    pub assetd: PathBuf,
    /// The docker CLI for the CLI baselines.
    pub cli: PathBuf,
    pub starts: Arc<StartLog>,
    pub proxy: Proxy,
    pub clk_tck: f64,
    pub report: Report,
    /// Pids of the daemons alive now, for the cleanup after an abort.
    pub daemons: Arc<Mutex<BTreeSet<u32>>>,
}

impl Bench {
    pub async fn new(args: Args) -> Result<Self> {
        let engine_host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///run/assetd-test/docker.sock".to_string());
        let engine_socket =
            PathBuf::from(engine_host.strip_prefix("unix://").ok_or_else(|| {
                anyhow!("DOCKER_HOST={engine_host}: only unix sockets are supported")
            })?);
        let docker = Docker::connect_with_host(&engine_host)
            .with_context(|| format!("connecting to {engine_host}"))?;
        let version = docker.version().await.with_context(|| {
            format!("no Docker engine answers at {engine_host}; run `eval \"$(scripts/testenv.sh)\"` first")
        })?;
        docker
            .inspect_image(IMAGE)
            .await
            .with_context(|| format!("image {IMAGE} missing; run scripts/testenv.sh"))?;
        let assetd = locate_assetd(&args)?;
        let rid = format!(
            "{:x}",
            (SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64
                ^ (std::process::id() as u64) << 20)
                & 0xff_ffff
        );
        let root = std::env::temp_dir().join(format!("assetd-bench-{rid}"));
        std::fs::create_dir_all(&root)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        let proxy = Proxy::start(&root.join("proxy.sock"), engine_socket.clone()).await?;
        let cli = locate_docker_cli();
        let clk_tck = clock_ticks_per_second();
        let starts = StartLog::start(docker.clone(), rid.clone());
        let sizes = Sizes::new(&args);
        println!(
            "assetd-bench: run {rid}; engine {} (API {}) at {engine_host}; {} CPUs; load average {}; assetd {}; docker CLI {}{}",
            version.version.unwrap_or_default(),
            version.api_version.unwrap_or_default(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            loadavg(),
            assetd.display(),
            cli.display(),
            if args.quick { "; QUICK mode (small sizes, one run each)" } else { "" },
        );
        Ok(Self {
            args,
            sizes,
            docker,
            engine_host,
            rid,
            root,
            assetd,
            cli,
            starts,
            proxy,
            clk_tck,
            report: Report::default(),
            daemons: Default::default(),
        })
    }

    /// Whether `--only` asks for `figure` (no `--only`: every figure).
    pub fn selected(&self, figure: Figure) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&figure)
    }
}

fn locate_docker_cli() -> PathBuf {
    ["/usr/bin/docker", "/usr/local/bin/docker"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("docker"))
}

/// The unit of the CPU times in `/proc`.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The assetd binary: `--assetd`, else next to this binary. When run by
/// cargo, build it first so it is not older than the library the bench
/// links (a failed build, e.g. while someone edits src/, keeps the old one).
fn locate_assetd(args: &Args) -> Result<PathBuf> {
    if let Some(path) = &args.assetd {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("no directory for {}", exe.display()))?;
    let candidate = dir.join("assetd");
    if let (Ok(cargo), Ok(manifest_dir)) =
        (std::env::var("CARGO"), std::env::var("CARGO_MANIFEST_DIR"))
    {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--bin", "assetd", "--quiet"])
            .current_dir(manifest_dir);
        if release {
            cmd.arg("--release");
        }
        // The same target directory as the bench itself.
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            _ => eprintln!(
                "assetd-bench: building assetd failed; using the existing {}",
                candidate.display()
            ),
        }
    }
    if !candidate.exists() {
        bail!(
            "{} not found: build it (`cargo build --release --bins`) or pass --assetd PATH",
            candidate.display()
        );
    }
    Ok(candidate)
}
