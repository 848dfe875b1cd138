//! The audit log parser on arbitrary input, split into lines as the tailer does:
//! never panics, and whatever it stored renders as OpenMetrics text.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use rme::sources::audit::AuditLog;

fuzz_target!(|data: &[u8]| {
    common::parse_and_render(&mut AuditLog::default(), data);
});
