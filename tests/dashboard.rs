//! The dashboard in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver), against a real daemon on the test
//! engine, with axe-core (from the npm registry) judging accessibility.
//! Plus: no HTTP route takes anything but GET.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::harness::{free_loopback_addr, shared, Assetd, Daemon};
use common::{eventually, TestEnv, IMAGE_1, IMAGE_2};
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// chromedriver on a loopback port, killed with the test.
struct ChromeDriver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl ChromeDriver {
    fn start(root: &std::path::Path) -> Self {
        for _ in 0..5 {
            let addr = free_loopback_addr();
            let child = Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={}", addr.port()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian's chromium-driver, installed by scripts/testenv.sh)");
            let mut driver = ChromeDriver {
                child,
                url: format!("http://{addr}"),
                profile: root.join("chromium-profile"),
            };
            for _ in 0..100 {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return driver;
                }
                if driver.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = driver.child.kill();
        }
        panic!("chromedriver did not listen after 5 tries");
    }

    async fn client(&self) -> Client {
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // No background traffic: this machine's network is closed,
                // and the page must reach nothing but the daemon.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a WebDriver session in headless Chromium")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's browser log (`console.error`, failed loads, CSP
/// violations), which W3C WebDriver itself has no command for.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

async fn severe_console_entries(client: &Client) -> Vec<Value> {
    let log = client.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .collect()
}

async fn script(client: &Client, source: &str) -> Value {
    client
        .execute(source, vec![])
        .await
        .unwrap_or_else(|e| panic!("{source}: {e}"))
}

/// The page's text, waited for until `check` accepts it.
async fn page_shows(client: &Client, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = script(client, "return document.body.innerText").await;
        let text = text.as_str().unwrap_or_default().to_string();
        if check(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 30s waiting for {what}; the page shows:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// axe-core's serious and critical violations on the open page.
async fn accessibility_violations(client: &Client, axe: &str) -> Vec<Value> {
    client
        .execute(axe, vec![])
        .await
        .expect("axe-core loads into the page");
    let result = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done(r.violations), e => done([{id: 'axe failed', impact: 'critical', help: String(e)}]));",
            vec![],
        )
        .await
        .expect("axe.run");
    result
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
        .map(|v| json!({ "id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": v["nodes"].as_array().map(|n| n.len()) }))
        .collect()
}

/// Every resource the page loaded, and where from.
async fn resource_origins(client: &Client) -> Vec<String> {
    let urls = script(
        client,
        "return performance.getEntries().map(e => e.name).filter(n => /^[a-z]+:/.test(n));",
    )
    .await;
    urls.as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

async fn no_sideways_scroll(client: &Client) -> bool {
    script(
        client,
        "return document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await
        == json!(true)
}

fn write_app(env: &TestEnv, image: &str) {
    env.write(
        "app.yaml",
        &env.asset("app", image, "  command: sleep 3600\n"),
    );
}

async fn wait_history(daemon: &Daemon, name: &str, entries: usize) {
    eventually(
        &format!("{entries} history entries of {name}"),
        Duration::from_secs(60),
        || async {
            let out = Command::new(env!("CARGO_BIN_EXE_assetd"))
                .args(["history", name, "-o", "json", "--state-dir"])
                .arg(&daemon.state)
                .output()
                .ok()?;
            let list: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
            (list.len() >= entries).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_real_browser() {
    let _engine = shared().await;
    let axe = std::fs::read_to_string(
        std::env::var("ASSETD_TEST_AXE").expect("ASSETD_TEST_AXE (exported by scripts/testenv.sh)"),
    )
    .expect("axe-core's axe.min.js");
    let env = TestEnv::new("dash").await;
    write_app(&env, IMAGE_1);
    env.write(
        "crash.yaml",
        &env.asset("crash", IMAGE_1, "  command: sh -c 'sleep 1; exit 3'\n"),
    );
    let assetd = Assetd::new(&env, "local");
    let daemon = assetd.daemon(&[]);
    daemon.wait_ready().await;
    let (app, crash, late) = (env.name("app"), env.name("crash"), env.name("late"));
    let base = format!("http://{}", daemon.http);
    let driver = ChromeDriver::start(&env.root);
    let client = driver.client().await;
    client.set_window_size(1280, 800).await.unwrap();

    // Every asset with its phase; the crash loop with its exit code.
    client.goto(&format!("{base}/")).await.unwrap();
    let text = page_shows(&client, "both assets, the crash loop's exit code", |t| {
        t.contains(&app) && t.contains(&crash) && t.contains("exited 3")
    })
    .await;
    let phase_of = |name: &str| {
        format!("return document.querySelector('a[href=\"/assets/{name}\"]').closest('tr').dataset.phase")
    };
    // Live: the crash shows up without a reload as the daemon judges it.
    eventually(
        "the crash loop Failed on the page",
        Duration::from_secs(60),
        || async { (script(&client, &phase_of(&crash)).await == json!("Failed")).then_some(()) },
    )
    .await;
    assert_eq!(
        script(&client, &phase_of(&app)).await,
        json!("Running"),
        "{text}"
    );

    // A manifest written while the page is open appears without a reload.
    script(&client, "window.__stillTheSamePage = true; return true").await;
    env.write(
        "late.yaml",
        &env.asset("late", IMAGE_1, "  command: sleep 3600\n"),
    );
    page_shows(&client, "the new asset, live", |t| t.contains(&late)).await;
    assert_eq!(
        script(&client, "return window.__stillTheSamePage === true").await,
        json!(true),
        "the page was reloaded"
    );

    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    let shot = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/dashboard-fleet.png"
    ));
    std::fs::write(&shot, client.screenshot().await.unwrap()).unwrap();
    eprintln!("screenshot of the fleet page: {}", shot.display());

    let violations = accessibility_violations(&client, &axe).await;
    assert!(violations.is_empty(), "fleet page: {violations:#?}");

    // Two image changes: the asset page shows both new revisions.
    write_app(&env, IMAGE_2);
    wait_history(&daemon, &app, 2).await;
    write_app(&env, IMAGE_1);
    wait_history(&daemon, &app, 3).await;
    client.goto(&format!("{base}/assets/{app}")).await.unwrap();
    let text = page_shows(&client, "the asset's revisions", |t| {
        t.contains("r2") && t.contains("r3")
    })
    .await;
    assert!(text.contains("app.yaml"), "where it is declared: {text}");
    let dots = script(
        &client,
        "return document.querySelectorAll('svg.timeline circle').length",
    )
    .await;
    assert!(dots.as_u64().unwrap_or(0) >= 3, "timeline dots: {dots}");
    let violations = accessibility_violations(&client, &axe).await;
    assert!(violations.is_empty(), "asset page: {violations:#?}");

    // A phone: nothing scrolls sideways.
    client.set_window_size(390, 844).await.unwrap();
    for path in ["/".to_string(), format!("/assets/{app}")] {
        client.goto(&format!("{base}{path}")).await.unwrap();
        page_shows(&client, "the page", |t| t.contains(&app)).await;
        assert!(
            no_sideways_scroll(&client).await,
            "{path} overflows at 390x844"
        );
    }

    // Nothing but the daemon was asked for anything; no console error.
    for url in resource_origins(&client).await {
        assert!(url.starts_with(&base), "a request left the daemon: {url}");
    }
    let severe = severe_console_entries(&client).await;
    assert!(severe.is_empty(), "console errors: {severe:#?}");
    client.close().await.unwrap();
}

/// Raw HTTP/1.0 with any method: the status code.
async fn http_status(addr: std::net::SocketAddr, method: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_changes_nothing() {
    let _engine = shared().await;
    let env = TestEnv::new("dash-ro").await;
    write_app(&env, IMAGE_1);
    let assetd = Assetd::new(&env, "local");
    let daemon = assetd.daemon(&[]);
    daemon.wait_ready().await;
    let app = env.name("app");
    daemon
        .wait_phase(
            std::slice::from_ref(&app),
            assetd::report::status::Phase::Running,
        )
        .await;
    let routes = [
        "/".to_string(),
        format!("/assets/{app}"),
        "/ui/live".into(),
        "/ui/dashboard.css".into(),
        "/ui/dashboard.js".into(),
        "/ui/icon.svg".into(),
        "/metrics".into(),
        "/healthz".into(),
        "/readyz".into(),
        "/v1/status".into(),
        // The socket's commands do not exist on HTTP at all.
        "/v1/suspend".into(),
        "/v1/resume".into(),
        "/v1/prune/confirm".into(),
        format!("/v1/retry/{app}"),
        format!("/v1/sync/{app}"),
        format!("/v1/rollback/{app}"),
        "/v1/writer".into(),
        "/v1/takeover/confirm".into(),
    ];
    let before = daemon.status().await.expect("status");
    for route in &routes {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let code = http_status(daemon.http, method, route).await;
            assert!(
                code == 405 || code == 404,
                "{method} {route} answered {code}"
            );
        }
    }
    let after = daemon.status().await.expect("status");
    let app_of = |r: &assetd::report::status::StatusReport| {
        r.assets
            .iter()
            .find(|a| a.name.as_str() == app)
            .map(|a| (a.phase, a.suspended.is_some(), a.pinned.is_some()))
    };
    assert_eq!(app_of(&before), app_of(&after));
    assert_eq!(
        app_of(&after).map(|(phase, ..)| phase),
        Some(assetd::report::status::Phase::Running)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_assetd"))
        .args(["history", &app, "-o", "json", "--state-dir"])
        .arg(&daemon.state)
        .output()
        .unwrap();
    let history: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history.len(), 1, "an operator entry appeared: {history:?}");
}
