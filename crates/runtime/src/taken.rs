//! "A taken config stays taken": which destinations' settings have passed a connection test.
//!
//! A configuration is only *taken* when its new or changed destinations pass their
//! connection test. Once taken, it must keep running through an outage: a node that reboots
//! while the OTLP backend answers 503 or S3 is unreachable has to come back and queue spans
//! durably, not refuse to start (the gateway would then lose them). So every time the
//! destinations of a running config have passed, tracecast records a fingerprint of each
//! destination's settings here, and a later start tolerates a failing test for a
//! destination whose settings match a recorded fingerprint.
//!
//! The file is `<service.queue_dir>/taken-destinations.json`, next to the queues whose data
//! it lets through: `{"version": 1, "destinations": {"<id>": "<sha-256 hex>"}}`. A
//! fingerprint is the SHA-256 of the exporter id and its YAML body after `${env:...}`
//! expansion: any change to a destination (endpoint, bucket, credentials, headers, ...)
//! makes it a new destination that must pass again. The file holds hashes only, never a
//! secret. It is replaced atomically (temporary file, fsync, rename), so a crash leaves the
//! old or the new version; an unreadable file counts as empty (every destination must then
//! pass, the safe side).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracecast_core::ComponentId;
use tracing::warn;

use crate::pipeline::used_exporters;
use crate::registry::ValidatedConfig;

/// The file name under `service.queue_dir`.
pub const FILE_NAME: &str = "taken-destinations.json";
/// The file format's version; another version is ignored (counts as empty).
const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct TakenFile {
    version: u32,
    /// Exporter id -> fingerprint of its settings.
    destinations: BTreeMap<String, String>,
}

/// The recorded fingerprints, shared by start-up and reload.
#[derive(Debug)]
pub struct TakenDestinations {
    path: PathBuf,
    known: Mutex<BTreeMap<String, String>>,
}

impl TakenDestinations {
    /// Reads `<queue_dir>/taken-destinations.json`; missing or unreadable means nothing was
    /// taken yet (an unreadable file is logged).
    pub fn load(queue_dir: &Path) -> Self {
        let path = queue_dir.join(FILE_NAME);
        let known = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<TakenFile>(&bytes) {
                Ok(f) if f.version == VERSION => f.destinations,
                Ok(f) => {
                    warn!(file = %path.display(), version = f.version, "taken destinations: unknown file version, ignored; every destination must pass its connection test");
                    BTreeMap::new()
                }
                Err(e) => {
                    warn!(file = %path.display(), "taken destinations: unreadable file ({e}), ignored; every destination must pass its connection test");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                warn!(file = %path.display(), "taken destinations: cannot read ({e}); every destination must pass its connection test");
                BTreeMap::new()
            }
        };
        Self {
            path,
            known: Mutex::new(known),
        }
    }

    /// Where the fingerprints are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether destination `id` of `config` has exactly the settings recorded as taken.
    pub fn is_taken(&self, config: &ValidatedConfig, id: &ComponentId) -> bool {
        let Some(fp) = fingerprint(config, id) else {
            return false;
        };
        self.lock().get(id.as_str()) == Some(&fp)
    }

    /// Records the destinations of `config`, the config now running: those in `passed` (they
    /// just passed their test) and those already recorded with the same settings. Others
    /// (started with `--skip-connection-test`, never tested) stay unrecorded, and
    /// destinations `config` no longer uses are forgotten.
    pub fn record(&self, config: &ValidatedConfig, passed: &[ComponentId]) -> std::io::Result<()> {
        let mut known = self.lock();
        let mut next = BTreeMap::new();
        for id in used_exporters(config) {
            let Some(fp) = fingerprint(config, &id) else {
                continue;
            };
            if passed.contains(&id) || known.get(id.as_str()) == Some(&fp) {
                next.insert(id.as_str().to_string(), fp);
            }
        }
        if *known == next && self.path.exists() {
            return Ok(());
        }
        write_atomically(
            &self.path,
            &TakenFile {
                version: VERSION,
                destinations: next.clone(),
            },
        )?;
        *known = next;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SHA-256 (hex) of the exporter id and its expanded YAML body; `None` if `config` has no
/// exporter `id`.
pub fn fingerprint(config: &ValidatedConfig, id: &ComponentId) -> Option<String> {
    let raw = config.raw.exporters.get(id)?;
    let body = serde_yaml::to_string(&raw.body).ok()?;
    let mut hash = Sha256::new();
    hash.update(b"tracecast destination v1\n");
    hash.update(id.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(body.as_bytes());
    Some(hex::encode(hash.finalize()))
}

/// Temporary file, fsync, rename over `path`, fsync of the folder.
fn write_atomically(path: &Path, file: &TakenFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str) -> ValidatedConfig {
        let yaml = format!(
            "receivers:\n  otlp:\nexporters:\n  otlp/a:\n    endpoint: {endpoint}\n  otlp/b:\n    endpoint: http://127.0.0.1:9/v1/traces\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp/a, otlp/b]\n"
        );
        crate::load_config_str("test", &yaml).unwrap()
    }

    fn id(s: &str) -> ComponentId {
        ComponentId::parse(s).unwrap()
    }

    #[test]
    fn a_recorded_destination_stays_taken_until_its_settings_change() {
        let dir = tempfile::tempdir().unwrap();
        let first = config("http://127.0.0.1:1/v1/traces");
        let taken = TakenDestinations::load(dir.path());
        assert!(!taken.is_taken(&first, &id("otlp/a")));
        // Only what passed is recorded.
        taken.record(&first, &[id("otlp/a")]).unwrap();
        let again = TakenDestinations::load(dir.path());
        assert!(again.is_taken(&first, &id("otlp/a")));
        assert!(!again.is_taken(&first, &id("otlp/b")));
        // A changed endpoint is a new destination.
        let changed = config("http://127.0.0.1:2/v1/traces");
        assert!(!again.is_taken(&changed, &id("otlp/a")));
        // Recording a config keeps the unchanged ones that were taken and drops the rest.
        again.record(&changed, &[id("otlp/b")]).unwrap();
        let last = TakenDestinations::load(dir.path());
        assert!(!last.is_taken(&first, &id("otlp/a")));
        assert!(last.is_taken(&changed, &id("otlp/b")));
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("127.0.0.1"), "hashes only: {text}");
    }

    #[test]
    fn an_unreadable_file_counts_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let taken = TakenDestinations::load(dir.path());
        assert!(!taken.is_taken(&config("http://127.0.0.1:1/v1/traces"), &id("otlp/a")));
    }
}
