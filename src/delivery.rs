//! Getting spooled bodies to one receiver: the retry loop, and, in `rme push`,
//! one task per sink ([`Courier`]) that runs it.
//!
//! The flush (push.rs) encodes a snapshot for every sink and appends the
//! bodies to each sink's spool; it never waits for a receiver. Each sink's
//! courier then sends its spool oldest first, on its own task with its own
//! copy of the sink (connection, client) and its own backoff, so a receiver
//! that hangs or is slow delays only its own sink: not another sink, not the
//! next flush's reading and spooling, not `/metrics`. A body leaves the spool
//! only after the receiver's 2xx (or a refusal for good), so stopping a
//! courier mid-request — at SIGTERM when the stop timeout runs out — loses
//! nothing: the body waits in the spool for the next run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::push::{Shared, lock};
use crate::sinks::{AnySink, SendError, Sink};
use crate::spool::Spool;
use crate::store::{Kind, Series, Store};

/// How hard one delivery tries a body before leaving it (and the rest) in the spool.
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

/// A sink's spool, shared by the flush (which appends) and its courier (which
/// sends and removes); each holds the lock only for one file operation.
pub type SharedSpool = Arc<Mutex<Spool>>;

pub fn lock_spool(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|e| e.into_inner())
}

/// Self-metrics of delivery.
pub const REQUESTS: &str = "rme_sink_requests_total";
pub const SAMPLES: &str = "rme_sink_samples_total";
const SPOOL_RECORDS: &str = "rme_spool_records";
const SPOOL_BYTES: &str = "rme_spool_bytes";
const SPOOL_AGE: &str = "rme_spool_oldest_age_seconds";
pub const SPOOL_DROPPED: &str = "rme_spool_dropped_total";
const POINTS_REJECTED: &str = "rme_sink_points_rejected_total";

pub fn describe_metrics(store: &mut Store) {
    store.describe(
        REQUESTS,
        Kind::Counter,
        "Requests to receivers, by sink and result (sent, retried, rejected).",
    );
    store.describe(
        SAMPLES,
        Kind::Counter,
        "Samples by sink and result (sent; rejected: refused by the receiver; dropped: spool full or record corrupt).",
    );
    store.describe(
        SPOOL_RECORDS,
        Kind::Gauge,
        "Request bodies waiting in the spool, by sink.",
    );
    store.describe(
        SPOOL_BYTES,
        Kind::Gauge,
        "Bytes waiting in the spool, by sink.",
    );
    store.describe(
        SPOOL_AGE,
        Kind::Gauge,
        "Age of the oldest body in the spool, by sink (0 when empty).",
    );
    store.describe(
        SPOOL_DROPPED,
        Kind::Counter,
        "Spooled bodies dropped, by sink and reason (overflow: spool full; corrupt: failed checksum).",
    );
    store.describe(
        POINTS_REJECTED,
        Kind::Counter,
        "Data points a receiver refused inside an accepted request (OTLP partial success), by sink.",
    );
}

/// The spool's gauges, and what it dropped since the last call, into the store.
pub fn record_spool(store: &mut Store, sink: &str, spool: &mut Spool, now: i64) {
    let l = [("sink", sink)];
    store.set(Series::new(SPOOL_RECORDS, &l), spool.len() as f64);
    store.set(Series::new(SPOOL_BYTES, &l), spool.bytes() as f64);
    let age = spool
        .oldest_created_ms()
        .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
    store.set(Series::new(SPOOL_AGE, &l), age);
    let dropped = std::mem::take(&mut spool.dropped);
    for (reason, n) in [("overflow", dropped.overflow), ("corrupt", dropped.corrupt)] {
        store.inc(
            Series::new(SPOOL_DROPPED, &[("sink", sink), ("reason", reason)]),
            n,
        );
    }
    store.inc(
        Series::new(SAMPLES, &[("sink", sink), ("result", "dropped")]),
        dropped.samples,
    );
    // Refusals exist from the first flush at 0, so that a receiver-side
    // `increase()` (examples/alerts.yml) sees the first one.
    store.inc(
        Series::new(SAMPLES, &[("sink", sink), ("result", "rejected")]),
        0,
    );
    store.inc(Series::new(POINTS_REJECTED, &[("sink", sink)]), 0);
}

/// Counts one request, and the samples it carried once they are settled (sent or rejected).
fn count_request(shared: &Mutex<Shared>, sink: &str, result: &str, samples: Option<u64>) {
    let mut g = lock(shared);
    g.store.inc(
        Series::new(REQUESTS, &[("sink", sink), ("result", result)]),
        1,
    );
    if let Some(n) = samples {
        g.store.inc(
            Series::new(SAMPLES, &[("sink", sink), ("result", result)]),
            n,
        );
    }
}

/// How a delivery ended, when it did not empty the spool.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Still spooled after the policy's attempts, with the last reason.
    pub kept: Option<String>,
    /// Bodies the receiver refused for good (4xx): dropped and counted.
    pub refused: u64,
}

/// Sends the spool oldest first until it is empty, or a body still fails after
/// the policy's attempts or the receiver asks to wait longer than `max_backoff`
/// (then the rest waits, in order). A body is removed only after the
/// receiver's 2xx (or a refusal), so a crash or a cancel in between sends it
/// again: at least once, and never skipped.
pub async fn deliver<S: Sink>(
    sink: &mut S,
    spool: &Mutex<Spool>,
    retry: &RetryPolicy,
    shared: &Mutex<Shared>,
) -> Outcome {
    let name = sink.name().to_string();
    let mut outcome = Outcome::default();
    loop {
        let record = match lock_spool(spool).oldest() {
            Ok(Some(r)) => r,
            Ok(None) => return outcome,
            Err(e) => {
                outcome.kept = Some(format!("{e:#}"));
                return outcome;
            }
        };
        let mut attempt = 0;
        loop {
            let settled = match sink.send(&record.body).await {
                Ok(()) => {
                    crate::failpoint::hit("after-send");
                    count_request(shared, &name, "sent", Some(record.samples));
                    let refused = sink.take_rejected_points();
                    if refused > 0 {
                        lock(shared)
                            .store
                            .inc(Series::new(POINTS_REJECTED, &[("sink", &name)]), refused);
                    }
                    true
                }
                Err(SendError::Reject { reason }) => {
                    tracing::error!(sink = %name, samples = record.samples, "receiver refused a batch: {reason}; dropped");
                    count_request(shared, &name, "rejected", Some(record.samples));
                    outcome.refused += 1;
                    true
                }
                Err(SendError::Retry { reason, after }) => {
                    count_request(shared, &name, "retried", None);
                    attempt += 1;
                    let asked_too_long = after.is_some_and(|a| a > retry.max_backoff);
                    if attempt >= retry.attempts || asked_too_long {
                        tracing::warn!(sink = %name, attempt, retry_after = ?after, "{reason}; kept in the spool");
                        outcome.kept = Some(reason);
                        return outcome;
                    }
                    let wait = after.unwrap_or_else(|| retry.backoff(attempt));
                    tracing::warn!(sink = %name, attempt, wait_ms = wait.as_millis() as u64, "{reason}; retrying");
                    tokio::time::sleep(wait).await;
                    false
                }
            };
            if settled {
                if let Err(e) = lock_spool(spool).remove(record.seq) {
                    outcome.kept = Some(format!("{e:#}"));
                    return outcome;
                }
                break;
            }
        }
    }
}

/// One sink's delivery task in `rme push`: its own copy of the sink (built
/// from the same config: its own connection), the sink's spool, and a wake-up
/// the flush rings after appending.
pub struct Courier {
    pub sink: AnySink,
    pub spool: SharedSpool,
    pub wake: Arc<tokio::sync::Notify>,
    pub retry: RetryPolicy,
    pub shared: Arc<Mutex<Shared>>,
}

impl Courier {
    /// Delivers whenever woken, retrying with backoff between rounds, until
    /// `stop` turns true; then tries what is left once more (no backoff) and
    /// returns. The caller bounds that last round with its stop timeout, and
    /// dropping this future mid-request keeps the body in the spool.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            let outcome = tokio::select! {
                o = deliver(&mut self.sink, &self.spool, &self.retry, &self.shared) => o,
                _ = stop.changed() => break,
            };
            let pause = if outcome.kept.is_some() {
                failures = failures.saturating_add(1);
                Some(self.retry.backoff(failures.saturating_add(2)))
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
                _ = stop.changed() => break,
            }
        }
        let last = RetryPolicy {
            attempts: 1,
            ..self.retry.clone()
        };
        let outcome = deliver(&mut self.sink, &self.spool, &last, &self.shared).await;
        if let Some(reason) = outcome.kept {
            tracing::warn!(sink = %self.sink.name(), "stopping with data in the spool for the next run: {reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::Limits;

    /// A sink that answers from a script and records what it was sent.
    struct Scripted {
        answers: Vec<Result<(), SendError>>,
        sent: Vec<Vec<u8>>,
    }

    impl Sink for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn encode(&mut self, _: &crate::store::Snapshot) -> anyhow::Result<Vec<Vec<u8>>> {
            Ok(Vec::new())
        }
        async fn send(&mut self, body: &[u8]) -> Result<(), SendError> {
            self.sent.push(body.to_vec());
            self.answers.remove(0)
        }
    }

    fn retry(after: Option<u64>) -> Result<(), SendError> {
        Err(SendError::Retry {
            reason: "HTTP 503".into(),
            after: after.map(Duration::from_millis),
        })
    }

    fn run(answers: Vec<Result<(), SendError>>) -> (Scripted, Spool, Store, Outcome) {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for (body, samples) in [(&b"a"[..], 3), (b"b", 4), (b"c", 5)] {
            spool.append(body, samples, 1).unwrap();
        }
        let shared = Mutex::new(Shared {
            store: Store::new(Limits::default()),
            positions: BTreeMap::new(),
        });
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
        let result = rt.block_on(deliver(&mut sink, &spool, &policy, &shared));
        let spool = spool.into_inner().unwrap();
        let store = shared.into_inner().unwrap().store;
        (sink, spool, store, result)
    }

    fn samples(store: &Store, result: &str) -> u64 {
        store.sum(SAMPLES, &[("result", result)])
    }

    #[test]
    fn oldest_first_reject_dropped_and_counted_retry_bounded() {
        let (sink, spool, store, result) = run(vec![
            Ok(()),
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
        assert!(result.kept.is_some());
        assert_eq!(result.refused, 1);
        assert_eq!(
            (samples(&store, "sent"), samples(&store, "rejected")),
            (3, 4)
        );
        assert_eq!(store.sum(REQUESTS, &[("result", "retried")]), 3);
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
        assert!(result.kept.is_some());
        assert_eq!(spool.len(), 3);
    }
}
