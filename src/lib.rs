//! rme: turns host-security events (reaction, fail2ban, Linux audit) into
//! metrics and pushes them (remote-write, OTLP, statsd), for hosts that cannot
//! be scraped.
//!
//! # Layout
//! Imports run downhill only: a module uses nothing from its own layer or
//! any layer above it. The unit test `layers::imports_run_downhill` reads every
//! `crate::` path in `src/` (tests aside) and checks it against this list, so
//! a new module must be placed here before it builds green. Top first:
//!
//! 1. `main.rs`: the CLI, a dispatcher.
//! 2. `agent/`: the engine `rme push` and `rme serve` run: the flush cycle
//!    (`mod.rs`: snapshot → encode → spool (fsync) → state file → wake the
//!    couriers), the daemon loop (`daemon.rs`), each sink's courier sending its
//!    spool oldest first with retry and backoff (`delivery.rs`), every source's
//!    input read into the store in short batches, positions moved under the
//!    same lock (`read.rs`), and `rme parse` (`parse.rs`).
//! 3. `serve.rs`, `helper.rs`, `import/`: `GET /metrics` (Prometheus text or
//!    OpenMetrics, connection limits); `rme helper`, the only privileged part,
//!    answering fixed requests on a unix socket; `rme import`, another tool's
//!    config written out as rme's.
//! 4. `config.rs`: the TOML file as written (unknown keys rejected) and
//!    `Config::plan`, which checks it by building every source and sink
//!    (shared by `rme push` and `rme check-config`).
//! 5. `sinks/`: one module per protocol (stdout, remote_write, otlp, statsd)
//!    beside the closed `SinkConfig`.
//! 6. `sources/`, `state_dir/`: one folder per program read (fail2ban/,
//!    reaction/, audit/: `mod.rs` config + build, `log.rs` the line parser with
//!    no I/O, a live probe, `tests.rs`) beside the closed `SourceConfig`;
//!    everything rme keeps on disk, with its one owner `StateDir` and its layout
//!    spelled once (`mod.rs`): one rme per state dir (`lock.rs`, flock), the state
//!    file (`state.rs`: read positions and counter values as a checkpoint plus an
//!    append-only journal of what changed), the on-disk queue (`spool.rs`, one
//!    checksummed file per request body), writes in the state dir (`safe_fs.rs`:
//!    O_EXCL|O_NOFOLLOW, 0600/0700).
//! 7. `store/`: the one metric store (the series arena in `mod.rs`, `series.rs`,
//!    `snapshot.rs`, `text.rs`: a snapshot as exposition text, and `shared.rs`:
//!    the store and the read positions behind one lock).
//! 8. `inputs/`, `labels/`: following inputs (`tail/`: a file across rotation
//!    by rename and copytruncate, `journal.rs`: journald through `journalctl`,
//!    `progress.rs`) and where each stands (`SourceState`); the label rules
//!    (`rules.rs`) and their kinds (replace, lowercase, selectors, top-K, GeoIP, hash).
//! 9. `web_config.rs`, `helper_proto.rs`, `logging/`, `varint.rs`, `failpoint.rs`:
//!    the exporter-toolkit web config (TLS, client certificates, bcrypt basic
//!    auth); what `rme helper` and its clients say; log output (`redact.rs`:
//!    secrets out of messages, `ratelimit.rs`: repeated warnings counted); LEB128
//!    varints (state file, remote-write); crash points of debug builds.
//! 10. `invalid.rs`: the "key: reason" error of a config value.

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

#[cfg(test)]
mod layers;
