//! COSE_Sign1 (RFC 9052) signing and verification with Ed25519.
//!
//! Every signed structure in tsunagi — documents, envelopes, receipts, the directory — is a
//! tagged COSE_Sign1 (tag 18) with:
//!
//! * protected header: `alg` = EdDSA (-8), `kid` (label 4) = SHA-256 of the signer's leaf
//!   certificate, `typ` (label 16, RFC 9596) naming the structure, so an envelope can never be
//!   passed off as a document or a receipt;
//! * unprotected header: `x5chain` (label 33, RFC 9360): the signer's certificates, leaf first;
//! * an attached payload.
//!
//! The header structures are `coset`'s; the bytes are always produced by [`crate::cbor`]'s
//! deterministic encoder, and verification works on the bytes as received: the protected header
//! bytes and payload are taken from the input, never re-encoded. The signature is ring's Ed25519.
//!
//! Who may sign is the caller's policy, expressed through [`ChainVerifier`]: it checks the
//! `x5chain` against the federation CA and revocation list and says which org it belongs to.

use coset::{
    iana, AsCborValue, CoseSign1, Header, HeaderBuilder, Label, ProtectedHeader,
    RegisteredLabelWithPrivate,
};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cbor::{self, CborError, Limits, Value, TAG_COSE_SIGN1};
use crate::date::Timestamp;
pub(crate) use crate::hex::encode as hex_str;
use crate::org::OrgId;

/// Ed25519 signatures made through this module by this process ([`ed25519_operations`]).
static SIGNATURES: AtomicU64 = AtomicU64::new(0);
/// Ed25519 signature verifications made through this module by this process.
static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// How many Ed25519 signatures and verifications of COSE structures this process has made
/// since it started.
///
/// For measurement only (the benchmark reports them per envelope, so the count of signature
/// operations on a path is measured rather than read off the code); nothing decides on them.
/// Certificate-chain checks are not counted: they are the [`ChainVerifier`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ed25519Operations {
    /// Signatures made ([`Signer`]).
    pub signatures: u64,
    /// Signatures verified ([`Sign1::verify`]), failed ones included.
    pub verifications: u64,
}

/// The process-wide count of Ed25519 operations so far (see [`Ed25519Operations`]).
pub fn ed25519_operations() -> Ed25519Operations {
    Ed25519Operations {
        signatures: SIGNATURES.load(Ordering::Relaxed),
        verifications: VERIFICATIONS.load(Ordering::Relaxed),
    }
}

/// `typ` of an author-signed document.
pub const TYP_DOC: &str = "application/tsunagi-doc+cose";
/// `typ` of a gateway-signed envelope.
pub const TYP_ENVELOPE: &str = "application/tsunagi-envelope+cose";
/// `typ` of a receipt.
pub const TYP_RECEIPT: &str = "application/tsunagi-receipt+cose";
/// `typ` of the signed federation directory.
pub const TYP_DIRECTORY: &str = "application/tsunagi-directory+cose";
/// `typ` of a batch head: a gateway's one signature over the Merkle root of a batch of
/// envelopes or receipts (see [`crate::batch`]).
pub const TYP_BATCH: &str = "application/tsunagi-batch+cose";

const LABEL_TYP: i64 = 16;
const LABEL_X5CHAIN: i64 = 33;

/// What a verified signer certificate chain vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerIdentity {
    /// The org named by the leaf certificate's `urn:tsunagi:org:` URI SAN.
    pub org: OrgId,
    /// The leaf's raw Ed25519 public key (32 bytes).
    pub public_key: [u8; 32],
    /// SHA-256 of the leaf certificate's DER: the `kid` of what it signs.
    pub fingerprint: [u8; 32],
}

/// Why a signer certificate chain was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer certificate rejected: {0}")]
pub struct ChainError(pub String);

/// Verifies an `x5chain` (leaf first, DER) against the federation's trust anchors and
/// revocation list at `now`. Implemented by `tsunagi-certs`; tests may use a fixed table.
pub trait ChainVerifier {
    /// Checks the chain is valid at `now`, issued by a trusted CA, not revoked, and usable
    /// for document signing; returns the identity it vouches for.
    fn verify_signer(
        &self,
        x5chain: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<SignerIdentity, ChainError>;
}

/// A COSE_Sign1 parsing, signing or verification failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseError {
    /// The bytes are not strict deterministic CBOR.
    #[error("{what}: {source}")]
    Cbor {
        /// What was being read.
        what: &'static str,
        /// The codec error.
        source: CborError,
    },
    /// Not a tag-18 COSE_Sign1 structure, or malformed inside.
    #[error("{what}: not a well-formed COSE_Sign1: {detail}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The `typ` header names another structure.
    #[error("{what}: typ is {found:?}, expected {expected:?}")]
    WrongType {
        /// What was being read.
        what: &'static str,
        /// The expected typ.
        expected: &'static str,
        /// The typ found.
        found: String,
    },
    /// The signer's certificate chain was refused.
    #[error("{what}: {source}")]
    Chain {
        /// What was being verified.
        what: &'static str,
        /// Why the chain was refused.
        source: ChainError,
    },
    /// `kid` does not name the certificate in `x5chain`.
    #[error("{what}: kid does not match the signer certificate's fingerprint")]
    KidMismatch {
        /// What was being verified.
        what: &'static str,
    },
    /// The signature does not verify under the certificate's key.
    #[error("{what}: signature does not verify (signer {signer}); the bytes were altered or signed with another key")]
    BadSignature {
        /// What was being verified.
        what: &'static str,
        /// The org the certificate names.
        signer: OrgId,
    },
    /// The inclusion path does not lead from the body to the root its batch head signs.
    #[error("{what}: its inclusion path does not lead to the signed batch root; the {what} or its path was altered")]
    Inclusion {
        /// What was being verified.
        what: &'static str,
    },
    /// A signing key could not be loaded.
    #[error("signing key rejected: {0} (expected an Ed25519 key in PKCS#8)")]
    Key(String),
    /// The structure names its signer's chain by fingerprint (`kid`, no `x5chain`) and the
    /// verifier does not hold that chain: fetch it and verify again.
    #[error("{what}: names its signer's certificate chain by fingerprint only, and that chain is not held here")]
    ChainNotHeld {
        /// What was being verified.
        what: &'static str,
        /// The fingerprint (`kid`): SHA-256 of the leaf certificate.
        kid: [u8; 32],
    },
}

fn malformed(what: &'static str, detail: impl Into<String>) -> CoseError {
    CoseError::Malformed {
        what,
        detail: detail.into(),
    }
}

/// An Ed25519 signing key with the certificate chain that vouches for it.
pub struct Signer {
    key: Ed25519KeyPair,
    x5chain: Vec<Vec<u8>>,
    kid: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Signer")
            .field("kid", &hex_str(&self.kid))
            .finish_non_exhaustive()
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Signer {
    /// A signer from a PKCS#8 Ed25519 key and its chain (leaf first, DER).
    pub fn from_pkcs8(pkcs8: &[u8], x5chain: Vec<Vec<u8>>) -> Result<Self, CoseError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| CoseError::Key(e.to_string()))?;
        Self::with_key(key, x5chain)
    }

    /// A signer from a raw 32-byte Ed25519 seed (test vectors and tests only).
    pub fn from_seed(seed: &[u8; 32], x5chain: Vec<Vec<u8>>) -> Result<Self, CoseError> {
        let key =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| CoseError::Key(e.to_string()))?;
        Self::with_key(key, x5chain)
    }

    fn with_key(key: Ed25519KeyPair, x5chain: Vec<Vec<u8>>) -> Result<Self, CoseError> {
        let leaf = x5chain
            .first()
            .ok_or_else(|| CoseError::Key("no certificate for the key".into()))?;
        let kid = sha256(leaf);
        Ok(Self { key, x5chain, kid })
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// The `kid`: SHA-256 of the leaf certificate.
    pub fn kid(&self) -> [u8; 32] {
        self.kid
    }

    /// The certificate chain, leaf first.
    pub fn x5chain(&self) -> &[Vec<u8>] {
        &self.x5chain
    }

    /// Signs `payload` as a tagged COSE_Sign1 of type `typ`, returning its bytes.
    pub fn sign(&self, typ: &str, payload: Vec<u8>) -> Vec<u8> {
        self.sign_inner(typ, payload, true)
    }

    /// As [`Signer::sign`] without the `x5chain`: the unprotected header is empty and the chain
    /// is named by its fingerprint only (the `kid`, which the signature covers). A verifier
    /// must hold the chain ([`Sign1::x5chain`] is then empty after [`Sign1::parse`]).
    pub fn sign_by_kid(&self, typ: &str, payload: Vec<u8>) -> Vec<u8> {
        self.sign_inner(typ, payload, false)
    }

    fn sign_inner(&self, typ: &str, payload: Vec<u8>, with_chain: bool) -> Vec<u8> {
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .key_id(self.kid.to_vec())
            .value(LABEL_TYP, Value::Text(typ.to_owned()))
            .build();
        let protected_bytes = header_bytes(protected.clone());
        let x5chain = match self.x5chain.as_slice() {
            [one] => Value::Bytes(one.clone()),
            many => Value::Array(many.iter().cloned().map(Value::Bytes).collect()),
        };
        let tbs = sig_structure(&protected_bytes, &payload);
        let signature = self.key.sign(&tbs).as_ref().to_vec();
        SIGNATURES.fetch_add(1, Ordering::Relaxed);
        let sign1 = CoseSign1 {
            protected: ProtectedHeader {
                original_data: Some(protected_bytes),
                header: protected,
            },
            unprotected: if with_chain {
                HeaderBuilder::new().value(LABEL_X5CHAIN, x5chain).build()
            } else {
                HeaderBuilder::new().build()
            },
            payload: Some(payload),
            signature,
        };
        let v = sign1
            .to_cbor_value()
            .expect("a COSE_Sign1 built from bytes and a text typ always converts");
        cbor::encode(&Value::Tag(TAG_COSE_SIGN1, Box::new(v)))
    }
}

/// The deterministic encoding of a header map.
fn header_bytes(h: Header) -> Vec<u8> {
    cbor::encode(&h.to_cbor_value().expect("headers we build always convert"))
}

/// `Sig_structure` for COSE_Sign1 with empty external AAD (RFC 9052 §4.4).
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    cbor::encode(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// A parsed, not yet verified, COSE_Sign1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sign1 {
    /// The protected header bytes exactly as received.
    pub protected: Vec<u8>,
    /// `kid`.
    pub kid: Vec<u8>,
    /// `typ`.
    pub typ: String,
    /// `x5chain`, leaf first; empty when the chain is named by its fingerprint (`kid`) only
    /// ([`Signer::sign_by_kid`]).
    pub x5chain: Vec<Vec<u8>>,
    /// The payload bytes exactly as received.
    pub payload: Vec<u8>,
    /// The Ed25519 signature.
    pub signature: Vec<u8>,
}

impl Sign1 {
    /// The bytes of this COSE_Sign1 with `x5chain` in its unprotected header (none when empty):
    /// the protected header, payload and signature are kept as they are, so the signature still
    /// holds. With the chain it was signed with, these are the bytes as signed (the encoding is
    /// deterministic).
    pub fn to_bytes_with_chain(&self, x5chain: &[Vec<u8>]) -> Vec<u8> {
        let key = Value::Integer(LABEL_X5CHAIN.into());
        let unprotected = match x5chain {
            [] => Vec::new(),
            [one] => vec![(key, Value::Bytes(one.clone()))],
            many => vec![(
                key,
                Value::Array(many.iter().cloned().map(Value::Bytes).collect()),
            )],
        };
        cbor::encode(&Value::Tag(
            TAG_COSE_SIGN1,
            Box::new(Value::Array(vec![
                Value::Bytes(self.protected.clone()),
                Value::Map(unprotected),
                Value::Bytes(self.payload.clone()),
                Value::Bytes(self.signature.clone()),
            ])),
        ))
    }

    /// Parses `bytes` strictly: deterministic CBOR, tag 18, EdDSA, exactly the header
    /// parameters we emit, an attached payload.
    pub fn parse(bytes: &[u8], what: &'static str, limits: &Limits) -> Result<Self, CoseError> {
        let v = cbor::decode(bytes, limits).map_err(|source| CoseError::Cbor { what, source })?;
        Self::from_value(v, what, limits)
    }

    /// As [`Sign1::parse`], from an already strictly decoded value.
    pub fn from_value(v: Value, what: &'static str, limits: &Limits) -> Result<Self, CoseError> {
        let Value::Tag(TAG_COSE_SIGN1, inner) = v else {
            return Err(malformed(what, "expected tag 18 (COSE_Sign1)"));
        };
        let s = CoseSign1::from_cbor_value(*inner).map_err(|e| malformed(what, e.to_string()))?;
        let protected = s
            .protected
            .original_data
            .clone()
            .ok_or_else(|| malformed(what, "empty protected header"))?;
        // coset read the protected header leniently; hold it to our codec as well.
        cbor::decode(&protected, limits).map_err(|source| CoseError::Cbor { what, source })?;
        let h = &s.protected.header;
        if h.alg != Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA)) {
            return Err(malformed(what, "alg must be EdDSA (-8)"));
        }
        if !h.crit.is_empty()
            || h.content_type.is_some()
            || !h.iv.is_empty()
            || !h.partial_iv.is_empty()
            || !h.counter_signatures.is_empty()
            || h.rest.len() != 1
        {
            return Err(malformed(what, "unexpected protected header parameter"));
        }
        let typ = match &h.rest[0] {
            (Label::Int(LABEL_TYP), Value::Text(t)) => t.clone(),
            _ => {
                return Err(malformed(
                    what,
                    "typ (label 16) must be the only extra protected parameter",
                ))
            }
        };
        if h.key_id.is_empty() {
            return Err(malformed(what, "missing kid"));
        }
        let u = &s.unprotected;
        if u.alg.is_some()
            || !u.crit.is_empty()
            || u.content_type.is_some()
            || !u.key_id.is_empty()
            || !u.iv.is_empty()
            || !u.partial_iv.is_empty()
            || !u.counter_signatures.is_empty()
            || u.rest.len() > 1
        {
            return Err(malformed(
                what,
                "the unprotected header must hold x5chain only",
            ));
        }
        let x5chain = match u.rest.first() {
            // The chain named by its fingerprint (`kid`) only: the verifier must hold it.
            None => Vec::new(),
            Some((Label::Int(LABEL_X5CHAIN), Value::Bytes(b))) => vec![b.clone()],
            Some((Label::Int(LABEL_X5CHAIN), Value::Array(a))) if a.len() >= 2 => a
                .iter()
                .map(|c| match c {
                    Value::Bytes(b) => Ok(b.clone()),
                    _ => Err(malformed(what, "x5chain entries must be byte strings")),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(malformed(
                    what,
                    "x5chain (label 33) is missing or malformed",
                ))
            }
        };
        let payload = s
            .payload
            .clone()
            .ok_or_else(|| malformed(what, "detached payloads are not used"))?;
        if s.signature.len() != 64 {
            return Err(malformed(what, "an Ed25519 signature is 64 bytes"));
        }
        Ok(Self {
            protected,
            kid: h.key_id.clone(),
            typ,
            x5chain,
            payload,
            signature: s.signature,
        })
    }

    /// Verifies the structure is of type `typ`, the chain is trusted at `now`, `kid` names the
    /// leaf and the signature holds over the bytes as received. Returns the signer.
    pub fn verify(
        &self,
        typ: &'static str,
        what: &'static str,
        chains: &dyn ChainVerifier,
        now: Timestamp,
    ) -> Result<SignerIdentity, CoseError> {
        let signer = self.verify_chain(typ, what, chains, now)?;
        let tbs = sig_structure(&self.protected, &self.payload);
        VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
        UnparsedPublicKey::new(&ED25519, &signer.public_key)
            .verify(&tbs, &self.signature)
            .map_err(|_| CoseError::BadSignature {
                what,
                signer: signer.org.clone(),
            })?;
        Ok(signer)
    }

    /// [`Sign1::verify`] without the signature: `typ`, the chain at `now` and `kid`. Only for
    /// bytes whose signature was verified before (see [`crate::batch::HeadCache`]).
    pub fn verify_chain(
        &self,
        typ: &'static str,
        what: &'static str,
        chains: &dyn ChainVerifier,
        now: Timestamp,
    ) -> Result<SignerIdentity, CoseError> {
        if self.typ != typ {
            return Err(CoseError::WrongType {
                what,
                expected: typ,
                found: self.typ.clone(),
            });
        }
        let signer = chains
            .verify_signer(&self.x5chain, now)
            .map_err(|source| CoseError::Chain { what, source })?;
        if self.kid != signer.fingerprint {
            return Err(CoseError::KidMismatch { what });
        }
        Ok(signer)
    }
}

/// A [`ChainVerifier`] over a fixed table of "certificates" (any bytes) → identities.
/// For tests, fuzzing and test vectors; gateways use `tsunagi-certs`.
#[derive(Debug, Default, Clone)]
pub struct StaticChains {
    entries: Vec<(Vec<u8>, SignerIdentity)>,
}

impl StaticChains {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `cert` as the leaf for `org` with `public_key`.
    pub fn trust(&mut self, cert: Vec<u8>, org: OrgId, public_key: [u8; 32]) {
        let fingerprint = sha256(&cert);
        self.entries.push((
            cert,
            SignerIdentity {
                org,
                public_key,
                fingerprint,
            },
        ));
    }
}

impl ChainVerifier for StaticChains {
    fn verify_signer(
        &self,
        x5chain: &[Vec<u8>],
        _now: Timestamp,
    ) -> Result<SignerIdentity, ChainError> {
        let leaf = x5chain
            .first()
            .ok_or_else(|| ChainError("empty x5chain".into()))?;
        self.entries
            .iter()
            .find(|(c, _)| c == leaf)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| ChainError("certificate not issued by a trusted CA".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_taken_out_and_put_back_gives_the_signed_bytes() {
        let signer = Signer::from_seed(&[5; 32], vec![b"leaf".to_vec(), b"ca".to_vec()]).unwrap();
        let signed = signer.sign(TYP_DOC, b"payload".to_vec());
        let parsed = Sign1::parse(&signed, "document", &Limits::default()).unwrap();
        let bare = parsed.to_bytes_with_chain(&[]);
        assert!(bare.len() < signed.len());
        let again = Sign1::parse(&bare, "document", &Limits::default()).unwrap();
        assert!(again.x5chain.is_empty());
        assert_eq!(again.to_bytes_with_chain(&parsed.x5chain), signed);
        let one = Signer::from_seed(&[6; 32], vec![b"leaf".to_vec()]).unwrap();
        let signed = one.sign(TYP_DOC, b"p".to_vec());
        let parsed = Sign1::parse(&signed, "document", &Limits::default()).unwrap();
        assert_eq!(parsed.to_bytes_with_chain(&parsed.x5chain), signed);
    }

    fn fixture() -> (Signer, StaticChains) {
        let cert = b"test certificate for mi:1310000017".to_vec();
        let signer = Signer::from_seed(&[7u8; 32], vec![cert.clone()]).unwrap();
        let mut chains = StaticChains::new();
        chains.trust(cert, "mi:1310000017".parse().unwrap(), signer.public_key());
        (signer, chains)
    }

    #[test]
    fn sign_then_verify() {
        let (signer, chains) = fixture();
        let bytes = signer.sign(TYP_DOC, b"payload".to_vec());
        let s = Sign1::parse(&bytes, "document", &Limits::default()).unwrap();
        assert_eq!(s.payload, b"payload");
        let id = s
            .verify(TYP_DOC, "document", &chains, Timestamp(0))
            .unwrap();
        assert_eq!(id.org.as_str(), "mi:1310000017");
        // The bytes are deterministic: re-encoding the parsed value gives the same bytes.
        let v = cbor::decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(cbor::encode(&v), bytes);
    }

    #[test]
    fn signatures_and_verifications_are_counted() {
        let (signer, chains) = fixture();
        let before = ed25519_operations();
        let bytes = signer.sign(TYP_DOC, b"counted".to_vec());
        let s = Sign1::parse(&bytes, "document", &Limits::default()).unwrap();
        s.verify(TYP_DOC, "document", &chains, Timestamp(0))
            .unwrap();
        let after = ed25519_operations();
        // Tests run in parallel threads of one process: others may count too, never fewer.
        assert!(after.signatures > before.signatures, "{before:?} {after:?}");
        assert!(
            after.verifications > before.verifications,
            "{before:?} {after:?}"
        );
    }

    #[test]
    fn typ_confusion_is_refused() {
        let (signer, chains) = fixture();
        let bytes = signer.sign(TYP_RECEIPT, b"x".to_vec());
        let s = Sign1::parse(&bytes, "envelope", &Limits::default()).unwrap();
        let e = s
            .verify(TYP_ENVELOPE, "envelope", &chains, Timestamp(0))
            .unwrap_err();
        assert!(matches!(e, CoseError::WrongType { .. }), "{e}");
    }

    #[test]
    fn every_flipped_byte_fails() {
        let (signer, chains) = fixture();
        let bytes = signer.sign(TYP_DOC, b"payload".to_vec());
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let ok = Sign1::parse(&b, "document", &Limits::default())
                    .and_then(|s| s.verify(TYP_DOC, "document", &chains, Timestamp(0)));
                assert!(
                    ok.is_err(),
                    "flipping bit {bit:#x} of byte {i} was not detected"
                );
            }
        }
    }

    #[test]
    fn unknown_signer_is_refused() {
        let (_, chains) = fixture();
        let other = Signer::from_seed(&[8u8; 32], vec![b"other".to_vec()]).unwrap();
        let bytes = other.sign(TYP_DOC, b"p".to_vec());
        let s = Sign1::parse(&bytes, "document", &Limits::default()).unwrap();
        let e = s
            .verify(TYP_DOC, "document", &chains, Timestamp(0))
            .unwrap_err();
        assert!(e.to_string().contains("not issued by a trusted CA"), "{e}");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(Signer::from_pkcs8(b"not a key", vec![b"c".to_vec()]).is_err());
        let e = Signer::from_seed(&[1u8; 32], vec![]).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
