//! The protocols rme speaks: one module each.
//!
//! A sink only encodes a [`Snapshot`] into request bodies and sends one body
//! once, classifying the answer. Retry and backoff live in `agent/delivery.rs`,
//! the disk spool in `state_dir/spool.rs`, so "nothing is lost" is written once for every sink.

pub mod first_increment;
pub mod http;
pub mod otlp;
pub mod remote_write;
pub mod statsd;
pub mod stdout;

#[cfg(test)]
mod golden;

use std::time::Duration;

use serde::Deserialize;

use crate::invalid::Invalid;
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

/// What a receiver said when it took a body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Data points it refused inside the accepted request (OTLP partial
    /// success); counted, not retried.
    pub rejected_points: u64,
}

/// Delivers snapshots to one receiver: what a protocol must say, no more.
pub trait Sink {
    /// Name used for the spool directory, state and self-metric labels.
    fn name(&self) -> &str;
    /// Turns a snapshot into request bodies, each small enough to send alone,
    /// with the samples each one carries (exactly: for `rme_sink_samples_total`).
    /// Bodies are spooled as they are, so they must be self-contained.
    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>>;
    /// Sends one body once.
    fn send(&mut self, body: &[u8]) -> impl Future<Output = Result<Accepted, SendError>> + Send;
    /// Bookkeeping to keep across runs (statsd's last sent values); `None` when stateless.
    fn save_state(&self) -> Option<serde_json::Value> {
        None
    }
    fn restore_state(&mut self, _state: serde_json::Value) {}
    /// Applies the note of a body still in the spool, oldest first, after
    /// [`Sink::restore_state`]: a crash may have come before the state file
    /// caught up with what was spooled.
    fn replay_note(&mut self, _note: &[u8]) {}
    /// Sends held back since the last call because the receiver's own health
    /// check failed (statsd's management port did not answer `health: up`),
    /// for `rme_sink_health_failures_total`. 0 for sinks without one.
    fn take_health_failures(&mut self) -> u64 {
        0
    }
}

/// The closed set of sinks; `type` picks one (read by [`crate::invalid::tagged`],
/// so an error names the key inside the sink).
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "toml::Table")]
pub enum SinkConfig {
    Stdout(stdout::StdoutConfig),
    RemoteWrite(remote_write::RemoteWriteConfig),
    Otlp(otlp::OtlpConfig),
    Statsd(statsd::StatsdConfig),
}

impl TryFrom<toml::Table> for SinkConfig {
    type Error = String;

    fn try_from(table: toml::Table) -> Result<SinkConfig, String> {
        crate::invalid::tagged(
            table,
            &[
                ("stdout", |v| v.try_into().map(SinkConfig::Stdout)),
                ("remote_write", |v| {
                    v.try_into().map(SinkConfig::RemoteWrite)
                }),
                ("otlp", |v| v.try_into().map(SinkConfig::Otlp)),
                ("statsd", |v| v.try_into().map(SinkConfig::Statsd)),
            ],
        )
    }
}

impl SinkConfig {
    /// The name that keys this sink's spool and state; defaults to its type.
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::Stdout(c) => c.name.as_deref().unwrap_or("stdout"),
            SinkConfig::RemoteWrite(c) => c.name.as_deref().unwrap_or("remote_write"),
            SinkConfig::Otlp(c) => c.name.as_deref().unwrap_or("otlp"),
            SinkConfig::Statsd(c) => c.name.as_deref().unwrap_or("statsd"),
        }
    }

    /// Makes the sink's relative paths relative to the config file's directory.
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut std::path::PathBuf)) {
        match self {
            SinkConfig::RemoteWrite(c) => c.resolve_paths(fix),
            SinkConfig::Otlp(c) => c.resolve_paths(fix),
            SinkConfig::Stdout(_) | SinkConfig::Statsd(_) => {}
        }
    }

    /// Checks what serde cannot; `key` is where the sink sits, e.g. `sinks[0]`.
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        match self {
            SinkConfig::Stdout(_) => Ok(()),
            SinkConfig::RemoteWrite(c) => c.validate(key),
            SinkConfig::Otlp(c) => c.validate(key),
            SinkConfig::Statsd(c) => c.validate(key),
        }
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

    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        match self {
            AnySink::Stdout(s) => s.encode(snap),
            AnySink::RemoteWrite(s) => s.encode(snap),
            AnySink::Otlp(s) => s.encode(snap),
            AnySink::Statsd(s) => s.encode(snap),
        }
    }

    async fn send(&mut self, body: &[u8]) -> Result<Accepted, SendError> {
        match self {
            AnySink::Stdout(s) => s.send(body).await,
            AnySink::RemoteWrite(s) => s.send(body).await,
            AnySink::Otlp(s) => s.send(body).await,
            AnySink::Statsd(s) => s.send(body).await,
        }
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        match self {
            AnySink::Statsd(s) => s.save_state(),
            AnySink::RemoteWrite(s) => s.save_state(),
            AnySink::Otlp(s) => s.save_state(),
            AnySink::Stdout(_) => None,
        }
    }

    fn restore_state(&mut self, state: serde_json::Value) {
        match self {
            AnySink::Statsd(s) => s.restore_state(state),
            AnySink::RemoteWrite(s) => s.restore_state(state),
            AnySink::Otlp(s) => s.restore_state(state),
            AnySink::Stdout(_) => {}
        }
    }

    fn take_health_failures(&mut self) -> u64 {
        match self {
            AnySink::Statsd(s) => s.take_health_failures(),
            AnySink::Stdout(_) | AnySink::RemoteWrite(_) | AnySink::Otlp(_) => 0,
        }
    }

    fn replay_note(&mut self, note: &[u8]) {
        match self {
            AnySink::Statsd(s) => s.replay_note(note),
            AnySink::RemoteWrite(s) => s.replay_note(note),
            AnySink::Otlp(s) => s.replay_note(note),
            AnySink::Stdout(_) => {}
        }
    }
}
