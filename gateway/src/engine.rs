//! The gateway engine: durable outbox and inbox, consent store, dispatcher and receiver.
//!
//! # Durability contract
//! Nothing is acknowledged before it is on disk. A local submission returns its message id only
//! after the outbox entry and its sealed envelope are committed ([`Durable::commit`]: group commit,
//! one fsync for many writers). A peer gets an `accepted` receipt only after the inbox entry and the
//! receipt itself are committed; if the write fails (a full disk), the peer gets no receipt and
//! retries later. An outbox entry stays until a valid receipt signed by the recipient comes back.
//!
//! # Outbox states
//! `queued → delivered | retry_wait | rejected | expired | cancelled`. Transport failures and
//! unreadable receipts go to `retry_wait` with exponential backoff and jitter; a signed rejection
//! is final; an entry older than the expiry (default 5 days) becomes `expired` and leaves an
//! undelivered report in the inbox; the consent gate runs again at dispatch, and an entry whose
//! consent no longer allows it (withdrawn) becomes `cancelled` and is never sent.
//!
//! # Inbox
//! Deduplicated by `msgId`: a replay from the same sender gets the stored receipt again, once
//! what stored it is durable, and is not stored twice; another sender's envelope with a seen id
//! is refused. Concurrent copies of one envelope are serialised by an in-memory claim on the id.
//!
//! # Outcomes
//! [`Gateway::outcomes`] publishes each entry's final state (delivered, rejected, expired,
//! cancelled), so that a caller can wait for a delivery without polling the outbox (`tsunagi
//! bench` times end-to-end deliveries with it). Rejected, expired and cancelled are published
//! once that state is durable. Delivered is published once the receipt is verified and the
//! state applied: the receiver signs a receipt only after the envelope is durable in its inbox,
//! so the document is safe, and the sender's own record of the delivery is group-committed with
//! its next flush. A crash before that flush costs a re-send, which the receiver answers with
//! its stored receipt.
//!
//! # Verified consent cache
//! The stored consent of a case is read on every submission, at every dispatch gate, and twice
//! per received envelope. Its signature was verified when it was stored and its bytes do not
//! change, so the gateway remembers, per consent id, the sealed bytes it read from the store and
//! what they said once opened and verified. Each read still fetches the sealed bundle from the
//! store; when those bytes are the remembered ones, the case key must still exist (a purged case
//! opens nothing) and only the signer's certificate chain is checked again (validity at the
//! current time and the CRL, [`FederationTrust`]'s own cache making that cheap): the bundle is not
//! decrypted, hashed, parsed or verified again. Any other bytes are opened and verified in full.
//!
//! # At rest
//! Envelopes, documents and consent records are sealed with the case's key ([`Vault`]); the
//! metadata used for listings (ids, orgs, states, element names, case pseudonyms) is not personal
//! data and stays readable. Logs carry message ids, org ids and case pseudonyms only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, Notify, Semaphore};
use tsunagi_certs::FederationTrust;
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::cose::{sha256, ChainVerifier, CoseError, Sign1, Signer};
use tsunagi_protocol::directory::Directory;
use tsunagi_protocol::document::{ConsentRecipient, ConsentRecord, ConsentStatus, Document};
use tsunagi_protocol::entropy::{Entropy, SystemEntropy};
use tsunagi_protocol::envelope::{
    ConsentRef, Envelope, HeldConsent, Inbound, Receipt, ReceiptError, ReceiptStatus, Receiver,
    ReceiverState, DEFAULT_MAX_SKEW, NO_REDISCLOSURE_NOTICE,
};
use tsunagi_protocol::fetch::HandoverLink;
use tsunagi_protocol::gate::{self, GateInput, Intent};
use tsunagi_protocol::hex::encode as hex;
use tsunagi_protocol::profile::{consent_view, PolicyTable, Profile};
use tsunagi_protocol::signed::{DocBundle, DocError, Manifest};
use tsunagi_protocol::{CaseId, DocType, OrgId, Purpose, Timestamp};

use crate::audit::{self, AuditLog};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::events::{AuditEvent, AuditRecord, DocFacts};
use crate::link::{Committed, LinkClosed, Sealers};
use crate::store::{
    Batch, Durable, Key, MasterKey, Prefix, Read, SledStore, SpaceFloor, Store, StoreError, Vault,
};
use crate::transport::{InboundMessage, Transport, TransportConfig, TransportError, Trust};

mod course;
use crate::core::outbox;

mod delegation;
mod export;
mod flights;
mod gauges;
mod observe;
mod records;
mod takeover;
pub use course::{Distributed, Reminder};
pub use takeover::TakeOver;

pub use export::OtherChannel;
pub use observe::{Tallies, LIVENESS_TIMEOUT};

pub use gauges::PeerGauge;
pub use tsunagi_control::{parse_id, InboxEntry, OutState, OutboxEntry};

/// An outbox entry's final state, published by [`Gateway::outcomes`] (see the module docs for
/// when).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The envelope's msgId.
    pub id: [u8; 16],
    /// Its final state.
    pub state: OutState,
}

/// sled's page cache (sled's default is 1 GiB). What a gateway reads again soon is small: the
/// right edge of the outbox, inbox and audit trees, the consent records of active cases. On the
/// benchmark 8 MiB delivers as fast as 64 MiB did, and a restart with 100,000 envelopes queued
/// stays about 30 MiB smaller. Pages evicted are read again from the OS page cache.
const STORE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Delivery tasks the dispatcher runs at once, whatever the backlog.
const DISPATCH_TASKS: usize = 256;

/// What follows the commit of an outbox transition (see `Gateway::stage_out`).
struct AfterCommit {
    id: [u8; 16],
    outcome: Option<OutState>,
    retry_after_ms: Option<u64>,
}

/// How many outcomes a slow [`Gateway::outcomes`] subscriber may fall behind before it sees
/// [`broadcast::error::RecvError::Lagged`].
pub const OUTCOME_BACKLOG: usize = 4096;

pub use crate::core::Content;

/// Why a submission or local operation was refused. Each message is one line for staff.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The input is wrong (bad form, unknown org …).
    #[error("{0}")]
    Invalid(String),
    /// The consent gate or the policy table refused.
    #[error("refused: {0}")]
    Refused(String),
    /// Storage failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Marks an entry as being sent for as long as it lives.
struct SendingMark<'a>(&'a Mutex<HashSet<[u8; 16]>>, [u8; 16]);

impl<'a> SendingMark<'a> {
    fn new(set: &'a Mutex<HashSet<[u8; 16]>>, id: [u8; 16]) -> Self {
        set.lock().expect("sending").insert(id);
        SendingMark(set, id)
    }
}

impl Drop for SendingMark<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("sending").remove(&self.1);
    }
}

fn invalid(m: impl Into<String>) -> GatewayError {
    GatewayError::Invalid(m.into())
}

/// Decodes a stored listing entry; a damaged one is an error that names it.
/// The stated day and the day of recording of an end of support as recorded
/// ([`Gateway::support_end_record`]); a record written before the day of recording was kept
/// holds only the stated day, which then counts as both.
fn support_end_days(value: &[u8]) -> Option<(tsunagi_protocol::Date, tsunagi_protocol::Date)> {
    let mut days = std::str::from_utf8(value).ok()?.split(' ');
    let stated = days.next()?.parse().ok()?;
    let recorded = match days.next() {
        Some(d) => d.parse().ok()?,
        None => stated,
    };
    days.next().is_none().then_some((stated, recorded))
}

/// The day the retention clock of a recorded end of support started: the later of the stated
/// day and the day it was recorded here.
fn retention_day(value: &[u8]) -> Option<tsunagi_protocol::Date> {
    support_end_days(value).map(|(stated, recorded)| stated.max(recorded))
}

/// The bytes a peer's `what` fetch about `case` is answered with, logged: the answer (`sent`
/// names it), empty when there is none (`empty` says why), or
/// [`tsunagi_protocol::fetch::NOT_NOW`] when it could not be read.
/// A consent that does not verify (`GatewayError::Invalid`) shows nothing: `None`, not the
/// error that makes a fetch answer "not now" (which the asker waits on).
fn shows_nothing_if_invalid<T>(
    r: Result<Option<T>, GatewayError>,
) -> Result<Option<T>, GatewayError> {
    match r {
        Err(GatewayError::Invalid(_)) => Ok(None),
        r => r,
    }
}

fn fetch_answered(
    peer: &OrgId,
    case: &CaseId,
    (what, sent, empty): (&str, &str, &str),
    answer: Result<Option<Vec<u8>>, GatewayError>,
) -> Vec<u8> {
    let (to, case) = (peer.as_str(), case.as_str());
    match answer {
        Ok(Some(bytes)) => {
            tracing::info!(to, case, "{sent} sent on the peer's fetch");
            bytes
        }
        Ok(None) => {
            tracing::info!(to, case, "{what} fetch for {empty}: answered empty");
            Vec::new()
        }
        Err(e) => {
            // Not "nothing to show": the asker decides nothing and the sender retries.
            tracing::warn!(to, case, "{what} fetch not answered: {e}");
            tsunagi_protocol::fetch::NOT_NOW.to_vec()
        }
    }
}

fn decode_entry<T: serde::de::DeserializeOwned>(
    what: &str,
    id: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: format!("{what} {}", hex(id)),
        detail: e.to_string(),
    })
}

/// One case in [`Gateway::case_list`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseSummary {
    /// The case pseudonym.
    pub case: CaseId,
    /// Outbox entries of the case (sent, on their way or waiting).
    pub sent: u64,
    /// Inbox entries of the case.
    pub received: u64,
    /// When the newest of them was queued or received (Unix seconds).
    pub last: u64,
}

/// A batch of writes with the audit events that record them and the outbox entries it moves
/// between states (counted once committed, see [`gauges`]).
struct Tx {
    batch: Batch,
    events: Vec<AuditEvent>,
    gauges: Vec<gauges::GaugeMove>,
}

impl Tx {
    fn new() -> Self {
        Self {
            batch: Batch::new(),
            events: Vec::new(),
            gauges: Vec::new(),
        }
    }

    /// Adds `other`'s writes, events and moves after this one's.
    fn append(&mut self, other: Tx) {
        self.batch.append(other.batch);
        self.events.extend(other.events);
        self.gauges.extend(other.gauges);
    }
}

impl std::ops::Deref for Tx {
    type Target = Batch;
    fn deref(&self) -> &Batch {
        &self.batch
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Batch {
        &mut self.batch
    }
}

/// The consent that allows a send, when the caller has it at hand: the version and its signed
/// bundle, and for the distribution of a new version the one it supersedes.
struct Consenting {
    record: ConsentRecord,
    bundle: DocBundle,
    previous: Option<ConsentRecord>,
}

/// What follows a newly recorded consent version (see `Gateway::follow_up_consent`), stored
/// encrypted with it until done.
#[derive(serde::Serialize, serde::Deserialize)]
struct ConsentFollowUp {
    /// The version it follows.
    version: u32,
    /// Who gets a copy of the version.
    targets: Vec<OrgId>,
    /// Who gets a withdrawal notice (the parties of the case; none unless it withdraws).
    notify: Vec<OrgId>,
    /// The version it supersedes, as stored before it (hex of the bundle): whose parties may
    /// get the new version although it no longer names them.
    previous: Option<String>,
}

/// How many verified consents (and, apart, current plans and consent-view digests) a gateway
/// remembers (see the module docs); each cache is emptied when full.
pub const CONSENT_CACHE_CAPACITY: usize = 1024;

/// A stored consent bundle that verified: the sealed bytes it was read from, its content, the
/// digest of its signed document and its signer chain.
struct VerifiedConsent {
    sealed: Vec<u8>,
    record: ConsentRecord,
    bundle: DocBundle,
    doc_digest: [u8; 32],
    x5chain: Vec<Vec<u8>>,
}

/// A stored current plan that verified: the sealed bytes it was read from, its content and
/// its signer chain (see [`Gateway::current_plan`]).
struct VerifiedPlan {
    sealed: Vec<u8>,
    plan: tsunagi_protocol::document::SupportPlan,
    x5chain: Vec<Vec<u8>>,
}

/// The running gateway.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    /// The head of the audit chain as last known durable (see [`audit::HeadFile`]).
    head: audit::HeadFile,
    org: OrgId,
    /// Replaced when the credentials are rotated (see [`Gateway::reload`]).
    signer: RwLock<Arc<Signer>>,
    trust: RwLock<Arc<FederationTrust>>,
    directory: RwLock<Arc<Directory>>,
    policy: PolicyTable,
    durable: Durable<SledStore>,
    vault: Vault<SledStore>,
    transport: Transport,
    wake: Notify,
    rng: Mutex<SystemEntropy>,
    /// Message ids, in the order made (they key the outbox; see [`tsunagi_protocol::msg_id`]).
    msg_ids: tsunagi_protocol::msg_id::MessageIds,
    /// The one scheduler of the dispatcher: when each non-final outbox entry is due, in
    /// milliseconds since `started` (retries, held peers and start-up alike; no task sleeps on
    /// its own).
    schedule: Mutex<BTreeMap<(u64, [u8; 16]), ()>>,
    /// The origin of the schedule's times.
    started: std::time::Instant,
    /// Delivery tasks running at once (each waits for its peer's slot): what bounds the memory
    /// of a large backlog.
    dispatch_slots: Arc<Semaphore>,
    in_flight: Mutex<HashSet<[u8; 16]>>,
    /// Entries whose attempt holds the send lock (between its last state check and its
    /// outcome): what a requested cancellation refuses.
    sending: Mutex<HashSet<[u8; 16]>>,
    receiving: Mutex<HashSet<[u8; 16]>>,
    peer_slots: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
    /// Deliveries hold it shared from their last state check until the peer answered;
    /// cancellation holds it exclusively. Once an entry reads `cancelled`, no attempt for it is
    /// in flight and none can start.
    send_lock: tokio::sync::RwLock<()>,
    /// Consent follow-ups run one at a time (see `Gateway::follow_up_consent`).
    followups: tokio::sync::Mutex<()>,
    /// Peers whose deliveries an operator put on hold (e.g. announced downtime).
    held: Mutex<HashSet<OrgId>>,
    /// Final outbox states, sent after they are durable (see [`Gateway::outcomes`]).
    outcomes: broadcast::Sender<Outcome>,
    /// The digest of the audit checkpoint last carried to each peer (see `checkpoint_for`).
    checkpoints_sent: Mutex<HashMap<OrgId, [u8; 32]>>,
    /// Verified stored consents by id (see the module docs).
    consents: Mutex<HashMap<String, Arc<VerifiedConsent>>>,
    /// The digest of each recipient's view of a consent record, by the record's digest, the
    /// recipient and the elements its view keeps (see `queue_as`).
    consent_views: Mutex<ConsentViews>,
    /// Verified current plans by case, as `consents` (see `current_plan`).
    plans: Mutex<HashMap<String, Arc<VerifiedPlan>>>,
    /// Fingerprints of the signing chains (this gateway's own, and those of the authors of
    /// documents it sent) known to be in the store (see `keep_chain`).
    own_chains: Mutex<HashSet<[u8; 32]>>,
    /// Counters for the metrics, and the shutdown flag (see [`observe`]).
    counters: observe::Counters,
    /// How many rejections of each peer the trail recorded this minute.
    rejections: observe::RejectionLimit,
    /// Outbox entries by recipient and state, for `/metrics` (see [`gauges`]).
    outbox_gauges: gauges::OutboxGauges,
    /// Envelopes sealed and written to the outbox in batches per recipient (see
    /// [`crate::link`]).
    envelope_seals: Sealers<OutboxWrite, GatewayError>,
    /// Receipts sealed, with their inbox writes, in batches per sending peer.
    receipt_seals: Sealers<InboxWrite, GatewayError>,
    /// Peers' batch heads whose signature verified (envelopes and receipts of one batch cost
    /// one verification).
    batch_heads: tsunagi_protocol::batch::HeadCache,
    /// Signing chains being fetched from a peer, by peer and fingerprint: envelopes that arrive
    /// together naming the same chain share one fetch.
    chain_fetches: flights::Flights<(OrgId, [u8; 32]), ChainFetch>,
    /// Consent views being fetched from a peer, by peer, case and view digest.
    consent_fetches: flights::Flights<(OrgId, CaseId, [u8; 32]), ConsentFetch>,
}

/// View digests by consent digest, recipient and the elements the view keeps.
type ConsentViews = HashMap<([u8; 32], OrgId, Vec<String>), [u8; 32]>;

/// What a chain fetch ends with: the chain's certificates (DER), or why it failed.
type ChainFetch = Result<Vec<Vec<u8>>, String>;

/// What a consent-view fetch ends with: the view's bundle, or why it failed.
type ConsentFetch = Result<DocBundle, String>;

/// Loads the CA and CRL as a signer trust and a TLS trust.
pub fn load_trust(cfg: &Config) -> Result<(FederationTrust, Trust), String> {
    let federation =
        FederationTrust::from_files(&cfg.ca, Some(&cfg.crl)).map_err(|e| e.to_string())?;
    let tls = Trust::from_files(&cfg.ca, [&cfg.crl]).map_err(|e| e.to_string())?;
    crate::prefectures::recognise(cfg, federation, tls)
}

/// Loads and verifies the signed directory.
pub fn load_directory(
    cfg: &Config,
    trust: &FederationTrust,
    now: Timestamp,
) -> Result<Directory, String> {
    let bytes = std::fs::read(&cfg.directory)
        .map_err(|e| format!("cannot read {}: {e}", cfg.directory.display()))?;
    let mut directory = Directory::verify(&bytes, &trust.federation(), now, &Directory::limits())
        .map_err(|e| format!("{}: {e}", cfg.directory.display()))?;
    crate::prefectures::join_directories(cfg, &mut directory, trust, now)?;
    Ok(directory)
}

impl Gateway {
    /// Opens the data directory, loads credentials, trust and directory, and binds the endpoint.
    pub fn open(cfg: Config) -> Result<Gateway, String> {
        Self::open_with_clock(cfg, Arc::new(SystemClock))
    }

    /// As [`Gateway::open`], reading the time from `clock`.
    pub fn open_with_clock(cfg: Config, clock: Arc<dyn Clock>) -> Result<Gateway, String> {
        cfg.check_private_dirs().map_err(|e| e.0)?;
        cfg.check_no_interrupted_rotation()?;
        let now = clock.now();
        let (creds, signer) = crate::rotation::load_signer(&cfg)?;
        let (federation, tls) = load_trust(&cfg)?;
        let directory = load_directory(&cfg, &federation, now)?;
        if directory.member(&cfg.org).is_none() {
            return Err(format!(
                "{} is not a member in the directory {}",
                cfg.org,
                cfg.directory.display()
            ));
        }
        crate::checks::own_entry(&directory, &cfg.org, cfg.listen, &creds)
            .map_err(|e| format!("{}: {e}", cfg.directory.display()))?;
        for w in crate::checks::other_entries(&directory, &cfg.org) {
            tracing::warn!("{}: {w}", cfg.directory.display());
        }
        crate::files::create_data_dir(&cfg.data_dir).map_err(|e| e.0)?;
        let store = Arc::new(
            SledStore::open(&cfg.data_dir.join("store"), STORE_CACHE_BYTES)
                .map_err(|e| e.to_string())?,
        );
        match crate::store::schema::check_format(&*store).map_err(|e| e.to_string())? {
            crate::store::schema::Opened::Migrated { from } => {
                store.flush().map_err(|e| e.to_string())?;
                tracing::info!(
                    from,
                    to = crate::store::schema::FORMAT_VERSION,
                    "store format migrated"
                );
            }
            crate::store::schema::Opened::Created => store.flush().map_err(|e| e.to_string())?,
            crate::store::schema::Opened::Current => {}
        }
        let master = MasterKey::load_or_create(&cfg.master_key).map_err(|e| e.to_string())?;
        let vault = Vault::new(master, store.clone());
        let audit = AuditLog::open(&*store, cfg.org.clone()).map_err(|e| e.to_string())?;
        let head = audit::HeadFile::new(cfg.data_dir.join("audit.head"));
        head.check(&*store, &audit, &cfg.data_dir.join("store").join("db"))
            .map_err(|e| e.to_string())?;
        let transport = Transport::bind(
            cfg.listen,
            &creds,
            &tls,
            TransportConfig {
                max_message_bytes: cfg.delivery.max_message_bytes,
                per_peer_streams: cfg.delivery.per_peer_concurrency.max(1) * 4,
                per_peer_connections: cfg.delivery.per_peer_connections,
                idle_timeout: Duration::from_millis(cfg.delivery.idle_timeout_ms),
                connect_timeout: Duration::from_millis(cfg.delivery.connect_timeout_ms),
                max_handshakes: cfg.delivery.max_handshakes,
            },
        )
        .map_err(|e| e.to_string())?;
        let bound = Duration::from_millis(cfg.storage.stall_timeout_ms);
        let floor = SpaceFloor::new(&cfg.data_dir, cfg.storage.min_free_bytes);
        let durable = Durable::with_bound(store, bound).with_floor(floor);
        let _ = durable.admit(); // warns now if the disk is already below the floor
        let gw = Gateway {
            inner: Arc::new(Inner {
                clock,
                audit,
                head,
                org: cfg.org.clone(),
                policy: cfg.policy.clone(),
                cfg,
                signer: RwLock::new(Arc::new(signer)),
                trust: RwLock::new(Arc::new(federation)),
                directory: RwLock::new(Arc::new(directory)),
                durable,
                vault,
                transport,
                wake: Notify::new(),
                rng: Mutex::new(SystemEntropy::new()),
                msg_ids: tsunagi_protocol::msg_id::MessageIds::new(),
                schedule: Mutex::new(BTreeMap::new()),
                started: std::time::Instant::now(),
                dispatch_slots: Arc::new(Semaphore::new(DISPATCH_TASKS)),
                in_flight: Mutex::new(HashSet::new()),
                sending: Mutex::new(HashSet::new()),
                receiving: Mutex::new(HashSet::new()),
                peer_slots: Mutex::new(HashMap::new()),
                send_lock: tokio::sync::RwLock::new(()),
                followups: tokio::sync::Mutex::new(()),
                held: Mutex::new(HashSet::new()),
                outcomes: broadcast::Sender::new(OUTCOME_BACKLOG),
                consents: Mutex::new(HashMap::new()),
                plans: Mutex::new(HashMap::new()),
                consent_views: Mutex::new(HashMap::new()),
                own_chains: Mutex::new(HashSet::new()),
                checkpoints_sent: Mutex::new(HashMap::new()),
                counters: observe::Counters::default(),
                rejections: observe::RejectionLimit::default(),
                outbox_gauges: gauges::OutboxGauges::default(),
                envelope_seals: Sealers::new(tsunagi_protocol::cose::TYP_ENVELOPE, commit_outbox),
                receipt_seals: Sealers::new(tsunagi_protocol::cose::TYP_RECEIPT, commit_inbox),
                batch_heads: tsunagi_protocol::batch::HeadCache::new(),
                chain_fetches: flights::Flights::new(),
                consent_fetches: flights::Flights::new(),
            }),
        };
        gw.reschedule_all().map_err(|e| e.to_string())?;
        Ok(gw)
    }

    /// The current time, from the gateway's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Signs `doc`, which this gateway's org wrote, with the gateway's current signing
    /// credentials: a consent record, a notice, a form staff filled in.
    fn sign_own(&self, doc: &Document) -> Result<DocBundle, GatewayError> {
        DocBundle::sign(doc, &self.signer(), self.now(), &mut SystemEntropy::new())
            .map_err(|e| invalid(e.to_string()))
    }

    /// A new message id, made at `now`.
    fn new_msg_id(&self, now: Timestamp) -> [u8; 16] {
        let mut rng = self.inner.rng.lock().expect("rng");
        self.inner.msg_ids.next(now, &mut *rng)
    }

    /// This gateway's org.
    pub fn org(&self) -> &OrgId {
        &self.inner.org
    }

    /// The bound QUIC address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.inner.transport.local_addr()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// The store's group commit (backups read the store through it, see [`crate::backup`]).
    pub(crate) fn durable(&self) -> &Durable<SledStore> {
        &self.inner.durable
    }

    /// Holds (or releases) deliveries to `peer`: entries stay queued, nothing is attempted.
    pub fn hold_deliveries(&self, peer: &OrgId, hold: bool) {
        let mut held = self.inner.held.lock().expect("held");
        if hold {
            held.insert(peer.clone());
        } else {
            held.remove(peer);
        }
    }

    /// Resolves once the store stopped for good in this process (a failed write on a full
    /// disk, a hung flush): the caller should exit; a restart recovers. See [`Durable::stopped`].
    pub async fn store_stopped(&self) -> StoreError {
        self.inner.durable.stopped().await
    }

    /// Flushes performed so far (for the benchmark).
    pub fn flush_count(&self) -> u64 {
        self.inner.durable.flush_count()
    }

    /// Time spent flushing the store so far (for the benchmark).
    pub fn flush_time(&self) -> Duration {
        self.inner.durable.flush_time()
    }

    /// Bytes of keys and values written to the store so far (for the benchmark).
    pub fn logical_bytes_written(&self) -> u64 {
        self.inner.durable.logical_bytes()
    }

    /// Subscribes to final outbox states: every entry that becomes delivered, rejected,
    /// expired or cancelled after this call is sent once (delivered once the receipt is
    /// verified, the others once durable; see the module docs). A
    /// subscriber that falls more than [`OUTCOME_BACKLOG`] behind gets
    /// [`broadcast::error::RecvError::Lagged`] and should read the outbox instead.
    pub fn outcomes(&self) -> broadcast::Receiver<Outcome> {
        self.inner.outcomes.subscribe()
    }

    fn publish(&self, id: [u8; 16], state: OutState) {
        if state.is_final() {
            // No subscriber is not an error.
            let _ = self.inner.outcomes.send(Outcome { id, state });
        }
    }

    /// Bytes the store occupies on disk (for the benchmark).
    pub fn size_on_disk(&self) -> u64 {
        self.inner.durable.store().size_on_disk().unwrap_or(0)
    }

    fn trust(&self) -> Arc<FederationTrust> {
        self.inner.trust.read().expect("trust lock").clone()
    }

    /// The members of the verified directory: org and name.
    pub fn directory_members(&self) -> Vec<(OrgId, String)> {
        self.directory()
            .members
            .iter()
            .map(|m| (m.org.clone(), m.name.clone()))
            .collect()
    }

    fn directory(&self) -> Arc<Directory> {
        self.inner.directory.read().expect("directory lock").clone()
    }

    /// The gateway's document-signing key with its newest credentials (also for what it signs
    /// outside the engine: a backup's seal).
    pub fn signer(&self) -> Arc<Signer> {
        self.inner.signer.read().expect("signer lock").clone()
    }

    /// Re-reads the CRL, the directory and the gateway's own credentials; used when their files
    /// change and by the control operation `reload`. New credentials (a rotation, see
    /// [`crate::rotation`]) are used at once for new signatures and new TLS handshakes; a
    /// credentials directory caught mid-rotation is skipped with a warning (the next change
    /// completes it).
    pub fn reload(&self) -> Result<(), String> {
        let (federation, tls) = load_trust(&self.inner.cfg)?;
        let directory = load_directory(&self.inner.cfg, &federation, self.now())?;
        match crate::rotation::load_signer(&self.inner.cfg) {
            Ok((creds, signer)) => {
                self.inner
                    .transport
                    .reload_identity(&creds, &tls)
                    .map_err(|e| e.to_string())?;
                *self.inner.signer.write().expect("signer lock") = Arc::new(signer);
            }
            Err(e) => {
                tracing::warn!("keeping the current credentials: {e}");
                self.inner
                    .transport
                    .reload_trust(&tls)
                    .map_err(|e| e.to_string())?;
            }
        }
        *self.inner.trust.write().expect("trust lock") = Arc::new(federation);
        *self.inner.directory.write().expect("directory lock") = Arc::new(directory);
        tracing::info!("reloaded the CRL, the directory and the credentials");
        Ok(())
    }

    /// Runs the receiver, the dispatcher and the file watcher until the process ends.
    pub async fn run(&self) {
        let rx = self.clone();
        let serve = tokio::spawn(async move {
            let gw = rx.clone();
            rx.inner
                .transport
                .serve(move |m| {
                    let gw = gw.clone();
                    async move { gw.handle_inbound(m).await }
                })
                .await;
        });
        let tx = self.clone();
        let dispatch = tokio::spawn(async move { tx.dispatcher().await });
        let watch = self.clone();
        let watcher = tokio::spawn(async move { watch.watch_files().await });
        let chores = self.clone();
        let housekeeping = tokio::spawn(async move { chores.housekeeping().await });
        let _ = tokio::join!(serve, dispatch, watcher, housekeeping);
    }

    /// At start and every minute: resume pending consent follow-ups; every minute: sign an
    /// audit checkpoint over new records; every hour: purge cases past their retention period
    /// (R8).
    async fn housekeeping(&self) {
        let mut minutes = 0u64;
        loop {
            // First at start: what a crash or a failed write left of a consent's follow-up.
            match self.resume_consent_followups().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(queued = n, "resumed the follow-up of recorded consents"),
                Err(e) => tracing::warn!("consent follow-up failed, will retry: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            minutes += 1;
            if let Err(e) = self.audit_checkpoint().await {
                tracing::warn!("could not sign an audit checkpoint: {e}");
            }
            if minutes % 60 == 1 {
                if let Err(e) = self.raise_reminders().await {
                    tracing::warn!("could not record the due reminders, will retry: {e}");
                }
                match self.purge_due().await {
                    Ok(p) if !p.is_empty() => {
                        tracing::info!(count = p.len(), "purged cases past retention")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("retention purge failed, will retry: {e}"),
                }
            }
        }
    }

    async fn watch_files(&self) {
        let stamp = crate::rotation::stamp;
        let mut files = vec![self.inner.cfg.crl.clone(), self.inner.cfg.directory.clone()];
        files.extend(crate::rotation::credential_files(&self.inner.cfg));
        files.extend(crate::prefectures::files(&self.inner.cfg));
        let mut last: Vec<_> = files.iter().map(|p| stamp(p)).collect();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now: Vec<_> = files.iter().map(|p| stamp(p)).collect();
            if now != last {
                last = now;
                if let Err(e) = self.reload() {
                    tracing::warn!("reload failed, keeping the previous trust and directory: {e}");
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reading state

    fn load_out(&self, id: &[u8; 16]) -> Result<Option<OutboxEntry>, StoreError> {
        self.inner
            .durable
            .store()
            .read(&Key::outbox_entry(id))?
            .map(|b| decode_entry("outbox entry", id, &b))
            .transpose()
    }

    /// The entries under `prefix` for which `keep` holds, oldest first by `key_of`; only the
    /// newest `newest` of them when given. Read one at a time, holding at most about twice
    /// `newest` (or the kept ones): a listing of one case, or of the newest page, costs no memory for
    /// the rest of a large outbox or inbox. An entry that does not decode is an error naming
    /// it, never skipped.
    fn listing<T: serde::de::DeserializeOwned>(
        &self,
        prefix: Prefix,
        what: &str,
        keep: impl Fn(&T) -> bool,
        key_of: impl Fn(&T) -> (u64, &str),
        newest: Option<usize>,
    ) -> Result<Vec<T>, StoreError> {
        let mut kept: Vec<T> = Vec::new();
        let newest_first = |v: &mut Vec<T>, n: usize| {
            v.sort_by(|a, b| key_of(b).cmp(&key_of(a)));
            v.truncate(n);
        };
        self.inner
            .durable
            .store()
            .read_each(&prefix, &mut |id, b| {
                let e: T = decode_entry(what, id, b)?;
                if keep(&e) {
                    kept.push(e);
                    if let Some(n) = newest.filter(|&n| kept.len() > n.max(1).saturating_mul(2)) {
                        newest_first(&mut kept, n);
                    }
                }
                Ok(())
            })?;
        if let Some(n) = newest {
            newest_first(&mut kept, n);
        }
        kept.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
        Ok(kept)
    }

    /// Calls `f` with every outbox entry in key order, one at a time: a large outbox is never
    /// held in memory (metrics, start-up).
    pub fn outbox_each(&self, f: &mut dyn FnMut(OutboxEntry)) -> Result<(), StoreError> {
        self.inner
            .durable
            .store()
            .read_each(&Prefix::outbox_entries(), &mut |k, v| {
                f(decode_entry("outbox entry", k, v)?);
                Ok(())
            })
    }

    /// Calls `f` with every inbox entry in key order, one at a time.
    pub fn inbox_each(&self, f: &mut dyn FnMut(InboxEntry)) -> Result<(), StoreError> {
        self.inner
            .durable
            .store()
            .read_each(&Prefix::inbox_entries(), &mut |k, v| {
                f(decode_entry("inbox entry", k, v)?);
                Ok(())
            })
    }

    /// Every outbox entry, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_where(|_| true, None)
    }

    /// The outbox entries for which `keep` holds (those of one case, say), oldest first; only
    /// the newest `newest` of them when given (see [`Gateway::listing`]).
    pub fn outbox_where(
        &self,
        keep: impl Fn(&OutboxEntry) -> bool,
        newest: Option<usize>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.listing(
            Prefix::outbox_entries(),
            "outbox entry",
            keep,
            |e: &OutboxEntry| (e.created, e.id.as_str()),
            newest,
        )
    }

    /// Every case this gateway sent or received material of, in case order: how many outbox
    /// and inbox entries it has and when the newest was made. Counted one entry at a time, so a
    /// large outbox or inbox costs memory per case, not per entry.
    pub fn case_list(&self) -> Result<Vec<CaseSummary>, StoreError> {
        let mut cases: BTreeMap<CaseId, CaseSummary> = BTreeMap::new();
        let mut count = |case: CaseId, sent: bool, at: u64| {
            let c = cases.entry(case.clone()).or_insert_with(|| CaseSummary {
                case,
                sent: 0,
                received: 0,
                last: 0,
            });
            if sent {
                c.sent += 1;
            } else {
                c.received += 1;
            }
            c.last = c.last.max(at);
        };
        self.outbox_each(&mut |e| count(e.case, true, e.created))?;
        self.inbox_each(&mut |e| count(e.case, false, e.received_at))?;
        Ok(cases.into_values().collect())
    }

    /// Every inbox entry, oldest first.
    pub fn inbox(&self) -> Result<Vec<InboxEntry>, StoreError> {
        self.inbox_where(|_| true, None)
    }

    /// The inbox entries for which `keep` holds (those of one case, say), oldest first; only
    /// the newest `newest` of them when given (see [`Gateway::listing`]).
    pub fn inbox_where(
        &self,
        keep: impl Fn(&InboxEntry) -> bool,
        newest: Option<usize>,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        self.listing(
            Prefix::inbox_entries(),
            "inbox entry",
            keep,
            |e: &InboxEntry| (e.received_at, e.id.as_str()),
            newest,
        )
    }

    /// One outbox entry.
    pub fn outbox_entry(&self, id: &[u8; 16]) -> Result<Option<OutboxEntry>, StoreError> {
        self.load_out(id)
    }

    /// One inbox entry with the disclosed fields (verified again from the stored envelope).
    pub fn inbox_show(&self, id: &[u8; 16]) -> Result<Option<serde_json::Value>, GatewayError> {
        let store = self.inner.durable.store();
        let Some(meta) = store.read(&Key::inbox_entry(id))? else {
            return Ok(None);
        };
        let entry: InboxEntry = serde_json::from_slice(&meta)
            .map_err(|e| invalid(format!("inbox entry unreadable: {e}")))?;
        let mut out = serde_json::to_value(&entry).map_err(|e| invalid(e.to_string()))?;
        if let Some(sealed) = store.read(&Key::inbox_envelope(id))? {
            let bytes = self.inner.vault.open(entry.case.as_str(), &sealed, id)?;
            let env = self.stored_envelope(&bytes)?;
            let doc = env
                .bundle()
                .verify(
                    &*self.trust(),
                    Timestamp(entry.received_at),
                    &Limits::default(),
                )
                .map_err(|e| invalid(e.to_string()))?;
            out["document"] = doc.to_json();
            out["notice"] = env.notice.into();
        }
        Ok(Some(out))
    }

    /// The received document of inbox entry `id` as a bundle (the author's signed document and
    /// the items disclosed to us), to forward or keep.
    pub fn inbox_bundle(&self, id: &[u8; 16]) -> Result<Option<Vec<u8>>, GatewayError> {
        let store = self.inner.durable.store();
        let Some(meta) = store.read(&Key::inbox_entry(id))? else {
            return Ok(None);
        };
        let entry: InboxEntry = serde_json::from_slice(&meta)
            .map_err(|e| invalid(format!("inbox entry unreadable: {e}")))?;
        let Some(sealed) = store.read(&Key::inbox_envelope(id))? else {
            return Ok(None);
        };
        let bytes = self.inner.vault.open(entry.case.as_str(), &sealed, id)?;
        let env = self.stored_envelope(&bytes)?;
        Ok(Some(env.bundle().to_bytes()))
    }

    /// A received envelope as stored (the bytes as received), its document given back the
    /// author's chain it named by fingerprint (kept when it was received).
    fn stored_envelope(&self, bytes: &[u8]) -> Result<Envelope, GatewayError> {
        let mut env = Envelope::parse_unverified(bytes, &Limits::default())
            .map_err(|e| invalid(e.to_string()))?;
        env.attach_document_chain(&|kid| self.stored_chain(kid))
            .map_err(|_| {
            invalid("the stored envelope's document names its author's certificate chain by fingerprint and that chain is not in the store")
        })?;
        Ok(env)
    }

    /// The consent this gateway shares `case` under, and its signed bundle: its own when it
    /// is a controller of the case (the origin before a move, the destination after taking
    /// over), else the newest one it received.
    fn consent_for_case(
        &self,
        case: &CaseId,
    ) -> Result<Option<Arc<VerifiedConsent>>, GatewayError> {
        if let Some(own) = self.controller_consent(case, &self.inner.org)? {
            return Ok(Some(own));
        }
        let store = self.inner.durable.store();
        let Some(id) = store.read(&Key::case_consent(case.as_str()))? else {
            return Ok(None);
        };
        self.verified_consent(&String::from_utf8_lossy(&id))
    }

    /// The newest consent of `case` whose controller is `controller`, if this gateway holds
    /// one. Each controller's consent is kept apart ([`Key::controller_consent`]); a store from
    /// before that kept one consent per case, named by [`Key::case_consent`].
    fn controller_consent(
        &self,
        case: &CaseId,
        controller: &OrgId,
    ) -> Result<Option<Arc<VerifiedConsent>>, GatewayError> {
        let store = self.inner.durable.store();
        let id = match store.read(&Key::controller_consent(case.as_str(), controller.as_str()))? {
            Some(id) => id,
            None => match store.read(&Key::case_consent(case.as_str()))? {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        Ok(self
            .verified_consent(&String::from_utf8_lossy(&id))?
            .filter(|v| &v.record.controller == controller))
    }

    /// Every consent of `case` this gateway holds, one per controller, in controller order.
    pub fn consents_of_case(&self, case: &CaseId) -> Result<Vec<ConsentRecord>, GatewayError> {
        let mut out = Vec::new();
        for (_, id) in self
            .inner
            .durable
            .store()
            .read_all(&Prefix::controller_consents(case.as_str()))?
        {
            if let Some(v) = self.verified_consent(&String::from_utf8_lossy(&id))? {
                out.push(v.record.clone());
            }
        }
        if out.is_empty() {
            out.extend(self.consent_for_case(case)?.map(|v| v.record.clone()));
        }
        Ok(out)
    }

    /// The SHA-256 of the signed consent document stored under `id` (what an envelope's
    /// `consent_ref` names), verified as [`Self::verified_consent`] does.
    fn consent_digest_by_id(&self, id: &str) -> Result<Option<[u8; 32]>, GatewayError> {
        Ok(self.verified_consent(id)?.map(|v| v.doc_digest))
    }

    /// The consent bundle stored under `id`, verified (see the module docs for the cache).
    ///
    /// The cache is keyed by the sealed bytes in the store: the same sealed bytes under the same
    /// case key are the same content, so a hit skips decrypting, hashing and parsing. It still
    /// reads the store (the store, not the cache, says what is current), requires the case key
    /// (a purged case opens nothing) and re-checks the signer chain (time and CRLs move).
    fn verified_consent(&self, id: &str) -> Result<Option<Arc<VerifiedConsent>>, GatewayError> {
        let store = self.inner.durable.store();
        let Some(case) = store.read(&Key::consent_case(id))? else {
            return Ok(None);
        };
        let case = String::from_utf8_lossy(&case).into_owned();
        let Some(sealed) = store.read(&Key::consent(id))? else {
            return Ok(None);
        };
        let trust = self.trust();
        let known = self
            .inner
            .consents
            .lock()
            .expect("consents")
            .get(id)
            .filter(|c| c.sealed == sealed)
            .cloned();
        if let Some(known) = known {
            self.inner.vault.require_key(&case)?;
            self.recheck_chain(&trust, &known.x5chain)?;
            return Ok(Some(known));
        }
        let bytes = self.inner.vault.open(&case, &sealed, id.as_bytes())?;
        let bundle = DocBundle::from_bytes(&bytes, &Limits::default())
            .map_err(|e| invalid(e.to_string()))?;
        let record = consent_document(&bundle, &trust, self.now())?;
        let x5chain = Sign1::parse(&bundle.doc, "document", &Limits::default())
            .map_err(|e| invalid(e.to_string()))?
            .x5chain;
        let verified = Arc::new(VerifiedConsent {
            sealed,
            doc_digest: sha256(&bundle.doc),
            record,
            bundle,
            x5chain,
        });
        let mut cache = self.inner.consents.lock().expect("consents");
        if cache.len() >= CONSENT_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(id.to_owned(), verified.clone());
        Ok(Some(verified))
    }

    /// Checks again the signer chain of a cached document that verified before: the same
    /// bytes need no new signature check, but time and CRLs move.
    fn recheck_chain(
        &self,
        trust: &FederationTrust,
        x5chain: &[Vec<u8>],
    ) -> Result<(), GatewayError> {
        trust.verify_signer(x5chain, self.now()).map_err(|source| {
            let e = DocError::from(CoseError::Chain {
                what: "document",
                source,
            });
            invalid(format!("document failed verification: {e}"))
        })?;
        Ok(())
    }

    /// Adds a consent version to `batch` if it is newer than the stored one of its id. Each
    /// controller's consent is kept under its own key, so that the origin's and the
    /// destination's consents of one case never overwrite each other; the case's sharing
    /// pointer ([`Key::case_consent`]) moves to a received consent only while this gateway is
    /// no controller of the case. A consent id already used by another controller is refused.
    fn store_consent(
        &self,
        record: &ConsentRecord,
        bundle: &DocBundle,
        batch: &mut Batch,
    ) -> Result<bool, GatewayError> {
        if let Some(old) = self.verified_consent(&record.id)? {
            // The version held so far keeps its digest (a store from before digests were kept
            // per version has none yet).
            batch.set(
                &Key::consent_version_digest(&record.id, old.record.version),
                old.doc_digest,
            );
            let old = &old.record;
            if old.controller != record.controller {
                return Err(invalid(format!(
                    "consent: id {:?} is the consent of {} already; {} records its own consent under an id of its own",
                    record.id, old.controller, record.controller
                )));
            }
            if old.version >= record.version {
                // An older version, verified (signed by the same controller) for an envelope
                // that named it: its digest is kept, unless one is already, so the next
                // envelope naming it is judged by the newer copy without another fetch.
                let key = Key::consent_version_digest(&record.id, record.version);
                if old.version > record.version && self.inner.durable.store().read(&key)?.is_none()
                {
                    batch.set(&key, sha256(&bundle.doc));
                }
                return Ok(false);
            }
        }
        let case = record.subject.as_str();
        let sealed = self
            .inner
            .vault
            .case_key(case)?
            .seal(&bundle.to_bytes(), record.id.as_bytes());
        batch.set(&Key::consent(&record.id), sealed);
        batch.set(&Key::consent_case(&record.id), case.as_bytes());
        batch.set(
            &Key::consent_version_digest(&record.id, record.version),
            sha256(&bundle.doc),
        );
        batch.set(
            &Key::controller_consent(case, record.controller.as_str()),
            record.id.as_bytes(),
        );
        let keeps_own = record.controller != self.inner.org && {
            let store = self.inner.durable.store();
            let own_key = Key::controller_consent(case, self.inner.org.as_str());
            if store.read(&own_key)?.is_some() {
                true
            } else if let Some(id) = store.read(&Key::case_consent(case))? {
                // A store from before consents were kept per controller: its one pointer may
                // name our own consent, which then gets its own key.
                match self.verified_consent(&String::from_utf8_lossy(&id))? {
                    Some(v) if v.record.controller == self.inner.org => {
                        batch.set(&own_key, id);
                        true
                    }
                    _ => false,
                }
            } else {
                false
            }
        };
        if !keeps_own {
            batch.set(&Key::case_consent(case), record.id.as_bytes());
        }
        Ok(true)
    }

    /// Adds to `batch` the consent view `bundle` sent by reference to `to` (slim envelopes),
    /// unless it is already stored: one copy per recipient and version, not per envelope.
    fn keep_consent_view(
        &self,
        batch: &mut Batch,
        case: &CaseId,
        to: &OrgId,
        view: [u8; 32],
        bundle: impl FnOnce() -> DocBundle,
    ) -> Result<(), GatewayError> {
        let key = Key::consent_view(case.as_str(), &view, to.as_str());
        if self.inner.durable.store().read(&key)?.is_none() {
            let bytes = bundle().to_bytes();
            debug_assert_eq!(sha256(&bytes), view);
            let sealed = self
                .inner
                .vault
                .case_key(case.as_str())?
                .seal(&bytes, &view);
            batch.set(&key, sealed);
        }
        Ok(())
    }

    /// Adds to `batch` this gateway's signing chain under its fingerprint, unless it is stored
    /// already: envelope heads name it by fingerprint, and a peer may fetch it while such an
    /// envelope waits in the outbox, also after the credentials were rotated.
    fn keep_own_chain(&self, batch: &mut Batch, signer: &Signer) -> Result<(), GatewayError> {
        self.keep_chain(batch, signer.kid(), signer.x5chain())
    }

    /// Adds to `batch` the certificate chain `chain` under its fingerprint `kid`, unless it is
    /// stored already (a chain an envelope names by fingerprint: the peer may fetch it).
    fn keep_chain(
        &self,
        batch: &mut Batch,
        kid: [u8; 32],
        chain: &[Vec<u8>],
    ) -> Result<(), GatewayError> {
        let known = |kid: &[u8; 32]| {
            self.inner
                .own_chains
                .lock()
                .expect("own chains")
                .contains(kid)
        };
        if known(&kid) {
            return Ok(());
        }
        let key = Key::signer_chain(&kid);
        if self.inner.durable.store().read(&key)?.is_some() {
            // Remembered only once it is on disk: until then every envelope writes it again.
            self.inner
                .own_chains
                .lock()
                .expect("own chains")
                .insert(kid);
        } else {
            batch.set(&key, tsunagi_protocol::fetch::encode_chain(chain));
        }
        Ok(())
    }

    /// A certificate chain this gateway holds by fingerprint: its own, or one kept.
    fn stored_chain(&self, kid: &[u8; 32]) -> Option<Vec<Vec<u8>>> {
        let signer = self.signer();
        if signer.kid() == *kid {
            return Some(signer.x5chain().to_vec());
        }
        let stored = self
            .inner
            .durable
            .store()
            .read(&Key::signer_chain(kid))
            .ok()??;
        tsunagi_protocol::fetch::chain_answer(kid, &stored, &Limits::default()).ok()
    }

    /// Verifies `reply`, the answer of `to` at `addr` to envelope `bytes`. A receipt head names
    /// the recipient's chain by fingerprint: when it is not held here it is fetched from `to`
    /// (on the cached connection) and returned to be kept with the outcome.
    #[allow(clippy::type_complexity)]
    async fn check_receipt(
        &self,
        to: &OrgId,
        addr: std::net::SocketAddr,
        host: &str,
        bytes: &[u8],
        reply: Vec<u8>,
    ) -> Result<(Receipt, Vec<u8>, Option<([u8; 32], Vec<Vec<u8>>)>), String> {
        let verify = |known: &tsunagi_protocol::batch::KnownChains<'_>| {
            Receipt::verify_resolving(
                &reply,
                bytes,
                to,
                &*self.trust(),
                self.now(),
                &Limits::default(),
                Some(&self.inner.batch_heads),
                known,
            )
        };
        let mut fetched = None;
        let mut verdict = verify(&|kid| self.stored_chain(kid));
        if let Some(kid) = verdict.as_ref().err().and_then(ReceiptError::chain_needed) {
            let answer = self
                .inner
                .transport
                .request_to(to, addr, host, &tsunagi_protocol::fetch::chain_fetch(&kid))
                .await
                .map_err(|e| format!("the recipient's certificate chain: {e}"))?;
            let chain = tsunagi_protocol::fetch::chain_answer(&kid, &answer, &Limits::default())
                .map_err(|e| format!("the recipient's certificate chain: {}: {e}", e.code()))?;
            tracing::info!(
                from = to.as_str(),
                "signer chain fetched from the recipient"
            );
            verdict = verify(&|k| (*k == kid).then(|| chain.clone()));
            fetched = Some((kid, chain));
        }
        let err = match verdict {
            Ok(r) => return Ok((r, reply, fetched)),
            Err(err) => err,
        };
        // A size rejection names no envelope digest (the recipient did not read it all), so it
        // fails the digest check above: it is final when the recipient signed it.
        let known = |kid: &[u8; 32]| match &fetched {
            Some((k, chain)) if k == kid => Some(chain.clone()),
            _ => self.stored_chain(kid),
        };
        match too_large_rejection(&reply, to, &self.trust(), self.now(), &known) {
            Some(r) => Ok((r, reply, fetched)),
            None if reply.is_empty() => Err(format!(
                "{to} could not store it yet (no receipt); will retry"
            )),
            None if matches!(err, ReceiptError::NotForThisEnvelope) => {
                Err("the receipt does not answer this envelope".into())
            }
            None => Err(format!("no valid receipt: {err}")),
        }
    }

    /// The answer to a chain fetch for `kid`: the chain (certificates are public), or empty.
    fn answer_chain_fetch(&self, peer: &OrgId, kid: &[u8; 32]) -> Vec<u8> {
        let signer = self.signer();
        if signer.kid() == *kid {
            return tsunagi_protocol::fetch::encode_chain(signer.x5chain());
        }
        match self.inner.durable.store().read(&Key::signer_chain(kid)) {
            Ok(Some(chain)) => chain,
            Ok(None) => {
                tracing::info!(
                    to = peer.as_str(),
                    "chain fetch for a fingerprint not held: answered empty"
                );
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(to = peer.as_str(), "chain fetch not answered: {e}");
                Vec::new()
            }
        }
    }

    /// Sends `request` to `peer` on the connection its envelope came in on and returns the
    /// answer's bytes. The timeout is half an attempt's, since the sender's attempt still waits
    /// for the receipt after this answer. `what` names the request in the error.
    async fn ask_back(&self, peer: &OrgId, request: &[u8], what: &str) -> Result<Vec<u8>, String> {
        let timeout = Duration::from_millis(self.inner.cfg.delivery.attempt_timeout_ms / 2);
        self.inner
            .transport
            .request_back(peer, request, timeout)
            .await
            .map_err(|e| format!("{what} failed: {e}"))
    }

    /// Asks `peer` for the certificate chain whose leaf hashes to `kid` (a batch head names it
    /// by fingerprint) and checks the answer names it. Any failure is transient. Envelopes that
    /// need the same chain at once share one fetch ([`flights`]).
    async fn fetch_signer_chain(
        &self,
        peer: &OrgId,
        kid: &[u8; 32],
        limits: &Limits,
    ) -> ChainFetch {
        let fetch = || async {
            let request = tsunagi_protocol::fetch::chain_fetch(kid);
            let answer = self.ask_back(peer, &request, "chain fetch").await?;
            tsunagi_protocol::fetch::chain_answer(kid, &answer, limits)
                .map_err(|e| format!("{}: {e}", e.code()))
        };
        self.inner
            .chain_fetches
            .once((peer.clone(), *kid), fetch)
            .await
    }

    /// The answer to `peer`'s consent fetch of the view `view` of `case`: the bundle's bytes
    /// when this gateway sent that view to `peer`, else empty (see `tsunagi_protocol::fetch`).
    fn answer_consent_fetch(&self, peer: &OrgId, case: &CaseId, view: &[u8; 32]) -> Vec<u8> {
        let key = Key::consent_view(case.as_str(), view, peer.as_str());
        let answer = (|| -> Result<Option<Vec<u8>>, GatewayError> {
            let Some(sealed) = self.inner.durable.store().read(&key)? else {
                return Ok(None);
            };
            Ok(Some(self.inner.vault.open(case.as_str(), &sealed, view)?))
        })();
        fetch_answered(
            peer,
            case,
            ("consent", "consent view", "a view not sent to this peer"),
            answer,
        )
    }

    /// The answer to `peer`'s handover fetch for consent `consent` of `case`: this gateway's
    /// own view of that consent (another controller's, as that controller sent it here) with
    /// the Form 7 that controller sent here ([`HandoverLink`]), only when that consent is in
    /// force and lets the case move, and this gateway's own consent of the case is in force and
    /// shares the case with `peer` (names it by org or role, and does not exclude it); else
    /// empty (see `tsunagi_protocol::fetch`).
    fn answer_handover_fetch(&self, peer: &OrgId, case: &CaseId, consent: &str) -> Vec<u8> {
        let answer = (|| -> Result<Option<Vec<u8>>, GatewayError> {
            let today = self.now().date();
            let shares = self.own_consent_shares(case, peer)?;
            // Only a consent of another controller of this case that lets it move.
            let asked = shows_nothing_if_invalid(self.verified_consent(consent))?.filter(|v| {
                let c = &v.record;
                c.subject == *case && c.controller != self.inner.org && c.lets_case_move(today)
            });
            let Some(asked) = asked.filter(|_| shares) else {
                return Ok(None);
            };
            let Some(notice) = self.received_transfer_notice(case, &asked.record.controller)?
            else {
                return Ok(None);
            };
            Ok(Some(
                HandoverLink::new(asked.bundle.clone(), &notice).to_bytes(),
            ))
        })();
        fetch_answered(
            peer,
            case,
            (
                "handover",
                "the view of the consent that lets the case move",
                "an org this gateway's consent does not share the case with, a consent not held or not letting the case move, or no Form 7 from its controller",
            ),
            answer,
        )
    }

    /// Whether this gateway's own consent of `case` is in force and shares the case with `peer`
    /// (names it by org or role, and does not exclude it): what it shows of the case's
    /// consents to a peer that asks (handover and proof fetches) requires it.
    fn own_consent_shares(&self, case: &CaseId, peer: &OrgId) -> Result<bool, GatewayError> {
        let today = self.now().date();
        let Some(role) = self.directory().role_of(peer) else {
            return Ok(false);
        };
        let Some(own) = shows_nothing_if_invalid(self.controller_consent(case, &self.inner.org))?
        else {
            return Ok(false);
        };
        let own = &own.record;
        Ok(own.in_force(today) && !own.excluded.contains(peer) && own.names(peer, role))
    }

    /// The handover proof kept for `controller` of `case` ([`Key::controller_proof`]).
    fn stored_proof(
        &self,
        case: &CaseId,
        controller: &OrgId,
    ) -> Result<Option<Vec<HandoverLink>>, GatewayError> {
        let key = Key::controller_proof(case.as_str(), controller.as_str());
        let Some(sealed) = self.inner.durable.store().read(&key)? else {
            return Ok(None);
        };
        let bytes =
            self.inner
                .vault
                .open(case.as_str(), &sealed, controller.as_str().as_bytes())?;
        match tsunagi_protocol::fetch::proof_answer(&bytes, &Limits::default()) {
            Ok(links) => Ok(Some(links)),
            Err(e) => {
                // Shows nothing; the moves may still be shown another way.
                tracing::warn!(
                    case = case.as_str(),
                    controller = controller.as_str(),
                    "a kept handover proof does not read and is not shown: {e}"
                );
                Ok(None)
            }
        }
    }

    /// The moves from `case`'s opener to `controller` that this gateway can show: none needed
    /// (`Some(empty)`) when `controller` opened the case; the proof kept for it; for this
    /// gateway itself, one made from the consent views it holds (another controller's view
    /// that handed the case over to it, with the Form 7 that controller sent here, after the
    /// moves to that controller). `None` when it has none.
    fn proof_for(
        &self,
        case: &CaseId,
        controller: &OrgId,
    ) -> Result<Option<Vec<HandoverLink>>, GatewayError> {
        if case.opener().as_ref() == Some(controller) {
            return Ok(Some(Vec::new()));
        }
        if *controller == self.inner.org {
            // The views held now first: a newer version of the origin's consent that still
            // hands the case over here is what receivers holding that version accept.
            let today = self.now().date();
            let store = self.inner.durable.store();
            for (from, id) in store.read_all(&Prefix::controller_consents(case.as_str()))? {
                let Ok(from) = String::from_utf8_lossy(&from).parse::<OrgId>() else {
                    continue;
                };
                if from == self.inner.org {
                    continue;
                }
                // One that no longer verifies shows nothing; another still may.
                let Some(view) =
                    shows_nothing_if_invalid(self.verified_consent(&String::from_utf8_lossy(&id)))?
                else {
                    continue;
                };
                if !view.record.handed_over_to(&self.inner.org, today) {
                    continue;
                }
                // The person agreed; the Form 7 shows the case moved here.
                let Some(notice) = self.received_transfer_notice(case, &from)? else {
                    continue;
                };
                if let Some(mut links) = self.proof_for(case, &from)? {
                    links.push(HandoverLink::new(view.bundle.clone(), &notice));
                    if links.len() <= tsunagi_protocol::fetch::MAX_PROOF_LINKS {
                        return Ok(Some(links));
                    }
                }
            }
        }
        self.stored_proof(case, controller)
    }

    /// Adds `links`, the proof of `controller` for `case`, to `batch` (encrypted).
    fn keep_proof(
        &self,
        case: &CaseId,
        controller: &OrgId,
        links: &[HandoverLink],
        batch: &mut Batch,
    ) -> Result<(), GatewayError> {
        if links.len() > tsunagi_protocol::fetch::MAX_PROOF_LINKS {
            return Ok(()); // more moves than a proof may show: none kept
        }
        let sealed = self.inner.vault.case_key(case.as_str())?.seal(
            &tsunagi_protocol::fetch::encode_proof(links),
            controller.as_str().as_bytes(),
        );
        batch.set(
            &Key::controller_proof(case.as_str(), controller.as_str()),
            sealed,
        );
        Ok(())
    }

    /// The answer to `peer`'s proof fetch about envelope `msg_id` of `case`: the moves from the
    /// case's opener to this gateway ([`Self::proof_for`]), only when this gateway is sending
    /// `peer` that envelope of the case and its own consent of the case is active (its period
    /// may not have begun) and shares the case with `peer` (names it by org or role, and does
    /// not exclude it); else empty (see `tsunagi_protocol::fetch`).
    fn answer_proof_fetch(&self, peer: &OrgId, case: &CaseId, msg_id: &[u8; 16]) -> Vec<u8> {
        let answer = (|| -> Result<Option<Vec<u8>>, GatewayError> {
            let sending = self
                .outbox_entry(msg_id)?
                .is_some_and(|e| e.to == *peer && e.case == *case && !e.state.is_final());
            let Some(role) = self.directory().role_of(peer) else {
                return Ok(None);
            };
            let Some(own) =
                shows_nothing_if_invalid(self.controller_consent(case, &self.inner.org))?
            else {
                return Ok(None);
            };
            let own = &own.record;
            let shares = own.status == ConsentStatus::Active
                && !own.excluded.contains(peer)
                && own.names(peer, role);
            if !(sending && shares) {
                return Ok(None);
            }
            Ok(self
                .proof_for(case, &self.inner.org)?
                .filter(|links| !links.is_empty())
                .map(|links| tsunagi_protocol::fetch::encode_proof(&links)))
        })();
        fetch_answered(
            peer,
            case,
            (
                "proof",
                "the moves that made this gateway a controller of the case",
                "an org this gateway's consent does not share the case with, or a case whose moves to this gateway are not held",
            ),
            answer,
        )
    }

    /// Asks `peer`, on the connection its envelope came in on, for the moves that made it a
    /// controller of `case` (a proof fetch, see `tsunagi_protocol::fetch`): the links, or none
    /// when it answers nothing. Any other failure is transient: no receipt, the sender retries.
    async fn fetch_proof(
        &self,
        peer: &OrgId,
        case: &CaseId,
        msg_id: &[u8; 16],
        limits: &Limits,
    ) -> Result<Option<Vec<HandoverLink>>, String> {
        let request = tsunagi_protocol::fetch::proof_fetch(case, msg_id);
        self.ask_to_show(peer, &request, "proof fetch", |a| {
            tsunagi_protocol::fetch::proof_answer(a, limits)
        })
        .await
    }

    /// Asks `peer` on the connection its envelope came in on (`what` names the fetch) and reads
    /// the answer with `read`: what it shows, or none when it answers nothing. Any other
    /// failure (no answer, `NOT_NOW`, malformed) is transient: no receipt, the sender retries.
    async fn ask_to_show<T>(
        &self,
        peer: &OrgId,
        request: &[u8],
        what: &str,
        read: impl FnOnce(&[u8]) -> Result<T, tsunagi_protocol::fetch::ConsentFetchError>,
    ) -> Result<Option<T>, String> {
        let answer = self.ask_back(peer, request, what).await?;
        match read(&answer) {
            Ok(shown) => Ok(Some(shown)),
            Err(tsunagi_protocol::fetch::ConsentFetchError::NotHeld) => Ok(None),
            Err(e) => Err(format!("{}: {e}", e.code())),
        }
    }

    /// Asks `peer`, on the connection its envelope came in on, for its own view of consent
    /// `consent` of `case` and the Form 7 that came with the move (a handover fetch, see
    /// `tsunagi_protocol::fetch`), or none when it answers nothing. Any other failure is
    /// transient: no receipt, the sender retries.
    async fn fetch_handover(
        &self,
        peer: &OrgId,
        case: &CaseId,
        consent: &str,
        limits: &Limits,
    ) -> Result<Option<HandoverLink>, String> {
        let request = tsunagi_protocol::fetch::handover_fetch(case, consent);
        self.ask_to_show(peer, &request, "handover fetch", |a| {
            tsunagi_protocol::fetch::handover_answer(a, limits)
        })
        .await
    }

    /// Asks `peer`, on the connection its envelope came in on, for the consent view `view` of
    /// `case`, and checks the answer (see `tsunagi_protocol::fetch`). Any failure is transient.
    /// Envelopes that need the same view at once share one fetch ([`flights`]).
    async fn fetch_consent_view(
        &self,
        peer: &OrgId,
        case: &CaseId,
        view: &[u8; 32],
        limits: &Limits,
    ) -> ConsentFetch {
        let fetch = || async {
            let request = tsunagi_protocol::fetch::consent_fetch(case, view);
            let answer = self.ask_back(peer, &request, "consent fetch").await?;
            tsunagi_protocol::fetch::consent_answer(view, &answer, limits)
                .map_err(|e| format!("{}: {e}", e.code()))
        };
        self.inner
            .consent_fetches
            .once((peer.clone(), case.clone(), *view), fetch)
            .await
    }

    /// Records that `org` took part in `case`: material of the case went to it or came from it.
    fn note_party(batch: &mut Batch, case: &CaseId, org: &OrgId) {
        batch.set(&Key::party(case.as_str(), org.as_str()), b"");
    }

    /// Whether `org` took part in `case` with this gateway ([`Gateway::note_party`]).
    fn is_party(&self, case: &CaseId, org: &OrgId) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .durable
            .store()
            .read(&Key::party(case.as_str(), org.as_str()))?
            .is_some())
    }

    /// Whether this gateway exchanged material of `case` with anyone.
    fn has_parties(&self, case: &CaseId) -> Result<bool, StoreError> {
        Ok(!self.recipients_of_case(case)?.is_empty())
    }

    /// The orgs that took part in `case` with this gateway: those it delivered material of the
    /// case to and those it received material of the case from.
    fn recipients_of_case(&self, case: &CaseId) -> Result<Vec<OrgId>, StoreError> {
        self.inner
            .durable
            .store()
            .read_all(&Prefix::parties(case.as_str()))?
            .into_iter()
            .map(|(org, _)| {
                std::str::from_utf8(&org)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        what: format!("a party record of {case}"),
                        detail: "the org id does not parse".into(),
                    })
            })
            .collect()
    }

    fn audit(&self, tx: &mut Tx, event: AuditEvent) {
        tx.events.push(event);
    }

    /// Commits `tx` durably: its audit events are chained in apply order (see [`crate::audit`]).
    async fn commit(&self, mut tx: Tx) -> Result<(), StoreError> {
        let moves = std::mem::take(&mut tx.gauges);
        self.commit_writes(tx).await?;
        self.inner.outbox_gauges.apply(moves);
        Ok(())
    }

    /// [`commit`](Self::commit) without counting the outbox moves.
    async fn commit_writes(&self, tx: Tx) -> Result<(), StoreError> {
        if tx.events.is_empty() {
            return self.inner.durable.commit(tx.batch).await;
        }
        let counted = observe::Counters::pending(&tx.events);
        let (applied, head) = self.inner.audit.apply(
            self.inner.durable.store(),
            tx.batch,
            tx.events,
            self.now(),
            &self.signer(),
        )?;
        self.inner.durable.note_applied(applied);
        self.inner.durable.commit(Batch::new()).await?;
        // This apply is durable now: the head file may name it.
        self.inner.head.record(head);
        self.inner.counters.add(counted);
        Ok(())
    }

    /// Applies `tx` now and makes it durable in the background, without a flush of its own
    /// when a later commit's flush covers it ([`Durable::settle`]): for what may be lost in a
    /// crash without harm, the sender's delivered state (a re-send after a restart is answered
    /// with the stored receipt). Keeps the critical path at two durable commits, the
    /// sender's outbox write and the receiver's inbox write.
    fn commit_settled(&self, mut tx: Tx) -> Result<(), StoreError> {
        let moves = std::mem::take(&mut tx.gauges);
        let counted = observe::Counters::pending(&tx.events);
        let head = if tx.events.is_empty() {
            let bytes = tx.batch.logical_bytes();
            self.inner.durable.store().apply(tx.batch)?;
            self.inner.durable.note_applied(bytes);
            None
        } else {
            let (applied, head) = self.inner.audit.apply(
                self.inner.durable.store(),
                tx.batch,
                tx.events,
                self.now(),
                &self.signer(),
            )?;
            self.inner.durable.note_applied(applied);
            Some(head)
        };
        // Applied: a listing shows the new state from now on, and so do the gauges.
        self.inner.outbox_gauges.apply(moves);
        let gw = self.clone();
        tokio::spawn(async move {
            match gw.inner.durable.settle().await {
                Ok(()) => {
                    if let Some(head) = head {
                        gw.inner.head.record(head);
                    }
                    gw.inner.counters.add(counted);
                }
                Err(e) => tracing::warn!("a delivery outcome did not reach the disk: {e}"),
            }
        });
        Ok(())
    }

    /// Records that member of staff `staff` asked for `op` (on `case`, about `subject`) in the
    /// audit chain: called by the control socket after the operation succeeded.
    pub async fn record_staff_action(
        &self,
        staff: &str,
        op: &str,
        case: Option<CaseId>,
        subject: Option<String>,
    ) -> Result<(), GatewayError> {
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::StaffAction {
                staff: staff.to_owned(),
                op: op.to_owned(),
                case,
                subject,
            },
        );
        Ok(self.commit(tx).await?)
    }

    /// Audit records so far (oldest first).
    pub fn audit_records(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        self.inner
            .durable
            .store()
            .read_all(&Prefix::audit_records())?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    what: format!(
                        "audit record {}",
                        crate::store::schema::audit_seq(&[b"audit/r/".as_slice(), &k].concat())
                            .map_or("?".into(), |s| s.to_string())
                    ),
                    detail: format!("{e}; run `tsunagi audit verify` to see what was altered"),
                })
            })
            .collect()
    }

    /// Audit records so far as typed events (oldest first); a record that does not read as an
    /// event is an error naming it.
    pub fn audit_events(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_records()?
            .into_iter()
            .map(|v| {
                let seq = v["seq"].as_u64().unwrap_or(0);
                serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
                    what: format!("audit record {seq}"),
                    detail: format!("{e}; run `tsunagi audit verify` to see what was altered"),
                })
            })
            .collect()
    }

    /// Recomputes the audit chain and checks its signed checkpoints.
    pub fn audit_verify(&self) -> Result<audit::AuditReport, StoreError> {
        audit::verify(
            self.inner.durable.store(),
            &self.inner.org,
            &*self.trust(),
            self.now(),
        )
    }

    /// Keeps `bytes`, a checkpoint `peer` sent along, as the witness of `peer`'s audit trail; a
    /// checkpoint showing that trail shorter than already witnessed, or rewritten, is logged and
    /// recorded in this gateway's own trail.
    ///
    /// A checkpoint naming its signer's chain by fingerprint only (as it travels) gets that chain
    /// put back first, from `fetched` (chains fetched for the message that carried it, not yet
    /// stored) or the chains kept here, so that the kept witness is read on its own later.
    fn keep_witness(
        &self,
        tx: &mut Tx,
        peer: &OrgId,
        bytes: &[u8],
        fetched: &[([u8; 32], Vec<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        use tsunagi_protocol::checkpoint::{self, Witnessed};
        let known = |kid: &[u8; 32]| {
            fetched
                .iter()
                .find(|(k, _)| k == kid)
                .map(|(_, c)| c.clone())
                .or_else(|| self.stored_chain(kid))
        };
        let bytes = match checkpoint::with_chain(bytes, &known) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    peer = peer.as_str(),
                    "a peer's audit checkpoint not kept: {e}"
                );
                return Ok(());
            }
        };
        let Some((verdict, new, kept)) =
            audit::keep_witness(self.inner.durable.store(), tx, peer, &bytes, &*self.trust())?
        else {
            return Ok(());
        };
        let what = match verdict {
            Witnessed::WentBack => "went back",
            Witnessed::Forked => "was rewritten",
            Witnessed::Newer | Witnessed::NotNewer => return Ok(()),
        };
        let kept_seq = kept.map_or(0, |k| k.seq);
        tracing::warn!(
            peer = peer.as_str(),
            kept = kept_seq,
            now = new.seq,
            "the audit trail of a peer {what}: its checkpoint at record {} contradicts the one witnessed at record {kept_seq}",
            new.seq
        );
        self.audit(
            tx,
            AuditEvent::PeerTrailContradicted {
                peer: peer.clone(),
                witnessed: kept_seq,
                presented: new.seq,
                what: what.into(),
            },
        );
        Ok(())
    }

    /// Asks every other member of the directory for the newest checkpoint of this gateway's
    /// audit trail it keeps, and compares the local trail with them (`audit verify --peers`).
    pub async fn audit_verify_peers(&self) -> Result<audit::WitnessReport, GatewayError> {
        use tsunagi_protocol::checkpoint::witness_query;
        let directory = self.directory();
        let timeout = Duration::from_millis(self.inner.cfg.delivery.attempt_timeout_ms);
        let mut witnesses = Vec::new();
        for member in &directory.members {
            if member.org == self.inner.org {
                continue;
            }
            let answer = match member.endpoint() {
                Err(e) => audit::PeerWitness::Unreachable(e.to_string()),
                Ok((addr, host)) => match tokio::time::timeout(
                    timeout,
                    self.inner
                        .transport
                        .request_to(&member.org, addr, &host, &witness_query()),
                )
                .await
                {
                    Err(_) => audit::PeerWitness::Unreachable("timed out".into()),
                    Ok(Err(e)) => audit::PeerWitness::Unreachable(e.to_string()),
                    Ok(Ok(b)) if b.is_empty() => audit::PeerWitness::None,
                    Ok(Ok(b)) => audit::PeerWitness::Held(b),
                },
            };
            witnesses.push((member.org.clone(), answer));
        }
        Ok(audit::compare_with_witnesses(
            self.inner.durable.store(),
            &self.inner.org,
            &*self.trust(),
            &witnesses,
        )?)
    }

    /// Stops the gateway gracefully: refuses new connections and closes the QUIC endpoint
    /// (waiting a few seconds for streams in flight), signs a checkpoint over the trail, and
    /// returns once every commit begun before it is durable.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.counters.set_stopping();
        // The dispatcher starts nothing new from here on.
        self.inner.wake.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.transport.close()).await;
        self.audit_checkpoint().await?;
        self.inner.durable.commit(Batch::new()).await
    }

    /// Signs a checkpoint over the latest audit record now.
    pub async fn audit_checkpoint(&self) -> Result<bool, StoreError> {
        let done =
            self.inner
                .audit
                .checkpoint(self.inner.durable.store(), self.now(), &self.signer())?;
        self.inner.durable.commit(Batch::new()).await?;
        Ok(done)
    }

    /// Everything recorded about `case` (R9), as JSON records.
    pub fn audit_subject(&self, case: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        audit::subject(self.inner.durable.store(), case)
    }

    /// The person's disclosure page for `case` (Japanese HTML, R9). An unknown case is an error.
    pub fn audit_subject_html(&self, case: &str) -> Result<String, GatewayError> {
        let records: Vec<AuditRecord> = self
            .audit_events()?
            .into_iter()
            .filter(|r| r.event.case().is_some_and(|c| c.as_str() == case))
            .collect();
        if records.is_empty() {
            return Err(invalid(format!(
                "no record of {case} is kept here: check the case id"
            )));
        }
        let directory = self.directory();
        let name = |o: &str| -> String {
            o.parse::<OrgId>()
                .ok()
                .and_then(|o| directory.member(&o).map(|m| m.name.clone()))
                .unwrap_or_else(|| o.to_owned())
        };
        let own = name(self.inner.org.as_str());
        let issuer = crate::disclosure::Issuer {
            name: &own,
            org: self.inner.org.as_str(),
            contact: self.inner.cfg.contact.as_deref().unwrap_or(&own),
            issued: self.now(),
        };
        Ok(crate::disclosure::page(case, &records, &[], &issuer, &name))
    }

    // -----------------------------------------------------------------------------------------
    // Submitting

    /// Signs (or takes) a document, checks consent and policy for `to`, redacts, seals the
    /// envelope and queues it durably. Returns the queued entry.
    pub async fn submit(
        &self,
        to: &OrgId,
        purpose: Purpose,
        content: Content,
    ) -> Result<OutboxEntry, GatewayError> {
        self.submit_idempotent(to, purpose, content, None).await
    }

    /// As [`Gateway::submit`]; a `client_ref` the gateway has seen before with the same request
    /// returns the entry it queued then instead of queuing again (for adapters that may resubmit
    /// after a crash); with another request it is refused ([`crate::idempotency`]).
    pub async fn submit_idempotent(
        &self,
        to: &OrgId,
        purpose: Purpose,
        content: Content,
        client_ref: Option<&str>,
    ) -> Result<OutboxEntry, GatewayError> {
        self.inner.durable.admit()?;
        let ref_key = client_ref.map(|r| {
            let k = Key::client_ref(&tsunagi_protocol::cose::sha256(r.as_bytes()));
            (k, crate::idempotency::request_digest(to, purpose, &content))
        });
        if let Some((k, digest)) = &ref_key {
            if let Some(v) = self.inner.durable.store().read(k)? {
                let (id, stored) = crate::idempotency::split(&v)
                    .ok_or_else(|| invalid("a stored client_ref is damaged"))?;
                if let Some(e) = self.load_out(&id)? {
                    crate::idempotency::check_same(stored, digest, &e, to, purpose, &content)
                        .map_err(invalid)?;
                    // What the first request queued may be applied and not yet durable: the
                    // retry is acknowledged only once it is (a barrier).
                    self.inner.durable.commit(Batch::new()).await?;
                    return Ok(e);
                }
            }
        }
        let now = self.now();
        // Verified (or signed) here once: what follows reads the document from `known`.
        let (bundle, known) = match content {
            Content::Form(json) => {
                let (b, doc) = self.sign_form(json)?;
                (b, Some(doc))
            }
            Content::Bundle(bytes) => {
                let b = DocBundle::from_bytes(&bytes, &Limits::default())
                    .map_err(|e| invalid(format!("document: {e}")))?;
                let v = b
                    .verify(&*self.trust(), now, &Limits::default())
                    .map_err(|e| invalid(format!("document failed verification: {e}")))?;
                (b, v.document().and_then(Result::ok))
            }
        };
        self.submit_checked(to, purpose, &bundle, known.as_ref(), ref_key)
            .await
    }

    /// The rest of [`Gateway::submit_idempotent`], for a `bundle` signed or verified by the
    /// caller (`known`: its document, when fully disclosed): the author's role, the course,
    /// then gate, redact, seal and queue. [`Gateway::distribute`] verifies a document once and
    /// queues it to every recipient through this.
    async fn submit_checked(
        &self,
        to: &OrgId,
        purpose: Purpose,
        bundle: &DocBundle,
        known: Option<&Document>,
        ref_key: Option<(Key, [u8; 32])>,
    ) -> Result<OutboxEntry, GatewayError> {
        // Only an author of the right role may write each type (hospitals assessments, authorities
        // plans and notices …); the receiver checks the same.
        let manifest = bundle
            .manifest_unverified(&Limits::default())
            .map_err(|e| invalid(format!("document: {e}")))?;
        let author_role = self.directory().role_of(&manifest.author);
        let delegated = if author_role.is_some_and(|r| manifest.doc_type.may_be_authored_by(r)) {
            Ok(())
        } else {
            self.delegated(&manifest.author, &manifest.subject, manifest.doc_type)?
        };
        if let Err(d) = &delegated {
            if !matches!(
                d,
                tsunagi_protocol::document::delegation::DelegationDenied::NotDelegated { .. }
            ) {
                return Err(invalid(format!("document: {d}")));
            }
            let role = author_role.map_or("unknown org".to_owned(), |r| r.to_string());
            return Err(invalid(format!(
                "document: {} is a {role}, and a {role} may not author a {} (authors: {})",
                manifest.author,
                manifest.doc_type,
                manifest
                    .doc_type
                    .author_roles()
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.check_course(bundle, to, purpose)?;
        let outgoing = Outgoing {
            bundle,
            known: Known::Checked(known),
        };
        self.queue_as(None, to, purpose, outgoing, None, ref_key)
            .await
    }

    /// Gate, redact, seal and queue one envelope of `bundle` to `to`.
    async fn queue(
        &self,
        to: &OrgId,
        purpose: Purpose,
        bundle: &DocBundle,
        consent: Option<Consenting>,
    ) -> Result<OutboxEntry, GatewayError> {
        self.queue_as(None, to, purpose, bundle.into(), consent, None)
            .await
    }

    /// As [`Gateway::queue`], reusing `id` (an entry that waited for consent) when given.
    async fn queue_as(
        &self,
        id: Option<[u8; 16]>,
        to: &OrgId,
        purpose: Purpose,
        outgoing: Outgoing<'_>,
        consent: Option<Consenting>,
        client_ref: Option<(Key, [u8; 32])>,
    ) -> Result<OutboxEntry, GatewayError> {
        let Outgoing { bundle, known } = outgoing;
        let now = self.now();
        let manifest = bundle
            .manifest_unverified(&Limits::default())
            .map_err(|e| invalid(format!("document: {e}")))?;
        let kind = manifest.doc_type;
        let case = manifest.subject.clone();
        if to == &self.inner.org {
            return Err(invalid(format!(
                "{to} is this gateway; send to another org"
            )));
        }
        let directory = self.directory();
        let role = directory
            .role_of(to)
            .ok_or_else(|| invalid(format!("{to} is not a member of the federation directory")))?;
        // The consent being recorded (its own copies), or the stored one the case is shared
        // under: borrowed from the verified-consent cache, not copied.
        let (fresh, held, previous) = match consent {
            Some(c) => (Some((c.record, c.bundle)), None, c.previous),
            None if kind == DocType::Consent => (
                Some((
                    consent_document(bundle, &self.trust(), self.now())?,
                    bundle.clone(),
                )),
                None,
                None,
            ),
            None => (None, self.consent_for_case(&case)?, None),
        };
        let consent = fresh
            .as_ref()
            .map(|(r, b)| (r, b))
            .or_else(|| held.as_deref().map(|v| (&v.record, &v.bundle)));
        let period = self.support_period_for(&case, purpose, Some(outgoing))?;
        let transferred = self.check_transferred_out(&case, kind, to)?;
        let party = self.is_party(&case, to)?;
        let decision = transferred.and_then(|()| {
            gate::evaluate(&GateInput {
                consent: consent.map(|(r, _)| r),
                intent: Intent {
                    case: &case,
                    purpose,
                    doc_type: kind,
                    sender: &self.inner.org,
                    recipient: to,
                    recipient_role: role,
                },
                now: now.date(),
                support_period: period.as_ref(),
                party,
                previous: previous.as_ref(),
            })
            .into_result()
        });
        if let Err(reason) = decision {
            let mut batch = Tx::new();
            self.audit(
                &mut batch,
                AuditEvent::GateDenied {
                    case: case.clone(),
                    to: to.clone(),
                    kind,
                    purpose,
                    code: reason.code().into(),
                    rule: reason.rule().into(),
                },
            );
            self.commit(batch).await?;
            tracing::info!(
                case = case.as_str(),
                to = to.as_str(),
                code = reason.code(),
                "send refused by the consent gate"
            );
            return Err(GatewayError::Refused(reason.to_string()));
        }
        let (consent, consent_bundle) = consent.ok_or_else(|| {
            GatewayError::Refused("no consent is recorded for the case (R1)".into())
        })?;
        let profile = self.inner.policy.profile(kind, role);
        if profile == Profile::None {
            return Err(GatewayError::Refused(format!(
                "the policy table gives a {role} nothing of a {kind} (R2)"
            )));
        }
        // The recipient's view of the consent record: its own coverage, not the others'. Its
        // digest is what the envelope names; redacting and encoding the view to hash it again
        // for every envelope cost a few per cent of the CPU, so it is kept per record, recipient
        // and coverage.
        let consent_elements = consent_view(consent, to, role);
        let consent_hash = sha256(&consent_bundle.doc);
        let view_key = (consent_hash, to.clone(), consent_elements.clone());
        let known_view = self
            .inner
            .consent_views
            .lock()
            .expect("consent views")
            .get(&view_key)
            .copied();
        let redact_view = || consent_bundle.redact(|e| consent_elements.iter().any(|v| v == e));
        let (view_digest, mut view_bundle) = match known_view {
            Some(digest) => (digest, None),
            None => {
                let v = redact_view();
                let digest = sha256(&v.to_bytes());
                let mut views = self.inner.consent_views.lock().expect("consent views");
                if views.len() >= CONSENT_CACHE_CAPACITY {
                    views.clear();
                }
                views.insert(view_key, digest);
                (digest, Some(v))
            }
        };
        let view = if kind == DocType::Consent {
            bundle.redact(|e| consent_elements.iter().any(|v| v == e))
        } else {
            bundle.redact(|e| profile.discloses(kind, e))
        };
        let withheld: Vec<String> = kind
            .element_ids()
            .into_iter()
            .filter(|e| !view.items.iter().any(|i| &i.element == e))
            .collect();
        let msg_id = id.unwrap_or_else(|| self.new_msg_id(now));
        let expires = now.plus(self.inner.cfg.delivery.expiry_secs);
        let mut envelope = Envelope {
            msg_id,
            iat: now,
            exp: expires,
            sender: self.inner.org.clone(),
            aud: to.clone(),
            kind,
            purpose,
            case: case.clone(),
            consent_ref: ConsentRef {
                id: consent.id.clone(),
                version: consent.version,
                hash: consent_hash,
                view: view_digest,
            },
            doc: view.doc.clone(),
            disclosures: view.items.clone(),
            in_reply_to: None,
            notice: NO_REDISCLOSURE_NOTICE.into(),
            checkpoint: self.checkpoint_for(to)?,
        };
        // The author's chain travels by fingerprint: kept here (below, in the outbox commit) for
        // the recipient's chain fetch.
        let author_chain = envelope.strip_document_chain();
        let (entry, _) = outbox::create(
            outbox::NewEntry {
                id: hex(&msg_id),
                to: to.clone(),
                kind,
                purpose,
                case: case.clone(),
                profile: if kind == DocType::Consent {
                    "consent_view".into()
                } else {
                    profile.to_string()
                },
                withheld: withheld.clone(),
                now: now.0,
                expires: expires.0,
            },
            outbox::Create::Queue,
        );
        let mut batch = Tx::new();
        batch.set(
            &Key::outbox_entry(&msg_id),
            serde_json::to_vec(&entry).unwrap_or_default(),
        );
        if kind == DocType::TransferNotice {
            batch.set(&Key::transfer_notice_sent(case.as_str(), &msg_id), b"");
        }
        batch.gauges.push(gauges::GaugeMove::written(&entry, None));
        if kind != DocType::Consent {
            // The envelope names the recipient's consent view by digest: keep the view (once per
            // recipient and version) to answer its consent fetch. A consent record travels as
            // the envelope's own document and needs none.
            self.keep_consent_view(&mut batch, &case, to, view_digest, || {
                view_bundle.take().unwrap_or_else(redact_view)
            })?;
        }
        let signer = self.signer();
        self.keep_own_chain(&mut batch, &signer)?;
        if let Some((kid, chain)) = &author_chain {
            self.keep_chain(&mut batch, *kid, chain)?;
        }
        if !withheld.is_empty() {
            self.audit(
                &mut batch,
                AuditEvent::Redacted {
                    id: entry.id.clone(),
                    case: case.clone(),
                    to: to.clone(),
                    kind,
                    profile: entry.profile.clone(),
                    withheld: withheld.clone(),
                },
            );
        }
        let mut facts = DocFacts::default();
        self.note_document(
            bundle,
            Some(&manifest),
            known,
            &case,
            &mut batch,
            &mut facts,
        )?;
        self.audit(
            &mut batch,
            AuditEvent::Queued {
                id: entry.id.clone(),
                case: case.clone(),
                to: to.clone(),
                kind,
                facts,
            },
        );
        batch.remove(&Key::outbox_waiting(&msg_id));
        if let Some((k, digest)) = client_ref {
            batch.set(&k, crate::idempotency::stored_value(&msg_id, &digest));
        }
        // Sealed in the next batch for this recipient and written with it (see `crate::link`).
        let pending = OutboxWrite {
            gw: self.clone(),
            tx: batch,
            msg_id,
            case: case.clone(),
        };
        self.inner
            .envelope_seals
            .seal(to, envelope.body(), signer, pending)
            .await?;
        tracing::info!(
            id = entry.id.as_str(),
            case = case.as_str(),
            to = to.as_str(),
            kind = kind.as_str(),
            "queued"
        );
        self.schedule(now.0, msg_id);
        Ok(entry)
    }

    // -----------------------------------------------------------------------------------------
    // Consent (on the controller's gateway)

    /// Records a new consent version (signed here as controller) and sends it, each party in its
    /// own view, to every org it names, every org the previous version named (for an org no
    /// longer covered, that copy tells it its part has ended) and every org that took part in
    /// the case; on withdrawal cancels every queued envelope of the case and notifies every party.
    /// A consent whose period is already over is refused. Returns the envelopes queued.
    pub async fn record_consent(
        &self,
        json: serde_json::Value,
    ) -> Result<Vec<OutboxEntry>, GatewayError> {
        let doc = Document::from_value(json).map_err(|e| invalid(format!("consent: {e}")))?;
        let Document::Consent(record) = &doc else {
            return Err(invalid("consent: document_type must be consent"));
        };
        if record.controller != self.inner.org {
            return Err(invalid(format!(
                "consent: the controller is {} but this gateway is {}; record consent on the controller's gateway",
                record.controller, self.inner.org
            )));
        }
        let today = self.now().date();
        if record.status == ConsentStatus::Active && record.period.to < today {
            return Err(invalid(format!(
                "consent: period.to: the consent expired on {}, before today ({today}); record a new consent with a current period",
                record.period.to
            )));
        }
        let stored = self.verified_consent(&record.id)?;
        let previous = stored.as_ref().map(|v| v.record.clone());
        // Consent ids are predictable: a new one must name this authority, which makes it this
        // authority's alone at every gateway (an id naming no authority could be taken first by
        // another authority, and the real consent would then not be kept there). Later versions
        // of a consent recorded before this rule keep their id.
        if previous.is_none() && record.id_authority().is_none() {
            let code = self.inner.org.code();
            return Err(invalid(format!(
                "consent: id: {:?} names no authority; a new consent's id starts with this authority's 6-digit code (consent-{code}-…, e.g. consent-{code}-2026-0007), so that no other authority can take it first",
                record.id
            )));
        }
        if let Some(old) = &previous {
            if old.controller != record.controller {
                return Err(invalid(format!(
                    "consent: id {:?} is the consent of {} already; record this gateway's own consent under an id of its own",
                    record.id, old.controller
                )));
            }
            if record.subject != old.subject {
                return Err(invalid(format!(
                    "consent: subject: version {} is about {}, but version {} of {:?} is about {}; a consent record stays with its case (record a consent of its own for the other case)",
                    record.version, record.subject, old.version, record.id, old.subject
                )));
            }
            if record.version <= old.version {
                let again = if record == old {
                    "; this very version is recorded already, and the gateway queues its copies and notices itself"
                } else {
                    ""
                };
                return Err(invalid(format!(
                    "consent: version {} is not newer than the recorded version {}; a new version must supersede it{again}",
                    record.version, old.version
                )));
            }
        }
        let bundle = self.sign_own(&doc)?;
        let withdrawn = record.status == ConsentStatus::Withdrawn;
        // Who gets this version: the orgs it names, those the previous version named, and the
        // parties of the case (each holds a version that this one supersedes); on a withdrawal
        // every party also gets a withdrawal notice.
        let named = |c: &ConsentRecord| -> Vec<OrgId> {
            c.recipients
                .iter()
                .filter_map(|r| match r {
                    ConsentRecipient::Org { org } => Some(org.clone()),
                    ConsentRecipient::Role { .. } => None,
                })
                .collect()
        };
        let parties = self.recipients_of_case(&record.subject)?;
        let mut targets: Vec<OrgId> = named(record);
        targets.extend(previous.as_ref().map(named).unwrap_or_default());
        targets.extend(parties.iter().cloned());
        let mut seen = HashSet::new();
        targets.retain(|o| *o != self.inner.org && seen.insert(o.clone()));
        let followup = ConsentFollowUp {
            version: record.version,
            targets,
            notify: if withdrawn { parties } else { Vec::new() },
            previous: stored.map(|v| hex(&v.bundle.to_bytes())),
        };
        // The case id names the authority that opened the case; any other authority is a
        // controller of it only by a move the person agreed to, which it must be able to show
        // (every other gateway refuses its consent otherwise).
        let case = &record.subject;
        let proof = match case.opener() {
            // A later version of a consent recorded here (its withdrawal included) is this
            // gateway's to record whatever the case id says: ids from before this rule name no
            // authority. Its case stays the one of the versions before (checked above).
            _ if previous.is_some() => None,
            None => {
                return Err(invalid(format!(
                    "consent: subject: {case} names no authority; a case id starts with the 6-digit code of the authority that opened it (case-<code>-…, e.g. case-131059-2026-0007 for lg:131059), and gateways refuse a consent of any other case id"
                )))
            }
            Some(opener) if opener == self.inner.org => None,
            Some(opener) => match self.proof_for(case, &self.inner.org)? {
                Some(links) => Some(links),
                None => {
                    return Err(invalid(format!(
                        "consent: subject: {case} was opened by {opener}, and no consent held here hands it over to {me} (a consent of the case's controller granting relocation_transfer that names {me}, and that controller's transfer notice (Form 7) to {me}); record this consent once the person's consent to the move and Form 7 have arrived from the case's controller",
                        me = self.inner.org
                    )))
                }
            },
        };
        let mut batch = Tx::new();
        self.store_consent(record, &bundle, &mut batch)?;
        if let Some(links) = proof {
            // The moves that made this gateway a controller, kept as the views show them now:
            // gateways that never held the case ask for them, and a later version of the
            // origin's consent may no longer show them.
            if self.stored_proof(case, &self.inner.org)?.is_none() {
                self.keep_proof(case, &self.inner.org, &links, &mut batch)?;
            }
        }
        // What follows the version is kept with it, so that a crash or a failed write before
        // every copy and notice is queued cannot lose them: see `follow_up_consent`.
        let sealed = self.inner.vault.case_key(record.subject.as_str())?.seal(
            &serde_json::to_vec(&followup).map_err(|e| invalid(e.to_string()))?,
            record.id.as_bytes(),
        );
        batch.set(&Key::consent_followup(&record.id), sealed);
        if record.status == ConsentStatus::Withdrawn {
            // The retention clock starts at the withdrawal unless support ended before (R8).
            let end_key = Key::support_end(record.subject.as_str());
            if self.inner.durable.store().read(&end_key)?.is_none() {
                batch.set(&end_key, self.support_end_record(record.date, None));
            }
        }
        self.audit(
            &mut batch,
            AuditEvent::ConsentRecorded {
                case: record.subject.clone(),
                consent: record.id.clone(),
                version: record.version,
                status: record.status,
                staff: Some(hex(&sha256(record.recorded_by.trim().as_bytes())[..8])),
            },
        );
        // Held until its follow-up is done, so that housekeeping does not run it meanwhile.
        let followups = self.inner.followups.lock().await;
        self.commit(batch).await?;
        crate::crashpoint::pass(crate::crashpoint::Point::AfterConsentRecorded);
        self.follow_up_consent(&record.id, &followups).await.inspect_err(|e| {
            tracing::warn!(
                consent = record.id.as_str(),
                version = record.version,
                "consent recorded, but queuing its copies and notices failed; the gateway queues them within a minute or when it starts: {e}"
            )
        })
    }

    /// Queues what follows a newly recorded consent version, kept durable with the version
    /// ([`Key::consent_followup`]) until done: on a withdrawal the case's queued envelopes are
    /// cancelled; the version goes to every org in its follow-up (see `record_consent`); a
    /// version that is not a withdrawal releases the envelopes waiting for consent; a
    /// withdrawal notice goes to every party. Each copy and notice is queued in one commit with
    /// a mark ([`Key::consent_followup_sent`]), so running it again after a crash or a failed
    /// write queues only what is missing: `record_consent` runs it, and housekeeping runs the
    /// pending ones when the gateway starts and every minute.
    /// `_one_at_a_time`: follow-ups run one at a time.
    async fn follow_up_consent(
        &self,
        id: &str,
        _one_at_a_time: &tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<Vec<OutboxEntry>, GatewayError> {
        let store = self.inner.durable.store();
        let Some(sealed) = store.read(&Key::consent_followup(id))? else {
            return Ok(Vec::new());
        };
        let Some(verified) = self.verified_consent(id)? else {
            // Gone since (a purge removes both): nothing is left to follow up.
            let mut gone = Tx::new();
            gone.remove(&Key::consent_followup(id));
            self.commit(gone).await?;
            return Ok(Vec::new());
        };
        let (record, bundle) = (&verified.record, &verified.bundle);
        let followup: ConsentFollowUp = serde_json::from_slice(&self.inner.vault.open(
            record.subject.as_str(),
            &sealed,
            id.as_bytes(),
        )?)
        .map_err(|e| invalid(format!("the follow-up of consent {id:?} is damaged: {e}")))?;
        let mut queued = vec![];
        // A newer version was recorded since: it has a follow-up of its own.
        if followup.version == record.version {
            let previous = followup
                .previous
                .as_deref()
                .and_then(tsunagi_protocol::hex::decode)
                .and_then(|b| DocBundle::from_bytes(&b, &Limits::default()).ok())
                .and_then(|b| consent_document(&b, &self.trust(), self.now()).ok());
            let withdrawn = record.status == ConsentStatus::Withdrawn;
            if withdrawn {
                self.cancel_case(&record.subject, "consent withdrawn")
                    .await?;
            }
            for org in &followup.targets {
                let consent = Consenting {
                    record: record.clone(),
                    bundle: bundle.clone(),
                    previous: previous.clone(),
                };
                queued.extend(self.queue_followup(id, b'c', org, bundle, consent).await?);
            }
            if !withdrawn {
                queued.extend(self.release_awaiting(&record.subject).await?);
            }
            if withdrawn && !followup.notify.is_empty() {
                let notice = Document::from_value(serde_json::json!({
                    "document_type": "consent_withdrawal",
                    "author": self.inner.org.as_str(),
                    "subject": record.subject.as_str(),
                    "consent_id": record.id,
                    "consent_version": record.version,
                    "withdrawn_on": record.date.to_string(),
                    "message": "本人が同意を撤回しました。以後、本件に関する情報の共有を停止してください。",
                }))
                .map_err(|e| invalid(format!("withdrawal notice: {e}")))?;
                let nb = self.sign_own(&notice)?;
                for org in &followup.notify {
                    let consent = Consenting {
                        record: record.clone(),
                        bundle: bundle.clone(),
                        previous: None,
                    };
                    queued.extend(self.queue_followup(id, b'n', org, &nb, consent).await?);
                }
            }
        }
        let mut done = Tx::new();
        done.remove(&Key::consent_followup(id));
        let sent = Prefix::consent_followups_sent(id);
        for (k, _) in store.read_all(&sent)? {
            done.remove(&sent.key(&k));
        }
        // Durable with the next flush, not waited for: lost in a crash, the follow-up runs again,
        // finds every mark and queues nothing.
        self.commit_settled(done)?;
        Ok(queued)
    }

    /// Queues `what` of a consent follow-up (`b'c'` its copy, `b'n'` a withdrawal notice, the
    /// document `bundle`) for `org`, with its mark in the same commit; nothing when the mark says
    /// it was queued before, or when the gate refuses it (logged).
    async fn queue_followup(
        &self,
        id: &str,
        what: u8,
        org: &OrgId,
        bundle: &DocBundle,
        consent: Consenting,
    ) -> Result<Option<OutboxEntry>, GatewayError> {
        let mark = Key::consent_followup_sent(id, consent.record.version, what, org.as_str());
        if self.inner.durable.store().read(&mark)?.is_some() {
            return Ok(None);
        }
        let done = (mark, sha256(&bundle.doc));
        match self
            .queue_as(
                None,
                org,
                Purpose::ConsentManagement,
                bundle.into(),
                Some(consent),
                Some(done),
            )
            .await
        {
            Ok(e) => Ok(Some(e)),
            // Refused by the gate, or not sendable at all (say an org no longer in the
            // directory): logged, and the other recipients still get theirs. Only a storage
            // failure stops the follow-up, to be run again.
            Err(e @ (GatewayError::Refused(_) | GatewayError::Invalid(_))) => {
                let what = if what == b'n' {
                    "withdrawal notice"
                } else {
                    "consent record"
                };
                if matches!(e, GatewayError::Refused(_)) {
                    tracing::info!(to = org.as_str(), "{what} not sent: {e}");
                } else {
                    tracing::warn!(to = org.as_str(), "{what} not sent: {e}");
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs every pending consent follow-up (see [`Gateway::follow_up_consent`]).
    async fn resume_consent_followups(&self) -> Result<usize, GatewayError> {
        let pending = self
            .inner
            .durable
            .store()
            .read_all(&Prefix::consent_followups())?;
        let mut queued = 0;
        for (id, _) in pending {
            let id = String::from_utf8_lossy(&id).into_owned();
            let one_at_a_time = self.inner.followups.lock().await;
            queued += self.follow_up_consent(&id, &one_at_a_time).await?.len();
        }
        Ok(queued)
    }

    /// Withdraws consent `id`: records the next version with status withdrawn, dated today.
    pub async fn withdraw_consent(&self, id: &str) -> Result<Vec<OutboxEntry>, GatewayError> {
        let mut record = self
            .verified_consent(id)?
            .ok_or_else(|| invalid(format!("no consent {id:?} is recorded here")))?
            .record
            .clone();
        if record.status == ConsentStatus::Withdrawn {
            return Err(invalid(format!(
                "consent {id:?} is already withdrawn (version {})",
                record.version
            )));
        }
        record.version += 1;
        record.status = ConsentStatus::Withdrawn;
        record.date = self.now().date();
        self.record_consent(serde_json::to_value(&record).map_err(|e| invalid(e.to_string()))?)
            .await
    }

    /// Cancels outbox entry `id` on request (`tsunagi outbox cancel`, the console's cancel
    /// button; `staff` names the member of staff, `None` the operator). Refused for a final
    /// entry. Like a withdrawal it holds the send lock exclusively while it cancels, so once the
    /// entry reads `cancelled` no attempt for it is in flight and none can start: an attempt in
    /// flight is waited for (at most the attempt timeout and a second), and then decides — a
    /// delivered entry is refused, one waiting to retry is cancelled. An attempt still in flight
    /// after that is refused as in flight.
    pub async fn cancel_entry(
        &self,
        id: &[u8; 16],
        staff: Option<&str>,
    ) -> Result<OutboxEntry, GatewayError> {
        let missing = || invalid(format!("no outbox entry {}", hex(id)));
        let flying = || self.inner.sending.lock().expect("sending").contains(id);
        let refused = |r: outbox::CancelRefused| invalid(r.to_string());
        let e = self.load_out(id)?.ok_or_else(missing)?;
        outbox::may_cancel(&e, false).map_err(refused)?;
        let wait = Duration::from_millis(self.inner.cfg.delivery.attempt_timeout_ms)
            + Duration::from_secs(1);
        let Ok(_exclusive) = tokio::time::timeout(wait, self.inner.send_lock.write()).await else {
            let e = self.load_out(id)?.ok_or_else(missing)?;
            outbox::may_cancel(&e, flying()).map_err(refused)?;
            return Err(invalid(format!(
                "outbox entry {} was not cancelled: the gateway is busy sending; try again in a minute",
                e.id
            )));
        };
        // Read again: the attempt waited for may have made it final.
        let e = self.load_out(id)?.ok_or_else(missing)?;
        let (e, effects) =
            outbox::cancel_requested(e, self.now().0, staff.map(str::to_owned), flying())
                .map_err(refused)?;
        let mut batch = Tx::new();
        let after = self.stage_out(&mut batch, &e, effects)?;
        self.commit(batch).await?;
        self.after_commit(after);
        tracing::info!(
            id = e.id.as_str(),
            to = e.to.as_str(),
            "outbox entry cancelled on request"
        );
        Ok(e)
    }

    /// Cancels every non-final outbox entry of `case`.
    async fn cancel_case(&self, case: &CaseId, why: &str) -> Result<usize, GatewayError> {
        let _exclusive = self.inner.send_lock.write().await;
        let mut batch = Tx::new();
        let mut n = 0;
        let mut cancelled = Vec::new();
        for e in self.outbox_where(|e| e.case == *case && !e.state.is_final(), None)? {
            let (e, effects) = outbox::transition(
                e,
                outbox::Input::Cancel {
                    now: self.now().0,
                    why: why.into(),
                    at_dispatch: false,
                },
            );
            cancelled.push(self.stage_out(&mut batch, &e, effects)?);
            n += 1;
        }
        if n > 0 {
            self.commit(batch).await?;
            for after in cancelled {
                self.after_commit(after);
            }
            tracing::info!(
                case = case.as_str(),
                count = n,
                "cancelled queued envelopes: {why}"
            );
        }
        Ok(n)
    }

    // -----------------------------------------------------------------------------------------
    // Plans, relocation, support end, retention, statistics

    /// Records what later steps need of a document being sent or received: the current plan
    /// of a case this gateway authors (for relocation), the end of support (for retention), and
    /// for statistics whether a plan was made jointly and how support ended. Adds the
    /// non-personal facts to `event`.
    ///
    /// `known` is the document's content when the caller signed or verified it (a submission,
    /// a received envelope): then it is not verified again.
    ///
    /// `manifest` is the bundle's, when the caller has parsed it already.
    fn note_document(
        &self,
        bundle: &DocBundle,
        manifest: Option<&Manifest>,
        known: Known<'_>,
        case: &CaseId,
        tx: &mut Tx,
        facts: &mut DocFacts,
    ) -> Result<(), GatewayError> {
        let parsed;
        let manifest = match manifest {
            Some(m) => m,
            None => match bundle.manifest_unverified(&Limits::default()) {
                Ok(m) => {
                    parsed = m;
                    &parsed
                }
                Err(_) => return Ok(()),
            },
        };
        let document = || document_of(bundle, known, &self.trust(), self.now());
        match manifest.doc_type {
            DocType::SupportPlan if manifest.author == self.inner.org => {
                if let Some(Document::SupportPlan(plan)) = document().as_deref() {
                    if self.is_newer_plan(plan)? {
                        let sealed = self
                            .inner
                            .vault
                            .case_key(case.as_str())?
                            .seal(&bundle.to_bytes(), b"plan");
                        tx.set(&Key::plan(case.as_str()), sealed);
                        self.audit(
                            tx,
                            AuditEvent::PlanCurrent {
                                case: case.clone(),
                                version: plan.version,
                            },
                        );
                    }
                    course::plan_facts(plan, facts);
                }
            }
            DocType::MeetingRecord => {
                if let Some(Document::MeetingRecord(m)) = document().as_deref() {
                    facts.meeting_on = Some(m.held_on);
                    facts.extension_to = m.extension_to;
                    facts.meeting_author = Some(m.author.clone());
                }
            }
            DocType::ConsentWithdrawal => {
                // Withdrawal ends support too: the retention clock starts (R8), unless an end of
                // support was recorded already.
                let end_key = Key::support_end(case.as_str());
                if let Some(Document::ConsentWithdrawal(w)) = document().as_deref() {
                    if self.inner.durable.store().read(&end_key)?.is_none()
                        && !self.ended_elsewhere(case, &w.author)?
                    {
                        tx.set(&end_key, self.support_end_record(w.withdrawn_on, None));
                    }
                }
            }
            DocType::SupportEnd => {
                if let Some(Document::SupportEnd(end)) = document().as_deref() {
                    let transferred =
                        end.outcome == tsunagi_protocol::document::SupportOutcome::Transferred;
                    if transferred && end.author == self.inner.org {
                        self.note_transfer_out(case, end.ended_on, tx)?;
                    }
                    // Another controller's end (the origin's transfer-out end, say) does not end
                    // the support of a gateway that controls the case itself.
                    if !self.ended_elsewhere(case, &end.author)? {
                        self.note_support_end(tx, case, end.ended_on)?;
                    }
                    facts.outcome = Some(end.outcome);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether a withdrawal or support end by `author` ends another controller's part of `case`
    /// only: this gateway controls the case itself (it holds a consent of its own for it) and
    /// `author` is another authority. Its own support goes on under its own consent.
    fn ended_elsewhere(&self, case: &CaseId, author: &OrgId) -> Result<bool, GatewayError> {
        Ok(*author != self.inner.org
            && self
                .inner
                .durable
                .store()
                .read(&Key::controller_consent(
                    case.as_str(),
                    self.inner.org.as_str(),
                ))?
                .is_some())
    }

    /// The support period the gate holds a `plan_implementation` send to (R7): the period of the
    /// plan being sent when this gateway authored it, else of the current plan it authored for
    /// the case. `None` for other purposes and where this gateway authored no plan (the plan's
    /// author enforces the period; a receiver does not know it).
    fn support_period_for(
        &self,
        case: &CaseId,
        purpose: Purpose,
        sending: Option<Outgoing<'_>>,
    ) -> Result<Option<tsunagi_protocol::period::SupportPeriod>, GatewayError> {
        if purpose != Purpose::PlanImplementation {
            return Ok(None);
        }
        if let Some(Outgoing { bundle, known }) = sending {
            let m = bundle
                .manifest_unverified(&Limits::default())
                .map_err(|e| invalid(e.to_string()))?;
            if m.doc_type == DocType::SupportPlan && m.author == self.inner.org {
                let doc = match known {
                    Known::Checked(Some(d)) => std::borrow::Cow::Borrowed(d),
                    _ => std::borrow::Cow::Owned(full_document(bundle, &self.trust(), self.now())?),
                };
                if let Document::SupportPlan(p) = doc.as_ref() {
                    return Ok(Some(p.support_period.clone()));
                }
            }
        }
        Ok(self.current_plan(case)?.map(|p| p.support_period))
    }

    /// The current plan of `case` as JSON, if this gateway authored and sent one (the
    /// `plan_current` request: what a revision, such as an extension of its period, starts
    /// from).
    pub fn current_plan_json(
        &self,
        case: &CaseId,
    ) -> Result<Option<serde_json::Value>, GatewayError> {
        self.current_plan(case)?
            .map(|p| serde_json::to_value(p).map_err(|e| invalid(format!("plan: {e}"))))
            .transpose()
    }

    /// The current plan of `case`, if this gateway authored and sent one.
    ///
    /// Cached as [`Gateway::verified_consent`] caches consents: each copy of a distributed plan
    /// asks for the current plan several times (its period, its version), and the same sealed
    /// bytes verified once need only their signer chain checked again (time and CRLs move).
    /// The store, not the cache, says which plan is current; a purged case opens nothing.
    fn current_plan(
        &self,
        case: &CaseId,
    ) -> Result<Option<tsunagi_protocol::document::SupportPlan>, GatewayError> {
        let Some(sealed) = self.inner.durable.store().read(&Key::plan(case.as_str()))? else {
            return Ok(None);
        };
        let known = self
            .inner
            .plans
            .lock()
            .expect("plans")
            .get(case.as_str())
            .filter(|p| p.sealed == sealed)
            .cloned();
        if let Some(known) = known {
            self.inner.vault.require_key(case.as_str())?;
            self.recheck_chain(&self.trust(), &known.x5chain)?;
            return Ok(Some(known.plan.clone()));
        }
        let bytes = self.inner.vault.open(case.as_str(), &sealed, b"plan")?;
        let bundle = DocBundle::from_bytes(&bytes, &Limits::default())
            .map_err(|e| invalid(e.to_string()))?;
        let Document::SupportPlan(plan) = full_document(&bundle, &self.trust(), self.now())? else {
            return Ok(None);
        };
        let x5chain = Sign1::parse(&bundle.doc, "document", &Limits::default())
            .map_err(|e| invalid(e.to_string()))?
            .x5chain;
        let mut cache = self.inner.plans.lock().expect("plans");
        if cache.len() >= CONSENT_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(
            case.as_str().to_owned(),
            Arc::new(VerifiedPlan {
                sealed,
                plan: (*plan).clone(),
                x5chain,
            }),
        );
        Ok(Some(*plan))
    }

    /// A residence change reported locally (an adapter event): relocate the case if this
    /// gateway authored its plan. Returns the destination and the transfer notice's outbox
    /// entry (`queued`, or `awaiting_consent`), or no entry when the same authority serves the
    /// new municipality.
    pub async fn residence_change(
        &self,
        json: serde_json::Value,
    ) -> Result<serde_json::Value, GatewayError> {
        let Document::ResidenceChange(change) =
            Document::from_value(json).map_err(|e| invalid(format!("residence change: {e}")))?
        else {
            return Err(invalid(
                "residence change: document_type must be residence_change",
            ));
        };
        let (destination, entry) = self.relocate(&change, None).await?;
        // A destination no directory lists has no gateway: the notice waits for another channel.
        let no_gateway = entry.is_none() && self.directory().member(&destination).is_none();
        Ok(
            serde_json::json!({"destination": destination.as_str(), "transfer": entry, "no_gateway": no_gateway}),
        )
    }

    async fn relocate(
        &self,
        change: &tsunagi_protocol::document::ResidenceChange,
        reporter: Option<&OrgId>,
    ) -> Result<(OrgId, Option<OutboxEntry>), GatewayError> {
        use tsunagi_protocol::relocation::{draft_transfer, Relocated};
        if let Some(to) = self.transferred_to(&change.subject)? {
            return Err(GatewayError::Refused(format!(
                "relocation of {} refused: the case was transferred out to {to}, which is now its controller and handles later moves (R5)",
                change.subject
            )));
        }
        let plan = self.current_plan(&change.subject)?.ok_or_else(|| {
            invalid(format!(
                "no plan of {} was sent from this gateway; the plan's author transfers the case",
                change.subject
            ))
        })?;
        // Receivers take a Form 7 only from the controller of the consent it goes under: a plan
        // author that does not hold the person's consent would have its notice refused for good.
        if self
            .controller_consent(&change.subject, &self.inner.org)?
            .is_none()
        {
            return Err(GatewayError::Refused(format!(
                "relocation of {} refused: this gateway holds no consent of its own for the case; the authority that holds the person's consent sends the transfer notice (Form 7)",
                change.subject
            )));
        }
        let today = self.now().date();
        let drafted = draft_transfer(&self.directory(), &plan, change, today)
            .map_err(|e| invalid(e.to_string()))?;
        if let Relocated::NoGateway {
            municipality,
            notice,
        } = &drafted
        {
            return self.no_gateway(change, municipality, notice).await;
        }
        if let (Relocated::Transfer { destination, .. }, Some(reporter)) = (&drafted, reporter) {
            if destination == reporter {
                return Err(GatewayError::Refused(format!(
                    "relocation of {} refused: the move was reported by {reporter}, the authority the case would be transferred to; a move is taken from the hospital, a support party or staff here",
                    change.subject
                )));
            }
        }
        let Relocated::Transfer {
            destination,
            notice,
        } = drafted
        else {
            let mut tx = Tx::new();
            self.audit(
                &mut tx,
                AuditEvent::Relocation {
                    case: change.subject.clone(),
                    to: plan.author.clone(),
                    transfer: false,
                },
            );
            self.commit(tx).await?;
            return Ok((plan.author.clone(), None));
        };
        let bundle = self.sign_own(&notice)?;
        let entry = match self
            .queue(&destination, Purpose::RelocationTransfer, &bundle, None)
            .await
        {
            Ok(e) => e,
            Err(GatewayError::Refused(why)) => {
                self.hold_for_consent(&destination, Purpose::RelocationTransfer, &bundle, &why)
                    .await?
            }
            Err(e) => return Err(e),
        };
        tracing::info!(case = change.subject.as_str(), to = destination.as_str(), state = ?entry.state, "transfer notice drafted");
        Ok((destination, Some(entry)))
    }

    /// Keeps a signed document for `to` until a consent version covers it.
    async fn hold_for_consent(
        &self,
        to: &OrgId,
        purpose: Purpose,
        bundle: &DocBundle,
        why: &str,
    ) -> Result<OutboxEntry, GatewayError> {
        let manifest = bundle
            .manifest_unverified(&Limits::default())
            .map_err(|e| invalid(e.to_string()))?;
        let now = self.now();
        let id = self.new_msg_id(now);
        let (entry, effects) = outbox::create(
            outbox::NewEntry {
                id: hex(&id),
                to: to.clone(),
                kind: manifest.doc_type,
                purpose,
                case: manifest.subject.clone(),
                profile: String::new(),
                withheld: vec![],
                now: now.0,
                expires: now.plus(self.inner.cfg.delivery.expiry_secs).0,
            },
            outbox::Create::AwaitConsent { why: why.into() },
        );
        let mut tx = Tx::new();
        let sealed = self
            .inner
            .vault
            .case_key(manifest.subject.as_str())?
            .seal(&bundle.to_bytes(), &id);
        tx.set(&Key::outbox_waiting(&id), sealed);
        if manifest.doc_type == DocType::TransferNotice {
            tx.set(
                &Key::transfer_notice_sent(manifest.subject.as_str(), &id),
                b"",
            );
        }
        self.apply_out(&entry, effects, tx).await?;
        Ok(entry)
    }

    /// Sends what waited for consent on `case` if the consent now covers it.
    async fn release_awaiting(&self, case: &CaseId) -> Result<Vec<OutboxEntry>, GatewayError> {
        let mut released = vec![];
        for e in self.outbox_where(
            |e| e.case == *case && e.state == OutState::AwaitingConsent,
            None,
        )? {
            let Some(id) = parse_id(&e.id) else { continue };
            let Some(sealed) = self.inner.durable.store().read(&Key::outbox_waiting(&id))? else {
                continue;
            };
            let bytes = self.inner.vault.open(case.as_str(), &sealed, &id)?;
            let bundle = DocBundle::from_bytes(&bytes, &Limits::default())
                .map_err(|e| invalid(e.to_string()))?;
            match self
                .queue_as(Some(id), &e.to, e.purpose, (&bundle).into(), None, None)
                .await
            {
                Ok(entry) => {
                    tracing::info!(
                        id = entry.id.as_str(),
                        to = entry.to.as_str(),
                        "consent now covers a waiting document; queued"
                    );
                    released.push(entry);
                }
                Err(GatewayError::Refused(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(released)
    }

    /// The record of an end of support of `case` stated as `stated`, given what is recorded
    /// (`existing`): `"<stated> <recorded on>"`, where the day it was first recorded here is
    /// kept across later copies and corrections. Retention starts at the later of the two
    /// ([`retention_day`]): a notice dated long ago (a typing error, or a controller's mistake)
    /// would otherwise have every party purge the case at the next housekeeping, and another
    /// copy of the same end processed later does not move the clock. A correction of the stated
    /// day (a new support end) replaces it.
    fn support_end_record(
        &self,
        stated: tsunagi_protocol::Date,
        existing: Option<&[u8]>,
    ) -> String {
        let recorded_on = existing
            .and_then(|v| support_end_days(v).map(|(_, recorded)| recorded))
            .unwrap_or_else(|| self.now().date());
        format!("{stated} {recorded_on}")
    }

    /// Adds to `tx` the end of support of `case` on `stated` ([`Gateway::support_end_record`]).
    fn note_support_end(
        &self,
        tx: &mut Tx,
        case: &CaseId,
        stated: tsunagi_protocol::Date,
    ) -> Result<(), GatewayError> {
        let key = Key::support_end(case.as_str());
        let existing = self.inner.durable.store().read(&key)?;
        tx.set(&key, self.support_end_record(stated, existing.as_deref()));
        Ok(())
    }

    /// Purges every case whose support ended more than the retention period ago (R8).
    /// Returns the purged case ids.
    pub async fn purge_due(&self) -> Result<Vec<String>, GatewayError> {
        let today = self.now().date();
        let years = self.inner.cfg.retention_years;
        let mut purged = vec![];
        for (case, v) in self
            .inner
            .durable
            .store()
            .read_all(&Prefix::support_ends())?
        {
            let case = String::from_utf8_lossy(&case).into_owned();
            let ended = retention_day(&v).ok_or_else(|| {
                invalid(format!(
                    "the recorded end of support of {case} is not a date; the store is damaged"
                ))
            })?;
            if ended.add_months(12 * years) <= today {
                self.purge_case(&case).await?;
                purged.push(case);
            }
        }
        Ok(purged)
    }

    /// Destroys a case's key and data, keeping hash tombstones and the audit trail.
    async fn purge_case(&self, case: &str) -> Result<(), GatewayError> {
        let store = self.inner.durable.store();
        let mut tx = Tx::new();
        let case_id: CaseId = case.parse().map_err(|e: String| invalid(e))?;
        // Every record of the case, then each removed and added (key and value) to the
        // tombstone's digest. `items` counts the messages (outbox and inbox entries) among them.
        let mut keys: Vec<Key> = Vec::new();
        let under = |keys: &mut Vec<Key>, prefix: &Prefix| -> Result<(), StoreError> {
            for (k, _) in store.read_all(prefix)? {
                keys.push(prefix.key(&k));
            }
            Ok(())
        };
        let mut items = 0u64;
        for e in self.outbox_where(|e| e.case == case_id, None)? {
            let id = parse_id(&e.id).unwrap_or_default();
            tx.gauges.push(gauges::GaugeMove::removed(&e));
            keys.extend([
                Key::outbox_entry(&id),
                Key::outbox_envelope(&id),
                Key::outbox_waiting(&id),
                Key::outbox_receipt(&id),
            ]);
            items += 1;
        }
        for e in self.inbox_where(|e| e.case == case_id, None)? {
            let id = parse_id(&e.id).unwrap_or_default();
            keys.extend([Key::inbox_entry(&id), Key::inbox_envelope(&id)]);
            items += 1;
        }
        for prefix in [
            Prefix::controller_proofs(case),
            Prefix::transfer_notices_sent(case),
            Prefix::transfer_notices_received(case),
            Prefix::consent_views(case),
            Prefix::parties(case),
            Prefix::delegations(case),
            Prefix::controller_consents(case),
        ] {
            under(&mut keys, &prefix)?;
        }
        // Every consent id of the case: those the pointers name, and any other recorded for it
        // (a controller that recorded the case under a new consent id left the old one's
        // records, which its `k` key still ties to the case).
        let mut consent_ids: Vec<String> = store
            .read_all(&Prefix::controller_consents(case))?
            .into_iter()
            .map(|(_, id)| String::from_utf8_lossy(&id).into_owned())
            .collect();
        for (id, of_case) in store.read_all(&Prefix::consent_cases())? {
            if of_case == case.as_bytes() {
                consent_ids.push(String::from_utf8_lossy(&id).into_owned());
            }
        }
        if let Some(consent_id) = store.read(&Key::case_consent(case))? {
            consent_ids.push(String::from_utf8_lossy(&consent_id).into_owned());
        }
        consent_ids.sort();
        consent_ids.dedup();
        for consent_id in &consent_ids {
            keys.extend([
                Key::consent(consent_id),
                Key::consent_case(consent_id),
                Key::consent_followup(consent_id),
            ]);
            under(&mut keys, &Prefix::consent_followups_sent(consent_id))?;
            under(&mut keys, &Prefix::consent_version_digests(consent_id))?;
        }
        keys.extend([
            Key::case_consent(case),
            Key::plan(case),
            Key::support_end(case),
            Key::transferred_out(case),
            Key::no_gateway(case),
        ]);
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut records = 0u64;
        for k in &keys {
            if let Some(v) = store.read(k)? {
                let full = k.space.key(&k.bytes);
                digest.update(&(full.len() as u64).to_be_bytes());
                digest.update(&full);
                digest.update(&(v.len() as u64).to_be_bytes());
                digest.update(&v);
                tx.remove(k);
                records += 1;
            }
        }
        self.inner.vault.purge(case, &mut tx.batch);
        let tomb = serde_json::json!({"purged_at": self.now().0, "items": items, "records": records, "sha256": hex(digest.finish().as_ref())});
        tx.set(
            &Key::tombstone(case),
            serde_json::to_vec(&tomb).unwrap_or_default(),
        );
        self.audit(
            &mut tx,
            AuditEvent::Purged {
                case: case_id.clone(),
                items,
            },
        );
        self.commit(tx).await?;
        // Nor does the verified-consent cache keep what the purge destroyed.
        let mut cache = self.inner.consents.lock().expect("consents");
        for consent_id in &consent_ids {
            cache.remove(consent_id);
        }
        drop(cache);
        tracing::info!(case, items, "case purged after its retention period");
        Ok(())
    }

    /// The tombstone a purge left for `case`: when, how many messages (`items`: outbox and inbox
    /// entries) and records (`records`: every key removed, the messages' among them), and a
    /// SHA-256 over each removed record's space, key and value, in the order removed.
    pub fn tombstone(&self, case: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self
            .inner
            .durable
            .store()
            .read(&Key::tombstone(case))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// R12 aggregates from the audit trail, with no personal data.
    pub fn stats(&self) -> Result<serde_json::Value, StoreError> {
        Ok(Self::stats_of(&self.inner.org, &self.audit_events()?))
    }

    /// R12 aggregates from `records`, the audit trail of `org` (also read without a running
    /// gateway: `tsunagi stats`).
    pub fn stats_of(org: &OrgId, records: &[AuditRecord]) -> serde_json::Value {
        use std::collections::BTreeSet;
        // Counted per case, never per envelope: one plan or notice sent to four parties is one
        // plan or one outcome. What was queued and then cancelled (never sent) does not count.
        let cancelled: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| match &r.event {
                AuditEvent::Cancelled { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let mut plans: BTreeMap<&str, DocFacts> = BTreeMap::new();
        let mut meetings: BTreeSet<(&str, tsunagi_protocol::Date)> = BTreeSet::new();
        let mut readmitted: BTreeSet<&str> = BTreeSet::new();
        let mut staff_of: BTreeMap<&str, &str> = BTreeMap::new();
        // A reminder recorded for a case stays due until a newer plan version or an end.
        let mut due: BTreeMap<&str, bool> = BTreeMap::new();
        let mut outcomes_by_case: BTreeMap<&str, String> = BTreeMap::new();
        let mut transfers = BTreeSet::new();
        let mut withdrawn = BTreeSet::new();
        let mut denials: BTreeMap<String, u64> = BTreeMap::new();
        let mut purges = 0u64;
        let mut cases = BTreeSet::new();
        for r in records {
            if let Some(c) = r.event.case() {
                cases.insert(c.as_str());
            }
            match &r.event {
                AuditEvent::Queued {
                    id,
                    case,
                    kind,
                    facts,
                    ..
                } if !cancelled.contains(id.as_str()) => match kind {
                    DocType::SupportPlan => {
                        // The newest plan of the case counts.
                        let e = plans.entry(case.as_str()).or_default();
                        if facts.version.unwrap_or(1) >= e.version.unwrap_or(1) {
                            e.joint = facts.joint.or(e.joint);
                            e.period_days = facts.period_days.or(e.period_days);
                            e.version = facts.version.or(e.version);
                            e.extensions = facts.extensions.or(e.extensions);
                            e.exceptional = facts.exceptional.or(e.exceptional);
                        }
                    }
                    DocType::MeetingRecord => {
                        if let Some(day) = facts.meeting_on {
                            meetings.insert((case.as_str(), day));
                        }
                    }
                    DocType::Readmission => {
                        readmitted.insert(case.as_str());
                    }
                    DocType::TransferNotice => {
                        transfers.insert(case.as_str());
                    }
                    DocType::SupportEnd => {
                        due.insert(case.as_str(), false);
                        if let Some(o) = facts.outcome {
                            outcomes_by_case.insert(case.as_str(), o.to_string());
                        }
                    }
                    _ => {}
                },
                AuditEvent::Received {
                    case,
                    kind: DocType::SupportEnd,
                    facts,
                    ..
                } => {
                    if let Some(o) = facts.outcome {
                        outcomes_by_case.insert(case.as_str(), o.to_string());
                    }
                }
                AuditEvent::Received {
                    case,
                    kind: DocType::Readmission,
                    ..
                } => {
                    readmitted.insert(case.as_str());
                }
                AuditEvent::ConsentRecorded {
                    case,
                    status,
                    staff,
                    ..
                } => {
                    if *status == ConsentStatus::Withdrawn {
                        withdrawn.insert(case.as_str());
                        due.insert(case.as_str(), false);
                    }
                    // The staff member who recorded the newest version has the case.
                    if let Some(s) = staff {
                        staff_of.insert(case.as_str(), s.as_str());
                    }
                }
                AuditEvent::ReminderDue { case, .. } => {
                    due.insert(case.as_str(), true);
                }
                AuditEvent::SupportEnded { case, outcome, .. } => {
                    due.insert(case.as_str(), false);
                    outcomes_by_case.insert(case.as_str(), outcome.to_string());
                }
                AuditEvent::PlanCurrent { case, .. } => {
                    due.insert(case.as_str(), false);
                }
                AuditEvent::GateDenied { code, .. } => {
                    *denials.entry(code.clone()).or_default() += 1
                }
                AuditEvent::Purged { .. } => purges += 1,
                _ => {}
            }
        }
        // Caseload per staff member: cases per (pseudonymous) staff member, largest first; the
        // pseudonyms themselves are not shown.
        let mut caseload: BTreeMap<&str, usize> = BTreeMap::new();
        for s in staff_of.values() {
            *caseload.entry(s).or_default() += 1;
        }
        let mut caseload: Vec<usize> = caseload.into_values().collect();
        caseload.sort_unstable_by(|a, b| b.cmp(a));
        let joint = plans.values().filter(|p| p.joint == Some(true)).count();
        let alone = plans.values().filter(|p| p.joint == Some(false)).count();
        let revised = plans.values().filter(|p| p.version > Some(1)).count();
        let extended = plans.values().filter(|p| p.extensions > Some(0)).count();
        let exceptional = plans
            .values()
            .filter(|p| p.exceptional == Some(true))
            .count();
        let mut periods: Vec<i64> = plans.values().filter_map(|p| p.period_days).collect();
        periods.sort_unstable();
        let median = periods.get(periods.len() / 2).copied();
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        for o in outcomes_by_case.into_values() {
            *outcomes.entry(o).or_default() += 1;
        }
        serde_json::json!({
            "org": org.as_str(),
            "cases": cases.len(),
            "plans": {"alone": alone, "joint": joint, "revised": revised},
            "support_period_days": {"plans": periods.len(), "median": median, "max": periods.last()},
            "support_periods": {"extended": extended, "beyond_guideline": exceptional},
            "meetings_held": meetings.len(),
            "caseload_per_staff": caseload,
            "reminders_due": due.values().filter(|d| **d).count(),
            "cases_with_readmission": readmitted.len(),
            "support_outcomes": outcomes,
            "transfers": transfers.len(),
            "consent_withdrawals": withdrawn.len(),
            "gate_denials": denials,
            "purged_cases": purges,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Dispatching

    /// Schedules an attempt for `id` at `at` (Unix seconds of the gateway's clock; now or
    /// earlier means at once).
    fn schedule(&self, at: u64, id: [u8; 16]) {
        let secs = at.saturating_sub(self.now().0);
        self.schedule_in(secs.saturating_mul(1000), id);
    }

    /// Schedules an attempt for `id` in `ms` milliseconds.
    fn schedule_in(&self, ms: u64, id: [u8; 16]) {
        let at = self.inner.started.elapsed().as_millis() as u64 + ms;
        self.inner
            .schedule
            .lock()
            .expect("schedule")
            .insert((at, id), ());
        self.inner.wake.notify_one();
    }

    /// Schedules every entry still to send, reading the outbox one entry at a time (a large
    /// backlog is never held in memory at once).
    fn reschedule_all(&self) -> Result<(), StoreError> {
        /// The fields start-up needs of an outbox entry: to schedule it and to count it.
        #[derive(serde::Deserialize)]
        struct Due {
            id: String,
            state: OutState,
            next_attempt: u64,
            to: OrgId,
            created: u64,
        }
        let mut due = Vec::new();
        let mut counted = Vec::with_capacity(1024);
        self.inner
            .durable
            .store()
            .read_each(&Prefix::outbox_entries(), &mut |k, v| {
                let d: Due = decode_entry("outbox entry", k, v)?;
                if matches!(d.state, OutState::Queued | OutState::RetryWait) {
                    if let Some(id) = parse_id(&d.id) {
                        due.push((d.next_attempt, id));
                    }
                }
                counted.push(gauges::GaugeMove::present(d.to, d.state, d.created));
                if counted.len() == counted.capacity() {
                    self.inner.outbox_gauges.apply(std::mem::take(&mut counted));
                    counted.reserve(1024);
                }
                Ok(())
            })?;
        self.inner.outbox_gauges.apply(counted);
        for (at, id) in due {
            self.schedule(at, id);
        }
        Ok(())
    }

    /// Takes the first entry due by now from the schedule.
    fn next_due(&self) -> Option<[u8; 16]> {
        let now = self.inner.started.elapsed().as_millis() as u64;
        let mut s = self.inner.schedule.lock().expect("schedule");
        let (&(at, id), _) = s.iter().next()?;
        if at > now {
            return None;
        }
        s.remove(&(at, id));
        Some(id)
    }

    /// The dispatcher: runs due entries, at most [`DISPATCH_TASKS`] at once, and sleeps until
    /// the next is due or something is scheduled.
    async fn dispatcher(&self) {
        loop {
            if self.is_stopping() {
                // Entries not started stay as they are stored; the next start schedules them.
                return;
            }
            while let Ok(permit) = Arc::clone(&self.inner.dispatch_slots).try_acquire_owned() {
                let Some(id) = self.next_due() else { break };
                if !self.inner.in_flight.lock().expect("in flight").insert(id) {
                    continue;
                }
                let gw = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = gw.deliver(id).await {
                        tracing::warn!(
                            id = hex(&id).as_str(),
                            "delivery bookkeeping failed, will retry: {e}"
                        );
                        gw.inner.in_flight.lock().expect("in flight").remove(&id);
                        gw.schedule_in(5000, id);
                    } else {
                        gw.inner.in_flight.lock().expect("in flight").remove(&id);
                    }
                    drop(permit);
                    gw.inner.wake.notify_one();
                });
            }
            let next = self
                .inner
                .schedule
                .lock()
                .expect("schedule")
                .keys()
                .next()
                .map(|(t, _)| *t);
            let now = self.inner.started.elapsed().as_millis() as u64;
            let wait = next.map_or(Duration::from_secs(1), |t| {
                Duration::from_millis(t.saturating_sub(now).clamp(1, 1000))
            });
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn peer_slot(&self, org: &OrgId) -> Arc<Semaphore> {
        self.inner
            .peer_slots
            .lock()
            .expect("slots")
            .entry(org.clone())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.inner.cfg.delivery.per_peer_concurrency))
            })
            .clone()
    }

    /// Puts the effects of an outbox transition into `batch`; returns what follows the commit.
    fn stage_out(
        &self,
        batch: &mut Tx,
        e: &OutboxEntry,
        effects: Vec<outbox::Effect>,
    ) -> Result<AfterCommit, StoreError> {
        use outbox::Effect as F;
        let id = parse_id(&e.id).unwrap_or_default();
        let mut after = AfterCommit {
            id,
            outcome: None,
            retry_after_ms: None,
        };
        for f in effects {
            match f {
                F::WriteEntry { was } => {
                    batch.set(
                        &Key::outbox_entry(&id),
                        serde_json::to_vec(e).unwrap_or_default(),
                    );
                    batch.gauges.push(gauges::GaugeMove::written(e, was));
                }
                F::RemoveEnvelope => batch.remove(&Key::outbox_envelope(&id)),
                F::RemoveWaiting => batch.remove(&Key::outbox_waiting(&id)),
                F::KeepReceipt(r) => batch.set(&Key::outbox_receipt(&id), r),
                F::NoteParty => Self::note_party(batch, &e.case, &e.to),
                F::Audit(event) => self.audit(batch, event),
                F::UndeliveredReport(text) => self.undelivered_report(batch, e, text),
                // The caller sends (see `deliver`).
                F::Send => {}
                F::RetryAfter(ms) => after.retry_after_ms = Some(ms),
                F::Outcome(state) => after.outcome = Some(state),
            }
        }
        Ok(after)
    }

    /// What follows the commit of an outbox transition: its outcome, then its timer.
    fn after_commit(&self, after: AfterCommit) {
        if let Some(state) = after.outcome {
            self.publish(after.id, state);
        }
        if let Some(ms) = after.retry_after_ms {
            self.schedule_in(ms, after.id);
        }
    }

    /// Carries out the effects of an outbox transition in one commit.
    async fn apply_out(
        &self,
        e: &OutboxEntry,
        effects: Vec<outbox::Effect>,
        mut batch: Tx,
    ) -> Result<(), StoreError> {
        let after = self.stage_out(&mut batch, e, effects)?;
        self.commit(batch).await?;
        self.after_commit(after);
        Ok(())
    }

    async fn deliver(&self, id: [u8; 16]) -> Result<(), GatewayError> {
        let Some(e) = self.load_out(&id)? else {
            return Ok(());
        };
        if e.state.is_final() || e.state == OutState::AwaitingConsent {
            return Ok(());
        }
        if self.inner.held.lock().expect("held").contains(&e.to) {
            self.schedule_in(200, id);
            return Ok(());
        }
        let now_t = self.now();
        if now_t.0 >= e.expires {
            tracing::warn!(
                id = e.id.as_str(),
                to = e.to.as_str(),
                "expired undelivered"
            );
            let (e, effects) = outbox::transition(e, outbox::Input::Expire { now: now_t.0 });
            return Ok(self.apply_out(&e, effects, Tx::new()).await?);
        }
        // Consent again, at dispatch.
        if let Some(reason) = self.dispatch_gate(&e)? {
            let (e, effects) = outbox::transition(
                e,
                outbox::Input::Cancel {
                    now: now_t.0,
                    why: reason,
                    at_dispatch: true,
                },
            );
            return Ok(self.apply_out(&e, effects, Tx::new()).await?);
        }
        // An entry that cannot be used is final: a retry cannot fix it, a new directory can.
        let endpoint = self.directory().member(&e.to).map(|m| m.endpoint());
        if let Some(Err(bad)) = endpoint {
            tracing::warn!(id = e.id.as_str(), to = e.to.as_str(), "not sent: {bad}");
            let (e, effects) = outbox::transition(
                e,
                outbox::Input::Cancel {
                    now: now_t.0,
                    why: format!("{bad}; fix the directory entry, then send again"),
                    at_dispatch: true,
                },
            );
            return Ok(self.apply_out(&e, effects, Tx::new()).await?);
        }
        let slot = self.peer_slot(&e.to);
        let _permit = slot
            .acquire()
            .await
            .map_err(|_| invalid("peer slots closed"))?;
        let Some(sealed) = self
            .inner
            .durable
            .store()
            .read(&Key::outbox_envelope(&id))?
        else {
            return Err(invalid(format!(
                "envelope {} is missing from the outbox",
                e.id
            )));
        };
        let bytes = self.inner.vault.open(e.case.as_str(), &sealed, &id)?;
        let sending = self.inner.send_lock.read().await;
        // A withdrawal may have cancelled the entry while this attempt waited.
        if self.load_out(&id)?.is_none_or(|cur| cur.state.is_final()) {
            return Ok(());
        }
        let marked = SendingMark::new(&self.inner.sending, id);
        let attempt_timeout = Duration::from_millis(self.inner.cfg.delivery.attempt_timeout_ms);
        let endpoint = self.directory().member(&e.to).map(|m| m.endpoint());
        let (e, effects) = outbox::transition(e, outbox::Input::Attempt { now: self.now().0 });
        if !effects.contains(&outbox::Effect::Send) {
            return Ok(self.apply_out(&e, effects, Tx::new()).await?);
        }
        crate::crashpoint::pass(crate::crashpoint::Point::BeforeSend);
        let result = match endpoint {
            None | Some(Err(_)) => Err(format!("{} has no usable entry in the directory", e.to)),
            Some(Ok((addr, host))) => {
                let exchange = async {
                    let reply = self
                        .inner
                        .transport
                        .request_to(&e.to, addr, &host, &bytes)
                        .await
                        .map_err(|t| t.to_string())?;
                    self.check_receipt(&e.to, addr, &host, &bytes, reply).await
                };
                tokio::time::timeout(attempt_timeout, exchange)
                    .await
                    .unwrap_or_else(|_| {
                        Err(TransportError::Timeout {
                            addr,
                            during: "waiting for a receipt from",
                            after: Some(attempt_timeout),
                        }
                        .to_string())
                    })
            }
        };
        let done = self.now().0;
        let mut batch = Tx::new();
        let mut fetched = Vec::new();
        let result = result.map(|(receipt, reply, chain)| {
            if let Some((kid, chain)) = chain {
                // The recipient's chain, fetched to verify its receipt: kept once.
                batch.set(
                    &Key::signer_chain(&kid),
                    tsunagi_protocol::fetch::encode_chain(&chain),
                );
                fetched.push((kid, chain));
            }
            (receipt, reply)
        });
        if let Ok((receipt, _)) = &result {
            if let Some(cp) = &receipt.checkpoint {
                self.keep_witness(&mut batch, &e.to, cp, &fetched)?;
            }
        }
        let input = match result {
            Ok((receipt, reply)) if receipt.status == ReceiptStatus::Accepted => {
                tracing::info!(id = e.id.as_str(), to = e.to.as_str(), "delivered");
                outbox::Input::Delivered {
                    now: done,
                    receipt: reply,
                }
            }
            Ok((receipt, reply)) => {
                let why = receipt.reason.unwrap_or_else(|| "no reason given".into());
                tracing::warn!(
                    id = e.id.as_str(),
                    to = e.to.as_str(),
                    reason = why.as_str(),
                    "rejected by the recipient"
                );
                outbox::Input::Refused {
                    now: done,
                    reason: why,
                    receipt: reply,
                }
            }
            Err(why) if self.is_stopping() => {
                // Cut off by this gateway's own shutdown, not by the peer: nothing is recorded
                // (no attempt, no error), and the next start sends the entry as it was stored.
                tracing::debug!(
                    id = e.id.as_str(),
                    to = e.to.as_str(),
                    "delivery cut off by the shutdown: {why}"
                );
                return Ok(());
            }
            Err(why) => {
                let cfg = &self.inner.cfg.delivery;
                let entropy = self.inner.rng.lock().expect("rng").next_u32();
                let delay_ms = outbox::retry_delay_ms(
                    e.attempts,
                    cfg.retry_initial_ms,
                    cfg.retry_max_ms,
                    entropy,
                );
                self.inner.counters.retry(&e.to);
                tracing::info!(
                    id = e.id.as_str(),
                    to = e.to.as_str(),
                    attempt = e.attempts,
                    "delivery failed, retrying in {delay_ms} ms: {why}"
                );
                outbox::Input::TransientFailure {
                    now: done,
                    why,
                    delay_ms,
                }
            }
        };
        let (e, effects) = outbox::transition(e, input);
        if e.state == OutState::Delivered {
            // The receipt is in hand: lost in a crash, this state costs a re-send that the
            // receiver answers with the stored receipt, so it does not wait for its own flush.
            // It is applied before the send lock is released, so a cancellation that follows
            // sees it.
            let after = self.stage_out(&mut batch, &e, effects)?;
            self.commit_settled(batch)?;
            self.after_commit(after);
        } else {
            // A rejection is final and is not stored by the receiver: it must not be re-sent.
            // The send lock is held until the outcome is durable: a cancellation waits for it,
            // so an envelope the peer took is never recorded as cancelled.
            self.apply_out(&e, effects, batch).await?;
        }
        drop(marked);
        drop(sending);
        Ok(())
    }

    fn dispatch_gate(&self, e: &OutboxEntry) -> Result<Option<String>, GatewayError> {
        // A consent record was judged against the version it supersedes when it was queued.
        if e.kind == DocType::Consent {
            return Ok(None);
        }
        // An answer to an information request goes under the consent of the authority that
        // asked (its controller), the others under the consent this gateway shares the case
        // under.
        let consent = if e.kind == DocType::InformationAnswer {
            self.controller_consent(&e.case, &e.to)?
        } else {
            self.consent_for_case(&e.case)?
        };
        let role = self.directory().role_of(&e.to);
        let Some(role) = role else {
            return Ok(Some(format!("{} is no longer in the directory", e.to)));
        };
        // Queued before the origin's transfer-out end, gone after it: the same rule as at queue.
        if let Err(r) = self.check_transferred_out(&e.case, e.kind, &e.to)? {
            return Ok(Some(r.to_string()));
        }
        let period = self.support_period_for(&e.case, e.purpose, None)?;
        let decision = gate::evaluate(&GateInput {
            consent: consent.as_ref().map(|v| &v.record),
            intent: Intent {
                case: &e.case,
                purpose: e.purpose,
                doc_type: e.kind,
                sender: &self.inner.org,
                recipient: &e.to,
                recipient_role: role,
            },
            now: self.now().date(),
            support_period: period.as_ref(),
            party: self.is_party(&e.case, &e.to)?,
            previous: None,
        });
        Ok(decision.into_result().err().map(|r| r.to_string()))
    }

    /// Writes the undelivered report of expired entry `e` into the inbox.
    fn undelivered_report(&self, batch: &mut Batch, e: &OutboxEntry, report: String) {
        let rid = self.new_msg_id(self.now());
        let entry = InboxEntry {
            id: hex(&rid),
            from: self.inner.org.clone(),
            kind: None,
            purpose: None,
            case: e.case.clone(),
            received_at: e.done_at.unwrap_or(e.created),
            disclosed: vec![],
            withheld: vec![],
            report: Some(report),
        };
        batch.set(
            &Key::inbox_entry(&rid),
            serde_json::to_vec(&entry).unwrap_or_default(),
        );
    }

    // -----------------------------------------------------------------------------------------
    // Receiving

    /// Handles one inbound message and returns the reply (a signed receipt, or nothing when
    /// the message could not be stored, so that the sender retries).
    pub async fn handle_inbound(&self, m: InboundMessage) -> Vec<u8> {
        let (peer, bytes) = match m {
            InboundMessage::Message { peer, bytes } => (peer, bytes),
            InboundMessage::TooLarge { peer, max, .. } => {
                tracing::warn!(from = peer.as_str(), "refused an envelope over {max} bytes");
                return self
                    .receipt(
                        &peer,
                        None,
                        [0; 32],
                        ReceiptStatus::Rejected,
                        Some("too_large".into()),
                    )
                    .await;
            }
        };
        if let Some(case) = tsunagi_protocol::records::parse_records_query(&bytes) {
            return self.answer_records_query(&peer, &case).await;
        }
        if let Some((case, view)) = tsunagi_protocol::fetch::parse_consent_fetch(&bytes) {
            return self.answer_consent_fetch(&peer, &case, &view);
        }
        if let Some((case, consent)) = tsunagi_protocol::fetch::parse_handover_fetch(&bytes) {
            return self.answer_handover_fetch(&peer, &case, &consent);
        }
        if let Some(kid) = tsunagi_protocol::fetch::parse_chain_fetch(&bytes) {
            return self.answer_chain_fetch(&peer, &kid);
        }
        if let Some((case, msg_id)) = tsunagi_protocol::fetch::parse_proof_fetch(&bytes) {
            return self.answer_proof_fetch(&peer, &case, &msg_id);
        }
        if bytes == tsunagi_protocol::checkpoint::witness_query() {
            // A peer asks what we witnessed of its trail; the TLS identity says who asks.
            return audit::witness_of(self.inner.durable.store(), &peer)
                .ok()
                .flatten()
                .unwrap_or_default();
        }
        let now_t = self.now();
        let limits = Limits {
            max_bytes: self.inner.cfg.delivery.max_message_bytes,
            ..Limits::default()
        };
        let digest = tsunagi_protocol::cose::sha256(&bytes);
        // The protocol's checks are synchronous; nothing borrowed here lives across an await.
        let check = |fetched: Option<&DocBundle>,
                     chain: &[([u8; 32], Vec<Vec<u8>>)],
                     handovers: &[(String, Option<HandoverLink>)],
                     proof: &Option<Option<Vec<HandoverLink>>>| {
            let trust = self.trust();
            let directory = self.directory();
            let receiver = Receiver {
                me: &self.inner.org,
                chains: &*trust,
                limits,
                max_skew: DEFAULT_MAX_SKEW,
            };
            let state = StoreView {
                gw: self,
                directory: &directory,
                fetched,
                chain,
                handovers,
                proof,
            };
            receiver.receive(&bytes, &peer, now_t, &state)
        };
        // Slim envelope: what it names by digest and is not here (the signer's chain, the
        // consent view) is asked of the sender on the same connection, then the checks run
        // again. A failed fetch is no rejection: no receipt, so that the sender retries.
        let mut fetched: Option<DocBundle> = None;
        let mut chains: Vec<([u8; 32], Vec<Vec<u8>>)> = Vec::new();
        let mut handovers: Vec<(String, Option<HandoverLink>)> = Vec::new();
        let mut proof: Option<Option<Vec<HandoverLink>>> = None;
        let mut outcome = check(None, &[], &[], &None);
        // At most: the head's chain, the author's chain, the consent view, the new controller's
        // views of the consents that let the case move (a few), its handover proof.
        for _ in 0..8 {
            let got = match &outcome {
                Ok(Inbound::ChainNeeded { kid }) => {
                    self.fetch_signer_chain(&peer, kid, &limits).await.map(|c| {
                        tracing::info!(
                            from = peer.as_str(),
                            "signer chain fetched from the sender"
                        );
                        chains.push((*kid, c));
                    })
                }
                Ok(Inbound::ConsentNeeded { case, view }) => self
                    .fetch_consent_view(&peer, case, view, &limits)
                    .await
                    .map(|b| {
                        tracing::info!(
                            from = peer.as_str(),
                            case = case.as_str(),
                            "consent view fetched from the sender"
                        );
                        fetched = Some(b);
                    }),
                // A view already shown and older than the version held here: asking again in
                // this round decides nothing.
                Ok(Inbound::HandoverNeeded { consent, .. })
                    if handovers.iter().any(|(id, _)| id == consent) =>
                {
                    break
                }
                Ok(Inbound::HandoverNeeded { case, consent }) => self
                    .fetch_handover(&peer, case, consent, &limits)
                    .await
                    .map(|shown| {
                        tracing::info!(
                            from = peer.as_str(),
                            case = case.as_str(),
                            shown = shown.is_some(),
                            "asked the sender for its view of the consent that lets the case move"
                        );
                        handovers.push((consent.clone(), shown));
                    }),
                // Asked once: a sender that showed nothing and is not the new controller (a
                // party passing its consent on) gets no decision, and no receipt.
                Ok(Inbound::ProofNeeded { .. }) if proof.is_some() => break,
                Ok(Inbound::ProofNeeded { case, msg_id }) => self
                    .fetch_proof(&peer, case, msg_id, &limits)
                    .await
                    .map(|shown| {
                        tracing::info!(
                            from = peer.as_str(),
                            case = case.as_str(),
                            shown = shown.is_some(),
                            "asked the sender for the moves that made it a controller of the case"
                        );
                        proof = Some(shown);
                    }),
                _ => break,
            };
            if let Err(why) = got {
                tracing::warn!(
                    from = peer.as_str(),
                    "no receipt sent, the sender will retry: {why}"
                );
                return Vec::new();
            }
            outcome = check(fetched.as_ref(), &chains, &handovers, &proof);
        }
        let accepted = match outcome {
            Ok(
                Inbound::ConsentNeeded { .. }
                | Inbound::ChainNeeded { .. }
                | Inbound::HandoverNeeded { .. }
                | Inbound::ProofNeeded { .. },
            ) => {
                tracing::warn!(
                    from = peer.as_str(),
                    "no receipt sent, the sender will retry: what was fetched was not taken"
                );
                return Vec::new();
            }
            Ok(Inbound::Replay(receipt)) => {
                // The stored receipt is visible once the first copy's write is applied, which
                // may be before it is durable: answer only after a barrier, so that a sender
                // never marks delivered what a failed flush could still lose.
                if let Err(e) = self.inner.durable.commit(Batch::new()).await {
                    tracing::warn!(
                        from = peer.as_str(),
                        "replayed envelope: no receipt sent, the first copy is not durable: {e}"
                    );
                    return Vec::new();
                }
                tracing::info!(
                    from = peer.as_str(),
                    "replayed envelope: stored receipt returned"
                );
                return receipt;
            }
            Err(rejection) => {
                let msg_id = Envelope::parse_unverified(&bytes, &limits)
                    .ok()
                    .map(|e| e.msg_id);
                tracing::warn!(
                    from = peer.as_str(),
                    code = rejection.code().as_str(),
                    "envelope rejected: {rejection}"
                );
                let event = AuditEvent::Rejected {
                    from: peer.clone(),
                    code: rejection.code(),
                };
                if self.inner.rejections.record(&peer, now_t.0) {
                    let mut batch = Tx::new();
                    self.audit(&mut batch, event);
                    let _ = self.commit(batch).await;
                } else {
                    let counted = observe::Counters::pending(std::slice::from_ref(&event));
                    self.inner.counters.add(counted);
                }
                return self
                    .receipt(
                        &peer,
                        msg_id,
                        digest,
                        ReceiptStatus::Rejected,
                        Some(rejection.code()),
                    )
                    .await;
            }
            Ok(Inbound::New(a)) => a,
        };
        if let Err(e) = self.inner.durable.admit() {
            // Temporary (a nearly full disk): no receipt, so that the sender retries later.
            tracing::info!(
                from = peer.as_str(),
                "no receipt sent, the sender will retry: {e}"
            );
            return Vec::new();
        }
        let id = accepted.envelope.msg_id;
        if !self.inner.receiving.lock().expect("receiving").insert(id) {
            // The same envelope is being stored right now: no receipt; the sender retries and
            // then gets the stored receipt.
            return Vec::new();
        }
        let reply = self
            .store_inbound(*accepted, &bytes, digest, now_t, chains)
            .await;
        self.inner.receiving.lock().expect("receiving").remove(&id);
        match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    from = peer.as_str(),
                    "could not store an incoming envelope, no receipt sent: {e}"
                );
                Vec::new()
            }
        }
    }

    /// The receipt of a copy of message `id` stored since the receiver's checks ran, when
    /// `sender` sent that copy. Another org's copy is no replay of this one: it gets no receipt
    /// (an error), and its retry is then refused by the checks as a taken message id.
    fn concurrent_copy_receipt(
        &self,
        id: &[u8; 16],
        sender: &OrgId,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let store = self.inner.durable.store();
        let Some(receipt) = store.read(&Key::seen(id))? else {
            return Ok(None);
        };
        if let Some(entry) = store.read(&Key::inbox_entry(id))? {
            let first = decode_entry::<InboxEntry>("inbox entry", id, &entry)?.from;
            if first != *sender {
                return Err(invalid(format!(
                    "message id {} was taken by {first} while {sender}'s copy was checked; no receipt, its retry is refused",
                    hex(id)
                )));
            }
        }
        Ok(Some(receipt))
    }

    async fn store_inbound(
        &self,
        a: tsunagi_protocol::envelope::Accepted,
        bytes: &[u8],
        digest: [u8; 32],
        now_t: Timestamp,
        chains: Vec<([u8; 32], Vec<Vec<u8>>)>,
    ) -> Result<Vec<u8>, GatewayError> {
        let env = &a.envelope;
        let id = env.msg_id;
        // A concurrent copy may have been stored between the check and the claim: its receipt
        // goes out once that copy is durable (a barrier), as for any replay.
        if let Some(r) = self.concurrent_copy_receipt(&id, &env.sender)? {
            self.inner.durable.commit(Batch::new()).await?;
            return Ok(r);
        }
        let mut batch = Tx::new();
        let case = env.case.as_str();
        let sealed = self.inner.vault.case_key(case)?.seal(bytes, &id);
        let entry = InboxEntry {
            id: hex(&id),
            from: env.sender.clone(),
            kind: Some(env.kind),
            purpose: Some(env.purpose),
            case: env.case.clone(),
            received_at: now_t.0,
            disclosed: a.document.disclosed.keys().cloned().collect(),
            withheld: a.document.withheld.clone(),
            report: None,
        };
        batch.set(&Key::inbox_envelope(&id), sealed);
        // Its receipt's head names this gateway's chain by fingerprint: kept for the sender's
        // fetch, also of a stored receipt replayed after a credential rotation.
        self.keep_own_chain(&mut batch, &self.signer())?;
        for (kid, chain) in &chains {
            // A chain fetched for this envelope (the sender's, the author's): kept once, by
            // fingerprint.
            batch.set(
                &Key::signer_chain(kid),
                tsunagi_protocol::fetch::encode_chain(chain),
            );
        }
        batch.set(
            &Key::inbox_entry(&id),
            serde_json::to_vec(&entry).unwrap_or_default(),
        );
        if env.kind == DocType::TransferNotice {
            batch.set(&Key::transfer_notice_received(env.case.as_str(), &id), b"");
        }
        Self::note_party(&mut batch, &env.case, &env.sender);
        // Keep the newest consent version we have seen for the case (our own view of it).
        let kept = if env.kind == DocType::Consent {
            match a.document.consent_view() {
                Some(Ok(c)) => self.store_consent(&c, &env.bundle(), &mut batch),
                _ => Ok(false),
            }
        } else if let Some((referenced, bundle)) = &a.referenced {
            // The referenced view (fetched or at hand): kept once, as this gateway's copy of
            // that consent version when it is newer than the one it holds. The controller
            // keeps its whole record.
            if referenced.controller != self.inner.org {
                self.store_consent(referenced, bundle, &mut batch)
            } else {
                Ok(false)
            }
        } else {
            Ok(false)
        };
        if let (Ok(true), Some(shown)) = (&kept, &a.controller_shown) {
            // How the new controller was shown to be one, kept so that this gateway can show
            // it in turn (when the case moves on from it): the moves up to the first link's
            // signer, then what was shown.
            // Not keeping it costs only the showing later, never this envelope.
            match self.proof_for(&env.case, &shown.from) {
                Ok(Some(mut links)) => {
                    links.extend(shown.links.iter().cloned());
                    self.keep_proof(&env.case, &shown.controller, &links, &mut batch.batch)?;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    case = case,
                    from = env.sender.as_str(),
                    "the moves shown for a new controller were not kept: {e}"
                ),
            }
        }
        match kept {
            Ok(_) => {}
            // Another controller's consent under an id already taken: the document is kept,
            // the consent is not (ours is never overwritten).
            Err(GatewayError::Invalid(why)) => {
                tracing::warn!(
                    case = case,
                    from = env.sender.as_str(),
                    "consent not kept: {why}"
                )
            }
            Err(e) => return Err(e),
        }
        if env.kind == DocType::Delegation {
            self.receive_delegation(a.document.document(), &a.consent.controller, &mut batch)?;
        }
        if let Some(cp) = &env.checkpoint {
            self.keep_witness(&mut batch, &env.sender, cp, &chains)?;
        }
        let mut facts = DocFacts::default();
        // Verified by the envelope checks: read once, not verified again.
        let doc = a.document.document().and_then(Result::ok);
        let known = Known::Checked(doc.as_ref());
        self.note_document(
            &env.bundle(),
            Some(&a.document.manifest),
            known,
            &env.case,
            &mut batch,
            &mut facts,
        )?;
        if matches!(
            env.kind,
            DocType::TransferNotice | DocType::InformationRequest | DocType::InformationAnswer
        ) {
            self.note_relocation_received(doc.as_ref(), &entry.id, &env.sender, &mut batch);
        }
        self.audit(
            &mut batch,
            AuditEvent::Received {
                id: entry.id.clone(),
                case: env.case.clone(),
                from: env.sender.clone(),
                kind: env.kind,
                disclosed: entry.disclosed.clone(),
                withheld: entry.withheld.clone(),
                facts,
            },
        );
        // The receipt is sealed in the next batch for the sender and stored (for replays) in
        // the same commit as the inbox write.
        let receipt = self
            .sealed_receipt(
                &env.sender,
                Some(id),
                digest,
                ReceiptStatus::Accepted,
                None,
                Some(batch),
            )
            .await?;
        crate::crashpoint::pass(crate::crashpoint::Point::AfterInboxWrite);
        tracing::info!(
            id = entry.id.as_str(),
            from = env.sender.as_str(),
            kind = env.kind.as_str(),
            "received"
        );
        // A withdrawal ends the sharing of the case here: a withdrawal notice, or a consent
        // record that says withdrawn, not any document sent under a withdrawn consent. Where
        // this gateway controls the case itself, only its own consent's withdrawal does: another
        // controller's (the origin's, after a move) ends that controller's part only.
        let withdrawn = env.kind == DocType::ConsentWithdrawal
            || (env.kind == DocType::Consent && a.consent.status == ConsentStatus::Withdrawn);
        if withdrawn && !self.ended_elsewhere(&env.case, &a.consent.controller)? {
            self.cancel_case(&env.case, "consent withdrawn").await?;
        } else if env.kind == DocType::Consent {
            self.release_awaiting(&env.case).await?;
        }
        if env.kind == DocType::ResidenceChange {
            if let Some(Ok(Document::ResidenceChange(change))) = a.document.document() {
                self.residence_reported(&change, &env.sender).await?;
            }
        }
        Ok(receipt)
    }

    /// A receipt for `to` that stores nothing (a rejection), sealed in the next batch of
    /// receipts for it; empty (no receipt: the sender retries) when it could not be sealed.
    async fn receipt(
        &self,
        to: &OrgId,
        msg_id: Option<[u8; 16]>,
        digest: [u8; 32],
        status: ReceiptStatus,
        reason: Option<String>,
    ) -> Vec<u8> {
        self.sealed_receipt(to, msg_id, digest, status, reason, None)
            .await
            .unwrap_or_default()
    }

    /// A receipt for `to`, sealed in the next batch of receipts for it and, with `inbox` (the
    /// inbox write it acknowledges), stored with that write in the batch's commit.
    async fn sealed_receipt(
        &self,
        to: &OrgId,
        msg_id: Option<[u8; 16]>,
        digest: [u8; 32],
        status: ReceiptStatus,
        reason: Option<String>,
        inbox: Option<Tx>,
    ) -> Result<Vec<u8>, GatewayError> {
        let body = Receipt {
            msg_id,
            envelope_digest: digest,
            receiver: self.inner.org.clone(),
            time: self.now(),
            status,
            reason,
            checkpoint: self.checkpoint_for(to).ok().flatten(),
        }
        .body();
        let pending = InboxWrite {
            gw: self.clone(),
            tx: inbox,
            msg_id: msg_id.unwrap_or_default(),
        };
        self.inner
            .receipt_seals
            .seal(to, body, self.signer(), pending)
            .await
    }

    /// The audit checkpoint to carry to `peer`: the current one (see
    /// [`AuditLog::current_checkpoint`]), unless that very checkpoint already went to `peer`
    /// since this gateway started — a peer keeps the newest it saw, so sending it again on every
    /// envelope and receipt would only cost bytes.
    fn checkpoint_for(&self, peer: &OrgId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(cp) = self.inner.audit.current_checkpoint(
            self.inner.durable.store(),
            self.now(),
            &self.signer(),
        )?
        else {
            return Ok(None);
        };
        let digest = sha256(&cp);
        let mut sent = self
            .inner
            .checkpoints_sent
            .lock()
            .expect("checkpoints sent");
        if sent.get(peer) == Some(&digest) {
            return Ok(None);
        }
        sent.insert(peer.clone(), digest);
        drop(sent);
        // It travels naming its chain by fingerprint when the batch head beside it names the
        // same chain (the peer then holds it), so always unless signed before a rotation.
        let head_kid = self.signer().kid();
        let same_chain = Sign1::parse(&cp, "audit checkpoint", &Limits::default())
            .is_ok_and(|s| s.kid == head_kid);
        Ok(Some(if same_chain {
            tsunagi_protocol::checkpoint::without_chain(&cp).unwrap_or(cp)
        } else {
            cp
        }))
    }
}

/// An envelope's outbox write (entry, audit events, …) waiting for the envelope's batch seal;
/// [`commit_outbox`] adds the sealed envelope and writes a whole batch in one commit.
struct OutboxWrite {
    gw: Gateway,
    tx: Tx,
    msg_id: [u8; 16],
    case: CaseId,
}

/// An inbox write waiting for its receipt's batch seal (none for a rejection, which stores
/// nothing); [`commit_inbox`] adds the receipt (kept for replays) and writes a whole batch in
/// one commit.
struct InboxWrite {
    gw: Gateway,
    tx: Option<Tx>,
    msg_id: [u8; 16],
}

impl From<LinkClosed> for GatewayError {
    fn from(e: LinkClosed) -> Self {
        GatewayError::Store(StoreError::Internal {
            detail: e.to_string(),
        })
    }
}

/// The commit of a batch of sealed envelopes (see [`crate::link`]): each one over the size
/// limit is refused alone, the others are written together.
fn commit_outbox(items: Vec<(Vec<u8>, OutboxWrite)>) -> Committed<GatewayError> {
    Box::pin(async move {
        let Some(gw) = items.first().map(|(_, w)| w.gw.clone()) else {
            return Vec::new();
        };
        let max = gw.inner.cfg.delivery.max_message_bytes;
        let mut merged = Tx::new();
        let mut outcomes: Vec<Result<(), GatewayError>> = Vec::with_capacity(items.len());
        for (sealed, w) in items {
            if sealed.len() > max {
                outcomes.push(Err(invalid(format!(
                    "the envelope is {} bytes, over the limit of {max} bytes",
                    sealed.len()
                ))));
                continue;
            }
            match gw.inner.vault.case_key(w.case.as_str()) {
                Ok(key) => {
                    let mut tx = w.tx;
                    tx.set(
                        &Key::outbox_envelope(&w.msg_id),
                        key.seal(&sealed, &w.msg_id),
                    );
                    merged.append(tx);
                    outcomes.push(Ok(()));
                }
                Err(e) => outcomes.push(Err(e.into())),
            }
        }
        if let Err(e) = gw.commit(merged).await {
            for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *o = Err(e.clone().into());
            }
        }
        outcomes
    })
}

/// The commit of a batch of sealed receipts with the inbox writes they acknowledge.
fn commit_inbox(items: Vec<(Vec<u8>, InboxWrite)>) -> Committed<GatewayError> {
    Box::pin(async move {
        let Some(gw) = items.first().map(|(_, w)| w.gw.clone()) else {
            return Vec::new();
        };
        let n = items.len();
        let mut merged = Tx::new();
        for (sealed, w) in items {
            if let Some(mut tx) = w.tx {
                tx.set(&Key::seen(&w.msg_id), sealed);
                merged.append(tx);
            }
        }
        // Committed also when no receipt of the batch stores anything (rejections only): the
        // batch head carries this gateway's newest audit checkpoint, which may cover records
        // that are applied but not durable yet. The commit is the barrier that makes them
        // durable before any peer holds the checkpoint, so that a crash never looks like a
        // rewritten trail to it.
        let result = gw.commit(merged).await;
        (0..n).map(|_| result.clone().map_err(Into::into)).collect()
    })
}

/// A receiver's size rejection cannot name the envelope's digest (it did not read it all); the
/// sender accepts it as final when it is signed by the recipient and says `too_large`.
fn too_large_rejection(
    reply: &[u8],
    to: &OrgId,
    trust: &FederationTrust,
    now: Timestamp,
    known: &tsunagi_protocol::batch::KnownChains<'_>,
) -> Option<Receipt> {
    let r =
        Receipt::verify_signed_resolving(reply, to, trust, now, &Limits::default(), known).ok()?;
    (r.status == ReceiptStatus::Rejected
        && r.msg_id.is_none()
        && r.reason.as_deref() == Some("too_large"))
    .then_some(r)
}

/// What a caller has of a document's content besides its bundle.
#[derive(Clone, Copy)]
enum Known<'a> {
    /// The caller signed the document or verified its bundle just before: its content, or
    /// `None` when the bundle does not disclose it all. It is not verified again.
    Checked(Option<&'a Document>),
    /// Nothing: the content is read by verifying the bundle.
    Unchecked,
}

/// A document being queued: its signed bundle and what the caller has of its content. What
/// queuing reads of the document (its support period, the facts it records) comes from
/// `known` when it is there, so a submission verifies the author's signature once.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    bundle: &'a DocBundle,
    known: Known<'a>,
}

impl<'a> From<&'a DocBundle> for Outgoing<'a> {
    fn from(bundle: &'a DocBundle) -> Self {
        Self {
            bundle,
            known: Known::Unchecked,
        }
    }
}

/// The content of `bundle` for what this gateway records of it: from `known` when checked,
/// else read by verifying `bundle` at `now`. `None` when it does not verify or is not fully
/// disclosed.
fn document_of<'a>(
    bundle: &DocBundle,
    known: Known<'a>,
    trust: &FederationTrust,
    now: Timestamp,
) -> Option<std::borrow::Cow<'a, Document>> {
    match known {
        Known::Checked(d) => d.map(std::borrow::Cow::Borrowed),
        Known::Unchecked => full_document(bundle, trust, now)
            .ok()
            .map(std::borrow::Cow::Owned),
    }
}

/// `bundle` verified against the federation at `now`; `what` names it in the error.
fn verified(
    bundle: &DocBundle,
    trust: &FederationTrust,
    now: Timestamp,
    what: &str,
) -> Result<tsunagi_protocol::signed::VerifiedDoc, GatewayError> {
    bundle
        .verify(trust, now, &Limits::default())
        .map_err(|e| invalid(format!("{what} failed verification: {e}")))
}

fn full_document(
    bundle: &DocBundle,
    trust: &FederationTrust,
    now: Timestamp,
) -> Result<Document, GatewayError> {
    match verified(bundle, trust, now, "document")?.document() {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(invalid(format!("document content: {e}"))),
        None => Err(invalid("the document is not fully disclosed")),
    }
}

/// A consent record as disclosed in `bundle`: the whole record, or a party's view of it.
fn consent_document(
    bundle: &DocBundle,
    trust: &FederationTrust,
    now: Timestamp,
) -> Result<ConsentRecord, GatewayError> {
    match verified(bundle, trust, now, "consent record")?.consent_view() {
        Some(Ok(c)) => Ok(c),
        Some(Err(e)) => Err(invalid(format!("consent record content: {e}"))),
        None => Err(invalid("the document is not a consent record")),
    }
}

struct StoreView<'a> {
    gw: &'a Gateway,
    directory: &'a Directory,
    /// The consent view fetched from the sender for this envelope, checked against its digest.
    fetched: Option<&'a DocBundle>,
    /// The signer chains fetched from the sender for this envelope, checked against their
    /// fingerprints.
    chain: &'a [([u8; 32], Vec<Vec<u8>>)],
    /// What the sender showed of held consents when asked for this envelope (consent id, its
    /// view or nothing).
    handovers: &'a [(String, Option<HandoverLink>)],
    /// What the sender showed of the moves that made it a controller, when asked for this
    /// envelope.
    proof: &'a Option<Option<Vec<HandoverLink>>>,
}

impl ReceiverState for StoreView<'_> {
    fn stored_receipt(&self, msg_id: &[u8; 16]) -> Option<Vec<u8>> {
        self.gw
            .inner
            .durable
            .store()
            .read(&Key::seen(msg_id))
            .ok()
            .flatten()
    }
    fn first_sender(&self, msg_id: &[u8; 16]) -> Option<OrgId> {
        // The inbox entry names who sent it; after a purge it is gone, and the id is then
        // answered as a replay from anyone (the receipt says no more than that it arrived).
        let meta = self
            .gw
            .inner
            .durable
            .store()
            .read(&Key::inbox_entry(msg_id))
            .ok()??;
        serde_json::from_slice::<InboxEntry>(&meta)
            .ok()
            .map(|e| e.from)
    }
    fn latest_consent(&self, id: &str) -> Option<ConsentRecord> {
        self.gw
            .verified_consent(id)
            .ok()
            .flatten()
            .map(|v| v.record.clone())
    }
    fn latest_consent_hash(&self, id: &str) -> Option<[u8; 32]> {
        self.gw.consent_digest_by_id(id).ok().flatten()
    }
    fn consent_version_hash(&self, id: &str, version: u32) -> Option<[u8; 32]> {
        let store = self.gw.inner.durable.store();
        let digest = store
            .read(&Key::consent_version_digest(id, version))
            .ok()
            .flatten()?;
        digest.try_into().ok()
    }
    fn signer_chain(&self, kid: &[u8; 32]) -> Option<Vec<Vec<u8>>> {
        if let Some((_, c)) = self.chain.iter().find(|(k, _)| k == kid) {
            return Some(c.clone());
        }
        self.gw.stored_chain(kid)
    }
    fn handover_view(&self, _case: &CaseId, consent: &str) -> Option<Option<HandoverLink>> {
        self.handovers
            .iter()
            .find(|(id, _)| id == consent)
            .map(|(_, view)| view.clone())
    }
    fn controller_proof(&self, _case: &CaseId) -> Option<Option<Vec<HandoverLink>>> {
        self.proof.clone()
    }
    fn transfer_sent(&self, case: &CaseId, to: &OrgId) -> Option<bool> {
        self.gw.transfer_sent_to(case, to).ok()
    }
    fn consent_view(&self, _case: &CaseId, _view: &[u8; 32]) -> Option<DocBundle> {
        // Only what was fetched for this envelope: the receiver's own copy is found by id.
        self.fetched.cloned()
    }
    fn case_consents(&self, case: &CaseId) -> Option<Vec<HeldConsent>> {
        // Each controller's consent is kept under a key naming the controller; one that no
        // longer verifies today still names a controller this gateway knows. A key or store
        // that cannot be read refuses (`None`), never takes the consent as the case's first.
        let gw = self.gw;
        let store = gw.inner.durable.store();
        let verified = |id: &[u8]| {
            gw.verified_consent(&String::from_utf8_lossy(id))
                .ok()
                .flatten()
                .map(|v| v.record.clone())
        };
        let mut held = Vec::new();
        for (controller, id) in store
            .read_all(&Prefix::controller_consents(case.as_str()))
            .ok()?
        {
            let controller = std::str::from_utf8(&controller).ok()?.parse().ok()?;
            held.push(HeldConsent {
                controller,
                record: verified(&id),
            });
        }
        if held.is_empty() {
            // A store from before consents were kept per controller: the case's one consent.
            if let Some(id) = store.read(&Key::case_consent(case.as_str())).ok()? {
                let record = verified(&id)?;
                held.push(HeldConsent {
                    controller: record.controller.clone(),
                    record: Some(record),
                });
            }
        }
        Some(held)
    }
    fn role_of(&self, org: &OrgId) -> Option<tsunagi_protocol::Role> {
        self.directory.role_of(org)
    }
    fn is_party(&self, case: &CaseId) -> bool {
        self.gw.has_parties(case).unwrap_or(false)
    }
    fn batch_heads(&self) -> Option<&tsunagi_protocol::batch::HeadCache> {
        Some(&self.gw.inner.batch_heads)
    }
    fn delegated(
        &self,
        author: &OrgId,
        case: &CaseId,
        doc_type: DocType,
    ) -> Option<Result<(), tsunagi_protocol::document::delegation::DelegationDenied>> {
        self.gw.delegated(author, case, doc_type).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_certs::FederationCa;

    #[test]
    fn a_received_delegation_is_kept_only_from_the_controller_and_never_replaces_anothers() {
        with_sender("delegation-author", |gw, _, _| async move {
            let doc = |author: &str, version: u32| {
                let d = serde_json::json!({
                    "document_type": "delegation",
                    "author": author,
                    "subject": "case-131059-2026-0007",
                    "id": "delegation-131059-2026-0007-1",
                    "version": version,
                    "contractor": "sp:1330000011",
                    "tasks": ["residence_change"],
                    "period": {"from": "2026-11-01", "to": "2027-04-30"},
                    "status": "active",
                    "date": "2026-11-01",
                    "contract": "退院後支援に係る相談支援業務委託契約（文京区 第12号）",
                });
                Some(Ok(Document::from_value(d).unwrap()))
            };
            let bunkyo: OrgId = "lg:131059".parse().unwrap();
            let setagaya: OrgId = "lg:131121".parse().unwrap();
            let case: CaseId = "case-131059-2026-0007".parse().unwrap();
            let receive = |d, controller: &OrgId| {
                let mut tx = Tx::new();
                gw.receive_delegation(d, controller, &mut tx).unwrap();
                tx
            };
            let held = |gw: &Gateway| {
                gw.delegations(&case)
                    .unwrap()
                    .iter()
                    .map(|d| (d.author.to_string(), d.version))
                    .collect::<Vec<_>>()
            };
            // Setagaya's delegation, sent under Bunkyo's consent: not kept.
            let tx = receive(doc("lg:131121", 1), &bunkyo);
            gw.commit(tx).await.unwrap();
            assert!(held(&gw).is_empty());
            // Bunkyo's, under its own consent: kept.
            let tx = receive(doc("lg:131059", 1), &bunkyo);
            gw.commit(tx).await.unwrap();
            assert_eq!(held(&gw), vec![("lg:131059".to_owned(), 1)]);
            // Setagaya's version 5 under the same id, even under a consent of its own: the
            // controller's delegation stays.
            let tx = receive(doc("lg:131121", 5), &setagaya);
            gw.commit(tx).await.unwrap();
            assert_eq!(held(&gw), vec![("lg:131059".to_owned(), 1)]);
            // Bunkyo's next version replaces its own.
            let tx = receive(doc("lg:131059", 2), &bunkyo);
            gw.commit(tx).await.unwrap();
            assert_eq!(held(&gw), vec![("lg:131059".to_owned(), 2)]);
        });
    }

    #[test]
    fn a_purge_leaves_nothing_of_the_case_but_its_tombstone_and_counts_every_record() {
        with_sender("purge-all", |gw, _, _| async move {
            let case: CaseId = crate::testkit::CASE.parse().unwrap();
            // The consent (queued to the hospital), a delegation and a Form 7 kept for another
            // channel: records of the case in every space that holds any.
            gw.record_consent(crate::testkit::pair_consent().unwrap())
                .await
                .unwrap();
            // The same case recorded again under a new consent id: the pointers name the new
            // one only, and the purge must find the old one's records too.
            let mut renamed = crate::testkit::pair_consent().unwrap();
            renamed["id"] = format!("{}-2", renamed["id"].as_str().unwrap()).into();
            gw.record_consent(renamed).await.unwrap();
            let delegation = serde_json::json!({
                "document_type": "delegation",
                "author": crate::testkit::SENDER,
                "subject": crate::testkit::CASE,
                "id": "delegation-131059-2026-0007-1",
                "version": 1,
                "contractor": "sp:1330000011",
                "tasks": ["residence_change"],
                "period": {"from": "2026-11-01", "to": "2027-04-30"},
                "status": "active",
                "date": "2026-11-01",
                "contract": "退院後支援に係る相談支援業務委託契約（文京区 第12号）",
            });
            let mut tx = Tx::new();
            gw.receive_delegation(
                Some(Ok(Document::from_value(delegation).unwrap())),
                gw.org(),
                &mut tx,
            )
            .unwrap();
            tx.set(&Key::no_gateway(case.as_str()), b"sealed Form 7");
            gw.commit(tx).await.unwrap();
            assert_eq!(gw.delegations(&case).unwrap().len(), 1);

            gw.purge_case(case.as_str()).await.unwrap();
            let store = gw.inner.durable.store();
            let mut left = vec![];
            use crate::store::Space;
            for space in Space::ALL {
                for (k, v) in store.scan(space, b"").unwrap() {
                    let names_case = k
                        .windows(case.as_str().len())
                        .any(|w| w == case.as_str().as_bytes());
                    let is_message = matches!(space, Space::Outbox | Space::Inbox);
                    if names_case || is_message {
                        left.push((space, String::from_utf8_lossy(&k).into_owned(), v.len()));
                    }
                }
            }
            // This gateway held no other case: no consent record of any id is left.
            for (k, v) in store.scan(Space::Consents, b"").unwrap() {
                left.push((
                    Space::Consents,
                    String::from_utf8_lossy(&k).into_owned(),
                    v.len(),
                ));
            }
            let tombstone = format!("tomb/{}", case.as_str());
            left.retain(|(space, k, len)| {
                !(*space == Space::Cases && *k == tombstone
                    || *space == Space::CaseKeys && *len == 0)
            });
            assert!(left.is_empty(), "left after the purge: {left:?}");
            assert!(gw.delegations(&case).unwrap().is_empty());
            let tomb = gw.tombstone(case.as_str()).unwrap().unwrap();
            // Two messages (each consent to the hospital), and many more records.
            assert_eq!(tomb["items"], 2, "{tomb}");
            assert!(tomb["records"].as_u64().unwrap() > 8, "{tomb}");
        });
    }

    #[test]
    fn another_controllers_end_or_withdrawal_leaves_a_controlling_gateways_own_support() {
        with_sender("ended-elsewhere", |gw, _, _| async move {
            let case: CaseId = "case-131059-2026-0007".parse().unwrap();
            let own = gw.org().clone();
            let other: OrgId = "lg:131121".parse().unwrap();
            // Holding no consent of its own, any controller's end ends the case here.
            assert!(!gw.ended_elsewhere(&case, &other).unwrap());
            let mut tx = Tx::new();
            tx.set(
                &Key::controller_consent(case.as_str(), own.as_str()),
                b"consent-131059-2026-0007".as_slice(),
            );
            gw.commit(tx).await.unwrap();
            // Controlling the case itself, another controller's end is that controller's only;
            // its own end is its own.
            assert!(gw.ended_elsewhere(&case, &other).unwrap());
            assert!(!gw.ended_elsewhere(&case, &own).unwrap());
        });
    }

    /// Whether no consent follow-up is left to resume.
    fn no_follow_up_pending(gw: &Gateway) -> bool {
        gw.inner
            .durable
            .store()
            .read_all(&Prefix::consent_followups())
            .unwrap()
            .is_empty()
    }

    /// Runs `test` on a 2-thread runtime with the gateway of the pair federation's sender, made
    /// in a fresh directory named after `name` (given too, with the gateway's configuration).
    fn with_sender<F, Fut>(name: &str, test: F)
    where
        F: FnOnce(Gateway, std::path::PathBuf, Config) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        with_configured_sender(name, "", test)
    }

    /// [`with_sender`] with `extra` added to the gateways' configuration.
    fn with_configured_sender<F, Fut>(name: &str, extra: &str, test: F)
    where
        F: FnOnce(Gateway, std::path::PathBuf, Config) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let root =
            std::env::temp_dir().join(format!("tsunagi-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cfg = crate::testkit::pair(&root, "engine test CA", extra)
            .and_then(|f| f.config(crate::testkit::SENDER))
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let gw = Gateway::open(cfg.clone()).unwrap();
            test(gw, root.clone(), cfg).await
        });
        rt.shutdown_timeout(Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// An envelope to `gw` from the pair's receiver, signed and sealed by it (a batch of one),
    /// with message id `msg_id`. Its document is not a real one: the replay check comes before
    /// the document is read.
    fn envelope_from_the_receiver(
        gw: &Gateway,
        root: &std::path::Path,
        msg_id: [u8; 16],
    ) -> Vec<u8> {
        let creds = tsunagi_certs::Credentials::load(
            root.join(crate::testkit::RECEIVER.replace(':', "_"))
                .join("creds"),
        )
        .unwrap();
        let signer = Signer::from_pkcs8(
            creds.signing_key.secret_pkcs8_der(),
            creds.signing_chain.clone(),
        )
        .unwrap();
        let now = gw.now();
        Envelope {
            msg_id,
            iat: now,
            exp: now.plus(3600),
            sender: crate::testkit::RECEIVER.parse().unwrap(),
            aud: gw.org().clone(),
            kind: DocType::OpinionLetter,
            purpose: Purpose::PlanCreation,
            case: crate::testkit::CASE.parse().unwrap(),
            consent_ref: ConsentRef {
                id: "consent-test".into(),
                version: 1,
                hash: [0; 32],
                view: [0; 32],
            },
            doc: vec![0xa0],
            disclosures: vec![],
            in_reply_to: None,
            notice: NO_REDISCLOSURE_NOTICE.into(),
            checkpoint: None,
        }
        .seal(&signer)
    }

    #[test]
    fn a_replay_gets_the_stored_receipt_only_from_its_first_sender_and_once_it_is_durable() {
        with_sender("replay-durable", |gw, root, _| async move {
            let msg_id = [7; 16];
            let bytes = envelope_from_the_receiver(&gw, &root, msg_id);
            let replay = || InboundMessage::Message {
                peer: crate::testkit::RECEIVER.parse().unwrap(),
                bytes: bytes.clone(),
            };
            // The first copy's receipt, as `store_inbound` keeps it.
            let mut tx = Tx::new();
            tx.set(&Key::seen(&msg_id), b"the first copy's receipt");
            gw.commit(tx).await.unwrap();
            assert_eq!(
                gw.handle_inbound(replay()).await,
                b"the first copy's receipt"
            );
            // Had another org sent that id first, the receiver's envelope would be refused (a
            // rejection receipt), not handed that org's receipt.
            let entry = |from: &str| InboxEntry {
                id: hex(&msg_id),
                from: from.parse().unwrap(),
                kind: Some(DocType::OpinionLetter),
                purpose: Some(Purpose::PlanCreation),
                case: crate::testkit::CASE.parse().unwrap(),
                received_at: 0,
                disclosed: vec![],
                withheld: vec![],
                report: None,
            };
            let mut tx = Tx::new();
            tx.set(
                &Key::inbox_entry(&msg_id),
                serde_json::to_vec(&entry("mi:1310000025")).unwrap(),
            );
            gw.commit(tx).await.unwrap();
            // The same when that org's copy was stored while this one was being checked: no
            // receipt for this one, and only the first sender's copy counts as stored.
            let receiver: OrgId = crate::testkit::RECEIVER.parse().unwrap();
            assert!(gw.concurrent_copy_receipt(&msg_id, &receiver).is_err());
            let first: OrgId = "mi:1310000025".parse().unwrap();
            assert_eq!(
                gw.concurrent_copy_receipt(&msg_id, &first)
                    .unwrap()
                    .as_deref(),
                Some(&b"the first copy's receipt"[..])
            );
            let refused = gw.handle_inbound(replay()).await;
            assert_ne!(refused, b"the first copy's receipt");
            assert!(!refused.is_empty(), "a rejection receipt");
            let mut tx = Tx::new();
            tx.set(
                &Key::inbox_entry(&msg_id),
                serde_json::to_vec(&entry(crate::testkit::RECEIVER)).unwrap(),
            );
            gw.commit(tx).await.unwrap();
            assert_eq!(
                gw.handle_inbound(replay()).await,
                b"the first copy's receipt"
            );
            // The store can no longer make anything durable (the first copy's flush failed):
            // the receipt it can still read must not go out, or the sender would count as
            // delivered what a restart may not have.
            gw.inner.durable.stop_for_test(StoreError::Internal {
                detail: "a flush failed (test)".into(),
            });
            assert!(
                gw.handle_inbound(replay()).await.is_empty(),
                "a receipt was sent for a copy that is not durable"
            );
        });
    }

    /// The outbox counts as a full read of the store gives them.
    fn counted_from_the_store(gw: &Gateway) -> BTreeMap<OrgId, PeerGauge> {
        let g = gauges::OutboxGauges::default();
        gw.outbox_each(&mut |e| {
            g.apply(vec![gauges::GaugeMove::present(e.to, e.state, e.created)])
        })
        .unwrap();
        g.snapshot()
    }

    #[test]
    fn outbox_gauges_follow_every_change_to_the_outbox() {
        let extra = "[delivery]\nconnect_timeout_ms = 100\nattempt_timeout_ms = 200\nretry_initial_ms = 50\nretry_max_ms = 100\n";
        with_configured_sender("gauges", extra, |gw, _, _| async move {
            let check = |gw: &Gateway, when: &str| {
                assert_eq!(gw.outbox_gauges(), counted_from_the_store(gw), "{when}");
            };
            check(&gw, "at start");
            // New entries (consent copies), one cancelled by staff.
            let mut queued = Vec::new();
            for version in 1..=3u32 {
                let mut consent = crate::testkit::pair_consent().unwrap();
                consent["version"] = version.into();
                queued.extend(gw.record_consent(consent).await.unwrap());
            }
            check(&gw, "after queueing");
            let first = parse_id(&queued[0].id).unwrap();
            gw.cancel_entry(&first, Some("staff-1")).await.unwrap();
            check(&gw, "after a cancellation");
            // Failed attempts (the hospital's gateway is not running): retry_wait.
            let runner = {
                let gw = gw.clone();
                tokio::spawn(async move { gw.run().await })
            };
            let t0 = std::time::Instant::now();
            while !gw
                .outbox()
                .unwrap()
                .iter()
                .any(|e| e.state == OutState::RetryWait)
            {
                assert!(t0.elapsed() < Duration::from_secs(20), "no attempt failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            gw.shutdown().await.unwrap();
            runner.abort();
            let _ = runner.await;
            check(&gw, "after failed attempts");
            assert!(gw.outbox_gauges().values().any(|g| g.backlog() > 0));
            // A withdrawal cancels what waits and queues its notices.
            let id = crate::testkit::pair_consent().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            gw.withdraw_consent(&id).await.unwrap();
            check(&gw, "after a withdrawal");
            // A purge removes the case's entries.
            let case = queued[0].case.clone();
            gw.purge_case(case.as_str()).await.unwrap();
            check(&gw, "after a purge");
            // Entries of another case, queued after the purge.
            let mut consent = crate::testkit::pair_consent().unwrap();
            consent["id"] = "consent-131059-2026-0008".into();
            consent["subject"] = "case-131059-2026-0008".into();
            gw.record_consent(consent).await.unwrap();
            check(&gw, "after queueing again");
            assert!(!gw.outbox_gauges().is_empty());
        });
    }

    #[test]
    fn a_shutdown_records_no_failed_attempt_and_starts_no_new_delivery() {
        with_sender("shutdown", |gw, _, _| async move {
            // Copies for the hospital, whose gateway is not running: attempts wait to connect.
            for version in 1..=40u32 {
                let mut consent = crate::testkit::pair_consent().unwrap();
                consent["version"] = version.into();
                gw.record_consent(consent).await.unwrap();
            }
            let before = gw.outbox().unwrap();
            let runner = {
                let gw = gw.clone();
                tokio::spawn(async move { gw.run().await })
            };
            while gw.inner.sending.lock().expect("sending").is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            gw.shutdown().await.unwrap();
            // What was cut off records nothing, and nothing else is started.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(gw.inner.sending.lock().expect("sending").is_empty());
            let after = gw.outbox().unwrap();
            assert_eq!(after.len(), before.len());
            for e in &after {
                let was = before.iter().find(|b| b.id == e.id).unwrap();
                assert_eq!(
                    (e.state, e.attempts, &e.last_error),
                    (was.state, was.attempts, &was.last_error),
                    "{}",
                    e.id
                );
            }
            runner.abort();
        });
    }

    #[test]
    fn a_recorded_consent_returns_its_copies_while_housekeeping_resumes_follow_ups() {
        with_sender("consent-followup", |gw, _, _| async move {
            let hospital: OrgId = crate::testkit::RECEIVER.parse().unwrap();
            // Housekeeping's resume, as fast as it can go.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (bg, halt) = (gw.clone(), stop.clone());
            let resumer = tokio::spawn(async move {
                while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                    bg.resume_consent_followups().await.unwrap();
                    tokio::task::yield_now().await;
                }
            });
            for version in 1..=20u32 {
                let mut consent = crate::testkit::pair_consent().unwrap();
                consent["version"] = version.into();
                let queued = gw.record_consent(consent).await.unwrap();
                // The copy is queued once, and the caller is told about it.
                assert!(
                    queued
                        .iter()
                        .any(|e| e.to == hospital && e.kind == DocType::Consent),
                    "version {version}: {queued:?}"
                );
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            resumer.await.unwrap();
            let copies = gw
                .outbox()
                .unwrap()
                .into_iter()
                .filter(|e| e.to == hospital && e.kind == DocType::Consent)
                .count();
            assert_eq!(copies, 20);
            assert!(no_follow_up_pending(&gw));
        });
    }

    /// Records consent `json` as a build before the opener and consent-id rules did: stored as
    /// it is, without the checks of [`Gateway::record_consent`].
    async fn recorded_as_an_earlier_build_did(gw: &Gateway, json: &serde_json::Value) {
        let Document::Consent(record) = Document::from_value(json.clone()).unwrap() else {
            panic!("not a consent")
        };
        let bundle = gw.sign_own(&Document::Consent(record.clone())).unwrap();
        let mut tx = Tx::new();
        gw.store_consent(&record, &bundle, &mut tx).unwrap();
        gw.commit(tx).await.unwrap();
    }

    #[test]
    fn a_first_consent_needs_a_case_id_naming_an_opener_but_a_later_version_or_a_withdrawal_never_does(
    ) {
        with_sender("consent-opener", |gw, _, _| async move {
            // A case opened before case ids named their opener.
            let mut consent = crate::testkit::pair_consent().unwrap();
            consent["subject"] = "case-7".into();
            let e = gw
                .record_consent(consent.clone())
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("case-7 names no authority"), "{e}");
            // Recorded as an earlier build did.
            recorded_as_an_earlier_build_did(&gw, &consent).await;
            // Its next version and the person's withdrawal are recorded.
            consent["version"] = 2.into();
            gw.record_consent(consent.clone()).await.unwrap();
            // A version about another case is refused: a consent record stays with its case.
            let mut moved = consent.clone();
            moved["version"] = 3.into();
            moved["subject"] = "case-131059-2026-0099".into();
            let e = gw.record_consent(moved).await.unwrap_err().to_string();
            assert!(e.contains("a consent record stays with its case"), "{e}");
            consent["version"] = 3.into();
            consent["status"] = "withdrawn".into();
            gw.record_consent(consent).await.unwrap();
            // A case another authority opened, which nothing held here hands over: refused.
            let mut theirs = crate::testkit::pair_consent().unwrap();
            theirs["subject"] = "case-132012-2026-0001".into();
            theirs["id"] = "consent-131059-2026-0099".into();
            let e = gw.record_consent(theirs).await.unwrap_err().to_string();
            assert!(
                e.contains("was opened by lg:132012")
                    && e.contains("no consent held here hands it over to lg:131059"),
                "{e}"
            );
            // A new consent's id must name this authority; a consent recorded under an id
            // naming none before this rule still takes its later versions.
            let mut unnamed = crate::testkit::pair_consent().unwrap();
            unnamed["id"] = "consent-7".into();
            let e = gw
                .record_consent(unnamed.clone())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("\"consent-7\" names no authority")
                    && e.contains("consent-131059-2026-0007"),
                "{e}"
            );
            recorded_as_an_earlier_build_did(&gw, &unnamed).await;
            unnamed["version"] = 2.into();
            gw.record_consent(unnamed).await.unwrap();
        });
    }

    #[test]
    fn every_recorded_consent_version_keeps_its_digest_until_the_case_is_purged() {
        with_sender("consent-digests", |gw, _, _| async move {
            let consent = crate::testkit::pair_consent().unwrap();
            let id = consent["id"].as_str().unwrap().to_owned();
            let digest = |v: u32| {
                gw.inner
                    .durable
                    .store()
                    .read(&Key::consent_version_digest(&id, v))
                    .unwrap()
            };
            for version in 1..=3u32 {
                let mut consent = consent.clone();
                consent["version"] = version.into();
                gw.record_consent(consent).await.unwrap();
                // The newest version's digest is the one envelopes name (`consentRef.hash`).
                assert_eq!(
                    digest(version).as_deref(),
                    gw.consent_digest_by_id(&id)
                        .unwrap()
                        .as_ref()
                        .map(|d| &d[..])
                );
            }
            // The older versions keep theirs: an envelope naming one is judged by the newest.
            let kept: Vec<_> = (1..=3).map(|v| digest(v).expect("a digest")).collect();
            assert!(kept[0] != kept[1] && kept[1] != kept[2]);
            // A store written before digests were kept per version: recording the next version
            // keeps the one held so far.
            let mut b = Batch::new();
            b.remove(&Key::consent_version_digest(&id, 3));
            gw.inner.durable.store().apply(b).unwrap();
            let mut v4 = consent.clone();
            v4["version"] = 4.into();
            gw.record_consent(v4).await.unwrap();
            assert_eq!(digest(3).as_deref(), Some(&kept[2][..]));
            // A purge removes them with the consent.
            gw.purge_case(crate::testkit::CASE).await.unwrap();
            assert!((1..=4).all(|v| digest(v).is_none()));
        });
    }

    #[test]
    fn a_listing_gives_one_cases_entries_or_only_the_newest_and_cases_are_counted() {
        with_sender("listing-page", |gw, _, _| async move {
            let a: CaseId = crate::testkit::CASE.parse().unwrap();
            let b: CaseId = "case-131059-2026-0008".parse().unwrap();
            let mut tx = Tx::new();
            // Seven entries, made one second apart, alternating between the two cases; their
            // ids run against their times, so that key order is not time order.
            for n in 0..7u8 {
                let (entry, _) = outbox::create(
                    outbox::NewEntry {
                        id: hex(&[9 - n; 16]),
                        to: crate::testkit::RECEIVER.parse().unwrap(),
                        kind: DocType::SupportPlan,
                        purpose: Purpose::PlanImplementation,
                        case: if n % 2 == 0 { a.clone() } else { b.clone() },
                        profile: "full".into(),
                        withheld: vec![],
                        now: 1_790_000_000 + u64::from(n),
                        expires: 1_790_086_400,
                    },
                    outbox::Create::Queue,
                );
                tx.set(
                    &Key::outbox_entry(&[9 - n; 16]),
                    serde_json::to_vec(&entry).unwrap(),
                );
            }
            gw.commit(tx).await.unwrap();
            let times = |v: Vec<OutboxEntry>| v.iter().map(|e| e.created % 10).collect::<Vec<_>>();
            assert_eq!(times(gw.outbox().unwrap()), vec![0, 1, 2, 3, 4, 5, 6]);
            assert_eq!(
                times(gw.outbox_where(|e| e.case == b, None).unwrap()),
                vec![1, 3, 5]
            );
            // The newest two, oldest first (more than twice the page was read: trimmed on the way).
            assert_eq!(
                times(gw.outbox_where(|_| true, Some(2)).unwrap()),
                vec![5, 6]
            );
            assert_eq!(
                times(gw.outbox_where(|e| e.case == a, Some(3)).unwrap()),
                vec![2, 4, 6]
            );
            assert!(gw.outbox_where(|_| true, Some(0)).unwrap().is_empty());
            assert_eq!(
                gw.case_list().unwrap(),
                vec![
                    CaseSummary {
                        case: a.clone(),
                        sent: 4,
                        received: 0,
                        last: 1_790_000_006
                    },
                    CaseSummary {
                        case: b.clone(),
                        sent: 3,
                        received: 0,
                        last: 1_790_000_005
                    },
                ]
            );
            // An entry that does not decode is an error naming it, in a page as in the whole.
            let mut b = Batch::new();
            b.set(&Key::outbox_entry(&[1; 16]), b"{");
            gw.inner.durable.store().apply(b).unwrap();
            let e = gw.outbox_where(|_| true, Some(1)).unwrap_err().to_string();
            assert!(
                e.contains(&format!("outbox entry {}", "01".repeat(16))),
                "{e}"
            );
        });
    }

    #[test]
    fn the_form_7s_of_a_case_are_found_by_their_index_also_after_the_migration_to_it() {
        with_sender("form7-index", |gw, _, _| async move {
            let case: CaseId = crate::testkit::CASE.parse().unwrap();
            let to: OrgId = "lg:131121".parse().unwrap();
            let store = gw.inner.durable.store();
            // A Form 7 in the outbox as a format 2 gateway kept it: without the index.
            let id = [7u8; 16];
            let (entry, _) = outbox::create(
                outbox::NewEntry {
                    id: hex(&id),
                    to: to.clone(),
                    kind: DocType::TransferNotice,
                    purpose: Purpose::RelocationTransfer,
                    case: case.clone(),
                    profile: "transfer_notice".into(),
                    withheld: vec![],
                    now: gw.now().0,
                    expires: gw.now().plus(3600).0,
                },
                outbox::Create::Queue,
            );
            let mut b = Batch::new();
            b.set(&Key::outbox_entry(&id), serde_json::to_vec(&entry).unwrap());
            b.set(&Key::format(), 2u32.to_be_bytes());
            store.apply(b).unwrap();
            // Only the index is read, never the whole outbox.
            assert!(!gw.transfer_sent_to(&case, &to).unwrap());
            assert_eq!(gw.transfer_destination(&case).unwrap(), None);
            // What the gateway runs at start migrates the store and indexes it.
            assert_eq!(
                crate::store::schema::check_format(store).unwrap(),
                crate::store::schema::Opened::Migrated { from: 2 }
            );
            assert!(gw.transfer_sent_to(&case, &to).unwrap());
            assert!(!gw
                .transfer_sent_to(&case, &"lg:130001".parse().unwrap())
                .unwrap());
            assert_eq!(gw.transfer_destination(&case).unwrap(), Some(to.clone()));
            // An index entry whose outbox entry is gone is an error naming it, not skipped.
            let mut b = Batch::new();
            b.set(&Key::transfer_notice_sent(case.as_str(), &[8; 16]), b"");
            store.apply(b).unwrap();
            let e = gw.transfer_sent_to(&case, &to).unwrap_err().to_string();
            assert!(
                e.contains(&format!("outbox entry {}", "08".repeat(16))),
                "{e}"
            );
            // A purge removes the index with the case.
            gw.purge_case(crate::testkit::CASE).await.unwrap();
            assert!(store
                .read_all(&Prefix::transfer_notices_sent(case.as_str()))
                .unwrap()
                .is_empty());
        });
    }

    #[test]
    fn an_end_of_support_dated_long_ago_starts_the_retention_clock_today() {
        with_sender("retention-start", |gw, _, _| async move {
            let mut consent = crate::testkit::pair_consent().unwrap();
            gw.record_consent(consent.clone()).await.unwrap();
            // A withdrawn version dated years ago (a typing error): the case is not purged at
            // the next housekeeping, its retention runs from the day the end was recorded.
            consent["version"] = 2.into();
            consent["status"] = "withdrawn".into();
            consent["date"] = "2001-01-01".into();
            gw.record_consent(consent).await.unwrap();
            assert!(gw.purge_due().await.unwrap().is_empty());
            let key = Key::support_end(crate::testkit::CASE);
            let recorded = || gw.inner.durable.store().read(&key).unwrap().unwrap();
            let today = gw.now().date();
            assert_eq!(retention_day(&recorded()), Some(today));
            // A later copy or a correction keeps the day it was first recorded: a correction
            // to a day long past does not purge, one to a day to come counts from that day,
            // and a far-future typing error can be corrected.
            let day = |s: &str| s.parse::<tsunagi_protocol::Date>().unwrap();
            for (stated, starts) in [
                ("2001-01-02", today),
                ("2099-01-01", day("2099-01-01")),
                ("2026-01-01", today.max(day("2026-01-01"))),
            ] {
                let mut tx = Tx::new();
                gw.note_support_end(&mut tx, &crate::testkit::CASE.parse().unwrap(), day(stated))
                    .unwrap();
                gw.commit(tx).await.unwrap();
                assert_eq!(retention_day(&recorded()), Some(starts), "{stated}");
            }
            // A record from before the day of recording was kept: its one day is both.
            assert_eq!(retention_day(b"2027-01-25"), Some(day("2027-01-25")));
            assert_eq!(retention_day(b"2027-01-25 2027-02-01 x"), None);
        });
    }

    #[test]
    fn only_this_gateways_or_the_co_authors_meeting_record_decides_an_extension() {
        with_sender("meeting-decides", |gw, _, _| async move {
            let case: CaseId = crate::testkit::CASE.parse().unwrap();
            let day = |s: &str| s.parse::<tsunagi_protocol::Date>().unwrap();
            let x = tsunagi_protocol::period::PeriodExtension {
                to: day("2027-05-31"),
                meeting_on: day("2027-01-05"),
                consent_version: 1,
                consented_on: day("2027-01-05"),
                reason: "継続".into(),
                exception: None,
            };
            let prefecture: OrgId = "lg:130001".parse().unwrap();
            let decided = |gw: &Gateway| match gw.check_extension(&case, &x, Some(&prefecture)) {
                Err(e) => !e.to_string().contains("no record of a support meeting"),
                Ok(()) => true,
            };
            let facts = |author: &str| crate::events::DocFacts {
                meeting_on: Some(x.meeting_on),
                extension_to: Some(x.to),
                meeting_author: Some(author.parse().unwrap()),
                ..Default::default()
            };
            let received = |from: &str, author: &str| AuditEvent::Received {
                id: hex(&[1; 16]),
                case: case.clone(),
                from: from.parse().unwrap(),
                kind: DocType::MeetingRecord,
                disclosed: vec![],
                withheld: vec![],
                facts: facts(author),
            };
            let hospital = crate::testkit::RECEIVER;
            let record = |event: AuditEvent| {
                let gw = gw.clone();
                async move {
                    let mut tx = Tx::new();
                    gw.audit(&mut tx, event);
                    gw.commit(tx).await.unwrap();
                }
            };
            // The hospital's own meeting record, or the co-author's relayed by the hospital.
            record(received(hospital, hospital)).await;
            record(received(hospital, prefecture.as_str())).await;
            assert!(
                !decided(&gw),
                "a meeting record from the hospital decided it"
            );
            // Another author's record sent on from here does not count either.
            record(AuditEvent::Queued {
                id: hex(&[2; 16]),
                case: case.clone(),
                to: hospital.parse().unwrap(),
                kind: DocType::MeetingRecord,
                facts: facts(hospital),
            })
            .await;
            assert!(!decided(&gw), "a forwarded meeting record decided it");
            // The co-author's own record, from the co-author, does.
            record(received(prefecture.as_str(), prefecture.as_str())).await;
            assert!(decided(&gw));
            // What a sent or received meeting record is recorded with names its signed author.
            let meeting =
                Document::from_value(crate::testkit::fixture("meeting_record.json").unwrap())
                    .unwrap();
            let bundle = gw.sign_own(&meeting).unwrap();
            let mut facts = crate::events::DocFacts::default();
            gw.note_document(
                &bundle,
                None,
                Known::Unchecked,
                &case,
                &mut Tx::new(),
                &mut facts,
            )
            .unwrap();
            assert_eq!(facts.meeting_author.as_ref(), Some(meeting.author()));
            assert_eq!(facts.meeting_on, Some(x.meeting_on));
        });
    }

    #[test]
    fn only_a_plan_author_holding_its_own_consent_drafts_a_transfer_notice() {
        with_sender("relocate-controller", |gw, _, _| async move {
            let hospital: OrgId = crate::testkit::RECEIVER.parse().unwrap();
            gw.record_consent(crate::testkit::pair_consent().unwrap())
                .await
                .unwrap();
            gw.submit(
                &hospital,
                Purpose::PlanCreation,
                Content::Form(crate::testkit::fixture("support_plan.json").unwrap()),
            )
            .await
            .unwrap();
            // The plan's author without a consent of its own for the case (as a prefecture
            // writing the plan for an authority would be): a Form 7 from it would be refused by
            // every receiver (`notice_not_from_controller`), so none is drafted.
            let case = crate::testkit::CASE;
            let own = Key::controller_consent(case, gw.org().as_str());
            let store = gw.inner.durable.store();
            let (own_id, pointer) = (
                store.read(&own).unwrap().unwrap(),
                store.read(&Key::case_consent(case)).unwrap(),
            );
            let mut b = Batch::new();
            b.remove(&own);
            b.remove(&Key::case_consent(case));
            store.apply(b).unwrap();
            let moved =
                || gw.residence_change(crate::testkit::fixture("residence_change.json").unwrap());
            let err = moved().await.unwrap_err().to_string();
            assert!(err.contains("holds no consent of its own"), "{err}");
            // With its consent back, the move is taken (a notice drafted, or kept for another
            // channel when the destination has no gateway here).
            let mut b = Batch::new();
            b.set(&own, own_id);
            if let Some(p) = pointer {
                b.set(&Key::case_consent(case), p);
            }
            store.apply(b).unwrap();
            let out = moved().await.unwrap();
            assert_eq!(out["destination"], "lg:131121", "{out}");
        });
    }

    #[test]
    fn a_named_org_outside_the_directory_does_not_hold_up_the_others_copies() {
        with_sender("consent-unknown-org", |gw, _, _| async move {
            let hospital: OrgId = crate::testkit::RECEIVER.parse().unwrap();
            let mut consent = crate::testkit::pair_consent().unwrap();
            // Named before the hospital, and not in this federation's directory.
            consent["recipients"] = serde_json::json!([
                { "org": crate::testkit::SENDER },
                { "org": "ot:npo-not-in-the-directory" },
                { "org": crate::testkit::RECEIVER },
            ]);
            let queued = gw.record_consent(consent).await.unwrap();
            assert_eq!(
                queued.iter().map(|e| &e.to).collect::<Vec<_>>(),
                vec![&hospital]
            );
            // Nothing is left to resume.
            assert!(no_follow_up_pending(&gw));
        });
    }

    #[test]
    fn the_verified_consent_cache_still_checks_the_signer_certificate() {
        with_sender("consent-cache", |gw, root, cfg| async move {
            gw.record_consent(crate::testkit::pair_consent().unwrap())
                .await
                .unwrap();
            let hospital: OrgId = crate::testkit::RECEIVER.parse().unwrap();
            // The hospital took part in the case (support-end notices go only to parties).
            let case: CaseId = crate::testkit::CASE.parse().unwrap();
            let mut b = Batch::new();
            Gateway::note_party(&mut b, &case, &hospital);
            gw.inner.durable.store().apply(b).unwrap();
            let send = || {
                gw.submit(
                    &hospital,
                    Purpose::SupportEnd,
                    Content::Form(crate::testkit::support_end_form(10)),
                )
            };
            // The second submission reads the consent from the cache.
            send().await.unwrap();
            send().await.unwrap();
            assert_eq!(gw.inner.consents.lock().unwrap().len(), 1);
            // The cache never stands in for the store: other stored bytes are opened again.
            let id = gw
                .inner
                .consents
                .lock()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .clone();
            let store = gw.inner.durable.store();
            let sealed = store.read(&Key::consent(&id)).unwrap().unwrap();
            let mut tampered = sealed.clone();
            *tampered.last_mut().unwrap() ^= 1;
            let mut b = Batch::new();
            b.set(&Key::consent(&id), tampered);
            store.apply(b).unwrap();
            let err = send().await.unwrap_err().to_string();
            assert!(err.contains("decrypt"), "{err}");
            let mut b = Batch::new();
            b.set(&Key::consent(&id), sealed);
            store.apply(b).unwrap();
            send().await.unwrap();
            // Bunkyo's signing certificate (which signed the consent) is revoked.
            FederationCa::load(root.join("ca"))
                .unwrap()
                .revoke(cfg.credentials.join("sign.pem"))
                .unwrap();
            gw.reload().unwrap();
            let err = send().await.unwrap_err().to_string();
            assert!(
                err.contains("failed verification") && err.contains("revoked"),
                "{err}"
            );
        });
    }
}
