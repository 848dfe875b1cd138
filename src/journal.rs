//! Reads a unit's messages from journald through `journalctl -o json`.
//!
//! `--after-cursor` continues exactly after the last entry read (the cursor is
//! kept in the state file), so cron runs and restarts neither miss nor repeat
//! an entry. `MESSAGE` is a JSON string, or an array of bytes when it is not
//! valid UTF-8.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use serde::Deserialize;

/// Where a source's log comes from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JournalInput {
    /// systemd unit whose messages are read, e.g. `reaction.service`.
    pub unit: String,
    /// `journalctl` binary to run.
    #[serde(default = "default_journalctl")]
    pub journalctl: String,
}

fn default_journalctl() -> String {
    "journalctl".to_string()
}

/// One journal entry's message and where it is.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub message: String,
    pub cursor: String,
}

/// The `journalctl` command for a unit, after `cursor` when there is one.
pub fn command(input: &JournalInput, cursor: Option<&str>, follow: bool) -> Command {
    let mut cmd = Command::new(&input.journalctl);
    cmd.args(["-o", "json", "--no-pager", "--unit", &input.unit]);
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
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Parses one line of `journalctl -o json`; `None` for a line without a message or cursor.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let cursor = v.get("__CURSOR")?.as_str()?.to_string();
    let message = match v.get("MESSAGE")? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(bytes) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().map(|b| b as u8))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => return None,
    };
    Some(Entry { message, cursor })
}

/// Runs `journalctl` and hands every entry to `on_entry` until it exits (or,
/// following, forever). Returns the child's exit status when it ends.
pub fn read(
    input: &JournalInput,
    cursor: Option<&str>,
    follow: bool,
    on_entry: &mut dyn FnMut(Entry),
) -> anyhow::Result<()> {
    let mut child: Child = command(input, cursor, follow)
        .spawn()
        .with_context(|| format!("running {} for unit {}", input.journalctl, input.unit))?;
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
        anyhow::bail!(
            "{} for unit {} exited with {status}",
            input.journalctl,
            input.unit
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn command_continues_after_the_cursor() {
        let input = JournalInput {
            unit: "reaction.service".into(),
            journalctl: "journalctl".into(),
        };
        let args: Vec<String> = command(&input, Some("abc"), true)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--after-cursor=abc".to_string()));
        assert!(args.contains(&"--follow".to_string()));
        assert!(!args.contains(&"--no-tail".to_string()));
    }
}
