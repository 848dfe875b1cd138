//! Label rules: the rule types and their interpreter (rules.rs, which also does
//! `drop` and `prefix`), compiled once by the plan and applied by the store when
//! a series is made. Each other kind is pure and unit-tested in its own file:
//! `replace`, `lowercase` and selectors (relabel.rs), `top` (heavy hitters keep
//! their own series, the rest is `other`), `geoip` (country and ASN of an
//! address) and `hash` (a keyed hash instead of the value).

pub mod action;
pub mod geoip;
pub mod hash;
pub mod relabel;
pub mod rules;
pub mod topk;

#[cfg(test)]
mod tests;
