//! Repair: a managed container removed behind assetd's back, and how soon
//! its replacement runs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::query_parameters::RemoveContainerOptionsBuilder;

use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::report::Row;
use crate::stats::{max, median};

impl Bench {
    /// `docker rm -f` of a managed container → its replacement running.
    pub async fn fig_repair(&self) -> Result<()> {
        let dirs = self.dirs("rp")?;
        let daemon = self.daemon(&dirs, "local", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        let name = format!("b{}-rp", self.rid);
        let t0 = now_ns();
        self.write_asset(&dirs.manifests, &name, "rp", "")?;
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
            // Not `remove_container`: this one is timed and must succeed.
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
            // Run 0 is an untimed warm-up.
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
        self.report.add(Row::target_only(
            "managed container rm -f → running again".into(),
            format!("{:.0} ms", m * 1e3),
            "< 1 s median",
            m < 1.0,
        ));
        Ok(())
    }
}
