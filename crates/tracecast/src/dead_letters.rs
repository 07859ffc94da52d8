//! `tracecast dead-letters list | resend`: what each exporter kept in its dead-letter folder,
//! and sending it again once the destination is fixed.
//!
//! - `otlp` exporters: each `.pb` batch is decoded and fed through the exporter itself
//!   ([`registry::build_exporter`] + [`Exporter::run`]), so it gets the configured encoding,
//!   compression, headers and retry loop. The batches are first moved into the folder's
//!   `resending/` subfolder; a batch the backend rejects again is dead-lettered again by the
//!   exporter (a new file in the folder), and the `resending/` copy of every batch whose
//!   export became final is deleted. A crash mid-resend leaves every batch either in place
//!   or in `resending/`, which the next `resend` picks up (at least once: a batch may be
//!   sent twice, never lost).
//! - `s3` exporters: each trace file is put back under its original key with the exporter's
//!   create-only write ([`S3Exporter::resend_dead_letter`]) and removed once written.
//!
//! Run `resend` while the daemon is stopped, or expect the "failed again" count to include
//! dead letters the daemon wrote meanwhile (nothing is lost either way).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::Subcommand;
use prost::Message;
use tokio::sync::mpsc;
use tracecast_core::ack::{AckSink, DeliveryToken};
use tracecast_core::{
    BatchContext, CancellationToken, ComponentId, ExportTraceServiceRequest, TraceBatch,
};
use tracecast_exporter_otlp::dead_letter::{self as otlp_dl, RESENDING_DIR};
use tracecast_exporter_s3::upload::{self as s3_dl, Written};
use tracecast_exporter_s3::S3Exporter;

use crate::pipeline::quarantine;
use crate::registry::{self, ExporterConfig, ValidatedConfig};
use crate::{load_config, logging};

/// `tracecast dead-letters ...`
#[derive(Debug, Subcommand)]
pub enum Action {
    /// List every exporter's dead letters: exporter, file, spans, reason. Exit 0.
    List {
        /// Pipeline config file (YAML); the embedded default config when absent.
        #[arg(short, long, env = "TRACECAST_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Send dead letters again through their exporter; exit 1 if any failed again.
    Resend {
        /// Pipeline config file (YAML); the embedded default config when absent.
        #[arg(short, long, env = "TRACECAST_CONFIG")]
        config: Option<PathBuf>,
        /// Only this exporter (e.g. `otlp/axiom`); default: every exporter.
        #[arg(long)]
        exporter: Option<String>,
        /// Re-send the pipelines' quarantined queue entries instead: each is posted to the
        /// running daemon's receiver that first accepted it (so the daemon must run), and
        /// deleted once acknowledged.
        #[arg(long)]
        quarantined: bool,
    },
}

/// One dead letter, whatever the exporter type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub exporter: ComponentId,
    pub file: PathBuf,
    pub spans: Option<usize>,
    pub reason: String,
}

/// The dead-letter folder of an exporter, by the exporter crate's own rule.
pub fn dead_letter_dir(id: &ComponentId, config: &ExporterConfig) -> PathBuf {
    match config {
        ExporterConfig::Otlp(c) => otlp_dl::effective_dir(id, c),
        ExporterConfig::S3(c) => s3_dl::dead_letter_dir(id, c),
    }
}

/// Every dead letter of one exporter (its folder missing means none).
pub fn list_exporter(id: &ComponentId, config: &ExporterConfig) -> std::io::Result<Vec<Listed>> {
    let dir = dead_letter_dir(id, config);
    Ok(match config {
        ExporterConfig::Otlp(_) => otlp_dl::list(&dir)?
            .into_iter()
            .map(|b| Listed {
                exporter: id.clone(),
                file: b.path,
                spans: b.spans,
                reason: b.reason,
            })
            .collect(),
        ExporterConfig::S3(_) => s3_dl::list_dead_letters(&dir)?
            .into_iter()
            .map(|t| Listed {
                exporter: id.clone(),
                file: t.path,
                spans: None,
                reason: t.reason,
            })
            .collect(),
    })
}

/// Exit codes: 0 ok, 1 something failed (again), 2 bad config or unknown `--exporter`.
pub async fn main(action: Action) -> ExitCode {
    let config_path = match &action {
        Action::List { config } | Action::Resend { config, .. } => config.clone(),
    };
    let cfg = match load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("invalid config:\n{errors}");
            return ExitCode::from(2);
        }
    };
    match action {
        Action::List { .. } => list(&cfg),
        Action::Resend {
            quarantined: true, ..
        } => resend_quarantined(&cfg).await,
        Action::Resend { exporter, .. } => {
            // The exporters' own warnings and errors (rejections, retries) go to stderr.
            logging::init(&cfg.raw.service.telemetry);
            resend(&cfg, exporter.as_deref()).await
        }
    }
}

fn list(cfg: &ValidatedConfig) -> ExitCode {
    let (mut total, mut failed) = (0usize, false);
    for (id, config) in &cfg.exporters {
        match list_exporter(id, config) {
            Ok(letters) => {
                total += letters.len();
                for l in letters {
                    let spans = l.spans.map_or_else(|| "-".to_string(), |n| n.to_string());
                    println!(
                        "{}  {}  spans={spans}  {}",
                        l.exporter,
                        l.file.display(),
                        l.reason
                    );
                }
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "{id}: cannot read the dead-letter folder {}: {e}",
                    dead_letter_dir(id, config).display()
                );
            }
        }
    }
    println!(
        "{total} dead letter(s) in {} exporter(s)",
        cfg.exporters.len()
    );
    let mut quarantined = 0usize;
    for name in cfg.raw.service.pipelines.keys() {
        let dir = quarantine::dir_for(&cfg.raw.service.queue_dir, name);
        match quarantine::entries(&dir) {
            Ok(entries) => {
                quarantined += entries.len();
                for e in entries {
                    println!(
                        "pipeline {name}  {}  quarantined  {}",
                        e.display(),
                        reason_line(&e)
                    );
                }
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "pipeline {name}: cannot read the quarantine folder {}: {e}",
                    dir.display()
                );
            }
        }
    }
    if quarantined > 0 {
        println!("{quarantined} quarantined queue entr(ies); `tracecast dead-letters resend --quarantined` sends them again");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What a resend did for one exporter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResendSummary {
    /// Dead letters delivered.
    pub resent: usize,
    /// Dead letters kept again: rejected again, unreadable, or not sent (stopped).
    pub failed: usize,
}

async fn resend(cfg: &ValidatedConfig, only: Option<&str>) -> ExitCode {
    let selected: Vec<_> = match only {
        None => cfg.exporters.iter().collect(),
        Some(want) => {
            let found: Vec<_> = cfg
                .exporters
                .iter()
                .filter(|(id, _)| id.as_str() == want)
                .collect();
            if found.is_empty() {
                let known: Vec<_> = cfg.exporters.keys().map(|i| i.as_str()).collect();
                eprintln!(
                    "no exporter {want:?} in the config; configured: {}",
                    known.join(", ")
                );
                return ExitCode::from(2);
            }
            found
        }
    };
    let stop = CancellationToken::new();
    let stop_on_signal = stop.clone();
    let signals = tokio::spawn(async move {
        wait_for_stop().await;
        eprintln!("stopping: what was not sent stays in the dead-letter folder");
        stop_on_signal.cancel();
    });
    let mut any_failed = false;
    for (id, config) in selected {
        let dir = dead_letter_dir(id, config);
        let outcome = match config {
            ExporterConfig::Otlp(_) => resend_otlp(id, config, &dir, &stop).await,
            ExporterConfig::S3(c) => resend_s3(id, c, &dir, &stop).await,
        };
        match outcome {
            Ok(s) => {
                any_failed |= s.failed > 0;
                println!(
                    "{id}: {} resent, {} failed again (kept in {})",
                    s.resent,
                    s.failed,
                    dir.display()
                );
            }
            Err(e) => {
                any_failed = true;
                eprintln!("{id}: {e:#}");
            }
        }
    }
    signals.abort();
    if any_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The `reason:` line of a quarantined entry's reason file.
fn reason_line(entry: &Path) -> String {
    let path = format!("{}.reason.txt", entry.display());
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("reason: "))
            .unwrap_or("(no reason line)")
            .to_string(),
        Err(e) => format!("(reason file unreadable: {e})"),
    }
}

/// Posts every quarantined entry's request to the receiver that accepted it (the running
/// daemon), with the entry's API key when the receiver requires one; deletes the entry once
/// it is acknowledged. The request re-enters like any other: through every pipeline that
/// receiver feeds, so pipelines that had delivered it may get it twice (at least once).
async fn resend_quarantined(cfg: &ValidatedConfig) -> ExitCode {
    let client = reqwest::Client::new();
    let (mut resent, mut failed) = (0usize, 0usize);
    for name in cfg.raw.service.pipelines.keys() {
        let dir = quarantine::dir_for(&cfg.raw.service.queue_dir, name);
        let entries = match quarantine::entries(&dir) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("pipeline {name}: cannot read {}: {e}", dir.display());
                failed += 1;
                continue;
            }
        };
        for path in entries {
            match resend_one(cfg, &client, &path).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(format!("{}.reason.txt", path.display()));
                    let _ = std::fs::remove_file(&path);
                    resent += 1;
                }
                Err(why) => {
                    eprintln!("pipeline {name}: {} not resent: {why}", path.display());
                    failed += 1;
                }
            }
        }
    }
    println!("quarantine: {resent} resent, {failed} failed (kept)");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn resend_one(
    cfg: &ValidatedConfig,
    client: &reqwest::Client,
    path: &Path,
) -> Result<(), String> {
    let bytes = Bytes::from(std::fs::read(path).map_err(|e| e.to_string())?);
    let (ctx, protobuf) = tracecast_queue::decode_entry(&bytes).map_err(|e| {
        format!("not a readable queue entry ({e}); it can only be inspected by hand")
    })?;
    ExportTraceServiceRequest::decode(protobuf.clone())
        .map_err(|e| format!("its request is not OTLP protobuf ({e}); inspect it by hand"))?;
    let receiver = cfg
        .receivers
        .iter()
        .find(|(id, _)| id.as_str() == &*ctx.receiver)
        .or_else(|| cfg.receivers.iter().next());
    let Some((id, registry::ReceiverConfig::Otlp(r))) = receiver else {
        return Err("the config has no receiver to send it to".into());
    };
    let url = format!("http://{}{}", r.endpoint, r.path);
    let mut request = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(protobuf);
    let key = r
        .api_keys
        .iter()
        .find(|k| ctx.api_key_name.as_deref() == Some(k.name.as_str()))
        .or_else(|| r.api_keys.first());
    if let Some(k) = key {
        request = request.bearer_auth(&k.token);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| format!("receiver {id} at {url} unreachable ({e}): is the daemon running?"))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "receiver {id} at {url} answered {}",
            answer.status()
        ))
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
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
    match std::fs::rename(
        otlp_dl::reason_path(&batch),
        otlp_dl::reason_path(&to.join(name)),
    ) {
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

async fn resend_otlp(
    id: &ComponentId,
    config: &ExporterConfig,
    dir: &Path,
    stop: &CancellationToken,
) -> anyhow::Result<ResendSummary> {
    let resending = dir.join(RESENDING_DIR);
    let waiting = otlp_dl::batch_files(dir)?;
    if waiting.is_empty() && otlp_dl::batch_files(&resending)?.is_empty() {
        return Ok(ResendSummary::default());
    }
    // Built first: a config the exporter refuses leaves every file where it was.
    let exporter = registry::build_exporter(id, config)?;
    std::fs::create_dir_all(&resending)?;
    for path in &waiting {
        if let Some(name) = path.file_name() {
            if !resending.join(name).exists() {
                move_pair(dir, &resending, name)?;
            }
        }
    }
    let mut summary = ResendSummary::default();
    let settled = Arc::new(Settled::default());
    let mut batches = Vec::new();
    let mut names = Vec::new();
    for path in otlp_dl::batch_files(&resending)? {
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
                eprintln!(
                    "{id}: {} is not an OTLP protobuf batch ({e}); left in {}",
                    path.display(),
                    dir.display()
                );
                move_pair(&resending, dir, &name)?;
                summary.failed += 1;
            }
        }
    }
    // Dead letters the exporter writes from here on are batches rejected again.
    let before = file_names(&otlp_dl::batch_files(dir)?);
    let (tx, rx) = mpsc::channel(16);
    let run = tokio::spawn(exporter.run(rx, stop.clone()));
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
    run.await?;
    let settled: HashSet<u64> = settled.0.lock().map(|s| s.clone()).unwrap_or_default();
    let mut finished = 0usize;
    for (seq, name) in names.iter().enumerate() {
        if settled.contains(&(seq as u64)) {
            finished += 1;
            let copy = resending.join(name);
            std::fs::remove_file(otlp_dl::reason_path(&copy)).or_else(ignore_missing)?;
            std::fs::remove_file(&copy).or_else(ignore_missing)?;
        } else {
            // Abandoned (stopped, or the dead-letter folder failed): back where it was.
            move_pair(&resending, dir, name)?;
            summary.failed += 1;
        }
    }
    let after = file_names(&otlp_dl::batch_files(dir)?);
    let rejected_again = after.difference(&before).count();
    summary.resent = finished.saturating_sub(rejected_again);
    summary.failed += rejected_again;
    let _ = std::fs::remove_dir(&resending); // Only if empty.
    Ok(summary)
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

async fn resend_s3(
    id: &ComponentId,
    config: &tracecast_exporter_s3::S3ExporterConfig,
    dir: &Path,
    stop: &CancellationToken,
) -> anyhow::Result<ResendSummary> {
    let stored = s3_dl::list_dead_letters(dir)?;
    let mut summary = ResendSummary::default();
    if stored.is_empty() {
        return Ok(summary);
    }
    let exporter = S3Exporter::new(id.clone(), config)?;
    for trace in stored {
        if stop.is_cancelled() {
            summary.failed += 1;
            continue;
        }
        match exporter.resend_dead_letter(&trace, stop).await {
            Ok(Written::Created(key)) => {
                summary.resent += 1;
                println!("{id}: {} -> {key}", trace.path.display());
            }
            Ok(Written::AlreadyPresent(key)) => {
                summary.resent += 1;
                println!("{id}: {} -> {key} (already there)", trace.path.display());
            }
            Err(e) => {
                summary.failed += 1;
                eprintln!("{id}: {e}");
            }
        }
    }
    Ok(summary)
}
