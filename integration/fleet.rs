//! Fleets: rme → vmagent (a site's relay) → VictoriaMetrics with vmagent
//! restarted mid-run, and 50 hosts' `rme push --once` started at once against
//! one VictoriaMetrics; every counter must arrive exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::{
    Killed, append, f2b_ban, peer, peers_sh, promql, rme, unique, vm_export, wait_for, write,
};

fn peers(cmd: &str, name: &str) {
    let out = Command::new("bash")
        .arg(peers_sh())
        .args([cmd, name])
        .output()
        .expect("peers.sh");
    assert!(
        out.status.success(),
        "peers.sh {cmd} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bans(from: usize, n: usize) -> String {
    (from..from + n).map(|i| f2b_ban("sshd", i)).collect()
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "rec"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn through_vmagent_restarted_mid_run_every_sample_arrives_once() {
    let env = peer("vm-new");
    let env = peer("vmagent")
        .into_iter()
        .chain(env)
        .collect::<BTreeMap<_, _>>();
    let dir = tempfile::tempdir().expect("tempdir");
    let host = unique("relayhost");
    let log = write(dir.path(), "fail2ban.log", "");
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "interval_secs = 1\nstate_dir = \"state\"\n\
             [[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"site\"\nurl = \"{}\"\n\
             external_labels = {{ host = \"{host}\" }}\n",
            env["VMAGENT_WRITE_URL"]
        ),
    );
    let mut daemon = Killed(
        rme()
            .args(["push", "--config", config.to_str().expect("utf-8")])
            .stderr(Stdio::null())
            .spawn()
            .expect("rme push"),
    );
    let vm = &env["VM_NEW_URL"];
    let bans_of = |host: &str| {
        promql(
            vm,
            &format!("last_over_time(fail2ban_bans_total{{host=\"{host}\"}}[1h])"),
        )
        .first()
        .map(|r| r.1)
    };
    append(&log, &bans(0, 20));
    wait_for("20 bans through vmagent", 30, || {
        (bans_of(&host) == Some(20.0)).then_some(())
    });

    // the relay goes away: rme keeps the bodies in its spool
    peers("stop", "vmagent");
    let down = Instant::now();
    append(&log, &bans(20, 30));
    let spool = dir.path().join("state/spool/site");
    let held = wait_for("bodies spooled while vmagent is down", 30, || {
        let n = spooled(&spool);
        (n >= 3).then_some(n)
    });
    peers("start", "vmagent");
    let down = down.elapsed().as_secs_f64();
    append(&log, &bans(50, 10));
    wait_for("60 bans through vmagent", 60, || {
        (bans_of(&host) == Some(60.0)).then_some(())
    });
    // SIGTERM: one last flush, then every body rme sent is in VictoriaMetrics exactly once
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let status = daemon.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(spooled(&spool), 0, "spool drained");

    let (stored, expected) = wait_for("every sample rme sent", 30, || {
        let series = vm_export(vm, &format!("{{host=\"{host}\"}}"));
        let stored: usize = series.iter().map(|s| s.points.len()).sum();
        let last_ts = series
            .iter()
            .filter_map(|s| s.points.last())
            .map(|p| p.0)
            .max()?;
        // the last body carries the count of every sample sent before it, plus itself
        let in_last = series
            .iter()
            .filter(|s| s.points.iter().any(|p| p.0 == last_ts))
            .count();
        let sent = series
            .iter()
            .find(|s| {
                s.labels["__name__"] == "rme_sink_samples_total" && s.labels["result"] == "sent"
            })?
            .points
            .iter()
            .find(|p| p.0 == last_ts)?
            .1 as usize;
        (stored == sent + in_last).then_some((stored, sent + in_last))
    });
    assert_eq!(stored, expected);
    println!(
        "vmagent down {down:.1} s, {held} bodies spooled by rme; {expected} samples sent, {stored} stored"
    );
    let bans = vm_export(vm, &format!("fail2ban_bans_total{{host=\"{host}\"}}"));
    assert_eq!(bans.len(), 1);
    let values: Vec<f64> = bans[0].points.iter().map(|p| p.1).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    // what was read while vmagent was down arrived too, with the timestamp it was read at
    assert!(values.contains(&50.0), "{values:?}");
    assert_eq!(values.last(), Some(&60.0));
}

const HOSTS: usize = 50;

/// Starts every config's `rme push --once` at once (stderr beside the config); all must
/// succeed. Returns the wall time.
fn push_all(configs: &[std::path::PathBuf]) -> f64 {
    let t = Instant::now();
    let mut children: Vec<(Killed, std::path::PathBuf)> = configs
        .iter()
        .map(|c| {
            let err = c.with_file_name("once.err");
            let child = rme()
                .args(["push", "--once", "--config", c.to_str().expect("utf-8")])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&err).expect("stderr file"))
                .spawn()
                .expect("rme push --once");
            (Killed(child), err)
        })
        .collect();
    for (c, err) in &mut children {
        let status = c.0.wait().expect("wait");
        let text = std::fs::read_to_string(&*err).unwrap_or_default();
        assert!(status.success(), "{}: {text}", err.display());
    }
    t.elapsed().as_secs_f64()
}

#[test]
fn fifty_hosts_push_once_at_once_and_every_counter_arrives_exactly() {
    let env = peer("vm-new");
    let vm = &env["VM_NEW_URL"];
    let fleet = unique("fleet");
    let root = tempfile::tempdir().expect("tempdir");
    let mut configs = Vec::new();
    for i in 0..HOSTS {
        let d = root.path().join(format!("h{i:02}"));
        std::fs::create_dir(&d).expect("mkdir");
        write(&d, "fail2ban.log", &bans(0, i + 1));
        // jitter_secs spreads the daemon's flushes; `--once` runs at once (the timer spreads them)
        configs.push(write(
            &d,
            "rme.toml",
            &format!(
                "state_dir = \"state\"\njitter_secs = {i}\n\
                 [[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\
                 [[sinks]]\ntype = \"remote_write\"\nurl = \"{}\"\n\
                 external_labels = {{ fleet = \"{fleet}\", host = \"h{i:02}\" }}\n",
                env["VM_NEW_WRITE_URL"]
            ),
        ));
    }
    let first = push_all(&configs);
    for i in 0..HOSTS {
        append(
            &root.path().join(format!("h{i:02}/fail2ban.log")),
            &bans(i + 1, i + 1),
        );
    }
    let second = push_all(&configs);
    println!("{HOSTS} hosts' rme push --once started at once: {first:.2} s, then {second:.2} s");

    let want: BTreeMap<String, Vec<f64>> = (0..HOSTS)
        .map(|i| {
            (
                format!("h{i:02}"),
                vec![(i + 1) as f64, (2 * (i + 1)) as f64],
            )
        })
        .collect();
    let got = wait_for("every host's two samples", 30, || {
        let got: BTreeMap<String, Vec<f64>> =
            vm_export(vm, &format!("fail2ban_bans_total{{fleet=\"{fleet}\"}}"))
                .into_iter()
                .map(|s| {
                    (
                        s.labels["host"].clone(),
                        s.points.iter().map(|p| p.1).collect(),
                    )
                })
                .collect();
        (got == want).then_some(got)
    });
    assert_eq!(got, want);
}
