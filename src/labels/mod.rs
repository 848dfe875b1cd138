//! Label rules beyond drop and prefix: each kind pure and unit-tested, compiled
//! once from the config and applied by the store: `replace`, `lowercase` and
//! selectors (relabel.rs), `top` (heavy hitters keep their own series, the rest
//! is `other`), `geoip` (country and ASN of an address) and `hash` (a keyed hash
//! instead of the value).

pub mod action;
pub mod geoip;
pub mod hash;
pub mod relabel;
pub mod topk;

#[cfg(test)]
mod tests;
