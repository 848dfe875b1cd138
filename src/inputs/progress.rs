//! Progress of a long read (the first `push --once` over a big backlog), shown
//! on stderr only when it is a terminal and more than 64 MiB are left to read:
//! `rme: reading /var/log/x.log: 41% (512 MiB of 1.2 GiB)`, at most once a second.
//!
//! The tricky point is cost: it is fed every line, so it looks at the clock
//! only once per MiB read.

use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

/// Below this much left to read, a read is quick enough to need no progress.
const MIN_BACKLOG: u64 = 64 << 20;
const CLOCK_EVERY: u64 = 1 << 20;
const EVERY: Duration = Duration::from_secs(1);

/// The progress of reading one file.
pub struct Progress {
    path: String,
    done: u64,
    total: u64,
    next_check: u64,
    last: Instant,
    shown: bool,
}

impl Progress {
    /// Progress for reading `path` from `offset` to its current end; `None` when
    /// stderr is not a terminal or the backlog is small.
    pub fn start(path: &Path, offset: u64) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let total = std::fs::metadata(path).ok()?.len();
        if total.saturating_sub(offset) <= MIN_BACKLOG {
            return None;
        }
        Some(Progress {
            path: path.display().to_string(),
            done: offset,
            total,
            next_check: offset + CLOCK_EVERY,
            last: Instant::now(),
            shown: false,
        })
    }

    /// Counts `bytes` more read; redraws the line when a second has passed.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.done < self.next_check {
            return;
        }
        self.next_check = self.done + CLOCK_EVERY;
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            self.shown = true;
            let mut err = std::io::stderr().lock();
            // \r and erase-line: redraw in place.
            let _ = write!(err, "\r\x1b[K{}", line(&self.path, self.done, self.total));
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            eprintln!("\r\x1b[K{}", line(&self.path, self.total, self.total));
        }
    }
}

/// `rme: reading PATH: 41% (512 MiB of 1.2 GiB)`
fn line(path: &str, done: u64, total: u64) -> String {
    let done = done.min(total);
    let percent = (done as f64 * 100.0 / total.max(1) as f64).floor();
    format!(
        "rme: reading {path}: {percent}% ({} of {})",
        size(done),
        size(total)
    )
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 || unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reads_as_a_person_would_write_it() {
        let total = 1_288_490_189; // 1.2 GiB
        assert_eq!(
            line("/var/log/x.log", 512 << 20, total),
            "rme: reading /var/log/x.log: 41% (512 MiB of 1.2 GiB)"
        );
        assert_eq!(
            line("a.log", 2 * total, total),
            "rme: reading a.log: 100% (1.2 GiB of 1.2 GiB)"
        );
        assert_eq!(size(3 << 20), "3.0 MiB");
        assert_eq!(line("e", 0, 0), "rme: reading e: 0% (0 KiB of 0 KiB)");
    }

    #[test]
    fn no_progress_for_a_small_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.log");
        std::fs::write(&path, "one line\n").unwrap();
        // Small backlog or no terminal (as under cargo test): nothing to show.
        assert!(Progress::start(&path, 0).is_none());
    }
}
