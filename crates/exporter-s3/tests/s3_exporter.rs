//! The s3 exporter against a real S3-compatible server (s3s + s3s-fs, SigV4 checked) over
//! HTTP on 127.0.0.1, and against a local folder.

mod support;

use std::time::Duration;

use support::*;
use tracecast_core::{ExportError, Exporter};
use tracecast_exporter_s3::{Compression, Delivery, S3Exporter, S3ExporterConfig};
use tracecast_test_util::s3::S3TestServer;

async fn server() -> (tempfile::TempDir, S3TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    server.create_bucket(BUCKET);
    (dir, server)
}

fn exporter(config: &S3ExporterConfig) -> S3Exporter {
    build("s3/test", config)
}

#[tokio::test]
async fn keys_use_every_template_variable() {
    let (dir, server) = server().await;
    let mut config = s3_config(&server, &dir.path().join("dl"));
    config.path_template = "{prefix}/{apiKeyName}/{year}/{month}/{day}/{hour}/{date}".into();
    config.prefix = "production".into();
    config.api_key_name_attribute = Some("openrouter.api_key_name".into());
    let run = Running::start(&config);
    run.send(batch(
        vec![span(1, 1, None, "a", 0, vec![])],
        Some("team-a"),
    ))
    .await;
    run.send(batch(
        vec![span(
            2,
            1,
            None,
            "b",
            0,
            vec![s("openrouter.api_key_name", "key b")],
        )],
        None,
    ))
    .await;
    run.send(batch(vec![span(3, 1, None, "c", 0, vec![])], None))
        .await;
    let deliveries = run.finish().await;
    assert_eq!(deliveries.len(), 3);
    let keys: Vec<String> = read_all(&server).into_iter().map(|(k, _)| k).collect();
    let folder = |k: &str| format!("production/{k}/2024/01/15/09/2024-01-15");
    let mut expected = vec![
        format!("{}/{}-{T0}.json", folder("team-a"), trace_hex(1)),
        format!("{}/{}-{T0}.json", folder("key b"), trace_hex(2)),
        format!("{}/{}-{T0}.json", folder("default"), trace_hex(3)),
    ];
    expected.sort();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn one_schema_valid_file_per_trace_even_when_split_over_batches() {
    let (dir, server) = server().await;
    let config = s3_config(&server, &dir.path().join("dl"));
    let run = Running::start(&config);
    let generation = span(
        7,
        2,
        Some(1),
        "gpt-4o",
        100,
        vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.request.model", "openai/gpt-4o"),
            d("gen_ai.request.temperature", 0.2),
            s(
                "gen_ai.input.messages",
                r#"[{"role":"user","content":"hi"}]"#,
            ),
            s(
                "gen_ai.output.messages",
                r#"[{"role":"assistant","content":"hello"}]"#,
            ),
            i("gen_ai.usage.input_tokens", 10),
            i("gen_ai.usage.output_tokens", 5),
            d("gen_ai.usage.input_cost", 0.001),
            d("gen_ai.usage.output_cost", 0.002),
            s("gen_ai.provider.name", "openai"),
            s("trace.metadata.env", "prod"),
            s("http.route", "/v1/chat"),
        ],
    );
    let root = span(
        7,
        1,
        None,
        "chat request",
        0,
        vec![
            s("user.id", "user-42"),
            s("session.id", "s-1"),
            s("tracecast.custom_trace_id", "my-trace"),
            s("trace.metadata.env", "prod"),
            s("trace.metadata.team.name", "core"),
        ],
    );
    // Children first, the root in a later request, all within the idle timeout.
    run.send(batch(vec![generation], Some("team-a"))).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    run.send(batch(
        vec![span(7, 3, Some(1), "tool", 200, vec![])],
        Some("team-a"),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    run.send(batch(vec![root], Some("team-a"))).await;
    run.send(batch(vec![span(8, 1, None, "other", 0, vec![])], None))
        .await;
    run.wait_for(2).await;
    let deliveries = run.finish().await;
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");

    let files = read_all(&server);
    assert_eq!(files.len(), 2, "one file per trace");
    let (key, doc) = files.iter().find(|(k, _)| k.contains("my-trace")).unwrap();
    assert_eq!(
        key,
        &format!("openrouter-traces/2024-01-15/my-trace-{T0}.json")
    );
    assert_eq!(doc["id"], "my-trace");
    assert_eq!(doc["otelTraceId"], trace_hex(7));
    assert_eq!(doc["name"], "chat request");
    assert_eq!(doc["timestamp"], "2024-01-15T09:40:00Z");
    assert_eq!(doc["userId"], "user-42");
    assert_eq!(doc["sessionId"], "s-1");
    assert_eq!(doc["apiKeyName"], "team-a");
    assert_eq!(
        doc["metadata"],
        serde_json::json!({"env": "prod", "team.name": "core"})
    );
    assert_eq!(
        doc["input"],
        serde_json::json!({"messages": [{"role": "user", "content": "hi"}]})
    );
    assert_eq!(doc["output"], serde_json::json!({"completion": "hello"}));
    assert_eq!(
        doc["usage"],
        serde_json::json!({"promptTokens": 10, "completionTokens": 5, "totalTokens": 15,
            "totalCost": 0.003})
    );
    let obs = doc["observations"].as_array().unwrap();
    assert_eq!(obs.len(), 3, "all spans of the split trace in one file");
    // Generations first (readers take observations[0] as the request's generation).
    let g = &obs[0];
    assert_eq!(obs[1]["name"], "chat request");
    assert_eq!(g["type"], "GENERATION");
    assert_eq!(g["traceId"], "my-trace");
    assert_eq!(g["parentObservationId"], hex::encode([1u8; 8]));
    assert_eq!(g["model"], "openai/gpt-4o");
    assert_eq!(
        g["modelParameters"],
        serde_json::json!({"temperature": 0.2})
    );
    assert_eq!(
        (
            g["promptTokens"].as_i64(),
            g["completionTokens"].as_i64(),
            g["totalTokens"].as_i64()
        ),
        (Some(10), Some(5), Some(15))
    );
    assert_eq!(g["totalCost"].as_f64(), Some(0.003));
    assert_eq!(g["providerName"], "openai");
    assert_eq!(
        g["metadata"],
        serde_json::json!({"env": "prod", "team.name": "core"})
    );
    assert_eq!(
        g["attributes"],
        serde_json::json!({"gen_ai.operation.name": "chat", "http.route": "/v1/chat"})
    );
    assert_eq!(
        g["resourceAttributes"],
        serde_json::json!({"service.name": "gateway"})
    );
    assert_eq!(obs[2]["type"], "SPAN");
    assert!(
        obs[2].get("input").is_none(),
        "no content attributes: input absent"
    );
}

#[tokio::test]
async fn a_late_span_lands_in_a_second_file_and_the_first_is_untouched() {
    let (dir, server) = server().await;
    let config = s3_config(&server, &dir.path().join("dl"));
    let run = Running::start(&config);
    run.send(batch(vec![span(4, 1, None, "root", 0, vec![])], None))
        .await;
    run.wait_for(1).await;
    let first_key = format!("openrouter-traces/2024-01-15/{}-{T0}.json", trace_hex(4));
    let first = std::fs::read(server.object_path(BUCKET, &first_key)).unwrap();
    // The late child started in the same second: same name, so it gets a distinct one.
    run.send(batch(vec![span(4, 2, Some(1), "late", 300, vec![])], None))
        .await;
    let deliveries = run.finish().await;
    assert_eq!(deliveries.len(), 2);
    let files = read_all(&server);
    assert_eq!(files.len(), 2);
    assert_eq!(
        std::fs::read(server.object_path(BUCKET, &first_key)).unwrap(),
        first
    );
    let second_key = format!("openrouter-traces/2024-01-15/{}-{T0}-2.json", trace_hex(4));
    let (_, second) = files.iter().find(|(k, _)| *k == second_key).unwrap();
    assert_eq!(second["lateFragment"], true);
    assert_eq!(second["observations"].as_array().unwrap().len(), 1);
    assert_eq!(second["observations"][0]["name"], "late");
}

#[tokio::test]
async fn replaying_the_same_trace_does_not_write_a_copy() {
    let (dir, server) = server().await;
    let config = s3_config(&server, &dir.path().join("dl"));
    for _ in 0..2 {
        let run = Running::start(&config);
        run.send(batch(vec![span(5, 1, None, "root", 0, vec![])], None))
            .await;
        run.finish().await;
    }
    assert_eq!(
        read_all(&server).len(),
        1,
        "same bytes under the same key: a replay"
    );
}

#[tokio::test]
async fn the_probe_needs_only_put_object() {
    let (dir, server) = server().await;
    let mut config = s3_config(&server, &dir.path().join("dl"));
    config.access_key_id = Some(S3TestServer::PUT_ONLY_ACCESS_KEY.into());
    config.secret_access_key = Some(S3TestServer::PUT_ONLY_SECRET_KEY.into());
    config.prefix = "production".into();
    config.path_template = "{prefix}/llm-traces/{date}".into();
    // Every test overwrites the same probe object, beside the date folders, not in one.
    for _ in 0..3 {
        exporter(&config).test_connection().await.unwrap();
    }
    assert_eq!(
        server.list_keys(BUCKET),
        vec!["production/llm-traces/.tracecast/connection-test".to_string()]
    );
    // Trace files go through with the same credential (create-only PUT is a PutObject).
    let run = Running::start(&config);
    run.send(batch(vec![span(6, 1, None, "root", 0, vec![])], None))
        .await;
    let d = run.finish().await;
    assert!(matches!(d[0], Delivery::Written { .. }), "{d:?}");
    // The credential cannot read, so a replay cannot be recognised: it gets a distinct name
    // (at least once, never an overwrite). This also shows GetObject is denied.
    let run = Running::start(&config);
    run.send(batch(vec![span(6, 1, None, "root", 0, vec![])], None))
        .await;
    let d = run.finish().await;
    let expected = format!("openrouter-traces/2024-01-15/{}-{T0}-2.json", trace_hex(6));
    let expected = expected.replace("openrouter-traces", "production/llm-traces");
    assert!(
        matches!(&d[0], Delivery::Written { key, .. } if *key == expected),
        "{d:?}"
    );
}

#[test]
fn the_probe_key_is_fixed_and_outside_the_trace_folders() {
    let dir = tempfile::tempdir().unwrap();
    let key = |template: &str, prefix: &str| {
        let config = S3ExporterConfig {
            url: Some(format!("file://{}", dir.path().display())),
            path_template: template.into(),
            prefix: prefix.into(),
            dead_letter_dir: Some(dir.path().join("dl")),
            ..Default::default()
        };
        exporter(&config).probe_key()
    };
    let probe = ".tracecast/connection-test";
    assert_eq!(
        key("openrouter-traces/{date}", ""),
        format!("openrouter-traces/{probe}")
    );
    assert_eq!(
        key("{prefix}/llm/{year}/{month}", "prod"),
        format!("prod/llm/{probe}")
    );
    assert_eq!(key("{apiKeyName}/{date}", ""), probe);
    assert_eq!(key("traces-{date}", ""), probe);
    assert_eq!(
        key("/archive//traces", ""),
        format!("archive/traces/{probe}")
    );
}

#[tokio::test]
async fn connection_test_failures_in_plain_words() {
    let (dir, server) = server().await;
    let base = s3_config(&server, &dir.path().join("dl"));
    let ep = server.endpoint();

    let mut c = base.clone();
    c.bucket = Some("no-such-bucket".into());
    assert_eq!(
        exporter(&c).test_connection().await,
        Err(ExportError::permanent(format!(
            "bucket \"no-such-bucket\" does not exist at {ep}: create it, or fix `bucket` (and `endpoint`/`region`)"
        )))
    );

    let mut c = base.clone();
    c.secret_access_key = Some("wrong-secret".into());
    assert_eq!(
        exporter(&c).test_connection().await,
        Err(ExportError::permanent(format!(
            "signature mismatch at {ep}: the secret access key is wrong, or `region` (us-east-1) is not the bucket's region"
        )))
    );

    let mut c = base.clone();
    c.access_key_id = Some("unknown-key".into());
    assert_eq!(
        exporter(&c).test_connection().await,
        Err(ExportError::permanent(format!(
            "the access key id is not known at {ep}: check `access_key_id` (and that `endpoint` is the right service)"
        )))
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut c = base.clone();
    c.endpoint = Some(dead.clone());
    let err = exporter(&c).test_connection().await.unwrap_err();
    let prefix = format!("cannot reach the S3 endpoint {dead}: check `endpoint` and the network (");
    assert!(err.is_retryable());
    assert!(err.to_string().starts_with(&prefix), "{err}");
}

#[tokio::test]
async fn every_trace_arrives_across_an_s3_outage() {
    let (dir, mut server) = server().await;
    let config = s3_config(&server, &dir.path().join("dl"));
    let run = Running::start(&config);
    run.send(batch(vec![span(10, 1, None, "before", 0, vec![])], None))
        .await;
    run.wait_for(1).await;
    server.stop().await;
    for t in 11..16 {
        run.send(batch(vec![span(t, 1, None, "during", 0, vec![])], None))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.restart().await;
    run.send(batch(vec![span(16, 1, None, "after", 0, vec![])], None))
        .await;
    let deliveries = run.finish().await;
    assert_eq!(deliveries.len(), 7);
    assert!(
        deliveries
            .iter()
            .all(|d| matches!(d, Delivery::Written { .. })),
        "{deliveries:?}"
    );
    let files = read_all(&server);
    assert_eq!(files.len(), 7);
    for t in 10..17 {
        assert!(
            files
                .iter()
                .any(|(_, doc)| doc["otelTraceId"] == trace_hex(t)),
            "trace {t} missing"
        );
    }
}

#[tokio::test]
async fn a_permanent_failure_goes_to_the_dead_letter_folder() {
    let (dir, server) = server().await;
    let dl = dir.path().join("dl");
    let mut config = s3_config(&server, &dl);
    config.bucket = Some("missing-bucket".into());
    let run = Running::start(&config);
    run.send(batch(vec![span(20, 1, None, "root", 0, vec![])], None))
        .await;
    let d = run.finish().await;
    assert!(
        matches!(&d[0], Delivery::DeadLettered { reason, .. } if reason.contains("does not exist")),
        "{d:?}"
    );
    // The shared store's naming rule: `<unix_nanos>-<n>-<key with / as _>`.
    let key = format!("openrouter-traces_2024-01-15_{}-{T0}.json", trace_hex(20));
    let kept: Vec<_> = std::fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{key}")))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    check_schema(&std::fs::read(&kept[0]).unwrap());
    let reason = std::fs::read_to_string(format!("{}.reason.txt", kept[0].display())).unwrap();
    assert!(
        reason.contains("bucket \"missing-bucket\" does not exist"),
        "{reason}"
    );
}

#[tokio::test]
async fn file_url_writes_plain_and_gzip_files() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("traces").join("nested");
    for (compression, ext) in [(Compression::None, "json"), (Compression::Gzip, "json.gz")] {
        let config = S3ExporterConfig {
            url: Some(format!("file://{}", folder.display())),
            trace_idle_timeout: tracecast_config::Duration::from_millis(100),
            compression,
            dead_letter_dir: Some(dir.path().join("dl")),
            ..Default::default()
        };
        exporter(&config).test_connection().await.unwrap();
        let run = Running::start(&config);
        run.send(batch(vec![span(30, 1, None, "root", 0, vec![])], None))
            .await;
        let d = run.finish().await;
        assert!(matches!(d[0], Delivery::Written { .. }), "{d:?}");
        let path = folder.join(format!(
            "openrouter-traces/2024-01-15/{}-{T0}.{ext}",
            trace_hex(30)
        ));
        let bytes = std::fs::read(&path).unwrap();
        let json = if compression == Compression::Gzip {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
                .unwrap();
            out
        } else {
            bytes
        };
        assert_eq!(check_schema(&json)["otelTraceId"], trace_hex(30));
    }
}
