//! Integration tests: what rme writes to its log. Secrets in sink URLs never
//! reach it (a closed port and a real VictoriaMetrics that echoes the request
//! URI in its 400), and a warning that would repeat for every read (rme's own
//! stderr in the watched log directory) is written a bounded number of times.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use std::os::unix::fs::PermissionsExt as _;

use crate::common::{open_for_nobody, peer, rme_as_nobody, root_only, run_rme, stderr, write};

#[test]
fn a_password_or_token_in_a_sink_url_never_reaches_stderr() {
    let env = peer("vm");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "fail2ban.log",
        "2026-11-22 23:13:44,109 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 192.0.2.10\n",
    );
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // VictoriaMetrics answers an unknown path with a 400 that repeats the request URI.
    let vm = env["VM_URL"].replace("http://", "http://bob:vmPassw0rd@");
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"state\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"down\"\n\
             url = \"http://alice:s3cretPassw0rd@127.0.0.1:{closed}/api/v1/write?api_key=tok3n\"\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"vm\"\n\
             url = \"{vm}/api/v1/nowrite?access_token=vmTok3n\"\n\
             [[sinks]]\ntype = \"otlp\"\nname = \"otlp\"\n\
             endpoint = \"http://carol:otlpPassw0rd@127.0.0.1:{closed}\"\ntimeout_secs = 1\n"
        ),
    );
    let out = run_rme(&["push", "--once", "--config", config.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "delivery cannot have worked: {err}");
    // The failures are reported, with the URLs in them ...
    assert!(
        err.contains("alice:***@127.0.0.1") && err.contains("carol:***@127.0.0.1"),
        "{err}"
    );
    assert!(
        err.contains("unsupported path"),
        "VM's 400 is reported: {err}"
    );
    // ... and not one secret.
    for secret in [
        "s3cretPassw0rd",
        "tok3n",
        "vmPassw0rd",
        "vmTok3n",
        "otlpPassw0rd",
    ] {
        assert!(!err.contains(secret), "{secret} printed:\n{err}");
    }
}

#[test]
fn a_warning_that_causes_the_next_read_is_written_a_bounded_number_of_times() {
    // rme (as nobody) may not read the log: every read fails with a warning. Its
    // stderr goes to a file in the directory it watches, so each warning written
    // is a change there; before, that read again, which warned again.
    let dir = tempfile::tempdir().unwrap();
    let state = open_for_nobody(dir.path());
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    root_only(&logs.join("fail2ban.log"), "");
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "interval_secs = 60\nstate_dir = \"{}\"\n[[sources]]\ntype = \"fail2ban\"\n\
             log = \"logs/fail2ban.log\"\n[[sinks]]\ntype = \"stdout\"\n",
            state.display()
        ),
    );
    let err_path = logs.join("rme.err");
    let mut child = rme_as_nobody()
        .args(["push", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    write(&logs, "poke", "a change in the watched directory\n");
    std::thread::sleep(Duration::from_secs(4));
    // SIGTERM: a last flush reads once more (one more warning at most).
    terminate(child.id());
    let _ = child.wait();
    let text = std::fs::read_to_string(&err_path).unwrap();
    let warnings = text
        .lines()
        .filter(|l| l.contains("Permission denied"))
        .count();
    assert!(warnings >= 1, "the failure is reported: {text}");
    assert!(
        warnings <= rme::logging::BURST as usize,
        "{warnings} warnings (more than the burst of {}): {}",
        rme::logging::BURST,
        text.lines().take(5).collect::<Vec<_>>().join("\n")
    );
}

fn terminate(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
}
