//! One timed convergence with the CPU the machine, the engine and the
//! daemon spent on it.

use std::time::Instant;

use crate::procfs::{dockerd_ticks, machine_busy_ticks, proc_ticks};

/// Machine-wide and per-process CPU at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSnap {
    at: Option<Instant>,
    busy: u64,
    dockerd: u64,
    daemon: u64,
}

impl CpuSnap {
    /// With `daemon`, also that process's CPU so far.
    pub fn take(daemon: Option<u32>) -> Self {
        let busy = machine_busy_ticks();
        let dockerd = dockerd_ticks();
        Self {
            at: Some(Instant::now()),
            busy,
            dockerd,
            daemon: daemon.map(proc_ticks).unwrap_or(0),
        }
    }
}

/// One timed convergence and what the machine did meanwhile.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub wall: f64,
    /// Seconds until the last container or service was created.
    pub created: f64,
    /// Average cores busy machine-wide.
    pub busy_cores: f64,
    pub dockerd_cpu: f64,
    /// The daemon's CPU in all: it was started after the first snapshot.
    pub daemon_cpu: f64,
}

impl Sample {
    pub fn new(wall: f64, created: f64, before: &CpuSnap, after: &CpuSnap, clk_tck: f64) -> Self {
        let span = match (before.at, after.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => wall,
        };
        Self {
            wall,
            created,
            busy_cores: (after.busy - before.busy) as f64 / clk_tck / span.max(1e-3),
            dockerd_cpu: (after.dockerd.saturating_sub(before.dockerd)) as f64 / clk_tck,
            daemon_cpu: after.daemon as f64 / clk_tck,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{:.2} s (last object created at {:.2} s); machine {:.2} cores busy; dockerd {:.1} s CPU{}",
            self.wall,
            self.created,
            self.busy_cores,
            self.dockerd_cpu,
            if self.daemon_cpu > 0.0 { format!("; assetd {:.2} s CPU", self.daemon_cpu) } else { String::new() }
        )
    }
}
