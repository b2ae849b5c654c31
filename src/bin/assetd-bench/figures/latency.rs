//! Latency: one manifest written → its object running, against the CLI
//! and the bare API creating the same object. The three methods take
//! turns going first, and run 0 is untimed so no side pays a first-use
//! cost.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::{FIG_LABEL, IMAGE, LABEL, PID_LABEL};

impl Bench {
    /// file written → container running, vs `docker run -d` (CLI) and
    /// bollard create+start, all timed to the container's start event.
    pub async fn fig_latency_local(&self) -> Result<()> {
        let dirs = self.dirs("ll")?;
        let daemon = self.daemon(&dirs, "local", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        let (mut assetd, mut cli, mut api) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=self.sizes.latency_runs {
            let mut order = [0usize, 1, 2];
            order.rotate_left(run % 3);
            let mut got = [0.0f64; 3];
            for method in order {
                let name = format!("b{}-ll{run}-{}", self.rid, ["a", "c", "b"][method]);
                let fig = format!("ll{run}");
                let mark = self.proxy.mark();
                let t0_instant = Instant::now();
                let t0 = now_ns();
                match method {
                    0 => self.write_asset(&dirs.manifests, &name, &fig, "")?,
                    1 => {
                        let child = self.cli_command(&[
                            "run",
                            "-d",
                            "--restart",
                            "unless-stopped",
                            "--label",
                            &format!("{LABEL}={}", self.rid),
                            "--label",
                            &format!("{FIG_LABEL}={fig}"),
                            "--label",
                            &format!("{PID_LABEL}={}", std::process::id()),
                            "--name",
                            &name,
                            IMAGE,
                        ])?;
                        child
                            .wait_ok(Duration::from_secs(30))
                            .await
                            .context("docker run -d")?;
                    }
                    _ => self.bollard_run(&name, &fig).await?,
                }
                let at = self
                    .starts
                    .wait_one(&name, t0, Duration::from_secs(30))
                    .await?;
                got[method] = secs(at - t0);
                // Clean up outside the timed part: assetd prunes its own
                // when the file goes, the baselines are removed directly.
                if method == 0 {
                    self.print_file_timeline(&name, mark, t0_instant, at - t0);
                    std::fs::remove_file(dirs.manifests.join(format!("{name}.yaml")))?;
                    self.wait_container_gone(&name, Duration::from_secs(30))
                        .await?;
                } else {
                    self.remove_container(&name).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if run == 0 {
                continue; // The untimed warm-up round.
            }
            println!(
                "   run {run}: assetd {:.0} ms, docker run -d {:.0} ms, bollard create+start {:.0} ms",
                got[0] * 1e3,
                got[1] * 1e3,
                got[2] * 1e3
            );
            assetd.push(got[0]);
            cli.push(got[1]);
            api.push(got[2]);
        }
        daemon.stop().await;
        self.latency_rows(
            "file written → container running (local)",
            "docker run -d",
            &assetd,
            &cli,
        );
        self.latency_rows(
            "file written → container running (local)",
            "bollard create+start",
            &assetd,
            &api,
        );
        Ok(())
    }

    /// file written → first task running, vs `docker service create -d`
    /// (CLI) and bollard create_service, timed to the task's `running`
    /// timestamp.
    pub async fn fig_latency_swarm(&self) -> Result<()> {
        self.require_swarm().await?;
        let dirs = self.dirs("ls")?;
        let daemon = self.daemon(&dirs, "swarm", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        let (mut assetd, mut cli, mut api) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=self.sizes.latency_runs {
            let mut order = [0usize, 1, 2];
            order.rotate_left(run % 3);
            let mut got = [0.0f64; 3];
            for method in order {
                let name = format!("b{}-ls{run}-{}", self.rid, ["a", "c", "b"][method]);
                let fig = format!("ls{run}");
                let mark = self.proxy.mark();
                let t0_instant = Instant::now();
                let t0 = now_ns();
                match method {
                    0 => self.write_asset(&dirs.manifests, &name, &fig, "")?,
                    1 => {
                        let mut argv = vec![
                            "service".to_string(),
                            "create".into(),
                            "-d".into(),
                            "--no-resolve-image".into(),
                        ];
                        for (k, v) in self.labels(&fig) {
                            argv.extend([
                                "--label".to_string(),
                                format!("{k}={v}"),
                                "--container-label".into(),
                                format!("{k}={v}"),
                            ]);
                        }
                        argv.extend(["--name".to_string(), name.clone(), IMAGE.into()]);
                        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                        let child = self.cli_command(&argv)?;
                        child
                            .wait_ok(Duration::from_secs(30))
                            .await
                            .context("docker service create")?;
                    }
                    _ => {
                        self.docker
                            .create_service(self.bare_service(&name, &fig, None), None)
                            .await
                            .context("create_service")?;
                    }
                }
                let at = self
                    .wait_task_running(&name, Duration::from_secs(60))
                    .await?;
                got[method] = secs(at - t0);
                if method == 0 {
                    self.print_file_timeline(&name, mark, t0_instant, at - t0);
                    std::fs::remove_file(dirs.manifests.join(format!("{name}.yaml")))?;
                    self.wait_service_gone(&name, Duration::from_secs(30))
                        .await?;
                } else {
                    let _ = self.docker.delete_service(&name).await;
                }
                self.wait_no_containers(
                    "com.docker.swarm.service.name",
                    &name,
                    Duration::from_secs(60),
                )
                .await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if run == 0 {
                continue; // The untimed warm-up round.
            }
            println!(
                "   run {run}: assetd {:.0} ms, docker service create {:.0} ms, bollard create_service {:.0} ms",
                got[0] * 1e3,
                got[1] * 1e3,
                got[2] * 1e3
            );
            assetd.push(got[0]);
            cli.push(got[1]);
            api.push(got[2]);
        }
        daemon.stop().await;
        self.latency_rows(
            "file written → task running (Swarm)",
            "docker service create",
            &assetd,
            &cli,
        );
        self.latency_rows(
            "file written → task running (Swarm)",
            "bollard create_service",
            &assetd,
            &api,
        );
        Ok(())
    }

    /// With `--count-all`: the daemon's calls from the manifest's rename
    /// until `name` ran `running_ns` later.
    fn print_file_timeline(&self, name: &str, mark: usize, renamed: Instant, running_ns: i128) {
        if self.args.count_all {
            println!(
                "   timeline of {name} (file renamed at +0 ms):\n{}",
                self.proxy.timeline(mark, renamed, Some(running_ns))
            );
        }
    }

    /// Prints and records assetd against one baseline, against the
    /// latency target.
    fn latency_rows(&self, figure: &str, baseline: &str, assetd: &[f64], base: &[f64]) {
        self.paired_row(figure, baseline, assetd, base, Some(1.10));
    }
}
