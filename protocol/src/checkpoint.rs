//! Signed audit checkpoints: a gateway's statement "my audit trail has `seq + 1` records and the
//! last one hashes to `hash`", and how peers keep them as witnesses.
//!
//! A gateway's audit trail is a hash chain in its own store. Whoever controls that store can
//! delete the newest records together with their checkpoints, and the shortened chain still
//! verifies on its own. So the head of the chain is witnessed outside the store, as Certificate
//! Transparency has logs' signed tree heads gossiped to others (RFC 9162): every envelope and
//! receipt carries the sender's latest [`Checkpoint`], and each gateway keeps the newest one it
//! has seen from every peer ([`Witnessed::newer_than`] decides). Asked later, the peers hand the
//! gateway back its own signed statements; a local trail shorter than a witnessed checkpoint, or
//! one whose record at that position hashes differently, has been truncated or rewritten.
//!
//! A checkpoint is a COSE_Sign1 of type [`TYP_CHECKPOINT`] by the gateway's document-signing
//! key over the deterministic CBOR map `{org, seq, hash, time}` (see `wire.cddl`). Being
//! self-authenticating, it can be handed around by anyone.
//!
//! # On the wire and at rest
//! The gateway keeps and signs its checkpoints with its certificate chain in the unprotected
//! header, and a kept witness is stored the same way: it is read on its own, years later, far
//! from any connection. On an envelope or a receipt it travels [`without_chain`], naming the
//! chain by fingerprint (`kid`) only, as the batch head beside it does with the same chain; the
//! receiving gateway, which has just verified that head and so holds the chain, puts it back
//! ([`with_chain`]) before verifying and keeping the checkpoint. The signature covers the `kid`
//! and not the unprotected header, so both forms carry the same signature.

use crate::batch::KnownChains;
use crate::cbor::{self, map, uint, Limits, MapReader, Value};
use crate::cose::{ChainVerifier, CoseError, Sign1, Signer};
use crate::date::Timestamp;
use crate::org::OrgId;

/// `typ` of a signed audit checkpoint.
pub const TYP_CHECKPOINT: &str = "application/tsunagi-audit-checkpoint+cose";

/// The bytes of a witness query (`{"op": "witness"}`, deterministic CBOR): sent on a stream in
/// place of an envelope, it asks the peer for the newest checkpoint of the asking gateway it
/// keeps. The asker is known from its TLS certificate, so a gateway can only ask for its own.
pub fn witness_query() -> Vec<u8> {
    cbor::encode(&map([("op", Value::Text("witness".into()))]))
}

/// What a checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The gateway whose trail it is.
    pub org: OrgId,
    /// The sequence number of the last record covered (the trail has `seq + 1` records).
    pub seq: u64,
    /// SHA-256 of that record's stored bytes.
    pub hash: [u8; 32],
    /// When it was signed.
    pub time: Timestamp,
}

/// Why a checkpoint was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a well-formed or verifiable signed checkpoint.
    #[error("audit checkpoint: {0}")]
    Invalid(#[from] CoseError),
    /// The payload is not a checkpoint map.
    #[error("audit checkpoint: {0}")]
    Malformed(#[from] cbor::CborError),
    /// Signed by another org than the one it names.
    #[error("audit checkpoint of {named} is signed by {signer}")]
    WrongSigner {
        /// The org the checkpoint names.
        named: OrgId,
        /// The org whose key signed it.
        signer: OrgId,
    },
}

impl Checkpoint {
    fn to_value(&self) -> Value {
        map([
            ("org", Value::Text(self.org.to_string())),
            ("seq", uint(self.seq)),
            ("hash", Value::Bytes(self.hash.to_vec())),
            ("time", uint(self.time.0)),
        ])
    }

    /// Signs the checkpoint with the gateway's document-signing key.
    pub fn sign(&self, signer: &Signer) -> Vec<u8> {
        signer.sign(TYP_CHECKPOINT, cbor::encode(&self.to_value()))
    }

    /// Reads a signed checkpoint without checking its signature (for diagnostics).
    pub fn parse_unverified(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let limits = Limits::default();
        let s = Sign1::parse(bytes, "audit checkpoint", &limits)?;
        Self::from_payload(&s.payload)
    }

    fn from_payload(payload: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let mut r = MapReader::new(
            cbor::decode(payload, &Limits::default())?,
            "audit checkpoint",
        )?;
        let c = Checkpoint {
            org: r.parsed("org")?,
            seq: r.u64("seq")?,
            hash: r.byte_array::<32>("hash")?,
            time: Timestamp(r.u64("time")?),
        };
        r.finish()?;
        Ok(c)
    }

    /// Verifies a signed checkpoint: its signature by a certificate of the org it names, valid
    /// when it was signed (so that years later, with that certificate expired, a genuine
    /// checkpoint still verifies).
    pub fn verify(bytes: &[u8], chains: &dyn ChainVerifier) -> Result<Checkpoint, CheckpointError> {
        let limits = Limits::default();
        let s = Sign1::parse(bytes, "audit checkpoint", &limits)?;
        let c = Self::from_payload(&s.payload)?;
        let signer = s.verify(TYP_CHECKPOINT, "audit checkpoint", chains, c.time)?;
        if signer.org != c.org {
            return Err(CheckpointError::WrongSigner {
                named: c.org,
                signer: signer.org,
            });
        }
        Ok(c)
    }
}

/// The signed checkpoint `bytes` without its certificate chain, naming it by fingerprint (`kid`)
/// only: how it travels on an envelope or a receipt (see the [module docs](self)). The signature
/// still holds. `None` when `bytes` are not a well-formed COSE_Sign1.
pub fn without_chain(bytes: &[u8]) -> Option<Vec<u8>> {
    let s = Sign1::parse(bytes, "audit checkpoint", &Limits::default()).ok()?;
    Some(s.to_bytes_with_chain(&[]))
}

/// The signed checkpoint `bytes` with its signer's chain in it: as they are when they carry it,
/// else with the chain `known` gives for their `kid` put back (the bytes as signed). Fails with
/// [`CoseError::ChainNotHeld`] when that chain is not known, or when `bytes` are malformed.
pub fn with_chain(bytes: &[u8], known: &KnownChains<'_>) -> Result<Vec<u8>, CheckpointError> {
    let s = Sign1::parse(bytes, "audit checkpoint", &Limits::default())?;
    if !s.x5chain.is_empty() {
        return Ok(bytes.to_vec());
    }
    let kid = <[u8; 32]>::try_from(s.kid.as_slice()).map_err(|_| CoseError::ChainNotHeld {
        what: "audit checkpoint",
        kid: [0; 32],
    })?;
    let chain = known(&kid).ok_or(CoseError::ChainNotHeld {
        what: "audit checkpoint",
        kid,
    })?;
    Ok(s.to_bytes_with_chain(&chain))
}

/// How a newly seen checkpoint of a peer relates to the one already kept for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Witnessed {
    /// Nothing was kept yet, or it covers more records: keep the new one.
    Newer,
    /// The same record position and hash (or an older position): keep what is kept.
    NotNewer,
    /// It covers fewer records than were already witnessed, although signed later: the peer's
    /// trail went backwards (truncated).
    WentBack,
    /// Same position, different hash: the peer's trail was rewritten.
    Forked,
}

impl Witnessed {
    /// Compares `new` with the checkpoint `kept` for the same org.
    pub fn newer_than(new: &Checkpoint, kept: Option<&Checkpoint>) -> Witnessed {
        match kept {
            None => Witnessed::Newer,
            Some(k) if new.seq > k.seq => Witnessed::Newer,
            Some(k) if new.seq == k.seq && new.hash != k.hash => Witnessed::Forked,
            Some(k) if new.seq < k.seq && new.time > k.time => Witnessed::WentBack,
            Some(_) => Witnessed::NotNewer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{chains, org, signer};

    fn cp(seq: u64, hash: u8, time: u64) -> Checkpoint {
        Checkpoint {
            org: org("lg:131059"),
            seq,
            hash: [hash; 32],
            time: Timestamp(time),
        }
    }

    #[test]
    fn the_witness_query_is_not_an_envelope() {
        // An envelope is a tagged COSE_Sign1 (0xd2); the query is a one-entry map.
        assert_eq!(witness_query()[0], 0xa1);
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_names_its_signer() {
        let c = cp(63, 7, 1_790_000_000);
        let bytes = c.sign(&signer("lg:131059"));
        assert_eq!(Checkpoint::verify(&bytes, &chains()).unwrap(), c);
        assert_eq!(Checkpoint::parse_unverified(&bytes).unwrap(), c);
        // Another gateway's key cannot speak for Bunkyo.
        let forged = c.sign(&signer("mi:1310000017"));
        let e = Checkpoint::verify(&forged, &chains()).unwrap_err();
        assert!(e.to_string().contains("signed by mi:1310000017"), "{e}");
        // A flipped byte fails.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(Checkpoint::verify(&bad, &chains()).is_err());
    }

    #[test]
    fn a_checkpoint_travels_without_its_chain_and_is_kept_with_it_put_back() {
        let c = cp(63, 7, 1_790_000_000);
        let bunkyo = signer("lg:131059");
        let signed = c.sign(&bunkyo);
        let slim = without_chain(&signed).unwrap();
        assert!(slim.len() + bunkyo.x5chain()[0].len() <= signed.len());
        // Without the chain nobody can verify it on its own…
        assert!(matches!(
            Checkpoint::verify(&slim, &chains()),
            Err(CheckpointError::Invalid(CoseError::Chain { .. }))
        ));
        // …a gateway holding the chain by its fingerprint puts it back: the bytes as signed.
        let known = |kid: &[u8; 32]| (*kid == bunkyo.kid()).then(|| bunkyo.x5chain().to_vec());
        let kept = with_chain(&slim, &known).unwrap();
        assert_eq!(kept, signed);
        assert_eq!(Checkpoint::verify(&kept, &chains()).unwrap(), c);
        // Bytes that carry their chain are kept as they are.
        assert_eq!(with_chain(&signed, &|_: &[u8; 32]| None).unwrap(), signed);
        // A chain not held is named by its fingerprint.
        let e = with_chain(&slim, &|_: &[u8; 32]| None).unwrap_err();
        assert!(
            matches!(e, CheckpointError::Invalid(CoseError::ChainNotHeld { kid, .. }) if kid == bunkyo.kid()),
            "{e}"
        );
        // Putting back another signer's chain does not make a forgery verify.
        let npo = signer("ot:npo-komorebi");
        let swapped = with_chain(&slim, &|_: &[u8; 32]| Some(npo.x5chain().to_vec())).unwrap();
        assert!(Checkpoint::verify(&swapped, &chains()).is_err());
        assert!(without_chain(b"not cose").is_none());
    }

    #[test]
    fn witnesses_keep_the_newest_and_notice_a_trail_that_went_back_or_forked() {
        let kept = cp(127, 1, 100);
        assert_eq!(Witnessed::newer_than(&kept, None), Witnessed::Newer);
        assert_eq!(
            Witnessed::newer_than(&cp(191, 2, 200), Some(&kept)),
            Witnessed::Newer
        );
        assert_eq!(
            Witnessed::newer_than(&cp(127, 1, 150), Some(&kept)),
            Witnessed::NotNewer
        );
        assert_eq!(
            Witnessed::newer_than(&cp(127, 9, 150), Some(&kept)),
            Witnessed::Forked
        );
        assert_eq!(
            Witnessed::newer_than(&cp(63, 3, 300), Some(&kept)),
            Witnessed::WentBack
        );
        // An old checkpoint arriving late (reordered) is not a regression.
        assert_eq!(
            Witnessed::newer_than(&cp(63, 3, 50), Some(&kept)),
            Witnessed::NotNewer
        );
    }
}
