//! No-op cycles: on a converged daemon, every file touched (same bytes, a
//! new mtime) and then every file given a new comment, over and over. Not
//! one container may be created or removed.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::bench::Bench;
use crate::clock::now_ns;
use crate::daemon::{Daemon, Dirs};
use crate::objects::write_atomic;
use crate::proxy::Req;
use crate::report::Row;

impl Bench {
    /// `cycles` rounds of touch-all then comment-all over `names` (their
    /// manifests written with `fig` and `spec_extra`), each waited for by
    /// a pass of the daemon; counts the creates and removals it sends.
    pub async fn noop_cycles(
        &self,
        daemon: &Daemon,
        dirs: &Dirs,
        names: &[String],
        fig: &str,
        spec_extra: &str,
    ) -> Result<()> {
        let cycles = self.sizes.noop_cycles;
        let n = names.len();
        let mark = self.proxy.mark();
        let passes = daemon.counter("passes").await?;
        let started = std::time::Instant::now();
        for cycle in 0..cycles {
            let touched = now_ms();
            for name in names {
                let path = dirs.manifests.join(format!("{name}.yaml"));
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()))
                    .with_context(|| format!("touching {}", path.display()))?;
            }
            daemon
                .wait_pass_after(touched, Duration::from_secs(30))
                .await
                .with_context(|| format!("no pass after the touch of cycle {cycle}"))?;
            let commented = now_ms();
            for name in names {
                let text = format!(
                    "# no-op cycle {cycle}: comments change nothing\n{}",
                    self.asset_yaml(name, fig, spec_extra)
                );
                write_atomic(&dirs.manifests, &format!("{name}.yaml"), &text)?;
            }
            daemon
                .wait_pass_after(commented, Duration::from_secs(30))
                .await
                .with_context(|| format!("no pass after the comments of cycle {cycle}"))?;
        }
        self.proxy
            .wait_quiet(Duration::from_secs(2), Duration::from_secs(60))
            .await;
        let passes = daemon.counter("passes").await? - passes;
        let reqs = self.proxy.calls_since(mark);
        let creates = reqs.iter().filter(|r| is_create(r)).count();
        let removes = reqs.iter().filter(|r| is_removal(r)).count();
        let writes = reqs.iter().filter(|r| r.is_write()).count();
        println!(
            "   {cycles} no-op cycles over {n} files in {:.0} s: {passes} passes, {} Docker call(s), {writes} write(s): {creates} create(s), {removes} removal(s)",
            started.elapsed().as_secs_f64(),
            reqs.len()
        );
        let q = if self.args.quick { " [QUICK]" } else { "" };
        let figure = |what: &str| {
            format!("{cycles} no-op cycles (touch all + comment all) over {n} assets: {what}{q}")
        };
        self.report.add(Row::target_only(
            figure("containers created"),
            creates.to_string(),
            "0",
            creates == 0,
        ));
        self.report.add(Row::target_only(
            figure("containers removed"),
            removes.to_string(),
            "0",
            removes == 0,
        ));
        Ok(())
    }
}

fn now_ms() -> u64 {
    (now_ns() / 1_000_000) as u64
}

fn is_create(r: &Req) -> bool {
    r.method == "POST" && r.path == "/containers/create"
}

fn is_removal(r: &Req) -> bool {
    r.method == "DELETE" && r.path.starts_with("/containers/")
}
