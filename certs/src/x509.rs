//! Shared X.509 helpers (crate-private): parsing, names, serials, fingerprints, the org URI SAN,
//! Ed25519 keys and signatures, certificate kinds, and the [`Anchor`] that checks "issued by the
//! federation CA".

use ring::signature::{UnparsedPublicKey, ED25519};
pub(crate) use tsunagi_protocol::hex::encode as hex;
use tsunagi_protocol::org::{OrgId, ORG_URI_PREFIX};
use tsunagi_protocol::Date;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

use crate::error::{CertError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a federation certificate is for, judged by its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CertKind {
    /// A CA certificate (basicConstraints cA).
    #[serde(rename = "ca")]
    Ca,
    /// A gateway TLS certificate (EKU serverAuth and/or clientAuth).
    #[serde(rename = "tls")]
    Tls,
    /// A document-signing certificate (EKU id-kp-documentSigning, no TLS usage).
    #[serde(rename = "sign")]
    Signing,
    /// None of the above.
    #[serde(rename = "unknown")]
    Unknown,
}

impl CertKind {
    /// The short name: `ca`, `tls`, `sign` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Ca => "ca",
            CertKind::Tls => "tls",
            CertKind::Signing => "sign",
            CertKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// id-kp-documentSigning (RFC 9336), the extended key usage of signing certificates.
pub(crate) const DOCUMENT_SIGNING_EKU: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 36];
/// DER content octets of [`DOCUMENT_SIGNING_EKU`].
pub(crate) const DOCUMENT_SIGNING_OID_DER: &[u8] =
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24];
/// DER content octets of id-Ed25519 (1.3.101.112), both key and signature algorithm.
const ED25519_OID_DER: &[u8] = &[0x2b, 0x65, 0x70];

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>> {
    let malformed = |detail: String| CertError::Malformed {
        what: what.to_owned(),
        object: "certificate",
        detail,
    };
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    Ok(cert)
}

/// Parses one DER CRL, refusing trailing bytes.
pub(crate) fn parse_crl<'a>(der: &'a [u8], what: &str) -> Result<CertificateRevocationList<'a>> {
    let malformed = |detail: String| CertError::Malformed {
        what: what.to_owned(),
        object: "CRL",
        detail,
    };
    let (rest, crl) = x509_parser::parse_x509_crl(der).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} trailing bytes after the CRL",
            rest.len()
        )));
    }
    Ok(crl)
}

/// The first common name of `name`, or its full string form when it has none.
pub(crate) fn common_name(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| name.to_string())
}

/// Parses lowercase or uppercase hex, allowing `:` separators (as openssl prints serials).
pub(crate) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// A serial number's bytes without DER sign padding (leading zero bytes), so that serials read
/// from certificates, CRLs and `issued.json` compare equal.
pub(crate) fn normalize_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].to_vec()
}

/// The serial number as lowercase hex, without sign padding.
pub(crate) fn serial_hex(cert: &X509Certificate<'_>) -> String {
    hex(&normalize_serial(cert.raw_serial()))
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn fmt_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        Date::from_days(days),
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

/// The current time in Unix seconds.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Every `urn:tsunagi:org:` URI in the certificate's subject alternative names.
pub(crate) fn org_uris<'a>(cert: &'a X509Certificate<'_>, subject: &str) -> Result<Vec<&'a str>> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Malformed {
            what: format!("certificate {subject:?}"),
            object: "certificate",
            detail: format!("subject alternative names: {e}"),
        })?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) if uri.starts_with(ORG_URI_PREFIX) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The org named by exactly one `urn:tsunagi:org:` URI SAN.
pub(crate) fn org_of(cert: &X509Certificate<'_>) -> Result<OrgId> {
    let subject = common_name(cert.subject());
    let uris = org_uris(cert, &subject)?;
    match uris.as_slice() {
        [uri] => OrgId::from_uri(uri).map_err(|source| CertError::BadOrg {
            subject,
            uri: (*uri).to_owned(),
            source,
        }),
        other => Err(CertError::OrgSan {
            subject,
            found: other.len(),
        }),
    }
}

/// Whether an algorithm identifier is id-Ed25519 (which has no parameters).
fn is_ed25519(alg: &AlgorithmIdentifier<'_>) -> bool {
    alg.algorithm.as_bytes() == ED25519_OID_DER && alg.parameters.is_none()
}

/// The raw 32-byte Ed25519 public key of a certificate.
pub(crate) fn ed25519_public_key(cert: &X509Certificate<'_>) -> Result<[u8; 32]> {
    let spki = cert.public_key();
    let what = || {
        format!(
            "the public key of certificate {:?}",
            common_name(cert.subject())
        )
    };
    if !is_ed25519(&spki.algorithm) {
        return Err(CertError::Algorithm {
            what: what(),
            found: spki.algorithm.algorithm.to_id_string(),
        });
    }
    <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref()).map_err(|_| CertError::Malformed {
        what: what(),
        object: "certificate",
        detail: format!(
            "an Ed25519 key is 32 bytes, found {}",
            spki.subject_public_key.data.len()
        ),
    })
}

/// Verifies an Ed25519 signature made with `public_key` over `tbs`.
fn ed25519_verifies(
    public_key: &[u8; 32],
    alg: &AlgorithmIdentifier<'_>,
    tbs: &[u8],
    signature: &[u8],
) -> bool {
    is_ed25519(alg)
        && UnparsedPublicKey::new(&ED25519, public_key)
            .verify(tbs, signature)
            .is_ok()
}

/// Whether the extended key usage names id-kp-documentSigning.
fn has_document_signing_eku(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.extended_key_usage(), Ok(Some(eku))
        if eku.value.other.iter().any(|oid| oid.as_bytes() == DOCUMENT_SIGNING_OID_DER))
}

/// What kind of federation certificate this is, judged by its extensions.
pub(crate) fn classify(cert: &X509Certificate<'_>) -> CertKind {
    if cert.is_ca() {
        return CertKind::Ca;
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.server_auth || eku.value.client_auth => CertKind::Tls,
        Ok(Some(eku)) if !eku.value.any && has_document_signing_eku(cert) => CertKind::Signing,
        _ => CertKind::Unknown,
    }
}

/// Checks that a certificate may sign documents: a signing certificate (document-signing EKU,
/// no TLS or "any" EKU, not a CA) whose key usage allows digital signatures and nothing that
/// belongs to a CA.
pub(crate) fn check_signing_usage(cert: &X509Certificate<'_>) -> Result<()> {
    let subject = common_name(cert.subject());
    let refuse = |reason: &str| {
        Err(CertError::NotSigningCert {
            subject: subject.clone(),
            reason: reason.to_owned(),
        })
    };
    match classify(cert) {
        CertKind::Signing => {}
        CertKind::Tls => {
            return refuse("it is a TLS certificate (tls.pem); documents are signed with the signing certificate sign.pem")
        }
        CertKind::Ca => return refuse("it is a CA certificate"),
        CertKind::Unknown => {
            return refuse("it lacks the document-signing extended key usage (1.3.6.1.5.5.7.3.36)")
        }
    }
    match cert.key_usage() {
        Ok(Some(ku))
            if ku.value.digital_signature()
                && !ku.value.key_cert_sign()
                && !ku.value.crl_sign() =>
        {
            Ok(())
        }
        Ok(Some(_)) => refuse("its key usage is not digitalSignature only"),
        Ok(None) => refuse("it has no key usage extension allowing digitalSignature"),
        Err(e) => refuse(&format!("its key usage extension is malformed: {e}")),
    }
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn authority_key_id<'a>(
    exts: impl Iterator<Item = &'a x509_parser::extensions::X509Extension<'a>>,
) -> Option<Vec<u8>> {
    exts.into_iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// A parsed, self-consistent federation CA certificate: the trust anchor everything is checked
/// against.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    /// Its common name, for messages.
    pub name: String,
    /// Raw DER of its subject name (compared byte-for-byte with issuers).
    subject_raw: Vec<u8>,
    /// Its subject key identifier, if any.
    ski: Option<Vec<u8>>,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// Validity, Unix seconds.
    pub not_after: i64,
}

impl Anchor {
    /// Parses and checks a cross-certificate: a CA certificate for another federation's CA key,
    /// issued by `by` (see `crate::cross`).
    pub(crate) fn from_cross(der: &[u8], by: &Anchor, what: &str) -> Result<Self> {
        let cert = parse_cert(der, what)?;
        if !cert.is_ca() {
            return Err(CertError::Malformed {
                what: what.to_owned(),
                object: "cross-certificate",
                detail: "it is not a CA certificate (basicConstraints cA is not set)".to_owned(),
            });
        }
        by.check_issued(&cert)?;
        let public_key = ed25519_public_key(&cert)?;
        Ok(Anchor {
            der: der.to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            ski: subject_key_id(&cert),
            public_key,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            name: common_name(cert.subject()),
        })
    }

    /// Raw DER of the subject name.
    pub(crate) fn subject_raw(&self) -> &[u8] {
        &self.subject_raw
    }

    /// Parses and checks a CA certificate: a CA, Ed25519, correctly self-signed.
    pub(crate) fn from_der(der: &[u8], what: &str) -> Result<Self> {
        let cert = parse_cert(der, what)?;
        let name = common_name(cert.subject());
        if !cert.is_ca() {
            return Err(CertError::Malformed {
                what: what.to_owned(),
                object: "certificate",
                detail: format!(
                    "{name:?} is not a CA certificate (basicConstraints cA is not set)"
                ),
            });
        }
        let public_key = ed25519_public_key(&cert)?;
        if !ed25519_verifies(
            &public_key,
            &cert.signature_algorithm,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        ) {
            return Err(CertError::BadSignature {
                subject: name.clone(),
                ca: name,
            });
        }
        Ok(Anchor {
            der: der.to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            ski: subject_key_id(&cert),
            public_key,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            name,
        })
    }

    /// Checks that `cert` names this CA as issuer and carries a valid Ed25519 signature by its key.
    pub(crate) fn check_issued(&self, cert: &X509Certificate<'_>) -> Result<()> {
        let subject = common_name(cert.subject());
        let aki = authority_key_id(cert.iter_extensions());
        let same_key_id = match (&aki, &self.ski) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        };
        if cert.issuer().as_raw() != self.subject_raw.as_slice() || !same_key_id {
            return Err(CertError::ForeignIssuer {
                subject,
                issuer: common_name(cert.issuer()),
                ca: self.name.clone(),
            });
        }
        if !is_ed25519(&cert.signature_algorithm) {
            return Err(CertError::Algorithm {
                what: format!("the signature on certificate {subject:?}"),
                found: cert.signature_algorithm.algorithm.to_id_string(),
            });
        }
        if !ed25519_verifies(
            &self.public_key,
            &cert.signature_algorithm,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        ) {
            return Err(CertError::BadSignature {
                subject,
                ca: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Checks that a CRL was issued and signed by this CA.
    /// Whether `cert`'s authority key identifier names a key other than this CA's (a foreign
    /// CA that may carry the same name).
    pub(crate) fn names_other_key(&self, cert: &X509Certificate<'_>) -> bool {
        match (authority_key_id(cert.iter_extensions()), &self.ski) {
            (Some(aki), Some(ski)) => &aki != ski,
            _ => false,
        }
    }

    pub(crate) fn check_crl(&self, crl: &CertificateRevocationList<'_>, what: &str) -> Result<()> {
        let refuse = |reason: String| CertError::CrlNotTrusted {
            what: what.to_owned(),
            ca: self.name.clone(),
            reason,
        };
        if crl.issuer().as_raw() != self.subject_raw.as_slice() {
            return Err(refuse(format!(
                "it was issued by {:?}",
                common_name(crl.issuer())
            )));
        }
        if let (Some(aki), Some(ski)) = (authority_key_id(crl.extensions().iter()), &self.ski) {
            if &aki != ski {
                return Err(refuse(
                    "its authority key identifier names another key".to_owned(),
                ));
            }
        }
        if !is_ed25519(&crl.signature_algorithm) {
            return Err(refuse(format!(
                "it is signed with {}, not Ed25519",
                crl.signature_algorithm.algorithm.to_id_string()
            )));
        }
        if !ed25519_verifies(
            &self.public_key,
            &crl.signature_algorithm,
            crl.tbs_cert_list.as_ref(),
            &crl.signature_value.data,
        ) {
            return Err(refuse(
                "its signature does not verify under the CA key".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_serials_normalise() {
        assert_eq!(hex(&[0x00, 0xab, 0x1f]), "00ab1f");
        assert_eq!(parse_hex("00:AB:1f"), Some(vec![0x00, 0xab, 0x1f]));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), None);
        assert_eq!(normalize_serial(&[0, 0, 0x81]), vec![0x81]);
        assert_eq!(normalize_serial(&[0]), vec![0]);
        assert_eq!(normalize_serial(&[]), Vec::<u8>::new());
    }

    #[test]
    fn times_format_in_utc() {
        assert_eq!(fmt_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_unix(1_793_491_199), "2026-10-31 23:59:59 UTC");
    }
}
