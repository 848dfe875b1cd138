//! What every parser target does: feed arbitrary input as the tailer would
//! (split into lines), then check that whatever was stored renders as OpenMetrics.

use rme::sources::LineParser;
use rme::store::{Limits, Store};

/// Never panics for any `data`; the rendered text is a complete exposition.
pub fn parse_and_render(parser: &mut dyn LineParser, data: &[u8]) {
    let mut store = Store::new(Limits::default());
    parser.describe(&mut store);
    for line in String::from_utf8_lossy(data).split('\n') {
        rme::sources::feed(parser, line, &mut store);
    }
    parser.finish(&mut store);
    let snapshot = store.snapshot(1_700_000_000_000);
    let text = rme::store::text::render(&snapshot, rme::store::text::Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"));
}
