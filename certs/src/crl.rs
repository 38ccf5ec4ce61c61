//! Certificate revocation lists: reading the federation CRL (`crl.pem`) into a
//! [`RevocationList`] ([`load_crl`]). Changing it is [`crate::revoke`]'s job.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{CertError, Result};
use crate::files;
use crate::x509::{self, Anchor};

/// How long a CRL stays current: its `nextUpdate` is this many days after it is signed.
/// Re-sign it before then with [`crate::FederationCa::refresh_crl`].
pub const CRL_VALIDITY_DAYS: u32 = 30;

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial number of the revoked certificate, big-endian, without sign padding.
    pub serial: Vec<u8>,
    /// When the CA revoked it, Unix seconds.
    pub revoked_at: i64,
}

/// A parsed certificate revocation list.
///
/// Parsing does not check who signed it: call [`RevocationList::verify_signed_by`] (or build a
/// [`crate::verify::FederationTrust`], which does) before relying on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    /// The CRL number (1 for a new CA; each change adds one).
    pub number: u64,
    /// When it was signed, Unix seconds.
    pub this_update: i64,
    /// When the next one is due, Unix seconds.
    pub next_update: Option<i64>,
    /// The revoked certificates.
    pub revoked: Vec<RevokedEntry>,
    der: Vec<u8>,
    label: String,
}

impl RevocationList {
    pub(crate) fn empty() -> Self {
        RevocationList {
            number: 0,
            this_update: 0,
            next_update: None,
            revoked: Vec::new(),
            der: Vec::new(),
            label: String::new(),
        }
    }

    pub(crate) fn parse(der: Vec<u8>, label: String) -> Result<Self> {
        let crl = x509::parse_crl(&der, &label)?;
        let digits = crl
            .crl_number()
            .ok_or_else(|| CertError::Malformed {
                what: label.clone(),
                object: "CRL",
                detail: "it has no CRL number extension".to_owned(),
            })?
            .to_u64_digits();
        let number = match digits.as_slice() {
            [] => 0,
            [n] => *n,
            _ => {
                return Err(CertError::Malformed {
                    what: label.clone(),
                    object: "CRL",
                    detail: "its CRL number does not fit in 64 bits".to_owned(),
                })
            }
        };
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| RevokedEntry {
                serial: x509::normalize_serial(r.raw_serial()),
                revoked_at: r.revocation_date.timestamp(),
            })
            .collect();
        let this_update = crl.last_update().timestamp();
        let next_update = crl.next_update().map(|t| t.timestamp());
        Ok(RevocationList {
            number,
            this_update,
            next_update,
            revoked,
            der,
            label,
        })
    }

    /// Parses a DER CRL.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        Self::parse(der.to_vec(), "the CRL".to_owned())
    }

    /// Parses the first `X509 CRL` block of PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let der =
            rustls_pki_types::CertificateRevocationListDer::from_pem_slice(pem).map_err(|e| {
                CertError::Pem {
                    path: "(PEM input)".into(),
                    label: "X509 CRL",
                    detail: e.to_string(),
                }
            })?;
        Self::from_der(&der)
    }

    /// The CRL as DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Checks that the CRL was issued and signed by the CA whose certificate is `ca_der`.
    pub fn verify_signed_by(&self, ca_der: &[u8]) -> Result<()> {
        let anchor = Anchor::from_der(ca_der, "the CA certificate")?;
        let crl = x509::parse_crl(&self.der, &self.label)?;
        anchor.check_crl(&crl, &self.label)
    }

    /// Whether a serial number (big-endian; sign padding is ignored) is listed.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        let serial = x509::normalize_serial(serial);
        self.revoked.iter().any(|r| r.serial == serial)
    }

    /// The revoked serial numbers as lowercase hex.
    pub fn serials_hex(&self) -> Vec<String> {
        self.revoked.iter().map(|r| x509::hex(&r.serial)).collect()
    }

    /// The revoked serial numbers, normalised, as a set.
    pub(crate) fn serial_set(&self) -> BTreeSet<Vec<u8>> {
        self.revoked.iter().map(|r| r.serial.clone()).collect()
    }
}

/// Reads and parses a PEM CRL file (does not check its signature; see
/// [`RevocationList::verify_signed_by`]).
pub fn load_crl(path: impl AsRef<Path>) -> Result<RevocationList> {
    let path = path.as_ref();
    let der = files::read_crl_pem(path)?;
    RevocationList::parse(der.to_vec(), path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_crls_are_errors() {
        assert!(matches!(
            RevocationList::from_der(b"junk").unwrap_err(),
            CertError::Malformed { .. }
        ));
        assert!(matches!(
            RevocationList::from_pem(b"junk").unwrap_err(),
            CertError::Pem { .. }
        ));
    }
}
