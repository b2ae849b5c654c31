//! Prometheus metrics served on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::report::status::AssetStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub window: String,
    /// `allow` or `deny`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabels {
    pub asset: String,
    pub health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// `--notify` deliveries, by result: `delivered`, `failed` (given up
/// after its retries) or `dropped` (the receiver's queue was full).
pub type NotificationCounters = Family<ResultLabels, Counter>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

/// Counts what the watchers saw, for `/metrics`.
#[derive(Default)]
pub struct WatchCounters {
    pub file_events: AtomicU64,
    /// inotify queue overflows: file events were lost (also counted in
    /// `file_events`).
    pub file_overflows: AtomicU64,
    pub docker_events: AtomicU64,
    pub docker_reconnects: AtomicU64,
}

pub struct Metrics {
    registry: Registry,
    pub passes: Counter,
    pub manifest_walks: Counter,
    pub pass_seconds: Histogram,
    pub actions: Family<ActionLabels, Counter>,
    pub assets: Family<PhaseLabels, Gauge>,
    /// 1 for each asset's current health, 0 for the other three (as
    /// kube-state-metrics does), so `== 1` alerts and absent means gone.
    health: Family<HealthLabels, Gauge>,
    pub docker_errors: Counter,
    watch_events: Family<SourceLabels, Gauge>,
    watch: Arc<WatchCounters>,
    /// 1 while this daemon holds the Swarm writer lease.
    pub lease_held: Gauge,
    /// Seconds without a live lease holder, as this daemon observed
    /// (0 while one renews): alert when it passes the expiry.
    pub lease_holder_missing: Gauge,
    /// Times this daemon took the lease from another holder.
    pub lease_takeovers: Counter,
    /// 1 once the first full pass is done (`/readyz`).
    pub ready: Gauge,
    /// 1 while the last pass read the engine, 0 while it cannot.
    pub engine_up: Gauge,
    /// Rollouts that ended rolled back (by assetd or by Swarm).
    pub rollbacks: Counter,
    /// Removals the prune guard holds for `assetd prune --confirm`.
    pub removals_held: Gauge,
    /// 1 while a sync window is in force.
    windows: Family<WindowLabels, Gauge>,
    pub notifications: NotificationCounters,
}

/// Registers `metric` under `name` and hands it back (a metric is a
/// handle: the registry and the field share it).
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn new(watch: Arc<WatchCounters>) -> Self {
        let mut r = Registry::with_prefix("assetd");
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
        let metrics = Self {
            passes: registered(&mut r, "passes", "Reconcile passes run", Counter::default()),
            manifest_walks: registered(
                &mut r,
                "manifest_walks",
                "Passes that read the manifests directory (the others reused the last read: nothing in it changed)",
                Counter::default(),
            ),
            pass_seconds: registered(
                &mut r,
                "pass_duration_seconds",
                "Time to observe and plan one pass",
                Histogram::new(buckets),
            ),
            actions: registered(&mut r, "actions", "Actions executed, by kind and result", Family::default()),
            assets: registered(&mut r, "assets", "Assets by phase after the last pass", Family::default()),
            health: registered(
                &mut r,
                "asset_health",
                "Health of each asset after the last pass (Healthy, Progressing, Degraded, Unknown)",
                Family::default(),
            ),
            docker_errors: registered(&mut r, "docker_errors", "Docker API calls that failed", Counter::default()),
            watch_events: registered(
                &mut r,
                "watch_events",
                "Events seen by the watchers (cumulative); file_overflow counts inotify queue overflows, which lose file events",
                Family::default(),
            ),
            lease_held: registered(&mut r, "lease_held", "1 while this daemon holds the Swarm writer lease", Gauge::default()),
            lease_holder_missing: registered(
                &mut r,
                "lease_holder_missing_seconds",
                "Seconds without a live holder of the Swarm writer lease, as this daemon observed",
                Gauge::default(),
            ),
            lease_takeovers: registered(
                &mut r,
                "lease_takeovers",
                "Times this daemon took the Swarm writer lease from another holder",
                Counter::default(),
            ),
            ready: registered(&mut r, "ready", "1 once the daemon finished its first full pass", Gauge::default()),
            engine_up: registered(
                &mut r,
                "engine_up",
                "1 while the daemon reads the Docker engine, 0 while it cannot",
                Gauge::default(),
            ),
            rollbacks: registered(
                &mut r,
                "rollbacks",
                "Rollouts that ended rolled back, by assetd or by Swarm",
                Counter::default(),
            ),
            removals_held: registered(
                &mut r,
                "removals_held",
                "Removals the mass-prune guard holds until `assetd prune --confirm`",
                Gauge::default(),
            ),
            windows: registered(
                &mut r,
                "sync_window_in_force",
                "1 while a sync window is in force (deny: changes wait; allow: changes go)",
                Family::default(),
            ),
            notifications: registered(
                &mut r,
                "notifications",
                "--notify deliveries by result: delivered, failed (after retries), dropped (queue full)",
                NotificationCounters::default(),
            ),
            watch,
            registry: r,
        };
        // Every series from the start, so that increase() sees the first.
        for result in ["delivered", "failed", "dropped"] {
            let _ = metrics.notifications.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        for kind in ["create", "update", "remove", "repair"] {
            let _ = metrics.actions.get_or_create(&ActionLabels {
                kind: kind.into(),
                result: "failed".into(),
            });
        }
        metrics
    }

    pub fn set_windows(&self, views: &[crate::core::window::WindowView]) {
        self.windows.clear();
        for w in views {
            self.windows
                .get_or_create(&WindowLabels {
                    window: w.name.clone(),
                    kind: w.kind.clone(),
                })
                .set(i64::from(w.in_force));
        }
    }

    pub fn set_phases(&self, assets: &[AssetStatus]) {
        self.assets.clear();
        for a in assets {
            self.assets
                .get_or_create(&PhaseLabels {
                    phase: a.phase.to_string(),
                })
                .inc();
        }
        self.health.clear();
        for a in assets {
            for health in crate::core::health::Health::ALL {
                self.health
                    .get_or_create(&HealthLabels {
                        asset: a.name.to_string(),
                        health: health.to_string(),
                    })
                    .set(i64::from(a.health == health));
            }
        }
    }

    pub fn render(&self) -> String {
        for (source, value) in [
            ("file", self.watch.file_events.load(Ordering::Relaxed)),
            (
                "file_overflow",
                self.watch.file_overflows.load(Ordering::Relaxed),
            ),
            ("docker", self.watch.docker_events.load(Ordering::Relaxed)),
            (
                "docker_reconnect",
                self.watch.docker_reconnects.load(Ordering::Relaxed),
            ),
        ] {
            self.watch_events
                .get_or_create(&SourceLabels {
                    source: source.into(),
                })
                .set(value as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_file_events_are_counted_apart() {
        let watch = Arc::new(WatchCounters::default());
        watch.file_events.store(5, Ordering::Relaxed);
        watch.file_overflows.store(2, Ordering::Relaxed);
        let text = Metrics::new(watch).render();
        assert!(
            text.contains("assetd_watch_events{source=\"file\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("assetd_watch_events{source=\"file_overflow\"} 2"),
            "{text}"
        );
    }
}
