//! TLS through the `tracecast` binary: OTLP/HTTP and OTLP/gRPC with certificates from a CA
//! made at test time; the Python SDK's gRPC exporter trusting the CA delivers to the
//! backend; after the certificate files are renewed and the daemon gets SIGHUP, new
//! connections see the renewed certificate while a connection opened before keeps
//! working.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tracecast_tests::fixtures::request_with_named_spans;
use tracecast_tests::{free_port, local, run_python_script, Daemon, RecordingOtlpServer};

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

fn ca() -> Issuer {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // rcgen's default subject is the same for every certificate; a leaf whose subject
    // equals its issuer's looks self-signed to BoringSSL (gRPC clients).
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tracecast test CA");
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// Writes a `localhost` server certificate signed by `ca` to `cert`/`key`; returns its DER.
fn server_cert(ca: &Issuer, cert: &Path, key: &Path) -> Vec<u8> {
    let pair = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let c = params.signed_by(&pair, ca).unwrap();
    std::fs::write(cert, c.pem()).unwrap();
    std::fs::write(key, pair.serialize_pem()).unwrap();
    c.der().to_vec()
}

/// The certificate a new TLS connection to `port` is served.
async fn served(ca: &Issuer, port: u16) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(local(port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_protocols_and_renewed_certificates_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let ca = ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (cert, key): (PathBuf, PathBuf) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = server_cert(&ca, &cert, &key);
    let (http, grpc) = (free_port(), free_port());
    let tls = format!(
        "tls: {{cert_file: {}, key_file: {}}}",
        cert.display(),
        key.display()
    );
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{http}\n        \
         {tls}\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n        {tls}\n\
         exporters:\n  otlp:\n    endpoint: {}\n    encoding: protobuf\n\
         service:\n  queue_dir: {}\n  admin: {{endpoint: \"\"}}\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [otlp]\n",
        backend.endpoint(),
        dir.path().join("queue").display()
    );
    let daemon = Daemon::run_config(dir.path(), "tls", &yaml, &[], local(grpc));

    // OTLP/gRPC over TLS from the Python SDK.
    let out = run_python_script(
        "send_spans_grpc.py",
        vec![
            format!("localhost:{grpc}"),
            "5".into(),
            "grpcs".into(),
            "gzip".into(),
            "-".into(),
            ca_file.to_string_lossy().into_owned(),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_text()
    );
    // OTLP/HTTP over TLS (HTTP/2 by ALPN) on a connection kept open across the renewal.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let send = |prefix: &'static str| {
        let client = client.clone();
        async move {
            client
                .post(format!("https://localhost:{http}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(request_with_named_spans(prefix, 2).encode_to_vec())
                .send()
                .await
                .unwrap()
        }
    };
    let resp = send("before").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(served(&ca, http).await, first);

    // Renewal, then SIGHUP (the config file itself is unchanged).
    let renewed = server_cert(&ca, &cert, &key);
    daemon.signal("HUP");
    assert_eq!(served(&ca, http).await, renewed);
    assert_eq!(served(&ca, grpc).await, renewed);
    assert_eq!(send("after").await.status(), 200);

    let spans = backend.wait_for_spans(9, Duration::from_secs(20)).await;
    assert_eq!(spans.len(), 9, "{}", daemon.log_text());
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("TLS certificate files changed"), "{log}");
}
