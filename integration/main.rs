//! Integration tests: one binary (ripgrep's `tests/tests.rs` shape). They run
//! the real `rme` binary and talk to real peers (VictoriaMetrics, Prometheus,
//! rotel, statsd + carbon, fail2ban) that `integration/peers/peers.sh` starts
//! on 127.0.0.1.

mod common;

mod alerts;
mod attackers;
mod audit;
mod cli;
mod fail2ban_live;
mod first_increment;
mod fleet;
mod hosts;
mod import;
mod journal;
mod logging;
mod newer_receivers;
mod otlp;
mod packaging;
mod remote_write;
mod rotation;
mod serve_attacks;
mod serve_tls;
mod soak;
mod state_dir;
mod statsd;
mod stop;
