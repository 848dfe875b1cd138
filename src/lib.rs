//! rme: turns host-security events (reaction, fail2ban, Linux audit) into
//! metrics and pushes them (remote-write, OTLP, statsd), for hosts that cannot
//! be scraped.
//!
//! # Layout
//! Imports run downhill only, in these layers (top first):
//! - `main.rs`, `serve.rs`: the CLI and `GET /metrics` (with `web_config.rs`: TLS and basic auth
//!   from an exporter-toolkit web config); `logging.rs`: log output;
//! - `push.rs`: the flush cycle; `delivery.rs`: each sink's courier task and retry loop;
//!   `read.rs`: following every input;
//! - `config.rs`: the file as written and `Config::plan`, which builds it; `helper.rs`: the privileged server;
//!   `import/`: another tool's config written out as rme's (`rme import`);
//! - `sources/` (one folder per program: `mod.rs` config + build, `log.rs`, a probe, `tests.rs`)
//!   and `sinks/` (one module per protocol), each beside its closed `…Config` enum;
//!   `journal.rs`, `spool.rs`, `shared.rs` (the store lock);
//! - `state.rs`, `text.rs`; then the ground: `store.rs`, `labels/` (label rule kinds: replace,
//!   lowercase, selectors, top-K, GeoIP, hash), `tail.rs`, `helper_proto.rs`, `invalid.rs`, `progress.rs`,
//!   `safe_fs.rs` (writes in the state dir), `lock.rs` (one rme per state dir), `redact.rs`
//!   (secrets out of messages), `ratelimit.rs` (counting repeated warnings), `failpoint.rs`
//!   (crash points of debug builds).

pub mod config;
pub mod delivery;
pub mod failpoint;
pub mod helper;
pub mod helper_proto;
pub mod import;
pub mod inputs;
pub mod invalid;
pub mod labels;
pub mod lock;
pub mod logging;
pub mod push;
pub mod read;
pub mod safe_fs;
pub mod serve;
pub mod shared;
pub mod sinks;
pub mod sources;
pub mod spool;
pub mod state;
pub mod store;
pub mod text;
pub mod varint;
pub mod web_config;
