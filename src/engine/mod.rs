//! The Docker side, the only folder that speaks bollard (with the
//! watcher's event stream): connecting and choosing the strategy
//! (`--strategy auto`, here), the strategies and what they list
//! (`strategy`: local, swarm, the stack's objects, labels, pulls, writer
//! stamps), the Swarm writer lease and registry auth. Knows nothing of the
//! daemon, the API or how things are shown.

pub mod lease;
pub mod registry_auth;
pub mod strategy;

use bollard::Docker;

use crate::engine::strategy::{AnyStrategy, LocalDocker, StrategyKind, Swarm};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to Docker at {host}: {message}")]
    Connect { host: String, message: String },
    #[error("Docker at {host} does not answer: {message}")]
    Unreachable { host: String, message: String },
    #[error("--strategy swarm, but the engine at {host} is not an active Swarm manager (node state: {state})")]
    NotAManager { host: String, state: String },
}

/// The `--strategy` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StrategyChoice {
    /// Swarm when the engine is an active Swarm manager, else local.
    Auto,
    Local,
    Swarm,
}

/// `DOCKER_HOST`, or the platform default socket.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// A client for `DOCKER_HOST` (bollard reads the variable itself).
pub fn connect() -> Result<Docker, EngineError> {
    let host = docker_host();
    Docker::connect_with_host(&host).map_err(|e| EngineError::Connect {
        host,
        message: e.to_string(),
    })
}

/// Whether the engine is an active Swarm manager. (Whether it leads is
/// asked on every pass, by the daemon: leadership moves.)
pub async fn is_swarm_manager(docker: &Docker) -> Result<bool, EngineError> {
    let info = docker.info().await.map_err(|e| EngineError::Unreachable {
        host: docker_host(),
        message: e.to_string(),
    })?;
    let swarm = info.swarm.unwrap_or_default();
    let active = swarm
        .local_node_state
        .map(|s| s.to_string() == "active")
        .unwrap_or(false);
    Ok(active && swarm.control_available.unwrap_or(false))
}

/// Resolves `--strategy` against what the engine is.
pub async fn choose(
    docker: &Docker,
    choice: StrategyChoice,
    instance: &str,
) -> Result<AnyStrategy, EngineError> {
    let kind = match choice {
        StrategyChoice::Local => StrategyKind::Local,
        StrategyChoice::Swarm | StrategyChoice::Auto => {
            let manager = is_swarm_manager(docker).await?;
            match (choice, manager) {
                (_, true) => StrategyKind::Swarm,
                (StrategyChoice::Auto, false) => StrategyKind::Local,
                _ => {
                    let info = docker.info().await.ok();
                    let state = info
                        .and_then(|i| i.swarm)
                        .and_then(|s| s.local_node_state)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into());
                    return Err(EngineError::NotAManager {
                        host: docker_host(),
                        state,
                    });
                }
            }
        }
    };
    Ok(match kind {
        StrategyKind::Local => AnyStrategy::Local(LocalDocker::new(docker.clone(), instance)),
        StrategyKind::Swarm => AnyStrategy::Swarm(Swarm::new(docker.clone(), instance)),
    })
}

/// This engine's Swarm node ID.
pub async fn swarm_node_id(docker: &Docker) -> Result<String, EngineError> {
    let info = docker.info().await.map_err(|e| EngineError::Unreachable {
        host: docker_host(),
        message: e.to_string(),
    })?;
    Ok(info.swarm.and_then(|s| s.node_id).unwrap_or_default())
}

/// Whether `node` is the Raft leader now: one call, made every pass.
pub async fn is_leader(docker: &Docker, node: &str) -> bool {
    match docker.inspect_node(node).await {
        Ok(node) => node.manager_status.and_then(|m| m.leader).unwrap_or(false),
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether this node leads the Swarm; standing by");
            false
        }
    }
}
