//! Command line: `tracecast run | validate | check | dead-letters`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracecast_core::CancellationToken;
use tracing::{error, info, warn};

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
        /// Start without testing destinations first (e.g. when a backend is known to be
        /// down and data should queue until it returns).
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
}

/// Exit codes: 0 ok, 1 a destination failed its test or the daemon failed, 2 bad config.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate { config } => match load_config(config.as_deref()) {
            Ok(_) => {
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
    }
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
    let readiness = Arc::new(admin::Readiness::default());
    let stop_admin = CancellationToken::new();
    let _stop_admin_on_exit = stop_admin.clone().drop_guard();
    let admin_endpoint = &cfg.raw.service.admin.endpoint;
    if !admin_endpoint.is_empty() {
        let addr = match admin_endpoint.parse() {
            Ok(a) => a,
            Err(e) => {
                error!("service.admin.endpoint {admin_endpoint:?} is not host:port ({e})");
                return ExitCode::from(2);
            }
        };
        match admin::serve(addr, readiness.clone(), stop_admin.clone()).await {
            Ok(local) => info!(address = %local, "admin endpoint: /metrics, /healthz, /readyz"),
            Err(e) => {
                error!("cannot listen on service.admin.endpoint {admin_endpoint} ({e}); free the port or change the setting");
                return ExitCode::FAILURE;
            }
        }
    }
    if !skip_connection_test {
        let results = check::test_destinations(&cfg).await;
        let failed: Vec<_> = results.iter().filter(|r| r.outcome.is_err()).collect();
        if !failed.is_empty() {
            for r in &failed {
                error!(destination = %r.id, "connection test failed: {}", r.outcome.as_ref().err().map_or("", |s| s));
            }
            error!("not starting: a configuration is only taken when every destination passes its connection test (run `tracecast check` for details, or pass --skip-connection-test)");
            return ExitCode::FAILURE;
        }
    }
    readiness.destinations_ok.store(true, Ordering::Relaxed);
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(cfg.clone()));
    health::spawn(config_rx, readiness.clone(), stop_admin.clone());
    let self_telemetry = cfg.raw.service.telemetry.otlp.as_ref().and_then(|o| {
        self_telemetry::start(o)
            .map_err(|e| error!("self-telemetry disabled: {e}"))
            .ok()
    });
    let service = match Service::start(&cfg).await {
        Ok(s) => s,
        Err(e) => {
            error!("failed to start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    readiness.listening.store(true, Ordering::Relaxed);
    sd_notify::notify_ready();
    let mut service = service;
    while let Signal::Reload = wait_for_signal().await {
        if let Some(taken) = reload(&mut service, config.as_deref()).await {
            // The periodic destination re-test follows the running config.
            config_tx.send_replace(Arc::new(taken));
        }
    }
    readiness.listening.store(false, Ordering::Relaxed);
    if service.shutdown().await {
        info!("stopped; everything drained");
    } else {
        error!("stopped; shutdown_timeout passed before every exporter drained (the rest stays queued for the next start)");
    }
    if let Some(t) = self_telemetry {
        t.shutdown().await;
    }
    ExitCode::SUCCESS
}

/// What a signal asks for.
enum Signal {
    Terminate,
    Reload,
}

/// Re-reads the config file; the new config is taken only if it is valid and every new or
/// changed destination passes its connection test. Otherwise the running config stays.
/// Returns the config taken.
async fn reload(
    service: &mut Service,
    path: Option<&std::path::Path>,
) -> Option<crate::ValidatedConfig> {
    let count = |result: &str| {
        tracecast_core::metrics::CONFIG_RELOADS
            .get_or_create(&tracecast_core::metrics::reason("service", result))
            .inc();
    };
    let Some(path) = path else {
        warn!("SIGHUP ignored: tracecast runs on the embedded default config (start it with --config FILE to reload)");
        count("failed");
        return None;
    };
    let new = match load_config(Some(path)) {
        Ok(c) => c,
        Err(errors) => {
            error!("reload refused, the running config stays: invalid config:\n{errors}");
            count("failed");
            return None;
        }
    };
    let changed = service.changed_exporters(&new);
    let results = check::test_some_destinations(&new, Some(&changed)).await;
    let failed: Vec<_> = results.iter().filter(|r| r.outcome.is_err()).collect();
    if !failed.is_empty() {
        for r in failed {
            error!(destination = %r.id, "reload refused, the running config stays: connection test failed: {}", r.outcome.as_ref().err().map_or("", |s| s));
        }
        count("failed");
        return None;
    }
    match service.reload(&new).await {
        Ok(summary) => {
            info!(
                exporters_started = ?summary.exporters_started.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                pipelines_restarted = ?summary.pipelines_restarted,
                receivers_restarted = ?summary.receivers_restarted.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "config reloaded from {}", path.display()
            );
            count("ok");
            Some(new)
        }
        Err(e) => {
            error!("reload failed part-way: {e:#}");
            count("failed");
            None
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Terminate) or SIGHUP (Reload).
async fn wait_for_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = term.recv() => { info!("SIGTERM received"); Signal::Terminate }
                    _ = tokio::signal::ctrl_c() => { info!("SIGINT received"); Signal::Terminate }
                    _ = hup.recv() => { info!("SIGHUP received: reloading the config"); Signal::Reload }
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                error!("cannot listen for SIGTERM/SIGHUP ({e}); only Ctrl-C stops tracecast");
                let _ = tokio::signal::ctrl_c().await;
                Signal::Terminate
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Terminate
    }
}
