//! The store and the read positions behind one lock, shared by the readers,
//! the flush and `GET /metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Store;
use crate::inputs::SourceState;

/// The store and where each source stands, behind one lock so a snapshot and
/// the positions saved with it always agree.
pub struct Shared {
    pub store: Store,
    pub positions: BTreeMap<String, SourceState>,
}

pub type SharedRef = Arc<Mutex<Shared>>;

/// Locks the shared store; a panic elsewhere must not stop the flushes.
pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks the shared store and sets its clock in one call, so no update made
/// under this lock carries the time of an earlier batch.
pub fn lock_at(shared: &Mutex<Shared>, now_ms: i64) -> MutexGuard<'_, Shared> {
    let mut g = lock(shared);
    g.store.set_now(now_ms);
    g
}
