//! [`Durable`]: group commit over any [`Store`].
//!
//! A commit applies its batch, then takes a sequence number (`applied += 1`) — *after* the apply
//! returned, so every number up to the current `applied` belongs to a finished apply. A single
//! flusher, an OS thread of its own (`store-flush`), loops: read `applied` as the round's target,
//! call [`Store::flush`], publish the target as durable (or as failed) on a `watch` channel. A
//! commit resolves once a round whose target covers its number has ended: that flush started
//! after its apply. (A thread rather than a task that hands each flush to tokio's blocking pool:
//! that cost two thread hand-offs per round on the critical path of every envelope.)
//!
//! # Failures
//! A failed flush fails every commit its round covers, with the flush's error (unless a later
//! round has already made that commit durable when it looks); later rounds try again, so a store
//! whose failures are transient recovers by itself. A store whose failure is
//! sticky (sled 0.34 keeps the first I/O error until the database is reopened, see
//! [`Store::health`]) cannot write again in this process: the store is then *stopped* — every
//! waiting and every later commit fails with the error, and [`Durable::stopped`] resolves, so
//! that the gateway can exit and be restarted. Nothing is waited on forever: an apply or a flush
//! round that takes longer than the bound ([`Durable::with_bound`], default
//! [`DEFAULT_BOUND`]) stops the store with [`StoreError::Stalled`]; the stuck thread is
//! abandoned. A watchdog on its own OS thread checks the flush rounds too, so that a hung flush
//! stops the store even when the async runtime itself is blocked (say by reads stuck on the same
//! disk); [`Durable::stopped`] needs no timer or I/O driver either. The watchdog also polls
//! [`Store::health`] (every quarter of the bound, at most every second), which catches a sticky
//! failure of a write applied outside [`Durable::commit`] (the audit log applies its own
//! batches).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Batch, SpaceFloor, Store, StoreError};

/// How long one apply or one flush round may take before the store is declared stalled.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(30);

/// How long [`Durable::settle`] waits for another commit's flush before asking for one.
pub const SETTLE_AFTER: Duration = Duration::from_millis(50);

/// Upper bounds, in seconds, of the buckets of [`Durable::flush_histogram`].
pub const FLUSH_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Group commit: [`commit`](Durable::commit) resolves only when the batch is on disk, and
/// concurrent commits share one flush. Dropping it lets the flusher finish the pending round and
/// stop.
pub struct Durable<S: Store> {
    store: Arc<S>,
    shared: Arc<Shared>,
    floor: Option<SpaceFloor>,
    /// Disconnected once the flusher thread has released the store.
    exited: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

struct Shared {
    /// Sequence numbers handed out so far; each one after its apply completed.
    applied: AtomicU64,
    /// Wakes the flusher (keeps a permit, so no wake-up is lost).
    wake: Wake,
    progress: watch::Sender<Progress>,
    flushes: AtomicU64,
    /// Time spent in flushes so far, nanoseconds.
    flush_nanos: AtomicU64,
    /// Flushes by duration: the count of each bucket of [`FLUSH_BUCKETS`] (not cumulative).
    flush_buckets: [AtomicU64; FLUSH_BUCKETS.len()],
    /// Bytes of keys and values applied so far ([`Batch::logical_bytes`]).
    logical_bytes: AtomicU64,
    closed: AtomicBool,
    /// How long one apply or one flush round may take.
    bound: Duration,
    /// When the flush round in progress started, in nanoseconds after `epoch` plus one; 0 when
    /// no round is in progress (read by the watchdog).
    round_started: AtomicU64,
    epoch: std::time::Instant,
}

impl Shared {
    /// Stops the store: every waiting and every later commit fails with `e` (the first error
    /// that stopped it is kept).
    fn stop(&self, e: StoreError) {
        self.progress.send_modify(|p| {
            if p.stopped.is_none() {
                p.stopped = Some(e);
            }
        });
        self.wake.notify();
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn stalled(&self, what: &'static str) -> StoreError {
        let e = StoreError::Stalled {
            what,
            secs: self.bound.as_secs_f64(),
        };
        self.stop(e.clone());
        e
    }
}

/// Wakes the flusher thread: a permit that a wake-up leaves and the flusher takes, with a
/// system call only when the flusher sleeps.
#[derive(Default)]
struct Wake {
    state: std::sync::Mutex<WakeState>,
    cv: std::sync::Condvar,
}

#[derive(Default)]
struct WakeState {
    permit: bool,
    sleeping: bool,
}

impl Wake {
    fn notify(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.permit = true;
        if s.sleeping {
            self.cv.notify_one();
        }
    }

    fn wait(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !s.permit {
            s.sleeping = true;
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            s.sleeping = false;
        }
        s.permit = false;
    }
}

#[derive(Default)]
struct Progress {
    /// Highest sequence number covered by a successful flush.
    durable: u64,
    /// Highest sequence number covered by a failed flush, and its error.
    failed_through: u64,
    error: Option<StoreError>,
    /// Set once the store cannot write again in this process (see the module docs).
    stopped: Option<StoreError>,
}

impl<S: Store> Durable<S> {
    /// Wraps `store` and starts its flusher thread, with the default bound ([`DEFAULT_BOUND`]).
    pub fn new(store: Arc<S>) -> Self {
        Self::with_bound(store, DEFAULT_BOUND)
    }

    /// As [`Durable::new`]; an apply or a flush round that takes longer than `bound` stops the
    /// store with [`StoreError::Stalled`].
    pub fn with_bound(store: Arc<S>, bound: Duration) -> Self {
        let shared = Arc::new(Shared {
            applied: AtomicU64::new(0),
            wake: Wake::default(),
            progress: watch::Sender::new(Progress::default()),
            flushes: AtomicU64::new(0),
            flush_nanos: AtomicU64::new(0),
            flush_buckets: Default::default(),
            logical_bytes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            bound,
            round_started: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        });
        let (exited_tx, exited) = std::sync::mpsc::channel::<()>();
        let started = std::thread::Builder::new()
            .name("store-flush".into())
            .spawn({
                let (store, shared) = (Arc::clone(&store), Arc::clone(&shared));
                move || {
                    flusher(&*store, &shared);
                    // The store is released before the exit is reported (see `Drop`).
                    drop(store);
                    drop(exited_tx);
                }
            });
        if let Err(e) = started {
            shared.stop(StoreError::Internal {
                detail: format!("cannot start the store's flush thread: {e}"),
            });
        }
        let (weak, weak_store) = (Arc::downgrade(&shared), Arc::downgrade(&store));
        // Without the watchdog the bound still holds while the runtime runs: do not fail here.
        let _ = std::thread::Builder::new()
            .name("store-watchdog".into())
            .spawn(move || watchdog(&weak, &weak_store));
        Durable {
            store,
            shared,
            floor: None,
            exited: std::sync::Mutex::new(exited),
        }
    }

    /// Refuses new work ([`Durable::admit`]) while the free space under `floor` is below it.
    pub fn with_floor(mut self, floor: SpaceFloor) -> Self {
        self.floor = Some(floor);
        self
    }

    /// Stops the store as a sticky write failure would (for tests elsewhere in the crate: what
    /// the gateway does when its store can no longer make anything durable).
    #[cfg(test)]
    pub(crate) fn stop_for_test(&self, e: StoreError) {
        self.shared.stop(e);
    }

    /// Whether new work (a submission, an incoming envelope) may be taken on: `Err` when the
    /// store is stopped or the free space is below the floor ([`StoreError::LowSpace`], a
    /// temporary condition). Work already taken on is not refused by the floor: it uses the
    /// space the floor keeps.
    pub fn admit(&self) -> Result<(), StoreError> {
        self.check_stopped()?;
        match &self.floor {
            Some(floor) => floor.check(),
            None => Ok(()),
        }
    }

    /// Resolves once the store is stopped (see the module docs), with the error that stopped
    /// it: the gateway should then exit; a restart reopens the store.
    pub async fn stopped(&self) -> StoreError {
        let mut rx = self.shared.progress.subscribe();
        let p = rx.wait_for(|p| p.stopped.is_some()).await;
        match p {
            Ok(p) => p.stopped.clone().unwrap_or(StoreError::Internal {
                detail: "stopped without an error".into(),
            }),
            // The sender lives in `shared`, which `self` holds: not reached.
            Err(_) => StoreError::Internal {
                detail: "the flusher stopped".into(),
            },
        }
    }

    /// The error that stopped the store, if it is stopped (see the module docs).
    pub fn stop_error(&self) -> Option<StoreError> {
        self.shared.progress.borrow().stopped.clone()
    }

    fn check_stopped(&self) -> Result<(), StoreError> {
        match &self.shared.progress.borrow().stopped {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Applies `batch` atomically and returns once it is durable. On `Err` nothing may be
    /// acknowledged (the batch may or may not survive a crash: retry with the same keys).
    /// An empty batch is a barrier: it returns once everything applied before it is durable.
    ///
    /// Never waits forever: after the bound ([`Durable::with_bound`]) the store is stopped and
    /// the commit fails with [`StoreError::Stalled`].
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.check_stopped()?;
        if !batch.is_empty() {
            let bytes = batch.logical_bytes();
            let store = Arc::clone(&self.store);
            let apply = tokio::task::spawn_blocking(move || store.apply(batch));
            let applied = tokio::time::timeout(self.shared.bound, apply)
                .await
                .map_err(|_| self.shared.stalled("an apply"))?
                .map_err(|e| StoreError::Internal {
                    detail: format!("the apply task failed: {e}"),
                })?;
            if let Err(e) = applied {
                if let Err(sticky) = self.store.health() {
                    self.shared.stop(sticky);
                }
                return Err(e);
            }
            self.shared.logical_bytes.fetch_add(bytes, SeqCst);
        }
        let seq = self.shared.applied.fetch_add(1, SeqCst) + 1;
        self.shared.wake.notify();
        self.wait_durable(seq).await
    }

    /// Returns once everything applied before the call is durable, without a flush of its own
    /// when it can: the next commit's flush covers it, and only when none came within
    /// [`SETTLE_AFTER`] is a flush asked for. For writes that may be lost in a crash without
    /// harm (the sender's delivered state: a re-send is answered with the stored receipt), kept
    /// off the critical path of the next commit.
    pub async fn settle(&self) -> Result<(), StoreError> {
        self.check_stopped()?;
        let seq = self.shared.applied.fetch_add(1, SeqCst) + 1;
        let mut rx = self.shared.progress.subscribe();
        let waited =
            rx.wait_for(|p| p.durable >= seq || p.failed_through >= seq || p.stopped.is_some());
        if tokio::time::timeout(SETTLE_AFTER, waited).await.is_err() {
            self.shared.wake.notify();
        }
        self.wait_durable(seq).await
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.shared.progress.subscribe();
        // The flusher bounds each round itself; this bound (the round in progress, then ours)
        // only matters if the flusher thread itself is gone.
        let wait =
            rx.wait_for(|p| p.durable >= seq || p.failed_through >= seq || p.stopped.is_some());
        let p = match tokio::time::timeout(2 * self.shared.bound + Duration::from_secs(1), wait)
            .await
        {
            Err(_) => return Err(self.shared.stalled("a flush")),
            Ok(Err(_)) => {
                return Err(StoreError::Internal {
                    detail: "the flusher stopped".into(),
                })
            }
            Ok(Ok(p)) => p,
        };
        if p.durable >= seq {
            Ok(())
        } else if p.failed_through >= seq {
            Err(p.error.clone().unwrap_or(StoreError::Internal {
                detail: "a flush failed without an error".into(),
            }))
        } else {
            Err(p.stopped.clone().unwrap_or(StoreError::Internal {
                detail: "the store stopped without an error".into(),
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

    /// Flushes that took at most each bound of [`FLUSH_BUCKETS`] (cumulative, as a Prometheus
    /// histogram's buckets; the `+Inf` bucket is [`flush_count`](Durable::flush_count)).
    pub fn flush_histogram(&self) -> [u64; FLUSH_BUCKETS.len()] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.shared.flush_buckets[i].load(SeqCst);
            total
        })
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
    /// Lets the flusher finish its round and waits (at most the bound) until it has released
    /// the store, so that the store can be opened again at once.
    fn drop(&mut self) {
        self.shared.closed.store(true, SeqCst);
        self.shared.wake.notify();
        if self.shared.progress.borrow().stopped.is_none() {
            let exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
            let _ = exited.recv_timeout(self.shared.bound);
        }
    }
}

/// Stops the store when a flush round outlives the bound, or when the store reports a sticky
/// failure of a write made outside [`Durable::commit`] (the audit log applies its own batches),
/// on an OS thread of its own (see the module docs). Ends when the store is stopped or dropped.
fn watchdog<S: Store>(shared: &std::sync::Weak<Shared>, store: &std::sync::Weak<S>) {
    let tick = (shared_bound(shared) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        std::thread::sleep(tick);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.progress.borrow().stopped.is_some() {
            return;
        }
        if let Some(Err(e)) = store.upgrade().map(|s| s.health()) {
            shared.stop(e);
            return;
        }
        let started = shared.round_started.load(SeqCst);
        if started != 0 {
            let running = shared.now_nanos().saturating_sub(started - 1);
            if Duration::from_nanos(running) > shared.bound {
                shared.stalled("a flush");
                return;
            }
        }
    }
}

fn shared_bound(shared: &std::sync::Weak<Shared>) -> Duration {
    shared.upgrade().map_or(Duration::ZERO, |s| s.bound)
}

/// The flusher thread's loop (see the module docs). A round that outlives the bound is the
/// watchdog's to report; if it ever returns, the store is stopped and nothing is published.
fn flusher<S: Store>(store: &S, shared: &Shared) {
    let mut done = 0;
    loop {
        if shared.progress.borrow().stopped.is_some() {
            return;
        }
        let target = shared.applied.load(SeqCst);
        if target == done {
            if shared.closed.load(SeqCst) {
                return;
            }
            shared.wake.wait();
            continue;
        }
        shared.round_started.store(shared.now_nanos() + 1, SeqCst);
        let start = std::time::Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.flush()))
            .unwrap_or_else(|_| {
                Err(StoreError::Internal {
                    detail: "the store's flush panicked".into(),
                })
            });
        let took = start.elapsed();
        shared.round_started.store(0, SeqCst);
        if shared.progress.borrow().stopped.is_some() {
            return;
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        shared.flush_nanos.fetch_add(nanos, SeqCst);
        let secs = took.as_secs_f64();
        if let Some(i) = FLUSH_BUCKETS.iter().position(|b| secs <= *b) {
            shared.flush_buckets[i].fetch_add(1, SeqCst);
        }
        shared.flushes.fetch_add(1, SeqCst);
        let sticky = match &result {
            Ok(()) => None,
            Err(_) => store.health().err(),
        };
        shared.progress.send_modify(|p| match result {
            Ok(()) => p.durable = target,
            Err(e) => {
                p.failed_through = target;
                p.error = Some(e);
                if p.stopped.is_none() {
                    p.stopped = sticky;
                }
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
        // Every flush of the memory store is quick: all in the first buckets, cumulative.
        let h = d.flush_histogram();
        assert!(h.windows(2).all(|w| w[0] <= w[1]), "{h:?}");
        assert_eq!(h[h.len() - 1], d.flush_count());
        assert!(d.stop_error().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_settled_write_rides_on_the_next_flush_or_asks_for_one_later() {
        let d = Arc::new(Durable::new(Arc::new(MemStore::new())));
        d.commit(put("first")).await.unwrap();
        // Alone, it gets a flush (its own, after SETTLE_AFTER at the latest).
        d.store().apply(put("settled")).unwrap();
        d.settle().await.unwrap();
        d.store().crash();
        assert_eq!(d.store().scan(Space::Outbox, b"settled").unwrap().len(), 1);
        // With a commit behind it, that commit's flush covers it: no flush of its own.
        d.store().apply(put("second")).unwrap();
        let numbered = d.shared.applied.load(SeqCst);
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.settle().await }
        });
        // The commit comes once the settle took its number.
        while d.shared.applied.load(SeqCst) == numbered {
            tokio::task::yield_now().await;
        }
        d.commit(put("third")).await.unwrap();
        let flushes = d.flush_count();
        waiting.await.unwrap().unwrap();
        assert_eq!(
            d.flush_count(),
            flushes,
            "the settle asked for a flush of its own"
        );
        d.store().crash();
        assert_eq!(d.store().scan(Space::Outbox, b"").unwrap().len(), 4);
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

    /// A [`MemStore`] with faults on demand: the next `fail` flushes fail, flushes (or applies)
    /// block while `hang` is set, and with `sticky` a failed flush is reported by `health`.
    #[derive(Default)]
    struct Flaky {
        mem: MemStore,
        fail: AtomicU64,
        sticky: bool,
        failed: AtomicBool,
        hang_flush: std::sync::Mutex<bool>,
        hang_apply: AtomicBool,
        released: std::sync::Condvar,
    }

    impl Flaky {
        fn wait_while_hung(&self) {
            let mut hung = self.hang_flush.lock().unwrap();
            while *hung {
                hung = self.released.wait(hung).unwrap();
            }
        }

        fn release(&self) {
            *self.hang_flush.lock().unwrap() = false;
            self.released.notify_all();
        }

        fn full() -> StoreError {
            StoreError::DiskFull {
                dir: "(test)".into(),
                detail: "No space left on device (os error 28) (simulated)".into(),
            }
        }
    }

    impl Store for Flaky {
        fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.mem.get(space, key)
        }
        fn scan(&self, space: Space, prefix: &[u8]) -> Result<super::super::Entries, StoreError> {
            self.mem.scan(space, prefix)
        }
        fn apply(&self, batch: Batch) -> Result<(), StoreError> {
            while self.hang_apply.load(SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.mem.apply(batch)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.wait_while_hung();
            if self
                .fail
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                self.failed.store(true, SeqCst);
                return Err(Self::full());
            }
            self.mem.flush()
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            self.mem.size_on_disk()
        }
        fn health(&self) -> Result<(), StoreError> {
            if self.sticky && self.failed.load(SeqCst) {
                Err(Self::full())
            } else {
                Ok(())
            }
        }
    }

    const BOUND: Duration = Duration::from_millis(300);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_that_fails_fails_every_waiter_and_the_next_one_succeeds() {
        let store = Arc::new(Flaky::default());
        // A generous bound: this test holds a flush on purpose and must not trip the stall
        // watchdog on a loaded machine.
        let d = Arc::new(Durable::with_bound(
            Arc::clone(&store),
            Duration::from_secs(5),
        ));
        d.commit(put("before")).await.unwrap();
        // Hold the flusher, queue several commits, then fail their rounds.
        *store.hang_flush.lock().unwrap() = true;
        let first = {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.commit(put("first")).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Two failed rounds: the one `first` waits in, and the next, which the waiters queue
        // for (a waiter that looks only after a later round succeeded is durable, and told so).
        store.fail.store(2, SeqCst);
        let waiters: Vec<_> = (0..5)
            .map(|i| {
                let d = Arc::clone(&d);
                tokio::spawn(async move { d.commit(put(&format!("w{i}"))).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        store.release();
        let mut failed = 0;
        for w in std::iter::once(first).chain(waiters) {
            if let Err(e) = w.await.unwrap() {
                assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");
                failed += 1;
            }
        }
        assert!(failed >= 1, "the failed round failed its waiters");
        // Transient: the store is not stopped, the next round succeeds and covers the rest.
        d.admit().unwrap();
        d.commit(put("after")).await.unwrap();
        store.mem.crash();
        assert!(store.mem.get(Space::Outbox, b"after").unwrap().is_some());
        assert!(store.mem.get(Space::Outbox, b"w4").unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sticky_failure_stops_the_store_and_fails_later_commits_at_once() {
        let store = Arc::new(Flaky {
            sticky: true,
            ..Flaky::default()
        });
        let d = Durable::with_bound(Arc::clone(&store), BOUND);
        d.commit(put("ok")).await.unwrap();
        store.fail.store(1, SeqCst);
        let e = d.commit(put("fails")).await.unwrap_err();
        assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");
        let stopped = tokio::time::timeout(BOUND, d.stopped()).await.unwrap();
        assert!(
            matches!(stopped, StoreError::DiskFull { .. }),
            "{stopped:?}"
        );
        assert_eq!(stopped.exit_status(), 75);
        let msg = stopped.stop_message();
        assert!(
            msg.contains("is full") && msg.contains("nothing acknowledged was lost"),
            "{msg}"
        );
        // Even though the disk would take it now, nothing is written in this process any more.
        let start = std::time::Instant::now();
        assert!(d.commit(put("later")).await.is_err());
        assert!(d.admit().is_err());
        assert!(start.elapsed() < BOUND);
        assert_eq!(store.mem.get(Space::Outbox, b"later").unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_hung_flush_fails_every_waiter_within_the_bound_and_stops_the_store() {
        let store = Arc::new(Flaky::default());
        let d = Arc::new(Durable::with_bound(Arc::clone(&store), BOUND));
        d.commit(put("ok")).await.unwrap();
        *store.hang_flush.lock().unwrap() = true;
        let start = std::time::Instant::now();
        let waiters: Vec<_> = (0..8)
            .map(|i| {
                let d = Arc::clone(&d);
                tokio::spawn(async move { d.commit(put(&format!("w{i}"))).await })
            })
            .collect();
        for w in waiters {
            let e = w.await.unwrap().unwrap_err();
            assert!(matches!(e, StoreError::Stalled { .. }), "{e:?}");
            assert!(e.to_string().contains("nothing was acknowledged"), "{e}");
        }
        let took = start.elapsed();
        assert!(took < BOUND * 3, "waiters failed after {took:?}");
        let stopped = tokio::time::timeout(BOUND, d.stopped()).await.unwrap();
        assert!(matches!(stopped, StoreError::Stalled { .. }), "{stopped:?}");
        assert_eq!(stopped.exit_status(), 74);
        assert!(matches!(
            d.commit(Batch::new()).await,
            Err(StoreError::Stalled { .. })
        ));
        store.release();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_apply_fails_its_commit_within_the_bound() {
        let store = Arc::new(Flaky::default());
        let d = Durable::with_bound(Arc::clone(&store), BOUND);
        store.hang_apply.store(true, SeqCst);
        let start = std::time::Instant::now();
        let e = d.commit(put("stuck")).await.unwrap_err();
        assert!(matches!(e, StoreError::Stalled { .. }), "{e:?}");
        assert!(start.elapsed() < BOUND * 2);
        assert!(d.admit().is_err());
        store.hang_apply.store(false, SeqCst);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hung_flush_stops_the_store_even_while_the_runtime_is_blocked() {
        let store = Arc::new(Flaky::default());
        let d = Arc::new(Durable::with_bound(Arc::clone(&store), BOUND));
        *store.hang_flush.lock().unwrap() = true;
        let waiter = {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.commit(put("w")).await })
        };
        // Let the flusher start its round, then block the runtime's only thread.
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::thread::sleep(BOUND * 3);
        let e = d.admit().unwrap_err();
        assert!(matches!(e, StoreError::Stalled { .. }), "{e:?}");
        // `stopped` resolves without timers.
        let stopped = tokio::runtime::Handle::current().spawn(async move {
            let s = d.stopped().await;
            (s, waiter.await)
        });
        let (s, w) = stopped.await.unwrap();
        assert!(matches!(s, StoreError::Stalled { .. }), "{s:?}");
        assert!(matches!(w.unwrap(), Err(StoreError::Stalled { .. })));
        store.release();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sticky_failure_outside_commit_stops_the_store_too() {
        let store = Arc::new(Flaky {
            sticky: true,
            ..Flaky::default()
        });
        let d = Durable::with_bound(Arc::clone(&store), BOUND);
        d.commit(put("ok")).await.unwrap();
        // A write applied straight to the store (as the audit log does) failed for good.
        store.failed.store(true, SeqCst);
        let stopped = tokio::time::timeout(BOUND * 2, d.stopped())
            .await
            .expect("the watchdog stops the store");
        assert!(
            matches!(stopped, StoreError::DiskFull { .. }),
            "{stopped:?}"
        );
        assert!(d.commit(put("later")).await.is_err());
    }
}
