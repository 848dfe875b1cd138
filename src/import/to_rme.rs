//! A reaction-metrics-exporter config written out as an rme config, each part
//! under a comment naming the exporter key it comes from.
//!
//! The exporter labels every match with every pattern of its filter, then
//! `metrics.all.<p>` and `metrics.for.<stream>.<filter>.<p>` (which wins) drop
//! or transform the value. rme needs the pattern names up front
//! (`pattern_labels`), so reaction's config is read at import time; a pattern a
//! `metrics.for` entry treats differently from `metrics.all` gets one rule per
//! filter (`match = { stream, filter }`), since a rule cannot say "all but".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::jinja::{self, Step};
use super::reaction_exporter::{ExporterConfig, Logs, Transform};
use crate::invalid::Invalid;
use crate::sources::reaction::{self, FilterPatterns};

/// The rme config text, and what could not be carried over (for stderr).
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub warnings: Vec<String>,
}

/// One `[[store.labels]]` rule, with the comment lines saying where it comes from.
struct Rule {
    from: Vec<String>,
    label: String,
    metric: Option<&'static str>,
    selector: Option<(String, String)>,
    step: Option<Step>,
}

impl Rule {
    fn drop(label: &str, from: Vec<String>) -> Rule {
        Rule {
            from,
            label: label.to_string(),
            metric: None,
            selector: None,
            step: None,
        }
    }
}

/// Labels and rules of the pattern values; notes for the header.
#[derive(Default)]
struct Labels {
    pattern_labels: Vec<String>,
    rules: Vec<Rule>,
    notes: Vec<String>,
    warnings: Vec<String>,
}

/// Translates; `patterns` (reaction's filters) must be given when `c.needs_patterns()`.
pub fn to_rme(
    c: &ExporterConfig,
    file: &str,
    patterns: Option<&FilterPatterns>,
) -> Result<Imported, Invalid> {
    let listen = listen(c)?;
    let mut labels = match patterns {
        Some(p) if c.needs_patterns() => pattern_rules(c, p),
        _ => Labels::default(),
    };
    let transforms = !(c.all.is_empty() && c.per_filter.is_empty());
    if transforms && !c.needs_patterns() {
        labels.notes.push(
            "metrics.all / metrics.for: no metric carries pattern labels (extra = false), so they change nothing"
                .into(),
        );
    }
    let mut out = String::new();
    header(c, file, &labels.notes, &mut out);

    let _ = writeln!(out, "[serve]");
    let _ = writeln!(
        out,
        "# listen.address = {:?}{}, listen.port = {}{}",
        c.address.value,
        default_mark(c.address.given),
        c.port.value,
        default_mark(c.port.given)
    );
    if c.address.value == "localhost" {
        let _ = writeln!(
            out,
            "# rme listens on an address, not a name: localhost is 127.0.0.1 here"
        );
    }
    let _ = writeln!(out, "listen = {}\n", q(&listen));

    let dropped = dropped_metrics(c);
    if !dropped.is_empty() {
        let _ = writeln!(out, "[store]");
        let _ = writeln!(
            out,
            "# metrics the exporter was told not to export are not kept at all"
        );
        for (key, metrics) in &dropped {
            let _ = writeln!(out, "# {key} = false: {}", metrics.join(", "));
        }
        let names: Vec<&str> = dropped
            .iter()
            .flat_map(|(_, m)| m.iter().copied())
            .collect();
        let _ = writeln!(out, "drop_metrics = {}\n", list(&names));
    }

    if !labels.rules.is_empty() {
        let _ = writeln!(
            out,
            "# Label rules, applied in this order; each rule reads what the previous ones left.\n\
             # Rules without `match` apply to every metric with such a label (reaction's pattern labels here)."
        );
    }
    for rule in &labels.rules {
        render_rule(rule, &mut out);
    }

    source(c, &labels.pattern_labels, &mut out);
    Ok(Imported {
        toml: out,
        warnings: labels.warnings,
    })
}

fn default_mark(given: bool) -> &'static str {
    if given { "" } else { " (default)" }
}

fn header(c: &ExporterConfig, file: &str, notes: &[String], out: &mut String) {
    let _ = writeln!(
        out,
        "# rme config imported from reaction-metrics-exporter's {file}\n\
         # by `rme import reaction-metrics-exporter` (rme {}).\n\
         # Each part names the exporter key it comes from; \"(default)\" marks the exporter's\n\
         # default for a key the file does not set. Pull only, like the exporter:\n\
         #   rme serve --config THIS_FILE\n\
         # To push instead, add a [[sinks]] table (`rme defaults` shows them all) and run `rme push`.\n\
         # State and spool go to /var/lib/rme (rme's `state_dir`, set it at the top of this file).\n#",
        env!("CARGO_PKG_VERSION")
    );
    let level = match c.loglevel.value.to_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" => "warn",
        "ERROR" => "error",
        _ => "info",
    };
    let _ = writeln!(
        out,
        "# loglevel = {:?}{}: rme's log level is not in its config: RME_LOG={level} (or --log {level})",
        c.loglevel.value,
        default_mark(c.loglevel.given)
    );
    let _ = writeln!(
        out,
        "# metrics.export.internals{}: the exporter's Python runtime metrics have no counterpart;\n\
         #   rme always exports its own health as rme_* metrics (README: Self-metrics)",
        c.internals
            .as_ref()
            .map_or(" (absent)".to_string(), |v| format!(" = {v}"))
    );
    let hold = c
        .hold
        .map_or(String::new(), |h| format!(" (reaction.hold = {h})"));
    let _ = writeln!(
        out,
        "# not translated{hold}: after a start command the exporter ignores `run` lines for a while\n\
         #   (0.2: 120 s, 1.0: reaction.hold s of log time) as reaction replays its pending actions;\n\
         #   rme has no hold time and counts every `run` line"
    );
    if c.hold.is_some() || c.commands.given || c.streams.given {
        let _ = writeln!(
            out,
            "# This file has reaction-metrics-exporter 1.0 keys. rme exports 0.2's counters\n\
             #   (reaction_match_total, reaction_action_total), not 1.0's per-scrape gauges\n\
             #   (reaction_match_count, …): in queries, increase(reaction_match_total[5m]) replaces sum_over_time."
        );
    }
    if c.needs_patterns() {
        let _ = writeln!(
            out,
            "# The exporter (0.2) forgets a series 10 minutes after its last update; rme keeps it, so\n\
             #   counters continue. To forget idle series too, set [store] idle_expiry_secs = 600\n\
             #   (for every metric); [store] max_series_per_metric (10000) bounds each metric anyway."
        );
    }
    for note in notes {
        let _ = writeln!(out, "# {note}");
    }
    out.push('\n');
}

fn listen(c: &ExporterConfig) -> Result<String, Invalid> {
    let a = c.address.value.as_str();
    let ip: IpAddr = if a == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        a.parse().map_err(|_| {
            Invalid::new(
                "listen.address",
                format!("'{a}' is not an IP address (rme listens on an address:port)"),
            )
        })?
    };
    Ok(SocketAddr::new(ip, c.port.value).to_string())
}

/// (exporter key, rme metrics) for every metric switched off.
fn dropped_metrics(c: &ExporterConfig) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out = Vec::new();
    if !c.matches.value.on {
        out.push(("metrics.export.matches", vec![reaction::MATCHES.name]));
    }
    if !c.actions.value.on {
        out.push((
            "metrics.export.actions",
            vec![reaction::ACTIONS.name, reaction::ACTION_ERRORS.name],
        ));
    }
    if !c.commands.value {
        out.push((
            "metrics.export.commands",
            vec![reaction::COMMANDS.name, reaction::COMMAND_ERRORS.name],
        ));
    }
    if !c.streams.value {
        out.push(("metrics.export.streams", vec![reaction::STREAM_EVENTS.name]));
    }
    out
}

fn show(t: &Transform) -> String {
    match t {
        Transform::AsIs => "true".into(),
        Transform::Drop => "false".into(),
        Transform::Template(s) => format!("{s:?}"),
    }
}

/// Which patterns become labels, and the rules that drop or rewrite them.
fn pattern_rules(c: &ExporterConfig, patterns: &FilterPatterns) -> Labels {
    let mut l = Labels::default();
    let all: BTreeMap<&str, &Transform> = c.all.iter().map(|(p, t)| (p.as_str(), t)).collect();
    let mut over: BTreeMap<&str, BTreeMap<(&str, &str), &Transform>> = BTreeMap::new();
    for (s, f, p, t) in &c.per_filter {
        over.entry(p).or_default().insert((s, f), t);
    }
    let filters: BTreeMap<(&str, &str), &[String]> =
        patterns.iter().map(|(s, f, n)| ((s, f), n)).collect();
    let names: BTreeSet<&str> = filters
        .values()
        .flat_map(|n| n.iter().map(String::as_str))
        .chain(all.keys().copied())
        .chain(over.keys().copied())
        .collect();
    for p in names {
        let users: Vec<(&str, &str)> = filters
            .iter()
            .filter(|(_, n)| n.iter().any(|n| n == p))
            .map(|(sf, _)| *sf)
            .collect();
        if all.contains_key(p) && users.is_empty() {
            l.notes.push(format!(
                "metrics.all.{p}: no filter in reaction's config has a pattern <{p}>; nothing to translate"
            ));
        }
        let ov = over.get(p).cloned().unwrap_or_default();
        for (s, f) in ov.keys().filter(|sf| !users.contains(sf)) {
            l.notes.push(format!(
                "metrics.for.{s}.{f}.{p}: reaction's config has no filter {s}.{f} with a pattern <{p}>; nothing to translate"
            ));
        }
        if users.is_empty() {
            continue;
        }
        if reaction::RESERVED.contains(&p) {
            l.warnings.push(format!(
                "pattern <{p}> has the name of a label rme sets itself; it is not exported as a label"
            ));
            l.notes.push(format!(
                "pattern <{p}>: not a label (rme sets `{p}` itself)"
            ));
            continue;
        }
        // what the exporter does with <p> in each filter that has it: metrics.for wins over metrics.all
        let eff: Vec<((&str, &str), String, &Transform)> = users
            .iter()
            .map(|&(s, f)| match (ov.get(&(s, f)), all.get(p)) {
                (Some(t), _) => ((s, f), format!("metrics.for.{s}.{f}.{p}"), *t),
                (None, Some(t)) => ((s, f), format!("metrics.all.{p}"), *t),
                (None, None) => ((s, f), String::new(), &Transform::AsIs),
            })
            .collect();
        if eff.iter().all(|(_, _, t)| **t == Transform::Drop) {
            let keys: BTreeSet<&str> = eff.iter().map(|(_, k, _)| k.as_str()).collect();
            let keys: Vec<&str> = keys.into_iter().collect();
            l.notes.push(format!(
                "pattern <{p}>: not a label ({} = false)",
                keys.join(", ")
            ));
            continue;
        }
        l.pattern_labels.push(p.to_string());
        if users.iter().all(|sf| !ov.contains_key(sf)) {
            if let Some(t) = all.get(p) {
                let key = format!("metrics.all.{p}");
                l.rules.extend(rules_for(t, &key, p, None, &mut l.warnings));
            }
            continue;
        }
        for ((s, f), key, t) in eff {
            let key = if key.starts_with("metrics.all") {
                format!("{key} (for {s}.{f}: metrics.for sets <{p}> of other filters)")
            } else {
                key
            };
            let sel = Some((s.to_string(), f.to_string()));
            l.rules.extend(rules_for(t, &key, p, sel, &mut l.warnings));
        }
    }
    extra_drops(c, &mut l);
    l
}

/// `extra: false`: the pattern labels come off that metric.
fn extra_drops(c: &ExporterConfig, l: &mut Labels) {
    let mut metrics: Vec<(&str, &'static str)> = Vec::new();
    if c.matches.value.on && !c.matches.value.extra {
        metrics.push(("metrics.export.matches.extra", reaction::MATCHES.name));
    }
    if c.actions.value.on && !c.actions.value.extra {
        metrics.push(("metrics.export.actions.extra", reaction::ACTIONS.name));
        metrics.push(("metrics.export.actions.extra", reaction::ACTION_ERRORS.name));
    }
    for (key, metric) in metrics {
        for p in &l.pattern_labels {
            let mut rule = Rule::drop(p, vec![format!("{key} = false")]);
            rule.metric = Some(metric);
            l.rules.push(rule);
        }
    }
}

/// The rules for one exporter transform of pattern `p`.
fn rules_for(
    t: &Transform,
    key: &str,
    p: &str,
    selector: Option<(String, String)>,
    warnings: &mut Vec<String>,
) -> Vec<Rule> {
    let from = format!("{key} = {}", show(t));
    let mut rules = match t {
        Transform::AsIs => Vec::new(),
        Transform::Drop => vec![Rule::drop(p, vec![from])],
        Transform::Template(template) => match jinja::translate(template, p) {
            Ok(steps) => {
                let n = steps.len();
                steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, step)| Rule {
                        from: match (i, n) {
                            (0, 1) => vec![from.clone()],
                            (0, _) => vec![format!("{from} (step 1 of {n})")],
                            _ => vec![format!("(step {} of {n})", i + 1)],
                        },
                        label: p.to_string(),
                        metric: None,
                        selector: None,
                        step: Some(step),
                    })
                    .collect()
            }
            Err(why) => {
                warnings.push(format!(
                    "{from}: not translated: {why}; rme drops the label there instead of exporting it unchanged"
                ));
                vec![Rule::drop(
                    p,
                    vec![
                        format!("NOT TRANSLATED: {from}"),
                        format!("  ({why})"),
                        "  The label is dropped rather than exported unchanged; write a replace rule for it.".into(),
                    ],
                )]
            }
        },
    };
    for r in &mut rules {
        r.selector = selector.clone();
    }
    rules
}

fn render_rule(rule: &Rule, out: &mut String) {
    let _ = writeln!(out, "[[store.labels]]");
    for line in &rule.from {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(out, "label = {}", q(&rule.label));
    if let Some(metric) = rule.metric {
        let _ = writeln!(out, "metric = {}", q(metric));
    }
    if let Some((s, f)) = &rule.selector {
        let _ = writeln!(out, "match = {{ stream = {}, filter = {} }}", q(s), q(f));
    }
    match &rule.step {
        None => {
            let _ = writeln!(out, "action = \"drop\"");
        }
        Some(Step::Lowercase) => {
            let _ = writeln!(out, "action = \"lowercase\"");
        }
        Some(Step::Replace { regex, replacement }) => {
            let _ = writeln!(
                out,
                "action = \"replace\"\nregex = {}\nreplacement = {}",
                q(regex),
                q(replacement)
            );
        }
    }
    out.push('\n');
}

fn source(c: &ExporterConfig, pattern_labels: &[String], out: &mut String) {
    let _ = writeln!(out, "[[sources]]\ntype = \"reaction\"");
    let given = default_mark(c.logs.given);
    match &c.logs.value {
        Logs::Systemd(unit) => {
            let _ = writeln!(
                out,
                "# reaction.logs.systemd = {unit:?}{given}: read with journalctl, from the saved cursor on\n\
                 journal = {{ unit = {} }}",
                q(unit)
            );
        }
        Logs::File(path) => {
            let _ = writeln!(
                out,
                "# reaction.logs.file = {path:?}{given}: followed across rotation, from the saved position on\n\
                 log = {}",
                q(path)
            );
        }
    }
    let _ = writeln!(
        out,
        "# reaction.config = {:?}{}: read at start for the pattern names of each filter\n\
         config = {}",
        c.reaction_config.value,
        default_mark(c.reaction_config.given),
        q(&c.reaction_config.value)
    );
    if c.needs_patterns() {
        let _ = writeln!(
            out,
            "# metrics.export.{{matches,actions}}: every pattern of reaction's config is a label, as in the exporter\n\
             #   (names read from reaction's config at import; values are unbounded: see `rme defaults`, [store])"
        );
    } else {
        let _ = writeln!(
            out,
            "# metrics.export.{{matches,actions}}.extra = false (or not exported): no pattern labels"
        );
    }
    let names: Vec<&str> = pattern_labels.iter().map(String::as_str).collect();
    let _ = writeln!(out, "pattern_labels = {}", list(&names));
    let pending = default_mark(c.pending.given);
    if c.pending.value.on {
        let _ = writeln!(
            out,
            "# metrics.export.pending{pending}: `reaction show` at each flush gives reaction_pending_count{{stream,filter,action}}\n\
             #   (plus reaction_current_matches and reaction_up); unlike the exporter's (pending.extra),\n\
             #   it has no pattern labels: a series per address ever pending would stay behind\n\
             show = true\n\
             # reaction.socket = {:?}{}\n\
             socket = {}",
            c.socket.value,
            default_mark(c.socket.given),
            q(&c.socket.value)
        );
    } else {
        let _ = writeln!(
            out,
            "# metrics.export.pending = false: no `reaction show` (reaction.socket = {:?} is not needed)\n\
             show = false",
            c.socket.value
        );
    }
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::reaction_exporter::parse;

    /// ssh.failedlogin has <ip> and <user>, nginx.probes has <ip>.
    fn patterns() -> FilterPatterns {
        FilterPatterns::from_config(&serde_json::json!({
            "patterns": {"ip": {}, "user": {}},
            "streams": {
                "ssh": {"filters": {"failedlogin": {"regex": ["Failed password for <user> from <ip>"]}}},
                "nginx": {"filters": {"probes": {"regex": ["<ip> .* /wp-login"]}}}
            }
        }))
    }

    fn import(yaml: &str) -> (toml::Table, Imported) {
        let c = parse(yaml).unwrap();
        let imported = to_rme(&c, "config.yml", Some(&patterns())).unwrap();
        let table = imported
            .toml
            .parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
        // and rme itself takes it
        crate::config::Config::parse(&imported.toml, None)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", imported.toml));
        (table, imported)
    }

    fn source(t: &toml::Table) -> &toml::Table {
        t["sources"].as_array().unwrap()[0].as_table().unwrap()
    }

    /// (label, action, match stream.filter, metric) of each rule.
    fn rules(t: &toml::Table) -> Vec<String> {
        let Some(rules) = t.get("store").and_then(|s| s.get("labels")) else {
            return Vec::new();
        };
        rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let get = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("");
                let sel = r.get("match").map_or(String::new(), |m| {
                    format!(
                        " {}.{}",
                        m["stream"].as_str().unwrap(),
                        m["filter"].as_str().unwrap()
                    )
                });
                let metric = r
                    .get("metric")
                    .map_or(String::new(), |m| format!(" {}", m.as_str().unwrap()));
                format!("{} {}{sel}{metric}", get("label"), get("action"))
            })
            .collect()
    }

    #[test]
    fn the_default_config_labels_every_pattern_and_reads_the_journal() {
        let (t, imported) = import("");
        assert!(imported.warnings.is_empty());
        assert_eq!(t["serve"]["listen"].as_str(), Some("127.0.0.1:8080"));
        let s = source(&t);
        assert_eq!(s["type"].as_str(), Some("reaction"));
        assert_eq!(s["journal"]["unit"].as_str(), Some("reaction.service"));
        assert_eq!(s["config"].as_str(), Some("/etc/reaction"));
        assert_eq!(
            s["pattern_labels"],
            toml::Value::Array(vec!["ip".into(), "user".into()])
        );
        assert_eq!(s["show"].as_bool(), Some(true));
        assert_eq!(s["socket"].as_str(), Some("/run/reaction/reaction.sock"));
        assert!(rules(&t).is_empty());
        assert!(t.get("store").is_none());
        assert!(
            imported.toml.contains("# loglevel = \"INFO\" (default)"),
            "{}",
            imported.toml
        );
    }

    #[test]
    fn a_pattern_false_everywhere_is_simply_not_a_label() {
        let (t, imported) = import("metrics:\n  all:\n    ip: false\n");
        assert_eq!(
            source(&t)["pattern_labels"],
            toml::Value::Array(vec!["user".into()])
        );
        assert!(rules(&t).is_empty());
        assert!(
            imported
                .toml
                .contains("pattern <ip>: not a label (metrics.all.ip = false)")
        );
    }

    #[test]
    fn metrics_for_overrides_all_filter_by_filter() {
        let (t, _) = import(
            "metrics:\n  all:\n    ip: false\n  for:\n    ssh:\n      failedlogin:\n        ip: true\n",
        );
        assert_eq!(
            source(&t)["pattern_labels"],
            toml::Value::Array(vec!["ip".into(), "user".into()])
        );
        // kept for ssh.failedlogin, dropped for the other filter with an <ip>
        assert_eq!(rules(&t), vec!["ip drop nginx.probes"]);
    }

    #[test]
    fn a_template_becomes_replace_rules_with_their_origin() {
        let (t, imported) = import(
            "metrics:\n  for:\n    ssh:\n      failedlogin:\n        user: \"{{ user[:3] | lower }}\"\n",
        );
        assert_eq!(
            rules(&t),
            vec![
                "user replace ssh.failedlogin",
                "user lowercase ssh.failedlogin"
            ]
        );
        assert!(imported.toml.contains(
            "# metrics.for.ssh.failedlogin.user = \"{{ user[:3] | lower }}\" (step 1 of 2)"
        ));
    }

    #[test]
    fn an_untranslatable_template_is_named_warned_and_the_label_dropped() {
        let (t, imported) =
            import("metrics:\n  all:\n    user: \"{{ user | replace('a', 'b') }}\"\n");
        assert_eq!(rules(&t), vec!["user drop"]);
        assert!(
            imported.toml.contains(
                "# NOT TRANSLATED: metrics.all.user = \"{{ user | replace('a', 'b') }}\""
            )
        );
        assert_eq!(imported.warnings.len(), 1);
        assert!(
            imported.warnings[0].contains("metrics.all.user"),
            "{:?}",
            imported.warnings
        );
    }

    #[test]
    fn extra_false_drops_the_pattern_labels_of_that_metric() {
        let (t, _) = import("metrics:\n  export:\n    matches:\n      extra: false\n");
        assert_eq!(
            rules(&t),
            vec![
                "ip drop reaction_match_total",
                "user drop reaction_match_total"
            ]
        );
    }

    #[test]
    fn disabled_metrics_are_not_kept_and_pending_turns_show_off() {
        let (t, _) = import(
            "metrics:\n  export:\n    matches: false\n    actions: false\n    pending: false\n",
        );
        assert_eq!(
            t["store"]["drop_metrics"],
            toml::Value::Array(vec![
                "reaction_match_total".into(),
                "reaction_action_total".into(),
                "reaction_action_errors_total".into()
            ])
        );
        let s = source(&t);
        assert_eq!(s["show"].as_bool(), Some(false));
        assert_eq!(s["pattern_labels"], toml::Value::Array(vec![]));
    }

    #[test]
    fn no_pattern_names_are_needed_without_labelled_metrics() {
        let c = parse("metrics:\n  export:\n    matches:\n      extra: false\n    actions:\n      extra: false\n  all:\n    ip: false\n").unwrap();
        let imported = to_rme(&c, "x.yml", None).unwrap();
        assert!(imported.toml.contains("no metric carries pattern labels"));
        assert!(imported.toml.contains("pattern_labels = []"));
    }

    #[test]
    fn listen_address_must_be_an_ip() {
        let (t, _) = import("listen:\n  address: localhost\n  port: 9100\n");
        assert_eq!(t["serve"]["listen"].as_str(), Some("127.0.0.1:9100"));
        let (t, _) = import("listen:\n  address: '::1'\n");
        assert_eq!(t["serve"]["listen"].as_str(), Some("[::1]:8080"));
        let c = parse("listen:\n  address: example.org\n").unwrap();
        let err = to_rme(&c, "x.yml", Some(&patterns())).unwrap_err();
        assert_eq!(err.key, "listen.address");
    }

    #[test]
    fn a_pattern_named_like_an_rme_label_is_warned_about() {
        let p = FilterPatterns::from_config(&serde_json::json!({
            "streams": {"s": {"filters": {"f": {"regex": ["<action> by <ip>"]}}}}
        }));
        let c = parse("").unwrap();
        let imported = to_rme(&c, "x.yml", Some(&p)).unwrap();
        assert!(
            imported.toml.contains("pattern_labels = [\"ip\"]"),
            "{}",
            imported.toml
        );
        assert!(
            imported.warnings[0].contains("<action>"),
            "{:?}",
            imported.warnings
        );
    }

    #[test]
    fn entries_for_unknown_filters_are_noted_not_lost() {
        let (_, imported) =
            import("metrics:\n  for:\n    web:\n      probes:\n        ip: false\n");
        assert!(
            imported.toml.contains(
                "# metrics.for.web.probes.ip: reaction's config has no filter web.probes"
            )
        );
    }
}
