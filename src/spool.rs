//! On-disk queue of request bodies a receiver has not taken yet, one per sink.
//!
//! Every body is written here before it is sent (the spool is the write-ahead
//! log of `push.rs`), one file per body: written to a temp name, fsynced,
//! renamed. A crash leaves whole records or a temp file, never a torn record
//! in the middle; a record whose checksum fails is skipped and counted, not the
//! whole queue (VictoriaMetrics#11192). Records are sent oldest first, because
//! Prometheus refuses a whole batch for one out-of-order sample.

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::state::sync_dir;

const MAGIC: &[u8; 4] = b"RMS1";
/// magic + created_ms (i64) + len (u32) + crc32 (u32)
const HEADER: usize = 4 + 8 + 4 + 4;

/// One queued body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub created_ms: i64,
    pub body: Vec<u8>,
}

/// What was dropped while opening or appending, for self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Records that failed their checksum or were cut short.
    pub corrupt: u64,
    /// Oldest records removed to stay under `max_bytes`.
    pub overflow: u64,
}

/// A directory of records named by sequence number.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// (seq, file size) of every record, oldest first.
    index: Vec<(u64, u64)>,
    next_seq: u64,
    pub dropped: Dropped,
}

impl Spool {
    /// Opens (creating) the spool in `dir`; temp files of an interrupted write are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Spool> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating spool {}", dir.display()))?;
        let mut index = Vec::new();
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("reading spool {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if let Some(seq) = name
                .strip_suffix(".rec")
                .and_then(|s| s.parse::<u64>().ok())
            {
                index.push((seq, entry.metadata()?.len()));
            }
        }
        index.sort_unstable();
        let next_seq = index.last().map_or(1, |(s, _)| s + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            index,
            next_seq,
            dropped: Dropped::default(),
        })
    }

    fn record_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.rec"))
    }

    /// Appends a body durably, dropping the oldest records if the spool would pass its bound.
    pub fn append(&mut self, body: &[u8], created_ms: i64) -> anyhow::Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&created_ms.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        bytes.extend_from_slice(body);
        let path = self.record_path(seq);
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        };
        write().with_context(|| format!("writing spool record {}", path.display()))?;
        self.index.push((seq, bytes.len() as u64));
        while self.bytes() > self.max_bytes && self.index.len() > 1 {
            let (old, _) = self.index[0];
            tracing::warn!(spool = %self.dir.display(), seq = old, "spool full; dropping its oldest record");
            self.remove(old)?;
            self.dropped.overflow += 1;
        }
        Ok(seq)
    }

    /// The oldest readable record; unreadable ones on the way are removed and counted.
    pub fn oldest(&mut self) -> anyhow::Result<Option<Record>> {
        while let Some(&(seq, _)) = self.index.first() {
            match self.read(seq) {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {
                    tracing::warn!(spool = %self.dir.display(), seq, "corrupt spool record skipped");
                    self.dropped.corrupt += 1;
                    self.remove(seq)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
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
        self.index.retain(|(s, _)| *s != seq);
        Ok(())
    }

    /// Reads a record; `Ok(None)` when it is torn or fails its checksum.
    fn read(&self, seq: u64) -> anyhow::Result<Option<Record>> {
        let path = self.record_path(seq);
        let mut bytes = Vec::new();
        match File::open(&path) {
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
        self.index.iter().map(|(_, n)| n).sum()
    }

    /// Creation time of the oldest record (unix ms), if any.
    pub fn oldest_created_ms(&self) -> Option<i64> {
        let &(seq, _) = self.index.first()?;
        self.read(seq).ok().flatten().map(|r| r.created_ms)
    }
}

/// Parses a record file; `None` when it is not a whole, intact record.
pub fn decode(seq: u64, bytes: &[u8]) -> Option<Record> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let created_ms = i64::from_le_bytes(bytes[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + len)?;
    if bytes.len() != HEADER + len || crc32fast::hash(body) != crc {
        return None;
    }
    Some(Record {
        seq,
        created_ms,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_oldest_first_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(b"one", 1).unwrap();
        s.append(b"two", 2).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let r = s.oldest().unwrap().unwrap();
        assert_eq!((r.body.as_slice(), r.created_ms), (&b"one"[..], 1));
        s.remove(r.seq).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().body, b"two");
        // new records go after the old ones
        let seq = s.append(b"three", 3).unwrap();
        assert!(seq > r.seq + 1);
    }

    #[test]
    fn torn_record_is_skipped_not_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let a = s.append(b"first", 1).unwrap();
        s.append(b"second", 2).unwrap();
        // cut the first record short, as a crash mid-write on a bad disk would
        let p = dir.path().join(format!("{a:020}.rec"));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        std::fs::write(dir.path().join("00000000000000000099.tmp"), b"junk").unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().body, b"second");
        assert_eq!(s.dropped.corrupt, 1);
        assert!(!dir.path().join("00000000000000000099.tmp").exists());
    }

    #[test]
    fn bound_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 3 * (HEADER as u64 + 10)).unwrap();
        for i in 0..5u8 {
            s.append(&[i; 10], i as i64).unwrap();
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.dropped.overflow, 2);
        assert_eq!(s.oldest().unwrap().unwrap().body, vec![2u8; 10]);
    }

    #[test]
    fn decode_rejects_random_bytes() {
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            assert!(decode(1, &junk).is_none());
        }
    }
}
