//! `assetd-bench`: measures the real `assetd` daemon against bare Docker on
//! the real engine, side by side in one run, and prints each figure with
//! its target.
//!
//! ```text
//! cargo run --release --bin assetd-bench --features bench -- [--quick] [--runs N] [--cold-runs N] [--only NAME[,NAME]]
//! ```
//!
//! Every figure pairs an assetd measurement with its baseline in the same
//! run, alternating which goes first, and reports medians over the runs
//! (the machine is small and noisy). Times come from the engine's own
//! clock wherever it has one: a container's `start` event (`timeNano`) and
//! a Swarm task's `Status.Timestamp` when it turned `running`, minus the
//! wall-clock instant the action was issued (file renamed into place,
//! CLI spawned, API call sent). Both sides are timed the same way.
//!
//! Docker API calls are counted for real: a proxy inside the bench listens
//! on a temporary unix socket, forwards every connection to the engine and
//! parses the requests of the client→engine direction (keep-alive,
//! `Content-Length` and chunked bodies). Daemons whose calls are counted
//! get `DOCKER_HOST` pointed at it (`--count-all` routes every daemon
//! through it and prints where its calls and time go).
//!
//! Everything the bench creates carries `assetd.bench=<run id>` (plus the
//! bench's pid, so a later run can clear leftovers of a killed one) and is
//! removed at the end, also after an error or Ctrl-C. Missed targets are
//! reported, not failed: the exit code is 1 only when a figure could not
//! be measured.

mod bench;
mod child;
mod cleanup;
mod cli;
mod clock;
mod daemon;
mod figures;
mod listing;
mod objects;
mod procfs;
mod proxy;
mod report;
mod sample;
mod start_log;
mod stats;
mod waits;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use futures_util::StreamExt;

use crate::bench::Bench;
use crate::cli::Args;

const IMAGE: &str = "assetd-test/busybox:1";
/// On everything the bench creates; valued with the run id.
const LABEL: &str = "assetd.bench";
/// Which figure and run an object belongs to.
const FIG_LABEL: &str = "assetd.bench.fig";
/// The bench's pid: objects of a bench that no longer runs are leftovers.
const PID_LABEL: &str = "assetd.bench.pid";
/// Concurrency of the baselines and of assetd (its default `--concurrency`).
const PARALLEL: usize = 8;

fn main() -> std::process::ExitCode {
    // A bad flag (an unknown figure, say) is a usage error: EX_USAGE.
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return std::process::ExitCode::from(64);
        }
        Err(e) => e.exit(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("assetd-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sets up, runs the figures on their own task (so Ctrl-C or a panic still
/// reaches the cleanup), cleans up, prints the table. `Ok(false)` when a
/// figure failed.
async fn run(args: Args) -> Result<bool> {
    let bench = Arc::new(Bench::new(args).await?);
    bench.clear_leftovers().await;
    let task = {
        let bench = bench.clone();
        tokio::spawn(async move { bench.run_figures().await })
    };
    let abort = task.abort_handle();
    let mut signals = signal_hook_tokio::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let outcome = tokio::select! {
        joined = task => match joined {
            Ok(ok) => Ok(ok),
            Err(e) if e.is_panic() => Err(anyhow!("the bench panicked")),
            Err(e) => Err(anyhow!("the bench task ended: {e}")),
        },
        _ = signals.next() => {
            eprintln!("\nassetd-bench: interrupted; cleaning up (Ctrl-C again to leave things behind)");
            abort.abort();
            // Give the aborted task a moment to drop its daemons.
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(anyhow!("interrupted"))
        }
    };
    let cleanup = bench.cleanup();
    tokio::select! {
        _ = cleanup => {}
        _ = signals.next() => eprintln!("assetd-bench: cleanup skipped; objects carry {LABEL}={}", bench.rid),
    }
    bench.report.print_table(bench.args.quick);
    outcome
}
