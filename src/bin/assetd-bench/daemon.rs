//! The daemon under test: its directories, starting `assetd run`, waiting
//! for it to be ready, signalling and stopping it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::Bench;
use crate::procfs::proc_alive;

/// Where one daemon keeps its files.
pub struct Dirs {
    pub instance: String,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

/// A running `assetd run`; killed when dropped (e.g. on Ctrl-C).
pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    socket: PathBuf,
    log: PathBuf,
    registry: Arc<Mutex<BTreeSet<u32>>>,
}

impl Bench {
    /// A fresh manifest directory (and the paths of the state and log)
    /// under the temporary directory, named by `tag`.
    pub fn dirs(&self, tag: &str) -> Result<Dirs> {
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

    /// Starts `assetd run` on `dirs`; `counted` (or `--count-all`) points
    /// it at the counting proxy instead of the engine.
    pub fn daemon(&self, dirs: &Dirs, strategy: &str, counted: bool) -> Result<Daemon> {
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
}

impl Daemon {
    /// Until its status socket reports it ready.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(report) = assetd::daemon::api::fetch_status(&self.socket).await {
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

    /// Until the daemon reports a pass that began after `after_ms` (Unix
    /// ms): a pass over an event-fed view may make no Docker call at all.
    pub async fn wait_pass_after(&self, after_ms: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(report) = assetd::daemon::api::fetch_status(&self.socket).await {
                if report.last_pass_ms.is_some_and(|at| at > after_ms) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("no pass within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One of its counters (`passes`, `manifest_walks`), from its metrics.
    pub async fn counter(&self, name: &str) -> Result<u64> {
        Ok(self.metric(&format!("assetd_{name}_total")).await? as u64)
    }

    /// The value of one series of its metrics (no labels).
    pub async fn metric(&self, series: &str) -> Result<f64> {
        let metrics = assetd::daemon::api::fetch_metrics(&self.socket)
            .await
            .map_err(|e| anyhow::anyhow!("the daemon's metrics: {e}"))?;
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .with_context(|| format!("no {series} in the daemon's metrics"))?;
        Ok(value.trim().parse()?)
    }

    /// `kill -SIGNAL`, e.g. `HUP` for an immediate pass.
    pub fn signal(&self, signal: &str) -> Result<()> {
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

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(mut self) {
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

/// The daemon's own count and total time of passes, and its walks of the
/// manifests directory.
pub struct PassTimes {
    pub count: u64,
    pub seconds: f64,
    pub walks: u64,
}

impl PassTimes {
    pub async fn read(daemon: &Daemon) -> Result<Self> {
        Ok(Self {
            count: daemon.metric("assetd_pass_duration_seconds_count").await? as u64,
            seconds: daemon.metric("assetd_pass_duration_seconds_sum").await?,
            walks: daemon.counter("manifest_walks").await?,
        })
    }

    pub fn since(&self, before: &Self) -> Self {
        Self {
            count: self.count.saturating_sub(before.count),
            seconds: self.seconds - before.seconds,
            walks: self.walks.saturating_sub(before.walks),
        }
    }

    /// NaN when no pass ran.
    pub fn mean_seconds(&self) -> f64 {
        self.seconds / self.count as f64
    }
}
