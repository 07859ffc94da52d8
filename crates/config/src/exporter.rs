//! Settings shared by every exporter, one definition each (as the Collector's
//! `configretry.BackOffConfig`, `configcompression.Type` and `configtls.ClientConfig`):
//! [`RetryOnFailure`] for `retry_on_failure`, [`Compression`] for `compression`,
//! [`ClientTls`] for `tls`, and the validation of `timeout`, `dead_letter_dir` and
//! `dead_letter_max_size`. Each exporter's config embeds them under the same key names, so
//! the keys mean the same thing in every `exporters.<type>` section.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tracecast_core::retry::RetryPolicy;

use crate::{ByteSize, Duration, FieldError};

/// `retry_on_failure`: how failed sends are retried (the Collector's field names, meanings
/// and defaults). Retryable failures (429/502/503/504, throttling, 5xx from S3, timeouts,
/// unreachable endpoints) wait `initial_interval`, then `multiplier` times longer each
/// time up to `max_interval`, each wait varied by +/- `randomization_factor`; a
/// `Retry-After` from the backend is honoured instead.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryOnFailure {
    /// When false, a failed send is not retried: it goes to the dead-letter folder at once.
    pub enabled: bool,
    /// Wait before the first retry.
    pub initial_interval: Duration,
    /// Upper bound of one wait (a `Retry-After` from the backend may ask for longer).
    pub max_interval: Duration,
    /// Give up (and dead-letter the data) this long after the first attempt. `0` means no
    /// limit, as in the Collector: retry until the shutdown deadline, after which the data
    /// stays in the durable queue for the next start.
    pub max_elapsed_time: Duration,
    /// Growth of the wait between attempts (at least 1).
    pub multiplier: f64,
    /// +/- fraction of each wait drawn at random (0 to 1), so senders do not retry in
    /// lockstep.
    pub randomization_factor: f64,
}

impl Default for RetryOnFailure {
    /// The Collector's defaults: 5s, then x1.5 up to 30s, +/-50%, for at most 300s.
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryOnFailure {
    /// The shared retry loop's policy. `max_elapsed_time: 0` gives no limit (only the hard
    /// stop ends the retries); disabled retries give up after the first failure.
    pub fn policy(&self) -> RetryPolicy {
        let max = self.max_elapsed_time.get();
        RetryPolicy {
            initial_interval: self.initial_interval.get(),
            max_interval: self.max_interval.get(),
            multiplier: self.multiplier,
            randomization_factor: self.randomization_factor,
            max_elapsed_time: if !self.enabled {
                Some(std::time::Duration::ZERO)
            } else if max.is_zero() {
                None
            } else {
                Some(max)
            },
        }
    }

    /// Every problem, with paths below `key` (the exporter's `retry_on_failure`).
    pub fn validate_at(&self, key: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let at = |field: &str| format!("{key}.{field}");
        if self.initial_interval.get().is_zero() {
            errors.push(FieldError::new(
                at("initial_interval"),
                "must be greater than 0, e.g. 5s",
            ));
        }
        if self.max_interval < self.initial_interval {
            errors.push(FieldError::new(
                at("max_interval"),
                format!(
                    "({}) must not be less than initial_interval ({})",
                    self.max_interval, self.initial_interval
                ),
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            errors.push(FieldError::new(
                at("multiplier"),
                "must be a number of at least 1, e.g. 1.5",
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            errors.push(FieldError::new(
                at("randomization_factor"),
                "must be between 0 and 1, e.g. 0.5",
            ));
        }
        errors
    }
}

/// `compression`: how an exporter compresses what it sends (`none`, `gzip` or `zstd`). The
/// type's default is `gzip`, the Collector's for network exporters (the `otlp` exporter
/// keeps it); the `s3` exporter's config picks `none`, so trace files stay plain `.json`
/// as the gateway writes them and existing readers keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Sent as is.
    None,
    /// gzip (RFC 1952).
    #[default]
    Gzip,
    /// zstd (RFC 8878), for backends that want it, by the pure-Rust encoder at its fastest
    /// setting (`compression_level` is gzip's). On gateway payloads it is larger and
    /// slower than gzip level 2 (README, "zstd"), so gzip stays the default.
    Zstd,
}

/// `tls`: how an exporter's client checks the server and proves who it is (the Collector's
/// `configtls.ClientConfig` key names). System roots are always trusted; `ca_file` adds to
/// them.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file of extra CA certificates to trust (private CAs), besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) presented for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1); needs
    /// `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Only for testing: it defeats TLS.
    pub insecure_skip_verify: bool,
}

/// A validated `tls` block: the files read and their PEM parsed, once. Exporters turn it
/// into their HTTP client's types at their own validation, so building a client reads and
/// parses nothing.
#[derive(Debug, Clone, Default)]
pub struct ValidClientTls {
    /// The certificates of `ca_file` (none when unset).
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// The client identity (`cert_file` + `key_file`).
    pub identity: Option<ClientIdentity>,
    /// `insecure_skip_verify`.
    pub insecure_skip_verify: bool,
}

/// A client certificate chain and its key, parsed.
pub struct ClientIdentity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// `cert_file` then `key_file` as read, one PEM document (what HTTP clients such as
    /// `reqwest::Identity::from_pem` take).
    pub pem: Vec<u8>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            pem: self.pem.clone(),
        }
    }
}

/// Never shows the key.
impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Whether a client certificate is configured (`cert_file` or `key_file`).
    pub fn has_identity(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Reads and parses the files, every problem with its path below `key` (the exporter's
    /// `tls`). Reading files is the one I/O validation does: an unreadable or malformed
    /// file is a config problem `tracecast validate` reports, not a failure at start.
    pub fn validate_at(&self, key: &str) -> Result<ValidClientTls, Vec<FieldError>> {
        let mut errors = Vec::new();
        let at = |field: &str| format!("{key}.{field}");
        let ca_certs = match &self.ca_file {
            Some(path) => match read_file(path, &at("ca_file"), &mut errors) {
                Some(pem) => {
                    let certs = parse_certs(&pem, path, &at("ca_file"), &mut errors);
                    // The armour parsed; each certificate inside must too, or the HTTP
                    // client would refuse to start.
                    for (i, der) in certs.iter().enumerate() {
                        if let Err(e) = rustls::RootCertStore::empty().add(der.clone()) {
                            errors.push(FieldError::new(
                                at("ca_file"),
                                format!(
                                    "certificate {} in {} is not usable as a CA: {e}",
                                    i + 1,
                                    path.display()
                                ),
                            ));
                        }
                    }
                    certs
                }
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                let missing = if self.cert_file.is_none() {
                    "cert_file"
                } else {
                    "key_file"
                };
                errors.push(FieldError::new(
                    at(missing),
                    "cert_file and key_file go together: set both for a client certificate (mutual TLS), or neither",
                ));
                None
            }
            (Some(cert), Some(key_path)) => {
                let cert_pem = read_file(cert, &at("cert_file"), &mut errors);
                let key_pem = read_file(key_path, &at("key_file"), &mut errors);
                match (cert_pem, key_pem) {
                    (Some(cert_pem), Some(key_pem)) => {
                        let cert_chain =
                            parse_certs(&cert_pem, cert, &at("cert_file"), &mut errors);
                        let key = parse_key(&key_pem, key_path, &at("key_file"), &mut errors)
                            .filter(|_| !cert_chain.is_empty())
                            .filter(|key| {
                                check_pair(&cert_chain, key, key_path, &at("key_file"), &mut errors)
                            });
                        key.map(|key| ClientIdentity {
                            cert_chain,
                            key,
                            pem: [cert_pem, b"\n".to_vec(), key_pem].concat(),
                        })
                    }
                    _ => None,
                }
            }
        };
        if errors.is_empty() {
            Ok(ValidClientTls {
                ca_certs,
                identity,
                insecure_skip_verify: self.insecure_skip_verify,
            })
        } else {
            Err(errors)
        }
    }
}

/// The file at `path`, or a problem at `field`.
fn read_file(path: &Path, field: &str, errors: &mut Vec<FieldError>) -> Option<Vec<u8>> {
    if path.as_os_str().is_empty() {
        errors.push(FieldError::new(
            field,
            "is empty; give the path of a PEM file or remove the key",
        ));
        return None;
    }
    std::fs::read(path)
        .map_err(|e| {
            errors.push(FieldError::new(
                field,
                format!(
                    "cannot read {}: {e}; check the path and its permissions",
                    path.display()
                ),
            ))
        })
        .ok()
}

/// Every certificate in `pem`, read from `path`: at least one, else a message that says why.
/// Shared by the exporters' client TLS block and the receiver's server TLS.
pub fn pem_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!(
            "{} has no CERTIFICATE block, so it holds no certificate; it must contain -----BEGIN CERTIFICATE----- blocks",
            path.display()
        )),
        Err(e) => Err(format!("{} is not valid PEM ({e})", path.display())),
    }
}

/// The private key in `pem`, read from `path`; the message never shows key material.
/// Shared by the exporters' client TLS block and the receiver's server TLS.
pub fn pem_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "holds no private key; it must contain a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block".to_string()
            }
            e => format!("is not a valid PEM private key ({e})"),
        };
        format!("{} {why}", path.display())
    })
}

/// [`pem_certs`], its problem recorded at `field`.
fn parse_certs(
    pem: &[u8],
    path: &Path,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<CertificateDer<'static>> {
    pem_certs(pem, path).unwrap_or_else(|message| {
        errors.push(FieldError::new(field, message));
        Vec::new()
    })
}

/// Whether `key` is usable and belongs to the first certificate of `chain` (else the HTTP
/// client would refuse to start, with a less helpful message).
fn check_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    path: &Path,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> bool {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider) {
        Ok(_) => true,
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            errors.push(FieldError::new(
                field,
                format!(
                    "{} is not the key of the certificate in cert_file; give the key it was issued for",
                    path.display()
                ),
            ));
            false
        }
        Err(e) => {
            errors.push(FieldError::new(
                field,
                format!("{} is not a usable private key ({e})", path.display()),
            ));
            false
        }
    }
}

/// [`pem_key`], its problem recorded at `field`.
fn parse_key(
    pem: &[u8],
    path: &Path,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<PrivateKeyDer<'static>> {
    pem_key(pem, path)
        .map_err(|message| errors.push(FieldError::new(field, message)))
        .ok()
}

/// The default dead-letter folder bound: 256 MiB (a quarter of the default
/// `service.queue.max_size`).
pub const DEFAULT_DEAD_LETTER_MAX_SIZE: ByteSize = ByteSize::mib(256);

/// Checks `timeout` (one request, from connect to the end of the answer): greater than 0.
pub fn validate_timeout(timeout: Duration) -> Option<FieldError> {
    timeout
        .get()
        .is_zero()
        .then(|| FieldError::new("timeout", "must be greater than 0, e.g. 10s"))
}

/// Checks `dead_letter_dir`: absent (the default folder) or a non-empty path.
pub fn validate_dead_letter_dir(dir: Option<&Path>) -> Option<FieldError> {
    dir.is_some_and(|p| p.as_os_str().is_empty()).then(|| {
        FieldError::new(
            "dead_letter_dir",
            "is empty; give a folder path or remove the key (default ./tracecast-data/dead-letter/<exporter id>)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_collectors() {
        let p = RetryOnFailure::default().policy();
        assert_eq!(p, RetryPolicy::default());
    }

    #[test]
    fn zero_max_elapsed_time_means_no_limit_and_disabled_means_one_attempt() {
        let mut r = RetryOnFailure {
            max_elapsed_time: Duration::from_secs(0),
            ..Default::default()
        };
        assert_eq!(r.policy().max_elapsed_time, None);
        assert_eq!(r.validate_at("retry_on_failure"), vec![]);
        r.enabled = false;
        assert_eq!(r.policy().max_elapsed_time, Some(std::time::Duration::ZERO));
    }

    /// A PEM block of `label` around bytes that are no DER: the armour parses, the content
    /// does not.
    fn pem(label: &str) -> String {
        format!("-----BEGIN {label}-----\nMIIBAA==\n-----END {label}-----\n")
    }

    /// A CA certificate made now, as PEM.
    fn test_ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn tls_files_are_read_and_parsed_once() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client.key");
        std::fs::write(&ca, test_ca() + &test_ca()).unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&client_key)
            .unwrap();
        std::fs::write(&cert, client.pem()).unwrap();
        std::fs::write(&key, client_key.serialize_pem()).unwrap();
        let tls = ClientTls {
            ca_file: Some(ca),
            cert_file: Some(cert),
            key_file: Some(key),
            insecure_skip_verify: false,
        };
        let valid = tls.validate_at("tls").unwrap();
        assert_eq!(valid.ca_certs.len(), 2);
        let identity = valid.identity.unwrap();
        assert_eq!(identity.cert_chain.len(), 1);
        assert!(
            !format!("{identity:?}").contains("PRIVATE"),
            "the key is never shown"
        );
        let unset = ClientTls::default().validate_at("tls").unwrap();
        assert!(unset.ca_certs.is_empty() && unset.identity.is_none());
    }

    #[test]
    fn tls_problems_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let cert_only = dir.path().join("cert.pem");
        std::fs::write(&cert_only, pem("CERTIFICATE")).unwrap();
        let problems = |tls: ClientTls| -> Vec<(String, String)> {
            tls.validate_at("tls")
                .unwrap_err()
                .into_iter()
                .map(|e| (e.path, e.message))
                .collect()
        };

        let p = problems(ClientTls {
            ca_file: Some(dir.path().join("missing.pem")),
            ..Default::default()
        });
        assert_eq!(p[0].0, "tls.ca_file");
        assert!(p[0].1.starts_with("cannot read "), "{}", p[0].1);

        let p = problems(ClientTls {
            ca_file: Some(junk.clone()),
            ..Default::default()
        });
        assert!(
            p[0].1.ends_with(
                "holds no certificate; it must contain -----BEGIN CERTIFICATE----- blocks"
            ),
            "{}",
            p[0].1
        );
        let p = problems(ClientTls {
            ca_file: Some(broken),
            ..Default::default()
        });
        assert!(p[0].1.contains("is not valid PEM"), "{}", p[0].1);
        let fake = dir.path().join("fake.pem");
        std::fs::write(&fake, pem("CERTIFICATE")).unwrap();
        let p = problems(ClientTls {
            ca_file: Some(fake),
            ..Default::default()
        });
        assert!(p[0].1.starts_with("certificate 1 in "), "{}", p[0].1);
        assert!(p[0].1.contains("is not usable as a CA"), "{}", p[0].1);
        let p = problems(ClientTls {
            ca_file: Some(PathBuf::new()),
            ..Default::default()
        });
        assert!(p[0].1.starts_with("is empty"), "{}", p[0].1);

        // A key file holding a certificate, and a certificate without its key.
        let p = problems(ClientTls {
            cert_file: Some(cert_only.clone()),
            key_file: Some(cert_only.clone()),
            ..Default::default()
        });
        assert_eq!(p[0].0, "tls.key_file");
        assert!(p[0].1.contains("holds no private key"), "{}", p[0].1);
        let p = problems(ClientTls {
            cert_file: Some(cert_only),
            ..Default::default()
        });
        assert_eq!(p[0].0, "tls.key_file");
        assert!(p[0].1.starts_with("cert_file and key_file go together"));
    }

    #[test]
    fn every_problem_has_its_path() {
        let r = RetryOnFailure {
            initial_interval: Duration::from_secs(0),
            max_interval: Duration::from_secs(0),
            multiplier: 0.5,
            randomization_factor: 2.0,
            ..Default::default()
        };
        let paths: Vec<_> = r
            .validate_at("retry_on_failure")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "retry_on_failure.initial_interval",
                "retry_on_failure.multiplier",
                "retry_on_failure.randomization_factor"
            ]
        );
    }
}
