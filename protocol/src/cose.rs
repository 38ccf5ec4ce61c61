//! COSE_Sign1 signing and verification (being written).

use crate::date::Timestamp;
use crate::org::OrgId;

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
    fn verify_signer(&self, x5chain: &[Vec<u8>], now: Timestamp) -> Result<SignerIdentity, ChainError>;
}
