//! Long custom trace ids with the real binary: a 240-character `trace.trace_id` (the
//! request's `trace` field) and a 2,000-character `tracecast.custom_trace_id` attribute go
//! through the embedded default (`file://./tracecast-data/traces`, ports changed) and through
//! the in-process S3 server. Each trace is written under a shortened name that fits the
//! store (255 bytes per segment, 1,024 per key), the full id is kept inside the file, the
//! durable queue drains to 0 entries, and ordinary traffic sent afterwards is written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracecast_core::proto::trace::v1::Span;
use tracecast_tests::fixtures::{attr_map, attr_str, child_span, request_from_spans, span};
use tracecast_tests::{
    free_port, local, post_protobuf, repo_root, Daemon, Exporter, S3TestServer, TestConfig,
};

const AK: &str = "long-ids-access-key";
const SK: &str = "long-ids-secret-key";

/// The request's `trace` field with a 240-character id, on a root span with one child.
fn trace_field_request(id: &str) -> Vec<Span> {
    let mut root = span("root-trace-field");
    root.attributes.push(attr_map(
        "trace",
        vec![
            attr_str("trace_id", id),
            attr_str("environment", "long-ids"),
        ],
    ));
    let child = child_span(&root, "child-trace-field");
    vec![root, child]
}

/// A root span carrying a 2,000-character `tracecast.custom_trace_id`, with one child.
fn custom_attribute_request(id: &str) -> Vec<Span> {
    let mut root = span("root-custom-attribute");
    root.attributes
        .push(attr_str("tracecast.custom_trace_id", id));
    let child = child_span(&root, "child-custom-attribute");
    vec![root, child]
}

async fn post(receiver: SocketAddr, spans: Vec<Span>) {
    let resp = post_protobuf(
        &reqwest::Client::new(),
        receiver,
        &request_from_spans(spans),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}

/// `tracecast_queue_entries{pipeline="traces"}` from the admin endpoint.
async fn queue_entries(admin: SocketAddr) -> Option<u64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(r#"tracecast_queue_entries{pipeline="traces"} "#))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Waits until `find` returns something (fails after 30 s with the daemon's log).
async fn wait_for<T>(what: &str, daemon: &Daemon, mut find: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = find() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_empty_queue(admin: SocketAddr, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue_entries(admin).await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "tracecast_queue_entries stayed at {:?}; log:\n{}",
            queue_entries(admin).await,
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// The (key, document) of the trace file whose `id` is `id`, among `(key, bytes)` pairs.
fn file_with_id(files: &[(String, Vec<u8>)], id: &str) -> Option<(String, Value)> {
    files.iter().find_map(|(key, bytes)| {
        let doc: Value = serde_json::from_slice(bytes).ok()?;
        (doc["id"] == id).then(|| (key.clone(), doc))
    })
}

/// The key fits S3 and a file system, its name starts with the id's first characters, and
/// the document keeps the full id.
fn assert_shortened(key: &str, doc: &Value, id: &str) {
    assert!(key.len() <= 1024, "{} bytes: {key}", key.len());
    for segment in key.split('/') {
        assert!(segment.len() <= 255, "{} bytes: {segment}", segment.len());
    }
    let name = key.rsplit('/').next().unwrap();
    assert!(name.starts_with(&id[..100]), "readable prefix: {name}");
    assert!(!name.contains(id), "shortened: {name}");
    assert_eq!(doc["id"], id, "full id inside the file");
    let observations = doc["observations"].as_array().unwrap();
    assert_eq!(observations.len(), 2, "{doc:#}");
}

fn admin_section(admin: u16) -> String {
    format!("  admin:\n    endpoint: 127.0.0.1:{admin}\n    recheck_interval: 1h\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_through_the_file_default_get_short_names_and_the_queue_drains() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    // The embedded default, with free ports instead of 4318 and the admin endpoint's default.
    let default_yaml =
        std::fs::read_to_string(repo_root().join("crates/runtime/src/default_config.yaml"))
            .unwrap();
    assert!(default_yaml.contains("127.0.0.1:4318") && default_yaml.contains("\nservice:\n"));
    let yaml = default_yaml
        .replace("127.0.0.1:4318", &format!("127.0.0.1:{port}"))
        .replace(
            "\nservice:\n",
            &format!("\nservice:\n{}", admin_section(admin_port)),
        );
    let (receiver, admin) = (local(port), local(admin_port));
    let daemon = Daemon::run_config(dir.path(), "default", &yaml, &[], receiver);

    let trace_field_id = "x".repeat(240);
    let attribute_id = "y".repeat(2_000);
    post(receiver, trace_field_request(&trace_field_id)).await;
    post(receiver, custom_attribute_request(&attribute_id)).await;

    let traces = dir.path().join("tracecast-data/traces");
    let read = || -> Vec<(String, Vec<u8>)> {
        walk(&traces)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| {
                let key = p.strip_prefix(&traces).ok()?.to_string_lossy().into_owned();
                Some((key, std::fs::read(&p).ok()?))
            })
            .collect()
    };
    for id in [&trace_field_id, &attribute_id] {
        let (key, doc) = wait_for("the long-id trace file", &daemon, || {
            file_with_id(&read(), id)
        })
        .await;
        assert_shortened(&key, &doc, id);
        assert!(key.starts_with("openrouter-traces/"), "{key}");
    }
    wait_for_empty_queue(admin, &daemon).await;
    assert!(
        !dir.path().join("tracecast-data/dead-letter").exists()
            || walk(&dir.path().join("tracecast-data/dead-letter")).is_empty(),
        "nothing dead-lettered"
    );

    // Ordinary traffic afterwards is written.
    let root = span("after");
    let after_id = hex::encode(&root.trace_id);
    let child = child_span(&root, "after-child");
    post(receiver, vec![root, child]).await;
    wait_for("the ordinary trace after", &daemon, || {
        file_with_id(&read(), &after_id)
    })
    .await;
    wait_for_empty_queue(admin, &daemon).await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("trace lost"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_through_s3_get_short_keys_and_the_queue_drains() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("traces");
    let (port, admin_port) = (free_port(), free_port());
    let yaml = TestConfig::new(port)
        .processor("metadata")
        .exporter(
            Exporter::s3("s3", "traces", s3.endpoint(), AK, SK)
                .region("us-east-1")
                .trace_idle_timeout("1s"),
        )
        .admin_port(admin_port)
        .recheck_interval("1h")
        .yaml();
    let (receiver, admin) = (local(port), local(admin_port));
    let daemon = Daemon::run_config(dir.path(), "s3", &yaml, &[], receiver);

    let trace_field_id = "x".repeat(240);
    let attribute_id = "y".repeat(2_000);
    post(receiver, trace_field_request(&trace_field_id)).await;
    post(receiver, custom_attribute_request(&attribute_id)).await;

    let read = || -> Vec<(String, Vec<u8>)> {
        s3.list_keys("traces")
            .into_iter()
            .filter(|k| k.ends_with(".json") && !k.contains(".tracecast"))
            .filter_map(|k| Some((k.clone(), std::fs::read(s3.object_path("traces", &k)).ok()?)))
            .collect()
    };
    for id in [&trace_field_id, &attribute_id] {
        let (key, doc) =
            wait_for("the long-id object", &daemon, || file_with_id(&read(), id)).await;
        assert_shortened(&key, &doc, id);
    }
    wait_for_empty_queue(admin, &daemon).await;

    let root = span("after");
    let after_id = hex::encode(&root.trace_id);
    let child = child_span(&root, "after-child");
    post(receiver, vec![root, child]).await;
    wait_for("the ordinary object after", &daemon, || {
        file_with_id(&read(), &after_id)
    })
    .await;
    wait_for_empty_queue(admin, &daemon).await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
