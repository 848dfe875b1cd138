//! Label rules beyond drop and prefix: each kind pure and unit-tested, compiled
//! once from the config and applied by the store.

pub mod relabel;
