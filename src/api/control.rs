//! The operator's verbs on the socket: the live plan, suspend and resume.
//! Whoever can open the socket (mode 0660: its owner and group) may act;
//! every action is logged with the peer's uid, which the kernel vouches
//! for (`SO_PEERCRED`).

use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;

use super::Shared;
use crate::plan_answer::{self, PlanFormat};
use crate::reconcile::PassConfig;
use crate::spec::AssetName;
use crate::store::now_ms;
use crate::strategy::AnyStrategy;
use crate::suspend::{Suspension, Suspensions};

/// What the live plan needs: the last pass's configuration (with the
/// operator's confirmations and retries) and strategy.
#[derive(Clone)]
pub struct Planner {
    pub config: PassConfig,
    pub strategy: AnyStrategy,
}

/// The uid of the process on the other end of the socket.
#[derive(Clone, Copy, Debug)]
pub struct PeerUid(pub Option<u32>);

impl Connected<IncomingStream<'_, UnixListener>> for PeerUid {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        PeerUid(stream.io().peer_cred().ok().map(|c| c.uid()))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PlanQuery {
    #[serde(default)]
    json: bool,
    #[serde(default)]
    color: bool,
}

pub(super) async fn handle_plan(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<PlanQuery>,
) -> Response {
    let planner = shared.planner.read().expect("planner lock").clone();
    let Some(planner) = planner else {
        let why = "the daemon has not finished a pass yet (or cannot reach Docker)";
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    };
    let format = match query.json {
        true => PlanFormat::Json,
        false => PlanFormat::Text { color: query.color },
    };
    let store = shared.store.as_ref();
    match plan_answer::plan_answer(&planner.config, &planner.strategy, store, format).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default)]
    after: u64,
}

pub(super) async fn handle_events(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<EventsQuery>,
) -> Response {
    Json(shared.events.after(query.after)).into_response()
}

/// `assetd suspend` / `assetd resume`: these assets, or `all`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SuspendRequest {
    pub names: Vec<AssetName>,
    pub all: bool,
    pub reason: Option<String>,
}

pub(super) async fn handle_suspend(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerUid>,
    Json(request): Json<SuspendRequest>,
) -> Response {
    let suspension = Suspension {
        by_uid: peer.0,
        reason: request.reason.clone(),
        since_ms: now_ms(),
    };
    change(&shared, &request, peer, "suspend", |all, name| match name {
        None => all.all = Some(suspension.clone()),
        Some(name) => {
            all.assets.insert(name.clone(), suspension.clone());
        }
    })
}

pub(super) async fn handle_resume(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerUid>,
    Json(request): Json<SuspendRequest>,
) -> Response {
    change(&shared, &request, peer, "resume", |all, name| match name {
        // Resuming everything ends every suspension, not only `--all`'s.
        None => *all = Suspensions::default(),
        Some(name) => {
            all.assets.remove(name);
        }
    })
}

/// Applies one suspend or resume to the stored suspensions, logs who did
/// it, and asks for a pass.
fn change(
    shared: &Shared,
    request: &SuspendRequest,
    peer: PeerUid,
    verb: &str,
    mut edit: impl FnMut(&mut Suspensions, Option<&AssetName>),
) -> Response {
    if let Some(unknown) = request.names.iter().find(|n| !shared.knows(n)) {
        return (StatusCode::NOT_FOUND, format!("no asset `{unknown}`")).into_response();
    }
    let _serial = shared.control_lock.lock().expect("control lock");
    let store = shared.store.as_ref();
    let mut suspensions = Suspensions::load(store);
    if request.all {
        edit(&mut suspensions, None);
    }
    for name in &request.names {
        edit(&mut suspensions, Some(name));
    }
    if let Err(e) = suspensions.save(store) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    tracing::warn!(
        verb,
        uid = peer.0,
        all = request.all,
        assets = ?request.names,
        reason = request.reason.as_deref().unwrap_or_default(),
        "operator control"
    );
    shared.wake.notify_one();
    Json(suspensions).into_response()
}
