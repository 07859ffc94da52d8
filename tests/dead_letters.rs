//! `tracecast dead-letters list | resend` with the real binary: a batch the OTLP backend
//! rejects (400) and a trace the S3 server refuses (no such bucket) are dead-lettered by the
//! running daemon, listed with their reason, and delivered by `resend` once the destination
//! is fixed; a resend against a still-failing backend keeps the dead letter and exits 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use prost::Message;
use tracecast_core::ExportTraceServiceRequest;
use tracecast_tests::fixtures::{child_span, request_from_spans, request_with_named_spans, span};
use tracecast_tests::{
    free_port, local, post_protobuf, tracecast_bin, wait_for_listener, Daemon, Exporter,
    RecordingOtlpServer, Response, S3TestServer, TestConfig,
};

const AK: &str = "dl-access-key";
const SK: &str = "dl-secret-key";

/// Runs `tracecast <args>` in `cwd` (the default dead-letter folders are relative to it).
async fn tracecast(cwd: &Path, args: &[&str]) -> Output {
    let (cwd, args): (PathBuf, Vec<String>) = (
        cwd.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        Command::new(tracecast_bin())
            .args(&args)
            .current_dir(&cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Files directly in `dir` whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the daemon on `config`, posts `request`, waits for `dead_letter` to hold a file
/// ending in `suffix`, then stops it with SIGTERM (exit 0).
async fn dead_letter_one(
    cwd: &Path,
    config: &Path,
    port: u16,
    request: &ExportTraceServiceRequest,
    dead_letter: &Path,
    suffix: &str,
) {
    let daemon = Daemon::spawn(
        cwd,
        &[
            "run",
            "--skip-connection-test",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let addr = local(port);
    assert!(
        wait_for_listener(addr, Duration::from_secs(20)),
        "tracecast did not listen: {}",
        daemon.log_text()
    );
    let answer = post_protobuf(&reqwest::Client::new(), addr, request)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let dl = dead_letter.to_path_buf();
    let suffix_owned = suffix.to_string();
    wait_for("the dead letter", Duration::from_secs(20), move || {
        !files(&dl, &suffix_owned).is_empty()
    })
    .await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_rejected_batch_is_listed_kept_on_failure_and_resent_once_accepted() {
    let backend = RecordingOtlpServer::start().await;
    backend.set_default(Response::status(400).body("span rejected by policy"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("otlp.yaml");
    let yaml = TestConfig::new(port)
        .exporter(Exporter::otlp("otlp/backend", backend.endpoint()).protobuf())
        .shutdown_timeout("10s")
        .admin_port(0)
        .yaml();
    std::fs::write(&config, yaml).unwrap();
    let cfg = config.to_str().unwrap();
    // No dead_letter_dir: the default folder, relative to the working directory.
    let dl = dir.path().join("tracecast-data/dead-letter/otlp_backend");
    let request = request_with_named_spans("dl", 4);
    dead_letter_one(dir.path(), &config, port, &request, &dl, ".pb").await;
    assert_eq!(files(&dl, ".pb").len(), 1);
    assert!(backend.spans().is_empty());

    let out = tracecast(dir.path(), &["dead-letters", "list", "--config", cfg]).await;
    let listed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{listed}");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("otlp/backend  "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("a line for the exporter: {listed}"));
    assert!(line.contains("otlp_backend/"), "{line}");
    assert!(line.contains(".pb"), "{line}");
    assert!(line.contains("spans=4"), "{line}");
    assert!(line.contains("rejected"), "{line}");
    assert!(line.contains("HTTP 400"), "{line}");
    assert!(line.contains("span rejected by policy"), "{line}");
    assert!(
        listed.contains("1 dead letter(s) in 1 exporter(s)"),
        "{listed}"
    );

    // The backend still refuses: the batch is dead-lettered again, nothing is lost.
    let before = backend.request_count();
    let out = tracecast(dir.path(), &["dead-letters", "resend", "--config", cfg]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("otlp/backend: 0 resent, 1 failed again"),
        "{}",
        text(&out)
    );
    assert_eq!(backend.request_count(), before + 1, "one attempt, rejected");
    let kept = files(&dl, ".pb");
    assert_eq!(kept.len(), 1, "the dead letter stays");
    assert!(!dl.join("resending").exists());
    let stored =
        ExportTraceServiceRequest::decode(std::fs::read(&kept[0]).unwrap().as_slice()).unwrap();
    assert_eq!(stored, request, "the same spans are kept");

    // A crash mid-resend left it in resending/: the next resend picks it up from there.
    let resending = dl.join("resending");
    std::fs::create_dir(&resending).unwrap();
    let name = kept[0].file_name().unwrap();
    std::fs::rename(&kept[0], resending.join(name)).unwrap();
    let mut reason = kept[0].clone().into_os_string();
    reason.push(".reason.txt");
    let mut moved_reason = resending.join(name).into_os_string();
    moved_reason.push(".reason.txt");
    std::fs::rename(&reason, &moved_reason).unwrap();

    backend.set_default(Response::ok());
    let out = tracecast(
        dir.path(),
        &[
            "dead-letters",
            "resend",
            "--config",
            cfg,
            "--exporter",
            "otlp/backend",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("otlp/backend: 1 resent, 0 failed again"),
        "{}",
        text(&out)
    );
    let mut names = backend.span_names();
    names.sort();
    assert_eq!(names, ["dl-0", "dl-1", "dl-2", "dl-3"], "every span, once");
    assert!(files(&dl, "").is_empty(), "the folder is empty");
    assert!(!resending.exists());

    let out = tracecast(dir.path(), &["dead-letters", "list", "--config", cfg]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("0 dead letter(s)"), "{}", text(&out));

    // An unknown exporter id is a usage error naming the configured ones.
    let out = tracecast(
        dir.path(),
        &[
            "dead-letters",
            "resend",
            "--config",
            cfg,
            "--exporter",
            "otlp/x",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("configured: otlp/backend"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_trace_refused_for_a_missing_bucket_is_uploaded_under_its_key_by_resend() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    let port = free_port();
    let dl = dir.path().join("dl-s3");
    let config = dir.path().join("s3.yaml");
    let yaml = TestConfig::new(port)
        .exporter(
            Exporter::s3("s3/archive", "traces", s3.endpoint(), AK, SK)
                .path_template("{prefix}/{date}")
                .prefix("prod")
                .trace_idle_timeout("200ms")
                .dead_letter_dir(&dl),
        )
        .shutdown_timeout("10s")
        .admin_port(0)
        .yaml();
    std::fs::write(&config, yaml).unwrap();
    let cfg = config.to_str().unwrap();
    let root = span("archived-root");
    let child = child_span(&root, "archived-child");
    let request = request_from_spans(vec![root, child]);
    // The bucket does not exist yet: the trace is refused for good and dead-lettered.
    dead_letter_one(dir.path(), &config, port, &request, &dl, ".json").await;
    let kept = files(&dl, ".json");
    assert_eq!(kept.len(), 1, "{kept:?}");
    let body = std::fs::read(&kept[0]).unwrap();
    let reason = std::fs::read_to_string(format!("{}.reason.txt", kept[0].display())).unwrap();
    let key = reason
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_string();
    assert!(key.starts_with("prod/"), "{key}");

    let out = tracecast(dir.path(), &["dead-letters", "list", "--config", cfg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("s3/archive  "), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));

    s3.create_bucket("traces");
    let out = tracecast(dir.path(), &["dead-letters", "resend", "--config", cfg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("s3/archive: 1 resent, 0 failed again"),
        "{}",
        text(&out)
    );
    assert_eq!(
        s3.list_keys("traces"),
        vec![key.clone()],
        "the original key"
    );
    assert_eq!(std::fs::read(s3.object_path("traces", &key)).unwrap(), body);
    assert!(files(&dl, "").is_empty(), "trace and reason file removed");
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(doc.to_string().contains("archived-child"), "{doc}");
}
