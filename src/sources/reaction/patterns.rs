//! reaction's own config, read for one thing: the pattern names (`<ip>`) each
//! filter's regexes use, so match values can be named.
//!
//! The config may be YAML, JSON, jsonnet or (v2) a directory of them. The
//! tricky point is jsonnet, which only a jsonnet evaluator can read: rme asks
//! `reaction test-config` first (it prints the evaluated config as YAML), then
//! the `jsonnet` command, and otherwise says what to install.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use regex::Regex;
use serde_json::Value;

/// How long `reaction test-config` or `jsonnet` may take.
const EVAL_TIMEOUT: Duration = Duration::from_secs(20);

static PATTERN_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(\w+)>").expect("static regex"));

/// Pattern names of each (stream, filter), and of each action's command, sorted alphabetically.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterPatterns {
    filters: HashMap<(String, String), Vec<String>>,
    /// Names each action's `cmd` uses, by (stream, filter, action); absent for an
    /// action without `cmd` (a v2 plugin action).
    actions: HashMap<(String, String, String), Vec<String>>,
    /// Each action's whole `cmd`, for reading values back from a `run` line (template.rs).
    commands: HashMap<(String, String, String), Vec<String>>,
}

impl FilterPatterns {
    pub fn get(&self, stream: &str, filter: &str) -> Option<&[String]> {
        self.filters
            .get(&(stream.to_string(), filter.to_string()))
            .map(Vec::as_slice)
    }

    /// The pattern names an action's command uses (`<ip>` in its `cmd`).
    pub fn action(&self, stream: &str, filter: &str, action: &str) -> Option<&[String]> {
        let key = (stream.to_string(), filter.to_string(), action.to_string());
        self.actions.get(&key).map(Vec::as_slice)
    }

    /// Every (stream, filter) with its pattern names, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &[String])> {
        self.filters
            .iter()
            .map(|((s, f), names)| (s.as_str(), f.as_str(), names.as_slice()))
    }

    /// Every action's ((stream, filter, action), cmd).
    pub fn commands(&self) -> impl Iterator<Item = (&(String, String, String), &[String])> {
        self.commands.iter().map(|(k, v)| (k, v.as_slice()))
    }

    /// Every filter's pattern names.
    pub fn names(&self) -> impl Iterator<Item = &[String]> {
        self.filters.values().map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.filters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Reads them from an evaluated config: `<name>` in each filter's `regex`
    /// list and in each action's `cmd`, kept when `patterns` declares that name
    /// (or declares nothing).
    pub fn from_config(config: &Value) -> FilterPatterns {
        let declared: BTreeSet<&str> = config
            .get("patterns")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let names = |strings: Option<&Vec<Value>>| -> Vec<String> {
            let set: BTreeSet<String> = strings
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .flat_map(|r| PATTERN_REF.captures_iter(r).map(|c| c[1].to_string()))
                .filter(|n| declared.is_empty() || declared.contains(n.as_str()))
                .collect();
            set.into_iter().collect()
        };
        let mut out = FilterPatterns::default();
        let streams = config.get("streams").and_then(Value::as_object);
        for (stream, body) in streams.into_iter().flatten() {
            let filters = body.get("filters").and_then(Value::as_object);
            for (filter, body) in filters.into_iter().flatten() {
                let regexes = body.get("regex").and_then(Value::as_array);
                out.filters
                    .insert((stream.clone(), filter.clone()), names(regexes));
                let actions = body.get("actions").and_then(Value::as_object);
                for (action, body) in actions.into_iter().flatten() {
                    if let Some(cmd) = body.get("cmd").and_then(Value::as_array) {
                        let key = (stream.clone(), filter.clone(), action.clone());
                        out.actions.insert(key.clone(), names(Some(cmd)));
                        let args: Option<Vec<String>> =
                            cmd.iter().map(|v| v.as_str().map(String::from)).collect();
                        if let Some(args) = args {
                            out.commands.insert(key, args);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Loads the pattern names of reaction's config at `path` (file or directory).
pub fn load_patterns(path: &Path, reaction: Option<&Path>) -> anyhow::Result<FilterPatterns> {
    let config = match test_config(path, reaction.unwrap_or(Path::new("reaction")))? {
        Some(config) => config,
        None => read_config(path)?,
    };
    let patterns = FilterPatterns::from_config(&config);
    if patterns.is_empty() {
        bail!(
            "{}: reaction config has no streams with filters",
            path.display()
        );
    }
    Ok(patterns)
}

/// `reaction test-config -c <path>`; `None` when the binary is missing (or is v1, which lacks the command).
fn test_config(path: &Path, reaction: &Path) -> anyhow::Result<Option<Value>> {
    let mut cmd = Command::new(reaction);
    cmd.arg("test-config").arg("-c").arg(path);
    let out = match run(cmd) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("running {} test-config", reaction.display()));
        }
        Ok(out) => out,
    };
    if !out.0 {
        tracing::warn!(reaction = %reaction.display(), config = %path.display(),
            "`reaction test-config` failed; reading the config file directly");
        return Ok(None);
    }
    let value = serde_yaml_ng::from_str(&out.1)
        .with_context(|| format!("{}: reading `reaction test-config` output", path.display()))?;
    Ok(Some(value))
}

/// Reads a config file, or merges a directory's files (hidden ones are jsonnet libraries, skipped).
pub fn read_config(path: &Path) -> anyhow::Result<Value> {
    if !path.is_dir() {
        return read_file(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: reading reaction config directory", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            !name.starts_with('.') && matches!(ext, "yml" | "yaml" | "json" | "jsonnet")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{}: no .yml, .yaml, .json or .jsonnet file in this reaction config directory",
            path.display()
        );
    }
    let mut merged = Value::Object(Default::default());
    for file in files {
        merge(&mut merged, read_file(&file)?);
    }
    Ok(merged)
}

fn read_file(path: &Path) -> anyhow::Result<Value> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "jsonnet" || ext == "libsonnet" {
        return jsonnet(path);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: reading reaction config", path.display()))?;
    match ext {
        "yml" | "yaml" => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{}: invalid YAML", path.display())),
        _ => {
            serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
        }
    }
}

fn jsonnet(path: &Path) -> anyhow::Result<Value> {
    let mut cmd = Command::new("jsonnet");
    cmd.arg(path);
    let (ok, stdout, stderr) = match run(cmd) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{}: a jsonnet reaction config needs the `jsonnet` command (Debian/Ubuntu: apt install jsonnet), \
             or set `reaction` to reaction's binary so `reaction test-config` evaluates it",
            path.display()
        ),
        other => other.with_context(|| format!("{}: running jsonnet", path.display()))?,
    };
    if !ok {
        bail!("{}: jsonnet failed: {}", path.display(), stderr.trim());
    }
    serde_json::from_str(&stdout)
        .with_context(|| format!("{}: jsonnet output is not JSON", path.display()))
}

/// Objects merge key by key; anything else is replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Runs a command with a deadline: (success, stdout, stderr).
fn run(mut cmd: Command) -> std::io::Result<(bool, String, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().map(drain);
    let mut stderr = child.stderr.take().map(drain);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > EVAL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let join = |h: &mut Option<std::thread::JoinHandle<String>>| {
        h.take().and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok((status.success(), join(&mut stdout), join(&mut stderr)))
}

/// Reads a pipe to the end on a thread, so a large output cannot block the child.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}
