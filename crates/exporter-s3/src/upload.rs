//! The thin uploader: builds the `object_store` store from the config, writes objects
//! create-only with distinct names on clashes, keeps undeliverable traces in a local
//! dead-letter folder, and decides how many uploads run at once ([`UploadConcurrency`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use crate::config::{non_empty, S3ExporterConfig, Target, ValidS3ExporterConfig};
use crate::error::{classify, Destination, S3ExporterError, StoreProblem};
use crate::key::{shorten, ObjectKey, MAX_KEY_BYTES};
pub use tracecast_core::dead_letter::reason_path;
use tracecast_core::dead_letter::{self, DeadLetterStore};
use tracecast_core::ComponentId;

/// How many distinct names (`-2` ... ) are tried before a clash counts as a failure.
const MAX_SUFFIX: u32 = 1000;

/// Uploads in flight when the exporter starts (or `max_concurrent_uploads`, if lower).
pub const INITIAL_CONCURRENCY: usize = 64;

/// Adaptive upload concurrency: how many uploads the exporter keeps in flight.
///
/// Why: with a fixed number of uploads in flight, throughput is that number divided by the
/// PUT latency (16 uploads at 50 ms: 320 traces a second), whatever the endpoint could
/// take. So the limit grows while the endpoint keeps up and shrinks when it says it cannot:
///
/// - a *window* is about one round of every slot: `limit` completed uploads (at least 4);
/// - at the end of a window in which uploads waited for a slot, no request was throttled
///   and the mean latency stayed within 1.5x (+5 ms) of the lowest window mean seen (the
///   endpoint's unloaded latency), the limit grows by a quarter (at least 1), up to the
///   ceiling `max_concurrent_uploads`;
/// - a throttled request (`503 SlowDown`, `429`, `Throttling`...) halves the limit at once,
///   at most once per window (the other uploads in flight were sent under the old limit
///   and may be throttled too);
/// - a window whose mean latency passed twice the lowest (+10 ms) shrinks the limit by an
///   eighth: the endpoint, or this host, is queueing.
///
/// The lowest latency is forgotten every 64 windows, so a move to a slower endpoint or
/// network does not freeze the limit. Memory stays bounded: at most `limit` uploads hold
/// their document, at most twice that many assembled traces wait for a slot, and trace
/// assembly keeps its own `max_buffered_spans` / `max_buffered_bytes` bound.
#[derive(Debug)]
pub struct UploadConcurrency {
    ceiling: usize,
    state: std::sync::Mutex<ConcurrencyState>,
}

#[derive(Debug)]
struct ConcurrencyState {
    limit: usize,
    window_n: usize,
    window_sum: std::time::Duration,
    /// Uploads waited for a slot during this window (growing would have helped).
    saturated: bool,
    /// A request was throttled during this window (and the limit already halved for it).
    throttled: bool,
    lowest: Option<std::time::Duration>,
    windows: u32,
    stats: ConcurrencyStats,
}

/// What [`UploadConcurrency`] did so far (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConcurrencyStats {
    /// The limit now.
    pub limit: usize,
    /// Lowest and highest limit so far.
    pub lowest: usize,
    pub highest: usize,
    pub increases: u64,
    pub decreases: u64,
    /// Upload attempts answered as throttled.
    pub throttled: u64,
}

impl UploadConcurrency {
    /// Starts at [`INITIAL_CONCURRENCY`] (or `ceiling`, if lower); never above `ceiling`.
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        let limit = INITIAL_CONCURRENCY.min(ceiling);
        Self {
            ceiling,
            state: std::sync::Mutex::new(ConcurrencyState {
                limit,
                window_n: 0,
                window_sum: std::time::Duration::ZERO,
                saturated: false,
                throttled: false,
                lowest: None,
                windows: 0,
                stats: ConcurrencyStats {
                    limit,
                    lowest: limit,
                    highest: limit,
                    ..ConcurrencyStats::default()
                },
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConcurrencyState> {
        // Plain numbers updated in one step: a panic elsewhere leaves them consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uploads allowed in flight now.
    pub fn limit(&self) -> usize {
        self.state().limit
    }

    /// The exporter had traces waiting while `limit` uploads were in flight.
    pub fn saturated(&self) {
        self.state().saturated = true;
    }

    pub fn stats(&self) -> ConcurrencyStats {
        self.state().stats
    }

    /// One upload attempt finished: `latency` of a successful one, or `throttled`. Other
    /// failures tell nothing about the endpoint's capacity and are not recorded.
    pub fn record(&self, latency: std::time::Duration, throttled: bool) {
        use std::time::Duration;
        let mut s = self.state();
        if throttled {
            s.stats.throttled += 1;
            if !s.throttled {
                let limit = (s.limit / 2).max(1);
                s.set_limit(limit);
                s.new_window();
                s.throttled = true;
            }
            return;
        }
        s.window_n += 1;
        s.window_sum += latency;
        if s.window_n < s.limit.max(4) {
            return;
        }
        let mean = s.window_sum / s.window_n as u32;
        s.windows += 1;
        if s.windows.is_multiple_of(64) {
            s.lowest = None;
        }
        let lowest = *s.lowest.get_or_insert(mean);
        let lowest = lowest.min(mean);
        s.lowest = Some(lowest);
        if s.throttled {
            // The window after a throttle: hold.
        } else if mean > lowest * 2 + Duration::from_millis(10) {
            let limit = s.limit - (s.limit / 8).max(1);
            s.set_limit(limit.max(1));
        } else if s.saturated && mean <= lowest * 3 / 2 + Duration::from_millis(5) {
            let limit = (s.limit + (s.limit / 4).max(1)).min(self.ceiling);
            s.set_limit(limit);
        }
        s.new_window();
    }
}

impl ConcurrencyState {
    fn new_window(&mut self) {
        self.window_n = 0;
        self.window_sum = std::time::Duration::ZERO;
        self.saturated = false;
        self.throttled = false;
    }

    fn set_limit(&mut self, limit: usize) {
        if limit > self.limit {
            self.stats.increases += 1;
        } else if limit < self.limit {
            self.stats.decreases += 1;
        } else {
            return;
        }
        tracing::debug!(
            from = self.limit,
            to = limit,
            "s3 upload concurrency changed"
        );
        self.limit = limit;
        self.stats.limit = limit;
        self.stats.lowest = self.stats.lowest.min(limit);
        self.stats.highest = self.stats.highest.max(limit);
    }
}

/// The store and a description of it for messages.
#[derive(Debug, Clone)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    pub destination: Destination,
    /// Longest key this store takes from tracecast: S3's 1,024 bytes minus the bucket's
    /// base folder (a `PrefixStore` adds it to every key).
    pub max_key_bytes: usize,
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A new object was created under this key.
    Created(String),
    /// The object already held exactly these bytes (a replay): nothing written.
    AlreadyPresent(String),
}

fn is_local_host(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok() || endpoint.contains('[')
}

/// Virtual-hosted endpoint for a custom endpoint: the bucket becomes a subdomain.
fn virtual_hosted(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{}", rest.trim_end_matches('/')),
        None => endpoint.to_string(),
    }
}

impl Uploader {
    /// Builds the store for a validated config. No I/O except creating a local folder.
    pub fn new(valid: &ValidS3ExporterConfig) -> Result<Self, S3ExporterError> {
        match &valid.target {
            Target::Local { dir } => {
                std::fs::create_dir_all(dir).map_err(|source| S3ExporterError::Folder {
                    path: dir.display().to_string(),
                    source,
                })?;
                let store = LocalFileSystem::new_with_prefix(dir)?;
                let display = format!("file://{}", dir.display());
                Ok(Self {
                    store: Arc::new(store),
                    max_key_bytes: MAX_KEY_BYTES,
                    destination: Destination {
                        display: display.clone(),
                        bucket: None,
                        endpoint: display,
                        region: String::new(),
                    },
                })
            }
            Target::S3 { bucket, base } => Self::s3(valid, bucket, base.as_deref()),
        }
    }

    fn s3(
        valid: &ValidS3ExporterConfig,
        bucket: &str,
        base: Option<&str>,
    ) -> Result<Self, S3ExporterError> {
        let config = &valid.config;
        let keys = non_empty(&config.access_key_id).zip(non_empty(&config.secret_access_key));
        // With keys in the config, the environment must not add a stray session token.
        let mut b = match keys {
            Some((id, secret)) => {
                let mut b = AmazonS3Builder::new()
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = non_empty(&config.session_token) {
                    b = b.with_token(token);
                }
                b
            }
            None => AmazonS3Builder::from_env(),
        };
        b = b.with_bucket_name(bucket);
        let region = non_empty(&config.region)
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|r| !r.is_empty())
            })
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(&region);
        let path_style = config.force_path_style || bucket.contains('.');
        let mut allow_http = false;
        let endpoint_display = match non_empty(&config.endpoint) {
            Some(ep) => {
                let ep = ep.trim_end_matches('/');
                allow_http = ep.starts_with("http://");
                if path_style || is_local_host(ep) {
                    b = b.with_endpoint(ep).with_virtual_hosted_style_request(false);
                } else {
                    b = b
                        .with_endpoint(virtual_hosted(ep, bucket))
                        .with_virtual_hosted_style_request(true);
                }
                ep.to_string()
            }
            None => {
                b = b.with_virtual_hosted_style_request(!path_style);
                format!("https://s3.{region}.amazonaws.com")
            }
        };
        // Connection reuse: HTTP/1.1 keep-alive, one pooled connection per upload in flight
        // (up to `max_concurrent_uploads`), so a steady stream of PUTs pays no new TCP/TLS
        // handshakes. Idle connections are dropped after 15 s, before S3's own idle close
        // (about 20 s), so a reused connection is rarely one the server already closed.
        let mut client = ClientOptions::new()
            .with_timeout(config.timeout.get())
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_pool_idle_timeout(std::time::Duration::from_secs(15))
            .with_pool_max_idle_per_host(config.max_concurrent_uploads.max(1))
            .with_allow_http(allow_http);
        // `tls`: extra roots beside the system ones.
        for cert in &valid.ca_certs {
            client = client.with_root_certificate(cert.clone());
        }
        if valid.insecure_skip_verify {
            tracing::warn!(
                bucket,
                "tls.insecure_skip_verify is on: any server certificate is accepted; use it only for testing"
            );
            client = client.with_allow_invalid_certificates(true);
        }
        // One retry loop: tracecast's (`retry_on_failure`), not object_store's as well.
        b = b
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 0,
                retry_timeout: config.timeout.get(),
            })
            .with_client_options(client);
        let store = b.build()?;
        let store: Arc<dyn ObjectStore> = match base {
            Some(base) => Arc::new(PrefixStore::new(store, base)),
            None => Arc::new(store),
        };
        let display = match base {
            Some(base) => format!("s3://{bucket}/{base}"),
            None => format!("s3://{bucket}"),
        };
        Ok(Self {
            store,
            max_key_bytes: MAX_KEY_BYTES.saturating_sub(base.map_or(0, |b| b.len() + 1)),
            destination: Destination {
                display,
                bucket: Some(bucket.to_string()),
                endpoint: endpoint_display,
                region,
            },
        })
    }

    /// Writes `body` create-only under `key`; on a clash, reads the existing object: the
    /// same bytes mean an earlier attempt already wrote it, else the next distinct name
    /// (`-2`, `-3`, ...) is tried. An existing object is never overwritten. (With a
    /// PutObject-only credential the read fails; the trace then gets a distinct name.)
    pub async fn write_unique(
        &self,
        key: &ObjectKey,
        body: Bytes,
    ) -> Result<Written, StoreProblem> {
        for n in 1..=MAX_SUFFIX {
            let name = key.nth(n);
            let path = ObjectPath::parse(&name)
                .map_err(|e| StoreProblem::Other(format!("invalid object key {name:?}: {e}")))?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body.clone()), opts)
                .await
            {
                Ok(_) => return Ok(Written::Created(name)),
                Err(e) => match classify(&e) {
                    StoreProblem::AlreadyExists => {
                        if let Ok(existing) = self.store.get(&path).await {
                            if let Ok(bytes) = existing.bytes().await {
                                if bytes == body {
                                    return Ok(Written::AlreadyPresent(name));
                                }
                            }
                        }
                    }
                    problem => return Err(problem),
                },
            }
        }
        Err(StoreProblem::Other(format!(
            "{MAX_SUFFIX} objects named like {key} already exist"
        )))
    }

    /// Plain PutObject (the connection probe): the only permission the docs require.
    pub async fn put_probe(&self, key: &str, body: Bytes) -> Result<(), StoreProblem> {
        let path = ObjectPath::parse(key)
            .map_err(|e| StoreProblem::Other(format!("invalid object key {key:?}: {e}")))?;
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}

/// The folder exporter `id` keeps its dead letters in: `dead_letter_dir` when set, else
/// `./tracecast-data/dead-letter/<id>` (the one rule of
/// [`tracecast_core::dead_letter::dir_for`]).
pub fn dead_letter_dir(id: &ComponentId, config: &S3ExporterConfig) -> PathBuf {
    dead_letter::dir_for(id, config.dead_letter_dir.as_deref())
}

/// Keeps traces that could not be written in the shared dead-letter store
/// ([`tracecast_core::dead_letter`]): `<unix_nanos>-<n>-<key with / as _>` plus a
/// `.reason.txt` beside it holding the full key, so an operator can see why and replay them
/// (`tracecast dead-letters resend`, see [`crate::S3Exporter::resend_dead_letter`]). A
/// flattened key longer than [`DEAD_LETTER_NAME_BYTES`] is shortened like a long trace id
/// (a prefix plus a hash of the full key), so the name always fits a file system.
#[derive(Debug)]
pub struct DeadLetter(pub DeadLetterStore);

impl DeadLetter {
    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    pub async fn keep(&self, key: &str, body: &[u8], reason: &str) -> std::io::Result<PathBuf> {
        let details = [("key", key)];
        let reason = dead_letter::Reason {
            outcome: "not written",
            error: reason,
            spans: None,
            details: &details,
        };
        let label = format!("-{}", dead_letter_name(key));
        self.0.keep(&label, "", body, &reason).await
    }
}

/// Longest flattened key in a dead-letter file name: 255 bytes (the file-system limit)
/// minus `.reason.txt` and the store's `<unix_nanos>-<n>-` prefix.
pub const DEAD_LETTER_NAME_BYTES: usize = 200;

/// The dead-letter file name of `key`: `/` becomes `_`, and a long result keeps its readable
/// start and extension around a hash of the full key (`<start>-<hash>.json`).
pub fn dead_letter_name(key: &str) -> String {
    let flat = key.replace('/', "_");
    if flat.len() <= DEAD_LETTER_NAME_BYTES {
        return flat;
    }
    let ext = [".json.gz", ".json"]
        .into_iter()
        .find(|e| flat.ends_with(e))
        .unwrap_or("");
    let stem = &flat[..flat.len() - ext.len()];
    format!(
        "{}{ext}",
        shorten(stem, key, DEAD_LETTER_NAME_BYTES - ext.len())
    )
}

/// One dead-lettered trace on disk, as listed by [`list_dead_letters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTrace {
    /// The trace file (the document exactly as it would have been uploaded).
    pub path: PathBuf,
    /// The object key it was meant for (relative to the bucket's base folder), from the
    /// reason file; `None` when the reason file is missing or has no `key:` line.
    pub key: Option<String>,
    /// The first line of the reason, or why the reason file cannot be read.
    pub reason: String,
    /// Size of the trace file; 0 when the trace could not even be encoded.
    pub bytes: u64,
}

/// The dead-lettered traces in `dir`, oldest first. A missing folder holds none.
pub fn list_dead_letters(dir: &Path) -> std::io::Result<Vec<StoredTrace>> {
    Ok(dead_letter::list(dir)?
        .into_iter()
        .map(|l| {
            let (key, reason) = match &l.reason {
                Ok(text) => (
                    dead_letter::field(text, "key")
                        .filter(|k| !k.is_empty())
                        .map(str::to_string),
                    dead_letter::field(text, "error")
                        .unwrap_or("(no error line)")
                        .to_string(),
                ),
                Err(why) => (None, why.clone()),
            };
            StoredTrace {
                path: l.path,
                key,
                reason,
                bytes: l.bytes,
            }
        })
        .collect())
}

/// Splits a stored key back into an [`ObjectKey`], so a resend gets the same create-only,
/// distinct-name-on-clash write as the first attempt.
pub fn object_key_of(key: &str) -> ObjectKey {
    let (folder, name) = key.rsplit_once('/').unwrap_or(("", key));
    let ext = [".json.gz", ".json"]
        .into_iter()
        .find(|e| name.ends_with(e) && name.len() > e.len())
        .unwrap_or("");
    ObjectKey {
        folder: folder.to_string(),
        stem: name[..name.len() - ext.len()].to_string(),
        ext: ext.to_string(),
    }
}

/// Why a stored dead letter could not be put back.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("{path}: no object key (the .reason.txt beside it is missing or has no `key:` line); upload it by hand")]
    NoKey { path: String },
    #[error(
        "{path}: empty file (the trace could not be encoded when it was kept); nothing to upload"
    )]
    Empty { path: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("upload of {key} failed: {message}")]
    Upload { key: String, message: String },
    #[error("{key} was written but {path} could not be removed ({source}); remove it by hand")]
    Remove {
        key: String,
        path: String,
        source: std::io::Error,
    },
}

/// `tracecast dead-letters resend` for exporter `id`: puts every dead-lettered trace back
/// under its original key ([`crate::S3Exporter::resend_dead_letter`]), removing each once
/// written. `stop` ends it early; what was not sent stays in the folder.
pub async fn resend_dead_letters(
    id: &ComponentId,
    config: &ValidS3ExporterConfig,
    stop: &tracecast_core::CancellationToken,
) -> Result<tracecast_core::dead_letter::ResendSummary, S3ExporterError> {
    let dir = dead_letter_dir(id, &config.config);
    let stored = list_dead_letters(&dir).map_err(|source| S3ExporterError::ReadFolder {
        path: dir.display().to_string(),
        source,
    })?;
    let mut summary = tracecast_core::dead_letter::ResendSummary::default();
    if stored.is_empty() {
        return Ok(summary);
    }
    let exporter = crate::S3Exporter::new(id.clone(), config)?;
    for trace in stored {
        if stop.is_cancelled() {
            summary.failed += 1;
            continue;
        }
        match exporter.resend_dead_letter(&trace, stop).await {
            Ok(Written::Created(key)) => {
                summary.resent += 1;
                tracing::info!(exporter = %id, file = %trace.path.display(), key = %key, "dead letter resent");
            }
            Ok(Written::AlreadyPresent(key)) => {
                summary.resent += 1;
                tracing::info!(exporter = %id, file = %trace.path.display(), key = %key, "dead letter was already there");
            }
            Err(e) => {
                summary.failed += 1;
                tracing::error!(exporter = %id, error = %e, "dead letter not resent");
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_split_back_into_object_keys() {
        let k = object_key_of("prod/2025-01-02/abc.json.gz");
        assert_eq!(
            (k.folder.as_str(), k.stem.as_str(), k.ext.as_str()),
            ("prod/2025-01-02", "abc", ".json.gz")
        );
        assert_eq!(k.nth(1), "prod/2025-01-02/abc.json.gz");
        assert_eq!(k.nth(2), "prod/2025-01-02/abc-2.json.gz");
        let k = object_key_of("abc.json");
        assert_eq!(k.nth(1), "abc.json");
        assert_eq!(object_key_of("odd").nth(2), "odd-2");
    }

    #[tokio::test]
    async fn lists_kept_traces_with_key_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list_dead_letters(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
        let dl = DeadLetter(DeadLetterStore::new(dir.path().to_path_buf()));
        let file = dl
            .keep("p/2025/t1.json", b"{}", "bucket \"b\" does not exist\nmore")
            .await
            .unwrap();
        let again = dl.keep("p/2025/t1.json", b"{ }", "denied").await.unwrap();
        std::fs::write(dir.path().join("orphan.json"), b"x").unwrap();
        let listed = list_dead_letters(dir.path()).unwrap();
        assert_eq!(listed.len(), 3, "{listed:?}");
        let first = listed.iter().find(|t| t.path == file).unwrap();
        assert_eq!(first.key.as_deref(), Some("p/2025/t1.json"));
        assert_eq!(first.reason, "bucket \"b\" does not exist");
        assert_eq!(first.bytes, 2);
        let second = listed.iter().find(|t| t.path == again).unwrap();
        assert_eq!(second.reason, "denied");
        let orphan = listed.iter().find(|t| t.key.is_none()).unwrap();
        assert!(orphan.reason.starts_with("(no reason file"), "{orphan:?}");
    }

    #[tokio::test]
    async fn long_keys_get_dead_letter_names_that_fit_and_keep_the_full_key() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter(DeadLetterStore::new(dir.path().to_path_buf()));
        let long = format!(
            "openrouter-traces/2024-01-15/{}-1705311600.json",
            "x".repeat(990)
        );
        let other = format!(
            "openrouter-traces/2024-01-15/{}-1705311600.json",
            "x".repeat(991)
        );
        let a = dl.keep(&long, b"{}", "denied").await.unwrap();
        let b = dl.keep(&other, b"{}", "denied").await.unwrap();
        let again = dl.keep(&long, b"{ }", "denied").await.unwrap();
        for p in [&a, &b, &again] {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.len() + ".reason.txt".len() <= 255, "{name}");
            assert!(name.contains("openrouter-traces_2024-01-15_xxx"), "{name}");
            assert!(name.ends_with(".json"), "{name}");
        }
        assert_ne!(a, b, "keys differing at the end get different names");
        assert_ne!(
            a, again,
            "a second trace under the same key gets its own file"
        );
        assert_eq!(dead_letter_name(&long), dead_letter_name(&long));
        let listed = list_dead_letters(dir.path()).unwrap();
        assert_eq!(listed.len(), 3);
        let first = listed.iter().find(|t| t.path == a).unwrap();
        assert_eq!(
            first.key.as_deref(),
            Some(long.as_str()),
            "full key for resend"
        );
        assert_eq!(dead_letter_name("p/t.json"), "p_t.json");
    }

    /// Feeds `n` successful uploads of `ms` milliseconds, the exporter saturated or not.
    fn feed(c: &UploadConcurrency, n: usize, ms: u64, saturated: bool) {
        for _ in 0..n {
            if saturated {
                c.saturated();
            }
            c.record(std::time::Duration::from_millis(ms), false);
        }
    }

    #[test]
    fn concurrency_grows_while_latency_is_flat_and_uploads_wait() {
        let c = UploadConcurrency::new(256);
        assert_eq!(c.limit(), INITIAL_CONCURRENCY);
        // Not saturated: no reason to grow.
        feed(&c, 200, 50, false);
        assert_eq!(c.limit(), INITIAL_CONCURRENCY);
        feed(&c, 2000, 50, true);
        assert_eq!(c.limit(), 256, "{:?}", c.stats());
        // Capped at the ceiling, and a low ceiling caps the start too.
        feed(&c, 2000, 50, true);
        assert_eq!(c.limit(), 256);
        assert_eq!(UploadConcurrency::new(4).limit(), 4);
    }

    #[test]
    fn throttling_halves_the_limit_once_per_window() {
        let c = UploadConcurrency::new(256);
        feed(&c, 200, 50, true);
        let before = c.limit();
        assert!(before > INITIAL_CONCURRENCY);
        // A burst of 503s from uploads already in flight: one halving.
        for _ in 0..10 {
            c.record(std::time::Duration::ZERO, true);
        }
        assert_eq!(c.limit(), before / 2);
        // The window after a throttle holds, later ones throttled again halve again.
        feed(&c, before / 2, 50, true);
        assert_eq!(c.limit(), before / 2);
        c.record(std::time::Duration::ZERO, true);
        assert_eq!(c.limit(), before / 4);
        for _ in 0..20 {
            c.record(std::time::Duration::ZERO, true);
            feed(&c, 4, 50, true);
        }
        assert_eq!(c.limit(), 1, "never below one");
        let stats = c.stats();
        assert_eq!(stats.throttled, 31);
        assert_eq!(stats.lowest, 1);
        assert!(stats.decreases >= 3, "{stats:?}");
    }

    #[test]
    fn rising_latency_shrinks_and_stops_growth() {
        let c = UploadConcurrency::new(256);
        feed(&c, INITIAL_CONCURRENCY, 50, true);
        let grown = c.limit();
        assert!(grown > INITIAL_CONCURRENCY);
        // Twice the unloaded latency and more: queueing somewhere; shrink, never grow.
        feed(&c, 3 * grown, 200, true);
        assert!(c.limit() < grown, "{:?}", c.stats());
        // Somewhat slower (within 1.5x): hold.
        let c = UploadConcurrency::new(256);
        feed(&c, INITIAL_CONCURRENCY, 50, true);
        let held = c.limit();
        feed(&c, 3 * held, 90, true);
        assert_eq!(c.limit(), held);
    }

    #[test]
    fn endpoint_styles() {
        assert!(is_local_host("http://127.0.0.1:9000"));
        assert!(is_local_host("http://localhost:9000/"));
        assert!(!is_local_host("https://acc.r2.cloudflarestorage.com"));
        assert_eq!(
            virtual_hosted("https://acc.r2.cloudflarestorage.com/", "b"),
            "https://b.acc.r2.cloudflarestorage.com"
        );
    }
}
