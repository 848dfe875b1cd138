//! fail2ban's live state against a real fail2ban-server (Debian's), started here in a
//! private temp dir with the no-op `dummy` ban action (no firewall is touched): the
//! socket probe, directly and through `rme helper`, must report what
//! `fail2ban-client status JAIL` says at the same moment.
//!
//! Also the `reaction show` probe through `rme push`, with a stand-in `reaction` script:
//! no reaction binary is packaged for this machine, so only rme's side is real there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{metric_value, rme, root, stderr, stdout, write};

/// A private fail2ban-server; stopped (then killed if need be) when dropped.
struct Fail2ban {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Child,
}

const JAILS: [&str; 2] = ["sshd", "web-app.v2"];

impl Fail2ban {
    fn start() -> Fail2ban {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["conf/filter.d", "conf/action.d", "run"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        for (from, to) in [
            ("filter.d/sshd.conf", "conf/filter.d/sshd.conf"),
            ("filter.d/common.conf", "conf/filter.d/common.conf"),
            ("action.d/dummy.conf", "conf/action.d/dummy.conf"),
        ] {
            std::fs::copy(Path::new("/etc/fail2ban").join(from), d.join(to))
                .expect("fail2ban's stock sshd filter and dummy action (run integration/peers/peers.sh install)");
        }
        let socket = d.join("run/fail2ban.sock");
        write(
            &d.join("conf"),
            "fail2ban.conf",
            &format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {s}\n\
                 pidfile = {d}/run/fail2ban.pid\ndbfile = :memory:\n[Thread]\n",
                d = d.display(),
                s = socket.display()
            ),
        );
        // A long bantime keeps the numbers still while the test compares them.
        let mut jail = format!(
            "[DEFAULT]\nignoreself = true\nignoreip = 127.0.0.1/8 ::1\nbackend = polling\nusedns = no\n\
             maxretry = 3\nfindtime = 600s\nbantime = 3600s\nbanaction = dummy\n\
             action = dummy[target=\"{}/run/fail2ban.dummy\"]\n",
            d.display()
        );
        for j in JAILS {
            std::fs::write(d.join(format!("auth-{j}.log")), "").expect("auth log");
            jail += &format!(
                "\n[{j}]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = {}/auth-{j}.log\n",
                d.display()
            );
        }
        write(&d.join("conf"), "jail.conf", &jail);
        let child = Command::new("fail2ban-server")
            .args(["-f", "-x", "-c"])
            .arg(d.join("conf"))
            .arg("-s")
            .arg(&socket)
            .arg("-p")
            .arg(d.join("run/fail2ban.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fail2ban-server (apt install fail2ban)");
        let f2b = Fail2ban { dir, socket, child };
        f2b.wait_for("ping", |out| out.contains("pong"));
        f2b
    }

    fn client(&self, args: &[&str]) -> String {
        let out = Command::new("fail2ban-client")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("fail2ban-client");
        stdout(&out)
    }

    fn wait_for(&self, args: &str, done: impl Fn(&str) -> bool) {
        let args: Vec<&str> = args.split(' ').collect();
        let end = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < end {
            last = self.client(&args);
            if done(&last) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.path().join("fail2ban.log")).unwrap_or_default();
        panic!(
            "fail2ban-client {args:?} never got there; last output:\n{last}\nfail2ban.log:\n{log}"
        );
    }

    /// Appends `n` sshd failures over `m` addresses to a jail's log (the peers' feeder).
    fn feed(&self, jail: &str, n: u32, m: u32) {
        let out = Command::new("bash")
            .arg(root().join("integration/peers/f2b_feed.sh"))
            .args([n.to_string(), m.to_string()])
            .arg(self.dir.path().join(format!("auth-{jail}.log")))
            .output()
            .expect("f2b_feed.sh");
        assert!(out.status.success(), "f2b_feed.sh: {}", stderr(&out));
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _ = Command::new("fail2ban-client")
            .arg("-s")
            .arg(&self.socket)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fail2ban-client status JAIL` as label → number ("Currently failed" → 1, …).
fn client_numbers(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter_map(|l| l.split_once(":\t"))
        .filter_map(|(k, v)| {
            let key = k.trim_start_matches(|c: char| " |`-".contains(c));
            Some((key.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `rme push --once` with one fail2ban source line (`socket = …` or `helper = …`), stdout sink.
fn push_source(dir: &Path, source_line: &str) -> (String, String) {
    push_source_as(dir, source_line, false)
}

/// Same, optionally as the unprivileged user `nobody` (group `nogroup`), via setpriv.
fn push_source_as(dir: &Path, source_line: &str, nobody: bool) -> (String, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let state = dir.join(crate::common::unique("state"));
    std::fs::create_dir_all(&state).expect("state dir");
    // rme refuses a state dir others can write: give it to the user rme runs as.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod state");
    if nobody {
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).expect("chown state");
    }
    let config = write(
        dir,
        &crate::common::unique("rme-live.toml"),
        &format!(
            "state_dir = \"{}\"\n[[sources]]\ntype = \"fail2ban\"\n{source_line}\n[[sinks]]\ntype = \"stdout\"\n",
            state.display()
        ),
    );
    let mut cmd = if nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
        c.arg(env!("CARGO_BIN_EXE_rme"));
        c
    } else {
        rme()
    };
    let out = cmd
        .args(["push", "--once", "--config"])
        .arg(&config)
        .output()
        .expect("running rme");
    (stdout(&out), stderr(&out))
}

/// Starts `rme helper` on `socket` for fail2ban's socket; waits until the socket has its
/// final mode (set after the group, so the group is set too).
fn start_helper(socket: &Path, fail2ban: &Path, group: Option<&str>) -> Child {
    let mut cmd = rme();
    cmd.arg("helper")
        .arg("--listen")
        .arg(socket)
        .arg("--fail2ban-socket")
        .arg(fail2ban);
    if let Some(g) = group {
        cmd.args(["--group", g]);
    }
    let helper = cmd.spawn().expect("rme helper");
    let end = Instant::now() + Duration::from_secs(10);
    use std::os::unix::fs::PermissionsExt as _;
    let ready = || std::fs::metadata(socket).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o660);
    while !ready() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    helper
}

/// The probe's gauges for `jail` equal fail2ban-client's numbers.
fn assert_matches_client(f2b: &Fail2ban, text: &str) {
    assert_eq!(metric_value(text, "fail2ban_up"), Some(1.0), "{text}");
    assert_eq!(metric_value(text, "fail2ban_jails"), Some(2.0), "{text}");
    for jail in JAILS {
        let want = client_numbers(&f2b.client(&["status", jail]));
        let got = |m: &str| metric_value(text, &format!("{m}{{jail=\"{jail}\"}}"));
        assert_eq!(
            got("fail2ban_jail_failed_current"),
            want.get("Currently failed").copied(),
            "{jail}: {text}"
        );
        assert_eq!(
            got("fail2ban_jail_failed"),
            want.get("Total failed").copied(),
            "{jail}: {text}"
        );
        assert_eq!(
            got("fail2ban_jail_banned_current"),
            want.get("Currently banned").copied(),
            "{jail}: {text}"
        );
        assert_eq!(
            got("fail2ban_jail_banned"),
            want.get("Total banned").copied(),
            "{jail}: {text}"
        );
        assert_eq!(
            got("fail2ban_jail_config_bantime_seconds"),
            Some(3600.0),
            "{jail}: {text}"
        );
        assert_eq!(
            got("fail2ban_jail_config_findtime_seconds"),
            Some(600.0),
            "{jail}: {text}"
        );
        assert_eq!(
            got("fail2ban_jail_config_maxretry"),
            Some(3.0),
            "{jail}: {text}"
        );
    }
}

#[test]
fn socket_probe_and_helper_report_what_fail2ban_client_says() {
    let f2b = Fail2ban::start();
    // 8 failures over 3 addresses: two reach maxretry=3 and are banned, one stays "failed".
    f2b.feed("sshd", 8, 3);
    f2b.wait_for("status sshd", |s| {
        let n = client_numbers(s);
        n.get("Currently banned") == Some(&2.0) && n.get("Total failed") == Some(&8.0)
    });
    let numbers = client_numbers(&f2b.client(&["status", "sshd"]));
    assert_eq!(numbers.get("Total banned"), Some(&2.0), "{numbers:?}");

    // Directly on fail2ban's socket (owned by the test's user here).
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, err) = push_source(
        dir.path(),
        &format!("socket = \"{}\"", f2b.socket.display()),
    );
    assert_matches_client(&f2b, &text);
    assert!(!text.contains("203.0.113"), "no IP in any label:\n{text}");
    assert!(!err.contains("probe failed"), "{err}");

    // Through `rme helper`.
    let helper_sock = dir.path().join("run/rme/helper.sock");
    let mut helper = start_helper(&helper_sock, &f2b.socket, None);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&helper_sock)
        .expect("helper socket")
        .permissions()
        .mode();
    let (text, err) = push_source(
        dir.path(),
        &format!("helper = \"{}\"", helper_sock.display()),
    );
    let _ = helper.kill();
    let _ = helper.wait();
    assert_eq!(mode & 0o777, 0o660);
    assert_matches_client(&f2b, &text);
    assert!(!err.contains("probe failed"), "{err}");
}

/// The least-privilege setup: rme as `nobody` cannot open fail2ban's socket (mode 0600,
/// root), but reads the same numbers through a root `rme helper --group nogroup`.
#[test]
fn unprivileged_rme_reads_fail2ban_through_the_helper_only() {
    if effective_uid() != 0 {
        eprintln!("skipped: needs root to run fail2ban as root and rme as nobody");
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let f2b = Fail2ban::start();
    f2b.feed("web-app.v2", 3, 1);
    f2b.wait_for("status web-app.v2", |s| {
        client_numbers(s).get("Currently banned") == Some(&1.0)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    // Let nobody reach the sockets' directories, so the socket's own mode decides.
    for d in [dir.path(), f2b.dir.path(), &f2b.dir.path().join("run")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let (text, err) = push_source_as(
        dir.path(),
        &format!("socket = \"{}\"", f2b.socket.display()),
        true,
    );
    assert_eq!(metric_value(&text, "fail2ban_up"), Some(0.0), "{text}");
    assert!(
        err.contains("Permission denied") && err.contains("rme helper"),
        "{err}"
    );

    let helper_sock = dir.path().join("helper.sock");
    let mut helper = start_helper(&helper_sock, &f2b.socket, Some("nogroup"));
    let (text, err) = push_source_as(
        dir.path(),
        &format!("helper = \"{}\"", helper_sock.display()),
        true,
    );
    let _ = helper.kill();
    let _ = helper.wait();
    assert!(!err.contains("probe failed"), "{err}");
    assert_matches_client(&f2b, &text);
    assert_eq!(
        metric_value(&text, "fail2ban_jail_banned_current{jail=\"web-app.v2\"}"),
        Some(1.0)
    );
}

/// The effective uid, from /proc (no unsafe libc call in tests).
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

#[test]
fn missing_socket_sets_up_to_zero_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-fail2ban.sock");
    let (text, err) = push_source(dir.path(), &format!("socket = \"{}\"", missing.display()));
    assert_eq!(metric_value(&text, "fail2ban_up"), Some(0.0), "{text}");
    assert!(err.contains("is fail2ban-server running"), "{err}");
    let count = metric_value(&text, "rme_probe_errors_total{source=\"fail2ban\"}");
    assert_eq!(count, Some(1.0), "{text}");

    // The helper is down too: its own hint.
    let (text, err) = push_source(dir.path(), &format!("helper = \"{}\"", missing.display()));
    assert_eq!(metric_value(&text, "fail2ban_up"), Some(0.0), "{text}");
    assert!(err.contains("is `rme helper` running?"), "{err}");
}

/// `show = true` wires the `reaction show` probe: it runs `command` with `-s socket -f json`
/// and its gauges reach the sink, with no match value (IP) in any label.
#[test]
fn reaction_show_probe_through_rme_push() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let json = r#"{"ssh": {"failedlogin": {
        "192.0.2.1": {"matches": 2},
        "203.0.113.9": {"actions": {"unban": ["2024-04-30 12:00:01", "2024-04-30 12:10:01"]}}}}}"#;
    write(d, "show.json", json);
    let fake = write(
        d,
        "reaction",
        &format!(
            "#!/bin/sh\necho \"$@\" > '{0}/args'\ncat '{0}/show.json'\n",
            d.display()
        ),
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = write(
        d,
        "rme.toml",
        &format!(
            "state_dir = \"{0}/state\"\n[[sources]]\ntype = \"reaction\"\nshow = true\n\
             socket = \"{0}/reaction.sock\"\ncommand = \"{1}\"\n[[sinks]]\ntype = \"stdout\"\n",
            d.display(),
            fake.display()
        ),
    );
    let out = rme()
        .args(["push", "--once", "--config"])
        .arg(&config)
        .output()
        .expect("running rme");
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metric_value(&text, "reaction_up"), Some(1.0), "{text}");
    let sf = "stream=\"ssh\"";
    let pending = format!("reaction_pending_count{{action=\"unban\",filter=\"failedlogin\",{sf}}}");
    assert_eq!(metric_value(&text, &pending), Some(2.0), "{text}");
    let matches = format!("reaction_current_matches{{filter=\"failedlogin\",{sf}}}");
    assert_eq!(metric_value(&text, &matches), Some(2.0), "{text}");
    assert!(
        !text.contains("192.0.2.1") && !text.contains("203.0.113.9"),
        "{text}"
    );
    let args = std::fs::read_to_string(d.join("args")).expect("the fake reaction ran");
    assert_eq!(
        args.trim(),
        format!("show -s {}/reaction.sock -f json", d.display())
    );
}

/// Issue #2's acceptance check, on a log the real fail2ban 1.0.2 writes during the
/// test: `rme parse fail2ban` gives per-jail ban counts equal to `grep -c` of the Ban lines.
#[test]
fn parse_of_a_fresh_real_log_counts_bans_like_grep() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    let run = std::process::Command::new("bash")
        .arg(crate::common::root().join("integration/peers/fail2ban_live.sh"))
        .arg(&log)
        .args(["9", "3", "--jails", "sshd,web-app.v2"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = crate::common::run_rme(&["parse", "fail2ban", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let text = crate::common::stdout(&out);
    for jail in ["sshd", "web-app.v2"] {
        let grep = std::process::Command::new("grep")
            .args(["-c", &format!(r"\[{jail}\] Ban ")])
            .arg(&log)
            .output()
            .unwrap();
        let expected: f64 = String::from_utf8_lossy(&grep.stdout)
            .trim()
            .parse()
            .unwrap();
        assert!(expected >= 3.0, "fail2ban banned too little: {expected}");
        let series = format!("fail2ban_bans_total{{jail=\"{jail}\"}}");
        assert_eq!(
            crate::common::metric_value(&text, &series),
            Some(expected),
            "{text}"
        );
    }
    // every line of a real log is understood: no unparsed series at all
    assert!(!text.contains("rme_lines_unparsed_total{"), "{text}");
}

/// Clients that connect to `socket` and send a byte a second, reconnecting when
/// the helper hangs up, until the result is dropped; plus one that sends nothing.
struct Drippers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u32>>,
}

impl Drippers {
    fn start(socket: &Path, n: usize) -> Drippers {
        use std::io::Write as _;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..n)
            .map(|i| {
                let (socket, stop) = (socket.to_path_buf(), stop.clone());
                std::thread::spawn(move || {
                    let mut connections = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) else {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        };
                        connections += 1;
                        // dripper 0 only connects and waits
                        while !stop.load(Ordering::SeqCst) && (i == 0 || s.write_all(b"f").is_ok())
                        {
                            std::thread::sleep(Duration::from_millis(1000));
                            if i == 0 && s.write_all(b"").is_err() {
                                break;
                            }
                        }
                    }
                    connections
                })
            })
            .collect();
        Drippers { stop, threads }
    }

    fn stop(self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap_or(0))
            .sum()
    }
}

/// `rme helper` serves clients concurrently with one deadline per request: idle
/// clients and clients that drip their request byte by byte (each byte within
/// the old per-read timeout) do not delay a real request from `rme push`.
#[test]
fn dripping_and_idle_clients_do_not_delay_a_real_request_through_the_helper() {
    let f2b = Fail2ban::start();
    f2b.feed("sshd", 4, 2);
    f2b.wait_for("status sshd", |s| {
        client_numbers(s).get("Total failed") == Some(&4.0)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let helper_sock = dir.path().join("helper.sock");
    let mut helper = start_helper(&helper_sock, &f2b.socket, None);
    let drippers = Drippers::start(&helper_sock, 4);
    // Let them all get in before the real request.
    std::thread::sleep(Duration::from_millis(1500));
    let (text, err) = push_source(
        dir.path(),
        &format!("helper = \"{}\"", helper_sock.display()),
    );
    let connections = drippers.stop();
    let _ = helper.kill();
    let _ = helper.wait();
    assert!(connections >= 4, "the drippers connected: {connections}");
    assert!(!err.contains("probe failed"), "{err}");
    assert_matches_client(&f2b, &text);
}

/// The real fail2ban-server and the real logrotate with fail2ban's own logrotate file
/// (create, compress, delaycompress, postrotate `fail2ban-client flushlogs`, here after
/// a 3 s pause so fail2ban logs its bans to the renamed file first): `rme push` must
/// count in VictoriaMetrics every ban `fail2ban-client status` reports.
#[test]
fn real_fail2ban_rotated_by_logrotate_loses_no_ban() {
    let env = crate::common::peer("vm");
    let f2b = Fail2ban::start();
    let d = f2b.dir.path();
    let log = d.join("fail2ban.log");
    let job = crate::common::unique("f2brot");
    let conf = write(
        d,
        "logrotate.conf",
        &format!(
            "{} {{\n    weekly\n    rotate 4\n    compress\n    notifempty\n    delaycompress\n    missingok\n\
             \x20   postrotate\n\tsleep 3; fail2ban-client -s {} flushlogs 1>/dev/null\n    endscript\n    create 640\n}}\n",
            log.display(),
            f2b.socket.display()
        ),
    );
    let config = write(
        d,
        "rme.toml",
        &format!(
            "interval_secs = 1\nstate_dir = \"{0}/state\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"{1}\"\n\
             [[sinks]]\ntype = \"remote_write\"\nurl = \"{2}\"\nexternal_labels = {{ job = \"{job}\" }}\n",
            d.display(),
            log.display(),
            env["VM_WRITE_URL"]
        ),
    );
    let mut daemon = crate::statsd::Daemon(
        rme()
            .args(["push", "--config"])
            .arg(&config)
            .stderr(std::fs::File::create(d.join("run/rme.log")).expect("rme.log"))
            .spawn()
            .expect("rme push"),
    );
    // rme must have read fail2ban's start-up lines before the first rotation
    let read = format!("rme_lines_read_total{{job=\"{job}\"}}");
    let end = Instant::now() + Duration::from_secs(30);
    while crate::common::vm_export(&env["VM_URL"], &read).is_empty() {
        assert!(Instant::now() < end, "rme never pushed");
        std::thread::sleep(Duration::from_millis(200));
    }
    for round in 1..=3u32 {
        let rotate = {
            let (conf, state) = (conf.clone(), d.join("logrotate.state"));
            std::thread::spawn(move || {
                Command::new("logrotate")
                    .arg("-f")
                    .arg("-s")
                    .arg(state)
                    .arg(conf)
                    .output()
                    .expect("logrotate (integration/peers/peers.sh install)")
            })
        };
        std::thread::sleep(Duration::from_millis(300)); // renamed, not reopened yet
        // 3 new addresses each round (the first ones are already banned)
        f2b.feed("sshd", 9 * round, 3 * round);
        f2b.wait_for("status sshd", |s| {
            client_numbers(s).get("Total banned") == Some(&f64::from(3 * round))
        });
        let out = rotate.join().expect("logrotate thread");
        assert!(out.status.success(), "logrotate: {}", stderr(&out));
    }
    let banned = client_numbers(&f2b.client(&["status", "sshd"]))["Total banned"];
    std::thread::sleep(Duration::from_secs(1));
    daemon.stop();
    let sel = format!("fail2ban_bans_total{{job=\"{job}\",jail=\"sshd\"}}");
    let got = crate::remote_write::vm_points(&env["VM_URL"], &sel)
        .last()
        .map(|p| p.1);
    assert_eq!(
        got,
        Some(banned),
        "rme's log:\n{}",
        std::fs::read_to_string(d.join("run/rme.log")).unwrap_or_default()
    );
}

/// A probe does its I/O outside the store's lock: while `reaction show` (a
/// stand-in that waits until the test releases it) runs, `GET /metrics` answers.
#[test]
fn metrics_answer_while_a_probe_waits_on_its_program() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        d,
        "show.json",
        r#"{"ssh": {"failedlogin": {"192.0.2.1": {"matches": 2}}}}"#,
    );
    // Waits for `release` (at most 8 s, below the probe's own 10 s timeout).
    let fake = write(
        d,
        "reaction",
        &format!(
            "#!/bin/sh\ntouch '{0}/started'\ni=0\nwhile [ ! -e '{0}/release' ] && [ $i -lt 80 ]; do sleep 0.1; i=$((i+1)); done\ncat '{0}/show.json'\n",
            d.display()
        ),
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = write(
        d,
        "rme.toml",
        &format!(
            "interval_secs = 1\nstate_dir = \"{0}/state\"\n[serve]\nlisten = \"127.0.0.1:{port}\"\n\
             [[sources]]\ntype = \"reaction\"\nshow = true\ncommand = \"{1}\"\n",
            d.display(),
            fake.display()
        ),
    );
    let mut rme = rme()
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(d.join("rme.log")).expect("rme.log"))
        .spawn()
        .expect("rme serve");
    let end = Instant::now() + Duration::from_secs(20);
    while !d.join("started").exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = d.join("started").exists();
    // The probe is now waiting on the stand-in: ask for /metrics.
    let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(6)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    });
    let released_after = !d.join("release").exists();
    write(d, "release", "");
    let _ = rme.kill();
    let _ = rme.wait();
    assert!(
        started,
        "the probe never ran: {}",
        std::fs::read_to_string(d.join("rme.log")).unwrap_or_default()
    );
    let body = answer.expect("/metrics did not answer while the probe waited");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        released_after,
        "the answer came before the probe was released"
    );
}
