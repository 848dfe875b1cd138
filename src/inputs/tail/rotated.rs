//! Finding the files a path named before: a renamed file by its device and
//! inode, files rotated in between two reads by name (`log.N`, `log-DATE`,
//! maybe `.gz`) and mtime, and the copy a copytruncate left, each told apart
//! from a reused inode or an unrelated file by the hash of its first line
//! (fail2ban's `firstlinemd5`, in `lines.rs`; Vector calls this part its
//! fingerprinter).

use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lines::{head_of, read_gz};
use super::{FilePos, Open, ReadStats, Tailer, open_log};

impl Tailer {
    /// After a rotation: files the path named between the old file and the one
    /// it names now (device, inode, first line)
    /// (rotated twice between two reads: `log` → `log.1` → `log.2`), never opened
    /// by us. They are the rotated siblings (`log.N`, `log-DATE`, maybe `.gz`)
    /// written to since the old file was last read (mtime at least `since_ns`;
    /// timestamps are coarse, so a tie counts as newer),
    /// whose first line is none of the files already read; they are read from their start,
    /// oldest first, a plain one followed like any rotated file.
    pub(super) fn take_between(
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
                head_of(p, *gz).is_some_and(|h| h != 0 && !known_head.contains(&h))
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
    pub(super) fn find(&self, pos: FilePos) -> io::Result<Option<Open>> {
        let at_path = std::fs::metadata(&self.path)
            .ok()
            .filter(|m| m.dev() == pos.dev && m.ino() == pos.ino);
        // At the path, another first line means a copytruncate (or a reused
        // inode): `drain` sees it and looks for the copy.
        let found = if at_path.is_some() {
            Some(self.path.clone())
        } else {
            find_by_inode(&self.path, pos.dev, pos.ino)
                .filter(|p| pos.head == 0 || head_of(p, false) == Some(pos.head))
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

    /// After a copytruncate: the lines past our position are in the copy
    /// (`name.1`, `name-20250101`, ... or, with `compress` and no
    /// `delaycompress`, `name.1.gz`), found by its first line. A plain copy is
    /// read from there like a rotated file (in budgeted calls, before the file
    /// itself); a gzipped one at once. The file itself is then read from 0.
    pub(super) fn take_copy(
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
        .filter(|(_, p, gz)| head_of(p, *gz) == Some(head))
        .max_by_key(|(t, _, _)| *t)
        .map(|(_, p, gz)| (p, gz))
}

/// The rotated names of `path` in its directory: `name.N`, `name-DATE`
/// (logrotate's `dateext`), each maybe with `.gz`; and whether it is gzipped.
pub(super) fn siblings(path: &Path) -> Vec<(PathBuf, bool)> {
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

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
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
