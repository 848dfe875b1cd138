//! The fail2ban log parser on arbitrary input, split into lines as the tailer does:
//! never panics, and whatever it stored renders as OpenMetrics text.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use rme::sources::fail2ban::Fail2banLog;

fuzz_target!(|data: &[u8]| {
    common::parse_and_render(&mut Fail2banLog::default(), data);
});
