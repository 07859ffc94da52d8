//! `tracecast dead-letters resend` for `otlp` exporters: each `.pb` batch in the dead-letter
//! folder is decoded and fed through the exporter itself ([`OtlpExporter`] +
//! [`Exporter::run`]), so it gets the configured encoding, compression, headers and retry
//! loop.
//!
//! The batches are first moved into the folder's [`RESENDING_DIR`] subfolder; a batch the
//! backend rejects again is dead-lettered again by the exporter (a new file in the folder),
//! and the `resending/` copy of every batch whose export became final is deleted. A crash
//! mid-resend leaves every batch either in place or in `resending/`, which the next resend
//! picks up (at least once: a batch may be sent twice, never lost).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use tracecast_core::ack::{AckSink, DeliveryToken};
use tracecast_core::dead_letter::ResendSummary;
use tracecast_core::{
    BatchContext, CancellationToken, ComponentId, ExportTraceServiceRequest, Exporter, TraceBatch,
};

use crate::config::ValidOtlpExporterConfig;
use crate::dead_letter::{self as dl, RESENDING_DIR};
use crate::error::{OtlpExporterError, ResendError};
use crate::exporter::OtlpExporter;

/// Sends exporter `id`'s dead letters again; `stop` ends it early (what was not sent stays).
pub async fn resend(
    id: &ComponentId,
    config: &ValidOtlpExporterConfig,
    stop: &CancellationToken,
) -> Result<ResendSummary, ResendError> {
    let dir = dl::effective_dir(id, &config.config);
    let resending = dir.join(RESENDING_DIR);
    let waiting = dl::batch_files(&dir)?;
    if waiting.is_empty() && dl::batch_files(&resending)?.is_empty() {
        return Ok(ResendSummary::default());
    }
    // Built first: a client that cannot be set up leaves every file where it was.
    let exporter = OtlpExporter::new(id.clone(), config)?;
    std::fs::create_dir_all(&resending)?;
    for path in &waiting {
        if let Some(name) = path.file_name() {
            if !resending.join(name).exists() {
                move_pair(&dir, &resending, name)?;
            }
        }
    }
    let mut summary = ResendSummary::default();
    let settled = Arc::new(Settled::default());
    let mut batches = Vec::new();
    let mut names = Vec::new();
    for path in dl::batch_files(&resending)? {
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            continue;
        };
        let bytes = std::fs::read(&path)?;
        match ExportTraceServiceRequest::decode(bytes.as_slice()) {
            Ok(request) => {
                let seq = names.len() as u64;
                let token = DeliveryToken::new(seq, settled.clone());
                let ctx = BatchContext::new("dead-letters");
                batches.push(
                    TraceBatch::new(ctx, request, Some(Bytes::from(bytes)))
                        .with_tokens(vec![token]),
                );
                names.push(name);
            }
            Err(e) => {
                tracing::error!(exporter = %id, file = %path.display(), error = %e, "not an OTLP protobuf batch; left in {}", dir.display());
                move_pair(&resending, &dir, &name)?;
                summary.failed += 1;
            }
        }
    }
    // Dead letters the exporter writes from here on are batches rejected again.
    let before = file_names(&dl::batch_files(&dir)?);
    let (tx, rx) = mpsc::channel(16);
    let run = tokio::spawn(Box::new(exporter).run(rx, stop.clone()));
    let mut pending = batches.into_iter();
    for batch in pending.by_ref() {
        if let Err(unsent) = tx.send(batch).await {
            // The exporter stopped (hard stop): this batch and the rest were not sent.
            unsent.0.abandon();
            break;
        }
    }
    pending.for_each(|b| b.abandon());
    drop(tx);
    run.await.map_err(|e| ResendError::Task(e.to_string()))?;
    let settled: HashSet<u64> = settled.0.lock().map(|s| s.clone()).unwrap_or_default();
    let mut finished = 0usize;
    for (seq, name) in names.iter().enumerate() {
        if settled.contains(&(seq as u64)) {
            finished += 1;
            let copy = resending.join(name);
            std::fs::remove_file(dl::reason_path(&copy)).or_else(ignore_missing)?;
            std::fs::remove_file(&copy).or_else(ignore_missing)?;
        } else {
            // Abandoned (stopped, or the dead-letter folder failed): back where it was.
            move_pair(&resending, &dir, name)?;
            summary.failed += 1;
        }
    }
    let after = file_names(&dl::batch_files(&dir)?);
    let rejected_again = after.difference(&before).count();
    summary.resent = finished.saturating_sub(rejected_again);
    summary.failed += rejected_again;
    let _ = std::fs::remove_dir(&resending); // Only if empty.
    Ok(summary)
}

/// Records which batches' exports became final: a batch's token reports `delivered` when
/// the exporter drops it settled (sent, or dead-lettered again), never when abandoned.
#[derive(Default)]
struct Settled(Mutex<HashSet<u64>>);

impl AckSink for Settled {
    fn delivered(&self, seq: u64) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(seq);
        }
    }
}

/// Moves `<name>` and `<name>.reason.txt` from `from` to `to`: the reason first, so a crash
/// in between never leaves a batch without its reason in the folder it is read from.
fn move_pair(from: &Path, to: &Path, name: &std::ffi::OsStr) -> std::io::Result<()> {
    let batch = from.join(name);
    match std::fs::rename(dl::reason_path(&batch), dl::reason_path(&to.join(name))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::rename(&batch, to.join(name))
}

fn file_names(paths: &[PathBuf]) -> BTreeSet<std::ffi::OsString> {
    paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
        .collect()
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

impl From<OtlpExporterError> for ResendError {
    fn from(e: OtlpExporterError) -> Self {
        ResendError::Build(e)
    }
}
