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
const CHUNK: usize = 64 * 1024;

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

/// Follows one path.
pub struct Tailer {
    path: PathBuf,
    pos: Option<FilePos>,
    /// The open file `pos` refers to; kept open so a renamed file can be drained.
    file: Option<File>,
    /// Bytes read past `pos.offset` that do not end in a newline yet.
    partial: Vec<u8>,
    missing_warned: bool,
}

impl Tailer {
    /// Follows `path`, from `saved` when the state file had a position, else from the start.
    pub fn new(path: PathBuf, saved: Option<FilePos>) -> Tailer {
        Tailer {
            path,
            pos: saved,
            file: None,
            partial: Vec::new(),
            missing_warned: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Position to save: just past the last line handed out.
    pub fn pos(&self) -> Option<FilePos> {
        self.pos
    }

    /// Hands every complete line written since the last call to `on_line`,
    /// draining a rotated file before starting on its successor. A missing file
    /// is not an error: it is warned about once and tried again next time.
    pub fn read_new(&mut self, on_line: &mut dyn FnMut(&str)) -> io::Result<ReadStats> {
        let mut stats = ReadStats::default();
        if self.file.is_none() {
            self.reopen_saved(&mut stats)?;
        }
        if self.file.is_some() {
            self.drain(on_line, &mut stats)?;
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
                // The old file's last line may lack its newline for good.
                self.flush_partial(on_line, &mut stats);
            }
            self.file = Some(File::open(&self.path)?);
            self.pos = Some(FilePos {
                dev: current.dev(),
                ino: current.ino(),
                offset: 0,
                head: 0,
            });
            self.partial.clear();
            self.drain(on_line, &mut stats)?;
        }
        Ok(stats)
    }

    /// Opens the file a saved position names: the path itself, or, when the path
    /// is now another file, the renamed one found by inode in the same directory.
    fn reopen_saved(&mut self, stats: &mut ReadStats) -> io::Result<()> {
        let Some(pos) = self.pos else { return Ok(()) };
        let at_path = std::fs::metadata(&self.path)
            .ok()
            .filter(|m| m.dev() == pos.dev && m.ino() == pos.ino);
        let found = if at_path.is_some() {
            Some(self.path.clone())
        } else {
            find_by_inode(&self.path, pos.dev, pos.ino)
        }
        .filter(|p| pos.head == 0 || head_hash(p).ok() == Some(pos.head));
        match found {
            Some(p) => {
                let mut f = File::open(&p)?;
                f.seek(SeekFrom::Start(pos.offset.min(f.metadata()?.len())))?;
                self.file = Some(f);
            }
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

    /// Reads the open file to its end, handing out complete lines.
    fn drain(&mut self, on_line: &mut dyn FnMut(&str), stats: &mut ReadStats) -> io::Result<()> {
        let (Some(file), Some(pos)) = (self.file.as_mut(), self.pos.as_mut()) else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        let read_to = pos.offset + self.partial.len() as u64;
        if len < read_to {
            tracing::warn!(path = %self.path.display(), len, offset = read_to, "log file was truncated; reading it again from the start");
            stats.truncated = true;
            pos.offset = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(pos.offset + self.partial.len() as u64))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stats.bytes += n as u64;
            let mut start = 0;
            for i in memchr_all(&buf[..n]) {
                let line = if self.partial.is_empty() {
                    &buf[start..i]
                } else {
                    self.partial.extend_from_slice(&buf[start..i]);
                    &self.partial[..]
                };
                let consumed = line.len() as u64 + 1;
                if pos.offset == 0 {
                    pos.head = fnv1a(line);
                }
                emit(line, on_line);
                stats.lines += 1;
                pos.offset += consumed;
                self.partial.clear();
                start = i + 1;
            }
            self.partial.extend_from_slice(&buf[start..n]);
            if self.partial.len() >= MAX_LINE {
                let consumed = self.partial.len() as u64;
                emit(&self.partial, on_line);
                stats.lines += 1;
                pos.offset += consumed;
                self.partial.clear();
            }
        }
        Ok(())
    }

    /// Hands out a last line that will never get its newline (its file was rotated away).
    fn flush_partial(&mut self, on_line: &mut dyn FnMut(&str), stats: &mut ReadStats) {
        if !self.partial.is_empty() {
            emit(&self.partial, on_line);
            stats.lines += 1;
            self.partial.clear();
        }
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

/// Positions of every `\n` in `buf`.
fn memchr_all(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    buf.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
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
}
