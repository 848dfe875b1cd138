//! The one error a config value gives when it parses but cannot work.
//!
//! A leaf: config, sources and sinks all name keys with it, and it imports nothing of rme.

/// A config value that parses but cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

impl Invalid {
    /// `key: must be at least MIN` when `value` is below `min`.
    pub fn at_least(key: impl Into<String>, value: u64, min: u64) -> Result<(), Invalid> {
        if value < min {
            return Err(Invalid::new(key, format!("must be at least {min}")));
        }
        Ok(())
    }

    /// The same error with its key placed under `parent`: `url` under `sinks[1]`
    /// is `sinks[1].url`; an empty key (the part as a whole) is `parent` itself.
    pub fn under(self, parent: &str) -> Invalid {
        let key = match self.key.as_str() {
            "" => parent.to_string(),
            k => format!("{parent}.{k}"),
        };
        Invalid {
            key,
            reason: self.reason,
        }
    }

    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Reads one variant of a [`tagged`] table.
pub type Read<T> = fn(toml::Value) -> Result<T, toml::de::Error>;

/// A `type = "…"` table (a source, a sink) read as the variant its `type`
/// names. Done by hand, not by serde's internally tagged enums: those buffer
/// the table and lose the key, so `rotate_wait_secs = -1` was reported
/// against the `[[sources]]` line with no key; now the error ends with
/// "in `rotate_wait_secs`".
pub fn tagged<T>(mut table: toml::Table, variants: &[(&str, Read<T>)]) -> Result<T, String> {
    let names = || {
        variants
            .iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(other) => return Err(format!("`type` must be a string, not {}", other.type_str())),
        None => return Err(format!("missing field `type` (one of {})", names())),
    };
    let Some((_, read)) = variants.iter().find(|(n, _)| *n == kind) else {
        return Err(format!(
            "unknown variant `{kind}`, expected one of {}",
            names()
        ));
    };
    read(toml::Value::Table(table)).map_err(|e| e.to_string().trim_end().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct A {
        n: u64,
    }

    fn read(text: &str) -> Result<A, String> {
        let t: toml::Table = toml::from_str(text).unwrap();
        tagged(t, &[("a", |v| v.try_into())])
    }

    #[test]
    fn tagged_tables_name_the_key_the_type_and_the_choices() {
        assert_eq!(read("type = \"a\"\nn = 3"), Ok(A { n: 3 }));
        let e = read("type = \"a\"\nn = -1").unwrap_err();
        assert!(e.contains("`n`") && e.contains("-1"), "{e}");
        let e = read("type = \"a\"\nm = 1").unwrap_err();
        assert!(e.contains("unknown field `m`"), "{e}");
        let e = read("type = \"b\"").unwrap_err();
        assert!(e.contains("`b`") && e.contains("`a`"), "{e}");
        assert!(read("n = 1").unwrap_err().contains("missing field `type`"));
    }
}
