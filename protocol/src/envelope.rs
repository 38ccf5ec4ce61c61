//! Envelopes (gateway to gateway) and receipts, and the receiver's checks.
//!
//! An [`Envelope`] is sealed by the **sending gateway** in a batch ([`crate::batch`]): its body,
//! typed [`cose::TYP_ENVELOPE`] by the batch head, is one leaf of a Merkle tree whose root the
//! gateway signs once for everything ready for the same peer; the envelope carries the signed
//! head and its inclusion path, so it verifies on its own. Receipts are sealed the same way. It carries one author-signed document exactly as signed (`doc`), the items this one
//! recipient may see (`disclosures`), and the consent that allows it **by reference only**
//! (`consentRef` = id, version, SHA-256 of the signed consent document, and SHA-256 of the exact
//! bytes of the consent bundle in the recipient's view, see [`crate::profile::consent_view`]).
//! The controller's view for a party is the party's own view; a party forwarding to the
//! controller names its own view, and the controller judges by its whole record.
//!
//! # Slim envelopes: the consent travels once per peer and version
//! The consent bundle is not in the envelope. The receiver finds it (step 6 below) in this order:
//! its own stored copy of the same consent (a newer version, when the reference names a version
//! whose signed document this gateway recorded, or the same version of the same signed document:
//! then its own copy counts and the referenced view is not needed); the
//! envelope's own document, when the envelope carries the consent record itself; a view it holds
//! by digest ([`ReceiverState::consent_view`]). When none is there, [`Receiver::receive`] answers
//! [`Inbound::ConsentNeeded`]: the receiving gateway asks the sender for the bundle over the same
//! connection ([`crate::fetch`]), checks that the answer hashes to the referenced digest
//! ([`crate::fetch::consent_answer`]) and runs the checks again with it. A miss is never a
//! rejection: when the bundle cannot be had, no receipt is sent and the sender retries. An
//! envelope of [`LEGACY_ENVELOPE_VERSION`] (the bundle inline) is still read, its inline bundle
//! standing for the reference. One envelope goes to exactly one recipient
//! (`aud`). Envelopes and receipts may carry the sending gateway's latest signed audit checkpoint
//! (`checkpoint`), which the other side keeps as a witness of that trail.
//!
//! # The receiver's checks, in order ([`Receiver::receive`])
//!
//! 1. the envelope's signature and certificate chain — carried in the batch head, or named by
//!    fingerprint (the head's `kid`) and held here ([`ReceiverState::signer_chain`]; otherwise
//!    [`Inbound::ChainNeeded`]: fetched from the sender like the consent view);
//! 2. the TLS peer's org == `sender` == the envelope signing certificate's org;
//! 3. `aud` is this gateway's org;
//! 4. `iat` ≤ now + allowed skew and now < `exp`;
//! 5. `msgId` not seen before — a replay gets the stored receipt back and is not delivered again;
//! 6. the consent: if this gateway holds a newer version of it (and recorded the referenced
//!    version's document, [`ReceiverState::consent_version_hash`]), or the same version of the
//!    same signed document, about this case, its own copy counts; otherwise the referenced view (see
//!    above; [`Inbound::ConsentNeeded`] when it is not at hand) must be signed by its controller,
//!    an authority in the directory, and `consentRef` must name it exactly; and the
//!    [`gate`](crate::gate) allows (purpose, kind, this org; a notice only if this gateway is a
//!    party of the case);
//! 7. the document's author signature and chain — carried in `doc`, or named by its `kid` only
//!    (a gateway takes it out, [`Envelope::strip_document_chain`]) and put back from the chains
//!    held here, else [`Inbound::ChainNeeded`] before step 6 — its type == `kind` and subject ==
//!    `case`;
//! 8. each disclosed item hashes to a signed digest;
//! 9. no duplicate or unknown element;
//! 10. the author's directory role may write this type ([`DocType::author_roles`]);
//! 11. a consent withdrawal, a support end or a relocation transfer notice (Form 7) is authored
//!     by the controller of the consent it is judged under, and a withdrawal withdraws that
//!     consent ([`Rejection::NoticeNotFromController`]).
//!
//! Each failure is a distinct [`Rejection`] with a stable [`Rejection::code`] that goes into the
//! signed [`Receipt`]. A rejection is final: the sender does not retry it. Receipts are sent only
//! after the receiver's inbox write is durable, which is the caller's business.

use crate::batch::{self, KnownChains};
use crate::cbor::{self, map, uint, CborError, Limits, MapReader, Value};
use crate::cose::{self, sha256, ChainVerifier, CoseError, Sign1, Signer};
use crate::date::Timestamp;
use crate::document::{CaseId, ConsentRecipient, ConsentRecord, DocType, Purpose};
use crate::gate::{self, DenyReason, GateInput, Intent};
use crate::org::{OrgId, Role};
use crate::signed::{DocBundle, DocError, Item, VerifiedDoc};

/// Envelope format version: 2 since the consent travels by reference ([`ConsentRef::view`]).
pub const ENVELOPE_VERSION: u64 = 2;

/// The envelope format before slim envelopes, with the consent bundle inline (`"consent"`)
/// and no [`ConsentRef::view`]: still read (envelopes queued or stored before an upgrade), never
/// written.
pub const LEGACY_ENVELOPE_VERSION: u64 = 1;

/// Receipt format version.
pub const RECEIPT_VERSION: u64 = 1;

/// The no-redisclosure notice carried by every envelope and shown to staff with what arrives.
pub const NO_REDISCLOSURE_NOTICE: &str = "この文書に含まれる個人情報は、本人が同意した範囲で退院後支援のためにのみ利用してください。本人の同意なく第三者に提供することはできません。";

/// Default clock skew tolerated for `iat`, in seconds.
pub const DEFAULT_MAX_SKEW: u64 = 300;

/// A reference to the consent version that allows an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRef {
    /// The consent's id.
    pub id: String,
    /// Its version.
    pub version: u32,
    /// SHA-256 of the consent's signed document bytes (the same in every view of it).
    pub hash: [u8; 32],
    /// SHA-256 of the exact bytes ([`DocBundle::to_bytes`]) of the consent bundle in the view
    /// that allows this envelope: what the receiver looks up, or fetches from the sender.
    pub view: [u8; 32],
}

impl ConsentRef {
    /// The reference to `record` signed as `bundle`, `bundle` being the view that travels.
    pub fn to(record: &ConsentRecord, bundle: &DocBundle) -> Self {
        Self {
            id: record.id.clone(),
            version: record.version,
            hash: sha256(&bundle.doc),
            view: sha256(&bundle.to_bytes()),
        }
    }

    fn to_value(&self) -> Value {
        map([
            ("id", Value::Text(self.id.clone())),
            ("version", uint(u64::from(self.version))),
            ("hash", Value::Bytes(self.hash.to_vec())),
            ("view", Value::Bytes(self.view.to_vec())),
        ])
    }

    /// Reads a reference; `legacy` is the consent bundle a version 1 envelope carried inline,
    /// whose digest stands in for the `view` that version 1 lacks.
    fn from_value(v: Value, legacy: Option<&DocBundle>) -> Result<Self, CborError> {
        let mut r = MapReader::new(v, "envelope.consentRef")?;
        let id = r.text("id")?;
        let version = u32::try_from(r.u64("version")?).map_err(|_| CborError::WrongType {
            what: "envelope.consentRef.version".into(),
            expected: "a 32-bit version".into(),
        })?;
        let hash = r.byte_array::<32>("hash")?;
        let view = match legacy {
            Some(inline) => sha256(&inline.to_bytes()),
            None => r.byte_array::<32>("view")?,
        };
        r.finish()?;
        Ok(Self {
            id,
            version,
            hash,
            view,
        })
    }
}

/// A gateway-to-gateway envelope (its payload).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique, in the order made ([`crate::msg_id`]); the idempotency key.
    pub msg_id: [u8; 16],
    /// When it was sealed.
    pub iat: Timestamp,
    /// After this it must not be accepted.
    pub exp: Timestamp,
    /// The sending gateway's org.
    pub sender: OrgId,
    /// The one recipient.
    pub aud: OrgId,
    /// The type of the carried document.
    pub kind: DocType,
    /// Why it is sent.
    pub purpose: Purpose,
    /// The case.
    pub case: CaseId,
    /// The consent version that allows it, and the recipient's view of it, by digest (the
    /// bundle itself is not carried; see the module docs).
    pub consent_ref: ConsentRef,
    /// The author-signed document, bytes exactly as signed.
    pub doc: Vec<u8>,
    /// The items this recipient may see.
    pub disclosures: Vec<Item>,
    /// The envelope this one answers, if any.
    pub in_reply_to: Option<[u8; 16]>,
    /// The no-redisclosure notice.
    pub notice: String,
    /// The sending gateway's latest signed audit checkpoint, if any: the receiver keeps it as a
    /// witness of the sender's audit trail (see the gateway's audit module). Absent from the
    /// encoding when `None`.
    pub checkpoint: Option<Vec<u8>>,
}

/// Adds `checkpoint` to the map `v` when present (an optional key: absent, not null, when none).
fn with_checkpoint(v: Value, checkpoint: &Option<Vec<u8>>) -> Value {
    match (v, checkpoint) {
        (Value::Map(mut m), Some(c)) => {
            m.push((Value::Text("checkpoint".into()), Value::Bytes(c.clone())));
            Value::Map(m)
        }
        (v, _) => v,
    }
}

fn read_checkpoint(r: &mut MapReader, what: &str) -> Result<Option<Vec<u8>>, CborError> {
    match r.opt("checkpoint") {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(CborError::WrongType {
            what: format!("{what}.checkpoint"),
            expected: "bytes (a signed audit checkpoint)".into(),
        }),
    }
}

impl Envelope {
    /// The carried document with its disclosures, as a bundle.
    pub fn bundle(&self) -> DocBundle {
        DocBundle {
            doc: self.doc.clone(),
            items: self.disclosures.clone(),
        }
    }

    fn to_value(&self) -> Value {
        let disclosures = DocBundle {
            doc: Vec::new(),
            items: self.disclosures.clone(),
        }
        .items_value();
        let v = map([
            ("v", uint(ENVELOPE_VERSION)),
            ("msgId", Value::Bytes(self.msg_id.to_vec())),
            ("iat", uint(self.iat.0)),
            ("exp", uint(self.exp.0)),
            ("sender", Value::Text(self.sender.to_string())),
            ("aud", Value::Text(self.aud.to_string())),
            ("kind", Value::Text(self.kind.as_str().into())),
            ("purpose", Value::Text(self.purpose.as_str().into())),
            ("case", Value::Text(self.case.to_string())),
            ("consentRef", self.consent_ref.to_value()),
            ("doc", Value::Bytes(self.doc.clone())),
            ("disclosures", Value::Array(disclosures)),
            (
                "inReplyTo",
                self.in_reply_to
                    .map_or(Value::Null, |id| Value::Bytes(id.to_vec())),
            ),
            ("notice", Value::Text(self.notice.clone())),
        ]);
        with_checkpoint(v, &self.checkpoint)
    }

    /// Reads an envelope body of this version, or of version 1 (the consent bundle inline,
    /// [`LEGACY_ENVELOPE_VERSION`]): then the inline bundle is returned beside it.
    fn from_value(v: Value, limits: &Limits) -> Result<(Self, Option<DocBundle>), DocError> {
        let mut r = MapReader::new(v, "envelope")?;
        let legacy = match r.u64("v")? {
            ENVELOPE_VERSION => None,
            LEGACY_ENVELOPE_VERSION => Some(DocBundle::from_value(r.value("consent")?, limits)?),
            _ => {
                return Err(DocError::Manifest(format!(
                    "envelope version is neither {ENVELOPE_VERSION} nor {LEGACY_ENVELOPE_VERSION}"
                )))
            }
        };
        let in_reply_to = match r.value("inReplyTo")? {
            Value::Null => None,
            Value::Bytes(b) => Some(b.try_into().map_err(|_| CborError::WrongType {
                what: "envelope.inReplyTo".into(),
                expected: "16 bytes or null".into(),
            })?),
            _ => {
                return Err(CborError::WrongType {
                    what: "envelope.inReplyTo".into(),
                    expected: "16 bytes or null".into(),
                }
                .into())
            }
        };
        let e = Envelope {
            msg_id: r.byte_array::<16>("msgId")?,
            iat: Timestamp(r.u64("iat")?),
            exp: Timestamp(r.u64("exp")?),
            sender: r.parsed("sender")?,
            aud: r.parsed("aud")?,
            kind: r.parsed("kind")?,
            purpose: r.parsed("purpose")?,
            case: r.parsed("case")?,
            consent_ref: ConsentRef::from_value(r.value("consentRef")?, legacy.as_ref())?,
            doc: r.bytes("doc")?,
            disclosures: DocBundle::items_from(r.array("disclosures")?, limits)?,
            in_reply_to,
            notice: r.text("notice")?,
            checkpoint: read_checkpoint(&mut r, "envelope")?,
        };
        r.finish()?;
        Ok((e, legacy))
    }

    /// Takes the author's certificate chain out of `doc` (the COSE unprotected header, which
    /// the author's signature does not cover): the document then names its chain by its `kid`
    /// only, and the receiver puts it back ([`Envelope::attach_document_chain`]). Returns the
    /// `kid` and the chain taken out; `None` when there was none (or `doc` is not a COSE_Sign1,
    /// left for the receiver to refuse).
    pub fn strip_document_chain(&mut self) -> Option<([u8; 32], Vec<Vec<u8>>)> {
        let s = Sign1::parse(&self.doc, "document", &Limits::default()).ok()?;
        if s.x5chain.is_empty() {
            return None;
        }
        let kid: [u8; 32] = s.kid.as_slice().try_into().ok()?;
        self.doc = s.to_bytes_with_chain(&[]);
        Some((kid, s.x5chain))
    }

    /// Puts the author's certificate chain back into a `doc` that names it by `kid` only, from
    /// `known`: `doc` is then the document exactly as the author signed it. `Err(kid)` when
    /// `known` lacks that chain; nothing changes when `doc` carries its chain (or is not a
    /// COSE_Sign1, which verification refuses).
    pub fn attach_document_chain(&mut self, known: &KnownChains<'_>) -> Result<(), [u8; 32]> {
        let Ok(s) = Sign1::parse(&self.doc, "document", &Limits::default()) else {
            return Ok(());
        };
        if !s.x5chain.is_empty() {
            return Ok(());
        }
        let Ok(kid) = <[u8; 32]>::try_from(s.kid.as_slice()) else {
            return Ok(());
        };
        let chain = known(&kid).ok_or(kid)?;
        self.doc = s.to_bytes_with_chain(&chain);
        Ok(())
    }

    /// The encoded body: what a batch seal hashes into its leaf ([`batch::seal`] with
    /// [`cose::TYP_ENVELOPE`] turns bodies for one peer into envelopes to transmit).
    pub fn body(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    /// Seals the envelope alone (a batch of one); returns the bytes to transmit.
    pub fn seal(&self, signer: &Signer) -> Vec<u8> {
        batch::seal(signer, cose::TYP_ENVELOPE, &[self.body()])
            .pop()
            .expect("a batch of one")
    }

    /// Parses envelope bytes without verifying them (for diagnostics and tests).
    pub fn parse_unverified(bytes: &[u8], limits: &Limits) -> Result<Self, DocError> {
        let s = batch::Sealed::parse(bytes, "envelope", limits)?;
        Ok(Self::from_value(cbor::decode(&s.body, limits)?, limits)?.0)
    }
}

/// Receipt status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Stored durably by the receiver.
    Accepted,
    /// Refused for good; do not retry.
    Rejected,
}

/// A signed receipt, sent back on the envelope's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The envelope's msgId, when it could be read.
    pub msg_id: Option<[u8; 16]>,
    /// SHA-256 of the envelope bytes as received.
    pub envelope_digest: [u8; 32],
    /// The receiving gateway's org.
    pub receiver: OrgId,
    /// When the receiver decided.
    pub time: Timestamp,
    /// Accepted or rejected.
    pub status: ReceiptStatus,
    /// The rejection code ([`Rejection::code`]), for rejections.
    pub reason: Option<String>,
    /// The receiving gateway's latest signed audit checkpoint, if any (a witness for the
    /// sender to keep). Absent from the encoding when `None`.
    pub checkpoint: Option<Vec<u8>>,
}

/// Why a receipt was not accepted by the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Malformed or not verifiable.
    #[error("receipt: {0}")]
    Invalid(#[from] DocError),
    /// Signed by another org than the envelope's recipient.
    #[error("receipt signed by {signer}, not by the recipient {expected}")]
    WrongSigner {
        /// Who signed it.
        signer: OrgId,
        /// Who should have.
        expected: OrgId,
    },
    /// It answers a different envelope.
    #[error("receipt does not answer this envelope (digest or msgId differs)")]
    NotForThisEnvelope,
}

impl ReceiptError {
    /// The fingerprint of the receiver's chain when the receipt's batch head names it by
    /// fingerprint only and it was not at hand: fetch it from the receiver and verify again.
    pub fn chain_needed(&self) -> Option<[u8; 32]> {
        match self {
            ReceiptError::Invalid(DocError::Cose(CoseError::ChainNotHeld { kid, .. })) => {
                Some(*kid)
            }
            _ => None,
        }
    }
}

impl From<CoseError> for ReceiptError {
    fn from(e: CoseError) -> Self {
        ReceiptError::Invalid(e.into())
    }
}

impl Receipt {
    fn to_value(&self) -> Value {
        let v = map([
            ("v", uint(RECEIPT_VERSION)),
            (
                "msgId",
                self.msg_id
                    .map_or(Value::Null, |m| Value::Bytes(m.to_vec())),
            ),
            (
                "envelopeDigest",
                Value::Bytes(self.envelope_digest.to_vec()),
            ),
            ("receiver", Value::Text(self.receiver.to_string())),
            ("time", uint(self.time.0)),
            (
                "status",
                Value::Text(
                    match self.status {
                        ReceiptStatus::Accepted => "accepted",
                        ReceiptStatus::Rejected => "rejected",
                    }
                    .into(),
                ),
            ),
            (
                "reason",
                self.reason.clone().map_or(Value::Null, Value::Text),
            ),
        ]);
        with_checkpoint(v, &self.checkpoint)
    }

    fn from_value(v: Value) -> Result<Self, DocError> {
        let mut r = MapReader::new(v, "receipt")?;
        if r.u64("v")? != RECEIPT_VERSION {
            return Err(DocError::Manifest(format!(
                "receipt version is not {RECEIPT_VERSION}"
            )));
        }
        let bad = |f: &str, e: &str| CborError::WrongType {
            what: format!("receipt.{f}"),
            expected: e.into(),
        };
        let msg_id = match r.value("msgId")? {
            Value::Null => None,
            Value::Bytes(b) => Some(b.try_into().map_err(|_| bad("msgId", "16 bytes or null"))?),
            _ => return Err(bad("msgId", "16 bytes or null").into()),
        };
        let status = match r.text("status")?.as_str() {
            "accepted" => ReceiptStatus::Accepted,
            "rejected" => ReceiptStatus::Rejected,
            _ => return Err(bad("status", "accepted or rejected").into()),
        };
        let reason = match r.value("reason")? {
            Value::Null => None,
            Value::Text(t) => Some(t),
            _ => return Err(bad("reason", "text or null").into()),
        };
        let receipt = Receipt {
            msg_id,
            envelope_digest: r.byte_array::<32>("envelopeDigest")?,
            receiver: r.parsed("receiver")?,
            time: Timestamp(r.u64("time")?),
            status,
            reason,
            checkpoint: read_checkpoint(&mut r, "receipt")?,
        };
        r.finish()?;
        Ok(receipt)
    }

    /// The encoded body: what a batch seal hashes into its leaf ([`batch::seal`] with
    /// [`cose::TYP_RECEIPT`] turns the receipts of one batch into receipts to transmit).
    pub fn body(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    /// Seals the receipt alone (a batch of one), as the receiving gateway.
    pub fn seal(&self, signer: &Signer) -> Vec<u8> {
        batch::seal(signer, cose::TYP_RECEIPT, &[self.body()])
            .pop()
            .expect("a batch of one")
    }

    /// The sender's check of a receipt for `envelope_bytes` sent to `recipient`.
    pub fn verify(
        bytes: &[u8],
        envelope_bytes: &[u8],
        recipient: &OrgId,
        chains: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<Receipt, ReceiptError> {
        Self::verify_with(bytes, envelope_bytes, recipient, chains, now, limits, None)
    }

    /// As [`Receipt::verify`]; a batch head that `heads` already verified is not verified
    /// again (its chain still is).
    pub fn verify_with(
        bytes: &[u8],
        envelope_bytes: &[u8],
        recipient: &OrgId,
        chains: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
        heads: Option<&batch::HeadCache>,
    ) -> Result<Receipt, ReceiptError> {
        Self::verify_resolving(
            bytes,
            envelope_bytes,
            recipient,
            chains,
            now,
            limits,
            heads,
            &|_| None,
        )
    }

    /// As [`Receipt::verify_with`]; a batch head that names the receiver's chain by fingerprint
    /// only is verified with the chain `known` gives for it, else the error says which chain is
    /// needed ([`ReceiptError::chain_needed`]).
    #[allow(clippy::too_many_arguments)]
    pub fn verify_resolving(
        bytes: &[u8],
        envelope_bytes: &[u8],
        recipient: &OrgId,
        chains: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
        heads: Option<&batch::HeadCache>,
        known: &KnownChains<'_>,
    ) -> Result<Receipt, ReceiptError> {
        let receipt =
            Self::verify_signed_with(bytes, recipient, chains, now, limits, heads, known)?;
        if receipt.envelope_digest != sha256(envelope_bytes) {
            return Err(ReceiptError::NotForThisEnvelope);
        }
        Ok(receipt)
    }

    /// Checks only that `recipient` signed the receipt; [`Receipt::verify`] also binds it to the
    /// envelope. Used for a size rejection, whose receiver could not read the whole envelope.
    pub fn verify_signed(
        bytes: &[u8],
        recipient: &OrgId,
        chains: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<Receipt, ReceiptError> {
        Self::verify_signed_with(bytes, recipient, chains, now, limits, None, &|_| None)
    }

    /// As [`Receipt::verify_signed`], with the chains `known` holds by fingerprint.
    pub fn verify_signed_resolving(
        bytes: &[u8],
        recipient: &OrgId,
        chains: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
        known: &KnownChains<'_>,
    ) -> Result<Receipt, ReceiptError> {
        Self::verify_signed_with(bytes, recipient, chains, now, limits, None, known)
    }

    fn verify_signed_with(
        bytes: &[u8],
        recipient: &OrgId,
        chains: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
        heads: Option<&batch::HeadCache>,
        known: &KnownChains<'_>,
    ) -> Result<Receipt, ReceiptError> {
        let opened = batch::open_resolving(
            bytes,
            cose::TYP_RECEIPT,
            "receipt",
            chains,
            now,
            limits,
            heads,
            known,
        )?;
        let signer = opened.signer;
        let receipt =
            Receipt::from_value(cbor::decode(&opened.body, limits).map_err(DocError::from)?)?;
        if signer.org != *recipient || receipt.receiver != *recipient {
            return Err(ReceiptError::WrongSigner {
                signer: signer.org,
                expected: recipient.clone(),
            });
        }
        Ok(receipt)
    }
}

/// Why a receiver refused an envelope. Each has a stable code for receipts and audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Larger than the receiver's size limit.
    #[error("envelope refused: {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The envelope's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a well-formed or verifiable envelope (malformed CBOR, bad signature, untrusted chain).
    #[error("envelope refused: {0}")]
    Envelope(DocError),
    /// The TLS peer, the envelope's sender and the signing certificate disagree.
    #[error("envelope refused: sender {sender} does not match the TLS peer {tls_peer} and signing certificate {signer}")]
    SenderMismatch {
        /// The envelope's `sender`.
        sender: OrgId,
        /// The TLS peer's org.
        tls_peer: OrgId,
        /// The envelope signing certificate's org.
        signer: OrgId,
    },
    /// Addressed to another org.
    #[error("envelope refused: addressed to {aud}, not to this gateway")]
    NotAddressedToMe {
        /// The envelope's `aud`.
        aud: OrgId,
    },
    /// `iat` is in the future beyond the allowed skew.
    #[error("envelope refused: issued in the future (check the sender's clock)")]
    NotYetValid,
    /// `exp` has passed.
    #[error("envelope refused: expired")]
    Expired,
    /// The consent record is not acceptable (wrong signer, reference mismatch, other case).
    #[error("envelope refused: consent record {0}")]
    ConsentInvalid(String),
    /// The gate refused.
    #[error("envelope refused by the consent gate: {0}")]
    Consent(DenyReason),
    /// The carried document does not match the envelope (type or case).
    #[error("envelope refused: the document is a {doc_type} about another case or of another kind than the envelope's {kind}")]
    DocumentMismatch {
        /// The document's type.
        doc_type: DocType,
        /// The envelope's kind.
        kind: DocType,
    },
    /// The document failed verification (author signature, digests, elements).
    #[error("envelope refused: {0}")]
    Document(DocError),
    /// The document's author has a role that may not write this type of document.
    #[error("envelope refused: {author} is a {role}, and a {role} may not author a {doc_type} (authors: {allowed})")]
    AuthorRole {
        /// The document's author.
        author: OrgId,
        /// Its directory role, or `unknown` when it is not in the directory.
        role: String,
        /// The document type.
        doc_type: DocType,
        /// The roles that may author it.
        allowed: String,
    },
    /// The author's role may not write this type, and its delegation does not cover it (III.8).
    #[error("envelope refused: {0}")]
    Delegation(crate::document::delegation::DelegationDenied),
    /// Another org's envelope already came with this message id: a sending gateway makes a
    /// fresh id for every envelope, so this one is refused (and does not get the other's
    /// receipt).
    #[error("envelope refused: message id {msg_id} was already used by another sender; the sending gateway must give every envelope a fresh id")]
    MessageIdTaken {
        /// The message id, in hex.
        msg_id: String,
    },
    /// A notice that withdraws consent or ends support, or a relocation transfer notice,
    /// authored by another org than the controller of the consent it is judged under, or
    /// withdrawing another consent record: only the authority that holds the person's consent
    /// may end the support or hand the case over.
    #[error("envelope refused: a {doc_type} about {case} may come only from {controller}, the controller of its consent record {consent_id}, and this one {problem}")]
    NoticeNotFromController {
        /// The notice's type.
        doc_type: DocType,
        /// The case.
        case: CaseId,
        /// The controller of the consent that counts.
        controller: OrgId,
        /// That consent's id.
        consent_id: String,
        /// What is wrong, in words.
        problem: String,
    },
    /// The consent is controlled by an authority this gateway does not know as a controller
    /// of the case: the consents it holds of the case are another authority's, and none of
    /// them lets the case move to a new controller. An authority cannot take a case over by
    /// recording a consent of its own for it (that would let it end the case or receive what
    /// is shared under its consent).
    #[error("envelope refused: consent record {consent_id} makes {controller} a controller of {case}, but {controller} did not open the case and no move to it that the person agreed to (relocation_transfer) was shown (controllers of the case known here: {held})")]
    ControllerNotRecognised {
        /// The case.
        case: CaseId,
        /// The consent's controller.
        controller: OrgId,
        /// The consent's id.
        consent_id: String,
        /// The controllers whose consents of the case this gateway holds, comma-separated
        /// (`none` when it holds none).
        held: String,
    },
}

impl Rejection {
    /// The stable code sent in the receipt.
    pub fn code(&self) -> String {
        match self {
            Rejection::TooLarge { .. } => "too_large".into(),
            Rejection::Envelope(DocError::Cose(CoseError::BadSignature { .. })) => {
                "bad_envelope_signature".into()
            }
            Rejection::Envelope(DocError::Cose(CoseError::Inclusion { .. })) => {
                "bad_inclusion_proof".into()
            }
            Rejection::Envelope(DocError::Cose(CoseError::Chain { .. })) => {
                "untrusted_sender_certificate".into()
            }
            Rejection::Envelope(_) => "malformed_envelope".into(),
            Rejection::SenderMismatch { .. } => "sender_mismatch".into(),
            Rejection::NotAddressedToMe { .. } => "not_addressed_to_me".into(),
            Rejection::NotYetValid => "not_yet_valid".into(),
            Rejection::Expired => "expired".into(),
            Rejection::ConsentInvalid(_) => "consent_invalid".into(),
            Rejection::Consent(d) => format!("consent_denied:{}", d.code()),
            Rejection::DocumentMismatch { .. } => "document_mismatch".into(),
            Rejection::Document(DocError::DigestMismatch { .. }) => "digest_mismatch".into(),
            Rejection::Document(
                DocError::UnknownElement { .. } | DocError::UnsignedItem { .. },
            ) => "unknown_element".into(),
            Rejection::Document(DocError::DuplicateElement { .. }) => "duplicate_element".into(),
            Rejection::Document(DocError::AuthorMismatch { .. }) => "author_mismatch".into(),
            Rejection::AuthorRole { .. } => "author_role_not_allowed".into(),
            Rejection::Delegation(d) => d.code().into(),
            Rejection::NoticeNotFromController { .. } => "notice_not_from_controller".into(),
            Rejection::ControllerNotRecognised { .. } => "controller_not_recognised".into(),
            Rejection::MessageIdTaken { .. } => "msg_id_taken".into(),
            Rejection::Document(_) => "bad_document_signature".into(),
        }
    }
}

/// A controller of a case whose consent a receiving gateway holds
/// ([`ReceiverState::case_consents`]).
#[derive(Debug, Clone)]
pub struct HeldConsent {
    /// The consent's controller.
    pub controller: OrgId,
    /// Its newest version, when it still reads and verifies today; a controller whose consent
    /// does not (its signer's certificate expired, say) is still known, and lets nothing move.
    pub record: Option<ConsentRecord>,
}

/// What the receiver knows, looked up during [`Receiver::receive`].
pub trait ReceiverState {
    /// The receipt already sent for `msg_id`, if it was seen before.
    fn stored_receipt(&self, msg_id: &[u8; 16]) -> Option<Vec<u8>>;
    /// The org whose envelope first came with `msg_id`, when this gateway still knows it (none
    /// by default). Only that org's copies are replays: another org's envelope with the same
    /// id is refused ([`Rejection::MessageIdTaken`]) and never gets the stored receipt.
    fn first_sender(&self, _msg_id: &[u8; 16]) -> Option<OrgId> {
        None
    }
    /// The newest version of consent `id` this gateway has recorded, if any.
    fn latest_consent(&self, id: &str) -> Option<ConsentRecord>;
    /// SHA-256 of the signed document of that newest version ([`ConsentRef::hash`]), when this
    /// gateway knows it: with it, an envelope naming the same version of the same document is
    /// judged by this gateway's own copy without the referenced view (none by default).
    fn latest_consent_hash(&self, _id: &str) -> Option<[u8; 32]> {
        None
    }
    /// SHA-256 of the signed document of version `version` of consent `id`, when this gateway
    /// recorded that version (none by default). An envelope naming an older version than the
    /// newest held is judged by the newest only when its reference's hash is this one: the
    /// sender then holds that version's document. Otherwise the referenced view is needed
    /// (fetched from the sender), so that a member never given the consent cannot send under it
    /// by naming its predictable id and an old version.
    fn consent_version_hash(&self, _id: &str, _version: u32) -> Option<[u8; 32]> {
        None
    }
    /// The consent bundle of `case` whose exact bytes hash to `view` ([`ConsentRef::view`]),
    /// when this gateway holds it (for instance fetched from the sender for this envelope);
    /// none by default. A bundle that does not hash to `view` is ignored.
    fn consent_view(&self, _case: &CaseId, _view: &[u8; 32]) -> Option<DocBundle> {
        None
    }
    /// What the sender showed of consent `consent` of `case` when asked for this envelope
    /// ([`Inbound::HandoverNeeded`]): `None` when it was not asked (the default), `Some(None)`
    /// when it answered nothing, else its own view with the Form 7 that came with the move. A
    /// consent of a controller new to a gateway that does not control the case is accepted
    /// after a move only when such a view, signed by the held consent's controller, names the
    /// new controller, and that controller's Form 7 is addressed to it; when every consent that
    /// lets the case move was asked and none did, the moves are asked for.
    fn handover_view(
        &self,
        _case: &CaseId,
        _consent: &str,
    ) -> Option<Option<crate::fetch::HandoverLink>> {
        None
    }
    /// What the sender showed of the moves that made it a controller of `case` when asked for
    /// this envelope ([`Inbound::ProofNeeded`]): `None` when it was not asked (the default),
    /// `Some(None)` when it showed nothing, else the links of its handover proof
    /// ([`crate::fetch::encode_proof`]).
    fn controller_proof(&self, _case: &CaseId) -> Option<Option<Vec<crate::fetch::HandoverLink>>> {
        None
    }
    /// Whether this gateway sent a transfer notice (Form 7) of `case` to `to`, delivered or on
    /// its way (`Some(false)` by default); `None` when its outbox cannot be read, which decides
    /// nothing (no receipt: the sender retries). A gateway sends Form 7 only to the authority
    /// it is addressed to. A controller of the case accepts another authority as a new
    /// controller on its own consent only when it also sent that authority Form 7: its consent
    /// names everyone the person agreed may receive the case, the notice says which of them the
    /// case moved to.
    fn transfer_sent(&self, _case: &CaseId, _to: &OrgId) -> Option<bool> {
        Some(false)
    }
    /// The certificate chain (leaf first) whose leaf hashes to `kid`, when this gateway holds
    /// it: for a batch head that names its signer's chain by fingerprint only (none by default).
    /// It is validated like a carried chain.
    fn signer_chain(&self, _kid: &[u8; 32]) -> Option<Vec<Vec<u8>>> {
        None
    }
    /// The newest consent of each controller of `case` this gateway holds, its own included
    /// (none by default); `None` when they cannot be read, which refuses a consent of a
    /// controller new to this gateway. A consent of another controller is accepted only as the
    /// case's first, or when one of these lets the case move
    /// ([`Rejection::ControllerNotRecognised`]).
    fn case_consents(&self, _case: &CaseId) -> Option<Vec<HeldConsent>> {
        Some(Vec::new())
    }
    /// The directory role of `org`.
    fn role_of(&self, org: &OrgId) -> Option<Role>;
    /// Whether this gateway already exchanged material of `case` with anyone (notices go only
    /// to parties of the case).
    fn is_party(&self, case: &CaseId) -> bool;
    /// Batch heads already verified, so that the envelopes of one batch cost one signature
    /// verification together (none by default).
    fn batch_heads(&self) -> Option<&batch::HeadCache> {
        None
    }
    /// Whether a delegation of the case's controller that this gateway holds lets `author`
    /// write a `doc_type` about `case` today (III.8); `None` when it holds none.
    fn delegated(
        &self,
        _author: &OrgId,
        _case: &CaseId,
        _doc_type: DocType,
    ) -> Option<Result<(), crate::document::delegation::DelegationDenied>> {
        None
    }
}

/// How a controller new to this gateway showed that the case was handed over to it: the
/// consent views that show the moves, the first signed by `from`. A gateway keeps it, so that
/// it can show the moves in turn ([`crate::fetch`], handover proof): the links from the case's
/// opener to `from` (none when `from` opened the case), then `links`.
#[derive(Debug, Clone)]
pub struct ControllerShown {
    /// The new controller.
    pub controller: OrgId,
    /// The controller of the first link's consent.
    pub from: OrgId,
    /// The moves: each link's view names the next one's controller and its notice is
    /// addressed to it; the last's to `controller`.
    pub links: Vec<crate::fetch::HandoverLink>,
    /// The controller of each link's consent (who signed it), in order.
    pub signers: Vec<OrgId>,
}

impl ControllerShown {
    /// Whether one of the links is `org`'s own consent: the move passed through it.
    pub fn passes_through(&self, org: &OrgId) -> bool {
        self.signers.contains(org)
    }
}

/// An envelope that passed every check.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The envelope.
    pub envelope: Envelope,
    /// SHA-256 of the envelope bytes (for the receipt).
    pub envelope_digest: [u8; 32],
    /// The verified document.
    pub document: VerifiedDoc,
    /// The consent version that counted (the newest known).
    pub consent: ConsentRecord,
    /// The referenced consent view and what it says, when it was needed and found (see the
    /// module docs); `None` when this gateway's own copy counted without it.
    pub referenced: Option<(ConsentRecord, DocBundle)>,
    /// When that consent made a controller new to this gateway one by a move shown by the
    /// sender, what it showed.
    pub controller_shown: Option<ControllerShown>,
}

/// The outcome of a successful receive.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A new envelope to store; send an accepted receipt once the write is durable.
    New(Box<Accepted>),
    /// A replay: send this stored receipt again, deliver nothing.
    Replay(Vec<u8>),
    /// The batch head names its signer's certificate chain by fingerprint and this gateway does
    /// not hold it: fetch it from the sender ([`crate::fetch::chain_fetch`]) and receive again
    /// with it. Not a rejection, like [`Inbound::ConsentNeeded`].
    ChainNeeded {
        /// The fingerprint: SHA-256 of the signer's leaf certificate.
        kid: [u8; 32],
    },
    /// The referenced consent view is not at hand: fetch it from the sender
    /// ([`crate::fetch::consent_fetch`]) and receive again with it. Not a rejection: when it
    /// cannot be had, send no receipt, so that the sender retries.
    ConsentNeeded {
        /// The envelope's case.
        case: CaseId,
        /// The digest of the consent bundle to fetch ([`ConsentRef::view`]).
        view: [u8; 32],
    },
    /// A consent of a controller new to this gateway, which only a move the person agreed to
    /// can explain, and this gateway cannot see whom the consent that lets the case move names:
    /// fetch the sender's own view of that consent ([`crate::fetch::handover_fetch`]) and
    /// receive again with it ([`ReceiverState::handover_view`]). Not a rejection: when the fetch
    /// fails, send no receipt, so that the sender retries. (An answer of nothing is no failure:
    /// it shows nothing, and when no consent that lets the case move is shown naming the new
    /// controller with its controller's Form 7 to it, the moves are asked for
    /// ([`Inbound::ProofNeeded`]).)
    HandoverNeeded {
        /// The envelope's case.
        case: CaseId,
        /// The id of the held consent that lets the case move.
        consent: String,
    },
    /// A consent of a controller that did not open the case ([`CaseId::opener`]), which no
    /// consent held here explains: fetch the moves that made it a controller
    /// ([`crate::fetch::proof_fetch`]) and receive again with them
    /// ([`ReceiverState::controller_proof`]). Not a rejection when the fetch fails; an answer of
    /// nothing refuses the envelope.
    ProofNeeded {
        /// The envelope's case.
        case: CaseId,
        /// The envelope's message id: the sender shows the moves only about an envelope it is
        /// sending the asker.
        msg_id: [u8; 16],
    },
}

/// What step 6 still needs before it can judge.
enum Need {
    /// The referenced consent view ([`Inbound::ConsentNeeded`]).
    View,
    /// The sender's view of the held consent with this id ([`Inbound::HandoverNeeded`]).
    Handover(String),
    /// The sender's handover proof ([`Inbound::ProofNeeded`]).
    Proof,
}

/// The receiving side's fixed parameters.
pub struct Receiver<'a> {
    /// This gateway's org.
    pub me: &'a OrgId,
    /// Trust for envelope, document and consent signers.
    pub chains: &'a dyn ChainVerifier,
    /// Size and depth limits.
    pub limits: Limits,
    /// Tolerated clock skew for `iat`, seconds.
    pub max_skew: u64,
}

impl Receiver<'_> {
    /// Runs the checks of the module docs on `bytes` from a TLS peer whose certificate names
    /// `tls_peer`.
    pub fn receive(
        &self,
        bytes: &[u8],
        tls_peer: &OrgId,
        now: Timestamp,
        state: &dyn ReceiverState,
    ) -> Result<Inbound, Rejection> {
        let limits = &self.limits;
        if bytes.len() > limits.max_bytes {
            return Err(Rejection::TooLarge {
                len: bytes.len(),
                max: limits.max_bytes,
            });
        }
        let env_err = |e: DocError| Rejection::Envelope(e);
        // 1. envelope signature and chain (carried, or named by fingerprint and held here)
        let opened = match batch::open_resolving(
            bytes,
            cose::TYP_ENVELOPE,
            "envelope",
            self.chains,
            now,
            limits,
            state.batch_heads(),
            &|kid| state.signer_chain(kid),
        ) {
            Ok(opened) => opened,
            Err(CoseError::ChainNotHeld { kid, .. }) => return Ok(Inbound::ChainNeeded { kid }),
            Err(e) => return Err(env_err(e.into())),
        };
        let signer = opened.signer;
        let payload = cbor::decode(&opened.body, limits).map_err(|e| env_err(e.into()))?;
        let (envelope, inline) = Envelope::from_value(payload, limits).map_err(env_err)?;
        // 2. TLS peer == sender == signing certificate
        if envelope.sender != *tls_peer || envelope.sender != signer.org {
            return Err(Rejection::SenderMismatch {
                sender: envelope.sender,
                tls_peer: tls_peer.clone(),
                signer: signer.org,
            });
        }
        // 3. addressed to me
        if envelope.aud != *self.me {
            return Err(Rejection::NotAddressedToMe { aud: envelope.aud });
        }
        // 4. time window
        if envelope.iat.0 > now.0.saturating_add(self.max_skew) {
            return Err(Rejection::NotYetValid);
        }
        if now >= envelope.exp {
            return Err(Rejection::Expired);
        }
        // 5. replay
        if let Some(receipt) = state.stored_receipt(&envelope.msg_id) {
            if state
                .first_sender(&envelope.msg_id)
                .is_some_and(|first| first != envelope.sender)
            {
                return Err(Rejection::MessageIdTaken {
                    msg_id: crate::hex::encode(&envelope.msg_id),
                });
            }
            return Ok(Inbound::Replay(receipt));
        }
        // The author's chain, when the document names it by fingerprint only: from here on the
        // document is the bytes as the author signed them.
        let mut envelope = envelope;
        if let Err(kid) = envelope.attach_document_chain(&|kid| state.signer_chain(kid)) {
            return Ok(Inbound::ChainNeeded { kid });
        }
        // 6. consent. A consent record travels under a reference to itself: were it judged
        // under another consent (say, the controller's, which this gateway holds), the record
        // it carries would be kept without the checks a consent new to this gateway gets.
        if envelope.kind == DocType::Consent && sha256(&envelope.doc) != envelope.consent_ref.hash {
            return Err(Rejection::ConsentInvalid(format!(
                "{}: the consent record this envelope carries is not the one its consentRef names",
                envelope.consent_ref.id
            )));
        }
        let (consent, referenced, controller_shown) =
            match self.check_consent(&envelope, inline, now, state)? {
                Ok(found) => found,
                Err(Need::View) => {
                    return Ok(Inbound::ConsentNeeded {
                        case: envelope.case.clone(),
                        view: envelope.consent_ref.view,
                    })
                }
                Err(Need::Handover(consent)) => {
                    return Ok(Inbound::HandoverNeeded {
                        case: envelope.case.clone(),
                        consent,
                    })
                }
                Err(Need::Proof) => {
                    return Ok(Inbound::ProofNeeded {
                        case: envelope.case.clone(),
                        msg_id: envelope.msg_id,
                    })
                }
            };
        // 7-9. the document
        let document = envelope
            .bundle()
            .verify(self.chains, now, limits)
            .map_err(Rejection::Document)?;
        if document.manifest.doc_type != envelope.kind || document.manifest.subject != envelope.case
        {
            return Err(Rejection::DocumentMismatch {
                doc_type: document.manifest.doc_type,
                kind: envelope.kind,
            });
        }
        // 10. the author's role may write this type
        let author = &document.manifest.author;
        let author_role = state.role_of(author);
        let role_may = author_role.is_some_and(|r| envelope.kind.may_be_authored_by(r));
        let delegation = if role_may {
            None
        } else {
            state.delegated(author, &envelope.case, envelope.kind)
        };
        match delegation {
            Some(Ok(())) => {}
            Some(Err(d))
                if !matches!(
                    d,
                    crate::document::delegation::DelegationDenied::NotDelegated { .. }
                ) =>
            {
                return Err(Rejection::Delegation(d))
            }
            _ if role_may => {}
            _ => {
                return Err(Rejection::AuthorRole {
                    author: author.clone(),
                    role: author_role.map_or("unknown".into(), |r| r.to_string()),
                    doc_type: envelope.kind,
                    allowed: envelope
                        .kind
                        .author_roles()
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
        // 11. a notice that withdraws consent or ends support, and a relocation transfer notice
        // (Form 7), come from the authority that controls the consent they are judged under:
        // any other authority could otherwise end a case it has no part in, or hand another
        // authority's case over to a destination.
        if matches!(
            envelope.kind,
            DocType::ConsentWithdrawal | DocType::SupportEnd | DocType::TransferNotice
        ) {
            // A withdrawal is shown whole to every party (it is no use in part), and withdraws
            // the consent that counts here in its newest version: an earlier withdrawal,
            // wrapped again by a party under a newer version that granted consent anew, would
            // otherwise end a case the person consents to again.
            let problem = if *author != consent.controller {
                Some(format!("was authored by {author}"))
            } else if envelope.kind != DocType::ConsentWithdrawal {
                None
            } else {
                match document.document() {
                    Some(Ok(crate::document::Document::ConsentWithdrawal(w))) => {
                        if w.consent_id != consent.id {
                            Some(format!("withdraws consent record {}", w.consent_id))
                        } else if w.consent_version < consent.version {
                            Some(format!(
                                "withdraws version {} of {}, and version {} is newer",
                                w.consent_version, w.consent_id, consent.version
                            ))
                        } else {
                            None
                        }
                    }
                    _ => Some("is not shown whole".to_owned()),
                }
            };
            if let Some(problem) = problem {
                return Err(Rejection::NoticeNotFromController {
                    doc_type: envelope.kind,
                    case: envelope.case.clone(),
                    controller: consent.controller.clone(),
                    consent_id: consent.id.clone(),
                    problem,
                });
            }
        }
        Ok(Inbound::New(Box::new(Accepted {
            envelope_digest: sha256(bytes),
            envelope,
            document,
            consent,
            referenced,
            controller_shown,
        })))
    }

    /// The referenced consent view, from the envelope's own document (a consent record sent
    /// in the recipient's view) or from `state`; `None` when neither has it.
    fn referenced_view(e: &Envelope, state: &dyn ReceiverState) -> Option<DocBundle> {
        let want = &e.consent_ref.view;
        if e.kind == DocType::Consent {
            let own = e.bundle();
            if sha256(&own.to_bytes()) == *want {
                return Some(own);
            }
        }
        state
            .consent_view(&e.case, want)
            .filter(|b| sha256(&b.to_bytes()) == *want)
    }

    /// Step 6, for a consent new to this gateway: its controller opened the case
    /// ([`CaseId::opener`]) or is one this gateway already knows for the case, or the case moved
    /// to it. A consent lets the case move when it is active and in its period today and grants
    /// `relocation_transfer`. A gateway that controls the case itself knows whom the person
    /// agreed it may move to: its own consent must also name that authority by org (a role
    /// covers too many), and it must have sent that authority Form 7 (a consent names everyone
    /// the person agreed may receive the case, the prefecture too; the notice says which of
    /// them the case moved to). Any other gateway sees only its own view of the controllers'
    /// consents, which never shows the other recipients: the sender must show its own view of
    /// one that lets the case move, naming the new controller, with that consent's
    /// controller's Form 7 to it ([`Inbound::HandoverNeeded`]). When
    /// neither explains the new controller (say, this gateway holds no consent of the case yet,
    /// or none that lets it move), the sender must show the moves from the case's opener to
    /// it ([`Inbound::ProofNeeded`], [`Self::check_proof`]). `Ok(Ok(Some(shown)))` is a new
    /// controller accepted on what the sender showed; `Ok(Err(need))` asks the sender.
    #[allow(clippy::type_complexity)]
    fn check_controller(
        &self,
        e: &Envelope,
        record: &ConsentRecord,
        now: Timestamp,
        state: &dyn ReceiverState,
    ) -> Result<Result<Option<ControllerShown>, Need>, Rejection> {
        let held = state.case_consents(&e.case).ok_or_else(|| {
            Rejection::ConsentInvalid(format!(
                "{} cannot be checked: the consents of {} held here could not be read",
                record.id, e.case
            ))
        })?;
        if e.case.opener().as_ref() == Some(&record.controller)
            || held.iter().any(|h| h.controller == record.controller)
        {
            return Ok(Ok(None));
        }
        let today = now.date();
        let lets_move = |c: &ConsentRecord| c.lets_case_move(today);
        let names_new_controller = |c: &ConsentRecord| {
            c.recipients
                .iter()
                .any(|r| matches!(r, ConsentRecipient::Org { org } if *org == record.controller))
        };
        let mut stale = None;
        let controlling = held.iter().any(|h| h.controller == *self.me);
        match held.iter().find(|h| h.controller == *self.me) {
            Some(own) => {
                // A controller of the case knows whom the person agreed it may move to: its
                // own consent decides. A move shown by others counts only when it passes
                // through this gateway's own consent, in the version it holds (below).
                // Its consent names whom the person agreed may receive the case (the
                // prefecture too): the Form 7 it sent says which of them the case moved to.
                if own
                    .record
                    .as_ref()
                    .is_some_and(|own| lets_move(own) && names_new_controller(own))
                {
                    match state.transfer_sent(&e.case, &record.controller) {
                        Some(true) => return Ok(Ok(None)),
                        Some(false) => {}
                        // Not known now: no decision. Asked for the moves (once), then no
                        // receipt, and the sender retries.
                        None => return Ok(Err(Need::Proof)),
                    }
                }
            }
            None => {
                // This gateway's views of the consents it holds never show the other
                // recipients. The new controller shows its own view of one that lets the case
                // move, signed by that consent's controller: it must be the version held here
                // (or newer), still let the case move, and name the new controller by org.
                let movable: Vec<&ConsentRecord> = held
                    .iter()
                    .filter_map(|h| h.record.as_ref())
                    .filter(|c| lets_move(c))
                    .collect();
                let mut unasked = None;
                for held in &movable {
                    let view = match state.handover_view(&e.case, &held.id) {
                        None => {
                            unasked.get_or_insert_with(|| held.id.clone());
                            continue;
                        }
                        Some(None) => continue, // the sender showed nothing
                        Some(Some(view)) => view,
                    };
                    let shown = view
                        .consent
                        .verify(self.chains, now, &self.limits)
                        .ok()
                        .and_then(|v| v.consent_view().and_then(Result::ok))
                        .filter(|c| {
                            c.id == held.id
                                && c.controller == held.controller
                                && c.subject == e.case
                        });
                    match shown {
                        Some(c) if c.version < held.version => {
                            stale.get_or_insert_with(|| held.id.clone());
                        }
                        Some(c)
                            if lets_move(&c)
                                && names_new_controller(&c)
                                && view.notice_moves(
                                    self.chains,
                                    now,
                                    &self.limits,
                                    &e.case,
                                    &c.controller,
                                    &record.controller,
                                ) =>
                        {
                            return Ok(Ok(Some(ControllerShown {
                                controller: record.controller.clone(),
                                from: c.controller.clone(),
                                signers: vec![c.controller],
                                links: vec![view],
                            })))
                        }
                        _ => {}
                    }
                }
                // Ask for the next view not asked yet.
                if let Some(id) = unasked {
                    return Ok(Err(Need::Handover(id)));
                }
            }
        }
        // No consent held here explains the new controller: the moves from the opener must.
        match state.controller_proof(&e.case) {
            None => return Ok(Err(Need::Proof)),
            Some(Some(links)) => {
                if let Some(shown) = self
                    .check_proof(e, record, links, now, state)
                    .filter(|shown| !controlling || shown.passes_through(self.me))
                {
                    return Ok(Ok(Some(shown)));
                }
            }
            Some(None) => {}
        }
        // A party passing the new controller's consent on shows its own moves, if any, not the
        // controller's: no decision (no receipt); the controller's own copy decides.
        if e.sender != record.controller {
            return Ok(Err(Need::Proof));
        }
        // When a view older than the version held here was shown, no decision yet (no
        // receipt, the sender retries once it has the newer one); otherwise refused.
        if let Some(id) = stale {
            return Ok(Err(Need::Handover(id)));
        }
        Err(self.not_recognised(e, record, &held))
    }

    /// The refusal of a consent whose controller this gateway does not recognise.
    fn not_recognised(
        &self,
        e: &Envelope,
        record: &ConsentRecord,
        held: &[HeldConsent],
    ) -> Rejection {
        Rejection::ControllerNotRecognised {
            case: e.case.clone(),
            controller: record.controller.clone(),
            consent_id: record.id.clone(),
            held: if held.is_empty() {
                "none".into()
            } else {
                held.iter()
                    .map(|h| h.controller.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }
    }

    /// A handover proof ([`crate::fetch`]): `links` show the moves from the case's opener to
    /// the new controller of `record`. Each link's consent must verify as a consent of this case
    /// signed by the controller before it (the first by the opener), in a version that handed
    /// the case over to the next one's controller by org ([`ConsentRecord::handed_over_to`]),
    /// and its notice as that controller's Form 7 of this case to the next one's controller
    /// ([`crate::fetch::HandoverLink::notice_moves`]), the last to `record`'s controller; a
    /// link older than the version of the same consent held here
    /// does not count (the person may have taken the move back since). `None` when it does not
    /// show the move.
    fn check_proof(
        &self,
        e: &Envelope,
        record: &ConsentRecord,
        links: Vec<crate::fetch::HandoverLink>,
        now: Timestamp,
        state: &dyn ReceiverState,
    ) -> Option<ControllerShown> {
        let opener = e.case.opener()?;
        if links.is_empty() || links.len() > crate::fetch::MAX_PROOF_LINKS {
            return None;
        }
        let shown: Vec<ConsentRecord> = links
            .iter()
            .map(|link| {
                link.consent
                    .verify(self.chains, now, &self.limits)
                    .ok()
                    .and_then(|v| v.consent_view().and_then(Result::ok))
            })
            .collect::<Option<_>>()?;
        let today = now.date();
        let mut from = &opener;
        for (i, c) in shown.iter().enumerate() {
            let to = shown
                .get(i + 1)
                .map_or(&record.controller, |n| &n.controller);
            let superseded = state
                .latest_consent(&c.id)
                .is_some_and(|k| k.controller == c.controller && k.version > c.version);
            if c.subject != e.case
                || c.controller != *from
                || to == from
                || superseded
                || !c.handed_over_to(to, today)
                || !links[i].notice_moves(self.chains, now, &self.limits, &e.case, from, to)
            {
                return None;
            }
            from = to;
        }
        Some(ControllerShown {
            controller: record.controller.clone(),
            from: opener,
            signers: shown.into_iter().map(|c| c.controller).collect(),
            links,
        })
    }

    /// Step 6: the consent version that counts and the referenced view when it was needed;
    /// `Ok(Err(need))` when something to judge by is not at hand.
    #[allow(clippy::type_complexity)]
    fn check_consent(
        &self,
        e: &Envelope,
        inline: Option<DocBundle>,
        now: Timestamp,
        state: &dyn ReceiverState,
    ) -> Result<
        Result<
            (
                ConsentRecord,
                Option<(ConsentRecord, DocBundle)>,
                Option<ControllerShown>,
            ),
            Need,
        >,
        Rejection,
    > {
        let invalid = |m: String| Rejection::ConsentInvalid(m);
        let reference = &e.consent_ref;
        // What this gateway holds of the same record counts first: its own view (from the
        // controller) names it, where a forwarding party's view names only that party. A newer
        // version counts over an older one; the same version counts when it is the same signed
        // document. An envelope that carries a consent record (which the receiver keeps) is
        // judged by its own copy only when it carries that very document: any other it carries
        // goes through every check below, its controller's included.
        let known = state
            .latest_consent(&reference.id)
            .filter(|known| known.subject == e.case);
        // An older version counts only when the reference names the very document of that
        // version this gateway recorded: a version number and an id are predictable, a document
        // hash is had only by holding the document.
        let own_counts = known.as_ref().is_some_and(|k| {
            let same = k.version == reference.version
                && state.latest_consent_hash(&reference.id) == Some(reference.hash);
            let older = e.kind != DocType::Consent
                && k.version > reference.version
                && state.consent_version_hash(&reference.id, reference.version)
                    == Some(reference.hash);
            same || older
        });
        let (newest, previous, referenced, shown) = match known {
            Some(k) if own_counts => (k, None, None, None),
            known => {
                let Some(bundle) = inline.or_else(|| Self::referenced_view(e, state)) else {
                    return Ok(Err(Need::View));
                };
                let verified = bundle
                    .verify(self.chains, now, &self.limits)
                    .map_err(|err| invalid(err.to_string()))?;
                let record = match verified.consent_view() {
                    Some(Ok(c)) => c,
                    None => return Err(invalid("is not a consent document".into())),
                    Some(Err(err)) => return Err(invalid(err.to_string())),
                };
                if !matches!(
                    state.role_of(&record.controller),
                    Some(Role::Authority | Role::Prefecture)
                ) {
                    return Err(invalid(format!(
                        "is controlled by {}, which is not an authority",
                        record.controller
                    )));
                }
                if ConsentRef::to(&record, &bundle) != *reference {
                    return Err(invalid("does not match the envelope's consentRef".into()));
                }
                // The record is kept under its own case: one about another case than the
                // envelope's would be kept there without that case's checks.
                if record.subject != e.case {
                    return Err(invalid(format!(
                        "{} is about another case than the envelope's {}",
                        record.id, e.case
                    )));
                }
                if let Some(k) = known.as_ref().filter(|k| k.controller != record.controller) {
                    return Err(invalid(format!(
                        "{} is {}'s consent, and {} may not record a version of it",
                        record.id, k.controller, record.controller
                    )));
                }
                let shown = match self.check_controller(e, &record, now, state)? {
                    Ok(shown) => shown,
                    Err(need) => return Ok(Err(need)),
                };
                let (newest, previous) = match known {
                    Some(k) if k.version >= record.version => (k, None),
                    k => (record.clone(), k),
                };
                (newest, previous, Some((record, bundle)), shown)
            }
        };
        let role = state.role_of(self.me).ok_or_else(|| {
            invalid(format!(
                "cannot be checked: {} is not in the directory",
                self.me
            ))
        })?;
        gate::evaluate(&GateInput {
            consent: Some(&newest),
            intent: Intent {
                case: &e.case,
                purpose: e.purpose,
                doc_type: e.kind,
                sender: &e.sender,
                recipient: self.me,
                recipient_role: role,
            },
            now: now.date(),
            support_period: None,
            party: state.is_party(&e.case),
            previous: previous.as_ref(),
        })
        .into_result()
        .map_err(Rejection::Consent)?;
        Ok(Ok((newest, referenced, shown)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;
    use crate::entropy::FixedEntropy;
    use crate::fetch::HandoverLink;
    use crate::profile::{default_profile, Profile};
    use crate::testkit::{chains, fixture, org, role_of, signer};
    use std::collections::HashMap;

    const NOW: Timestamp = Timestamp(1_790_000_000); // 2026-09-21; consent v1 runs 2026-10-05..2027-05-31
    fn now() -> Timestamp {
        crate::Date::new(2026, 10, 10).unwrap().start().plus(3600)
    }

    #[derive(Default)]
    struct State {
        receipts: HashMap<[u8; 16], Vec<u8>>,
        /// Who sent each id of `receipts` first, when known.
        senders: HashMap<[u8; 16], OrgId>,
        consents: Vec<ConsentRecord>,
        /// Consent views held besides the fixtures' (see `consent_view`).
        views: Vec<DocBundle>,
        /// Holds none of the fixtures' consent views: an envelope needs a fetch.
        no_views: bool,
        /// Signer chains held by fingerprint.
        signer_chains: Vec<Vec<Vec<u8>>>,
        /// The signed-document digest of each consent version recorded here (id, version).
        doc_hashes: Vec<(String, u32, [u8; 32])>,
        /// What the sender showed of held consents when asked for a handover (consent id,
        /// its view or nothing).
        handovers: Vec<(String, Option<HandoverLink>)>,
        /// What the sender showed when asked for its handover proof (`None`: not asked).
        proof: Option<Option<Vec<HandoverLink>>>,
        /// The authorities this gateway sent a Form 7 of the case to.
        sent_to: Vec<OrgId>,
        /// Its outbox cannot be read: whether a Form 7 went is not known.
        outbox_unreadable: bool,
    }

    impl ReceiverState for State {
        fn stored_receipt(&self, msg_id: &[u8; 16]) -> Option<Vec<u8>> {
            self.receipts.get(msg_id).cloned()
        }
        fn first_sender(&self, msg_id: &[u8; 16]) -> Option<OrgId> {
            self.senders.get(msg_id).cloned()
        }
        fn handover_view(&self, _: &CaseId, consent: &str) -> Option<Option<HandoverLink>> {
            self.handovers
                .iter()
                .find(|(id, _)| id == consent)
                .map(|(_, b)| b.clone())
        }
        fn controller_proof(&self, _: &CaseId) -> Option<Option<Vec<HandoverLink>>> {
            self.proof.clone()
        }
        fn transfer_sent(&self, _: &CaseId, to: &OrgId) -> Option<bool> {
            (!self.outbox_unreadable).then(|| self.sent_to.contains(to))
        }
        fn latest_consent_hash(&self, id: &str) -> Option<[u8; 32]> {
            let newest = self.latest_consent(id)?.version;
            self.consent_version_hash(id, newest)
        }
        fn consent_version_hash(&self, id: &str, version: u32) -> Option<[u8; 32]> {
            self.doc_hashes
                .iter()
                .find(|(i, v, _)| i == id && *v == version)
                .map(|(_, _, h)| *h)
        }
        fn latest_consent(&self, id: &str) -> Option<ConsentRecord> {
            self.consents
                .iter()
                .filter(|c| c.id == id)
                .max_by_key(|c| c.version)
                .cloned()
        }
        fn case_consents(&self, case: &CaseId) -> Option<Vec<HeldConsent>> {
            let mut newest: Vec<ConsentRecord> = Vec::new();
            for c in self.consents.iter().filter(|c| c.subject == *case) {
                match newest.iter_mut().find(|n| n.controller == c.controller) {
                    Some(n) if n.version < c.version => *n = c.clone(),
                    Some(_) => {}
                    None => newest.push(c.clone()),
                }
            }
            Some(
                newest
                    .into_iter()
                    .map(|c| HeldConsent {
                        controller: c.controller.clone(),
                        record: Some(c),
                    })
                    .collect(),
            )
        }
        fn role_of(&self, org: &OrgId) -> Option<Role> {
            role_of(org)
        }
        fn is_party(&self, _: &CaseId) -> bool {
            true
        }
        fn signer_chain(&self, kid: &[u8; 32]) -> Option<Vec<Vec<u8>>> {
            self.signer_chains
                .iter()
                .find(|c| c.first().is_some_and(|leaf| sha256(leaf) == *kid))
                .cloned()
        }
        fn consent_view(&self, _: &CaseId, view: &[u8; 32]) -> Option<DocBundle> {
            let fixtures: &[&str] = if self.no_views {
                &[]
            } else {
                &["consent.json", "consent_v3_withdrawn.json"]
            };
            fixtures
                .iter()
                .map(|n| consent_bundle(n).1)
                .chain(self.views.iter().cloned())
                .find(|b| sha256(&b.to_bytes()) == *view)
        }
    }

    fn consent_bundle(name: &str) -> (ConsentRecord, DocBundle) {
        let Document::Consent(c) = fixture(name) else {
            panic!("not a consent")
        };
        let b = DocBundle::sign(
            &Document::Consent(c.clone()),
            &signer("lg:131059"),
            NOW,
            &mut FixedEntropy::new(name.as_bytes()),
        )
        .unwrap();
        (c, b)
    }

    /// The hospital's assessment to `aud`, redacted by the default table.
    fn envelope(aud: &str, consent: &str) -> Envelope {
        let doc = fixture("needs_assessment.json");
        let b = DocBundle::sign(
            &doc,
            &signer("mi:1310000017"),
            NOW,
            &mut FixedEntropy::new(b"doc"),
        )
        .unwrap();
        let aud = org(aud);
        let profile = default_profile(DocType::NeedsAssessment, role_of(&aud).unwrap());
        let (record, cb) = consent_bundle(consent);
        Envelope {
            msg_id: [9; 16],
            iat: now(),
            exp: now().plus(5 * 86_400),
            sender: org("mi:1310000017"),
            kind: DocType::NeedsAssessment,
            purpose: Purpose::PlanCreation,
            case: doc.subject().clone(),
            consent_ref: ConsentRef::to(&record, &cb),
            disclosures: b
                .redact(|e| profile.discloses(DocType::NeedsAssessment, e))
                .items,
            doc: b.doc,
            in_reply_to: None,
            notice: NO_REDISCLOSURE_NOTICE.into(),
            aud,
            checkpoint: None,
        }
    }

    fn receive_as(
        me: &str,
        bytes: &[u8],
        tls_peer: &str,
        state: &State,
    ) -> Result<Inbound, Rejection> {
        let chains = chains();
        let me = org(me);
        Receiver {
            me: &me,
            chains: &chains,
            limits: Limits::default(),
            max_skew: DEFAULT_MAX_SKEW,
        }
        .receive(bytes, &org(tls_peer), now(), state)
    }

    fn sealed(e: &Envelope) -> Vec<u8> {
        e.seal(&signer(e.sender.as_str()))
    }

    #[test]
    fn a_document_whose_author_role_may_not_write_its_type_is_refused() {
        // The clinic's gateway forwards a needs assessment the clinic signed as its author.
        let mut doc = fixture("needs_assessment.json").to_json();
        doc["author"] = "mi:1310000025".into();
        let doc = Document::from_value(doc).unwrap();
        let b = DocBundle::sign(
            &doc,
            &signer("mi:1310000025"),
            NOW,
            &mut FixedEntropy::new(b"clinic"),
        )
        .unwrap();
        let mut e = envelope("lg:131059", "consent.json");
        e.sender = org("mi:1310000025");
        e.doc = b.doc;
        e.disclosures = b.items;
        let err =
            receive_as("lg:131059", &sealed(&e), "mi:1310000025", &State::default()).unwrap_err();
        assert_eq!(err.code(), "author_role_not_allowed");
        assert!(
            err.to_string()
                .contains("mi:1310000025 is a clinic, and a clinic may not author a needs_assessment (authors: hospital, authority, prefecture)"),
            "{err}"
        );
    }

    #[test]
    fn accepted_then_replayed() {
        let bytes = sealed(&envelope("lg:131059", "consent.json"));
        let mut state = State::default();
        let Inbound::New(a) = receive_as("lg:131059", &bytes, "mi:1310000017", &state).unwrap()
        else {
            panic!()
        };
        assert!(
            a.document.withheld.is_empty(),
            "the plan author gets everything"
        );
        let receipt = Receipt {
            msg_id: Some(a.envelope.msg_id),
            envelope_digest: a.envelope_digest,
            receiver: org("lg:131059"),
            time: now(),
            status: ReceiptStatus::Accepted,
            reason: None,
            checkpoint: None,
        };
        let rb = receipt.seal(&signer("lg:131059"));
        let back = Receipt::verify(
            &rb,
            &bytes,
            &org("lg:131059"),
            &chains(),
            now(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(back, receipt);
        // A receipt for another envelope, or from someone else, is refused.
        assert_eq!(
            Receipt::verify(
                &rb,
                b"other",
                &org("lg:131059"),
                &chains(),
                now(),
                &Limits::default()
            )
            .unwrap_err(),
            ReceiptError::NotForThisEnvelope
        );
        let forged = receipt.seal(&signer("ot:npo-komorebi"));
        assert!(matches!(
            Receipt::verify(
                &forged,
                &bytes,
                &org("lg:131059"),
                &chains(),
                now(),
                &Limits::default()
            )
            .unwrap_err(),
            ReceiptError::WrongSigner { .. }
        ));
        state.receipts.insert(a.envelope.msg_id, rb.clone());
        let Inbound::Replay(again) =
            receive_as("lg:131059", &bytes, "mi:1310000017", &state).unwrap()
        else {
            panic!()
        };
        assert_eq!(again, rb);
    }

    #[test]
    fn npo_gets_form6_only() {
        let e = envelope("ot:npo-komorebi", "consent.json");
        let bytes = sealed(&e);
        let Inbound::New(a) = receive_as(
            "ot:npo-komorebi",
            &bytes,
            "mi:1310000017",
            &State::default(),
        )
        .unwrap() else {
            panic!()
        };
        let expect = Profile::Form6.elements(DocType::NeedsAssessment);
        assert_eq!(
            a.document
                .disclosed
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .len(),
            expect.len()
        );
        assert!(a
            .document
            .disclosed
            .keys()
            .all(|k| !k.starts_with("items.")));
    }

    fn code(r: Result<Inbound, Rejection>) -> String {
        match r {
            Err(e) => e.code(),
            Ok(_) => "accepted".into(),
        }
    }

    #[test]
    fn each_check_has_its_own_rejection() {
        let st = State::default();
        let good = envelope("lg:131059", "consent.json");
        // 1. signature: a flipped byte in the body (its leaf no longer leads to the signed
        // root), in the head's signature, and an unknown signer.
        let mut b = sealed(&good);
        let n = b.len();
        b[n - 80] ^= 1;
        // The body comes last; n - 80 lies in it.
        assert_eq!(
            code(receive_as("lg:131059", &b, "mi:1310000017", &st)),
            "bad_inclusion_proof"
        );
        let mut s = crate::batch::Sealed::parse(&sealed(&good), "e", &Limits::default()).unwrap();
        let h = s.head.len();
        s.head[h - 1] ^= 1;
        assert_eq!(
            code(receive_as("lg:131059", &s.to_bytes(), "mi:1310000017", &st)),
            "bad_envelope_signature"
        );
        let stranger = crate::cose::Signer::from_seed(&[3; 32], vec![b"foreign".to_vec()]).unwrap();
        assert_eq!(
            code(receive_as(
                "lg:131059",
                &good.seal(&stranger),
                "mi:1310000017",
                &st
            )),
            "untrusted_sender_certificate"
        );
        // 2. sender == TLS peer == signer.
        assert_eq!(
            code(receive_as(
                "lg:131059",
                &sealed(&good),
                "mi:1310000025",
                &st
            )),
            "sender_mismatch"
        );
        assert_eq!(
            code(receive_as(
                "lg:131059",
                &good.seal(&signer("mi:1310000025")),
                "mi:1310000017",
                &st
            )),
            "sender_mismatch"
        );
        // 3. aud
        assert_eq!(
            code(receive_as(
                "lg:131121",
                &sealed(&good),
                "mi:1310000017",
                &st
            )),
            "not_addressed_to_me"
        );
        // 4. time window
        let mut e = good.clone();
        e.exp = now();
        assert_eq!(
            code(receive_as("lg:131059", &sealed(&e), "mi:1310000017", &st)),
            "expired"
        );
        let mut e = good.clone();
        e.iat = now().plus(DEFAULT_MAX_SKEW + 1);
        assert_eq!(
            code(receive_as("lg:131059", &sealed(&e), "mi:1310000017", &st)),
            "not_yet_valid"
        );
        // 6. consent: a newer withdrawn version known here wins; police refused; bad reference.
        let mut withdrawn = State::default();
        withdrawn
            .consents
            .push(consent_bundle("consent_v3_withdrawn.json").0);
        assert_eq!(
            code(receive_as(
                "lg:131059",
                &sealed(&good),
                "mi:1310000017",
                &withdrawn
            )),
            "consent_denied:consent_withdrawn"
        );
        let police = envelope("ot:mpd", "consent.json");
        assert_eq!(
            code(receive_as("ot:mpd", &sealed(&police), "mi:1310000017", &st)),
            "consent_denied:police_refused_by_person"
        );
        let mut e = good.clone();
        e.consent_ref.version = 2;
        assert_eq!(
            code(receive_as("lg:131059", &sealed(&e), "mi:1310000017", &st)),
            "consent_invalid"
        );
        let mut e = good.clone();
        let Document::Consent(c) = fixture("consent.json") else {
            panic!()
        };
        let by_hospital = DocBundle::sign(
            &Document::Consent(c.clone()),
            &signer("mi:1310000017"),
            NOW,
            &mut FixedEntropy::new(b"c"),
        )
        .unwrap();
        e.consent_ref = ConsentRef::to(&c, &by_hospital);
        let holding = State {
            views: vec![by_hospital],
            ..State::default()
        };
        assert_eq!(
            code(receive_as(
                "lg:131059",
                &sealed(&e),
                "mi:1310000017",
                &holding
            )),
            "consent_invalid"
        );
        // 7. the document matches the envelope.
        let mut e = good.clone();
        e.kind = DocType::OpinionLetter;
        assert_eq!(
            code(receive_as("lg:131059", &sealed(&e), "mi:1310000017", &st)),
            "document_mismatch"
        );
        // 8. digests
        let mut e = good.clone();
        let victim = e.disclosures[2].clone();
        e.disclosures[2] = Item::new(victim.digest_id, &[1; 16], &victim.element, Value::Null);
        assert_eq!(
            code(receive_as("lg:131059", &sealed(&e), "mi:1310000017", &st)),
            "digest_mismatch"
        );
        // 9. duplicates
        let mut e = good.clone();
        e.disclosures.push(e.disclosures[0].clone());
        assert_eq!(
            code(receive_as("lg:131059", &sealed(&e), "mi:1310000017", &st)),
            "duplicate_element"
        );
        // Size limit.
        let chains = chains();
        let me = org("lg:131059");
        let small = Receiver {
            me: &me,
            chains: &chains,
            limits: Limits {
                max_bytes: 1024,
                ..Limits::default()
            },
            max_skew: 0,
        };
        assert_eq!(
            code(small.receive(&sealed(&good), &org("mi:1310000017"), now(), &st)),
            "too_large"
        );
    }

    /// A notice that withdraws consent or ends support, from `author` (who also sends it) to
    /// the hospital, which holds Bunkyo's consent v1 for case-0007; the envelope names that
    /// consent so that the hospital's own copy counts.
    fn notice_to_the_hospital(
        author: &str,
        kind: DocType,
        consent_id: &str,
    ) -> Result<Inbound, Rejection> {
        notice_to_the_hospital_holding("consent.json", author, kind, consent_id, 2)
    }

    /// As [`notice_to_the_hospital`], the hospital holding the consent version of fixture
    /// `held`, and a withdrawal recording version `withdrawn`.
    fn notice_to_the_hospital_holding(
        held: &str,
        author: &str,
        kind: DocType,
        consent_id: &str,
        withdrawn: u32,
    ) -> Result<Inbound, Rejection> {
        let (v1, b1) = consent_bundle(held);
        let state = State {
            consents: vec![v1.clone()],
            no_views: true,
            doc_hashes: vec![(v1.id.clone(), v1.version, sha256(&b1.doc))],
            ..State::default()
        };
        let notice = if kind == DocType::ConsentWithdrawal {
            serde_json::json!({
                "document_type": "consent_withdrawal",
                "author": author,
                "subject": "case-131059-2026-0007",
                "consent_id": consent_id,
                "consent_version": withdrawn,
                "withdrawn_on": "2026-10-10",
                "message": "本人が同意を撤回しました。",
            })
        } else {
            serde_json::json!({
                "document_type": "support_end",
                "author": author,
                "subject": "case-131059-2026-0007",
                "ended_on": "2026-10-10",
                "outcome": "consent_withdrawn",
                "note": "本人の同意撤回により支援を終了。",
            })
        };
        let b = DocBundle::sign(
            &Document::from_value(notice).unwrap(),
            &signer(author),
            NOW,
            &mut FixedEntropy::new(b"w"),
        )
        .unwrap();
        let mut e = envelope("mi:1310000017", "consent.json");
        e.sender = org(author);
        e.kind = kind;
        e.purpose = Purpose::ConsentManagement;
        // The hash of v1's document: the author holds the consent (a recipient of it).
        e.consent_ref = ConsentRef {
            id: v1.id.clone(),
            version: v1.version,
            hash: sha256(&b1.doc),
            view: [0; 32],
        };
        e.doc = b.doc;
        e.disclosures = b.items;
        receive_as("mi:1310000017", &sealed(&e), author, &state)
    }

    #[test]
    fn only_the_controller_of_the_consent_may_withdraw_it_or_end_the_support() {
        let (v1, _) = consent_bundle("consent.json");
        assert_eq!(v1.controller.as_str(), "lg:131059");
        // Setagaya, an authority with no part in the case, cannot end Bunkyo's case at the
        // hospital, neither by withdrawing Bunkyo's consent nor by ending the support.
        for kind in [DocType::ConsentWithdrawal, DocType::SupportEnd] {
            let r = notice_to_the_hospital("lg:131121", kind, &v1.id);
            assert_eq!(code(r), "notice_not_from_controller", "{kind}");
        }
        // Bunkyo may; but not withdraw another consent record under this one.
        let r = notice_to_the_hospital("lg:131059", DocType::ConsentWithdrawal, &v1.id);
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        let r = notice_to_the_hospital("lg:131059", DocType::ConsentWithdrawal, "another-consent");
        assert_eq!(code(r), "notice_not_from_controller");
    }

    #[test]
    fn a_withdrawal_older_than_the_consent_version_held_is_refused() {
        // The hospital holds v2, which granted consent anew after an earlier withdrawal (v1
        // here): that withdrawal, wrapped again by a party under v2, ends nothing.
        let v2 = "consent_v2_relocation.json";
        let id = consent_bundle(v2).0.id;
        let r = notice_to_the_hospital_holding(v2, "lg:131059", DocType::ConsentWithdrawal, &id, 1);
        let Err(e) = r else {
            panic!("an old withdrawal was accepted")
        };
        assert_eq!(e.code(), "notice_not_from_controller");
        assert!(
            e.to_string().contains("withdraws version 1") && e.to_string().contains("2 is newer"),
            "{e}"
        );
        // One that withdraws the version held (or a newer one) is taken.
        for withdrawn in [2, 3] {
            let r = notice_to_the_hospital_holding(
                v2,
                "lg:131059",
                DocType::ConsentWithdrawal,
                &id,
                withdrawn,
            );
            assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        }
    }

    #[test]
    fn only_the_controller_of_the_consent_may_send_a_transfer_notice() {
        // Bunkyo's consent v2 lets the case move to Setagaya and names the Tokyo prefecture
        // (lg:130001) too. A Form 7 handing the case to Setagaya, authored and sent by `author`.
        let form7 = |author: &str| {
            let b = form7_bundle(author, "lg:131121", "case-131059-2026-0007");
            let mut e = envelope("lg:131121", "consent_v2_relocation.json");
            e.sender = org(author);
            e.kind = DocType::TransferNotice;
            e.purpose = Purpose::RelocationTransfer;
            e.doc = b.doc;
            e.disclosures = b.items;
            let state = State {
                views: vec![consent_bundle("consent_v2_relocation.json").1],
                ..State::default()
            };
            receive_as("lg:131121", &sealed(&e), author, &state)
        };
        let r = form7("lg:131059");
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        let r = form7("lg:130001");
        assert_eq!(code(r), "notice_not_from_controller");
    }

    /// `author`'s Form 7 of `case`, handing it to `to` (signed by `author`).
    fn form7_bundle(author: &str, to: &str, case: &str) -> DocBundle {
        let doc = crate::testkit::transfer_notice(author, to, case);
        DocBundle::sign(&doc, &signer(author), NOW, &mut FixedEntropy::new(b"f7")).unwrap()
    }

    /// A move as the new controller shows it: `view`, with `from`'s Form 7 of Bunkyo's case to
    /// `to`.
    fn moved_by(view: DocBundle, from: &str, to: &str) -> HandoverLink {
        HandoverLink::new(view, &form7_bundle(from, to, "case-131059-2026-0007"))
    }

    /// Bunkyo's consent fixture `c` as Bunkyo sent it to `to`: `to`'s view.
    fn view_for(c: &str, to: &str) -> DocBundle {
        let (record, full) = consent_bundle(c);
        let to = org(to);
        let shown = crate::profile::consent_view(&record, &to, role_of(&to).unwrap());
        full.redact(|e| shown.iter().any(|v| v == e))
    }

    /// Bunkyo's consent v2, signed by Setagaya.
    fn v2_signed_by_setagaya() -> DocBundle {
        DocBundle::sign(
            &fixture("consent_v2_relocation.json"),
            &signer("lg:131121"),
            NOW,
            &mut FixedEntropy::new(b"forged"),
        )
        .unwrap()
    }

    /// Setagaya's own consent for Bunkyo's case (with `id` and `version`), sent inline to `to`
    /// in `to`'s view.
    fn foreign_consent_to(to: &str, id: &str, version: u32) -> Envelope {
        consent_envelope("lg:131121", to, id, |c| c["version"] = version.into())
    }

    /// `controller`'s consent `id` (the fixture's, changed by `edit`), naming `controller` and
    /// `to`, sent inline to `to` in `to`'s view.
    fn consent_envelope(
        controller: &str,
        to: &str,
        id: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Envelope {
        let setagaya = controller;
        let mut c = fixture("consent.json").to_json();
        c["controller"] = setagaya.into();
        c["id"] = id.into();
        c["recipients"] = serde_json::json!([{"org": setagaya}, {"org": to}]);
        edit(&mut c);
        // Not validated: a modified gateway signs what it likes.
        let doc = Document::Consent(serde_json::from_value(c).unwrap());
        let Document::Consent(record) = doc.clone() else {
            panic!("not a consent")
        };
        let full = DocBundle::sign(
            &doc,
            &signer(setagaya),
            NOW,
            &mut FixedEntropy::new(id.as_bytes()),
        )
        .unwrap();
        let to = org(to);
        let view = crate::profile::consent_view(&record, &to, role_of(&to).unwrap());
        let bundle = full.redact(|e| view.iter().any(|v| v == e));
        let mut e = envelope(to.as_str(), "consent.json");
        e.sender = org(setagaya);
        e.case = record.subject.clone();
        e.kind = DocType::Consent;
        e.purpose = Purpose::ConsentManagement;
        e.consent_ref = ConsentRef::to(&record, &bundle);
        e.doc = bundle.doc;
        e.disclosures = bundle.items;
        e
    }

    #[test]
    fn an_authority_cannot_make_itself_a_controller_of_another_authoritys_case() {
        let (v1, _) = consent_bundle("consent.json");
        let (v2, _) = consent_bundle("consent_v2_relocation.json");
        // The sender, asked for the moves that made it a controller, shows none.
        let holding = |c: &ConsentRecord| State {
            consents: vec![c.clone()],
            proof: Some(None),
            ..State::default()
        };
        let hospital = "mi:1310000017";
        let to_hospital = sealed(&foreign_consent_to(hospital, "consent-131121-x", 1));
        // The hospital holds Bunkyo's consent, which lets the case move nowhere: Setagaya's
        // consent for the case is refused (it could otherwise end the case there).
        let Err(err) = receive_as(hospital, &to_hospital, "lg:131121", &holding(&v1)) else {
            panic!("Setagaya's consent was accepted")
        };
        assert_eq!(err.code(), "controller_not_recognised");
        let msg = err.to_string();
        assert!(
            msg.contains("lg:131121") && msg.contains("lg:131059"),
            "{msg}"
        );
        // Once the person agreed to a move (v2 grants relocation_transfer), the hospital, which
        // sees only its own view of Bunkyo's consent, asks Setagaya for Setagaya's view of it.
        let r = receive_as(hospital, &to_hospital, "lg:131121", &holding(&v2));
        match r {
            Ok(Inbound::HandoverNeeded { case, consent }) => {
                assert_eq!((case, consent), (v2.subject.clone(), v2.id.clone()));
            }
            other => panic!("expected HandoverNeeded, got {:?}", other.map(|_| ())),
        }
        // Bunkyo's v2 as Bunkyo sent it to each org (its view names that org), with a Form 7.
        let showing = |link: HandoverLink| State {
            consents: vec![v2.clone()],
            handovers: vec![(v2.id.clone(), Some(link))],
            proof: Some(None),
            ..State::default()
        };
        let to_setagaya = |view: DocBundle| moved_by(view, "lg:131059", "lg:131121");
        // Setagaya's own view names Setagaya, and Bunkyo's Form 7 went to Setagaya: the new
        // controller is accepted.
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &showing(to_setagaya(view_for(
                "consent_v2_relocation.json",
                "lg:131121",
            ))),
        );
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        // The same view with a Form 7 that does not hand the case to Setagaya: addressed to the
        // Tokyo prefecture (which v2 names too), signed by another authority than Bunkyo (here
        // Hachioji), or of another case.
        for notice in [
            form7_bundle("lg:131059", "lg:130001", "case-131059-2026-0007"),
            form7_bundle("lg:132012", "lg:131121", "case-131059-2026-0007"),
            form7_bundle("lg:131059", "lg:131121", "case-131059-2026-0008"),
        ] {
            let link =
                HandoverLink::new(view_for("consent_v2_relocation.json", "lg:131121"), &notice);
            let r = receive_as(hospital, &to_hospital, "lg:131121", &showing(link));
            assert_eq!(code(r), "controller_not_recognised");
        }
        // Another org's view (the hospital's own, which names only the hospital and Bunkyo)
        // does not name Setagaya: refused, as is a view Setagaya signed itself.
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &showing(to_setagaya(view_for(
                "consent_v2_relocation.json",
                hospital,
            ))),
        );
        assert_eq!(code(r), "controller_not_recognised");
        let forged = v2_signed_by_setagaya();
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &showing(to_setagaya(forged)),
        );
        assert_eq!(code(r), "controller_not_recognised");
        // The Tokyo prefecture, which v2 names for another reason, shows Bunkyo's v2 as Bunkyo
        // sent it to Tokyo (naming Tokyo) with the Form 7 that went to Setagaya: not a move to
        // Tokyo. The view names whom the person agreed may receive the case; the Form 7 says
        // which of them it moved to.
        let tokyo_to_hospital = sealed(&consent_envelope(
            "lg:130001",
            hospital,
            "consent-130001-x",
            |_| {},
        ));
        let r = receive_as(
            hospital,
            &tokyo_to_hospital,
            "lg:130001",
            &showing(to_setagaya(view_for(
                "consent_v2_relocation.json",
                "lg:130001",
            ))),
        );
        assert_eq!(code(r), "controller_not_recognised");
        // A view older than the version held here decides nothing yet (no receipt).
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &showing(to_setagaya(view_for("consent.json", "lg:131121"))),
        );
        assert!(
            matches!(r, Ok(Inbound::HandoverNeeded { .. })),
            "{:?}",
            r.map(|_| ())
        );
        // A sender that shows nothing (an authority the person never named) is refused for
        // good, not asked again.
        let nothing = State {
            consents: vec![v2.clone()],
            handovers: vec![(v2.id.clone(), None)],
            proof: Some(None),
            ..State::default()
        };
        let r = receive_as(hospital, &to_hospital, "lg:131121", &nothing);
        assert_eq!(code(r), "controller_not_recognised");
        // With two consents that let the case move, the second is asked when the first showed
        // nothing, and its view naming Setagaya is enough.
        let mut other = v2.clone();
        other.id = "consent-132012-2026-0001".into();
        other.controller = org("lg:132012");
        let two = |handovers: Vec<(String, Option<HandoverLink>)>| State {
            consents: vec![v2.clone(), other.clone()],
            handovers,
            ..State::default()
        };
        match receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &two(vec![(v2.id.clone(), None)]),
        ) {
            Ok(Inbound::HandoverNeeded { consent, .. }) => assert_eq!(consent, other.id),
            r => panic!("expected the second consent asked, got {:?}", r.map(|_| ())),
        }
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &two(vec![
                (other.id.clone(), None),
                (
                    v2.id.clone(),
                    Some(to_setagaya(view_for(
                        "consent_v2_relocation.json",
                        "lg:131121",
                    ))),
                ),
            ]),
        );
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        // Bunkyo, the controller, accepts Setagaya only when its own consent names Setagaya
        // for the move (v1 does not, v2 does) and Bunkyo sent Setagaya Form 7.
        let bunkyo = "lg:131059";
        let sent = |c: &ConsentRecord, to: &str| State {
            sent_to: vec![org(to)],
            ..holding(c)
        };
        let to_bunkyo = sealed(&foreign_consent_to(bunkyo, "consent-131121-x", 1));
        let r = receive_as(bunkyo, &to_bunkyo, "lg:131121", &sent(&v1, "lg:131121"));
        assert_eq!(code(r), "controller_not_recognised");
        let r = receive_as(bunkyo, &to_bunkyo, "lg:131121", &holding(&v2));
        assert_eq!(code(r), "controller_not_recognised");
        let r = receive_as(bunkyo, &to_bunkyo, "lg:131121", &sent(&v2, "lg:131121"));
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        // When Bunkyo cannot read its outbox, nothing is decided (no receipt), also after the
        // moves were asked for.
        let unreadable = State {
            outbox_unreadable: true,
            ..sent(&v2, "lg:131121")
        };
        let r = receive_as(bunkyo, &to_bunkyo, "lg:131121", &unreadable);
        assert!(
            matches!(r, Ok(Inbound::ProofNeeded { .. })),
            "{:?}",
            r.map(|_| ())
        );
        // The Tokyo prefecture, which v2 names too, is no controller at Bunkyo: its Form 7
        // went to Setagaya.
        let tokyo_to_bunkyo = sealed(&consent_envelope(
            "lg:130001",
            bunkyo,
            "consent-130001-x",
            |_| {},
        ));
        let r = receive_as(
            bunkyo,
            &tokyo_to_bunkyo,
            "lg:130001",
            &sent(&v2, "lg:131121"),
        );
        assert_eq!(code(r), "controller_not_recognised");
        // Bunkyo's consent id with a higher version, signed by Setagaya: refused even after a
        // move was agreed.
        let stolen = sealed(&foreign_consent_to(hospital, &v1.id, 5));
        let Err(err) = receive_as(hospital, &stolen, "lg:131121", &holding(&v2)) else {
            panic!("a version of Bunkyo's consent signed by Setagaya was accepted")
        };
        assert_eq!(err.code(), "consent_invalid");
        assert!(
            err.to_string().contains(
                "consent-131059-2026-0007 names lg:131059, but the controller is lg:131121"
            ),
            "{err}"
        );
        // Setagaya's consent carried under a reference to Bunkyo's (which the hospital holds,
        // so that the envelope would be judged under it): refused.
        let mut smuggled = foreign_consent_to(hospital, "consent-131121-x", 1);
        let own_view = sha256(&smuggled.bundle().to_bytes());
        for (hash, view, says) in [
            ([0; 32], [0; 32], "not the one its consentRef names"),
            (
                sha256(&smuggled.doc),
                own_view,
                "does not match the envelope's consentRef",
            ),
        ] {
            smuggled.consent_ref = ConsentRef {
                id: v1.id.clone(),
                version: 0,
                hash,
                view,
            };
            let Err(err) = receive_as(hospital, &sealed(&smuggled), "lg:131121", &holding(&v1))
            else {
                panic!("a consent carried under another consent's reference was accepted")
            };
            assert_eq!(err.code(), "consent_invalid");
            assert!(err.to_string().contains(says), "{err}");
        }
        // A support end about a case of Setagaya's own (the hospital holds nothing of it, so
        // Setagaya would be its first controller), naming a Setagaya consent about Bunkyo's
        // case, which would then be kept under Bunkyo's case: refused.
        let carrier = foreign_consent_to(hospital, "consent-131121-y", 1);
        let own_case: CaseId = "case-131121-2026-0001".parse().unwrap();
        let end = DocBundle::sign(
            &Document::from_value(serde_json::json!({
                "document_type": "support_end",
                "author": "lg:131121",
                "subject": own_case.as_str(),
                "ended_on": "2026-10-10",
                "outcome": "completed",
                "note": "",
            }))
            .unwrap(),
            &signer("lg:131121"),
            NOW,
            &mut FixedEntropy::new(b"end"),
        )
        .unwrap();
        let mut notice = carrier.clone();
        notice.kind = DocType::SupportEnd;
        notice.case = own_case;
        notice.doc = end.doc;
        notice.disclosures = end.items;
        let state = State {
            consents: vec![v1.clone()],
            views: vec![carrier.bundle()],
            ..State::default()
        };
        let Err(err) = receive_as(hospital, &sealed(&notice), "lg:131121", &state) else {
            panic!("a consent about another case than the envelope's was accepted")
        };
        assert_eq!(err.code(), "consent_invalid");
        assert!(err.to_string().contains("about another case"), "{err}");
        // A withdrawn consent lets the case move nowhere, though it granted relocation_transfer.
        let (v3, _) = consent_bundle("consent_v3_withdrawn.json");
        assert!(v3.purposes.contains(&Purpose::RelocationTransfer));
        let r = receive_as(hospital, &to_hospital, "lg:131121", &holding(&v3));
        assert_eq!(code(r), "controller_not_recognised");
    }

    #[test]
    fn a_case_is_its_openers_and_another_controller_shows_the_moves_to_it() {
        let hospital = "mi:1310000017";
        let (v1, _) = consent_bundle("consent.json");
        let (v3, _) = consent_bundle("consent_v3_withdrawn.json");
        let case = &v1.subject;
        assert_eq!(case.opener(), Some(org("lg:131059")));
        for none in [
            "case-1",
            "case-131058-2026-0007",
            "case-131059x",
            "case-13105-2026",
            "case-131059-",
        ] {
            let id: CaseId = none.parse().unwrap();
            assert_eq!(id.opener(), None, "{none}");
        }
        // Bunkyo opened the case: a gateway holding nothing of it takes Bunkyo's consent as is.
        let bunkyo = consent_envelope("lg:131059", hospital, &v1.id, |_| {});
        let r = receive_as(hospital, &sealed(&bunkyo), "lg:131059", &State::default());
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        // Setagaya did not: the hospital, holding nothing of the case, asks it for the moves.
        let to_hospital = sealed(&foreign_consent_to(hospital, "consent-131121-x", 1));
        let proof = |links: Option<Vec<HandoverLink>>, consents: Vec<ConsentRecord>| State {
            consents,
            proof: Some(links),
            ..State::default()
        };
        let r = receive_as(hospital, &to_hospital, "lg:131121", &State::default());
        assert!(
            matches!(&r, Ok(Inbound::ProofNeeded { case: c, .. }) if c == case),
            "{:?}",
            r.map(|_| ())
        );
        // Nothing shown: refused for good.
        let r = receive_as(hospital, &to_hospital, "lg:131121", &proof(None, vec![]));
        assert_eq!(code(r), "controller_not_recognised");
        // Bunkyo's v2 as Setagaya received it (signed by the opener, naming Setagaya for the
        // move) and Bunkyo's Form 7 to Setagaya: accepted, and what was shown is kept.
        let moved = moved_by(
            view_for("consent_v2_relocation.json", "lg:131121"),
            "lg:131059",
            "lg:131121",
        );
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &proof(Some(vec![moved.clone()]), vec![]),
        );
        let Ok(Inbound::New(accepted)) = r else {
            panic!("expected the move shown, got {:?}", r.map(|_| ()))
        };
        let shown = accepted.controller_shown.expect("what was shown");
        assert_eq!(
            (shown.controller, shown.from, shown.links.len()),
            (org("lg:131121"), org("lg:131059"), 1)
        );
        // Also when the hospital holds Bunkyo's v1, which lets the case move nowhere (v2 has
        // not reached it yet): v2 is newer than what it holds.
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &proof(Some(vec![moved.clone()]), vec![v1.clone()]),
        );
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        // Not when it holds v3, which took the consent (and the move) back.
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:131121",
            &proof(Some(vec![moved.clone()]), vec![v3.clone()]),
        );
        assert_eq!(code(r), "controller_not_recognised");
        // Not shown by: v1 (no move), the hospital's own view of v2 (names the hospital, not
        // Setagaya), a v2 Setagaya signed itself, a move shown from a link that is not the
        // opener's at the start, or the right view with a Form 7 addressed to another
        // authority (the Tokyo prefecture, which v2 names too) or signed by another than
        // Bunkyo.
        let forged = v2_signed_by_setagaya();
        let to_setagaya = |view: DocBundle| moved_by(view, "lg:131059", "lg:131121");
        let v2_to_setagaya = || view_for("consent_v2_relocation.json", "lg:131121");
        for links in [
            vec![to_setagaya(view_for("consent.json", "lg:131121"))],
            vec![to_setagaya(view_for(
                "consent_v2_relocation.json",
                hospital,
            ))],
            vec![to_setagaya(forged)],
            vec![to_setagaya(
                foreign_consent_to("lg:131121", "consent-131121-z", 1).bundle(),
            )],
            vec![moved_by(v2_to_setagaya(), "lg:131059", "lg:130001")],
            vec![moved_by(v2_to_setagaya(), "lg:132012", "lg:131121")],
        ] {
            let r = receive_as(
                hospital,
                &to_hospital,
                "lg:131121",
                &proof(Some(links), vec![]),
            );
            assert_eq!(code(r), "controller_not_recognised");
        }
        // Two moves: Bunkyo to Setagaya, then Setagaya to Hachioji. Hachioji shows both links.
        let setagaya_v2 = {
            let mut c = fixture("consent_v2_relocation.json").to_json();
            c["controller"] = "lg:131121".into();
            c["id"] = "consent-131121-x".into();
            c["recipients"] = serde_json::json!([{"org": "lg:131121"}, {"org": "lg:132012"}]);
            let doc = Document::from_value(c).unwrap();
            let view = DocBundle::sign(
                &doc,
                &signer("lg:131121"),
                NOW,
                &mut FixedEntropy::new(b"s2"),
            )
            .unwrap();
            moved_by(view, "lg:131121", "lg:132012")
        };
        let to_hospital = sealed(&consent_envelope(
            "lg:132012",
            hospital,
            "consent-132012-x",
            |_| {},
        ));
        let r = receive_as(
            hospital,
            &to_hospital,
            "lg:132012",
            &proof(Some(vec![moved.clone(), setagaya_v2.clone()]), vec![]),
        );
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        // The second link alone, or the links out of order: refused.
        for links in [
            vec![setagaya_v2.clone()],
            vec![setagaya_v2.clone(), moved.clone()],
        ] {
            let r = receive_as(
                hospital,
                &to_hospital,
                "lg:132012",
                &proof(Some(links), vec![]),
            );
            assert_eq!(code(r), "controller_not_recognised");
        }
        // A case id that names no authority has no first controller: Bunkyo must show moves
        // from an opener there is none of.
        let unnamed = consent_envelope("lg:131059", hospital, "consent-unnamed", |c| {
            c["subject"] = "case-0007".into()
        });
        let r = receive_as(hospital, &sealed(&unnamed), "lg:131059", &State::default());
        assert!(
            matches!(r, Ok(Inbound::ProofNeeded { .. })),
            "{:?}",
            r.map(|_| ())
        );
        let r = receive_as(
            hospital,
            &sealed(&unnamed),
            "lg:131059",
            &proof(None, vec![]),
        );
        assert_eq!(code(r), "controller_not_recognised");
        // A party passing Setagaya's consent on has no moves to show: nothing is decided (no
        // receipt) until Setagaya's own copy comes.
        let mut passed_on = foreign_consent_to("lg:132012", "consent-131121-x", 1);
        passed_on.sender = org(hospital);
        let r = receive_as(
            "lg:132012",
            &sealed(&passed_on),
            hospital,
            &proof(None, vec![]),
        );
        assert!(
            matches!(r, Ok(Inbound::ProofNeeded { .. })),
            "{:?}",
            r.map(|_| ())
        );
        // Bunkyo's v2 lets the case move and names the Tokyo prefecture too. Tokyo's own view
        // of it, shown with the Form 7 that went to Setagaya, is no move to Tokyo at a gateway
        // new to the case. Had Bunkyo sent Tokyo a Form 7, it would be (the person agreed, and
        // Bunkyo moved the case there).
        let tokyo_to = |to: &str| {
            sealed(&consent_envelope(
                "lg:130001",
                to,
                "consent-130001-x",
                |_| {},
            ))
        };
        let tokyo_view = || view_for("consent_v2_relocation.json", "lg:130001");
        let r = receive_as(
            hospital,
            &tokyo_to(hospital),
            "lg:130001",
            &proof(
                Some(vec![moved_by(tokyo_view(), "lg:131059", "lg:131121")]),
                vec![],
            ),
        );
        assert_eq!(code(r), "controller_not_recognised");
        let shown = vec![moved_by(tokyo_view(), "lg:131059", "lg:130001")];
        let r = receive_as(
            hospital,
            &tokyo_to(hospital),
            "lg:130001",
            &proof(Some(shown.clone()), vec![]),
        );
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        // A controller of the case decides by its own consent: Setagaya, which took the case
        // over, does not take Tokyo as a controller because that move is shown.
        let mut setagaya_own = v1.clone();
        setagaya_own.id = "consent-131121-x".into();
        setagaya_own.controller = org("lg:131121");
        let r = receive_as(
            "lg:131121",
            &tokyo_to("lg:131121"),
            "lg:130001",
            &proof(Some(shown), vec![setagaya_own]),
        );
        assert_eq!(code(r), "controller_not_recognised");
        // But a move that passes through the controller's own consent, in the version it
        // holds, does count there: Bunkyo takes Hachioji after Bunkyo to Setagaya to Hachioji,
        // and not once Bunkyo holds a newer version (v3) than the link.
        let hachioji_to_bunkyo = sealed(&consent_envelope(
            "lg:132012",
            "lg:131059",
            "consent-132012-x",
            |_| {},
        ));
        let (v2, _) = consent_bundle("consent_v2_relocation.json");
        let through_bunkyo = vec![moved.clone(), setagaya_v2.clone()];
        let r = receive_as(
            "lg:131059",
            &hachioji_to_bunkyo,
            "lg:132012",
            &proof(Some(through_bunkyo.clone()), vec![v2]),
        );
        assert!(matches!(r, Ok(Inbound::New(_))), "{:?}", r.map(|_| ()));
        let r = receive_as(
            "lg:131059",
            &hachioji_to_bunkyo,
            "lg:132012",
            &proof(Some(through_bunkyo), vec![v3.clone()]),
        );
        assert_eq!(code(r), "controller_not_recognised");
    }

    #[test]
    fn a_message_id_is_a_replay_only_from_its_first_sender() {
        let mut state = State::default();
        let id = envelope("lg:131059", "consent.json").msg_id;
        state
            .receipts
            .insert(id, b"the receipt given to the hospital".to_vec());
        state.senders.insert(id, org("mi:1310000017"));
        // The hospital's copy again: the stored receipt.
        let again = sealed(&envelope("lg:131059", "consent.json"));
        assert!(matches!(
            receive_as("lg:131059", &again, "mi:1310000017", &state),
            Ok(Inbound::Replay(r)) if r == b"the receipt given to the hospital"
        ));
        // The clinic's envelope with the hospital's id: refused, without the hospital's receipt.
        let mut e = envelope("lg:131059", "consent.json");
        e.sender = org("mi:1310000025");
        let r = receive_as("lg:131059", &sealed(&e), "mi:1310000025", &state);
        assert_eq!(code(r), "msg_id_taken");
        // A first sender no longer known (its entry purged): the stored receipt, as before.
        state.senders.clear();
        assert!(matches!(
            receive_as("lg:131059", &again, "mi:1310000017", &state),
            Ok(Inbound::Replay(_))
        ));
    }

    #[test]
    fn an_unknown_consent_view_is_fetched_not_refused() {
        let good = envelope("lg:131059", "consent.json");
        let bytes = sealed(&good);
        let empty = State {
            no_views: true,
            ..State::default()
        };
        match receive_as("lg:131059", &bytes, "mi:1310000017", &empty).unwrap() {
            Inbound::ConsentNeeded { case, view } => {
                assert_eq!(case, good.case);
                assert_eq!(view, good.consent_ref.view);
            }
            other => panic!("expected ConsentNeeded, got {other:?}"),
        }
        // The fetched bundle, once it is at hand, lets the envelope through.
        let fetched = crate::fetch::consent_answer(
            &good.consent_ref.view,
            &consent_bundle("consent.json").1.to_bytes(),
            &Limits::default(),
        )
        .unwrap();
        let holding = State {
            no_views: true,
            views: vec![fetched],
            ..State::default()
        };
        let Inbound::New(a) = receive_as("lg:131059", &bytes, "mi:1310000017", &holding).unwrap()
        else {
            panic!("not accepted")
        };
        assert!(a.referenced.is_some());
        // A wrong answer (another bundle) is refused by its digest, with its own code.
        let wrong = consent_bundle("consent_v3_withdrawn.json").1.to_bytes();
        assert_eq!(
            crate::fetch::consent_answer(&good.consent_ref.view, &wrong, &Limits::default())
                .unwrap_err()
                .code(),
            "consent_digest_mismatch"
        );
    }

    #[test]
    fn the_receivers_own_copy_counts_without_the_referenced_view() {
        let good = envelope("lg:131059", "consent.json");
        let (record, bundle) = consent_bundle("consent.json");
        // The same version of the same signed document: judged by the own copy, no fetch.
        struct Own(ConsentRecord, [u8; 32], Vec<(u32, [u8; 32])>);
        impl ReceiverState for Own {
            fn stored_receipt(&self, _: &[u8; 16]) -> Option<Vec<u8>> {
                None
            }
            fn latest_consent(&self, _: &str) -> Option<ConsentRecord> {
                Some(self.0.clone())
            }
            fn latest_consent_hash(&self, _: &str) -> Option<[u8; 32]> {
                Some(self.1)
            }
            fn consent_version_hash(&self, _: &str, version: u32) -> Option<[u8; 32]> {
                self.2.iter().find(|(v, _)| *v == version).map(|(_, h)| *h)
            }
            fn role_of(&self, org: &OrgId) -> Option<Role> {
                role_of(org)
            }
            fn is_party(&self, _: &CaseId) -> bool {
                true
            }
        }
        let own = Own(record.clone(), sha256(&bundle.doc), Vec::new());
        let chains = chains();
        let me = org("lg:131059");
        let receiver = Receiver {
            me: &me,
            chains: &chains,
            limits: Limits::default(),
            max_skew: DEFAULT_MAX_SKEW,
        };
        let Inbound::New(a) = receiver
            .receive(&sealed(&good), &org("mi:1310000017"), now(), &own)
            .unwrap()
        else {
            panic!("not accepted")
        };
        assert!(a.referenced.is_none());
        // The same version of another signed document is not the own copy: fetch it.
        let other = Own(record.clone(), [0; 32], Vec::new());
        assert!(matches!(
            receiver
                .receive(&sealed(&good), &org("mi:1310000017"), now(), &other)
                .unwrap(),
            Inbound::ConsentNeeded { .. }
        ));
        // Holding a newer version: an older one counts only when the reference names the very
        // document of that version recorded here.
        let mut newer = record.clone();
        newer.version = record.version + 1;
        let recorded = Own(
            newer.clone(),
            [7; 32],
            vec![(record.version, sha256(&bundle.doc))],
        );
        let Inbound::New(a) = receiver
            .receive(&sealed(&good), &org("mi:1310000017"), now(), &recorded)
            .unwrap()
        else {
            panic!("an envelope under a recorded older version was not accepted")
        };
        assert!(a.referenced.is_none());
        assert_eq!(a.consent.version, newer.version);
        // A member never given the consent names its predictable id with an old version and a
        // made-up hash: the newer copy held here does not stand in for it, the sender must show
        // the consent (a fetch, which it cannot answer).
        for (version, hash) in [(0, [0; 32]), (record.version, [9; 32])] {
            let mut forged = good.clone();
            forged.consent_ref.version = version;
            forged.consent_ref.hash = hash;
            assert!(
                matches!(
                    receiver
                        .receive(&sealed(&forged), &org("mi:1310000017"), now(), &recorded)
                        .unwrap(),
                    Inbound::ConsentNeeded { .. }
                ),
                "version {version} with a made-up hash was judged by the newer copy"
            );
        }
        // A version this gateway never recorded: fetched too, whatever the sender claims.
        let unrecorded = Own(newer, [7; 32], Vec::new());
        assert!(matches!(
            receiver
                .receive(&sealed(&good), &org("mi:1310000017"), now(), &unrecorded)
                .unwrap(),
            Inbound::ConsentNeeded { .. }
        ));
    }

    #[test]
    fn a_head_naming_its_chain_by_fingerprint_needs_the_chain_held_or_fetched() {
        let good = envelope("lg:131059", "consent.json");
        let hospital = signer("mi:1310000017");
        let slim = batch::seal_by_kid(&hospital, cose::TYP_ENVELOPE, &[good.body()])
            .pop()
            .unwrap();
        let full = sealed(&good);
        assert!(slim.len() + hospital.x5chain().iter().map(Vec::len).sum::<usize>() < full.len());
        match receive_as("lg:131059", &slim, "mi:1310000017", &State::default()).unwrap() {
            Inbound::ChainNeeded { kid } => assert_eq!(kid, hospital.kid()),
            other => panic!("expected ChainNeeded, got {other:?}"),
        }
        // Another org's chain held does not stand in for it.
        let others = State {
            signer_chains: vec![signer("mi:1310000025").x5chain().to_vec()],
            ..State::default()
        };
        assert!(matches!(
            receive_as("lg:131059", &slim, "mi:1310000017", &others).unwrap(),
            Inbound::ChainNeeded { .. }
        ));
        let holding = State {
            signer_chains: vec![hospital.x5chain().to_vec()],
            ..State::default()
        };
        assert!(matches!(
            receive_as("lg:131059", &slim, "mi:1310000017", &holding).unwrap(),
            Inbound::New(_)
        ));
        // The held chain is checked like a carried one: an untrusted signer is refused.
        let stranger = crate::cose::Signer::from_seed(&[3; 32], vec![b"foreign".to_vec()]).unwrap();
        let foreign = batch::seal_by_kid(&stranger, cose::TYP_ENVELOPE, &[good.body()])
            .pop()
            .unwrap();
        let held = State {
            signer_chains: vec![stranger.x5chain().to_vec()],
            ..State::default()
        };
        assert_eq!(
            code(receive_as("lg:131059", &foreign, "mi:1310000017", &held)),
            "untrusted_sender_certificate"
        );
    }

    #[test]
    fn a_document_naming_its_chain_by_kid_is_given_it_back_before_the_checks() {
        let good = envelope("lg:131059", "consent.json");
        let hospital = signer("mi:1310000017");
        let mut slim = good.clone();
        let (kid, chain) = slim.strip_document_chain().unwrap();
        assert_eq!(
            (kid, chain.as_slice()),
            (hospital.kid(), hospital.x5chain())
        );
        assert!(slim.doc.len() < good.doc.len());
        assert_eq!(slim.strip_document_chain(), None);
        let bytes = sealed(&slim);
        match receive_as("lg:131059", &bytes, "mi:1310000017", &State::default()).unwrap() {
            Inbound::ChainNeeded { kid } => assert_eq!(kid, hospital.kid()),
            other => panic!("expected ChainNeeded, got {other:?}"),
        }
        let holding = State {
            signer_chains: vec![hospital.x5chain().to_vec()],
            ..State::default()
        };
        let Inbound::New(a) = receive_as("lg:131059", &bytes, "mi:1310000017", &holding).unwrap()
        else {
            panic!("not accepted")
        };
        // The document is the bytes as the author signed them.
        assert_eq!(a.envelope.doc, good.doc);
        // A tampered signature is still refused as before.
        let mut bad = slim.clone();
        let n = bad.doc.len();
        bad.doc[n - 1] ^= 1;
        assert_eq!(
            code(receive_as(
                "lg:131059",
                &sealed(&bad),
                "mi:1310000017",
                &holding
            )),
            "bad_document_signature"
        );
    }

    #[test]
    fn envelope_round_trips() {
        let e = envelope("lg:131059", "consent.json");
        let bytes = sealed(&e);
        assert_eq!(
            Envelope::parse_unverified(&bytes, &Limits::default()).unwrap(),
            e
        );
    }
}
