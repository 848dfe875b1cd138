//! Getting spooled bodies to one receiver: the retry loop, and, in `rme push`,
//! one task per sink ([`Courier`]) that runs it.
//!
//! The flush (`agent/mod.rs`) encodes a snapshot for every sink and appends the
//! bodies to each sink's spool; it never waits for a receiver. Each sink's
//! courier then sends its spool oldest first, on its own task with its own
//! copy of the sink (connection, client) and its own backoff, so a receiver
//! that hangs or is slow delays only its own sink: not another sink, not the
//! next flush's reading and spooling, not `/metrics`. A body leaves the spool
//! only after the receiver's 2xx (or a refusal for good), so stopping a
//! courier mid-request loses nothing: the body waits in the spool for the
//! next run.
//!
//! A stop (SIGTERM, SIGINT, SIGHUP's in-place restart) never cuts a request
//! that is on the wire: the courier lets it finish, is woken from a backoff
//! wait at once, tries what is left once, and returns. Only when the stop
//! timeout (`stop_timeout_secs`) runs out is a courier dropped mid-request;
//! the receiver may have stored that body without rme seeing its answer, so
//! that one body (the oldest in the spool) may reach the receiver twice. No
//! other stop sends a body twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(test)]
use crate::sinks::{Accepted, Batch};
use crate::sinks::{AnySink, SendError, Sink};
use crate::state_dir::spool::Spool;
use crate::store::shared::{Shared, lock};
use crate::store::{Handle, Metric, Store};

/// How hard one delivery tries a body before leaving it (and the rest) in the spool.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// `rme push --once`: three tries, 0.5 s to 5 s apart.
    pub fn once() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The daemon: four tries, 1 s apart at first, at most the flush
    /// `interval` (1 to 60 s) apart: the next flush wakes the courier anyway.
    pub fn daemon(interval: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            min_backoff: Duration::from_secs(1),
            max_backoff: interval.clamp(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    /// Exponential backoff with full jitter: attempt 1 → up to min, doubling to max.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .min_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        base.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// A sink's spool, shared by the flush (which appends) and its courier (which
/// sends and removes); each holds the lock only for one file operation.
pub type SharedSpool = Arc<Mutex<Spool>>;

pub fn lock_spool(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|e| e.into_inner())
}

/// Self-metrics of delivery.
pub const REQUESTS: Metric = Metric::counter(
    "rme_sink_requests_total",
    "Requests to receivers, by sink and result (sent, retried, rejected).",
);
pub const SAMPLES: Metric = Metric::counter(
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
pub const SPOOL_DROPPED: Metric = Metric::counter(
    "rme_spool_dropped_total",
    "Spooled bodies dropped, by sink and reason (overflow: spool full; corrupt: failed checksum).",
);
pub const HEALTH_FAILURES: Metric = Metric::counter(
    "rme_sink_health_failures_total",
    "Sends held back because the receiver's health check failed (statsd: its management port did not answer `health: up`), by sink.",
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
    POINTS_REJECTED,
    HEALTH_FAILURES,
];

/// Registers the self-metrics of delivery.
pub fn describe_metrics(store: &mut Store) {
    store.describe_all(METRICS);
}

/// The spool's gauges, and what it dropped since the last call, into the store.
pub fn record_spool(
    m: &mut SinkMetrics,
    store: &mut Store,
    sink: &str,
    spool: &mut Spool,
    now: i64,
) {
    let l = [("sink", sink)];
    store.set_at(&mut m.records, SPOOL_RECORDS.name, &l, spool.len() as f64);
    store.set_at(&mut m.bytes, SPOOL_BYTES.name, &l, spool.bytes() as f64);
    let age = spool
        .oldest_created_ms()
        .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
    store.set_at(&mut m.age, SPOOL_AGE.name, &l, age);
    let dropped = std::mem::take(&mut spool.dropped);
    for (h, reason, n) in [
        (&mut m.dropped_overflow, "overflow", dropped.overflow),
        (&mut m.dropped_corrupt, "corrupt", dropped.corrupt),
    ] {
        store.inc_at(
            h,
            SPOOL_DROPPED.name,
            &[("sink", sink), ("reason", reason)],
            n,
        );
    }
    let dropped_l = [("sink", sink), ("result", "dropped")];
    store.inc_at(
        &mut m.samples_dropped,
        SAMPLES.name,
        &dropped_l,
        dropped.samples,
    );
    // Refusals exist from the first flush at 0, so that a receiver-side
    // `increase()` (examples/alerts.yml) sees the first one.
    let rejected_l = [("sink", sink), ("result", "rejected")];
    store.inc_at(&mut m.samples_rejected, SAMPLES.name, &rejected_l, 0);
    store.inc_at(&mut m.points_rejected, POINTS_REJECTED.name, &l, 0);
}

/// A sink's self-metric handles, resolved once and then bumped without
/// building a series each flush. The flush and the courier keep one each.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    records: Handle,
    bytes: Handle,
    age: Handle,
    dropped_overflow: Handle,
    dropped_corrupt: Handle,
    samples_dropped: Handle,
    samples_rejected: Handle,
    points_rejected: Handle,
    health_failures: Handle,
    /// `rme_sink_requests_total` and `rme_sink_samples_total` by sent, retried, rejected.
    requests: [Handle; 3],
    samples: [Handle; 3],
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
    /// Sends held back because the receiver's health check failed.
    pub health_failures: u64,
}

/// Adds one delivery's tally to the sink's self-metrics.
pub fn record_delivery(m: &mut SinkMetrics, store: &mut Store, sink: &str, t: &Tally) {
    let results = [
        ("sent", t.sent, Some(t.sent_samples)),
        ("retried", t.retried, None),
        ("rejected", t.rejected, Some(t.rejected_samples)),
    ];
    for (i, (result, requests, samples)) in results.into_iter().enumerate() {
        let l = [("sink", sink), ("result", result)];
        store.inc_at(&mut m.requests[i], REQUESTS.name, &l, requests);
        if let Some(n) = samples {
            store.inc_at(&mut m.samples[i], SAMPLES.name, &l, n);
        }
    }
    if t.health_failures > 0 {
        let l = [("sink", sink)];
        store.inc_at(
            &mut m.health_failures,
            HEALTH_FAILURES.name,
            &l,
            t.health_failures,
        );
    }
    if t.rejected_points > 0 {
        let l = [("sink", sink)];
        store.inc_at(
            &mut m.points_rejected,
            POINTS_REJECTED.name,
            &l,
            t.rejected_points,
        );
    }
}

/// Sends the spool oldest first until it is empty, or a body still fails after
/// the policy's attempts or the receiver asks to wait longer than `max_backoff`
/// (then the rest waits for the next flush, in order). A body is removed only
/// after the receiver's 2xx (or a refusal), so a crash or a cancel in between
/// sends it again: at least once, and never skipped. The spool is locked only
/// for each file operation, never while a receiver is asked. Returns what it
/// did, and why it stopped early if it did.
pub async fn deliver<S: Sink>(
    sink: &mut S,
    spool: &Mutex<Spool>,
    retry: &RetryPolicy,
) -> (Tally, Result<(), String>) {
    let mut tally = Tally::default();
    let result = drain(sink, spool, retry, &mut tally, None).await;
    (tally, result)
}

/// Whether `stop` has turned true (at once if it already is); never, without one.
async fn stopping(stop: Option<&mut StopSignal>) {
    match stop {
        Some(s) => {
            // An error means the sender is gone: nobody can ask to stop any more.
            if s.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// The stop signal of `rme push`'s couriers: turns true once, at a stop.
pub type StopSignal = tokio::sync::watch::Receiver<bool>;

/// Like [`deliver`], but a backoff wait ends early when `stop` turns true.
/// A request already sent is never cut: `sink.send` runs to its answer (or
/// the sink's own timeout), so that a body the receiver took is removed from
/// the spool and never sent again.
async fn drain<S: Sink>(
    sink: &mut S,
    spool: &Mutex<Spool>,
    retry: &RetryPolicy,
    tally: &mut Tally,
    mut stop: Option<&mut StopSignal>,
) -> Result<(), String> {
    let name = sink.name().to_string();
    loop {
        let record = match lock_spool(spool).oldest() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("{e:#}")),
        };
        let mut attempt = 0;
        loop {
            let sent = sink.send(&record.body).await;
            tally.health_failures += sink.take_health_failures();
            match sent {
                Ok(accepted) => {
                    crate::failpoint::hit("after-send");
                    tally.sent += 1;
                    tally.sent_samples += record.samples;
                    tally.rejected_points += accepted.rejected_points;
                    lock_spool(spool)
                        .remove(record.seq)
                        .map_err(|e| format!("{e:#}"))?;
                    break;
                }
                Err(SendError::Reject { reason }) => {
                    tracing::error!(sink = %name, samples = record.samples, "receiver refused a batch: {reason}; dropped");
                    tally.rejected += 1;
                    tally.rejected_samples += record.samples;
                    lock_spool(spool)
                        .remove(record.seq)
                        .map_err(|e| format!("{e:#}"))?;
                    break;
                }
                Err(SendError::Retry { reason, after }) => {
                    tally.retried += 1;
                    attempt += 1;
                    let asked_too_long = after.is_some_and(|a| a > retry.max_backoff);
                    if attempt >= retry.attempts || asked_too_long {
                        tracing::warn!(sink = %name, attempt, retry_after = ?after, "{reason}; kept in the spool");
                        return Err(reason);
                    }
                    let wait = after.unwrap_or_else(|| retry.backoff(attempt));
                    tracing::warn!(sink = %name, attempt, wait_ms = wait.as_millis() as u64, "{reason}; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping(stop.as_deref_mut()) => return Err(format!("{reason}; stopping")),
                    }
                }
            }
        }
    }
}

/// One sink's delivery task in `rme push`: its own copy of the sink (built
/// from the same config: its own connection), the sink's spool, and a wake-up
/// the flush rings after appending.
pub struct Courier<S = AnySink> {
    pub sink: S,
    pub spool: SharedSpool,
    pub wake: Arc<tokio::sync::Notify>,
    pub retry: RetryPolicy,
    pub shared: Arc<Mutex<Shared>>,
    pub metrics: SinkMetrics,
}

impl<S: Sink> Courier<S> {
    /// One delivery round, its tally recorded into the store. `stop` only
    /// ends a backoff wait early; a request on the wire runs to its answer.
    async fn round(
        &mut self,
        retry: &RetryPolicy,
        stop: Option<&mut StopSignal>,
    ) -> Result<(), String> {
        let mut tally = Tally::default();
        let result = drain(&mut self.sink, &self.spool, retry, &mut tally, stop).await;
        let store = &mut lock(&self.shared).store;
        record_delivery(&mut self.metrics, store, self.sink.name(), &tally);
        result
    }

    /// Delivers whenever woken, retrying with backoff between rounds, until
    /// `stop` turns true; then tries what is left once more (no backoff) and
    /// returns. A stop never cuts a request on the wire (that body could be
    /// stored by the receiver and then sent again by the last round): the
    /// round under way finishes its request, skips any backoff, and the last
    /// round follows. The caller bounds all of it with its stop timeout;
    /// dropping this future then keeps the body in the spool, and that body
    /// alone may reach the receiver twice.
    pub async fn run(mut self, mut stop: StopSignal) {
        let retry = self.retry.clone();
        let mut failures = 0u32;
        while !*stop.borrow() {
            let result = self.round(&retry, Some(&mut stop)).await;
            let pause = if result.is_err() {
                failures = failures.saturating_add(1);
                Some(retry.backoff(failures.saturating_add(2)))
            } else {
                failures = 0;
                None
            };
            tokio::select! {
                _ = async {
                    match pause {
                        // failed: wait before the next round, even if new data arrives
                        Some(p) => tokio::time::sleep(p).await,
                        None => self.wake.notified().await,
                    }
                } => {}
                _ = stopping(Some(&mut stop)) => break,
            }
        }
        let last = RetryPolicy {
            attempts: 1,
            ..retry
        };
        if let Err(reason) = self.round(&last, None).await {
            tracing::warn!(sink = %self.sink.name(), "stopping with data in the spool for the next run: {reason}");
        }
    }
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
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
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
        let spool = Mutex::new(spool);
        let (tally, result) = rt.block_on(deliver(&mut sink, &spool, &policy));
        let spool = spool.into_inner().unwrap();
        let mut store = Store::new(Limits::default());
        record_delivery(&mut SinkMetrics::default(), &mut store, "scripted", &tally);
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

    /// A sink whose receiver takes `delay` to answer, and stores each body
    /// before it answers (as VictoriaMetrics behind a slow link does).
    struct Slow {
        delay: Duration,
        stored: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Sink for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        fn encode(&mut self, _: &crate::store::Snapshot) -> anyhow::Result<Vec<Batch>> {
            Ok(Vec::new())
        }
        async fn send(&mut self, body: &[u8]) -> Result<Accepted, SendError> {
            self.stored.lock().unwrap().push(body.to_vec());
            tokio::time::sleep(self.delay).await;
            Ok(Accepted::default())
        }
    }

    /// A stop that comes while a request is on the wire lets it finish: the
    /// body is stored once and leaves the spool (it used to be cut and sent
    /// again by the last round).
    #[test]
    fn a_stop_during_a_request_lets_it_finish_and_never_sends_it_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(b"a", 1, 1).unwrap();
        let stored = Arc::new(Mutex::new(Vec::new()));
        let courier = Courier {
            sink: Slow {
                delay: Duration::from_millis(300),
                stored: stored.clone(),
            },
            spool: Arc::new(Mutex::new(spool)),
            wake: Arc::new(tokio::sync::Notify::new()),
            retry: RetryPolicy {
                attempts: 3,
                min_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(50),
            },
            shared: Arc::new(Mutex::new(Shared {
                store: Store::new(Limits::default()),
                positions: Default::default(),
            })),
            metrics: SinkMetrics::default(),
        };
        let spool = courier.spool.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let run = tokio::spawn(courier.run(rx));
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(true).unwrap();
            run.await.unwrap();
        });
        assert_eq!(*stored.lock().unwrap(), [b"a".to_vec()], "sent once");
        assert_eq!(lock_spool(&spool).len(), 0, "and removed from the spool");
    }

    /// A stop during a backoff wait ends the wait at once: one last try, no more.
    #[test]
    fn a_stop_during_a_backoff_wait_ends_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(b"a", 1, 1).unwrap();
        let mut sink = Scripted {
            answers: vec![retry(Some(5_000)), retry(None)],
            sent: Vec::new(),
        };
        let policy = RetryPolicy {
            attempts: 3,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_secs(60),
        };
        let spool = Mutex::new(spool);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let result = rt.block_on(async {
            let (tx, mut rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.send(true).unwrap();
                std::future::pending::<()>().await;
            });
            let mut tally = Tally::default();
            drain(&mut sink, &spool, &policy, &mut tally, Some(&mut rx)).await
        });
        assert!(result.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(sink.sent.len(), 1);
        assert_eq!(
            spool.into_inner().unwrap().len(),
            1,
            "kept for the next run"
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
