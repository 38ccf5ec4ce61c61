//! [`SledStore`]: the sled 0.34 backend. All spaces share sled's default tree under a one-byte
//! prefix, so a [`Batch`] becomes one `apply_batch` and is atomic across spaces.
//!
//! # How a flush reaches the disk
//! Upstream sled 0.34 writes each log buffer with `pwrite` and then
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`, and never calls `fsync`: the data reaches
//! the device's volatile cache, but the cache is not flushed and the file's metadata (its size,
//! newly allocated extents) is not committed. That survives a killed process, not a power cut or
//! a kernel crash. It also costs one device write per buffer, and sled seals a buffer for every
//! write batch: about six per envelope.
//!
//! The vendored sled (patch 5 in `vendor/sled/TSUNAGI-PATCHES.md`) writes buffers with `pwrite`
//! only. Its flush waits until everything up to the flush point is written, then calls
//! `fdatasync` once for all of it, and only then counts it as stable: in sled, stable is what
//! segment reuse and the segment headers read at recovery go by, so space is never reused on
//! the strength of data that is not durable. One `fdatasync` per group-commit round is then the
//! whole cost of durability.
//!
//! Page fragments too large for a log buffer (over 128 KiB: an envelope near the size limit) go
//! to files in `blobs/`, which upstream sled writes without any sync at all. The vendored sled
//! (patch 9) `fsync`s each blob file and the `blobs/` directory before the log entry that points
//! at it is filled in, so no flush can make durable an entry whose blob the disk may not hold.
//! At its first open by this version, a store's blob files that an earlier version may have
//! left unsynced are synced once (`sync_blobs_of_earlier_versions`).
//!
//! # Reclaiming space
//! sled appends every change to its log and rewrites a leaf whole when it consolidates or splits
//! it, so the log holds dead copies of pages. Upstream reclaims a segment whose live share has
//! fallen to half by rewriting its remaining pages elsewhere, but only from its periodic flush
//! thread, which a database opened with `flush_every_ms(None)` (ours, see [`SledStore`]) does
//! not have: such a database reused only segments that died entirely, and its file grew to
//! several times its live data. The vendored sled exposes that step and drains a segment once
//! at most 70 % of it is live (patch 7), and [`SledStore`] runs the step on a thread of its own
//! (`store-gc`) after each flush, for at most [`GC_ROUND`] per round. A rewritten page is an ordinary log write: it is durable at the next
//! flush, and the segment it leaves is reused only once that flush is done (patch 5).
//!
//! # A failed write is sticky
//! sled 0.34 keeps the first I/O error of a log write (a full disk: `ENOSPC`) as a global error
//! and returns it from every later write and flush until the database is reopened, even once
//! space is free again; a failed `fsync` leaves the page cache in an unknown state too. So after
//! any failed apply or flush, [`Store::health`] returns that error, [`Durable`](super::Durable)
//! stops, and the gateway exits to be restarted. The reopen recovers the log as after a crash:
//! everything acknowledged was flushed first, so it is all there.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{Batch, Entries, Entry, Space, Store, StoreError};

/// The sled-backed [`Store`].
///
/// Settings, and why:
/// - `cache_capacity` is the caller's (sled's default is 1 GiB, too much for the small servers
///   agencies run, so the size is always chosen explicitly);
/// - `flush_every_ms(None)`: sled's own 500 ms background fsync is switched off. Durability comes
///   only from [`Store::flush`], driven by [`Durable`](super::Durable)'s group commit, so the fsync
///   count is ours to measure and a missing flush shows up in the crash tests instead of being
///   papered over by a timer;
/// - `Mode::LowSpace` (sled's default, stated explicitly; sled 0.34 does not read the mode at
///   all); compression stays off (sealed data does not compress);
/// - [`Store::flush`] is sled's flush, which the vendored sled ends with one `fdatasync` (see
///   the [module docs](self)).
pub struct SledStore {
    db: sled::Db,
    dir: PathBuf,
    /// The first error of a failed apply or flush: sled will not write again (module docs).
    poisoned: Arc<Mutex<Option<StoreError>>>,
    /// The garbage collector's thread (module docs), stopped and joined on drop.
    collector: Collector,
    /// Applies hold it shared; [`Store::export`] holds it exclusively, so that its pass over
    /// the tree sees no batch half-applied (sled 0.34 iterators are not snapshots).
    barrier: RwLock<()>,
}

impl SledStore {
    /// Opens (or creates, mode 0700) the store in `dir` with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io(dir, &e))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| StoreError::sled(dir, e))?;
        // The log file and the blob directory are new on first open: make their names durable.
        sync_dir(dir)?;
        let poisoned = Arc::new(Mutex::new(None));
        let collector = Collector::start(db.clone(), dir, Arc::clone(&poisoned))?;
        let store = SledStore {
            db,
            dir: dir.to_path_buf(),
            poisoned,
            collector,
            barrier: RwLock::new(()),
        };
        sync_blobs_of_earlier_versions(dir)?;
        Ok(store)
    }

    fn err(&self, e: sled::Error) -> StoreError {
        StoreError::sled(&self.dir, e)
    }

    /// Remembers the first failed write (see the module docs) and passes the result on.
    fn poison_on_err(&self, r: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Err(e) = &r {
            poison(&self.poisoned, e);
        }
        r
    }
}

/// Records `e` as the store's sticky error unless one is recorded already.
fn poison(poisoned: &Mutex<Option<StoreError>>, e: &StoreError) {
    let mut p = poisoned.lock().unwrap_or_else(|e| e.into_inner());
    if p.is_none() {
        *p = Some(e.clone());
    }
}

/// The longest a garbage-collection round runs before it waits for the next flush: it shares
/// two cores with the commits it follows.
pub const GC_ROUND: Duration = Duration::from_millis(2);

/// The `store-gc` thread (module docs): after each flush it rewrites the pages that keep
/// mostly dead segments alive, for up to [`GC_ROUND`].
struct Collector {
    signal: Arc<(Mutex<CollectorWake>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct CollectorWake {
    /// A flush happened since the last round.
    flushed: bool,
    /// The store is being dropped.
    stop: bool,
}

impl Collector {
    fn start(
        db: sled::Db,
        dir: &Path,
        poisoned: Arc<Mutex<Option<StoreError>>>,
    ) -> Result<Self, StoreError> {
        let signal = Arc::new((Mutex::new(CollectorWake::default()), Condvar::new()));
        let theirs = Arc::clone(&signal);
        let at = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("store-gc".into())
            .spawn(move || Self::run(&db, &at, &poisoned, &theirs))
            .map_err(|e| StoreError::io(dir, &e))?;
        Ok(Collector {
            signal,
            thread: Some(thread),
        })
    }

    fn run(
        db: &sled::Db,
        dir: &Path,
        poisoned: &Mutex<Option<StoreError>>,
        signal: &(Mutex<CollectorWake>, Condvar),
    ) {
        let (wake, cv) = signal;
        loop {
            {
                let mut w = wake.lock().unwrap_or_else(|e| e.into_inner());
                while !w.flushed && !w.stop {
                    w = cv.wait(w).unwrap_or_else(|e| e.into_inner());
                }
                if w.stop {
                    return;
                }
                w.flushed = false;
            }
            let started = Instant::now();
            loop {
                match db.collect_garbage_step() {
                    Ok(true) if started.elapsed() < GC_ROUND => {}
                    Ok(_) => break,
                    Err(e) => {
                        // sled keeps a failed log write as its global error: the next apply or
                        // flush fails too, and the store stops there.
                        poison(poisoned, &StoreError::sled(dir, e));
                        return;
                    }
                }
            }
        }
    }

    fn after_flush(&self) {
        let (wake, cv) = &*self.signal;
        wake.lock().unwrap_or_else(|e| e.into_inner()).flushed = true;
        cv.notify_one();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let (wake, cv) = &*self.signal;
        wake.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Store for SledStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.db.get(space.key(key)).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn scan(&self, space: Space, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.db
            .scan_prefix(space.key(prefix))
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                Ok((k[1..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn scan_each(
        &self,
        space: Space,
        prefix: &[u8],
        f: &mut super::EachEntry<'_>,
    ) -> Result<(), StoreError> {
        for kv in self.db.scan_prefix(space.key(prefix)) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            f(&k[1..], &v)?;
        }
        Ok(())
    }

    fn last(&self, space: Space, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        match self.db.scan_prefix(space.key(prefix)).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                Ok(Some((k[1..].to_vec(), v.to_vec())))
            }
        }
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.into_prefixed() {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        let r = {
            let _shared = self.barrier.read().unwrap_or_else(|e| e.into_inner());
            self.db.apply_batch(b).map_err(|e| self.err(e))
        };
        self.poison_on_err(r)
    }

    fn export(&self) -> Result<Entries, StoreError> {
        let _exclusive = self.barrier.write().unwrap_or_else(|e| e.into_inner());
        self.db
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        // sled's flush ends with the log's `fdatasync`; blob files were synced as they were
        // written (see the module docs).
        let r = self.db.flush().map(drop).map_err(|e| self.err(e));
        if r.is_ok() {
            self.collector.after_flush();
        }
        self.poison_on_err(r)
    }

    fn health(&self) -> Result<(), StoreError> {
        match &*self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(|e| self.err(e))
    }
}

/// The marker that every blob file in the store is durable: `all` in `blobs.synced`.
const BLOBS_SYNCED: &str = "all";

/// Makes durable the blob files a store may hold unsynced from before sled synced each one as
/// it wrote it (patch 9), once: earlier versions synced them at each flush and recorded the
/// newest synced in `blobs.synced`, so a process that stopped between a blob's write and the
/// next flush left one unsynced. The pass ends by writing [`BLOBS_SYNCED`] to the marker, and
/// a store whose marker says so (every store this version has opened) is not listed again:
/// a large store holds hundreds of blobs, and syncing each at every start made a restart take
/// seconds. A marker lost or unreadable only means the pass runs again.
fn sync_blobs_of_earlier_versions(dir: &Path) -> Result<(), StoreError> {
    let marker = dir.join("blobs.synced");
    let said = std::fs::read_to_string(&marker).unwrap_or_default();
    if said.trim() == BLOBS_SYNCED {
        return Ok(());
    }
    // What an earlier version recorded: the blobs up to this LSN were synced.
    let upto = said.trim().parse::<u64>().ok();
    let blobs = dir.join("blobs");
    let entries = match std::fs::read_dir(&blobs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&blobs, &e)),
    };
    let mut any = false;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&blobs, &e))?;
        let Some(lsn) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if upto.is_some_and(|upto| lsn <= upto) {
            continue;
        }
        match File::open(entry.path()) {
            Ok(f) => f.sync_all().map_err(|e| StoreError::io(&blobs, &e))?,
            // sled removed it meanwhile: nothing to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&blobs, &e)),
        }
        any = true;
    }
    if any {
        sync_dir(&blobs)?;
    }
    // Best effort, as the docs above say: a store that cannot take the marker (a full disk)
    // still opens, and the pass runs again at the next open.
    let tmp = dir.join("blobs.synced.tmp");
    if std::fs::write(&tmp, BLOBS_SYNCED).is_ok() {
        let _ = std::fs::rename(&tmp, &marker);
    }
    Ok(())
}

/// `fsync` of a directory, so that the names in it are durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, &e))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    use super::*;
    use crate::store::testutil::TempDir;
    use crate::store::Durable;

    #[test]
    fn export_never_sees_half_a_batch_while_applies_run() {
        let dir = TempDir::new("export");
        let store = Arc::new(SledStore::open(dir.path(), 1 << 20).unwrap());
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0u32..2000 {
                    // Each batch writes one key in two spaces: a view has both or neither.
                    let mut b = Batch::new();
                    b.put(Space::Outbox, i.to_be_bytes(), b"x");
                    b.put(Space::Meta, i.to_be_bytes(), b"y");
                    store.apply(b).unwrap();
                }
            })
        };
        let mut views = 0;
        while !writer.is_finished() || views == 0 {
            let all = store.export().unwrap();
            let count = |s: Space| all.iter().filter(|(k, _)| k[0] == s.tag()).count();
            assert_eq!(count(Space::Outbox), count(Space::Meta), "half a batch");
            views += 1;
        }
        writer.join().unwrap();
        assert_eq!(store.export().unwrap().len(), 4000);
    }

    #[test]
    fn a_value_written_as_a_blob_is_on_disk_when_its_batch_returns_and_after_a_reopen() {
        // sled patch 9: a page fragment over 128 KiB goes to a file in `blobs/`, which sled
        // writes (and syncs, with its directory) before the log entry pointing at it, so the
        // file is complete when the batch returns, and the flush needs no pass over the blobs.
        let dir = TempDir::new("blobs");
        let blob_files = || -> std::collections::BTreeSet<u64> {
            std::fs::read_dir(dir.path().join("blobs"))
                .unwrap()
                .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
                .collect()
        };
        {
            let store = SledStore::open(dir.path(), MB).unwrap();
            let mut b = Batch::new();
            b.put(Space::Outbox, b"small", vec![1u8; 100]);
            store.apply(b).unwrap();
            assert!(blob_files().is_empty(), "a small value stays in the log");

            let mut b = Batch::new();
            b.put(Space::Outbox, b"large", vec![7u8; 200 * 1024]);
            store.apply(b).unwrap();
            let files = blob_files();
            assert_eq!(files.len(), 1, "a 200 KiB value is written as one blob");
            let path = dir
                .path()
                .join("blobs")
                .join(files.first().unwrap().to_string());
            let on_disk = std::fs::metadata(&path).unwrap().len();
            assert!(
                on_disk > 200 * 1024,
                "the blob is complete: {on_disk} bytes"
            );
            store.flush().unwrap();
        }
        let marker = dir.path().join("blobs.synced");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), BLOBS_SYNCED);
        // A store last written by an earlier version, which synced blobs at flushes and
        // recorded the newest synced: its blobs after that one are synced at the next open,
        // once, and the marker then says that every blob is durable.
        std::fs::write(&marker, "0").unwrap();
        let store = SledStore::open(dir.path(), MB).unwrap();
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), BLOBS_SYNCED);
        assert_eq!(
            store.get(Space::Outbox, b"large").unwrap(),
            Some(vec![7u8; 200 * 1024])
        );
        assert_eq!(
            store.get(Space::Outbox, b"small").unwrap(),
            Some(vec![1u8; 100])
        );
    }

    #[test]
    fn flushes_on_another_thread_neither_stop_applies_nor_lose_them() {
        // sled patch 8: a flush holds sled's concurrency control only to read the log position
        // it makes durable, so write batches (and the reads queued behind them) run during
        // its fdatasync. Two stores in one process, each flushed in a loop by its own thread
        // while batches are applied and read back: every batch is seen at once, and every
        // batch a flush that began after it covered is there after a reopen.
        let dirs = [TempDir::new("flush-a"), TempDir::new("flush-b")];
        let stores: Vec<_> = dirs
            .iter()
            .map(|d| Arc::new(SledStore::open(d.path(), MB).unwrap()))
            .collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flushers: Vec<_> = stores
            .iter()
            .map(|s| {
                let (s, stop) = (Arc::clone(s), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut n = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        s.flush().unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for i in 0u32..1500 {
            for s in &stores {
                let mut b = Batch::new();
                b.put(Space::Outbox, i.to_be_bytes(), vec![1u8; 512]);
                b.put(Space::Meta, i.to_be_bytes(), b"m");
                s.apply(b).unwrap();
                assert_eq!(
                    s.get(Space::Meta, &i.to_be_bytes()).unwrap().as_deref(),
                    Some(&b"m"[..])
                );
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for f in flushers {
            assert!(f.join().unwrap() > 0, "a flusher never ran");
        }
        for s in &stores {
            s.flush().unwrap();
        }
        drop(stores);
        for d in &dirs {
            let s = SledStore::open(d.path(), MB).unwrap();
            assert_eq!(s.scan(Space::Outbox, b"").unwrap().len(), 1500);
            assert_eq!(s.scan(Space::Meta, b"").unwrap().len(), 1500);
        }
    }

    const MB: u64 = 1 << 20;
    const CHILD_ENV: &str = "TSUNAGI_STORE_CHILD";

    #[test]
    fn apply_get_scan_round_trip_and_atomic_batch_across_spaces() {
        let dir = TempDir::new("roundtrip");
        let s = SledStore::open(dir.path(), 8 * MB).unwrap();
        let mut b = Batch::new();
        b.put(Space::Outbox, "m1", "env1");
        b.put(Space::Outbox, "m2", "env2");
        b.put(Space::Inbox, "m1", "other space, same key");
        b.put(Space::Meta, "tmp", "x");
        b.delete(Space::Meta, "tmp");
        b.put(Space::Cases, "c1", "v1");
        b.put(Space::Cases, "c1", "v2");
        s.apply(b).unwrap();

        assert_eq!(s.get(Space::Outbox, b"m1").unwrap().unwrap(), b"env1");
        assert_eq!(
            s.get(Space::Inbox, b"m1").unwrap().unwrap(),
            b"other space, same key"
        );
        assert_eq!(
            s.get(Space::Meta, b"tmp").unwrap(),
            None,
            "later delete wins"
        );
        assert_eq!(
            s.get(Space::Cases, b"c1").unwrap().unwrap(),
            b"v2",
            "later put wins"
        );
        assert_eq!(s.get(Space::Seen, b"m1").unwrap(), None);
        let outbox = s.scan(Space::Outbox, b"").unwrap();
        assert_eq!(
            outbox,
            vec![
                (b"m1".to_vec(), b"env1".to_vec()),
                (b"m2".to_vec(), b"env2".to_vec())
            ]
        );
        assert_eq!(s.scan(Space::Outbox, b"m2").unwrap().len(), 1);
        assert_eq!(
            s.scan(Space::Inbox, b"").unwrap().len(),
            1,
            "spaces do not leak"
        );

        // One batch moving a message between spaces: never in both, never in neither.
        let mut b = Batch::new();
        b.delete(Space::Outbox, "m1");
        b.put(Space::Seen, "m1", "receipt");
        s.apply(b).unwrap();
        assert_eq!(s.get(Space::Outbox, b"m1").unwrap(), None);
        assert!(s.get(Space::Seen, b"m1").unwrap().is_some());
        s.flush().unwrap();
        assert!(s.size_on_disk().unwrap() > 0);
    }

    #[test]
    fn reopen_after_drop_sees_flushed_data_and_a_second_open_is_refused() {
        let dir = TempDir::new("reopen");
        {
            let s = SledStore::open(dir.path(), MB).unwrap();
            let mut b = Batch::new();
            b.put(Space::Consents, "k", "v");
            s.apply(b).unwrap();
            s.flush().unwrap();
            let again = SledStore::open(dir.path(), MB)
                .err()
                .expect("the lock is held");
            assert!(matches!(again, StoreError::Locked { .. }), "{again}");
        }
        // sled's thread pool may hold the log for a moment after the drop.
        let s = reopen(dir.path());
        assert_eq!(s.get(Space::Consents, b"k").unwrap().unwrap(), b"v");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_shares_flushes_and_everything_survives_reopen() {
        let dir = TempDir::new("group");
        {
            let durable = Arc::new(Durable::new(Arc::new(
                SledStore::open(dir.path(), 8 * MB).unwrap(),
            )));
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let d = Arc::clone(&durable);
                    tokio::spawn(async move {
                        let mut b = Batch::new();
                        b.put(Space::Outbox, format!("k{i:03}"), format!("v{i}"));
                        d.commit(b).await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let flushes = durable.flush_count();
            assert!(
                flushes > 0 && flushes < 200,
                "{flushes} flushes for 200 commits"
            );
        }
        // Dropping the Durable waits for its flusher thread to release the store.
        let s = reopen(dir.path());
        assert_eq!(s.scan(Space::Outbox, b"k").unwrap().len(), 200);
    }

    /// Opens the store, waiting briefly for a dropped handle's background task to let go.
    fn reopen(dir: &Path) -> SledStore {
        for _ in 0..100 {
            match SledStore::open(dir, 8 * MB) {
                Err(StoreError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
        panic!("{} stayed locked", dir.display())
    }

    /// Child mode of the kill -9 test: commits pairs of keys from several tasks forever and
    /// prints `ACK key` only after `commit` returned. Does nothing in a normal test run.
    #[test]
    fn child_writer() {
        let Some(dir) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let store = SledStore::open(Path::new(&dir), 8 * MB).unwrap();
            let durable = Arc::new(Durable::new(Arc::new(store)));
            let writers: Vec<_> = (0..8)
                .map(|w| {
                    let d = Arc::clone(&durable);
                    tokio::spawn(async move {
                        for i in 0u64.. {
                            let key = format!("w{w}-{i:08}");
                            let mut b = Batch::new();
                            b.put(Space::Outbox, &key, key.repeat(20));
                            b.put(Space::Meta, &key, "pair");
                            // One key per writer overwritten with 3 KiB each time: the
                            // garbage collector has dead pages to reclaim when the kill comes.
                            b.put(
                                Space::Outbox,
                                format!("c{w}"),
                                format!("{i:08}").repeat(400),
                            );
                            d.commit(b).await.unwrap();
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "ACK {key}").unwrap();
                            out.flush().unwrap();
                        }
                    })
                })
                .collect();
            for w in writers {
                w.await.unwrap();
            }
        });
    }

    /// Child mode of the cache test: opens the store in `TSUNAGI_STORE_READER` with a 1 MiB cache,
    /// reads every entry, and prints the growth of its resident memory in KiB. Does nothing in a
    /// normal test run.
    #[test]
    fn child_reader() {
        let Some(dir) = std::env::var_os("TSUNAGI_STORE_READER") else {
            return;
        };
        let rss_kib = || -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap()
        };
        let store = SledStore::open(Path::new(&dir), MB).unwrap();
        let before = rss_kib();
        let mut bytes = 0;
        store
            .scan_each(Space::Outbox, b"", &mut |k, v| {
                bytes += k.len() + v.len();
                Ok(())
            })
            .unwrap();
        assert!(bytes > 30_000_000, "read {bytes} bytes");
        println!("\nGROWTH {}", rss_kib().saturating_sub(before));
    }

    /// sled 0.34 queued 64 page accesses in each of 256 shards before its cache evicted
    /// anything, so reading a store pulled up to 16,384 pages into memory whatever the cache
    /// size (vendor/sled/TSUNAGI-PATCHES.md). Reading 32 MB of entries through a 1 MiB cache
    /// now stays within a few MiB.
    #[test]
    fn reading_a_large_store_keeps_memory_near_the_cache_size() {
        let dir = TempDir::new("cache-bound");
        {
            let s = SledStore::open(dir.path(), MB).unwrap();
            for chunk in 0..32u32 {
                let mut b = Batch::new();
                for i in 0..1000u32 {
                    b.put(Space::Outbox, format!("{chunk:04}-{i:04}"), vec![7u8; 1000]);
                }
                s.apply(b).unwrap();
            }
            s.flush().unwrap();
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::sled_store::tests::child_reader",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TSUNAGI_STORE_READER", dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let growth: u64 = stdout
            .lines()
            .find_map(|l| l.split("GROWTH ").nth(1))
            .unwrap_or_else(|| panic!("the reader failed: {stdout}"))
            .parse()
            .unwrap();
        assert!(
            growth < 12 * 1024,
            "reading 32 MB through a 1 MiB cache grew the reader by {growth} KiB"
        );
    }

    /// The vendored sled counts data as stable (and reuses the space of what it replaced)
    /// only once a flush has `fdatasync`ed it (patch 5). Space must still be reused: writing
    /// 24 MB over the same 2 MB of keys, a flush after each batch as the gateway does, leaves
    /// the file at a few times the live data, not at everything ever written. Then a reopen
    /// reads the last version of every key.
    #[test]
    fn overwriting_with_flushes_reuses_space_and_a_reopen_reads_the_last_writes() {
        let dir = TempDir::new("reuse");
        {
            let s = SledStore::open(dir.path(), MB).unwrap();
            for round in 0..12u8 {
                for part in 0..8u32 {
                    let mut b = Batch::new();
                    for i in 0..128u32 {
                        b.put(Space::Outbox, format!("{part}-{i:04}"), vec![round; 2048]);
                    }
                    s.apply(b).unwrap();
                    s.flush().unwrap();
                }
            }
            let size = s.size_on_disk().unwrap();
            // Below 16 MiB, against 24 MB written. The file grows in 512 KiB segments and keeps
            // its high-water mark until its last segments are free: usually under 12 MiB, but
            // 12 MiB exactly on a loaded machine where the collector fell behind for a while.
            assert!(
                size < 16 * MB,
                "24 MB written over 2 MB of keys left {} MiB on disk",
                size / MB
            );
        }
        let s = SledStore::open(dir.path(), MB).unwrap();
        let all = s.scan(Space::Outbox, b"").unwrap();
        assert_eq!(all.len(), 8 * 128);
        assert!(all.iter().all(|(_, v)| v == &vec![11u8; 2048]));
    }

    #[test]
    fn appended_records_leave_a_file_near_their_live_size() {
        // Records appended in order, a few per flush, as the inbox receives envelopes: sled
        // writes each leaf again when it fills and splits, so without garbage collection the
        // file held about 1.8 times the live data.
        let dir = TempDir::new("append");
        let s = SledStore::open(dir.path(), MB).unwrap();
        let (records, size) = (4_000u32, 2048);
        for first in (0..records).step_by(8) {
            let mut b = Batch::new();
            for i in first..first + 8 {
                b.put(Space::Inbox, format!("e{i:08}"), vec![7u8; size]);
            }
            s.apply(b).unwrap();
            s.flush().unwrap();
        }
        let live = u64::from(records) * (size as u64 + 10);
        // 1.6 times the live data: a file grows in 512 KiB segments and shrinks only when its
        // last segments are free, so on a loaded machine, where the collector falls behind the
        // writes for a while, the file keeps a high-water mark of 24 segments (1.53 times the
        // live data) even once the collector has caught up. Without the collector it is 1.96.
        let bound = live * 8 / 5;
        // The collector runs after each flush, on its own thread: give it the flushes it
        // follows until it has caught up.
        let mut on_disk = s.size_on_disk().unwrap();
        for _ in 0..400 {
            if on_disk <= bound {
                break;
            }
            s.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(25));
            on_disk = s.size_on_disk().unwrap();
        }
        assert!(
            on_disk <= bound,
            "{} KiB on disk for {} KiB of records",
            on_disk / 1024,
            live / 1024
        );
        assert_eq!(s.scan(Space::Inbox, b"e").unwrap().len(), records as usize);
    }

    #[test]
    fn kill_9_loses_no_acknowledged_write_and_no_batch_is_torn() {
        let dir = TempDir::new("kill9");
        // The child's stderr goes to a file, shown if it stops before the kill.
        let logs = TempDir::new("kill9-log");
        let stderr_path = logs.path().join("child-stderr");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::sled_store::tests::child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            if let Some(key) = line.unwrap().strip_prefix("ACK ") {
                acked.push(key.to_owned());
                if acked.len() == 1000 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no sled flush-on-drop
        let status = child.wait().unwrap();
        assert_eq!(
            acked.len(),
            1000,
            "the child writer stopped early ({status}); its stderr:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );

        let s = SledStore::open(dir.path(), 8 * MB).unwrap();
        for key in &acked {
            let v = s.get(Space::Outbox, key.as_bytes()).unwrap();
            assert_eq!(
                v,
                Some(key.repeat(20).into_bytes()),
                "acknowledged {key} lost"
            );
        }
        let keys = |space| -> Vec<Vec<u8>> {
            s.scan(space, b"w")
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        let (outbox, meta) = (keys(Space::Outbox), keys(Space::Meta));
        assert!(outbox.len() >= acked.len());
        assert_eq!(outbox, meta, "a batch survived the crash in part");
        // Each writer's overwritten key holds the value of its last acknowledged commit or of a
        // later one, whole: no rewrite by the garbage collector brought back an older version.
        for w in 0..8 {
            let Some(last) = acked
                .iter()
                .filter_map(|k| k.strip_prefix(&format!("w{w}-")))
                .map(|i| i.parse::<u64>().unwrap())
                .max()
            else {
                continue;
            };
            let v = s.get(Space::Outbox, format!("c{w}").as_bytes()).unwrap();
            let v = String::from_utf8(v.expect("the overwritten key is gone")).unwrap();
            let i: u64 = v[..8].parse().unwrap();
            assert!(i >= last, "writer {w}: acknowledged {last}, found {i}");
            assert_eq!(v, format!("{i:08}").repeat(400), "writer {w}: torn value");
        }
    }

    /// A tmpfs of `size` mounted on `dir`, unmounted on drop; `None` (with the reason printed)
    /// where this process may not mount one (not root, no tmpfs).
    struct Tmpfs(PathBuf);

    impl Tmpfs {
        fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir)
                .output();
            match out {
                Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
                Ok(o) => {
                    eprintln!(
                        "skipped: cannot mount a {size} tmpfs on {} (needs root): {}",
                        dir.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    );
                    None
                }
                Err(e) => {
                    eprintln!("skipped: cannot run mount: {e}");
                    None
                }
            }
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }

    /// What sled 0.34 really does when its disk fills up: the write fails with ENOSPC (no
    /// hang), the error stays after space is freed, and a reopen recovers with every
    /// acknowledged write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enospc_is_disk_full_sticky_until_reopen_and_loses_nothing_acknowledged() {
        let dir = TempDir::new("enospc");
        let Some(_mount) = Tmpfs::mount(dir.path(), "4m") else {
            return;
        };
        let db = dir.path().join("store");
        let store = Arc::new(SledStore::open(&db, 8 * MB).unwrap());
        let durable = Durable::with_bound(Arc::clone(&store), std::time::Duration::from_secs(10));
        // Leave about 1 MiB to the store.
        let filler = dir.path().join("filler");
        let free = fs2::available_space(dir.path()).unwrap();
        std::fs::write(&filler, vec![0u8; (free - MB) as usize]).unwrap();
        let mut acked = Vec::new();
        let err = loop {
            let key = format!("k{:05}", acked.len());
            let mut b = Batch::new();
            b.put(Space::Inbox, &key, key.repeat(2000));
            match durable.commit(b).await {
                Ok(()) => acked.push(key),
                Err(e) => break e,
            }
            assert!(acked.len() < 10_000, "the disk never filled up");
        };
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
        assert!(!acked.is_empty());
        assert!(store.health().is_err());
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), durable.stopped())
            .await
            .expect("the store stops");
        assert!(
            matches!(stopped, StoreError::DiskFull { .. }),
            "{stopped:?}"
        );

        // Space is back, but sled keeps its error: a write straight to the store still fails.
        std::fs::remove_file(&filler).unwrap();
        let mut b = Batch::new();
        b.put(Space::Inbox, "after", "x");
        let sticky = store.apply(b).and_then(|_| store.flush());
        assert!(sticky.is_err(), "sled 0.34 recovered in-process after all");
        assert!(durable.commit(Batch::new()).await.is_err());

        // A reopen (a restart of the gateway) recovers: everything acknowledged is there and new
        // writes are durable again.
        drop(durable);
        drop(store);
        let s = reopen(&db);
        for key in &acked {
            assert_eq!(
                s.get(Space::Inbox, key.as_bytes()).unwrap(),
                Some(key.repeat(2000).into_bytes()),
                "acknowledged {key} lost"
            );
        }
        let mut b = Batch::new();
        b.put(Space::Inbox, "after", "x");
        s.apply(b).unwrap();
        s.flush().unwrap();
    }
}
