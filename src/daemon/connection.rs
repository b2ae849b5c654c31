//! The connection to Docker, and how soon to try again when it fails.

use std::time::Duration;

use bollard::Docker;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::daemon::scheduler::Doubling;
use crate::engine;
use crate::engine::strategy::AnyStrategy;

/// Reconnect delays while Docker is unreachable: short at first (an engine
/// restart takes seconds), capped so a long outage is noticed soon after
/// it ends.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// The reconnect delay while Docker is unreachable: one backoff for a
/// failed connect and a failed pass alike.
pub(super) struct Reconnect {
    delay: Doubling,
    /// No attempt before this.
    at: Instant,
}

impl Reconnect {
    pub(super) fn new() -> Self {
        Self {
            delay: Doubling::new(RECONNECT_FIRST, RECONNECT_MAX),
            at: Instant::now(),
        }
    }

    /// When the next attempt may be made, if not now.
    pub(super) fn not_before(&self, now: Instant) -> Option<Instant> {
        (now < self.at).then_some(self.at)
    }

    /// After a failure: how long until the next attempt.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.delay.failed();
        self.at = now + delay;
        delay
    }

    /// A pass succeeded: the next outage starts short again.
    pub(super) fn succeeded(&mut self) {
        self.delay.succeeded();
    }

    /// The outage has lasted long enough for an operator to look.
    pub(super) fn is_long(&self) -> bool {
        self.delay.at_max()
    }
}

/// The connection to Docker and what it decided.
pub(super) struct Connection {
    pub(super) docker: Docker,
    pub(super) strategy: AnyStrategy,
    /// Our Swarm node (the writer lease decides who writes).
    pub(super) swarm_node: Option<String>,
    /// Stops this connection's event watcher.
    pub(super) watch: CancellationToken,
}

impl Connection {
    pub(super) async fn open(config: &super::DaemonConfig) -> Result<Self, engine::EngineError> {
        let (choice, instance, writer) = (config.strategy, &config.instance, &config.writer);
        let docker = engine::connect()?;
        // The client connects lazily: ask once, so an engine that is down
        // is found here, not by a pass, and no event watcher is started
        // against it.
        docker
            .ping()
            .await
            .map_err(|e| engine::EngineError::Unreachable {
                host: engine::docker_host(),
                message: e.to_string(),
            })?;
        let strategy = engine::choose(&docker, choice, instance)
            .await?
            .with_writer(writer.clone())
            .with_registry_auth(config.registry.clone())
            .with_stack_dir(config.state_dir.join("stack"));
        let swarm_node = match strategy {
            AnyStrategy::Swarm(_) => engine::swarm_node_id(&docker).await.ok(),
            AnyStrategy::Local(_) => None,
        };
        Ok(Self {
            docker,
            strategy,
            swarm_node,
            watch: CancellationToken::new(),
        })
    }
}
