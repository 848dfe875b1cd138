//! Stops while a request is on the wire: SIGTERM and SIGHUP's in-place
//! restart must let the request under way finish, not cut it and send the
//! same body again in the last round. A receiver that answers slowly (real
//! VictoriaMetrics behind `integration/peers/fault_proxy.py`, which delays
//! each answer after VM stored the body) keeps a request on the wire at
//! nearly every stop; VictoriaMetrics' raw export shows a body sent twice as
//! a repeated timestamp.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    Killed, append, curl_get, f2b_ban, free_port, peer, rme, root, unique, vm_export, wait_for,
    write,
};

/// `integration/peers/fault_proxy.py` in front of a real receiver, stopped when dropped.
pub struct FaultProxy {
    _child: Killed,
    pub url: String,
}

impl FaultProxy {
    /// A proxy on a free port forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let port = free_port();
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let child = Command::new("python3")
            .arg(root().join("integration/peers/fault_proxy.py"))
            .args([port.to_string(), target])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 fault_proxy.py");
        let p = FaultProxy {
            _child: Killed(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_for("fault_proxy listening", 10, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        p
    }

    /// Sets the fault (`delay_ms=300`, `status=503&count=4`, `reset=1`); returns its state line.
    pub fn set(&self, query: &str) -> String {
        curl_get(&format!("{}/__fault?{query}", self.url), &[])
    }
}

/// Whether `pid` has a handler for SIGHUP installed (the restarted rme is ready for the next one).
fn catches_sighup(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & 1 != 0)
}

fn spawn_rme(config: &Path, log: &Path) -> Killed {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("rme.log");
    let child = rme()
        .args(["push", "--config", config.to_str().expect("utf-8")])
        .stderr(log)
        .spawn()
        .expect("rme push");
    let pid = child.id();
    wait_for("rme to handle SIGHUP", 20, || {
        catches_sighup(pid).then_some(())
    });
    Killed(child)
}

fn wait_exit(child: &mut Child, secs: u64) {
    let status = wait_for("rme to exit after SIGTERM", secs, || {
        child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "{status:?}");
}

fn signal(pid: u32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill {pid}");
}

/// Timestamps that occur more than once in a series, per series name.
pub fn repeated_timestamps(vm_url: &str, selector: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out = BTreeMap::new();
    for s in vm_export(vm_url, selector) {
        let mut ts: Vec<i64> = s.points.iter().map(|p| p.0).collect();
        ts.sort_unstable();
        let mut dup: Vec<i64> = ts
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        dup.dedup();
        if !dup.is_empty() {
            let name = format!("{:?}", s.labels);
            out.insert(name, dup);
        }
    }
    out
}

/// 12 stops (8 SIGHUP, 4 SIGTERM) each while VictoriaMetrics' answer is
/// held back 300 ms: not one sample stored twice, and every ban arrives.
#[test]
fn stops_while_a_request_is_on_the_wire_send_no_body_twice() {
    let env = peer("vm");
    let vm = &env["VM_URL"];
    let proxy = FaultProxy::start(vm);
    proxy.set("delay_ms=300");
    let dir = tempfile::tempdir().expect("tempdir");
    let host = unique("stophost");
    let log = write(dir.path(), "fail2ban.log", "");
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "interval_secs = 1\nstop_timeout_secs = 10\nstate_dir = \"state\"\n\
             [[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"vm\"\nurl = \"{}/api/v1/write\"\n\
             external_labels = {{ host = \"{host}\" }}\n",
            proxy.url
        ),
    );
    let rme_log: PathBuf = dir.path().join("rme.log");
    let mut daemon = spawn_rme(&config, &rme_log);
    let (mut bans, mut hups, mut terms) = (0, 0, 0);
    for i in 0..12 {
        for _ in 0..3 {
            append(&log, &f2b_ban("sshd", bans));
            bans += 1;
        }
        std::thread::sleep(Duration::from_millis(1300));
        let pid = daemon.0.id();
        if i % 3 == 2 {
            signal(pid, libc::SIGTERM);
            terms += 1;
            wait_exit(&mut daemon.0, 30);
            daemon = spawn_rme(&config, &rme_log);
        } else {
            signal(pid, libc::SIGHUP);
            hups += 1;
            wait_for("the SIGHUP restart", 30, || {
                let text = std::fs::read_to_string(&rme_log).unwrap_or_default();
                (text.matches("restarting with it").count() == hups).then_some(())
            });
            std::thread::sleep(Duration::from_millis(100));
            wait_for("the restarted rme to handle SIGHUP", 20, || {
                catches_sighup(pid).then_some(())
            });
        }
    }
    let selector = format!("{{host=\"{host}\",__name__=\"fail2ban_bans_total\"}}");
    let started = Instant::now();
    wait_for("every ban in VictoriaMetrics", 30, || {
        let last = vm_export(vm, &selector)
            .iter()
            .filter_map(|s| s.points.last().map(|p| p.1))
            .sum::<f64>();
        (last == bans as f64).then_some(())
    });
    signal(daemon.0.id(), libc::SIGTERM);
    terms += 1;
    wait_exit(&mut daemon.0, 30);
    let dups = repeated_timestamps(vm, &format!("{{host=\"{host}\"}}"));
    let bodies: std::collections::BTreeSet<i64> = dups.values().flatten().copied().collect();
    println!(
        "{hups} SIGHUP + {terms} SIGTERM with a 300 ms answer delay: {} bodies stored twice \
         ({} series with repeated timestamps); all {bans} bans in VM after {:.1} s",
        bodies.len(),
        dups.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        dups.is_empty(),
        "{} of {} stops sent a body twice: {dups:?}\nrme's log:\n{}",
        bodies.len(),
        hups + terms,
        std::fs::read_to_string(&rme_log).unwrap_or_default()
    );
}
