//! `tracecast dead-letters list | resend`: what each exporter kept in its dead-letter folder,
//! and sending it again once the destination is fixed; and each pipeline's quarantine.
//!
//! Each exporter type's folder, listing and resend come from its registry entry
//! ([`registry::DeadLetters`]): `otlp` batches go through the exporter again
//! (`tracecast_exporter_otlp::resend`), `s3` traces are put back under their original key
//! (`tracecast_exporter_s3::upload::resend_dead_letters`). Nothing here names an exporter
//! type.
//!
//! Run `resend` while the daemon is stopped, or expect the "failed again" count to include
//! dead letters the daemon wrote meanwhile (nothing is lost either way).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use clap::Subcommand;
use prost::Message;
use tracecast_core::{CancellationToken, ComponentId, ExportTraceServiceRequest};
use tracecast_receiver_otlp::OtlpReceiverConfig;

use crate::pipeline::quarantine;
use crate::registry::{ExporterConfig, ValidatedConfig};
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

/// Every dead letter of one exporter (its folder missing means none).
pub fn list_exporter(id: &ComponentId, config: &ExporterConfig) -> std::io::Result<Vec<Listed>> {
    let dir = config.dead_letter_dir(id);
    Ok(config
        .list_dead_letters(&dir)?
        .into_iter()
        .map(|l| Listed {
            exporter: id.clone(),
            file: l.file,
            spans: l.spans,
            reason: l.reason,
        })
        .collect())
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
                    config.dead_letter_dir(id).display()
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
        let dir = config.dead_letter_dir(id);
        match config.resend_dead_letters(id, &stop).await {
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
                eprintln!("{id}: {e}");
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
    // The entries go back to this daemon's own receiver, at the configured loopback (or
    // wildcard-mapped) address; with `tls` on, its certificate names the host clients use,
    // not that address, so the check is off for this one local hop. A receiver that demands
    // client certificates (`client_ca_file`) cannot be reached this way: the handshake fails
    // and the entry stays.
    let client = match reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start an HTTP client to resend quarantined entries: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let Some((id, receiver)) = receiver else {
        return Err("the config has no receiver to send it to".into());
    };
    // Quarantined entries are OTLP/HTTP requests: only an OTLP receiver takes them back.
    let Some(r) = receiver.get::<OtlpReceiverConfig>() else {
        return Err(format!(
            "receiver {id} is not an OTLP/HTTP receiver; the entry can only be posted to one"
        ));
    };
    // `protocols.http` (or the flat shorthand), with https when the receiver has TLS.
    let Some(url) = r.http_url() else {
        return Err(format!(
            "receiver {id} has no OTLP/HTTP protocol (protocols.http); quarantined entries are \
             posted over OTLP/HTTP, so enable it to resend them"
        ));
    };
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
