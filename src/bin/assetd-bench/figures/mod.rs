//! The figures, each an assetd measurement beside its baseline, and the
//! order they run in.

mod cold_start;
mod idle_and_comment;
mod latency;
mod latency_scale;
mod noop_cycles;
mod parse_plan;
mod repair;
mod storm;
mod swarm_scale;
mod update;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::bench::Bench;
use crate::cli::Figure;
use crate::clock::now_ns;
use crate::procfs::loadavg;
use crate::report::Row;
use crate::LABEL;

impl Bench {
    /// Runs the selected figures; `false` when one of them failed (the
    /// others still run).
    pub async fn run_figures(&self) -> bool {
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
        for &figure in Figure::value_variants() {
            let (wanted, label) = match figure {
                // Measured in the idle run, on the same converged daemon.
                Figure::Comment | Figure::IdleMinute | Figure::Noop => continue,
                Figure::Idle => (
                    self.selected(Figure::Idle)
                        || self.selected(Figure::Comment)
                        || self.selected(Figure::IdleMinute)
                        || self.selected(Figure::Noop),
                    "idle + comment + idle minute + no-op cycles",
                ),
                other => (self.selected(other), other.name()),
            };
            if !wanted {
                continue;
            }
            println!("\n== {label} ==");
            let t = Instant::now();
            let result = match figure {
                Figure::ParsePlan => self.fig_parse_plan().await,
                Figure::LatencyLocal => self.fig_latency_local().await,
                Figure::Repair => self.fig_repair().await,
                Figure::LatencySwarm => self.fig_latency_swarm().await,
                Figure::UpdateLocal => self.fig_update_local().await,
                Figure::UpdateSwarm => self.fig_update_swarm().await,
                Figure::ColdLocal => self.fig_cold_local().await,
                Figure::ColdSwarm => self.fig_cold_swarm().await,
                Figure::LatencyScale => self.fig_latency_scale().await,
                Figure::Storm => self.fig_storm().await,
                Figure::SwarmScale => self.fig_swarm_scale().await,
                Figure::Idle | Figure::Comment | Figure::IdleMinute | Figure::Noop => {
                    self.fig_idle_and_comment().await
                }
            };
            match result {
                Ok(()) => println!("   ({label}: {:.0} s)", t.elapsed().as_secs_f64()),
                Err(e) => {
                    ok = false;
                    eprintln!("assetd-bench: {label} failed: {e:#}");
                    self.report.add(Row::failed(label));
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

    /// Prints and records assetd against one baseline; the ratio is the
    /// median of the per-run ratios, as the runs were paired. `target`:
    /// the ratio it must not exceed, when it has one.
    fn paired_row(
        &self,
        figure: &str,
        baseline: &str,
        assetd: &[f64],
        base: &[f64],
        target: Option<f64>,
    ) {
        let ratios: Vec<f64> = assetd.iter().zip(base).map(|(a, b)| a / b).collect();
        let ratio = crate::stats::median(&ratios);
        let (assetd, base) = (crate::stats::median(assetd), crate::stats::median(base));
        println!(
            "   {figure}: assetd median {:.0} ms, {baseline} median {:.0} ms, paired ratio median {ratio:.2}×",
            assetd * 1e3,
            base * 1e3
        );
        self.report.add(Row {
            figure: format!("{figure} vs {baseline}"),
            assetd: format!("{:.0} ms", assetd * 1e3),
            baseline: format!("{:.0} ms", base * 1e3),
            ratio: format!("{ratio:.2}×"),
            target: target.map_or_else(|| "— (reported)".into(), |t| format!("≤ {t:.2}×")),
            met: target.map(|t| ratio <= t),
        });
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

    /// The Swarm figures need a manager to talk to.
    async fn require_swarm(&self) -> Result<()> {
        let info = self.docker.info().await?;
        let swarm = info.swarm.unwrap_or_default();
        if !swarm.control_available.unwrap_or(false) {
            bail!("the engine is not a Swarm manager (scripts/testenv.sh makes it one)");
        }
        Ok(())
    }
}
