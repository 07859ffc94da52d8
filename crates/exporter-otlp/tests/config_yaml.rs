//! The exporter's YAML section parses into the exact struct; unknown keys are refused.

use std::collections::BTreeMap;

use tracecast_config::{ByteSize, Duration, ValidateInto};
use tracecast_exporter_otlp::{
    ClientTls, Compression, Encoding, OtlpExporterConfig, RetryOnFailure, SendingQueue,
};

const FULL: &str = r#"
endpoint: https://api.axiom.co/v1/traces
encoding: protobuf
compression: none
timeout: 15s
headers: {Authorization: "Bearer xaat-123", X-Axiom-Dataset: my-dataset}
retry_on_failure: {enabled: true, initial_interval: 1s, max_interval: 20s, max_elapsed_time: 120s}
sending_queue: {queue_size: 500, num_consumers: 2}
tls: {ca_file: /etc/tracecast/ca.pem, insecure_skip_verify: false}
dead_letter_dir: /var/lib/tracecast/dead-letter/axiom
dead_letter_max_size: 64MiB
"#;

#[test]
fn the_documented_keys_give_the_exact_struct() {
    let c: OtlpExporterConfig = serde_yaml::from_str(FULL).unwrap();
    let expected = OtlpExporterConfig {
        endpoint: "https://api.axiom.co/v1/traces".into(),
        encoding: Encoding::Protobuf,
        compression: Compression::None,
        compression_level: 2,
        timeout: Duration::from_secs(15),
        headers: BTreeMap::from([
            ("Authorization".into(), "Bearer xaat-123".into()),
            ("X-Axiom-Dataset".into(), "my-dataset".into()),
        ]),
        retry_on_failure: RetryOnFailure {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(20),
            max_elapsed_time: Duration::from_secs(120),
            ..Default::default()
        },
        sending_queue: SendingQueue {
            queue_size: 500,
            num_consumers: 2,
            ..Default::default()
        },
        tls: ClientTls {
            ca_file: Some("/etc/tracecast/ca.pem".into()),
            ..Default::default()
        },
        dead_letter_dir: Some("/var/lib/tracecast/dead-letter/axiom".into()),
        dead_letter_max_size: ByteSize::mib(64),
    };
    assert_eq!(c, expected);
    // Validation reads the CA file: every other key is valid.
    let problems = c.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "tls.ca_file");
}

#[test]
fn only_the_endpoint_is_required_and_defaults_match_the_spec() {
    let c: OtlpExporterConfig =
        serde_yaml::from_str("endpoint: http://127.0.0.1:4318/v1/traces").unwrap();
    assert_eq!(c.encoding, Encoding::Json);
    assert_eq!(c.compression, Compression::Gzip);
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(
        c.sending_queue,
        SendingQueue {
            queue_size: 32,
            num_consumers: 4,
            max_spans: 16_384,
        }
    );
    assert_eq!(
        c.retry_on_failure.max_elapsed_time,
        Duration::from_secs(300)
    );
    assert_eq!(c.problems(), vec![]);
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    let err = serde_yaml::from_str::<OtlpExporterConfig>("endpont: http://x/v1/traces")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `endpont`"), "{err}");
    let err = serde_yaml::from_str::<OtlpExporterConfig>("encoding: xml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `xml`"), "{err}");
    let err = serde_yaml::from_str::<OtlpExporterConfig>("retry_on_failure: {initial_interval: 5}")
        .map(|c| c.retry_on_failure.initial_interval);
    assert_eq!(err.unwrap(), Duration::from_secs(5));
}

/// The settings every exporter shares, from the one fixture both exporters' tests read.
fn shared_settings_yaml() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/testdata/exporter_shared_settings.yaml"
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_shared_exporter_settings_parse_as_in_every_exporter() {
    let yaml = format!(
        "endpoint: http://127.0.0.1:4318/v1/traces\n{}",
        shared_settings_yaml()
    );
    let c: OtlpExporterConfig = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(c.compression, Compression::Gzip);
    assert_eq!(c.timeout, Duration::from_secs(7));
    assert_eq!(
        c.retry_on_failure,
        RetryOnFailure {
            enabled: true,
            initial_interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(4),
            max_elapsed_time: Duration::from_secs(0),
            multiplier: 2.0,
            randomization_factor: 0.25,
        }
    );
    assert_eq!(
        c.dead_letter_dir.as_deref(),
        Some(std::path::Path::new(
            "/var/lib/tracecast/dead-letter/shared"
        ))
    );
    assert_eq!(c.dead_letter_max_size, ByteSize::mib(8));
    assert!(c.tls.insecure_skip_verify && c.tls.ca_file.is_none());
    assert_eq!(c.problems(), vec![]);
}

#[test]
fn zero_max_elapsed_time_retries_until_shutdown() {
    let c: OtlpExporterConfig = serde_yaml::from_str(
        "endpoint: http://127.0.0.1:4318/v1/traces\nretry_on_failure: {max_elapsed_time: 0s}",
    )
    .unwrap();
    assert_eq!(c.problems(), vec![]);
    assert_eq!(c.retry_on_failure.policy().max_elapsed_time, None);
}
