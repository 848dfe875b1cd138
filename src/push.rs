//! The flush cycle, for `rme push` (every interval) and `rme push --once`.
//!
//! One cycle: read what is new → probe live state → snapshot → encode per sink
//! → append to that sink's spool (fsync) → save the state file → wake the
//! sinks' couriers. Delivery (delivery.rs) runs on its own task per sink, so
//! the cycle never waits for a receiver. Because every body is spooled before
//! the state moves on, a crash at any point loses nothing; because a spool
//! drains oldest first, a receiver never sees an older sample after a newer one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Plan;
use crate::delivery::{self, Courier, RetryPolicy, SharedSpool, lock_spool};
use crate::read::{self, Reader};
use crate::shared::{Shared, SharedRef, lock, lock_at};
use crate::sinks::{AnySink, Sink, SinkConfig};
use crate::sources::{self, Probe};
use crate::spool::{Spool, WriteErrors};
use crate::state::StateFile;
use crate::store::{Metric, Series, Store, now_ms};

/// A sink as the flush uses it (encoding; its state) with its spool, the
/// config its courier's own copy is built from, and the courier's wake-up.
pub struct Outlet {
    pub sink: AnySink,
    pub spool: SharedSpool,
    config: SinkConfig,
    wake: Arc<tokio::sync::Notify>,
    metrics: delivery::SinkMetrics,
}

/// What a run achieved, for `--once`'s exit code.
#[derive(Debug, Default)]
pub struct FlushReport {
    /// Sinks that still hold undelivered data, with the last reason.
    pub failed: Vec<(String, String)>,
    /// Bodies receivers refused for good (4xx), dropped and counted.
    pub refused: u64,
    /// Sources that could not be read, with the error.
    pub unreadable: Vec<(String, String)>,
}

/// Everything `rme push` runs.
pub struct Agent {
    state: StateFile,
    pub shared: SharedRef,
    /// File inputs (and journal ones until `take_journal_readers`); shared with the watcher thread.
    pub readers: Arc<Mutex<Vec<Reader>>>,
    /// Each with the configured name of its source (the `source` label).
    pub probes: Vec<(String, Box<dyn Probe>)>,
    pub outlets: Vec<Outlet>,
    pub retry: RetryPolicy,
    sink_states: BTreeMap<String, serde_json::Value>,
    /// Spool and state writes that failed, logged once per kind.
    write_errors: WriteErrors,
    /// Held while this Agent lives: one rme per state_dir.
    state_lock: crate::lock::StateLock,
}

const SPOOL_WRITE_ERRORS: Metric = Metric::counter(
    "rme_spool_write_errors_total",
    "Flushes whose bodies could not be spooled, by sink and kind (no_space, quota, read_only, permission, io, other); spooled bodies still go out.",
);
const STATE_WRITE_ERRORS: Metric = Metric::counter(
    "rme_state_write_errors_total",
    "State file writes that failed, by kind (as rme_spool_write_errors_total); that flush's bodies are not sent.",
);

impl Agent {
    /// Takes the state_dir lock (one rme per state_dir), loads the state,
    /// restores counters and positions, opens each sink's spool and replays
    /// the notes of what is still in it (statsd: a crash may have come between
    /// spooling and saving the state).
    pub fn new(plan: Plan, retry: RetryPolicy) -> anyhow::Result<Agent> {
        let Plan {
            mut config,
            sources: built,
            sinks,
            limits,
        } = plan;
        let lock = crate::lock::StateLock::acquire(&config.state_dir)?;
        let (state_file, mut state) = StateFile::open(&config.state_dir)?;
        let mut store = Store::new(limits);
        delivery::describe_metrics(&mut store);
        describe_write_errors(&mut store);
        sources::describe_self_metrics(&mut store);
        state.restore_into(&mut store);
        let mut readers = Vec::new();
        let mut probes = Vec::new();
        for built in built {
            if let Some((input, parser)) = built.input {
                parser.describe(&mut store);
                readers.push(Reader::new(
                    built.name.clone(),
                    input,
                    parser,
                    state.sources.get(&built.name),
                    built.rotate_wait,
                ));
            }
            for p in built.probes {
                p.describe(&mut store);
                probes.push((built.name.clone(), p));
            }
        }
        let mut outlets = Vec::new();
        let mut sink_states = state.sinks;
        for (mut sink, sink_config) in sinks.into_iter().zip(std::mem::take(&mut config.sinks)) {
            if let Some(s) = sink_states.remove(sink.name()) {
                sink.restore_state(s);
            }
            let mut spool = Spool::open(
                &config.state_dir.join("spool").join(sink.name()),
                config.spool_max_bytes,
            )?;
            for note in spool.notes()? {
                sink.replay_note(&note);
            }
            outlets.push(Outlet {
                sink,
                spool: Arc::new(Mutex::new(spool)),
                config: sink_config,
                wake: Arc::default(),
                metrics: delivery::SinkMetrics::default(),
            });
        }
        let shared = Arc::new(Mutex::new(Shared {
            store,
            positions: state.sources,
        }));
        Ok(Agent {
            state: state_file,
            shared,
            readers: Arc::new(Mutex::new(readers)),
            probes,
            outlets,
            retry,
            sink_states,
            write_errors: WriteErrors::default(),
            state_lock: lock,
        })
    }

    /// Reads every file input (and, in once mode, every journal) to its end;
    /// returns the sources that could not be read.
    pub fn read_sources(&self) -> Vec<(String, String)> {
        read::read_all(&self.readers, &self.shared)
    }

    /// Refuses inputs this run cannot read: anything but a regular file, and a
    /// FIFO in `--once` (a stream has no end to read to).
    pub fn check_inputs(&self, once: bool) -> anyhow::Result<()> {
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.iter().try_for_each(|r| r.check(once))
    }

    /// Takes the journal readers out, for `follow_journal` threads.
    pub fn take_journal_readers(&mut self) -> Vec<Reader> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let (journals, files) = std::mem::take(&mut *readers)
            .into_iter()
            .partition(Reader::is_journal);
        *readers = files;
        journals
    }

    /// Runs every probe once: its I/O outside the store's lock, then what it
    /// read into the store under it. A failure is logged and counted, never fatal.
    pub fn probe(&mut self) {
        for (name, p) in &mut self.probes {
            p.fetch();
            let mut g = lock_at(&self.shared, now_ms());
            if let Err(e) = p.apply(&mut g.store) {
                tracing::warn!(source = %name, "probe failed: {e:#}");
                g.store.inc(
                    Series::new(sources::PROBE_ERRORS.name, &[("source", name.as_str())]),
                    1,
                );
            }
        }
    }

    /// Snapshots, appends every sink's bodies to its spool, saves the state,
    /// and wakes the couriers. Never waits for a receiver.
    ///
    /// A flush's bodies are kept together with the state that made them, or
    /// not at all: when the disk is full the sink forgets it encoded them
    /// (statsd sends those deltas with the next flush that can be written).
    /// The spools stay locked from the append to the state save, so a courier
    /// never sends a body that is then taken back.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        let at = now_ms();
        let (snap, mut pending) = {
            let mut g = lock(&self.shared);
            for o in &mut self.outlets {
                let spool = &mut lock_spool(&o.spool);
                delivery::record_spool(&mut o.metrics, &mut g.store, o.sink.name(), spool, at);
            }
            let snap = g.store.snapshot(at);
            let Shared { store, positions } = &mut *g;
            (snap, self.state.prepare(store, positions))
        };
        let before: Vec<_> = self.outlets.iter().map(|o| o.sink.save_state()).collect();
        let held: Vec<SharedSpool> = self.outlets.iter().map(|o| o.spool.clone()).collect();
        let mut spools: Vec<_> = held.iter().map(|s| lock_spool(s)).collect();
        let mut spooled = Vec::new();
        for (i, o) in self.outlets.iter_mut().enumerate() {
            let name = o.sink.name().to_string();
            let batches = match o.sink.encode(&snap) {
                Ok(b) => b,
                Err(e) => {
                    StateFile::settle(&mut lock(&self.shared).store, pending, false);
                    return Err(e.context(format!("sink {name}: encoding")));
                }
            };
            let bodies = batches
                .iter()
                .map(|b| (&b.body[..], &b.note[..], b.samples));
            match spools[i].append_all(bodies, at) {
                Ok(seqs) => {
                    self.write_errors.ok(&name);
                    spooled.push((i, seqs));
                    if let Some(s) = o.sink.save_state() {
                        self.sink_states.insert(name, s);
                    }
                }
                Err(e) => {
                    if let Some(s) = before[i].clone() {
                        o.sink.restore_state(s);
                    }
                    let kind = self.write_errors.failed(&name, &e);
                    lock(&self.shared).store.inc(
                        Series::new(SPOOL_WRITE_ERRORS.name, &[("sink", &name), ("kind", kind)]),
                        1,
                    );
                }
            }
        }
        // Every body is spooled: the snapshot's points go before the state is
        // deflated, so the two never sit in memory together.
        drop(snap);
        crate::failpoint::hit("after-spool");
        let saved = self.state.commit(&mut pending, &self.sink_states);
        StateFile::settle(&mut lock(&self.shared).store, pending, saved.is_ok());
        match saved {
            Ok(()) => self.write_errors.ok("state"),
            Err(e) => {
                // Without the state that made them, this flush's bodies must not
                // go out (a restart would make them again): take them back.
                for (i, seqs) in spooled {
                    for seq in seqs {
                        let _ = spools[i].remove(seq);
                    }
                    let o = &mut self.outlets[i];
                    if let Some(s) = before[i].clone() {
                        o.sink.restore_state(s.clone());
                        self.sink_states.insert(o.sink.name().to_string(), s);
                    }
                }
                let kind = self.write_errors.failed("state", &e);
                lock(&self.shared)
                    .store
                    .inc(Series::new(STATE_WRITE_ERRORS.name, &[("kind", kind)]), 1);
            }
        }
        drop(spools);
        for o in &self.outlets {
            o.wake.notify_one();
        }
        Ok(())
    }

    /// Saves positions and counters (delivery moved the self-metric counters),
    /// with the spools' gauges and drop counts taken first, so a run's drops
    /// are counted even when no flush follows (`--once`, stop). Positions and
    /// counters are taken under one lock, so lines are never counted twice.
    pub fn save_state(&mut self) {
        let saved = {
            let mut g = lock(&self.shared);
            for o in &mut self.outlets {
                let spool = &mut lock_spool(&o.spool);
                let (m, name) = (&mut o.metrics, o.sink.name());
                delivery::record_spool(m, &mut g.store, name, spool, now_ms());
            }
            let Shared { store, positions } = &mut *g;
            self.state.save(store, positions, &self.sink_states)
        };
        match saved {
            Ok(()) => self.write_errors.ok("state"),
            Err(e) => {
                let kind = self.write_errors.failed("state", &e);
                lock(&self.shared)
                    .store
                    .inc(Series::new(STATE_WRITE_ERRORS.name, &[("kind", kind)]), 1);
            }
        }
    }

    /// One courier per sink, each with its own copy of the sink built from its config.
    pub fn couriers(&self) -> anyhow::Result<Vec<Courier>> {
        self.outlets
            .iter()
            .map(|o| {
                Ok(Courier {
                    sink: AnySink::build(&o.config)
                        .with_context(|| format!("sink {}", o.sink.name()))?,
                    spool: o.spool.clone(),
                    wake: o.wake.clone(),
                    retry: self.retry.clone(),
                    shared: self.shared.clone(),
                    metrics: delivery::SinkMetrics::default(),
                })
            })
            .collect()
    }

    /// Delivers every spool at once, each sink on its own task, within the
    /// retry policy; what could not be sent stays spooled.
    pub async fn deliver_all(&self) -> anyhow::Result<FlushReport> {
        let mut tasks = tokio::task::JoinSet::new();
        for mut c in self.couriers()? {
            tasks.spawn(async move {
                let (tally, result) = delivery::deliver(&mut c.sink, &c.spool, &c.retry).await;
                let name = c.sink.name().to_string();
                let store = &mut lock(&c.shared).store;
                delivery::record_delivery(&mut c.metrics, store, &name, &tally);
                (name, tally.rejected, result)
            });
        }
        let mut report = FlushReport::default();
        while let Some(done) = tasks.join_next().await {
            let (sink, refused, result) = done.context("a delivery task failed")?;
            report.refused += refused;
            if let Err(reason) = result {
                report.failed.push((sink, reason));
            }
        }
        report.failed.sort();
        Ok(report)
    }
}

/// What `rme` was asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `rme push --once`: read, probe, flush once.
    Once,
    /// `rme push`: follow and flush every interval until stopped.
    Daemon,
    /// `rme serve`: follow and serve /metrics (on the default address unless
    /// `serve.listen` says otherwise), no sinks.
    Serve,
}

/// Runs a plan in `mode` on a new runtime; `reload` checks the config on SIGHUP.
pub fn run(
    mut plan: Plan,
    mode: Mode,
    reload: &dyn Fn() -> anyhow::Result<()>,
) -> anyhow::Result<FlushReport> {
    let rt = tokio::runtime::Runtime::new()?;
    if mode == Mode::Serve {
        plan.config
            .serve
            .get_or_insert_with(crate::config::ServeConfig::default);
        plan.sinks.clear();
    }
    match mode {
        Mode::Once => rt.block_on(run_once(plan)),
        Mode::Daemon | Mode::Serve => {
            rt.block_on(run_daemon(plan, reload))?;
            Ok(FlushReport::default())
        }
    }
}

fn describe_write_errors(store: &mut Store) {
    store.describe_all(&[SPOOL_WRITE_ERRORS, STATE_WRITE_ERRORS]);
}

/// `rme push --once`: read what is new, probe, flush once, deliver every sink
/// at once. The report says what is still spooled, refused or unreadable.
pub async fn run_once(plan: Plan) -> anyhow::Result<FlushReport> {
    let mut agent = Agent::new(
        plan,
        RetryPolicy {
            attempts: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        },
    )?;
    agent.check_inputs(true)?;
    let unreadable = agent.read_sources();
    agent.probe();
    agent.flush()?;
    let mut report = agent.deliver_all().await?;
    agent.save_state();
    report.unreadable = unreadable;
    Ok(report)
}

/// How `run_daemon`'s main loop ended.
enum Stop {
    Exit,
    Reload,
}

/// `rme push` and `rme serve` (a plan without sinks): follow the sources, flush
/// every interval, serve /metrics if configured. Each sink's courier delivers
/// on its own task. SIGTERM/SIGINT are handled at once: a last flush into the
/// spools, then the couriers get `stop_timeout_secs` to send what they can,
/// and rme exits (what is left waits in the spools). SIGHUP checks the config
/// with `check_reload`; if it is valid, the same stop, then rme re-executes
/// itself (same pid, same arguments) and continues from the state file just
/// saved; an invalid config is logged and the running one kept.
pub async fn run_daemon(
    plan: Plan,
    check_reload: &dyn Fn() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let serve = plan
        .config
        .serve
        .as_ref()
        .map(|s| (s.listen.clone(), crate::serve::Options::from(s)));
    let (interval_secs, jitter_secs) = (plan.config.interval_secs, plan.config.jitter_secs);
    let stop_timeout = Duration::from_secs(plan.config.stop_timeout_secs);
    let mut agent = Agent::new(
        plan,
        RetryPolicy {
            attempts: 4,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(interval_secs.clamp(1, 60)),
        },
    )?;
    agent.check_inputs(false)?;
    for r in agent.take_journal_readers() {
        let shared = agent.shared.clone();
        std::thread::spawn(move || read::follow_journal(r, shared));
    }
    // /metrics first: it answers during a long first read (reads lock the
    // store one batch at a time).
    let stop_serving = tokio_util_cancel();
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
    let _watcher = read::watch_files(&agent.readers, &agent.shared)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let interval = Duration::from_secs(interval_secs);
    loop {
        let (stop_couriers, stopped) = tokio::sync::watch::channel(false);
        let mut couriers = tokio::task::JoinSet::new();
        for c in agent.couriers()? {
            couriers.spawn(c.run(stopped.clone()));
        }
        let stop = loop {
            let jitter = Duration::from_millis(fastrand::u64(0..=jitter_secs.saturating_mul(1000)));
            let stop = tokio::select! {
                _ = tokio::time::sleep(interval + jitter) => None,
                _ = term.recv() => Some(Stop::Exit),
                _ = int.recv() => Some(Stop::Exit),
                _ = hup.recv() => match check_reload() {
                    Ok(()) => Some(Stop::Reload),
                    Err(e) => {
                        tracing::error!("SIGHUP: new config rejected, keeping the running one: {e:#}");
                        None
                    }
                },
            };
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
                break stop;
            }
        };
        // The couriers' last round, bounded; a request cut short stays spooled.
        let _ = stop_couriers.send(true);
        let all_done = async { while couriers.join_next().await.is_some() {} };
        if tokio::time::timeout(stop_timeout, all_done).await.is_err() {
            tracing::warn!(
                still_sending = couriers.len(),
                "stop_timeout_secs ({}) passed; what was not delivered stays in the spool",
                stop_timeout.as_secs()
            );
            couriers.abort_all();
            while couriers.join_next().await.is_some() {}
        }
        agent.save_state();
        // A SIGTERM/SIGINT that came during that stop still ends rme (a restart
        // would lose it).
        let stop = match stop {
            Stop::Reload => tokio::select! {
                biased;
                _ = term.recv() => Stop::Exit,
                _ = int.recv() => Stop::Exit,
                _ = std::future::ready(()) => Stop::Reload,
            },
            Stop::Exit => Stop::Exit,
        };
        match stop {
            Stop::Reload => {
                tracing::info!("SIGHUP: config is valid; restarting with it");
                let err = reexec(&agent.state_lock);
                tracing::error!("SIGHUP: could not restart: {err}; keeping the running config");
            }
            Stop::Exit => {
                tracing::info!("stopped after a last flush");
                let _ = stop_serving.send(());
                return Ok(());
            }
        }
    }
}

/// Replaces this process with a fresh rme with the same arguments, keeping
/// the state_dir lock (no other rme can take it in between); returns only on failure.
fn reexec(lock: &crate::lock::StateLock) -> std::io::Error {
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

fn tokio_util_cancel() -> tokio::sync::broadcast::Sender<()> {
    tokio::sync::broadcast::channel(1).0
}
