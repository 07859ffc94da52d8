//! The status page in a real headless browser (Debian's `chromium`, installed by
//! scripts/setup-test-deps.sh), against the real binary after real traffic: an S3 exporter
//! (the in-process S3 server), an OTLP backend that is up (a recording server) and one that
//! is down (nothing listens), in two pipelines.
//!
//! - The rendered page shows every pipeline and destination of the config, the down one
//!   with its reason, the queue depth held for it, and the last trace files written; a
//!   screenshot is written under target/tmp (the path is printed).
//! - The page loads no external resource: Chromium runs behind a recording proxy on
//!   loopback (which also keeps its own background traffic on this machine); a control page
//!   that does reference an external image proves the proxy sees such loads.
//! - `/status.json` agrees with `/metrics` at the same moment.
//! - No secret (ingest token, header value, S3 keys) appears in the page, the DOM, the JSON
//!   or the actions' answers.
//! - The actions are POST-only and refuse other origins (hostile requests beside the
//!   happy ones).

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use tracecast_tests::fixtures::gateway_request;
use tracecast_tests::{
    free_port, local, Daemon, Exporter, RecordingOtlpServer, Response, S3TestServer, TestConfig,
};

const TOKEN: &str = "ingest-SECRET-token-5b1e";
const HEADER_SECRET: &str = "Bearer header-SECRET-value-77c2";
const AK: &str = "AKIA-SECRET-ID-4e19";
const SK: &str = "s3-SECRET-key-90af";
const SECRETS: [&str; 4] = [TOKEN, HEADER_SECRET, AK, SK];

/// Chromium's own background services (component updates, clock, sign-in), which it
/// contacts at start whatever the page; everything else through the proxy is the page's.
const CHROMIUM_BACKGROUND_HOSTS: [&str; 8] = [
    "clients2.google.com",
    "update.googleapis.com",
    "accounts.google.com",
    "clientservices.googleapis.com",
    "safebrowsing.googleapis.com",
    "optimizationguide-pa.googleapis.com",
    "content-autofill.googleapis.com",
    "redirector.gvt1.com",
];

/// A proxy on loopback that records the first line of every request and answers nothing.
struct RecordingProxy {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    fn start() -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 512];
                    let n = conn.read(&mut buf).unwrap_or(0);
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let first = text.lines().next().unwrap_or("").to_string();
                    seen.lock().unwrap().push(first);
                });
            }
        });
        RecordingProxy { addr, lines }
    }

    /// Request lines naming a host that is not one of Chromium's background services.
    fn page_requests(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !CHROMIUM_BACKGROUND_HOSTS.iter().any(|h| l.contains(h)))
            .cloned()
            .collect()
    }
}

fn chromium() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("chromium");
        if p.exists() {
            return p;
        }
    }
    panic!("chromium not found: run scripts/setup-test-deps.sh (scripts/test.sh does)");
}

/// Runs headless Chromium on `url` behind `proxy` with `extra` arguments (`--dump-dom`,
/// `--screenshot=...`); returns stdout. Nothing leaves the machine: every request but
/// loopback goes to the proxy, and names other than 127.0.0.1 do not resolve.
fn headless(profile: &Path, proxy: &RecordingProxy, extra: &[String], url: &str) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--proxy-server=http://{}", proxy.addr))
        .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Env {
    dir: tempfile::TempDir,
    _s3: S3TestServer,
    backend: RecordingOtlpServer,
    daemon: Daemon,
    admin: SocketAddr,
    receiver: SocketAddr,
    /// The config the daemon runs (written to `<dir>/status.yaml`).
    config: TestConfig,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("traces");
    let backend = RecordingOtlpServer::start().await;
    let down = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let (port, admin_port) = (free_port(), free_port());
    let config = TestConfig::new(port)
        .api_key("gateway", TOKEN)
        .processor("metadata")
        .exporter(
            Exporter::s3("s3/archive", "traces", s3.endpoint(), AK, SK)
                .trace_idle_timeout("300ms")
                .dead_letter_dir(dir.path().join("dl-s3")),
        )
        .exporter(
            Exporter::otlp("otlp/up", backend.endpoint())
                .headers(&[("authorization", HEADER_SECRET)])
                .dead_letter_dir(dir.path().join("dl-up")),
        )
        .exporter(
            Exporter::otlp("otlp/down", &down)
                .headers(&[("x-api-key", HEADER_SECRET)])
                .retry_on_failure(&[("initial_interval", "5s"), ("max_interval", "5s")])
                .dead_letter_dir(dir.path().join("dl-down")),
        )
        .pipeline("traces/archive", &[], &["s3/archive", "otlp/up"])
        .pipeline("traces/mirror", &["metadata"], &["otlp/down"])
        .queue_dir(dir.path().join("queue"))
        .admin_port(admin_port);
    let daemon = Daemon::run_config(
        dir.path(),
        "status",
        &config.yaml(),
        &["--skip-connection-test"],
        local(port),
    );
    assert!(tracecast_tests::wait_for_listener(
        local(admin_port),
        Duration::from_secs(10)
    ));
    Env {
        dir,
        _s3: s3,
        backend,
        daemon,
        admin: local(admin_port),
        receiver: local(port),
        config,
    }
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = reqwest::get(url).await.unwrap();
    let (code, headers) = (r.status().as_u16(), r.headers().clone());
    (code, headers, r.text().await.unwrap())
}

async fn status_json(admin: SocketAddr) -> Value {
    serde_json::from_str(&get(&format!("http://{admin}/status.json")).await.2).unwrap()
}

/// A POST the way the page's script sends it (same origin).
async fn action(admin: SocketAddr, path: &str, form: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{admin}{path}"))
        .header("origin", format!("http://{admin}"))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (
        code,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s:?}");
    }
    assert!(!text.contains("SECRET"), "{what} shows part of a secret");
}

/// The value of a `/metrics` series (`name{labels}`), 0 when absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// The counts `/status.json` and `/metrics` both show, as (name, from JSON, from metrics).
fn counts(status: &Value, metrics: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for r in status["receivers"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        out.push((
            format!("{id} accepted"),
            r["spans_accepted"].as_u64().unwrap(),
            metric(
                metrics,
                &format!("tracecast_receiver_accepted_spans_total{{component=\"{id}\"}}"),
            ),
        ));
    }
    for d in status["destinations"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let l = format!("{{component=\"{id}\"}}");
        for (field, family) in [
            ("spans_sent", "tracecast_exporter_sent_spans_total"),
            ("retries", "tracecast_exporter_retries_total"),
            ("dead_letters", "tracecast_dead_letters_total"),
        ] {
            out.push((
                format!("{id} {field}"),
                d[field].as_u64().unwrap(),
                metric(metrics, &format!("{family}{l}")),
            ));
        }
    }
    for q in status["queues"].as_array().unwrap() {
        let p = q["pipeline"].as_str().unwrap();
        let l = format!("{{pipeline=\"{p}\"}}");
        out.push((
            format!("{p} entries"),
            q["entries"].as_u64().unwrap(),
            metric(metrics, &format!("tracecast_queue_entries{l}")),
        ));
        out.push((
            format!("{p} quarantined"),
            q["quarantined"].as_u64().unwrap(),
            metric(metrics, &format!("tracecast_queue_quarantined_total{l}")),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_browser_shows_where_traces_went() {
    let env = start().await;
    let admin = env.admin;

    // The up backend refuses the first batch for good: it becomes a dead letter.
    env.backend
        .respond_with(vec![Response::status(400).body("span 0 has no name")]);
    // Traffic: three gateway requests with the ingest key.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let r = client
            .post(format!("http://{}/v1/traces", env.receiver))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-protobuf")
            .body(gateway_request().encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The down destination gets its connection test from the page's button.
    let (code, tested) = action(admin, "/actions/test-connection", "destination=otlp%2Fdown").await;
    assert_eq!(code, 200, "{tested}");
    assert_eq!(tested["ok"], false);
    assert!(
        tested["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{tested}"
    );
    let (_, up) = action(admin, "/actions/test-connection", "destination=otlp%2Fup").await;
    assert_eq!(up["ok"], true, "{up}");

    // Until the files are written, the up backend answered and the queue holds the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = status_json(admin).await;
        let files = s["recent_files"].as_array().unwrap().len();
        let exports = s["recent_exports"].as_array().unwrap().len();
        let mirror = s["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["pipeline"] == "traces/mirror")
            .map_or(0, |q| q["entries"].as_u64().unwrap());
        let letters = s["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "otlp/up")
            .map_or(0, |d| d["dead_letter_files"].as_u64().unwrap());
        if files >= 3 && exports >= 2 && mirror >= 1 && letters == 1 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no traffic on the page: {s:#}\n{}",
            env.daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(env.backend.request_count() >= 1);

    // The page as served: no external reference, a policy that forbids any.
    let (code, headers, html) = get(&format!("http://{admin}/status")).await;
    assert_eq!(code, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    for marker in ["src=", "<link", "url(", "@import", "https://", "//fonts"] {
        assert!(!html.contains(marker), "the page references {marker:?}");
    }
    assert_eq!(
        get(&format!("http://{admin}/")).await.0,
        200,
        "/ is the page too"
    );

    // In the browser.
    let proxy = RecordingProxy::start();
    let profile = env.dir.path().join("chromium-profile");
    let url = format!("http://{admin}/status");
    let dom = headless(&profile, &proxy, &["--dump-dom".into()], &url);
    for p in ["traces/archive", "traces/mirror"] {
        assert!(
            dom.contains(&format!("data-pipeline=\"{p}\"")),
            "pipeline {p}"
        );
    }
    for d in ["s3/archive", "otlp/up", "otlp/down"] {
        assert!(
            dom.contains(&format!("data-destination=\"{d}\"")),
            "destination {d}"
        );
    }
    let down_row = dom
        .split("<tr ")
        .find(|r| r.starts_with("data-destination=\"otlp/down\""))
        .unwrap();
    assert!(down_row.contains("data-state=\"down\""), "{down_row}");
    assert!(down_row.contains("connection refused"), "{down_row}");
    let up_row = dom
        .split("<tr ")
        .find(|r| r.starts_with("data-destination=\"otlp/up\""))
        .unwrap();
    assert!(up_row.contains("data-state=\"up\""), "{up_row}");
    assert!(up_row.contains("1 in folder"), "{up_row}");
    assert!(up_row.contains("newest: rejected"), "{up_row}");
    assert!(up_row.contains("span 0 has no name"), "{up_row}");
    let mirror = status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["pipeline"] == "traces/mirror")
        .unwrap();
    let queue_row = dom
        .split("<tr ")
        .find(|r| r.starts_with("data-queue=\"traces/mirror\""))
        .unwrap();
    let depth = queue_row
        .split("data-entries=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(depth >= 1, "{queue_row}");
    assert!(mirror["entries"].as_u64().unwrap() >= 1);
    for f in status["recent_files"].as_array().unwrap().iter().take(3) {
        let key = f["key"].as_str().unwrap();
        assert!(dom.contains(key), "trace file {key} on the page");
    }
    assert_no_secret("the page", &html);
    assert_no_secret("the DOM", &dom);
    assert_no_secret("/status.json", &status.to_string());
    assert_no_secret("the test-connection answer", &tested.to_string());

    // A screenshot as the test's artifact.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status_page");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("status.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &profile,
        &proxy,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1800".into(),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    println!("status page screenshot: {}", shot.display());

    // Nothing but Chromium's own services went through the proxy; a control page with an
    // external image shows the proxy would have seen one.
    assert_eq!(proxy.page_requests(), Vec::<String>::new());
    let control = env.dir.path().join("control.html");
    std::fs::write(
        &control,
        "<html><body><img src=\"http://assets.example.test/logo.png\"></body></html>",
    )
    .unwrap();
    headless(
        &profile,
        &proxy,
        &["--dump-dom".into()],
        &format!("file://{}", control.display()),
    );
    let seen = proxy.page_requests();
    assert!(
        seen.iter().any(|l| l.contains("assets.example.test")),
        "the proxy sees external loads: {seen:?}"
    );

    // Clicks, in the browser: "Test connection" on the down destination, then "Send a test
    // trace" through traces/archive; the answers appear on the page, which then refreshes
    // itself; the page requests nothing but its own origin.
    let clicked = shots.join("status-after-clicks.png");
    let _ = std::fs::remove_file(&clicked);
    let js = click(&proxy, &url, &clicked, "otlp/down", "traces/archive");
    let requests: Vec<&str> = js["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(requests.len() >= 4, "{requests:?}");
    for r in &requests {
        assert!(
            r.starts_with(&format!("http://{admin}/")),
            "external load: {r}"
        );
    }
    assert_eq!(js["errors"], serde_json::json!([]), "script errors");
    let tested = js["testConnection"].as_str().unwrap();
    assert!(
        tested.starts_with("otlp/down: connection test FAILED"),
        "{tested}"
    );
    assert!(tested.contains("connection refused"), "{tested}");
    let sent = js["sendTestTrace"].as_str().unwrap();
    assert!(sent.starts_with("sent test trace "), "{sent}");
    assert!(
        sent.contains("s3/archive: written as openrouter-traces/"),
        "{sent}"
    );
    assert!(
        sent.contains("otlp/up: delivered, the backend answered HTTP 200"),
        "{sent}"
    );
    assert_eq!(js["refreshed"], true);
    assert!(js["destinationRowAfterRefresh"]
        .as_str()
        .unwrap()
        .contains("down"));
    assert_no_secret("the clicked page", &js.to_string());
    assert!(std::fs::read(&clicked).unwrap().starts_with(b"\x89PNG"));
    println!("status page after the clicks: {}", clicked.display());

    // /status.json agrees with /metrics at the same moment: read the metrics before and
    // after; when they did not move in between, the JSON must show exactly them.
    let mut agreed = false;
    for _ in 0..20 {
        let before = get(&format!("http://{admin}/metrics")).await.2;
        let json = status_json(admin).await;
        let after = get(&format!("http://{admin}/metrics")).await.2;
        let (a, b) = (counts(&json, &before), counts(&json, &after));
        let still = a.iter().zip(&b).all(|(x, y)| x.2 == y.2);
        if still {
            for (name, from_json, from_metrics) in &a {
                assert_eq!(from_json, from_metrics, "{name}: /status.json vs /metrics");
            }
            // Three gateway requests and the test trace, two spans each.
            assert!(a.iter().any(|(n, v, _)| n == "otlp accepted" && *v == 8));
            agreed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(agreed, "the metrics never held still for one read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_a_reload() {
    let env = start().await;
    let yaml = env
        .config
        .clone()
        .pipeline("traces/extra", &[], &["s3/archive"])
        .yaml();
    std::fs::write(env.dir.path().join("status.yaml"), yaml).unwrap();
    env.daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status_json(env.admin).await;
        let has = |list: &str, field: &str| {
            s[list]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p[field] == "traces/extra")
        };
        if has("pipelines", "name") && has("queues", "pipeline") {
            let s3 = s["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["id"] == "s3/archive")
                .unwrap();
            assert_eq!(
                s3["pipelines"],
                serde_json::json!(["traces/archive", "traces/extra"])
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not follow the reload: {s:#}\n{}",
            env.daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, _, html) = get(&format!("http://{}/status", env.admin)).await;
    assert!(html.contains("data-pipeline=\"traces/extra\""));
    assert!(html.contains("<option value=\"traces/extra\">"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_post_only_same_origin_and_bounded() {
    let env = start().await;
    let admin = env.admin;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{admin}{p}");

    let r = client
        .get(url("/actions/test-connection"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = client.post(url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    let form = "destination=otlp%2Fup";
    let refused = [
        vec![("sec-fetch-site", "cross-site".to_string())],
        vec![("origin", "http://evil.example".to_string())],
        vec![("origin", "null".to_string())],
        // A page that rebinds its own name to 127.0.0.1 sends that name as Host.
        vec![
            ("host", "evil.example".to_string()),
            ("origin", "http://evil.example".to_string()),
        ],
    ];
    for headers in refused {
        let mut req = client
            .post(url("/actions/test-connection"))
            .body(form)
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{headers:?}");
        assert!(r.text().await.unwrap().contains("refused"));
    }
    let big = format!("destination={}", "a".repeat(5000));
    assert_eq!(
        action_code(admin, "/actions/test-connection", &big).await,
        413
    );
    assert_eq!(
        action_code(admin, "/actions/test-connection", "x=1").await,
        400
    );
    assert_eq!(
        action_code(admin, "/actions/test-connection", "destination=otlp%2Fnope").await,
        404
    );
    assert_eq!(
        action_code(admin, "/actions/test-connection", "destination=%zz").await,
        400
    );
    assert_eq!(
        action_code(admin, "/actions/send-test-trace", "pipeline=nope").await,
        400
    );

    // The page's "Send a test trace": the S3 key and the backend's status; the down
    // destination is not in traces/archive, so this one passes.
    let (code, sent) = action(
        admin,
        "/actions/send-test-trace",
        "pipeline=traces%2Farchive",
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let text = sent["text"].as_str().unwrap();
    assert_eq!(sent["ok"], true, "{text}\n{}", env.daemon.log_text());
    assert!(text.contains("s3/archive: written as "), "{text}");
    assert!(
        text.contains("otlp/up: delivered, the backend answered HTTP 200"),
        "{text}"
    );
    assert_no_secret("the send-test-trace answer", &sent.to_string());
}

/// Runs tests/browser/click.js (playwright-core driving Debian's chromium, installed by
/// scripts/setup-test-deps.sh); returns what it printed.
fn click(
    proxy: &RecordingProxy,
    url: &str,
    shot: &Path,
    destination: &str,
    pipeline: &str,
) -> Value {
    let dir = tracecast_tests::repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing: run scripts/setup-test-deps.sh (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .current_dir(&dir)
        .env("CHROMIUM", chromium())
        .env("PROXY", proxy.addr.to_string())
        .args([
            "click.js",
            url,
            shot.to_str().unwrap(),
            destination,
            pipeline,
        ])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "click.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("click.js prints JSON")
}

async fn action_code(admin: SocketAddr, path: &str, form: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{admin}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
