//! Reads journald through `journalctl -o json`: a unit's messages, or the
//! entries a journalctl match selects, from the system journal or from journal
//! files (`--file`, `--directory`).
//!
//! `--after-cursor` continues exactly after the last entry read (the cursor is
//! kept in the state file), so cron runs and restarts neither miss nor repeat
//! an entry. A field is a JSON string, an array of bytes when it is not valid
//! UTF-8, or an array of those when the entry has it more than once.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use serde::Deserialize;

use crate::invalid::Invalid;

/// Which journal entries a source reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JournalInput {
    /// systemd unit whose messages are read (`journalctl --unit`), e.g. `reaction.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// journalctl matches (`FIELD=value`, all must hold), e.g. `["_TRANSPORT=audit"]`.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
    /// Read this journal file instead of the system journal (`journalctl --file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Read the journal files in this directory (`journalctl --directory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<PathBuf>,
    /// `journalctl` binary to run.
    #[serde(default = "default_journalctl")]
    pub journalctl: String,
}

fn default_journalctl() -> String {
    "journalctl".to_string()
}

impl JournalInput {
    /// The input a source reads when its `journal` table names no unit and no
    /// match: `default_match` (e.g. `_TRANSPORT=audit`), or an error at `key`
    /// when the source has none.
    pub fn or_match(
        &self,
        key: &str,
        default_match: Option<&str>,
    ) -> Result<JournalInput, Invalid> {
        if self.file.is_some() && self.directory.is_some() {
            return Err(Invalid::new(key, "set `file` or `directory`, not both"));
        }
        if let Some(bad) = self.matches.iter().find(|m| !is_match(m)) {
            return Err(Invalid::new(
                format!("{key}.match"),
                format!("'{bad}' is not FIELD=value (FIELD in capitals, digits and _)"),
            ));
        }
        let mut input = self.clone();
        if input.unit.is_none() && input.matches.is_empty() {
            match default_match {
                Some(m) => input.matches.push(m.to_string()),
                None => return Err(Invalid::new(key, "needs `unit` or `match`")),
            }
        }
        Ok(input)
    }

    /// Makes `file` and `directory` relative to the config file's directory.
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.file
            .iter_mut()
            .chain(self.directory.iter_mut())
            .for_each(fix);
    }

    /// What this input reads, for messages: `unit reaction.service`, `_TRANSPORT=audit in x.journal`.
    pub fn describe(&self) -> String {
        let mut what: Vec<String> = self.unit.iter().map(|u| format!("unit {u}")).collect();
        what.extend(self.matches.iter().cloned());
        let mut s = what.join(" ");
        if let Some(p) = self.file.as_ref().or(self.directory.as_ref()) {
            s.push_str(&format!(" in {}", p.display()));
        }
        s
    }
}

/// `FIELD=value` as journalctl takes it.
fn is_match(m: &str) -> bool {
    m.split_once('=').is_some_and(|(field, _)| {
        !field.is_empty()
            && field
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// One journal entry: its message, where it is, and the fields sources read
/// besides the message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub message: String,
    pub cursor: String,
    /// `PRIORITY`: the syslog level, 0 (emerg) to 7 (debug).
    pub priority: Option<u8>,
    /// `LOGGER`: the Python logger name python-systemd's `JournalHandler` sets
    /// (fail2ban with `logtarget = SYSTEMD-JOURNAL`: `fail2ban.actions`, …).
    pub logger: Option<String>,
    /// `_AUDIT_TYPE`, `_AUDIT_TYPE_NAME` and `_AUDIT_ID` of a kernel audit
    /// record journald read itself (`_TRANSPORT=audit`).
    pub audit: Option<AuditFields>,
    /// `_SOURCE_REALTIME_TIMESTAMP`, else `__REALTIME_TIMESTAMP`, in µs since the epoch.
    pub realtime_us: Option<u64>,
}

/// How journald keeps a kernel audit record: `MESSAGE` is the record's type name
/// and text (`SYSCALL arch=c000003e …`, `AUDIT1334 …` for a type it has no name
/// for), without the `audit(SEC.MS:ID): ` header, which is in these fields and
/// `_SOURCE_REALTIME_TIMESTAMP`.
#[derive(Debug, PartialEq, Eq)]
pub struct AuditFields {
    pub kind: u32,
    pub kind_name: Option<String>,
    pub id: u64,
}

/// The `journalctl` command for an input, after `cursor` when there is one.
pub fn command(input: &JournalInput, cursor: Option<&str>, follow: bool) -> Command {
    let mut cmd = Command::new(&input.journalctl);
    cmd.args(["-o", "json", "--no-pager"]);
    if let Some(f) = &input.file {
        cmd.arg("--file").arg(f);
    }
    if let Some(d) = &input.directory {
        cmd.arg("--directory").arg(d);
    }
    if let Some(u) = &input.unit {
        cmd.args(["--unit", u]);
    }
    match cursor {
        Some(c) => {
            cmd.arg(format!("--after-cursor={c}"));
        }
        // Without a cursor, read all that is stored (follow mode would show only the last 10).
        None => {
            cmd.arg("--no-tail");
        }
    }
    if follow {
        cmd.arg("--follow");
    }
    // Matches last: journalctl takes every positional argument as one.
    cmd.args(&input.matches);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// A field's text: a string, an array of bytes (not valid UTF-8), or, for a field
/// the entry has several times, the first of them.
fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if items.iter().all(|b| b.is_u64()) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|b| b.as_u64().map(|b| b as u8))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Array(items) => items.first().and_then(text),
        _ => None,
    }
}

/// Parses one line of `journalctl -o json`; `None` for a line without a message or cursor.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let field = |name: &str| v.get(name).and_then(text);
    let number = |name: &str| field(name).and_then(|s| s.parse::<u64>().ok());
    let audit = match (number("_AUDIT_TYPE"), number("_AUDIT_ID")) {
        (Some(kind), Some(id)) => Some(AuditFields {
            kind: u32::try_from(kind).ok()?,
            kind_name: field("_AUDIT_TYPE_NAME"),
            id,
        }),
        _ => None,
    };
    Some(Entry {
        cursor: field("__CURSOR")?,
        message: field("MESSAGE")?,
        priority: field("PRIORITY").and_then(|p| p.parse().ok()),
        logger: field("LOGGER"),
        audit,
        realtime_us: number("_SOURCE_REALTIME_TIMESTAMP")
            .or_else(|| number("__REALTIME_TIMESTAMP")),
    })
}

/// Runs `journalctl` and hands every entry to `on_entry` until it exits (or,
/// following, forever). Returns the child's exit status when it ends.
pub fn read(
    input: &JournalInput,
    cursor: Option<&str>,
    follow: bool,
    on_entry: &mut dyn FnMut(Entry),
) -> anyhow::Result<()> {
    let what = input.describe();
    let mut child: Child = command(input, cursor, follow)
        .spawn()
        .with_context(|| format!("running {} for {what}", input.journalctl))?;
    let stdout = child.stdout.take().context("journalctl has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("reading {} output", input.journalctl))?;
        if let Some(e) = parse_entry(&line) {
            on_entry(e);
        }
    }
    let status = child.wait()?;
    // journalctl exits 1 when --after-cursor names the last entry and nothing follows
    // on some versions; only a failure to run at all is an error here.
    if !status.success() && status.code() != Some(1) {
        anyhow::bail!("{} for {what} exited with {status}", input.journalctl);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(unit: Option<&str>, matches: &[&str]) -> JournalInput {
        JournalInput {
            unit: unit.map(String::from),
            matches: matches.iter().map(|m| m.to_string()).collect(),
            file: None,
            directory: None,
            journalctl: "journalctl".into(),
        }
    }

    #[test]
    fn parses_string_and_byte_array_messages() {
        let e = parse_entry(
            r#"{"__CURSOR":"s=1;i=2","MESSAGE":"INFO ssh.failedlogin: match [\"1.2.3.4\"]"}"#,
        )
        .unwrap();
        assert_eq!(e.cursor, "s=1;i=2");
        assert!(e.message.starts_with("INFO ssh"));
        let e = parse_entry(r#"{"__CURSOR":"c","MESSAGE":[104,105,255]}"#).unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        assert!(parse_entry("not json").is_none());
        assert!(parse_entry(r#"{"MESSAGE":"no cursor"}"#).is_none());
    }

    #[test]
    fn reads_the_logger_priority_and_audit_fields() {
        let e = parse_entry(
            r#"{"__CURSOR":"c","MESSAGE":"[sshd] Ban 1.2.3.4","LOGGER":"fail2ban.actions","PRIORITY":"4","__REALTIME_TIMESTAMP":"1764600000123456"}"#,
        )
        .unwrap();
        assert_eq!(e.logger.as_deref(), Some("fail2ban.actions"));
        assert_eq!(e.priority, Some(4));
        assert_eq!(e.realtime_us, Some(1764600000123456));
        assert_eq!(e.audit, None);
        let e = parse_entry(
            r#"{"__CURSOR":"c","MESSAGE":"SYSCALL arch=c000003e","_AUDIT_TYPE":"1300","_AUDIT_TYPE_NAME":"SYSCALL","_AUDIT_ID":["77","77"],"_SOURCE_REALTIME_TIMESTAMP":"5","__REALTIME_TIMESTAMP":"9"}"#,
        )
        .unwrap();
        let audit = e.audit.unwrap();
        assert_eq!(
            (audit.kind, audit.kind_name.as_deref(), audit.id),
            (1300, Some("SYSCALL"), 77)
        );
        assert_eq!(e.realtime_us, Some(5));
    }

    #[test]
    fn command_continues_after_the_cursor() {
        let args: Vec<String> = command(&input(Some("reaction.service"), &[]), Some("abc"), true)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--after-cursor=abc".to_string()));
        assert!(args.contains(&"--follow".to_string()));
        assert!(!args.contains(&"--no-tail".to_string()));
    }

    #[test]
    fn file_and_matches_go_to_journalctl() {
        let mut i = input(None, &["_TRANSPORT=audit"]);
        i.file = Some("/x/a.journal".into());
        let args: Vec<String> = command(&i, None, false)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-o",
                "json",
                "--no-pager",
                "--file",
                "/x/a.journal",
                "--no-tail",
                "_TRANSPORT=audit"
            ]
        );
    }

    #[test]
    fn a_source_without_unit_or_match_takes_its_default_or_is_refused() {
        let none = input(None, &[]);
        let audit = none
            .or_match("sources[0].journal", Some("_TRANSPORT=audit"))
            .unwrap();
        assert_eq!(audit.matches, ["_TRANSPORT=audit"]);
        let err = none.or_match("sources[0].journal", None).unwrap_err();
        assert!(err.to_string().contains("sources[0].journal"), "{err}");
        let err = input(None, &["transport"]).or_match("j", None).unwrap_err();
        assert!(err.to_string().contains("j.match"), "{err}");
    }
}
