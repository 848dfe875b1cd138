//! reaction-metrics-exporter's config file (YAML or JSON), read with the
//! exporter's own checks and defaults (its `models/config.py` schema, 0.2.2;
//! 1.0.1's `reaction.hold` and `metrics.export.{commands,streams}` too).
//!
//! Like the exporter's schema, an unknown key or a value of the wrong type is
//! an error; here it names the key path (`metrics.export.matchs`).

use serde_yaml_ng::Value;

use crate::invalid::Invalid;

/// A setting, and whether the file gave it (else it is the exporter's default).
#[derive(Clone, Debug, PartialEq)]
pub struct Set<T> {
    pub value: T,
    pub given: bool,
}

impl<T> Set<T> {
    fn default(value: T) -> Set<T> {
        Set {
            value,
            given: false,
        }
    }

    fn given(value: T) -> Set<T> {
        Set { value, given: true }
    }
}

/// `reaction.logs`: a systemd unit's journal, or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logs {
    Systemd(String),
    File(String),
}

/// `metrics.export.{matches,actions,pending}`: exported at all, and with pattern labels (`extra`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export {
    pub on: bool,
    pub extra: bool,
}

impl Export {
    /// Exported with its pattern labels.
    pub fn labelled(self) -> bool {
        self.on && self.extra
    }
}

/// `metrics.all.<pattern>` / `metrics.for.<stream>.<filter>.<pattern>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transform {
    /// `null` or `true`: the value as it is.
    AsIs,
    /// `false`: the pattern is not a label.
    Drop,
    /// A Jinja2 template rendered with the pattern's value.
    Template(String),
}

/// The exporter's config after its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ExporterConfig {
    pub loglevel: Set<String>,
    pub address: Set<String>,
    pub port: Set<u16>,
    pub reaction_config: Set<String>,
    pub logs: Set<Logs>,
    pub socket: Set<String>,
    /// 1.0.1: seconds of log time after a start during which actions are ignored.
    pub hold: Option<i64>,
    pub matches: Set<Export>,
    pub actions: Set<Export>,
    pub pending: Set<Export>,
    /// 1.0.1: `false` disables the start/stop command and stream event metrics.
    pub commands: Set<bool>,
    pub streams: Set<bool>,
    /// `metrics.export.internals` as written (`true`, `false`, `null`), if present.
    pub internals: Option<String>,
    /// `metrics.all`, in file order.
    pub all: Vec<(String, Transform)>,
    /// `metrics.for`: (stream, filter, pattern, transform), in file order.
    pub per_filter: Vec<(String, String, String, Transform)>,
}

pub const DEFAULT_UNIT: &str = "reaction.service";
pub const DEFAULT_FILE: &str = "/var/log/reaction.log";

impl Default for ExporterConfig {
    fn default() -> Self {
        let export = Set::default(Export {
            on: true,
            extra: true,
        });
        ExporterConfig {
            loglevel: Set::default("INFO".into()),
            address: Set::default("127.0.0.1".into()),
            port: Set::default(8080),
            reaction_config: Set::default("/etc/reaction".into()),
            logs: Set::default(Logs::Systemd(DEFAULT_UNIT.into())),
            socket: Set::default("/run/reaction/reaction.sock".into()),
            hold: None,
            matches: export.clone(),
            actions: export.clone(),
            pending: export,
            commands: Set::default(true),
            streams: Set::default(true),
            internals: None,
            all: Vec::new(),
            per_filter: Vec::new(),
        }
    }
}

impl ExporterConfig {
    /// Whether some metric carries pattern labels, so their names must be known.
    pub fn needs_patterns(&self) -> bool {
        self.matches.value.labelled() || self.actions.value.labelled()
    }
}

/// Parses the file's text (YAML; JSON is read as the YAML it also is, as the exporter does).
pub fn parse(text: &str) -> anyhow::Result<ExporterConfig> {
    let doc: Value = serde_yaml_ng::from_str(text)?;
    let mut c = ExporterConfig::default();
    if doc.is_null() {
        return Ok(c);
    }
    for (key, v) in mapping(&doc, "", &["loglevel", "listen", "reaction", "metrics"])? {
        match key.as_str() {
            "loglevel" => {
                let level = string(v, "loglevel")?;
                if !["DEBUG", "INFO", "WARNING", "ERROR"].contains(&level.to_uppercase().as_str()) {
                    return Err(
                        Invalid::new("loglevel", "must be DEBUG, INFO, WARNING or ERROR").into(),
                    );
                }
                c.loglevel = Set::given(level);
            }
            "listen" => listen(v, &mut c)?,
            "reaction" => reaction(v, &mut c)?,
            _ => metrics(v, &mut c)?,
        }
    }
    Ok(c)
}

fn listen(v: &Value, c: &mut ExporterConfig) -> Result<(), Invalid> {
    for (key, v) in mapping(v, "listen", &["address", "port"])? {
        if key == "address" {
            c.address = Set::given(string(v, "listen.address")?);
        } else {
            let port = v
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| Invalid::new("listen.port", "must be a port number (0-65535)"))?;
            c.port = Set::given(port);
        }
    }
    Ok(())
}

fn reaction(v: &Value, c: &mut ExporterConfig) -> Result<(), Invalid> {
    for (key, v) in mapping(v, "reaction", &["config", "logs", "socket", "hold"])? {
        match key.as_str() {
            "config" => c.reaction_config = Set::given(string(v, "reaction.config")?),
            "socket" => c.socket = Set::given(string(v, "reaction.socket")?),
            "hold" => {
                c.hold =
                    Some(v.as_i64().ok_or_else(|| {
                        Invalid::new("reaction.hold", "must be an integer (seconds)")
                    })?)
            }
            _ => {
                let logs = mapping(v, "reaction.logs", &["systemd", "file"])?;
                if logs.len() > 1 {
                    return Err(Invalid::new(
                        "reaction.logs",
                        "give `systemd` or `file`, not both",
                    ));
                }
                // a key with no value means its default (`systemd:` alone is the README's quick start)
                c.logs = match logs.first() {
                    None => Set::default(Logs::Systemd(DEFAULT_UNIT.into())),
                    Some((k, v)) => {
                        let path = format!("reaction.logs.{k}");
                        let or = |default: &str| {
                            if v.is_null() {
                                Ok(default.to_string())
                            } else {
                                string(v, &path)
                            }
                        };
                        Set::given(if k == "systemd" {
                            Logs::Systemd(or(DEFAULT_UNIT)?)
                        } else {
                            Logs::File(or(DEFAULT_FILE)?)
                        })
                    }
                };
            }
        }
    }
    Ok(())
}

fn metrics(v: &Value, c: &mut ExporterConfig) -> Result<(), Invalid> {
    for (key, v) in mapping(v, "metrics", &["all", "for", "export"])? {
        match key.as_str() {
            "all" => {
                for (pattern, v) in mapping(v, "metrics.all", &[])? {
                    let t = transform(v, &format!("metrics.all.{pattern}"))?;
                    c.all.push((pattern, t));
                }
            }
            "for" => {
                for (stream, v) in mapping(v, "metrics.for", &[])? {
                    let key = format!("metrics.for.{stream}");
                    for (filter, v) in mapping(v, &key, &[])? {
                        let key = format!("{key}.{filter}");
                        for (pattern, v) in mapping(v, &key, &[])? {
                            let t = transform(v, &format!("{key}.{pattern}"))?;
                            c.per_filter
                                .push((stream.clone(), filter.clone(), pattern, t));
                        }
                    }
                }
            }
            _ => export(v, c)?,
        }
    }
    Ok(())
}

fn export(v: &Value, c: &mut ExporterConfig) -> Result<(), Invalid> {
    let keys = [
        "matches",
        "actions",
        "pending",
        "commands",
        "streams",
        "internals",
    ];
    for (key, v) in mapping(v, "metrics.export", &keys)? {
        let path = format!("metrics.export.{key}");
        match key.as_str() {
            "matches" => c.matches = Set::given(metric_export(v, &path)?),
            "actions" => c.actions = Set::given(metric_export(v, &path)?),
            "pending" => c.pending = Set::given(metric_export(v, &path)?),
            "commands" => c.commands = Set::given(flag(v, &path)?),
            "streams" => c.streams = Set::given(flag(v, &path)?),
            _ => {
                flag(v, &path)?;
                c.internals = Some(match v {
                    Value::Bool(b) => b.to_string(),
                    _ => "null".into(),
                });
            }
        }
    }
    Ok(())
}

/// `null` (on, with labels), a bool, or `{ extra: bool }`.
fn metric_export(v: &Value, path: &str) -> Result<Export, Invalid> {
    match v {
        Value::Null => Ok(Export {
            on: true,
            extra: true,
        }),
        Value::Bool(on) => Ok(Export {
            on: *on,
            extra: true,
        }),
        Value::Mapping(_) => {
            let mut extra = true;
            for (_, v) in mapping(v, path, &["extra"])? {
                extra = v.as_bool().ok_or_else(|| {
                    Invalid::new(format!("{path}.extra"), "must be true or false")
                })?;
            }
            Ok(Export { on: true, extra })
        }
        _ => Err(Invalid::new(
            path,
            "must be false, null or { extra: true|false }",
        )),
    }
}

/// `null` or a bool; `null` counts as on.
fn flag(v: &Value, path: &str) -> Result<bool, Invalid> {
    match v {
        Value::Null => Ok(true),
        Value::Bool(b) => Ok(*b),
        _ => Err(Invalid::new(path, "must be true, false or empty")),
    }
}

fn transform(v: &Value, path: &str) -> Result<Transform, Invalid> {
    match v {
        Value::Null | Value::Bool(true) => Ok(Transform::AsIs),
        Value::Bool(false) => Ok(Transform::Drop),
        Value::String(s) => Ok(Transform::Template(s.clone())),
        _ => Err(Invalid::new(
            path,
            "must be a Jinja2 template string, false (not a label), or true/empty (as it is)",
        )),
    }
}

fn string(v: &Value, path: &str) -> Result<String, Invalid> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| Invalid::new(path, "must be a string"))
}

/// The entries of a mapping at `path`, in file order; with `allowed` non-empty, other keys are errors.
fn mapping<'v>(
    v: &'v Value,
    path: &str,
    allowed: &[&str],
) -> Result<Vec<(String, &'v Value)>, Invalid> {
    let name = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let Value::Mapping(m) = v else {
        return Err(Invalid::new(
            if path.is_empty() { "(top level)" } else { path },
            "must be a mapping",
        ));
    };
    let mut out = Vec::new();
    for (k, v) in m {
        let key = match k {
            Value::String(s) => s.clone(),
            other => {
                let shown = serde_yaml_ng::to_string(other).unwrap_or_default();
                return Err(Invalid::new(name(shown.trim()), "keys must be strings"));
            }
        };
        if !allowed.is_empty() && !allowed.contains(&key.as_str()) {
            return Err(Invalid::new(
                name(&key),
                format!("unknown key (expected one of: {})", allowed.join(", ")),
            ));
        }
        out.push((key, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), ExporterConfig::default());
        assert_eq!(parse("{}").unwrap(), ExporterConfig::default());
    }

    #[test]
    fn readme_quick_start_means_the_default_unit() {
        let c = parse("reaction:\n  config: /etc/reaction\n  logs:\n    systemd:\n").unwrap();
        assert_eq!(c.logs.value, Logs::Systemd("reaction.service".into()));
        let c = parse("reaction:\n  logs:\n    file:\n").unwrap();
        assert_eq!(c.logs.value, Logs::File("/var/log/reaction.log".into()));
        let c = parse(r#"{"reaction": {"logs": {"file": "/x/r.log"}}}"#).unwrap();
        assert_eq!(c.logs.value, Logs::File("/x/r.log".into()));
    }

    #[test]
    fn export_forms() {
        let c = parse(
            "metrics:\n  export:\n    matches: false\n    actions:\n      extra: false\n    pending:\n    internals:\n",
        )
        .unwrap();
        assert_eq!(
            (c.matches.value, c.actions.value, c.pending.value),
            (
                Export {
                    on: false,
                    extra: true
                },
                Export {
                    on: true,
                    extra: false
                },
                Export {
                    on: true,
                    extra: true
                }
            )
        );
        assert!(c.matches.given && c.pending.given);
        assert_eq!(c.internals.as_deref(), Some("null"));
        // matches off, actions without labels: no pattern names needed
        assert!(!c.needs_patterns());
    }

    #[test]
    fn transforms_keep_file_order() {
        let c = parse(
            "metrics:\n  all:\n    ip: false\n    email: \"{{ email.split('@') | last }}\"\n    user:\n  for:\n    ssh:\n      failedlogin:\n        ip: true\n",
        )
        .unwrap();
        assert_eq!(
            c.all,
            vec![
                ("ip".into(), Transform::Drop),
                (
                    "email".into(),
                    Transform::Template("{{ email.split('@') | last }}".into())
                ),
                ("user".into(), Transform::AsIs),
            ]
        );
        assert_eq!(
            c.per_filter,
            vec![(
                "ssh".into(),
                "failedlogin".into(),
                "ip".into(),
                Transform::AsIs
            )]
        );
    }

    #[test]
    fn unknown_and_invalid_keys_are_named() {
        for (text, key) in [
            ("loglevl: INFO", "loglevl: unknown key"),
            ("loglevel: LOUD", "loglevel: must be"),
            ("listen:\n  port: http", "listen.port: must be"),
            ("listen:\n  port: 70000", "listen.port: must be"),
            ("listen:\n  host: x", "listen.host: unknown key"),
            (
                "reaction:\n  logs:\n    journal: x",
                "reaction.logs.journal: unknown key",
            ),
            (
                "reaction:\n  logs:\n    file: a\n    systemd: b",
                "reaction.logs: give",
            ),
            (
                "reaction:\n  config: 3",
                "reaction.config: must be a string",
            ),
            (
                "metrics:\n  export:\n    matchs: false",
                "metrics.export.matchs: unknown key",
            ),
            (
                "metrics:\n  export:\n    matches:\n      labels: false",
                "metrics.export.matches.labels: unknown key",
            ),
            (
                "metrics:\n  export:\n    matches:\n      extra: 1",
                "metrics.export.matches.extra: must be",
            ),
            (
                "metrics:\n  export:\n    pending: 3",
                "metrics.export.pending: must be",
            ),
            ("metrics:\n  all:\n    ip: 3", "metrics.all.ip: must be"),
            (
                "metrics:\n  for:\n    ssh: false",
                "metrics.for.ssh: must be a mapping",
            ),
            (
                "metrics:\n  for:\n    ssh:\n      f:\n        ip: [1]",
                "metrics.for.ssh.f.ip: must be",
            ),
            ("listen: 8080", "listen: must be a mapping"),
            ("- a", "(top level): must be a mapping"),
        ] {
            let e = err(text);
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn yaml_syntax_error_is_an_error() {
        assert!(parse("listen: [").is_err());
    }
}
