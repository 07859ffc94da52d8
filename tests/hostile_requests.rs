//! Requests built to make the daemon do unbounded work, against the real binary on real
//! sockets: each is refused before the answer (413, with the limit's name), the daemon's
//! peak RSS stays bounded, and ordinary traffic sent afterwards is answered 200 and its
//! trace file written by the `file://` trace writer.
//!
//! - 15 KB of gzip that inflates to 16 MB of empty spans (8 million), 8 at a time:
//!   `max_spans_per_request`, peak RSS under 256 MiB.
//! - A root span with 4 MB of `trace` metadata and 20,000 child spans in its trace
//!   (`max_trace_metadata_size`), and a 4 MB resource attribute over 20,000 ScopeSpans
//!   (`max_decoded_size`): peak RSS under 512 MiB.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::ExportTraceServiceRequest;
use tracecast_tests::fixtures::{attr_map, attr_str, child_span, request_from_spans, span};
use tracecast_tests::{free_port, local, peak_rss_bytes, Daemon, Exporter, TestConfig};

const MIB: u64 = 1024 * 1024;

/// A daemon with the metadata processor and the trace-file writer into `<dir>/out`.
fn start(dir: &Path) -> (Daemon, SocketAddr) {
    let port = free_port();
    let yaml = TestConfig::new(port)
        .processor("metadata")
        .exporter(
            Exporter::s3_url("s3", format!("file://{}", dir.join("out").display()))
                .trace_idle_timeout("300ms"),
        )
        .no_admin()
        .queue_dir(dir.join("queue"))
        .yaml();
    let addr = local(port);
    (Daemon::run_config(dir, "hostile", &yaml, &[], addr), addr)
}

/// `len`-prefixed protobuf field `tag`.
fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let mut len = inner.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(inner);
    out
}

/// The request: one ResourceSpans, one ScopeSpans, 8,000,000 empty spans
/// (`0x12 0x00`), gzipped at the best level.
fn gzip_bomb() -> Bytes {
    let body = wrap(0x0a, &wrap(0x12, &[0x12u8, 0x00].repeat(8_000_000)));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&body).unwrap();
    Bytes::from(enc.finish().unwrap())
}

async fn send(
    client: &reqwest::Client,
    addr: SocketAddr,
    body: impl Into<reqwest::Body>,
    gzip: bool,
) -> (u16, String) {
    let mut req = client
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf");
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.body(body).send().await.expect("request sent");
    let code = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

/// Sends an ordinary request and waits for its trace file under `<dir>/out`.
async fn ordinary_traffic_flows(client: &reqwest::Client, addr: SocketAddr, dir: &Path, tag: &str) {
    let name = format!("ordinary-after-{tag}");
    let root = span(&name);
    let child = child_span(&root, &format!("{name}-child"));
    let req = request_from_spans(vec![root, child]);
    let (code, body) = send(client, addr, req.encode_to_vec(), false).await;
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if file_containing(&dir.join("out"), &name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no trace file with {name:?} under {}",
        dir.join("out").display()
    );
}

fn file_containing(dir: &Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            file_containing(&path, needle)
        } else {
            std::fs::read_to_string(&path).is_ok_and(|text| text.contains(needle))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gzip_bombs_of_empty_spans_8_at_a_time_are_413_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start(dir.path());
    let pid = daemon.child.id();
    let before = peak_rss_bytes(pid);
    let bomb = gzip_bomb();
    assert!(bomb.len() < 20 * 1024, "{} bytes of gzip", bomb.len());

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for round in 0..3 {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                let bomb = bomb.clone();
                tokio::spawn(async move { send(&client, addr, bomb, true).await })
            })
            .collect();
        for task in tasks {
            let (code, body) = task.await.unwrap();
            assert_eq!(code, 413, "round {round}: {body}");
            assert!(
                body.contains("request has 8000000 spans")
                    && body.contains("receivers.otlp.max_spans_per_request (100000)"),
                "round {round}: {body}"
            );
        }
    }
    let peak = peak_rss_bytes(pid);
    eprintln!(
        "24 gzip bombs (8 at a time, {} bytes each): peak RSS {} MiB (before: {} MiB)",
        bomb.len(),
        peak / MIB,
        before / MIB
    );
    assert!(peak < 256 * MIB, "peak RSS {} MiB", peak / MIB);

    // 32 at once: beyond `max_decompressing_size` (8 bodies at the limit) the receiver
    // answers 503 with Retry-After instead of inflating more. Live buffers stay within
    // 128 MiB; the daemon fixes glibc's mmap threshold at 1 MiB (`main.rs`), so freed 16 MiB
    // buffers go back to the OS instead of staying resident in per-thread arenas.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            let bomb = bomb.clone();
            tokio::spawn(async move {
                let resp = client
                    .post(format!("http://{addr}/v1/traces"))
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "gzip")
                    .body(bomb)
                    .send()
                    .await
                    .expect("request sent");
                (
                    resp.status().as_u16(),
                    resp.headers().contains_key("retry-after"),
                )
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::new();
    for task in tasks {
        let (code, retry_after) = task.await.unwrap();
        assert!(code == 413 || (code == 503 && retry_after), "{code}");
        *codes.entry(code).or_insert(0) += 1;
    }
    let peak = peak_rss_bytes(pid);
    eprintln!(
        "32 gzip bombs at once: {codes:?}, peak RSS {} MiB",
        peak / MIB
    );
    assert!(peak < 256 * MIB, "peak RSS {} MiB", peak / MIB);

    ordinary_traffic_flows(&client, addr, dir.path(), "bombs").await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn values_repeated_over_20000_spans_or_scopes_are_413_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start(dir.path());
    let pid = daemon.child.id();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let four_mb = "m".repeat(4 * 1024 * 1024);

    // A root with 4 MB of trace metadata and 20,000 children in its trace.
    let mut root = span("metadata-bomb");
    root.attributes.push(attr_map(
        "trace",
        vec![
            attr_str("trace_name", "metadata-bomb"),
            attr_str("notes", &four_mb),
        ],
    ));
    let mut spans = vec![root.clone()];
    spans.extend((0..20_000).map(|i| child_span(&root, &format!("child-{i}"))));
    let req = request_from_spans(spans);
    let (code, body) = send(&client, addr, req.encode_to_vec(), false).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("receivers.otlp.max_trace_metadata_size (65536)"),
        "{body}"
    );
    ordinary_traffic_flows(&client, addr, dir.path(), "metadata").await;

    // A 4 MB resource attribute over 20,000 ScopeSpans (one span each).
    let one = request_from_spans(vec![span("resource-bomb")]);
    let scope = one.resource_spans[0].scope_spans[0].clone();
    let mut rs = one.resource_spans[0].clone();
    rs.resource = Some(Resource {
        attributes: vec![attr_str("host.notes", &four_mb)],
        ..Default::default()
    });
    rs.scope_spans = vec![scope; 20_000];
    let req = ExportTraceServiceRequest {
        resource_spans: vec![rs],
    };
    let (code, body) = send(&client, addr, req.encode_to_vec(), false).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("repeated over 20000 ScopeSpans")
            && body.contains("receivers.otlp.max_decoded_size (134217728)"),
        "{body}"
    );
    ordinary_traffic_flows(&client, addr, dir.path(), "resource").await;

    let peak = peak_rss_bytes(pid);
    eprintln!("4 MB x 20,000 requests: peak RSS {} MiB", peak / MIB);
    assert!(peak < 512 * MIB, "peak RSS {} MiB", peak / MIB);
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
