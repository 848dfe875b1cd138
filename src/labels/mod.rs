//! Label actions beyond `drop` and `prefix`, each a compiled struct with a small
//! API that the store's label rules call: `top` (heavy hitters keep their own
//! series, the rest is `other`), `geoip` (country and ASN of an address) and
//! `hash` (a keyed hash instead of the value).

pub mod action;
pub mod geoip;
pub mod hash;
pub mod topk;

#[cfg(test)]
mod tests;
