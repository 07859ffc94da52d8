//! The recording OTLP server, driven by a real HTTP client.

use std::time::Duration;

use prost::Message;
use tracecast_core::proto::collector::trace::v1::ExportTraceServiceResponse;
use tracecast_test_util::fixtures::{gateway_request, gzip, request_with_spans};
use tracecast_test_util::otlp_server::{RecordingOtlpServer, Response};

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    gzipped: bool,
) -> reqwest::Response {
    let mut req = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .header("authorization", "Bearer test-token");
    if gzipped {
        req = req.header("content-encoding", "gzip");
    }
    req.body(body).send().await.unwrap()
}

#[tokio::test]
async fn records_protobuf_and_gzip_protobuf_and_scripts_a_503() {
    let server = RecordingOtlpServer::start().await;
    let client = reqwest::Client::new();
    let url = server.endpoint();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/v1/traces"));

    let plain = request_with_spans(3);
    let resp = post(&client, &url, plain.encode_to_vec(), false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        ExportTraceServiceResponse::decode(body).unwrap(),
        ExportTraceServiceResponse::default()
    );

    let gateway = gateway_request();
    let resp = post(&client, &url, gzip(&gateway.encode_to_vec()), true).await;
    assert_eq!(resp.status(), 200);

    server.respond_with(vec![Response::status(503)
        .retry_after("1")
        .body("overloaded")]);
    let resp = post(&client, &url, request_with_spans(2).encode_to_vec(), false).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.text().await.unwrap(), "overloaded");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(server.request_count(), 3);
    assert_eq!(reqs[0].path, "/v1/traces");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer test-token"));
    assert_eq!(
        reqs[0].content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(reqs[0].decoded.as_ref().unwrap(), &plain);
    assert_eq!(reqs[1].content_encoding.as_deref(), Some("gzip"));
    assert_ne!(reqs[1].body, bytes::Bytes::from(gateway.encode_to_vec()));
    assert_eq!(reqs[1].decoded.as_ref().unwrap(), &gateway);
    assert_eq!(reqs[2].status, 503);
    assert!(!reqs[2].accepted());

    // Only the two accepted requests' spans count as delivered.
    let names = server.span_names();
    assert_eq!(names.len(), 5);
    assert_eq!(&names[..3], ["span-0", "span-1", "span-2"]);
    assert_eq!(
        server.wait_for_spans(5, Duration::from_secs(1)).await.len(),
        5
    );
    server.shutdown().await;
}

#[tokio::test]
async fn scripted_queue_then_default_partial_success_and_bad_bodies() {
    let server = RecordingOtlpServer::start().await;
    let client = reqwest::Client::new();
    let url = server.endpoint();
    server.respond_with(vec![
        Response::status(503),
        Response::status(400).body("bad things"),
        Response::partial_success(2, "two spans had no name"),
    ]);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let r = post(&client, &url, request_with_spans(1).encode_to_vec(), false).await;
            v.push(r.status().as_u16());
            if v.len() == 3 {
                let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
                assert_eq!(resp.partial_success.unwrap().rejected_spans, 2);
            }
        }
        v
    };
    assert_eq!(statuses, [503, 400, 200, 200]);

    // Undecodable body with nothing scripted: a 400 naming the problem, recorded.
    let r = post(&client, &url, b"not protobuf \xff\xff".to_vec(), false).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("bad protobuf"));
    assert!(server.requests()[4].decoded.is_err());
}

#[tokio::test]
async fn stall_holds_requests_until_released() {
    let server = RecordingOtlpServer::start().await;
    server.stall();
    let url = server.endpoint();
    let pending = tokio::spawn(async move {
        let client = reqwest::Client::new();
        post(&client, &url, request_with_spans(2).encode_to_vec(), false)
            .await
            .status()
    });
    for _ in 0..200 {
        if server.held_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.held_count(), 1);
    assert_eq!(server.request_count(), 0);
    assert!(server
        .wait_for_spans(2, Duration::from_millis(100))
        .await
        .is_empty());
    server.release();
    assert_eq!(pending.await.unwrap(), 200);
    assert_eq!(
        server.wait_for_spans(2, Duration::from_secs(5)).await.len(),
        2
    );
}

#[tokio::test]
async fn port_is_closed_after_shutdown() {
    let server = RecordingOtlpServer::start().await;
    let addr = server.addr();
    server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
