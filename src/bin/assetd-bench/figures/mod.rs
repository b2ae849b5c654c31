//! The figures, each an assetd measurement beside its baseline, and the
//! order they run in.

mod cold_start;
mod idle_and_comment;
mod latency;
mod parse_plan;
mod repair;
mod update;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::bench::Bench;
use crate::clock::now_ns;
use crate::procfs::loadavg;
use crate::report::Row;
use crate::LABEL;

/// The order the figures run in. `idle` also covers `comment`: both are
/// measured on the same converged daemon.
const ORDER: [&str; 9] = [
    "parse-plan",
    "latency-local",
    "repair",
    "update-local",
    "latency-swarm",
    "update-swarm",
    "cold-local",
    "cold-swarm",
    "idle",
];

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
        for name in ORDER {
            let (wanted, label) = if name == "idle" {
                (
                    self.selected("idle") || self.selected("comment"),
                    "idle + comment",
                )
            } else {
                (self.selected(name), name)
            };
            if !wanted {
                continue;
            }
            println!("\n== {label} ==");
            let t = Instant::now();
            let result = match name {
                "parse-plan" => self.fig_parse_plan().await,
                "latency-local" => self.fig_latency_local().await,
                "repair" => self.fig_repair().await,
                "latency-swarm" => self.fig_latency_swarm().await,
                "update-local" => self.fig_update_local().await,
                "update-swarm" => self.fig_update_swarm().await,
                "cold-local" => self.fig_cold_local().await,
                "cold-swarm" => self.fig_cold_swarm().await,
                "idle" => self.fig_idle_and_comment().await,
                other => Err(anyhow!("no figure {other}")),
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
