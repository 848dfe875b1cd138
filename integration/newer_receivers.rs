//! The newer receivers (Debian trixie's packages, peers `vm-new` and
//! `prometheus-new`): OTLP into VictoriaMetrics 1.112's
//! `/opentelemetry/v1/metrics` read back with PromQL, and remote-write into
//! Prometheus 2.53, which answers 204 even when it drops a series whose name
//! is not Prometheus-valid, so every series rme sent is looked for.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{
    append, curl_get, peer, promql, push_once, root, run_rme, samples, stdout, unique, wait_for,
    write,
};

/// `name{k="v",…}` → value, for every sample line of an OpenMetrics text (the last one wins).
fn exposition(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(s, v)| Some((s.to_string(), v.parse().ok()?)))
        .collect()
}

/// A series as rme renders it: `name{k="v",…}`, labels sorted, values escaped.
fn render(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if rest.is_empty() {
        name
    } else {
        format!("{name}{{{}}}", rest.join(","))
    }
}

#[test]
fn otlp_into_victoriametrics_1_112_reads_back_with_promql() {
    let env = peer("vm-new");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique("otlpvm");
    // the real fail2ban 1.0.2 log, in two parts: the second run continues the counters
    let real = std::fs::read_to_string(root().join("examples/logs/fail2ban.log")).expect("log");
    let lines: Vec<&str> = real.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let log = write(dir.path(), "fail2ban.log", &(first.join("\n") + "\n"));
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"state\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\
             [[sinks]]\ntype = \"otlp\"\nprotocol = \"http/protobuf\"\nendpoint = \"{}/v1/metrics\"\n\
             [sinks.resource_attributes]\n\"test.id\" = \"{id}\"\n",
            env["VM_NEW_OTLP_ENDPOINT"]
        ),
    );
    push_once(&config);
    append(&log, &(second.join("\n") + "\n"));
    push_once(&config);

    // rme's own count of the whole log, no sink involved
    let parsed = run_rme(&["parse", "fail2ban", log.to_str().expect("utf-8")]);
    let counted: BTreeMap<String, f64> = exposition(&stdout(&parsed))
        .into_iter()
        .filter(|(s, _)| s.starts_with("fail2ban_"))
        .collect();
    assert!(counted.len() >= 4, "{}", stdout(&parsed));
    // resource attributes become labels; drop them to compare with `rme parse`
    let resource = ["host.name", "service.name", "service.version", "test.id"];
    let query = format!("last_over_time({{__name__=~\"fail2ban_.*\",test.id=\"{id}\"}}[1h])");
    let stored = wait_for("the OTLP points in VictoriaMetrics", 20, || {
        let got: BTreeMap<String, f64> = promql(&env["VM_NEW_URL"], &query)
            .into_iter()
            .map(|(mut labels, v)| {
                labels.retain(|k, _| !resource.contains(&k.as_str()));
                (render(&labels), v)
            })
            .collect();
        (got == counted).then_some(got)
    });
    assert_eq!(stored, counted);
    let read = promql(
        &env["VM_NEW_URL"],
        &format!("last_over_time(rme_lines_read_total{{test.id=\"{id}\"}}[1h])"),
    );
    assert_eq!(
        read.iter().map(|r| r.1).collect::<Vec<_>>(),
        [lines.len() as f64]
    );
    // one series per counter across both runs: the start time carried over, no reset
    let resets = promql(
        &env["VM_NEW_URL"],
        &format!("resets(fail2ban_bans_total{{test.id=\"{id}\"}}[1h])"),
    );
    assert!(
        !resets.is_empty() && resets.iter().all(|r| r.1 == 0.0),
        "{resets:?}"
    );
}

#[test]
fn remote_write_into_prometheus_2_53_stores_every_series_sent() {
    let env = peer("prometheus-new");
    let dir = tempfile::tempdir().expect("tempdir");
    let job = unique("rwprom253");
    let audit = samples().join("audit/go-libaudit/testdata_normal.log");
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            // host = "": stdout (the truth here) carries no host label, Prometheus would
            "state_dir = \"state\"\nhost = \"\"\n\
             [[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n\
             [[sources]]\ntype = \"reaction\"\nlog = \"{}\"\nconfig = \"{}\"\npattern_labels = [\"ip\"]\n\
             [[sources]]\ntype = \"audit\"\nlog = \"{}\"\nnetlink = false\n\
             [[sinks]]\ntype = \"stdout\"\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"prom\"\nurl = \"{}\"\nbatch_size = 50\n\
             external_labels = {{ job = \"{job}\" }}\n",
            root().join("examples/logs/fail2ban.log").display(),
            root().join("examples/logs/reaction.log").display(),
            root().join("examples/reaction.yml").display(),
            audit.display(),
            env["PROM_NEW_WRITE_URL"]
        ),
    );
    // two runs: the second adds the delivery self-metrics of the first
    let mut sent = BTreeMap::new();
    for _ in 0..2 {
        let out = push_once(&config);
        // the stdout sink prints the same snapshot the remote-write sink encodes
        sent.extend(
            exposition(&out)
                .into_iter()
                .map(|(s, v)| (with_job(&s, &job), v)),
        );
    }
    assert!(sent.len() > 40, "{sent:?}");
    assert!(sent.keys().any(|s| s.contains("ip=\"")), "pattern labels");

    let stored = curl_get(
        &format!("{}/api/v1/query", env["PROM_NEW_URL"]),
        &[("query", &format!("{{job=\"{job}\"}}[1h]"))],
    );
    let v: Value = serde_json::from_str(&stored).expect("JSON");
    let stored: BTreeMap<String, f64> = v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| {
            let labels: BTreeMap<String, String> = crate::common::metric_labels(&r["metric"]);
            let last = r["values"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|p| p[1].as_str())
                .and_then(|s| s.parse().ok())
                .expect("a value");
            (render(&labels), last)
        })
        .collect();
    let missing: Vec<_> = sent.keys().filter(|s| !stored.contains_key(*s)).collect();
    assert!(missing.is_empty(), "Prometheus 2.53 dropped {missing:?}");
    assert_eq!(stored, sent);
}

/// `name{…}` with `job="…"` added among its sorted labels.
fn with_job(series: &str, job: &str) -> String {
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let mut parts: Vec<String> = split_labels(labels);
    parts.push(format!("job=\"{job}\""));
    parts.sort_by(|a, b| a.split('=').next().cmp(&b.split('=').next()));
    format!("{name}{{{}}}", parts.join(","))
}

/// `k="v",k2="v2"` → its `k="v"` parts (commas inside quoted values kept).
fn split_labels(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in s.chars() {
        match c {
            ',' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => {
                if c == '"' && !escaped {
                    quoted = !quoted;
                }
                escaped = c == '\\' && !escaped;
                cur.push(c);
            }
        }
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}
