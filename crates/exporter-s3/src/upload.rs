//! The thin uploader: builds the `object_store` store from the config, writes objects
//! create-only with distinct names on clashes, and keeps undeliverable traces in a local
//! dead-letter folder.

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

use crate::config::{non_empty, S3ExporterConfig, Target};
use crate::error::{classify, Destination, S3ExporterError, StoreProblem};
use crate::key::ObjectKey;

/// How many distinct names (`-2` ... ) are tried before a clash counts as a failure.
const MAX_SUFFIX: u32 = 1000;

/// The store and a description of it for messages.
#[derive(Debug, Clone)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    pub destination: Destination,
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
    /// Builds the store for a validated target. No I/O except creating a local folder.
    pub fn new(config: &S3ExporterConfig, target: &Target) -> Result<Self, S3ExporterError> {
        match target {
            Target::Local { dir } => {
                std::fs::create_dir_all(dir).map_err(|source| S3ExporterError::Folder {
                    path: dir.display().to_string(),
                    source,
                })?;
                let store = LocalFileSystem::new_with_prefix(dir)?;
                let display = format!("file://{}", dir.display());
                Ok(Self {
                    store: Arc::new(store),
                    destination: Destination {
                        display: display.clone(),
                        bucket: None,
                        endpoint: display,
                        region: String::new(),
                    },
                })
            }
            Target::S3 { bucket, base } => Self::s3(config, bucket, base.as_deref()),
        }
    }

    fn s3(
        config: &S3ExporterConfig,
        bucket: &str,
        base: Option<&str>,
    ) -> Result<Self, S3ExporterError> {
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
        // One retry loop: tracecast's (`retry` settings), not object_store's as well.
        b = b
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 0,
                retry_timeout: config.request_timeout.get(),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.request_timeout.get())
                    .with_connect_timeout(std::time::Duration::from_secs(5))
                    .with_allow_http(allow_http),
            );
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

/// Keeps traces that could not be written on local disk: `<dir>/<key with / as _>` plus a
/// `.reason.txt` beside it, so an operator can see why and replay them.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub dir: PathBuf,
}

impl DeadLetter {
    pub async fn keep(&self, key: &str, body: &[u8], reason: &str) -> std::io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let file = unique_path(&self.dir, &key.replace('/', "_")).await;
        tokio::fs::write(&file, body).await?;
        let mut reason_file = file.clone().into_os_string();
        reason_file.push(".reason.txt");
        tokio::fs::write(&reason_file, format!("key: {key}\nreason: {reason}\n")).await?;
        Ok(file)
    }
}

async fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let mut candidate = dir.join(name);
    let mut n = 2;
    while tokio::fs::try_exists(&candidate).await.unwrap_or(false) {
        candidate = dir.join(format!("{n}-{name}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

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
