//! One host, one name: one config copied to two hosts, run with two real
//! host names (`unshare --uts`, as root), pushes two distinct series sets
//! into VictoriaMetrics and Prometheus; OTLP's `host.name` survives the
//! shipped units' `ProcSubset=pid` (a procfs mounted `subset=pid`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{append, f2b_ban, peer, promql, stderr, unique, vm_export, wait_for, write};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// `rme push --once --config CONFIG` in a UTS namespace whose host name is
/// `host`; with `hide_proc_sys`, also under a procfs mounted `subset=pid`
/// (what systemd's `ProcSubset=pid` gives), so `/proc/sys` is not there.
fn push_once_as(host: &str, config: &Path, hide_proc_sys: bool) -> Output {
    let mut script = String::from("hostname \"$1\" || exit 90\n");
    if hide_proc_sys {
        script.push_str(
            "mount -t proc -o subset=pid proc /proc || exit 91\n\
             test ! -e /proc/sys/kernel/hostname || exit 92\n",
        );
    }
    script.push_str("shift; exec \"$@\"\n");
    let mut cmd = Command::new("unshare");
    cmd.arg("--uts");
    if hide_proc_sys {
        cmd.args(["--mount", "--propagation", "private"]);
    }
    cmd.args(["sh", "-c", &script, "sh", host])
        .arg(env!("CARGO_BIN_EXE_rme"))
        .args(["push", "--once", "--config"])
        .arg(config);
    let out = cmd.output().expect("running unshare");
    assert!(
        out.status.success(),
        "rme as host {host}: {:?} {}",
        out.status,
        stderr(&out)
    );
    out
}

fn bans(n: usize) -> String {
    (0..n).map(|i| f2b_ban("sshd", i)).collect()
}

/// The query's result as host → value.
fn by_host(url: &str, query: &str) -> BTreeMap<String, f64> {
    promql(url, query)
        .into_iter()
        .map(|(l, v)| (l.get("host").cloned().unwrap_or_default(), v))
        .collect()
}

#[test]
fn one_config_on_two_hosts_pushes_two_series_sets_that_never_interleave() {
    if !is_root() {
        eprintln!("skipped: unshare --uts needs root");
        return;
    }
    let env = peer("vm");
    let env = peer("prometheus")
        .into_iter()
        .chain(env)
        .collect::<BTreeMap<_, _>>();
    let (vm, prom) = (&env["VM_URL"], &env["PROM_URL"]);
    let (a, b) = (unique("rme-a-"), unique("rme-b-"));
    let root = tempfile::tempdir().expect("tempdir");
    // the config a user copies to every host: a sink URL, no labels
    let config_text = format!(
        "state_dir = \"state\"\n\
         [[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\
         [[sinks]]\ntype = \"remote_write\"\nname = \"vm\"\nurl = \"{}\"\n\
         [[sinks]]\ntype = \"remote_write\"\nname = \"prom\"\nurl = \"{}\"\n",
        env["VM_WRITE_URL"], env["PROM_WRITE_URL"]
    );
    let mut configs = BTreeMap::new();
    for (host, n) in [(&a, 6), (&b, 12)] {
        let d = root.path().join(host);
        std::fs::create_dir(&d).expect("mkdir");
        write(&d, "fail2ban.log", &bans(n));
        configs.insert(host.clone(), write(&d, "rme.toml", &config_text));
    }
    // A, B, A, as a timer on two hosts does; 1 s apart so every push has its own timestamp
    for host in [&a, &b, &a] {
        push_once_as(host, &configs[host], false);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let sel = format!("fail2ban_bans_total{{jail=\"sshd\",host=~\"{a}|{b}\"}}");
    let want = BTreeMap::from([(a.clone(), 6.0), (b.clone(), 12.0)]);
    for (name, url) in [("VictoriaMetrics", vm), ("Prometheus", prom)] {
        wait_for(&format!("both hosts in {name}"), 30, || {
            let got = by_host(url, &format!("sum by (host) (last_over_time({sel}[1h]))"));
            (got == want).then_some(())
        });
        let last = by_host(url, &format!("sum by (host) ({sel})"));
        assert_eq!(last, want, "{name}: sum by (host)");
        // each host's counter only ever held its own value: no reset, no interleaving
        let resets = by_host(url, &format!("sum by (host) (resets({sel}[1h]))"));
        assert_eq!(
            resets.values().sum::<f64>(),
            0.0,
            "{name}: resets {resets:?}"
        );
        let low = by_host(url, &format!("min by (host) (min_over_time({sel}[1h]))"));
        assert_eq!(low, want, "{name}: lowest value per host");
    }
    // VictoriaMetrics' raw samples (a sample stored twice counted once): host A's
    // series holds 6 at two times, host B's 12 at one
    let raw = vm_export(vm, &sel);
    let values: BTreeMap<String, Vec<(i64, f64)>> = raw
        .iter()
        .map(|s| {
            let mut points = s.points.clone();
            points.dedup();
            (s.labels["host"].clone(), points)
        })
        .collect();
    println!("raw samples per host in VictoriaMetrics: {values:?}");
    assert_eq!(values.len(), 2, "{values:?}");
    let only = |h: &str| values[h].iter().map(|p| p.1).collect::<Vec<_>>();
    assert_eq!(only(&a), [6.0, 6.0]);
    assert_eq!(only(&b), [12.0]);
}

#[test]
fn otlp_host_name_survives_proc_subset_pid() {
    if !is_root() {
        eprintln!("skipped: unshare --mount needs root");
        return;
    }
    let env = peer("otelcol");
    let dir = tempfile::tempdir().expect("tempdir");
    let host = unique("rme-otlp-");
    let id = unique("otlp-host-");
    let log = write(dir.path(), "fail2ban.log", "");
    append(&log, &bans(3));
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\
             [[sinks]]\ntype = \"otlp\"\nendpoint = \"{}\"\n\
             resource_attributes = {{ \"test.id\" = \"{id}\" }}\n",
            env["OTLP_HTTP_METRICS_URL"]
        ),
    );
    push_once_as(&host, &config, true);
    let jsonl = std::path::PathBuf::from(&env["OTEL_RECEIVED_JSONL"]);
    let names = wait_for("the OTLP request at rotel", 15, || {
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        let names: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["resource"]["test.id"] == id.as_str())
            .map(|m| {
                m["resource"]["host.name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        (!names.is_empty()).then_some(names)
    });
    assert!(
        names.iter().all(|n| *n == host),
        "host.name {names:?}, want {host}"
    );
}

#[test]
fn check_config_shows_variables_expanded_and_names_an_unset_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "rme.toml",
        "host = \"${RME_TEST_HOST}\"\n[labels]\ndc = \"${RME_TEST_DC:-fra1}\"\n\
         [[sinks]]\ntype = \"remote_write\"\nurl = \"http://${RME_TEST_RW}/api/v1/write\"\n\
         basic_auth = { username = \"u\", password = \"p$$ss\" }\n",
    );
    let check = |envs: &[(&str, &str)]| {
        crate::common::rme()
            .arg("check-config")
            .arg(&config)
            .env_remove("RME_TEST_DC")
            .envs(envs.iter().copied())
            .output()
            .expect("rme check-config")
    };
    let out = check(&[
        ("RME_TEST_HOST", "web9"),
        ("RME_TEST_RW", "vm.example:8428"),
    ]);
    let text = crate::common::stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for want in [
        "host = \"web9\"",
        "dc = \"fra1\"",
        "url = \"http://vm.example:8428/api/v1/write\"",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
    let out = check(&[("RME_TEST_HOST", "web9")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for want in [
        config.to_str().expect("utf-8"),
        "sinks[0].url",
        "RME_TEST_RW",
        "${RME_TEST_RW:-",
    ] {
        assert!(err.contains(want), "{want} not in: {err}");
    }
}
