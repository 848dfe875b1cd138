//! rme: turns host-security events (reaction, fail2ban, Linux audit) into
//! metrics and pushes them (remote-write, OTLP, statsd), for hosts that cannot
//! be scraped.
//!
//! # Layout
//! Imports run downhill only, in these layers (top first):
//! - `main.rs`: the CLI; `agent/`: the engine: the flush cycle (`mod.rs`), the daemon loop
//!   (`daemon.rs`), each sink's courier task and retry loop (`delivery.rs`), following every
//!   input (`read.rs`), and `rme parse` (`parse.rs`);
//! - `serve.rs`: `GET /metrics` (with `web_config.rs`: TLS and basic auth from an
//!   exporter-toolkit web config);
//! - `config.rs`: the file as written and `Config::plan`, which builds it; `helper.rs`: the privileged server;
//!   `import/`: another tool's config written out as rme's (`rme import`);
//! - `sources/` (one folder per program: `mod.rs` config + build, `log.rs`, a probe, `tests.rs`)
//!   and `sinks/` (one module per protocol), each beside its closed `…Config` enum;
//! - `state_dir/`: what rme keeps on disk and its one owner, `StateDir` (the lock, the state
//!   file, the spools, safe file operations, the directory's layout);
//! - `store/` (the series arena in `mod.rs`, `series.rs`, `snapshot.rs`, `text.rs`: a snapshot as
//!   exposition text, `shared.rs`: the store and read positions behind one lock), `labels/`
//!   (the label rules in `rules.rs`, and the kinds: replace, lowercase, selectors, top-K, GeoIP, hash);
//! - the ground: `inputs/` (following files and journald, and where each input stands),
//!   `logging/` (log output, secrets out of messages, counting repeated warnings),
//!   `helper_proto.rs`, `invalid.rs`, `varint.rs`, `failpoint.rs` (crash points of debug builds).

pub mod agent;
pub mod config;
pub mod failpoint;
pub mod helper;
pub mod helper_proto;
pub mod import;
pub mod inputs;
pub mod invalid;
pub mod labels;
pub mod logging;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod state_dir;
pub mod store;
pub mod varint;
pub mod web_config;
