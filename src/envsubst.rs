//! `${VAR}` and `${VAR:-default}` in the config's string values, `$$` for a
//! literal `$`: one config for a fleet, the differences in the environment
//! (systemd `Environment=` / `EnvironmentFile=`).
//!
//! Only `${NAME}` with NAME `[A-Za-z_][A-Za-z0-9_]*` is expanded; any other
//! `$` stays as written. Not expanded: `regex` and `replacement` of
//! `[[store.labels]]`, whose `$1` / `${name}` are the regex's groups.
//! An unset variable without a default is an error naming the key and the
//! variable. `check-config` prints the config as expanded.

use crate::invalid::Invalid;

/// The config text with every string value expanded, re-written as TOML;
/// `None` when no string value holds a `$` (then the text is read as written,
/// so parse errors point into it).
pub fn expand_config(text: &str) -> anyhow::Result<Option<String>> {
    let mut table: toml::Table = toml::from_str(text)?;
    let mut changed = false;
    for (k, v) in table.iter_mut() {
        changed |= expand_value(v, k, &|name| std::env::var(name).ok())?;
    }
    Ok(if changed {
        Some(toml::to_string(&table)?)
    } else {
        None
    })
}

/// Keys whose `$` belongs to a regex replacement, not to the environment.
fn is_regex_key(key: &str) -> bool {
    key.starts_with("store.labels[") && (key.ends_with(".regex") || key.ends_with(".replacement"))
}

fn expand_value(
    v: &mut toml::Value,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, Invalid> {
    Ok(match v {
        toml::Value::String(s) if s.contains('$') && !is_regex_key(key) => {
            *s = expand(s, env).map_err(|reason| Invalid::new(key, reason))?;
            true
        }
        toml::Value::Array(a) => {
            let mut changed = false;
            for (i, v) in a.iter_mut().enumerate() {
                changed |= expand_value(v, &format!("{key}[{i}]"), env)?;
            }
            changed
        }
        toml::Value::Table(t) => {
            let mut changed = false;
            for (k, v) in t.iter_mut() {
                changed |= expand_value(v, &format!("{key}.{k}"), env)?;
            }
            changed
        }
        _ => false,
    })
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One string expanded: `$$` → `$`, `${NAME}`, `${NAME:-default}`.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        let var = rest
            .strip_prefix("${")
            .and_then(|r| r.find('}').map(|end| (&r[..end], &r[end + 1..])));
        let Some((inner, after)) = var else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if !is_name(name) {
            out.push('$');
            rest = &rest[1..];
            continue;
        }
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} (in ${{{name}}}) is not set; set it \
                     (systemd: Environment= or EnvironmentFile=), give a default \
                     (${{{name}:-value}}) or write $$ for a literal $"
                ));
            }
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("web1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_defaults_and_literals() {
        let x = |s: &str| expand(s, &env);
        assert_eq!(x("${HOST}.example").unwrap(), "web1.example");
        assert_eq!(x("${NOPE:-fra1}/${HOST:-x}").unwrap(), "fra1/web1");
        assert_eq!(x("${EMPTY:-d}").unwrap(), "");
        assert_eq!(x("pa$$word $$HOST").unwrap(), "pa$word $HOST");
        assert_eq!(x("$1 ${1} $ ${ a$").unwrap(), "$1 ${1} $ ${ a$");
        let err = x("http://${RW_HOST}/w").unwrap_err();
        assert!(err.contains("RW_HOST") && err.contains(":-"), "{err}");
    }

    #[test]
    fn an_unset_variable_names_the_key_and_regex_keys_are_left_alone() {
        let mut t: toml::Value = toml::from_str(
            "[[sinks]]\nurl = \"${NOPE}\"\n[[store.labels]]\nreplacement = \"${name}\"\n",
        )
        .unwrap();
        let toml::Value::Table(t) = &mut t else {
            panic!()
        };
        let sinks = t.get_mut("sinks").unwrap();
        let err = expand_value(sinks, "sinks", &env).unwrap_err().to_string();
        assert!(
            err.starts_with("sinks[0].url: environment variable NOPE"),
            "{err}"
        );
        let store = t.get_mut("store").unwrap();
        assert!(!expand_value(store, "store", &env).unwrap());
    }
}
