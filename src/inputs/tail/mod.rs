//! Follows one log file: complete lines only, across rotation by rename and by
//! copytruncate, and across runs through a saved [`FilePos`].
//!
//! The tricky point is rotation between two `push --once` runs: the lines the
//! last run did not see are at the end of the *renamed* file. The saved device
//! and inode find it again in the same directory (`fail2ban.log.1` with
//! logrotate's delaycompress, `audit.log.1` with auditd's own rotation).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// A line longer than this without a newline is cut and handed out as it is.
const MAX_LINE: usize = 1 << 20;
const CHUNK: usize = 1 << 20;
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
pub const QUIET: Duration = Duration::from_secs(30);
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

/// How far [`drain`] got.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// To the end of what the file holds now.
    End,
    /// The byte budget ran out first.
    More,
    /// The file was truncated (copytruncate): its position is still the old one,
    /// for [`Tailer::take_copy`], and the file is to be read again from 0.
    Truncated,
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
            rotate_wait: QUIET,
            buf: Vec::new(),
        }
    }

    /// Also goes on reading these rotated files (as [`Tailer::rotated_pos`] saved them).
    pub fn with_rotated(mut self, rotated: Vec<FilePos>) -> Tailer {
        self.saved_rotated = rotated;
        self
    }

    /// Lets a rotated file go once it has been quiet this long (default [`QUIET`]).
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
                    // A copytruncate, or a new file on the inode of the one read
                    // last time (renamed and compressed since, maybe twice).
                    let (since, head) = (open.pos.mtime_ns, open.pos.head);
                    let now = (open.pos.dev, open.pos.ino, first_line_hash(&open.file));
                    self.take_copy(on_line, &mut stats)?;
                    self.take_between(since, head, now, on_line, &mut stats);
                    self.pos = self.file.as_ref().map(|o| o.pos);
                    stats.more = true;
                    return Ok(stats);
                }
            }
        }
        // Has the path moved on to another file (rotation) or appeared at last?
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.missing_warned {
                    tracing::warn!(path = %self.path.display(), "log file does not exist (yet); will retry");
                    self.missing_warned = true;
                }
                return Ok(stats);
            }
            Err(e) => return Err(e),
        };
        self.missing_warned = false;
        let same = self
            .pos
            .is_some_and(|p| p.dev == current.dev() && p.ino == current.ino());
        if same {
            return Ok(stats);
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
            let now = (current.dev(), current.ino(), first_line_hash(&open.file));
            self.take_between(since, head, now, on_line, &mut stats);
            self.limit_rotated(on_line, &mut stats);
        } else if let Some(lost) = self.lost.take() {
            let now = (current.dev(), current.ino(), first_line_hash(&open.file));
            self.take_between(lost.mtime_ns, lost.head, now, on_line, &mut stats);
            self.limit_rotated(on_line, &mut stats);
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
        Ok(stats)
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

    /// After a rotation: files the path named between the old file and the one
    /// it names now (device, inode, first line)
    /// (rotated twice between two reads: `log` → `log.1` → `log.2`), never opened
    /// by us. They are the rotated siblings (`log.N`, `log-DATE`, maybe `.gz`)
    /// written to since the old file was last read (mtime at least `since_ns`;
    /// timestamps are coarse, so a tie counts as newer),
    /// whose first line is none of the files already read; they are read from their start,
    /// oldest first, a plain one followed like any rotated file.
    fn take_between(
        &mut self,
        since_ns: i64,
        old_head: u64,
        (dev, ino, head): (u64, u64, Option<u64>),
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) {
        if since_ns <= 0 {
            return;
        }
        let since = std::time::UNIX_EPOCH + Duration::from_nanos(since_ns as u64);
        let mut known_ino: Vec<(u64, u64)> = self
            .rotated
            .iter()
            .map(|o| (o.pos.dev, o.pos.ino))
            .collect();
        known_ino.push((dev, ino));
        let mut known_head: Vec<u64> = self.rotated.iter().map(|o| o.pos.head).collect();
        known_head.extend([old_head, head.unwrap_or(0)]);
        let mut found: Vec<(std::time::SystemTime, PathBuf, bool)> = siblings(&self.path)
            .into_iter()
            .filter_map(|(p, gz)| {
                let m = std::fs::metadata(&p).ok()?;
                let t = m.modified().ok()?;
                let ok = m.is_file() && t >= since && !known_ino.contains(&(m.dev(), m.ino()));
                ok.then_some((t, p, gz))
            })
            .filter(|(_, p, gz)| {
                let head = if *gz {
                    gz_head_hash(p)
                } else {
                    head_hash(p).ok()
                };
                head.is_some_and(|h| h != 0 && !known_head.contains(&h))
            })
            .collect();
        found.sort();
        for (_, p, gz) in found {
            tracing::info!(path = %self.path.display(), between = %p.display(), "rotated twice since the last read: reading the file in between too");
            if gz {
                read_gz(&p, 0, &mut self.buf, on_line, stats);
                continue;
            }
            match open_log(&p).and_then(|mut o| {
                let m = o.file.metadata()?;
                o.pos = FilePos {
                    dev: m.dev(),
                    ino: m.ino(),
                    ..FilePos::default()
                };
                Ok(o)
            }) {
                Ok(o) => self.rotated.push(o),
                Err(e) => {
                    tracing::warn!(path = %p.display(), "cannot read a file rotated in between: {e}; its lines are lost");
                    stats.lost_rotated = true;
                }
            }
        }
    }

    /// Opens the file `pos` names, at its offset: the path itself or, when the
    /// path is now another file, the renamed one found by inode in the same
    /// directory (and the same first line).
    fn find(&self, pos: FilePos) -> io::Result<Option<Open>> {
        let at_path = std::fs::metadata(&self.path)
            .ok()
            .filter(|m| m.dev() == pos.dev && m.ino() == pos.ino);
        // At the path, another first line means a copytruncate (or a reused
        // inode): `drain` sees it and looks for the copy.
        let found = if at_path.is_some() {
            Some(self.path.clone())
        } else {
            find_by_inode(&self.path, pos.dev, pos.ino)
                .filter(|p| pos.head == 0 || head_hash(p).ok() == Some(pos.head))
        };
        let Some(p) = found else { return Ok(None) };
        let mut open = open_log(&p)?;
        if !open.stream {
            let len = open.file.metadata()?.len();
            open.file.seek(SeekFrom::Start(pos.offset.min(len)))?;
        }
        open.pos = pos;
        Ok(Some(open))
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
                            .find(|(p, gz)| *gz && gz_head_hash(p) == Some(pos.head))
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

    /// After a copytruncate: the lines past our position are in the copy
    /// (`name.1`, `name-20250101`, ... or, with `compress` and no
    /// `delaycompress`, `name.1.gz`), found by its first line. A plain copy is
    /// read from there like a rotated file (in budgeted calls, before the file
    /// itself); a gzipped one at once. The file itself is then read from 0.
    fn take_copy(
        &mut self,
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) -> io::Result<()> {
        let Some(open) = self.file.as_ref() else {
            return Ok(());
        };
        let (was, head) = (open.pos.offset, open.pos.head);
        let reset = |t: &mut Tailer| {
            if let Some(open) = t.file.as_mut() {
                open.pos.offset = 0;
                open.pos.head = 0;
                open.partial.clear();
            }
        };
        if head == 0 || was == 0 {
            reset(self);
            return Ok(());
        }
        let skip: Vec<u64> = self
            .rotated
            .iter()
            .map(|o| o.pos.ino)
            .chain([open.pos.ino])
            .collect();
        let Some((copy, gz)) = find_copy(&self.path, head, was, &skip) else {
            tracing::warn!(path = %self.path.display(), "log file was truncated or replaced and no copy of it was found; lines written to it after the last read are lost");
            stats.lost_rotated = true;
            reset(self);
            return Ok(());
        };
        tracing::info!(path = %self.path.display(), copy = %copy.display(), "log file was truncated (copytruncate); reading the rest of its copy");
        if gz {
            if !read_gz(&copy, was, &mut self.buf, on_line, stats) {
                stats.lost_rotated = true;
            }
            reset(self);
            return Ok(());
        }
        let mut f = open_log(&copy)?;
        let m = f.file.metadata()?;
        f.file.seek(SeekFrom::Start(was))?;
        f.pos = FilePos {
            dev: m.dev(),
            ino: m.ino(),
            offset: was,
            head,
            mtime_ns: 0,
        };
        f.copy = true;
        self.rotated.push(f);
        reset(self);
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

/// Reads an open file to its end, or until `budget` bytes were read, handing
/// out complete lines straight from `buf` (no copy unless a line straddles two
/// reads). Stops at a truncation (copytruncate) of a file read before.
fn drain(
    open: &mut Open,
    path: &Path,
    buf: &mut Vec<u8>,
    budget: &mut u64,
    on_line: &mut dyn FnMut(&str),
    stats: &mut ReadStats,
) -> io::Result<Drained> {
    if *budget == 0 {
        return Ok(Drained::More);
    }
    let pos = &mut open.pos;
    if !open.stream {
        let m = open.file.metadata()?;
        let len = m.len();
        let read_to = pos.offset + open.partial.len() as u64;
        if len < read_to
            || (pos.head != 0 && first_line_hash(&open.file).is_some_and(|h| h != pos.head))
        {
            tracing::warn!(path = %path.display(), len, offset = read_to, "log file was truncated; reading it again from the start");
            stats.truncated = true;
            open.partial.clear();
            if pos.offset > 0 {
                return Ok(Drained::Truncated);
            }
        }
        // (after the truncation check: `take_between` wants the old file's)
        pos.mtime_ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
        open.file
            .seek(SeekFrom::Start(pos.offset + open.partial.len() as u64))?;
    }
    buf.resize(CHUNK, 0);
    while *budget > 0 {
        let want = (*budget).min(CHUNK as u64) as usize;
        let n = match open.file.read(&mut buf[..want]) {
            Ok(0) => return Ok(Drained::End),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::End),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *budget = budget.saturating_sub(n as u64);
        stats.bytes += n as u64;
        let offset = (!open.stream).then_some(&mut *pos);
        feed_lines(&buf[..n], &mut open.partial, offset, on_line, stats);
    }
    Ok(Drained::More)
}

/// Hands out the complete lines of `chunk` (the first one completing
/// `partial`), keeps the unfinished rest in `partial`, and moves `pos` (when
/// given) past each line handed out; sets its `head` at the first line.
fn feed_lines(
    chunk: &[u8],
    partial: &mut Vec<u8>,
    mut pos: Option<&mut FilePos>,
    on_line: &mut dyn FnMut(&str),
    stats: &mut ReadStats,
) {
    let mut start = 0;
    // The chunk's text checked as UTF-8 once, not line by line: every line that
    // ends inside the valid part is a `&str` slice of it (a `\n` is never inside
    // a character, so line starts are char boundaries).
    let text = match std::str::from_utf8(chunk) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&chunk[..e.valid_up_to()]).unwrap_or_default(),
    };
    for i in memchr_all(chunk) {
        let line = if partial.is_empty() {
            &chunk[start..i]
        } else {
            partial.extend_from_slice(&chunk[start..i]);
            &partial[..]
        };
        let consumed = line.len() as u64 + 1;
        if let Some(pos) = pos.as_deref_mut() {
            if pos.offset == 0 {
                pos.head = fnv1a(line);
            }
            pos.offset += consumed;
        }
        match text.get(start..i) {
            Some(valid) if partial.is_empty() => on_line(valid.strip_suffix('\r').unwrap_or(valid)),
            _ => emit(line, on_line),
        }
        stats.lines += 1;
        partial.clear();
        start = i + 1;
    }
    partial.extend_from_slice(&chunk[start..]);
    if partial.len() >= MAX_LINE {
        if let Some(pos) = pos {
            pos.offset += partial.len() as u64;
        }
        emit(partial, on_line);
        stats.lines += 1;
        partial.clear();
    }
}

/// Reads a gzipped copy (`compress` without `delaycompress`) at once, handing
/// out its lines past the uncompressed offset `skip`, the last one even without
/// its newline. False when it could not be read (warned); a corrupt end stops
/// the reading there.
fn read_gz(
    path: &Path,
    skip: u64,
    buf: &mut Vec<u8>,
    on_line: &mut dyn FnMut(&str),
    stats: &mut ReadStats,
) -> bool {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the compressed copy: {e}; its lines past the last read are lost");
            return false;
        }
    };
    let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
    buf.resize(CHUNK, 0);
    let (mut at, mut partial) = (0u64, Vec::new());
    loop {
        let n = match gz.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(path = %path.display(), "compressed copy is corrupt past {at} bytes: {e}; read up to there");
                break;
            }
        };
        let from = skip.saturating_sub(at).min(n as u64) as usize;
        at += n as u64;
        feed_lines(&buf[from..n], &mut partial, None, on_line, stats);
    }
    if !partial.is_empty() {
        emit(&partial, on_line);
        stats.lines += 1;
    }
    true
}

/// Hands out a last line that will never get its newline (its file was rotated away).
fn flush_partial(open: &mut Open, on_line: &mut dyn FnMut(&str), stats: &mut ReadStats) {
    if !open.partial.is_empty() {
        emit(&open.partial, on_line);
        stats.lines += 1;
        open.pos.offset += open.partial.len() as u64;
        open.partial.clear();
    }
}

/// Hash of an open file's first line, `None` while it has no complete one.
fn first_line_hash(file: &File) -> Option<u64> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; 4096];
    let n = file.read_at(&mut buf, 0).ok()?;
    match buf[..n].iter().position(|b| *b == b'\n') {
        Some(i) => Some(fnv1a(&buf[..i])),
        None if n >= 4095 => Some(fnv1a(&buf[..n])),
        None => None,
    }
}

/// The copy a copytruncate left of `path`: a sibling named `path…` with the same
/// first line, at least `len` long (when not gzipped), not one of `skip`
/// (inodes); the newest one, and whether it is gzipped.
fn find_copy(path: &Path, head: u64, len: u64, skip: &[u64]) -> Option<(PathBuf, bool)> {
    let dir = parent(path);
    let name = path.file_name()?.to_string_lossy().into_owned();
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.len() > name.len() && n.starts_with(&name)
        })
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let gz = e.file_name().to_string_lossy().ends_with(".gz");
            let ok = m.is_file() && (gz || m.len() >= len) && !skip.contains(&m.ino());
            ok.then(|| (m.modified().ok(), e.path(), gz))
        })
        .filter(|(_, p, gz)| {
            let h = if *gz {
                gz_head_hash(p)
            } else {
                head_hash(p).ok()
            };
            h == Some(head)
        })
        .max_by_key(|(t, _, _)| *t)
        .map(|(_, p, gz)| (p, gz))
}

/// The rotated names of `path` in its directory: `name.N`, `name-DATE`
/// (logrotate's `dateext`), each maybe with `.gz`; and whether it is gzipped.
fn siblings(path: &Path) -> Vec<(PathBuf, bool)> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent(path)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix(&name)?;
            let (rest, gz) = match rest.strip_suffix(".gz") {
                Some(r) => (r, true),
                None => (rest, false),
            };
            let digits =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-');
            let rotated = rest
                .strip_prefix('.')
                .or_else(|| rest.strip_prefix('-'))
                .is_some_and(digits);
            rotated.then(|| (e.path(), gz))
        })
        .collect()
}

/// Hash of a gzipped file's first line (see [`head_hash`]); `None` when it cannot be read.
fn gz_head_hash(path: &Path) -> Option<u64> {
    let mut gz = flate2::read::MultiGzDecoder::new(File::open(path).ok()?);
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        match gz.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(match buf[..n].iter().position(|b| *b == b'\n') {
        Some(i) => fnv1a(&buf[..i]),
        None if n >= 4095 => fnv1a(&buf[..n]),
        None => 0,
    })
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Hash of a file's first line, 0 when it has no complete line yet.
fn head_hash(path: &Path) -> io::Result<u64> {
    let mut buf = vec![0u8; 4096];
    let n = File::open(path)?.read(&mut buf)?;
    Ok(match buf[..n].iter().position(|b| *b == b'\n') {
        Some(i) => fnv1a(&buf[..i]),
        // fnv1a looks at 4095 bytes at most, so a longer first line still matches.
        None if n >= 4095 => fnv1a(&buf[..n]),
        None => 0,
    })
}

/// FNV-1a 64: a stable hash (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    let bytes = &bytes[..bytes.len().min(4095)];
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn emit(line: &[u8], on_line: &mut dyn FnMut(&str)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(s) => on_line(s),
        Err(_) => on_line(&String::from_utf8_lossy(line)),
    }
}

/// Positions of every `\n` in `buf` (memchr's SIMD search, not a byte loop).
fn memchr_all(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\n', buf)
}

/// Looks in `path`'s directory for the file with this device and inode.
fn find_by_inode(path: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    std::fs::read_dir(parent(path))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.dev() == dev && m.ino() == ino)
        })
        .map(|e| e.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read(t: &mut Tailer) -> (Vec<String>, ReadStats) {
        let mut lines = Vec::new();
        let stats = t.read_new(&mut |l| lines.push(l.to_string())).unwrap();
        (lines, stats)
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn partial_last_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "one\ntw");
        let mut t = Tailer::new(p.clone(), None);
        assert_eq!(read(&mut t).0, vec!["one"]);
        append(&p, "o\nthree\n");
        assert_eq!(read(&mut t).0, vec!["two", "three"]);
        assert_eq!(t.pos().unwrap().offset, 14);
    }

    #[test]
    fn missing_file_is_picked_up_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("later.log");
        let mut t = Tailer::new(p.clone(), None);
        assert!(read(&mut t).0.is_empty());
        append(&p, "hello\n");
        assert_eq!(read(&mut t).0, vec!["hello"]);
    }

    #[test]
    fn rename_rotation_drains_the_old_file_then_reads_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        append(&p, "a\n");
        let mut t = Tailer::new(p.clone(), None);
        assert_eq!(read(&mut t).0, vec!["a"]);
        append(&p, "b\n");
        std::fs::rename(&p, dir.path().join("f.log.1")).unwrap();
        append(&dir.path().join("f.log.1"), "c\n"); // written before the daemon reopened
        append(&p, "d\n");
        let (lines, stats) = read(&mut t);
        assert_eq!(lines, vec!["b", "c", "d"]);
        assert!(stats.rotated);
    }

    #[test]
    fn rotation_between_runs_is_found_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        append(&p, "a\n");
        let mut t = Tailer::new(p.clone(), None);
        read(&mut t);
        let saved = t.pos();
        drop(t);
        append(&p, "b\n");
        std::fs::rename(&p, dir.path().join("f.log.1")).unwrap();
        append(&p, "c\n");
        let mut t = Tailer::new(p.clone(), saved);
        assert_eq!(read(&mut t).0, vec!["b", "c"]);
        // and a third run sees nothing twice
        let saved = t.pos();
        let mut t = Tailer::new(p, saved);
        assert!(read(&mut t).0.is_empty());
    }

    #[test]
    fn copytruncate_starts_again_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        append(&p, "aaaa\nbbbb\n");
        let mut t = Tailer::new(p.clone(), None);
        read(&mut t);
        std::fs::File::create(&p).unwrap(); // truncate in place
        append(&p, "c\n");
        let (lines, stats) = read(&mut t);
        assert_eq!(lines, vec!["c"]);
        assert!(stats.truncated);
    }

    #[test]
    fn rotated_file_removed_between_runs_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        append(&p, "a\n");
        let mut t = Tailer::new(p.clone(), None);
        read(&mut t);
        let saved = t.pos();
        std::fs::remove_file(&p).unwrap();
        append(&p, "new\n");
        let mut t = Tailer::new(p, saved);
        let (lines, stats) = read(&mut t);
        // the new file may reuse the inode; either way "new" is read exactly once
        assert_eq!(lines, vec!["new"]);
        assert!(stats.lost_rotated);
    }

    #[test]
    fn invalid_utf8_and_crlf_do_not_stop_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        std::fs::write(&p, b"ok\r\n\xff\xfebad\nlast\n").unwrap();
        let mut t = Tailer::new(p, None);
        let (lines, _) = read(&mut t);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "ok");
        assert_eq!(lines[2], "last");
    }
    #[test]
    fn renamed_file_is_read_until_its_writer_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        let old = dir.path().join("f.log.1");
        append(&p, "a\n");
        let mut t = Tailer::new(p.clone(), None);
        assert_eq!(read(&mut t).0, vec!["a"]);
        std::fs::rename(&p, &old).unwrap();
        append(&p, "new1\n");
        assert_eq!(read(&mut t).0, vec!["new1"]);
        append(&old, "late\n"); // the writer reopens late
        append(&p, "new2\n");
        assert_eq!(read(&mut t).0, vec!["late", "new2"]);
        // saved and restored, the rotated file is still followed
        let (pos, rotated) = (t.pos(), t.rotated_pos());
        assert_eq!(rotated.len(), 1);
        append(&old, "later\n");
        let mut t = Tailer::new(p, pos).with_rotated(rotated);
        assert_eq!(read(&mut t).0, vec!["later"]);
        assert!(read(&mut t).0.is_empty());
    }

    #[test]
    fn rotate_wait_bounds_how_long_a_renamed_file_is_read() {
        for (wait, late_is_read) in [(Duration::ZERO, false), (QUIET, true)] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("f.log");
            let old = dir.path().join("f.log.1");
            append(&p, "a\n");
            let mut t = Tailer::new(p.clone(), None).with_rotate_wait(wait);
            assert_eq!(read(&mut t).0, vec!["a"]);
            std::fs::rename(&p, &old).unwrap();
            append(&p, "new\n");
            assert_eq!(read(&mut t).0, vec!["new"]);
            append(&old, "late\n");
            let want: Vec<&str> = if late_is_read { vec!["late"] } else { vec![] };
            assert_eq!(read(&mut t).0, want, "rotate_wait {wait:?}");
            assert_eq!(t.rotated_pos().len(), usize::from(late_is_read));
        }
    }

    #[test]
    fn copytruncate_reads_what_only_the_copy_holds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        append(&p, "first\n");
        let mut t = Tailer::new(p.clone(), None);
        assert_eq!(read(&mut t).0, vec!["first"]);
        append(&p, "unread\n");
        std::fs::copy(&p, dir.path().join("f.log.1")).unwrap();
        std::fs::File::create(&p).unwrap();
        append(&p, "after\n");
        let (lines, stats) = read(&mut t);
        assert_eq!(lines, vec!["unread", "after"]);
        assert!(stats.truncated);
        assert!(read(&mut t).0.is_empty());
    }

    #[test]
    fn fifo_is_read_as_a_stream_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pipe");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut t = Tailer::new(p.clone(), None);
        assert!(read(&mut t).0.is_empty(), "no writer yet: nothing, at once");
        let mut w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        w.write_all(b"one\ntw").unwrap();
        assert_eq!(read(&mut t).0, vec!["one"]);
        w.write_all(b"o\n").unwrap();
        drop(w);
        assert_eq!(read(&mut t).0, vec!["two"]);
        assert!(check_input(&p, true).is_err());
        assert!(check_input(&p, false).is_ok());
        let err = check_input(Path::new("/dev/zero"), false).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
    #[test]
    fn rename_then_empty_new_file_then_late_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        let old = dir.path().join("f.log.1");
        append(&p, "a\n");
        let mut t = Tailer::new(p.clone(), None);
        assert_eq!(read(&mut t).0, vec!["a"]);
        std::fs::rename(&p, &old).unwrap();
        std::fs::File::create(&p).unwrap();
        let (lines, stats) = read(&mut t);
        assert!(lines.is_empty());
        assert!(stats.rotated);
        append(&old, "late\n");
        assert_eq!(read(&mut t).0, vec!["late"]);
        std::fs::rename(&old, dir.path().join("f.log.2")).unwrap();
        std::fs::rename(&p, &old).unwrap();
        std::fs::File::create(&p).unwrap();
        let (lines, stats) = read(&mut t);
        assert!(lines.is_empty());
        assert!(stats.rotated);
        append(&old, "late2\n");
        assert_eq!(read(&mut t).0, vec!["late2"]);
    }

    /// Every line written, each handed out exactly once, when read `budget`
    /// bytes at a time; and at every batch boundary the saved positions are
    /// exactly where a restarted rme must go on: handed out so far plus what a
    /// new tailer from those positions reads is everything, once.
    fn read_in_batches(t: &mut Tailer, budget: u64, written: &[String], handed: &mut Vec<String>) {
        loop {
            let stats = t
                .read_some(budget, &mut |l| handed.push(l.to_string()))
                .unwrap();
            let mut fresh =
                Tailer::new(t.path().to_path_buf(), t.pos()).with_rotated(t.rotated_pos());
            let mut all = handed.clone();
            fresh.read_new(&mut |l| all.push(l.to_string())).unwrap();
            all.sort();
            let mut want = written.to_vec();
            want.sort();
            assert_eq!(
                all,
                want,
                "restarting at this boundary: pos {:?} rotated {:?}",
                t.pos(),
                t.rotated_pos()
            );
            if !stats.more {
                break;
            }
        }
        let mut got = handed.clone();
        got.sort();
        let mut want = written.to_vec();
        want.sort();
        assert_eq!(got, want);
    }

    fn write_lines(path: &Path, from: usize, to: usize, written: &mut Vec<String>) {
        let mut text = String::new();
        for i in from..to {
            let l = format!("line {i:05} {}", "x".repeat(i % 13));
            text.push_str(&l);
            text.push('\n');
            written.push(l);
        }
        append(path, &text);
    }

    #[test]
    fn budgeted_reads_across_rename_and_copytruncate_hand_out_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        let (mut written, mut handed) = (Vec::new(), Vec::new());
        write_lines(&p, 0, 40, &mut written);
        let mut t = Tailer::new(p.clone(), None);
        // a budget that ends batches in the middle of lines
        read_in_batches(&mut t, 37, &written, &mut handed);
        assert_eq!(
            t.pos().unwrap().offset,
            std::fs::metadata(&p).unwrap().len()
        );
        // rename rotation with lines written late to the renamed file
        write_lines(&p, 40, 60, &mut written);
        std::fs::rename(&p, dir.path().join("f.log.1")).unwrap();
        write_lines(&dir.path().join("f.log.1"), 60, 70, &mut written);
        write_lines(&p, 70, 100, &mut written);
        read_in_batches(&mut t, 37, &written, &mut handed);
        // copytruncate: what rme did not read yet is only in the copy
        write_lines(&p, 100, 130, &mut written);
        std::fs::copy(&p, dir.path().join("f.log.2")).unwrap();
        std::fs::File::create(&p).unwrap();
        write_lines(&p, 130, 150, &mut written);
        read_in_batches(&mut t, 37, &written, &mut handed);
        assert_eq!(
            t.pos().unwrap().offset,
            std::fs::metadata(&p).unwrap().len()
        );
        // and nothing more on a read with nothing new
        assert!(read(&mut t).0.is_empty());
    }

    #[test]
    fn rotated_twice_between_two_reads_reads_the_file_in_between() {
        for between_runs in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let p = d.join("f.log");
            // an old rotated file from before: never read again
            append(&d.join("f.log.3"), "old\n");
            let past = std::time::SystemTime::now() - Duration::from_secs(3600);
            File::options()
                .write(true)
                .open(d.join("f.log.3"))
                .unwrap()
                .set_modified(past)
                .unwrap();
            append(&p, "a1\n");
            let mut t = Tailer::new(p.clone(), None);
            assert_eq!(read(&mut t).0, vec!["a1"]);
            append(&p, "a2\n");
            // log -> log.1 -> log.2, twice, before rme reads again
            std::fs::rename(&p, d.join("f.log.1")).unwrap();
            append(&p, "b1\n");
            std::fs::rename(d.join("f.log.1"), d.join("f.log.2")).unwrap();
            std::fs::rename(&p, d.join("f.log.1")).unwrap();
            append(&p, "c1\n");
            if between_runs {
                t = Tailer::new(p.clone(), t.pos()).with_rotated(t.rotated_pos());
            }
            let (lines, stats) = read(&mut t);
            assert_eq!(
                lines,
                vec!["a2", "b1", "c1"],
                "between runs: {between_runs}"
            );
            assert!(stats.rotated);
            // the file in between is followed like any rotated one, and never read twice
            append(&d.join("f.log.1"), "b2\n");
            assert_eq!(read(&mut t).0, vec!["b2"]);
            let mut again = Tailer::new(p.clone(), t.pos()).with_rotated(t.rotated_pos());
            assert!(read(&mut again).0.is_empty());
            assert!(read(&mut t).0.is_empty());
        }
    }

    #[test]
    fn copytruncate_with_compress_reads_the_gzipped_copy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        append(&p, "first\n");
        let mut t = Tailer::new(p.clone(), None);
        assert_eq!(read(&mut t).0, vec!["first"]);
        append(&p, "unread1\nunread2\n");
        std::fs::write(dir.path().join("f.log.1.gz"), gzipped(&p)).unwrap();
        std::fs::File::create(&p).unwrap();
        append(&p, "after\n");
        let (lines, stats) = read(&mut t);
        assert_eq!(lines, vec!["unread1", "unread2", "after"]);
        assert!(stats.truncated && !stats.lost_rotated);
        assert!(read(&mut t).0.is_empty());
    }

    /// The file's bytes, gzipped.
    fn gzipped(path: &Path) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&std::fs::read(path).unwrap()).unwrap();
        gz.finish().unwrap()
    }

    /// `path` gzipped to `path.gz` (its mtime kept, as logrotate does), then removed.
    fn gzip(path: &Path) {
        let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
        let out = PathBuf::from(format!("{}.gz", path.display()));
        std::fs::write(&out, gzipped(path)).unwrap();
        File::options()
            .write(true)
            .open(&out)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn rotated_twice_between_runs_with_compress_reads_what_is_left() {
        for delaycompress in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let p = d.join("f.log");
            let n = |i: u32| d.join(format!("f.log.{i}"));
            // an old rotation, compressed long ago: never read again
            append(&n(3), "old\n");
            gzip(&n(3));
            std::fs::rename(d.join("f.log.3.gz"), d.join("f.log.4.gz")).unwrap();
            append(&p, "a1\n");
            let mut t = Tailer::new(p.clone(), None);
            assert_eq!(read(&mut t).0, vec!["a1"]);
            let saved = (t.pos(), t.rotated_pos());
            drop(t);
            std::thread::sleep(Duration::from_millis(5));
            append(&p, "a2\n"); // after the last run
            // two logrotate runs (rotate, create, compress [, delaycompress])
            std::fs::rename(&p, n(1)).unwrap();
            if !delaycompress {
                gzip(&n(1));
            }
            append(&p, "b1\n");
            if delaycompress {
                std::fs::rename(n(1), n(2)).unwrap();
                gzip(&n(2));
            } else {
                std::fs::rename(d.join("f.log.1.gz"), d.join("f.log.2.gz")).unwrap();
            }
            std::fs::rename(&p, n(1)).unwrap();
            if !delaycompress {
                gzip(&n(1));
            }
            append(&p, "c1\n");
            let mut t = Tailer::new(p.clone(), saved.0).with_rotated(saved.1);
            let (lines, _) = read(&mut t);
            assert_eq!(
                lines,
                vec!["a2", "b1", "c1"],
                "delaycompress: {delaycompress}"
            );
            let mut again = Tailer::new(p.clone(), t.pos()).with_rotated(t.rotated_pos());
            assert!(read(&mut again).0.is_empty());
        }
    }
}
