//! The store's schema: every key layout in one place, and the format version.
//!
//! Nothing outside this module spells a key. Each kind of record has a constructor on [`Key`]
//! (or [`Prefix`] for a range), so a layout can be read here in full and changed in one place:
//!
//! | space | key | value |
//! |---|---|---|
//! | Outbox | `m` msgId | outbox entry (JSON: state, recipient, kind, case, attempts …) |
//! | Outbox | `e` msgId | the sealed envelope, encrypted with the case key |
//! | Outbox | `w` msgId | a signed document waiting for consent, encrypted |
//! | Outbox | `r` msgId | the recipient's signed receipt |
//! | Inbox | `m` msgId | inbox entry (JSON) |
//! | Inbox | `e` msgId | the received envelope, encrypted |
//! | Seen | msgId | the receipt sent for it (replay detection) |
//! | Consents | `e` consent id | the newest version's signed bundle (this gateway's view), encrypted |
//! | Consents | `k` consent id | its case |
//! | Consents | `c` case | the consent id this gateway shares the case under: its own when it is a controller of the case, else the newest it received |
//! | Consents | `o` case `\0` controller | the consent id of each controller of the case (origin and destination after a move) |
//! | Consents | `v` case `\0` view digest (32 bytes) org | the consent view sent by reference to `org` (slim envelopes), encrypted: what a consent fetch from `org` is answered with |
//! | Consents | `h` consent id `\0` version (4 bytes) | SHA-256 of that version's signed document, for every version recorded |
//! | Consents | `p` case `\0` controller | the handover proof of a controller that did not open the case (CBOR array of `HandoverLink`s, each a consent view and the Form 7 that came with it, the opener's first), encrypted: how the moves to it were shown here, or, for this gateway, the views that hand the case to it; what a proof fetch is answered with |
//! | Consents | `f` consent id | the follow-up of a newly recorded version not yet done (its copies and notices), encrypted: kept in the version's own commit, removed when done |
//! | Consents | `s` consent id `\0` version (4 bytes) what org | msgId of the copy (`c`) or withdrawal notice (`n`) of that version queued for `org` by its follow-up, in the same commit |
//! | Cases | `r` case `\0` org | `org` took part in the case (material went to or came from it) |
//! | Cases | `p/` case | the current plan this gateway authored, encrypted |
//! | Cases | `end/` case | the end of support (support end or withdrawal): `<stated day> <day first recorded here>`; retention starts at the later (records from before the second day was kept hold the stated day only) |
//! | Cases | `tomb/` case | the hash tombstone of a purged case |
//! | Cases | `x/` case | a signed transfer notice for a destination without a gateway, encrypted |
//! | Cases | `d/` case `\0` delegation id | the newest version of a delegation of the case (JSON) |
//! | Cases | `out/` case | the case was transferred out to another authority (JSON: to, on) |
//! | Cases | `f7o/` case `\0` msgId | empty: outbox entry msgId is a transfer notice (Form 7) of the case, written with the entry: the Form 7s a case sent are found without reading the outbox |
//! | Cases | `f7i/` case `\0` msgId | empty: inbox entry msgId is a Form 7 of the case, written with the entry |
//! | CaseKeys | case | the case key wrapped by the master key (see `vault.rs`) |
//! | Meta | `format` | [`FORMAT_VERSION`], 4 bytes big-endian |
//! | Meta | `ref/` SHA-256(client_ref) | msgId and request digest (idempotent submissions) |
//! | Meta | `audit/r/` seq | an audit record (see `audit.rs`) |
//! | Meta | `audit/c/` seq | a signed audit checkpoint |
//! | Meta | `witness/` org | the newest audit checkpoint seen from that peer |
//! | Meta | `chain/` SHA-256(leaf certificate) | a signer's certificate chain (CBOR array, leaf first), kept once: peers' chains fetched for batch heads that name them by fingerprint, and this gateway's own |
//!
//! # Format version
//!
//! [`check_format`] runs when the store is opened. A new store gets [`FORMAT_VERSION`]. A store
//! written before versions were recorded (format 0: the same layouts as format 1) is migrated by
//! recording the version. A store of a newer format is refused with a clear error, never read
//! with the wrong layouts. Tools that only read a stopped gateway's store run [`check_readable`]
//! instead: it refuses a newer format the same way and writes nothing (no migration).
//!
//! Format 2 changed one value: an end of support (`end/`) holds the stated day and the day it
//! was first recorded here; a format 1 value (one day) reads as both, so the migration from 1
//! only records the new version, and an older build refuses the store rather than misread it.
//!
//! Format 3 added the index of transfer notices (`f7o/`, `f7i/`). Recognising a new controller
//! of a case and answering a handover or proof fetch look up the case's Form 7s; they read the
//! index, never the whole outbox or inbox, which grow without bound. The migration from 2 reads
//! every outbox and inbox entry once and writes the index of the Form 7s among them (after
//! removing any index a migration interrupted before it recorded the version left behind). An
//! older build refuses the store: it would write Form 7s without the index, which this build
//! would then never find. A format 2 store reads as it is for the read-only tools, which use no
//! index.
//!
//! The `o` (consent per controller), `out/`, `f` and `s` (consent follow-ups), `h` (version
//! digests) and `p` (handover proofs) keys were added within format 1 or 2: they add records and change the meaning of none. A
//! store written before them has one controller per case, whose consent the `c` pointer names;
//! reads fall back to it. A version whose digest was never recorded is judged by the referenced
//! view, fetched from the sender, as a version never held here is.

use super::{Batch, Space, Store, StoreError};

/// The format this build reads and writes.
pub const FORMAT_VERSION: u32 = 3;

/// A full key: its space and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The keyspace.
    pub space: Space,
    /// The key within it.
    pub bytes: Vec<u8>,
}

/// The start of a range of keys in one space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The keyspace.
    pub space: Space,
    /// The common start of the keys.
    pub bytes: Vec<u8>,
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl Key {
    fn new(space: Space, bytes: Vec<u8>) -> Key {
        Key { space, bytes }
    }

    /// An outbox entry's state.
    pub fn outbox_entry(id: &[u8; 16]) -> Key {
        Key::new(Space::Outbox, cat(&[b"m", id]))
    }
    /// An outbox entry's sealed envelope.
    pub fn outbox_envelope(id: &[u8; 16]) -> Key {
        Key::new(Space::Outbox, cat(&[b"e", id]))
    }
    /// A document waiting for consent.
    pub fn outbox_waiting(id: &[u8; 16]) -> Key {
        Key::new(Space::Outbox, cat(&[b"w", id]))
    }
    /// The receipt an outbox entry got.
    pub fn outbox_receipt(id: &[u8; 16]) -> Key {
        Key::new(Space::Outbox, cat(&[b"r", id]))
    }
    /// An inbox entry.
    pub fn inbox_entry(id: &[u8; 16]) -> Key {
        Key::new(Space::Inbox, cat(&[b"m", id]))
    }
    /// A received envelope.
    pub fn inbox_envelope(id: &[u8; 16]) -> Key {
        Key::new(Space::Inbox, cat(&[b"e", id]))
    }
    /// The receipt sent for a received message id.
    pub fn seen(id: &[u8; 16]) -> Key {
        Key::new(Space::Seen, id.to_vec())
    }
    /// A consent record's newest version.
    pub fn consent(consent_id: &str) -> Key {
        Key::new(Space::Consents, cat(&[b"e", consent_id.as_bytes()]))
    }
    /// The case of a consent record.
    pub fn consent_case(consent_id: &str) -> Key {
        Key::new(Space::Consents, cat(&[b"k", consent_id.as_bytes()]))
    }
    /// The consent id of a case.
    pub fn case_consent(case: &str) -> Key {
        Key::new(Space::Consents, cat(&[b"c", case.as_bytes()]))
    }
    /// The consent id of `controller` for `case`: each controller's consent is kept apart.
    pub fn controller_consent(case: &str, controller: &str) -> Key {
        Key::new(
            Space::Consents,
            cat(&[b"o", case.as_bytes(), b"\0", controller.as_bytes()]),
        )
    }
    /// `case` was transferred out of this gateway's care (the origin's support ended with
    /// outcome `transferred`).
    pub fn transferred_out(case: &str) -> Key {
        Key::new(Space::Cases, cat(&[b"out/", case.as_bytes()]))
    }
    /// The consent view of `case` whose bundle hashes to `view`, sent by reference to `org`
    /// (the answer to `org`'s consent fetch). Added in format 1 without a migration: a store
    /// without such keys answers no fetch for envelopes queued before.
    pub fn consent_view(case: &str, view: &[u8; 32], org: &str) -> Key {
        Key::new(
            Space::Consents,
            cat(&[b"v", case.as_bytes(), b"\0", view, org.as_bytes()]),
        )
    }
    /// SHA-256 of the signed document of version `version` of consent `consent_id`, kept for
    /// every version this gateway recorded: an envelope naming an older version is judged by
    /// the newest only when its reference names that very document.
    pub fn consent_version_digest(consent_id: &str, version: u32) -> Key {
        Key::new(
            Space::Consents,
            cat(&[b"h", consent_id.as_bytes(), b"\0", &version.to_be_bytes()]),
        )
    }
    /// The handover proof of `controller` for `case` (see `tsunagi_protocol::fetch`): the
    /// consent views that show the moves from the case's opener to it. Added in format 2
    /// without a migration: a gateway without one computes its own from the views it holds.
    pub fn controller_proof(case: &str, controller: &str) -> Key {
        Key::new(
            Space::Consents,
            cat(&[b"p", case.as_bytes(), b"\0", controller.as_bytes()]),
        )
    }
    /// The pending follow-up of the newest recorded version of consent `consent_id`.
    pub fn consent_followup(consent_id: &str) -> Key {
        Key::new(Space::Consents, cat(&[b"f", consent_id.as_bytes()]))
    }
    /// The copy (`what` = `b'c'`) or withdrawal notice (`b'n'`) of version `version` of consent
    /// `consent_id` queued for `org` by that version's follow-up.
    pub fn consent_followup_sent(consent_id: &str, version: u32, what: u8, org: &str) -> Key {
        Key::new(
            Space::Consents,
            cat(&[
                b"s",
                consent_id.as_bytes(),
                b"\0",
                &version.to_be_bytes(),
                &[what],
                org.as_bytes(),
            ]),
        )
    }
    /// `org` took part in `case`.
    pub fn party(case: &str, org: &str) -> Key {
        Key::new(
            Space::Cases,
            cat(&[b"r", case.as_bytes(), b"\0", org.as_bytes()]),
        )
    }
    /// Outbox entry `id` is a transfer notice (Form 7) of `case` (format 3).
    pub fn transfer_notice_sent(case: &str, id: &[u8; 16]) -> Key {
        Prefix::transfer_notices_sent(case).key(id)
    }
    /// Inbox entry `id` is a transfer notice (Form 7) of `case` (format 3).
    pub fn transfer_notice_received(case: &str, id: &[u8; 16]) -> Key {
        Prefix::transfer_notices_received(case).key(id)
    }
    /// The current plan of a case this gateway authored.
    pub fn plan(case: &str) -> Key {
        Key::new(Space::Cases, cat(&[b"p/", case.as_bytes()]))
    }
    /// The end of support of a case: the stated day and the day it was first recorded here.
    pub fn support_end(case: &str) -> Key {
        Key::new(Space::Cases, cat(&[b"end/", case.as_bytes()]))
    }
    /// The signed transfer notice of `case` waiting to go by another channel.
    pub fn no_gateway(case: &str) -> Key {
        Key::new(Space::Cases, cat(&[b"x/", case.as_bytes()]))
    }
    /// The newest version of delegation `id` of `case`.
    pub fn delegation(case: &str, id: &str) -> Key {
        Key::new(
            Space::Cases,
            cat(&[b"d/", case.as_bytes(), b"\0", id.as_bytes()]),
        )
    }
    /// The tombstone of a purged case.
    pub fn tombstone(case: &str) -> Key {
        Key::new(Space::Cases, cat(&[b"tomb/", case.as_bytes()]))
    }
    /// An idempotent submission's client reference (by its digest).
    pub fn client_ref(digest: &[u8; 32]) -> Key {
        Key::new(Space::Meta, cat(&[b"ref/", digest]))
    }
    /// An audit record.
    pub fn audit_record(seq: u64) -> Key {
        Key::new(Space::Meta, cat(&[AUDIT_RECORD, &seq.to_be_bytes()]))
    }
    /// A signed audit checkpoint over the records up to `seq`.
    pub fn audit_checkpoint(seq: u64) -> Key {
        Key::new(Space::Meta, cat(&[AUDIT_CHECKPOINT, &seq.to_be_bytes()]))
    }
    /// The newest audit checkpoint seen from a peer.
    pub fn witness(org: &str) -> Key {
        Key::new(Space::Meta, cat(&[b"witness/", org.as_bytes()]))
    }
    /// A signer's certificate chain by the fingerprint of its leaf (a batch head's `kid`). Added
    /// in format 1 without a migration: a store without such keys fetches the chains again.
    pub fn signer_chain(kid: &[u8; 32]) -> Key {
        Key::new(Space::Meta, cat(&[b"chain/", kid]))
    }
    /// The store's format version.
    pub fn format() -> Key {
        Key::new(Space::Meta, b"format".to_vec())
    }
}

const AUDIT_RECORD: &[u8] = b"audit/r/";
const AUDIT_CHECKPOINT: &[u8] = b"audit/c/";
const FORM7_SENT: &[u8] = b"f7o/";
const FORM7_RECEIVED: &[u8] = b"f7i/";

impl Prefix {
    /// The full key of `rest`, a key under this prefix as [`Read::read_all`] returns it.
    pub fn key(&self, rest: &[u8]) -> Key {
        Key::new(self.space, cat(&[&self.bytes, rest]))
    }
    /// Every outbox entry (the `m` keys; not envelopes, waiting documents or receipts).
    pub fn outbox_entries() -> Prefix {
        Prefix {
            space: Space::Outbox,
            bytes: b"m".to_vec(),
        }
    }
    /// Every inbox entry.
    pub fn inbox_entries() -> Prefix {
        Prefix {
            space: Space::Inbox,
            bytes: b"m".to_vec(),
        }
    }
    /// The parties of a case ([`Key::party`]); the org follows the prefix.
    pub fn parties(case: &str) -> Prefix {
        Prefix {
            space: Space::Cases,
            bytes: cat(&[b"r", case.as_bytes(), b"\0"]),
        }
    }
    /// The consents of a case per controller ([`Key::controller_consent`]); the controller
    /// follows the prefix.
    pub fn controller_consents(case: &str) -> Prefix {
        Prefix {
            space: Space::Consents,
            bytes: cat(&[b"o", case.as_bytes(), b"\0"]),
        }
    }
    /// The handover proofs kept for a case ([`Key::controller_proof`]); the controller follows.
    pub fn controller_proofs(case: &str) -> Prefix {
        Prefix {
            space: Space::Consents,
            bytes: cat(&[b"p", case.as_bytes(), b"\0"]),
        }
    }
    /// The Form 7s of a case in the outbox ([`Key::transfer_notice_sent`]); the message id
    /// follows.
    pub fn transfer_notices_sent(case: &str) -> Prefix {
        Prefix {
            space: Space::Cases,
            bytes: cat(&[FORM7_SENT, case.as_bytes(), b"\0"]),
        }
    }
    /// The Form 7s of a case in the inbox ([`Key::transfer_notice_received`]); the message id
    /// follows.
    pub fn transfer_notices_received(case: &str) -> Prefix {
        Prefix {
            space: Space::Cases,
            bytes: cat(&[FORM7_RECEIVED, case.as_bytes(), b"\0"]),
        }
    }
    /// The consent views of a case sent by reference ([`Key::consent_view`]).
    pub fn consent_views(case: &str) -> Prefix {
        Prefix {
            space: Space::Consents,
            bytes: cat(&[b"v", case.as_bytes(), b"\0"]),
        }
    }
    /// The case of every consent record ([`Key::consent_case`]); the consent id follows.
    pub fn consent_cases() -> Prefix {
        Prefix {
            space: Space::Consents,
            bytes: b"k".to_vec(),
        }
    }
    /// Every pending consent follow-up ([`Key::consent_followup`]); the consent id follows.
    pub fn consent_followups() -> Prefix {
        Prefix {
            space: Space::Consents,
            bytes: b"f".to_vec(),
        }
    }
    /// What the follow-ups of consent `consent_id` queued ([`Key::consent_followup_sent`]).
    pub fn consent_followups_sent(consent_id: &str) -> Prefix {
        Prefix {
            space: Space::Consents,
            bytes: cat(&[b"s", consent_id.as_bytes(), b"\0"]),
        }
    }
    /// The document digests of the recorded versions of consent `consent_id`
    /// ([`Key::consent_version_digest`]).
    pub fn consent_version_digests(consent_id: &str) -> Prefix {
        Prefix {
            space: Space::Consents,
            bytes: cat(&[b"h", consent_id.as_bytes(), b"\0"]),
        }
    }
    /// The delegations of a case ([`Key::delegation`]); the id follows the prefix.
    pub fn delegations(case: &str) -> Prefix {
        Prefix {
            space: Space::Cases,
            bytes: cat(&[b"d/", case.as_bytes(), b"\0"]),
        }
    }
    /// Every recorded end of support ([`Key::support_end`]); the case follows the prefix.
    pub fn support_ends() -> Prefix {
        Prefix {
            space: Space::Cases,
            bytes: b"end/".to_vec(),
        }
    }
    /// Every audit record, in sequence order.
    pub fn audit_records() -> Prefix {
        Prefix {
            space: Space::Meta,
            bytes: AUDIT_RECORD.to_vec(),
        }
    }
    /// Every audit checkpoint, in sequence order.
    pub fn audit_checkpoints() -> Prefix {
        Prefix {
            space: Space::Meta,
            bytes: AUDIT_CHECKPOINT.to_vec(),
        }
    }
}

/// The sequence number at the end of an audit record or checkpoint key; `None` when the key is
/// not exactly prefix + 8 bytes.
pub fn audit_seq(key: &[u8]) -> Option<u64> {
    if key.len() != AUDIT_RECORD.len() + 8 {
        return None;
    }
    let tail = key.get(key.len() - 8..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &Key, value: impl AsRef<[u8]>) {
        self.put(key.space, &key.bytes, value);
    }
    /// Removes `key`.
    pub fn remove(&mut self, key: &Key) {
        self.delete(key.space, &key.bytes);
    }
}

/// Typed reads over any [`Store`].
pub trait Read {
    /// The value of `key`, if any.
    fn read(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every `(key without the prefix, value)` under `prefix`, in key order.
    fn read_all(&self, prefix: &Prefix) -> Result<super::Entries, StoreError>;
    /// Calls `f` with each `(key without the prefix, value)` under `prefix`, in key order,
    /// without holding them all in memory; stops at `f`'s first error.
    fn read_each(&self, prefix: &Prefix, f: &mut super::EachEntry<'_>) -> Result<(), StoreError>;
}

impl<S: Store + ?Sized> Read for S {
    fn read(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(key.space, &key.bytes)
    }
    fn read_all(&self, prefix: &Prefix) -> Result<super::Entries, StoreError> {
        Ok(self
            .scan(prefix.space, &prefix.bytes)?
            .into_iter()
            .map(|(k, v)| (k[prefix.bytes.len()..].to_vec(), v))
            .collect())
    }
    fn read_each(&self, prefix: &Prefix, f: &mut super::EachEntry<'_>) -> Result<(), StoreError> {
        let n = prefix.bytes.len();
        self.scan_each(prefix.space, &prefix.bytes, &mut |k, v| f(&k[n..], v))
    }
}

/// What [`check_format`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new, empty store: the version was recorded.
    Created,
    /// The store is of this build's format.
    Current,
    /// The store was of format `from` and was migrated.
    Migrated {
        /// The format found.
        from: u32,
    },
}

/// Checks the format version of `store` when it is opened: records it in a new store, migrates an
/// older format, refuses a newer one. The caller makes the result durable (flush) before use.
pub fn check_format<S: Store + ?Sized>(store: &S) -> Result<Opened, StoreError> {
    match store.read(&Key::format())? {
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    what: "the store's format version".into(),
                    detail: format!("{} bytes instead of 4", v.len()),
                })?;
            match found {
                FORMAT_VERSION => Ok(Opened::Current),
                newer if newer > FORMAT_VERSION => Err(newer_format(newer)),
                older => migrate(store, older).map(|()| Opened::Migrated { from: older }),
            }
        }
        None => {
            let empty = super::Space::ALL
                .iter()
                .all(|s| store.scan(*s, b"").map(|e| e.is_empty()).unwrap_or(false));
            if empty {
                record(store, FORMAT_VERSION)?;
                Ok(Opened::Created)
            } else {
                // Written before versions were recorded.
                migrate(store, 0).map(|()| Opened::Migrated { from: 0 })
            }
        }
    }
}

/// Checks, without writing anything, that this build reads `store` as it is: for tools that
/// only read a stopped gateway's store (`tsunagi stats`, `tsunagi audit verify`). A newer format
/// is refused as [`check_format`] refuses it. These tools do not migrate: they promise to write
/// nothing, and a migration is the gateway's to do at start (where it is flushed and logged).
/// Every older format so far reads as it is for them (the migrations record the version, and
/// the one from format 2 adds an index these tools do not read).
pub fn check_readable<S: Store + ?Sized>(store: &S) -> Result<(), StoreError> {
    let found = match store.read(&Key::format())? {
        None => 0,
        Some(v) => <[u8; 4]>::try_from(v.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                what: "the store's format version".into(),
                detail: format!("{} bytes instead of 4", v.len()),
            })?,
    };
    // Every format so far reads as this build's without a migration for these tools: format 0
    // is format 1 without the version key, format 1 differs from format 2 in one value that
    // reads both ways, and format 3 adds an index they do not use. A later format whose
    // migration rewrites records they read refuses older ones here, with what to do (start
    // the gateway once, which migrates).
    if found <= FORMAT_VERSION {
        Ok(())
    } else {
        Err(newer_format(found))
    }
}

fn newer_format(newer: u32) -> StoreError {
    StoreError::Corrupt {
        what: "the store's format version".into(),
        detail: format!(
            "the data directory was written by a newer tsunagi (format {newer}) and this build reads format {FORMAT_VERSION}; run the newer tsunagi, or restore a backup made with this one"
        ),
    }
}

fn record<S: Store + ?Sized>(store: &S, version: u32) -> Result<(), StoreError> {
    let mut b = Batch::new();
    b.set(&Key::format(), version.to_be_bytes());
    store.apply(b)
}

/// Brings a store of format `from` to [`FORMAT_VERSION`], one step at a time.
fn migrate<S: Store + ?Sized>(store: &S, from: u32) -> Result<(), StoreError> {
    let mut at = from;
    while at < FORMAT_VERSION {
        match at {
            // Format 0 had the layouts of format 1 and no version key.
            0 => {}
            // Format 2 records an end of support (`end/`) as the stated day and the day it was
            // first recorded; a format 1 record (the stated day alone) reads as both, so
            // nothing is rewritten. An older build refuses format 2 instead of misreading it.
            1 => {}
            // Format 3 indexes the transfer notices (Form 7) of each case.
            2 => index_transfer_notices(store)?,
            other => {
                return Err(StoreError::Corrupt {
                    what: "the store's format version".into(),
                    detail: format!("no migration from format {other} is known"),
                })
            }
        }
        at += 1;
        record(store, at)?;
    }
    Ok(())
}

/// Writes the index of the transfer notices (Form 7) in the outbox and inbox
/// ([`Key::transfer_notice_sent`], [`Key::transfer_notice_received`]): the migration from
/// format 2. It replaces any index already there, so a migration interrupted before the version
/// was recorded runs again whole. An entry that does not
/// decode stops it with an error naming the entry: nothing is skipped.
fn index_transfer_notices<S: Store + ?Sized>(store: &S) -> Result<(), StoreError> {
    type IndexKey = fn(&str, &[u8; 16]) -> Key;
    let mut batch = Batch::new();
    // What an interrupted run of this migration wrote, under which an older build may since
    // have purged entries: built again from the entries alone.
    for index in [FORM7_SENT, FORM7_RECEIVED] {
        let all = Prefix {
            space: Space::Cases,
            bytes: index.to_vec(),
        };
        for (k, _) in store.read_all(&all)? {
            batch.remove(&all.key(&k));
        }
    }
    let lists: [(Prefix, &str, IndexKey); 2] = [
        (
            Prefix::outbox_entries(),
            "outbox",
            Key::transfer_notice_sent,
        ),
        (
            Prefix::inbox_entries(),
            "inbox",
            Key::transfer_notice_received,
        ),
    ];
    for (entries, what, index) in lists {
        store.read_each(&entries, &mut |id, value| {
            let corrupt = |detail: String| StoreError::Corrupt {
                what: format!("{what} entry {}", tsunagi_protocol::hex::encode(id)),
                detail,
            };
            let id: [u8; 16] = id
                .try_into()
                .map_err(|_| corrupt(format!("a key of {} bytes instead of 16", id.len())))?;
            let entry: serde_json::Value =
                serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
            if entry["kind"] == "transfer_notice" {
                let case = entry["case"]
                    .as_str()
                    .ok_or_else(|| corrupt("a transfer notice without a case".into()))?;
                batch.set(&index(case, &id), b"");
            }
            Ok(())
        })?;
    }
    store.apply(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn a_new_store_records_the_version_and_reopens_as_current() {
        let s = MemStore::new();
        assert_eq!(check_format(&s).unwrap(), Opened::Created);
        assert_eq!(
            s.read(&Key::format()).unwrap(),
            Some(FORMAT_VERSION.to_be_bytes().to_vec())
        );
        assert_eq!(check_format(&s).unwrap(), Opened::Current);
    }

    #[test]
    fn a_store_from_before_versions_is_migrated_with_its_entries() {
        // What gateways wrote until format 1: the same layouts, no version key.
        let s = MemStore::new();
        let mut b = Batch::new();
        b.put(Space::Outbox, [b"m".as_slice(), &[7; 16]].concat(), b"{}");
        b.put(
            Space::Meta,
            [b"audit/r/".as_slice(), &0u64.to_be_bytes()].concat(),
            b"{}",
        );
        s.apply(b).unwrap();
        assert_eq!(check_format(&s).unwrap(), Opened::Migrated { from: 0 });
        assert_eq!(check_format(&s).unwrap(), Opened::Current);
        assert_eq!(
            s.read(&Key::outbox_entry(&[7; 16])).unwrap(),
            Some(b"{}".to_vec())
        );
        assert_eq!(s.read_all(&Prefix::audit_records()).unwrap().len(), 1);
    }

    #[test]
    fn a_format_1_store_is_migrated_and_keeps_its_ends_of_support() {
        let s = MemStore::new();
        let mut b = Batch::new();
        b.set(&Key::format(), 1u32.to_be_bytes());
        b.set(&Key::support_end("case-1"), b"2027-01-25");
        s.apply(b).unwrap();
        // The read-only tools read it as it is.
        check_readable(&s).unwrap();
        assert_eq!(check_format(&s).unwrap(), Opened::Migrated { from: 1 });
        assert_eq!(check_format(&s).unwrap(), Opened::Current);
        assert_eq!(
            s.read(&Key::support_end("case-1")).unwrap().as_deref(),
            Some(&b"2027-01-25"[..])
        );
    }

    #[test]
    fn a_format_2_store_is_migrated_to_3_with_its_transfer_notices_indexed() {
        let s = MemStore::new();
        let mut b = Batch::new();
        b.set(&Key::format(), 2u32.to_be_bytes());
        let entry = |kind: &str, case: &str| {
            serde_json::to_vec(
                &serde_json::json!({"kind": kind, "case": case, "state": "delivered"}),
            )
            .unwrap()
        };
        b.set(
            &Key::outbox_entry(&[1; 16]),
            entry("transfer_notice", "case-1"),
        );
        b.set(
            &Key::outbox_entry(&[2; 16]),
            entry("support_plan", "case-1"),
        );
        b.set(
            &Key::inbox_entry(&[3; 16]),
            entry("transfer_notice", "case-2"),
        );
        b.set(
            &Key::inbox_entry(&[4; 16]),
            serde_json::to_vec(&serde_json::json!({"kind": null, "case": "case-2"})).unwrap(),
        );
        // Left by an interrupted migration, after which an older build purged the entry.
        b.set(&Key::transfer_notice_sent("case-3", &[5; 16]), b"");
        s.apply(b).unwrap();
        // The read-only tools read it as it is, and write nothing.
        check_readable(&s).unwrap();
        assert!(s
            .read_all(&Prefix::transfer_notices_sent("case-1"))
            .unwrap()
            .is_empty());

        assert_eq!(check_format(&s).unwrap(), Opened::Migrated { from: 2 });
        assert_eq!(check_format(&s).unwrap(), Opened::Current);
        let ids = |p: Prefix| -> Vec<Vec<u8>> {
            s.read_all(&p)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            ids(Prefix::transfer_notices_sent("case-1")),
            vec![vec![1; 16]]
        );
        assert_eq!(
            ids(Prefix::transfer_notices_received("case-2")),
            vec![vec![3; 16]]
        );
        assert!(ids(Prefix::transfer_notices_sent("case-2")).is_empty());
        assert!(ids(Prefix::transfer_notices_received("case-1")).is_empty());
        assert!(ids(Prefix::transfer_notices_sent("case-3")).is_empty());
        assert_eq!(
            s.read(&Key::transfer_notice_sent("case-1", &[1; 16]))
                .unwrap(),
            Some(vec![])
        );
    }

    #[test]
    fn a_format_2_entry_that_does_not_decode_stops_the_migration_naming_it() {
        let s = MemStore::new();
        let mut b = Batch::new();
        b.set(&Key::format(), 2u32.to_be_bytes());
        b.set(&Key::inbox_entry(&[9; 16]), b"{not json");
        s.apply(b).unwrap();
        let e = check_format(&s).unwrap_err().to_string();
        assert!(
            e.contains(&format!("inbox entry {}", "09".repeat(16))),
            "{e}"
        );
        // Nothing was recorded: the gateway refuses to start on it rather than lose a Form 7.
        assert_eq!(
            s.read(&Key::format()).unwrap(),
            Some(2u32.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn a_newer_or_damaged_format_is_refused_with_what_to_do() {
        let s = MemStore::new();
        let mut b = Batch::new();
        b.set(&Key::format(), 9u32.to_be_bytes());
        s.apply(b).unwrap();
        let e = check_format(&s).unwrap_err().to_string();
        assert!(
            e.contains("newer tsunagi (format 9)") && e.contains("restore a backup"),
            "{e}"
        );
        let mut b = Batch::new();
        b.set(&Key::format(), b"x");
        s.apply(b).unwrap();
        let e = check_format(&s).unwrap_err().to_string();
        assert!(e.contains("format version") && e.contains("1 bytes"), "{e}");
    }

    #[test]
    fn the_read_only_check_refuses_a_newer_format_and_writes_nothing() {
        // From before versions were recorded: read as it is, and left as it is.
        let s = MemStore::new();
        let mut b = Batch::new();
        b.put(Space::Inbox, b"m1", b"{}");
        s.apply(b).unwrap();
        check_readable(&s).unwrap();
        assert_eq!(s.read(&Key::format()).unwrap(), None);
        let mut b = Batch::new();
        b.set(&Key::format(), FORMAT_VERSION.to_be_bytes());
        s.apply(b).unwrap();
        check_readable(&s).unwrap();
        let mut b = Batch::new();
        b.set(&Key::format(), 9u32.to_be_bytes());
        s.apply(b).unwrap();
        let e = check_readable(&s).unwrap_err().to_string();
        assert!(e.contains("newer tsunagi (format 9)"), "{e}");
        assert_eq!(
            s.read(&Key::format()).unwrap(),
            Some(9u32.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn layouts_are_the_documented_ones() {
        let id = [1u8; 16];
        assert_eq!(Key::outbox_entry(&id).bytes[0], b'm');
        assert_eq!(Key::outbox_envelope(&id).bytes[0], b'e');
        assert_eq!(
            Key::party("case-1", "lg:131059").bytes,
            b"rcase-1\0lg:131059".to_vec()
        );
        assert!(Key::party("case-1", "x")
            .bytes
            .starts_with(&Prefix::parties("case-1").bytes));
        assert_eq!(
            Key::controller_consent("case-1", "lg:141003").bytes,
            b"ocase-1\0lg:141003".to_vec()
        );
        assert!(Key::controller_consent("case-1", "lg:131059")
            .bytes
            .starts_with(&Prefix::controller_consents("case-1").bytes));
        assert_ne!(
            Key::controller_consent("case-1", "lg:131059"),
            Key::controller_consent("case-1", "lg:141003")
        );
        assert_eq!(
            Key::controller_proof("case-1", "lg:141003").bytes,
            b"pcase-1\0lg:141003".to_vec()
        );
        assert!(Key::controller_proof("case-1", "lg:141003")
            .bytes
            .starts_with(&Prefix::controller_proofs("case-1").bytes));
        assert_eq!(Key::transferred_out("case-1").bytes, b"out/case-1".to_vec());
        assert_eq!(
            Key::transfer_notice_sent("case-1", &id).bytes,
            [b"f7o/case-1\0".as_slice(), &id].concat()
        );
        assert_eq!(
            Key::transfer_notice_received("case-1", &id).bytes,
            [b"f7i/case-1\0".as_slice(), &id].concat()
        );
        assert_eq!(audit_seq(&Key::audit_record(5).bytes), Some(5));
        assert_eq!(audit_seq(b"audit/r/short"), None);
    }
}
