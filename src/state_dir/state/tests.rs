use super::*;
use crate::inputs::tail::FilePos;
use crate::store::{Limits, Series, Store, Value};

fn store() -> Store {
    Store::new(Limits {
        max_series_per_metric: 100_000,
        idle_expiry_ms: 0,
        ..Limits::default()
    })
}

fn positions(offset: u64) -> BTreeMap<String, SourceState> {
    let pos = FilePos {
        dev: 1,
        ino: 2,
        offset,
        head: 4,
        mtime_ns: 5,
    };
    BTreeMap::from([(
        "fail2ban".to_string(),
        SourceState {
            file: Some(pos),
            cursor: None,
            rotated: Vec::new(),
        },
    )])
}

/// Opens the directory as `rme push` does at start: a fresh store with the counters restored.
fn reopen(dir: &Path) -> (StateFile, Loaded, Store) {
    let (file, mut loaded) = StateFile::open(dir).unwrap();
    let mut s = store();
    let counters = loaded.counters.clone();
    loaded.restore_into(&mut s);
    loaded.counters = counters;
    (file, loaded, s)
}

fn value(s: &Store, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
    s.get(&Series::new(name, labels))
}

fn len(dir: &Path, name: &str) -> u64 {
    std::fs::metadata(dir.join(name)).map_or(0, |m| m.len())
}

#[test]
fn state_round_trips_and_missing_dir_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, empty) = StateFile::open(dir.path()).unwrap();
    assert!(empty.sources.is_empty() && empty.counters.is_empty());
    let mut s = store();
    s.set_now(5);
    s.inc(Series::new("a_total", &[("j", "x")]), 9);
    s.set(Series::new("g", &[]), 3.0);
    let sinks = BTreeMap::from([("statsd".to_string(), serde_json::json!({"k": 1}))]);
    file.save(&mut s, &positions(3), &sinks).unwrap();
    s.inc(Series::new("a_total", &[("j", "x")]), 1);
    s.inc(Series::new("b_total", &[]), 2);
    file.save(&mut s, &positions(7), &sinks).unwrap();
    let (_, back, mut b) = reopen(dir.path());
    assert_eq!(back.sources, positions(7));
    assert_eq!(back.sinks, sinks);
    assert_eq!(
        value(&b, "a_total", &[("j", "x")]),
        Some(Value::Counter(10))
    );
    assert_eq!(value(&b, "b_total", &[]), Some(Value::Counter(2)));
    assert_eq!(value(&b, "g", &[]), None, "gauges are not kept");
    let a = b.snapshot(100);
    let p = a
        .points
        .iter()
        .find(|p| p.series.name() == "a_total")
        .unwrap();
    assert_eq!(p.start_ms, 5);
}

#[test]
fn a_save_writes_what_changed_not_every_counter() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, _) = StateFile::open(dir.path()).unwrap();
    let mut s = store();
    for i in 0..20_000 {
        s.inc(
            Series::new(
                "m_total",
                &[("ip", &format!("10.0.{}.{}", i >> 8, i & 255))],
            ),
            1,
        );
    }
    file.save(&mut s, &positions(1), &BTreeMap::new()).unwrap();
    let checkpoint = len(dir.path(), CHECKPOINT);
    let journal = len(dir.path(), JOURNAL);
    assert!(
        checkpoint < 20_000 * 16,
        "label sets deflate: {checkpoint} bytes"
    );
    // Nothing moved: a frame with the sequence number only.
    file.save(&mut s, &positions(1), &BTreeMap::new()).unwrap();
    let idle = len(dir.path(), JOURNAL) - journal;
    assert!(idle < 40, "an idle save wrote {idle} bytes");
    s.inc(Series::new("m_total", &[("ip", "10.0.0.7")]), 5);
    s.inc(Series::new("m_total", &[("ip", "192.0.2.1")]), 1);
    file.save(&mut s, &positions(2), &BTreeMap::new()).unwrap();
    let moved = len(dir.path(), JOURNAL) - journal - idle;
    assert!(
        moved < 200,
        "two counters and a position wrote {moved} bytes"
    );
    assert_eq!(len(dir.path(), CHECKPOINT), checkpoint, "no new checkpoint");
    let (_, back, b) = reopen(dir.path());
    assert_eq!(back.counters.len(), 20_001);
    assert_eq!(back.sources, positions(2));
    assert_eq!(
        value(&b, "m_total", &[("ip", "10.0.0.7")]),
        Some(Value::Counter(6))
    );
    assert_eq!(
        value(&b, "m_total", &[("ip", "192.0.2.1")]),
        Some(Value::Counter(1))
    );
}

#[test]
fn torn_last_frame_is_cut_and_the_save_before_it_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, _) = StateFile::open(dir.path()).unwrap();
    let mut s = store();
    s.inc(Series::new("c_total", &[]), 1);
    file.save(&mut s, &positions(1), &BTreeMap::new()).unwrap();
    s.inc(Series::new("c_total", &[]), 1);
    file.save(&mut s, &positions(2), &BTreeMap::new()).unwrap();
    let good = len(dir.path(), JOURNAL);
    s.inc(Series::new("c_total", &[]), 1);
    file.save(&mut s, &positions(3), &BTreeMap::new()).unwrap();
    // A crash in the middle of the third save's append.
    let torn = len(dir.path(), JOURNAL) - 3;
    File::options()
        .write(true)
        .open(dir.path().join(JOURNAL))
        .unwrap()
        .set_len(torn)
        .unwrap();
    let (mut file, back, mut b) = reopen(dir.path());
    assert_eq!(back.sources, positions(2));
    assert_eq!(value(&b, "c_total", &[]), Some(Value::Counter(2)));
    assert_eq!(len(dir.path(), JOURNAL), good, "the torn frame is cut off");
    b.inc(Series::new("c_total", &[]), 5);
    file.save(&mut b, &positions(9), &BTreeMap::new()).unwrap();
    let (_, back, b) = reopen(dir.path());
    assert_eq!(back.sources, positions(9));
    assert_eq!(value(&b, "c_total", &[]), Some(Value::Counter(7)));
}

#[test]
fn journal_larger_than_the_checkpoint_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, _) = StateFile::open(dir.path()).unwrap();
    file.min_journal_bytes = 2_000;
    let mut s = store();
    s.inc(Series::new("c_total", &[]), 1);
    file.save(&mut s, &positions(0), &BTreeMap::new()).unwrap();
    let mut checkpoints = 0;
    let mut last = len(dir.path(), CHECKPOINT);
    for i in 1..300u64 {
        s.inc(Series::new("c_total", &[("n", &i.to_string())]), i);
        file.save(&mut s, &positions(i), &BTreeMap::new()).unwrap();
        let now = len(dir.path(), CHECKPOINT);
        if now != last {
            checkpoints += 1;
            last = now;
        }
        let bound = len(dir.path(), CHECKPOINT).max(2_000) + 200;
        assert!(len(dir.path(), JOURNAL) <= bound);
    }
    assert!(checkpoints >= 2, "{checkpoints} checkpoints");
    let (_, back, b) = reopen(dir.path());
    assert_eq!(back.sources, positions(299));
    assert_eq!(back.counters.len(), 300);
    assert_eq!(
        value(&b, "c_total", &[("n", "299")]),
        Some(Value::Counter(299))
    );
    assert_eq!(value(&b, "c_total", &[]), Some(Value::Counter(1)));
}

#[test]
fn journal_frames_older_than_the_checkpoint_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, _) = StateFile::open(dir.path()).unwrap();
    let mut s = store();
    s.inc(Series::new("c_total", &[]), 1);
    file.save(&mut s, &positions(1), &BTreeMap::new()).unwrap();
    s.inc(Series::new("c_total", &[]), 1);
    file.save(&mut s, &positions(2), &BTreeMap::new()).unwrap();
    let old_journal = std::fs::read(dir.path().join(JOURNAL)).unwrap();
    // A checkpoint, then a crash before the journal was started over.
    file.checkpoint_due = true;
    s.inc(Series::new("c_total", &[]), 1);
    file.save(&mut s, &positions(3), &BTreeMap::new()).unwrap();
    std::fs::write(dir.path().join(JOURNAL), old_journal).unwrap();
    let (_, back, b) = reopen(dir.path());
    assert_eq!(back.sources, positions(3));
    assert_eq!(value(&b, "c_total", &[]), Some(Value::Counter(3)));
}

#[test]
fn expired_counters_are_forgotten_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, _) = StateFile::open(dir.path()).unwrap();
    let mut s = Store::new(Limits {
        idle_expiry_ms: 1_000,
        ..Limits::default()
    });
    s.set_now(0);
    s.inc(Series::new("old_total", &[]), 1);
    file.save(&mut s, &positions(1), &BTreeMap::new()).unwrap();
    s.set_now(5_000);
    s.inc(Series::new("new_total", &[]), 1);
    s.snapshot(5_000);
    file.save(&mut s, &positions(2), &BTreeMap::new()).unwrap();
    let (_, back, _) = reopen(dir.path());
    let names: Vec<_> = back
        .counters
        .iter()
        .map(|(_, c)| c.series.name().to_string())
        .collect();
    assert!(names.contains(&"new_total".to_string()), "{names:?}");
    assert!(!names.contains(&"old_total".to_string()), "{names:?}");
}

#[test]
fn state_json_of_rme_0_1_is_migrated_at_the_first_save() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/state/testdata/state-v1.json");
    std::fs::copy(&fixture, dir.path().join(JSON_STATE)).unwrap();
    let old: State = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    let (mut file, loaded, mut s) = reopen(dir.path());
    assert_eq!(loaded.sources, old.sources);
    assert_eq!(loaded.sinks, old.sinks);
    for c in &old.counters {
        let labels: Vec<_> = c.series.labels().collect();
        assert_eq!(
            value(&s, c.series.name(), &labels),
            Some(Value::Counter(c.value))
        );
    }
    file.save(&mut s, &loaded.sources, &loaded.sinks).unwrap();
    assert!(!dir.path().join(JSON_STATE).exists());
    assert!(dir.path().join(MIGRATED_JSON).exists());
    let dumped: State = serde_json::from_str(&dump(dir.path()).unwrap()).unwrap();
    assert_eq!(dumped.version, VERSION);
    assert_eq!(dumped.sources, old.sources);
    assert_eq!(dumped.sinks, old.sinks);
    let mut want = old.counters.clone();
    let mut got = dumped.counters;
    got.retain(|c| c.series.name() != SKIPPED.name);
    want.sort_by(|a, b| a.series.cmp(&b.series));
    got.sort_by(|a, b| a.series.cmp(&b.series));
    assert_eq!(got, want);
}

#[test]
fn damaged_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(JSON_STATE), "{not json").unwrap();
    let msg = format!("{:#}", StateFile::open(dir.path()).unwrap_err());
    assert!(msg.contains("state.json"), "{msg}");
    std::fs::write(dir.path().join(CHECKPOINT), "RMESTATE\x09\0\0\0").unwrap();
    let msg = format!("{:#}", StateFile::open(dir.path()).unwrap_err());
    assert!(
        msg.contains("state.checkpoint") && msg.contains("version 9"),
        "{msg}"
    );
}

#[test]
fn state_files_behind_a_symlink_are_refused() {
    // what another local user could plant: links to files rme would take as its state
    let elsewhere = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/state/testdata/state-v1.json");
    std::fs::copy(&fixture, elsewhere.path().join(JSON_STATE)).unwrap();
    let (mut file, _) = StateFile::open(elsewhere.path()).unwrap();
    let mut s = store();
    s.inc(Series::new("a_total", &[]), 5);
    file.save(&mut s, &positions(3), &BTreeMap::new()).unwrap();
    s.inc(Series::new("a_total", &[]), 1);
    file.save(&mut s, &positions(4), &BTreeMap::new()).unwrap();
    std::fs::copy(&fixture, elsewhere.path().join(JSON_STATE)).unwrap();
    for name in [JSON_STATE, CHECKPOINT, JOURNAL] {
        let target = elsewhere.path().join(name);
        assert!(target.exists(), "{name}");
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(name)).unwrap();
        let msg = format!("{:#}", StateFile::open(dir.path()).unwrap_err());
        assert!(msg.contains(name) && msg.contains("symbolic link"), "{msg}");
    }
}

/// A checkpoint holding one frame of `raw` records, deflated as rme writes them.
fn checkpoint_of(dir: &Path, deflated: &[u8]) {
    let mut bytes = CHECKPOINT_MAGIC.to_vec();
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&frame_of(deflated));
    std::fs::write(dir.join(CHECKPOINT), bytes).unwrap();
}

/// `bytes` deflated and flushed to a byte boundary, with no final block: such
/// pieces can be put back to back (a run of one byte only refers to itself).
fn deflate_piece(bytes: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(bytes.len() / 100 + 1024);
    c.compress_vec(bytes, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert_eq!(c.total_in(), bytes.len() as u64);
    out
}

/// F14: a small checkpoint whose frame inflates to far more than rme writes
/// (a `Meta` record padded with 80 MiB of JSON whitespace, from a 80 KB file)
/// is refused at the bound instead of being inflated whole.
#[test]
fn a_deflate_bomb_is_refused_at_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let json = br#"{"sources":{},"sinks":{}}"#;
    let build = |pad_mib: usize| {
        let mut head = Vec::new();
        put_u64(&mut head, 1);
        head.push(TAG_META);
        varint::put(&mut head, (json.len() + (pad_mib << 20)) as u64);
        head.extend_from_slice(json);
        let mut stream = deflate_piece(&head);
        let spaces = deflate_piece(&vec![b' '; 1 << 20]);
        for _ in 0..pad_mib {
            stream.extend_from_slice(&spaces);
        }
        stream.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]); // final empty stored block
        stream
    };
    // within the bound: read as any frame
    checkpoint_of(dir.path(), &build(2));
    StateFile::open(dir.path()).unwrap();
    let bomb = build(80);
    assert!(bomb.len() * MAX_INFLATE_RATIO < MIN_INFLATE_BOUND);
    checkpoint_of(dir.path(), &bomb);
    let err = format!("{:#}", StateFile::open(dir.path()).unwrap_err());
    assert!(
        err.contains("state.checkpoint") && err.contains("inflating past its bound"),
        "{err}"
    );
}

/// F13: names a corrupt or hostile state file carries that rme cannot have
/// (a metric name with a line break and `# EOF`, a label name closing the
/// braces, a reserved `__name__` label, a label twice) are skipped and
/// counted, never written into the exposition; the good counter is restored.
#[test]
fn restored_names_are_validated_and_bad_ones_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let series = [
        Series::new("fail2ban_bans_total", &[("jail", "sshd")]),
        Series::new("evil_total{forged=\"1\"} 1e+99\n# EOF\nfake", &[]),
        Series::new("fail2ban_bans_total", &[("jail\n\"}", "x")]),
        Series::new("fail2ban_bans_total", &[("__name__", "forged_total")]),
        Series::new("fail2ban_bans_total", &[("jail", "a"), ("jail", "b")]),
        Series::new("9lives_total", &[]),
    ];
    let mut raw = Vec::new();
    put_u64(&mut raw, 1);
    for (id, s) in series.iter().enumerate() {
        put_def(&mut raw, id as u32, s);
        put_val(&mut raw, id as u32, 5, 0);
    }
    checkpoint_of(dir.path(), &deflate_piece_final(&raw));
    let (_, _, mut s) = reopen(dir.path());
    let text =
        crate::store::text::render(&s.snapshot(1_000), crate::store::text::Format::OpenMetrics);
    assert_eq!(
        value(&s, "fail2ban_bans_total", &[("jail", "sshd")]),
        Some(Value::Counter(5))
    );
    assert_eq!(value(&s, SKIPPED.name, &[]), Some(Value::Counter(5)));
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    for bad in ["evil", "forged", "fake", "9lives", "jail=\"a\""] {
        assert!(!text.contains(bad), "{bad} in\n{text}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("fail2ban_bans_total"))
            .count(),
        1,
        "{text}"
    );
}

/// `bytes` as one whole deflate stream.
fn deflate_piece_final(bytes: &[u8]) -> Vec<u8> {
    let mut out = deflate_piece(bytes);
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    out
}
