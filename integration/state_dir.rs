//! The state directory on a real host: planted symlinks (another local user who
//! can write there), the umask, a state_dir others can write, sink names that
//! would leave it, and a full disk (a small tmpfs) with VictoriaMetrics receiving.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::vm_export;
use crate::common::{append, peer, rme, run_rme, stderr, unique, write};
use crate::statsd::Daemon;

fn lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "2026-12-01 21:00:00,{:03} fail2ban.actions        [7]: NOTICE  [sshd] Ban 192.0.2.{}\n",
                i % 1000,
                i % 250 + 1
            )
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// `rme push --once` under umask 000.
fn once_umask0(config: &Path) -> Output {
    let mut cmd = rme();
    cmd.args(["push", "--once", "--config"]).arg(config);
    // SAFETY: umask is async-signal-safe and touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    cmd.output().expect("rme")
}

/// An rme.toml reading `dir/fail2ban.log`; `sinks` may begin with top-level keys.
fn config(dir: &Path, state: &Path, sinks: &str) -> PathBuf {
    let (top, sinks) = sinks.split_at(sinks.find("[[sinks]]").unwrap_or(0));
    write(
        dir,
        "rme.toml",
        &format!(
            "{top}state_dir = \"{}\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n{sinks}",
            state.display(),
            dir.join("fail2ban.log").display()
        ),
    )
}

/// Symlinks planted at the old fixed temp name and at a sink's spool directory:
/// nothing is written or deleted through them; files are 0600 and directories
/// 0700 under umask 000.
#[test]
fn planted_symlinks_are_never_followed_and_modes_ignore_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let state = d.join("state");
    append(&d.join("fail2ban.log"), &lines(5));
    // a receiver that is down keeps a record in the spool, to check its mode
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/api/v1/write", closed.local_addr().expect("addr"));
    drop(closed);
    let cfg = config(
        d,
        &state,
        &format!("[[sinks]]\ntype = \"remote_write\"\nname = \"down\"\nurl = \"{url}\"\n"),
    );
    let victim = write(d, "victim", "keep");
    std::fs::create_dir_all(&state).expect("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::symlink(&victim, state.join(".state.checkpoint.tmp")).expect("symlink");

    let out = once_umask0(&cfg);
    assert!(
        stderr(&out).contains("kept in the spool"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
    assert_eq!(mode(&state.join("state.checkpoint")), 0o600);
    assert_eq!(mode(&state.join("state.journal")), 0o600);
    assert_eq!(mode(&state.join("lock")), 0o600);
    assert_eq!(mode(&state.join("spool")), 0o700);
    assert_eq!(mode(&state.join("spool/down")), 0o700);
    let records: Vec<_> = std::fs::read_dir(state.join("spool/down"))
        .expect("spool")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(!records.is_empty(), "the body waits in the spool");
    for r in &records {
        assert_eq!(mode(r), 0o600, "{}", r.display());
    }

    // Another user's directory behind the spool's name: rme refuses, deletes nothing.
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let precious = [
        write(&elsewhere, "precious.tmp", "a"),
        write(&elsewhere, "00000000000000000001.rec", "b"),
    ];
    std::fs::remove_dir_all(state.join("spool/down")).expect("rm spool");
    std::os::unix::fs::symlink(&elsewhere, state.join("spool/down")).expect("symlink");
    let out = once_umask0(&cfg);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    for p in &precious {
        assert!(
            p.exists(),
            "{} was deleted through the symlink",
            p.display()
        );
    }
}

/// A state_dir others can write is refused, naming the key and the reason; a
/// sticky one owned by rme's user is fine; a sink name cannot leave the spool.
#[test]
fn unsafe_state_dir_and_sink_names_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let state = d.join("state");
    std::fs::create_dir(&state).expect("state");
    append(&d.join("fail2ban.log"), &lines(2));
    let cfg = config(d, &state, "[[sinks]]\ntype = \"stdout\"\n");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = run_rme(&["push", "--once", "--config", cfg.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("state_dir") && err.contains("writable by group or others"),
        "{err}"
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let out = run_rme(&["push", "--once", "--config", cfg.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));

    let bad = config(
        d,
        &state,
        "[[sinks]]\ntype = \"stdout\"\nname = \"../../x\"\n",
    );
    let out = run_rme(&["check-config", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sinks[0].name"), "{}", stderr(&out));
}

/// F18: a corrupt record in the spool is dropped and counted in the same
/// `push --once` run's output, not only in the next run's.
#[test]
fn push_once_counts_the_corrupt_spool_records_it_drops_in_that_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let state = d.join("state");
    append(&d.join("fail2ban.log"), &lines(2));
    let cfg = config(d, &state, "[[sinks]]\ntype = \"stdout\"\n");
    let once = || run_rme(&["push", "--once", "--config", cfg.to_str().expect("utf-8")]);
    let out = once();
    assert!(out.status.success(), "{}", stderr(&out));
    // A record that fails its checksum (a bad disk, or a crash on one), 3 samples.
    let mut bad = b"RMS3".to_vec();
    bad.extend_from_slice(&1i64.to_le_bytes());
    bad.extend_from_slice(&3u32.to_le_bytes());
    bad.extend_from_slice(&4u32.to_le_bytes());
    bad.extend_from_slice(&0u32.to_le_bytes());
    bad.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    bad.extend_from_slice(b"junk");
    std::fs::write(state.join("spool/stdout/00000000000000000001.rec"), &bad).expect("plant");
    let out = once();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = crate::common::stdout(&out);
    let series = r#"rme_spool_dropped_total{reason="corrupt",sink="stdout"}"#;
    assert_eq!(
        crate::common::metric_value(&text, series),
        Some(1.0),
        "{series} in this run's output:\n{text}"
    );
    let samples = r#"rme_sink_samples_total{result="dropped",sink="stdout"}"#;
    assert_eq!(
        crate::common::metric_value(&text, samples),
        Some(3.0),
        "{text}"
    );
    assert!(
        stderr(&out).contains("corrupt spool record skipped"),
        "{}",
        stderr(&out)
    );
}

/// `cmd` run by the user `nobody` (setpriv), which must succeed.
fn as_nobody(args: &[&str]) {
    let ok = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(args)
        .status()
        .expect("setpriv");
    assert!(ok.success(), "as nobody: {args:?}");
}

/// `rme push --once`, killed if it has not ended within `secs` (then `None`).
fn once_within(config: &Path, secs: u64) -> Option<Output> {
    let child = rme()
        .args(["push", "--once", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rme");
    let mut child = crate::common::Killed(child);
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if child.0.try_wait().expect("wait").is_some() {
            let child =
                std::mem::replace(&mut child.0, Command::new("true").spawn().expect("true"));
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// F12: in a sticky state_dir (allowed when rme's user owns it, like /tmp for
/// a root rme) another user can create a name before rme does. What they plant
/// is refused with exit 2 naming the file: a checkpoint of theirs is not
/// loaded, a FIFO does not hang rme, and a `lock` they hold neither holds rme
/// as "another rme" nor puts their text into rme's error line.
#[test]
fn files_another_user_plants_in_a_sticky_state_dir_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    append(&d.join("fail2ban.log"), &lines(3));
    // rme's own checkpoint from another state dir: 3 bans counted
    let good = config(d, &d.join("good"), "[[sinks]]\ntype = \"stdout\"\n");
    let out = once_within(&good, 60).expect("rme ended");
    assert!(out.status.success(), "{}", stderr(&out));
    let planted = d.join("planted");
    std::fs::copy(d.join("good/state.checkpoint"), &planted).expect("copy");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let sticky = d.join("sticky");
    std::fs::create_dir(&sticky).expect("mkdir");
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let cfg = config(d, &sticky, "[[sinks]]\ntype = \"stdout\"\n");
    let refused = |what: &str, why: &str| {
        let out = once_within(&cfg, 20).unwrap_or_else(|| panic!("{what}: rme hung"));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(what) && err.contains(why), "{what}: {err}");
        assert!(
            !crate::common::stdout(&out).contains("fail2ban_bans_total"),
            "{what}"
        );
        err
    };

    let checkpoint = sticky.join("state.checkpoint");
    as_nobody(&[
        "cp",
        planted.to_str().expect("utf-8"),
        checkpoint.to_str().expect("utf-8"),
    ]);
    refused("state.checkpoint", "owned by uid 65534");
    std::fs::remove_file(&checkpoint).expect("rm");

    as_nobody(&["mkfifo", checkpoint.to_str().expect("utf-8")]);
    refused("state.checkpoint", "not a regular file");
    std::fs::remove_file(&checkpoint).expect("rm");

    let lock = sticky.join("lock");
    let _ = std::fs::remove_file(&lock); // rme's own, from the runs above
    let forged = "4242\n2026-12-07T23:59:59Z ERROR rme: forged line\x1b[2K";
    as_nobody(&[
        "sh",
        "-c",
        &format!("printf '{forged}' > {}", lock.display()),
    ]);
    let _holder = crate::common::Killed(
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .args(["flock", "-x"])
            .arg(&lock)
            .args(["sleep", "60"])
            .spawn()
            .expect("flock"),
    );
    crate::common::wait_for("nobody's flock on the planted lock", 10, || {
        let free = Command::new("flock")
            .args(["-n", "-x"])
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock")
            .success();
        (!free).then_some(())
    });
    let err = refused("lock", "owned by uid 65534");
    assert!(!err.contains("forged") && !err.contains("4242"), "{err}");
}

/// A small tmpfs as the state dir's file system, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(stderr(&out));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` to the last byte.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// Disk full: bodies spooled before still reach VictoriaMetrics while new ones
/// cannot be written; the failure is counted and logged once per kind, no temp
/// file is left, and once there is room again everything counted arrives.
#[test]
fn full_disk_still_delivers_what_is_spooled() {
    let env = peer("vm");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let fs = match Tmpfs::mount(&d.join("fs"), "256k") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here: {why}");
            return;
        }
    };
    let state = fs.0.join("state");
    let job = unique("diskfull");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let sink = |url: &str| {
        format!(
            "interval_secs = 1\nserve = {{ listen = \"127.0.0.1:{port}\" }}\n[[sinks]]\ntype = \"remote_write\"\nname = \"vm\"\n\
             url = \"{url}\"\nexternal_labels = {{ job = \"{job}\" }}\n"
        )
    };
    // 1. The receiver is down: two runs leave two bodies (10, then 15 lines read).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/api/v1/write", l.local_addr().expect("addr"))
    };
    let down = config(d, &state, &sink(&closed));
    for n in [10, 5] {
        append(&d.join("fail2ban.log"), &lines(n));
        let out = run_rme(&["push", "--once", "--config", down.to_str().expect("utf-8")]);
        assert!(
            stderr(&out).contains("kept in the spool"),
            "{}",
            stderr(&out)
        );
    }
    // 2. The disk fills up; the receiver is back; 5 more lines.
    fill(&fs.0.join("filler"));
    append(&d.join("fail2ban.log"), &lines(5));
    let up = config(d, &state, &sink(&env["VM_WRITE_URL"]));
    let log = d.join("rme.log");
    let mut daemon = Daemon(
        rme()
            .args(["push", "--config"])
            .arg(&up)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("rme.log"))
            .spawn()
            .expect("rme push"),
    );
    let sel = format!("rme_lines_read_total{{job=\"{job}\",source=\"fail2ban\"}}");
    // VM got `want` at some point
    let wait_vm = |want: f64| {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let got: Vec<f64> = vm_export(&env["VM_URL"], &sel)
                .first()
                .map(|s| s.points.iter().map(|p| p.1).collect())
                .unwrap_or_default();
            if got.contains(&want) {
                return;
            }
            assert!(
                Instant::now() < end,
                "VM never got {want} (got {got:?}); rme's log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let errors = || {
        let metrics = Command::new("curl")
            .args(["-sS", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&metrics.stdout).into_owned();
        crate::common::metric_value(
            &text,
            "rme_spool_write_errors_total{kind=\"no_space\",sink=\"vm\"}",
        )
        .unwrap_or(0.0)
    };
    let logged = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("no_space"))
            .count()
    };
    // What was spooled went out although the new body could not be written.
    // (The sink's courier sends them as rme starts, before its first flush, so
    // that flush may find the room they freed: the failures are counted below.)
    wait_vm(15.0);
    // Sending freed the spooled records' room: fill it again, let a few flushes fail.
    fill(&fs.0.join("filler2"));
    std::thread::sleep(Duration::from_secs(1));
    let (errors0, logged0) = (errors(), logged());
    std::thread::sleep(Duration::from_secs(4));
    let (errors1, logged1) = (errors(), logged());
    assert!(errors1 >= errors0 + 2.0, "{errors0} -> {errors1}");
    assert!(
        logged1 - logged0 <= 2,
        "logged once per kind (spool, state), not per flush:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let temps: Vec<_> = walk(&state)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "stray temp files: {temps:?}");
    // 3. Room again: what was counted meanwhile arrives.
    std::fs::remove_file(fs.0.join("filler")).expect("rm filler");
    std::fs::remove_file(fs.0.join("filler2")).expect("rm filler");
    wait_vm(20.0);
    daemon.stop();
    let text_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text_log.contains("writing works again"), "{text_log}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
