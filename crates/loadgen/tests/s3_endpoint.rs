//! `tracecast-loadgen --s3`: the bench's S3 endpoint (the tests' S3 server behind the
//! delaying proxy), run as the real binary: it serves, forwards to the S3 server (which
//! answers an unsigned request itself), and reports its counters at SIGTERM; with
//! `--s3-sink` it answers itself from memory and serves its counters while running; a port
//! already taken is an error in plain words.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("--s3 endpoint never listened: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn serves_forwards_and_reports_at_sigterm() {
    let dir = tempfile_dir();
    let port = free_port();
    let stats = dir.join("stats.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecast-loadgen"))
        .args([
            "--s3",
            &port.to_string(),
            "--s3-delay",
            "5ms",
            "--s3-bucket",
            "b",
        ])
        .arg("--s3-dir")
        .arg(dir.join("s3"))
        .arg("--stats-file")
        .arg(&stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A failed assertion below must not leave the endpoint running.
    let mut guard = KillOnDrop(Some(child.id()));
    let mut s = connect(port);
    s.write_all(
        format!("GET /b/x HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    // The S3 server's own error document (an unsigned request is refused there).
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(
        answer.contains("<Error>") && answer.contains("<Code>"),
        "{answer}"
    );
    assert!(dir.join("s3").join("b").is_dir(), "bucket created");
    let v = stop_and_read_stats(&mut child, &mut guard);
    assert_eq!(v["requests"], 1, "{v}");
    assert_eq!(v["connections"], 1, "{v}");
    assert_eq!(v["objects"], 0, "{v}");
    assert_eq!(v["endpoint"], "s3s-fs", "{v}");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(file, v);
    let _ = std::fs::remove_dir_all(dir);
}

/// One HTTP/1.1 exchange on a new connection; the whole answer as text.
fn exchange(port: u16, request: &str) -> String {
    let mut s = connect(port);
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_sink_stores_counts_while_running_and_reports_at_sigterm() {
    let dir = tempfile_dir();
    let port = free_port();
    let stats = dir.join("stats.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecast-loadgen"))
        .args(["--s3", &port.to_string(), "--s3-sink", "--s3-delay", "5ms"])
        .arg("--stats-file")
        .arg(&stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(Some(child.id()));
    let put = |key: &str, auth: &str| {
        exchange(
            port,
            &format!(
                "PUT /bench/{key} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}content-length: 5\r\nif-none-match: *\r\nconnection: close\r\n\r\nhello"
            ),
        )
    };
    let signed = "authorization: AWS4-HMAC-SHA256 Credential=bench-access/x, Signature=0\r\n";
    let answer = put("t/1.json", signed);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_lowercase().contains("etag: \""), "{answer}");
    let answer = put("t/1.json", signed);
    assert!(answer.starts_with("HTTP/1.1 412"), "{answer}");
    assert!(
        answer.contains("<Code>PreconditionFailed</Code>"),
        "{answer}"
    );
    // Unsigned: refused, not stored.
    let answer = put("t/2.json", "");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = exchange(
        port,
        &format!(
            "GET /_tracecast/stats HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n"
        ),
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let live: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(live["objects"], 1, "{live}");
    assert_eq!(live["precondition_failed"], 1, "{live}");
    assert_eq!(live["denied"], 1, "{live}");
    let v = stop_and_read_stats(&mut child, &mut guard);
    assert_eq!(v["endpoint"], "sink", "{v}");
    assert_eq!(v["objects"], 1, "{v}");
    assert_eq!(v["requests"], 3, "{v}");
    assert!(v["mean_ms"].as_f64().unwrap() >= 5.0, "{v}");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(file, v);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_port_in_use_is_refused_in_plain_words() {
    let dir = tempfile_dir();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_tracecast-loadgen"))
        .args(["--s3", &port.to_string()])
        .arg("--s3-dir")
        .arg(dir.join("s3"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "loadgen-s3-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Stops the endpoint (SIGTERM) when dropped, so a failed assertion does not leave it running.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// Stops the endpoint with SIGTERM (it must exit 0) and returns the stats JSON it printed.
fn stop_and_read_stats(
    child: &mut std::process::Child,
    guard: &mut KillOnDrop,
) -> serde_json::Value {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    guard.0 = None;
    let mut printed = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert!(status.success(), "{status:?}");
    serde_json::from_str(printed.trim()).unwrap()
}
