//! Cutting bytes into lines: a file read to its end (or a byte budget) with
//! complete lines handed out straight from the read buffer, a gzipped copy read
//! at once, the last line of a file that will never get its newline, and the
//! hash of a file's first line that tells files apart.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{FilePos, Open, ReadStats};

/// A line longer than this without a newline is cut and handed out as it is.
const MAX_LINE: usize = 1 << 20;
pub(super) const CHUNK: usize = 1 << 20;

/// How far [`drain`] got.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Drained {
    /// To the end of what the file holds now.
    End,
    /// The byte budget ran out first.
    More,
    /// The file was truncated (copytruncate): its position is still the old one,
    /// for [`super::Tailer::take_copy`], and the file is to be read again from 0.
    Truncated,
}

/// Reads an open file to its end, or until `budget` bytes were read, handing
/// out complete lines straight from `buf` (no copy unless a line straddles two
/// reads). Stops at a truncation (copytruncate) of a file read before.
pub(super) fn drain(
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
            || (pos.head != 0 && head_of_open(&open.file).is_some_and(|h| h != pos.head))
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
pub(super) fn read_gz(
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
pub(super) fn flush_partial(open: &mut Open, on_line: &mut dyn FnMut(&str), stats: &mut ReadStats) {
    if !open.partial.is_empty() {
        emit(&open.partial, on_line);
        stats.lines += 1;
        open.pos.offset += open.partial.len() as u64;
        open.partial.clear();
    }
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

/// How many bytes of a file's start are read for [`first_line`].
const HEAD: usize = 4096;

/// Hash of the first line in a file's first [`HEAD`] bytes; `None` while it
/// has no complete line. [`fnv1a`] looks at 4095 bytes at most, so a longer
/// first line counts as complete.
fn first_line(bytes: &[u8]) -> Option<u64> {
    match memchr::memchr(b'\n', bytes) {
        Some(i) => Some(fnv1a(&bytes[..i])),
        None if bytes.len() >= HEAD - 1 => Some(fnv1a(bytes)),
        None => None,
    }
}

/// [`first_line`] of an open file, read at 0 without moving its cursor.
pub(super) fn head_of_open(file: &File) -> Option<u64> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = [0u8; HEAD];
    let n = file.read_at(&mut buf, 0).ok()?;
    first_line(&buf[..n])
}

/// [`first_line`] of the file at `path`, through gzip when `gz`; `None` when it
/// cannot be read.
pub(super) fn head_of(path: &Path, gz: bool) -> Option<u64> {
    let file = File::open(path).ok()?;
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut buf = [0u8; HEAD];
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    first_line(&buf[..n])
}

/// FNV-1a 64: a stable hash (std's hasher may change between releases).
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let bytes = &bytes[..bytes.len().min(4095)];
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
