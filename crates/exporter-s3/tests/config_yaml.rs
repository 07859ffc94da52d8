//! The shared exporter settings parse under `s3` exactly as under every exporter, and the
//! keys they replaced (`request_timeout`, `retry`) still parse as deprecated aliases.

use tracecast_config::{ByteSize, Duration, ValidateInto};
use tracecast_exporter_s3::{Compression, RetryOnFailure, S3ExporterConfig};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The values of `crates/config/testdata/exporter_shared_settings.yaml`'s `retry_on_failure`
/// (the `otlp` exporter's test expects the same).
fn expected_retry() -> RetryOnFailure {
    RetryOnFailure {
        enabled: true,
        initial_interval: Duration::from_millis(250),
        max_interval: Duration::from_secs(4),
        max_elapsed_time: Duration::from_secs(0),
        multiplier: 2.0,
        randomization_factor: 0.25,
    }
}

#[test]
fn the_shared_exporter_settings_parse_as_in_every_exporter() {
    let yaml = format!(
        "bucket: my-traces-bucket\n{}",
        read("../config/testdata/exporter_shared_settings.yaml")
    );
    let c: S3ExporterConfig = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(c.compression, Compression::Gzip);
    assert_eq!(c.timeout, Duration::from_secs(7));
    assert_eq!(c.retry_on_failure, expected_retry());
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
fn deprecated_request_timeout_and_retry_still_parse() {
    let c: S3ExporterConfig =
        serde_yaml::from_str(&read("testdata/deprecated_aliases.yaml")).unwrap();
    assert_eq!(c.timeout, Duration::from_secs(7));
    assert_eq!(c.retry_on_failure, expected_retry());
    assert_eq!(c.problems(), vec![]);
}

#[test]
fn zero_max_elapsed_time_retries_until_shutdown() {
    let c: S3ExporterConfig =
        serde_yaml::from_str("bucket: my-traces-bucket\nretry_on_failure: {max_elapsed_time: 0s}")
            .unwrap();
    assert_eq!(c.problems(), vec![]);
    assert_eq!(c.retry_on_failure.policy().max_elapsed_time, None);
}

#[test]
fn defaults_are_the_shared_ones_with_plain_json_files() {
    let c: S3ExporterConfig = serde_yaml::from_str("bucket: my-traces-bucket").unwrap();
    assert_eq!(c.retry_on_failure, RetryOnFailure::default());
    assert_eq!(c.compression, Compression::None);
    assert_eq!(c.timeout, Duration::from_secs(30));
    let err = serde_yaml::from_str::<S3ExporterConfig>(
        "bucket: bkt\nretry_on_failure: {initial_interval: 0s}",
    )
    .unwrap()
    .problems();
    assert_eq!(err[0].path, "retry_on_failure.initial_interval");
}
