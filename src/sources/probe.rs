//! The shell every probe shares: [`Fetched`] runs a [`Live`] reader's I/O in
//! [`Probe::fetch`], off the store's lock, and keeps what it read until
//! [`Probe::apply`] writes it into the store under the lock. A probe says only
//! how it reads and how a reading (or its failure) goes into the store.

use super::Probe;
use crate::store::Store;

/// Live state read in two halves: the I/O without the store, then the store
/// without I/O.
pub trait Live: Send {
    /// What one read got: a status, or why there is none.
    type Reading: Send;
    fn source(&self) -> &'static str;
    fn describe(&self, store: &mut Store);
    /// Does the I/O (socket, netlink, subprocess).
    fn read(&mut self) -> Self::Reading;
    /// Writes one reading into the store, with no I/O. An error is counted by
    /// the caller as a failed probe and logged.
    fn record(&mut self, reading: Self::Reading, store: &mut Store) -> anyhow::Result<()>;
}

/// A [`Live`] reader as a [`Probe`]: what `fetch` read waits here for `apply`.
pub struct Fetched<L: Live> {
    pub live: L,
    reading: Option<L::Reading>,
}

impl<L: Live> Fetched<L> {
    pub fn new(live: L) -> Fetched<L> {
        Fetched {
            live,
            reading: None,
        }
    }
}

impl<L: Live> Probe for Fetched<L> {
    fn source(&self) -> &'static str {
        self.live.source()
    }

    fn describe(&self, store: &mut Store) {
        self.live.describe(store);
    }

    fn fetch(&mut self) {
        self.reading = Some(self.live.read());
    }

    fn apply(&mut self, store: &mut Store) -> anyhow::Result<()> {
        match self.reading.take() {
            Some(reading) => self.live.record(reading, store),
            None => Ok(()),
        }
    }
}
