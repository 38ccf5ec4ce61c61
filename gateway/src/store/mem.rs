//! [`MemStore`]: an in-memory [`Store`] that models durability, for unit tests and fault
//! injection (a full disk, a crash that loses unflushed writes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Batch, Entries, Space, Store, StoreError};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory [`Store`]. It keeps what was applied and, apart, what was flushed, so
/// [`MemStore::crash`] can lose exactly what a `kill -9` would.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
    /// Applies allowed before the simulated disk is full.
    fail_after: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    live: Map,
    flushed: Map,
    applies: u64,
}

impl MemStore {
    /// An empty store that never fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose disk fills up after `n` applies: the first `n` applies succeed; from then
    /// on every apply and every flush fails with [`StoreError::DiskFull`]. So the commit that
    /// makes the `n`th apply fails at its flush, and later commits fail at their apply.
    pub fn failing_after(n: u64) -> Self {
        MemStore {
            fail_after: Some(n),
            ..Self::default()
        }
    }

    /// Simulates `kill -9`: everything applied since the last successful flush is lost.
    pub fn crash(&self) {
        let mut inner = self.lock();
        inner.live = inner.flushed.clone();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_full(&self, inner: &Inner) -> Result<(), StoreError> {
        match self.fail_after {
            Some(n) if inner.applies >= n => Err(StoreError::DiskFull {
                dir: PathBuf::from("(in-memory store)"),
                detail: "No space left on device (os error 28) (simulated)".into(),
            }),
            _ => Ok(()),
        }
    }
}

impl Store for MemStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().live.get(&space.key(key)).cloned())
    }

    fn scan(&self, space: Space, prefix: &[u8]) -> Result<Entries, StoreError> {
        let prefix = space.key(prefix);
        Ok(self
            .lock()
            .live
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[1..].to_vec(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.check_full(&inner)?;
        for (k, v) in batch.into_prefixed() {
            match v {
                Some(v) => inner.live.insert(k, v),
                None => inner.live.remove(&k),
            };
        }
        inner.applies += 1;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.check_full(&inner)?;
        inner.flushed = inner.live.clone();
        Ok(())
    }

    fn export(&self) -> Result<Entries, StoreError> {
        Ok(self
            .lock()
            .live
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner
            .flushed
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loses_exactly_the_unflushed_writes() {
        let s = MemStore::new();
        let mut b = Batch::new();
        b.put(Space::Inbox, "a", "1");
        s.apply(b).unwrap();
        s.flush().unwrap();
        let mut b = Batch::new();
        b.put(Space::Inbox, "b", "2");
        b.delete(Space::Inbox, "a");
        s.apply(b).unwrap();
        assert_eq!(
            s.scan(Space::Inbox, b"").unwrap(),
            vec![(b"b".to_vec(), b"2".to_vec())]
        );
        s.crash();
        assert_eq!(
            s.scan(Space::Inbox, b"").unwrap(),
            vec![(b"a".to_vec(), b"1".to_vec())]
        );
    }
}
