//! The protocols rme speaks: one module each.
//!
//! A sink only encodes a [`Snapshot`] into request bodies and sends one body
//! once, classifying the answer. Retry, backoff and the disk spool live in
//! `push.rs`, so "nothing is lost" is written once for every sink.

pub mod http;
pub mod otlp;
pub mod remote_write;
pub mod statsd;
pub mod stdout;

use std::time::Duration;

use crate::config::SinkConfig;
use crate::store::Snapshot;

/// Why one send did not succeed, and whether trying again can help.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SendError {
    /// Receiver down, slow, 5xx or 429: keep the body and try again later.
    #[error("{reason}; keeping the data to retry")]
    Retry {
        reason: String,
        /// The receiver's `Retry-After`, when it gave one.
        after: Option<Duration>,
    },
    /// The receiver refused this body for good (4xx): drop it and count it.
    #[error("{reason}; dropping it")]
    Reject { reason: String },
}

/// One request body and how many samples it carries (for `rme_sink_samples_total`).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub samples: u64,
    /// Bookkeeping that becomes true when the body is spooled, written into the
    /// same spool record (statsd: the values its deltas were taken to); empty
    /// for sinks that need none. See [`Sink::replay_note`].
    pub note: Vec<u8>,
}

/// Delivers snapshots to one receiver.
pub trait Sink {
    /// Name used for the spool directory, state and self-metric labels.
    fn name(&self) -> &str;
    /// Turns a snapshot into request bodies, each small enough to send alone.
    /// Bodies are spooled as they are, so they must be self-contained.
    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Vec<u8>>>;
    /// [`Sink::encode`] with the samples each body carries. The default spreads
    /// the snapshot's points evenly; sinks that know better override it.
    fn batches(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        let bodies = self.encode(snap)?;
        let n = bodies.len().max(1) as u64;
        let points = snap.points.len() as u64;
        Ok(bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Batch {
                body,
                samples: points / n + u64::from((i as u64) < points % n),
                note: Vec::new(),
            })
            .collect())
    }
    /// Sends one body once.
    fn send(&mut self, body: &[u8]) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Bookkeeping to keep across runs (statsd's last sent values); `None` when stateless.
    fn save_state(&self) -> Option<serde_json::Value> {
        None
    }
    fn restore_state(&mut self, _state: serde_json::Value) {}
    /// Applies the note of a body still in the spool, oldest first, after
    /// [`Sink::restore_state`]: a crash may have come before the state file
    /// caught up with what was spooled.
    fn replay_note(&mut self, _note: &[u8]) {}
    /// Data points the receiver refused inside requests it accepted (OTLP
    /// partial success), since the last call; counted, not retried.
    fn take_rejected_points(&mut self) -> u64 {
        0
    }
}

/// The closed set of sinks, dispatched by one `match`.
pub enum AnySink {
    Stdout(stdout::Stdout),
    RemoteWrite(remote_write::RemoteWrite),
    Otlp(otlp::Otlp),
    Statsd(statsd::Statsd),
}

impl AnySink {
    pub fn build(config: &SinkConfig) -> anyhow::Result<AnySink> {
        let name = config.name().to_string();
        Ok(match config {
            SinkConfig::Stdout(c) => AnySink::Stdout(stdout::Stdout::new(name, c)),
            SinkConfig::RemoteWrite(c) => {
                AnySink::RemoteWrite(remote_write::RemoteWrite::new(name, c)?)
            }
            SinkConfig::Otlp(c) => AnySink::Otlp(otlp::Otlp::new(name, c)?),
            SinkConfig::Statsd(c) => AnySink::Statsd(statsd::Statsd::new(name, c)?),
        })
    }
}

impl Sink for AnySink {
    fn name(&self) -> &str {
        match self {
            AnySink::Stdout(s) => s.name(),
            AnySink::RemoteWrite(s) => s.name(),
            AnySink::Otlp(s) => s.name(),
            AnySink::Statsd(s) => s.name(),
        }
    }

    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            AnySink::Stdout(s) => s.encode(snap),
            AnySink::RemoteWrite(s) => s.encode(snap),
            AnySink::Otlp(s) => s.encode(snap),
            AnySink::Statsd(s) => s.encode(snap),
        }
    }

    fn batches(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        match self {
            AnySink::Stdout(s) => s.batches(snap),
            AnySink::RemoteWrite(s) => s.batches(snap),
            AnySink::Otlp(s) => s.batches(snap),
            AnySink::Statsd(s) => s.batches(snap),
        }
    }

    async fn send(&mut self, body: &[u8]) -> Result<(), SendError> {
        match self {
            AnySink::Stdout(s) => s.send(body).await,
            AnySink::RemoteWrite(s) => s.send(body).await,
            AnySink::Otlp(s) => s.send(body).await,
            AnySink::Statsd(s) => s.send(body).await,
        }
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        match self {
            AnySink::Stdout(s) => s.save_state(),
            AnySink::RemoteWrite(s) => s.save_state(),
            AnySink::Otlp(s) => s.save_state(),
            AnySink::Statsd(s) => s.save_state(),
        }
    }

    fn restore_state(&mut self, state: serde_json::Value) {
        match self {
            AnySink::Stdout(s) => s.restore_state(state),
            AnySink::RemoteWrite(s) => s.restore_state(state),
            AnySink::Otlp(s) => s.restore_state(state),
            AnySink::Statsd(s) => s.restore_state(state),
        }
    }

    fn replay_note(&mut self, note: &[u8]) {
        match self {
            AnySink::Stdout(s) => s.replay_note(note),
            AnySink::RemoteWrite(s) => s.replay_note(note),
            AnySink::Otlp(s) => s.replay_note(note),
            AnySink::Statsd(s) => s.replay_note(note),
        }
    }

    fn take_rejected_points(&mut self) -> u64 {
        match self {
            AnySink::Stdout(s) => s.take_rejected_points(),
            AnySink::RemoteWrite(s) => s.take_rejected_points(),
            AnySink::Otlp(s) => s.take_rejected_points(),
            AnySink::Statsd(s) => s.take_rejected_points(),
        }
    }
}
