//! An in-process S3-compatible server for tests: `s3s` + `s3s-fs` on 127.0.0.1, checking
//! SigV4 signatures (a wrong secret is rejected), storing objects as files under a folder.
//!
//! Two credentials are accepted: the full one given to [`S3TestServer::start`], and a
//! PutObject-only one ([`S3TestServer::PUT_ONLY_ACCESS_KEY`]) that mirrors the IAM policy
//! the gateway docs ask for (`s3:PutObject` and nothing else). The server can be stopped and
//! restarted on the same port to simulate an outage; stopping also cuts open keep-alive
//! connections, so clients really see the outage. [`S3TestServer::start_tls`] serves HTTPS
//! with a server config the test makes (e.g. a certificate from a CA it generated).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey, SimpleAuth};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Allows everything to the full credential, only `PutObject` to the put-only one. Also
/// answers `NoSuchBucket` for object requests to a bucket folder that does not exist, as S3
/// does (s3s-fs alone would create the folder on PutObject).
struct PutOnlyAccess {
    root: PathBuf,
}

#[async_trait::async_trait]
impl S3Access for PutOnlyAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if let s3s::path::S3Path::Object { bucket, .. } = cx.s3_path() {
            if cx.credentials().is_some() && !self.root.join(&**bucket).is_dir() {
                return Err(s3_error!(NoSuchBucket));
            }
        }
        match cx.credentials() {
            None => Err(s3_error!(AccessDenied, "Signature is required")),
            Some(c) if c.access_key == S3TestServer::PUT_ONLY_ACCESS_KEY => {
                if cx.s3_op().name() == "PutObject" {
                    Ok(())
                } else {
                    Err(s3_error!(
                        AccessDenied,
                        "this credential may only PutObject"
                    ))
                }
            }
            Some(_) => Ok(()),
        }
    }
}

/// Answers an unknown access key with `InvalidAccessKeyId`, as AWS does (s3s's
/// `SimpleAuth` says `NotSignedUp`).
struct AwsLikeAuth(SimpleAuth);

#[async_trait::async_trait]
impl S3Auth for AwsLikeAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.0.lookup(access_key).cloned().ok_or_else(|| {
            s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )
        })
    }
}

/// A running (or stopped) in-process S3 server.
pub struct S3TestServer {
    root: PathBuf,
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// HTTPS when set.
    tls: Option<TlsAcceptor>,
}

impl S3TestServer {
    /// Access key of the PutObject-only credential.
    pub const PUT_ONLY_ACCESS_KEY: &'static str = "PUTONLYKEY";
    /// Secret of the PutObject-only credential.
    pub const PUT_ONLY_SECRET_KEY: &'static str = "put-only-secret";

    /// Starts a server storing under `dir` (created if missing) on 127.0.0.1 with a free
    /// port. Buckets are folders of `dir`: create one with [`S3TestServer::create_bucket`].
    pub async fn start(dir: impl AsRef<Path>, access_key: &str, secret_key: &str) -> Self {
        Self::start_with(dir, access_key, secret_key, None).await
    }

    /// As [`S3TestServer::start`], serving HTTPS with `tls` (a failed handshake closes the
    /// connection, as a real server does).
    pub async fn start_tls(
        dir: impl AsRef<Path>,
        access_key: &str,
        secret_key: &str,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) -> Self {
        Self::start_with(dir, access_key, secret_key, Some(TlsAcceptor::from(tls))).await
    }

    async fn start_with(
        dir: impl AsRef<Path>,
        access_key: &str,
        secret_key: &str,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let root = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).expect("create the S3 server folder");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let mut server = Self {
            root,
            addr,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            running: None,
            tls,
        };
        server.serve(listener);
        server
    }

    fn service(&self) -> S3Service {
        let fs = s3s_fs::FileSystem::new(&self.root).expect("s3s-fs root");
        let mut auth = SimpleAuth::from_single(self.access_key.clone(), self.secret_key.clone());
        auth.register(
            Self::PUT_ONLY_ACCESS_KEY.to_string(),
            Self::PUT_ONLY_SECRET_KEY.into(),
        );
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(AwsLikeAuth(auth));
        b.set_access(PutOnlyAccess {
            root: self.root.clone(),
        });
        b.build()
    }

    fn serve(&mut self, listener: TcpListener) {
        let service = self.service();
        let tls = self.tls.clone();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let service = service.clone();
                        let tls = tls.clone();
                        conns.spawn(async move {
                            let http = hyper::server::conn::http1::Builder::new();
                            match tls {
                                None => {
                                    let _ = http.serve_connection(TokioIo::new(socket), service).await;
                                }
                                Some(tls) => {
                                    if let Ok(stream) = tls.accept(socket).await {
                                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                    }
                                }
                            }
                        });
                    }
                }
            }
            // Dropping the listener and aborting connections: clients see refused/reset.
            drop(listener);
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        });
        self.running = Some((stop_tx, task));
    }

    /// `http://127.0.0.1:<port>` (`https://` when started with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The folder objects are stored under (`<root>/<bucket>/<key>`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a bucket (a folder of the root).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.join(bucket)).expect("create bucket folder");
    }

    /// Path of an object's file.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Every object key in `bucket`, sorted (`/`-separated, relative to the bucket).
    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(rel) = path.strip_prefix(base) {
                    let key: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(key.join("/"));
                }
            }
        }
        let base = self.root.join(bucket);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// Whether the server is accepting connections.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stops accepting and closes every open connection. Stored objects stay.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Starts again on the same port (after [`S3TestServer::stop`]).
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the same port");
        self.serve(listener);
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(true);
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_and_restarts_on_the_same_port() {
        let dir = std::env::temp_dir().join(format!("s3test-{}", std::process::id()));
        let mut s = S3TestServer::start(&dir, "AK", "SK").await;
        let addr = s.addr();
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        s.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        s.restart().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        assert_eq!(s.addr(), addr);
        s.create_bucket("b");
        std::fs::write(s.object_path("b", "k"), b"x").unwrap();
        assert_eq!(s.list_keys("b"), vec!["k".to_string()]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
