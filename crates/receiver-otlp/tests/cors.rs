//! CORS on a real socket, as a browser speaks it: preflight `OPTIONS` from an allowed
//! origin (exact or wildcard) gets the allow headers; from another origin, 403 and no
//! `Access-Control-*` header; the export request of an allowed origin carries
//! `Access-Control-Allow-Origin`, one from another origin is refused and its spans are
//! not taken; requests without `Origin` (SDKs) are not affected.

mod support;

use prost::Message;
use support::{client, request, start};
use tracecast_receiver_otlp::config::{HttpProtocol, Protocols};
use tracecast_receiver_otlp::{ApiKey, CorsConfig};

const PROTOBUF: &str = "application/x-protobuf";

async fn start_cors(id: &str) -> support::Started {
    start(id, |c| {
        c.protocols = Some(Protocols {
            http: Some(HttpProtocol {
                endpoint: "127.0.0.1:0".into(),
                cors: Some(CorsConfig {
                    allowed_origins: vec![
                        "https://app.example.com".into(),
                        "https://*.trusted.dev".into(),
                    ],
                    allowed_headers: vec!["Authorization".into(), "X-Tenant".into()],
                    max_age: 7200,
                }),
                ..Default::default()
            }),
            grpc: None,
        });
        c.api_keys = vec![ApiKey {
            name: "browser".into(),
            token: "tok".into(),
        }];
    })
    .await
}

fn preflight(url: &str, origin: &str, headers: &str) -> reqwest::RequestBuilder {
    client()
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
}

fn cors_headers(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_gets_the_allow_headers() {
    let s = start_cors("otlp/cors-ok").await;
    for origin in ["https://app.example.com", "https://ui.trusted.dev"] {
        let resp = preflight(&s.url, origin, "content-type,authorization")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{origin}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-methods"], "POST");
        assert_eq!(
            h["access-control-allow-headers"],
            "content-type, authorization"
        );
        assert_eq!(h["access-control-max-age"], "7200");
        assert!(h["vary"].to_str().unwrap().contains("Origin"));
    }
    // The export request itself, authenticated, is taken and readable by the page.
    let resp = client()
        .post(&s.url)
        .header("origin", "https://ui.trusted.dev")
        .header("authorization", "Bearer tok")
        .header("content-type", PROTOBUF)
        .body(request(2).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://ui.trusted.dev"
    );
    // A refusal (wrong token) is readable by the page too.
    let resp = client()
        .post(&s.url)
        .header("origin", "https://app.example.com")
        .header("authorization", "Bearer nope")
        .header("content-type", PROTOBUF)
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(s.sink.batches().len(), 1);
}

#[tokio::test]
async fn another_origin_gets_no_allow_headers_and_its_spans_are_not_taken() {
    let s = start_cors("otlp/cors-no").await;
    for origin in [
        "https://evil.example",
        "https://trusted.dev",
        "https://app.example.com.evil.example",
        "null",
    ] {
        let resp = preflight(&s.url, origin, "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{origin}");
        assert!(cors_headers(&resp).is_empty(), "{origin}: {resp:?}");
        let resp = client()
            .post(&s.url)
            .header("origin", origin)
            .header("authorization", "Bearer tok")
            .header("content-type", PROTOBUF)
            .body(request(1).encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{origin}");
        assert!(cors_headers(&resp).is_empty(), "{origin}");
    }
    // An allowed origin asking for a header that is not allowed, or another method.
    let resp = preflight(&s.url, "https://app.example.com", "x-unknown")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(cors_headers(&resp).is_empty());
    let resp = client()
        .request(reqwest::Method::OPTIONS, &s.url)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(s.sink.batches().is_empty());
}

#[tokio::test]
async fn requests_without_origin_are_not_affected() {
    let s = start_cors("otlp/cors-sdk").await;
    let resp = client()
        .post(&s.url)
        .header("authorization", "Bearer tok")
        .header("content-type", PROTOBUF)
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(cors_headers(&resp).is_empty());
    // Without CORS configured, a preflight is an ordinary wrong-method request.
    let plain = start("otlp/cors-off", |_| {}).await;
    let resp = preflight(&plain.url, "https://app.example.com", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(cors_headers(&resp).is_empty());
}
