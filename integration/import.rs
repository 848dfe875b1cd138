//! `rme import reaction-metrics-exporter`: the exporter's configs imported, checked
//! with `rme check-config`, then run over a reaction log by the real binary.
//!
//! The expected series are written out by hand from the exporter's README and
//! code (0.2.2): every pattern of a filter is a label, values as matched;
//! `metrics.all.<p>` and `metrics.for.<s>.<f>.<p>` (which wins) drop (`false`) or
//! transform (a Jinja2 template) a value; `extra: false` removes the pattern
//! labels of one metric; an action takes the labels of its filter's last match.
//! The log is v2-shaped (no date), the only format the exporter reads; no start
//! command in it, since the exporter ignores actions for 120 s after one.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use crate::cli::http_get;
use crate::common::*;

/// A reaction config with one- and two-pattern filters (actions use only <ip>).
const REACTION_YML: &str = r#"patterns:
  ip:
    regex: '(?:[0-9]{1,3}\.){3}[0-9]{1,3}'
  user:
    regex: '[A-Za-z0-9_.-]+'
  email:
    regex: '[^ ]+@[^ ]+'
streams:
  ssh:
    cmd: ['journalctl', '-fn0', '-u', 'sshd.service']
    filters:
      failedlogin:
        regex:
          - 'Failed password for <user> from <ip>'
        retry: 3
        retryperiod: 6h
        actions:
          ban:
            cmd: ['nft', 'add', 'element', 'inet', 'reaction', 'bans', '{', '<ip>', '}']
  mail:
    cmd: ['journalctl', '-fn0', '-u', 'postfix.service']
    filters:
      saslfail:
        regex:
          - 'SASL LOGIN authentication failed: <email> from <ip>'
        actions:
          ban:
            cmd: ['nft', 'add', 'element', 'inet', 'reaction', 'bans', '{', '<ip>', '}']
  nginx:
    cmd: ['tail', '-Fn0', '/var/log/nginx/access.log']
    filters:
      probes:
        regex:
          - '^<ip> .* "GET /wp-login.php'
        actions:
          ban:
            cmd: ['nft', 'add', 'element', 'inet', 'reaction', 'bans', '{', '<ip>', '}']
"#;

/// Values in the order of the sorted pattern names (what the exporter and rme both assume).
const LOG: &str = r#"INFO ssh.failedlogin: match ["203.0.113.9", "root"]
INFO ssh.failedlogin: match ["203.0.113.9", "Administrator"]
INFO ssh.failedlogin: match ["198.51.100.23", "admin"]
INFO ssh.failedlogin: match ["203.0.113.9", "root"]
INFO ssh.failedlogin.ban: run ["nft" "add" "element" "inet" "reaction" "bans" "{" "203.0.113.9" "}"]
INFO mail.saslfail: match ["Alice@Example.ORG", "192.0.2.7"]
INFO mail.saslfail: match ["bob@example.org", "192.0.2.8"]
INFO mail.saslfail: match ["carol@mail.example.net", "192.0.2.7"]
INFO mail.saslfail.ban: run ["nft" "add" "element" "inet" "reaction" "bans" "{" "192.0.2.7" "}"]
INFO nginx.probes: match ["192.0.2.77"]
INFO nginx.probes: match ["203.0.113.200"]
INFO nginx.probes.ban: run ["nft" "add" "element" "inet" "reaction" "bans" "{" "203.0.113.200" "}"]
"#;

const LINES: &str = "rme_lines_read_total{source=\"reaction\"}";

/// The exporter's default config as its 1.0 README documents it (a superset of 0.2's).
const DOCUMENTED_DEFAULT: &str = "# only stdout is supported atm
loglevel: INFO
listen:
  address: 127.0.0.1
  port: 8080
reaction:
  config: /etc/reaction
  logs:
    systemd: reaction.service
  # same default as reaction
  socket: /run/reaction/reaction.sock
  # ignore actions for 60 seconds (in logtime, not realtime) after reaction start
  hold: 60
metrics:
  all: {}
  for: {}
  # all metrics with labels are exported by default
  export:
    matches:
      extra: true
    actions:
      extra: true
    pending:
      extra: true
    commands:
    streams:
";

fn import(file: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "import",
        "reaction-metrics-exporter",
        file.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = run_rme(&args);
    assert!(out.status.success(), "rme import failed: {}", stderr(&out));
    (stdout(&out), stderr(&out))
}

fn check_config(path: &Path) {
    let out = run_rme(&["check-config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "check-config refused the imported config: {}\n{}",
        stderr(&out),
        std::fs::read_to_string(path).unwrap()
    );
}

/// The reaction_* series of an exposition, `name{labels}` → value.
fn reaction_series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("reaction_"))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(s, v)| Some((s.to_string(), v.parse().ok()?)))
        .collect()
}

fn expected(series: &[(&str, f64)]) -> BTreeMap<String, f64> {
    series.iter().map(|(s, v)| (s.to_string(), *v)).collect()
}

/// The series the exporter's rules give for LOG, for the metrics it has.
fn of_exporter(all: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    all.into_iter()
        .filter(|(s, _)| {
            s.starts_with("reaction_match_total")
                || s.starts_with("reaction_action_total")
                || s.starts_with("reaction_pending_count")
        })
        .collect()
}

#[test]
fn documented_default_config_labels_every_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reaction_yml = write(d, "reaction.yml", REACTION_YML);
    let log = write(d, "reaction.log", LOG);
    let exporter = write(d, "config.yml", DOCUMENTED_DEFAULT);
    let (toml, warnings) = import(
        &exporter,
        &["--reaction-config", reaction_yml.to_str().unwrap()],
    );
    assert!(!warnings.contains("warning"), "{warnings}");
    assert!(toml.contains("listen = \"127.0.0.1:8080\""), "{toml}");
    assert!(
        toml.contains("journal = { unit = \"reaction.service\" }"),
        "{toml}"
    );
    assert!(toml.contains("config = \"/etc/reaction\""), "{toml}");
    assert!(
        toml.contains("pattern_labels = [\"email\", \"ip\", \"user\"]"),
        "{toml}"
    );
    assert!(toml.contains("show = true"), "{toml}");

    // Check and run it on this machine (check-config reads reaction's config too):
    // the log file and reaction config of this test in place of the journal and
    // /etc/reaction; print instead of serving.
    let runnable = toml
        .replace(
            "journal = { unit = \"reaction.service\" }",
            &format!("log = \"{}\"", log.display()),
        )
        .replace(
            "config = \"/etc/reaction\"",
            &format!("config = \"{}\"", reaction_yml.display()),
        )
        .replace("show = true", "show = false");
    let runnable = format!(
        "state_dir = \"{}\"\n{runnable}\n[[sinks]]\ntype = \"stdout\"\n",
        d.join("state").display()
    );
    let config = write(d, "run.toml", &runnable);
    check_config(&config);
    let out = run_rme(&["push", "--once", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(metric_value(&text, LINES), Some(12.0), "{text}");
    let want = expected(&[
        (
            r#"reaction_match_total{filter="failedlogin",ip="203.0.113.9",stream="ssh",user="root"}"#,
            2.0,
        ),
        (
            r#"reaction_match_total{filter="failedlogin",ip="203.0.113.9",stream="ssh",user="Administrator"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{filter="failedlogin",ip="198.51.100.23",stream="ssh",user="admin"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{email="Alice@Example.ORG",filter="saslfail",ip="192.0.2.7",stream="mail"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{email="bob@example.org",filter="saslfail",ip="192.0.2.8",stream="mail"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{email="carol@mail.example.net",filter="saslfail",ip="192.0.2.7",stream="mail"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{filter="probes",ip="192.0.2.77",stream="nginx"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{filter="probes",ip="203.0.113.200",stream="nginx"}"#,
            1.0,
        ),
        // an action takes the labels of its filter's last match
        (
            r#"reaction_action_total{action="ban",filter="failedlogin",ip="203.0.113.9",stream="ssh",user="root"}"#,
            1.0,
        ),
        (
            r#"reaction_action_total{action="ban",email="carol@mail.example.net",filter="saslfail",ip="192.0.2.7",stream="mail"}"#,
            1.0,
        ),
        (
            r#"reaction_action_total{action="ban",filter="probes",ip="203.0.113.200",stream="nginx"}"#,
            1.0,
        ),
    ]);
    assert_eq!(of_exporter(reaction_series(&text)), want, "{text}");
}

#[test]
fn config_with_every_key_gives_the_exporters_series_on_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reaction_yml = write(d, "reaction.yml", REACTION_YML);
    let log = write(d, "reaction.log", LOG);
    let port = free_port();
    let exporter = write(
        d,
        "config.yml",
        &format!(
            "loglevel: WARNING
listen:
  address: 127.0.0.1
  port: {port}
reaction:
  config: {reaction}
  logs:
    file: {log}
  socket: {dir}/reaction.sock
metrics:
  export:
    matches:
      extra: true
    actions:
      extra: false
    pending: false
    internals: false
  all:
    email: \"{{{{ email.split('@') | last | lower }}}}\"
    user: false
  for:
    ssh:
      failedlogin:
        user: \"{{{{ user[:3] }}}}\"
    mail:
      saslfail:
        ip: false
    nginx:
      probes:
        ip: \"{{{{ ip.split('.')[0] }}}}\"
",
            reaction = reaction_yml.display(),
            log = log.display(),
            dir = d.display(),
        ),
    );
    let (toml, warnings) = import(&exporter, &[]);
    assert!(!warnings.contains("warning"), "{warnings}");
    assert!(
        toml.contains(
            "# loglevel = \"WARNING\": rme's log level is not in its config: RME_LOG=warn"
        ),
        "{toml}"
    );
    assert!(
        toml.contains("# metrics.export.internals = false"),
        "{toml}"
    );
    assert!(toml.contains("show = false"), "{toml}");
    let config = write(
        d,
        "imported.toml",
        &format!("state_dir = \"{}\"\n{toml}", d.join("state").display()),
    );
    check_config(&config);
    let _rme = Killed(
        rme()
            .args(["serve", "--config", config.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = wait_for("rme to serve the whole log", 15, || {
        Some(http_get(&url, None)).filter(|t| metric_value(t, LINES) == Some(12.0))
    });
    let want = expected(&[
        // ssh.failedlogin: <ip> as it is, <user> cut to 3 characters (metrics.for beats metrics.all's false)
        (
            r#"reaction_match_total{filter="failedlogin",ip="203.0.113.9",stream="ssh",user="roo"}"#,
            2.0,
        ),
        (
            r#"reaction_match_total{filter="failedlogin",ip="203.0.113.9",stream="ssh",user="Adm"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{filter="failedlogin",ip="198.51.100.23",stream="ssh",user="adm"}"#,
            1.0,
        ),
        // mail.saslfail: the email's domain, lower-cased; no <ip>
        (
            r#"reaction_match_total{email="example.org",filter="saslfail",stream="mail"}"#,
            2.0,
        ),
        (
            r#"reaction_match_total{email="mail.example.net",filter="saslfail",stream="mail"}"#,
            1.0,
        ),
        // nginx.probes: the first number of the address
        (
            r#"reaction_match_total{filter="probes",ip="192",stream="nginx"}"#,
            1.0,
        ),
        (
            r#"reaction_match_total{filter="probes",ip="203",stream="nginx"}"#,
            1.0,
        ),
        // actions: extra = false, no pattern labels
        (
            r#"reaction_action_total{action="ban",filter="failedlogin",stream="ssh"}"#,
            1.0,
        ),
        (
            r#"reaction_action_total{action="ban",filter="saslfail",stream="mail"}"#,
            1.0,
        ),
        (
            r#"reaction_action_total{action="ban",filter="probes",stream="nginx"}"#,
            1.0,
        ),
    ]);
    assert_eq!(of_exporter(reaction_series(&text)), want, "{text}");
}

#[test]
fn disabled_metrics_are_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reaction_yml = write(d, "reaction.yml", REACTION_YML);
    let log = write(d, "reaction.log", LOG);
    let exporter = write(
        d,
        "config.json",
        &format!(
            r#"{{"reaction": {{"config": "{}", "logs": {{"file": "{}"}}}},
                "metrics": {{"export": {{"matches": false, "pending": false}}, "all": {{"ip": false, "user": false, "email": false}}}}}}"#,
            reaction_yml.display(),
            log.display()
        ),
    );
    let (toml, _) = import(&exporter, &[]);
    let config = write(
        d,
        "imported.toml",
        &format!(
            "state_dir = \"{}\"\n{toml}\n[[sinks]]\ntype = \"stdout\"\n",
            d.join("state").display()
        ),
    );
    check_config(&config);
    let out = run_rme(&["push", "--once", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(metric_value(&text, LINES), Some(12.0), "{text}");
    let want = expected(&[
        (
            r#"reaction_action_total{action="ban",filter="failedlogin",stream="ssh"}"#,
            1.0,
        ),
        (
            r#"reaction_action_total{action="ban",filter="saslfail",stream="mail"}"#,
            1.0,
        ),
        (
            r#"reaction_action_total{action="ban",filter="probes",stream="nginx"}"#,
            1.0,
        ),
    ]);
    assert_eq!(of_exporter(reaction_series(&text)), want, "{text}");
}

#[test]
fn unknown_or_invalid_key_is_an_error_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "metrics:\n  export:\n    matchs: false\n",
            "metrics.export.matchs: unknown key",
        ),
        (
            "listen:\n  port: eighty\n",
            "listen.port: must be a port number",
        ),
        (
            "reaction:\n  logs:\n    file: a\n    systemd: b\n",
            "reaction.logs: give `systemd` or `file`",
        ),
    ] {
        let file = write(dir.path(), "bad.yml", text);
        let out = run_rme(&[
            "import",
            "reaction-metrics-exporter",
            file.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{text}");
        let err = stderr(&out);
        assert!(
            err.contains("bad.yml") && err.contains(key),
            "{text}: {err}"
        );
        assert!(
            stdout(&out).is_empty(),
            "nothing printed for a refused file"
        );
    }
}

#[test]
fn an_untranslatable_template_is_a_warning_and_a_comment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reaction_yml = write(d, "reaction.yml", REACTION_YML);
    let exporter = write(
        d,
        "config.yml",
        &format!(
            "reaction:\n  config: {}\nmetrics:\n  all:\n    user: \"{{{{ user | replace('a', 'b') }}}}\"\n",
            reaction_yml.display()
        ),
    );
    let (toml, warnings) = import(&exporter, &[]);
    assert!(
        warnings.contains(
            "warning: metrics.all.user = \"{{ user | replace('a', 'b') }}\": not translated"
        ),
        "{warnings}"
    );
    assert!(
        toml.contains("# NOT TRANSLATED: metrics.all.user"),
        "{toml}"
    );
    check_config(&write(d, "imported.toml", &toml));
}
