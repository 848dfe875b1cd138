//! The flush cycle, for `rme push` (every interval) and `rme push --once`.
//!
//! One cycle: read what is new → probe live state → snapshot → encode per sink
//! → append to that sink's spool (fsync) → save the state file → deliver the
//! spool oldest first → save the state again (delivery's own counters).
//! Because every body is spooled before the state moves on, a crash at any
//! point loses nothing; because the spool drains oldest first, a receiver
//! never sees an older sample after a newer one. Retry and backoff live here
//! only; sinks just send once and classify the answer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Plan;
use crate::read::{self, Reader};
use crate::shared::{Shared, SharedRef, lock, lock_at};
#[cfg(test)]
use crate::sinks::{Accepted, Batch};
use crate::sinks::{AnySink, SendError, Sink};
use crate::sources::{self, Probe};
use crate::spool::{Spool, WriteErrors};
use crate::state::StateFile;
use crate::store::{Metric, Series, Store, now_ms};

/// How hard one flush tries a sink before leaving the rest in the spool.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: attempt 1 → up to min, doubling to max.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .min_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        base.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// A sink with its spool.
pub struct Outlet {
    pub sink: AnySink,
    pub spool: Spool,
}

/// What one flush achieved.
#[derive(Debug, Default)]
pub struct FlushReport {
    /// Sinks that still hold undelivered data, with the last reason.
    pub failed: Vec<(String, String)>,
}

/// Everything `rme push` runs.
pub struct Agent {
    state: StateFile,
    pub shared: SharedRef,
    /// File inputs (and journal ones until `take_journal_readers`); shared with the watcher thread.
    pub readers: Arc<Mutex<Vec<Reader>>>,
    pub probes: Vec<Box<dyn Probe>>,
    pub outlets: Vec<Outlet>,
    pub retry: RetryPolicy,
    sink_states: BTreeMap<String, serde_json::Value>,
    /// Spool and state writes that failed, logged once per kind.
    write_errors: WriteErrors,
    /// Held while this Agent lives: one rme per state_dir.
    _lock: crate::lock::StateLock,
}

/// Self-metrics of delivery.
const REQUESTS: Metric = Metric::counter(
    "rme_sink_requests_total",
    "Requests to receivers, by sink and result (sent, retried, rejected).",
);
const SAMPLES: Metric = Metric::counter(
    "rme_sink_samples_total",
    "Samples by sink and result (sent; rejected: refused by the receiver; dropped: spool full or record corrupt).",
);
const SPOOL_RECORDS: Metric = Metric::gauge(
    "rme_spool_records",
    "Request bodies waiting in the spool, by sink.",
);
const SPOOL_BYTES: Metric =
    Metric::gauge("rme_spool_bytes", "Bytes waiting in the spool, by sink.");
const SPOOL_AGE: Metric = Metric::gauge(
    "rme_spool_oldest_age_seconds",
    "Age of the oldest body in the spool, by sink (0 when empty).",
);
const SPOOL_DROPPED: Metric = Metric::counter(
    "rme_spool_dropped_total",
    "Spooled bodies dropped, by sink and reason (overflow: spool full; corrupt: failed checksum).",
);
const SPOOL_WRITE_ERRORS: Metric = Metric::counter(
    "rme_spool_write_errors_total",
    "Flushes whose bodies could not be spooled, by sink and kind (no_space, quota, read_only, permission, io, other); spooled bodies still go out.",
);
const STATE_WRITE_ERRORS: Metric = Metric::counter(
    "rme_state_write_errors_total",
    "State file writes that failed, by kind (as rme_spool_write_errors_total); that flush's bodies are not sent.",
);
const POINTS_REJECTED: Metric = Metric::counter(
    "rme_sink_points_rejected_total",
    "Data points a receiver refused inside an accepted request (OTLP partial success), by sink.",
);

/// Every metric this module emits, for `describe`.
const METRICS: &[Metric] = &[
    REQUESTS,
    SAMPLES,
    SPOOL_RECORDS,
    SPOOL_BYTES,
    SPOOL_AGE,
    SPOOL_DROPPED,
    SPOOL_WRITE_ERRORS,
    STATE_WRITE_ERRORS,
    POINTS_REJECTED,
];

impl Agent {
    /// Takes the state_dir lock (one rme per state_dir), loads the state,
    /// restores counters and positions, and opens each sink's spool.
    pub fn new(plan: Plan, retry: RetryPolicy) -> anyhow::Result<Agent> {
        let Plan {
            config,
            sources: built,
            sinks,
        } = plan;
        let lock = crate::lock::StateLock::acquire(&config.state_dir)?;
        let (state_file, mut state) = StateFile::open(&config.state_dir)?;
        let mut store = Store::new(config.store.limits());
        describe_delivery_metrics(&mut store);
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
                ));
            }
            for p in built.probes {
                p.describe(&mut store);
                probes.push(p);
            }
        }
        let mut outlets = Vec::new();
        let mut sink_states = state.sinks;
        for mut sink in sinks {
            if let Some(s) = sink_states.remove(sink.name()) {
                sink.restore_state(s);
            }
            let spool = Spool::open(
                &config.state_dir.join("spool").join(sink.name()),
                config.spool_max_bytes,
            )?;
            outlets.push(Outlet { sink, spool });
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
            _lock: lock,
        })
    }

    /// Reads every file input (and, in once mode, every journal) to its end.
    pub fn read_sources(&self) {
        read::read_all(&self.readers, &self.shared);
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

    /// Runs every probe once; a failure is logged and counted, never fatal.
    pub fn probe(&mut self) {
        for p in &mut self.probes {
            let mut g = lock_at(&self.shared, now_ms());
            if let Err(e) = p.probe(&mut g.store) {
                tracing::warn!(source = p.source(), "probe failed: {e:#}");
                g.store.inc(
                    Series::new(sources::PROBE_ERRORS.name, &[("source", p.source())]),
                    1,
                );
            }
        }
    }

    /// Snapshots, spools every sink's bodies, saves the state, delivers, saves it again.
    pub async fn flush(&mut self) -> anyhow::Result<FlushReport> {
        let at = now_ms();
        let (snap, mut pending) = {
            let mut g = lock(&self.shared);
            for o in &mut self.outlets {
                record_spool(&mut g.store, o.sink.name(), &mut o.spool, at);
            }
            let snap = g.store.snapshot(at);
            let Shared { store, positions } = &mut *g;
            (snap, self.state.prepare(store, positions))
        };
        // A flush's bodies are kept together with the state that made them, or
        // not at all: when the disk is full the sink forgets it encoded them
        // (statsd sends those deltas with the next flush that can be written).
        let before: Vec<_> = self.outlets.iter().map(|o| o.sink.save_state()).collect();
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
            let bodies = batches.iter().map(|b| (&b.body[..], b.samples));
            match o.spool.append_all(bodies, at) {
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
        let saved = self.state.commit(&mut pending, &self.sink_states);
        StateFile::settle(&mut lock(&self.shared).store, pending, saved.is_ok());
        match saved {
            Ok(()) => self.write_errors.ok("state"),
            Err(e) => {
                // Without the state that made them, this flush's bodies must not
                // go out (a restart would make them again): take them back.
                for (i, seqs) in spooled {
                    let o = &mut self.outlets[i];
                    for seq in seqs {
                        let _ = o.spool.remove(seq);
                    }
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
        let mut report = FlushReport::default();
        for o in &mut self.outlets {
            let (tally, result) = deliver(&mut o.sink, &mut o.spool, &self.retry).await;
            record_delivery(&mut lock(&self.shared).store, o.sink.name(), &tally);
            if let Err(reason) = result {
                report.failed.push((o.sink.name().to_string(), reason));
            }
        }
        // Delivery moved the self-metric counters; keep them for the next run
        // (positions taken under the same lock, so lines are never counted twice).
        let saved = {
            let mut g = lock(&self.shared);
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
        Ok(report)
    }
}

fn describe_delivery_metrics(store: &mut Store) {
    store.describe_all(METRICS);
}

fn record_spool(store: &mut Store, sink: &str, spool: &mut Spool, now: i64) {
    let l = [("sink", sink)];
    store.set(Series::new(SPOOL_RECORDS.name, &l), spool.len() as f64);
    store.set(Series::new(SPOOL_BYTES.name, &l), spool.bytes() as f64);
    let age = spool
        .oldest_created_ms()
        .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
    store.set(Series::new(SPOOL_AGE.name, &l), age);
    let dropped = std::mem::take(&mut spool.dropped);
    for (reason, n) in [("overflow", dropped.overflow), ("corrupt", dropped.corrupt)] {
        store.inc(
            Series::new(SPOOL_DROPPED.name, &[("sink", sink), ("reason", reason)]),
            n,
        );
    }
    store.inc(
        Series::new(SAMPLES.name, &[("sink", sink), ("result", "dropped")]),
        dropped.samples,
    );
    // Refusals exist from the first flush at 0, so that a receiver-side
    // `increase()` (examples/alerts.yml) sees the first one.
    store.inc(
        Series::new(SAMPLES.name, &[("sink", sink), ("result", "rejected")]),
        0,
    );
    store.inc(Series::new(POINTS_REJECTED.name, &[("sink", sink)]), 0);
}

/// What one delivery did, recorded into the store once by [`record_delivery`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests the receiver took, and the samples they carried.
    pub sent: u64,
    pub sent_samples: u64,
    /// Attempts that failed in a way worth trying again.
    pub retried: u64,
    /// Requests the receiver refused for good (dropped), and their samples.
    pub rejected: u64,
    pub rejected_samples: u64,
    /// Points refused inside requests the receiver took (OTLP partial success).
    pub rejected_points: u64,
}

/// Adds one delivery's tally to the sink's self-metrics.
pub fn record_delivery(store: &mut Store, sink: &str, t: &Tally) {
    for (result, requests, samples) in [
        ("sent", t.sent, Some(t.sent_samples)),
        ("retried", t.retried, None),
        ("rejected", t.rejected, Some(t.rejected_samples)),
    ] {
        let l = [("sink", sink), ("result", result)];
        store.inc(Series::new(REQUESTS.name, &l), requests);
        if let Some(n) = samples {
            store.inc(Series::new(SAMPLES.name, &l), n);
        }
    }
    if t.rejected_points > 0 {
        store.inc(
            Series::new(POINTS_REJECTED.name, &[("sink", sink)]),
            t.rejected_points,
        );
    }
}

/// Sends the spool oldest first until it is empty, or a body still fails after
/// the policy's attempts or the receiver asks to wait longer than `max_backoff`
/// (then the rest waits for the next flush, in order). A body is removed only
/// after the receiver's 2xx (or a refusal), so a crash in between sends it
/// again: at least once, and never skipped. Returns what it did, and why it
/// stopped early if it did.
pub async fn deliver<S: Sink>(
    sink: &mut S,
    spool: &mut Spool,
    retry: &RetryPolicy,
) -> (Tally, Result<(), String>) {
    let mut tally = Tally::default();
    let result = drain(sink, spool, retry, &mut tally).await;
    (tally, result)
}

async fn drain<S: Sink>(
    sink: &mut S,
    spool: &mut Spool,
    retry: &RetryPolicy,
    tally: &mut Tally,
) -> Result<(), String> {
    let name = sink.name().to_string();
    loop {
        let record = match spool.oldest() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("{e:#}")),
        };
        let mut attempt = 0;
        loop {
            match sink.send(&record.body).await {
                Ok(accepted) => {
                    tally.sent += 1;
                    tally.sent_samples += record.samples;
                    tally.rejected_points += accepted.rejected_points;
                    spool.remove(record.seq).map_err(|e| format!("{e:#}"))?;
                    break;
                }
                Err(SendError::Reject { reason }) => {
                    tracing::error!(sink = %name, samples = record.samples, "receiver refused a batch: {reason}; dropped");
                    tally.rejected += 1;
                    tally.rejected_samples += record.samples;
                    spool.remove(record.seq).map_err(|e| format!("{e:#}"))?;
                    break;
                }
                Err(SendError::Retry { reason, after }) => {
                    tally.retried += 1;
                    attempt += 1;
                    let asked_too_long = after.is_some_and(|a| a > retry.max_backoff);
                    if attempt >= retry.attempts || asked_too_long {
                        tracing::warn!(sink = %name, attempt, retry_after = ?after, "{reason}; kept in the spool for the next flush");
                        return Err(reason);
                    }
                    let wait = after.unwrap_or_else(|| retry.backoff(attempt));
                    tracing::warn!(sink = %name, attempt, wait_ms = wait.as_millis() as u64, "{reason}; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
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

/// `rme push --once`: read what is new, probe, flush once. Returns the sinks
/// that could not deliver (their data stays spooled for the next run).
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
    agent.read_sources();
    agent.probe();
    agent.flush().await
}

/// `rme push` and `rme serve` (a plan without sinks): follow the sources, flush
/// every interval, serve /metrics if configured; SIGTERM/SIGINT flush once more
/// and exit. SIGHUP flushes, checks the config with `check_reload`, and if it is
/// valid re-executes rme (same pid, same arguments), which then continues from
/// the state file just saved; an invalid config is logged and the old one kept.
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
    agent.read_sources();
    let _watcher = read::watch_files(&agent.readers, &agent.shared)?;
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
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let interval = Duration::from_secs(interval_secs);
    loop {
        let jitter = Duration::from_millis(fastrand::u64(0..=jitter_secs.saturating_mul(1000)));
        let (last, reload) = tokio::select! {
            _ = tokio::time::sleep(interval + jitter) => (false, false),
            _ = term.recv() => (true, false),
            _ = int.recv() => (true, false),
            _ = hup.recv() => match check_reload() {
                Ok(()) => (true, true),
                Err(e) => {
                    tracing::error!("SIGHUP: new config rejected, keeping the running one: {e:#}");
                    (false, false)
                }
            },
        };
        agent.read_sources();
        agent.probe();
        match agent.flush().await {
            Ok(r) => {
                for (sink, reason) in r.failed {
                    tracing::warn!(sink = %sink, "not delivered yet: {reason}");
                }
            }
            Err(e) => tracing::error!("flush failed: {e:#}"),
        }
        if reload {
            tracing::info!("SIGHUP: config is valid; restarting with it");
            let err = reexec();
            tracing::error!("SIGHUP: could not restart: {err}; keeping the running config");
            continue;
        }
        if last {
            tracing::info!("stopping after a last flush");
            let _ = stop_serving.send(());
            return Ok(());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Limits;

    /// A sink that answers from a script and records what it was sent.
    struct Scripted {
        answers: Vec<Result<Accepted, SendError>>,
        sent: Vec<Vec<u8>>,
    }

    impl Sink for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn encode(&mut self, _: &crate::store::Snapshot) -> anyhow::Result<Vec<Batch>> {
            Ok(Vec::new())
        }
        async fn send(&mut self, body: &[u8]) -> Result<Accepted, SendError> {
            self.sent.push(body.to_vec());
            self.answers.remove(0)
        }
    }

    fn retry(after: Option<u64>) -> Result<Accepted, SendError> {
        Err(SendError::Retry {
            reason: "HTTP 503".into(),
            after: after.map(Duration::from_millis),
        })
    }

    fn run(
        answers: Vec<Result<Accepted, SendError>>,
    ) -> (Scripted, Spool, Store, Result<(), String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("spool"), 1 << 20).unwrap();
        for (body, samples) in [(&b"a"[..], 3), (b"b", 4), (b"c", 5)] {
            spool.append(body, samples, 1).unwrap();
        }
        let policy = RetryPolicy {
            attempts: 3,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(50),
        };
        let mut sink = Scripted {
            answers,
            sent: Vec::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (tally, result) = rt.block_on(deliver(&mut sink, &mut spool, &policy));
        let mut store = Store::new(Limits::default());
        record_delivery(&mut store, "scripted", &tally);
        (sink, spool, store, result)
    }

    fn samples(store: &Store, result: &str) -> u64 {
        store.sum(SAMPLES.name, &[("result", result)])
    }

    #[test]
    fn oldest_first_reject_dropped_and_counted_retry_bounded() {
        let (sink, spool, store, result) = run(vec![
            Ok(Accepted::default()),
            Err(SendError::Reject {
                reason: "HTTP 400".into(),
            }),
            retry(None),
            retry(Some(1)),
            retry(None),
        ]);
        assert_eq!(
            sink.sent,
            [
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec(),
                b"c".to_vec(),
                b"c".to_vec()
            ]
        );
        assert!(result.is_err());
        assert_eq!(
            (samples(&store, "sent"), samples(&store, "rejected")),
            (3, 4)
        );
        assert_eq!(store.sum(REQUESTS.name, &[("result", "retried")]), 3);
        assert_eq!(
            spool.len(),
            1,
            "the body that kept failing waits for the next flush"
        );
    }

    #[test]
    fn retry_after_longer_than_max_backoff_ends_the_flush_at_once() {
        let (sink, spool, _, result) = run(vec![retry(Some(60_000))]);
        assert_eq!(sink.sent.len(), 1);
        assert!(result.is_err());
        assert_eq!(spool.len(), 3);
    }
}
