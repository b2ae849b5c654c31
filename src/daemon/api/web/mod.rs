//! The dashboard on `--listen`: the fleet at `/`, one asset at
//! `/assets/NAME`, live through server-sent events at `/ui/live`.
//!
//! It reads only what the daemon already holds (the published status, the
//! events it keeps, the history in its store): a page costs the engine no
//! call. It has no route that changes anything: commands stay on the unix
//! socket. Every byte is served from here (no CDN, font or external
//! script), which the Content-Security-Policy also enforces in the browser.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;

use crate::daemon::api::Shared;
use crate::model::spec::AssetName;
use crate::store::now_ms;

pub mod html;
pub mod plots;

const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");
const ICON: &str = include_str!("icon.svg");

/// When the listener started: the fleet strip knows nothing before it.
static STARTED_MS: OnceLock<u64> = OnceLock::new();

/// The dashboard's routes, all GET: another method gets 405.
pub fn routes() -> Router<Arc<Shared>> {
    STARTED_MS.get_or_init(now_ms);
    Router::new()
        .route("/", get(fleet))
        .route("/assets/{name}", get(asset))
        .route("/ui/live", get(live))
        .route(
            "/ui/dashboard.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
        .route(
            "/ui/dashboard.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
            }),
        )
        .route(
            "/ui/icon.svg",
            get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], ICON) }),
        )
}

/// Headers on every answer of the listener: nothing but this origin may
/// be loaded or framed.
pub async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-frame-options", "DENY");
    response
}

#[derive(serde::Deserialize, Default)]
struct Part {
    /// `main`: only the part that changes, for the live updates.
    #[serde(default)]
    part: String,
}

fn answer(title: &str, header: &str, main: String, part: &Part) -> Response {
    let body = match part.part.as_str() {
        "main" => main,
        _ => html::page(title, header, &main),
    };
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

async fn fleet(
    State(shared): State<Arc<Shared>>,
    Query(filter): Query<html::Filter>,
    Query(part): Query<Part>,
) -> Response {
    let report = crate::daemon::api::current_status(&shared);
    let events = shared.published.events.after(0);
    let store = shared.store.clone();
    let revision = |a: &crate::report::status::AssetStatus| {
        crate::store::history::load(store.as_ref(), &a.name)
            .iter()
            .rev()
            .find(|r| r.spec.is_some())
            .map(|r| r.n)
    };
    let started = *STARTED_MS.get_or_init(now_ms);
    let main = html::fleet(&report, &revision, &events, &filter, now_ms(), started);
    answer("assetd: fleet", &html::header(&report), main, &part)
}

async fn asset(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(part): Query<Part>,
) -> Response {
    let report = crate::daemon::api::current_status(&shared);
    let found = AssetName::new(&name)
        .ok()
        .and_then(|name| report.assets.iter().find(|a| a.name == name).cloned());
    let Some(status) = found else {
        let main = format!(
            "<h2>No asset <code>{}</code></h2><p><a href=\"/\">Back to the fleet</a></p>",
            html::escape(&name)
        );
        let mut response = answer("assetd: no such asset", &html::header(&report), main, &part);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let history = crate::store::history::load(shared.store.as_ref(), &status.name);
    let events: Vec<_> = shared
        .published
        .events
        .after(0)
        .into_iter()
        .filter(|e| e.asset == status.name)
        .collect();
    let main = html::asset(&status, &history, &events, now_ms());
    let title = format!("assetd: {}", status.name);
    answer(&title, &html::header(&report), main, &part)
}

/// One `change` message per new event of the daemon (its `seq`), and a
/// comment now and then so that proxies keep the stream open.
async fn live(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = shared.published.events.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        let seq = *receiver.borrow_and_update();
        Some((
            Ok(SseEvent::default().event("change").data(seq.to_string())),
            receiver,
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
