//! rme: turns host-security events (reaction, fail2ban, Linux audit) into
//! metrics and pushes them (remote-write, OTLP, statsd), for hosts that cannot
//! be scraped.
//!
//! # Layout
//! Imports run downhill only, in these layers (top first):
//! - `main.rs`, `serve.rs`: the CLI and `GET /metrics` (with `web_config.rs`: TLS and basic auth
//!   from an exporter-toolkit web config); `logging.rs`: log output;
//! - `agent/`: the engine: the flush cycle (`mod.rs`), the daemon loop (`daemon.rs`),
//!   each sink's courier task and retry loop (`delivery.rs`), following every input
//!   (`read.rs`), and `rme parse` (`parse.rs`);
//! - `config.rs`: the file as written and `Config::plan`, which builds it; `helper.rs`: the privileged server;
//!   `import/`: another tool's config written out as rme's (`rme import`);
//! - `sources/` (one folder per program: `mod.rs` config + build, `log.rs`, a probe, `tests.rs`)
//!   and `sinks/` (one module per protocol), each beside its closed `…Config` enum;
//!   `journal.rs`, `spool.rs`, `shared.rs` (the store lock);
//! - `state.rs`; then the ground: `store/` (the series arena in `mod.rs`, `series.rs`,
//!   `snapshot.rs`, and `text.rs`: a snapshot as exposition text), `labels/` (the label
//!   rules in `rules.rs`, and the kinds: replace, lowercase, selectors, top-K, GeoIP, hash), `tail.rs`, `helper_proto.rs`, `invalid.rs`, `progress.rs`,
//!   `safe_fs.rs` (writes in the state dir), `lock.rs` (one rme per state dir), `redact.rs`
//!   (secrets out of messages), `ratelimit.rs` (counting repeated warnings), `failpoint.rs`
//!   (crash points of debug builds).

pub mod agent;
pub mod config;
pub mod failpoint;
pub mod helper;
pub mod helper_proto;
pub mod import;
pub mod inputs;
pub mod invalid;
pub mod labels;
pub mod lock;
pub mod logging;
pub mod safe_fs;
pub mod serve;
pub mod shared;
pub mod sinks;
pub mod sources;
pub mod spool;
pub mod state;
pub mod store;
pub mod varint;
pub mod web_config;
