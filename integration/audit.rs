//! Integration tests: the audit source through the real `rme` binary: the
//! kernel's audit status over netlink (as root, without CAP_AUDIT_CONTROL, as
//! nobody, and as nobody through `rme helper`) and audit.log records followed
//! across `rme push --once` runs.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{append, metric_value, push_once_output, rme, samples, stderr, stdout, write};

fn config(dir: &Path, netlink: bool, log: Option<&Path>) -> std::path::PathBuf {
    let log = log
        .map(|p| format!("log = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    config_with(dir, netlink, &log)
}

/// A config with one audit source (`extra` holds its other keys) and a stdout sink.
fn config_with(dir: &Path, netlink: bool, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "state_dir = {state:?}\n\n[[sources]]\ntype = \"audit\"\nnetlink = {netlink}\n{extra}\n[[sinks]]\ntype = \"stdout\"\n",
        state = dir.join("state").display().to_string(),
    );
    write(dir, "rme.toml", &text)
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Whether this process may read the audit status (root with CAP_AUDIT_CONTROL,
/// in the initial namespaces); the reason when it may not.
fn audit_get_permitted() -> Result<(), String> {
    match rme::sources::audit::query(1, std::time::Duration::from_secs(2)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("AUDIT_GET not permitted here: {e}")),
    }
}

#[test]
fn kernel_status_is_pushed_when_permitted() {
    if let Err(why) = audit_get_permitted() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = push_once_output(&config(dir.path(), true, None));
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert_eq!(metric_value(&text, "audit_status_up"), Some(1.0), "{text}");
    let enabled = metric_value(&text, "audit_enabled").expect("audit_enabled");
    assert!((0.0..=2.0).contains(&enabled), "{text}");
    let failure = metric_value(&text, "audit_failure_mode").expect("audit_failure_mode");
    assert!((0.0..=2.0).contains(&failure), "{text}");
    assert!(
        metric_value(&text, "audit_backlog_limit").is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert!(metric_value(&text, "audit_backlog").is_some(), "{text}");
    assert!(metric_value(&text, "audit_daemon_pid").is_some(), "{text}");
    assert!(metric_value(&text, "audit_lost_total").is_some(), "{text}");
    assert!(text.contains("# TYPE audit_lost counter"), "{text}");
}

/// The same query from a child that lost CAP_AUDIT_CONTROL: the kernel says
/// EPERM and rme says how to grant the capability.
#[test]
fn without_cap_audit_control_status_is_down_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let drop_cap = ["--inh-caps=-audit_control", "--bounding-set=-audit_control"];
    let Some(out) = unprivileged_push_once(dir.path(), &drop_cap) else {
        return;
    };
    assert_eperm_with_advice(&out);
}

/// As `nobody` (uid 65534), the other way a service runs without the capability.
#[test]
fn as_nobody_status_is_down_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    // nobody must reach the config and write the state directory
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let Some(out) = unprivileged_push_once(dir.path(), &nobody) else {
        return;
    };
    assert_eperm_with_advice(&out);
}

/// `rme push --once` with netlink on, under `setpriv ARGS` when root (plain when
/// not root, which lacks the capability anyway); `None` (test skipped) when
/// setpriv is missing.
fn unprivileged_push_once(dir: &Path, setpriv_args: &[&str]) -> Option<Output> {
    let config = config(dir, true, None);
    if !is_root() {
        return Some(push_once_output(&config));
    }
    let run = Command::new("setpriv")
        .args(setpriv_args)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_rme"))
        .args(["push", "--once", "--config"])
        .arg(&config)
        .output();
    match run {
        Ok(o) => Some(o),
        Err(e) => {
            eprintln!("skipped: cannot run setpriv to drop privileges: {e}");
            None
        }
    }
}

fn assert_eperm_with_advice(out: &Output) {
    let (text, log) = (stdout(out), stderr(out));
    if log.contains("Connection refused") || log.contains("Protocol not supported") {
        eprintln!(
            "skipped: this kernel or namespace refuses AUDIT_GET before checking capabilities:\n{log}"
        );
        return;
    }
    assert!(out.status.success(), "{log}\n{text}");
    assert_eq!(
        metric_value(&text, "audit_status_up"),
        Some(0.0),
        "{text}\n{log}"
    );
    assert_eq!(
        metric_value(&text, "audit_status_errors_total{error=\"eperm\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "rme_probe_errors_total{source=\"audit\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        log.matches("CAP_AUDIT_CONTROL (in").count(),
        1,
        "warned once:\n{log}"
    );
    assert!(
        metric_value(&text, "audit_enabled").is_none(),
        "no status without an answer:\n{text}"
    );
    for advice in [
        "Operation not permitted",
        "AmbientCapabilities=CAP_AUDIT_CONTROL",
        "rme helper",
    ] {
        assert!(log.contains(advice), "missing {advice:?} in:\n{log}");
    }
}

/// A real sample followed across two cron-style runs: each record counted once,
/// counters continued from the state file.
#[test]
fn audit_log_is_counted_once_across_runs() {
    let sample =
        std::fs::read_to_string(samples().join("audit/fail2ban-tests-selinux-ssh.log")).unwrap();
    let records: Vec<&str> = sample.lines().filter(|l| l.starts_with("type=")).collect();
    assert_eq!(records.len(), 10);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, &(records[..4].join("\n") + "\n"));
    let config = config(dir.path(), false, Some(&log));
    let first = push_once_output(&config);
    let text = stdout(&first);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        metric_value(&text, "audit_user_login_total{result=\"failed\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "audit_records_total{type=\"USER_ERR\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric_value(&text, "audit_status_up").is_none(),
        "netlink = false: no probe\n{text}"
    );

    append(&log, &(records[4..].join("\n") + "\n"));
    let second = push_once_output(&config);
    let text = stdout(&second);
    assert!(second.status.success(), "{}", stderr(&second));
    let count = |kind: &str| {
        records
            .iter()
            .filter(|l| l.starts_with(&format!("type={kind} ")))
            .count() as f64
    };
    assert_eq!(
        metric_value(&text, "audit_user_login_total{result=\"failed\"}"),
        Some(count("USER_LOGIN")),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "audit_user_auth_total{result=\"failed\"}"),
        Some(count("USER_AUTH")),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "audit_records_total{type=\"USER_ERR\"}"),
        Some(count("USER_ERR")),
        "{text}"
    );
    let events = "audit_events_total{key=\"(none)\",result=\"failed\",type=\"USER_LOGIN\"}";
    assert_eq!(
        metric_value(&text, events),
        Some(count("USER_LOGIN")),
        "{text}"
    );
}

/// `rme parse audit` on an ENRICHED sample prints the events a dry run gives.
#[test]
fn parse_prints_enriched_events() {
    let file = samples().join("audit/laurel/record-anom-promiscuous.txt");
    let out = rme()
        .args(["parse", "audit"])
        .arg(&file)
        .output()
        .expect("running rme");
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let anom = "audit_events_total{key=\"(none)\",result=\"success\",type=\"ANOM_PROMISCUOUS\"}";
    assert_eq!(metric_value(&text, anom), Some(1.0), "{text}");
    assert_eq!(
        metric_value(&text, "audit_anomalies_total{type=\"ANOM_PROMISCUOUS\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "audit_records_total{type=\"SOCKADDR\"}"),
        Some(1.0),
        "{text}"
    );
}

/// F1 of security-review-3: a user name holding `'` (which libaudit writes
/// inside `msg='…'` without encoding) must not change a login's result. Real
/// auparse (`aureport --auth -if`, auditd 3.0.9 from `peers.sh install`) and
/// `rme parse audit` read the same file; each record's verdict must agree, and
/// the forged names must not move a failure to success or back.
#[test]
fn aureport_reads_the_forged_user_name_as_rme_does() {
    let Ok(aureport) = which("aureport") else {
        panic!("aureport not found: install auditd (integration/peers/peers.sh install)");
    };
    let dir = tempfile::tempdir().unwrap();
    let record = |serial: u32, acct: &str, res: &str| {
        format!(
            "type=USER_AUTH msg=audit(17646000{serial:02}.100:{serial}): pid=4242 uid=0 auid=4294967295 \
             ses=4294967295 subj=unconfined msg='op=PAM:authentication grantors=? acct=\"{acct}\" \
             exe=\"/usr/sbin/sshd\" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res={res}'\n"
        )
    };
    // The first two are the review's records, byte for byte.
    let mut log = String::new();
    log.push_str("type=USER_AUTH msg=audit(1764600000.100:501): pid=4242 uid=0 auid=4294967295 ses=4294967295 subj=unconfined msg='op=PAM:authentication grantors=? acct=\"x'res=success\" exe=\"/usr/sbin/sshd\" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'\n");
    log.push_str("type=USER_AUTH msg=audit(1764600001.100:502): pid=4242 uid=0 auid=4294967295 ses=4294967295 subj=unconfined msg='op=PAM:authentication grantors=? acct=\"admin\" exe=\"/usr/sbin/sshd\" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'\n");
    // The other way round: a success made to look failed, and names of quotes.
    log.push_str(&record(10, "y'res=failed", "success"));
    log.push_str(&record(11, "'''", "success"));
    log.push_str(&record(12, "'res=success'", "failed"));
    let file = write(dir.path(), "audit.log", &log);

    let out = Command::new(&aureport)
        .args(["--auth", "-if"])
        .arg(&file)
        .output()
        .expect("running aureport");
    let report = stdout(&out);
    assert!(out.status.success(), "{}\n{report}", stderr(&out));
    // `N. date time acct host term exe success event`
    let verdicts: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n.ends_with('.'))
        })
        .filter_map(|l| l.split_whitespace().rev().nth(1))
        .collect();
    assert_eq!(verdicts, ["no", "no", "yes", "yes", "no"], "{report}");
    let (yes, no) = (
        verdicts.iter().filter(|v| **v == "yes").count() as f64,
        verdicts.iter().filter(|v| **v == "no").count() as f64,
    );

    let out = rme().args(["parse", "audit"]).arg(&file).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let auth = |r: &str| metric_value(&text, &format!("audit_user_auth_total{{result=\"{r}\"}}"));
    assert_eq!(auth("success"), Some(yes), "{text}");
    assert_eq!(auth("failed"), Some(no), "{text}");
    let events = |r: &str| {
        metric_value(
            &text,
            &format!("audit_events_total{{key=\"(none)\",result=\"{r}\",type=\"USER_AUTH\"}}"),
        )
    };
    assert_eq!(
        (events("success"), events("failed")),
        (Some(yes), Some(no)),
        "{text}"
    );
}

/// `path` of `program` on `PATH`, or where Debian puts admin tools.
fn which(program: &str) -> Result<std::path::PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program} not on PATH"))
}

/// `rme push` as nobody gets the status through a root `rme helper --group nogroup`,
/// and a clear error when no helper listens.
#[test]
fn nobody_reads_the_status_through_the_helper() {
    if !is_root() {
        eprintln!("skipped: needs root to start the helper and switch to nobody");
        return;
    }
    if let Err(why) = audit_get_permitted() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    // the helper refuses a socket directory others can write (review 3, F10)
    let sockdir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        sockdir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let socket = sockdir.path().join("helper.sock");
    let helper_key = format!("helper = {:?}\n", socket.display().to_string());
    let config = config_with(dir.path(), true, &helper_key);
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];

    let absent = run_as(&nobody, &config);
    assert_eq!(
        metric_value(&stdout(&absent), "audit_status_up"),
        Some(0.0),
        "{}",
        stderr(&absent)
    );
    let errors = "audit_status_errors_total{error=\"helper\"}";
    assert_eq!(metric_value(&stdout(&absent), errors), Some(1.0));
    assert!(
        stderr(&absent).contains("is `rme helper` running?"),
        "{}",
        stderr(&absent)
    );

    let mut helper = rme()
        .args(["helper", "--group", "65534", "--listen"])
        .arg(&socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting rme helper");
    let ready = || {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(&socket).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o660)
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ready() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let through = run_as(&nobody, &config);
    let _ = helper.kill();
    let _ = helper.wait();
    let text = stdout(&through);
    assert!(through.status.success(), "{}", stderr(&through));
    assert_eq!(
        metric_value(&text, "audit_status_up"),
        Some(1.0),
        "{text}\n{}",
        stderr(&through)
    );
    assert!(
        metric_value(&text, "audit_backlog_limit").is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert!(
        metric_value(&text, "audit_enabled").is_some_and(|v| (0.0..=2.0).contains(&v)),
        "{text}"
    );
}

fn run_as(setpriv_args: &[&str], config: &Path) -> Output {
    Command::new("setpriv")
        .args(setpriv_args)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_rme"))
        .args(["push", "--once", "--config"])
        .arg(config)
        .output()
        .expect("running setpriv")
}
