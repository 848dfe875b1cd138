//! The fail2ban log parser on arbitrary input, split into lines as the tailer does:
//! never panics, and whatever it stored renders as OpenMetrics text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rme::sources::LineParser;
use rme::sources::fail2ban::Fail2banLog;
use rme::store::{Limits, Store};

fuzz_target!(|data: &[u8]| {
    let mut parser = Fail2banLog::default();
    let mut store = Store::new(Limits::default());
    parser.describe(&mut store);
    for line in String::from_utf8_lossy(data).split('\n') {
        rme::sources::feed(&mut parser, line, &mut store);
    }
    parser.finish(&mut store);
    let snapshot = store.snapshot(1_700_000_000_000);
    let text = rme::text::render(&snapshot, rme::text::Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"));
});
