//! Event storm: 200 managed containers (20 with `--quick`) restarted over
//! and over by someone else for a minute (10 s), eight at a time, each
//! restart a burst of `kill`, `die`, `stop`, `start` and `restart` events.
//! Measured: the daemon's CPU and passes during the storm, its Docker
//! writes (reported: a pass that sees a container mid-restart starts it),
//! and how long a real change (a new manifest) takes to run during the
//! storm against the same change in quiet. Target: ≤ 2× quiet.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;

use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::daemon::{Daemon, Dirs};
use crate::procfs::proc_ticks;
use crate::report::Row;
use crate::stats::median;
use crate::{FIG_LABEL, PARALLEL};

const FIG: &str = "st";
/// No network: the storm is about events, not bridges.
const SPEC_EXTRA: &str = "  networks: [ none ]\n";
/// A change during the storm may take at most this many times as long as
/// in quiet.
const TARGET: f64 = 2.0;

impl Bench {
    pub async fn fig_storm(&self) -> Result<()> {
        let n = self.sizes.storm_n;
        let window = self.sizes.storm_window;
        let prefix = format!("b{}-{FIG}-", self.rid);
        let dirs = self.dirs(FIG)?;
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        let daemon = self.daemon(&dirs, "local", true)?;
        daemon.wait_ready(Duration::from_secs(60)).await?;
        let t0 = now_ns();
        self.write_assets(&dirs.manifests, &names, FIG, SPEC_EXTRA)?;
        self.starts
            .wait_all(&prefix, n, t0, Duration::from_secs(600))
            .await?;
        self.proxy
            .wait_quiet(Duration::from_secs(2), Duration::from_secs(60))
            .await;

        let mut quiet = Timed::default();
        for k in 0..self.sizes.storm_samples {
            quiet.push(self.timed_pair(&daemon, &dirs, &format!("q{k}"), k).await?);
        }

        let stop = Arc::new(AtomicBool::new(false));
        // However this figure ends (a timed change failing), the storm stops.
        let _stop_on_exit = StopOnDrop(stop.clone());
        let restarts = Arc::new(AtomicUsize::new(0));
        let storm = tokio::spawn(restart_loop(
            self.docker.clone(),
            names.clone(),
            stop.clone(),
            restarts.clone(),
        ));
        let (passes, cpu, mark) = (
            daemon.counter("passes").await?,
            proc_ticks(daemon.pid),
            self.proxy.mark(),
        );
        let started = Instant::now();
        let mut stormy = Timed::default();
        // The changes spread over the window, the first once it is under way.
        let spacing = window / (self.sizes.storm_samples as u32 + 1);
        for k in 0..self.sizes.storm_samples {
            tokio::time::sleep_until((started + spacing * (k as u32 + 1)).into()).await;
            stormy.push(self.timed_pair(&daemon, &dirs, &format!("s{k}"), k).await?);
        }
        tokio::time::sleep_until((started + window).into()).await;
        stop.store(true, Ordering::SeqCst);
        let failed_restarts = storm.await.context("the storm task")?;
        let elapsed = started.elapsed().as_secs_f64();
        let passes = daemon.counter("passes").await? - passes;
        let cpu_ms = proc_ticks(daemon.pid).saturating_sub(cpu) as f64 * 1e3 / self.clk_tck;
        let writes: Vec<String> = self
            .proxy
            .calls_since(mark)
            .iter()
            .filter(|r| r.is_write())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        println!("{}", self.proxy.histogram(mark, n));
        // The timed changes' own creates and removals are writes too.
        let change_writes = self.sizes.storm_samples * 4;
        let (bare_q, bare_s) = (median(&quiet.bare), median(&stormy.bare));
        let restarts = restarts.load(Ordering::SeqCst);
        daemon.stop().await;
        self.remove_by_label(FIG_LABEL, FIG).await;

        let (q, s) = (median(&quiet.assetd), median(&stormy.assetd));
        println!(
            "   storm over {n} for {elapsed:.0} s: {restarts} restarts ({failed_restarts} refused), {passes} passes, daemon CPU {cpu_ms:.0} ms, {} Docker write(s) (about {change_writes} are the timed changes'); a change: quiet {:.0} ms, during the storm {:.0} ms; `docker run -d`: quiet {:.0} ms, during the storm {:.0} ms",
            writes.len(),
            q * 1e3,
            s * 1e3,
            bare_q * 1e3,
            bare_s * 1e3
        );
        let quick = if self.args.quick { " [QUICK]" } else { "" };
        let secs_window = window.as_secs();
        let figure = |what: &str| {
            format!(
                "event storm ({n} containers restarted in a loop, {secs_window} s): {what}{quick}"
            )
        };
        self.report.add(Row {
            figure: figure("a new manifest → running, median"),
            assetd: format!("{:.0} ms", s * 1e3),
            baseline: format!("quiet {:.0} ms", q * 1e3),
            ratio: format!("{:.2}×", s / q),
            target: format!("≤ {TARGET:.1}×"),
            met: Some(s / q <= TARGET),
        });
        self.report.add(Row {
            figure: figure("the engine alone: `docker run -d` → running, median"),
            assetd: format!("{:.0} ms", bare_s * 1e3),
            baseline: format!("quiet {:.0} ms", bare_q * 1e3),
            ratio: format!("{:.2}×", bare_s / bare_q),
            target: "— (reported)".into(),
            met: None,
        });
        self.report.add(Row {
            figure: figure("daemon CPU, passes, restarts"),
            assetd: format!("{cpu_ms:.0} ms, {passes} passes"),
            baseline: format!("{restarts} restarts"),
            ratio: "—".into(),
            target: "— (reported)".into(),
            met: None,
        });
        Ok(())
    }

    /// A new manifest and a bare `docker run -d` (in turns, which goes
    /// first), each to its container's start event, in seconds.
    async fn timed_pair(
        &self,
        daemon: &Daemon,
        dirs: &Dirs,
        tag: &str,
        k: usize,
    ) -> Result<(f64, f64)> {
        let bare = |tag: String| async move {
            let name = format!("b{}-stb-{tag}", self.rid);
            let t0 = now_ns();
            self.docker_run_d(&name, FIG).await?;
            let at = self
                .starts
                .wait_one(&name, t0, Duration::from_secs(60))
                .await?;
            self.remove_container(&name).await;
            anyhow::Ok(secs(at - t0))
        };
        if k % 2 == 0 {
            let assetd = self.timed_change(daemon, dirs, tag).await?;
            Ok((assetd, bare(tag.to_string()).await?))
        } else {
            let bare = bare(tag.to_string()).await?;
            Ok((self.timed_change(daemon, dirs, tag).await?, bare))
        }
    }

    /// A new manifest written → its container's start event, in seconds;
    /// then removed again (untimed).
    async fn timed_change(&self, daemon: &Daemon, dirs: &Dirs, tag: &str) -> Result<f64> {
        let name = format!("b{}-stc-{tag}", self.rid);
        let t0 = now_ns();
        self.write_asset(&dirs.manifests, &name, FIG, SPEC_EXTRA)?;
        let at = self
            .starts
            .wait_one(&name, t0, Duration::from_secs(60))
            .await
            .with_context(|| format!("daemon log: {}", daemon.log_tail()))?;
        std::fs::remove_file(dirs.manifests.join(format!("{name}.yaml")))?;
        self.wait_container_gone(&name, Duration::from_secs(60))
            .await?;
        Ok(secs(at - t0))
    }
}

/// Timed changes: through assetd, and bare `docker run -d`.
#[derive(Default)]
struct Timed {
    assetd: Vec<f64>,
    bare: Vec<f64>,
}

impl Timed {
    fn push(&mut self, (assetd, bare): (f64, f64)) {
        self.assetd.push(assetd);
        self.bare.push(bare);
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Restarts `names` round and round, `PARALLEL` at a time, until `stop`;
/// counts the restarts, and returns how many the engine refused.
async fn restart_loop(
    docker: bollard::Docker,
    names: Vec<String>,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicUsize>,
) -> usize {
    let refused = AtomicUsize::new(0);
    let round = names
        .iter()
        .cycle()
        .take_while(|_| !stop.load(Ordering::SeqCst));
    futures_util::stream::iter(round)
        .for_each_concurrent(PARALLEL, |name| {
            let (docker, restarts, refused) = (&docker, &restarts, &refused);
            async move {
                let options = bollard::query_parameters::RestartContainerOptionsBuilder::default()
                    .t(0)
                    .build();
                match docker.restart_container(name, Some(options)).await {
                    Ok(()) => restarts.fetch_add(1, Ordering::SeqCst),
                    Err(_) => refused.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
        .await;
    refused.into_inner()
}
