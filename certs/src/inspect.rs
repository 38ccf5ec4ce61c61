//! Reading a certificate for people: [`CertInfo`] (what `tsunagi certs show` prints) and
//! [`CertKind`].

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tsunagi_protocol::org::OrgId;
use tsunagi_protocol::Timestamp;
use x509_parser::extensions::GeneralName;

use crate::crl::RevocationList;
use crate::error::{CertError, Result};
use crate::files;
use crate::x509;

pub use crate::x509::CertKind;

/// The facts about one certificate that an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The org of its `urn:tsunagi:org:` URI SAN (`None` for the CA).
    pub org: Option<OrgId>,
    /// What it is for.
    pub kind: CertKind,
    /// Subject common name.
    pub subject: String,
    /// Issuer common name.
    pub issuer: String,
    /// DNS names and IP addresses among its subject alternative names.
    pub hosts: Vec<String>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint: String,
    /// Serial number, lowercase hex without sign padding.
    pub serial: String,
    /// Whether the CRL given lists it; `None` when no CRL was given.
    pub revoked: Option<bool>,
}

impl CertInfo {
    /// Reads a DER certificate. With a CRL, also says whether it is revoked (the CRL's own
    /// signature is the caller's business: see [`RevocationList::verify_signed_by`]).
    pub fn from_der(der: &[u8], crl: Option<&RevocationList>) -> Result<CertInfo> {
        Self::parse(der, "the certificate", crl)
    }

    /// Reads the first `CERTIFICATE` block of PEM text.
    pub fn from_pem(pem: &[u8], crl: Option<&RevocationList>) -> Result<CertInfo> {
        let der = CertificateDer::from_pem_slice(pem).map_err(|e| CertError::Pem {
            path: "(PEM input)".into(),
            label: "CERTIFICATE",
            detail: e.to_string(),
        })?;
        Self::from_der(&der, crl)
    }

    /// Reads the first certificate of a PEM file.
    pub fn from_pem_file(path: impl AsRef<Path>, crl: Option<&RevocationList>) -> Result<CertInfo> {
        let path = path.as_ref();
        let der = files::read_cert_pem(path)?;
        Self::parse(&der, &path.display().to_string(), crl)
    }

    fn parse(der: &[u8], what: &str, crl: Option<&RevocationList>) -> Result<CertInfo> {
        let cert = x509::parse_cert(der, what)?;
        let subject = x509::common_name(cert.subject());
        let uris = x509::org_uris(&cert, &subject)?;
        let org = if uris.is_empty() {
            None
        } else {
            Some(x509::org_of(&cert)?)
        };
        let hosts = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some((*name).to_owned()),
                    GeneralName::IPAddress(octets) => {
                        ip_from_octets(octets).map(|ip| ip.to_string())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(CertInfo {
            org,
            kind: x509::classify(&cert),
            issuer: x509::common_name(cert.issuer()),
            subject,
            hosts,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            fingerprint: x509::hex(&x509::sha256(der)),
            serial: x509::serial_hex(&cert),
            revoked: crl.map(|c| c.is_revoked(cert.raw_serial())),
        })
    }

    /// Whether `now` lies within the validity period.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        let now = i64::try_from(now.0).unwrap_or(i64::MAX);
        self.not_before <= now && now <= self.not_after
    }
}

fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => <[u8; 4]>::try_from(octets).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(octets).ok().map(IpAddr::from),
        _ => None,
    }
}

impl fmt::Display for CertInfo {
    /// A few aligned lines for terminals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let org = self
            .org
            .as_ref()
            .map_or_else(|| "-".to_owned(), OrgId::to_string);
        writeln!(f, "org:          {org}")?;
        writeln!(f, "kind:         {}", self.kind)?;
        writeln!(f, "subject:      {}", self.subject)?;
        writeln!(f, "issuer:       {}", self.issuer)?;
        if !self.hosts.is_empty() {
            writeln!(f, "hosts:        {}", self.hosts.join(", "))?;
        }
        writeln!(f, "not before:   {}", x509::fmt_unix(self.not_before))?;
        writeln!(f, "not after:    {}", x509::fmt_unix(self.not_after))?;
        writeln!(f, "serial:       {}", self.serial)?;
        write!(f, "sha-256:      {}", self.fingerprint)?;
        match self.revoked {
            Some(true) => write!(f, "\nrevoked:      yes"),
            Some(false) => write!(f, "\nrevoked:      no"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{FederationCa, CA_CERT_FILE};
    use crate::issue::{SIGN_CERT_FILE, TLS_CERT_FILE};
    use crate::test_support::{org, TempDir};

    #[test]
    fn show_reports_org_kind_and_revocation() {
        let tmp = TempDir::new("inspect");
        let ca = FederationCa::init(tmp.path().join("ca"), "Sample CA").unwrap();
        let out = tmp.path().join("creds");
        let issued = ca
            .issue(&org("mi:1310000017"), "hospital.example", &out, 30)
            .unwrap();

        let crl = ca.crl().unwrap();
        let info = CertInfo::from_pem_file(out.join(SIGN_CERT_FILE), Some(&crl)).unwrap();
        assert_eq!(info.org, Some(org("mi:1310000017")));
        assert_eq!(info.kind, CertKind::Signing);
        assert_eq!(info.subject, "mi:1310000017 document signing");
        assert_eq!(info.issuer, "Sample CA");
        assert_eq!(info.revoked, Some(false));
        assert_eq!(info.fingerprint, issued.sign.fingerprint);
        assert!(info.is_valid_at(Timestamp(x509::now_unix() as u64)));

        let crl = ca.revoke(out.join(SIGN_CERT_FILE)).unwrap();
        let info = CertInfo::from_pem_file(out.join(SIGN_CERT_FILE), Some(&crl)).unwrap();
        assert_eq!(info.revoked, Some(true));
        let text = info.to_string();
        assert!(text.contains("kind:         sign"), "{text}");
        assert!(text.contains("revoked:      yes"), "{text}");
        let tls = CertInfo::from_pem_file(out.join(TLS_CERT_FILE), Some(&crl)).unwrap();
        assert_eq!(tls.revoked, Some(false));

        let ca_info = CertInfo::from_pem(ca.cert_pem().as_bytes(), None).unwrap();
        assert_eq!(
            (ca_info.kind, &ca_info.org, ca_info.revoked),
            (CertKind::Ca, &None, None)
        );
        let copy = CertInfo::from_pem_file(out.join(CA_CERT_FILE), None).unwrap();
        assert_eq!(copy, ca_info);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            CertInfo::from_pem(b"nothing here", None).unwrap_err(),
            CertError::Pem { .. }
        ));
        assert!(matches!(
            CertInfo::from_der(b"\x30\x03\x02\x01\x01", None).unwrap_err(),
            CertError::Malformed { .. }
        ));
        let err = CertInfo::from_pem_file("/nonexistent/tsunagi/cert.pem", None).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/tsunagi/cert.pem"),
            "{err}"
        );
    }
}
