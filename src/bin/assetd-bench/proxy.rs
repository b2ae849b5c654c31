//! The counting proxy: a unix socket in front of the engine that forwards
//! every connection untouched and records each request the client sends,
//! so a daemon's Docker calls can be counted for real.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// One HTTP request a client sent to the engine through the proxy.
#[derive(Clone, Debug)]
pub struct Req {
    pub at: Instant,
    pub method: String,
    /// Without the `/v1.NN` prefix and the query.
    pub path: String,
    /// The query, percent-decoded.
    pub query: String,
}

impl Req {
    /// The long-lived event subscription: not a call to count.
    fn is_events(&self) -> bool {
        self.path == "/events"
    }

    /// A reconcile pass starts by listing containers.
    pub fn is_container_listing(&self) -> bool {
        self.method == "GET" && self.path.starts_with("/containers/json")
    }

    /// A listing of every managed container, not of some named by ID or
    /// asset (what an event-fed view reads again).
    pub fn is_full_container_listing(&self) -> bool {
        self.is_container_listing()
            && !self.query.contains("\"id\"")
            && !self.query.contains("io.assetd.asset=")
    }

    /// A listing of a whole collection (containers, services, tasks,
    /// nodes, networks, volumes, secrets, configs): what a reconcile pass
    /// reads, unlike the writer lease's look at its one config.
    pub fn is_listing(&self) -> bool {
        const COLLECTIONS: [&str; 8] = [
            "/containers/json",
            "/services",
            "/tasks",
            "/nodes",
            "/networks",
            "/volumes",
            "/secrets",
            "/configs",
        ];
        self.method == "GET" && COLLECTIONS.contains(&self.path.as_str())
    }

    /// Requests that change something in Docker (none of the engine's
    /// read-only endpoints is a POST except the ones below, which assetd
    /// does not call).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "DELETE" | "PUT" | "PATCH")
    }

    /// `/containers/{id}/start` style, for histograms.
    fn shape(&self) -> String {
        let parts: Vec<&str> = self.path.split('/').collect();
        match parts.as_slice() {
            ["", "images", .., "json"] => "/images/{name}/json".to_string(),
            ["", kind, id, rest @ ..]
                if !matches!(*id, "json" | "create")
                    && matches!(
                        *kind,
                        "containers" | "services" | "nodes" | "networks" | "tasks"
                    ) =>
            {
                let mut s = format!("/{kind}/{{id}}");
                for r in rest {
                    s.push('/');
                    s.push_str(r);
                }
                s
            }
            _ => self.path.clone(),
        }
    }
}

pub struct Proxy {
    /// Where clients connect (their `DOCKER_HOST` is `unix://` this).
    pub path: PathBuf,
    log: Arc<Mutex<Vec<Req>>>,
    events: Arc<EventsControl>,
}

/// What the tests do to event streams through the proxy: hold them (the
/// engine's events wait, unseen, as on a stalled link) or cut them (the
/// client sees its stream end: a gap). Connections watch both.
struct EventsControl {
    held: tokio::sync::watch::Sender<bool>,
    cuts: tokio::sync::watch::Sender<u64>,
}

impl Default for EventsControl {
    fn default() -> Self {
        Self {
            held: tokio::sync::watch::channel(false).0,
            cuts: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Proxy {
    /// Listens on `path` and forwards to the engine's socket `upstream`.
    pub async fn start(path: &Path, upstream: PathBuf) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let events: Arc<EventsControl> = Arc::default();
        let (sink, control) = (log.clone(), events.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = UnixStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(forward(client, server, sink.clone(), control.clone()));
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            log,
            events,
        })
    }

    // The two below are the tests' (tests/engine_view.rs, through
    // `#[path]`); the bench itself never disturbs the stream.
    /// Holds (or releases) every event stream: the engine's events wait
    /// in the socket, unseen by the client.
    #[allow(dead_code)]
    pub fn hold_events(&self, held: bool) {
        self.events.held.send_replace(held);
    }

    /// Ends every event stream open now (the client reconnects).
    #[allow(dead_code)]
    pub fn cut_events(&self) {
        self.events.cuts.send_modify(|n| *n += 1);
    }

    /// A position in the log: later `since(mark)` gives what came after.
    pub fn mark(&self) -> usize {
        self.log.lock().expect("proxy log").len()
    }

    fn since(&self, mark: usize) -> Vec<Req> {
        self.log.lock().expect("proxy log")[mark..].to_vec()
    }

    /// Requests since `mark` other than the event stream.
    pub fn calls_since(&self, mark: usize) -> Vec<Req> {
        self.since(mark)
            .into_iter()
            .filter(|r| !r.is_events())
            .collect()
    }

    pub async fn wait_for(
        &self,
        mark: usize,
        what: impl Fn(&Req) -> bool,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.since(mark).iter().any(&what) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the expected request did not come within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Until no request (other than the event stream) came for `quiet`.
    pub async fn wait_quiet(&self, quiet: Duration, timeout: Duration) {
        self.wait_quiet_of(|_| true, quiet, timeout).await
    }

    /// Until no request that `counts` came for `quiet`.
    pub async fn wait_quiet_of(
        &self,
        counts: impl Fn(&Req) -> bool,
        quiet: Duration,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let last = self
                .log
                .lock()
                .expect("proxy log")
                .iter()
                .rev()
                .find(|r| !r.is_events() && counts(r))
                .map(|r| r.at);
            match last {
                Some(at) if at.elapsed() < quiet => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => return,
            }
        }
    }

    /// Requests since `mark` with their offsets from `t0`.
    pub fn timeline(&self, mark: usize, t0: Instant, done_ns: Option<i128>) -> String {
        let mut out = String::new();
        for r in self.calls_since(mark) {
            let _ = writeln!(
                out,
                "     +{:>6.1} ms  {} {}",
                r.at.duration_since(t0).as_secs_f64() * 1e3,
                r.method,
                r.shape()
            );
        }
        if let Some(ns) = done_ns {
            let _ = writeln!(
                out,
                "     +{:>6.1} ms  (running, engine clock)",
                ns as f64 / 1e6
            );
        }
        out
    }

    /// Calls since `mark` by shape, per asset.
    pub fn histogram(&self, mark: usize, assets: usize) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in self.calls_since(mark) {
            *counts
                .entry(format!("{} {}", r.method, r.shape()))
                .or_default() += 1;
        }
        let total: usize = counts.values().sum();
        let mut out = format!(
            "     daemon's Docker calls: {total} ({:.1} per asset)",
            total as f64 / assets.max(1) as f64
        );
        for (k, v) in counts {
            let _ = write!(out, "\n       {v:>6}  {k}");
        }
        out
    }
}

/// Finds request lines at message boundaries of an HTTP/1.1 request
/// stream (keep-alive: several requests per connection; bodies with
/// `Content-Length` or chunked). After an `Upgrade` the rest is opaque.
#[derive(Default)]
struct RequestParser {
    buf: Vec<u8>,
    state: ParseState,
}

#[derive(Default, Clone, Copy, Debug)]
enum ParseState {
    #[default]
    Head,
    Body(usize),
    ChunkSize,
    ChunkData(usize),
    Trailer,
    Opaque,
}

impl RequestParser {
    fn feed(&mut self, data: &[u8]) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        if matches!(self.state, ParseState::Opaque) {
            return out;
        }
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            match self.state {
                ParseState::Opaque => {
                    pos = self.buf.len();
                    break;
                }
                ParseState::Head => {
                    let Some(end) = find(rest, b"\r\n\r\n") else {
                        break;
                    };
                    let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                    pos += end + 4;
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or_default().split(' ');
                    let method = first.next().unwrap_or("?").to_string();
                    let target = first.next().unwrap_or("?");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let path = match path.strip_prefix("/v1.") {
                        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or(path),
                        None => path,
                    };
                    out.push((method, path.to_string(), percent_decoded(query)));
                    let (mut length, mut chunked, mut upgrade) = (0usize, false, false);
                    for line in lines {
                        let Some((k, v)) = line.split_once(':') else {
                            continue;
                        };
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                        match k.as_str() {
                            "content-length" => length = v.parse().unwrap_or(0),
                            "transfer-encoding" => chunked = v.contains("chunked"),
                            "upgrade" => upgrade = true,
                            _ => {}
                        }
                    }
                    self.state = if chunked {
                        ParseState::ChunkSize
                    } else if length > 0 {
                        ParseState::Body(length)
                    } else if upgrade {
                        ParseState::Opaque
                    } else {
                        ParseState::Head
                    };
                }
                ParseState::Body(n) | ParseState::ChunkData(n) => {
                    let take = n.min(rest.len());
                    pos += take;
                    let chunk = matches!(self.state, ParseState::ChunkData(_));
                    if take < n {
                        self.state = if chunk {
                            ParseState::ChunkData(n - take)
                        } else {
                            ParseState::Body(n - take)
                        };
                        break;
                    }
                    self.state = if chunk {
                        ParseState::ChunkSize
                    } else {
                        ParseState::Head
                    };
                }
                ParseState::ChunkSize => {
                    let Some(end) = find(rest, b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&rest[..end]).into_owned();
                    pos += end + 2;
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("0").trim(), 16)
                            .unwrap_or(0);
                    self.state = if size == 0 {
                        ParseState::Trailer
                    } else {
                        ParseState::ChunkData(size + 2)
                    };
                }
                ParseState::Trailer => {
                    let Some(end) = find(rest, b"\r\n") else {
                        break;
                    };
                    pos += end + 2;
                    if end == 0 {
                        self.state = ParseState::Head;
                    }
                }
            }
        }
        self.buf.drain(..pos);
        out
    }
}

/// One client connection, forwarded both ways; its requests logged.
async fn forward(
    client: UnixStream,
    server: UnixStream,
    sink: Arc<Mutex<Vec<Req>>>,
    control: Arc<EventsControl>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let streams_events = AtomicBool::new(false);
    let mut held = control.held.subscribe();
    let mut cuts = control.cuts.subscribe();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut parser = RequestParser::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            for (method, path, query) in parser.feed(&buf[..n]) {
                let req = Req {
                    at: now,
                    method,
                    path,
                    query,
                };
                if req.is_events() {
                    streams_events.store(true, Ordering::SeqCst);
                }
                sink.lock().expect("proxy log").push(req);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if streams_events.load(Ordering::SeqCst) && *held.borrow_and_update() {
                // Not read: the engine's events wait in the socket.
                if held.changed().await.is_err() {
                    break;
                }
                continue;
            }
            let n = tokio::select! {
                read = server_read.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = held.changed() => continue,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    // A cut drops an event stream's connection, whichever side waits.
    let cut = async {
        loop {
            if cuts.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if streams_events.load(Ordering::SeqCst) {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut => {}
    }
}

/// `%XX` escapes decoded (a query's filters are JSON in it).
fn percent_decoded(query: &str) -> String {
    let bytes = query.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = RequestParser::default();
        chunks
            .iter()
            .flat_map(|c| p.feed(c))
            .map(|(method, path, _)| (method, path))
            .collect()
    }

    #[test]
    fn parser_counts_keep_alive_requests_across_bodies_and_splits() {
        let stream: &[u8] = b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: d\r\n\r\nPOST /v1.41/containers/create?name=x HTTP/1.1\r\nContent-Length: 27\r\n\r\n{\"Image\":\"GET / HTTP/1.1\"}\nPOST /v1.41/containers/x/start HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n4\r\nGET \r\n0\r\n\r\nDELETE /v1.41/services/s HTTP/1.1\r\n\r\n";
        let want = vec![
            ("GET".to_string(), "/containers/json".to_string()),
            ("POST".into(), "/containers/create".into()),
            ("POST".into(), "/containers/x/start".into()),
            ("DELETE".into(), "/services/s".into()),
        ];
        assert_eq!(requests(&[stream]), want);
        let split: Vec<&[u8]> = stream.chunks(3).collect();
        assert_eq!(requests(&split), want);
    }

    #[test]
    fn request_shapes_hide_ids() {
        let req = |m: &str, p: &str| Req {
            at: Instant::now(),
            method: m.into(),
            path: p.into(),
            query: String::new(),
        };
        assert_eq!(
            req("POST", "/containers/abc/start").shape(),
            "/containers/{id}/start"
        );
        assert_eq!(
            req("GET", "/images/assetd-test/busybox:1/json").shape(),
            "/images/{name}/json"
        );
        assert_eq!(req("GET", "/containers/json").shape(), "/containers/json");
        assert_eq!(req("POST", "/services/create").shape(), "/services/create");
    }

    #[test]
    fn a_listing_by_id_or_asset_is_not_a_full_one() {
        let listing = |target: &str| {
            let head = format!("GET /v1.41/containers/json?{target} HTTP/1.1\r\n\r\n");
            let (method, path, query) = RequestParser::default().feed(head.as_bytes()).remove(0);
            Req {
                at: Instant::now(),
                method,
                path,
                query,
            }
        };
        let full = "all=true&filters=%7B%22label%22%3A%5B%22io.assetd.managed%3Dtrue%22%5D%7D";
        assert!(listing(full).is_full_container_listing());
        let by_id = "all=true&filters=%7B%22id%22%3A%5B%22abc%22%5D%7D";
        assert!(!listing(by_id).is_full_container_listing());
        let by_asset = "filters=%7B%22label%22%3A%5B%22io.assetd.asset%3Da%22%5D%7D";
        assert!(!listing(by_asset).is_full_container_listing());
    }
}
