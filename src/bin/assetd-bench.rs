//! `assetd-bench`: measures the real `assetd` daemon against bare Docker on
//! the real engine, side by side in one run, and prints each figure with
//! its target.
//!
//! ```text
//! cargo run --release --bin assetd-bench -- [--quick] [--runs N] [--cold-runs N] [--only NAME[,NAME]]
//! ```
//!
//! Every figure pairs an assetd measurement with its baseline in the same
//! run, alternating which goes first, and reports medians over the runs
//! (the machine is small and noisy). Times come from the engine's own
//! clock wherever it has one: a container's `start` event (`timeNano`) and
//! a Swarm task's `Status.Timestamp` when it turned `running`, minus the
//! wall-clock instant the action was issued (file renamed into place,
//! CLI spawned, API call sent). Both sides are timed the same way.
//!
//! Docker API calls are counted for real: a proxy inside the bench listens
//! on a temporary unix socket, forwards every connection to the engine and
//! parses the requests of the client→engine direction (keep-alive,
//! `Content-Length` and chunked bodies). Daemons whose calls are counted
//! get `DOCKER_HOST` pointed at it (`--count-all` routes every daemon
//! through it and prints where its calls and time go).
//!
//! Everything the bench creates carries `assetd.bench=<run id>` (plus the
//! bench's pid, so a later run can clear leftovers of a killed one) and is
//! removed at the end, also after an error or Ctrl-C. Missed targets are
//! reported, not failed: the exit code is 1 only when a figure could not
//! be measured.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::{
    ContainerCreateBody, HostConfig, Ipam, IpamConfig, NetworkCreateRequest, RestartPolicy,
    RestartPolicyNameEnum, ServiceSpec, TaskSpec, TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use clap::Parser;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const IMAGE: &str = "assetd-test/busybox:1";
/// On everything the bench creates; valued with the run id.
const LABEL: &str = "assetd.bench";
/// Which figure and run an object belongs to.
const FIG_LABEL: &str = "assetd.bench.fig";
/// The bench's pid: objects of a bench that no longer runs are leftovers.
const PID_LABEL: &str = "assetd.bench.pid";
/// Concurrency of the baselines and of assetd (its default `--concurrency`).
const PARALLEL: usize = 8;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "assetd-bench",
    about = "Benchmarks the assetd daemon against bare Docker on the engine at DOCKER_HOST"
)]
struct Args {
    /// Each figure once and small (20 instead of 200, 100 instead of 1000):
    /// for CI, so the bench cannot rot.
    #[arg(long)]
    quick: bool,
    /// Runs of each cheap figure (latencies, repair, idle pass,
    /// parse): medians are reported. Default 7 (1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Runs of each cold-start figure (200 containers, 200 services: a
    /// few minutes each here). Default 1, to keep the whole run near 10
    /// minutes; use 3 for medians.
    #[arg(long)]
    cold_runs: Option<usize>,
    /// Only these figures (comma-separated or repeated): latency-local,
    /// latency-swarm, repair, cold-local, cold-swarm, idle, comment,
    /// parse-plan.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The assetd binary (default: next to this one, built first when run
    /// through cargo).
    #[arg(long)]
    assetd: Option<PathBuf>,
    /// Route every daemon through the counting proxy and print its calls
    /// and their timeline (profiling; adds a hop to every call).
    #[arg(long)]
    count_all: bool,
    /// Keep the temporary directory (daemon logs) after the run.
    #[arg(long)]
    keep_temp: bool,
}

const FIGURES: &[&str] = &[
    "latency-local",
    "latency-swarm",
    "repair",
    "cold-local",
    "cold-swarm",
    "idle",
    "comment",
    "parse-plan",
];

/// How big and how often, fixed from the flags.
#[derive(Clone, Debug)]
struct Sizes {
    latency_runs: usize,
    repair_runs: usize,
    cold_runs: usize,
    cold_local_n: usize,
    cold_swarm_n: usize,
    idle_n: usize,
    idle_runs: usize,
    parse_runs: usize,
    parse_small: usize,
    parse_big: usize,
}

impl Sizes {
    fn new(args: &Args) -> Self {
        let cheap = match (args.runs, args.quick) {
            (Some(n), _) => n.max(1),
            (None, true) => 1,
            (None, false) => 7,
        };
        let cold = args.cold_runs.unwrap_or(1).max(1);
        Self {
            latency_runs: cheap,
            repair_runs: cheap,
            cold_runs: cold,
            cold_local_n: if args.quick { 20 } else { 200 },
            cold_swarm_n: if args.quick { 20 } else { 200 },
            idle_n: if args.quick { 100 } else { 1000 },
            idle_runs: cheap,
            parse_runs: cheap,
            parse_small: 1000,
            parse_big: 10_000,
        }
    }
}

/// One line of the final table.
#[derive(Clone, Debug)]
struct Row {
    figure: String,
    assetd: String,
    baseline: String,
    ratio: String,
    target: String,
    /// `None`: no target, or the figure failed.
    met: Option<bool>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    for name in &args.only {
        if !FIGURES.contains(&name.as_str()) {
            eprintln!(
                "assetd-bench: unknown figure `{name}`; figures: {}",
                FIGURES.join(", ")
            );
            return std::process::ExitCode::from(64);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("assetd-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sets up, runs the figures on their own task (so Ctrl-C or a panic still
/// reaches the cleanup), cleans up, prints the table. `Ok(false)` when a
/// figure failed.
async fn run(args: Args) -> Result<bool> {
    let bench = Arc::new(Bench::new(args).await?);
    bench.clear_leftovers().await;
    let task = {
        let bench = bench.clone();
        tokio::spawn(async move { bench.run_figures().await })
    };
    let abort = task.abort_handle();
    let mut signals = signal_hook_tokio::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let outcome = tokio::select! {
        joined = task => match joined {
            Ok(ok) => Ok(ok),
            Err(e) if e.is_panic() => Err(anyhow!("the bench panicked")),
            Err(e) => Err(anyhow!("the bench task ended: {e}")),
        },
        _ = signals.next() => {
            eprintln!("\nassetd-bench: interrupted; cleaning up (Ctrl-C again to leave things behind)");
            abort.abort();
            // Give the aborted task a moment to drop its daemons.
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(anyhow!("interrupted"))
        }
    };
    let cleanup = bench.cleanup();
    tokio::select! {
        _ = cleanup => {}
        _ = signals.next() => eprintln!("assetd-bench: cleanup skipped; objects carry {LABEL}={}", bench.rid),
    }
    bench.print_table();
    outcome
}

/// Everything a figure needs.
struct Bench {
    args: Args,
    sizes: Sizes,
    /// A direct client of the engine, for baselines and observation.
    docker: Docker,
    /// `DOCKER_HOST` of the engine.
    engine_host: String,
    /// Run id: on every object and in every name.
    rid: String,
    /// Temporary directory: manifests, state, logs.
    root: PathBuf,
    assetd: PathBuf,
    /// The docker CLI for the CLI baselines.
    cli: PathBuf,
    starts: Arc<StartLog>,
    proxy: Proxy,
    clk_tck: f64,
    rows: Mutex<Vec<Row>>,
    /// Pids of the daemons alive now, for the cleanup after an abort.
    daemons: Arc<Mutex<BTreeSet<u32>>>,
}

impl Bench {
    async fn new(args: Args) -> Result<Self> {
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
        let cli = ["/usr/bin/docker", "/usr/local/bin/docker"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("docker"));
        let clk_tck = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
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
            rows: Mutex::new(Vec::new()),
            daemons: Default::default(),
        })
    }

    fn selected(&self, figure: &str) -> bool {
        self.args.only.is_empty() || self.args.only.iter().any(|f| f == figure)
    }

    async fn run_figures(&self) -> bool {
        // The event subscription must be live before anything is timed:
        // wait for the start event of a throw-away container.
        if let Err(e) = self.warm_up().await {
            let hint = if format!("{e:#}").contains("docker0") {
                "\n(the engine's default bridge is gone: `eval \"$(scripts/testenv.sh)\"` restarts the engine to recreate it)"
            } else {
                ""
            };
            eprintln!("assetd-bench: warm-up failed: {e:#}{hint}");
            return false;
        }
        let mut ok = true;
        let started = Instant::now();
        let figures: Vec<(&str, _)> = vec![
            ("parse-plan", 0),
            ("latency-local", 1),
            ("repair", 2),
            ("latency-swarm", 3),
            ("cold-local", 4),
            ("cold-swarm", 5),
            ("idle", 6),
        ];
        for (name, which) in figures {
            let wanted = match which {
                6 => self.selected("idle") || self.selected("comment"),
                _ => self.selected(name),
            };
            if !wanted {
                continue;
            }
            let label = if which == 6 { "idle + comment" } else { name };
            println!("\n== {label} ==");
            let t = Instant::now();
            let result = match which {
                0 => self.fig_parse_plan().await,
                1 => self.fig_latency_local().await,
                2 => self.fig_repair().await,
                3 => self.fig_latency_swarm().await,
                4 => self.fig_cold_local().await,
                5 => self.fig_cold_swarm().await,
                _ => self.fig_idle_and_comment().await,
            };
            match result {
                Ok(()) => println!("   ({label}: {:.0} s)", t.elapsed().as_secs_f64()),
                Err(e) => {
                    ok = false;
                    eprintln!("assetd-bench: {label} failed: {e:#}");
                    self.row(Row {
                        figure: label.to_string(),
                        assetd: "error".into(),
                        baseline: String::new(),
                        ratio: String::new(),
                        target: String::new(),
                        met: None,
                    });
                    // Leave the engine clean for the next figure.
                    self.remove_by_label(LABEL, &self.rid).await;
                }
            }
        }
        println!(
            "\nall figures: {:.0} s; load average now {}",
            started.elapsed().as_secs_f64(),
            loadavg()
        );
        ok
    }

    fn row(&self, row: Row) {
        self.rows.lock().expect("rows").push(row);
    }

    async fn warm_up(&self) -> Result<()> {
        let name = format!("b{}-warmup", self.rid);
        let t0 = now_ns();
        self.bollard_run(&name, "warmup").await?;
        self.starts
            .wait_one(&name, t0, Duration::from_secs(30))
            .await
            .context(
                "no start event seen for the warm-up container: is the events stream working?",
            )?;
        self.remove_container(&name).await;
        Ok(())
    }

    // ---------------------------------------------------------------
    // Figures
    // ---------------------------------------------------------------

    /// file written → container running, vs `docker run -d` (CLI) and
    /// bollard create+start, all timed to the container's start event.
    async fn fig_latency_local(&self) -> Result<()> {
        let dirs = self.dirs("ll")?;
        let daemon = self.daemon(&dirs, "local", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        // One untimed round of each, so no side pays a first-use cost.
        let mut first = true;
        let (mut assetd, mut cli, mut api) = (Vec::new(), Vec::new(), Vec::new());
        let runs = self.sizes.latency_runs;
        for run in 0..=runs {
            let warm = first;
            first = false;
            let mut order = [0usize, 1, 2];
            order.rotate_left(run % 3);
            let mut got = [0.0f64; 3];
            for method in order {
                let name = format!("b{}-ll{run}-{}", self.rid, ["a", "c", "b"][method]);
                let fig = format!("ll{run}");
                let mark = self.proxy.mark();
                let t0_instant = Instant::now();
                let t0 = now_ns();
                match method {
                    0 => write_atomic(
                        &dirs.manifests,
                        &format!("{name}.yaml"),
                        &self.asset_yaml(&name, &fig, ""),
                    )?,
                    1 => {
                        let child = self.cli_command(&[
                            "run",
                            "-d",
                            "--restart",
                            "unless-stopped",
                            "--label",
                            &format!("{LABEL}={}", self.rid),
                            "--label",
                            &format!("{FIG_LABEL}={fig}"),
                            "--label",
                            &format!("{PID_LABEL}={}", std::process::id()),
                            "--name",
                            &name,
                            IMAGE,
                        ])?;
                        child
                            .wait_ok(Duration::from_secs(30))
                            .await
                            .context("docker run -d")?;
                    }
                    _ => self.bollard_run(&name, &fig).await?,
                }
                let at = self
                    .starts
                    .wait_one(&name, t0, Duration::from_secs(30))
                    .await?;
                got[method] = secs(at - t0);
                if method == 0 && self.args.count_all {
                    println!(
                        "   timeline of {name} (file renamed at +0 ms):\n{}",
                        self.proxy.timeline(mark, t0_instant, Some(at - t0))
                    );
                }
                // Clean up outside the timed part: assetd prunes its own
                // when the file goes, the baselines are removed directly.
                if method == 0 {
                    std::fs::remove_file(dirs.manifests.join(format!("{name}.yaml")))?;
                    self.wait_container_gone(&name, Duration::from_secs(30))
                        .await?;
                } else {
                    self.remove_container(&name).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if warm {
                continue;
            }
            println!(
                "   run {run}: assetd {:.0} ms, docker run -d {:.0} ms, bollard create+start {:.0} ms",
                got[0] * 1e3,
                got[1] * 1e3,
                got[2] * 1e3
            );
            assetd.push(got[0]);
            cli.push(got[1]);
            api.push(got[2]);
        }
        daemon.stop().await;
        self.latency_rows(
            "file written → container running (local)",
            "docker run -d",
            &assetd,
            &cli,
        );
        self.latency_rows(
            "file written → container running (local)",
            "bollard create+start",
            &assetd,
            &api,
        );
        Ok(())
    }

    fn latency_rows(&self, figure: &str, baseline: &str, assetd: &[f64], base: &[f64]) {
        let ratios: Vec<f64> = assetd.iter().zip(base).map(|(a, b)| a / b).collect();
        let ratio = median(&ratios);
        println!(
            "   {figure}: assetd median {:.0} ms, {baseline} median {:.0} ms, paired ratio median {ratio:.2}×",
            median(assetd) * 1e3,
            median(base) * 1e3
        );
        self.row(Row {
            figure: format!("{figure} vs {baseline}"),
            assetd: format!("{:.0} ms", median(assetd) * 1e3),
            baseline: format!("{:.0} ms", median(base) * 1e3),
            ratio: format!("{ratio:.2}×"),
            target: "≤ 1.10×".into(),
            met: Some(ratio <= 1.10),
        });
    }

    /// `docker rm -f` of a managed container → its replacement running.
    async fn fig_repair(&self) -> Result<()> {
        let dirs = self.dirs("rp")?;
        let daemon = self.daemon(&dirs, "local", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        let name = format!("b{}-rp", self.rid);
        let t0 = now_ns();
        write_atomic(
            &dirs.manifests,
            &format!("{name}.yaml"),
            &self.asset_yaml(&name, "rp", ""),
        )?;
        self.starts
            .wait_one(&name, t0, Duration::from_secs(30))
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut times = Vec::new();
        let mut rm_times = Vec::new();
        for run in 0..=self.sizes.repair_runs {
            let mark = self.proxy.mark();
            let t0_instant = Instant::now();
            let t0 = now_ns();
            self.docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await
                .context("docker rm -f of the managed container")?;
            let rm = secs(now_ns() - t0);
            let at = self
                .starts
                .wait_one(&name, t0, Duration::from_secs(60))
                .await?;
            let dt = secs(at - t0);
            if self.args.count_all && run == 1 {
                println!(
                    "   timeline (rm -f issued at +0 ms):\n{}",
                    self.proxy.timeline(mark, t0_instant, Some(at - t0))
                );
            }
            if run > 0 {
                println!("   run {run}: running again {:.0} ms after rm -f was issued (the rm itself took {:.0} ms)", dt * 1e3, rm * 1e3);
                times.push(dt);
                rm_times.push(rm);
            }
            // Let the daemon's follow-up pass finish.
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        daemon.stop().await;
        self.remove_container(&name).await;
        let m = median(&times);
        println!(
            "   median {:.0} ms (max {:.0} ms); rm -f itself median {:.0} ms",
            m * 1e3,
            max(&times) * 1e3,
            median(&rm_times) * 1e3
        );
        self.row(Row {
            figure: "managed container rm -f → running again".into(),
            assetd: format!("{:.0} ms", m * 1e3),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "< 1 s median".into(),
            met: Some(m < 1.0),
        });
        Ok(())
    }

    /// file written → first task running, vs `docker service create -d`
    /// (CLI) and bollard create_service, timed to the task's `running`
    /// timestamp.
    async fn fig_latency_swarm(&self) -> Result<()> {
        self.require_swarm().await?;
        let dirs = self.dirs("ls")?;
        let daemon = self.daemon(&dirs, "swarm", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        let (mut assetd, mut cli, mut api) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=self.sizes.latency_runs {
            let mut order = [0usize, 1, 2];
            order.rotate_left(run % 3);
            let mut got = [0.0f64; 3];
            for method in order {
                let name = format!("b{}-ls{run}-{}", self.rid, ["a", "c", "b"][method]);
                let fig = format!("ls{run}");
                let mark = self.proxy.mark();
                let t0_instant = Instant::now();
                let t0 = now_ns();
                match method {
                    0 => write_atomic(
                        &dirs.manifests,
                        &format!("{name}.yaml"),
                        &self.asset_yaml(&name, &fig, ""),
                    )?,
                    1 => {
                        let mut argv = vec![
                            "service".to_string(),
                            "create".into(),
                            "-d".into(),
                            "--no-resolve-image".into(),
                        ];
                        for (k, v) in self.labels(&fig) {
                            argv.extend([
                                "--label".to_string(),
                                format!("{k}={v}"),
                                "--container-label".into(),
                                format!("{k}={v}"),
                            ]);
                        }
                        argv.extend(["--name".to_string(), name.clone(), IMAGE.into()]);
                        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                        let child = self.cli_command(&argv)?;
                        child
                            .wait_ok(Duration::from_secs(30))
                            .await
                            .context("docker service create")?;
                    }
                    _ => {
                        self.docker
                            .create_service(self.bare_service(&name, &fig, None), None)
                            .await
                            .context("create_service")?;
                    }
                }
                let at = self
                    .wait_task_running(&name, Duration::from_secs(60))
                    .await?;
                got[method] = secs(at - t0);
                if method == 0 && self.args.count_all {
                    println!(
                        "   timeline of {name} (file renamed at +0 ms):\n{}",
                        self.proxy.timeline(mark, t0_instant, Some(at - t0))
                    );
                }
                if method == 0 {
                    std::fs::remove_file(dirs.manifests.join(format!("{name}.yaml")))?;
                    self.wait_service_gone(&name, Duration::from_secs(30))
                        .await?;
                } else {
                    let _ = self.docker.delete_service(&name).await;
                }
                self.wait_no_containers(
                    "com.docker.swarm.service.name",
                    &name,
                    Duration::from_secs(60),
                )
                .await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if run == 0 {
                continue;
            }
            println!(
                "   run {run}: assetd {:.0} ms, docker service create {:.0} ms, bollard create_service {:.0} ms",
                got[0] * 1e3,
                got[1] * 1e3,
                got[2] * 1e3
            );
            assetd.push(got[0]);
            cli.push(got[1]);
            api.push(got[2]);
        }
        daemon.stop().await;
        self.latency_rows(
            "file written → task running (Swarm)",
            "docker service create",
            &assetd,
            &cli,
        );
        self.latency_rows(
            "file written → task running (Swarm)",
            "bollard create_service",
            &assetd,
            &api,
        );
        Ok(())
    }

    /// N assets from cold (daemon started on a directory of N files) vs
    /// the same N `docker run -d` issued 8 at a time by `xargs -P 8`.
    async fn fig_cold_local(&self) -> Result<()> {
        let n = self.sizes.cold_local_n;
        let mut assetd = Vec::new();
        let mut base = Vec::new();
        for run in 0..self.sizes.cold_runs {
            let mut got = [Sample::default(), Sample::default()];
            let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let fig = format!("cl{run}{}", ["a", "b"][side]);
                let prefix = format!("b{}-{fig}-", self.rid);
                let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
                let sample = if side == 0 {
                    let dirs = self.dirs(&fig)?;
                    for name in &names {
                        write_atomic(
                            &dirs.manifests,
                            &format!("{name}.yaml"),
                            &self.asset_yaml(name, &fig, ""),
                        )?;
                    }
                    let cpu0 = CpuSnap::take(None);
                    let mark = self.proxy.mark();
                    let t0 = now_ns();
                    let daemon = self.daemon(&dirs, "local", self.args.count_all)?;
                    let at = self
                        .starts
                        .wait_all(&prefix, n, t0, Duration::from_secs(600))
                        .await?;
                    let created = self
                        .starts
                        .last_create(&prefix, t0)
                        .map_or(f64::NAN, |c| secs(c - t0));
                    let cpu1 = CpuSnap::take(Some(daemon.pid));
                    daemon.stop().await;
                    if self.args.count_all {
                        println!("{}", self.proxy.histogram(mark, n));
                    }
                    Sample::new(secs(at - t0), created, &cpu0, &cpu1, self.clk_tck)
                } else {
                    let list = self.root.join(format!("{fig}.names"));
                    std::fs::write(&list, names.join("\n") + "\n")?;
                    let cpu0 = CpuSnap::take(None);
                    let t0 = now_ns();
                    let mut cmd = Command::new("xargs");
                    cmd.args(["-P", &PARALLEL.to_string(), "-I{}"])
                        .arg(&self.cli)
                        .args(["run", "-d", "--restart", "unless-stopped"]);
                    for (k, v) in self.labels(&fig) {
                        cmd.arg("--label").arg(format!("{k}={v}"));
                    }
                    cmd.args(["--name", "{}", IMAGE])
                        .env("DOCKER_HOST", &self.engine_host)
                        .stdin(std::fs::File::open(&list)?)
                        .stdout(Stdio::null());
                    let child = self.spawn_logged(cmd)?;
                    let at = self
                        .starts
                        .wait_all(&prefix, n, t0, Duration::from_secs(600))
                        .await?;
                    let created = self
                        .starts
                        .last_create(&prefix, t0)
                        .map_or(f64::NAN, |c| secs(c - t0));
                    let cpu1 = CpuSnap::take(None);
                    child
                        .wait_ok(Duration::from_secs(60))
                        .await
                        .context("xargs docker run")?;
                    Sample::new(secs(at - t0), created, &cpu0, &cpu1, self.clk_tck)
                };
                println!(
                    "   run {run} {}: {}",
                    ["assetd", "xargs -P 8 docker run -d"][side],
                    sample.describe()
                );
                got[side] = sample;
                self.remove_by_label(FIG_LABEL, &fig).await;
                settle().await;
            }
            assetd.push(got[0].clone());
            base.push(got[1].clone());
        }
        self.throughput_row(
            &format!("{n} assets from cold, all running (local)"),
            "xargs -P 8 docker run -d",
            &assetd,
            &base,
            1.0,
        );
        Ok(())
    }

    /// N services from cold vs `docker stack deploy` of the same N, all
    /// on one overlay network with a /16.
    async fn fig_cold_swarm(&self) -> Result<()> {
        self.require_swarm().await?;
        let n = self.sizes.cold_swarm_n;
        let network = self.overlay_network().await?;
        let mut assetd = Vec::new();
        let mut base = Vec::new();
        for run in 0..self.sizes.cold_runs {
            let mut got = [Sample::default(), Sample::default()];
            let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let fig = format!("cs{run}{}", ["a", "b"][side]);
                let names: Vec<String> =
                    (0..n).map(|i| format!("b{}-{fig}-{i}", self.rid)).collect();
                let sample = if side == 0 {
                    let dirs = self.dirs(&fig)?;
                    let extra = format!("  networks: [ {network} ]\n");
                    for name in &names {
                        write_atomic(
                            &dirs.manifests,
                            &format!("{name}.yaml"),
                            &self.asset_yaml(name, &fig, &extra),
                        )?;
                    }
                    let cpu0 = CpuSnap::take(None);
                    let mark = self.proxy.mark();
                    let t0 = now_ns();
                    let daemon = self.daemon(&dirs, "swarm", self.args.count_all)?;
                    let (at, created) = self
                        .wait_services_running(&fig, n, t0, Duration::from_secs(900))
                        .await?;
                    let cpu1 = CpuSnap::take(Some(daemon.pid));
                    daemon.stop().await;
                    if self.args.count_all {
                        println!("{}", self.proxy.histogram(mark, n));
                    }
                    Sample::new(secs(at - t0), created, &cpu0, &cpu1, self.clk_tck)
                } else {
                    let stack = format!("b{}{fig}", self.rid);
                    let file = self.root.join(format!("{fig}.stack.yml"));
                    std::fs::write(&file, self.stack_yaml(&fig, n, &network))?;
                    let cpu0 = CpuSnap::take(None);
                    let t0 = now_ns();
                    let child = self.cli_command(&[
                        "stack",
                        "deploy",
                        "--resolve-image",
                        "never",
                        "-c",
                        file.to_str()
                            .ok_or_else(|| anyhow!("temp path is not UTF-8"))?,
                        &stack,
                    ])?;
                    let (at, created) = self
                        .wait_services_running(&fig, n, t0, Duration::from_secs(900))
                        .await?;
                    let cpu1 = CpuSnap::take(None);
                    child
                        .wait_ok(Duration::from_secs(120))
                        .await
                        .context("docker stack deploy")?;
                    Sample::new(secs(at - t0), created, &cpu0, &cpu1, self.clk_tck)
                };
                println!(
                    "   run {run} {}: {}",
                    ["assetd", "docker stack deploy"][side],
                    sample.describe()
                );
                got[side] = sample;
                self.remove_by_label(FIG_LABEL, &fig).await;
                settle().await;
            }
            assetd.push(got[0].clone());
            base.push(got[1].clone());
        }
        self.throughput_row(
            &format!("{n} services from cold (Swarm)"),
            "docker stack deploy",
            &assetd,
            &base,
            0.5,
        );
        Ok(())
    }

    fn throughput_row(
        &self,
        figure: &str,
        baseline: &str,
        assetd: &[Sample],
        base: &[Sample],
        target: f64,
    ) {
        let a: Vec<f64> = assetd.iter().map(|s| s.wall).collect();
        let b: Vec<f64> = base.iter().map(|s| s.wall).collect();
        let ratios: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a / b).collect();
        let ratio = median(&ratios);
        let busy = |v: &[Sample]| median(&v.iter().map(|s| s.busy_cores).collect::<Vec<_>>());
        println!(
            "   {figure}: assetd median {:.1} s, {baseline} median {:.1} s, paired ratio median {ratio:.2}×; machine busy {:.2} vs {:.2} of {} cores; assetd's own CPU {:.1} s",
            median(&a),
            median(&b),
            busy(assetd),
            busy(base),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            median(&assetd.iter().map(|s| s.daemon_cpu).collect::<Vec<_>>()),
        );
        self.row(Row {
            figure: format!("{figure} vs {baseline}"),
            assetd: format!("{:.1} s", median(&a)),
            baseline: format!("{:.1} s", median(&b)),
            ratio: format!("{ratio:.2}×"),
            target: format!("≤ {target:.1}×"),
            met: Some(ratio <= target),
        });
    }

    /// N converged assets on the local engine, the daemon's calls counted:
    /// one SIGHUP-triggered pass (calls, CPU, RSS), then a comment-only
    /// rewrite of every file (write calls).
    async fn fig_idle_and_comment(&self) -> Result<()> {
        let n = self.sizes.idle_n;
        let fig = "id";
        let prefix = format!("b{}-{fig}-", self.rid);
        let dirs = self.dirs(fig)?;
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        // No network: a Linux bridge holds at most 1 024 ports, and the
        // idle pass costs the same whatever the containers' networking.
        let extra = "  networks: [ none ]\n";
        for name in &names {
            write_atomic(
                &dirs.manifests,
                &format!("{name}.yaml"),
                &self.asset_yaml(name, fig, extra),
            )?;
        }
        // Converge with one `apply --once` pass (the daemon's own
        // convergence is the cold-start figure), then start the daemon on
        // the same state directory: it finds everything converged.
        println!(
            "   converging {n} assets with `assetd apply --once`{} ...",
            if self.args.quick {
                " (QUICK: 100, not 1 000)"
            } else {
                ""
            }
        );
        let t0 = now_ns();
        let mut apply = Command::new(&self.assetd);
        apply
            .args([
                "apply",
                "--once",
                "--strategy",
                "local",
                "--instance",
                &dirs.instance,
                "--allow-mass-prune",
            ])
            .arg("--manifests")
            .arg(&dirs.manifests)
            .arg("--state-dir")
            .arg(&dirs.state)
            .env("DOCKER_HOST", &self.engine_host)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.spawn_logged(apply)?
            .wait_ok(Duration::from_secs(1200))
            .await
            .context("assetd apply --once")?;
        let at = self
            .starts
            .wait_all(&prefix, n, t0, Duration::from_secs(60))
            .await?;
        println!("   {n} running after {:.1} s", secs(at - t0));
        let daemon = self.daemon(&dirs, "local", true)?;
        daemon.wait_ready(Duration::from_secs(120)).await?;
        self.proxy
            .wait_quiet(Duration::from_secs(2), Duration::from_secs(120))
            .await;

        if self.selected("idle") {
            // What the idle daemon costs with no pass at all, for scale.
            let (c0, s0) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
            tokio::time::sleep(Duration::from_secs(2)).await;
            let background_ms = proc_sched_ns(daemon.pid).saturating_sub(s0) as f64 / 1e6 / 2.0;
            let background_ticks = proc_ticks(daemon.pid).saturating_sub(c0);
            let mut calls = Vec::new();
            let mut cpu = Vec::new();
            let mut cpu_ticks = Vec::new();
            let mut detail = String::new();
            for run in 0..=self.sizes.idle_runs {
                let mark = self.proxy.mark();
                let (c0, s0) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
                daemon.signal("HUP")?;
                self.proxy
                    .wait_for(
                        mark,
                        |r| r.method == "GET" && r.path.starts_with("/containers/json"),
                        Duration::from_secs(10),
                    )
                    .await
                    .context("no listing after SIGHUP")?;
                self.proxy
                    .wait_quiet(Duration::from_millis(500), Duration::from_secs(10))
                    .await;
                let (c1, s1) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
                let (cpu_ns, ticks) = (s1.saturating_sub(s0), c1.saturating_sub(c0));
                let reqs: Vec<Req> = self
                    .proxy
                    .since(mark)
                    .into_iter()
                    .filter(|r| !r.is_events())
                    .collect();
                if run == 0 {
                    continue; // The first HUP after convergence warms the reconnect path.
                }
                detail = reqs
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "   pass {run}: {} API call(s) [{detail}], CPU {:.0} ms (utime+stime, all threads; live threads alone {:.1} ms)",
                    reqs.len(),
                    ticks as f64 * 1e3 / self.clk_tck,
                    cpu_ns as f64 / 1e6
                );
                calls.push(reqs.len() as f64);
                cpu.push(cpu_ns as f64 / 1e6);
                cpu_ticks.push(ticks as f64 * 1e3 / self.clk_tck);
            }
            let (rss, hwm) = proc_rss_kb(daemon.pid);
            let calls_m = median(&calls);
            // utime+stime counts the parse threads that have exited by
            // the time it is read (schedstat of live threads misses them);
            // its 10 ms ticks are averaged over the passes.
            let cpu_m = cpu_ticks.iter().sum::<f64>() / cpu_ticks.len().max(1) as f64;
            println!(
                "   idle pass over {n}: median {calls_m} call(s) ({detail}), CPU mean {cpu_m:.0} ms (median {:.0} ms; live threads alone median {:.1} ms), RSS {:.1} MB (peak {:.1} MB); idle background {background_ms:.2} ms/s ({background_ticks} ticks in 2 s)",
                median(&cpu_ticks),
                median(&cpu),
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            );
            let q = if self.args.quick {
                " [QUICK: 100 assets]"
            } else {
                ""
            };
            self.row(Row {
                figure: format!("idle pass over {n} converged assets: Docker API calls{q}"),
                assetd: format!("{calls_m}"),
                baseline: "—".into(),
                ratio: "—".into(),
                target: "≤ 3".into(),
                met: Some(calls_m <= 3.0),
            });
            self.row(Row {
                figure: format!("idle pass over {n} converged assets: CPU{q}"),
                assetd: format!("{cpu_m:.0} ms"),
                baseline: "—".into(),
                ratio: "—".into(),
                target: "< 20 ms".into(),
                met: Some(cpu_m < 20.0),
            });
            self.row(Row {
                figure: format!("idle pass over {n} converged assets: RSS{q}"),
                assetd: format!("{:.1} MB", rss as f64 / 1024.0),
                baseline: "—".into(),
                ratio: "—".into(),
                target: "< 50 MB".into(),
                met: Some((rss as f64 / 1024.0) < 50.0),
            });
        }

        if self.selected("comment") {
            let mark = self.proxy.mark();
            let stamp = now_ns();
            for name in &names {
                let text = format!(
                    "# touched by assetd-bench at {stamp}: comments change nothing\n{}",
                    self.asset_yaml(name, fig, extra)
                );
                write_atomic(&dirs.manifests, &format!("{name}.yaml"), &text)?;
            }
            self.proxy
                .wait_for(
                    mark,
                    |r| r.method == "GET" && r.path.starts_with("/containers/json"),
                    Duration::from_secs(10),
                )
                .await
                .context("no pass after the comment-only change")?;
            self.proxy
                .wait_quiet(Duration::from_secs(2), Duration::from_secs(60))
                .await;
            let reqs: Vec<Req> = self
                .proxy
                .since(mark)
                .into_iter()
                .filter(|r| !r.is_events())
                .collect();
            let writes: Vec<&Req> = reqs.iter().filter(|r| r.is_write()).collect();
            println!(
                "   comment-only change in {n} files: {} Docker call(s) in all, {} write(s){}",
                reqs.len(),
                writes.len(),
                if writes.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        writes
                            .iter()
                            .take(5)
                            .map(|r| format!("{} {}", r.method, r.path))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            self.row(Row {
                figure: format!("comment-only change in {n} files: Docker write calls"),
                assetd: format!("{}", writes.len()),
                baseline: "—".into(),
                ratio: "—".into(),
                target: "0".into(),
                met: Some(writes.is_empty()),
            });
        }
        daemon.stop().await;
        self.remove_by_label(FIG_LABEL, fig).await;
        Ok(())
    }

    /// `load_dir` + `plan` (empty applied and actual) in-process, 1 000
    /// vs 10 000 manifest files.
    async fn fig_parse_plan(&self) -> Result<()> {
        let (small_n, big_n) = (self.sizes.parse_small, self.sizes.parse_big);
        let small = self.root.join("parse-small");
        let big = self.root.join("parse-big");
        for (dir, n) in [(&small, small_n), (&big, big_n)] {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
            for i in 0..n {
                let path = dir.join(format!("asset-{i:05}.yaml"));
                std::fs::write(&path, parse_manifest(i))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            }
        }
        let measure = |dir: PathBuf, n: usize| -> Result<f64> {
            let options = assetd::desired::LoadOptions {
                policy: Default::default(),
                check_permissions: true,
            };
            let started = Instant::now();
            let desired = assetd::desired::load_dir(&dir, &options, &|k| std::env::var(k).ok());
            let plan = assetd::plan::plan(
                &desired,
                &BTreeMap::new(),
                &[],
                &assetd::plan::PlanConfig::default(),
            );
            let elapsed = started.elapsed().as_secs_f64();
            if desired.assets.len() != n || plan.actions.len() != n {
                bail!(
                    "{}: {} assets, {} actions, {} errors (first: {:?}); expected {n}",
                    dir.display(),
                    desired.assets.len(),
                    plan.actions.len(),
                    desired.errors().len(),
                    desired.errors().first().map(ToString::to_string)
                );
            }
            Ok(elapsed)
        };
        let (mut s, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=self.sizes.parse_runs {
            let (small, big) = (small.clone(), big.clone());
            let (ts, tb) = tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
                if run % 2 == 0 {
                    let ts = measure(small, small_n)?;
                    Ok((ts, measure(big, big_n)?))
                } else {
                    let tb = measure(big, big_n)?;
                    Ok((measure(small, small_n)?, tb))
                }
            })
            .await??;
            if run == 0 {
                continue; // Page cache and allocator warm-up.
            }
            println!(
                "   run {run}: {small_n} files {:.1} ms, {big_n} files {:.1} ms ({:.1}×)",
                ts * 1e3,
                tb * 1e3,
                tb / ts
            );
            s.push(ts);
            b.push(tb);
            ratios.push(tb / ts);
        }
        let (ms, mb, r) = (median(&s), median(&b), median(&ratios));
        println!("   parse + plan: {small_n} files median {:.1} ms, {big_n} files median {:.1} ms, ratio {r:.1}×", ms * 1e3, mb * 1e3);
        self.row(Row {
            figure: format!("parse + plan of {big_n} manifests vs {small_n}"),
            assetd: format!("{:.0} ms", mb * 1e3),
            baseline: format!("{:.0} ms", ms * 1e3),
            ratio: format!("{r:.1}×"),
            target: "< 1 s; ≤ 12×".into(),
            met: Some(mb < 1.0 && r <= 12.0),
        });
        Ok(())
    }

    // ---------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------

    fn labels(&self, fig: &str) -> [(&'static str, String); 3] {
        [
            (LABEL, self.rid.clone()),
            (FIG_LABEL, fig.to_string()),
            (PID_LABEL, std::process::id().to_string()),
        ]
    }

    fn asset_yaml(&self, name: &str, fig: &str, spec_extra: &str) -> String {
        let mut labels = String::new();
        for (k, v) in self.labels(fig) {
            let _ = writeln!(labels, "    {k}: \"{v}\"");
        }
        format!("apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {name}\n  labels:\n{labels}spec:\n  image: {IMAGE}\n{spec_extra}")
    }

    fn stack_yaml(&self, fig: &str, n: usize, network: &str) -> String {
        let mut labels = String::new();
        for (k, v) in self.labels(fig) {
            let _ = writeln!(labels, "        {k}: \"{v}\"");
        }
        let mut out = format!("version: \"3.8\"\nnetworks:\n  net:\n    external: true\n    name: {network}\nservices:\n");
        for i in 0..n {
            let _ = write!(
                out,
                "  b{}-{fig}-{i}:\n    image: {IMAGE}\n    networks: [ net ]\n    labels:\n{}    deploy:\n      labels:\n{}",
                self.rid,
                labels.replace("        ", "      "),
                labels
            );
        }
        out
    }

    fn bare_service(&self, name: &str, fig: &str, network: Option<&str>) -> ServiceSpec {
        let labels: HashMap<String, String> = self
            .labels(fig)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(IMAGE.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                }),
                networks: network.map(|n| {
                    vec![bollard::models::NetworkAttachmentConfig {
                        target: Some(n.to_string()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// bollard create + start: the fairest bare baseline (one persistent
    /// connection, no CLI start-up).
    async fn bollard_run(&self, name: &str, fig: &str) -> Result<()> {
        let body = ContainerCreateBody {
            image: Some(IMAGE.to_string()),
            labels: Some(
                self.labels(fig)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ),
            host_config: Some(HostConfig {
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .with_context(|| format!("create container {name}"))?;
        self.docker
            .start_container(&created.id, None)
            .await
            .with_context(|| format!("start container {name}"))?;
        Ok(())
    }

    fn cli_command(&self, argv: &[&str]) -> Result<ChildGuard> {
        let mut cmd = Command::new(&self.cli);
        cmd.args(argv)
            .env("DOCKER_HOST", &self.engine_host)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.spawn_logged(cmd)
    }

    /// Spawns `cmd` with its stderr in a file of the temporary directory
    /// (a pipe nobody reads would block a chatty child once full).
    fn spawn_logged(&self, mut cmd: Command) -> Result<ChildGuard> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let log = self.root.join(format!(
            "child-{}.err",
            SPAWNED.fetch_add(1, Ordering::Relaxed)
        ));
        let child = cmd
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        Ok(ChildGuard {
            child: Some(child),
            log,
        })
    }

    fn dirs(&self, tag: &str) -> Result<Dirs> {
        let base = self.root.join(tag);
        let manifests = base.join("manifests");
        std::fs::create_dir_all(&manifests)?;
        std::fs::set_permissions(&manifests, std::fs::Permissions::from_mode(0o755))?;
        Ok(Dirs {
            instance: format!("bench-{}-{tag}", self.rid),
            state: base.join("state"),
            log: base.join("assetd.log"),
            manifests,
        })
    }

    fn daemon(&self, dirs: &Dirs, strategy: &str, counted: bool) -> Result<Daemon> {
        let host = if counted || self.args.count_all {
            format!("unix://{}", self.proxy.path.display())
        } else {
            self.engine_host.clone()
        };
        let log = std::fs::File::create(&dirs.log)?;
        let child = Command::new(&self.assetd)
            .args([
                "run",
                "--strategy",
                strategy,
                "--instance",
                &dirs.instance,
                "--resync",
                "300s",
                "--allow-mass-prune",
            ])
            .arg("--manifests")
            .arg(&dirs.manifests)
            .arg("--state-dir")
            .arg(&dirs.state)
            .env("DOCKER_HOST", host)
            .env(
                "ASSETD_LOG",
                std::env::var("ASSETD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.assetd.display()))?;
        let pid = child.id();
        self.daemons.lock().expect("daemons").insert(pid);
        Ok(Daemon {
            child: Some(child),
            pid,
            socket: dirs.state.join("assetd.sock"),
            log: dirs.log.clone(),
            registry: self.daemons.clone(),
        })
    }

    async fn require_swarm(&self) -> Result<()> {
        let info = self.docker.info().await?;
        let swarm = info.swarm.unwrap_or_default();
        if !swarm.control_available.unwrap_or(false) {
            bail!("the engine is not a Swarm manager (scripts/testenv.sh makes it one)");
        }
        Ok(())
    }

    /// One overlay network with a /16 for the Swarm cold start: the
    /// default /24 runs out near 125 services (tasks then sit in `New`).
    async fn overlay_network(&self) -> Result<String> {
        let name = format!("b{}-net", self.rid);
        let mut last = None;
        for second in 231..=250u8 {
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("overlay".into()),
                attachable: Some(true),
                labels: Some(
                    self.labels("net")
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                ),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(format!("10.{second}.0.0/16")),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match self.docker.create_network(request).await {
                Ok(_) => return Ok(name),
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow!("cannot create the overlay network: {last:?}"))
    }

    /// Polls until a task of `service` runs; returns when it turned
    /// `running` by the engine's clock.
    async fn wait_task_running(&self, service: &str, timeout: Duration) -> Result<i128> {
        let deadline = Instant::now() + timeout;
        let filters = HashMap::from([("service", vec![service.to_string()])]);
        loop {
            if let Ok(tasks) = self
                .docker
                .list_tasks(Some(
                    ListTasksOptionsBuilder::default().filters(&filters).build(),
                ))
                .await
            {
                let running = tasks
                    .iter()
                    .filter_map(|t| t.status.as_ref())
                    .filter(|s| s.state == Some(TaskState::RUNNING))
                    .filter_map(|s| s.timestamp.map(|ts| ts.unix_timestamp_nanos()))
                    .min();
                if let Some(at) = running {
                    return Ok(at);
                }
            }
            if Instant::now() > deadline {
                bail!("no task of {service} running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `n` services labelled `fig` each have a running task;
    /// returns when the last of them turned `running` (engine clock) and
    /// how long after `t0` the last service was created.
    async fn wait_services_running(
        &self,
        fig: &str,
        n: usize,
        t0: i128,
        timeout: Duration,
    ) -> Result<(i128, f64)> {
        let deadline = Instant::now() + timeout;
        let service_filter = HashMap::from([("label", vec![format!("{FIG_LABEL}={fig}")])]);
        let task_filter = HashMap::from([("desired-state", vec!["running".to_string()])]);
        let mut progress = (0usize, Instant::now());
        loop {
            let services = self
                .docker
                .list_services(Some(
                    ListServicesOptionsBuilder::default()
                        .filters(&service_filter)
                        .build(),
                ))
                .await
                .unwrap_or_default();
            let last_created = services
                .iter()
                .filter_map(|s| s.created_at.map(|c| c.unix_timestamp_nanos()))
                .max()
                .map_or(f64::NAN, |c| secs(c - t0));
            let ids: BTreeSet<String> = services.into_iter().filter_map(|s| s.id).collect();
            let tasks = self
                .docker
                .list_tasks(Some(
                    ListTasksOptionsBuilder::default()
                        .filters(&task_filter)
                        .build(),
                ))
                .await
                .unwrap_or_default();
            let mut running: BTreeMap<String, i128> = BTreeMap::new();
            let mut states: BTreeMap<String, usize> = BTreeMap::new();
            for task in &tasks {
                let Some(service) = task.service_id.as_ref().filter(|s| ids.contains(*s)) else {
                    continue;
                };
                let status = task.status.clone().unwrap_or_default();
                *states
                    .entry(status.state.map(|s| s.to_string()).unwrap_or_default())
                    .or_default() += 1;
                if status.state == Some(TaskState::RUNNING) {
                    if let Some(ts) = status.timestamp {
                        let at = ts.unix_timestamp_nanos();
                        running
                            .entry(service.clone())
                            .and_modify(|v| *v = (*v).min(at))
                            .or_insert(at);
                    }
                }
            }
            if running.len() >= n {
                return Ok((running.values().copied().max().unwrap_or(t0), last_created));
            }
            if running.len() > progress.0 {
                progress = (running.len(), Instant::now());
            }
            if Instant::now() > deadline || progress.1.elapsed() > Duration::from_secs(120) {
                bail!("{fig}: {} of {n} services running ({} services exist; task states {states:?}) after {:.0} s", running.len(), ids.len(), secs(now_ns() - t0));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_container_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .docker
                .inspect_container(name, None::<InspectContainerOptions>)
                .await
            {
                Err(e) if is_404(&e) => return Ok(()),
                _ if Instant::now() > deadline => {
                    bail!("container {name} still there after {timeout:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn wait_service_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .docker
                .inspect_service(
                    name,
                    None::<bollard::query_parameters::InspectServiceOptions>,
                )
                .await
            {
                Err(e) if is_404(&e) => return Ok(()),
                _ if Instant::now() > deadline => {
                    bail!("service {name} still there after {timeout:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn wait_no_containers(&self, key: &str, value: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        loop {
            let left = self
                .docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map(|c| c.len())
                .unwrap_or(0);
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{left} container(s) labelled {key}={value} still there after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn remove_container(&self, name: &str) {
        let _ = self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
    }

    /// Removes the services, then the containers, labelled `key=value`,
    /// `PARALLEL` at a time, and waits until Swarm's task containers are
    /// gone too.
    async fn remove_by_label(&self, key: &str, value: &str) {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        if let Ok(services) = self
            .docker
            .list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
        {
            futures_util::stream::iter(services.into_iter().filter_map(|s| s.id))
                .for_each_concurrent(PARALLEL, |id| async move {
                    let _ = self.docker.delete_service(&id).await;
                })
                .await;
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let containers = self
                .docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build(),
                ))
                .await
                .unwrap_or_default();
            if containers.is_empty() || Instant::now() > deadline {
                break;
            }
            futures_util::stream::iter(containers.into_iter().filter_map(|c| c.id))
                .for_each_concurrent(PARALLEL, |id| async move {
                    let _ = self
                        .docker
                        .remove_container(
                            &id,
                            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                        )
                        .await;
                })
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Objects of earlier bench runs whose process is gone (killed before
    /// it could clean up).
    async fn clear_leftovers(&self) {
        let filters = HashMap::from([("label", vec![PID_LABEL.to_string()])]);
        let mut stale = BTreeSet::new();
        let alive = |pid: &str| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("assetd-bench"))
                .unwrap_or(false)
        };
        let mut consider = |labels: Option<HashMap<String, String>>| {
            let labels = labels.unwrap_or_default();
            if let (Some(pid), Some(rid)) = (labels.get(PID_LABEL), labels.get(LABEL)) {
                if !alive(pid) {
                    stale.insert(rid.clone());
                }
            }
        };
        if let Ok(cs) = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
        {
            cs.into_iter().for_each(|c| consider(c.labels));
        }
        if let Ok(ss) = self
            .docker
            .list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
        {
            ss.into_iter()
                .for_each(|s| consider(s.spec.and_then(|s| s.labels)));
        }
        if let Ok(ns) = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
        {
            ns.into_iter().for_each(|n| consider(n.labels));
        }
        for rid in stale {
            println!("assetd-bench: removing leftovers of bench run {rid}");
            self.remove_by_label(LABEL, &rid).await;
            self.remove_networks(&rid).await;
        }
    }

    async fn remove_networks(&self, rid: &str) {
        let filters = HashMap::from([("label", vec![format!("{LABEL}={rid}")])]);
        if let Ok(networks) = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
        {
            for n in networks {
                if let Some(id) = n.id {
                    // Swarm frees an overlay's endpoints a little after
                    // its services go: retry for a while.
                    for _ in 0..30 {
                        if self.docker.remove_network(&id).await.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    /// Stops every daemon still alive, removes everything labelled with
    /// this run, and the temporary directory.
    async fn cleanup(&self) {
        let pids: Vec<u32> = self
            .daemons
            .lock()
            .expect("daemons")
            .iter()
            .copied()
            .collect();
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        self.remove_by_label(LABEL, &self.rid).await;
        self.remove_networks(&self.rid).await;
        if self.args.keep_temp {
            println!("assetd-bench: kept {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn print_table(&self) {
        let rows = self.rows.lock().expect("rows").clone();
        if rows.is_empty() {
            return;
        }
        let header = ["figure", "assetd", "baseline", "ratio", "target", "met?"];
        let cells: Vec<[String; 6]> = rows
            .iter()
            .map(|r| {
                [
                    r.figure.clone(),
                    r.assetd.clone(),
                    r.baseline.clone(),
                    r.ratio.clone(),
                    r.target.clone(),
                    match r.met {
                        Some(true) => "yes".into(),
                        Some(false) => "NO".into(),
                        None => "—".into(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: &[String]| {
            let mut s = String::from("|");
            for (c, w) in cols.iter().zip(&widths) {
                let pad = w - c.chars().count();
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            }
            s
        };
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", line(&header.map(String::from)));
        let _ = writeln!(
            out,
            "|{}",
            widths
                .iter()
                .map(|w| format!("{}|", "-".repeat(w + 2)))
                .collect::<String>()
        );
        for row in &cells {
            let _ = writeln!(out, "{}", line(row));
        }
        let missed = rows.iter().filter(|r| r.met == Some(false)).count();
        let _ = writeln!(
            out,
            "\n{} figure(s), {} target(s) met, {missed} missed{}",
            rows.len(),
            rows.iter().filter(|r| r.met == Some(true)).count(),
            if self.args.quick {
                " (QUICK mode: sizes and runs reduced)"
            } else {
                ""
            }
        );
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
}

/// Where one daemon keeps its files.
struct Dirs {
    instance: String,
    manifests: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

/// A running `assetd run`; killed when dropped (e.g. on Ctrl-C).
struct Daemon {
    child: Option<Child>,
    pid: u32,
    socket: PathBuf,
    log: PathBuf,
    registry: Arc<Mutex<BTreeSet<u32>>>,
}

impl Daemon {
    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(report) = assetd::api::fetch_status(&self.socket).await {
                if report.ready {
                    return Ok(());
                }
            }
            if !proc_alive(self.pid) || Instant::now() > deadline {
                bail!(
                    "assetd did not become ready; its log ends:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()?;
        if !status.success() {
            bail!(
                "kill -{signal} {} failed; log:\n{}",
                self.pid,
                self.log_tail()
            );
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 15 s.
    async fn stop(mut self) {
        let _ = self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        if let Some(child) = self.child.as_mut() {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.registry.lock().expect("daemons").remove(&self.pid);
    }
}

/// A child process killed when dropped.
struct ChildGuard {
    child: Option<Child>,
    /// Where its stderr goes.
    log: PathBuf,
}

impl ChildGuard {
    /// Waits for a zero exit; the error carries its stderr.
    async fn wait_ok(mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("a child");
        loop {
            if let Some(status) = child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                let err = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("exited with {status}: {}", err.trim());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("did not finish within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// -------------------------------------------------------------------
// Container start events
// -------------------------------------------------------------------

/// Every `create` and `start` event of a container labelled with this
/// run, with the engine's timestamp, from one event subscription.
struct StartLog {
    /// (container name, action, engine time in Unix ns).
    events: Mutex<Vec<(String, String, i128)>>,
}

impl StartLog {
    fn start(docker: Docker, rid: String) -> Arc<Self> {
        let log = Arc::new(Self {
            events: Mutex::new(Vec::new()),
        });
        let sink = log.clone();
        tokio::spawn(async move {
            loop {
                let filters = HashMap::from([
                    ("type", vec!["container".to_string()]),
                    ("event", vec!["create".to_string(), "start".to_string()]),
                    ("label", vec![format!("{LABEL}={rid}")]),
                ]);
                let mut stream = docker.events(Some(
                    EventsOptionsBuilder::default().filters(&filters).build(),
                ));
                while let Some(Ok(event)) = stream.next().await {
                    let name = event
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|a| a.get("name").cloned())
                        .unwrap_or_default();
                    let action = event.action.unwrap_or_default();
                    let at = event.time_nano.map(i128::from).unwrap_or_else(now_ns);
                    sink.events.lock().expect("events").push((name, action, at));
                }
                eprintln!("assetd-bench: the event stream ended; resubscribing");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        log
    }

    /// The first start of container `name` at or after `t0`.
    async fn wait_one(&self, name: &str, t0: i128, timeout: Duration) -> Result<i128> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .events
                .lock()
                .expect("events")
                .iter()
                .filter(|(n, action, at)| n == name && action == "start" && *at >= t0)
                .map(|(_, _, at)| *at)
                .min();
            if let Some(at) = found {
                return Ok(at);
            }
            if Instant::now() > deadline {
                bail!("container {name} did not start within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When the `n`-th distinct container named `prefix*` started (at or
    /// after `t0`).
    async fn wait_all(&self, prefix: &str, n: usize, t0: i128, timeout: Duration) -> Result<i128> {
        let deadline = Instant::now() + timeout;
        let mut progress = (0usize, Instant::now());
        loop {
            let firsts: BTreeMap<String, i128> = {
                let events = self.events.lock().expect("events");
                let mut m = BTreeMap::new();
                for (name, _, at) in events.iter().filter(|(nm, action, at)| {
                    nm.starts_with(prefix) && action == "start" && *at >= t0
                }) {
                    m.entry(name.clone())
                        .and_modify(|v: &mut i128| *v = (*v).min(*at))
                        .or_insert(*at);
                }
                m
            };
            if firsts.len() >= n {
                let mut times: Vec<i128> = firsts.values().copied().collect();
                times.sort_unstable();
                return Ok(times[n - 1]);
            }
            if firsts.len() > progress.0 {
                progress = (firsts.len(), Instant::now());
            }
            if Instant::now() > deadline || progress.1.elapsed() > Duration::from_secs(120) {
                bail!(
                    "only {} of {n} containers {prefix}* started after {:.0} s",
                    firsts.len(),
                    secs(now_ns() - t0)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// When the last container named `prefix*` was created (at or after
    /// `t0`): the end of the create phase.
    fn last_create(&self, prefix: &str, t0: i128) -> Option<i128> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|(nm, action, at)| nm.starts_with(prefix) && action == "create" && *at >= t0)
            .map(|(_, _, at)| *at)
            .max()
    }
}

// -------------------------------------------------------------------
// The counting proxy
// -------------------------------------------------------------------

/// One HTTP request a client sent to the engine through the proxy.
#[derive(Clone, Debug)]
struct Req {
    at: Instant,
    method: String,
    /// Without the `/v1.NN` prefix and the query.
    path: String,
}

impl Req {
    fn is_events(&self) -> bool {
        self.path == "/events"
    }

    /// Requests that change something in Docker (none of the engine's
    /// read-only endpoints is a POST except the ones below, which assetd
    /// does not call).
    fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "DELETE" | "PUT" | "PATCH")
    }

    /// `/containers/{id}/start` style, for histograms.
    fn shape(&self) -> String {
        let parts: Vec<&str> = self.path.split('/').collect();
        match parts.as_slice() {
            ["", "images", .., "json"] => "/images/{name}/json".to_string(),
            ["", kind, id, rest @ ..]
                if !matches!(*id, "json" | "create")
                    && matches!(
                        *kind,
                        "containers" | "services" | "nodes" | "networks" | "tasks"
                    ) =>
            {
                let mut s = format!("/{kind}/{{id}}");
                for r in rest {
                    s.push('/');
                    s.push_str(r);
                }
                s
            }
            _ => self.path.clone(),
        }
    }
}

struct Proxy {
    path: PathBuf,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Proxy {
    async fn start(path: &Path, upstream: PathBuf) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let sink = sink.clone();
                tokio::spawn(async move {
                    let Ok(server) = UnixStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async {
                        let mut parser = RequestParser::default();
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let now = Instant::now();
                            for (method, path) in parser.feed(&buf[..n]) {
                                sink.lock().expect("proxy log").push(Req {
                                    at: now,
                                    method,
                                    path,
                                });
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            log,
        })
    }

    fn mark(&self) -> usize {
        self.log.lock().expect("proxy log").len()
    }

    fn since(&self, mark: usize) -> Vec<Req> {
        self.log.lock().expect("proxy log")[mark..].to_vec()
    }

    async fn wait_for(
        &self,
        mark: usize,
        what: impl Fn(&Req) -> bool,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.since(mark).iter().any(&what) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the expected request did not come within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Until no request (other than the event stream) came for `quiet`.
    async fn wait_quiet(&self, quiet: Duration, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let last = self
                .log
                .lock()
                .expect("proxy log")
                .iter()
                .rev()
                .find(|r| !r.is_events())
                .map(|r| r.at);
            match last {
                Some(at) if at.elapsed() < quiet => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => return,
            }
        }
    }

    /// Requests since `mark` with their offsets from `t0`.
    fn timeline(&self, mark: usize, t0: Instant, done_ns: Option<i128>) -> String {
        let mut out = String::new();
        for r in self.since(mark).iter().filter(|r| !r.is_events()) {
            let _ = writeln!(
                out,
                "     +{:>6.1} ms  {} {}",
                r.at.duration_since(t0).as_secs_f64() * 1e3,
                r.method,
                r.shape()
            );
        }
        if let Some(ns) = done_ns {
            let _ = writeln!(
                out,
                "     +{:>6.1} ms  (running, engine clock)",
                ns as f64 / 1e6
            );
        }
        out
    }

    /// Calls since `mark` by shape, per asset.
    fn histogram(&self, mark: usize, assets: usize) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let reqs = self.since(mark);
        for r in reqs.iter().filter(|r| !r.is_events()) {
            *counts
                .entry(format!("{} {}", r.method, r.shape()))
                .or_default() += 1;
        }
        let total: usize = counts.values().sum();
        let mut out = format!(
            "     daemon's Docker calls: {total} ({:.1} per asset)",
            total as f64 / assets.max(1) as f64
        );
        for (k, v) in counts {
            let _ = write!(out, "\n       {v:>6}  {k}");
        }
        out
    }
}

/// Finds request lines at message boundaries of an HTTP/1.1 request
/// stream (keep-alive: several requests per connection; bodies with
/// `Content-Length` or chunked). After an `Upgrade` the rest is opaque.
#[derive(Default)]
struct RequestParser {
    buf: Vec<u8>,
    state: ParseState,
}

#[derive(Default, Clone, Copy, Debug)]
enum ParseState {
    #[default]
    Head,
    Body(usize),
    ChunkSize,
    ChunkData(usize),
    Trailer,
    Opaque,
}

impl RequestParser {
    fn feed(&mut self, data: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if matches!(self.state, ParseState::Opaque) {
            return out;
        }
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            match self.state {
                ParseState::Opaque => {
                    pos = self.buf.len();
                    break;
                }
                ParseState::Head => {
                    let Some(end) = find(rest, b"\r\n\r\n") else {
                        break;
                    };
                    let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                    pos += end + 4;
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or_default().split(' ');
                    let method = first.next().unwrap_or("?").to_string();
                    let target = first.next().unwrap_or("?");
                    let path = target.split('?').next().unwrap_or_default();
                    let path = match path.strip_prefix("/v1.") {
                        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or(path),
                        None => path,
                    };
                    out.push((method, path.to_string()));
                    let (mut length, mut chunked, mut upgrade) = (0usize, false, false);
                    for line in lines {
                        let Some((k, v)) = line.split_once(':') else {
                            continue;
                        };
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                        match k.as_str() {
                            "content-length" => length = v.parse().unwrap_or(0),
                            "transfer-encoding" => chunked = v.contains("chunked"),
                            "upgrade" => upgrade = true,
                            _ => {}
                        }
                    }
                    self.state = if chunked {
                        ParseState::ChunkSize
                    } else if length > 0 {
                        ParseState::Body(length)
                    } else if upgrade {
                        ParseState::Opaque
                    } else {
                        ParseState::Head
                    };
                }
                ParseState::Body(n) | ParseState::ChunkData(n) => {
                    let take = n.min(rest.len());
                    pos += take;
                    let chunk = matches!(self.state, ParseState::ChunkData(_));
                    if take < n {
                        self.state = if chunk {
                            ParseState::ChunkData(n - take)
                        } else {
                            ParseState::Body(n - take)
                        };
                        break;
                    }
                    self.state = if chunk {
                        ParseState::ChunkSize
                    } else {
                        ParseState::Head
                    };
                }
                ParseState::ChunkSize => {
                    let Some(end) = find(rest, b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&rest[..end]).into_owned();
                    pos += end + 2;
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("0").trim(), 16)
                            .unwrap_or(0);
                    self.state = if size == 0 {
                        ParseState::Trailer
                    } else {
                        ParseState::ChunkData(size + 2)
                    };
                }
                ParseState::Trailer => {
                    let Some(end) = find(rest, b"\r\n") else {
                        break;
                    };
                    pos += end + 2;
                    if end == 0 {
                        self.state = ParseState::Head;
                    }
                }
            }
        }
        self.buf.drain(..pos);
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// -------------------------------------------------------------------
// CPU, memory, time
// -------------------------------------------------------------------

/// Machine-wide and per-process CPU at one instant.
#[derive(Clone, Copy, Debug, Default)]
struct CpuSnap {
    at: Option<Instant>,
    busy: u64,
    dockerd: u64,
    daemon: u64,
}

impl CpuSnap {
    fn take(daemon: Option<u32>) -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let busy = fields.iter().take(8).sum::<u64>()
            - fields.get(3).copied().unwrap_or(0)
            - fields.get(4).copied().unwrap_or(0);
        let dockerd = std::fs::read_to_string("/run/assetd-test/docker.pid")
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .map(proc_ticks)
            .unwrap_or(0);
        Self {
            at: Some(Instant::now()),
            busy,
            dockerd,
            daemon: daemon.map(proc_ticks).unwrap_or(0),
        }
    }
}

/// One timed convergence and what the machine did meanwhile.
#[derive(Clone, Debug, Default)]
struct Sample {
    wall: f64,
    /// Seconds until the last container or service was created.
    created: f64,
    /// Average cores busy machine-wide.
    busy_cores: f64,
    dockerd_cpu: f64,
    daemon_cpu: f64,
}

impl Sample {
    fn new(wall: f64, created: f64, before: &CpuSnap, after: &CpuSnap, clk_tck: f64) -> Self {
        let span = match (before.at, after.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => wall,
        };
        Self {
            wall,
            created,
            busy_cores: (after.busy - before.busy) as f64 / clk_tck / span.max(1e-3),
            dockerd_cpu: (after.dockerd.saturating_sub(before.dockerd)) as f64 / clk_tck,
            daemon_cpu: after.daemon as f64 / clk_tck,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{:.2} s (last object created at {:.2} s); machine {:.2} cores busy; dockerd {:.1} s CPU{}",
            self.wall,
            self.created,
            self.busy_cores,
            self.dockerd_cpu,
            if self.daemon_cpu > 0.0 { format!("; assetd {:.2} s CPU", self.daemon_cpu) } else { String::new() }
        )
    }
}

/// utime + stime of a process (all its threads, live and exited).
fn proc_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is 3rd overall, utime 14th, stime 15th.
    let get = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// Nanoseconds on CPU of the live threads of a process (schedstat): finer
/// than the 10 ms ticks of `/proc/PID/stat`.
fn proc_sched_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
        })
        .sum()
}

/// (VmRSS, VmHWM) in KiB.
fn proc_rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn proc_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
                .unwrap_or(true)
        })
        .unwrap_or(false)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Wall clock in Unix nanoseconds: the engine stamps events and task
/// states with the same clock.
fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn secs(ns: i128) -> f64 {
    ns as f64 / 1e9
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// A pause between measurements so the engine finishes removals first.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Writes `dir/name` atomically (hidden temp file, then rename), mode
/// 0644 as assetd's permission check wants.
fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// A realistic manifest for the parse benchmark: command, env, ports,
/// resources, labels.
fn parse_manifest(i: usize) -> String {
    format!(
        "# asset {i}\napiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: asset-{i:05}\n  labels: {{ zone: cell-{}, line: \"{}\" }}\nspec:\n  image: ghcr.io/example/mtcagent:2.5\n  command: \"mtcagent run /etc/agent-{i}.cfg --verbose\"\n  env:\n    - MTC_AGENT_UUID=CNC-{i:05}\n    - LOG_LEVEL=info\n  ports: {{ {}: 5000 }}\n  resources:\n    limits: {{ cpus: 1.0, memory: 512Mi }}\n    reservations: {{ cpus: 0.25, memory: 64Mi }}\n  mode: {{ replicated: {{ replicas: 1 }} }}\n",
        i % 7,
        i % 3,
        20000 + i
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = RequestParser::default();
        chunks.iter().flat_map(|c| p.feed(c)).collect()
    }

    #[test]
    fn parser_counts_keep_alive_requests_across_bodies_and_splits() {
        let stream: &[u8] = b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: d\r\n\r\nPOST /v1.41/containers/create?name=x HTTP/1.1\r\nContent-Length: 27\r\n\r\n{\"Image\":\"GET / HTTP/1.1\"}\nPOST /v1.41/containers/x/start HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n4\r\nGET \r\n0\r\n\r\nDELETE /v1.41/services/s HTTP/1.1\r\n\r\n";
        let want = vec![
            ("GET".to_string(), "/containers/json".to_string()),
            ("POST".into(), "/containers/create".into()),
            ("POST".into(), "/containers/x/start".into()),
            ("DELETE".into(), "/services/s".into()),
        ];
        assert_eq!(requests(&[stream]), want);
        let split: Vec<&[u8]> = stream.chunks(3).collect();
        assert_eq!(requests(&split), want);
    }

    #[test]
    fn request_shapes_hide_ids() {
        let req = |m: &str, p: &str| Req {
            at: Instant::now(),
            method: m.into(),
            path: p.into(),
        };
        assert_eq!(
            req("POST", "/containers/abc/start").shape(),
            "/containers/{id}/start"
        );
        assert_eq!(
            req("GET", "/images/assetd-test/busybox:1/json").shape(),
            "/images/{name}/json"
        );
        assert_eq!(req("GET", "/containers/json").shape(), "/containers/json");
        assert_eq!(req("POST", "/services/create").shape(), "/services/create");
    }
}
