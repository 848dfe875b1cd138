//! The state file: where each source stopped reading and what each counter
//! held, so counters stay monotonic and no line is counted twice across
//! restarts and `push --once` runs.
//!
//! It is written in proportion to what changed. Two files in the state
//! directory, both a header (magic, version) then checksummed frames:
//!
//! - `state.journal`: one frame per save, appended and fsynced, holding the
//!   counters that moved since the last save (`Val` records: id, value,
//!   start), the label set of each counter new since then (`Def`: id, name,
//!   labels; written once), the ids of counters idle expiry forgot
//!   (`Forget`), and the read positions and sink bookkeeping when they
//!   changed (`Meta`, JSON). One frame is one save: positions and counters
//!   always come back together, and a torn frame at the end (a crash while
//!   appending) is cut off on the next start, leaving the save before.
//! - `state.checkpoint`: the whole state as one frame, written atomically
//!   (temp file, fsync, rename, fsync of the directory) when the journal has
//!   grown larger than the checkpoint; ids are given anew there and the
//!   journal starts over. Each frame carries a sequence number, so journal
//!   frames older than the checkpoint (a crash between the two steps) are
//!   skipped.
//!
//! Frames are deflated (label sets repeat their names). The state of rme
//! 0.1, one pretty-printed `state.json`, is read on the first start and
//! turned into a checkpoint at the first save, then kept as
//! `state.json.migrated`. `rme state` prints the state as that JSON.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::inputs::SourceState;
use crate::store::{Changed, NOT_SAVED, SavedCounter, Series, SlotRef, Store};
use crate::varint;

use super::{CHECKPOINT, JOURNAL, JSON_STATE, MIGRATED_JSON, safe_fs};

const CHECKPOINT_MAGIC: &[u8; 8] = b"RMESTATE";
const JOURNAL_MAGIC: &[u8; 8] = b"RMEJOURN";
/// Version of the two files above (1 was `state.json`).
const VERSION: u32 = 2;
/// The journal may grow to this before a checkpoint replaces it, even when the checkpoint is smaller.
const MIN_JOURNAL_BYTES: u64 = 1 << 20;
/// A frame's records may inflate to 64 times the frame's size, or to this when
/// that is more. rme's own frames inflate about 13 times (a checkpoint of
/// 100 000 label sets: 9 MB of records, 0.7 MB deflated); a frame that
/// inflates further is corrupt (a deflate bomb: 1 MB of file can inflate to
/// 1 GiB) and ends the file there.
pub const MIN_INFLATE_BOUND: usize = 64 << 20;
/// See [`MIN_INFLATE_BOUND`].
const MAX_INFLATE_RATIO: usize = 64;

/// Restored counters skipped because their names could not come from rme.
pub const SKIPPED: crate::store::Metric = crate::store::Metric::counter(
    "rme_state_counters_skipped_total",
    "Counters in the state file not restored because a metric or label name is not valid (a corrupt or hostile state file).",
);

/// The whole state as people (and rme 0.1's `state.json`) read it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceState>,
    #[serde(default)]
    pub counters: Vec<SavedCounter>,
    /// Per-sink bookkeeping (statsd's last sent values), keyed by sink name.
    #[serde(default)]
    pub sinks: BTreeMap<String, serde_json::Value>,
}

/// Read positions and sink bookkeeping: the `Meta` record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Meta {
    sources: BTreeMap<String, SourceState>,
    sinks: BTreeMap<String, serde_json::Value>,
}

/// What a state directory held at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub sources: BTreeMap<String, SourceState>,
    pub sinks: BTreeMap<String, serde_json::Value>,
    /// Counters with the id the state file knows each by ([`NOT_SAVED`] after a migration).
    pub counters: Vec<(u32, SavedCounter)>,
}

impl Loaded {
    /// rme 0.1's `state.json`, its counters not in the state file yet.
    fn migrated(old: State) -> Loaded {
        Loaded {
            sources: old.sources,
            sinks: old.sinks,
            counters: old.counters.into_iter().map(|c| (NOT_SAVED, c)).collect(),
        }
    }

    /// Puts the counters into a fresh store, before any source runs. A counter
    /// whose metric or label names are not valid Prometheus names (or repeat a
    /// label) could not come from rme: it is skipped, logged and counted in
    /// `rme_state_counters_skipped_total`, never written into an exposition.
    pub fn restore_into(&mut self, store: &mut Store) {
        store.describe(&SKIPPED);
        let mut skipped = 0u64;
        for (id, c) in std::mem::take(&mut self.counters) {
            if valid_names(&c.series) {
                store.restore_counter(c.series, c.value, c.start_ms, id);
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "state file: counters with names rme cannot have were skipped (a corrupt or hostile state file)"
            );
        }
        store.inc(Series::new(SKIPPED.name, &[]), skipped);
    }

    pub fn into_state(self) -> State {
        State {
            version: VERSION,
            sources: self.sources,
            counters: self.counters.into_iter().map(|(_, c)| c).collect(),
            sinks: self.sinks,
        }
    }
}

/// The open state directory; [`StateFile::save`] writes what changed.
#[derive(Debug)]
pub struct StateFile {
    dir: PathBuf,
    journal: Option<File>,
    journal_bytes: u64,
    checkpoint_bytes: u64,
    /// Sequence number of the last frame written.
    seq: u64,
    next_id: u32,
    /// The `Meta` last written, to write it again only when it changed.
    meta: Option<Meta>,
    /// The next save writes a checkpoint.
    checkpoint_due: bool,
    /// `state.json` was read: renamed once the first checkpoint holds it.
    migrated: bool,
    /// The journal may grow to this before a checkpoint replaces it, even when the checkpoint is smaller.
    min_journal_bytes: u64,
}

/// A decoded frame: its sequence number and records.
type Frame = (u64, Vec<Record>);

/// One decoded record.
enum Record {
    Def(u32, Series),
    Val(u32, u64, i64),
    Forget(u32),
    Meta(Meta),
}

/// The state being read back, frame after frame: counters by id, and the
/// last `Meta` (positions and sink bookkeeping).
#[derive(Default)]
struct Replay {
    counters: BTreeMap<u32, SavedCounter>,
    meta: Meta,
}

impl Replay {
    fn apply(&mut self, records: Vec<Record>) {
        for r in records {
            match r {
                Record::Def(id, series) => {
                    let c = SavedCounter {
                        series,
                        value: 0,
                        start_ms: 0,
                    };
                    self.counters.insert(id, c);
                }
                Record::Val(id, value, start_ms) => {
                    if let Some(c) = self.counters.get_mut(&id) {
                        c.value = value;
                        c.start_ms = start_ms;
                    }
                }
                Record::Forget(id) => {
                    self.counters.remove(&id);
                }
                Record::Meta(m) => self.meta = m,
            }
        }
    }

    fn into_loaded(self) -> Loaded {
        Loaded {
            sources: self.meta.sources,
            sinks: self.meta.sinks,
            counters: self.counters.into_iter().collect(),
        }
    }
}

impl StateFile {
    /// Reads the state directory (an empty state when there is none yet),
    /// cutting a torn frame off the journal's end.
    pub fn open(dir: &Path) -> anyhow::Result<(StateFile, Loaded)> {
        let mut file = StateFile {
            dir: dir.to_path_buf(),
            journal: None,
            journal_bytes: 0,
            checkpoint_bytes: 0,
            seq: 0,
            next_id: 0,
            meta: None,
            checkpoint_due: false,
            migrated: false,
            min_journal_bytes: MIN_JOURNAL_BYTES,
        };
        let mut replay = Replay::default();
        let checkpoint = dir.join(CHECKPOINT);
        match read_file(&checkpoint, CHECKPOINT_MAGIC)? {
            Some((frames, len)) => {
                let (seq, records) = frames
                    .into_iter()
                    .next()
                    .with_context(|| {
                        format!(
                            "state file {}: no intact frame (torn, corrupt, or inflating past its bound); move it away to start over",
                            checkpoint.display()
                        )
                    })?;
                file.seq = seq;
                file.checkpoint_bytes = len;
                replay.apply(records);
            }
            None => {
                if let Some(old) = read_json(&dir.join(JSON_STATE))? {
                    file.checkpoint_due = true;
                    file.migrated = true;
                    return Ok((file, Loaded::migrated(old)));
                }
            }
        }
        file.replay_journal(&mut replay)?;
        file.next_id = replay.counters.keys().next_back().map_or(0, |k| k + 1);
        file.meta = Some(replay.meta.clone());
        Ok((file, replay.into_loaded()))
    }

    /// Applies the journal's frames newer than the checkpoint, cuts a torn
    /// frame off its end, and keeps it open for the next saves.
    fn replay_journal(&mut self, replay: &mut Replay) -> anyhow::Result<()> {
        let journal = self.dir.join(JOURNAL);
        let Some((frames, good)) = read_file(&journal, JOURNAL_MAGIC)? else {
            return Ok(());
        };
        for (seq, records) in frames {
            if seq > self.seq {
                self.seq = seq;
                replay.apply(records);
            }
        }
        let f = open_append(&journal)
            .with_context(|| format!("opening state file {}", journal.display()))?;
        if f.metadata()?.len() > good {
            tracing::warn!(file = %journal.display(), "state journal ends in a torn frame (a crash while saving); continuing from the save before it");
            f.set_len(good)?;
        }
        self.journal = Some(f);
        self.journal_bytes = good;
        Ok(())
    }

    /// Writes what changed in the store since the last save: [`StateFile::prepare`],
    /// [`StateFile::commit`] and [`StateFile::settle`] in one go.
    pub fn save(
        &mut self,
        store: &mut Store,
        sources: &BTreeMap<String, SourceState>,
        sinks: &BTreeMap<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        let mut pending = self.prepare(store, sources);
        let result = self.commit(&mut pending, sinks);
        StateFile::settle(store, pending, result.is_ok());
        result
    }

    /// Takes what changed from the store (under the lock that also guards
    /// `sources`, so counters and positions agree): a journal frame, or the
    /// whole state when a checkpoint is due.
    pub fn prepare(
        &mut self,
        store: &mut Store,
        sources: &BTreeMap<String, SourceState>,
    ) -> Pending {
        let full = self.checkpoint_due || (self.journal.is_none() && self.checkpoint_bytes == 0);
        if full {
            store.mark_all_changed();
        }
        let (changed, forgotten) = store.take_changes();
        let mut pending = Pending {
            raw_len: 0,
            changed,
            forgotten,
            new_ids: Vec::new(),
            next_id: if full { 0 } else { self.next_id },
            sources: sources.clone(),
            full,
        };
        pending.number();
        if !full {
            // Deflated, a large frame is a quarter of its records or less; a small one is not.
            let estimate = pending.raw_len as u64 / 2 + 16;
            if self.journal_bytes + estimate > self.checkpoint_bytes.max(self.min_journal_bytes) {
                store.unwrite(&pending.changed, std::mem::take(&mut pending.forgotten));
                self.checkpoint_due = true;
                let again = self.prepare(store, sources);
                self.checkpoint_due = false;
                return again;
            }
        }
        pending
    }

    /// Writes a prepared save (no lock needed): a journal frame appended and
    /// fsynced, or a checkpoint written atomically and the journal started over.
    pub fn commit(
        &mut self,
        pending: &mut Pending,
        sinks: &BTreeMap<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        let meta = Meta {
            sources: std::mem::take(&mut pending.sources),
            sinks: sinks.clone(),
        };
        let seq = self.seq + 1;
        let new_meta = pending.full || self.meta.as_ref() != Some(&meta);
        let frame = pending.frame(seq, new_meta.then_some(&meta))?;
        if pending.full {
            let mut bytes = Vec::with_capacity(frame.len() + 12);
            bytes.extend_from_slice(CHECKPOINT_MAGIC);
            bytes.extend_from_slice(&VERSION.to_le_bytes());
            bytes.extend_from_slice(&frame);
            let path = self.dir.join(CHECKPOINT);
            write_atomic(&path, &bytes)
                .with_context(|| format!("writing state file {}", path.display()))?;
            // The old journal's frames are older than the checkpoint: start it over.
            let journal = self.dir.join(JOURNAL);
            self.journal = None;
            let f = new_journal(&journal)
                .with_context(|| format!("writing state file {}", journal.display()))?;
            self.journal = Some(f);
            self.journal_bytes = (JOURNAL_MAGIC.len() + 4) as u64;
            self.checkpoint_bytes = bytes.len() as u64;
            if self.migrated {
                let old = self.dir.join(JSON_STATE);
                let _ = std::fs::rename(&old, self.dir.join(MIGRATED_JSON));
                self.migrated = false;
            }
            self.checkpoint_due = false;
        } else {
            self.append(&frame)?;
        }
        self.next_id = pending.next_id;
        self.seq = seq;
        self.meta = Some(meta);
        Ok(())
    }

    /// Back under the store's lock: gives new counters their ids, or puts
    /// the changes back when the write failed so the next save carries them.
    pub fn settle(store: &mut Store, pending: Pending, written: bool) {
        if written {
            for (c, id) in pending.new_ids {
                store.set_saved_id(c, id);
            }
        } else {
            store.unwrite(&pending.changed, pending.forgotten);
        }
    }

    fn append(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(JOURNAL);
        let f = match &mut self.journal {
            Some(f) => f,
            None => self.journal.insert(new_journal(&path)?),
        };
        f.write_all(frame)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("writing state file {}", path.display()))?;
        self.journal_bytes += frame.len() as u64;
        Ok(())
    }
}

/// A save taken from the store, not yet written: its records are encoded at
/// commit, outside the store's lock, straight into the deflater (a checkpoint
/// of 100 000 label sets is 9 MB of records before deflate, 0.7 MB after).
#[derive(Debug)]
pub struct Pending {
    /// Bytes of the records (without the sequence number and meta) before deflate.
    raw_len: usize,
    changed: Vec<Changed>,
    forgotten: Vec<u32>,
    /// Counters first written by this save, with the id they get.
    new_ids: Vec<(SlotRef, u32)>,
    next_id: u32,
    sources: BTreeMap<String, SourceState>,
    /// A checkpoint: every counter, ids from 0.
    full: bool,
}

impl Pending {
    /// Whether this save writes `c`'s label set (and gives it a new id): every
    /// counter in a checkpoint, counters the state file does not hold yet in a frame.
    fn first_written(&self, c: &Changed) -> bool {
        self.full || c.saved_id == NOT_SAVED
    }

    /// Gives each counter first written by this save its id, and sizes the records.
    fn number(&mut self) {
        let mut len = 0;
        for c in &self.changed {
            let id = if self.first_written(c) {
                let id = self.next_id;
                self.next_id += 1;
                len += def_len(id, &c.series);
                self.new_ids.push((c.slot, id));
                id
            } else {
                c.saved_id
            };
            len += val_len(id, c.value, c.start_ms);
        }
        if !self.full {
            len += self
                .forgotten
                .iter()
                .map(|&id| 1 + varint::len(u64::from(id)))
                .sum::<usize>();
        }
        self.raw_len = len;
    }

    /// The frame of this save: the sequence number, the records and `meta`,
    /// deflated as they are encoded (64 KiB at a time).
    fn frame(&self, seq: u64, meta: Option<&Meta>) -> anyhow::Result<Vec<u8>> {
        use flate2::write::DeflateEncoder;
        const STEP: usize = 64 << 10;
        let mut enc = DeflateEncoder::new(
            Vec::with_capacity(self.raw_len / 8 + 64),
            flate2::Compression::fast(),
        );
        let mut buf = Vec::with_capacity(STEP + 1024);
        put_u64(&mut buf, seq);
        let mut new_ids = self.new_ids.iter();
        for c in &self.changed {
            let id = if self.first_written(c) {
                let &(_, id) = new_ids.next().expect("numbered in prepare");
                put_def(&mut buf, id, &c.series);
                id
            } else {
                c.saved_id
            };
            put_val(&mut buf, id, c.value, c.start_ms);
            if buf.len() >= STEP {
                enc.write_all(&buf)?;
                buf.clear();
            }
        }
        if !self.full {
            for &id in &self.forgotten {
                buf.push(TAG_FORGET);
                varint::put(&mut buf, u64::from(id));
            }
        }
        if let Some(meta) = meta {
            put_meta(&mut buf, meta)?;
        }
        enc.write_all(&buf)?;
        Ok(frame_of(&enc.finish()?))
    }
}

/// A new, empty journal (header only), replacing any old one atomically.
fn new_journal(path: &Path) -> std::io::Result<File> {
    let mut header = JOURNAL_MAGIC.to_vec();
    header.extend_from_slice(&VERSION.to_le_bytes());
    write_atomic(path, &header)?;
    open_append(path)
}

/// The state file's one atomic write: a crash leaves the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    safe_fs::write_atomic(path, bytes)
}

/// The journal opened for appending; a symlink in its place is an error, as
/// everywhere in the state directory.
fn open_append(path: &Path) -> std::io::Result<File> {
    safe_fs::open_append(path)
}

/// Reads rme 0.1's `state.json`, if there is one (a symlink there is an error).
fn read_json(path: &Path) -> anyhow::Result<Option<State>> {
    let mut text = String::new();
    match safe_fs::open_nofollow(path) {
        Ok(mut f) => f
            .read_to_string(&mut text)
            .with_context(|| format!("reading state file {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading state file {}", path.display())),
    };
    let state: State = serde_json::from_str(&text)
        .with_context(|| format!("reading state file {}", path.display()))?;
    if state.version != 1 {
        anyhow::bail!(
            "state file {}: version {} is not the 1 this rme migrates",
            path.display(),
            state.version
        );
    }
    Ok(Some(state))
}

/// Frames of a checkpoint or journal and the length of its intact part;
/// `None` when the file does not exist. A bad header is an error; a torn or
/// corrupt frame ends the file there.
fn read_file(path: &Path, magic: &[u8; 8]) -> anyhow::Result<Option<(Vec<Frame>, u64)>> {
    let mut bytes = Vec::new();
    match safe_fs::open_nofollow(path) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading state file {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading state file {}", path.display())),
    };
    let header = magic.len() + 4;
    if bytes.len() < header || &bytes[..magic.len()] != magic {
        anyhow::bail!("state file {}: not an rme state file", path.display());
    }
    let version = u32::from_le_bytes(bytes[magic.len()..header].try_into().unwrap_or_default());
    if version != VERSION {
        anyhow::bail!(
            "state file {}: version {version} is not the {VERSION} this rme writes",
            path.display()
        );
    }
    let mut at = header;
    let mut frames = Vec::new();
    while let Some((raw, next)) = unframe(&bytes, at) {
        match decode(&raw) {
            Some(f) => frames.push(f),
            None => break,
        }
        at = next;
    }
    Ok(Some((frames, at as u64)))
}

const TAG_DEF: u8 = 1;
const TAG_VAL: u8 = 2;
const TAG_FORGET: u8 = 3;
const TAG_META: u8 = 4;

/// `[len u32][crc32 u32][deflated records]`, around records already deflated.
fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The frame at `at`, inflated, and where the next one starts; `None` when it
/// is torn, fails its checksum or inflates past its bound ([`MIN_INFLATE_BOUND`]).
fn unframe(bytes: &[u8], at: usize) -> Option<(Vec<u8>, usize)> {
    let head = bytes.get(at..at + 8)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    let body = bytes.get(at + 8..at + 8 + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let limit = len.saturating_mul(MAX_INFLATE_RATIO).max(MIN_INFLATE_BOUND);
    let mut raw = Vec::with_capacity(len.saturating_mul(4).min(limit));
    flate2::read::DeflateDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut raw)
        .ok()?;
    if raw.len() > limit {
        tracing::warn!(
            limit,
            "state file: a frame inflates past the bound; treated as corrupt"
        );
        return None;
    }
    Some((raw, at + 8 + len))
}

/// Whether a restored series has names the exposition formats can carry as
/// they are: a metric name `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
/// `[a-zA-Z_][a-zA-Z0-9_]*` not reserved (`__…`), each label once.
fn valid_names(series: &Series) -> bool {
    fn name(s: &str, colon: bool) -> bool {
        let ok = |c: u8, first: bool| {
            c.is_ascii_alphabetic()
                || c == b'_'
                || (colon && c == b':')
                || (!first && c.is_ascii_digit())
        };
        let b = s.as_bytes();
        !b.is_empty() && b.iter().enumerate().all(|(i, &c)| ok(c, i == 0))
    }
    let mut last: Option<&str> = None;
    name(series.name(), true)
        && series.labels().all(|(k, _)| {
            let fresh = last != Some(k);
            last = Some(k);
            fresh && name(k, false) && !k.starts_with("__")
        })
}

fn decode(raw: &[u8]) -> Option<Frame> {
    let mut r = ByteReader { bytes: raw, at: 0 };
    let seq = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let mut records = Vec::new();
    while r.at < raw.len() {
        let tag = r.take(1)?[0];
        let record = match tag {
            TAG_DEF => {
                let id = r.id()?;
                let name = r.text()?;
                let n = r.uvar()? as usize;
                let mut labels = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    labels.push((r.text()?, r.text()?));
                }
                Record::Def(id, Series::new(name, &labels))
            }
            TAG_VAL => {
                let id = r.id()?;
                let value = r.uvar()?;
                let z = r.uvar()?;
                let start = ((z >> 1) as i64) ^ -((z & 1) as i64);
                Record::Val(id, value, start)
            }
            TAG_FORGET => Record::Forget(r.id()?),
            TAG_META => {
                let n = r.uvar()? as usize;
                Record::Meta(serde_json::from_slice(r.take(n)?).ok()?)
            }
            _ => return None,
        };
        records.push(record);
    }
    Some((seq, records))
}

/// A cursor over a frame's bytes.
struct ByteReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn uvar(&mut self) -> Option<u64> {
        varint::get(self.bytes, &mut self.at)
    }

    fn id(&mut self) -> Option<u32> {
        u32::try_from(self.uvar()?).ok()
    }

    fn text(&mut self) -> Option<&'a str> {
        let n = self.uvar()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

fn text_len(s: &str) -> usize {
    varint::len(s.len() as u64) + s.len()
}

/// Bytes [`put_def`] writes.
fn def_len(id: u32, series: &Series) -> usize {
    let labels = series.labels();
    1 + varint::len(u64::from(id))
        + text_len(series.name())
        + varint::len(labels.len() as u64)
        + labels
            .map(|(k, v)| text_len(k) + text_len(v))
            .sum::<usize>()
}

/// Bytes [`put_val`] writes.
fn val_len(id: u32, value: u64, start_ms: i64) -> usize {
    1 + varint::len(u64::from(id)) + varint::len(value) + varint::len(zigzag(start_ms))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    varint::put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_def(out: &mut Vec<u8>, id: u32, series: &Series) {
    out.push(TAG_DEF);
    varint::put(out, u64::from(id));
    put_text(out, series.name());
    varint::put(out, series.labels().len() as u64);
    for (k, v) in series.labels() {
        put_text(out, k);
        put_text(out, v);
    }
}

fn put_val(out: &mut Vec<u8>, id: u32, value: u64, start_ms: i64) {
    out.push(TAG_VAL);
    varint::put(out, u64::from(id));
    varint::put(out, value);
    varint::put(out, zigzag(start_ms));
}

fn put_meta(out: &mut Vec<u8>, meta: &Meta) -> anyhow::Result<()> {
    let json = serde_json::to_vec(meta)?;
    out.push(TAG_META);
    varint::put(out, json.len() as u64);
    out.extend_from_slice(&json);
    Ok(())
}

/// `rme state`: the state directory as JSON, for people.
pub fn dump(dir: &Path) -> anyhow::Result<String> {
    let (_, loaded) = StateFile::open(dir)?;
    Ok(serde_json::to_string_pretty(&loaded.into_state())?)
}

#[cfg(test)]
mod tests;
