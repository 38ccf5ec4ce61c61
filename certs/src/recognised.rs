//! Another prefecture's CA as this gateway recognises it: a cross-certificate our CA issued
//! ([`Recognised`]), parsed and checked, and the rule that a recognised CA vouches only for its
//! own prefecture ([`Recognised::check_org`], [`check_peer_org`]). Issuing cross-certificates is
//! [`crate::cross`]; this module is what the path validator ([`crate::verify`]) needs of them.

use tsunagi_protocol::org::OrgId;

use crate::error::{CertError, Result};
use crate::x509::{self, Anchor};

/// Another prefecture's CA, recognised through a cross-certificate issued by our CA.
#[derive(Debug, Clone)]
pub struct Recognised {
    pub(crate) cross: Anchor,
    /// The prefecture the cross-certificate names (`lg:PP000C`).
    pub prefecture: OrgId,
    pub(crate) raw_serial: Vec<u8>,
}

impl Recognised {
    /// Checks a cross-certificate (DER): a CA certificate issued by `ours`, naming a prefecture.
    pub(crate) fn from_der(der: &[u8], ours: &Anchor, what: &str) -> Result<Recognised> {
        let cross = Anchor::from_cross(der, ours, what)?;
        if cross.subject_raw() == ours.subject_raw() {
            return Err(same_name(&cross.name));
        }
        let cert = x509::parse_cert(der, what)?;
        let prefecture = x509::org_of(&cert)?;
        if !prefecture.is_prefecture() {
            return Err(CertError::InvalidInput {
                field: "cross-certificate org",
                value: prefecture.to_string(),
                reason: "a cross-certificate must name a prefecture (lg:PP000C)".to_owned(),
            });
        }
        Ok(Recognised {
            raw_serial: cert.raw_serial().to_vec(),
            cross,
            prefecture,
        })
    }

    /// The recognised CA's common name.
    pub fn name(&self) -> &str {
        &self.cross.name
    }

    /// The cross-certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.cross.der
    }

    /// The recognised CA's Ed25519 public key.
    pub(crate) fn public_key(&self) -> [u8; 32] {
        self.cross.public_key
    }

    /// Whether the recognised CA may vouch for `org`: same prefecture code, never `ot:`.
    pub fn check_org(&self, org: &OrgId) -> Result<()> {
        if org.prefecture_code() == self.prefecture.prefecture_code() {
            return Ok(());
        }
        Err(CertError::OutsidePrefecture {
            org: org.clone(),
            ca: self.cross.name.clone(),
            prefecture: self.prefecture.clone(),
        })
    }

    /// Whether the cross-certificate is within its validity at `now` (Unix seconds).
    pub(crate) fn valid_at(&self, now: i64) -> Result<()> {
        if now < self.cross.not_before || now > self.cross.not_after {
            return Err(CertError::CaNotValid {
                ca: format!("{} (cross-certificate)", self.cross.name),
                now: x509::fmt_unix(now),
                not_before: x509::fmt_unix(self.cross.not_before),
                not_after: x509::fmt_unix(self.cross.not_after),
            });
        }
        Ok(())
    }

    /// Whether the cross-certificate's raw serial matches.
    pub(crate) fn serial(&self) -> &[u8] {
        &self.raw_serial
    }

    /// Checks that a CRL (DER) is issued and signed by the recognised CA.
    pub(crate) fn check_crl(&self, der: &[u8], what: &str) -> Result<()> {
        let parsed = x509::parse_crl(der, what)?;
        self.cross.check_crl(&parsed, what)
    }
}

/// For a TLS peer certificate (DER) that the path validator accepted with `crosses`
/// (cross-certificates, DER) as intermediates: when it was issued by a recognised CA, whether
/// that CA may vouch for the org it names ([`Recognised::check_org`]).
pub fn check_peer_org(leaf_der: &[u8], crosses: &[impl AsRef<[u8]>]) -> Result<()> {
    let leaf = x509::parse_cert(leaf_der, "the peer certificate")?;
    for cross_der in crosses {
        let cross = x509::parse_cert(cross_der.as_ref(), "a cross-certificate")?;
        if cross.subject().as_raw() == leaf.issuer().as_raw() {
            let prefecture = x509::org_of(&cross)?;
            let org = x509::org_of(&leaf)?;
            if org.prefecture_code() != prefecture.prefecture_code() {
                return Err(CertError::OutsidePrefecture {
                    org,
                    ca: x509::common_name(cross.subject()),
                    prefecture,
                });
            }
        }
    }
    Ok(())
}

/// Two CAs with one name cannot be told apart by the issuer name in a certificate.
pub(crate) fn same_name(name: &str) -> CertError {
    CertError::InvalidInput {
        field: "CA certificate",
        value: name.to_owned(),
        reason: "the other prefecture's CA has the same name as this CA: give each prefecture's CA its own name (`tsunagi certs init-ca --name`)".to_owned(),
    }
}
