//! Handles by a key built without allocating, for the parsers: a key seen
//! before costs one hash lookup and no string.

use std::collections::HashMap;

use crate::store::Handle;

/// Keys a memo holds; past this it starts over, so odd input cannot grow it
/// without bound (the store's series cap still decides what is kept).
pub const MAX_MEMO: usize = 4096;

/// What the parsers' maps hash with: foldhash, several times faster than the
/// standard SipHash on short keys, still seeded per process.
pub type Hasher = foldhash::fast::RandomState;

/// Handles by a key of parts joined by NUL; starts over past [`MAX_MEMO`] keys.
#[derive(Debug, Default)]
pub struct Memo {
    handles: HashMap<Box<str>, Handle, Hasher>,
    key: String,
    uncached: Handle,
}

impl Memo {
    /// The handle for `parts`, made (unresolved) the first time they are seen.
    pub fn get(&mut self, parts: &[&str]) -> &mut Handle {
        self.get_with(parts.iter().copied())
    }

    /// [`Memo::get`] for parts that are not in one slice.
    /// A part holding NUL could make two keys one: such parts get a handle of
    /// their own each time (resolved by the store as a new handle would be).
    pub fn get_with<'a>(&mut self, parts: impl IntoIterator<Item = &'a str>) -> &mut Handle {
        self.key.clear();
        for p in parts {
            if memchr::memchr(0, p.as_bytes()).is_some() {
                self.uncached = Handle::default();
                return &mut self.uncached;
            }
            self.key.push_str(p);
            self.key.push('\0');
        }
        if !self.handles.contains_key(self.key.as_str()) {
            if self.handles.len() >= MAX_MEMO {
                self.handles.clear();
            }
            self.handles
                .insert(self.key.as_str().into(), Handle::default());
        }
        self.handles
            .get_mut(self.key.as_str())
            .expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_kept_apart_and_the_memo_stays_bounded() {
        let mut m = Memo::default();
        m.get(&["a", "bc"]);
        m.get(&["ab", "c"]);
        assert_eq!(m.handles.len(), 2, "joined by NUL, not run together");
        for i in 0..MAX_MEMO * 2 {
            m.get(&[&i.to_string()]);
        }
        assert!(m.handles.len() <= MAX_MEMO);
        let before = m.handles.len();
        m.get(&["a\0", "b"]);
        m.get(&["a", "\0b"]);
        assert_eq!(m.handles.len(), before, "keys with NUL are not kept");
    }
}
