//! The command line, and the sizes and run counts it fixes.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "assetd-bench",
    about = "Benchmarks the assetd daemon against bare Docker on the engine at DOCKER_HOST"
)]
pub struct Args {
    /// Each figure once and small (20 instead of 200, 100 instead of 1000):
    /// for CI, so the bench cannot rot.
    #[arg(long)]
    pub quick: bool,
    /// Runs of each cheap figure (latencies, repair, idle pass,
    /// parse): medians are reported. Default 7 (1 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Runs of each cold-start figure (200 containers, 200 services: a
    /// few minutes each here). Default 1, to keep the whole run near 10
    /// minutes; use 3 for medians.
    #[arg(long)]
    pub cold_runs: Option<usize>,
    /// Only these figures (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Figure>,
    /// The assetd binary (default: next to this one, built first when run
    /// through cargo).
    #[arg(long)]
    pub assetd: Option<PathBuf>,
    /// Route every daemon through the counting proxy and print its calls
    /// and their timeline (profiling; adds a hop to every call).
    #[arg(long)]
    pub count_all: bool,
    /// Keep the temporary directory (daemon logs) after the run.
    #[arg(long)]
    pub keep_temp: bool,
    /// Services of the `swarm-scale` figure (default 500, 20 with --quick).
    #[arg(long)]
    pub swarm_services: Option<usize>,
}

/// The figures, in the order they run; `--only` takes their kebab-case
/// names (`latency-local`, `parse-plan`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Figure {
    ParsePlan,
    LatencyLocal,
    Repair,
    UpdateLocal,
    LatencySwarm,
    UpdateSwarm,
    ColdLocal,
    ColdSwarm,
    /// File → running while the daemon manages 10, 200, 1 000 assets.
    LatencyScale,
    /// Managed containers restarted in a loop by someone else.
    Storm,
    Idle,
    /// Measured on the same converged daemon as `Idle`, in its run.
    Comment,
    /// A quiet minute on the same converged daemon, while other objects
    /// on the engine send events.
    IdleMinute,
    /// Touch-all and comment-only cycles on the same converged daemon.
    Noop,
    /// 500 services from cold against `docker stack deploy`, then an
    /// idle minute over them (run it with DOCKER_HOST on a manager of
    /// `scripts/multinode.sh` for three managers).
    SwarmScale,
}

impl Figure {
    /// Its name on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Figure::ParsePlan => "parse-plan",
            Figure::LatencyLocal => "latency-local",
            Figure::Repair => "repair",
            Figure::LatencySwarm => "latency-swarm",
            Figure::UpdateLocal => "update-local",
            Figure::UpdateSwarm => "update-swarm",
            Figure::ColdLocal => "cold-local",
            Figure::ColdSwarm => "cold-swarm",
            Figure::LatencyScale => "latency-scale",
            Figure::Storm => "storm",
            Figure::Idle => "idle",
            Figure::Comment => "comment",
            Figure::IdleMinute => "idle-minute",
            Figure::Noop => "noop",
            Figure::SwarmScale => "swarm-scale",
        }
    }
}

/// How big and how often, fixed from the flags.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub latency_runs: usize,
    pub repair_runs: usize,
    pub cold_runs: usize,
    pub cold_local_n: usize,
    pub cold_swarm_n: usize,
    pub idle_n: usize,
    pub idle_runs: usize,
    pub parse_runs: usize,
    pub parse_small: usize,
    pub parse_big: usize,
    /// Fleet sizes of the latency-with-scale figure, and the changes
    /// timed at each.
    pub scale_sizes: Vec<usize>,
    pub scale_samples: usize,
    pub storm_n: usize,
    pub storm_window: std::time::Duration,
    /// Changes timed in quiet and during the storm.
    pub storm_samples: usize,
    pub noop_cycles: usize,
    /// Services of the Swarm-at-scale figure, and its idle window.
    pub swarm_scale_n: usize,
    pub swarm_idle: std::time::Duration,
}

impl Sizes {
    pub fn new(args: &Args) -> Self {
        let cheap = match (args.runs, args.quick) {
            (Some(n), _) => n.max(1),
            (None, true) => 1,
            (None, false) => 7,
        };
        let cold = args.cold_runs.unwrap_or(1).max(1);
        Self {
            latency_runs: cheap,
            repair_runs: cheap,
            cold_runs: cold,
            cold_local_n: if args.quick { 20 } else { 200 },
            cold_swarm_n: if args.quick { 20 } else { 200 },
            idle_n: if args.quick { 100 } else { 1000 },
            idle_runs: cheap,
            parse_runs: cheap,
            parse_small: 1000,
            parse_big: 10_000,
            scale_sizes: if args.quick {
                vec![10, 50]
            } else {
                vec![10, 200, 1000]
            },
            scale_samples: if args.quick { 3 } else { 30 },
            storm_n: if args.quick { 20 } else { 200 },
            storm_window: std::time::Duration::from_secs(if args.quick { 10 } else { 60 }),
            storm_samples: if args.quick { 1 } else { 5 },
            noop_cycles: if args.quick { 5 } else { 100 },
            swarm_scale_n: args
                .swarm_services
                .unwrap_or(if args.quick { 20 } else { 500 }),
            swarm_idle: std::time::Duration::from_secs(if args.quick { 5 } else { 60 }),
        }
    }
}
