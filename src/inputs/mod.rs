//! Following inputs: log files across rotation ([`tail`]), journald through
//! `journalctl` ([`journal`]), and the progress line of a long first read
//! ([`progress`]). Nothing here knows a parser: each input hands out lines
//! (or journal entries) to a callback, and `agent/read.rs` feeds them to a source.

pub mod journal;
pub mod progress;
pub mod tail;
