//! `examples/alerts.yml`: unit-tested by both rule engines (promtool, vmalert-tool),
//! then loaded by the real vmalert against VictoriaMetrics fed by a real rme whose
//! second sink's receiver is down and whose fail2ban socket does not answer.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::common::{
    Killed, closed_url, curl_get, peer_env, promql, restart_peer, rme, root, unique, wait_for,
    write,
};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a rule tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

#[test]
fn shipped_rules_pass_their_unit_tests_in_promtool_and_vmalert_tool() {
    let examples = root().join("examples");
    let text = run(Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&examples));
    assert!(text.contains("SUCCESS"), "{text}");
    let text = run(Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&examples));
    assert!(text.contains("SUCCESS"), "{text}");
    // vmalert-tool keeps its scratch storage in $TMPDIR/vmalert-unittest: a private one
    let tmp = tempfile::tempdir().expect("tempdir");
    let tools = peer_env()["PEERS_TOOLS"].clone();
    let text = run(Command::new(format!(
        "{tools}/trixie/victoria-metrics/usr/bin/vmalert-tool"
    ))
    .args([
        "unittest",
        "--disableAlertgroupLabel",
        "--files",
        "alerts.test.yml",
    ])
    .env("TMPDIR", tmp.path())
    .current_dir(&examples));
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The shipped rules with every `for:` set to 0s, so that a test does not wait 10 minutes;
/// the expressions are the shipped ones.
fn rules_without_for() -> String {
    let text = std::fs::read_to_string(root().join("examples/alerts.yml")).expect("alerts.yml");
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect();
    assert!(out.iter().any(|l| l.ends_with("for: 0s")));
    out.join("\n") + "\n"
}

/// Names (and sink) of the alerts vmalert reports firing for `host`.
fn firing(vmalert: &str, host: &str) -> BTreeSet<String> {
    let text = curl_get(&format!("{vmalert}/api/v1/alerts"), &[]);
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["data"]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["labels"]["host"] == host && a["state"] == "firing")
        .map(|a| {
            let name = a["labels"]["alertname"].as_str().unwrap_or_default();
            match a["labels"]["sink"].as_str() {
                Some(s) => format!("{name}/{s}"),
                None => name.to_string(),
            }
        })
        .collect()
}

#[test]
fn vmalert_fires_the_shipped_rules_on_what_a_real_rme_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(dir.path(), "alerts.yml", &rules_without_for());
    crate::common::peer("vm-new");
    let env = restart_peer(
        "vmalert",
        &[("VMALERT_RULES", rules.to_str().expect("utf-8"))],
    );
    let host = unique("alerthost");
    write(dir.path(), "fail2ban.log", "");
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "interval_secs = 1\nstate_dir = \"state\"\n\
             [[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\nsocket = \"{}\"\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"vm\"\nurl = \"{}\"\n\
             external_labels = {{ host = \"{host}\" }}\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"down\"\nurl = \"{}\"\n\
             external_labels = {{ host = \"{host}\" }}\n",
            dir.path().join("no-fail2ban.sock").display(),
            env["VM_NEW_WRITE_URL"],
            closed_url()
        ),
    );
    let _rme = Killed(
        rme()
            .args(["push", "--config", config.to_str().expect("utf-8")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rme push"),
    );
    let want: BTreeSet<String> = ["Fail2banDown", "RmeSpoolGrowing/down"]
        .map(String::from)
        .into();
    // exactly these: the healthy sink's spool and every other rule stay quiet
    let got = wait_for("vmalert to fire the spool and fail2ban alerts", 90, || {
        let f = firing(&env["VMALERT_URL"], &host);
        (f == want).then_some(f)
    });
    assert_eq!(got, want);
    // vmalert wrote its state back to VictoriaMetrics as ALERTS series
    wait_for("ALERTS in VictoriaMetrics", 30, || {
        let stored: BTreeSet<String> = promql(
            &env["VM_NEW_URL"],
            &format!("ALERTS{{host=\"{host}\",alertstate=\"firing\"}}"),
        )
        .into_iter()
        .map(|(l, _)| match l.get("sink") {
            Some(s) => format!("{}/{s}", l["alertname"]),
            None => l["alertname"].clone(),
        })
        .collect();
        (stored == want).then_some(())
    });
}
