//! Making certificate material with rcgen: fresh Ed25519 keys (PKCS#8 v1), random serial
//! numbers, and the time conversions rcgen needs. Shared by the CA, issuing and revocation.

use rcgen::{KeyPair, SerialNumber, PKCS_ED25519};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use tsunagi_protocol::Timestamp;

use crate::error::{CertError, Result};

/// Converts Unix seconds to an `OffsetDateTime`, for rcgen.
pub(crate) fn to_datetime(secs: i64, field: &'static str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| CertError::InvalidInput {
        field,
        value: secs.to_string(),
        reason: e.to_string(),
    })
}

/// Converts a protocol timestamp to signed Unix seconds.
pub(crate) fn unix(ts: Timestamp) -> i64 {
    i64::try_from(ts.0).unwrap_or(i64::MAX)
}

/// A fresh random serial number: 16 bytes from the system CSPRNG, positive, with its top byte
/// non-zero so it always encodes as exactly 16 bytes.
pub(crate) fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Generate {
            what: "serial number",
            detail: "the system random number generator failed".to_owned(),
        })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// DER prefix of an Ed25519 PKCS#8 v1 document (RFC 8410): version 0, id-Ed25519, and the
/// 32-byte seed as a nested OCTET STRING, which follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of the PKCS#8 v2 document ring generates: version 1, id-Ed25519, the seed, then
/// the public key.
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A fresh Ed25519 key whose PKCS#8 form is v1 (RFC 8410, seed only).
///
/// ring generates PKCS#8 v2 (with the public key), which OpenSSL 3.0 cannot read; v1 is read by
/// ring, rustls, rcgen and OpenSSL alike, so that is what goes into key files.
pub(crate) fn generate_ed25519_key() -> Result<KeyPair> {
    let fail = |detail: &str| CertError::Generate {
        what: "Ed25519 key",
        detail: detail.to_owned(),
    };
    let generated =
        KeyPair::generate_for(&PKCS_ED25519).map_err(|e| CertError::generate("Ed25519 key", e))?;
    let v2 = generated.serialized_der();
    let seed = v2
        .strip_prefix(&PKCS8_V2_PREFIX[..])
        .and_then(|rest| rest.get(..32))
        .ok_or_else(|| fail("ring produced an unexpected PKCS#8 layout"))?;
    let mut v1 = PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&v1.as_slice().into(), &PKCS_ED25519)
        .map_err(|e| CertError::generate("Ed25519 key", e))?;
    if key.public_key_raw() != generated.public_key_raw() {
        return Err(fail("the re-encoded key does not match the generated one"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pkcs8_v1_and_load_in_ring() {
        let key = generate_ed25519_key().unwrap();
        let der = key.serialized_der();
        assert_eq!(der.len(), 48);
        assert!(der.starts_with(&PKCS8_V1_PREFIX));
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).unwrap();
        use ring::signature::KeyPair as _;
        assert_eq!(pair.public_key().as_ref(), key.public_key_raw());
    }

    #[test]
    fn serials_are_16_positive_bytes() {
        for _ in 0..64 {
            let s = random_serial().unwrap().to_bytes();
            assert_eq!(s.len(), 16);
            assert!(s[0] & 0x80 == 0 && s[0] != 0);
        }
    }
}
