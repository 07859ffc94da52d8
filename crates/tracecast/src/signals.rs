//! One signal stream for the life of the process.
//!
//! The listeners are installed once, at start, and kept: a signal that arrives while
//! tracecast is busy (testing a destination during a reload, draining at shutdown) waits in
//! the stream instead of being lost between two listener set-ups. [`until_signal`] runs a
//! piece of work that a SIGTERM/SIGINT may cut short.

use std::future::Future;

use tracing::info;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT (the name says which).
    Terminate(&'static str),
    /// SIGHUP.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, installed once.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (from here on these signals no longer kill the process).
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Signal::Terminate("SIGTERM"),
                _ = self.int.recv() => Signal::Terminate("SIGINT"),
                _ = self.hup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Terminate("Ctrl-C")
        }
    }
}

/// How a piece of work run by [`until_signal`] ended.
#[derive(Debug)]
pub enum Interrupted<T> {
    /// It finished; `reload` says whether a SIGHUP arrived meanwhile (the config file may
    /// have changed after it was read, so the caller reloads again).
    Done { output: T, reload: bool },
    /// A SIGTERM/SIGINT (named) arrived first; the work was dropped.
    Terminated(&'static str),
}

/// Runs `work` until it finishes or a SIGTERM/SIGINT arrives. A SIGHUP meanwhile is noted,
/// not acted on (`doing` names the work in the log line).
pub async fn until_signal<F: Future>(
    signals: &mut Signals,
    doing: &str,
    work: F,
) -> Interrupted<F::Output> {
    tokio::pin!(work);
    let mut reload = false;
    loop {
        tokio::select! {
            output = &mut work => return Interrupted::Done { output, reload },
            signal = signals.next() => match signal {
                Signal::Terminate(name) => return Interrupted::Terminated(name),
                Signal::Reload => {
                    info!("SIGHUP received while {doing}; the config is read again afterwards");
                    reload = true;
                }
            },
        }
    }
}
