//! The `tracecast` binary as a user runs it: `validate`, `check`, `run` with SIGTERM, and
//! `run` on the embedded default config.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tracecast_tests::{
    fixtures, free_port, local, post_protobuf, tracecast_bin, wait_for_listener, Daemon, Exporter,
    RecordingOtlpServer, TestConfig,
};

/// Literal text, not [`TestConfig`]: `validate_rejects_a_bad_admin_endpoint` checks the
/// line number of `service.admin.endpoint` in it.
fn forward_config(receiver_port: u16, backend: &str) -> String {
    format!(
        r#"receivers:
  otlp:
    endpoint: 127.0.0.1:{receiver_port}
exporters:
  otlp/backend:
    endpoint: {backend}
    encoding: protobuf
service:
  shutdown_timeout: 10s
  admin: {{endpoint: "127.0.0.1:0"}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [otlp/backend]
"#
    )
}

#[test]
fn validate_accepts_the_example_and_rejects_a_bad_file_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let example = tracecast_tests::repo_root().join("config.example.yaml");
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(&example)
        .env("TRACECAST_INGEST_TOKEN", "t")
        .env("AWS_ACCESS_KEY_ID", "a")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AXIOM_TOKEN", "x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "example config must validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without its secrets, each unset variable is named once, with no follow-on type error.
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(&example)
        .env_remove("TRACECAST_INGEST_TOKEN")
        .env_remove("AXIOM_TOKEN")
        .env("AWS_ACCESS_KEY_ID", "a")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("TRACECAST_INGEST_TOKEN is not set").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("AXIOM_TOKEN is not set").count(), 1, "{err}");
    assert!(!err.contains("unit value"), "{err}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "receivers:\n  otlp:\n    endpoint: 127.0.0.1:4318\nexporters:\n  otlp/x:\n    endpoint: http://127.0.0.1:9/v1/traces\n    timeout: 10x\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp/missing]\n",
    )
    .unwrap();
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:7:"),
        "line of the bad duration: {err}"
    );
    assert!(err.contains("exporters.otlp/x.timeout"), "{err}");
    assert!(
        err.contains("otlp/missing"),
        "undefined reference reported too: {err}"
    );
}

/// The admin endpoint is validated with the rest of the file, not first at `run`.
#[test]
fn validate_rejects_a_bad_admin_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad_admin.yaml");
    let config = forward_config(4318, "http://127.0.0.1:9/v1/traces").replace(
        r#"admin: {endpoint: "127.0.0.1:0"}"#,
        r#"admin: {endpoint: "nonsense"}"#,
    );
    assert!(config.contains("nonsense"));
    std::fs::write(&bad, config).unwrap();
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad_admin.yaml:10:") && err.contains("service.admin.endpoint: \"nonsense\""),
        "file:line: key: message: {err}"
    );
}

/// TLS files are read and parsed when the config is validated: an unreadable CA file and a
/// client certificate the s3 exporter cannot use are reported with their key paths, before
/// anything starts.
#[test]
fn validate_reports_tls_problems_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad_tls.yaml");
    std::fs::write(
        &bad,
        "receivers:\n  otlp:\n    endpoint: 127.0.0.1:4318\nexporters:\n  otlp/x:\n    \
         endpoint: https://127.0.0.1:9/v1/traces\n    tls: {ca_file: /nonexistent/ca.pem}\n  \
         s3:\n    bucket: traces\n    tls: {cert_file: /c.pem, key_file: /k.pem}\n\
         service:\n  admin: {endpoint: \"\"}\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [otlp/x, s3]\n",
    )
    .unwrap();
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad_tls.yaml:7:")
            && err.contains("exporters.otlp/x.tls.ca_file: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
    assert!(
        err.contains(
            "exporters.s3.tls.cert_file: the s3 exporter cannot present a client certificate"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_reachable_and_unreachable_destinations() {
    let backend = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let cfg = TestConfig::new(0)
        .exporter(Exporter::otlp("otlp/up", backend.endpoint()))
        .exporter(Exporter::otlp("otlp/down", dead))
        .yaml();
    let path = dir.path().join("check.yaml");
    std::fs::write(&path, cfg).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(tracecast_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok      otlp/up"), "{stdout}");
    assert!(stdout.contains("FAILED  otlp/down"), "{stdout}");
    assert!(stdout.contains("connection refused"), "{stdout}");
    assert!(stdout.contains("1 of 2 destination(s) failed"), "{stdout}");
    // The reachable backend saw exactly the test request, marked as such.
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("x-test-connection"), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_everything_accepted_and_exits_zero() {
    let backend = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = local(free_port());
    let yaml = forward_config(addr.port(), &backend.endpoint());
    let daemon = Daemon::run_config(dir.path(), "run", &yaml, &[], addr);
    let client = reqwest::Client::new();
    let mut sent = 0;
    for _ in 0..20 {
        let req = fixtures::request_with_spans(5);
        assert_eq!(
            post_protobuf(&client, addr, &req).await.unwrap().status(),
            200
        );
        sent += 5;
    }
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert_eq!(
        backend.spans().len(),
        sent,
        "every acknowledged span was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_writes_trace_files_to_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:4318".parse().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "port 4318 is taken; the embedded default listens there"
    );
    let daemon = Daemon::spawn(dir.path(), &["run"]);
    assert!(
        wait_for_listener(addr, Duration::from_secs(20)),
        "tracecast did not listen: {}",
        daemon.log_text()
    );
    let req = fixtures::request_with_spans(3);
    let trace_ids: std::collections::BTreeSet<String> = req.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| hex_lower(&s.trace_id))
        .collect();
    let resp = post_protobuf(&reqwest::Client::new(), addr, &req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    let files = walk(&dir.path().join("tracecast-data/traces"));
    let names: Vec<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for id in &trace_ids {
        assert!(
            names.iter().any(|n| n.starts_with(id.as_str())),
            "a file for trace {id} in {names:?}; log:\n{log}"
        );
    }
    for f in &files {
        let rel = f
            .strip_prefix(dir.path().join("tracecast-data/traces"))
            .unwrap();
        assert!(
            rel.to_string_lossy().starts_with("openrouter-traces/"),
            "default path template: {}",
            rel.display()
        );
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
