//! `Content-Encoding: zstd` on a real socket: bodies compressed by the reference `zstd`
//! CLI (an independent implementation, installed by scripts/setup-test-deps.sh) and by
//! `ruzstd`'s encoder are accepted; a zstd bomb gets 413 without inflating past the body
//! limit; a frame declaring an absurd window and a corrupt frame get 400.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use prost::Message;
use support::{client, request, start};
use tracecast_config::ByteSize;
use tracecast_receiver_otlp::Status;

const PROTOBUF: &str = "application/x-protobuf";

/// `data` compressed by the zstd CLI at `level`, in one frame.
fn zstd_cli(data: &[u8], level: &str) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args([level, "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the zstd CLI (scripts/setup-test-deps.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

async fn post_zstd(url: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", PROTOBUF)
        .header("content-encoding", "zstd")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn zstd_bodies_from_the_cli_and_ruzstd_are_accepted() {
    let s = start("otlp/zstd", |_| {}).await;
    let sent = request(20);
    let body = sent.encode_to_vec();
    let two_frames = [zstd_cli(&body[..100], "-3"), zstd_cli(&body[100..], "-1")].concat();
    for (what, compressed) in [
        ("cli level 3", zstd_cli(&body, "-3")),
        ("cli level 19", zstd_cli(&body, "-19")),
        (
            "ruzstd",
            ruzstd::encoding::compress_to_vec(
                &body[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        ),
        ("two frames", two_frames),
    ] {
        let resp = post_zstd(&s.url, compressed).await;
        assert_eq!(resp.status(), 200, "{what}");
    }
    let batches = s.sink.batches();
    assert_eq!(batches.len(), 4);
    for batch in &batches {
        assert_eq!(batch.request(), &sent);
    }
}

#[tokio::test]
async fn a_zstd_bomb_is_413_without_inflating_past_the_limit() {
    // 1 MiB body limit and a decompression budget of exactly one body: had the receiver
    // inflated more than 1 MiB, the budget would have answered 503 instead of 413.
    let s = start("otlp/zstdbomb", |c| {
        c.max_request_body_size = ByteSize::mib(1);
        c.max_decompressing_size = Some(ByteSize::mib(1));
    })
    .await;
    let bomb = zstd_cli(&vec![0u8; 256 * 1024 * 1024], "-19");
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let resp = post_zstd(&s.url, bomb).await;
    assert_eq!(resp.status(), 413);
    let status = Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(
        status
            .message
            .contains("the decompressed request body is larger than max_request_body_size"),
        "{}",
        status.message
    );
    assert!(s.sink.batches().is_empty());
}

#[tokio::test]
async fn a_huge_window_or_a_corrupt_frame_is_400() {
    let s = start("otlp/zstdbad", |_| {}).await;
    // Frame magic, descriptor 0 (no single segment, no content size), window descriptor
    // 0xF8: a 2 TiB window, then an empty raw last block.
    let huge_window = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xF8, 0x01, 0x00, 0x00];
    let mut corrupt = zstd_cli(&request(5).encode_to_vec(), "-3");
    let n = corrupt.len();
    corrupt.truncate(n - 7);
    for (what, body) in [("huge window", huge_window), ("truncated", corrupt)] {
        let resp = post_zstd(&s.url, body).await;
        assert_eq!(resp.status(), 400, "{what}");
        let status = Status::decode(resp.bytes().await.unwrap()).unwrap();
        assert!(
            status.message.contains("not valid zstd"),
            "{what}: {}",
            status.message
        );
    }
    assert!(s.sink.batches().is_empty());
}
