//! rme: turns host-security events (reaction, fail2ban, Linux audit) into
//! metrics and pushes them (remote-write, OTLP, statsd), for hosts that cannot
//! be scraped.
//!
//! # Layout
//! - `config.rs`: the file as written; `sources/` and `sinks/`: one module per program and per protocol.
//! - `store.rs`: the one metric store between them; `text.rs`: its text exposition.
//! - `tail.rs`, `journal.rs`: follow logs; `push.rs`: the flush cycle;
//!   `delivery.rs`: each sink's courier task and retry loop;
//!   `spool.rs`, `state.rs`: what survives a restart; `serve.rs`: `GET /metrics`,
//!   with `web_config.rs`: TLS and basic auth from an exporter-toolkit web config.
//! - `logging.rs`: log output, with `redact.rs` (secrets out of messages) and
//!   `ratelimit.rs` (repeated warnings counted, not written); leaves, imported by all.

pub mod config;
pub mod delivery;
pub mod failpoint;
pub mod helper;
pub mod journal;
pub mod logging;
pub mod progress;
pub mod push;
pub mod ratelimit;
pub mod redact;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod spool;
pub mod state;
pub mod store;
pub mod tail;
pub mod text;
pub mod web_config;
