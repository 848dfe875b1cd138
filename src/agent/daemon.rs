//! `rme push` and `rme serve` (a plan without sinks): follow the sources, flush
//! every interval, serve /metrics if configured, until a signal says stop or
//! restart. Four named steps: `start`, `Daemon::flush_until_stop`,
//! `Daemon::stop_couriers`, `Daemon::restart_or_exit`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinSet;

use super::delivery::RetryPolicy;
use super::{Agent, read};
use crate::config::Plan;

/// How `flush_until_stop` ended.
enum Stop {
    Exit,
    Reload,
}

/// A running daemon: the agent, the signals it answers and its timings.
struct Daemon {
    agent: Agent,
    term: Signal,
    int: Signal,
    hup: Signal,
    interval: Duration,
    jitter_secs: u64,
    stop_timeout: Duration,
    /// Tells `/metrics` to stop serving.
    stop_serving: tokio::sync::broadcast::Sender<()>,
    /// Follows the file inputs while it lives.
    _watcher: notify::RecommendedWatcher,
}

/// Follows the sources, flushes every interval, and serves /metrics if
/// configured. Each sink's courier delivers on its own task. SIGTERM/SIGINT
/// are handled at once: a last flush into the spools, then the couriers get
/// `stop_timeout_secs` to send what they can, and rme exits (what is left
/// waits in the spools). SIGHUP checks the config with `check_reload`; if it
/// is valid, the same stop, then rme re-executes itself (same pid, same
/// arguments) and continues from the state file just saved; an invalid config
/// is logged and the running one kept.
pub async fn run_daemon(
    plan: Plan,
    check_reload: &dyn Fn() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut daemon = start(plan).await?;
    loop {
        let (stop_couriers, stopped) = tokio::sync::watch::channel(false);
        let mut couriers = JoinSet::new();
        for c in daemon.agent.couriers()? {
            couriers.spawn(c.run(stopped.clone()));
        }
        let stop = daemon.flush_until_stop(check_reload).await;
        let _ = stop_couriers.send(true);
        daemon.stop_couriers(couriers).await;
        daemon.agent.save_state();
        if let Stop::Exit = daemon.restart_or_exit(stop).await {
            return Ok(());
        }
    }
}

/// The agent, its journal threads, /metrics (first: it answers during a long
/// first read, since reads lock the store one batch at a time), the first
/// read, the file watcher and the signal handlers.
async fn start(plan: Plan) -> anyhow::Result<Daemon> {
    let serve = plan
        .config
        .serve
        .as_ref()
        .map(|s| (s.listen.clone(), crate::serve::Options::from(s)));
    let interval = Duration::from_secs(plan.config.interval_secs);
    let jitter_secs = plan.config.jitter_secs;
    let stop_timeout = Duration::from_secs(plan.config.stop_timeout_secs);
    let mut agent = Agent::new(plan, RetryPolicy::daemon(interval))?;
    agent.check_inputs(false)?;
    for r in agent.take_journal_readers() {
        let shared = agent.shared.clone();
        std::thread::spawn(move || read::follow_journal(r, shared));
    }
    let stop_serving = stop_channel();
    if let Some((listen, options)) = serve {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("serve.listen: binding {listen}"))?;
        tracing::info!(addr = %listen, "serving /metrics");
        let shared = agent.shared.clone();
        let mut rx = stop_serving.subscribe();
        tokio::spawn(crate::serve::serve(listener, shared, options, async move {
            let _ = rx.recv().await;
        }));
    }
    agent.read_sources();
    let watcher = read::watch_files(&agent.readers, &agent.shared)?;
    Ok(Daemon {
        agent,
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hup: signal(SignalKind::hangup())?,
        interval,
        jitter_secs,
        stop_timeout,
        stop_serving,
        _watcher: watcher,
    })
}

impl Daemon {
    /// Reads, probes and flushes every interval (plus jitter) until a signal
    /// asks to stop or to restart with a config `check_reload` accepts; the
    /// last flush comes after the signal, with everything read to the end.
    async fn flush_until_stop(&mut self, check_reload: &dyn Fn() -> anyhow::Result<()>) -> Stop {
        loop {
            let jitter = fastrand::u64(0..=self.jitter_secs.saturating_mul(1000));
            let stop = tokio::select! {
                _ = tokio::time::sleep(self.interval + Duration::from_millis(jitter)) => None,
                _ = self.term.recv() => Some(Stop::Exit),
                _ = self.int.recv() => Some(Stop::Exit),
                _ = self.hup.recv() => match check_reload() {
                    Ok(()) => Some(Stop::Reload),
                    Err(e) => {
                        tracing::error!("SIGHUP: new config rejected, keeping the running one: {e:#}");
                        None
                    }
                },
            };
            let agent = &mut self.agent;
            if stop.is_some() {
                agent.read_sources();
            } else {
                // A long read already under way (the watcher's) goes on to the
                // end by itself; the flush takes what it has read so far.
                read::read_all_unless_busy(&agent.readers, &agent.shared);
            }
            agent.probe();
            if let Err(e) = agent.flush() {
                tracing::error!("flush failed: {e:#}");
            }
            if let Some(stop) = stop {
                return stop;
            }
        }
    }

    /// The couriers' last round (they were told to stop), bounded by
    /// `stop_timeout_secs`; a request cut short stays spooled.
    async fn stop_couriers(&self, mut couriers: JoinSet<()>) {
        let all_done = async { while couriers.join_next().await.is_some() {} };
        if tokio::time::timeout(self.stop_timeout, all_done)
            .await
            .is_err()
        {
            tracing::warn!(
                still_sending = couriers.len(),
                "stop_timeout_secs ({}) passed; what was not delivered stays in the spool",
                self.stop_timeout.as_secs()
            );
            couriers.abort_all();
            while couriers.join_next().await.is_some() {}
        }
    }

    /// After the stop: exits (stopping /metrics), or re-executes rme with the
    /// new config. A SIGTERM/SIGINT that came during the stop still ends rme
    /// (a restart would lose it). Returns only if rme goes on: a restart that
    /// failed keeps the running config.
    async fn restart_or_exit(&mut self, stop: Stop) -> Stop {
        let stop = match stop {
            Stop::Reload => tokio::select! {
                biased;
                _ = self.term.recv() => Stop::Exit,
                _ = self.int.recv() => Stop::Exit,
                _ = std::future::ready(()) => Stop::Reload,
            },
            Stop::Exit => Stop::Exit,
        };
        match stop {
            Stop::Reload => {
                tracing::info!("SIGHUP: config is valid; restarting with it");
                let err = reexec(self.agent.dir.lock());
                tracing::error!("SIGHUP: could not restart: {err}; keeping the running config");
            }
            Stop::Exit => {
                tracing::info!("stopped after a last flush");
                let _ = self.stop_serving.send(());
            }
        }
        stop
    }
}

/// Replaces this process with a fresh rme with the same arguments, keeping
/// the state_dir lock (no other rme can take it in between); returns only on failure.
fn reexec(lock: &crate::state_dir::lock::StateLock) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe()
        .unwrap_or_else(|_| PathBuf::from(std::env::args_os().next().unwrap_or_default()));
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    match lock.keep_across_exec() {
        Ok((key, fd)) => {
            cmd.env(key, fd);
        }
        Err(e) => {
            tracing::warn!("SIGHUP: the state_dir lock cannot be kept across the restart: {e}")
        }
    }
    let err = cmd.exec();
    lock.close_on_exec();
    err
}

/// The channel that tells `/metrics` to stop serving.
fn stop_channel() -> tokio::sync::broadcast::Sender<()> {
    tokio::sync::broadcast::channel(1).0
}
