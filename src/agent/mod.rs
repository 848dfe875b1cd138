//! The engine: what `rme push` (every interval), `rme push --once` and
//! `rme serve` run. This file holds the flush cycle; `daemon.rs` the loop that
//! repeats it, `read.rs` the following of inputs, `delivery.rs` the couriers.
//!
//! One cycle: read what is new → probe live state → snapshot → encode per sink
//! → append to that sink's spool (fsync) → save the state file → wake the
//! sinks' couriers. Delivery runs on its own task per sink, so the cycle never
//! waits for a receiver. Because every body is spooled before the state moves
//! on, a crash at any point loses nothing; because a spool drains oldest first,
//! a receiver never sees an older sample after a newer one.

pub mod daemon;
pub mod delivery;
pub mod parse;
pub mod read;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use crate::config::Plan;
use crate::sinks::{AnySink, Sink, SinkConfig};
use crate::sources::{self, Probe};
use crate::state_dir::spool::Spool;
use crate::state_dir::state::StateFile;
use crate::state_dir::{StateDir, WriteErrors};
use crate::store::shared::{Shared, SharedRef, lock, lock_at};
use crate::store::{Metric, Series, Snapshot, Store, now_ms};
use delivery::{Courier, RetryPolicy, SharedSpool, lock_spool};
use read::Reader;

/// A sink as the flush uses it (encoding; its state) with its spool, the
/// config its courier's own copy is built from, and the courier's wake-up.
pub struct Outlet {
    pub sink: AnySink,
    pub spool: SharedSpool,
    config: SinkConfig,
    wake: Arc<tokio::sync::Notify>,
    metrics: delivery::SinkMetrics,
}

/// One flush's bodies in one sink's spool, with the sink's state from before
/// it encoded them (to take both back if the state file cannot be saved).
struct Spooled {
    seqs: Vec<u64>,
    before: Option<serde_json::Value>,
}

impl Outlet {
    /// The spool's gauges and drop counts into the store.
    fn record_spool(&mut self, store: &mut Store, now: i64) {
        let spool = &mut lock_spool(&self.spool);
        delivery::record_spool(&mut self.metrics, store, self.sink.name(), spool, now);
    }

    /// Encodes the snapshot and appends the bodies to `spool` (this sink's,
    /// held locked by the caller). An encoding error is the caller's; a write
    /// error leaves the sink as it was (it forgets it encoded them) and comes
    /// back as the inner `Err`.
    fn spool(
        &mut self,
        spool: &mut Spool,
        snap: &Snapshot,
        at: i64,
    ) -> anyhow::Result<anyhow::Result<Spooled>> {
        let before = self.sink.save_state();
        let batches = self
            .sink
            .encode(snap)
            .with_context(|| format!("sink {}: encoding", self.sink.name()))?;
        let bodies = batches
            .iter()
            .map(|b| (&b.body[..], &b.note[..], b.samples));
        Ok(match spool.append_all(bodies, at) {
            Ok(seqs) => Ok(Spooled { seqs, before }),
            Err(e) => {
                self.forget(before);
                Err(e)
            }
        })
    }

    /// Takes a flush's bodies back out of `spool` and the sink back to its
    /// state before them.
    fn take_back(&mut self, spool: &mut Spool, spooled: Spooled) {
        for seq in spooled.seqs {
            let _ = spool.remove(seq);
        }
        self.forget(spooled.before);
    }

    fn forget(&mut self, before: Option<serde_json::Value>) {
        if let Some(s) = before {
            self.sink.restore_state(s);
        }
    }
}

/// A probe with the configured name of its source (the `source` label).
pub type NamedProbe = (String, Box<dyn Probe>);

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
    pub probes: Vec<NamedProbe>,
    pub outlets: Vec<Outlet>,
    pub retry: RetryPolicy,
    /// The saved state of sinks this run does not have (removed from the
    /// config, or `rme serve`), written back unchanged.
    other_sinks: BTreeMap<String, serde_json::Value>,
    /// Spool and state writes that failed, logged once per kind.
    write_errors: WriteErrors,
    /// Held (locked) while this Agent lives: one rme per state_dir.
    dir: StateDir,
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
        let (dir, state_file, mut state) = StateDir::open(&config.state_dir)?;
        let mut store = Store::new(limits);
        delivery::describe_metrics(&mut store);
        store.describe_all(&[SPOOL_WRITE_ERRORS, STATE_WRITE_ERRORS]);
        sources::describe_self_metrics(&mut store);
        state.restore_into(&mut store);
        let (readers, probes) = inputs(built, &mut store, &state.sources);
        let mut other_sinks = state.sinks;
        let mut outlets = Vec::new();
        for (sink, sink_config) in sinks.into_iter().zip(std::mem::take(&mut config.sinks)) {
            let saved = other_sinks.remove(sink.name());
            let spool = dir.spool(sink.name(), config.spool_max_bytes)?;
            outlets.push(outlet(sink, sink_config, saved, spool)?);
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
            other_sinks,
            write_errors: WriteErrors::default(),
            dir,
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
                o.record_spool(&mut g.store, at);
            }
            let snap = g.store.snapshot(at);
            let Shared { store, positions } = &mut *g;
            (snap, self.state.prepare(store, positions))
        };
        let held: Vec<SharedSpool> = self.outlets.iter().map(|o| o.spool.clone()).collect();
        let mut spools: Vec<_> = held.iter().map(|s| lock_spool(s)).collect();
        let mut spooled = Vec::new();
        for (i, o) in self.outlets.iter_mut().enumerate() {
            match o.spool(&mut spools[i], &snap, at) {
                Err(e) => {
                    StateFile::settle(&mut lock(&self.shared).store, pending, false);
                    return Err(e);
                }
                Ok(Ok(s)) => {
                    self.write_errors.ok(o.sink.name());
                    spooled.push((i, s));
                }
                Ok(Err(e)) => {
                    let kind = self.write_errors.failed(o.sink.name(), &e);
                    let labels = [("sink", o.sink.name()), ("kind", kind)];
                    let series = Series::new(SPOOL_WRITE_ERRORS.name, &labels);
                    lock(&self.shared).store.inc(series, 1);
                }
            }
        }
        // Every body is spooled: the snapshot's points go before the state is
        // deflated, so the two never sit in memory together.
        drop(snap);
        crate::failpoint::hit("after-spool");
        let saved = self.state.commit(&mut pending, &self.sink_states());
        StateFile::settle(&mut lock(&self.shared).store, pending, saved.is_ok());
        if let Err(e) = saved {
            // Without the state that made them, this flush's bodies must not
            // go out (a restart would make them again): take them back.
            for (i, s) in spooled {
                self.outlets[i].take_back(&mut spools[i], s);
            }
            self.state_failed(&e);
        } else {
            self.write_errors.ok("state");
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
        let sinks = self.sink_states();
        let saved = {
            let mut g = lock(&self.shared);
            for o in &mut self.outlets {
                o.record_spool(&mut g.store, now_ms());
            }
            let Shared { store, positions } = &mut *g;
            self.state.save(store, positions, &sinks)
        };
        match saved {
            Ok(()) => self.write_errors.ok("state"),
            Err(e) => self.state_failed(&e),
        }
    }

    /// Every sink's bookkeeping as the state file keeps it, built from the
    /// sinks themselves (and the saved state of sinks this run does not have).
    fn sink_states(&self) -> BTreeMap<String, serde_json::Value> {
        let mut states = self.other_sinks.clone();
        for o in &self.outlets {
            if let Some(s) = o.sink.save_state() {
                states.insert(o.sink.name().to_string(), s);
            }
        }
        states
    }

    /// Logs (once per kind) and counts a state file write that failed.
    fn state_failed(&mut self, e: &anyhow::Error) {
        let kind = self.write_errors.failed("state", e);
        let series = Series::new(STATE_WRITE_ERRORS.name, &[("kind", kind)]);
        lock(&self.shared).store.inc(series, 1);
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

/// The readers and probes of the built sources, their metrics described and
/// each reader placed where the state file says it stopped.
fn inputs(
    built: Vec<sources::Built>,
    store: &mut Store,
    saved: &BTreeMap<String, crate::inputs::SourceState>,
) -> (Vec<Reader>, Vec<NamedProbe>) {
    let mut readers = Vec::new();
    let mut probes = Vec::new();
    for built in built {
        if let Some((input, parser)) = built.input {
            parser.describe(store);
            let at = saved.get(&built.name);
            readers.push(Reader::new(
                built.name.clone(),
                input,
                parser,
                at,
                built.rotate_wait,
            ));
        }
        for p in built.probes {
            p.describe(store);
            probes.push((built.name.clone(), p));
        }
    }
    (readers, probes)
}

/// A sink with its saved state restored, then the notes of what is still in
/// its spool replayed (statsd: a crash may have come between spooling and
/// saving the state).
fn outlet(
    mut sink: AnySink,
    config: SinkConfig,
    saved: Option<serde_json::Value>,
    mut spool: Spool,
) -> anyhow::Result<Outlet> {
    if let Some(s) = saved {
        sink.restore_state(s);
    }
    for note in spool.notes()? {
        sink.replay_note(&note);
    }
    Ok(Outlet {
        sink,
        spool: Arc::new(Mutex::new(spool)),
        config,
        wake: Arc::default(),
        metrics: delivery::SinkMetrics::default(),
    })
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
            rt.block_on(daemon::run_daemon(plan, reload))?;
            Ok(FlushReport::default())
        }
    }
}

/// `rme push --once`: read what is new, probe, flush once, deliver every sink
/// at once. The report says what is still spooled, refused or unreadable.
pub async fn run_once(plan: Plan) -> anyhow::Result<FlushReport> {
    let mut agent = Agent::new(plan, RetryPolicy::once())?;
    agent.check_inputs(true)?;
    let unreadable = agent.read_sources();
    agent.probe();
    agent.flush()?;
    let mut report = agent.deliver_all().await?;
    agent.save_state();
    report.unreadable = unreadable;
    Ok(report)
}
