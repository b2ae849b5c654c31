//! The one way tests run the assetd binary: its flags and environment
//! ([`Assetd`]), a running process and its log ([`Process`]), a daemon
//! with its HTTP listener and socket ([`Daemon`]), the engine lock for
//! tests that must have the engine alone, and small HTTP/metrics helpers.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use assetd::report::status::{AssetStatus, Phase, StatusReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{eventually, TestEnv, CONVERGE};

/// Tests that measure time, change kernel-wide limits or load the engine
/// heavily take it alone; the others share it. One test binary is one
/// process, so a lock will do (tokio's: it is held across awaits).
static ENGINE: RwLock<()> = RwLock::const_new(());

pub async fn shared() -> RwLockReadGuard<'static, ()> {
    ENGINE.read().await
}

pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    ENGINE.write().await
}

/// How a test runs assetd: the flags every subcommand shares, the
/// engine and the environment.
#[derive(Clone)]
pub struct Assetd {
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub instance: String,
    pub strategy: &'static str,
    pub docker_host: String,
    /// `ASSETD_LOG` of spawned processes.
    pub log_level: &'static str,
    /// Extra environment; without `NOTIFY_SOCKET` here, the test runner's
    /// own `NOTIFY_SOCKET` and `WATCHDOG_USEC` are removed.
    pub env: Vec<(&'static str, String)>,
}

static STARTS: AtomicUsize = AtomicUsize::new(0);

impl Assetd {
    /// The test's manifests, state in `daemon-state` of its root, its
    /// prefix as `--instance`.
    pub fn new(env: &TestEnv, strategy: &'static str) -> Self {
        Self {
            manifests: env.manifests.clone(),
            state: env.root.join("daemon-state"),
            instance: env.prefix.clone(),
            strategy,
            docker_host: super::docker_host(),
            log_level: "info",
            env: vec![],
        }
    }

    /// `assetd SUBCOMMAND --manifests .. --state-dir .. --strategy ..
    /// --instance ..`, with the engine and environment set.
    pub fn command(&self, subcommand: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_assetd"));
        command
            .args(subcommand)
            .arg("--manifests")
            .arg(&self.manifests)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--strategy", self.strategy, "--instance", &self.instance]);
        if !self.env.iter().any(|(k, _)| *k == "NOTIFY_SOCKET") {
            command
                .env_remove("NOTIFY_SOCKET")
                .env_remove("WATCHDOG_USEC");
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DOCKER_HOST", &self.docker_host);
        command
    }

    /// Starts `assetd SUBCOMMAND ... EXTRA`, its log in a file of its own.
    pub fn spawn(&self, subcommand: &[&str], extra: &[&str]) -> Process {
        let logs = std::env::temp_dir().join("assetd-test-logs");
        fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!(
            "{}-{}-{:02}-{}.log",
            self.instance,
            std::process::id(),
            STARTS.fetch_add(1, Ordering::Relaxed),
            subcommand[0],
        ));
        let child = self
            .command(subcommand)
            .args(extra)
            .env("ASSETD_LOG", self.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start assetd");
        Process {
            child: Some(child),
            log,
        }
    }

    /// Runs a short command to its end (plan, apply --once, status).
    pub fn output(&self, subcommand: &[&str], extra: &[&str]) -> Output {
        self.command(subcommand)
            .args(extra)
            .env("ASSETD_LOG", "warn")
            .output()
            .expect("assetd runs")
    }

    /// `assetd status -o json`: the daemon's over its socket, or the
    /// engine's or the store's when none runs.
    pub fn status(&self) -> Option<StatusReport> {
        let out = self.output(&["status"], &["-o", "json"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `assetd run ... EXTRA` with `--listen` on a free loopback port. A
    /// port found free can be taken before the daemon binds it: then it
    /// says so and exits, and another is tried.
    pub fn daemon(&self, extra: &[&str]) -> Daemon {
        self.daemon_on(extra, false)
    }

    /// As [`Assetd::daemon`]; `public`: on `0.0.0.0` with `--listen-public`.
    pub fn daemon_on(&self, extra: &[&str], public: bool) -> Daemon {
        for _ in 0..5 {
            let http = free_loopback_addr();
            let listen = match public {
                true => SocketAddr::from(([0, 0, 0, 0], http.port())).to_string(),
                false => http.to_string(),
            };
            let mut args = vec!["--listen", listen.as_str()];
            if public {
                args.push("--listen-public");
            }
            args.extend_from_slice(extra);
            let mut process = self.spawn(&["run"], &args);
            if process.wait_listening(http) {
                return Daemon {
                    process,
                    state: self.state.clone(),
                    http,
                };
            }
            assert!(
                process.log().contains("Address already in use"),
                "assetd run exited at start:\n{}",
                process.tail(80)
            );
        }
        panic!("no free port for --listen after 5 tries");
    }

    /// `plan` exits 0: nothing to do.
    pub fn assert_plan_clean(&self) {
        let out = self.output(&["plan"], &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "plan after convergence:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `apply --once` runs a pass that does nothing.
    pub fn assert_apply_does_nothing(&self) {
        let out = self.output(&["apply", "--once"], &["-o", "json"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pass JSON");
        assert_eq!(
            v["outcomes"],
            serde_json::json!([]),
            "a converged pass acted: {text}"
        );
        assert_eq!(v["failed"], 0, "{text}");
    }
}

/// A running assetd process. Dropped, it is killed (SIGKILL), so a failed
/// test leaves no daemon that would fight its cleanup; after a failure
/// its log's tail is printed.
pub struct Process {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the process runs").id()
    }

    /// `kill -s SIGNAL`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// `kill -9`; true when it was still running (false: it had exited).
    pub fn kill9(&mut self) -> bool {
        let mut child = self.child.take().expect("running");
        let was_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        was_running
    }

    /// SIGTERM, then waits for the exit; panics after `within`.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(within).0
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let child = self.child.as_mut().expect("the process was started");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return (status, started.elapsed());
            }
            if started.elapsed() > timeout {
                panic!("assetd did not exit within {timeout:?}\n{}", self.tail(40));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Waits until `addr` accepts (true) or the process exits (false).
    fn wait_listening(&mut self, addr: SocketAddr) -> bool {
        let deadline = Instant::now() + CONVERGE;
        while Instant::now() < deadline {
            if !self.is_running() {
                self.child = None;
                return false;
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("assetd did not listen on {addr} within {CONVERGE:?}");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, with its path.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "---- {} (last {n} lines) ----\n{}\n----",
            self.log.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.tail(80));
        }
    }
}

/// A running `assetd run` with its `--listen` address and state dir.
pub struct Daemon {
    pub process: Process,
    pub state: PathBuf,
    pub http: SocketAddr,
}

impl Daemon {
    pub fn socket(&self) -> PathBuf {
        self.state.join("assetd.sock")
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn signal(&self, signal: &str) {
        self.process.signal(signal)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        self.process.wait_exit(timeout)
    }

    pub async fn passes(&self) -> f64 {
        metric(&self.metrics().await, "assetd_passes_total")
            .expect("assetd_passes_total in /metrics")
    }

    pub async fn wait_ready(&self) {
        eventually("/readyz to answer 200", CONVERGE, || async {
            self.get("/readyz").await.filter(|(code, _)| *code == 200)
        })
        .await;
    }

    /// `assetd status -o json`, the CLI as an operator runs it, when this
    /// daemon answers it over its socket (`None` until then).
    pub fn cli_status(&self) -> Option<StatusReport> {
        let out = Command::new(env!("CARGO_BIN_EXE_assetd"))
            .args(["status", "--state-dir"])
            .arg(&self.state)
            .args(["-o", "json"])
            .output()
            .expect("assetd runs");
        // (It exits 1 while an asset is Failed.)
        let report: StatusReport = serde_json::from_slice(&out.stdout).ok()?;
        (report.source == assetd::report::status::Source::Daemon).then_some(report)
    }

    /// Waits until `assetd status -o json` shows asset `name` in `phase`.
    pub async fn wait_cli_phase(&self, name: &str, phase: Phase) -> AssetStatus {
        eventually(
            &format!("`assetd status` to show {name} {phase}"),
            CONVERGE,
            || async {
                self.cli_status()?
                    .assets
                    .into_iter()
                    .find(|a| a.name.as_str() == name && a.phase == phase)
            },
        )
        .await
    }

    /// Waits until the status shows every one of `names` in `phase`.
    pub async fn wait_phase(&self, names: &[String], phase: Phase) -> StatusReport {
        eventually(&format!("{names:?} in phase {phase}"), CONVERGE, || async {
            let report = self.status().await?;
            let phases: BTreeMap<String, Phase> = report
                .assets
                .iter()
                .map(|a| (a.name.to_string(), a.phase))
                .collect();
            names
                .iter()
                .all(|n| phases.get(n) == Some(&phase))
                .then_some(report)
        })
        .await
    }

    /// `GET path` on the `--listen` address: status code and body.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http, path).await
    }

    pub async fn metrics(&self) -> String {
        match self.get("/metrics").await {
            Some((200, body)) => body,
            other => panic!("GET /metrics: {other:?}"),
        }
    }

    /// The daemon's status over its socket, as `assetd status` gets it.
    pub async fn status(&self) -> Option<StatusReport> {
        assetd::daemon::api::fetch_status(&self.socket()).await.ok()
    }
}

/// A free loopback port below the kernel's ephemeral range (32768 and
/// up), where outgoing connections cannot grab it between the probe and
/// the daemon's bind.
pub fn free_loopback_addr() -> SocketAddr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Spread concurrent test processes apart.
    let base = (std::process::id() as usize % 500) * 20;
    loop {
        let port = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// `GET path` over HTTP/1.0 (not chunked; the connection closes): status
/// code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// The value of one series (`name` or `name{label="value"}`) in a
/// Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// The sum of every series of metric `name` (`name` or `name{...}`);
/// `None` when it has none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
