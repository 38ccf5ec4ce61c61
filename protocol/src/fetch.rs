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
//! [`ConsentRef`]: crate::envelope::ConsentRef
//! [`ConsentRef::view`]: crate::envelope::ConsentRef::view

use crate::cbor::{self, map, Limits, MapReader, Value};
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
}

impl ConsentFetchError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConsentFetchError::NotHeld => "consent_not_held",
            ConsentFetchError::DigestMismatch => "consent_digest_mismatch",
            ConsentFetchError::Malformed(_) => "consent_malformed",
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
    if sha256(bytes) != *view {
        return Err(ConsentFetchError::DigestMismatch);
    }
    DocBundle::from_bytes(bytes, limits).map_err(ConsentFetchError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
