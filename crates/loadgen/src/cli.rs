//! Command line: generate load (default), or `--sink PORT` to run the counting sink.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use http::{HeaderName, HeaderValue};

use crate::body::{BodySource, Encoding};
use crate::generate::{self, LoadConfig};
use crate::payload::PayloadSpec;
use crate::report::{Report, RunInfo, SinkDelta};
use crate::sink::{self, SinkCounters};

#[derive(Debug, Parser)]
#[command(
    name = "tracecast-loadgen",
    version,
    about = "Send gateway-like OTLP/HTTP trace load and report throughput, latency and loss; or run a counting sink (--sink)"
)]
pub struct Cli {
    /// Target traces URL (plain http).
    #[arg(long, default_value = "http://127.0.0.1:4318/v1/traces")]
    pub endpoint: String,
    /// Body encoding.
    #[arg(long, value_enum, default_value_t = Encoding::Protobuf)]
    pub encoding: Encoding,
    /// Gzip request bodies (compressed up front, see --pool).
    #[arg(long)]
    pub gzip: bool,
    /// Gzip level used with --gzip.
    #[arg(long, default_value_t = 6)]
    pub gzip_level: u32,
    /// Distinct bodies (different message text) prepared up front and cycled.
    #[arg(long, default_value_t = 64)]
    pub pool: usize,
    /// Spans per export request.
    #[arg(long, default_value_t = 10)]
    pub spans_per_request: usize,
    /// Spans per trace (a root plus generation spans).
    #[arg(long, default_value_t = 2)]
    pub spans_per_trace: usize,
    /// Extra attributes per generation span (beyond the 12 standard gen_ai.* ones).
    #[arg(long, default_value_t = 0)]
    pub attributes: usize,
    /// KiB of text in each of gen_ai.prompt and gen_ai.completion.
    #[arg(long, default_value_t = 2.0)]
    pub content_kb: f64,
    /// Spans per second; 0 sends as fast as the target answers.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Concurrent keep-alive connections (each has one request in flight).
    #[arg(long, short = 'c', default_value_t = 4)]
    pub connections: usize,
    /// Run length, e.g. 10s, 500ms, 2m.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many spans (whichever of this and --duration comes first).
    #[arg(long)]
    pub total_spans: Option<u64>,
    /// Extra request header `name=value` (repeatable), e.g. `authorization=Bearer x`.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Runtime worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Address of a running `--sink` (host:port): read its counters before and after the run
    /// and report what it received and the loss.
    #[arg(long)]
    pub sink_stats: Option<String>,
    /// Longest wait after the run for the sink's span count to settle.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run the counting OTLP/HTTP sink on 127.0.0.1:PORT instead of generating load.
    #[arg(long, value_name = "PORT")]
    pub sink: Option<u16>,
    /// With --sink or --s3: write the counters as JSON here on SIGTERM/SIGINT.
    #[arg(long)]
    pub stats_file: Option<std::path::PathBuf>,
    /// Run an S3-compatible endpoint on 127.0.0.1:PORT instead of generating load: the
    /// in-process S3 server of the tests (SigV4 checked; access key `bench-access`, secret
    /// `bench-secret`; objects stored as files under --s3-dir/<bucket>/) behind the delaying
    /// proxy, which adds --s3-delay to every request. For the S3 scenario of
    /// bench/compare.sh: a writer measured against real PUT latency.
    #[arg(long, value_name = "PORT")]
    pub s3: Option<u16>,
    /// With --s3: no S3 server on disk; the delaying proxy itself answers as an in-memory
    /// S3 endpoint (PutObject incl. `If-None-Match: *`, GetObject, HeadObject, any bucket;
    /// requires a SigV4 Authorization header but does not verify it), so the endpoint
    /// costs microseconds per PUT beside --s3-delay and the writer under test sets the
    /// pace. GET /_tracecast/stats answers its counters (objects, ...) as JSON while it
    /// runs. --s3-dir and --s3-bucket are not used.
    #[arg(long, requires = "s3")]
    pub s3_sink: bool,
    /// With --s3: where objects are stored.
    #[arg(long, default_value = "target/bench-s3")]
    pub s3_dir: std::path::PathBuf,
    /// With --s3: the bucket created at start.
    #[arg(long, default_value = "bench")]
    pub s3_bucket: String,
    /// With --s3: latency added to every request, e.g. 50ms.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub s3_delay: Duration,
}

/// Credentials the `--s3` endpoint accepts.
pub const S3_ACCESS_KEY: &str = "bench-access";
pub const S3_SECRET_KEY: &str = "bench-secret";

/// Parses `10s`, `250ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 10s, 500ms or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the chosen mode; prints errors in plain words.
pub fn main(cli: Cli) -> ExitCode {
    let threads = cli.threads.max(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        match (cli.sink, cli.s3) {
            (Some(port), _) => run_sink(port, cli.stats_file).await,
            (None, Some(port)) => run_s3(port, &cli).await,
            (None, None) => run_load(cli).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_sink(port: u16, stats_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    eprintln!(
        "sink listening on {} (POST any path; GET /stats)",
        listener.local_addr()?
    );
    let counters = Arc::new(SinkCounters::default());
    let server = tokio::spawn(sink::serve(listener, counters.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    server.abort();
    let stats = serde_json::to_string(&counters.snapshot())?;
    println!("{stats}");
    if let Some(path) = stats_file {
        std::fs::write(&path, format!("{stats}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// What the `--s3` endpoint did, printed (and written to --stats-file) at SIGTERM.
#[derive(Debug, serde::Serialize)]
struct S3Stats {
    /// `sink` (--s3-sink) or `s3s-fs`.
    endpoint: &'static str,
    requests: u64,
    throttled: u64,
    upstream_errors: u64,
    connections: u64,
    peak_in_flight: u64,
    /// Mean milliseconds per forwarded request as the endpoint saw it: arrival to the S3
    /// server's answer (the added delay included), and the S3 server's part alone.
    mean_ms: f64,
    mean_upstream_ms: f64,
    objects: usize,
}

async fn run_s3(port: u16, cli: &Cli) -> anyhow::Result<()> {
    use tracecast_test_util::{DelayProxy, S3TestServer};
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    // The s3s server stays alive as long as the proxy forwards to it.
    let mut server = None;
    let proxy = if cli.s3_sink {
        let proxy = DelayProxy::start_sink(listen, cli.s3_delay)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!(
            "s3 endpoint {} (in-memory sink, any bucket, +{:?} per request; SigV4 header required, not verified; GET {}{} for counters)",
            proxy.endpoint(),
            cli.s3_delay,
            proxy.endpoint(),
            tracecast_test_util::delay_proxy::STATS_PATH
        );
        proxy
    } else {
        let s = S3TestServer::start(&cli.s3_dir, S3_ACCESS_KEY, S3_SECRET_KEY).await;
        s.create_bucket(&cli.s3_bucket);
        let proxy = DelayProxy::start_on(listen, s.addr(), cli.s3_delay)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!(
            "s3 endpoint {} (bucket {:?} under {}, +{:?} per request; access key {S3_ACCESS_KEY}, secret {S3_SECRET_KEY})",
            proxy.endpoint(),
            cli.s3_bucket,
            cli.s3_dir.display(),
            cli.s3_delay
        );
        server = Some(s);
        proxy
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let p = proxy.stats();
    let objects = match &server {
        Some(s) => s.list_keys(&cli.s3_bucket).len(),
        None => proxy.object_count(),
    };
    let stats = serde_json::to_string(&S3Stats {
        endpoint: if cli.s3_sink { "sink" } else { "s3s-fs" },
        requests: p.requests,
        throttled: p.throttled,
        upstream_errors: p.upstream_errors,
        connections: p.connections,
        peak_in_flight: p.peak_in_flight,
        mean_ms: p.total_us as f64 / p.forwarded.max(1) as f64 / 1000.0,
        mean_upstream_ms: p.upstream_us as f64 / p.forwarded.max(1) as f64 / 1000.0,
        objects,
    })?;
    println!("{stats}");
    if let Some(path) = &cli.stats_file {
        std::fs::write(path, format!("{stats}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn resolve(host_port: &str) -> anyhow::Result<SocketAddr> {
    host_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{host_port}`"))?
        .next()
        .with_context(|| format!("`{host_port}` resolves to no address"))
}

async fn run_load(cli: Cli) -> anyhow::Result<()> {
    let uri: http::Uri = cli
        .endpoint
        .parse()
        .with_context(|| format!("`{}` is not a URL", cli.endpoint))?;
    if uri.scheme_str() != Some("http") {
        bail!("--endpoint must be an http:// URL (the generator speaks plain HTTP/1.1)");
    }
    let Some(authority) = uri.authority() else {
        bail!("--endpoint `{}` has no host", cli.endpoint);
    };
    let host = authority.to_string();
    let addr = resolve(&format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    ))?;
    let mut headers = Vec::new();
    for h in &cli.headers {
        let Some((name, value)) = h.split_once('=') else {
            bail!("--header `{h}` must be name=value");
        };
        headers.push((
            HeaderName::try_from(name.trim())
                .with_context(|| format!("bad header name `{name}`"))?,
            HeaderValue::try_from(value.trim())
                .with_context(|| format!("bad value for header `{name}`"))?,
        ));
    }
    if cli.spans_per_request == 0 {
        bail!("--spans-per-request must be at least 1");
    }
    let sink_addr = cli.sink_stats.as_deref().map(resolve).transpose()?;

    let spec = PayloadSpec {
        spans_per_request: cli.spans_per_request,
        spans_per_trace: cli.spans_per_trace.max(1),
        extra_attributes: cli.attributes,
        content_bytes: (cli.content_kb.max(0.0) * 1024.0) as usize,
        seed: 1,
    };
    let gzip_level = cli.gzip.then_some(cli.gzip_level);
    let bodies = Arc::new(BodySource::prepare(
        &spec,
        cli.encoding,
        gzip_level,
        cli.pool,
    ));
    let rate = (cli.rate > 0.0).then_some(cli.rate);
    let config = LoadConfig {
        addr,
        host,
        path: uri.path().to_string(),
        encoding: cli.encoding,
        gzip: cli.gzip,
        spans_per_request: cli.spans_per_request,
        connections: cli.connections.max(1),
        rate,
        duration: cli.duration,
        total_spans: cli.total_spans,
        headers,
    };

    let before = match sink_addr {
        Some(a) => Some(
            generate::fetch_sink_stats(a)
                .await
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let result = generate::run(config, bodies.clone()).await;
    let sink = match (sink_addr, before) {
        (Some(a), Some(before)) => {
            let after = settle(a, before.spans + result.accepted_spans, cli.drain).await?;
            Some(SinkDelta::between(before, after, result.accepted_spans))
        }
        _ => None,
    };
    let report = Report::new(
        RunInfo {
            target: cli.endpoint.clone(),
            encoding: format!("{:?}", cli.encoding).to_lowercase(),
            gzip: cli.gzip,
            spans_per_request: cli.spans_per_request,
            body_bytes: bodies.wire_size(),
            connections: cli.connections.max(1),
            rate,
        },
        &result,
        sink,
    );
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Polls the sink until it has `expect` spans, or its count stopped moving for a second, or
/// `max_wait` passed.
async fn settle(
    addr: SocketAddr,
    expect: u64,
    max_wait: Duration,
) -> anyhow::Result<sink::SinkStats> {
    let give_up = Instant::now() + max_wait;
    let mut last = generate::fetch_sink_stats(addr)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut last_change = Instant::now();
    while last.spans < expect && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = generate::fetch_sink_stats(addr)
            .await
            .map_err(anyhow::Error::msg)?;
        if now.spans != last.spans {
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(1) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }
}
