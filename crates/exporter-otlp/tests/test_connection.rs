//! `test_connection` (what `tracecast check` runs) against real answers and real failures.

mod support;

use std::time::Duration;

use support::{build, config};
use tracecast_config::{Duration as ConfigDuration, ValidateInto};
use tracecast_core::{ExportError, Exporter};
use tracecast_exporter_otlp::{OtlpExporter, OtlpExporterConfig};
use tracecast_test_util::otlp_server::{RecordingOtlpServer, Response};

fn exporter(c: OtlpExporterConfig) -> OtlpExporter {
    build("otlp/check", &c)
}

fn message(result: Result<(), ExportError>) -> String {
    match result {
        Ok(()) => panic!("the connection test passed"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_200_passes_and_the_probe_is_an_empty_marked_request() {
    let server = RecordingOtlpServer::start().await;
    let mut c = config(&server.endpoint());
    c.headers
        .insert("Authorization".into(), "Bearer t0k".into());
    exporter(c).test_connection().await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.header("x-test-connection"), Some("true"));
    assert_eq!(r.header("authorization"), Some("Bearer t0k"));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(r.decoded.as_ref().unwrap().resource_spans.len(), 0);
}

#[tokio::test]
async fn a_400_passes_because_some_backends_refuse_empty_payloads() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::status(400).body("empty payload")]);
    exporter(config(&server.endpoint()))
        .test_connection()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_401_names_the_token() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::status(401).body("invalid token")]);
    let m = message(exporter(config(&server.endpoint())).test_connection().await);
    assert_eq!(
        m,
        "authentication failed (HTTP 401): check the Authorization header / token (backend says: invalid token)"
    );
}

#[tokio::test]
async fn a_404_asks_for_the_full_traces_url() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::status(404)]);
    let m = message(exporter(config(&server.endpoint())).test_connection().await);
    assert!(
        m.starts_with("HTTP 404: is the endpoint the full traces URL, ending in /v1/traces?"),
        "{m}"
    );
}

#[tokio::test]
async fn a_500_reports_the_status_and_the_backend_message() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::status(500).body("database down")]);
    let m = message(exporter(config(&server.endpoint())).test_connection().await);
    assert_eq!(m, "HTTP 500 Internal Server Error: database down");
}

#[tokio::test]
async fn a_closed_port_says_connection_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = config(&format!("http://127.0.0.1:{port}/v1/traces"));
    let m = message(exporter(c).test_connection().await);
    assert_eq!(
        m,
        format!("cannot connect to 127.0.0.1:{port}: connection refused; is the backend running and the endpoint right?")
    );
}

#[tokio::test]
async fn a_slow_backend_times_out() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::ok().delay(Duration::from_secs(3))]);
    let mut c = config(&server.endpoint());
    c.timeout = ConfigDuration::from_millis(200);
    let m = message(exporter(c).test_connection().await);
    assert!(
        m.starts_with(&format!("no answer from {} within 200ms", server.addr())),
        "{m}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_failure() {
    let server = RecordingOtlpServer::start().await;
    let c = config(&format!("https://{}/v1/traces", server.addr()));
    let m = message(exporter(c).test_connection().await);
    assert!(
        m.starts_with(&format!("TLS handshake with {} failed", server.addr())),
        "{m}"
    );
}

#[tokio::test]
async fn an_unknown_host_is_a_dns_failure() {
    let c = config("http://tracecast-test.invalid/v1/traces");
    let m = message(exporter(c).test_connection().await);
    assert!(
        m.starts_with("cannot resolve host tracecast-test.invalid"),
        "{m}"
    );
}

#[test]
fn an_unreadable_or_bad_ca_file_fails_validation_with_its_path() {
    let mut c = config("https://example.com/v1/traces");
    c.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let problems = c.problems();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "tls.ca_file");
    assert!(problems[0]
        .message
        .starts_with("cannot read /nonexistent/ca.pem: "));

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let mut c = config("https://example.com/v1/traces");
    c.tls.ca_file = Some(junk);
    let problems = c.problems();
    assert_eq!(problems[0].path, "tls.ca_file");
    assert!(
        problems[0].message.contains("holds no certificate"),
        "{}",
        problems[0].message
    );

    // Well-formed PEM armour around bytes that are no certificate.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut c = config("https://example.com/v1/traces");
    c.tls.ca_file = Some(garbage);
    let problems = c.problems();
    assert_eq!(problems[0].path, "tls.ca_file");
    assert!(
        problems[0].message.contains("is not usable as a CA"),
        "{}",
        problems[0].message
    );
}
