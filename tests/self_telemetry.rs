//! `service.telemetry.otlp`: tracecast's own metrics (and sampled export spans) reach a
//! recording OTLP/HTTP server, with the right values, and never enter tracecast's own
//! pipelines.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use prost::Message;
use tokio::net::TcpListener;
use tracecast_tests::{
    fixtures, free_port, tracecast_bin, wait_for_listener, Exporter, RecordingOtlpServer,
    TestConfig,
};

/// One received metrics export: path and decoded body.
type Received = Arc<Mutex<Vec<(String, ExportMetricsServiceRequest)>>>;

/// Spans tracecast exported about itself (`/v1/traces`).
static OWN_SPANS: Mutex<Vec<ExportTraceServiceRequest>> = Mutex::new(Vec::new());

/// A minimal OTLP/HTTP metrics receiver: decodes every POST body as an
/// `ExportMetricsServiceRequest` (protobuf, as opentelemetry-otlp's http-proto sends).
async fn start_metrics_server() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        if path == "/v1/traces" {
                            let spans = ExportTraceServiceRequest::decode(body).unwrap();
                            OWN_SPANS.lock().unwrap().push(spans);
                        } else {
                            let decoded = ExportMetricsServiceRequest::decode(body).unwrap();
                            store.lock().unwrap().push((path, decoded));
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, received)
}

/// Latest value per `metric name{attrs}` over every export received so far.
fn latest_points(received: &Received) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (_, req) in received.lock().unwrap().iter() {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let points = match &m.data {
                        Some(Data::Sum(s)) => &s.data_points,
                        Some(Data::Gauge(g)) => &g.data_points,
                        _ => continue,
                    };
                    for p in points {
                        let attrs: Vec<String> = p
                            .attributes
                            .iter()
                            .map(|kv| {
                                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                    Some(Value::StringValue(s)) => s.clone(),
                                    other => format!("{other:?}"),
                                };
                                format!("{}={v}", kv.key)
                            })
                            .collect();
                        let v = match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => continue,
                        };
                        out.insert(format!("{}{{{}}}", m.name, attrs.join(",")), v);
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_metrics_reach_the_otlp_endpoint_and_never_the_pipelines() {
    let (metrics_addr, received) = start_metrics_server().await;
    let backend = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = TestConfig::new(port)
        .exporter(Exporter::otlp("otlp/backend", backend.endpoint()).protobuf())
        .shutdown_timeout("5s")
        .no_admin()
        .service(
            "telemetry",
            format!(
                "{{otlp: {{endpoint: \"http://{metrics_addr}\", interval: 300ms, traces_sampling_ratio: 1.0}}}}"
            ),
        )
        .yaml();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, cfg).unwrap();
    let log = dir.path().join("tracecast.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(tracecast_bin())
        .args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let receiver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_listener(receiver, Duration::from_secs(20)),
        "{}",
        log_text()
    );
    const N: usize = 9;
    let resp = reqwest::Client::new()
        .post(format!("http://{receiver}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(fixtures::request_with_spans(N).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    backend.wait_for_spans(N, Duration::from_secs(20)).await;

    let accepted = "tracecast_receiver_accepted_spans{component=otlp}";
    let sent = "tracecast_exporter_sent_spans{component=otlp/backend}";
    let deadline = Instant::now() + Duration::from_secs(20);
    let points = loop {
        let points = latest_points(&received);
        if points.get(sent) == Some(&(N as f64)) || Instant::now() > deadline {
            break points;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(points.get(accepted), Some(&(N as f64)), "{points:#?}");
    assert_eq!(points.get(sent), Some(&(N as f64)), "{points:#?}");
    assert!(
        points
            .keys()
            .any(|k| k.starts_with("tracecast_exporter_queue_batches")),
        "gauges too: {points:#?}"
    );
    {
        let got = received.lock().unwrap();
        assert!(got.iter().all(|(p, _)| p == "/v1/metrics"), "metrics path");
        let resource = &got[0].1.resource_metrics[0].resource;
        let service = resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
        });
        assert_eq!(service, Some(Value::StringValue("tracecast".into())));
    }

    // Several export intervals later the pipeline still carried exactly the N spans sent,
    // and nothing from tracecast itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{}", log_text());
    assert_eq!(backend.spans().len(), N);
    for req in backend.requests() {
        assert_eq!(req.path, "/v1/traces");
        let from_tracecast = req
            .decoded
            .iter()
            .flat_map(|r| &r.resource_spans)
            .any(|rs| {
                rs.resource.iter().flat_map(|r| &r.attributes).any(|kv| {
                    kv.key == "service.name"
                        && kv.value.as_ref().and_then(|v| v.value.as_ref())
                            == Some(&Value::StringValue("tracecast".into()))
                })
            });
        assert!(
            !from_tracecast,
            "tracecast's own telemetry entered a pipeline"
        );
    }
    assert!(
        received.lock().unwrap().len() >= 2,
        "periodic exports, not one"
    );
    // Sampled (here: every) export traced as a span of service `tracecast`, sent to
    // /v1/traces beside the metrics, not into the pipeline (checked above).
    let own = OWN_SPANS.lock().unwrap();
    let export = own
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .find(|s| s.name == "tracecast.export")
        .expect("a tracecast.export span");
    let attr = |k: &str| {
        export
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
    };
    assert_eq!(
        attr("tracecast.component"),
        Some(Value::StringValue("otlp/backend".into()))
    );
    assert_eq!(attr("tracecast.spans"), Some(Value::IntValue(N as i64)));
    assert_eq!(
        attr("tracecast.outcome"),
        Some(Value::StringValue("delivered".into()))
    );
}
