//! TLS on both protocols, with a CA and certificates made at test time (rcgen): reqwest
//! (HTTP/1.1 and HTTP/2 negotiated by ALPN), curl and the Python SDK (OTLP/HTTP and
//! OTLP/gRPC) trusting the CA succeed; a client without the CA fails; with
//! `client_ca_file` a client without a certificate is refused and one with a certificate
//! the CA signed gets through; renewed certificate files are served to the next
//! connection while an open connection keeps working.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use prost::Message;
use support::{request, start, Started};
use tracecast_receiver_otlp::config::{GrpcProtocol, HttpProtocol, Protocols};
use tracecast_receiver_otlp::{Protocol, TlsServerConfig};

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

fn ca() -> Issuer {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tracecast test CA");
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` signed by `ca`, written as `<stem>.pem` and `<stem>-key.pem`.
fn leaf(dir: &Path, ca: &Issuer, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    let (cert_file, key_file) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file, cert.der().to_vec())
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (cert_file, key_file, _) = leaf(dir.path(), &ca, "server", &["localhost", "127.0.0.1"]);
    Pki {
        dir,
        ca,
        ca_file,
        cert_file,
        key_file,
    }
}

async fn start_tls(id: &str, pki: &Pki, client_ca: bool) -> (Started, SocketAddr, SocketAddr) {
    let tls = TlsServerConfig {
        cert_file: pki.cert_file.clone(),
        key_file: pki.key_file.clone(),
        client_ca_file: client_ca.then(|| pki.ca_file.clone()),
        min_version: None,
    };
    let s = start(id, |c| {
        c.protocols = Some(Protocols {
            http: Some(HttpProtocol {
                endpoint: "127.0.0.1:0".into(),
                tls: Some(tls.clone()),
                ..Default::default()
            }),
            grpc: Some(GrpcProtocol {
                endpoint: "127.0.0.1:0".into(),
                tls: Some(tls),
                ..Default::default()
            }),
        });
    })
    .await;
    let http = s.running.addr(Protocol::Http).unwrap();
    let grpc = s.running.addr(Protocol::Grpc).unwrap();
    (s, http, grpc)
}

fn https(addr: SocketAddr) -> String {
    format!("https://localhost:{}/v1/traces", addr.port())
}

fn trusting(pki: &Pki) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_file).unwrap()).unwrap();
    reqwest::Client::builder().no_proxy().tls_certs_only([ca])
}

async fn post(client: &reqwest::Client, url: &str) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(request(2).encode_to_vec())
        .send()
        .await
}

fn python() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/bin/python"
    ))
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python")).join(name)
}

async fn run(cmd: Command) -> std::process::Output {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_trusting_the_ca_succeed_over_http1_http2_and_grpc() {
    let pki = pki();
    let (s, http, grpc) = start_tls("otlp/tls", &pki, false).await;
    // ALPN: h2 when the client offers it, HTTP/1.1 otherwise.
    let resp = post(&trusting(&pki).build().unwrap(), &https(http))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let resp = post(&trusting(&pki).http1_only().build().unwrap(), &https(http))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    // curl with the CA file.
    let body = pki.dir.path().join("request.pb");
    std::fs::write(&body, request(1).encode_to_vec()).unwrap();
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        "--cacert",
    ])
    .arg(&pki.ca_file)
    .args([
        "-H",
        "content-type: application/x-protobuf",
        "--data-binary",
    ])
    .arg(format!("@{}", body.display()))
    .arg(https(http));
    let out = run(curl).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2", "{out:?}");
    // The Python SDK over OTLP/HTTP and OTLP/gRPC, with the CA file.
    let mut py = Command::new(python());
    // `requests` lets these variables override the exporter's CA file (a known quirk of
    // requests' `Session.verify`); a user who sets them for the system CAs hits it too.
    py.env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .arg(script("send_spans.py"))
        .args([&https(http), "3", "pyhttps", "gzip"])
        .arg(&pki.ca_file);
    let out = run(py).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut py = Command::new(python());
    py.arg(script("send_spans_grpc.py"))
        .args([
            &format!("localhost:{}", grpc.port()),
            "4",
            "pygrpcs",
            "gzip",
            "-",
        ])
        .arg(&pki.ca_file);
    let out = run(py).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let spans: usize = s.sink.batches().iter().map(|b| b.span_count()).sum();
    assert_eq!(spans, 2 + 2 + 1 + 3 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_the_ca_fail() {
    let pki = pki();
    let (s, http, grpc) = start_tls("otlp/tls-noca", &pki, false).await;
    let err = post(
        &reqwest::Client::builder().no_proxy().build().unwrap(),
        &https(http),
    )
    .await
    .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-o", "/dev/null", "--data-binary", "x", &https(http)]);
    let out = run(curl).await;
    assert_eq!(out.status.code(), Some(60), "{out:?}"); // peer certificate cannot be verified
                                                        // Plain HTTP to the TLS port gets no answer a client could take for success.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(post(
        &plain,
        &format!("http://127.0.0.1:{}/v1/traces", http.port())
    )
    .await
    .is_err());
    let mut py = Command::new(python());
    py.env("SEND_TIMEOUT", "3")
        .arg(script("send_spans_grpc.py"))
        .args([&format!("127.0.0.1:{}", grpc.port()), "1", "plain", "none"]);
    let out = run(py).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(s.sink.batches().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = pki();
    let (s, http, _) = start_tls("otlp/mtls", &pki, true).await;
    let err = post(&trusting(&pki).build().unwrap(), &https(http))
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // A certificate from another CA is refused too.
    let other = ca();
    let (c, k, _) = leaf(pki.dir.path(), &other, "stranger", &["stranger"]);
    let identity = |c: &Path, k: &Path| {
        let pem = [std::fs::read(c).unwrap(), std::fs::read(k).unwrap()].concat();
        reqwest::Identity::from_pem(&pem).unwrap()
    };
    let client = trusting(&pki).identity(identity(&c, &k)).build().unwrap();
    assert!(post(&client, &https(http)).await.is_err());
    // A certificate the CA signed gets through.
    let (c, k, _) = leaf(pki.dir.path(), &pki.ca, "client", &["gateway"]);
    let client = trusting(&pki).identity(identity(&c, &k)).build().unwrap();
    assert_eq!(post(&client, &https(http)).await.unwrap().status(), 200);
    assert_eq!(s.sink.batches().len(), 1);
}

/// The certificate the server presents to a new connection.
async fn served_certificate(pki: &Pki, addr: SocketAddr) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types_certs(&pki.ca_file) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn rustls_pki_types_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_files_are_served_to_new_connections() {
    let pki = pki();
    let (s, http, _) = start_tls("otlp/tls-renew", &pki, false).await;
    let first = served_certificate(&pki, http).await;
    // An HTTP/2 connection opened before the renewal.
    let client = trusting(&pki).build().unwrap();
    assert_eq!(post(&client, &https(http)).await.unwrap().status(), 200);
    // Renewal: a new key and certificate written over the files.
    let (_, _, renewed) = leaf(
        pki.dir.path(),
        &pki.ca,
        "server",
        &["localhost", "127.0.0.1"],
    );
    assert_ne!(first, renewed);
    assert_eq!(served_certificate(&pki, http).await, renewed);
    // The open connection goes on.
    assert_eq!(post(&client, &https(http)).await.unwrap().status(), 200);
    // A broken renewal keeps the certificate that works.
    std::fs::write(&pki.cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    assert_eq!(served_certificate(&pki, http).await, renewed);
    assert_eq!(s.sink.batches().len(), 2);
}

#[tokio::test]
async fn min_version_1_3_refuses_a_tls_1_2_client() {
    let pki = pki();
    let s = start("otlp/tls13", |c| {
        c.protocols = Some(Protocols {
            http: Some(HttpProtocol {
                endpoint: "127.0.0.1:0".into(),
                tls: Some(TlsServerConfig {
                    cert_file: pki.cert_file.clone(),
                    key_file: pki.key_file.clone(),
                    client_ca_file: None,
                    min_version: Some("1.3".into()),
                }),
                ..Default::default()
            }),
            grpc: None,
        });
    })
    .await;
    let http = s.running.addr(Protocol::Http).unwrap();
    let tls12 = trusting(&pki)
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(post(&tls12, &https(http)).await.is_err());
    let tls13 = trusting(&pki).build().unwrap();
    assert_eq!(post(&tls13, &https(http)).await.unwrap().status(), 200);
}
