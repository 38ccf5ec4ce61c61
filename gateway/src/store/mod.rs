//! The durable store: every byte the gateway keeps goes through here.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the [`Store`] trait, the [`Space`] keyspaces and the atomic [`Batch`] |
//! | `error.rs` | [`StoreError`]: what failed and what the operator should do |
//! | `sled_store.rs` | [`SledStore`], the sled 0.34 backend |
//! | `mem.rs` | [`MemStore`], in memory, for tests and fault injection (full disk, crash) |
//! | `durable.rs` | [`Durable`], group commit: the only way to get an acknowledgeable write; bounded waits, a stopped store |
//! | `schema.rs` | every key layout ([`Key`], [`Prefix`]) and the format version |
//! | `space.rs` | [`SpaceFloor`]: refuse new work while the data directory's disk is nearly full |
//! | `vault.rs` | encryption at rest: [`MasterKey`], [`Vault`], per-case [`CaseKey`]s |
//!
//! # The durability contract
//!
//! [`Store::apply`] makes a batch visible to readers, atomically across spaces, but **not
//! durable**: sled keeps it in memory buffers that a `kill -9` or a power cut loses.
//! [`Store::flush`] makes everything applied before the call durable. Code that acknowledges
//! anything (a submission from an adapter, a receipt to a peer) must first get `Ok` from
//! [`Durable::commit`], which applies the batch and returns only after a flush that *started
//! after the apply finished* has succeeded. Concurrent commits share flushes (group commit), so
//! the fsync cost is paid per round, not per write. An error means nothing was acknowledged;
//! the write may or may not survive, so callers retry with the same idempotent keys.
//!
//! Personal data is sealed with a per-case key ([`Vault::case_key`]) before it is put in a
//! batch; [`Vault::purge`] destroys the case key, so copies left in old sled segments are
//! unreadable.

mod durable;
mod error;
mod mem;
pub mod schema;
mod sled_store;
mod space;
mod vault;

pub use durable::{Durable, DEFAULT_BOUND, FLUSH_BUCKETS};
pub use error::StoreError;
pub use mem::MemStore;
pub use schema::{Key, Prefix, Read};
pub use sled_store::SledStore;
pub use space::SpaceFloor;
pub use vault::{CaseKey, MasterKey, Vault};

/// A logical keyspace. All spaces live in one sled tree under a one-byte prefix, so one batch is
/// atomic across spaces. The prefix bytes are part of the on-disk format: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Envelopes waiting to be delivered, with their delivery state.
    Outbox,
    /// Received envelopes waiting to be handed to the local adapters.
    Inbox,
    /// Message ids already received, with the receipt sent (replay detection).
    Seen,
    /// Consent records, by id and version.
    Consents,
    /// Per-case data.
    Cases,
    /// Per-case keys, wrapped by the master key (see [`Vault`]).
    CaseKeys,
    /// Gateway bookkeeping (format version, counters).
    Meta,
}

impl Space {
    /// Every space, in prefix order.
    pub const ALL: [Space; 7] = [
        Space::Outbox,
        Space::Inbox,
        Space::Seen,
        Space::Consents,
        Space::Cases,
        Space::CaseKeys,
        Space::Meta,
    ];

    /// The one-byte key prefix of this space on disk.
    pub fn tag(self) -> u8 {
        match self {
            Space::Outbox => 1,
            Space::Inbox => 2,
            Space::Seen => 3,
            Space::Consents => 4,
            Space::Cases => 5,
            Space::CaseKeys => 6,
            Space::Meta => 7,
        }
    }

    /// The space whose on-disk prefix byte is `tag` (see [`Space::tag`]).
    pub fn from_tag(tag: u8) -> Option<Space> {
        Space::ALL.into_iter().find(|s| s.tag() == tag)
    }

    /// `tag || key`: the key as stored.
    pub(crate) fn key(self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + key.len());
        k.push(self.tag());
        k.extend_from_slice(key);
        k
    }
}

/// An ordered list of puts and deletes, across spaces, applied atomically by [`Store::apply`].
/// When one batch touches the same key twice, the last operation wins.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// `(space, key, Some(value))` for a put, `(space, key, None)` for a delete.
    ops: Vec<(Space, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` in `space` to `value`.
    pub fn put(&mut self, space: Space, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .push((space, key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    /// Removes `key` from `space` (no error if it is absent).
    pub fn delete(&mut self, space: Space, key: impl AsRef<[u8]>) {
        self.ops.push((space, key.as_ref().to_vec(), None));
    }

    /// Appends every operation of `other` after this batch's own.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values the batch writes (its logical size; deletes count their key).
    pub fn logical_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|(_, k, v)| (1 + k.len() + v.as_ref().map_or(0, Vec::len)) as u64)
            .sum()
    }

    /// The operations with their space-prefixed keys, in order.
    fn into_prefixed(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.ops.into_iter().map(|(s, k, v)| (s.key(&k), v))
    }
}

/// `(key, value)` pairs in key order, keys without their space prefix: what [`Store::scan`]
/// returns.
pub type Entries = Vec<Entry>;

/// One `(key, value)`.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What [`Store::scan_each`] calls with each `(key, value)`.
pub type EachEntry<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// A durable, ordered key-value store with atomic batches. See the [module docs](self) for the
/// durability contract; use it through [`Durable`] for anything that will be acknowledged.
///
/// Methods block on disk I/O: from async code call them on a blocking thread (as [`Durable`]
/// does: applies on tokio's blocking pool, flushes on its own thread) or accept a short stall
/// for reads.
pub trait Store: Send + Sync + 'static {
    /// The value of `key` in `space`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every `(key, value)` of `space` whose key starts with `prefix`, in key order. Keys are
    /// returned without the space prefix.
    fn scan(&self, space: Space, prefix: &[u8]) -> Result<Entries, StoreError>;
    /// Calls `f` with each `(key, value)` under `prefix` in `space`, in key order; a store that
    /// can stream overrides it so that a large space is never held in memory at once.
    fn scan_each(
        &self,
        space: Space,
        prefix: &[u8],
        f: &mut EachEntry<'_>,
    ) -> Result<(), StoreError> {
        for (k, v) in self.scan(space, prefix)? {
            f(&k, &v)?;
        }
        Ok(())
    }
    /// The last `(key, value)` under `prefix` in `space` (the greatest key), if any; a store
    /// that can seek overrides it so that nothing before it is read.
    fn last(&self, space: Space, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        let mut last = None;
        self.scan_each(space, prefix, &mut |k, v| {
            last = Some((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(last)
    }
    /// Applies `batch` atomically: readers and crash recovery see all of it or none of it. Not
    /// durable until a later [`flush`](Store::flush) returns.
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;
    /// Blocks until everything applied before the call is on disk.
    fn flush(&self) -> Result<(), StoreError>;
    /// Bytes the store occupies on disk (for the benchmark).
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// `Err` once the store cannot write again in this process, whatever the disk does next:
    /// a backend whose write errors are sticky returns the error here after a failed write, and
    /// [`Durable`] then stops (the gateway exits; a restart reopens the store). The default,
    /// for a backend that retries each write afresh, is always `Ok`.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every record of every space as `(tag || key, value)`, in key order: the state between
    /// two applies, never half of a batch (a backup). Not necessarily durable yet: flush after
    /// it. The default scans space by space, which is atomic only when nothing applies
    /// meanwhile; the real backends override it with a barrier against [`Store::apply`].
    fn export(&self) -> Result<Entries, StoreError> {
        let mut all = Vec::new();
        for space in Space::ALL {
            for (k, v) in self.scan(space, b"")? {
                all.push((space.key(&k), v));
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir()
                .join(format!("tsunagi-store-{name}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
