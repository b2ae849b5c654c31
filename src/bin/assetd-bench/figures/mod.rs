//! The figures, each an assetd measurement beside its baseline, and the
//! order they run in.

mod cold_start;
mod idle_and_comment;
mod latency;
mod parse_plan;
mod repair;
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
                Figure::Comment => continue,
                Figure::Idle => (
                    self.selected(Figure::Idle) || self.selected(Figure::Comment),
                    "idle + comment",
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
                Figure::Idle | Figure::Comment => self.fig_idle_and_comment().await,
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
