//! What a host install uses besides the binary: shell completions and the man
//! page generated from the CLI, the systemd units (checked by systemd's own
//! `systemd-analyze verify`) and the Grafana dashboard (every query checked by
//! Prometheus' own PromQL parser through `promtool check rules`).

use std::process::Command;

use crate::common::{root, run_rme, stderr, stdout};

#[test]
fn completions_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_rme(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for sub in ["push", "check-config", "parse"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bad = run_rme(&["completions", "cmd.exe"]);
    assert!(!bad.status.success());
}

#[test]
fn bash_completion_is_valid_bash() {
    let out = run_rme(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = crate::common::write(dir.path(), "rme.bash", &stdout(&out));
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("running bash");
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn man_page_is_roff_and_documents_push() {
    let out = run_rme(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH rme 1"), "no roff title line:\n{page}");
    assert!(page.contains(".SH SYNOPSIS") && page.contains("push"));

    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_rme(&["man", "--out-dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let push = std::fs::read_to_string(dir.path().join("rme-push.1")).expect("rme-push.1 written");
    assert!(
        push.contains("\\-\\-once"),
        "push page lacks --once:\n{push}"
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rme = crate::common::rme().get_program().to_owned();
    let mut args = vec!["verify".to_string(), "--man=no".to_string()];
    for unit in [
        "rme.service",
        "rme-once.service",
        "rme-once.timer",
        "rme-helper.service",
    ] {
        let text = std::fs::read_to_string(root().join("examples/systemd").join(unit))
            .expect("reading a unit");
        // verify checks that ExecStart's binary exists: point it at the one under test.
        let text = text.replace("/usr/bin/rme", &rme.to_string_lossy());
        let path = crate::common::write(dir.path(), unit, &text);
        args.push(path.display().to_string());
    }
    let out = Command::new("systemd-analyze")
        .args(&args)
        .output()
        .expect("running systemd-analyze (apt-get install systemd)");
    // verify also loads every installed unit; only complaints about ours count.
    let complaints: Vec<_> = stderr(&out)
        .lines()
        .filter(|l| l.contains("rme"))
        .map(str::to_string)
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "{complaints:#?}"
    );
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let path = root().join("examples/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("reading the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("template variables");
    assert!(
        vars.iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "the data source must be a template variable"
    );
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            // Grafana's variables, as Grafana would substitute them.
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$instance", ".*");
            count += 1;
            rules += &format!("      - record: dashboard:q{count}\n        expr: {expr:?}\n");
        }
    }
    assert!(count > 20, "only {count} queries");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = crate::common::write(dir.path(), "rules.yml", &rules);
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "{}{}\n{rules}",
        stdout(&out),
        stderr(&out)
    );
}
