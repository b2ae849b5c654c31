//! What a converged daemon costs: one idle pass over N assets (Docker
//! calls, CPU, RSS), and a comment-only change to every file (which must
//! write nothing to Docker). Both are counted through the proxy.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::Bench;
use crate::cli::Figure;
use crate::clock::{now_ns, secs};
use crate::daemon::{Daemon, Dirs, PassTimes};
use crate::objects::write_atomic;
use crate::procfs::{proc_rss_kb, proc_sched_ns, proc_ticks};
use crate::proxy::Req;
use crate::report::Row;
use crate::stats::median;
use crate::FIG_LABEL;

/// The figure label of the converged assets.
const FIG: &str = "id";
/// No network: a Linux bridge holds at most 1 024 ports, and the idle
/// pass costs the same whatever the containers' networking.
const SPEC_EXTRA: &str = "  networks: [ none ]\n";

impl Bench {
    /// N converged assets on the local engine, the daemon's calls counted:
    /// one SIGHUP-triggered pass (calls, CPU, RSS), then a comment-only
    /// rewrite of every file (write calls).
    pub async fn fig_idle_and_comment(&self) -> Result<()> {
        let n = self.sizes.idle_n;
        let prefix = format!("b{}-{FIG}-", self.rid);
        let dirs = self.dirs(FIG)?;
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        self.write_assets(&dirs.manifests, &names, FIG, SPEC_EXTRA)?;
        self.converge_once(&dirs, &prefix, n).await?;
        let daemon = self.daemon(&dirs, "local", true)?;
        daemon.wait_ready(Duration::from_secs(120)).await?;
        self.proxy
            .wait_quiet(Duration::from_secs(2), Duration::from_secs(120))
            .await;
        if self.selected(Figure::Idle) {
            self.idle_passes(&daemon, n).await?;
        }
        if self.selected(Figure::IdleMinute) {
            self.idle_minute(&daemon, n).await?;
        }
        if self.selected(Figure::Comment) {
            self.comment_only_change(&daemon, &dirs, &names).await?;
        }
        if self.selected(Figure::Noop) {
            self.noop_cycles(&daemon, &dirs, &names, FIG, SPEC_EXTRA)
                .await?;
        }
        daemon.stop().await;
        self.remove_by_label(FIG_LABEL, FIG).await;
        Ok(())
    }

    /// Converges with one `apply --once` pass (the daemon's own
    /// convergence is the cold-start figure), so a daemon started on the
    /// same state directory finds everything converged.
    async fn converge_once(&self, dirs: &Dirs, prefix: &str, n: usize) -> Result<()> {
        println!(
            "   converging {n} assets with `assetd apply --once`{} ...",
            if self.args.quick {
                " (QUICK: 100, not 1 000)"
            } else {
                ""
            }
        );
        let t0 = now_ns();
        let mut apply = Command::new(&self.assetd);
        apply
            .args([
                "apply",
                "--once",
                "--strategy",
                "local",
                "--instance",
                &dirs.instance,
                "--allow-mass-prune",
            ])
            .arg("--manifests")
            .arg(&dirs.manifests)
            .arg("--state-dir")
            .arg(&dirs.state)
            .env("DOCKER_HOST", &self.engine_host)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.spawn_logged(apply)?
            .wait_ok(Duration::from_secs(1200))
            .await
            .context("assetd apply --once")?;
        let at = self
            .starts
            .wait_all(prefix, n, t0, Duration::from_secs(60))
            .await?;
        println!("   {n} running after {:.1} s", secs(at - t0));
        Ok(())
    }

    /// SIGHUP-triggered passes over the `n` converged assets: their calls,
    /// CPU and the daemon's RSS.
    async fn idle_passes(&self, daemon: &Daemon, n: usize) -> Result<()> {
        // What the idle daemon costs with no pass at all, for scale.
        let (c0, s0) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let background_ms = proc_sched_ns(daemon.pid).saturating_sub(s0) as f64 / 1e6 / 2.0;
        let background_ticks = proc_ticks(daemon.pid).saturating_sub(c0);
        let mut calls = Vec::new();
        let mut cpu = Vec::new();
        let mut cpu_ticks = Vec::new();
        let mut detail = String::new();
        for run in 0..=self.sizes.idle_runs {
            let mark = self.proxy.mark();
            let (c0, s0) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
            daemon.signal("HUP")?;
            self.proxy
                .wait_for(mark, Req::is_container_listing, Duration::from_secs(10))
                .await
                .context("no listing after SIGHUP")?;
            self.proxy
                .wait_quiet(Duration::from_millis(500), Duration::from_secs(10))
                .await;
            let (c1, s1) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
            let (cpu_ns, ticks) = (s1.saturating_sub(s0), c1.saturating_sub(c0));
            let reqs = self.proxy.calls_since(mark);
            if run == 0 {
                continue; // The first HUP after convergence warms the reconnect path.
            }
            detail = reqs
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "   pass {run}: {} API call(s) [{detail}], CPU {:.0} ms (utime+stime, all threads; live threads alone {:.1} ms)",
                reqs.len(),
                ticks as f64 * 1e3 / self.clk_tck,
                cpu_ns as f64 / 1e6
            );
            calls.push(reqs.len() as f64);
            cpu.push(cpu_ns as f64 / 1e6);
            cpu_ticks.push(ticks as f64 * 1e3 / self.clk_tck);
        }
        let (rss, hwm) = proc_rss_kb(daemon.pid);
        let calls_m = median(&calls);
        // utime+stime counts the parse threads that have exited by
        // the time it is read (schedstat of live threads misses them);
        // its 10 ms ticks are averaged over the passes.
        let cpu_m = cpu_ticks.iter().sum::<f64>() / cpu_ticks.len().max(1) as f64;
        println!(
            "   idle pass over {n}: median {calls_m} call(s) ({detail}), CPU mean {cpu_m:.0} ms (median {:.0} ms; live threads alone median {:.1} ms), RSS {:.1} MB (peak {:.1} MB); idle background {background_ms:.2} ms/s ({background_ticks} ticks in 2 s)",
            median(&cpu_ticks),
            median(&cpu),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        let q = if self.args.quick {
            " [QUICK: 100 assets]"
        } else {
            ""
        };
        let figure = |what: &str| format!("idle pass over {n} converged assets: {what}{q}");
        self.report.add(Row::target_only(
            figure("Docker API calls"),
            format!("{calls_m}"),
            "≤ 3",
            calls_m <= 3.0,
        ));
        self.report.add(Row::target_only(
            figure("CPU"),
            format!("{cpu_m:.0} ms"),
            "< 20 ms",
            cpu_m < 20.0,
        ));
        self.report.add(Row::target_only(
            figure("RSS"),
            format!("{:.1} MB", rss as f64 / 1024.0),
            "< 50 MB",
            (rss as f64 / 1024.0) < 50.0,
        ));
        Ok(())
    }

    /// A quiet minute (10 s with `--quick`) on the converged daemon while
    /// someone else creates and removes a network every 2 s (what a failed
    /// asset could wait for; a converged fleet waits for nothing): Docker
    /// calls, passes and the daemon's CPU. Then the cost of one pass when
    /// one container's event asks for it (the rest read from the view and
    /// the last read of the manifests).
    async fn idle_minute(&self, daemon: &Daemon, n: usize) -> Result<()> {
        let window = Duration::from_secs(if self.args.quick { 10 } else { 60 });
        let signalled = format!("b{}-{FIG}-0", self.rid);
        // A container up for seconds only is read at every pass (a restart
        // shows as "Up 3 seconds"): idle means settled, 20 s after the
        // youngest started. Then a pass or two read them settled.
        tokio::time::sleep(Duration::from_secs(21)).await;
        for _ in 0..2 {
            self.ignored_signal(&signalled).await?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        self.proxy
            .wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
            .await;
        let mark = self.proxy.mark();
        let passes = PassTimes::read(daemon).await?;
        let (c0, s0) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
        let started = std::time::Instant::now();
        let mut foreign_events = 0;
        while started.elapsed() < window {
            self.foreign_network(&foreign_events.to_string()).await?;
            foreign_events += 2;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let (c1, s1) = (proc_ticks(daemon.pid), proc_sched_ns(daemon.pid));
        let passes = PassTimes::read(daemon).await?.since(&passes);
        let cpu_ms = c1.saturating_sub(c0) as f64 * 1e3 / self.clk_tck;
        let live_ms = s1.saturating_sub(s0) as f64 / 1e6;
        let reqs = self.proxy.calls_since(mark);
        let listings = reqs.iter().filter(|r| r.is_container_listing()).count();
        let full = reqs
            .iter()
            .filter(|r| r.is_full_container_listing())
            .count();
        let (rss, _) = proc_rss_kb(daemon.pid);
        let rss_mb = rss as f64 / 1024.0;
        let secs = window.as_secs();
        let one = self.signalled_passes(daemon, &signalled).await?;
        let pass_us = one.mean_seconds() * 1e6;
        let per_asset_us = pass_us / n as f64;
        println!(
            "   idle {secs} s over {n} with {foreign_events} foreign events: {listings} container listing(s) ({full} of every container), {} Docker call(s) in all, {} passes ({} walked the manifests), CPU {cpu_ms:.0} ms (live threads {live_ms:.1} ms), RSS {rss_mb:.1} MB; a pass for one container's event: {pass_us:.0} µs ({per_asset_us:.2} µs per asset, {} passes, {} walks)",
            reqs.len(),
            passes.count,
            passes.walks,
            one.count,
            one.walks
        );
        let q = if self.args.quick {
            format!(" [QUICK: {n} assets, {secs} s]")
        } else {
            String::new()
        };
        let figure = |what: &str| format!("idle minute over {n} assets, foreign events: {what}{q}");
        self.report.add(Row::target_only(
            figure("Docker list calls"),
            format!("{listings}"),
            "0",
            listings == 0,
        ));
        self.report.add(Row {
            met: None,
            ..Row::target_only(
                figure("a pass for one container's event (observe, plan, status), per asset"),
                format!(
                    "{per_asset_us:.2} µs ({pass_us:.0} µs a pass, {} passes, {} walks)",
                    one.count, one.walks
                ),
                "— (reported)",
                true,
            )
        });
        self.report.add(Row::target_only(
            figure("daemon CPU"),
            format!("{cpu_ms:.0} ms"),
            "≤ 60 ms",
            cpu_ms <= 60.0,
        ));
        self.report.add(Row::target_only(
            figure("RSS"),
            format!("{rss_mb:.1} MB"),
            "< 60 MB",
            rss_mb < 60.0,
        ));
        Ok(())
    }

    /// Five signals `name` ignores, 1.5 s apart: each `kill` event a pass
    /// that reads that container again. What those passes cost.
    async fn signalled_passes(&self, daemon: &Daemon, name: &str) -> Result<PassTimes> {
        let before = PassTimes::read(daemon).await?;
        for _ in 0..5 {
            self.ignored_signal(name).await?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Ok(PassTimes::read(daemon).await?.since(&before))
    }

    /// `docker kill -s WINCH`: the container ignores it, the daemon hears
    /// a `kill` event of one of its containers.
    async fn ignored_signal(&self, name: &str) -> Result<()> {
        let options = bollard::query_parameters::KillContainerOptionsBuilder::default()
            .signal("SIGWINCH")
            .build();
        self.docker.kill_container(name, Some(options)).await?;
        Ok(())
    }

    /// Someone else creates a network and removes it: two events (the
    /// network could be what a failed asset waits for).
    async fn foreign_network(&self, suffix: &str) -> Result<()> {
        let net = format!("b{}-foreign-{suffix}", self.rid);
        let config = bollard::models::NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        };
        self.docker.create_network(config).await?;
        self.docker.remove_network(&net).await?;
        Ok(())
    }

    /// Prepends a comment to every manifest: the pass it triggers must not
    /// write to Docker.
    async fn comment_only_change(
        &self,
        daemon: &Daemon,
        dirs: &Dirs,
        names: &[String],
    ) -> Result<()> {
        let n = names.len();
        let mark = self.proxy.mark();
        let written_ms = crate::clock::now_ns() as u64 / 1_000_000;
        let stamp = now_ns();
        for name in names {
            let text = format!(
                "# touched by assetd-bench at {stamp}: comments change nothing\n{}",
                self.asset_yaml(name, FIG, SPEC_EXTRA)
            );
            write_atomic(&dirs.manifests, &format!("{name}.yaml"), &text)?;
        }
        daemon
            .wait_pass_after(written_ms, Duration::from_secs(10))
            .await
            .context("no pass after the comment-only change")?;
        self.proxy
            .wait_quiet(Duration::from_secs(2), Duration::from_secs(60))
            .await;
        let reqs = self.proxy.calls_since(mark);
        let writes: Vec<&Req> = reqs.iter().filter(|r| r.is_write()).collect();
        println!(
            "   comment-only change in {n} files: {} Docker call(s) in all, {} write(s){}",
            reqs.len(),
            writes.len(),
            if writes.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    writes
                        .iter()
                        .take(5)
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        self.report.add(Row::target_only(
            format!("comment-only change in {n} files: Docker write calls"),
            format!("{}", writes.len()),
            "0",
            writes.is_empty(),
        ));
        Ok(())
    }
}
