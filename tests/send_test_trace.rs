//! `tracecast send-test-trace` against the real binary: a daemon with an S3 exporter (the
//! in-process S3 server) and an OTLP exporter (a recording backend), an ingest key on the
//! receiver. The command must print the exact object key written and the backend's HTTP
//! status; with the OTLP backend down it must say so in plain words and exit non-zero; with
//! no daemon, or a pipeline that does not exist, it must say that.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tracecast_tests::{
    free_port, local, tracecast_bin, Daemon, Exporter, RecordingOtlpServer, S3TestServer,
    TestConfig,
};

const AK: &str = "stt-access-key";
const SK: &str = "stt-secret-key";
const TOKEN: &str = "stt-ingest-token";

/// Runs `tracecast send-test-trace --config <config> <extra>`; returns (code, stdout, stderr).
async fn send_test_trace(config: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "send-test-trace".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(tracecast_bin())
            .args(&args)
            .output()
            .expect("run tracecast send-test-trace")
    })
    .await
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The trace id the command printed (`sent test trace <id> ...`).
fn sent_trace_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent test trace "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no 'sent test trace' line in:\n{stdout}"))
        .to_string()
}

struct Env {
    dir: tempfile::TempDir,
    s3: S3TestServer,
    config: std::path::PathBuf,
    daemon: Daemon,
}

/// A daemon whose pipeline `traces` (metadata processor) feeds `s3/archive` and
/// `otlp/backend` at `otlp_endpoint`.
async fn start(otlp_endpoint: &str, extra: &[&str]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("traces");
    let port = free_port();
    let yaml = TestConfig::new(port)
        .api_key("gateway", TOKEN)
        .processor("metadata")
        .exporter(
            Exporter::s3("s3/archive", "traces", s3.endpoint(), AK, SK)
                .trace_idle_timeout("300ms")
                .dead_letter_dir(dir.path().join("dl-s3")),
        )
        .exporter(
            Exporter::otlp("otlp/backend", otlp_endpoint)
                .retry_on_failure(&[("initial_interval", "200ms"), ("max_interval", "500ms")])
                .dead_letter_dir(dir.path().join("dl-otlp")),
        )
        .queue_dir(dir.path().join("queue"))
        .admin_port(free_port())
        .yaml();
    let config = dir.path().join("tracecast.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let mut args = vec!["run", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let daemon = Daemon::spawn(dir.path(), &args);
    assert!(
        tracecast_tests::wait_for_listener(local(port), Duration::from_secs(30)),
        "daemon did not start: {}",
        daemon.log_text()
    );
    Env {
        dir,
        s3,
        config,
        daemon,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_the_object_key_and_the_backends_status() {
    let backend = RecordingOtlpServer::start().await;
    let env = start(&backend.endpoint(), &[]).await;
    let (code, out, err) = send_test_trace(&env.config, &["--wait", "30"]).await;
    let log = env.daemon.log_text();
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}\nlog:\n{log}");
    let trace_id = sent_trace_id(&out);
    assert_eq!(trace_id.len(), 32);

    // The exact key the S3 server holds for this trace, printed as is.
    let keys: Vec<String> = env
        .s3
        .list_keys("traces")
        .into_iter()
        .filter(|k| k.contains(&trace_id))
        .collect();
    assert_eq!(keys.len(), 1, "one object for the trace: {keys:?}");
    assert!(
        out.contains(&format!("s3/archive: written as {} (", keys[0])),
        "{out}"
    );
    // The backend's status, and the backend really got the trace (with the ingest path).
    assert!(
        out.contains("otlp/backend: delivered, the backend answered HTTP 200"),
        "{out}"
    );
    let got: Vec<String> = backend
        .spans()
        .iter()
        .map(|s| hex_id(&s.trace_id))
        .collect();
    assert!(
        got.iter().filter(|t| **t == trace_id).count() == 2,
        "{got:?}"
    );
    // The S3 file is the gateway trace: user, session, a generation with tokens and cost.
    let file = std::fs::read(env.s3.object_path("traces", &keys[0])).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(doc["id"], trace_id.as_str(), "{doc}");
    assert_eq!(doc["userId"], "tracecast-test-user");
    assert!(doc["sessionId"]
        .as_str()
        .unwrap()
        .starts_with("tracecast-test-session-"));
    let generation = doc["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "GENERATION")
        .expect("a generation");
    assert_eq!(generation["promptTokens"], 14);
    assert!(generation["totalCost"].as_f64().unwrap() > 0.0);
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    drop(env.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_is_named_with_why_and_the_exit_code_says_so() {
    // Nothing listens on this port: the backend is down. The daemon starts anyway
    // (--skip-connection-test) and keeps the trace queued for it.
    let down = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let env = start(&down, &["--skip-connection-test"]).await;
    let (code, out, err) = send_test_trace(&env.config, &["--wait", "8"]).await;
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    let trace_id = sent_trace_id(&out);
    // The S3 destination still got it; the OTLP one is named, with the reason in words.
    let key = env
        .s3
        .list_keys("traces")
        .into_iter()
        .find(|k| k.contains(&trace_id))
        .expect("written to S3");
    assert!(
        out.contains(&format!("s3/archive: written as {key}")),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("otlp/backend: "))
        .unwrap_or_else(|| panic!("no otlp/backend line:\n{out}"));
    assert!(line.contains("NOT delivered"), "{line}");
    assert!(line.contains("connection refused"), "{line}");
    assert!(line.contains("keeps retrying"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_or_with_an_unknown_pipeline_it_says_why() {
    let backend = RecordingOtlpServer::start().await;
    let env = start(&backend.endpoint(), &[]).await;
    let (code, _, err) = send_test_trace(&env.config, &["--pipeline", "nope"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("there is no pipeline \"nope\""), "{err}");
    assert!(
        err.contains("traces"),
        "names the pipelines there are: {err}"
    );

    let config = env.config.clone();
    let (code, _) = env.daemon.terminate().await;
    assert_eq!(code, Some(0));
    let (code, out, err) = send_test_trace(&config, &[]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("did not answer"), "{err}");
    assert!(err.contains("is `tracecast run` running"), "{err}");

    // Something that is not a tracecast admin endpoint answers there.
    let other = backend.addr().to_string();
    let (code, out, err) = send_test_trace(&config, &["--admin", &other]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("is {other} the daemon's admin endpoint")),
        "{err}"
    );

    // No admin endpoint in the config, none given: nothing to follow the trace on.
    let off = TestConfig::new(free_port())
        .exporter(Exporter::s3_url(
            "s3",
            format!("file://{}", env.dir.path().join("files").display()),
        ))
        .no_admin();
    let path = env.dir.path().join("no-admin.yaml");
    std::fs::write(&path, off.yaml()).unwrap();
    let (code, _, err) = send_test_trace(&path, &[]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("service.admin.endpoint is off"), "{err}");
    drop(env.dir);
}

fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

/// A private CA and a `localhost` certificate it signed, written to `dir`; returns
/// (CA file, certificate file, key file).
fn private_ca_and_server_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "send-test-trace CA");
    let ca: Issuer =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let pair = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&pair, &ca).unwrap();
    let files = (dir.join("ca.pem"), dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, pair.serialize_pem()).unwrap();
    files
}

/// A config whose receiver serves OTLP/HTTP over TLS (`extra_tls`: more `tls` keys).
fn tls_config(dir: &Path, port: u16, admin: u16, backend: &str, extra_tls: &str) -> String {
    let (_, cert, key) = private_ca_and_server_cert(dir);
    format!(
        "receivers:\n  otlp:\n    api_keys: [{{name: gateway, token: {TOKEN}}}]\n    protocols:\n      http:\n        \
         endpoint: \"127.0.0.1:{port}\"\n        tls: {{cert_file: {}, key_file: {}{extra_tls}}}\n\
         exporters:\n  otlp:\n    endpoint: \"{backend}\"\n  s3/files:\n    url: \"file://{}\"\n    trace_idle_timeout: 300ms\n\
         service:\n  queue_dir: {}\n  admin: {{endpoint: \"127.0.0.1:{admin}\"}}\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [otlp, s3/files]\n",
        cert.display(),
        key.display(),
        dir.join("files").display(),
        dir.join("queue").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_receiver_gets_the_test_trace_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = tls_config(dir.path(), port, admin, &backend.endpoint(), "");
    let daemon = Daemon::run_config(dir.path(), "tls", &yaml, &[], local(port));
    let config = dir.path().join("tls.yaml");
    let (code, out, err) = send_test_trace(&config, &[]).await;
    assert_eq!(
        code,
        Some(0),
        "stdout:\n{out}\nstderr:\n{err}\nlog:\n{}",
        daemon.log_text()
    );
    let trace_id = sent_trace_id(&out);
    assert!(out.contains("to receiver otlp (HTTP 200)"), "{out}");
    assert!(
        out.contains("otlp: delivered, the backend answered HTTP 200"),
        "{out}"
    );
    assert!(out.contains("s3/files: written as "), "{out}");
    assert!(backend
        .spans()
        .iter()
        .any(|s| hex_id(&s.trace_id) == trace_id));

    // Mutual TLS: the test trace has no client certificate to present; said before anything
    // is sent, from the config alone.
    let mtls_dir = dir.path().join("mtls");
    std::fs::create_dir_all(&mtls_dir).unwrap();
    let ca = mtls_dir.join("ca.pem");
    let yaml = tls_config(
        &mtls_dir,
        free_port(),
        free_port(),
        &backend.endpoint(),
        &format!(", client_ca_file: {}", ca.display()),
    );
    let path = mtls_dir.join("mtls.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (code, _, err) = send_test_trace(&path, &[]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("requires a client certificate"), "{err}");
}
