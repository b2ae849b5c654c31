//! The daemon's API: status on a unix socket (for `assetd status`), and an
//! opt-in loopback HTTP listener for `/metrics`, `/healthz`, `/readyz`
//! and the dashboard (`web`).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::core::plan::Plan;
use crate::daemon::metrics::Metrics;
use crate::model::spec::AssetName;
use crate::report::plan_answer::{PlanAnswer, PlanFormat};
use crate::report::status::StatusReport;
use crate::store::suspend::Suspensions;
use crate::store::{now_ms, Store};

mod control;
pub mod web;

pub use control::{PeerUid, Planner, RollbackRequest, SuspendRequest};

/// What the loop, the API and the watcher share, split by who writes
/// (as a reflector hands out one writer and read-only readers): each
/// part has one writer, and its readers never write it.
pub struct Shared {
    /// Loop → API: what the API serves.
    pub published: Published,
    /// API → loop: what the operator asked for; the loop uses it up.
    pub requests: Requests,
    /// Watcher (and SIGHUP) → loop: retry failed assets now, assets
    /// changed in place.
    pub hints: Arc<crate::daemon::watch::Hints>,
    /// The daemon's store: the operator's suspensions, history and pins
    /// are kept there.
    pub store: Arc<dyn Store>,
    /// Serializes the changes to the store's control entries (the
    /// operator's verbs, and the loop ending a rollback pin).
    pub control_lock: Mutex<()>,
}

/// Written by the loop only; read by the API.
pub struct Published {
    pub status: RwLock<StatusReport>,
    /// Set after the first full pass.
    pub ready: AtomicBool,
    /// Unix ms of the loop's last turn: `/healthz` fails when it stalls.
    pub last_tick_ms: AtomicU64,
    /// How long the loop may be silent before it counts as stalled.
    pub stall_ms: u64,
    /// The counters (the watcher's and the notifier's among them).
    pub metrics: Metrics,
    /// What `assetd plan` through the socket plans with: set by each pass.
    pub planner: RwLock<Option<Planner>>,
    /// The last phase and health changes, for `assetd events`.
    pub events: crate::daemon::events::EventLog,
    /// The Swarm writer lease, read when status is asked: a role from
    /// the present, not from the last pass.
    pub lease: RwLock<Option<crate::engine::lease::Lease>>,
    /// Who this daemon is, for another daemon of the same host that
    /// finds its stamps (`crate::engine::strategy::writer`).
    pub identity: crate::engine::strategy::writer::LiveWriter,
}

/// Written by the API (the operator's commands); the loop reads and uses
/// them up.
#[derive(Default)]
pub struct Requests {
    /// Asks the loop for a pass now.
    pub wake: tokio::sync::Notify,
    /// `assetd retry NAME`: deploy once more a version the engine rolled
    /// back. Used up when the deploy is dispatched.
    pub retries: Mutex<BTreeSet<AssetName>>,
    /// `assetd sync NAME`: let the asset's change through its sync
    /// windows once. Used up when the change is dispatched.
    pub syncs: Mutex<BTreeSet<AssetName>>,
    /// `assetd prune --confirm`, against what the last pass held.
    pub prunes: PruneConfirmation,
    /// `assetd takeover --confirm`: apply this copy of the manifests
    /// although it cannot be ordered against the one applied before.
    pub takeover_confirmed: AtomicBool,
}

/// `assetd prune --confirm`: the removals the last pass held for the
/// operator, and those the operator confirmed. A confirmation covers
/// exactly what was held when it was given, once.
#[derive(Default)]
pub struct PruneConfirmation {
    held: Mutex<Vec<AssetName>>,
    confirmed: Mutex<BTreeSet<AssetName>>,
}

impl Shared {
    /// Whether the last pass knew `name` (declared, running or recorded).
    pub fn knows(&self, name: &AssetName) -> bool {
        let status = self.published.status.read().expect("status lock");
        status.assets.iter().any(|a| &a.name == name)
    }

    /// Records what this pass held for confirmation; a confirmed removal
    /// no longer planned (its file came back) is forgotten.
    pub fn set_confirmable(&self, plan: &Plan) {
        let prunes = &self.requests.prunes;
        *prunes.held.lock().expect("prune lock") = plan.confirmable.clone();
        self.published
            .metrics
            .removals_held
            .set(plan.confirmable.len() as i64);
        let planned: BTreeSet<&AssetName> = plan.actions.iter().map(|a| &a.name).collect();
        prunes
            .confirmed
            .lock()
            .expect("prune lock")
            .retain(|name| planned.contains(name));
    }

    pub fn confirmed_removals(&self) -> BTreeSet<AssetName> {
        let prunes = &self.requests.prunes;
        prunes.confirmed.lock().expect("prune lock").clone()
    }

    /// Whether `name`'s removal was confirmed; the confirmation is used up.
    pub fn take_confirmed(&self, name: &AssetName) -> bool {
        let prunes = &self.requests.prunes;
        prunes.confirmed.lock().expect("prune lock").remove(name)
    }

    /// Confirms every removal held now; returns their names.
    fn confirm_held(&self) -> Vec<AssetName> {
        let prunes = &self.requests.prunes;
        let held = prunes.held.lock().expect("prune lock").clone();
        prunes
            .confirmed
            .lock()
            .expect("prune lock")
            .extend(held.iter().cloned());
        held
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("status socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error("listener {addr}: {message}")]
    Listen { addr: String, message: String },
}

/// The HTTP listener: read-only, and the dashboard.
fn router(shared: Arc<Shared>) -> Router {
    read_only_routes()
        .merge(web::routes())
        .layer(axum::middleware::map_response(web::secure_headers))
        .with_state(shared)
}

/// The socket also takes commands: only its owner and group reach it
/// (mode 0660), unlike the HTTP listener.
fn socket_router(shared: Arc<Shared>) -> Router {
    read_only_routes()
        .route("/v1/prune/confirm", post(handle_prune_confirm))
        .route("/v1/retry/{name}", post(handle_retry))
        .route("/v1/sync/{name}", post(handle_sync))
        .route("/v1/plan", get(control::handle_plan))
        .route("/v1/suspend", post(control::handle_suspend))
        .route("/v1/resume", post(control::handle_resume))
        .route("/v1/events", get(control::handle_events))
        .route("/v1/takeover/confirm", post(handle_takeover_confirm))
        .route("/v1/history/{name}", get(control::handle_history))
        .route("/v1/rollback/{name}", post(control::handle_rollback))
        .route("/v1/writer", get(handle_writer))
        .with_state(shared)
}

async fn handle_writer(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    axum::Json(shared.published.identity.clone())
}

/// Who the daemon on `socket` is.
pub async fn fetch_writer(
    socket: &Path,
) -> Result<crate::engine::strategy::writer::LiveWriter, String> {
    let body = request(socket, hyper::Method::GET, "/v1/writer").await?;
    serde_json::from_slice(&body).map_err(|e| format!("bad writer answer: {e}"))
}

async fn handle_prune_confirm(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerUid>,
) -> impl IntoResponse {
    let confirmed = shared.confirm_held();
    tracing::warn!(uid = peer.0, count = confirmed.len(), assets = ?confirmed, "the operator confirmed the held removals");
    // A pass at once: the operator is waiting for the result.
    shared.requests.wake.notify_one();
    axum::Json(confirmed)
}

async fn handle_takeover_confirm(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerUid>,
) -> impl IntoResponse {
    tracing::warn!(
        uid = peer.0,
        "the operator confirmed applying this copy of the manifests"
    );
    shared
        .requests
        .takeover_confirmed
        .store(true, Ordering::Relaxed);
    shared.requests.wake.notify_one();
    StatusCode::OK
}

/// `assetd takeover --confirm`.
pub async fn confirm_takeover(socket: &Path) -> Result<(), String> {
    let (status, body) =
        request_status(socket, hyper::Method::POST, "/v1/takeover/confirm").await?;
    match status.is_success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&body).into_owned()),
    }
}

async fn handle_retry(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerUid>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> impl IntoResponse {
    match AssetName::new(&name) {
        Ok(name) if !shared.knows(&name) => (StatusCode::NOT_FOUND, format!("no asset `{name}`")),
        Ok(name) => {
            tracing::warn!(asset = %name, uid = peer.0, "the operator asked to retry a rolled-back version");
            let by = peer
                .0
                .map(|uid| format!(" by uid {uid}"))
                .unwrap_or_default();
            let entry = crate::store::history::control(format!("retry asked{by}"), peer.0);
            let _ = crate::store::history::append(shared.store.as_ref(), &name, entry);
            shared
                .requests
                .retries
                .lock()
                .expect("retry lock")
                .insert(name);
            shared.requests.wake.notify_one();
            (StatusCode::OK, String::new())
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("asset {e}")),
    }
}

async fn handle_sync(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerUid>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> impl IntoResponse {
    match AssetName::new(&name) {
        Ok(name) if !shared.knows(&name) => (StatusCode::NOT_FOUND, format!("no asset `{name}`")),
        Ok(name) => {
            tracing::warn!(asset = %name, uid = peer.0, "the operator asked to sync through the sync windows once");
            let by = peer
                .0
                .map(|uid| format!(" by uid {uid}"))
                .unwrap_or_default();
            let entry = crate::store::history::control(
                format!("sync asked{by}: its change goes through its sync windows once"),
                peer.0,
            );
            let _ = crate::store::history::append(shared.store.as_ref(), &name, entry);
            shared
                .requests
                .syncs
                .lock()
                .expect("sync lock")
                .insert(name);
            shared.requests.wake.notify_one();
            (StatusCode::OK, String::new())
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("asset {e}")),
    }
}

/// Asks a running daemon to let `name`'s change through its sync
/// windows once.
pub async fn sync(socket: &Path, name: &AssetName) -> Result<(), String> {
    let (status, body) =
        request_status(socket, hyper::Method::POST, &format!("/v1/sync/{name}")).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&body).into_owned())
    }
}

fn read_only_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn status(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    axum::Json(current_status(&shared))
}

/// The last published status, with the role as the lease says now.
pub(crate) fn current_status(shared: &Shared) -> StatusReport {
    let mut report = shared.published.status.read().expect("status lock").clone();
    let lease = shared.published.lease.read().expect("lease lock").clone();
    if let Some(lease) = lease {
        let view = lease.view();
        if report.role.as_deref() == Some("leader") && !view.mine {
            report.role = Some("standby".into());
        }
        report.lease = Some(view);
    }
    report
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.published.metrics.render(),
    )
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let silent = now_ms().saturating_sub(shared.published.last_tick_ms.load(Ordering::Relaxed));
    if silent <= shared.published.stall_ms {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reconcile loop silent for {silent} ms\n"),
        )
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.published.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "first pass not finished\n")
    }
}

/// Serves the API on a unix socket, mode 0660 (the socket's group may
/// read status; nobody else).
pub async fn serve_socket(
    path: &Path,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    let err = |message: String| ApiError::Socket {
        path: path.to_path_buf(),
        message,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    // A socket file left by a killed daemon would make bind fail; one a
    // live daemon answers on is not ours to take.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(err("another assetd answers on it".into()));
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err(e.to_string()))?;
    let app = socket_router(shared).into_make_service_with_connect_info::<PeerUid>();
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}

/// Serves the API over HTTP. Refuses a non-loopback address unless
/// `public` is set: the API has no authentication.
pub async fn serve_http(
    addr: std::net::SocketAddr,
    public: bool,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    if !addr.ip().is_loopback() && !public {
        return Err(ApiError::Listen {
            addr: addr.to_string(),
            message: "not a loopback address; the API has no authentication (pass --listen-public to allow it)".into(),
        });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ApiError::Listen {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let app = router(shared);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}

/// Asks a running daemon for its status over its socket.
pub async fn fetch_status(socket: &Path) -> Result<StatusReport, String> {
    let body = request(socket, hyper::Method::GET, "/v1/status").await?;
    serde_json::from_slice(&body).map_err(|e| format!("bad status answer: {e}"))
}

/// The daemon's metrics (Prometheus text) over its socket.
pub async fn fetch_metrics(socket: &Path) -> Result<String, String> {
    let body = request(socket, hyper::Method::GET, "/metrics").await?;
    String::from_utf8(body.to_vec()).map_err(|e| format!("bad metrics answer: {e}"))
}

/// Asks a running daemon to deploy `name` once more.
pub async fn retry(socket: &Path, name: &AssetName) -> Result<(), String> {
    let (status, body) =
        request_status(socket, hyper::Method::POST, &format!("/v1/retry/{name}")).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&body).into_owned())
    }
}

/// Confirms, once, the removals a running daemon holds for confirmation.
pub async fn confirm_prune(socket: &Path) -> Result<Vec<AssetName>, String> {
    let body = request(socket, hyper::Method::POST, "/v1/prune/confirm").await?;
    serde_json::from_slice(&body).map_err(|e| format!("bad prune answer: {e}"))
}

/// Asks a running daemon for its plan (it knows the last-applied specs).
pub async fn fetch_plan(socket: &Path, format: PlanFormat) -> Result<PlanAnswer, String> {
    let query = match format {
        PlanFormat::Json => "json=true".to_string(),
        PlanFormat::Text { color } => format!("color={color}"),
    };
    let path = format!("/v1/plan?{query}");
    let (status, body) = request_status(socket, hyper::Method::GET, &path).await?;
    if !status.is_success() {
        return Err(String::from_utf8_lossy(&body).into_owned());
    }
    serde_json::from_slice(&body).map_err(|e| format!("bad plan answer: {e}"))
}

/// The daemon's kept events after `seq`.
pub async fn fetch_events(
    socket: &Path,
    after: u64,
) -> Result<Vec<crate::daemon::events::Event>, String> {
    let body = request(
        socket,
        hyper::Method::GET,
        &format!("/v1/events?after={after}"),
    )
    .await?;
    serde_json::from_slice(&body).map_err(|e| format!("bad events answer: {e}"))
}

/// An asset's kept revisions, from the running daemon.
/// `None`: the daemon answered that it knows no such asset.
pub async fn fetch_history(
    socket: &Path,
    name: &AssetName,
) -> Result<Option<Vec<crate::store::history::Revision>>, String> {
    let (status, body) =
        request_status(socket, hyper::Method::GET, &format!("/v1/history/{name}")).await?;
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(String::from_utf8_lossy(&body).into_owned());
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| format!("bad history answer: {e}"))
}

/// Asks the running daemon to pin `name` to an earlier revision.
pub async fn rollback(
    socket: &Path,
    name: &AssetName,
    to: Option<u64>,
) -> Result<crate::store::history::Pin, String> {
    let body = serde_json::to_vec(&RollbackRequest { to }).map_err(|e| e.to_string())?;
    let path = format!("/v1/rollback/{name}");
    let (status, answer) = send(socket, hyper::Method::POST, &path, body).await?;
    if !status.is_success() {
        return Err(String::from_utf8_lossy(&answer).into_owned());
    }
    serde_json::from_slice(&answer).map_err(|e| format!("bad rollback answer: {e}"))
}

/// `verb` is `suspend` or `resume`; returns the suspensions in force after.
pub async fn suspend_or_resume(
    socket: &Path,
    verb: &str,
    request: &SuspendRequest,
) -> Result<Suspensions, String> {
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let path = format!("/v1/{verb}");
    let (status, answer) = send(socket, hyper::Method::POST, &path, body).await?;
    if !status.is_success() {
        return Err(String::from_utf8_lossy(&answer).into_owned());
    }
    serde_json::from_slice(&answer).map_err(|e| format!("bad {verb} answer: {e}"))
}

async fn request(socket: &Path, method: hyper::Method, path: &str) -> Result<bytes::Bytes, String> {
    request_status(socket, method, path)
        .await
        .map(|(_, body)| body)
}

async fn request_status(
    socket: &Path,
    method: hyper::Method,
    path: &str,
) -> Result<(hyper::StatusCode, bytes::Bytes), String> {
    send(socket, method, path, Vec::new()).await
}

async fn send(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(hyper::StatusCode, bytes::Bytes), String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "assetd")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
