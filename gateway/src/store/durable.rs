//! [`Durable`]: group commit over any [`Store`].
//!
//! A commit applies its batch, then takes a sequence number (`applied += 1`) — *after* the apply
//! returned, so every number up to the current `applied` belongs to a finished apply. A single
//! flusher task loops: read `applied` as the round's target, call [`Store::flush`] on a blocking
//! thread, publish the target as durable (or as failed) on a `watch` channel. A commit resolves
//! once a round whose target covers its number has ended: that flush started after its apply.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use super::{Batch, Store, StoreError};

/// Group commit: [`commit`](Durable::commit) resolves only when the batch is on disk, and
/// concurrent commits share one flush. Dropping it lets the flusher finish the pending round and
/// stop.
pub struct Durable<S: Store> {
    store: Arc<S>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Sequence numbers handed out so far; each one after its apply completed.
    applied: AtomicU64,
    /// Wakes the flusher (keeps a permit, so no wake-up is lost).
    wake: Notify,
    progress: watch::Sender<Progress>,
    flushes: AtomicU64,
    /// Time spent in flushes so far, nanoseconds.
    flush_nanos: AtomicU64,
    /// Bytes of keys and values applied so far ([`Batch::logical_bytes`]).
    logical_bytes: AtomicU64,
    closed: AtomicBool,
}

#[derive(Default)]
struct Progress {
    /// Highest sequence number covered by a successful flush.
    durable: u64,
    /// Highest sequence number covered by a failed flush, and its error.
    failed_through: u64,
    error: Option<StoreError>,
}

impl<S: Store> Durable<S> {
    /// Wraps `store` and spawns its flusher task.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(store: Arc<S>) -> Self {
        let shared = Arc::new(Shared {
            applied: AtomicU64::new(0),
            wake: Notify::new(),
            progress: watch::Sender::new(Progress::default()),
            flushes: AtomicU64::new(0),
            flush_nanos: AtomicU64::new(0),
            logical_bytes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(flusher(Arc::clone(&store), Arc::clone(&shared)));
        Durable { store, shared }
    }

    /// Applies `batch` atomically and returns once it is durable. On `Err` nothing may be
    /// acknowledged (the batch may or may not survive a crash: retry with the same keys).
    /// An empty batch is a barrier: it returns once everything applied before it is durable.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if !batch.is_empty() {
            let bytes = batch.logical_bytes();
            let store = Arc::clone(&self.store);
            tokio::task::spawn_blocking(move || store.apply(batch))
                .await
                .map_err(|e| StoreError::Internal {
                    detail: format!("the apply task failed: {e}"),
                })??;
            self.shared.logical_bytes.fetch_add(bytes, SeqCst);
        }
        let seq = self.shared.applied.fetch_add(1, SeqCst) + 1;
        self.shared.wake.notify_one();
        let mut rx = self.shared.progress.subscribe();
        let p = rx
            .wait_for(|p| p.durable >= seq || p.failed_through >= seq)
            .await
            .map_err(|_| StoreError::Internal {
                detail: "the flusher stopped".into(),
            })?;
        if p.durable >= seq {
            Ok(())
        } else {
            Err(p.error.clone().unwrap_or(StoreError::Internal {
                detail: "a flush failed without an error".into(),
            }))
        }
    }

    /// The underlying store, for reads (writes go through [`commit`](Durable::commit)).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Flushes issued so far, failed ones included (fsyncs per commit, for the benchmark).
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(SeqCst)
    }

    /// Time spent in [`Store::flush`] so far (for the benchmark: the mean flush time is this
    /// over [`flush_count`](Durable::flush_count)).
    pub fn flush_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.shared.flush_nanos.load(SeqCst))
    }

    /// Counts a batch applied outside [`Durable::commit`] (the audit log applies its batches in
    /// chain order itself, then commits an empty barrier).
    pub fn note_applied(&self, bytes: u64) {
        self.shared.logical_bytes.fetch_add(bytes, SeqCst);
    }

    /// Bytes of keys and values applied so far (the logical write volume, for the benchmark's
    /// split of bytes on disk into what the gateway writes and what the store adds).
    pub fn logical_bytes(&self) -> u64 {
        self.shared.logical_bytes.load(SeqCst)
    }
}

impl<S: Store> Drop for Durable<S> {
    fn drop(&mut self) {
        self.shared.closed.store(true, SeqCst);
        self.shared.wake.notify_one();
    }
}

async fn flusher<S: Store>(store: Arc<S>, shared: Arc<Shared>) {
    let mut done = 0;
    loop {
        let target = shared.applied.load(SeqCst);
        if target == done {
            if shared.closed.load(SeqCst) {
                return;
            }
            shared.wake.notified().await;
            continue;
        }
        let s = Arc::clone(&store);
        let result = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let r = s.flush();
            (r, start.elapsed())
        })
        .await
        .map(|(r, took)| {
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            shared.flush_nanos.fetch_add(nanos, SeqCst);
            r
        })
        .unwrap_or_else(|e| {
            Err(StoreError::Internal {
                detail: format!("the flush task failed: {e}"),
            })
        });
        shared.flushes.fetch_add(1, SeqCst);
        shared.progress.send_modify(|p| match result {
            Ok(()) => p.durable = target,
            Err(e) => {
                p.failed_through = target;
                p.error = Some(e);
            }
        });
        done = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemStore, Space};

    fn put(key: &str) -> Batch {
        let mut b = Batch::new();
        b.put(Space::Outbox, key, "v");
        b
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_flushed_before_it_returns() {
        let d = Durable::new(Arc::new(MemStore::new()));
        for i in 0..20 {
            d.commit(put(&format!("k{i:02}"))).await.unwrap();
        }
        d.store().crash();
        assert_eq!(d.store().scan(Space::Outbox, b"k").unwrap().len(), 20);
        assert!(d.flush_count() >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_full_fails_the_commit_and_says_nothing_was_acknowledged() {
        let d = Durable::new(Arc::new(MemStore::failing_after(2)));
        d.commit(put("ok")).await.unwrap();
        // The second apply fills the disk: its flush fails.
        let at_flush = d.commit(put("at-flush")).await.unwrap_err();
        // The third is refused at apply.
        let at_apply = d.commit(put("at-apply")).await.unwrap_err();
        for e in [at_flush, at_apply] {
            assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");
            assert!(e.to_string().contains("nothing was acknowledged"), "{e}");
            assert!(e.to_string().contains("No space left on device"), "{e}");
        }
        d.store().crash();
        let keys: Vec<_> = d.store().scan(Space::Outbox, b"").unwrap();
        assert_eq!(keys, vec![(b"ok".to_vec(), b"v".to_vec())]);
    }
}
