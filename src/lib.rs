//! rme: turns host-security events (reaction, fail2ban, Linux audit) into
//! metrics and pushes them (remote-write, OTLP, statsd), for hosts that cannot
//! be scraped.
//!
//! # Layout
//! - `config.rs`: the file as written; `sources/` and `sinks/`: one module per program and per protocol.
//! - `store.rs`: the one metric store between them; `text.rs`: its text exposition.
//! - `tail.rs`, `journal.rs`: follow logs; `push.rs`: the flush cycle, retry and spool use;
//!   `spool.rs`, `state.rs`: what survives a restart, written through `safe_fs.rs`, one rme per
//!   state dir (`lock.rs`); `serve.rs`: `GET /metrics`.

pub mod config;
pub mod helper;
pub mod journal;
pub mod lock;
pub mod progress;
pub mod push;
pub mod safe_fs;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod spool;
pub mod state;
pub mod store;
pub mod tail;
pub mod text;
