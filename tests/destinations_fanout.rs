//! The gateway's per-destination settings as tracecast pipelines, through the real binary:
//! one receiver with two ingest keys feeds three destinations:
//!
//! - `traces/archive`: everything, with content, to S3 (the in-process S3 server);
//! - `traces/saas`: Privacy Mode and `sampling` 0.25 to an OTLP backend;
//! - `traces/team-a`: `filter api_key_name equals team-a` (key scoping) to a second OTLP
//!   backend.
//!
//! Half the traces arrive split over two requests. Each destination receives exactly the
//! expected spans: the archive one complete trace file per trace, the SaaS backend exactly
//! the traces the consistent-probability rule keeps at 0.25 (whole, without content, with
//! the ratio recorded), the team backend exactly team-a's traces.

mod destinations;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use destinations::{
    attr, consistent_keep, exporter_sent, llm_trace, post, processor_dropped, processor_in,
    wait_for,
};
use serde_json::Value;
use tracecast_core::proto::common::v1::any_value::Value as Av;
use tracecast_core::proto::trace::v1::Span;
use tracecast_tests::{
    free_port, local, Daemon, Exporter, RecordingOtlpServer, S3TestServer, TestConfig,
};

const AK: &str = "fanout-access-key";
const SK: &str = "fanout-secret-key";
const TRACES: usize = 120;

fn trace_ids(spans: &[Span]) -> BTreeSet<Vec<u8>> {
    spans.iter().map(|s| s.trace_id.clone()).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_receives_exactly_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("archive");
    let saas = RecordingOtlpServer::start().await;
    let team = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = TestConfig::new(port)
        .api_key("team-a", "token-a")
        .api_key("team-b", "token-b")
        .processor("metadata")
        .processor("privacy")
        .processor_with("sampling/saas", "{ratio: 0.25}")
        .processor_with(
            "filter/team-a",
            "{include: [{rules: [{field: api_key_name, operator: equals, value: team-a}]}]}",
        )
        .exporter(
            Exporter::s3("s3/archive", "archive", s3.endpoint(), AK, SK)
                .path_template("{apiKeyName}/{date}")
                .trace_idle_timeout("1s"),
        )
        .exporter(
            Exporter::otlp("otlp/saas", saas.endpoint())
                .protobuf()
                .compression("none"),
        )
        .exporter(
            Exporter::otlp("otlp/team-a", team.endpoint())
                .protobuf()
                .compression("none"),
        )
        .pipeline("traces/archive", &["metadata"], &["s3/archive"])
        .pipeline(
            "traces/saas",
            &["metadata", "privacy", "sampling/saas"],
            &["otlp/saas"],
        )
        .pipeline(
            "traces/team-a",
            &["metadata", "filter/team-a"],
            &["otlp/team-a"],
        )
        .queue_dir(dir.path().join("queue"))
        .admin_port(admin)
        .yaml();
    let daemon = Daemon::run_config(dir.path(), "fanout", &yaml, &[], local(port));

    // 120 traces of 3 spans, alternately from team-a's and team-b's key; every other trace
    // split (root alone, then its two children).
    let client = reqwest::Client::new();
    let mut all: Vec<(Vec<Span>, &str)> = Vec::new();
    for i in 0..TRACES {
        let key = if i % 2 == 0 { "team-a" } else { "team-b" };
        let spans = llm_trace(
            &format!("user-{i}"),
            &format!("session-{}", i / 3),
            "openai/gpt-4o",
            &format!("SECRET-PROMPT-{i}"),
            0.002,
        );
        let token = if key == "team-a" {
            "token-a"
        } else {
            "token-b"
        };
        if i % 4 < 2 {
            post(&client, local(port), spans.clone(), Some(token)).await;
        } else {
            post(&client, local(port), spans[..1].to_vec(), Some(token)).await;
            post(&client, local(port), spans[1..].to_vec(), Some(token)).await;
        }
        all.push((spans, key));
    }
    let total = (TRACES * 3) as u64;
    let saas_expected: BTreeSet<Vec<u8>> = all
        .iter()
        .map(|(t, _)| t[0].trace_id.clone())
        .filter(|id| consistent_keep(id, 0.25))
        .collect();
    let team_expected: BTreeSet<Vec<u8>> = all
        .iter()
        .filter(|(_, key)| *key == "team-a")
        .map(|(t, _)| t[0].trace_id.clone())
        .collect();
    let saas_spans = saas_expected.len() as u64 * 3;
    let team_spans = team_expected.len() as u64 * 3;
    wait_for(
        local(admin),
        &daemon,
        &[
            (&processor_in("sampling/saas"), total),
            (
                &processor_dropped("sampling/saas", "sampled_out"),
                total - saas_spans,
            ),
            (&exporter_sent("otlp/saas"), saas_spans),
            (&processor_in("filter/team-a"), total),
            (
                &processor_dropped("filter/team-a", "filtered"),
                total - team_spans,
            ),
            (&exporter_sent("otlp/team-a"), team_spans),
        ],
    )
    .await;

    // SaaS: the sampled traces, whole, without content, with the ratio recorded.
    let saas_received = saas.spans();
    assert_eq!(saas_received.len() as u64, saas_spans);
    assert_eq!(trace_ids(&saas_received), saas_expected);
    for s in &saas_received {
        assert_eq!(attr(s, "sampling.ratio"), Some(&Av::DoubleValue(0.25)));
        assert_eq!(s.trace_state, "ot=th:c");
    }
    let saas_bodies: Vec<u8> = saas
        .requests()
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    assert!(!contains(&saas_bodies, "SECRET-PROMPT"), "Privacy Mode");

    // team-a: exactly its own traces, content included.
    let team_received = team.spans();
    assert_eq!(team_received.len() as u64, team_spans);
    assert_eq!(trace_ids(&team_received), team_expected);
    let team_bodies: Vec<u8> = team
        .requests()
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    assert!(contains(&team_bodies, "SECRET-PROMPT-0"));
    assert!(
        !contains(&team_bodies, "SECRET-PROMPT-1\""),
        "team-b's traces"
    );

    // Archive: one complete file per trace, under its key's folder.
    let deadline = Instant::now() + Duration::from_secs(60);
    let files = loop {
        let files: Vec<String> = s3
            .list_keys("archive")
            .into_iter()
            .filter(|k| !k.contains(".tracecast/"))
            .collect();
        if files.len() >= TRACES {
            break files;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {TRACES} trace files:\n{}",
            files.len(),
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(files.len(), TRACES);
    let mut archived = BTreeSet::new();
    for key in &files {
        let bytes = std::fs::read(s3.object_path("archive", key)).unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        let id = doc["id"].as_str().unwrap().to_string();
        let (spans, api_key) = all
            .iter()
            .find(|(t, _)| hex::encode(&t[0].trace_id) == id)
            .unwrap_or_else(|| panic!("{key}: unknown trace {id}"));
        assert!(key.starts_with(&format!("{api_key}/")), "{key}");
        assert_eq!(doc["apiKeyName"], *api_key);
        let observations = doc["observations"].as_array().unwrap();
        assert_eq!(observations.len(), spans.len(), "{key}: a complete trace");
        let i: usize = spans[0]
            .attributes
            .iter()
            .find(|kv| kv.key == "user")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(Av::StringValue(s)) => s.strip_prefix("user-")?.parse().ok(),
                _ => None,
            })
            .unwrap();
        assert!(
            contains(&bytes, &format!("SECRET-PROMPT-{i}")),
            "{key}: content"
        );
        archived.insert(id);
    }
    assert_eq!(archived.len(), TRACES, "one file per trace");

    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
