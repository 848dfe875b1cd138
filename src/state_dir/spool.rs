//! On-disk queue of request bodies a receiver has not taken yet, one per sink.
//!
//! Every body is written here before it is sent (the spool is the write-ahead
//! log of `agent/mod.rs`), one file per body: written to a temp name, fsynced,
//! renamed. A crash leaves whole records or a temp file, never a torn record
//! in the middle; a record whose checksum fails is skipped and counted, not the
//! whole queue (VictoriaMetrics#11192). Records are sent oldest first, because
//! Prometheus refuses a whole batch for one out-of-order sample.
//!
//! Record layout: magic `RMS3`, created_ms (i64 LE), samples (u32 LE), body
//! length (u32 LE), note length (u32 LE), crc32 of those four fields, the body
//! and the note (u32 LE), body, note. The note is the sink's own bookkeeping
//! that must become true exactly when the body is queued (statsd: the values
//! its deltas were taken against), so one rename commits both. `RMS2` records
//! (no note length, no note) of earlier versions are still read.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::safe_fs;

const MAGIC: &[u8; 4] = b"RMS3";
/// magic + created_ms (i64) + samples (u32) + len (u32) + note len (u32) + crc32 (u32)
const HEADER: usize = 4 + 8 + 4 + 4 + 4 + 4;
/// Records of rme before notes: no note length.
const MAGIC_V2: &[u8; 4] = b"RMS2";
const HEADER_V2: usize = 4 + 8 + 4 + 4 + 4;
/// The highest record number rme reads: a name past it (up to `u64::MAX`, which
/// has no successor) is corrupt, dropped and counted like a bad checksum. At one
/// record a millisecond rme would take 290 million years to get there.
const MAX_SEQ: u64 = u64::MAX / 2;

/// One queued body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub created_ms: i64,
    /// Samples the body carries, for the sent/rejected/dropped counts.
    pub samples: u64,
    pub body: Vec<u8>,
    /// The sink's bookkeeping committed with the body (empty for most sinks).
    pub note: Vec<u8>,
}

/// What was dropped while opening or appending, for self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Records that failed their checksum or were cut short.
    pub corrupt: u64,
    /// Oldest records removed to stay under `max_bytes`.
    pub overflow: u64,
    /// Samples in the dropped records, as far as their headers tell.
    pub samples: u64,
}

/// What the index knows of a record without reading its body.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    bytes: u64,
    /// From the header; `None` if the header is unreadable (the record is then skipped as corrupt).
    created_ms: Option<i64>,
    samples: u64,
}

/// A directory of records named by sequence number.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Every record, oldest first.
    index: Vec<Entry>,
    next_seq: u64,
    pub dropped: Dropped,
}

impl Spool {
    /// Opens (creating, mode 0700) the spool in `dir`; temp files of an interrupted
    /// write are removed. `dir` and its parent must be real directories only rme's
    /// user can write (a symlink there is refused: records are deleted in it).
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Spool> {
        for d in dir.parent().into_iter().chain([dir]) {
            safe_fs::create_dir_private(d, false)
                .with_context(|| format!("spool {}", d.display()))?;
        }
        let mut index = Vec::new();
        let mut dropped = Dropped::default();
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("reading spool {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(safe_fs::TEMP_SUFFIX) {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if let Some(seq) = name
                .strip_suffix(".rec")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let (created_ms, samples) = read_header(&entry.path()).unwrap_or((None, 0));
                if seq > MAX_SEQ {
                    // rme never numbers a record this high: corrupt (or planted).
                    tracing::warn!(spool = %dir.display(), seq, "spool record numbered past {MAX_SEQ} skipped as corrupt");
                    dropped.corrupt += 1;
                    dropped.samples += samples;
                    let _ = std::fs::remove_file(entry.path());
                    continue;
                }
                index.push(Entry {
                    seq,
                    bytes: entry.metadata()?.len(),
                    created_ms,
                    samples,
                });
            }
        }
        index.sort_unstable_by_key(|e| e.seq);
        // At most MAX_SEQ + 1: no overflow however the names were chosen.
        let next_seq = index.last().map_or(1, |e| e.seq + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            index,
            next_seq,
            dropped,
        })
    }

    fn record_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.rec"))
    }

    /// Appends a body durably, dropping the oldest records if the spool would pass its bound.
    pub fn append(&mut self, body: &[u8], samples: u64, created_ms: i64) -> anyhow::Result<u64> {
        self.append_noted(body, &[], samples, created_ms)
    }

    /// [`Spool::append`] with the sink's note in the same record (one rename commits both).
    pub fn append_noted(
        &mut self,
        body: &[u8],
        note: &[u8],
        samples: u64,
        created_ms: i64,
    ) -> anyhow::Result<u64> {
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).context("spool sequence exhausted")?;
        let len = u32::try_from(body.len()).context("spool record over 4 GiB")?;
        let note_len = u32::try_from(note.len()).context("spool note over 4 GiB")?;
        let samples = u32::try_from(samples).unwrap_or(u32::MAX);
        let mut bytes = Vec::with_capacity(HEADER + body.len() + note.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&created_ms.to_le_bytes());
        bytes.extend_from_slice(&samples.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&note_len.to_le_bytes());
        let crc = checksum(&bytes[4..HEADER - 4], &[body, note]);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(note);
        let path = self.record_path(seq);
        safe_fs::write_atomic(&path, &bytes)
            .with_context(|| format!("writing spool record {}", path.display()))?;
        self.index.push(Entry {
            seq,
            bytes: bytes.len() as u64,
            created_ms: Some(created_ms),
            samples: u64::from(samples),
        });
        while self.bytes() > self.max_bytes && self.index.len() > 1 {
            let old = self.index[0];
            tracing::warn!(spool = %self.dir.display(), seq = old.seq, samples = old.samples, "spool full; dropping its oldest record");
            self.remove(old.seq)?;
            self.dropped.overflow += 1;
            self.dropped.samples += old.samples;
        }
        Ok(seq)
    }

    /// Appends every body of one flush, or none: on a failure (disk full) the ones
    /// already written are removed again, so the caller can encode them anew later.
    /// Each item is a body, its note (see [`Spool::append_noted`]) and its samples.
    pub fn append_all<'a>(
        &mut self,
        bodies: impl IntoIterator<Item = (&'a [u8], &'a [u8], u64)>,
        created_ms: i64,
    ) -> anyhow::Result<Vec<u64>> {
        let mut done = Vec::new();
        for (body, note, samples) in bodies {
            match self.append_noted(body, note, samples, created_ms) {
                Ok(seq) => done.push(seq),
                Err(e) => {
                    // the failed one too: its rename may have happened before the error
                    let failed = self.next_seq - 1;
                    for seq in done.into_iter().chain([failed]) {
                        let _ = self.remove(seq);
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// The oldest readable record; unreadable ones on the way are removed and counted.
    pub fn oldest(&mut self) -> anyhow::Result<Option<Record>> {
        while let Some(&Entry { seq, samples, .. }) = self.index.first() {
            match self.read(seq) {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => self.drop_corrupt(seq, samples)?,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The notes of every readable record, oldest first (a sink replays them
    /// over its saved state when it starts). Reading every record, it removes
    /// the unreadable ones and counts them in [`Spool::dropped`] now, so the
    /// run that finds them reports them (`push --once` included).
    pub fn notes(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut notes = Vec::new();
        let mut corrupt = Vec::new();
        for e in &self.index {
            match self.read(e.seq)? {
                Some(r) if !r.note.is_empty() => notes.push(r.note),
                Some(_) => {}
                None => corrupt.push((e.seq, e.samples)),
            }
        }
        for (seq, samples) in corrupt {
            self.drop_corrupt(seq, samples)?;
        }
        Ok(notes)
    }

    /// Removes a record that failed its checksum or was cut short, and counts it.
    fn drop_corrupt(&mut self, seq: u64, samples: u64) -> anyhow::Result<()> {
        tracing::warn!(spool = %self.dir.display(), seq, "corrupt spool record skipped");
        self.dropped.corrupt += 1;
        self.dropped.samples += samples;
        self.remove(seq)
    }

    /// Removes a record once the receiver took it (or refused it for good).
    pub fn remove(&mut self, seq: u64) -> anyhow::Result<()> {
        let path = self.record_path(seq);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing spool record {}", path.display()));
            }
        }
        self.index.retain(|e| e.seq != seq);
        Ok(())
    }

    /// Reads a record; `Ok(None)` when it is torn or fails its checksum.
    fn read(&self, seq: u64) -> anyhow::Result<Option<Record>> {
        let path = self.record_path(seq);
        let mut bytes = Vec::new();
        match safe_fs::open_nofollow(&path) {
            Ok(mut f) => f
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading spool record {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("opening spool record {}", path.display()));
            }
        };
        Ok(decode(seq, &bytes))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.index.iter().map(|e| e.bytes).sum()
    }

    /// Creation time of the oldest record (unix ms) with a readable header, if any.
    pub fn oldest_created_ms(&self) -> Option<i64> {
        self.index.iter().find_map(|e| e.created_ms)
    }

    /// Samples waiting in the spool, as the record headers say.
    pub fn samples(&self) -> u64 {
        self.index.iter().map(|e| e.samples).sum()
    }
}

/// crc32 of the header fields after the magic, then the body (and note).
fn checksum(fields: &[u8], parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(fields);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// created_ms and samples from a record's header, without reading the body.
fn read_header(path: &Path) -> Option<(Option<i64>, u64)> {
    let mut head = [0u8; HEADER_V2];
    safe_fs::open_nofollow(path)
        .ok()?
        .read_exact(&mut head)
        .ok()?;
    if &head[..4] != MAGIC && &head[..4] != MAGIC_V2 {
        return None;
    }
    let created = i64::from_le_bytes(head[4..12].try_into().ok()?);
    let samples = u32::from_le_bytes(head[12..16].try_into().ok()?);
    Some((Some(created), u64::from(samples)))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a record file; `None` when it is not a whole, intact record.
pub fn decode(seq: u64, bytes: &[u8]) -> Option<Record> {
    // RMS2's checksum covers created_ms and samples (not the length).
    let (header, note_len, fields_end) = match bytes.get(..4)? {
        m if m == MAGIC => (HEADER, u32_at(bytes, 20)? as usize, HEADER - 4),
        m if m == MAGIC_V2 => (HEADER_V2, 0, 16),
        _ => return None,
    };
    let created_ms = i64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?);
    let samples = u32_at(bytes, 12)?;
    let len = u32_at(bytes, 16)? as usize;
    let crc = u32_at(bytes, header - 4)?;
    let body_end = header.checked_add(len)?;
    let end = body_end.checked_add(note_len)?;
    if bytes.len() != end {
        return None;
    }
    let (body, note) = (&bytes[header..body_end], &bytes[body_end..end]);
    if checksum(&bytes[4..fields_end], &[body, note]) != crc {
        return None;
    }
    Some(Record {
        seq,
        created_ms,
        samples: u64::from(samples),
        body: body.to_vec(),
        note: note.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_oldest_first_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        s.append(b"one", 1, 1).unwrap();
        s.append(b"two", 2, 2).unwrap();
        drop(s);
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        let r = s.oldest().unwrap().unwrap();
        assert_eq!((r.body.as_slice(), r.created_ms), (&b"one"[..], 1));
        s.remove(r.seq).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().body, b"two");
        // new records go after the old ones
        let seq = s.append(b"three", 3, 3).unwrap();
        assert!(seq > r.seq + 1);
    }

    #[test]
    fn torn_record_is_skipped_not_the_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        let a = s.append(b"first", 1, 1).unwrap();
        s.append(b"second", 2, 2).unwrap();
        // cut the first record short, as a crash mid-write on a bad disk would
        let p = dir.join(format!("{a:020}.rec"));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        std::fs::write(dir.join("00000000000000000099.tmp"), b"junk").unwrap();
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().body, b"second");
        assert_eq!(s.dropped.corrupt, 1);
        assert_eq!(
            s.dropped.samples, 1,
            "the intact header still tells its sample count"
        );
        assert!(!dir.join("00000000000000000099.tmp").exists());
    }

    #[test]
    fn bound_drops_oldest_and_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let mut s = Spool::open(&dir, 3 * (HEADER as u64 + 10)).unwrap();
        for i in 0..5u8 {
            s.append(&[i; 10], 7, i as i64).unwrap();
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.dropped.overflow, 2);
        assert_eq!(s.dropped.samples, 14);
        assert_eq!(s.samples(), 21);
        assert_eq!(s.oldest().unwrap().unwrap().body, vec![2u8; 10]);
    }

    #[test]
    fn torn_newest_record_keeps_the_older_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        s.append(b"first", 3, 10).unwrap();
        s.append(b"second", 4, 20).unwrap();
        let c = s.append(b"third", 5, 30).unwrap();
        let p = dir.join(format!("{c:020}.rec"));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..HEADER / 2]).unwrap();
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.oldest_created_ms(), Some(10));
        assert_eq!(s.samples(), 7);
        let mut got = Vec::new();
        while let Some(r) = s.oldest().unwrap() {
            got.push((r.body.clone(), r.samples));
            s.remove(r.seq).unwrap();
        }
        assert_eq!(got, [(b"first".to_vec(), 3), (b"second".to_vec(), 4)]);
        assert_eq!(s.dropped.corrupt, 1);
        assert_eq!(s.dropped.samples, 0, "a torn header tells nothing");
    }

    #[test]
    fn checksum_covers_the_header() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        let a = s.append(b"body", 9, 1000).unwrap();
        let p = dir.join(format!("{a:020}.rec"));
        let mut bytes = std::fs::read(&p).unwrap();
        assert!(decode(a, &bytes).is_some());
        for i in 4..HEADER {
            bytes[i] ^= 0x10;
            assert!(
                decode(a, &bytes).is_none(),
                "flipped byte {i} went unnoticed"
            );
            bytes[i] ^= 0x10;
        }
    }

    #[test]
    fn notes_travel_with_their_bodies_and_old_records_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append_noted(b"one", b"n1", 1, 1).unwrap();
        s.append(b"two", 2, 2).unwrap();
        s.append_noted(b"three", b"n3", 3, 3).unwrap();
        // a record as rme wrote it before notes (RMS2)
        let mut v2 = Vec::new();
        v2.extend_from_slice(MAGIC_V2);
        v2.extend_from_slice(&4i64.to_le_bytes());
        v2.extend_from_slice(&4u32.to_le_bytes());
        v2.extend_from_slice(&4u32.to_le_bytes());
        let crc = checksum(&v2[4..16], &[b"four"]);
        v2.extend_from_slice(&crc.to_le_bytes());
        v2.extend_from_slice(b"four");
        std::fs::write(dir.path().join(format!("{:020}.rec", 99)), &v2).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.notes().unwrap(), [b"n1".to_vec(), b"n3".to_vec()]);
        let mut got = Vec::new();
        while let Some(r) = s.oldest().unwrap() {
            got.push((r.body.clone(), r.note.clone(), r.samples));
            s.remove(r.seq).unwrap();
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], (b"four".to_vec(), Vec::new(), 4));
        assert_eq!(got[2].1, b"n3");
    }

    /// F15: a record named `u64::MAX` (no successor) panicked a debug build at
    /// every start; names past MAX_SEQ are corrupt, dropped and counted.
    #[test]
    fn a_record_numbered_past_the_bound_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let kept = s.append(b"kept", 2, 1).unwrap();
        let bytes = std::fs::read(s.record_path(kept)).unwrap();
        for seq in [u64::MAX, u64::MAX / 2 + 1] {
            std::fs::write(dir.path().join(format!("{seq}.rec")), &bytes).unwrap();
        }
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.dropped.corrupt, 2);
        assert_eq!(s.dropped.samples, 4, "their headers were intact");
        assert_eq!(s.len(), 1);
        let next = s.append(b"next", 1, 2).unwrap();
        assert_eq!(next, kept + 1);
        assert_eq!(s.oldest().unwrap().unwrap().body, b"kept");
        assert!(!dir.path().join(format!("{}.rec", u64::MAX)).exists());
    }

    /// F18: the notes are read at start, so a corrupt record found there is
    /// dropped and counted then, before the run's first flush takes the counts.
    #[test]
    fn reading_the_notes_counts_corrupt_records_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let bad = s.append_noted(b"bad", b"n0", 5, 1).unwrap();
        s.append_noted(b"good", b"n1", 1, 2).unwrap();
        let p = s.record_path(bad);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.notes().unwrap(), [b"n1".to_vec()]);
        assert_eq!((s.dropped.corrupt, s.dropped.samples), (1, 5));
        assert_eq!(s.len(), 1);
        assert!(!p.exists());
    }

    #[test]
    fn decode_rejects_random_bytes() {
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            assert!(decode(1, &junk).is_none());
        }
    }
}
