//! Latency with scale: p50 and p99 of "file written → container running"
//! while the daemon already manages a fleet of 10, 200 and 1 000 assets
//! (10 and 50 with `--quick`), each beside bare `docker run -d` timed the
//! same way in the same run, the two taking turns going first. Target:
//! at the largest fleet, the p99's ratio to `docker run -d` is at most
//! 1.2× that ratio at the smallest.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::daemon::{Daemon, Dirs};
use crate::report::Row;
use crate::stats::percentile;
use crate::{FIG_LABEL, IMAGE};

/// The figure label of the fleet and of the timed containers.
const FIG: &str = "lsc";
/// No network: a Linux bridge holds at most 1 024 ports.
const SPEC_EXTRA: &str = "  networks: [ none ]\n";
/// How much worse the p99 (against `docker run -d`) may get from the
/// smallest fleet to the largest.
const TARGET: f64 = 1.2;

/// One fleet size's timings, in seconds.
struct AtSize {
    size: usize,
    assetd: Vec<f64>,
    docker: Vec<f64>,
}

impl AtSize {
    /// p99 of assetd over p99 of `docker run -d`.
    fn p99_ratio(&self) -> f64 {
        percentile(&self.assetd, 99.0) / percentile(&self.docker, 99.0)
    }
}

impl Bench {
    pub async fn fig_latency_scale(&self) -> Result<()> {
        let dirs = self.dirs(FIG)?;
        let daemon = self.daemon(&dirs, "local", false)?;
        daemon.wait_ready(Duration::from_secs(60)).await?;
        let prefix = format!("b{}-{FIG}-", self.rid);
        let mut fleet = 0;
        let mut results = Vec::new();
        for &size in &self.sizes.scale_sizes.clone() {
            let names: Vec<String> = (fleet..size).map(|i| format!("{prefix}{i}")).collect();
            let t0 = now_ns();
            self.write_assets(&dirs.manifests, &names, FIG, SPEC_EXTRA)?;
            self.starts
                .wait_all(&prefix, names.len(), t0, Duration::from_secs(900))
                .await
                .with_context(|| format!("growing the fleet to {size}"))?;
            fleet = size;
            // A container up for seconds only is read at every pass:
            // steady state is a settled fleet.
            if !self.args.quick {
                tokio::time::sleep(Duration::from_secs(21)).await;
            }
            let at = self.time_changes(&daemon, &dirs, size).await?;
            println!(
                "   {size} managed: file → running p50 {:.0} ms, p99 {:.0} ms; docker run -d p50 {:.0} ms, p99 {:.0} ms ({} each)",
                percentile(&at.assetd, 50.0) * 1e3,
                percentile(&at.assetd, 99.0) * 1e3,
                percentile(&at.docker, 50.0) * 1e3,
                percentile(&at.docker, 99.0) * 1e3,
                at.assetd.len()
            );
            results.push(at);
        }
        daemon.stop().await;
        self.remove_by_label(FIG_LABEL, FIG).await;
        self.scale_rows(&results);
        Ok(())
    }

    /// Times `scale_samples` changes (one untimed first) at fleet `size`:
    /// a manifest written, against `docker run -d`, each to its container's
    /// start event; each removed again untimed so the fleet stays `size`.
    async fn time_changes(&self, daemon: &Daemon, dirs: &Dirs, size: usize) -> Result<AtSize> {
        let mut at = AtSize {
            size,
            assetd: Vec::new(),
            docker: Vec::new(),
        };
        for run in 0..=self.sizes.scale_samples {
            let mut got = [0.0f64; 2];
            let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for method in order {
                let name = format!("b{}-lss{size}-{run}-{}", self.rid, ["a", "c"][method]);
                let t0 = now_ns();
                if method == 0 {
                    self.write_asset(&dirs.manifests, &name, FIG, SPEC_EXTRA)?;
                } else {
                    self.docker_run_d(&name, FIG).await?;
                }
                let started = self
                    .starts
                    .wait_one(&name, t0, Duration::from_secs(60))
                    .await
                    .with_context(|| format!("daemon log: {}", daemon.log_tail()))?;
                got[method] = secs(started - t0);
                if method == 0 {
                    std::fs::remove_file(dirs.manifests.join(format!("{name}.yaml")))?;
                    self.wait_container_gone(&name, Duration::from_secs(60))
                        .await?;
                } else {
                    self.remove_container(&name).await;
                }
            }
            if run > 0 {
                at.assetd.push(got[0]);
                at.docker.push(got[1]);
            }
        }
        Ok(at)
    }

    /// `docker run -d` of a container like figure `fig`'s fleet's
    /// (labelled, no network).
    pub(crate) async fn docker_run_d(&self, name: &str, fig: &str) -> Result<()> {
        let mut argv = vec![
            "run".to_string(),
            "-d".into(),
            "--restart".into(),
            "unless-stopped".into(),
            "--network".into(),
            "none".into(),
        ];
        for (k, v) in self.labels(fig) {
            argv.extend(["--label".to_string(), format!("{k}={v}")]);
        }
        argv.extend(["--name".to_string(), name.to_string(), IMAGE.to_string()]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.cli_command(&argv)?
            .wait_ok(Duration::from_secs(60))
            .await
            .context("docker run -d")
    }

    fn scale_rows(&self, results: &[AtSize]) {
        let q = if self.args.quick { " [QUICK]" } else { "" };
        for at in results {
            for p in [50.0, 99.0] {
                let (a, d) = (percentile(&at.assetd, p), percentile(&at.docker, p));
                self.report.add(Row {
                    figure: format!(
                        "file written → container running with {} managed, p{p:.0} of {}{q}",
                        at.size,
                        at.assetd.len()
                    ),
                    assetd: format!("{:.0} ms", a * 1e3),
                    baseline: format!("`docker run -d` {:.0} ms", d * 1e3),
                    ratio: format!("{:.2}×", a / d),
                    target: "— (reported)".into(),
                    met: None,
                });
            }
        }
        let (Some(small), Some(large)) = (results.first(), results.last()) else {
            return;
        };
        let growth = large.p99_ratio() / small.p99_ratio();
        self.report.add(Row {
            figure: format!(
                "p99 against `docker run -d`: {} managed over {} managed{q}",
                large.size, small.size
            ),
            assetd: format!("{:.2}× / {:.2}×", large.p99_ratio(), small.p99_ratio()),
            baseline: "—".into(),
            ratio: format!("{growth:.2}×"),
            target: format!("≤ {TARGET:.1}×"),
            met: Some(growth <= TARGET),
        });
    }
}
