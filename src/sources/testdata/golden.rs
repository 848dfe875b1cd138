//! Golden-file helpers shared by the parser tests: feed a file's lines, render
//! the store as sorted `series value` lines, compare with (or with
//! `UPDATE_GOLDEN=1`, rewrite) a file under `src/sources/testdata/`.

use std::path::{Path, PathBuf};

use crate::sources::{LineParser, feed};
use crate::store::{Limits, Store};

/// Feeds every line of `text` (skipping `#` comment lines when `skip_comments`).
pub fn feed_all(parser: &mut dyn LineParser, text: &str, skip_comments: bool) -> Store {
    let mut store = Store::new(Limits::default());
    for line in text.lines() {
        if skip_comments && line.starts_with('#') {
            continue;
        }
        feed(parser, line, &mut store);
    }
    store
}

/// One `name{k="v",…} value` line per counter of the parser's metrics and the
/// unparsed self-metric, sorted.
pub fn render(store: &mut Store, prefix: &str) -> String {
    let snap = store.snapshot(0);
    let mut out = String::new();
    for p in snap.points {
        let name = p.series.name();
        if !name.starts_with(prefix) && name != crate::sources::LINES_UNPARSED.name {
            continue;
        }
        out.push_str(&format!("{} {}\n", p.series, p.value.as_f64()));
    }
    out
}

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/sources/testdata")
        .join(rel)
}

/// Compares `actual` with the golden file, or rewrites it when UPDATE_GOLDEN is set.
pub fn check(golden: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            golden.display()
        )
    });
    assert_eq!(expected, actual, "golden file {} differs", golden.display());
}

/// The shared sample logs: `RME_SAMPLES`, else `../shared/samples` next to the
/// repository (or next to its worktree folder).
pub fn samples() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("RME_SAMPLES").map(PathBuf::from),
        Some(root.join("../shared/samples")),
        Some(root.join("../../shared/samples")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_dir())
        .expect("sample logs not found (set RME_SAMPLES to shared/samples)")
}

/// Up to `max - 1` of `pieces`, picked at random and joined: the inputs of the
/// differential tests that hold a fast scan to the plain one it replaced.
pub fn pieces_joined(rng: &mut fastrand::Rng, pieces: &[&str], max: usize) -> String {
    (0..rng.usize(0..max))
        .map(|_| pieces[rng.usize(..pieces.len())])
        .collect()
}
