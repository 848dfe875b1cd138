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
