//! OTLP/gRPC through the `tracecast` binary: oversized messages, streamed 64 at a time,
//! are refused with RESOURCE_EXHAUSTED while the daemon's memory stays bounded (reading
//! stops at the message limit); a SIGTERM while gRPC clients are connected drains and
//! exits 0, with what was acknowledged delivered.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use tracecast_tests::{
    free_port, local, peak_rss_bytes, run_python_script, Daemon, RecordingOtlpServer,
};

const MIB: u64 = 1024 * 1024;
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

fn config(http: u16, grpc: u16, backend: &str, queue: &std::path::Path) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{http}\n      \
         grpc:\n        endpoint: 127.0.0.1:{grpc}\n        max_recv_msg_size_mib: 4\n\
         exporters:\n  otlp:\n    endpoint: {backend}\n    encoding: protobuf\n\
         service:\n  queue_dir: {}\n  admin: {{endpoint: \"\"}}\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [otlp]\n",
        queue.display()
    )
}

/// A gRPC request body announcing `total` bytes and streaming that many zeros, 1 MiB a
/// chunk, never held whole in the test's memory either.
struct Huge {
    prefix: Option<Bytes>,
    left: u64,
    chunk: Bytes,
}

impl Huge {
    fn new(total: u32) -> Self {
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&total.to_be_bytes());
        Self {
            prefix: Some(Bytes::from(prefix)),
            left: u64::from(total),
            chunk: Bytes::from(vec![0u8; MIB as usize]),
        }
    }
}

impl hyper::body::Body for Huge {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(MIB);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_grpc_messages_are_resource_exhausted_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (http, grpc) = (free_port(), free_port());
    let yaml = config(http, grpc, &backend.endpoint(), &dir.path().join("queue"));
    let daemon = Daemon::run_config(dir.path(), "grpc", &yaml, &[], local(grpc));
    let pid = daemon.child.id();
    let before = peak_rss_bytes(pid);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    // 64 messages of 256 MiB each (16 GiB announced), 16 at a time.
    for round in 0..4 {
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let resp = client
                        .post(format!("http://127.0.0.1:{grpc}{EXPORT}"))
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(reqwest::Body::wrap(Huge::new(256 * MIB as u32)))
                        .send()
                        .await;
                    match resp {
                        Ok(r) => r
                            .headers()
                            .get("grpc-status")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default(),
                        // The server may reset the stream once it answered.
                        Err(e) => format!("reset: {e}"),
                    }
                })
            })
            .collect();
        for call in calls {
            let status = call.await.unwrap();
            assert!(
                status == "8" || status.starts_with("reset"),
                "round {round}: {status}"
            );
        }
    }
    let peak = peak_rss_bytes(pid);
    eprintln!(
        "64 x 256 MiB gRPC messages over a 4 MiB limit: peak RSS {} MiB (before {} MiB)",
        peak / MIB,
        before / MIB
    );
    assert!(peak < 200 * MIB, "peak RSS {} MiB", peak / MIB);
    let log = daemon.log_text();
    let (code, _) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(backend.spans().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_grpc_clients_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (http, grpc) = (free_port(), free_port());
    let yaml = config(http, grpc, &backend.endpoint(), &dir.path().join("queue"));
    let daemon = Daemon::run_config(dir.path(), "grpc", &yaml, &[], local(grpc));
    let out = run_python_script(
        "send_spans_grpc.py",
        vec![
            format!("127.0.0.1:{grpc}"),
            "50".into(),
            "drain".into(),
            "gzip".into(),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("OTLP/gRPC receiver listening"), "{log}");
    // Everything acknowledged over gRPC was delivered before the exit.
    let spans = backend.wait_for_spans(50, Duration::from_secs(5)).await;
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.name.starts_with("drain-"))
            .count(),
        50
    );
}
