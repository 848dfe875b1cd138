//! The tailer's scenarios: each one a rotation or truncation as logrotate,
//! fail2ban or auditd do it, read back line by line.

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

/// `text` appended to `path`, then `path` renamed to `to` (a rename rotation)
/// and `after` written to a new file at `path` (an empty one when `after` is "").
fn write_and_rotate(path: &Path, text: &str, to: &Path, after: &str) {
    append(path, text);
    std::fs::rename(path, to).unwrap();
    append(path, after);
}

/// `dir/f.log` holding the line `first`, and a tailer that has read it.
fn started(dir: &Path, first: &str) -> (PathBuf, Tailer) {
    let p = dir.join("f.log");
    append(&p, &format!("{first}\n"));
    let mut t = Tailer::new(p.clone(), None);
    assert_eq!(read(&mut t).0, vec![first]);
    (p, t)
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
    let (p, mut t) = started(dir.path(), "a");
    let old = dir.path().join("f.log.1");
    write_and_rotate(&p, "b\n", &old, "d\n");
    append(&old, "c\n"); // written before the daemon reopened
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
    write_and_rotate(&p, "b\n", &dir.path().join("f.log.1"), "c\n");
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
    let (p, mut t) = started(dir.path(), "a");
    let old = dir.path().join("f.log.1");
    write_and_rotate(&p, "", &old, "new1\n");
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
    for (wait, late_is_read) in [(Duration::ZERO, false), (DEFAULT_ROTATE_WAIT, true)] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        let old = dir.path().join("f.log.1");
        append(&p, "a\n");
        let mut t = Tailer::new(p.clone(), None).with_rotate_wait(wait);
        assert_eq!(read(&mut t).0, vec!["a"]);
        write_and_rotate(&p, "", &old, "new\n");
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
    let (p, mut t) = started(dir.path(), "first");
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
    let (p, mut t) = started(dir.path(), "a");
    let old = dir.path().join("f.log.1");
    write_and_rotate(&p, "", &old, "");
    let (lines, stats) = read(&mut t);
    assert!(lines.is_empty());
    assert!(stats.rotated);
    append(&old, "late\n");
    assert_eq!(read(&mut t).0, vec!["late"]);
    std::fs::rename(&old, dir.path().join("f.log.2")).unwrap();
    write_and_rotate(&p, "", &old, "");
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
        let mut fresh = Tailer::new(t.path().to_path_buf(), t.pos()).with_rotated(t.rotated_pos());
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
        // log -> log.1 -> log.2, twice, before rme reads again
        write_and_rotate(&p, "a2\n", &d.join("f.log.1"), "b1\n");
        std::fs::rename(d.join("f.log.1"), d.join("f.log.2")).unwrap();
        write_and_rotate(&p, "", &d.join("f.log.1"), "c1\n");
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
    let (p, mut t) = started(dir.path(), "first");
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
