//! The audit trail: an append-only, hash-chained log of every decision, with signed checkpoints.
//!
//! Every record is a JSON object `{seq, time, prev, event, …}` stored under its sequence number;
//! `prev` is the SHA-256 of the previous record's stored bytes (64 zeros for the first). Every
//! [`CHECKPOINT_EVERY`] records, and whenever [`AuditLog::checkpoint`] is called, the gateway
//! signs a checkpoint `{org, seq, hash, time}` (COSE_Sign1 of type [`TYP_CHECKPOINT`]) with its
//! document-signing key.
//!
//! [`verify`] recomputes the chain and finds any record that was modified (its hash no longer
//! matches the next record's `prev` or a checkpoint), inserted or removed (a break in the
//! sequence or in the chain: a removed record is named once, not every record after it), and
//! any checkpoint whose signature fails. Records after the last checkpoint are chained but not
//! yet signed; the report says how many.
//!
//! The gateway signs a checkpoint at every [`CHECKPOINT_EVERY`]-th record, also inside one large
//! batch, so it never leaves a longer run of records without one. [`verify`] therefore reports
//! a longer run — before the first checkpoint, between two, or after the last — as checkpoints
//! removed: without them, every record after the last one left could be rewritten and the chain
//! recomputed unnoticed. For the same reason a gateway that opens a store with such a run logs
//! it and signs no checkpoint over it (a signature would vouch for whatever was written there);
//! the run keeps growing and `verify` keeps reporting it.
//!
//! # The head file
//! After every durable commit the gateway writes the head of the chain (`seq`, hash) to a small
//! file beside the store ([`HeadFile`]). The file is written only after the records it names are
//! on disk, so the store always holds at least what it says; when it is lost in a crash it is
//! merely older. At start ([`HeadFile::check`]) a store whose chain is shorter than the head
//! file, or whose record at that position hashes differently, lost or changed data that was
//! durable — a corrupted or truncated store file (sled silently drops a log it cannot read
//! past) — and the gateway refuses to start, naming the file and what to do. Someone who also
//! deletes the head file is caught by the peers' witnesses instead.
//!
//! # Witnesses
//! Whoever controls the store can delete the newest records together with their checkpoints;
//! the shorter chain still verifies on its own. So the head is witnessed outside the store (see
//! [`tsunagi_protocol::checkpoint`]): every envelope and receipt carries the latest checkpoint
//! ([`AuditLog::current_checkpoint`] signs a fresh one when records were added since, at most
//! once a second), each gateway keeps the newest checkpoint it has seen from every peer
//! ([`keep_witness`]), and [`compare_with_witnesses`] checks the local trail against the
//! checkpoints the peers hand back: a witnessed record that is gone, or that hashes otherwise,
//! is named.
//!
//! # Order on disk
//! Records are chained in the order they are applied to the store: [`AuditLog::apply`] assigns
//! sequence numbers and applies the batch under one lock. sled's log makes durability
//! prefix-closed in apply order, so after a crash the durable chain is a prefix of what was
//! written — a crash never looks like tampering. A batch that fails to apply leaves the chain
//! as it was.
//!
//! Records carry case pseudonyms, org ids, document types and element names — never personal
//! data — so the trail can be kept after a case is purged (R8) and shown to the person (R9).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tsunagi_protocol::checkpoint::{Checkpoint, Witnessed};
use tsunagi_protocol::cose::{sha256, ChainVerifier, Signer};
use tsunagi_protocol::hex::encode as hex;
use tsunagi_protocol::{OrgId, Timestamp};

use crate::events::AuditEvent;
use crate::store::{Batch, Key, Prefix, Read, Space, Store, StoreError};

pub use tsunagi_protocol::checkpoint::TYP_CHECKPOINT;
/// A checkpoint is signed after this many records.
pub const CHECKPOINT_EVERY: u64 = 64;

/// The head of the chain as last known durable, in a file beside the store (module docs).
///
/// The file is rewritten in place, at a fixed length, after every durable commit: one `pwrite`
/// into the page cache. (Writing a new file and renaming it over the old one, as before, made
/// ext4 start write-back of the new file on every commit, which cost more kernel time than the
/// commit's own fsync.) The file is not synced; kill -9 loses nothing of it, a power cut may
/// leave an older head, which is only a weaker check. One write of 86 bytes at offset 0 lies in
/// one disk sector, which devices write whole.
pub struct HeadFile {
    path: std::path::PathBuf,
    state: Mutex<HeadState>,
}

struct HeadState {
    /// The head the file names.
    written: u64,
    /// The file, opened at the first write.
    file: Option<std::fs::File>,
}

/// The length of every head file this version writes: `count hash\n`, the count zero-padded.
const HEAD_LEN: u64 = 20 + 1 + 64 + 1;

impl HeadFile {
    /// The head file at `path`.
    pub fn new(path: std::path::PathBuf) -> Self {
        HeadFile {
            path,
            state: Mutex::new(HeadState {
                written: 0,
                file: None,
            }),
        }
    }

    /// Records the head `(next_seq, hash)` that an [`AuditLog::apply`] returned, once that apply
    /// is durable. (Not the log's current head: concurrent applies may not be durable yet.) Never
    /// moves back. A failure is logged, not returned: the file is a check, not a store.
    pub fn record(&self, (next_seq, hash): (u64, [u8; 32])) {
        use std::os::unix::fs::FileExt;
        let mut s = self.state.lock().expect("head file");
        if next_seq == 0 || s.written >= next_seq {
            return;
        }
        let text = format!("{next_seq:020} {}\n", hex(&hash));
        debug_assert_eq!(text.len() as u64, HEAD_LEN);
        let done = match &s.file {
            Some(file) => file.write_all_at(text.as_bytes(), 0),
            None => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)
                .and_then(|file| {
                    file.write_all_at(text.as_bytes(), 0)?;
                    // A head file of an older version (shorter) is covered; a longer one cut.
                    file.set_len(HEAD_LEN)?;
                    s.file = Some(file);
                    Ok(())
                }),
        };
        match done {
            Ok(()) => s.written = next_seq,
            Err(e) => tracing::warn!("cannot write {}: {e}", self.path.display()),
        }
    }

    /// The head the file names, as this process last wrote or read it.
    pub fn written(&self) -> u64 {
        self.state.lock().expect("head file").written
    }

    /// Checks the store's chain (`log`, just opened) against the head file: refuses a store that
    /// lost or changed records that were durable. `store_file` names the store in the error.
    pub fn check<S: Store>(
        &self,
        store: &S,
        log: &AuditLog,
        store_file: &std::path::Path,
    ) -> Result<(), StoreError> {
        let have = log.head.lock().expect("audit lock").next_seq;
        self.check_records(store, have, store_file)
    }

    /// [`Self::check`] for a store whose chain holds `have` records (as [`verify`] counts
    /// them), for the offline `audit verify` of a stopped gateway.
    pub fn check_records<S: Store>(
        &self,
        store: &S,
        have: u64,
        store_file: &std::path::Path,
    ) -> Result<(), StoreError> {
        let path = &self.path;
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(()); // a new gateway, or a head file lost: nothing to compare
        };
        let mut parts = text.split_whitespace();
        // The gateway never writes a head of 0 records (`record` skips it): such a file is not
        // one of ours, like one that does not parse.
        let (Some(n), Some(h)) = (
            parts
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0),
            parts.next(),
        ) else {
            return Err(StoreError::Corrupt {
                what: path.display().to_string(),
                detail: "not a head file (expected `count hash`, the count at least 1); remove it only if you are sure the store is intact"
                    .into(),
            });
        };
        let corrupt = |detail: String| StoreError::Corrupt {
            what: store_file.display().to_string(),
            detail,
        };
        if have < n {
            return Err(corrupt(format!(
                "it holds {have} audit records, but {n} were on disk before (see {}): records {have} to {} and everything written with them are gone, so the store file is damaged or truncated",
                path.display(),
                n - 1
            )));
        }
        let last = store.read(&Key::audit_record(n - 1))?;
        if last.map(|b| hex(&sha256(&b))).as_deref() != Some(h) {
            return Err(corrupt(format!(
                "audit record {} differs from the one on disk before (see {}): the store file is damaged",
                n - 1,
                path.display()
            )));
        }
        let mut s = self.state.lock().expect("head file");
        s.written = s.written.max(n);
        Ok(())
    }
}

/// Where records and checkpoints live (the layouts are the store schema's).
fn records_prefix() -> Vec<u8> {
    Prefix::audit_records().bytes
}

fn checkpoints_prefix() -> Vec<u8> {
    Prefix::audit_checkpoints().bytes
}

/// A checkpoint carried on the wire is signed anew at most this often (seconds).
const FRESH_CHECKPOINT_SECS: u64 = 1;

fn record_key(seq: u64) -> Vec<u8> {
    Key::audit_record(seq).bytes
}

fn checkpoint_key(seq: u64) -> Vec<u8> {
    Key::audit_checkpoint(seq).bytes
}

struct Head {
    next_seq: u64,
    last_hash: [u8; 32],
    last_checkpoint: u64,
    /// The newest signed checkpoint and when it was signed.
    latest: Option<(Vec<u8>, Timestamp)>,
}

impl Head {
    /// Whether more than [`CHECKPOINT_EVERY`] records follow the last checkpoint. Every apply
    /// leaves fewer unsigned (this version and earlier ones alike), so only a store whose
    /// checkpoints were deleted, its records perhaps rewritten, is in this state, and a fresh
    /// checkpoint would vouch for whatever is there: none is signed any more. The run keeps
    /// growing, and [`verify`] reports it (`AuditLog::open` logs it).
    fn unsigned_run_too_long(&self) -> bool {
        self.next_seq.saturating_sub(self.last_checkpoint) > CHECKPOINT_EVERY
    }
}

/// What [`AuditLog::current_checkpoint`] reads: a copy of the head's counters and newest
/// checkpoint, updated after each apply, so that envelopes and receipts being sealed do not
/// wait for the head's lock while an apply holds it (it is held across the store apply, which
/// keeps records in chain order).
struct Published {
    next_seq: u64,
    last_checkpoint: u64,
    latest: Option<(Vec<u8>, Timestamp)>,
}

impl Published {
    fn of(head: &Head) -> Self {
        Self {
            next_seq: head.next_seq,
            last_checkpoint: head.last_checkpoint,
            latest: head.latest.clone(),
        }
    }
}

/// The gateway's audit log.
pub struct AuditLog {
    org: OrgId,
    head: Mutex<Head>,
    published: Mutex<Published>,
}

impl AuditLog {
    /// Opens the log in `store`, continuing its chain.
    pub fn open<S: Store>(store: &S, org: OrgId) -> Result<Self, StoreError> {
        // Only the newest record matters: nothing before it is read (a long trail would make
        // every start slow and large).
        let (next_seq, last_hash) = match store.last(Space::Meta, &records_prefix())? {
            Some((k, v)) => (following(&k, "record")?, sha256(&v)),
            None => (0, [0; 32]),
        };
        let newest = store.last(Space::Meta, &checkpoints_prefix())?;
        let last_checkpoint = match &newest {
            Some((k, _)) => following(k, "checkpoint")?,
            None => 0,
        };
        if last_checkpoint > next_seq {
            // A checkpoint is applied after the records it covers, in order: one beyond the
            // newest record means records were removed from the end and it was left.
            return Err(StoreError::Corrupt {
                what: "the audit trail".into(),
                detail: format!(
                    "its newest signed checkpoint covers {last_checkpoint} records, but it holds {next_seq}: records {next_seq} to {} were removed from its end; restore the data directory from a backup, and compare with the peers' witnesses (`tsunagi audit verify --peers`)",
                    last_checkpoint - 1
                ),
            });
        }
        if next_seq.saturating_sub(last_checkpoint) > CHECKPOINT_EVERY {
            // Every version keeps fewer than CHECKPOINT_EVERY records unsigned between applies:
            // a longer run means checkpoints were deleted, and the records may be rewritten.
            // `apply` and `checkpoint` will not sign over it (see `unsigned_run_too_long`).
            tracing::error!(
                "the audit trail has {} records after its last signed checkpoint, although the gateway signs one every {CHECKPOINT_EVERY} records: checkpoints were removed from the store and the records may have been rewritten; no checkpoint will be signed over them — run `tsunagi audit verify --peers` and restore the data directory from a backup",
                next_seq - last_checkpoint
            );
        }
        let latest = newest.and_then(|(_, bytes)| {
            let time = Checkpoint::parse_unverified(&bytes).ok()?.time;
            Some((bytes, time))
        });
        let head = Head {
            next_seq,
            last_hash,
            last_checkpoint,
            latest,
        };
        Ok(Self {
            org,
            published: Mutex::new(Published::of(&head)),
            head: Mutex::new(head),
        })
    }

    /// Adds `events` (JSON objects with an `event` field) to `batch` as chained records and
    /// applies the batch to `store` in chain order. The caller then waits for durability (an
    /// empty `Durable::commit` is a barrier) before acknowledging anything. Returns the bytes
    /// applied and the head of the chain after this apply (`next_seq`, hash of its last record).
    pub fn apply<S: Store>(
        &self,
        store: &S,
        mut batch: Batch,
        events: Vec<AuditEvent>,
        now: Timestamp,
        signer: &Signer,
    ) -> Result<(u64, (u64, [u8; 32])), StoreError> {
        let mut head = self.head.lock().expect("audit lock");
        let (mut seq, mut hash, mut checkpointed) =
            (head.next_seq, head.last_hash, head.last_checkpoint);
        if seq.checked_add(events.len() as u64).is_none() {
            return Err(StoreError::Corrupt {
                what: "the audit trail".into(),
                detail: format!("it continues at record {seq}, so near the largest possible sequence number that no gateway gets there: a record was inserted into the store by hand"),
            });
        }
        let sign = !head.unsigned_run_too_long();
        let mut checkpoints = Vec::new();
        for event in events {
            // Infallible: every event serializes to a JSON object.
            let mut record = match serde_json::to_value(&event) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            record.insert("seq".into(), seq.into());
            record.insert("time".into(), now.0.into());
            record.insert("prev".into(), hex(&hash).into());
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            hash = sha256(&bytes);
            batch.put(Space::Meta, record_key(seq), bytes);
            seq += 1; // no overflow: checked above
                      // Every crossing is signed, also inside a large batch, so that no run of more than
                      // CHECKPOINT_EVERY records is ever unsigned: `verify` reports a longer one.
            if sign && seq.saturating_sub(checkpointed) >= CHECKPOINT_EVERY {
                checkpoints.push((seq - 1, hash));
                checkpointed = seq;
            }
        }
        let mut signed = None;
        for (at, at_hash) in checkpoints {
            let bytes = self.sign_checkpoint(at, &at_hash, now, signer);
            batch.put(Space::Meta, checkpoint_key(at), bytes.clone());
            signed = Some((bytes, now));
        }
        let applied = batch.logical_bytes();
        store.apply(batch)?;
        head.last_checkpoint = checkpointed;
        head.next_seq = seq;
        head.last_hash = hash;
        let mut published = self.published.lock().expect("audit lock");
        published.next_seq = seq;
        published.last_checkpoint = checkpointed;
        if signed.is_some() {
            head.latest = signed;
            published.latest = head.latest.clone();
        }
        Ok((applied, (seq, hash)))
    }

    /// The checkpoint to carry on an envelope or receipt: the latest one, signed anew (and
    /// applied to `store`, to become durable with the caller's next commit) when records were
    /// added since and it is older than a second. `None` while the trail is empty.
    pub fn current_checkpoint<S: Store>(
        &self,
        store: &S,
        now: Timestamp,
        signer: &Signer,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        {
            let p = self.published.lock().expect("audit lock");
            let stale = p.next_seq > p.last_checkpoint
                && p.latest
                    .as_ref()
                    .is_none_or(|(_, t)| now.0 >= t.0 + FRESH_CHECKPOINT_SECS);
            if !stale {
                return Ok(p.latest.as_ref().map(|(b, _)| b.clone()));
            }
        }
        self.checkpoint(store, now, signer)?;
        let p = self.published.lock().expect("audit lock");
        Ok(p.latest.as_ref().map(|(b, _)| b.clone()))
    }

    /// Signs a checkpoint over the latest record now (if any record is not yet covered).
    pub fn checkpoint<S: Store>(
        &self,
        store: &S,
        now: Timestamp,
        signer: &Signer,
    ) -> Result<bool, StoreError> {
        let mut head = self.head.lock().expect("audit lock");
        if head.next_seq == 0
            || head.next_seq == head.last_checkpoint
            || head.unsigned_run_too_long()
        {
            return Ok(false);
        }
        let at = head.next_seq - 1;
        let mut batch = Batch::new();
        let bytes = self.sign_checkpoint(at, &head.last_hash, now, signer);
        batch.put(Space::Meta, checkpoint_key(at), bytes.clone());
        store.apply(batch)?;
        head.last_checkpoint = head.next_seq;
        head.latest = Some((bytes, now));
        *self.published.lock().expect("audit lock") = Published::of(&head);
        Ok(true)
    }

    fn sign_checkpoint(
        &self,
        seq: u64,
        hash: &[u8; 32],
        now: Timestamp,
        signer: &Signer,
    ) -> Vec<u8> {
        Checkpoint {
            org: self.org.clone(),
            seq,
            hash: *hash,
            time: now,
        }
        .sign(signer)
    }
}

/// The sequence number after the audit record or checkpoint at `key` (0 for a key without
/// one). A store-level error when the key holds the largest sequence number: the gateway never
/// gets there (at a million records a second it would take 580,000 years), so the entry was
/// put there by hand, and counting on from it would wrap to record 0.
fn following(key: &[u8], what: &str) -> Result<u64, StoreError> {
    let Some(seq) = seq_of(key) else { return Ok(0) };
    seq.checked_add(1).ok_or_else(|| StoreError::Corrupt {
        what: format!("audit {what} {seq}"),
        detail: "it has the largest possible sequence number, which no gateway reaches: it was inserted into the store by hand, and no record can follow it".into(),
    })
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// Records in the chain.
    pub records: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// Records after the last checkpoint (chained, not yet signed).
    pub unsigned_tail: u64,
    /// Problems found, one line each; empty when the trail is intact.
    pub problems: Vec<String>,
    /// The restores from a backup the trail records, one line each, oldest first.
    pub restores: Vec<String>,
}

impl AuditReport {
    /// Whether the trail is intact.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Recomputes the chain and checks every checkpoint's signature (by `org`'s certificate, valid
/// when the checkpoint was signed).
pub fn verify<S: Store>(
    store: &S,
    org: &OrgId,
    trust: &dyn ChainVerifier,
    now: Timestamp,
) -> Result<AuditReport, StoreError> {
    let mut problems = vec![];
    let mut restores = vec![];
    // The hash and `time` of every record read, by sequence number: a record at a huge sequence
    // number costs one entry, not a table reaching up to it.
    let mut read: BTreeMap<u64, ([u8; 32], Option<u64>)> = BTreeMap::new();
    // The gaps in the sequence, as inclusive ranges.
    let mut removed: Vec<(u64, u64)> = Vec::new();
    let mut prev = [0u8; 32];
    let records = store.scan(Space::Meta, &records_prefix())?;
    let mut expected = 0u64;
    for (key, bytes) in &records {
        let Some(seq) = crate::store::schema::audit_seq(key) else {
            problems.push(format!(
                "an entry with a malformed key was inserted near record {expected}"
            ));
            continue;
        };
        let after_gap = seq > expected;
        if after_gap {
            problems.push(if seq == expected + 1 {
                format!("record {expected} is missing (removed)")
            } else {
                format!("records {expected} to {} are missing (removed)", seq - 1)
            });
            removed.push((expected, seq - 1));
        }
        // Keys come in sequence order, and none follows u64::MAX.
        expected = seq.saturating_add(1);
        let record: Option<Map<String, Value>> = serde_json::from_slice(bytes).ok();
        let mut time = None;
        match record {
            None => problems.push(format!("record {seq} is not readable (modified)")),
            Some(r) => {
                if r.get("seq").and_then(Value::as_u64) != Some(seq) {
                    problems.push(format!(
                        "record {seq} claims another sequence number (inserted or moved)"
                    ));
                }
                // After a gap the chain cannot match: the gap was reported above.
                if !after_gap && r.get("prev").and_then(Value::as_str) != Some(hex(&prev).as_str())
                {
                    problems.push(format!(
                        "record {seq} does not chain to the record before it (that record was modified, or one was inserted or removed)"
                    ));
                }
                time = r.get("time").and_then(Value::as_u64);
                if r.get("event").and_then(Value::as_str) == Some("restored") {
                    restores.push(restore_line(seq, &r));
                }
            }
        }
        prev = sha256(bytes);
        read.insert(seq, (prev, time));
    }
    let last = read.keys().next_back().copied();
    // `removed` is in order (and so are `explained` and `signed` below): binary searches.
    let is_removed = |seq: u64| {
        let i = removed.partition_point(|&(_, to)| to < seq);
        removed.get(i).is_some_and(|&(from, _)| from <= seq)
    };
    let mut checkpoints = 0;
    // The verified checkpoints, in order: the record each covers and when it was signed.
    let mut signed: Vec<(u64, u64)> = Vec::new();
    // Where a checkpoint was reported as a problem (or its record as removed): a run without
    // checkpoints around it is explained already.
    let mut explained: Vec<u64> = Vec::new();
    for (key, bytes) in store.scan(Space::Meta, &checkpoints_prefix())? {
        let Some(at) = seq_of(&key) else { continue };
        // A checkpoint is judged by the certificate that was valid when it was signed: years
        // later (retention) that certificate has expired, and the checkpoint is still genuine.
        let problem = match Checkpoint::verify(&bytes, trust) {
            Err(e) => Some(format!("checkpoint at record {at}: {e}")),
            Ok(c) if c.org != *org => Some(format!(
                "checkpoint at record {at} is signed by {}, not by {org}",
                c.org
            )),
            Ok(c) if c.seq != at => Some(format!("checkpoint at record {at} is malformed")),
            Ok(c) => match read.get(&c.seq) {
                Some((h, _)) if *h == c.hash => {
                    checkpoints += 1;
                    signed.push((c.seq, c.time.0));
                    continue;
                }
                Some(_) => Some(format!(
                    "record {} differs from what checkpoint {} signed (modified)",
                    c.seq, c.seq
                )),
                None if is_removed(c.seq) => None, // reported as removed above
                None => Some(format!(
                    "records up to {}, signed by a checkpoint, were removed",
                    c.seq
                )),
            },
        };
        problems.extend(problem);
        explained.push(at);
    }
    // Runs without a checkpoint. The gateway signs one at least every CHECKPOINT_EVERY records
    // (`AuditLog::apply`), so a longer run means checkpoints were deleted: without them, every
    // record after the last one left can be rewritten and the chain recomputed unnoticed.
    let explained_in = |from: u64, to: u64| {
        let i = explained.partition_point(|&at| at < from);
        explained.get(i).is_some_and(|&at| at <= to)
    };
    let mut after = None; // the record the previous verified checkpoint covers
    for &(at, time) in &signed {
        let first = after.map_or(0, |a: u64| a + 1);
        if at - first >= CHECKPOINT_EVERY
            && !explained_in(first, at)
            && !one_batch_of_an_earlier_version(&read, first, at, time)
        {
            problems.push(format!(
                "records {first} to {at} were signed only together, by the checkpoint at record {at}, although the gateway signs a checkpoint every {CHECKPOINT_EVERY} records: checkpoints were removed"
            ));
        }
        after = Some(at);
    }
    if let Some(last) = last {
        // No checkpoint can have been signed after `last` (a record was then written after it).
        let first = after.map_or(Some(0), |a| a.checked_add(1));
        if let Some(first) = first.filter(|f| *f <= last) {
            if last - first >= CHECKPOINT_EVERY && !explained_in(first, last) {
                problems.push(format!(
                    "records {first} to {last} are not covered by any signed checkpoint although the gateway signs one every {CHECKPOINT_EVERY} records: checkpoints were removed, and these records may have been rewritten"
                ));
            }
        }
    }
    let _ = now;
    let covered = after.map_or(0, |a| a.saturating_add(1));
    let total = records.len() as u64;
    Ok(AuditReport {
        records: total,
        checkpoints,
        unsigned_tail: total.saturating_sub(covered),
        problems,
        restores,
    })
}

/// One line of [`AuditReport::restores`] for the `restored` record `r` at `seq`.
fn restore_line(seq: u64, r: &Map<String, Value>) -> String {
    let day = |key: &str| {
        r.get(key)
            .and_then(Value::as_u64)
            .map_or("an unknown day".to_owned(), |t| {
                Timestamp(t).date().to_string()
            })
    };
    let problems: Vec<&str> = r
        .get("problems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut line = format!(
        "record {seq}: restored on {} from a backup taken on {}{}",
        day("time"),
        day("taken"),
        if r.get("unsealed").and_then(Value::as_bool) == Some(true) {
            " that had no seal"
        } else {
            ""
        }
    );
    if !problems.is_empty() {
        line.push_str(&format!(
            ", DESPITE {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        ));
    }
    line
}

/// Whether records `first..=at`, signed together by the checkpoint at `at` (signed at `time`),
/// were written by one apply of a gateway before this version, which signed only the last of
/// the checkpoints due within one batch. Such batches occur: a link batch merges up to
/// [`crate::link::MAX_BATCH`] sends or receipts into one commit, each with its records. That
/// version still signed at every CHECKPOINT_EVERY-th record counted from the previous
/// checkpoint (only the signature of all but the last was skipped), so the run is a multiple of
/// CHECKPOINT_EVERY long, and every record from the first checkpoint due up to `at` was written
/// by the one apply that signed the checkpoint, at its time. (This version signs every one, and
/// never signs over a run that is too long already (`Head::unsigned_run_too_long`), so it never
/// writes such a run.) The records of the run are covered by the checkpoint at `at`, so
/// accepting it cannot hide a record rewritten after that checkpoint was signed — only
/// checkpoints deleted from within one batch of records that share the checkpoint's time.
fn one_batch_of_an_earlier_version(
    read: &BTreeMap<u64, ([u8; 32], Option<u64>)>,
    first: u64,
    at: u64,
    time: u64,
) -> bool {
    (at - first) % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1
        && read
            .range(first + CHECKPOINT_EVERY - 1..=at)
            .all(|(_, (_, t))| *t == Some(time))
}

/// Keeps `bytes`, a checkpoint received from `peer`, as the witness of `peer`'s trail when it
/// verifies, names `peer` and is newer than the one kept (added to `batch`). Returns what the
/// comparison found, or `None` when it is the very checkpoint kept, or not `peer`'s, or does not
/// verify (it is then ignored: a peer cannot make us keep another's statement).
pub fn keep_witness<S: Store>(
    store: &S,
    batch: &mut Batch,
    peer: &OrgId,
    bytes: &[u8],
    trust: &dyn ChainVerifier,
) -> Result<Option<(Witnessed, Checkpoint, Option<Checkpoint>)>, StoreError> {
    let key = Key::witness(peer.as_str());
    let kept_bytes = store.read(&key)?;
    if kept_bytes.as_deref() == Some(bytes) {
        // The same statement again (peers re-sign at most once a second): nothing to verify.
        return Ok(None);
    }
    let Ok(new) = Checkpoint::verify(bytes, trust) else {
        return Ok(None);
    };
    if new.org != *peer {
        return Ok(None);
    }
    let kept = kept_bytes.and_then(|b| Checkpoint::parse_unverified(&b).ok());
    let verdict = Witnessed::newer_than(&new, kept.as_ref());
    if verdict == Witnessed::Newer {
        batch.set(&key, bytes);
    }
    Ok(Some((verdict, new, kept)))
}

/// The checkpoint of `peer` kept here, as signed.
pub fn witness_of<S: Store>(store: &S, peer: &OrgId) -> Result<Option<Vec<u8>>, StoreError> {
    store.read(&Key::witness(peer.as_str()))
}

/// What one peer witnessed of this gateway's trail, for [`compare_with_witnesses`].
#[derive(Debug, Clone)]
pub enum PeerWitness {
    /// The peer returned this signed checkpoint of ours.
    Held(Vec<u8>),
    /// The peer keeps none of ours.
    None,
    /// The peer could not be asked (down, unreachable): why.
    Unreachable(String),
}

/// One line per peer of what it witnessed, and the problems found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WitnessReport {
    /// Per peer: `org: what it holds`.
    pub peers: Vec<String>,
    /// Witnessed records that are gone or differ; empty when the trail agrees with every witness.
    pub problems: Vec<String>,
}

/// Compares the local trail with the checkpoints of this gateway (`org`) that peers returned.
pub fn compare_with_witnesses<S: Store>(
    store: &S,
    org: &OrgId,
    trust: &dyn ChainVerifier,
    witnesses: &[(OrgId, PeerWitness)],
) -> Result<WitnessReport, StoreError> {
    let records = store.scan(Space::Meta, &records_prefix())?;
    let by_seq: std::collections::BTreeMap<u64, [u8; 32]> = records
        .iter()
        .filter_map(|(k, v)| Some((seq_of(k)?, sha256(v))))
        .collect();
    let last = by_seq.keys().next_back().copied();
    // A restore from a backup ends the trail where the backup did and goes on from there with
    // its `restored` record: what peers witnessed after that point is gone or differs, and the
    // report says why.
    let restored_at = records.iter().rev().find_map(|(k, v)| {
        let marker: &[u8] = br#""event":"restored""#;
        v.windows(marker.len())
            .any(|w| w == marker)
            .then(|| seq_of(k))
            .flatten()
    });
    let why = |seq: u64| {
        match restored_at {
        Some(r) if seq >= r => format!(
            "; this gateway was restored from a backup at record {r} (its `restored` record), and what it recorded after that backup was taken is gone"
        ),
        _ => String::new(),
    }
    };
    let mut report = WitnessReport::default();
    for (peer, w) in witnesses {
        let bytes = match w {
            PeerWitness::Unreachable(why) => {
                report.peers.push(format!("{peer}: not asked ({why})"));
                continue;
            }
            PeerWitness::None => {
                report
                    .peers
                    .push(format!("{peer}: holds no checkpoint of ours"));
                continue;
            }
            PeerWitness::Held(b) => b,
        };
        let c = match Checkpoint::verify(bytes, trust) {
            Ok(c) if c.org == *org => c,
            Ok(c) => {
                report.problems.push(format!(
                    "{peer} returned a checkpoint of {}, not of {org}",
                    c.org
                ));
                continue;
            }
            Err(e) => {
                report
                    .problems
                    .push(format!("{peer} returned an unverifiable checkpoint: {e}"));
                continue;
            }
        };
        report.peers.push(format!(
            "{peer}: holds our checkpoint at record {} (signed at {})",
            c.seq, c.time.0
        ));
        match by_seq.get(&c.seq) {
            Some(h) if *h == c.hash => {}
            Some(_) => report.problems.push(format!(
                "record {} differs from what {peer} witnessed (modified or rewritten){}",
                c.seq,
                why(c.seq)
            )),
            None if last.is_none_or(|l| l < c.seq) => report.problems.push(format!(
                "the trail ends at record {}, but {peer} witnessed record {}: records {} to {} were removed{}",
                last.map_or("(none)".to_owned(), |l| l.to_string()),
                c.seq,
                last.map_or(0, |l| l + 1),
                c.seq,
                why(last.map_or(0, |l| l + 1))
            )),
            None => report.problems.push(format!(
                "record {} was removed ({peer} witnessed it)",
                c.seq
            )),
        }
    }
    Ok(report)
}

/// Every record about `case`, oldest first (subject access, R9).
pub fn subject<S: Store>(store: &S, case: &str) -> Result<Vec<Value>, StoreError> {
    store
        .scan(Space::Meta, &records_prefix())?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice::<Value>(&v).map_err(|e| StoreError::Corrupt {
                what: format!("audit record {}", String::from_utf8_lossy(&k)),
                detail: e.to_string(),
            })
        })
        .filter(|r| {
            r.as_ref().map_or(true, |r| {
                r.get("case").and_then(Value::as_str) == Some(case)
            })
        })
        .collect::<Result<_, _>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use tsunagi_protocol::testkit;

    fn setup() -> (MemStore, AuditLog, Signer) {
        let store = MemStore::new();
        let log = AuditLog::open(&store, testkit::org("lg:131059")).unwrap();
        (store, log, testkit::signer("lg:131059"))
    }

    fn events(n: usize, case: &str) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| AuditEvent::Sent {
                id: format!("{i:032x}"),
                case: format!("case-{}", case.trim_start_matches("case-"))
                    .parse()
                    .unwrap(),
                to: testkit::org("ot:npo-komorebi"),
                kind: tsunagi_protocol::DocType::SupportPlan,
                profile: "support_party".into(),
                withheld: vec!["diagnosis".into()],
            })
            .collect()
    }

    fn check(store: &MemStore) -> AuditReport {
        verify(
            store,
            &testkit::org("lg:131059"),
            &testkit::chains(),
            Timestamp(0),
        )
        .unwrap()
    }

    #[test]
    fn the_head_file_is_rewritten_in_place_and_never_moves_back() {
        let dir = std::env::temp_dir().join(format!("tsunagi-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.head");
        // A longer file of an older version is cut to the new length.
        std::fs::write(&path, "x".repeat(200)).unwrap();
        let head = HeadFile::new(path.clone());
        let read = || std::fs::read_to_string(&path).unwrap();
        for n in 1..=50u64 {
            head.record((n, [n as u8; 32]));
            assert_eq!(read(), format!("{n:020} {}\n", hex(&[n as u8; 32])));
        }
        // An older head is ignored.
        head.record((7, [7; 32]));
        assert!(read().starts_with("00000000000000000050 "), "{}", read());
        assert_eq!(head.written(), 50);
        // The check reads it back: a store with fewer records is refused.
        let (store, log, _) = setup();
        let err = head
            .check(&store, &log, std::path::Path::new("db"))
            .unwrap_err();
        assert!(
            err.to_string().contains("it holds 0 audit records, but 50"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_intact_trail_verifies_with_checkpoints() {
        let (store, log, signer) = setup();
        for _ in 0..5 {
            log.apply(
                &store,
                Batch::new(),
                events(30, "case-1"),
                Timestamp(100),
                &signer,
            )
            .unwrap();
        }
        log.checkpoint(&store, Timestamp(200), &signer).unwrap();
        let r = check(&store);
        assert!(r.intact(), "{r:?}");
        assert_eq!((r.records, r.checkpoints, r.unsigned_tail), (150, 3, 0));
        // Reopening continues the chain.
        let log = AuditLog::open(&store, testkit::org("lg:131059")).unwrap();
        log.apply(
            &store,
            Batch::new(),
            events(1, "case-2"),
            Timestamp(300),
            &signer,
        )
        .unwrap();
        let r = check(&store);
        assert!(r.intact() && r.unsigned_tail == 1, "{r:?}");
        assert_eq!(subject(&store, "case-2").unwrap().len(), 1);
    }

    fn tampered(f: impl Fn(&MemStore)) -> AuditReport {
        let (store, log, signer) = setup();
        log.apply(
            &store,
            Batch::new(),
            events(100, "case-1"),
            Timestamp(100),
            &signer,
        )
        .unwrap();
        log.checkpoint(&store, Timestamp(200), &signer).unwrap();
        f(&store);
        check(&store)
    }

    #[test]
    fn modification_insertion_and_removal_are_found() {
        let modified = tampered(|s| {
            let bytes = s.get(Space::Meta, &record_key(10)).unwrap().unwrap();
            let text = String::from_utf8(bytes)
                .unwrap()
                .replace("diagnosis", "nothing__");
            let mut b = Batch::new();
            b.put(Space::Meta, record_key(10), text);
            s.apply(b).unwrap();
        });
        assert!(
            modified
                .problems
                .iter()
                .any(|p| p.contains("record 11 does not chain")),
            "{modified:?}"
        );
        let removed = tampered(|s| {
            let mut b = Batch::new();
            b.delete(Space::Meta, record_key(40));
            s.apply(b).unwrap();
        });
        // One deleted record is named once, not as a break at every later record.
        assert_eq!(
            removed.problems,
            vec!["record 40 is missing (removed)".to_owned()],
            "{removed:?}"
        );
        let inserted = tampered(|s| {
            let mut b = Batch::new();
            b.put(Space::Meta, [record_key(50), vec![0]].concat(), b"{}");
            s.apply(b).unwrap();
        });
        assert!(!inserted.intact(), "{inserted:?}");
        let truncated = tampered(|s| {
            let mut b = Batch::new();
            b.delete(Space::Meta, record_key(99));
            s.apply(b).unwrap();
        });
        assert!(
            truncated.problems.iter().any(
                |p| p.contains("signed by a checkpoint, were removed") || p.contains("differs")
            ),
            "{truncated:?}"
        );
        let forged = tampered(|s| {
            let mut b = Batch::new();
            b.put(
                Space::Meta,
                checkpoint_key(63),
                testkit::signer("ot:npo-komorebi").sign(TYP_CHECKPOINT, vec![0xa0]),
            );
            s.apply(b).unwrap();
        });
        assert!(
            forged
                .problems
                .iter()
                .any(|p| p.contains("checkpoint at record 63")),
            "{forged:?}"
        );
    }

    /// A trail of 100 records whose checkpoint at record 99 rode on an envelope (returned), then
    /// cut back to its first 70 records with every checkpoint over the rest.
    fn cut_after_a_carried_checkpoint() -> (MemStore, Signer, Vec<u8>) {
        let (store, signer, carried) = carried_checkpoint_over_100();
        let mut b = Batch::new();
        for seq in 70..100 {
            b.delete(Space::Meta, record_key(seq));
        }
        b.delete(Space::Meta, checkpoint_key(99));
        store.apply(b).unwrap();
        (store, signer, carried)
    }

    /// A trail of 100 records and a checkpoint over all of them that rode on an envelope.
    fn carried_checkpoint_over_100() -> (MemStore, Signer, Vec<u8>) {
        let (store, log, signer) = setup();
        log.apply(
            &store,
            Batch::new(),
            events(100, "case-1"),
            Timestamp(100),
            &signer,
        )
        .unwrap();
        // The checkpoint that rode on an envelope, now kept by the NPO.
        let carried = log
            .current_checkpoint(&store, Timestamp(200), &signer)
            .unwrap()
            .unwrap();
        // It is signed afresh only when records were added and a second passed.
        assert_eq!(
            log.current_checkpoint(&store, Timestamp(200), &signer)
                .unwrap(),
            Some(carried.clone())
        );
        (store, signer, carried)
    }

    #[test]
    fn a_witness_beyond_a_restore_is_reported_with_the_restore() {
        // Restored from a backup of the first 70 records: the restore adds its record, 70.
        let (store, signer, carried) = cut_after_a_carried_checkpoint();
        let reopened = AuditLog::open(&store, testkit::org("lg:131059")).unwrap();
        let restored = AuditEvent::Restored {
            taken: 150,
            records: 70,
            unsealed: false,
            problems: vec![],
        };
        reopened
            .apply(
                &store,
                Batch::new(),
                vec![restored],
                Timestamp(300),
                &signer,
            )
            .unwrap();
        let local = check(&store);
        assert!(local.intact(), "{local:?}");
        assert_eq!(local.restores.len(), 1, "{local:?}");
        assert!(
            local.restores[0].starts_with("record 70: restored on ")
                && local.restores[0].contains("from a backup taken on"),
            "{local:?}"
        );
        let npo = testkit::org("ot:npo-komorebi");
        // What the NPO witnessed before the restore: record 70 then, record 99.
        let at_70 = Checkpoint {
            org: testkit::org("lg:131059"),
            seq: 70,
            hash: [7; 32],
            time: Timestamp(200),
        }
        .sign(&signer);
        for (witness, says) in [
            (carried, "the trail ends at record 70, but ot:npo-komorebi witnessed record 99: records 71 to 99 were removed; this gateway was restored from a backup at record 70"),
            (at_70, "record 70 differs from what ot:npo-komorebi witnessed (modified or rewritten); this gateway was restored from a backup at record 70"),
        ] {
            let report = compare_with_witnesses(
                &store,
                &testkit::org("lg:131059"),
                &testkit::chains(),
                &[(npo.clone(), PeerWitness::Held(witness))],
            )
            .unwrap();
            assert_eq!(report.problems.len(), 1, "{report:?}");
            assert!(report.problems[0].starts_with(says), "{report:?}");
        }
    }

    #[test]
    fn records_cut_off_the_end_below_a_checkpoint_left_in_place_are_refused_at_open() {
        let (store, _, _) = carried_checkpoint_over_100();
        let mut b = Batch::new();
        for seq in 70..100 {
            b.delete(Space::Meta, record_key(seq));
        }
        store.apply(b).unwrap();
        let e = AuditLog::open(&store, testkit::org("lg:131059"))
            .err()
            .expect("refused");
        assert!(
            e.to_string()
                .contains("covers 100 records, but it holds 70: records 70 to 99 were removed"),
            "{e}"
        );
    }

    #[test]
    fn truncation_that_the_local_chain_cannot_see_is_found_by_a_witness() {
        // The newest 30 records and every checkpoint over them are deleted.
        let (store, _, carried) = cut_after_a_carried_checkpoint();
        let local = check(&store);
        assert!(
            local.intact(),
            "the shortened chain verifies alone: {local:?}"
        );
        let npo = testkit::org("ot:npo-komorebi");
        let report = compare_with_witnesses(
            &store,
            &testkit::org("lg:131059"),
            &testkit::chains(),
            &[
                (npo.clone(), PeerWitness::Held(carried.clone())),
                (testkit::org("lg:130001"), PeerWitness::None),
                (
                    testkit::org("mi:1310000017"),
                    PeerWitness::Unreachable("timed out".into()),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            report.problems,
            vec![
                "the trail ends at record 69, but ot:npo-komorebi witnessed record 99: records 70 to 99 were removed"
                    .to_owned()
            ]
        );
        assert_eq!(report.peers.len(), 3);
        // A peer cannot pass off another's checkpoint as ours.
        let foreign = Checkpoint {
            org: npo.clone(),
            seq: 5,
            hash: [0; 32],
            time: Timestamp(1),
        }
        .sign(&testkit::signer("ot:npo-komorebi"));
        let r = compare_with_witnesses(
            &store,
            &testkit::org("lg:131059"),
            &testkit::chains(),
            &[(npo.clone(), PeerWitness::Held(foreign.clone()))],
        )
        .unwrap();
        assert!(r.problems[0].contains("not of lg:131059"), "{r:?}");
        // Keeping witnesses: a newer one replaces, a regression is reported and not kept.
        let mut b = Batch::new();
        let kept = keep_witness(&store, &mut b, &npo, &foreign, &testkit::chains()).unwrap();
        assert_eq!(kept.map(|k| k.0), Some(Witnessed::Newer));
        store.apply(b).unwrap();
        assert_eq!(witness_of(&store, &npo).unwrap(), Some(foreign.clone()));
        let older = Checkpoint {
            org: npo.clone(),
            seq: 2,
            hash: [0; 32],
            time: Timestamp(9),
        }
        .sign(&testkit::signer("ot:npo-komorebi"));
        let mut b = Batch::new();
        let kept = keep_witness(&store, &mut b, &npo, &older, &testkit::chains()).unwrap();
        assert_eq!(kept.map(|k| k.0), Some(Witnessed::WentBack));
        assert!(b.is_empty());
        // Bunkyo's checkpoint presented as the NPO's is ignored.
        let mut b = Batch::new();
        assert!(
            keep_witness(&store, &mut b, &npo, &carried, &testkit::chains())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_failed_apply_leaves_the_chain_unchanged() {
        let store = MemStore::failing_after(1);
        let log = AuditLog::open(&store, testkit::org("lg:131059")).unwrap();
        let signer = testkit::signer("lg:131059");
        log.apply(&store, Batch::new(), events(2, "c"), Timestamp(1), &signer)
            .unwrap();
        assert!(log
            .apply(&store, Batch::new(), events(2, "c"), Timestamp(1), &signer)
            .is_err());
        assert_eq!(log.head.lock().unwrap().next_seq, 2);
    }

    /// Rewrites every record from `from` on (record `at` changed) and chains them anew.
    fn rewrite_from(s: &MemStore, from: u64, at: u64) {
        let mut b = Batch::new();
        let mut prev = [0u8; 32];
        for (k, bytes) in s.scan(Space::Meta, &records_prefix()).unwrap() {
            let seq = seq_of(&k).unwrap();
            if seq < from {
                prev = sha256(&bytes);
                continue;
            }
            let mut r: Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
            if seq == at {
                r.insert("to".into(), "ot:forged".into());
            }
            r.insert("prev".into(), hex(&prev).into());
            let again = serde_json::to_vec(&r).unwrap();
            prev = sha256(&again);
            b.put(Space::Meta, k, again);
        }
        s.apply(b).unwrap();
    }

    fn delete_checkpoints(s: &MemStore, which: impl Fn(u64) -> bool) {
        let mut b = Batch::new();
        for (k, _) in s.scan(Space::Meta, &checkpoints_prefix()).unwrap() {
            if which(seq_of(&k).unwrap()) {
                b.delete(Space::Meta, k);
            }
        }
        s.apply(b).unwrap();
    }

    #[test]
    fn rewritten_records_with_their_checkpoints_deleted_are_not_intact() {
        let report = tampered(|s| {
            rewrite_from(s, 0, 10);
            delete_checkpoints(s, |_| true);
        });
        // 100 records, of which the gateway signs a checkpoint every 64 at the latest: none left.
        assert_eq!(
            report.problems,
            vec!["records 0 to 99 are not covered by any signed checkpoint although the gateway signs one every 64 records: checkpoints were removed, and these records may have been rewritten".to_owned()],
            "{report:?}"
        );
        // The same after the first checkpoint: everything after the last one left is suspect.
        let (store, log, signer) = setup();
        for t in 0..4 {
            log.apply(&store, Batch::new(), events(50, "c"), Timestamp(t), &signer)
                .unwrap();
        }
        rewrite_from(&store, 64, 70);
        delete_checkpoints(&store, |seq| seq > 63);
        let report = check(&store);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.starts_with("records 64 to 199 are not covered")),
            "{report:?}"
        );
        // Up to 64 records after the last checkpoint are the gateway's ordinary unsigned tail.
        let (store, log, signer) = setup();
        log.apply(
            &store,
            Batch::new(),
            events(127, "c"),
            Timestamp(1),
            &signer,
        )
        .unwrap();
        let r = check(&store);
        assert!(r.intact() && r.unsigned_tail == 63, "{r:?}");
    }

    #[test]
    fn a_gateway_signs_no_checkpoint_over_a_trail_whose_checkpoints_were_removed() {
        let (store, log, signer) = setup();
        log.apply(
            &store,
            Batch::new(),
            events(100, "c"),
            Timestamp(1),
            &signer,
        )
        .unwrap();
        rewrite_from(&store, 0, 10);
        delete_checkpoints(&store, |_| true);
        // Restarted over the forged store, the gateway goes on writing records, but a checkpoint
        // now would vouch for the forgery: it signs none, and the trail stays not intact.
        let log = AuditLog::open(&store, testkit::org("lg:131059")).unwrap();
        log.apply(&store, Batch::new(), events(70, "c"), Timestamp(2), &signer)
            .unwrap();
        assert!(!log.checkpoint(&store, Timestamp(3), &signer).unwrap());
        assert_eq!(
            log.current_checkpoint(&store, Timestamp(4), &signer)
                .unwrap(),
            None
        );
        let r = check(&store);
        assert_eq!(r.checkpoints, 0, "{r:?}");
        assert!(
            r.problems
                .iter()
                .any(|p| p.starts_with("records 0 to 169 are not covered")),
            "{r:?}"
        );
    }

    #[test]
    fn a_large_batch_signs_a_checkpoint_every_64_records() {
        let (store, log, signer) = setup();
        log.apply(&store, Batch::new(), events(10, "c"), Timestamp(1), &signer)
            .unwrap();
        log.apply(
            &store,
            Batch::new(),
            events(200, "c"),
            Timestamp(2),
            &signer,
        )
        .unwrap();
        let at: Vec<u64> = store
            .scan(Space::Meta, &checkpoints_prefix())
            .unwrap()
            .iter()
            .map(|(k, _)| seq_of(k).unwrap())
            .collect();
        assert_eq!(at, vec![63, 127, 191]);
        let r = check(&store);
        assert!(r.intact(), "{r:?}");
        assert_eq!((r.checkpoints, r.unsigned_tail), (3, 18));
        assert_eq!(
            log.head
                .lock()
                .unwrap()
                .latest
                .as_ref()
                .map(|(b, _)| b.clone()),
            store.get(Space::Meta, &checkpoint_key(191)).unwrap()
        );
    }

    #[test]
    fn a_checkpoint_removed_between_two_others_is_found() {
        let (store, log, signer) = setup();
        for t in 0..4 {
            log.apply(&store, Batch::new(), events(50, "c"), Timestamp(t), &signer)
                .unwrap();
        }
        delete_checkpoints(&store, |seq| seq == 127);
        let r = check(&store);
        assert_eq!(
            r.problems,
            vec!["records 64 to 191 were signed only together, by the checkpoint at record 191, although the gateway signs a checkpoint every 64 records: checkpoints were removed".to_owned()],
            "{r:?}"
        );
    }

    #[test]
    fn a_large_batch_of_an_earlier_version_with_one_checkpoint_is_intact() {
        // Earlier versions signed only the last checkpoint due within one batch: 200 records
        // applied at once after 10 left only the one at record 191.
        let (store, log, signer) = setup();
        log.apply(&store, Batch::new(), events(10, "c"), Timestamp(1), &signer)
            .unwrap();
        log.apply(
            &store,
            Batch::new(),
            events(200, "c"),
            Timestamp(2),
            &signer,
        )
        .unwrap();
        delete_checkpoints(&store, |seq| seq < 191);
        let r = check(&store);
        assert!(r.intact(), "{r:?}");
        assert_eq!((r.checkpoints, r.unsigned_tail), (1, 18));
        // Records of other applies in the run cannot be one such batch.
        let (store, log, signer) = setup();
        for t in 0..2 {
            log.apply(
                &store,
                Batch::new(),
                events(100, "c"),
                Timestamp(t),
                &signer,
            )
            .unwrap();
        }
        delete_checkpoints(&store, |seq| seq < 191);
        assert!(
            check(&store)
                .problems
                .iter()
                .any(|p| p.starts_with("records 0 to 191 were signed only together")),
            "{:?}",
            check(&store)
        );
    }

    #[test]
    fn a_record_at_the_last_sequence_number_is_refused_without_panicking() {
        let (store, _, signer) = setup();
        let mut b = Batch::new();
        b.put(Space::Meta, record_key(u64::MAX), b"{}");
        store.apply(b).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            AuditLog::open(&store, testkit::org("lg:131059")).map(|_| ())
        }));
        let err = r.expect("AuditLog::open panicked").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains(
                "audit record 18446744073709551615: it has the largest possible sequence number"
            ),
            "{err}"
        );
        // A checkpoint there likewise.
        let (store, _, _) = setup();
        let mut b = Batch::new();
        b.put(Space::Meta, checkpoint_key(u64::MAX), b"x");
        store.apply(b).unwrap();
        let err = AuditLog::open(&store, testkit::org("lg:131059"))
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("audit checkpoint 18446744073709551615"),
            "{err}"
        );
        // One record short of it: the log opens, and an apply that would pass it is refused.
        let (store, _, _) = setup();
        let mut b = Batch::new();
        b.put(Space::Meta, record_key(u64::MAX - 2), b"{}");
        store.apply(b).unwrap();
        let log = AuditLog::open(&store, testkit::org("lg:131059")).unwrap();
        let err = log
            .apply(&store, Batch::new(), events(2, "c"), Timestamp(1), &signer)
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(log.head.lock().unwrap().next_seq, u64::MAX - 1);
    }

    #[test]
    fn a_head_file_naming_no_records_is_refused_without_panicking() {
        let dir = std::env::temp_dir().join(format!("tsunagi-head0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.head");
        std::fs::write(&path, format!("{:020} {}\n", 0, hex(&[0; 32]))).unwrap();
        let (store, log, _) = setup();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            HeadFile::new(path.clone()).check(&store, &log, std::path::Path::new("db"))
        }));
        let err = r.expect("HeadFile::check panicked").unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { what, .. } if *what == path.display().to_string()),
            "{err:?}"
        );
        assert!(err.to_string().contains("not a head file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_at_a_huge_sequence_number_is_reported_without_exhausting_memory() {
        // Before, the verification filled a table up to the record's sequence number.
        for seq in [1 << 40, u64::MAX - 1, u64::MAX] {
            let report = tampered(|s| {
                let mut b = Batch::new();
                b.put(Space::Meta, record_key(seq), b"{}");
                s.apply(b).unwrap();
            });
            assert!(
                report
                    .problems
                    .contains(&format!("records 100 to {} are missing (removed)", seq - 1)),
                "{report:?}"
            );
            assert_eq!((report.records, report.checkpoints), (101, 2), "{report:?}");
        }
    }
}
