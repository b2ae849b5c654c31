//! Cold starts: N objects from nothing, assetd against the baseline's own
//! bulk tool, with the CPU each side cost the machine.

use std::future::Future;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::report::Row;
use crate::sample::{CpuSnap, Sample};
use crate::stats::median;
use crate::{FIG_LABEL, IMAGE, PARALLEL};

impl Bench {
    /// N assets from cold (daemon started on a directory of N files) vs
    /// the same N `docker run -d` issued 8 at a time by `xargs -P 8`.
    pub async fn fig_cold_local(&self) -> Result<()> {
        let n = self.sizes.cold_local_n;
        let baseline = "xargs -P 8 docker run -d";
        let (assetd, base) = self
            .alternate_cold_runs("cl", baseline, move |side, fig| async move {
                if side == 0 {
                    self.cold_assetd(&fig, n, Platform::Local).await
                } else {
                    self.cold_local_xargs(&fig, n).await
                }
            })
            .await?;
        self.throughput_row(
            &format!("{n} assets from cold, all running (local)"),
            baseline,
            &assetd,
            &base,
            1.0,
        );
        Ok(())
    }

    /// N services from cold vs `docker stack deploy` of the same N, all
    /// on one overlay network with a /16.
    pub async fn fig_cold_swarm(&self) -> Result<()> {
        self.require_swarm().await?;
        let n = self.sizes.cold_swarm_n;
        let network = self.overlay_network().await?;
        let network = network.as_str();
        let baseline = "docker stack deploy";
        let (assetd, base) = self
            .alternate_cold_runs("cs", baseline, move |side, fig| async move {
                if side == 0 {
                    self.cold_assetd(&fig, n, Platform::Swarm { network }).await
                } else {
                    self.cold_swarm_stack(&fig, n, network).await
                }
            })
            .await?;
        self.throughput_row(
            &format!("{n} services from cold (Swarm)"),
            baseline,
            &assetd,
            &base,
            0.5,
        );
        Ok(())
    }

    /// `cold_runs` runs of both sides (0: assetd, 1: the baseline), which
    /// goes first alternating; each side's objects are removed and the
    /// engine left to settle before the next. `side_run` gets the side and
    /// the figure label of that run and side.
    async fn alternate_cold_runs<F, Fut>(
        &self,
        tag: &str,
        baseline: &str,
        mut side_run: F,
    ) -> Result<(Vec<Sample>, Vec<Sample>)>
    where
        F: FnMut(usize, String) -> Fut,
        Fut: Future<Output = Result<Sample>>,
    {
        let mut assetd = Vec::new();
        let mut base = Vec::new();
        for run in 0..self.sizes.cold_runs {
            let mut got = [Sample::default(), Sample::default()];
            let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let fig = format!("{tag}{run}{}", ["a", "b"][side]);
                let sample = side_run(side, fig.clone()).await?;
                println!(
                    "   run {run} {}: {}",
                    ["assetd", baseline][side],
                    sample.describe()
                );
                got[side] = sample;
                self.remove_by_label(FIG_LABEL, &fig).await;
                settle().await;
            }
            let [a, b] = got;
            assetd.push(a);
            base.push(b);
        }
        Ok((assetd, base))
    }

    /// The names of the `n` objects of figure `fig`.
    pub(super) fn cold_names(&self, fig: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("b{}-{fig}-{i}", self.rid)).collect()
    }

    /// assetd started on a directory of `n` manifests, until all run.
    async fn cold_assetd(&self, fig: &str, n: usize, platform: Platform<'_>) -> Result<Sample> {
        let dirs = self.dirs(fig)?;
        let (strategy, extra) = match platform {
            Platform::Local => ("local", String::new()),
            Platform::Swarm { network } => ("swarm", format!("  networks: [ {network} ]\n")),
        };
        self.write_assets(&dirs.manifests, &self.cold_names(fig, n), fig, &extra)?;
        let cpu0 = CpuSnap::take(None);
        let mark = self.proxy.mark();
        let t0 = now_ns();
        let daemon = self.daemon(&dirs, strategy, self.args.count_all)?;
        let running = self.wait_cold_running(fig, n, t0, platform).await?;
        let cpu1 = CpuSnap::take(Some(daemon.pid));
        daemon.stop().await;
        if self.args.count_all {
            println!("{}", self.proxy.histogram(mark, n));
        }
        Ok(Sample::new(
            secs(running.0 - t0),
            running.1,
            &cpu0,
            &cpu1,
            self.clk_tck,
        ))
    }

    /// When the last of the `n` objects of `fig` ran (engine clock), and
    /// when the last was created (seconds after `t0`).
    pub(super) async fn wait_cold_running(
        &self,
        fig: &str,
        n: usize,
        t0: i128,
        platform: Platform<'_>,
    ) -> Result<(i128, f64)> {
        match platform {
            Platform::Local => {
                let prefix = format!("b{}-{fig}-", self.rid);
                self.starts
                    .wait_all_with_create_end(&prefix, n, t0, Duration::from_secs(600))
                    .await
            }
            Platform::Swarm { .. } => {
                self.wait_services_running(fig, n, t0, Duration::from_secs(900))
                    .await
            }
        }
    }

    /// The same `n` containers by `xargs -P 8 docker run -d`.
    async fn cold_local_xargs(&self, fig: &str, n: usize) -> Result<Sample> {
        let list = self.root.join(format!("{fig}.names"));
        std::fs::write(&list, self.cold_names(fig, n).join("\n") + "\n")?;
        let cpu0 = CpuSnap::take(None);
        let t0 = now_ns();
        let mut cmd = Command::new("xargs");
        cmd.args(["-P", &PARALLEL.to_string(), "-I{}"])
            .arg(&self.cli)
            .args(["run", "-d", "--restart", "unless-stopped"]);
        for (k, v) in self.labels(fig) {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        cmd.args(["--name", "{}", IMAGE])
            .env("DOCKER_HOST", &self.engine_host)
            .stdin(std::fs::File::open(&list)?)
            .stdout(Stdio::null());
        let child = self.spawn_logged(cmd)?;
        let running = self.wait_cold_running(fig, n, t0, Platform::Local).await?;
        let cpu1 = CpuSnap::take(None);
        child
            .wait_ok(Duration::from_secs(60))
            .await
            .context("xargs docker run")?;
        Ok(Sample::new(
            secs(running.0 - t0),
            running.1,
            &cpu0,
            &cpu1,
            self.clk_tck,
        ))
    }

    /// The same `n` services by `docker stack deploy`.
    pub(super) async fn cold_swarm_stack(
        &self,
        fig: &str,
        n: usize,
        network: &str,
    ) -> Result<Sample> {
        let stack = format!("b{}{fig}", self.rid);
        let file = self.root.join(format!("{fig}.stack.yml"));
        std::fs::write(&file, self.stack_yaml(fig, n, network))?;
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
        let running = self
            .wait_cold_running(fig, n, t0, Platform::Swarm { network })
            .await?;
        let cpu1 = CpuSnap::take(None);
        child
            .wait_ok(Duration::from_secs(120))
            .await
            .context("docker stack deploy")?;
        Ok(Sample::new(
            secs(running.0 - t0),
            running.1,
            &cpu0,
            &cpu1,
            self.clk_tck,
        ))
    }

    /// Prints and records assetd's wall time against the baseline's
    /// (ratio: median of the paired runs' ratios), with the machine's
    /// load on each side.
    pub(super) fn throughput_row(
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
        self.report.add(Row {
            figure: format!("{figure} vs {baseline}"),
            assetd: format!("{:.1} s", median(&a)),
            baseline: format!("{:.1} s", median(&b)),
            ratio: format!("{ratio:.2}×"),
            target: format!("≤ {target:.1}×"),
            met: Some(ratio <= target),
        });
    }
}

/// Where a cold start runs: containers on the local engine, or services
/// on the Swarm attached to the bench's overlay `network`.
#[derive(Clone, Copy)]
pub(super) enum Platform<'a> {
    Local,
    Swarm { network: &'a str },
}

/// A pause between measurements so the engine finishes removals first.
pub(super) async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}
