//! Swarm at scale: N services (500; 20 with `--quick`) from cold against
//! `docker stack deploy` of the same N, then the daemon left over its N
//! services for an idle minute (5 s with `--quick`): its Docker calls
//! (target: no listing; the writer lease's look at its config every 2 s
//! is counted apart), passes, CPU and RSS. It runs on whatever Swarm
//! DOCKER_HOST names; the figure is on the three managers of
//! `scripts/multinode.sh` (`DOCKER_HOST=unix:///run/assetd-mn/n1/docker.sock`).

use std::time::Duration;

use anyhow::Result;

use super::cold_start::{settle, Platform};
use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::procfs::{proc_rss_kb, proc_ticks};
use crate::report::Row;
use crate::sample::{CpuSnap, Sample};
use crate::FIG_LABEL;

impl Bench {
    pub async fn fig_swarm_scale(&self) -> Result<()> {
        self.require_swarm().await?;
        let n = self.sizes.swarm_scale_n;
        let network = self.overlay_network().await?;
        let network = network.as_str();
        let nodes = self.docker.list_nodes(None).await?.len();

        // The baseline first: assetd's daemon stays up afterwards.
        let baseline = "docker stack deploy";
        let stack = self.cold_swarm_stack("ssb", n, network).await;
        self.remove_by_label(FIG_LABEL, "ssb").await;
        settle().await;
        let stack = stack?;
        println!("   {baseline}: {}", stack.describe());

        let fig = "ssa";
        let dirs = self.dirs(fig)?;
        let extra = format!("  networks: [ {network} ]\n");
        self.write_assets(&dirs.manifests, &self.cold_names(fig, n), fig, &extra)?;
        let cpu0 = CpuSnap::take(None);
        let t0 = now_ns();
        let daemon = self.daemon(&dirs, "swarm", true)?;
        let measured = async {
            let running = self
                .wait_cold_running(fig, n, t0, Platform::Swarm { network })
                .await?;
            let cpu1 = CpuSnap::take(Some(daemon.pid));
            let cold = Sample::new(secs(running.0 - t0), running.1, &cpu0, &cpu1, self.clk_tck);
            println!("   assetd: {}", cold.describe());
            let idle = self.idle_over_services(&daemon).await?;
            anyhow::Ok((cold, idle))
        }
        .await;
        daemon.stop().await;
        self.remove_by_label(FIG_LABEL, fig).await;
        let (cold, idle) = measured?;

        let on = format!("{n} services from cold on {nodes} manager(s)");
        self.throughput_row(&on, baseline, &[cold], &[stack], 1.0);
        self.idle_rows(n, &idle);
        Ok(())
    }

    /// Waits until the daemon has stopped listing, then counts what it
    /// does in the idle window.
    async fn idle_over_services(&self, daemon: &crate::daemon::Daemon) -> Result<Idle> {
        self.proxy
            .wait_quiet_of(
                crate::proxy::Req::is_listing,
                Duration::from_secs(3),
                Duration::from_secs(180),
            )
            .await;
        let window = self.sizes.swarm_idle;
        let (passes, ticks, mark) = (
            daemon.counter("passes").await?,
            proc_ticks(daemon.pid),
            self.proxy.mark(),
        );
        tokio::time::sleep(window).await;
        let calls = self.proxy.calls_since(mark);
        let listings = calls.iter().filter(|r| r.is_listing()).count();
        let idle = Idle {
            window,
            calls: calls.len(),
            listings,
            passes: daemon.counter("passes").await? - passes,
            cpu_ms: proc_ticks(daemon.pid).saturating_sub(ticks) as f64 * 1e3 / self.clk_tck,
            rss_mb: proc_rss_kb(daemon.pid).0 as f64 / 1024.0,
        };
        println!(
            "   idle {} s over the services: {} Docker call(s) ({} listings, the rest the writer lease's), {} passes, CPU {:.0} ms, RSS {:.1} MB",
            window.as_secs(),
            idle.calls,
            idle.listings,
            idle.passes,
            idle.cpu_ms,
            idle.rss_mb
        );
        Ok(idle)
    }

    fn idle_rows(&self, n: usize, idle: &Idle) {
        let quick = if self.args.quick { " [QUICK]" } else { "" };
        let secs = idle.window.as_secs();
        self.report.add(Row {
            figure: format!("idle {secs} s over {n} settled services: Docker listings{quick}"),
            assetd: format!(
                "{} ({} calls in all: the writer lease)",
                idle.listings, idle.calls
            ),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "0".into(),
            met: Some(idle.listings == 0),
        });
        self.report.add(Row {
            figure: format!("idle {secs} s over {n} settled services: passes, CPU, RSS{quick}"),
            assetd: format!(
                "{} passes, {:.0} ms, {:.1} MB",
                idle.passes, idle.cpu_ms, idle.rss_mb
            ),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "— (reported)".into(),
            met: None,
        });
    }
}

/// What the daemon did over its settled services in the idle window.
struct Idle {
    window: Duration,
    calls: usize,
    listings: usize,
    passes: u64,
    cpu_ms: f64,
    rss_mb: f64,
}
