//! [`TestConfig`]: the tracecast YAML of an end-to-end test, built instead of hand-written.
//!
//! ```
//! use tracecast_tests::{Exporter, TestConfig};
//! let yaml = TestConfig::new(4318)
//!     .exporter(Exporter::otlp("otlp/backend", "http://127.0.0.1:9/v1/traces").protobuf())
//!     .shutdown_timeout("5s")
//!     .no_admin()
//!     .yaml();
//! assert!(yaml.contains("exporters: [otlp/backend]"));
//! ```
//!
//! One OTLP receiver named `otlp`; without [`TestConfig::pipeline`], one pipeline `traces`
//! from it through every processor and into every exporter, in the order they were added.
//! Typed setters quote their values when YAML would read them otherwise; [`Exporter::set`],
//! [`TestConfig::receiver_option`], [`TestConfig::queue`] and [`TestConfig::service`] take
//! YAML text as it is (`"{max_attempts: 3}"`, `"8MiB"`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A scalar as YAML: plain when that reads back as the same string, else double-quoted.
pub fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !s.starts_with(['-', '.'])
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
        );
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{k: v, ...}` with every key and value quoted as needed.
pub fn yaml_map(pairs: &[(&str, &str)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", yaml_str(k), yaml_str(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn path_str(path: &Path) -> String {
    yaml_str(path.to_str().expect("utf-8 path"))
}

/// Ordered `key: <yaml>` lines, the last value of a key winning.
#[derive(Clone, Debug, Default)]
struct Settings(Vec<(String, String)>);

impl Settings {
    fn set(&mut self, key: &str, yaml: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = yaml,
            None => self.0.push((key.to_string(), yaml)),
        }
    }

    fn write(&self, out: &mut String, indent: &str) {
        for (k, v) in &self.0 {
            let _ = writeln!(out, "{indent}{k}: {v}");
        }
    }
}

/// One exporter of a [`TestConfig`]: its id (`otlp/backend`, `s3`) and settings in order.
#[derive(Clone, Debug)]
pub struct Exporter {
    id: String,
    settings: Settings,
}

impl Exporter {
    /// An OTLP/HTTP exporter sending to `endpoint` (a URL).
    pub fn otlp(id: &str, endpoint: impl AsRef<str>) -> Exporter {
        Exporter::new(id).endpoint(endpoint)
    }

    /// An S3 exporter writing to `bucket` on the server at `endpoint` with the given keys.
    pub fn s3(
        id: &str,
        bucket: &str,
        endpoint: impl AsRef<str>,
        key_id: &str,
        secret: &str,
    ) -> Exporter {
        Exporter::new(id)
            .bucket(bucket)
            .endpoint(endpoint)
            .keys(key_id, secret)
    }

    /// An S3 exporter writing trace files under `url` (`file://...`).
    pub fn s3_url(id: &str, url: impl AsRef<str>) -> Exporter {
        Exporter::new(id).set("url", yaml_str(url.as_ref()))
    }

    /// An exporter with no settings yet.
    pub fn new(id: &str) -> Exporter {
        Exporter {
            id: id.to_string(),
            settings: Settings::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Any setting, `yaml` as written (`"{queue_size: 1}"`, `"4096"`).
    pub fn set(mut self, key: &str, yaml: impl Into<String>) -> Exporter {
        self.settings.set(key, yaml.into());
        self
    }

    fn str(self, key: &str, value: &str) -> Exporter {
        self.set(key, yaml_str(value))
    }

    pub fn endpoint(self, endpoint: impl AsRef<str>) -> Exporter {
        self.str("endpoint", endpoint.as_ref())
    }

    /// `encoding: json | protobuf` (otlp).
    pub fn encoding(self, encoding: &str) -> Exporter {
        self.str("encoding", encoding)
    }

    /// `encoding: protobuf` (otlp).
    pub fn protobuf(self) -> Exporter {
        self.encoding("protobuf")
    }

    /// `compression: none | gzip`.
    pub fn compression(self, compression: &str) -> Exporter {
        self.str("compression", compression)
    }

    /// `timeout`: one request's deadline (`"2s"`).
    pub fn timeout(self, timeout: &str) -> Exporter {
        self.str("timeout", timeout)
    }

    /// `retry_on_failure: {initial_interval: .., max_interval: .., max_elapsed_time: ..}`,
    /// the given keys only.
    pub fn retry_on_failure(self, settings: &[(&str, &str)]) -> Exporter {
        self.set("retry_on_failure", yaml_map(settings))
    }

    /// `sending_queue: {queue_size, num_consumers}`.
    pub fn sending_queue(self, queue_size: usize, num_consumers: usize) -> Exporter {
        self.set(
            "sending_queue",
            format!("{{queue_size: {queue_size}, num_consumers: {num_consumers}}}"),
        )
    }

    pub fn dead_letter_dir(self, dir: impl AsRef<Path>) -> Exporter {
        let dir = path_str(dir.as_ref());
        self.set("dead_letter_dir", dir)
    }

    /// `dead_letter_max_size` in bytes.
    pub fn dead_letter_max_size(self, bytes: u64) -> Exporter {
        self.set("dead_letter_max_size", bytes.to_string())
    }

    /// `headers: {name: value, ...}` (otlp).
    pub fn headers(self, headers: &[(&str, &str)]) -> Exporter {
        self.set("headers", yaml_map(headers))
    }

    /// `bucket` (s3).
    pub fn bucket(self, bucket: &str) -> Exporter {
        self.str("bucket", bucket)
    }

    /// `region` (s3).
    pub fn region(self, region: &str) -> Exporter {
        self.str("region", region)
    }

    /// `access_key_id` and `secret_access_key` (s3).
    pub fn keys(self, key_id: &str, secret: &str) -> Exporter {
        self.str("access_key_id", key_id)
            .str("secret_access_key", secret)
    }

    /// `session_token` (s3).
    pub fn session_token(self, token: &str) -> Exporter {
        self.str("session_token", token)
    }

    /// `path_template` (s3), e.g. `"{prefix}/{date}"`.
    pub fn path_template(self, template: &str) -> Exporter {
        self.str("path_template", template)
    }

    /// `prefix` (s3).
    pub fn prefix(self, prefix: &str) -> Exporter {
        self.str("prefix", prefix)
    }

    /// `trace_idle_timeout` (s3).
    pub fn trace_idle_timeout(self, timeout: &str) -> Exporter {
        self.str("trace_idle_timeout", timeout)
    }

    /// `max_trace_wait` (s3).
    pub fn max_trace_wait(self, wait: &str) -> Exporter {
        self.str("max_trace_wait", wait)
    }
}

/// A pipeline: `receivers: [otlp]`, the named processors and exporters.
#[derive(Clone, Debug)]
struct Pipeline {
    name: String,
    processors: Vec<String>,
    exporters: Vec<String>,
}

/// A tracecast config for one test; see the module docs.
#[derive(Clone, Debug)]
pub struct TestConfig {
    receiver: Settings,
    /// `(id, body as flow YAML)`, in order.
    processors: Vec<(String, String)>,
    exporters: Vec<Exporter>,
    pipelines: Vec<Pipeline>,
    service: Settings,
    queue: Settings,
    admin: Settings,
}

impl TestConfig {
    /// The OTLP receiver on `127.0.0.1:<port>` (0: any free port, for an in-process
    /// `Service`), nothing else yet.
    pub fn new(port: u16) -> TestConfig {
        let mut receiver = Settings::default();
        receiver.set("endpoint", yaml_str(&format!("127.0.0.1:{port}")));
        TestConfig {
            receiver,
            processors: Vec::new(),
            exporters: Vec::new(),
            pipelines: Vec::new(),
            service: Settings::default(),
            queue: Settings::default(),
            admin: Settings::default(),
        }
    }

    /// A receiver setting, `yaml` as written (`max_request_body_size`, `"8MiB"`).
    pub fn receiver_option(mut self, key: &str, yaml: impl Into<String>) -> TestConfig {
        self.receiver.set(key, yaml.into());
        self
    }

    /// The receiver's `max_concurrent_requests`.
    pub fn max_concurrent_requests(self, n: usize) -> TestConfig {
        self.receiver_option("max_concurrent_requests", n.to_string())
    }

    /// Adds `{name, token}` to the receiver's `api_keys`.
    pub fn api_key(self, name: &str, token: &str) -> TestConfig {
        let key = yaml_map(&[("name", name), ("token", token)]);
        let keys = match self.receiver.0.iter().find(|(k, _)| k == "api_keys") {
            Some((_, list)) => format!("{}, {key}]", list.trim_end_matches(']')),
            None => format!("[{key}]"),
        };
        self.receiver_option("api_keys", keys)
    }

    /// A processor with its default settings (`metadata`, `privacy`, `fault`).
    pub fn processor(self, name: &str) -> TestConfig {
        self.processor_with(name, "{}")
    }

    /// A processor with settings, `yaml` as one flow-style value (`"{ratio: 0.25}"`,
    /// `"{include: [{rules: [{field: model, operator: exists}]}]}"`), on one line or several.
    pub fn processor_with(mut self, name: &str, yaml: impl Into<String>) -> TestConfig {
        self.processors.push((name.to_string(), yaml.into()));
        self
    }

    pub fn exporter(mut self, exporter: Exporter) -> TestConfig {
        self.exporters.push(exporter);
        self
    }

    /// A pipeline `name` (e.g. `traces/full`) from the receiver through `processors` into
    /// `exporters`. Once one is given, only the given ones exist.
    pub fn pipeline(mut self, name: &str, processors: &[&str], exporters: &[&str]) -> TestConfig {
        self.pipelines.push(Pipeline {
            name: name.to_string(),
            processors: processors.iter().map(|s| s.to_string()).collect(),
            exporters: exporters.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// Any `service` setting, `yaml` as written (`telemetry`, `"{otlp: {...}}"`).
    pub fn service(mut self, key: &str, yaml: impl Into<String>) -> TestConfig {
        self.service.set(key, yaml.into());
        self
    }

    /// `service.shutdown_timeout`.
    pub fn shutdown_timeout(self, timeout: &str) -> TestConfig {
        self.service("shutdown_timeout", yaml_str(timeout))
    }

    /// `service.queue_dir`.
    pub fn queue_dir(self, dir: impl AsRef<Path>) -> TestConfig {
        let dir = path_str(dir.as_ref());
        self.service("queue_dir", dir)
    }

    /// `service.memory_limit` in bytes.
    pub fn memory_limit(self, bytes: u64) -> TestConfig {
        self.service("memory_limit", bytes.to_string())
    }

    /// A `service.queue` setting, `yaml` as written (`max_size`, `"64KiB"`;
    /// `quarantine`, `"{max_attempts: 3}"`).
    pub fn queue(mut self, key: &str, yaml: impl Into<String>) -> TestConfig {
        self.queue.set(key, yaml.into());
        self
    }

    /// `service.admin.endpoint` (`""` turns the admin endpoint off).
    pub fn admin(mut self, endpoint: &str) -> TestConfig {
        self.admin.set("endpoint", yaml_str(endpoint));
        self
    }

    /// The admin endpoint on `127.0.0.1:<port>` (0: any free port).
    pub fn admin_port(self, port: u16) -> TestConfig {
        self.admin(&format!("127.0.0.1:{port}"))
    }

    /// No admin endpoint.
    pub fn no_admin(self) -> TestConfig {
        self.admin("")
    }

    /// `service.admin.recheck_interval`.
    pub fn recheck_interval(mut self, interval: &str) -> TestConfig {
        self.admin.set("recheck_interval", yaml_str(interval));
        self
    }

    /// The config as YAML text.
    pub fn yaml(&self) -> String {
        let mut out = String::from("receivers:\n  otlp:\n");
        self.receiver.write(&mut out, "    ");
        if !self.processors.is_empty() {
            out.push_str("processors:\n");
            for (p, body) in &self.processors {
                // A flow value written over several lines continues below its key.
                let body = body.replace('\n', "\n    ");
                let _ = writeln!(out, "  {p}: {body}");
            }
        }
        out.push_str("exporters:\n");
        for e in &self.exporters {
            if e.settings.0.is_empty() {
                let _ = writeln!(out, "  {}: {{}}", e.id);
            } else {
                let _ = writeln!(out, "  {}:", e.id);
                e.settings.write(&mut out, "    ");
            }
        }
        out.push_str("service:\n");
        self.service.write(&mut out, "  ");
        if !self.queue.0.is_empty() {
            out.push_str("  queue:\n");
            self.queue.write(&mut out, "    ");
        }
        if !self.admin.0.is_empty() {
            out.push_str("  admin:\n");
            self.admin.write(&mut out, "    ");
        }
        out.push_str("  pipelines:\n");
        let all = [Pipeline {
            name: "traces".to_string(),
            processors: self.processors.iter().map(|(p, _)| p.clone()).collect(),
            exporters: self.exporters.iter().map(|e| e.id.clone()).collect(),
        }];
        let pipelines = if self.pipelines.is_empty() {
            &all[..]
        } else {
            &self.pipelines[..]
        };
        for p in pipelines {
            let _ = writeln!(out, "    {}:", p.name);
            out.push_str("      receivers: [otlp]\n");
            if !p.processors.is_empty() {
                let _ = writeln!(out, "      processors: [{}]", p.processors.join(", "));
            }
            let _ = writeln!(out, "      exporters: [{}]", p.exporters.join(", "));
        }
        out
    }

    /// Writes the YAML to `<dir>/tracecast.yaml`; returns that path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("tracecast.yaml");
        std::fs::write(&path, self.yaml()).expect("write the config");
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_quoted_only_when_yaml_would_change_them() {
        assert_eq!(yaml_str("5s"), "5s");
        assert_eq!(yaml_str("/tmp/.tmpAb1/queue"), "/tmp/.tmpAb1/queue");
        assert_eq!(yaml_str(""), "\"\"");
        assert_eq!(yaml_str("127.0.0.1:0"), "\"127.0.0.1:0\"");
        assert_eq!(yaml_str("{prefix}/{date}"), "\"{prefix}/{date}\"");
        assert_eq!(yaml_str("1.0"), "\"1.0\"");
        assert_eq!(yaml_str("no"), "\"no\"");
        assert_eq!(yaml_str("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn one_default_pipeline_through_everything_added() {
        let yaml = TestConfig::new(0)
            .api_key("a", "t1")
            .api_key("b", "${env:T}")
            .processor("metadata")
            .exporter(Exporter::otlp("otlp/x", "http://h:1/v1/traces").protobuf())
            .exporter(Exporter::s3_url("s3", "file:///tmp/out"))
            .queue_dir("/tmp/q")
            .queue("max_size", "64KiB")
            .admin_port(0)
            .yaml();
        assert_eq!(
            yaml,
            "receivers:\n  otlp:\n    endpoint: \"127.0.0.1:0\"\n    api_keys: [{name: a, token: t1}, {name: b, token: \"${env:T}\"}]\nprocessors:\n  metadata: {}\nexporters:\n  otlp/x:\n    endpoint: \"http://h:1/v1/traces\"\n    encoding: protobuf\n  s3:\n    url: \"file:///tmp/out\"\nservice:\n  queue_dir: /tmp/q\n  queue:\n    max_size: 64KiB\n  admin:\n    endpoint: \"127.0.0.1:0\"\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [metadata]\n      exporters: [otlp/x, s3]\n"
        );
    }
}
