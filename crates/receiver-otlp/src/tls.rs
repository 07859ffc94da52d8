//! TLS on a listener (`protocols.{http,grpc}.tls`, the Collector's `configtls.ServerConfig`
//! key names), with rustls: the server certificate chain and key, optionally a client CA
//! (mutual TLS: every client must present a certificate it signed), and the lowest
//! protocol version. ALPN offers `h2` and `http/1.1`, so OTLP/HTTP clients can use HTTP/2.
//!
//! Certificates are re-read when their files change: before each new connection the
//! listener compares the files' modification time, size and inode with those it loaded
//! (a few `stat`s, next to a handshake's cost), and rebuilds its rustls config when one
//! changed. A renewed certificate (cert-manager, certbot, a SIGHUP after replacing the
//! files) is served from the next connection on; open connections keep theirs and are not
//! dropped. A renewal that does not load (a half-written file) keeps the previous
//! certificate and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tracecast_config::exporter::{pem_certs, pem_key};
use tracecast_config::FieldError;

/// `tls` of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM file with the server certificate, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file of the CAs whose client certificates are accepted. Set: mutual TLS, a
    /// client without such a certificate cannot connect.
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
}

impl TlsServerConfig {
    /// Every problem, with paths below `key` (`protocols.http.tls`). Reads and parses the
    /// files, so `tracecast validate` reports a missing or malformed one with its key.
    pub fn validate_at(&self, key: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (name, path) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if path.as_os_str().is_empty() {
                errors.push(FieldError::new(
                    format!("{key}.{name}"),
                    "is required with tls: the PEM file path",
                ));
            }
        }
        if let Some(version) = &self.min_version {
            if version != "1.2" && version != "1.3" {
                errors.push(FieldError::new(
                    format!("{key}.min_version"),
                    format!("{version:?} is not supported; use \"1.2\" or \"1.3\""),
                ));
            }
        }
        if self
            .client_ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            errors.push(FieldError::new(
                format!("{key}.client_ca_file"),
                "is empty; give a PEM file path or remove the key",
            ));
        }
        if errors.is_empty() {
            if let Err((field, message)) = build(self, Vec::new()) {
                errors.push(FieldError::new(format!("{key}.{field}"), message));
            }
        }
        errors
    }

    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert_file.as_path(), self.key_file.as_path()];
        files.extend(self.client_ca_file.as_deref());
        files
    }
}

/// What identifies a file's content cheaply: modification time, size, inode.
type Stamp = Vec<Option<(SystemTime, u64, u64)>>;

fn stamp(files: &[&Path]) -> Stamp {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            Some((m.modified().ok()?, m.len(), inode))
        })
        .collect()
}

/// A listener's TLS: the config it serves and the files it came from.
pub(crate) struct TlsServer {
    config: TlsServerConfig,
    alpn: Vec<Vec<u8>>,
    current: Mutex<(Stamp, Arc<ServerConfig>)>,
    receiver: String,
}

impl TlsServer {
    /// Loads the files (errors name the file and the problem).
    pub fn load(config: &TlsServerConfig, receiver: &str) -> Result<Self, String> {
        let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let files = config.files();
        let before = stamp(&files);
        let server = build(config, alpn.clone()).map_err(|(_, message)| message)?;
        Ok(Self {
            config: config.clone(),
            alpn,
            current: Mutex::new((before, Arc::new(server))),
            receiver: receiver.to_string(),
        })
    }

    /// The acceptor for a new connection, with the certificates re-read first if their
    /// files changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.config.files());
        if now != current.0 {
            match build(&self.config, self.alpn.clone()) {
                Ok(server) => {
                    tracing::info!(receiver = %self.receiver, cert_file = %self.config.cert_file.display(), "TLS certificate files changed; serving the new ones to new connections");
                    *current = (now, Arc::new(server));
                }
                Err((_, message)) => {
                    // Retried at the next connection; the files may be mid-write.
                    tracing::warn!(receiver = %self.receiver, error = %message, "TLS files changed but do not load; still serving the previous certificate");
                }
            }
        }
        TlsAcceptor::from(current.1.clone())
    }
}

/// Builds the rustls config; an error names the config key it concerns and says why.
fn build(
    config: &TlsServerConfig,
    alpn: Vec<Vec<u8>>,
) -> Result<ServerConfig, (&'static str, String)> {
    let chain = read_certs(&config.cert_file).map_err(|m| ("cert_file", m))?;
    let key = std::fs::read(&config.key_file)
        .map_err(|e| format!("{}: cannot read it ({e})", config.key_file.display()))
        .and_then(|pem| pem_key(&pem, &config.key_file))
        .map_err(|m| ("key_file", m))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&SupportedProtocolVersion] = match config.min_version.as_deref() {
        Some("1.3") => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let builder = match &config.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca).map_err(|m| ("client_ca_file", m))? {
                roots.add(cert).map_err(|e| {
                    (
                        "client_ca_file",
                        format!("{}: not a usable CA certificate ({e})", ca.display()),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ("client_ca_file", format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        (
            "key_file",
            format!(
                "{} and {} do not make a usable certificate ({e}); check that the key belongs to the certificate",
                config.cert_file.display(),
                config.key_file.display()
            ),
        )
    })?;
    server.alpn_protocols = alpn;
    Ok(server)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("{}: cannot read it ({e})", path.display()))?;
    pem_certs(&pem, path)
}
