//! Log rotation the way hosts really do it, with the real `logrotate` and a writer
//! that logs bans in fail2ban's format (`peers/ban_writer.py`), against a real
//! VictoriaMetrics: every ban written must be counted once, whatever the rotation.
//!
//! - `create` as in fail2ban's own logrotate file (rename, create, compress with
//!   delaycompress, postrotate asks the writer to reopen), the writer reopening
//!   50 lines late: those 50 lines land in the renamed file after the new one appeared.
//! - `copytruncate`: what the copy holds past rme's last read is in no other file.
//! - `push --once` runs between and across both.
//! - A FIFO as log (mtail's syslog setup: the syslog daemon writes to a named pipe).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{metric_value, peer, rme, root, run_rme, stderr, stdout, unique, write};
use crate::remote_write::vm_points;
use crate::statsd::Daemon;

/// A directory with a log, logrotate configs for it and an rme config pushing to VM.
struct Host {
    dir: tempfile::TempDir,
    jail: String,
}

impl Host {
    fn new(prefix: &str) -> Host {
        Host {
            dir: tempfile::tempdir().expect("tempdir"),
            jail: unique(prefix),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> PathBuf {
        self.path("fail2ban.log")
    }

    /// fail2ban's shipped /etc/logrotate.d/fail2ban with this log and a postrotate
    /// that stands for `fail2ban-client flushlogs`.
    fn logrotate_create(&self) -> PathBuf {
        write(
            self.dir.path(),
            "logrotate-create.conf",
            &format!(
                "{} {{\n    weekly\n    rotate 4\n    compress\n    notifempty\n    delaycompress\n    missingok\n\
                 \x20   postrotate\n\ttouch {}\n    endscript\n    create 640\n}}\n",
                self.log().display(),
                self.path("flushlogs").display()
            ),
        )
    }

    /// copytruncate, keeping every copy so the test can count what is on disk.
    fn logrotate_copytruncate(&self) -> PathBuf {
        write(
            self.dir.path(),
            "logrotate-copytruncate.conf",
            &format!(
                "{} {{\n    rotate 100\n    copytruncate\n    notifempty\n    missingok\n}}\n",
                self.log().display()
            ),
        )
    }

    fn logrotate(&self, conf: &Path) {
        let out = Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(self.path("logrotate.state"))
            .arg(conf)
            .output()
            .expect("logrotate (integration/peers/peers.sh install)");
        assert!(out.status.success(), "logrotate: {}", stderr(&out));
    }

    /// Runs the writer to its end: `n` bans, logrotate every `every` lines.
    /// With `pause`, that process is stopped for the last `late` lines before each rotation.
    fn write_bans(
        &self,
        n: u32,
        every: u32,
        late: u32,
        conf: &Path,
        sleep: &str,
        pause: Option<u32>,
    ) {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(root().join("integration/peers/ban_writer.py"));
        if let Some(pid) = pause {
            cmd.args(["--pause", &pid.to_string()]);
        }
        let out = cmd
            .arg(self.log())
            .arg(n.to_string())
            .arg(&self.jail)
            .args(["--every", &every.to_string(), "--late", &late.to_string()])
            .arg("--logrotate")
            .arg(conf)
            .arg("--state")
            .arg(self.path("logrotate.state"))
            .arg("--flag")
            .arg(self.path("flushlogs"))
            .args(["--sleep", sleep])
            .output()
            .expect("ban_writer.py");
        assert!(out.status.success(), "ban_writer.py: {}", stderr(&out));
        eprintln!("{}", stdout(&out).trim());
    }

    /// Ban lines for this jail in the log and every rotated copy (gzip ones too).
    fn bans_on_disk(&self) -> u64 {
        let needle = format!("[{}] Ban ", self.jail);
        std::fs::read_dir(self.dir.path())
            .expect("read_dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("fail2ban.log"))
            .map(|e| {
                let bytes = std::fs::read(e.path()).expect("reading a log");
                let text = if e.path().extension().is_some_and(|x| x == "gz") {
                    let mut s = String::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_string(&mut s)
                        .expect("gunzip");
                    s
                } else {
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                text.lines().filter(|l| l.contains(&needle)).count() as u64
            })
            .sum()
    }

    /// An rme config reading the log, flushing every second to `url` (job = the jail).
    fn config(&self, sink: &str) -> PathBuf {
        write(
            self.dir.path(),
            "rme.toml",
            &format!(
                "interval_secs = 1\nstate_dir = \"state\"\n[[sources]]\ntype = \"fail2ban\"\n\
                 log = \"fail2ban.log\"\n{sink}\n"
            ),
        )
    }

    fn remote_write_config(&self, env: &HashMap<String, String>) -> PathBuf {
        self.config(&format!(
            "[[sinks]]\ntype = \"remote_write\"\nurl = \"{}\"\nexternal_labels = {{ job = \"{}\" }}\n",
            env["VM_WRITE_URL"], self.jail
        ))
    }

    fn daemon(&self, config: &Path) -> Daemon {
        Daemon(
            rme()
                .args(["push", "--config"])
                .arg(config)
                .stderr(std::fs::File::create(self.path("rme.log")).expect("rme.log"))
                .spawn()
                .expect("starting rme push"),
        )
    }

    /// The last value VictoriaMetrics holds for this jail's ban counter.
    fn bans_in_vm(&self, env: &HashMap<String, String>) -> f64 {
        let sel = format!("fail2ban_bans_total{{job=\"{0}\",jail=\"{0}\"}}", self.jail);
        vm_points(&env["VM_URL"], &sel).last().map_or(0.0, |p| p.1)
    }

    fn rme_log(&self) -> String {
        std::fs::read_to_string(self.path("rme.log")).unwrap_or_default()
    }
}

/// fail2ban's logrotate (create, compress, delaycompress), 11 rotations during 6000
/// bans, the writer reopening 50 lines after each: `rme push` must count 6000.
#[test]
fn create_rotation_with_a_late_reopen_loses_no_ban() {
    let env = peer("vm");
    let h = Host::new("rotcreate");
    std::fs::write(h.log(), "").expect("log");
    let mut daemon = h.daemon(&h.remote_write_config(&env));
    h.write_bans(6000, 500, 50, &h.logrotate_create(), "0.0005", None);
    assert!(
        h.path("fail2ban.log.2.gz").exists(),
        "logrotate compressed nothing"
    );
    daemon.stop();
    let got = h.bans_in_vm(&env);
    assert_eq!(
        got,
        6000.0,
        "bans counted by rme; its log:\n{}",
        h.rme_log()
    );
}

/// copytruncate under load: rme is left behind (stopped) for the last 20 lines before
/// each of 11 rotations; those lines are then only in the copy, and rme must read them there.
#[test]
fn copytruncate_under_load_loses_no_ban() {
    let env = peer("vm");
    let h = Host::new("rotcopy");
    std::fs::write(h.log(), "").expect("log");
    let mut daemon = h.daemon(&h.remote_write_config(&env));
    let conf = h.logrotate_copytruncate();
    h.write_bans(6000, 500, 20, &conf, "0.0002", Some(daemon.0.id()));
    daemon.stop();
    // logrotate ran while the writer waited, so it lost nothing itself.
    assert_eq!(h.bans_on_disk(), 6000, "logrotate itself lost lines");
    let got = h.bans_in_vm(&env);
    assert_eq!(
        got,
        6000.0,
        "bans counted by rme; its log:\n{}",
        h.rme_log()
    );
}

/// `push --once` between the steps of both rotations: a writer that keeps writing to
/// the renamed file after a run, and a copy holding lines no run read yet.
#[test]
fn once_runs_across_late_reopen_and_copytruncate_count_every_ban() {
    use std::io::Write as _;
    let h = Host::new("rotonce");
    let config = h.config("[[sinks]]\ntype = \"stdout\"\n");
    let series = format!("fail2ban_bans_total{{jail=\"{}\"}}", h.jail);
    let mut n = 0u32;
    let mut bans = |f: &mut std::fs::File, k: u32| {
        for _ in 0..k {
            n += 1;
            writeln!(
                f,
                "2026-12-01 21:00:00,{:03} fail2ban.actions        [42]: NOTICE  [{}] Ban 192.0.2.{}",
                n % 1000,
                h.jail,
                n % 250 + 1
            )
            .expect("writing");
        }
    };
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(h.log())
            .expect("log")
    };
    let once = || {
        let out = run_rme(&[
            "push",
            "--once",
            "--config",
            config.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        metric_value(&stdout(&out), &series).unwrap_or(0.0)
    };
    let mut f = open();
    bans(&mut f, 100);
    assert_eq!(once(), 100.0);
    h.logrotate(&h.logrotate_create());
    bans(&mut f, 20); // still to the renamed file
    assert_eq!(once(), 120.0);
    bans(&mut f, 30); // the writer has not reopened yet
    f = open();
    bans(&mut f, 40);
    assert_eq!(once(), 190.0, "the late lines after a run");
    bans(&mut f, 10);
    assert_eq!(once(), 200.0);
    bans(&mut f, 25);
    h.logrotate(&h.logrotate_copytruncate());
    bans(&mut f, 5);
    assert_eq!(once(), 230.0, "the lines only the copy holds");
    assert_eq!(once(), 230.0, "nothing counted twice");
}

/// Between two `push --once` runs, logrotate runs twice with fail2ban's config
/// (create, compress, delaycompress): the file read last time is now
/// `fail2ban.log.2.gz` (its rest is read there) and the file in between,
/// `fail2ban.log.1`, was never seen (read from its start). Then, on another
/// host, copytruncate with compress and no delaycompress: the lines past the
/// last run are only in `fail2ban.log.1.gz`.
#[test]
fn once_runs_across_two_rotations_and_a_compressed_copytruncate_count_every_ban() {
    use std::io::Write as _;
    for copytruncate in [false, true] {
        let h = Host::new(if copytruncate { "rotgzct" } else { "rottwice" });
        let config = h.config("[[sinks]]\ntype = \"stdout\"\n");
        let series = format!("fail2ban_bans_total{{jail=\"{}\"}}", h.jail);
        let mut n = 0u32;
        let mut bans = |k: u32| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(h.log())
                .expect("log");
            for _ in 0..k {
                n += 1;
                writeln!(
                    f,
                    "2026-12-01 21:00:00,{:03} fail2ban.actions        [42]: NOTICE  [{}] Ban 192.0.2.{}",
                    n % 1000,
                    h.jail,
                    n % 250 + 1
                )
                .expect("writing");
            }
        };
        let once = || {
            let out = run_rme(&[
                "push",
                "--once",
                "--config",
                config.to_str().expect("utf-8"),
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            metric_value(&stdout(&out), &series).unwrap_or(0.0)
        };
        bans(100);
        assert_eq!(once(), 100.0);
        bans(10); // not read yet
        if copytruncate {
            let conf = write(
                h.dir.path(),
                "logrotate-copytruncate-compress.conf",
                &format!(
                    "{} {{\n    rotate 4\n    copytruncate\n    compress\n    notifempty\n    missingok\n}}\n",
                    h.log().display()
                ),
            );
            h.logrotate(&conf);
            assert!(h.path("fail2ban.log.1.gz").exists() && !h.path("fail2ban.log.1").exists());
            bans(5);
            assert_eq!(once(), 115.0, "the lines only the gzipped copy holds");
        } else {
            let conf = h.logrotate_create();
            h.logrotate(&conf);
            bans(20); // the writer has reopened: to the new file
            std::thread::sleep(Duration::from_millis(20));
            h.logrotate(&conf);
            assert!(h.path("fail2ban.log.2.gz").exists() && h.path("fail2ban.log.1").exists());
            bans(30);
            assert_eq!(once(), 160.0, "the rest of .2.gz, all of .1, the new file");
        }
        let total = once();
        assert_eq!(total, h.bans_on_disk() as f64, "nothing counted twice");
        bans(1);
        assert_eq!(once(), total + 1.0);
    }
}

/// A FIFO as log, as in mtail's documented syslog setup: the daemon follows it as a
/// stream (it used to hang at start with no log line); `--once` refuses it, and
/// `/dev/zero`, clearly, instead of reading forever.
#[test]
fn fifo_is_followed_by_the_daemon_and_refused_by_once() {
    let env = peer("vm");
    let h = Host::new("fifo");
    let fifo = h.log();
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let config = h.remote_write_config(&env);

    let out = once_within(&config, "a FIFO");
    assert!(!out.status.success(), "--once on a FIFO must fail");
    assert!(
        stderr(&out).contains("FIFO") && stderr(&out).contains("fail2ban.log"),
        "{}",
        stderr(&out)
    );

    let mut daemon = h.daemon(&config);
    // The syslog daemon's side: writers come and go (rsyslog reopens after a HUP).
    for round in 0..3 {
        let mut writer = Command::new("/usr/bin/python3")
            .arg(root().join("integration/peers/ban_writer.py"))
            .arg(&fifo)
            .arg("500")
            .arg(&h.jail)
            .stdout(Stdio::null())
            .spawn()
            .expect("ban_writer.py");
        let end = Instant::now() + Duration::from_secs(60);
        while writer.try_wait().expect("waiting").is_none() {
            assert!(
                Instant::now() < end,
                "writer {round} blocked: rme does not read the FIFO\n{}",
                h.rme_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    daemon.stop();
    assert_eq!(h.bans_in_vm(&env), 1500.0, "{}", h.rme_log());

    let zero = h.config("[[sinks]]\ntype = \"stdout\"\n");
    let text = std::fs::read_to_string(&zero)
        .expect("config")
        .replace("log = \"fail2ban.log\"", "log = \"/dev/zero\"");
    std::fs::write(&zero, text).expect("config");
    let out = once_within(&zero, "/dev/zero");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/dev/zero") && stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

/// `rme push --once`, killed (and the test failed) if it does not end within 20 s.
fn once_within(config: &Path, what: &str) -> std::process::Output {
    let mut once = rme()
        .args(["push", "--once", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rme");
    let end = Instant::now() + Duration::from_secs(20);
    while once.try_wait().expect("waiting").is_none() {
        if Instant::now() > end {
            let _ = once.kill();
            let _ = once.wait();
            panic!("push --once on {what} did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    once.wait_with_output().expect("rme")
}
