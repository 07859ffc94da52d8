//! The forwarder over HTTPS with mutual TLS: a backend (hyper behind rustls, on 127.0.0.1)
//! whose certificate and required client certificate come from a CA made at test time.
//! `tls.ca_file` trusts the CA, `tls.cert_file` + `tls.key_file` present the client
//! certificate; without the client certificate the backend refuses the handshake.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::PrivatePkcs8KeyDer;
use support::{build, config};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracecast_config::ValidateInto;
use tracecast_core::Exporter;

/// PEM files of a CA, and of a client certificate and key it signed.
struct Files {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

fn ca() -> Issuer {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `name` signed by `ca`, and its key.
fn leaf(ca: &Issuer, name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert, key)
}

/// An HTTPS server answering 200 to everything, that requires a client certificate signed
/// by `ca`.
async fn mtls_backend(ca: &Issuer) -> SocketAddr {
    let (cert, key) = leaf(ca, "127.0.0.1");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake just closes the connection.
                let Ok(stream) = acceptor.accept(socket).await else {
                    return;
                };
                let ok = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), ok)
                    .await;
            });
        }
    });
    addr
}

fn write_files(dir: &Path, ca: &Issuer) -> Files {
    let (cert, key) = leaf(ca, "tracecast");
    let files = Files {
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.client_cert, cert.pem()).unwrap();
    std::fs::write(&files.client_key, key.serialize_pem()).unwrap();
    files
}

#[tokio::test]
async fn a_client_certificate_gets_through_a_backend_that_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let files = write_files(dir.path(), &ca);
    let addr = mtls_backend(&ca).await;
    let mut c = config(&format!("https://{addr}/v1/traces"));
    c.tls.ca_file = Some(files.ca.clone());
    c.tls.cert_file = Some(files.client_cert);
    c.tls.key_file = Some(files.client_key);
    build("otlp/mtls", &c).test_connection().await.unwrap();

    // The same backend, trusted but without a client certificate: refused.
    let mut c = config(&format!("https://{addr}/v1/traces"));
    c.tls.ca_file = Some(files.ca);
    let err = build("otlp/mtls", &c)
        .test_connection()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&addr.to_string()), "{err}");
}

#[test]
fn a_key_that_is_not_a_key_or_a_lone_half_is_a_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca());
    let mut c = config("https://example.com/v1/traces");
    c.tls.cert_file = Some(files.client_cert.clone());
    c.tls.key_file = Some(files.client_cert.clone());
    let problems = c.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "tls.key_file");
    assert!(problems[0].message.contains("holds no private key"));

    c.tls.key_file = None;
    assert_eq!(c.problems()[0].path, "tls.key_file");
    c.tls.key_file = Some(files.client_key);
    assert!(c.validate_into().is_ok());
}

#[test]
fn a_key_of_another_certificate_is_a_problem_at_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca());
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&files.client_key, other.serialize_pem()).unwrap();
    let mut c = config("https://example.com/v1/traces");
    c.tls.cert_file = Some(files.client_cert);
    c.tls.key_file = Some(files.client_key);
    let problems = c.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "tls.key_file");
    assert!(
        problems[0]
            .message
            .contains("is not the key of the certificate in cert_file"),
        "{}",
        problems[0].message
    );
}
