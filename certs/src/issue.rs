//! Issuing a gateway's credentials ([`FederationCa::issue`]); what was issued is recorded in
//! `issued.json` ([`crate::registry`]).
//!
//! A credentials directory holds:
//!
//! | file | content |
//! |---|---|
//! | `tls.pem` | Ed25519 TLS certificate: EKU serverAuth + clientAuth, SAN = the host (DNS name or IP address) and `urn:tsunagi:org:<org>` |
//! | `tls.key` | its PKCS#8 key, mode 0600 |
//! | `sign.pem` | Ed25519 document-signing certificate: key usage digitalSignature only, EKU id-kp-documentSigning (RFC 9336, 1.3.6.1.5.5.7.3.36), SAN = `urn:tsunagi:org:<org>` |
//! | `sign.key` | its PKCS#8 key, mode 0600 |
//! | `ca.pem` | a copy of the federation CA certificate |
//!
//! Both certificates have a fresh random 16-byte serial number, are backdated by
//! [`BACKDATE_SECS`] for clock skew, and carry the CA's key identifier.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType,
};
use tsunagi_protocol::org::OrgId;
use tsunagi_protocol::Timestamp;

use crate::ca::{FederationCa, BACKDATE_SECS, CA_CERT_FILE, ISSUED_FILE};
use crate::error::{CertError, Result};
use crate::files;
use crate::mint::{generate_ed25519_key, random_serial, to_datetime, unix};
use crate::registry::{IssuedRecord, IssuedRegistry};
use crate::x509::{self, CertKind, DOCUMENT_SIGNING_EKU};

/// File name of the TLS certificate in a credentials directory.
pub const TLS_CERT_FILE: &str = "tls.pem";
/// File name of the TLS private key.
pub const TLS_KEY_FILE: &str = "tls.key";
/// File name of the document-signing certificate.
pub const SIGN_CERT_FILE: &str = "sign.pem";
/// File name of the document-signing private key.
pub const SIGN_KEY_FILE: &str = "sign.key";

/// What [`FederationCa::issue`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    /// The credentials directory.
    pub dir: PathBuf,
    /// The org they were issued to.
    pub org: OrgId,
    /// The TLS certificate's record.
    pub tls: IssuedRecord,
    /// The signing certificate's record.
    pub sign: IssuedRecord,
}

/// The subject alternative name for a TLS host: an IP SAN for an address, a DNS SAN otherwise.
fn host_san(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = |reason: &str| CertError::InvalidInput {
        field: "host",
        value: host.to_owned(),
        reason: reason.to_owned(),
    };
    if host.is_empty() || host.len() > 253 {
        return Err(bad("a host name is 1 to 253 characters"));
    }
    for label in host.strip_suffix('.').unwrap_or(host).split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(
                "expected a DNS name (letters, digits and '-' in dot-separated labels) or an IP address",
            ));
        }
    }
    Ok(SanType::DnsName(
        host.try_into()
            .map_err(|_| bad("a DNS name must be ASCII"))?,
    ))
}

pub(crate) fn org_san(org: &OrgId) -> Result<SanType> {
    let uri = org.to_uri();
    Ok(SanType::URI(uri.as_str().try_into().map_err(|_| {
        CertError::InvalidInput {
            field: "org",
            value: org.to_string(),
            reason: "the org URI must be ASCII".to_owned(),
        }
    })?))
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    record: IssuedRecord,
}

impl FederationCa {
    /// Issues a gateway's TLS and signing certificates for `org` into `out_dir` (created with
    /// mode 0700 if missing), valid for `validity_days` from now, and records both in
    /// `issued.json`. `host` becomes the TLS certificate's DNS SAN, or its IP SAN if it is an
    /// IP address.
    ///
    /// Refuses to overwrite any existing credential file in `out_dir`.
    pub fn issue(
        &self,
        org: &OrgId,
        host: &str,
        out_dir: impl AsRef<Path>,
        validity_days: u32,
    ) -> Result<IssuedCredentials> {
        self.issue_at(
            org,
            host,
            out_dir,
            validity_days,
            Timestamp(x509::now_unix().max(0) as u64),
        )
    }

    /// [`FederationCa::issue`] with an explicit current time: the certificates are valid from
    /// `now` minus [`BACKDATE_SECS`] to `now` plus `validity_days`.
    pub fn issue_at(
        &self,
        org: &OrgId,
        host: &str,
        out_dir: impl AsRef<Path>,
        validity_days: u32,
        now: Timestamp,
    ) -> Result<IssuedCredentials> {
        let out_dir = out_dir.as_ref();
        if validity_days == 0 {
            return Err(CertError::InvalidInput {
                field: "validity (days)",
                value: validity_days.to_string(),
                reason: "must be at least 1 day".to_owned(),
            });
        }
        let now = unix(now);
        let not_before = now.saturating_sub(BACKDATE_SECS);
        let not_after = now.saturating_add(i64::from(validity_days) * 86_400);
        if not_after > self.anchor.not_after {
            return Err(CertError::InvalidInput {
                field: "validity (days)",
                value: validity_days.to_string(),
                reason: format!(
                    "the certificates would outlive the CA certificate, which expires on {}; choose a shorter validity",
                    x509::fmt_unix(self.anchor.not_after)
                ),
            });
        }
        let host_san = host_san(host)?;
        let org_san = org_san(org)?;

        files::create_private_dir(out_dir)?;
        for file in [
            TLS_CERT_FILE,
            TLS_KEY_FILE,
            SIGN_CERT_FILE,
            SIGN_KEY_FILE,
            CA_CERT_FILE,
        ] {
            let path = out_dir.join(file);
            if path.exists() {
                return Err(CertError::CredentialsExist { path });
            }
        }

        let tls = self.leaf(
            org,
            CertKind::Tls,
            vec![host_san, org_san.clone()],
            Some(host),
            not_before,
            not_after,
        )?;
        let sign = self.leaf(
            org,
            CertKind::Signing,
            vec![org_san],
            None,
            not_before,
            not_after,
        )?;

        let mut written = Vec::new();
        let result = (|| {
            for (file, bytes, secret) in [
                (TLS_KEY_FILE, tls.key_pem.as_bytes(), true),
                (TLS_CERT_FILE, tls.cert_pem.as_bytes(), false),
                (SIGN_KEY_FILE, sign.key_pem.as_bytes(), true),
                (SIGN_CERT_FILE, sign.cert_pem.as_bytes(), false),
                (CA_CERT_FILE, self.cert_pem.as_bytes(), false),
            ] {
                let path = out_dir.join(file);
                if secret {
                    files::write_secret(&path, bytes)?;
                } else {
                    files::write_public(&path, bytes)?;
                }
                written.push(path);
            }
            let registry_path = self.dir.join(ISSUED_FILE);
            let mut registry = IssuedRegistry::load(&registry_path)?;
            registry.certificates.push(tls.record.clone());
            registry.certificates.push(sign.record.clone());
            registry.save(&registry_path)
        })();
        if let Err(e) = result {
            // Leave no half-written credentials behind.
            for path in written {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        Ok(IssuedCredentials {
            dir: out_dir.to_owned(),
            org: org.clone(),
            tls: tls.record,
            sign: sign.record,
        })
    }

    /// Records of every certificate this CA issued (from `issued.json`).
    pub fn issued(&self) -> Result<Vec<IssuedRecord>> {
        Ok(IssuedRegistry::load(&self.dir.join(ISSUED_FILE))?.certificates)
    }

    fn leaf(
        &self,
        org: &OrgId,
        kind: CertKind,
        sans: Vec<SanType>,
        host: Option<&str>,
        not_before: i64,
        not_after: i64,
    ) -> Result<Leaf> {
        let (what, cn, ekus) = match kind {
            CertKind::Tls => (
                "TLS certificate",
                format!("{org} TLS"),
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            _ => (
                "signing certificate",
                format!("{org} document signing"),
                vec![ExtendedKeyUsagePurpose::Other(
                    DOCUMENT_SIGNING_EKU.to_vec(),
                )],
            ),
        };
        let key = generate_ed25519_key()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = ekus;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = to_datetime(not_before, "start of validity")?;
        params.not_after = to_datetime(not_after, "end of validity")?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| CertError::generate(what, e))?;
        let parsed = x509::parse_cert(cert.der(), what)?;
        let record = IssuedRecord {
            serial: x509::serial_hex(&parsed),
            org: org.clone(),
            kind,
            subject: cn,
            host: host.map(str::to_owned),
            fingerprint: x509::hex(&x509::sha256(cert.der())),
            not_before: parsed.validity().not_before.timestamp(),
            not_after: parsed.validity().not_after.timestamp(),
            revoked_at: None,
        };
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::inspect::CertInfo;
    use crate::test_support::{org, TempDir};

    #[test]
    fn issue_writes_both_certificates_and_records_them() {
        let tmp = TempDir::new("issue");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let out = tmp.path().join("creds");
        let issued = ca
            .issue(&org("lg:131059"), "bunkyo.example", &out, 90)
            .unwrap();

        for (file, mode) in [
            (TLS_CERT_FILE, None),
            (TLS_KEY_FILE, Some(0o600)),
            (SIGN_CERT_FILE, None),
            (SIGN_KEY_FILE, Some(0o600)),
            (CA_CERT_FILE, None),
        ] {
            let meta = std::fs::metadata(out.join(file)).unwrap();
            if let Some(mode) = mode {
                assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
            }
        }
        assert_eq!(
            std::fs::read_to_string(out.join(CA_CERT_FILE)).unwrap(),
            ca.cert_pem()
        );

        let tls = CertInfo::from_pem_file(out.join(TLS_CERT_FILE), None).unwrap();
        assert_eq!(tls.kind, CertKind::Tls);
        assert_eq!(tls.org, Some(org("lg:131059")));
        assert_eq!(tls.hosts, vec!["bunkyo.example".to_owned()]);
        assert_eq!(tls.serial, issued.tls.serial);
        assert_eq!(tls.serial.len(), 32);
        assert_eq!(tls.fingerprint, issued.tls.fingerprint);
        assert_eq!(tls.not_after - tls.not_before, 90 * 86_400 + BACKDATE_SECS);

        let sign = CertInfo::from_pem_file(out.join(SIGN_CERT_FILE), None).unwrap();
        assert_eq!(sign.kind, CertKind::Signing);
        assert!(sign.hosts.is_empty());
        assert_ne!(sign.serial, tls.serial);

        let records = ca.issued().unwrap();
        assert_eq!(records, vec![issued.tls.clone(), issued.sign.clone()]);
        let json = std::fs::read_to_string(tmp.path().join("ca").join(ISSUED_FILE)).unwrap();
        assert!(json.contains("\"kind\": \"sign\""), "{json}");
        assert!(!json.contains("PRIVATE"), "{json}");
    }

    #[test]
    fn issue_refuses_to_overwrite_and_bad_input() {
        let tmp = TempDir::new("issue-bad");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let out = tmp.path().join("creds");
        ca.issue(&org("sp:1330000011"), "127.0.0.1", &out, 30)
            .unwrap();
        let before = std::fs::read(out.join(SIGN_KEY_FILE)).unwrap();
        let err = ca
            .issue(&org("sp:1330000011"), "127.0.0.1", &out, 30)
            .unwrap_err();
        assert!(matches!(err, CertError::CredentialsExist { .. }), "{err}");
        assert_eq!(std::fs::read(out.join(SIGN_KEY_FILE)).unwrap(), before);

        let fresh = tmp.path().join("fresh");
        for (host, days) in [
            ("", 30),
            ("bad host", 30),
            ("-x.example", 30),
            ("ok.example", 0),
            ("ok.example", 100_000),
        ] {
            let err = ca
                .issue(&org("sp:1330000011"), host, &fresh, days)
                .unwrap_err();
            assert!(
                matches!(err, CertError::InvalidInput { .. }),
                "{host} {days}: {err}"
            );
        }
        assert!(!fresh.join(TLS_KEY_FILE).exists());
        assert_eq!(ca.issued().unwrap().len(), 2);
    }

    #[test]
    fn ip_hosts_get_ip_sans() {
        let tmp = TempDir::new("issue-ip");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let out = tmp.path().join("creds");
        ca.issue(&org("ot:npo-komorebi"), "::1", &out, 30).unwrap();
        let tls = CertInfo::from_pem_file(out.join(TLS_CERT_FILE), None).unwrap();
        assert_eq!(tls.hosts, vec!["::1".to_owned()]);
    }
}
