//! Follows one log file: complete lines only, across rotation by rename and by
//! copytruncate, and across runs through a saved [`FilePos`].
//!
//! The tricky point is rotation between two `push --once` runs: the lines the
//! last run did not see are at the end of the *renamed* file. The saved device
//! and inode find it again in the same directory (`fail2ban.log.1` with
//! logrotate's delaycompress, `audit.log.1` with auditd's own rotation).
//!
//! This file is the [`Tailer`] state machine; finding the rotated files is in
//! `rotated.rs`, cutting bytes into lines in `lines.rs`.

mod lines;
mod rotated;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use lines::{CHUNK, Drained, drain, flush_partial, head_of, head_of_open, read_gz};
use rotated::siblings;

/// Where a followed file stands: which file (device + inode) and how far it was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePos {
    pub dev: u64,
    pub ino: u64,
    /// Byte offset just past the last complete line handed out.
    pub offset: u64,
    /// Hash of the file's first line (0 until it has one): tells a reused inode
    /// from the file we read, as fail2ban's `firstlinemd5` does.
    #[serde(default)]
    pub head: u64,
    /// The file's mtime (ns since the epoch) when it was last read: files
    /// rotated in after it are newer (0 when not known).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtime_ns: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// What [`Tailer::read_some`] is best given per call: one read buffer's worth,
/// so a caller holding a lock per call holds it for about a millisecond.
pub const BATCH: u64 = CHUNK as u64;

/// What one [`Tailer::read_some`] (or [`Tailer::read_new`]) call did, for logs and self-metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub lines: u64,
    pub bytes: u64,
    /// The file was replaced since the last read (rename rotation).
    pub rotated: bool,
    /// The file shrank under us (copytruncate); reading restarted at 0.
    pub truncated: bool,
    /// The old file of a rotation between runs could not be found; its tail is lost.
    pub lost_rotated: bool,
    /// The byte budget ran out (or a rotation was just seen): call again for the rest.
    pub more: bool,
}

impl ReadStats {
    fn add(&mut self, other: ReadStats) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.rotated |= other.rotated;
        self.truncated |= other.truncated;
        self.lost_rotated |= other.lost_rotated;
        self.more = other.more;
    }
}

/// A rotated file is read until it has not grown for this long (by its mtime):
/// long enough for a writer to reopen late (fail2ban's postrotate `flushlogs`).
/// The default of a source's `rotate_wait_secs`.
pub const DEFAULT_ROTATE_WAIT: Duration = Duration::from_secs(30);
/// At most this many rotated files are kept open; past it the oldest is read a
/// last time and let go.
const MAX_ROTATED: usize = 8;

/// One open file and how far it was handed out.
struct Open {
    file: File,
    pos: FilePos,
    /// Bytes read past `pos.offset` that do not end in a newline yet.
    partial: Vec<u8>,
    /// A FIFO: read as a stream (no offset, no seek, never rotated).
    stream: bool,
    /// The copy a copytruncate left: nobody writes it, so it is let go once read to its end.
    copy: bool,
}

/// Follows one path.
pub struct Tailer {
    path: PathBuf,
    pos: Option<FilePos>,
    /// The open file `pos` refers to.
    file: Option<Open>,
    /// Files the path named before, still read while their writer may not have
    /// reopened yet (logrotate `create`), and copies a copytruncate left; oldest first.
    rotated: Vec<Open>,
    /// Positions in rotated files saved by the last run, opened on the first read.
    saved_rotated: Vec<FilePos>,
    missing_warned: bool,
    /// The saved file of the last run when it was not found again, for
    /// [`Tailer::take_between`].
    lost: Option<FilePos>,
    /// How long a rotated file must be quiet before it is let go.
    rotate_wait: Duration,
    /// The read buffer, kept from call to call (lines are handed out straight from it).
    buf: Vec<u8>,
}

impl Tailer {
    /// Follows `path`, from `saved` when the state file had a position, else from the start.
    pub fn new(path: PathBuf, saved: Option<FilePos>) -> Tailer {
        Tailer {
            path,
            pos: saved,
            file: None,
            rotated: Vec::new(),
            saved_rotated: Vec::new(),
            missing_warned: false,
            lost: None,
            rotate_wait: DEFAULT_ROTATE_WAIT,
            buf: Vec::new(),
        }
    }

    /// Also goes on reading these rotated files (as [`Tailer::rotated_pos`] saved them).
    pub fn with_rotated(mut self, rotated: Vec<FilePos>) -> Tailer {
        self.saved_rotated = rotated;
        self
    }

    /// Lets a rotated file go once it has been quiet this long (default [`DEFAULT_ROTATE_WAIT`]).
    pub fn with_rotate_wait(mut self, wait: Duration) -> Tailer {
        self.rotate_wait = wait;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Position to save: just past the last line handed out.
    pub fn pos(&self) -> Option<FilePos> {
        self.pos
    }

    /// Positions in the rotated files still being read, to save beside [`Tailer::pos`].
    pub fn rotated_pos(&self) -> Vec<FilePos> {
        if self.rotated.is_empty() {
            return self.saved_rotated.clone();
        }
        self.rotated.iter().map(|o| o.pos).collect()
    }

    /// Hands every complete line written since the last call to `on_line`, all
    /// at once: [`Tailer::read_some`] until it has no more.
    pub fn read_new(&mut self, on_line: &mut dyn FnMut(&str)) -> io::Result<ReadStats> {
        let mut total = ReadStats::default();
        loop {
            let stats = self.read_some(u64::MAX, on_line)?;
            let more = stats.more;
            total.add(stats);
            if !more {
                return Ok(total);
            }
        }
    }

    /// Hands complete lines written since the last call to `on_line`, reading
    /// about `budget` bytes at most: first what rotated files still get, then
    /// the file the path names. When the budget runs out first, `more` is set and
    /// [`Tailer::pos`] and [`Tailer::rotated_pos`] stand just past the last line
    /// handed out, so the caller can save them between two calls. Whether the
    /// path names another file now (rotation) is looked at only once the file
    /// is read to its end. A missing file is not an error: it is warned about
    /// once and tried again next time.
    pub fn read_some(
        &mut self,
        budget: u64,
        on_line: &mut dyn FnMut(&str),
    ) -> io::Result<ReadStats> {
        let mut stats = ReadStats::default();
        let mut budget = budget.max(1);
        if self.file.is_none() {
            self.reopen_saved(on_line, &mut stats)?;
        }
        if !self.read_rotated(&mut budget, on_line, &mut stats)? {
            stats.more = true;
            return Ok(stats);
        }
        if let Some(open) = self.file.as_mut() {
            let drained = drain(
                open,
                &self.path,
                &mut self.buf,
                &mut budget,
                on_line,
                &mut stats,
            )?;
            match drained {
                Drained::End => self.pos = Some(open.pos),
                Drained::More => {
                    self.pos = Some(open.pos);
                    stats.more = true;
                    return Ok(stats);
                }
                Drained::Truncated => {
                    self.after_truncation(on_line, &mut stats)?;
                    stats.more = true;
                    return Ok(stats);
                }
            }
        }
        self.follow_path(on_line, &mut stats)?;
        Ok(stats)
    }

    /// The open file shrank or its first line changed: a copytruncate, or a new
    /// file on the inode of the one read last time (renamed and compressed
    /// since, maybe twice). Its unread rest is taken from the copy and from
    /// files rotated in between; the file itself is then read again from 0.
    fn after_truncation(
        &mut self,
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) -> io::Result<()> {
        let Some(open) = self.file.as_ref() else {
            return Ok(());
        };
        let (since, head) = (open.pos.mtime_ns, open.pos.head);
        let now = (open.pos.dev, open.pos.ino, head_of_open(&open.file));
        self.take_copy(on_line, stats)?;
        self.take_between(since, head, now, on_line, stats);
        self.pos = self.file.as_ref().map(|o| o.pos);
        Ok(())
    }

    /// Once the open file is read to its end: has the path moved on to another
    /// file (rotation) or appeared at last? A new file is opened, to be read
    /// by the next call (`more`), and the old one is kept to be read until quiet.
    fn follow_path(
        &mut self,
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) -> io::Result<()> {
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.missing_warned {
                    tracing::warn!(path = %self.path.display(), "log file does not exist (yet); will retry");
                    self.missing_warned = true;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.missing_warned = false;
        let same = self
            .pos
            .is_some_and(|p| p.dev == current.dev() && p.ino == current.ino());
        if same {
            return Ok(());
        }
        if self.pos.is_some_and(|p| p.ino != 0) {
            stats.rotated = true;
        }
        let mut open = open_log(&self.path)?;
        // The old file's writer may not have reopened yet: keep reading it.
        if let Some(old) = self.file.take()
            && !old.stream
        {
            tracing::debug!(path = %self.path.display(), ino = old.pos.ino, new_ino = current.ino(), "rotated: the old file is read until quiet");
            let (since, head) = (old.pos.mtime_ns, old.pos.head);
            self.rotated.push(old);
            let now = (current.dev(), current.ino(), head_of_open(&open.file));
            self.take_between(since, head, now, on_line, stats);
            self.limit_rotated(on_line, stats);
        } else if let Some(lost) = self.lost.take() {
            let now = (current.dev(), current.ino(), head_of_open(&open.file));
            self.take_between(lost.mtime_ns, lost.head, now, on_line, stats);
            self.limit_rotated(on_line, stats);
        }
        open.pos = FilePos {
            dev: current.dev(),
            ino: current.ino(),
            ..FilePos::default()
        };
        self.pos = Some(open.pos);
        self.file = Some(open);
        // The new file is read by the next call (after the rotated ones, in order).
        stats.more = true;
        Ok(())
    }

    /// Reads the rotated files; lets go of those quiet for `rotate_wait` and of
    /// copies read to their end. False when the budget ran out first.
    fn read_rotated(
        &mut self,
        budget: &mut u64,
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) -> io::Result<bool> {
        if !self.saved_rotated.is_empty() {
            for pos in std::mem::take(&mut self.saved_rotated) {
                if let Some(open) = self.find(pos)? {
                    self.rotated.push(open);
                }
            }
        }
        let mut i = 0;
        while i < self.rotated.len() {
            let old = &mut self.rotated[i];
            let before = stats.lines;
            let drained = drain(old, &self.path, &mut self.buf, budget, on_line, stats)?;
            tracing::debug!(path = %self.path.display(), ino = old.pos.ino, offset = old.pos.offset, lines = stats.lines - before, "read a rotated file");
            if drained == Drained::More {
                return Ok(false);
            }
            let quiet = old.copy
                || old
                    .file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age >= self.rotate_wait);
            if quiet {
                let mut old = self.rotated.remove(i);
                flush_partial(&mut old, on_line, stats);
            } else {
                i += 1;
            }
        }
        Ok(true)
    }

    fn limit_rotated(&mut self, on_line: &mut dyn FnMut(&str), stats: &mut ReadStats) {
        while self.rotated.len() > MAX_ROTATED {
            let mut old = self.rotated.remove(0);
            let mut all = u64::MAX;
            let _ = drain(
                &mut old,
                &self.path,
                &mut self.buf,
                &mut all,
                on_line,
                stats,
            );
            flush_partial(&mut old, on_line, stats);
        }
    }

    /// Opens the file a saved position names (see [`Tailer::find`]).
    fn reopen_saved(
        &mut self,
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) -> io::Result<()> {
        let Some(pos) = self.pos else { return Ok(()) };
        match self.find(pos)? {
            Some(open) => self.file = Some(open),
            None => {
                // Compressed since (logrotate `compress`)? Read its rest from the .gz.
                let gz = (pos.head != 0)
                    .then(|| {
                        siblings(&self.path)
                            .into_iter()
                            .find(|(p, gz)| *gz && head_of(p, true) == Some(pos.head))
                    })
                    .flatten();
                match gz {
                    Some((p, _)) => {
                        tracing::info!(path = %self.path.display(), gz = %p.display(), "the file read last time was rotated and compressed; reading its rest there");
                        if !read_gz(&p, pos.offset, &mut self.buf, on_line, stats) {
                            stats.lost_rotated = true;
                        }
                    }
                    None => {
                        tracing::warn!(path = %self.path.display(), "the file read last time is gone (rotated and removed?); lines written to it after the last run are lost");
                        stats.lost_rotated = true;
                    }
                }
                // Files rotated in after it are found from its mtime and first line.
                self.lost = Some(pos);
                // Forget it, so read_new takes the path as a new file from 0
                // (even when the new file reuses the inode).
                self.pos = Some(FilePos::default());
            }
        }
        Ok(())
    }
}

/// Checks that `path` can be read the way this run reads: a regular file, or
/// (in the daemon only) a FIFO read as a stream. A missing file is fine.
pub fn check_input(path: &Path, once: bool) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if m.file_type().is_fifo() && once {
        return Err(io::Error::other(format!(
            "{} is a FIFO: `push --once` cannot read a stream to its end; follow it with `rme push`",
            path.display()
        )));
    }
    if !m.is_file() && !m.file_type().is_fifo() {
        return Err(not_regular(path));
    }
    Ok(())
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is not a regular file (nor a FIFO): refusing to read it",
        path.display()
    ))
}

/// Opens a log without blocking on a FIFO with no writer yet.
fn open_log(path: &Path) -> io::Result<Open> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let m = file.metadata()?;
    let stream = m.file_type().is_fifo();
    if !m.is_file() && !stream {
        return Err(not_regular(path));
    }
    Ok(Open {
        file,
        pos: FilePos::default(),
        partial: Vec::new(),
        stream,
        copy: false,
    })
}
