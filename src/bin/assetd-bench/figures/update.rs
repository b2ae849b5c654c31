//! Update: a running asset's image changed → the new version running in
//! its place, against the bare Docker way of doing the same. assetd's
//! local update goes through the rollout gate (the new version must run
//! 3 s before it replaces the old one): its own time is reported apart,
//! as is the outage of a stop-first update (old container died → new one
//! started).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::models::TaskState;
use bollard::query_parameters::ListTasksOptionsBuilder;

use crate::bench::Bench;
use crate::clock::{now_ns, secs};
use crate::{FIG_LABEL, IMAGE, LABEL, PID_LABEL};

const IMAGE_2: &str = "assetd-test/busybox:2";
const WAIT: Duration = Duration::from_secs(60);
/// The host port of the stop-first asset (old and new cannot share it).
const STOP_FIRST_PORT: u16 = 18_391;

/// One local update's times, in seconds.
#[derive(Default)]
struct LocalRun {
    /// File written → the new container in the old one's place.
    total: f64,
    /// New container started → renamed into place: the gate.
    gate: f64,
    /// Stop-first: old container died → new one started.
    outage: f64,
    /// `docker rm -f && docker run -d`: command → new container started.
    bare: f64,
    /// ... and its outage: old died → new started.
    bare_outage: f64,
}

impl Bench {
    pub async fn fig_update_local(&self) -> Result<()> {
        let dirs = self.dirs("ul")?;
        let daemon = self.daemon(&dirs, "local", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        let [start_first, stop_first, bare] =
            ["a", "s", "b"].map(|m| format!("b{}-ul-{m}", self.rid));
        let ports = format!("  ports: {{ {STOP_FIRST_PORT}: 80 }}\n");
        let t0 = now_ns();
        self.write_asset(&dirs.manifests, &start_first, "ul", "")?;
        self.write_asset(&dirs.manifests, &stop_first, "ul", &ports)?;
        self.bollard_run(&bare, "ul").await?;
        for name in [&start_first, &stop_first, &bare] {
            self.starts.wait_one(name, t0, WAIT).await?;
        }
        let mut runs = Vec::new();
        for run in 0..=self.sizes.latency_runs {
            let image = if run % 2 == 0 { IMAGE_2 } else { IMAGE };
            let mut got = LocalRun::default();
            (got.total, got.gate) = self
                .assetd_local_update(&dirs.manifests, &start_first, image, "")
                .await?;
            got.outage = self
                .assetd_stop_first_outage(&dirs.manifests, &stop_first, image, &ports)
                .await?;
            (got.bare, got.bare_outage) = self.bare_local_update(&bare, image).await?;
            if run == 0 {
                continue; // The untimed warm-up round.
            }
            println!(
                "   run {run}: assetd {:.0} ms (gate {:.0} ms), docker rm -f && run -d {:.0} ms; stop-first outage assetd {:.0} ms, bare {:.0} ms",
                got.total * 1e3,
                got.gate * 1e3,
                got.bare * 1e3,
                got.outage * 1e3,
                got.bare_outage * 1e3
            );
            runs.push(got);
        }
        daemon.stop().await;
        let pick = |f: fn(&LocalRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let without_gate: Vec<f64> = runs.iter().map(|r| r.total - r.gate).collect();
        let bare_times = pick(|r| r.bare);
        self.update_row(
            "image update → new version in place (local, with its 3 s gate)",
            "docker rm -f && docker run -d",
            &pick(|r| r.total),
            &bare_times,
        );
        self.update_row(
            "image update → new version in place (local, without the gate)",
            "docker rm -f && docker run -d",
            &without_gate,
            &bare_times,
        );
        self.update_row(
            "stop-first update outage (old died → new started, local)",
            "docker rm -f && docker run -d",
            &pick(|r| r.outage),
            &pick(|r| r.bare_outage),
        );
        Ok(())
    }

    /// Writes `name` with `image`; returns (file → renamed into place,
    /// candidate started → renamed into place).
    async fn assetd_local_update(
        &self,
        manifests: &std::path::Path,
        name: &str,
        image: &str,
        extra: &str,
    ) -> Result<(f64, f64)> {
        let t0 = now_ns();
        self.write_image(manifests, name, image, extra)?;
        let candidate = format!("{name}.assetd-candidate");
        let started = self
            .starts
            .wait_event(&candidate, "start", t0, WAIT)
            .await?;
        let placed = self.starts.wait_event(name, "rename", t0, WAIT).await?;
        Ok((secs(placed - t0), secs(placed - started)))
    }

    /// A stop-first update of `name`: old container died → new started.
    async fn assetd_stop_first_outage(
        &self,
        manifests: &std::path::Path,
        name: &str,
        image: &str,
        extra: &str,
    ) -> Result<f64> {
        let t0 = now_ns();
        self.write_image(manifests, name, image, extra)?;
        let died = self.starts.wait_event(name, "die", t0, WAIT).await?;
        let candidate = format!("{name}.assetd-candidate");
        let started = self
            .starts
            .wait_event(&candidate, "start", t0, WAIT)
            .await?;
        self.starts.wait_event(name, "rename", t0, WAIT).await?;
        Ok(secs(started - died))
    }

    /// `docker rm -f NAME && docker run -d ... IMAGE`: (command → new
    /// container started, old died → new started).
    async fn bare_local_update(&self, name: &str, image: &str) -> Result<(f64, f64)> {
        let t0 = now_ns();
        self.cli_command(&["rm", "-f", name])?
            .wait_ok(WAIT)
            .await
            .context("docker rm -f")?;
        let labels = [
            format!("{LABEL}={}", self.rid),
            format!("{FIG_LABEL}=ul"),
            format!("{PID_LABEL}={}", std::process::id()),
        ];
        let mut argv = vec!["run", "-d", "--restart", "unless-stopped"];
        for label in &labels {
            argv.extend(["--label", label.as_str()]);
        }
        argv.extend(["--name", name, image]);
        self.cli_command(&argv)?
            .wait_ok(WAIT)
            .await
            .context("docker run -d")?;
        let died = self.starts.wait_event(name, "die", t0, WAIT).await?;
        let started = self.starts.wait_event(name, "start", t0, WAIT).await?;
        Ok((secs(started - t0), secs(started - died)))
    }

    fn write_image(
        &self,
        manifests: &std::path::Path,
        name: &str,
        image: &str,
        extra: &str,
    ) -> Result<()> {
        let yaml = self
            .asset_yaml(name, "ul", extra)
            .replace(&format!("image: {IMAGE}"), &format!("image: {image}"));
        crate::objects::write_atomic(manifests, &format!("{name}.yaml"), &yaml)
    }

    /// The same on Swarm: file written → a task of the new image running,
    /// against `docker service update -d --image`.
    pub async fn fig_update_swarm(&self) -> Result<()> {
        self.require_swarm().await?;
        let dirs = self.dirs("us")?;
        let daemon = self.daemon(&dirs, "swarm", self.args.count_all)?;
        daemon.wait_ready(Duration::from_secs(30)).await?;
        let [managed, bare] = ["a", "b"].map(|m| format!("b{}-us-{m}", self.rid));
        self.write_asset(&dirs.manifests, &managed, "us", "")?;
        self.docker
            .create_service(self.bare_service(&bare, "us", None), None)
            .await
            .context("create the bare service")?;
        for name in [&managed, &bare] {
            self.wait_task_running(name, WAIT).await?;
        }
        let (mut assetd, mut cli) = (Vec::new(), Vec::new());
        for run in 0..=self.sizes.latency_runs {
            let image = if run % 2 == 0 { IMAGE_2 } else { IMAGE };
            let t0 = now_ns();
            let yaml = self
                .asset_yaml(&managed, "us", "")
                .replace(&format!("image: {IMAGE}"), &format!("image: {image}"));
            crate::objects::write_atomic(&dirs.manifests, &format!("{managed}.yaml"), &yaml)?;
            let a = self.wait_image_running(&managed, image, t0).await?;
            let t0_cli = now_ns();
            self.cli_command(&[
                "service",
                "update",
                "-d",
                "--no-resolve-image",
                "--image",
                image,
                &bare,
            ])?
            .wait_ok(WAIT)
            .await
            .context("docker service update")?;
            let b = self.wait_image_running(&bare, image, t0_cli).await?;
            if run == 0 {
                continue;
            }
            println!(
                "   run {run}: assetd {:.0} ms, docker service update --image {:.0} ms",
                a * 1e3,
                b * 1e3
            );
            assetd.push(a);
            cli.push(b);
        }
        daemon.stop().await;
        let _ = self.docker.delete_service(&bare).await;
        self.update_row(
            "image update → new task running (Swarm, start-first)",
            "docker service update --image",
            &assetd,
            &cli,
        );
        Ok(())
    }

    /// Seconds from `t0` until a task of `service` with `image` turned
    /// `running` (the engine's clock).
    async fn wait_image_running(&self, service: &str, image: &str, t0: i128) -> Result<f64> {
        let deadline = Instant::now() + WAIT;
        let filters = HashMap::from([("service", vec![service.to_string()])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        loop {
            let tasks = self.docker.list_tasks(Some(options.clone())).await?;
            let running = tasks.iter().find_map(|t| {
                let spec_image = t.spec.as_ref()?.container_spec.as_ref()?.image.as_ref()?;
                let status = t.status.as_ref()?;
                (spec_image.starts_with(image) && status.state == Some(TaskState::RUNNING))
                    .then(|| status.timestamp.map(|ts| ts.unix_timestamp_nanos()))
                    .flatten()
            });
            if let Some(at) = running {
                return Ok(secs(at - t0));
            }
            if Instant::now() > deadline {
                bail!("no task of {service} with {image} running after {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A row without a target: the gate makes assetd slower on purpose,
    /// and what it buys (no outage from a version that cannot run) is not
    /// a ratio.
    fn update_row(&self, figure: &str, baseline: &str, assetd: &[f64], base: &[f64]) {
        self.paired_row(figure, baseline, assetd, base, None);
    }
}
