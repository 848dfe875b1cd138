//! Following inputs: each source's log file (through `inputs/tail`) or journal
//! entries (through `inputs/journal.rs`), fed line by line (entry by entry) to its
//! parser under the shared lock, with the read position moved in the same lock.
//! A file is read in batches of about 1 MiB: each batch's read() runs without
//! the lock, which is held only while its lines are fed, so `/metrics` and the
//! flushes wait a millisecond, not the length of a multi-gigabyte first read.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;

use crate::inputs::SourceState;
use crate::inputs::journal::{self, JournalInput};
use crate::inputs::tail::{BATCH, Tailer};
use crate::sources::{Input, LineParser, feed_as, feed_entry_as};
use crate::store::now_ms;
use crate::store::shared::{Shared, SharedRef, lock, lock_at};

/// One source's log input with its parser.
pub struct Reader {
    pub name: String,
    follow: Follow,
    parser: Box<dyn LineParser>,
}

enum Follow {
    File(Tailer),
    Journal(JournalInput),
}

impl Reader {
    pub fn new(
        name: String,
        input: Input,
        parser: Box<dyn LineParser>,
        saved: Option<&SourceState>,
        rotate_wait: Duration,
    ) -> Reader {
        let follow = match input {
            Input::File(path) => Follow::File(
                Tailer::new(path, saved.and_then(|s| s.file))
                    .with_rotated(saved.map(|s| s.rotated.clone()).unwrap_or_default())
                    .with_rotate_wait(rotate_wait),
            ),
            Input::Journal(j) => Follow::Journal(j),
        };
        Reader {
            name,
            follow,
            parser,
        }
    }

    /// Refuses an input this run cannot read: anything but a regular file, and
    /// a FIFO in `--once` (a stream has no end to read to).
    pub fn check(&self, once: bool) -> anyhow::Result<()> {
        match &self.follow {
            Follow::File(t) => crate::inputs::tail::check_input(t.path(), once)
                .with_context(|| format!("source {}", self.name)),
            Follow::Journal(_) => Ok(()),
        }
    }

    pub fn is_journal(&self) -> bool {
        matches!(self.follow, Follow::Journal(_))
    }

    /// Reads everything new into the store. For a journal input this runs
    /// `journalctl` to the end (once mode); following it is [`follow_journal`]'s job.
    pub fn read_new(&mut self, shared: &Mutex<Shared>) -> anyhow::Result<u64> {
        match &mut self.follow {
            Follow::File(tailer) => {
                let parser = &mut *self.parser;
                let name = &self.name;
                let offset = tailer.pos().map_or(0, |p| p.offset);
                let mut progress = crate::inputs::progress::Progress::start(tailer.path(), offset);
                let mut lines = 0;
                loop {
                    // The read() of each batch runs without the lock; the lock is
                    // taken at the batch's first line and keeps the positions
                    // with the counts they gave.
                    let mut guard: Option<MutexGuard<'_, Shared>> = None;
                    let result = tailer.read_some(BATCH, &mut |line| {
                        let g = guard.get_or_insert_with(|| lock_at(shared, now_ms()));
                        feed_as(name, parser, line, &mut g.store);
                        if let Some(p) = progress.as_mut() {
                            p.advance(line.len() as u64 + 1);
                        }
                    });
                    let mut g = guard.unwrap_or_else(|| lock(shared));
                    let at = g.positions.entry(self.name.clone()).or_default();
                    at.file = tailer.pos();
                    at.rotated = tailer.rotated_pos();
                    drop(g);
                    let stats = result.with_context(|| {
                        format!("source {}: reading {}", self.name, tailer.path().display())
                    })?;
                    lines += stats.lines;
                    if !stats.more {
                        return Ok(lines);
                    }
                }
            }
            Follow::Journal(input) => {
                journal_batch(&self.name, input, &mut *self.parser, shared, false)
            }
        }
    }
}

/// Runs `journalctl` after the saved cursor and feeds each entry to `parser`,
/// moving the cursor with it under the same lock. `follow` keeps it running.
fn journal_batch(
    name: &str,
    input: &JournalInput,
    parser: &mut dyn LineParser,
    shared: &Mutex<Shared>,
    follow: bool,
) -> anyhow::Result<u64> {
    let cursor = lock(shared)
        .positions
        .get(name)
        .and_then(|s| s.cursor.clone());
    let mut n = 0;
    journal::read(input, cursor.as_deref(), follow, &mut |e| {
        let mut g = lock_at(shared, now_ms());
        let Shared { store, positions } = &mut *g;
        feed_entry_as(name, parser, &e, store);
        positions.entry(name.to_string()).or_default().cursor = Some(e.cursor);
        n += 1;
    })?;
    Ok(n)
}

/// Reads every reader to its end; errors are logged per source, returned, and
/// retried next time.
pub fn read_all(readers: &Mutex<Vec<Reader>>, shared: &Mutex<Shared>) -> Vec<(String, String)> {
    read_each(readers.lock().unwrap_or_else(|e| e.into_inner()), shared)
}

/// [`read_all`], unless another thread is reading already (the watcher's read
/// of a large backlog): that read goes on to the end, and what it has fed so
/// far is in the store, so a flush need not wait for it.
pub fn read_all_unless_busy(readers: &Mutex<Vec<Reader>>, shared: &Mutex<Shared>) {
    match readers.try_lock() {
        Ok(r) => drop(read_each(r, shared)),
        Err(std::sync::TryLockError::Poisoned(e)) => drop(read_each(e.into_inner(), shared)),
        Err(std::sync::TryLockError::WouldBlock) => {
            tracing::debug!("a read is under way; this flush takes what it has read so far");
        }
    }
}

fn read_each(
    mut readers: MutexGuard<'_, Vec<Reader>>,
    shared: &Mutex<Shared>,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for r in readers.iter_mut() {
        if let Err(e) = r.read_new(shared) {
            tracing::warn!(source = %r.name, "{e:#}");
            failed.push((r.name.clone(), format!("{e:#}")));
        }
    }
    failed
}

/// Follows a journal input forever on this (blocking) thread, restarting `journalctl` if it exits.
pub fn follow_journal(mut reader: Reader, shared: SharedRef) {
    let Follow::Journal(input) = &reader.follow else {
        return;
    };
    let input = &input.clone();
    loop {
        let result = journal_batch(&reader.name, input, &mut *reader.parser, &shared, true);
        if let Err(e) = result {
            tracing::warn!(source = %reader.name, "journal: {e:#}; retrying in 10 s");
        }
        std::thread::sleep(Duration::from_secs(10));
    }
}

/// Watches the directories of the file inputs; a change to a followed file (or
/// a file named after one: `fail2ban.log.1` of a rotation) reads the files
/// again (no polling while idle). Other files there are ignored, so rme's own
/// stderr written into that directory cannot trigger reads. The watcher lives
/// as long as the result.
pub fn watch_files(
    readers: &Arc<Mutex<Vec<Reader>>>,
    shared: &SharedRef,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let paths: Vec<PathBuf> = readers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|r| match &r.follow {
            Follow::File(t) => Some(t.path().to_path_buf()),
            Follow::Journal(_) => None,
        })
        .collect();
    let names: Vec<std::ffi::OsString> = paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // rme's own reads (of rotated files, of first lines) must not trigger reads,
        // nor changes to other files in the directory (rme's own stderr there)
        let wanted = |e: &notify::Event| {
            !matches!(e.kind, notify::EventKind::Access(_))
                && (e.paths.is_empty() || e.paths.iter().any(|p| concerns(p, &names)))
        };
        if ev.is_ok_and(|e| wanted(&e)) {
            let _ = tx.send(());
        }
    })
    .context("starting the file watcher")?;
    let dirs: std::collections::BTreeSet<PathBuf> = paths
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch: {e}; its files are read at each flush only");
        }
    }
    let readers = readers.clone();
    let shared = shared.clone();
    std::thread::spawn(move || {
        while rx.recv().is_ok() {
            while rx.try_recv().is_ok() {}
            read_all(&readers, &shared);
        }
    });
    Ok(watcher)
}

/// Whether a change to `path` may concern a followed file: its name starts
/// with a followed file's name (the file itself, or a rotated copy of it).
fn concerns(path: &std::path::Path, names: &[std::ffi::OsString]) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    path.file_name().is_some_and(|n| {
        names
            .iter()
            .any(|name| n.as_bytes().starts_with(name.as_bytes()))
    })
}
