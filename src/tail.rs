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
}

/// A line longer than this without a newline is cut and handed out as it is.
const MAX_LINE: usize = 1 << 20;
const CHUNK: usize = 1 << 20;

/// What one [`Tailer::read_new`] call did, for logs and self-metrics.
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
}

/// A rotated file is read until it has not grown for this long (by its mtime):
/// long enough for a writer to reopen late (fail2ban's postrotate `flushlogs`).
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
}

/// Follows one path.
pub struct Tailer {
    path: PathBuf,
    pos: Option<FilePos>,
    /// The open file `pos` refers to.
    file: Option<Open>,
    /// Files the path named before, still read while their writer may not have
    /// reopened yet (logrotate `create`); oldest first.
    rotated: Vec<Open>,
    /// Positions in rotated files saved by the last run, opened on the first read.
    saved_rotated: Vec<FilePos>,
    missing_warned: bool,
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
        }
    }

    /// Also goes on reading these rotated files (as [`Tailer::rotated_pos`] saved them).
    pub fn with_rotated(mut self, rotated: Vec<FilePos>) -> Tailer {
        self.saved_rotated = rotated;
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

    /// Hands every complete line written since the last call to `on_line`: first
    /// what rotated files still get, then the file the path names. A missing file
    /// is not an error: it is warned about once and tried again next time.
    pub fn read_new(&mut self, on_line: &mut dyn FnMut(&str)) -> io::Result<ReadStats> {
        let mut stats = ReadStats::default();
        if self.file.is_none() {
            self.reopen_saved(&mut stats)?;
        }
        self.read_rotated(on_line, &mut stats)?;
        if let Some(open) = self.file.as_mut() {
            let copy = drain(open, &self.path, on_line, &mut stats)?;
            if copy {
                self.read_copy(on_line, &mut stats)?;
                let open = self.file.as_mut().expect("just drained");
                drain(open, &self.path, on_line, &mut stats)?;
            }
            self.pos = self.file.as_ref().map(|o| o.pos);
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
        if !same {
            if self.pos.is_some_and(|p| p.ino != 0) {
                stats.rotated = true;
            }
            // The old file's writer may not have reopened yet: keep reading it.
            if let Some(old) = self.file.take()
                && !old.stream
            {
                tracing::debug!(path = %self.path.display(), ino = old.pos.ino, new_ino = current.ino(), "rotated: the old file is read until quiet");
                self.rotated.push(old);
                self.limit_rotated(on_line, &mut stats);
            }
            let mut open = open_log(&self.path)?;
            open.pos = FilePos {
                dev: current.dev(),
                ino: current.ino(),
                offset: 0,
                head: 0,
            };
            drain(&mut open, &self.path, on_line, &mut stats)?;
            self.pos = Some(open.pos);
            self.file = Some(open);
        }
        Ok(stats)
    }

    /// Reads the rotated files; lets go of those quiet for [`QUIET`].
    fn read_rotated(
        &mut self,
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) -> io::Result<()> {
        if !self.saved_rotated.is_empty() {
            for pos in std::mem::take(&mut self.saved_rotated) {
                if let Some(open) = self.find(pos)? {
                    self.rotated.push(open);
                }
            }
        }
        let mut kept = Vec::new();
        for mut old in std::mem::take(&mut self.rotated) {
            let before = stats.lines;
            drain(&mut old, &self.path, on_line, stats)?;
            tracing::debug!(path = %self.path.display(), ino = old.pos.ino, offset = old.pos.offset, lines = stats.lines - before, "read a rotated file");
            let quiet = old
                .file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age >= QUIET);
            if quiet {
                flush_partial(&mut old, on_line, stats);
            } else {
                kept.push(old);
            }
        }
        self.rotated = kept;
        Ok(())
    }

    fn limit_rotated(&mut self, on_line: &mut dyn FnMut(&str), stats: &mut ReadStats) {
        while self.rotated.len() > MAX_ROTATED {
            let mut old = self.rotated.remove(0);
            let _ = drain(&mut old, &self.path, on_line, stats);
            flush_partial(&mut old, on_line, stats);
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
    fn reopen_saved(&mut self, stats: &mut ReadStats) -> io::Result<()> {
        let Some(pos) = self.pos else { return Ok(()) };
        match self.find(pos)? {
            Some(open) => self.file = Some(open),
            None => {
                tracing::warn!(path = %self.path.display(), "the file read last time is gone (rotated and removed?); lines written to it after the last run are lost");
                stats.lost_rotated = true;
                // Forget it, so read_new takes the path as a new file from 0
                // (even when the new file reuses the inode).
                self.pos = Some(FilePos {
                    dev: 0,
                    ino: 0,
                    offset: 0,
                    head: 0,
                });
            }
        }
        Ok(())
    }

    /// After a copytruncate: the lines past our position are in the copy
    /// (`name.1`, `name-20250101`, ...), found by its first line; read them there.
    fn read_copy(
        &mut self,
        on_line: &mut dyn FnMut(&str),
        stats: &mut ReadStats,
    ) -> io::Result<()> {
        let Some(open) = self.file.as_mut() else {
            return Ok(());
        };
        let (was, head) = (std::mem::take(&mut open.pos.offset), open.pos.head);
        open.pos.head = 0;
        if head == 0 || was == 0 {
            return Ok(());
        }
        let skip: Vec<u64> = self
            .rotated
            .iter()
            .map(|o| o.pos.ino)
            .chain([open.pos.ino])
            .collect();
        let Some(copy) = find_copy(&self.path, head, was, &skip) else {
            tracing::warn!(path = %self.path.display(), "log file was truncated or replaced and no copy of it was found; lines written to it after the last read are lost");
            stats.lost_rotated = true;
            return Ok(());
        };
        let mut f = open_log(&copy)?;
        f.file.seek(SeekFrom::Start(was))?;
        f.pos = FilePos {
            offset: was,
            head,
            ..FilePos::default()
        };
        drain(&mut f, &copy, on_line, stats)?;
        flush_partial(&mut f, on_line, stats);
        tracing::info!(path = %self.path.display(), copy = %copy.display(), "log file was truncated (copytruncate); read the rest of its copy");
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
    })
}

/// Reads an open file to its end, handing out complete lines. Returns true when
/// the file was truncated (copytruncate): its position is then still the old one,
/// for [`Tailer::read_copy`], and the caller drains again from 0.
fn drain(
    open: &mut Open,
    path: &Path,
    on_line: &mut dyn FnMut(&str),
    stats: &mut ReadStats,
) -> io::Result<bool> {
    let pos = &mut open.pos;
    if !open.stream {
        let len = open.file.metadata()?.len();
        let read_to = pos.offset + open.partial.len() as u64;
        if len < read_to
            || (pos.head != 0 && first_line_hash(&open.file).is_some_and(|h| h != pos.head))
        {
            tracing::warn!(path = %path.display(), len, offset = read_to, "log file was truncated; reading it again from the start");
            stats.truncated = true;
            open.partial.clear();
            if pos.offset > 0 {
                return Ok(true);
            }
        }
        open.file
            .seek(SeekFrom::Start(pos.offset + open.partial.len() as u64))?;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match open.file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stats.bytes += n as u64;
        let mut start = 0;
        for i in memchr_all(&buf[..n]) {
            let line = if open.partial.is_empty() {
                &buf[start..i]
            } else {
                open.partial.extend_from_slice(&buf[start..i]);
                &open.partial[..]
            };
            let consumed = line.len() as u64 + 1;
            if pos.offset == 0 && !open.stream {
                pos.head = fnv1a(line);
            }
            emit(line, on_line);
            stats.lines += 1;
            if !open.stream {
                pos.offset += consumed;
            }
            open.partial.clear();
            start = i + 1;
        }
        open.partial.extend_from_slice(&buf[start..n]);
        if open.partial.len() >= MAX_LINE {
            let consumed = open.partial.len() as u64;
            emit(&open.partial, on_line);
            stats.lines += 1;
            if !open.stream {
                pos.offset += consumed;
            }
            open.partial.clear();
        }
    }
    Ok(false)
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
/// first line, at least `len` long, not one of `skip` (inodes); the newest one.
fn find_copy(path: &Path, head: u64, len: u64, skip: &[u64]) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
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
            let ok = m.is_file() && m.len() >= len && !skip.contains(&m.ino());
            ok.then(|| (m.modified().ok(), e.path()))
        })
        .filter(|(_, p)| head_hash(p).ok() == Some(head))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
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
}
