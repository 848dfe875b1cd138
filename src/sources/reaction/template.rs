//! Pattern values read back from a `run` line through the action's command
//! template in reaction's config: `cmd: ['ip46tables', '-s', '<ip>']` and
//! `run [ip46tables -s 203.0.113.9]` give `ip = 203.0.113.9`.
//!
//! A v1 daemon replays the actions of its saved matches when it starts (`run`
//! lines with no `match` line before them), and `after:` actions run hours after
//! their match; the template names their values all the same.
//!
//! Shapes: v1 (Go) prints the command as `[arg arg …]` (Go's `%v` of a string
//! list, seen in v1's sources and logs) and a failed run as `[…], code …`. v2
//! (Rust) lines are known here only from reaction-metrics-exporter's regexes:
//! `["arg" "arg" …]`, quoted, with `\"` and `\\` escaped; a comma between
//! arguments (Rust's `{:?}`) is accepted too. No v2 binary was run to check.

use regex::Regex;

/// A compiled command template of one action.
#[derive(Debug)]
pub struct Template {
    /// v1 shape, then v2 shape.
    shapes: [Regex; 2],
    /// The pattern name of each capture group, in order.
    groups: Vec<String>,
}

impl Template {
    /// Compiles `cmd`, where `<name>` is a pattern for the names in `patterns`
    /// (other `<…>` are literal, as reaction leaves them). `None` when the
    /// command uses none of them.
    pub fn new(cmd: &[String], patterns: &[String]) -> Option<Template> {
        let mut groups = Vec::new();
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        for arg in cmd {
            let mut plain = String::new();
            let mut quoted = String::new();
            let mut rest = arg.as_str();
            while let Some((before, name, after)) = next_pattern(rest, patterns) {
                plain.push_str(&regex::escape(before));
                quoted.push_str(&regex::escape(&debug_escape(before)));
                plain.push_str("(.+?)");
                quoted.push_str("(.+?)");
                groups.push(name.to_string());
                rest = after;
            }
            plain.push_str(&regex::escape(rest));
            quoted.push_str(&regex::escape(&debug_escape(rest)));
            v1.push(plain);
            v2.push(format!("\"{quoted}\""));
        }
        if groups.is_empty() {
            return None;
        }
        let v1 = format!(r"^\[{}\](?:, .*)?$", v1.join(" "));
        let v2 = format!(r"^\[{}\](?:[,:] .*)?$", v2.join(",? "));
        Some(Template {
            shapes: [Regex::new(&v1).ok()?, Regex::new(&v2).ok()?],
            groups,
        })
    }

    /// The (pattern, value) pairs of a run line's command (what follows `run `),
    /// or `None` if it does not fit the template. A pattern used twice must have
    /// one value.
    pub fn values(&self, command: &str) -> Option<Vec<(String, String)>> {
        let command = command.trim_end();
        let (shape, caps) = self
            .shapes
            .iter()
            .enumerate()
            .find_map(|(i, re)| re.captures(command).map(|c| (i, c)))?;
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, name) in self.groups.iter().enumerate() {
            let raw = caps.get(i + 1)?.as_str();
            let value = if shape == 1 {
                debug_unescape(raw)
            } else {
                raw.to_string()
            };
            match out.iter().find(|(n, _)| n == name) {
                Some((_, v)) if *v != value => return None,
                Some(_) => {}
                None => out.push((name.clone(), value)),
            }
        }
        Some(out)
    }
}

/// The first `<name>` in `s` whose name is a pattern: (before, name, after).
fn next_pattern<'a>(s: &'a str, patterns: &[String]) -> Option<(&'a str, &'a str, &'a str)> {
    let mut from = 0;
    while let Some(open) = s[from..].find('<').map(|i| from + i) {
        let close = s[open..].find('>').map(|i| open + i)?;
        let name = &s[open + 1..close];
        if patterns.iter().any(|p| p == name) {
            return Some((&s[..open], name, &s[close + 1..]));
        }
        from = open + 1;
    }
    None
}

fn debug_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn debug_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn v1_and_v2_shapes() {
        let t = Template::new(
            &strings(&[
                "ip46tables",
                "-w",
                "-A",
                "reaction",
                "-s",
                "<ip>",
                "-j",
                "DROP",
            ]),
            &strings(&["ip"]),
        )
        .expect("uses <ip>");
        let ip = |s| t.values(s).map(|v| v[0].1.clone());
        let v1 = "[ip46tables -w -A reaction -s 203.0.113.9 -j DROP]";
        assert_eq!(ip(v1).as_deref(), Some("203.0.113.9"));
        let failed = "[ip46tables -w -A reaction -s 2001:db8::5 -j DROP], code exit status 1";
        assert_eq!(ip(failed).as_deref(), Some("2001:db8::5"));
        let v2 = r#"["ip46tables" "-w" "-A" "reaction" "-s" "198.51.100.1" "-j" "DROP"]"#;
        assert_eq!(ip(v2).as_deref(), Some("198.51.100.1"));
        let debug = r#"["ip46tables", "-w", "-A", "reaction", "-s", "198.51.100.2", "-j", "DROP"]"#;
        assert_eq!(ip(debug).as_deref(), Some("198.51.100.2"));
        assert_eq!(
            ip("[ip46tables -w -D reaction -s 203.0.113.9 -j DROP]"),
            None
        );
        assert_eq!(ip("[something else]"), None);
    }

    #[test]
    fn patterns_inside_an_argument_and_twice() {
        let t = Template::new(
            &strings(&[
                "nft", "add", "element", "inet", "t", "s", "{ <ip> }", "<user>", "<ip>",
            ]),
            &strings(&["ip", "user"]),
        )
        .expect("template");
        assert_eq!(
            t.values("[nft add element inet t s { 192.0.2.1 } root 192.0.2.1]"),
            Some(vec![
                ("ip".to_string(), "192.0.2.1".to_string()),
                ("user".to_string(), "root".to_string())
            ])
        );
        assert_eq!(
            t.values("[nft add element inet t s { 192.0.2.1 } root 192.0.2.2]"),
            None,
            "one pattern, two values"
        );
        assert!(Template::new(&strings(&["logger", "<notapattern>"]), &strings(&["ip"])).is_none());
    }
}
