//! `OtlpReceiverConfig`: the YAML keys, the defaults and every validation message.

use tracecast_config::{ByteSize, Duration, FieldError, Validate};
use tracecast_receiver_otlp::{ApiKey, OtlpReceiverConfig, Protocol};

fn parse(yaml: &str) -> OtlpReceiverConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn key(name: &str, token: &str) -> ApiKey {
    ApiKey {
        name: name.into(),
        token: token.into(),
    }
}

#[test]
fn every_documented_key_parses_to_the_exact_struct() {
    let config = parse(
        r#"
endpoint: 0.0.0.0:4318
path: /otlp/v1/traces
max_request_body_size: 8MiB
api_keys:
  - {name: prod-gateway, token: "tok-1"}
  - {name: staging, token: "tok-2"}
max_concurrent_requests: 64
read_timeout: 15s
header_read_timeout: 2s
"#,
    );
    assert_eq!(
        config,
        OtlpReceiverConfig {
            endpoint: "0.0.0.0:4318".into(),
            path: "/otlp/v1/traces".into(),
            max_request_body_size: ByteSize::mib(8),
            api_keys: vec![key("prod-gateway", "tok-1"), key("staging", "tok-2")],
            max_concurrent_requests: 64,
            read_timeout: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(2),
            ..Default::default()
        }
    );
    assert_eq!(config.validate(), vec![]);
}

#[test]
fn an_empty_block_gives_the_defaults_which_are_valid() {
    let config = parse("{}");
    assert_eq!(config, OtlpReceiverConfig::default());
    assert_eq!(config.endpoint, "127.0.0.1:4318");
    assert_eq!(config.path, "/v1/traces");
    assert_eq!(config.max_request_body_size, ByteSize::mib(16));
    assert_eq!(config.max_concurrent_requests, 128);
    assert_eq!(config.read_timeout, Duration::from_secs(30));
    assert_eq!(config.max_spans_per_request, 100_000);
    assert_eq!(config.max_decoded_size, None);
    assert_eq!(config.decoded_size_limit(), 128 * 1024 * 1024);
    assert_eq!(config.max_custom_trace_id_length, 4096);
    assert_eq!(config.max_trace_metadata_size, ByteSize(64 * 1024));
    assert_eq!(config.validate(), vec![]);
}

fn fixture(name: &str) -> String {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn request_limits_parse_from_the_fixture() {
    let config = parse(&fixture("limits.yaml"));
    assert_eq!(
        config,
        OtlpReceiverConfig {
            max_request_body_size: ByteSize::mib(4),
            max_spans_per_request: 20_000,
            max_decoded_size: Some(ByteSize::mib(64)),
            max_custom_trace_id_length: 1024,
            max_trace_metadata_size: ByteSize(16 * 1024),
            max_decompressing_size: Some(ByteSize::mib(32)),
            ..Default::default()
        }
    );
    assert_eq!(config.decoded_size_limit(), 64 * 1024 * 1024);
    assert_eq!(config.validate(), vec![]);
    // Unset, the decoded size follows the body limit.
    let config = parse("max_request_body_size: 4MiB\n");
    assert_eq!(config.decoded_size_limit(), 32 * 1024 * 1024);
}

#[test]
fn zero_request_limits_are_reported_with_their_keys() {
    let config = parse(&fixture("bad_limits.yaml"));
    assert_eq!(
        config.validate(),
        vec![
            FieldError::new("max_spans_per_request", "must be at least 1, like 100000"),
            FieldError::new(
                "max_decoded_size",
                "must be greater than 0, like 128MiB (or leave it unset for 8 x max_request_body_size)"
            ),
            FieldError::new("max_custom_trace_id_length", "must be at least 1, like 4096"),
            FieldError::new("max_trace_metadata_size", "must be greater than 0, like 64KiB"),
        ]
    );
}

#[test]
fn decompressing_size_defaults_to_eight_bodies_and_must_hold_one() {
    assert_eq!(
        OtlpReceiverConfig::default().decompressing_size_limit(),
        128 * 1024 * 1024
    );
    let config = parse("max_request_body_size: 4MiB\nmax_decompressing_size: 2MiB\n");
    assert_eq!(config.max_decompressing_size, Some(ByteSize::mib(2)));
    assert_eq!(
        config.validate(),
        vec![FieldError::new(
            "max_decompressing_size",
            "2097152B is below max_request_body_size (4194304B): a compressed request at the body limit could never be decompressed"
        )]
    );
}

#[test]
fn a_bad_limit_value_names_its_key() {
    let err = serde_yaml::from_str::<OtlpReceiverConfig>(&fixture("bad_limit_unit.yaml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "max_decoded_size: invalid size \"64 parsecs\": expected a number of bytes or a number and a unit, like 16MiB, 512KiB or 1GB at line 2 column 19"
    );
    let err = serde_yaml::from_str::<OtlpReceiverConfig>("max_spans_per_request: -1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_spans_per_request"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let err = serde_yaml::from_str::<OtlpReceiverConfig>("endpont: 1.2.3.4:1\n").unwrap_err();
    assert!(err.to_string().contains("unknown field `endpont`"), "{err}");
    let err =
        serde_yaml::from_str::<OtlpReceiverConfig>("api_keys: [{name: a, token: b, scope: x}]\n")
            .unwrap_err();
    assert!(err.to_string().contains("unknown field `scope`"), "{err}");
}

#[test]
fn the_token_is_never_printed() {
    let printed = format!("{:?}", key("prod", "super-secret"));
    assert!(!printed.contains("super-secret"), "{printed}");
    assert!(printed.contains("prod"));
}

#[test]
fn key_problems_are_reported_with_their_paths() {
    let config = OtlpReceiverConfig {
        api_keys: vec![
            key("prod", "a"),
            key("prod", "b"),
            key("", "c"),
            key("staging", ""),
            key("dev", "with space"),
            key("ci", "a"),
        ],
        ..Default::default()
    };
    assert_eq!(
        config.validate(),
        vec![
            FieldError::new(
                "api_keys[1].name",
                "duplicate key name \"prod\" (also used by api_keys[0]); give every key its own name"
            ),
            FieldError::new(
                "api_keys[2].name",
                "must not be empty: the name identifies the key in S3 paths and logs"
            ),
            FieldError::new(
                "api_keys[3].token",
                "must not be empty (if it comes from ${env:...}, check that the variable is set)"
            ),
            FieldError::new(
                "api_keys[4].token",
                "must be printable ASCII without spaces, as a bearer token sent in an HTTP header"
            ),
            FieldError::new(
                "api_keys[5].token",
                "same token as api_keys[0]; each key needs its own token, else the key name of a request is ambiguous"
            ),
        ]
    );
}

#[test]
fn bad_path_endpoint_and_limits_are_all_reported_at_once() {
    let config = OtlpReceiverConfig {
        endpoint: "localhost".into(),
        path: "v1/traces".into(),
        max_request_body_size: ByteSize(0),
        max_concurrent_requests: 0,
        read_timeout: Duration::from_secs(0),
        ..Default::default()
    };
    assert_eq!(
        config.validate(),
        vec![
            FieldError::new(
                "endpoint",
                "\"localhost\" has no port; expected host:port, like 127.0.0.1:4318, 0.0.0.0:4318 or [::1]:4318"
            ),
            FieldError::new("path", "\"v1/traces\" must start with '/', like /v1/traces"),
            FieldError::new("max_request_body_size", "must be greater than 0, like 16MiB"),
            FieldError::new("max_concurrent_requests", "must be at least 1, like 128"),
            FieldError::new("read_timeout", "must be greater than 0, like 30s"),
        ]
    );
}

#[test]
fn endpoint_forms() {
    for ok in [
        "127.0.0.1:4318",
        "0.0.0.0:0",
        "[::1]:4318",
        "localhost:4318",
        "otel-gw.internal:80",
    ] {
        let config = OtlpReceiverConfig {
            endpoint: ok.into(),
            ..Default::default()
        };
        assert_eq!(config.validate(), vec![], "{ok}");
    }
    for bad in [
        "127.0.0.1:99999",
        ":4318",
        "::1:4318",
        "host name:1",
        "127.0.0.1:http",
    ] {
        let config = OtlpReceiverConfig {
            endpoint: bad.into(),
            ..Default::default()
        };
        let errors = config.validate();
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert_eq!(errors[0].path, "endpoint");
    }
    let config = OtlpReceiverConfig {
        path: "/v1/traces?x=1".into(),
        ..Default::default()
    };
    assert_eq!(config.validate()[0].path, "path");
}

#[test]
fn the_collector_shape_parses_and_resolves_per_protocol() {
    let config = parse(&fixture("protocols.yaml"));
    assert_eq!(config.validate(), vec![]);
    let http = config.protocols.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(http.endpoint, "0.0.0.0:4318");
    let listeners = config.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].protocol, Protocol::Http);
    assert_eq!(listeners[0].endpoint, "0.0.0.0:4318");
    assert_eq!(listeners[0].path, "/otlp/v1/traces");
    assert_eq!(listeners[0].max_body, 8 * 1024 * 1024);
    assert_eq!(listeners[0].key, "protocols.http.");
    // `path` is accepted for `traces_url_path`.
    let config = parse("protocols: {http: {path: /p}}\n");
    assert_eq!(config.listeners()[0].path, "/p");
}

#[test]
fn a_protocol_key_without_a_body_is_on_with_its_defaults() {
    // As the Collector's documentation writes it: `http:` with nothing below.
    let config = parse("protocols:\n  http:\n");
    assert_eq!(config.validate(), vec![]);
    let listeners = config.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].endpoint, "127.0.0.1:4318");
    assert_eq!(listeners[0].path, "/v1/traces");
    assert_eq!(listeners[0].max_body, 16 * 1024 * 1024);
}

#[test]
fn the_flat_form_is_http_shorthand() {
    let config = parse("endpoint: 0.0.0.0:9999\npath: /x\n");
    let listeners = config.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].protocol, Protocol::Http);
    assert_eq!(listeners[0].endpoint, "0.0.0.0:9999");
    assert_eq!(listeners[0].path, "/x");
    assert_eq!(listeners[0].key, "");
}

#[test]
fn bad_protocol_settings_and_mixed_shapes_name_their_keys() {
    let config = parse(&fixture("bad_protocols.yaml"));
    assert_eq!(
        config.validate(),
        vec![
            FieldError::new(
                "endpoint",
                "is the flat shorthand for OTLP/HTTP and cannot be combined with `protocols`; set protocols.http.endpoint instead"
            ),
            FieldError::new(
                "path",
                "is the flat shorthand for OTLP/HTTP and cannot be combined with `protocols`; set protocols.http.traces_url_path instead"
            ),
            FieldError::new(
                "protocols.http.endpoint",
                "\"localhost\" has no port; expected host:port, like 127.0.0.1:4318, 0.0.0.0:4318 or [::1]:4318"
            ),
            FieldError::new(
                "protocols.http.traces_url_path",
                "\"v1/traces\" must start with '/', like /v1/traces"
            ),
            FieldError::new(
                "protocols.http.max_request_body_size",
                "must be greater than 0, like 16MiB"
            ),
        ]
    );
    assert_eq!(
        parse("protocols: {}\n").validate(),
        vec![FieldError::new(
            "protocols",
            "enables no protocol; add `http:`, `grpc:` or both (a protocol left out is off)"
        )]
    );
    let err = serde_yaml::from_str::<OtlpReceiverConfig>("protocols: {http: {cros: {}}}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `cros`"), "{err}");
}

#[test]
fn tls_settings_are_checked_with_their_keys_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let yaml = format!(
        "protocols:\n  http:\n    tls: {{key_file: {k}, min_version: \"1.1\"}}\n  grpc:\n    \
         tls: {{cert_file: {c}, key_file: {k}}}\n",
        k = missing.display(),
        c = garbage.display()
    );
    let errors = parse(&yaml).validate();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "protocols.http.tls.cert_file",
            "protocols.http.tls.min_version",
            "protocols.grpc.tls.cert_file",
        ],
        "{errors:?}"
    );
    assert_eq!(
        errors[1].message,
        "\"1.1\" is not supported; use \"1.2\" or \"1.3\""
    );
    assert!(
        errors[2].message.contains("no CERTIFICATE block"),
        "{}",
        errors[2].message
    );
}

#[test]
fn http_url_follows_the_shape_and_tls() {
    assert_eq!(
        parse("endpoint: 0.0.0.0:4318\n").http_url().as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert_eq!(
        parse("protocols: {http: {endpoint: \"127.0.0.1:9\", traces_url_path: /t, tls: {cert_file: c, key_file: k}}}\n")
            .http_url()
            .as_deref(),
        Some("https://127.0.0.1:9/t")
    );
    assert_eq!(parse("protocols: {grpc: {}}\n").http_url(), None);
}
