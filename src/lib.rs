//! rme: turns host-security events (reaction, fail2ban, Linux audit) into
//! metrics and pushes them (remote-write, OTLP, statsd), for hosts that cannot
//! be scraped.
//!
//! # Layout
//! - `config.rs`: the file as written; `sources/` and `sinks/`: one module per program and per protocol.
//! - `store.rs`: the one metric store between them; `text.rs`: its text exposition.
//! - `tail.rs`, `journal.rs`: follow logs; `push.rs`: the flush cycle, retry and spool use;
//!   `spool.rs`, `state.rs`: what survives a restart; `serve.rs`: `GET /metrics`.
//! - `labels/`: label rules (replace, lowercase, selectors); `import/`: other tools' configs turned into rme's.

pub mod config;
pub mod helper;
pub mod import;
pub mod journal;
pub mod labels;
pub mod progress;
pub mod push;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod spool;
pub mod state;
pub mod store;
pub mod tail;
pub mod text;
