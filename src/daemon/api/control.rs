//! The operator's verbs on the socket: the live plan, suspend and resume.
//! Whoever can open the socket (mode 0660: its owner and group) may act;
//! every action is logged with the peer's uid, which the kernel vouches
//! for (`SO_PEERCRED`).

use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;

use super::Shared;
use crate::engine::strategy::AnyStrategy;
use crate::model::spec::AssetName;
use crate::reconcile::PassConfig;
use crate::report::plan_answer::{self, PlanFormat};
use crate::store::history;
use crate::store::now_ms;
use crate::store::suspend::{Suspension, Suspensions};

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
    let planner = shared
        .published
        .planner
        .read()
        .expect("planner lock")
        .clone();
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
    Json(shared.published.events.after(query.after)).into_response()
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
    let why = request
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    if let Some(refused) = refuse_unknown(&shared, &request) {
        return refused;
    }
    record_control(&shared, &request, peer, &format!("suspended{why}"));
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
    if let Some(refused) = refuse_unknown(&shared, &request) {
        return refused;
    }
    if let Err(e) = unpin(&shared, &request) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    record_control(&shared, &request, peer, "resumed");
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
    shared.requests.wake.notify_one();
    Json(suspensions).into_response()
}

/// A request naming an asset the daemon does not know is refused before
/// anything is written, its history included.
fn refuse_unknown(shared: &Shared, request: &SuspendRequest) -> Option<Response> {
    let unknown = request.names.iter().find(|n| !shared.knows(n))?;
    Some((StatusCode::NOT_FOUND, format!("no asset `{unknown}`")).into_response())
}

/// Resuming also ends a rollback's pin.
fn unpin(shared: &Shared, request: &SuspendRequest) -> Result<(), crate::store::StoreError> {
    let _serial = shared.control_lock.lock().expect("control lock");
    let store = shared.store.as_ref();
    let mut pins = history::load_pins(store);
    let before = pins.len();
    pins.retain(|name, _| !request.all && !request.names.contains(name));
    match pins.len() == before {
        true => Ok(()),
        false => history::save_pins(store, &pins),
    }
}

/// Puts an operator's action in the history of the assets it names.
fn record_control(shared: &Shared, request: &SuspendRequest, peer: PeerUid, what: &str) {
    let all_known: Vec<AssetName>;
    let names = if request.all {
        let status = shared.published.status.read().expect("status lock");
        all_known = status.assets.iter().map(|a| a.name.clone()).collect();
        &all_known
    } else {
        &request.names
    };
    let by = peer
        .0
        .map(|uid| format!(" by uid {uid}"))
        .unwrap_or_default();
    for name in names {
        let entry = history::control(format!("{what}{by}"), peer.0);
        if let Err(e) = history::append(shared.store.as_ref(), name, entry) {
            tracing::warn!(asset = %name, error = %e, "could not record the control action");
        }
    }
}

pub(super) async fn handle_history(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Response {
    match AssetName::new(&name) {
        Ok(name) => {
            let revisions = history::load(shared.store.as_ref(), &name);
            if revisions.is_empty() && !shared.knows(&name) {
                return (StatusCode::NOT_FOUND, format!("no asset `{name}`")).into_response();
            }
            Json(revisions).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("asset {e}")).into_response(),
    }
}

/// `assetd rollback NAME [--to N]`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub to: Option<u64>,
}

pub(super) async fn handle_rollback(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerUid>,
    Path(name): Path<String>,
    Json(request): Json<RollbackRequest>,
) -> Response {
    let name = match AssetName::new(&name) {
        Ok(name) => name,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("asset {e}")).into_response(),
    };
    match pin(&shared, &name, request.to, peer).await {
        Ok(pin) => {
            tracing::warn!(asset = %name, revision = pin.revision, uid = peer.0, "operator control: rollback");
            shared.requests.wake.notify_one();
            Json(pin).into_response()
        }
        Err((status, why)) => (status, why).into_response(),
    }
}

/// The secret and config versions `spec` uses that exist nowhere any
/// more (rotated away: the engine keeps only the versions in use and the
/// declared one), so a rollback to it could never be deployed.
async fn gone_versions(
    strategy: &crate::engine::strategy::AnyStrategy,
    spec: &crate::model::spec::DeploySpec,
    want: &crate::input::desired::DesiredAsset,
) -> Option<String> {
    use crate::engine::strategy::DeploymentStrategy as _;
    let uses: Vec<(
        crate::input::stack::ResourceKind,
        &crate::model::spec::FileRef,
    )> = spec
        .secrets
        .iter()
        .map(|r| (crate::input::stack::ResourceKind::Secret, r))
        .chain(
            spec.configs
                .iter()
                .map(|r| (crate::input::stack::ResourceKind::Config, r)),
        )
        .filter(|(_, r)| r.version.is_some())
        .collect();
    if uses.is_empty() {
        return None;
    }
    // The versions the manifest declares now are created by a pass.
    let declared: Vec<String> = want
        .spec
        .secrets
        .iter()
        .chain(&want.spec.configs)
        .map(|r| r.versioned_name())
        .collect();
    let found = strategy.stack()?.observe().await.ok()?;
    let gone: Vec<String> = uses
        .iter()
        .filter(|(kind, r)| {
            let engine = r.versioned_name();
            !declared.contains(&engine) && !found.present.contains(&(*kind, engine))
        })
        .map(|(kind, r)| {
            format!(
                "{kind} `{}` version {} was rotated away",
                r.source,
                r.version.as_deref().unwrap_or_default()
            )
        })
        .collect();
    (!gone.is_empty()).then(|| gone.join(", "))
}

/// Pins `name` to revision `to` (or the previous good one) against the
/// manifest as it is now.
async fn pin(
    shared: &Shared,
    name: &AssetName,
    to: Option<u64>,
    peer: PeerUid,
) -> Result<history::Pin, (StatusCode, String)> {
    let planner = shared
        .published
        .planner
        .read()
        .expect("planner lock")
        .clone();
    let not_yet = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon has not finished a pass yet".to_string(),
        )
    };
    let planner = planner.ok_or_else(not_yet)?;
    let desired = crate::reconcile::load_desired(&planner.config).await;
    let Some(want) = desired.assets.get(name) else {
        let why =
            format!("`{name}` is not declared by a valid manifest: nothing to pin it against");
        return Err((StatusCode::NOT_FOUND, why));
    };
    let store = shared.store.as_ref();
    let revisions = history::load(store, name);
    let target = history::target(&revisions, to)
        .map_err(|e| (StatusCode::NOT_FOUND, format!("{name}: {e}")))?;
    let spec = target
        .spec
        .as_ref()
        .expect("a deploy's revision has its spec");
    if let Some(why) = gone_versions(&planner.strategy, spec, want).await {
        let why = format!(
            "{name}: revision {} can no longer be deployed: {why}; roll back to a revision that uses the values declared now",
            target.n
        );
        return Err((StatusCode::CONFLICT, why));
    }
    let pin = history::Pin {
        revision: target.n,
        spec: target
            .spec
            .clone()
            .expect("a deploy's revision has its spec"),
        hash: target
            .hash
            .clone()
            .expect("a deploy's revision has its hash"),
        manifest_hash: want.hash.clone(),
        by_uid: peer.0,
        since_ms: now_ms(),
    };
    let _serial = shared.control_lock.lock().expect("control lock");
    let mut pins = history::load_pins(store);
    pins.insert(name.clone(), pin.clone());
    let failed = |e: crate::store::StoreError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    history::save_pins(store, &pins).map_err(failed)?;
    let by = peer
        .0
        .map(|uid| format!(" by uid {uid}"))
        .unwrap_or_default();
    let entry = history::control(
        format!("rolled back to revision {}{by}", pin.revision),
        peer.0,
    );
    history::append(store, name, entry).map_err(failed)?;
    Ok(pin)
}
