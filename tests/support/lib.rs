//! Support for the end-to-end tests in `tests/`: the built `tracecast` binary, the real
//! client installs (`scripts/setup-test-deps.sh`), and a daemon process handle. Shared fakes
//! and fixtures live in `tracecast-test-util`. [`TestConfig`] builds a test's tracecast YAML.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use tracecast_test_util::*;

mod config;
pub use config::{yaml_map, yaml_str, Exporter, TestConfig};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `tracecast` binary of this build (target/<profile>/tracecast), built if missing.
/// `cargo test --workspace` builds it; after changing the daemon, `cargo test -p
/// tracecast-tests` alone does not, so run `cargo build -p tracecast` first (scripts/test.sh
/// does).
pub fn tracecast_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let bin = profile_dir.join("tracecast");
    BUILD.call_once(|| {
        if !bin.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "tracecast"])
                .current_dir(repo_root())
                .status()
                .expect("cargo build -p tracecast");
            assert!(status.success(), "cargo build -p tracecast failed");
        }
    });
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// The Python with the OpenTelemetry SDK installed by scripts/setup-test-deps.sh.
pub fn python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-test-deps.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Runs `tests/python/<script>` with [`python`] and `args`, off the async runtime (the SDK
/// sends synchronously), and returns what it printed; the caller judges the outcome.
pub async fn run_python_script(script: &str, args: Vec<String>) -> std::process::Output {
    let script = repo_root().join("tests/python").join(script);
    tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(&script)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{} does not run: {e}", script.display()))
    })
    .await
    .expect("the python sender's thread")
}

/// The folder with the Node OTLP/JSON client installed by scripts/setup-test-deps.sh.
pub fn node_dir() -> PathBuf {
    let d = repo_root().join("tests/node");
    assert!(
        d.join("node_modules/@opentelemetry/exporter-trace-otlp-http")
            .exists(),
        "Node OTLP exporter missing: run scripts/setup-test-deps.sh (scripts/test.sh does)"
    );
    d
}

/// A free port on 127.0.0.1 for a daemon to listen on, chosen below the kernel's ephemeral
/// range (32768+ by default): servers that bind port 0 (recording servers, a daemon's admin
/// endpoint) take ephemeral ports, so they can never grab it between this check and the
/// daemon's bind. Random, so parallel tests rarely pick the same one.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(20000..32000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000 on 127.0.0.1")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_listener(addr: SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `127.0.0.1:<port>`.
/// Peak resident memory (`VmHWM`) of process `pid` in bytes; 0 when it cannot be read.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Posts `request` as uncompressed OTLP protobuf to `http://<addr>/v1/traces`.
pub async fn post_protobuf(
    client: &reqwest::Client,
    addr: SocketAddr,
    request: &tracecast_core::ExportTraceServiceRequest,
) -> reqwest::Result<reqwest::Response> {
    use prost::Message;
    client
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
}

/// A `tracecast` process, killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `tracecast <args>` in `cwd`, logging to `<cwd>/tracecast.log`.
    pub fn spawn(cwd: &Path, args: &[&str]) -> Daemon {
        Self::spawn_env(cwd, args, &[])
    }

    /// [`Daemon::spawn`] with extra environment variables (e.g. the test components).
    pub fn spawn_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = cwd.join("tracecast.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(tracecast_bin())
            .args(args)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn tracecast");
        Daemon { child, log }
    }

    /// Writes `yaml` to `<dir>/<name>.yaml`, runs `tracecast run --config <file> <extra...>`
    /// in `dir` and waits until `addr` accepts connections.
    pub fn run_config(
        dir: &Path,
        name: &str,
        yaml: &str,
        extra: &[&str],
        addr: SocketAddr,
    ) -> Daemon {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write the config");
        let mut args = vec!["run", "--config", path.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        let daemon = Daemon::spawn(dir, &args);
        assert!(
            wait_for_listener(addr, Duration::from_secs(30)),
            "tracecast did not listen on {addr}: {}",
            daemon.log_text()
        );
        daemon
    }

    /// SIGTERM, then waits (off the async runtime) for the exit; returns (code, log).
    pub async fn terminate(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        tokio::task::spawn_blocking(move || {
            (self.wait_exit(Duration::from_secs(60)), self.log_text())
        })
        .await
        .expect("waiting for tracecast")
    }

    /// SIGKILL, then waits for the process to be gone.
    pub async fn kill(mut self) {
        self.signal("KILL");
        tokio::task::spawn_blocking(move || self.wait_exit(Duration::from_secs(10)))
            .await
            .expect("waiting for tracecast");
    }

    /// Sends a signal (e.g. "TERM", "KILL") with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit up to `timeout`; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
