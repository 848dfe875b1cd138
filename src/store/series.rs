//! A series: a metric name and its labels sorted by (name, value), packed into
//! one string so that a series costs one allocation whatever its label count.

use serde::{Deserialize, Serialize};

/// A series: metric name plus labels kept sorted by (name, value), as
/// remote-write requires. Packed into one string with the end of each part,
/// so a series costs one allocation (up to five labels and 64 KiB of text;
/// two beyond) whatever its label count.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Series {
    /// The name, then each label's name and value, back to back.
    text: Box<str>,
    /// Where the name, and then each label name and value, end in `text`.
    ends: Ends,
}

/// Part ends inline (the usual case), or on the heap. Which one is decided by
/// the sizes alone, so equal series are equal here too (unused entries are 0).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Ends {
    Inline { len: u8, at: [u16; Ends::INLINE] },
    Heap(Box<[u32]>),
}

impl Ends {
    /// Name + 5 labels.
    const INLINE: usize = 11;

    fn new(ends: &[u32]) -> Ends {
        let short =
            ends.len() <= Ends::INLINE && ends.last().is_none_or(|&e| e <= u32::from(u16::MAX));
        if !short {
            return Ends::Heap(ends.into());
        }
        let mut at = [0; Ends::INLINE];
        for (a, &e) in at.iter_mut().zip(ends) {
            *a = e as u16;
        }
        Ends::Inline {
            len: ends.len() as u8,
            at,
        }
    }

    fn len(&self) -> usize {
        match self {
            Ends::Inline { len, .. } => usize::from(*len),
            Ends::Heap(e) => e.len(),
        }
    }

    fn get(&self, i: usize) -> usize {
        match self {
            Ends::Inline { at, .. } => usize::from(at[i]),
            Ends::Heap(e) => e[i] as usize,
        }
    }
}

impl Series {
    /// Builds a series; labels are sorted here so callers may pass them in any order.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Series {
        let mut sorted: Vec<(&str, &str)> = labels.to_vec();
        sorted.sort_unstable();
        Series::from_sorted(name, sorted.iter().copied())
    }

    /// Builds a series from labels already sorted by (name, value).
    pub(crate) fn from_sorted<'a>(
        name: &str,
        labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Series {
        let len = name.len()
            + labels
                .clone()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        let mut text = String::with_capacity(len);
        let parts = 1 + 2 * labels.clone().count();
        // The ends are gathered on the stack when they fit inline.
        let mut inline = [0u32; Ends::INLINE];
        let mut heap = Vec::new();
        let ends: &mut [u32] = if parts <= Ends::INLINE {
            &mut inline[..parts]
        } else {
            heap.resize(parts, 0);
            &mut heap
        };
        text.push_str(name);
        ends[0] = text.len() as u32;
        for (i, (k, v)) in labels.enumerate() {
            text.push_str(k);
            ends[1 + 2 * i] = text.len() as u32;
            text.push_str(v);
            ends[2 + 2 * i] = text.len() as u32;
        }
        Series {
            text: text.into_boxed_str(),
            ends: Ends::new(ends),
        }
    }

    pub fn name(&self) -> &str {
        &self.text[..self.ends.get(0)]
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            series: self,
            at: 1,
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn part(&self, i: usize) -> &str {
        &self.text[self.ends.get(i - 1)..self.ends.get(i)]
    }
}

/// The labels of a [`Series`], as (name, value).
#[derive(Clone)]
pub struct Labels<'a> {
    series: &'a Series,
    at: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at + 1 >= self.series.ends.len() {
            return None;
        }
        let pair = (self.series.part(self.at), self.series.part(self.at + 1));
        self.at += 2;
        Some(pair)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.series.ends.len() - self.at) / 2;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Labels<'_> {}

/// By name, then labels pair by pair (a shorter label list first): the order
/// every sink sends and the text format lists.
impl Ord for Series {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name()
            .cmp(other.name())
            .then_with(|| self.labels().cmp(other.labels()))
    }
}

impl PartialOrd for Series {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `name{k="v",…}`, for tests and logs (the exposition format escapes differently: text.rs).
impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{", self.name())?;
        for (i, (k, v)) in self.labels().enumerate() {
            write!(f, "{}{k}={v:?}", if i > 0 { "," } else { "" })?;
        }
        f.write_str("}")
    }
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// How a series reads in JSON (`rme state`, and the state files of rme ≤ 0.1).
#[derive(Serialize, Deserialize)]
struct SeriesJson {
    name: String,
    labels: Vec<(String, String)>,
}

impl Serialize for Series {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SeriesJson {
            name: self.name().to_string(),
            labels: self
                .labels()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Series, D::Error> {
        let j = SeriesJson::deserialize(d)?;
        let labels: Vec<(&str, &str)> = j
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Ok(Series::new(&j.name, &labels))
    }
}

impl Default for Series {
    fn default() -> Series {
        Series::new("", &[])
    }
}
