//! The consent fetch: how a receiver gets the consent view an envelope names by digest.
//!
//! An envelope names the consent that allows it by reference ([`ConsentRef`]): the receiver
//! judges by its own stored copy when it has one, and otherwise asks the sending gateway, on the
//! mutual-TLS connection the envelope came in on, for the bundle whose exact bytes hash to
//! [`ConsentRef::view`]. The request is `{"op": "consent", "case": <case id>, "view": <32
//! bytes>}` in deterministic CBOR ([`consent_fetch`]); the answer is the bundle's bytes exactly
//! as referenced ([`DocBundle::to_bytes`]), or empty when the sender holds no such view addressed
//! to the asker (the TLS certificate names who asks). The receiver checks the answer with
//! [`consent_answer`] before it runs the envelope's checks again with it; the controller's
//! signature, the reference and the gate are then checked as for any consent
//! ([`crate::envelope`], step 6).
//!
//! A fetch that fails — no answer, an empty one, or bytes that do not hash to the digest — is
//! never a rejection of the envelope: the receiver sends no receipt and the sender retries.
//!
//! # Signer chains by fingerprint
//! A gateway's batch head of envelopes names its signer's certificate chain by fingerprint
//! only (the `kid`, SHA-256 of the leaf certificate; [`crate::batch::seal_by_kid`]), and the
//! document an envelope carries names its author's chain the same way
//! ([`crate::envelope::Envelope::strip_document_chain`]). A receiver
//! that does not hold that chain asks the sender the same way: `{"op": "chain", "kid": <32
//! bytes>}` ([`chain_fetch`]); the answer is the chain as a CBOR array of certificates, leaf
//! first ([`encode_chain`]), or empty. [`chain_answer`] checks that the leaf hashes to the `kid`;
//! the chain is then validated against the federation CA and CRL like any carried chain, and
//! the receiver keeps it once, by fingerprint.
//!
//! # Handover: the new controller's own view and its Form 7
//! A gateway that holds a consent of a case but does not control it sees only its own view of
//! it, never whom else it names. When a consent of a controller new to it arrives and only a
//! move the person agreed to can explain it, it asks the sender `{"op": "handover", "case":
//! <case id>, "consent": <id of the held consent that lets the case move>}`
//! ([`handover_fetch`]). The sender answers a [`HandoverLink`]: its own view of that consent (as
//! its controller sent it) and the transfer notice (Form 7) that controller sent it, showing
//! only whom it was addressed to. It answers only to an org its own consent of the case, in
//! force, shares the case with, and only about a consent in force that lets the case move;
//! otherwise nothing ([`handover_answer`] reads an empty answer as "nothing shown", which counts
//! against the new controller). The receiver accepts the new controller when that view, signed
//! by the held consent's controller, still lets the case move and names it by org, and the
//! notice, signed by the same controller, is of the case and addressed to it. A consent names
//! everyone the person agreed may receive the case (the prefecture too); only the Form 7 says
//! which of them the case moved to.
//!
//! # Handover proof: how a new controller shows the case was handed to it
//! A case id names the authority that opened it ([`CaseId::opener`]), and that authority is
//! the case's first controller everywhere. Any other authority's consent is taken by a gateway
//! that holds no consent of the case (or none that lets the case move) only when the sender
//! shows the moves that made it a controller: it asks `{"op": "proof", "case": <case id>,
//! "msgId": <the envelope's>}` ([`proof_fetch`]), and the answer is a CBOR array of
//! [`HandoverLink`]s ([`encode_proof`]), the first signed by the opener, each consent naming
//! the next one's controller by org in a version that granted `relocation_transfer`
//! ([`crate::document::ConsentRecord::handed_over_to`]) and each notice, signed by the same
//! controller, addressed to the next one's controller, the last to the new controller; empty
//! when the sender has none to show ([`proof_answer`]). Each link is that controller's view and
//! notice as the next controller received them, so the sender shows only views addressed to
//! itself or to a controller before it. It answers only about an envelope of the case it is
//! sending the asker, and only while its own consent of the case is active and shares the case
//! with the asker.
//!
//! # An answer that cannot be given now
//! A sender that fails to answer a consent, handover or proof fetch (its store could not be
//! read, say) answers [`NOT_NOW`] (CBOR `null`), never the empty answer that means "nothing to
//! show": the receiver then decides nothing ([`ConsentFetchError::NotNow`]), sends no receipt
//! and the sender retries.
//!
//! [`ConsentRef`]: crate::envelope::ConsentRef
//! [`ConsentRef::view`]: crate::envelope::ConsentRef::view

use crate::cbor::{self, map, Limits, MapReader, Value};

/// The answer to a consent, handover or proof fetch that the sender cannot give now: CBOR
/// `null` (see the module docs).
pub const NOT_NOW: &[u8] = &[0xf6];
use crate::cose::sha256;
use crate::document::CaseId;
use crate::signed::{DocBundle, DocError};

/// The bytes of a consent fetch for the view of `case`'s consent whose bundle hashes to `view`.
pub fn consent_fetch(case: &CaseId, view: &[u8; 32]) -> Vec<u8> {
    cbor::encode(&map([
        ("op", Value::Text("consent".into())),
        ("case", Value::Text(case.as_str().into())),
        ("view", Value::Bytes(view.to_vec())),
    ]))
}

/// The case and view digest a consent fetch asks for, or `None` when `bytes` are not one.
pub fn parse_consent_fetch(bytes: &[u8]) -> Option<(CaseId, [u8; 32])> {
    // Envelopes are arrays, the witness query has one entry and the records query two: a
    // three-entry map is the cheapest test to fail first.
    if bytes.first() != Some(&0xa3) {
        return None;
    }
    let v = cbor::decode(bytes, &Limits::default()).ok()?;
    let mut r = MapReader::new(v, "consent fetch").ok()?;
    if r.text("op").ok()? != "consent" {
        return None;
    }
    let case = r.text("case").ok()?.parse().ok()?;
    let view = r.byte_array::<32>("view").ok()?;
    r.finish().ok()?;
    Some((case, view))
}

/// The bytes of a handover fetch: the asker holds consent `consent` of `case`, which lets the
/// case move, and asks the sender of a new controller's consent for its own view of it
/// ([`crate::envelope::Inbound::HandoverNeeded`]).
pub fn handover_fetch(case: &CaseId, consent: &str) -> Vec<u8> {
    cbor::encode(&map([
        ("op", Value::Text("handover".into())),
        ("case", Value::Text(case.as_str().into())),
        ("consent", Value::Text(consent.into())),
    ]))
}

/// The case and consent id a handover fetch asks for, or `None` when `bytes` are not one.
pub fn parse_handover_fetch(bytes: &[u8]) -> Option<(CaseId, String)> {
    if bytes.first() != Some(&0xa3) {
        return None;
    }
    let v = cbor::decode(bytes, &Limits::default()).ok()?;
    let mut r = MapReader::new(v, "handover fetch").ok()?;
    if r.text("op").ok()? != "handover" {
        return None;
    }
    let case = r.text("case").ok()?.parse().ok()?;
    let consent = r.text("consent").ok()?;
    r.finish().ok()?;
    Some((case, consent))
}

/// One move of a case, as a handover answer and a link of a handover proof show it: the
/// consent view that let the case move, and the transfer notice (Form 7) its controller sent
/// the next controller, showing only whom it was addressed to ([`HandoverLink::notice_shown`]).
/// A consent names whom the person agreed may receive the case, not which of them it moved to
/// (the prefecture is often named too): the notice, signed by the same controller, says that.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoverLink {
    /// The consent view, signed by the controller the case moved from.
    pub consent: DocBundle,
    /// That controller's Form 7 for the case, only its `to` disclosed.
    pub notice: DocBundle,
}

impl HandoverLink {
    /// The link showing `notice`, the Form 7 a destination received, only as far as a move
    /// needs: its addressee. What else it says (the new address, the plan) stays withheld.
    pub fn new(consent: DocBundle, notice: &DocBundle) -> Self {
        HandoverLink {
            consent,
            notice: Self::notice_shown(notice),
        }
    }

    /// `notice` with only its `to` element disclosed (its type, author, case and the day it was
    /// signed are in the signed manifest).
    pub fn notice_shown(notice: &DocBundle) -> DocBundle {
        notice.redact(|element| element == "to")
    }

    /// The wire form: `[consent, notice]`, each the bundle's bytes.
    fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Bytes(self.consent.to_bytes()),
            Value::Bytes(self.notice.to_bytes()),
        ])
    }

    /// The link's wire form as bytes (a handover answer).
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    fn from_value(v: Value, limits: &Limits) -> Result<Self, ConsentFetchError> {
        let malformed = |m: &str| ConsentFetchError::MalformedProof(m.to_owned());
        let Value::Array(parts) = v else {
            return Err(malformed(
                "a link is not an array of a consent and a transfer notice",
            ));
        };
        let [Value::Bytes(consent), Value::Bytes(notice)] = <[Value; 2]>::try_from(parts)
            .map_err(|_| malformed("a link is not a consent and a transfer notice"))?
        else {
            return Err(malformed(
                "a link's consent or transfer notice is not a byte string",
            ));
        };
        Ok(HandoverLink {
            consent: DocBundle::from_bytes(&consent, limits)
                .map_err(ConsentFetchError::Malformed)?,
            notice: DocBundle::from_bytes(&notice, limits).map_err(ConsentFetchError::Malformed)?,
        })
    }

    /// Whether the notice verifies as a transfer notice of `case` signed by `from` and
    /// addressed to `to`.
    pub fn notice_moves(
        &self,
        chains: &dyn crate::cose::ChainVerifier,
        now: crate::Timestamp,
        limits: &Limits,
        case: &CaseId,
        from: &crate::OrgId,
        to: &crate::OrgId,
    ) -> bool {
        self.notice.verify(chains, now, limits).is_ok_and(|v| {
            v.manifest.doc_type == crate::DocType::TransferNotice
                && v.manifest.author == *from
                && v.manifest.subject == *case
                && v.disclosed.get("to").and_then(|t| t.as_str()) == Some(to.as_str())
        })
    }
}

/// Reads the answer to a handover fetch: a [`HandoverLink`], or `None` when the sender answered
/// nothing (it holds no such view or no transfer notice to it, or the asker is not among its
/// consent's recipients). What it shows is checked by the receiver ([`crate::envelope`], step 6).
pub fn handover_answer(bytes: &[u8], limits: &Limits) -> Result<HandoverLink, ConsentFetchError> {
    if bytes.is_empty() {
        return Err(ConsentFetchError::NotHeld);
    }
    if bytes == NOT_NOW {
        return Err(ConsentFetchError::NotNow);
    }
    HandoverLink::from_value(
        cbor::decode(bytes, limits)
            .map_err(|e| ConsentFetchError::MalformedProof(e.to_string()))?,
        limits,
    )
}

/// The most links a handover proof may have: moves of one case, one after the other.
pub const MAX_PROOF_LINKS: usize = 8;

/// The bytes of a proof fetch: the asker got a consent of `case` from a controller that is not
/// the case's opener, and asks the sender for the moves that made it a controller
/// ([`crate::envelope::Inbound::ProofNeeded`]).
pub fn proof_fetch(case: &CaseId, msg_id: &[u8; 16]) -> Vec<u8> {
    cbor::encode(&map([
        ("op", Value::Text("proof".into())),
        ("case", Value::Text(case.as_str().into())),
        ("msgId", Value::Bytes(msg_id.to_vec())),
    ]))
}

/// The case and envelope a proof fetch asks about, or `None` when `bytes` are not one.
pub fn parse_proof_fetch(bytes: &[u8]) -> Option<(CaseId, [u8; 16])> {
    if bytes.first() != Some(&0xa3) {
        return None;
    }
    let v = cbor::decode(bytes, &Limits::default()).ok()?;
    let mut r = MapReader::new(v, "proof fetch").ok()?;
    if r.text("op").ok()? != "proof" {
        return None;
    }
    let case = r.text("case").ok()?.parse().ok()?;
    let msg_id = r.byte_array::<16>("msgId").ok()?;
    r.finish().ok()?;
    Some((case, msg_id))
}

/// A handover proof as the answer to a proof fetch, and as kept: a CBOR array of
/// [`HandoverLink`]s, the opener's first.
pub fn encode_proof(links: &[HandoverLink]) -> Vec<u8> {
    cbor::encode(&Value::Array(
        links.iter().map(HandoverLink::to_value).collect(),
    ))
}

/// Reads a handover proof as [`encode_proof`] writes it. An empty answer is
/// [`ConsentFetchError::NotHeld`] (nothing shown, which counts against the new controller);
/// what the links show is checked by the receiver ([`crate::envelope`], step 6).
pub fn proof_answer(bytes: &[u8], limits: &Limits) -> Result<Vec<HandoverLink>, ConsentFetchError> {
    if bytes.is_empty() {
        return Err(ConsentFetchError::NotHeld);
    }
    if bytes == NOT_NOW {
        return Err(ConsentFetchError::NotNow);
    }
    let malformed = |m: &str| ConsentFetchError::MalformedProof(m.to_owned());
    let Value::Array(items) = cbor::decode(bytes, limits)
        .map_err(|e| ConsentFetchError::MalformedProof(e.to_string()))?
    else {
        return Err(malformed("not an array"));
    };
    if items.is_empty() || items.len() > MAX_PROOF_LINKS {
        return Err(malformed(&format!(
            "{} links, expected 1 to {MAX_PROOF_LINKS}",
            items.len()
        )));
    }
    items
        .into_iter()
        .map(|item| HandoverLink::from_value(item, limits))
        .collect()
}

/// The bytes of a chain fetch for the certificate chain whose leaf hashes to `kid`.
pub fn chain_fetch(kid: &[u8; 32]) -> Vec<u8> {
    cbor::encode(&map([
        ("op", Value::Text("chain".into())),
        ("kid", Value::Bytes(kid.to_vec())),
    ]))
}

/// The fingerprint a chain fetch asks for, or `None` when `bytes` are not one.
pub fn parse_chain_fetch(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.first() != Some(&0xa2) {
        return None;
    }
    let v = cbor::decode(bytes, &Limits::default()).ok()?;
    let mut r = MapReader::new(v, "chain fetch").ok()?;
    if r.text("op").ok()? != "chain" {
        return None;
    }
    let kid = r.byte_array::<32>("kid").ok()?;
    r.finish().ok()?;
    Some(kid)
}

/// A certificate chain (leaf first) as the answer to a chain fetch, and as kept by fingerprint.
pub fn encode_chain(chain: &[Vec<u8>]) -> Vec<u8> {
    cbor::encode(&Value::Array(
        chain.iter().cloned().map(Value::Bytes).collect(),
    ))
}

/// Why the answer to a chain fetch was not taken; like [`ConsentFetchError`], never a
/// rejection of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFetchError {
    /// The sender answered nothing: it does not know a chain with this fingerprint.
    #[error(
        "the sender holds no certificate chain with this fingerprint; it will retry the envelope"
    )]
    NotHeld,
    /// The answer is not a non-empty array of certificates.
    #[error("the certificate chain the sender answered is malformed ({0}); it was not stored")]
    Malformed(String),
    /// The leaf certificate does not hash to the fingerprint asked for.
    #[error("the sender answered a certificate chain whose leaf's SHA-256 is not the fingerprint asked for; it was not stored")]
    FingerprintMismatch,
}

impl ChainFetchError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ChainFetchError::NotHeld => "chain_not_held",
            ChainFetchError::Malformed(_) => "chain_malformed",
            ChainFetchError::FingerprintMismatch => "chain_fingerprint_mismatch",
        }
    }
}

/// Reads a chain as [`encode_chain`] writes it (an answer, or one kept by fingerprint) and
/// checks that its leaf hashes to `kid`.
pub fn chain_answer(
    kid: &[u8; 32],
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<Vec<u8>>, ChainFetchError> {
    if bytes.is_empty() {
        return Err(ChainFetchError::NotHeld);
    }
    let malformed = |m: &str| ChainFetchError::Malformed(m.into());
    let Value::Array(items) =
        cbor::decode(bytes, limits).map_err(|e| ChainFetchError::Malformed(e.to_string()))?
    else {
        return Err(malformed("not an array"));
    };
    let chain = items
        .into_iter()
        .map(|c| match c {
            Value::Bytes(b) => Ok(b),
            _ => Err(malformed("a certificate is not a byte string")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = chain.first().ok_or_else(|| malformed("empty"))?;
    if sha256(leaf) != *kid {
        return Err(ChainFetchError::FingerprintMismatch);
    }
    Ok(chain)
}

/// Why the answer to a consent fetch was not taken. Each has a stable [`ConsentFetchError::code`]
/// for logs and the audit trail; none is a rejection of the envelope (the sender retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentFetchError {
    /// The sender answered nothing: it holds no such view addressed to this gateway (or no
    /// longer, e.g. the case was purged).
    #[error("the sender holds no consent view with this digest for us; it will retry the envelope, and if this persists the sender's operator should check the case's consent")]
    NotHeld,
    /// The answer's bytes do not hash to the digest the envelope names.
    #[error("the sender answered a consent bundle whose SHA-256 is not the envelope's consentRef.view; it was not stored, and the sender will retry")]
    DigestMismatch,
    /// The answer hashes right but is not a bundle (a sender that referenced bad bytes).
    #[error("the consent bundle the sender answered is malformed ({0}); it was not stored")]
    Malformed(DocError),
    /// The sender could not answer now ([`NOT_NOW`]).
    #[error("the sender could not answer now; nothing is decided, and the sender will retry the envelope")]
    NotNow,
    /// A handover answer or proof that is not a [`HandoverLink`] or an array of 1 to
    /// [`MAX_PROOF_LINKS`] of them.
    #[error("the handover view or proof the sender answered is malformed ({0}); it was not taken, and the sender will retry")]
    MalformedProof(String),
}

impl ConsentFetchError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConsentFetchError::NotHeld => "consent_not_held",
            ConsentFetchError::DigestMismatch => "consent_digest_mismatch",
            ConsentFetchError::Malformed(_) => "consent_malformed",
            ConsentFetchError::MalformedProof(_) => "proof_malformed",
            ConsentFetchError::NotNow => "answer_not_now",
        }
    }
}

/// Checks the answer `bytes` to a fetch of `view`: non-empty, hashing to `view`, a bundle.
pub fn consent_answer(
    view: &[u8; 32],
    bytes: &[u8],
    limits: &Limits,
) -> Result<DocBundle, ConsentFetchError> {
    if bytes.is_empty() {
        return Err(ConsentFetchError::NotHeld);
    }
    if bytes == NOT_NOW {
        return Err(ConsentFetchError::NotNow);
    }
    if sha256(bytes) != *view {
        return Err(ConsentFetchError::DigestMismatch);
    }
    DocBundle::from_bytes(bytes, limits).map_err(ConsentFetchError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_fetch_round_trips_and_is_no_other_request() {
        let case: CaseId = "case-131059-2026-0007".parse().unwrap();
        let q = handover_fetch(&case, "consent-131059-2026-0007");
        assert_eq!(
            parse_handover_fetch(&q),
            Some((case.clone(), "consent-131059-2026-0007".to_owned()))
        );
        assert_eq!(parse_consent_fetch(&q), None);
        assert_eq!(parse_handover_fetch(&consent_fetch(&case, &[7; 32])), None);
        assert_eq!(parse_handover_fetch(&chain_fetch(&[7; 32])), None);
        assert_eq!(
            parse_handover_fetch(&crate::records::records_query(&case)),
            None
        );
        assert_eq!(parse_handover_fetch(&[]), None);
        assert_eq!(
            handover_answer(&[], &Limits::default()).unwrap_err().code(),
            "consent_not_held"
        );
        assert_eq!(
            handover_answer(&[0xa0], &Limits::default())
                .unwrap_err()
                .code(),
            "proof_malformed"
        );
    }

    #[test]
    fn a_proof_fetch_round_trips_and_its_answer_is_one_to_eight_links() {
        let case: CaseId = "case-131059-2026-0007".parse().unwrap();
        let q = proof_fetch(&case, &[5; 16]);
        assert_eq!(parse_proof_fetch(&q), Some((case.clone(), [5; 16])));
        assert_eq!(parse_chain_fetch(&q), None);
        assert_eq!(crate::records::parse_records_query(&q), None);
        assert_eq!(parse_proof_fetch(&chain_fetch(&[7; 32])), None);
        assert_eq!(
            parse_proof_fetch(&crate::records::records_query(&case)),
            None
        );
        assert_eq!(parse_proof_fetch(&handover_fetch(&case, "c")), None);
        let doc = crate::testkit::fixture("consent_v2_relocation.json");
        let consent = DocBundle::sign(
            &doc,
            &crate::testkit::signer("lg:131059"),
            crate::Timestamp(1_790_000_000),
            &mut crate::entropy::FixedEntropy::new(b"proof"),
        )
        .unwrap();
        // Any bundle stands for the notice here: what a link shows is the receiver's to check.
        let link = HandoverLink::new(consent.clone(), &consent);
        assert!(
            link.notice.items.is_empty(),
            "a consent has no `to` to show"
        );
        let limits = Limits::default();
        let two = proof_answer(&encode_proof(&[link.clone(), link.clone()]), &limits).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1], link);
        assert_eq!(handover_answer(&link.to_bytes(), &limits).unwrap(), link);
        // A consent view alone (before a handover answer carried the Form 7) shows no move.
        assert_eq!(
            handover_answer(&consent.to_bytes(), &limits)
                .unwrap_err()
                .code(),
            "proof_malformed"
        );
        assert_eq!(
            proof_answer(&[], &limits).unwrap_err().code(),
            "consent_not_held"
        );
        for not_now in [
            proof_answer(NOT_NOW, &limits).map(|_| ()),
            handover_answer(NOT_NOW, &limits).map(|_| ()),
            consent_answer(&[0; 32], NOT_NOW, &limits).map(|_| ()),
        ] {
            assert_eq!(not_now.unwrap_err().code(), "answer_not_now");
        }
        let nine = vec![link.clone(); MAX_PROOF_LINKS + 1];
        for bad in [
            encode_proof(&[]),
            encode_proof(&nine),
            vec![0xa0],
            cbor::encode(&Value::Array(vec![Value::Text("x".into())])),
            // A proof of consent views alone (before links carried the Form 7).
            cbor::encode(&Value::Array(vec![Value::Bytes(consent.to_bytes())])),
            cbor::encode(&Value::Array(vec![Value::Array(vec![Value::Bytes(
                consent.to_bytes(),
            )])])),
        ] {
            assert_eq!(
                proof_answer(&bad, &limits).unwrap_err().code(),
                "proof_malformed"
            );
        }
    }

    #[test]
    fn a_consent_fetch_round_trips_and_is_no_other_request() {
        let case: CaseId = "case-131059-2026-0007".parse().unwrap();
        let q = consent_fetch(&case, &[7; 32]);
        assert_eq!(parse_consent_fetch(&q), Some((case.clone(), [7; 32])));
        assert_eq!(
            parse_consent_fetch(&crate::records::records_query(&case)),
            None
        );
        assert_eq!(
            parse_consent_fetch(&crate::checkpoint::witness_query()),
            None
        );
        assert_eq!(crate::records::parse_records_query(&q), None);
        assert_eq!(parse_consent_fetch(&[]), None);
    }

    #[test]
    fn a_chain_fetch_round_trips_and_its_answer_must_name_the_leaf() {
        let kid = sha256(b"leaf");
        let q = chain_fetch(&kid);
        assert_eq!(parse_chain_fetch(&q), Some(kid));
        let case: CaseId = "case-131059-2026-0007".parse().unwrap();
        assert_eq!(crate::records::parse_records_query(&q), None);
        assert_eq!(parse_consent_fetch(&q), None);
        assert_eq!(
            parse_chain_fetch(&crate::records::records_query(&case)),
            None
        );
        let chain = vec![b"leaf".to_vec(), b"ca".to_vec()];
        let limits = Limits::default();
        assert_eq!(
            chain_answer(&kid, &encode_chain(&chain), &limits).unwrap(),
            chain
        );
        let other = vec![b"other".to_vec()];
        assert_eq!(
            chain_answer(&kid, &encode_chain(&other), &limits)
                .unwrap_err()
                .code(),
            "chain_fingerprint_mismatch"
        );
        assert_eq!(
            chain_answer(&kid, &[], &limits).unwrap_err().code(),
            "chain_not_held"
        );
        assert_eq!(
            chain_answer(&kid, &encode_chain(&[]), &limits)
                .unwrap_err()
                .code(),
            "chain_malformed"
        );
    }

    #[test]
    fn an_answer_must_hash_to_the_digest() {
        let bundle = DocBundle {
            doc: vec![1, 2, 3],
            items: Vec::new(),
        };
        let bytes = bundle.to_bytes();
        let view = sha256(&bytes);
        let limits = Limits::default();
        assert_eq!(consent_answer(&view, &bytes, &limits).unwrap(), bundle);
        let e = consent_answer(&[0; 32], &bytes, &limits).unwrap_err();
        assert_eq!(e.code(), "consent_digest_mismatch");
        assert_eq!(
            consent_answer(&view, &[], &limits).unwrap_err().code(),
            "consent_not_held"
        );
        let junk = [0xff, 0x00];
        assert_eq!(
            consent_answer(&sha256(&junk), &junk, &limits)
                .unwrap_err()
                .code(),
            "consent_malformed"
        );
    }
}
