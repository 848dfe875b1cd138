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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
use crate::config::SinkConfig;
use crate::delivery::{self, Courier, RetryPolicy, SharedSpool, lock_spool};
use crate::journal;
use crate::sinks::{AnySink, Sink};
use crate::sources::{self, Input, LineParser, Probe, feed_as};
use crate::spool::Spool;
use crate::state::{SourceState, State};
use crate::store::{Series, Store, now_ms};
use crate::tail::Tailer;

/// The store and where each source stands, behind one lock so a snapshot and
/// the positions saved with it always agree.
pub struct Shared {
    pub store: Store,
    pub positions: BTreeMap<String, SourceState>,
}

pub type SharedRef = Arc<Mutex<Shared>>;

/// Locks the shared store; a panic elsewhere must not stop the flushes.
pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// One source's log input with its parser.
pub struct Reader {
    pub name: String,
    follow: Follow,
    parser: Box<dyn LineParser>,
}

enum Follow {
    File(Tailer),
    Journal(sources::JournalInput),
}

impl Reader {
    fn new(
        name: String,
        input: Input,
        parser: Box<dyn LineParser>,
        saved: Option<&SourceState>,
    ) -> Reader {
        let follow = match input {
            Input::File(path) => Follow::File(Tailer::new(path, saved.and_then(|s| s.file))),
            Input::Journal(j) => Follow::Journal(j),
        };
        Reader {
            name,
            follow,
            parser,
        }
    }

    fn is_journal(&self) -> bool {
        matches!(self.follow, Follow::Journal(_))
    }

    /// Reads everything new into the store. For a journal input this runs
    /// `journalctl` to the end (once mode); following it is [`follow_journal`]'s job.
    pub fn read_new(&mut self, shared: &Mutex<Shared>) -> anyhow::Result<u64> {
        match &mut self.follow {
            Follow::File(tailer) => {
                let mut g = lock(shared);
                let Shared { store, positions } = &mut *g;
                store.set_now(now_ms());
                let parser = &mut *self.parser;
                let name = &self.name;
                let offset = tailer.pos().map_or(0, |p| p.offset);
                let mut progress = crate::progress::Progress::start(tailer.path(), offset);
                let stats = tailer
                    .read_new(&mut |line| {
                        feed_as(name, parser, line, store);
                        if let Some(p) = progress.as_mut() {
                            p.advance(line.len() as u64 + 1);
                        }
                    })
                    .with_context(|| {
                        format!("source {}: reading {}", self.name, tailer.path().display())
                    })?;
                positions.entry(self.name.clone()).or_default().file = tailer.pos();
                Ok(stats.lines)
            }
            Follow::Journal(input) => {
                let input = input.clone();
                let cursor = lock(shared)
                    .positions
                    .get(&self.name)
                    .and_then(|s| s.cursor.clone());
                let mut n = 0;
                let name = self.name.clone();
                let parser = &mut *self.parser;
                journal::read(&input, cursor.as_deref(), false, &mut |e| {
                    let mut g = lock(shared);
                    let Shared { store, positions } = &mut *g;
                    store.set_now(now_ms());
                    feed_as(&name, parser, &e.message, store);
                    positions.entry(name.clone()).or_default().cursor = Some(e.cursor);
                    n += 1;
                })?;
                Ok(n)
            }
        }
    }
}

/// Reads every reader to its end; errors are logged per source, returned, and
/// retried next time.
pub fn read_all(readers: &Mutex<Vec<Reader>>, shared: &Mutex<Shared>) -> Vec<(String, String)> {
    let mut readers = readers.lock().unwrap_or_else(|e| e.into_inner());
    let mut failed = Vec::new();
    for r in readers.iter_mut() {
        if let Err(e) = r.read_new(shared) {
            tracing::warn!(source = %r.name, "{e:#}");
            failed.push((r.name.clone(), format!("{e:#}")));
        }
    }
    failed
}

/// Follows a journal input forever on this (blocking) thread, restarting `journalctl` if it exits.
pub fn follow_journal(mut reader: Reader, shared: SharedRef) {
    let Follow::Journal(input) = &reader.follow else {
        return;
    };
    let input = input.clone();
    loop {
        let cursor = lock(&shared)
            .positions
            .get(&reader.name)
            .and_then(|s| s.cursor.clone());
        let name = reader.name.clone();
        let parser = &mut *reader.parser;
        let result = journal::read(&input, cursor.as_deref(), true, &mut |e| {
            let mut g = lock(&shared);
            let Shared { store, positions } = &mut *g;
            store.set_now(now_ms());
            feed_as(&name, parser, &e.message, store);
            positions.entry(name.clone()).or_default().cursor = Some(e.cursor);
        });
        if let Err(e) = result {
            tracing::warn!(source = %reader.name, "journal: {e:#}; retrying in 10 s");
        }
        std::thread::sleep(Duration::from_secs(10));
    }
}

/// A sink as the flush uses it (encoding; its state) with its spool, and the
/// wake-up of its courier.
pub struct Outlet {
    pub sink: AnySink,
    pub spool: SharedSpool,
    config: SinkConfig,
    wake: Arc<tokio::sync::Notify>,
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
    pub state_dir: PathBuf,
    pub shared: SharedRef,
    /// File inputs (and journal ones until `take_journal_readers`); shared with the watcher thread.
    pub readers: Arc<Mutex<Vec<Reader>>>,
    /// Each with the configured name of its source (the `source` label).
    pub probes: Vec<(String, Box<dyn Probe>)>,
    pub outlets: Vec<Outlet>,
    pub retry: RetryPolicy,
    sink_states: BTreeMap<String, serde_json::Value>,
}

impl Agent {
    /// Loads the state, restores counters, builds sources and sinks.
    pub fn new(config: &Config, retry: RetryPolicy) -> anyhow::Result<Agent> {
        let state = State::load(&config.state_dir)?;
        let mut store = Store::new(config.store.limits());
        delivery::describe_metrics(&mut store);
        sources::describe_self_metrics(&mut store);
        store.restore_counters(state.counters);
        let mut readers = Vec::new();
        let mut probes = Vec::new();
        for sc in &config.sources {
            let built = sources::build(sc).with_context(|| format!("source {}", sc.name()))?;
            if let Some((input, parser)) = built.input {
                parser.describe(&mut store);
                readers.push(Reader::new(
                    built.name.clone(),
                    input,
                    parser,
                    state.sources.get(&built.name),
                ));
            }
            for p in built.probes {
                p.describe(&mut store);
                probes.push((built.name.clone(), p));
            }
        }
        let mut outlets = Vec::new();
        let mut sink_states = state.sinks;
        for sc in &config.sinks {
            let mut sink = AnySink::build(sc).with_context(|| format!("sink {}", sc.name()))?;
            if let Some(s) = sink_states.remove(sc.name()) {
                sink.restore_state(s);
            }
            let spool = Spool::open(
                &config.state_dir.join("spool").join(sc.name()),
                config.spool_max_bytes,
            )?;
            for note in spool.notes()? {
                sink.replay_note(&note);
            }
            outlets.push(Outlet {
                sink,
                spool: Arc::new(Mutex::new(spool)),
                config: sc.clone(),
                wake: Arc::default(),
            });
        }
        let shared = Arc::new(Mutex::new(Shared {
            store,
            positions: state.sources,
        }));
        Ok(Agent {
            state_dir: config.state_dir.clone(),
            shared,
            readers: Arc::new(Mutex::new(readers)),
            probes,
            outlets,
            retry,
            sink_states,
        })
    }

    /// Reads every file input (and, in once mode, every journal) to its end;
    /// returns the sources that could not be read.
    pub fn read_sources(&self) -> Vec<(String, String)> {
        read_all(&self.readers, &self.shared)
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

    /// Runs every probe once; a failure is logged and counted, never fatal.
    pub fn probe(&mut self) {
        for (name, p) in &mut self.probes {
            let mut g = lock(&self.shared);
            g.store.set_now(now_ms());
            if let Err(e) = p.probe(&mut g.store) {
                tracing::warn!(source = %name, "probe failed: {e:#}");
                g.store.inc(
                    Series::new(sources::PROBE_ERRORS, &[("source", name.as_str())]),
                    1,
                );
            }
        }
    }

    /// Snapshots, appends every sink's bodies to its spool, saves the state,
    /// and wakes the couriers. Never waits for a receiver.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        let at = now_ms();
        let (snap, mut state) = {
            let mut g = lock(&self.shared);
            for o in &self.outlets {
                delivery::record_spool(&mut g.store, o.sink.name(), &mut lock_spool(&o.spool), at);
            }
            let snap = g.store.snapshot(at);
            let state = State {
                sources: g.positions.clone(),
                counters: g.store.saved_counters(),
                ..State::default()
            };
            (snap, state)
        };
        for o in &mut self.outlets {
            let batches = o
                .sink
                .batches(&snap)
                .with_context(|| format!("sink {}: encoding", o.sink.name()))?;
            for b in batches {
                lock_spool(&o.spool).append_noted(&b.body, &b.note, b.samples, at)?;
            }
            if let Some(s) = o.sink.save_state() {
                self.sink_states.insert(o.sink.name().to_string(), s);
            }
        }
        state.sinks = self.sink_states.clone();
        crate::failpoint::hit("after-spool");
        state.save(&self.state_dir)?;
        for o in &self.outlets {
            o.wake.notify_one();
        }
        Ok(())
    }

    /// Saves positions and counters (delivery moved the self-metric counters),
    /// with the spools' gauges and drop counts taken first, so a run's drops
    /// are counted even when no flush follows (`--once`, stop).
    pub fn save_state(&self) -> anyhow::Result<()> {
        let state = {
            let mut g = lock(&self.shared);
            for o in &self.outlets {
                delivery::record_spool(
                    &mut g.store,
                    o.sink.name(),
                    &mut lock_spool(&o.spool),
                    now_ms(),
                );
            }
            State {
                sources: g.positions.clone(),
                counters: g.store.saved_counters(),
                sinks: self.sink_states.clone(),
                ..State::default()
            }
        };
        state.save(&self.state_dir)
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
                let outcome = delivery::deliver(&mut c.sink, &c.spool, &c.retry, &c.shared).await;
                (c.sink.name().to_string(), outcome)
            });
        }
        let mut report = FlushReport::default();
        while let Some(done) = tasks.join_next().await {
            let (sink, outcome) = done.context("a delivery task failed")?;
            report.refused += outcome.refused;
            if let Some(reason) = outcome.kept {
                report.failed.push((sink, reason));
            }
        }
        report.failed.sort();
        Ok(report)
    }
}

/// `rme push --once`: read what is new, probe, flush once, deliver every sink
/// at once. The report says what is still spooled, refused or unreadable.
pub async fn run_once(config: &Config) -> anyhow::Result<FlushReport> {
    let mut agent = Agent::new(
        config,
        RetryPolicy {
            attempts: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        },
    )?;
    let unreadable = agent.read_sources();
    agent.probe();
    agent.flush()?;
    let mut report = agent.deliver_all().await?;
    agent.save_state()?;
    report.unreadable = unreadable;
    Ok(report)
}

/// How `run_daemon`'s main loop ended.
enum Stop {
    Exit,
    Reload,
}

/// `rme push` (with sinks) and `rme serve` (without): follow the sources, flush
/// every interval, serve /metrics if configured. Each sink's courier delivers
/// on its own task. SIGTERM/SIGINT are handled at once: a last flush into the
/// spools, then the couriers get `stop_timeout_secs` to send what they can,
/// and rme exits (what is left waits in the spools). SIGHUP checks the config
/// with `check_reload`; if it is valid, the same stop, then rme re-executes
/// itself (same pid, same arguments) and continues from the state file just
/// saved; an invalid config is logged and the running one kept.
pub async fn run_daemon(
    config: &Config,
    with_sinks: bool,
    check_reload: &dyn Fn() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut agent = Agent::new(
        config,
        RetryPolicy {
            attempts: 4,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(config.interval_secs.clamp(1, 60)),
        },
    )?;
    if !with_sinks {
        agent.outlets.clear();
    }
    for r in agent.take_journal_readers() {
        let shared = agent.shared.clone();
        std::thread::spawn(move || follow_journal(r, shared));
    }
    agent.read_sources();
    let _watcher = watch_files(&agent)?;
    let stop_serving = tokio_util_cancel();
    if let Some(serve) = &config.serve {
        let listener = tokio::net::TcpListener::bind(&serve.listen)
            .await
            .with_context(|| format!("serve.listen: binding {}", serve.listen))?;
        tracing::info!(addr = %serve.listen, "serving /metrics");
        let shared = agent.shared.clone();
        let mut rx = stop_serving.subscribe();
        tokio::spawn(crate::serve::serve(
            listener,
            shared,
            serve.into(),
            async move {
                let _ = rx.recv().await;
            },
        ));
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let interval = Duration::from_secs(config.interval_secs);
    let stop_timeout = Duration::from_secs(config.stop_timeout_secs);
    loop {
        let (stop_couriers, stopped) = tokio::sync::watch::channel(false);
        let mut couriers = tokio::task::JoinSet::new();
        for c in agent.couriers()? {
            couriers.spawn(c.run(stopped.clone()));
        }
        let stop = loop {
            let jitter =
                Duration::from_millis(fastrand::u64(0..=config.jitter_secs.saturating_mul(1000)));
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
            agent.read_sources();
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
        if let Err(e) = agent.save_state() {
            tracing::error!("saving the state: {e:#}");
        }
        match stop {
            Stop::Reload => {
                tracing::info!("SIGHUP: config is valid; restarting with it");
                let err = reexec();
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

/// Replaces this process with a fresh rme with the same arguments; returns only on failure.
fn reexec() -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe()
        .unwrap_or_else(|_| PathBuf::from(std::env::args_os().next().unwrap_or_default()));
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec()
}

fn tokio_util_cancel() -> tokio::sync::broadcast::Sender<()> {
    tokio::sync::broadcast::channel(1).0
}

/// Watches the directories of the file inputs; a change to a followed file (or
/// a file named after one: `fail2ban.log.1` of a rotation) reads the files
/// again (no polling while idle). Other files there are ignored, so rme's own
/// stderr written into that directory cannot trigger reads. The watcher lives
/// as long as the result.
fn watch_files(agent: &Agent) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let paths: Vec<PathBuf> = agent
        .readers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|r| match &r.follow {
            Follow::File(t) => Some(t.path().to_path_buf()),
            Follow::Journal(_) => None,
        })
        .collect();
    let names: Vec<std::ffi::OsString> = paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|ev| ev.paths.is_empty() || ev.paths.iter().any(|p| concerns(p, &names))) {
            let _ = tx.send(());
        }
    })
    .context("starting the file watcher")?;
    let dirs: std::collections::BTreeSet<PathBuf> = paths
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch: {e}; its files are read at each flush only");
        }
    }
    let readers = agent.readers.clone();
    let shared = agent.shared.clone();
    std::thread::spawn(move || {
        while rx.recv().is_ok() {
            while rx.try_recv().is_ok() {}
            read_all(&readers, &shared);
        }
    });
    Ok(watcher)
}

/// Whether a change to `path` may concern a followed file: its name starts
/// with a followed file's name (the file itself, or a rotated copy of it).
fn concerns(path: &std::path::Path, names: &[std::ffi::OsString]) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    path.file_name().is_some_and(|n| {
        names
            .iter()
            .any(|name| n.as_bytes().starts_with(name.as_bytes()))
    })
}
