//! Command line: `tracecast run | validate | check | dead-letters | send-test-trace`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracecast_core::CancellationToken;
use tracing::{error, info, warn};

use crate::signals::{self, Interrupted, Signal, Signals};
use crate::status::StatusState;
use crate::taken::TakenDestinations;
use crate::{
    admin, check, dead_letters, health, load_config, logging, sd_notify, self_telemetry, Service,
};

#[derive(Debug, Parser)]
#[command(
    name = "tracecast",
    version,
    about = "Broadcast LLM gateway traces to S3 and OTLP backends"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the embedded default config when --config is absent).
    Run {
        /// Pipeline config file (YAML).
        #[arg(short, long, env = "TRACECAST_CONFIG")]
        config: Option<PathBuf>,
        /// Start without testing destinations first, e.g. with a new destination that is
        /// known to be down (data queues until it answers). Not needed for destinations
        /// whose settings passed before: those start while down anyway.
        #[arg(long)]
        skip_connection_test: bool,
    },
    /// Check the config offline: syntax, types, references. Exit 0 when valid.
    Validate {
        #[arg(short, long, env = "TRACECAST_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the config, then test every destination's connection. Exit 1 if any fails.
    Check {
        #[arg(short, long, env = "TRACECAST_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List or re-send what exporters kept in their dead-letter folders.
    #[command(subcommand)]
    DeadLetters(dead_letters::Action),
    /// Send a realistic gateway trace through the running daemon and print where it went:
    /// the object key each S3 exporter wrote, the status each OTLP backend answered, or why
    /// it did not arrive. Exit 1 if any destination did not get it.
    SendTestTrace {
        /// The config the daemon runs (for its receiver, ingest key and admin endpoint).
        #[arg(short, long, env = "TRACECAST_CONFIG")]
        config: Option<PathBuf>,
        /// Send through this pipeline's receiver and follow its destinations only (default:
        /// the first pipeline with an OTLP receiver, and every pipeline that receiver feeds).
        #[arg(long)]
        pipeline: Option<String>,
        /// Seconds to follow the trace before reporting what has not arrived.
        #[arg(long, default_value_t = 30)]
        wait: u64,
        /// The daemon's admin endpoint (default: the config's service.admin.endpoint).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
}

/// Exit codes: 0 ok, 1 a destination failed its test or the daemon failed, 2 bad config.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate { config } => match load_config(config.as_deref()) {
            Ok(validated) => {
                for note in tracecast_runtime::registry::alias_notes(&validated.raw) {
                    println!("{note}");
                }
                println!("{}: valid", describe(config.as_deref()));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("invalid config:\n{errors}");
                ExitCode::from(2)
            }
        },
        Command::Check { config } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("invalid config:\n{errors}");
                    return ExitCode::from(2);
                }
            };
            let results = check::test_destinations(&cfg).await;
            let failed = results.iter().filter(|r| r.outcome.is_err()).count();
            for r in &results {
                println!("{r}");
            }
            if failed == 0 {
                println!("all {} destination(s) passed", results.len());
                ExitCode::SUCCESS
            } else {
                println!("{failed} of {} destination(s) failed", results.len());
                ExitCode::FAILURE
            }
        }
        Command::Run {
            config,
            skip_connection_test,
        } => run(config, skip_connection_test).await,
        Command::DeadLetters(action) => dead_letters::main(action).await,
        Command::SendTestTrace {
            config,
            pipeline,
            wait,
            admin,
        } => send_test_trace(config, pipeline, wait, admin).await,
    }
}

/// `tracecast send-test-trace`: sends the trace to the daemon's receiver and follows it on
/// the admin endpoint's `/status.json` (see `status/test_trace.rs`). Exit codes: 0 every
/// destination got it, 1 not (or the daemon is not reachable), 2 bad config or arguments.
async fn send_test_trace(
    config: Option<PathBuf>,
    pipeline: Option<String>,
    wait: u64,
    admin: Option<std::net::SocketAddr>,
) -> ExitCode {
    let cfg = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("invalid config:\n{errors}");
            return ExitCode::from(2);
        }
    };
    let Some(admin) = admin.or(cfg.raw.service.admin.endpoint) else {
        eprintln!("service.admin.endpoint is off in {}: send-test-trace reads where the trace went from the daemon's admin endpoint; turn it on (e.g. 127.0.0.1:13133) or pass --admin", describe(config.as_deref()));
        return ExitCode::from(2);
    };
    // What the config alone decides (the pipeline, a receiver to send to) is said before
    // the daemon is asked anything.
    if let Err(why) = crate::status::test_trace::target(&cfg, pipeline.as_deref(), |_| None) {
        eprintln!("cannot send a test trace: {why}");
        return ExitCode::from(2);
    }
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot set up an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("http://{admin}/status.json");
    let fetch = || async {
        let answer = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("the admin endpoint {admin} did not answer ({e}); is `tracecast run` running with this config?"))?;
        if !answer.status().is_success() {
            return Err(format!(
                "{url} answered HTTP {}; is {admin} the daemon's admin endpoint (service.admin.endpoint)?",
                answer.status()
            ));
        }
        let body = answer
            .bytes()
            .await
            .map_err(|e| format!("reading {url} failed ({e})"))?;
        serde_json::from_slice::<crate::status::Status>(&body)
            .map_err(|e| format!("{url} did not return the status ({e}); is {admin} the admin endpoint of a tracecast of this version?"))
    };
    // Where the receivers really listen (the config may say port 0).
    let status = match fetch().await {
        Ok(s) => s,
        Err(why) => {
            eprintln!("cannot send a test trace: {why}");
            return ExitCode::FAILURE;
        }
    };
    let address = |id: &tracecast_core::ComponentId| {
        status
            .receivers
            .iter()
            .find(|r| r.id == id.as_str())
            .and_then(|r| r.address.as_deref()?.parse().ok())
    };
    let target = match crate::status::test_trace::target(&cfg, pipeline.as_deref(), address) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("cannot send a test trace: {why}");
            return ExitCode::from(2);
        }
    };
    let trace = crate::status::test_trace::build();
    let report = crate::status::test_trace::send_and_follow(
        &client,
        &target,
        &trace,
        std::time::Duration::from_secs(wait),
        fetch,
    )
    .await;
    print!("{}", report.text());
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Where the service's receivers listen, for the status page and the test trace.
fn bound_receivers(
    service: &Service,
) -> std::collections::BTreeMap<tracecast_core::ComponentId, std::net::SocketAddr> {
    service
        .config()
        .receivers
        .keys()
        .filter_map(|id| Some((id.clone(), service.receiver_addr(id.as_str())?)))
        .collect()
}

fn describe(path: Option<&std::path::Path>) -> String {
    path.map_or_else(
        || "embedded default config".to_string(),
        |p| p.display().to_string(),
    )
}

async fn run(config: Option<PathBuf>, skip_connection_test: bool) -> ExitCode {
    let cfg = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("invalid config:\n{errors}");
            return ExitCode::from(2);
        }
    };
    logging::init(&cfg.raw.service.telemetry);
    info!(config = %describe(config.as_deref()), "starting tracecast {}", env!("CARGO_PKG_VERSION"));
    // Installed before anything else, kept for the life of the process: see `signals.rs`.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot listen for SIGTERM/SIGINT/SIGHUP ({e})");
            return ExitCode::FAILURE;
        }
    };
    let readiness = Arc::new(admin::Readiness::default());
    let stop_admin = CancellationToken::new();
    let _stop_admin_on_exit = stop_admin.clone().drop_guard();
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(cfg.clone()));
    let status = Arc::new(StatusState::new(readiness.clone(), config_rx.clone()));
    if let Some(addr) = cfg.raw.service.admin.endpoint {
        match admin::serve(addr, status.clone(), stop_admin.clone()).await {
            Ok(local) => {
                info!(address = %local, "admin endpoint: status page at http://{local}/status; /status.json, /metrics, /healthz, /readyz")
            }
            Err(e) => {
                error!("cannot listen on service.admin.endpoint {addr} ({e}); free the port or change the setting");
                return ExitCode::FAILURE;
            }
        }
    }
    let taken = TakenDestinations::load(&cfg.raw.service.queue_dir);
    let mut reload_pending = false;
    if skip_connection_test {
        warn!("--skip-connection-test: destinations are not tested; the first readiness check judges them (service.admin.recheck_interval)");
    } else {
        let results = match signals::until_signal(
            &mut signals,
            "testing destinations",
            check::test_destinations(&cfg),
        )
        .await
        {
            Interrupted::Done { output, reload } => {
                reload_pending = reload;
                output
            }
            Interrupted::Terminated(name) => {
                info!("{name} received while testing destinations at start-up: stopped");
                return ExitCode::SUCCESS;
            }
        };
        if !take_at_start(&cfg, &results, &taken) {
            return ExitCode::FAILURE;
        }
        readiness.set_destinations(&results);
    }
    health::spawn(config_rx, readiness.clone(), stop_admin.clone());
    let self_telemetry = cfg.raw.service.telemetry.otlp.as_ref().and_then(|o| {
        self_telemetry::start(o)
            .map_err(|e| error!("self-telemetry disabled: {e}"))
            .ok()
    });
    let mut service = match Service::start(&cfg).await {
        Ok(s) => s,
        Err(e) => {
            error!("failed to start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    status.set_receivers(bound_receivers(&service));
    readiness.listening.store(true, Ordering::Relaxed);
    sd_notify::notify_ready();
    loop {
        let signal = if std::mem::take(&mut reload_pending) {
            Signal::Reload
        } else {
            signals.next().await
        };
        match signal {
            Signal::Terminate(name) => {
                info!("{name} received: shutting down");
                break;
            }
            Signal::Reload => {
                info!("SIGHUP received: reloading the config");
                let ctx = ReloadContext {
                    path: config.as_deref(),
                    taken: &taken,
                    readiness: &readiness,
                };
                match reload(&mut service, ctx, &mut signals).await {
                    ReloadEnd::Taken { config, again } => {
                        // The periodic destination check and the status page follow the
                        // running config.
                        config_tx.send_replace(Arc::new(*config));
                        status.set_receivers(bound_receivers(&service));
                        reload_pending = again;
                    }
                    ReloadEnd::Refused { again } => reload_pending = again,
                    ReloadEnd::Terminated => break,
                }
            }
        }
    }
    readiness.listening.store(false, Ordering::Relaxed);
    // A second SIGTERM/SIGINT ends the drain at once: whatever was acknowledged is in the
    // durable queue and is delivered at the next start.
    let shutdown = service.shutdown();
    tokio::pin!(shutdown);
    let drained = loop {
        tokio::select! {
            drained = &mut shutdown => break Some(drained),
            signal = signals.next() => match signal {
                Signal::Terminate(name) => {
                    warn!("{name} received again: exiting now without waiting for the drain; undelivered spans stay in the durable queue for the next start");
                    break None;
                }
                Signal::Reload => info!("SIGHUP ignored: shutting down"),
            },
        }
    };
    match drained {
        Some(true) => info!("stopped; everything drained"),
        Some(false) => error!("stopped; shutdown_timeout passed before every exporter drained (the rest stays queued for the next start)"),
        None => return ExitCode::SUCCESS,
    }
    if let Some(t) = self_telemetry {
        t.shutdown().await;
    }
    ExitCode::SUCCESS
}

/// Decides, from the start-up connection tests, whether `cfg` may run (logging why). A
/// destination that fails may still run when its settings were taken before (see
/// `taken.rs`): it is reported not ready and its spans wait in the durable queue. When the
/// config is taken, the destinations that passed are recorded.
fn take_at_start(
    cfg: &crate::ValidatedConfig,
    results: &[check::DestinationResult],
    taken: &TakenDestinations,
) -> bool {
    let mut refused = false;
    for r in results {
        let Err(why) = &r.outcome else { continue };
        if taken.is_taken(cfg, &r.id) {
            warn!(destination = %r.id, "destination down at start-up: {why}; its settings were taken before (they passed an earlier test), so tracecast starts anyway: /readyz reports it not ready and its spans wait in the durable queue until it answers");
        } else {
            error!(destination = %r.id, "connection test failed for new or changed destination {}: {why}", r.id);
            refused = true;
        }
    }
    if refused {
        error!("not starting: a new or changed destination must pass its connection test before the config is taken (run `tracecast check` for details, or pass --skip-connection-test)");
        return false;
    }
    let passed: Vec<_> = results
        .iter()
        .filter(|r| r.outcome.is_ok())
        .map(|r| r.id.clone())
        .collect();
    if let Err(e) = taken.record(cfg, &passed) {
        warn!(file = %taken.path().display(), "cannot record the taken destinations ({e}); a restart during an outage will refuse to start");
    }
    true
}

/// What a reload needs besides the service.
struct ReloadContext<'a> {
    path: Option<&'a std::path::Path>,
    taken: &'a TakenDestinations,
    readiness: &'a admin::Readiness,
}

/// How a reload ended. `again`: a SIGHUP arrived during it, so the file is read once more.
enum ReloadEnd {
    Taken {
        config: Box<crate::ValidatedConfig>,
        again: bool,
    },
    Refused {
        again: bool,
    },
    /// A SIGTERM/SIGINT cut the reload short; the running config stays and the caller
    /// shuts down.
    Terminated,
}

/// Re-reads the config file; the new config is taken only if it is valid, every new or
/// changed destination passes its connection test, and the service switches to it
/// completely (see [`Service::reload`]). Otherwise the running config stays, and the failure
/// is logged and counted. A SIGTERM/SIGINT while destinations are tested ends the reload.
async fn reload(service: &mut Service, ctx: ReloadContext<'_>, signals: &mut Signals) -> ReloadEnd {
    let count = |result: &str| {
        tracecast_core::metrics::CONFIG_RELOADS
            .get_or_create(&tracecast_core::metrics::reason("service", result))
            .inc();
    };
    let Some(path) = ctx.path else {
        warn!("SIGHUP ignored: tracecast runs on the embedded default config (start it with --config FILE to reload)");
        count("failed");
        return ReloadEnd::Refused { again: false };
    };
    let new = match load_config(Some(path)) {
        Ok(c) => c,
        Err(errors) => {
            error!("reload refused, the running config stays: invalid config:\n{errors}");
            count("failed");
            return ReloadEnd::Refused { again: false };
        }
    };
    let changed = service.changed_exporters(&new);
    let tests = check::test_some_destinations(&new, Some(&changed));
    let (results, again) = match signals::until_signal(
        signals,
        "testing the reloaded config's destinations",
        tests,
    )
    .await
    {
        Interrupted::Done { output, reload } => (output, reload),
        Interrupted::Terminated(name) => {
            warn!("{name} received during the reload: reload abandoned, the running config stays; shutting down");
            count("cancelled");
            return ReloadEnd::Terminated;
        }
    };
    let failed: Vec<_> = results.iter().filter(|r| r.outcome.is_err()).collect();
    if !failed.is_empty() {
        for r in failed {
            error!(destination = %r.id, "reload refused, the running config stays: connection test failed for new or changed destination {}: {}", r.id, r.outcome.as_ref().err().map_or("", |s| s));
        }
        count("failed");
        return ReloadEnd::Refused { again };
    }
    // Not cut short by a signal: the switch is quick and all or nothing, and a signal
    // meanwhile waits in the stream.
    match service.reload(&new).await {
        Ok(summary) => {
            info!(
                exporters_started = ?summary.exporters_started.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                pipelines_restarted = ?summary.pipelines_restarted,
                receivers_restarted = ?summary.receivers_restarted.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "config reloaded from {}", path.display()
            );
            count("ok");
            ctx.readiness
                .reconcile(&crate::pipeline::used_exporters(&new), &results);
            if let Err(e) = ctx.taken.record(&new, &changed) {
                warn!(file = %ctx.taken.path().display(), "cannot record the taken destinations ({e}); a restart during an outage will refuse to start");
            }
            ReloadEnd::Taken {
                config: Box::new(new),
                again,
            }
        }
        Err(e) => {
            error!("reload refused, the running config stays: {e:#}");
            count("failed");
            ReloadEnd::Refused { again }
        }
    }
}
