//! The s3 exporter over HTTPS: the in-process S3 server behind a certificate from a CA made
//! at test time. `tls.ca_file` makes the exporter trust that CA; without it the handshake
//! fails; a client certificate is refused at validation (object_store takes none).

mod support;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::PrivatePkcs8KeyDer;
use support::*;
use tracecast_config::ValidateInto;
use tracecast_core::Exporter;
use tracecast_exporter_s3::S3ExporterConfig;
use tracecast_test_util::s3::S3TestServer;

/// A CA (its PEM) and a server config whose certificate it signed for 127.0.0.1.
fn pki() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    (ca.pem(), Arc::new(server))
}

async fn https_server(dir: &Path) -> (String, S3TestServer) {
    let (ca_pem, server_config) = pki();
    let server = S3TestServer::start_tls(dir.join("s3"), AK, SK, server_config).await;
    server.create_bucket(BUCKET);
    assert!(server.endpoint().starts_with("https://"));
    (ca_pem, server)
}

#[tokio::test]
async fn ca_file_makes_a_private_ca_trusted_and_traces_are_written_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, server) = https_server(dir.path()).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut config = s3_config(&server, &dir.path().join("dl"));
    config.tls.ca_file = Some(ca_file);

    build("s3/tls", &config).test_connection().await.unwrap();
    let run = Running::start(&config);
    run.send(batch(vec![span(7, 1, None, "root", 0, vec![])], None))
        .await;
    let deliveries = run.finish().await;
    assert!(
        matches!(
            deliveries.as_slice(),
            [tracecast_exporter_s3::Delivery::Written { .. }]
        ),
        "{deliveries:?}"
    );
    assert_eq!(server.list_keys(BUCKET).len(), 2, "the probe and the trace");
}

#[tokio::test]
async fn without_the_ca_the_handshake_fails_and_insecure_skip_verify_accepts_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (_, server) = https_server(dir.path()).await;
    let mut config = s3_config(&server, &dir.path().join("dl"));
    let err = build("s3/tls", &config)
        .test_connection()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("TLS handshake with https://127.0.0.1:")
            && err.to_string().contains("UnknownIssuer"),
        "{err}"
    );
    assert!(server.list_keys(BUCKET).is_empty());

    config.tls.insecure_skip_verify = true;
    build("s3/tls", &config).test_connection().await.unwrap();
}

fn problems(yaml: &str) -> Vec<(String, String)> {
    serde_yaml::from_str::<S3ExporterConfig>(yaml)
        .unwrap()
        .problems()
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

#[test]
fn a_client_certificate_or_tls_on_a_folder_is_refused_with_its_key() {
    let p = problems("bucket: bkt\ntls: {cert_file: /c.pem, key_file: /k.pem}\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "tls.cert_file");
    assert!(
        p[0].1
            .starts_with("the s3 exporter cannot present a client certificate"),
        "{}",
        p[0].1
    );
    let p = problems("bucket: bkt\ntls: {key_file: /k.pem}\n");
    assert_eq!(p[0].0, "tls.key_file");

    let p = problems("url: file:///tmp/x\ntls: {insecure_skip_verify: true}\n");
    assert_eq!(
        p,
        [(
            "tls".to_string(),
            "`tls` applies to S3 destinations, not to a file:// url".to_string()
        )]
    );

    let p = problems("bucket: bkt\ntls: {ca_file: /nonexistent/ca.pem}\n");
    assert_eq!(p[0].0, "tls.ca_file");
    assert!(
        p[0].1.starts_with("cannot read /nonexistent/ca.pem: "),
        "{}",
        p[0].1
    );
}
