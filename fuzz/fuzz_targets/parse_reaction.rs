//! The reaction log parser on arbitrary input, split into lines as the tailer does:
//! never panics, and whatever it stored renders as OpenMetrics text.
//! The filters' pattern names come from examples/reaction.yml, with `ip` as a
//! pattern label, so the label-matching code is fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use rme::sources::reaction::{FilterPatterns, ReactionLog, load_patterns};

fuzz_target!(|data: &[u8]| {
    common::parse_and_render(
        &mut ReactionLog::new(patterns().clone(), vec!["ip".to_string()]),
        data,
    );
});

/// The example config's patterns, read once (no `reaction` binary: the file is parsed).
fn patterns() -> &'static FilterPatterns {
    static PATTERNS: std::sync::OnceLock<FilterPatterns> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/reaction.yml");
        load_patterns(
            std::path::Path::new(config),
            Some(std::path::Path::new("/nonexistent/reaction")),
        )
        .expect("examples/reaction.yml has patterns")
    })
}
