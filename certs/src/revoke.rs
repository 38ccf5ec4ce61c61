//! Changing the federation CRL: revoking a certificate ([`FederationCa::revoke`],
//! [`FederationCa::revoke_serial`]) and re-signing the list ([`FederationCa::refresh_crl`]).
//!
//! Each change re-signs the whole list with the CA key, increments the CRL number and sets
//! `nextUpdate` [`CRL_VALIDITY_DAYS`] ahead. The CRL is the authority on revocation;
//! `issued.json` only records when a certificate was revoked, for people reading it.

use std::path::Path;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use tsunagi_protocol::Timestamp;

use crate::ca::{FederationCa, CRL_FILE, ISSUED_FILE};
use crate::crl::{RevocationList, RevokedEntry, CRL_VALIDITY_DAYS};
use crate::error::{CertError, Result};
use crate::files;
use crate::mint::{to_datetime, unix};
use crate::registry::IssuedRegistry;
use crate::x509;

fn crl_number_bytes(n: u64) -> Vec<u8> {
    x509::normalize_serial(&n.to_be_bytes())
}

impl FederationCa {
    /// Signs a CRL listing `revoked`, numbered `number`, dated `now`, and writes it to
    /// `crl.pem` atomically.
    pub(crate) fn write_crl(
        &self,
        base: &RevocationList,
        number: u64,
        now: i64,
    ) -> Result<RevocationList> {
        let revoked_certs = base
            .revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: to_datetime(r.revoked_at, "revocation time")?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update: to_datetime(now, "CRL time")?,
            next_update: to_datetime(
                now.saturating_add(i64::from(CRL_VALIDITY_DAYS) * 86_400),
                "CRL next update",
            )?,
            crl_number: SerialNumber::from_slice(&crl_number_bytes(number)),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer()?)
            .map_err(|e| CertError::generate("CRL", e))?;
        let pem = crl.pem().map_err(|e| CertError::generate("CRL PEM", e))?;
        let path = self.dir.join(CRL_FILE);
        files::replace(&path, pem.as_bytes())?;
        RevocationList::parse(crl.der().to_vec(), path.display().to_string())
    }

    /// Revokes the certificate in the PEM file `cert_pem_path`: adds its serial to the CRL,
    /// increments the CRL number, re-signs and writes `crl.pem`, and notes the revocation in
    /// `issued.json`. Returns the new CRL.
    ///
    /// The certificate must have been issued by this CA; revoking it twice is an error.
    pub fn revoke(&self, cert_pem_path: impl AsRef<Path>) -> Result<RevocationList> {
        self.revoke_at(cert_pem_path, Timestamp(x509::now_unix().max(0) as u64))
    }

    /// [`FederationCa::revoke`] with an explicit current time.
    pub fn revoke_at(
        &self,
        cert_pem_path: impl AsRef<Path>,
        now: Timestamp,
    ) -> Result<RevocationList> {
        let path = cert_pem_path.as_ref();
        let der = files::read_cert_pem(path)?;
        let cert = x509::parse_cert(&der, &path.display().to_string())?;
        let subject = x509::common_name(cert.subject());
        self.anchor.check_issued(&cert).map_err(|e| match e {
            CertError::ForeignIssuer { .. }
            | CertError::BadSignature { .. }
            | CertError::Algorithm { .. } => CertError::NotIssuedHere {
                subject: subject.clone(),
                dir: self.dir.clone(),
            },
            other => other,
        })?;
        self.revoke_serial_bytes(
            &x509::normalize_serial(cert.raw_serial()),
            subject,
            unix(now),
        )
    }

    /// Revokes the certificate with serial number `serial_hex` (hex, `:` separators allowed),
    /// which must be recorded in `issued.json`. Returns the new CRL.
    pub fn revoke_serial(&self, serial_hex: &str) -> Result<RevocationList> {
        self.revoke_serial_at(serial_hex, Timestamp(x509::now_unix().max(0) as u64))
    }

    /// [`FederationCa::revoke_serial`] with an explicit current time.
    pub fn revoke_serial_at(&self, serial_hex: &str, now: Timestamp) -> Result<RevocationList> {
        let serial = x509::parse_hex(serial_hex.trim())
            .map(|s| x509::normalize_serial(&s))
            .ok_or_else(|| CertError::InvalidInput {
                field: "serial number",
                value: serial_hex.to_owned(),
                reason: "expected hexadecimal digits, as printed by `tsunagi certs show`"
                    .to_owned(),
            })?;
        let registry_path = self.dir.join(ISSUED_FILE);
        let registry = IssuedRegistry::load(&registry_path)?;
        let record = registry
            .find(&serial)
            .ok_or_else(|| CertError::UnknownSerial {
                serial: x509::hex(&serial),
                path: registry_path.clone(),
            })?;
        let subject = record.subject.clone();
        self.revoke_serial_bytes(&serial, subject, unix(now))
    }

    pub(crate) fn revoke_serial_bytes(
        &self,
        serial: &[u8],
        subject: String,
        now: i64,
    ) -> Result<RevocationList> {
        let mut crl = self.crl()?;
        if crl.is_revoked(serial) {
            return Err(CertError::AlreadyRevoked {
                subject,
                serial: x509::hex(serial),
            });
        }
        crl.revoked.push(RevokedEntry {
            serial: serial.to_vec(),
            revoked_at: now,
        });
        let new = self.write_crl(&crl, crl.number.saturating_add(1), now)?;

        let registry_path = self.dir.join(ISSUED_FILE);
        let mut registry = IssuedRegistry::load(&registry_path)?;
        if registry.mark_revoked(serial, now) {
            registry.save(&registry_path)?;
        }
        Ok(new)
    }

    /// Re-signs the current CRL unchanged except for a new number and dates, so that it stays
    /// current (its `nextUpdate` moves [`CRL_VALIDITY_DAYS`] ahead). Returns the new CRL.
    pub fn refresh_crl(&self) -> Result<RevocationList> {
        self.refresh_crl_at(Timestamp(x509::now_unix().max(0) as u64))
    }

    /// [`FederationCa::refresh_crl`] with an explicit current time.
    pub fn refresh_crl_at(&self, now: Timestamp) -> Result<RevocationList> {
        let crl = self.crl()?;
        self.write_crl(&crl, crl.number.saturating_add(1), unix(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::load_crl;
    use crate::issue::SIGN_CERT_FILE;
    use crate::issue::TLS_CERT_FILE;
    use crate::test_support::{org, TempDir};

    #[test]
    fn revoke_adds_the_serial_and_bumps_the_number() {
        let tmp = TempDir::new("crl-revoke");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let out = tmp.path().join("bunkyo");
        let issued = ca
            .issue(&org("lg:131059"), "bunkyo.example", &out, 30)
            .unwrap();

        let crl = ca.revoke(out.join(SIGN_CERT_FILE)).unwrap();
        assert_eq!(crl.number, 2);
        assert_eq!(crl.serials_hex(), vec![issued.sign.serial.clone()]);
        assert!(
            crl.next_update.unwrap() - crl.this_update == i64::from(CRL_VALIDITY_DAYS) * 86_400
        );
        assert_eq!(load_crl(tmp.path().join("ca").join(CRL_FILE)).unwrap(), crl);
        crl.verify_signed_by(ca.cert_der()).unwrap();

        let err = ca.revoke(out.join(SIGN_CERT_FILE)).unwrap_err();
        assert!(matches!(err, CertError::AlreadyRevoked { .. }), "{err}");

        let crl = ca.revoke_serial(&issued.tls.serial.to_uppercase()).unwrap();
        assert_eq!(crl.number, 3);
        assert_eq!(crl.revoked.len(), 2);
        assert!(crl.is_revoked(&x509::parse_hex(&issued.tls.serial).unwrap()));

        let records = ca.issued().unwrap();
        assert!(
            records.iter().all(|r| r.revoked_at.is_some()),
            "{records:?}"
        );

        let crl = ca.refresh_crl().unwrap();
        assert_eq!((crl.number, crl.revoked.len()), (4, 2));
    }

    #[test]
    fn revoke_refuses_foreign_and_unknown_certificates() {
        let tmp = TempDir::new("crl-foreign");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let other = FederationCa::init(tmp.path().join("other"), "CA").unwrap();
        let out = tmp.path().join("creds");
        other
            .issue(&org("mi:1310000017"), "hospital.example", &out, 30)
            .unwrap();
        let err = ca.revoke(out.join(TLS_CERT_FILE)).unwrap_err();
        assert!(matches!(err, CertError::NotIssuedHere { .. }), "{err}");

        let err = ca.revoke_serial("0123abcd").unwrap_err();
        assert!(matches!(err, CertError::UnknownSerial { .. }), "{err}");
        let err = ca.revoke_serial("not hex").unwrap_err();
        assert!(matches!(err, CertError::InvalidInput { .. }), "{err}");
        let err = ca.revoke(tmp.path().join("missing.pem")).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        assert_eq!(ca.crl().unwrap().number, 1);
    }

    #[test]
    fn a_crl_from_another_ca_is_refused() {
        let tmp = TempDir::new("crl-other");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let other = FederationCa::init(tmp.path().join("other"), "CA").unwrap();
        let err = other
            .crl()
            .unwrap()
            .verify_signed_by(ca.cert_der())
            .unwrap_err();
        assert!(matches!(err, CertError::CrlNotTrusted { .. }), "{err}");
        // Swapping the other CA's CRL into this CA's directory is noticed on revoke.
        std::fs::copy(
            tmp.path().join("other").join(CRL_FILE),
            tmp.path().join("ca").join(CRL_FILE),
        )
        .unwrap();
        assert!(matches!(
            ca.crl().unwrap_err(),
            CertError::CrlNotTrusted { .. }
        ));
    }
}
