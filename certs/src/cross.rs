//! Cross-signing between prefectural federations: a prefecture's CA recognises another
//! prefecture's CA by issuing it a **cross-certificate** (same subject and key as that CA, issued
//! by the recognising CA, `cA` with path length 0, carrying the other prefecture's org as its
//! `urn:tsunagi:org:` URI SAN).
//!
//! A gateway keeps its own CA as its only trust anchor and holds the cross-certificates its CA
//! issued (a [`Recognised`] each): a certificate issued by a recognised CA then validates through
//! the cross-certificate, with the same path validator as everything else. Revocation is in two
//! layers: the recognising CA's CRL revokes the cross-certificate (the whole other prefecture
//! stops being recognised), the other prefecture's CRL revokes its own gateways.
//!
//! A recognised CA vouches only for its own prefecture: an org id whose prefecture code (the
//! first two digits of `lg:`, `mi:` and `sp:` codes) differs from the cross-certificate's
//! prefecture, or an `ot:` id (which names no prefecture), is refused under it
//! ([`Recognised::check_org`]).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SubjectPublicKeyInfo,
};
use tsunagi_protocol::org::OrgId;
use tsunagi_protocol::Timestamp;

use crate::ca::{FederationCa, BACKDATE_SECS, ISSUED_FILE};
use crate::error::{CertError, Result};
use crate::mint::{random_serial, to_datetime, unix};
use crate::recognised::same_name;
pub use crate::recognised::{check_peer_org, Recognised};
use crate::registry::{IssuedRecord, IssuedRegistry};
use crate::x509::{self, Anchor, CertKind, DOCUMENT_SIGNING_EKU};

/// A cross-certificate just issued: PEM, and the record kept in `issued.json` (revoke it by its
/// serial like any other certificate).
#[derive(Debug, Clone)]
pub struct CrossCertificate {
    /// The cross-certificate, PEM.
    pub pem: String,
    /// The cross-certificate, DER.
    pub der: Vec<u8>,
    /// Its record in the issuing CA's `issued.json`.
    pub record: IssuedRecord,
}

impl FederationCa {
    /// Issues a cross-certificate recognising another prefecture's CA (its certificate
    /// `other_ca_der`, self-signed) for `prefecture` (`lg:PP000C`), valid `days` days from `now`
    /// (never beyond either CA), and records it in `issued.json`.
    pub fn cross_sign_at(
        &self,
        other_ca_der: &[u8],
        prefecture: &OrgId,
        days: u32,
        now: Timestamp,
    ) -> Result<CrossCertificate> {
        let other = Anchor::from_der(other_ca_der, "the other prefecture's CA certificate")?;
        if other.subject_raw() == self.anchor.subject_raw()
            && other.public_key != self.anchor.public_key
        {
            return Err(same_name(&other.name));
        }
        if other.public_key == self.anchor.public_key {
            return Err(CertError::InvalidInput {
                field: "CA certificate",
                value: other.name,
                reason: "it is this CA itself; cross-sign another prefecture's CA".to_owned(),
            });
        }
        if !prefecture.is_prefecture() {
            return Err(CertError::InvalidInput {
                field: "prefecture",
                value: prefecture.to_string(),
                reason: "expected a prefecture's local government code lg:PP000C, e.g. lg:140007 for Kanagawa".to_owned(),
            });
        }
        if days == 0 {
            return Err(CertError::InvalidInput {
                field: "validity (days)",
                value: days.to_string(),
                reason: "must be at least 1 day".to_owned(),
            });
        }
        let now = unix(now);
        let not_after = now
            .saturating_add(i64::from(days) * 86_400)
            .min(self.anchor.not_after)
            .min(other.not_after);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, other.name.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // The path validator requires the usage on every certificate of the path (EKU
        // chaining): TLS both ways and document signing, nothing else.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::Other(DOCUMENT_SIGNING_EKU.to_vec()),
        ];
        params.subject_alt_names = vec![crate::issue::org_san(prefecture)?];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = to_datetime(now.saturating_sub(BACKDATE_SECS), "start of validity")?;
        params.not_after = to_datetime(not_after, "end of validity")?;
        let cert = x509::parse_cert(other_ca_der, "the other prefecture's CA certificate")?;
        let spki = SubjectPublicKeyInfo::from_der(cert.public_key().raw)
            .map_err(|e| CertError::generate("cross-certificate", e))?;
        let cross = params
            .signed_by(&spki, &self.issuer()?)
            .map_err(|e| CertError::generate("cross-certificate", e))?;
        let parsed = x509::parse_cert(cross.der(), "the new cross-certificate")?;
        if parsed.subject().as_raw() != other.subject_raw() {
            return Err(CertError::InvalidInput {
                field: "CA certificate",
                value: other.name,
                reason: "its subject name is not a single common name as `tsunagi ca init` writes it, so a cross-certificate cannot reproduce it".to_owned(),
            });
        }
        let record = IssuedRecord {
            serial: x509::serial_hex(&parsed),
            org: prefecture.clone(),
            kind: CertKind::Ca,
            subject: other.name,
            host: None,
            fingerprint: x509::hex(&x509::sha256(cross.der())),
            not_before: parsed.validity().not_before.timestamp(),
            not_after: parsed.validity().not_after.timestamp(),
            revoked_at: None,
        };
        let registry_path = self.dir.join(ISSUED_FILE);
        let mut registry = IssuedRegistry::load(&registry_path)?;
        registry.certificates.push(record.clone());
        registry.save(&registry_path)?;
        Ok(CrossCertificate {
            pem: cross.pem(),
            der: cross.der().to_vec(),
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::SIGN_CERT_FILE;
    use crate::test_support::{org, TempDir};
    use crate::{files, CertError, FederationTrust};
    use tsunagi_protocol::cose::ChainVerifier;

    struct Two {
        _tmp: TempDir,
        tokyo: FederationCa,
        kanagawa: FederationCa,
        now: Timestamp,
        tmp: std::path::PathBuf,
    }

    fn two(name: &str) -> Two {
        let tmp = TempDir::new(name);
        let now = Timestamp(x509::now_unix() as u64);
        let tokyo = FederationCa::init_at(tmp.path().join("tokyo"), "Tokyo CA", now).unwrap();
        let kanagawa =
            FederationCa::init_at(tmp.path().join("kanagawa"), "Kanagawa CA", now).unwrap();
        Two {
            tmp: tmp.path().to_owned(),
            _tmp: tmp,
            tokyo,
            kanagawa,
            now,
        }
    }

    fn trust_with(t: &Two, cross: &CrossCertificate) -> FederationTrust {
        let cross_der = cross.der.clone();
        t.tokyo
            .trust()
            .unwrap()
            .recognise([(
                "kanagawa".to_owned(),
                cross_der,
                t.kanagawa.crl().unwrap().der().to_vec(),
            )])
            .unwrap()
    }

    #[test]
    fn a_cross_signed_prefecture_vouches_for_its_own_orgs_until_revoked() {
        let t = two("cross-ok");
        let cross = t
            .tokyo
            .cross_sign_at(t.kanagawa.cert_der(), &org("lg:140007"), 365, t.now)
            .unwrap();
        assert_eq!(cross.record.kind, CertKind::Ca);
        let trust = trust_with(&t, &cross);
        assert_eq!(trust.recognised()[0].prefecture, org("lg:140007"));

        // A Yokohama health centre, issued by Kanagawa's CA, verifies under Tokyo's anchor,
        // whether or not it sends its own CA certificate along.
        let yokohama = t.tmp.join("yokohama");
        t.kanagawa
            .issue_at(&org("lg:141003"), "yokohama.example", &yokohama, 30, t.now)
            .unwrap();
        let leaf = files::read_cert_pem(&yokohama.join(SIGN_CERT_FILE))
            .unwrap()
            .to_vec();
        for chain in [
            vec![leaf.clone()],
            vec![leaf.clone(), t.kanagawa.cert_der().to_vec()],
        ] {
            let id = trust.verify_signer(&chain, t.now).unwrap();
            assert_eq!(id.org, org("lg:141003"));
        }
        // Without the cross-certificate it is a foreign issuer.
        let err = t
            .tokyo
            .trust()
            .unwrap()
            .verify_signing_chain(std::slice::from_ref(&leaf), t.now)
            .unwrap_err();
        assert!(matches!(err, CertError::ForeignIssuer { .. }), "{err}");

        // Kanagawa's CA cannot vouch for a Tokyo org.
        let fake = t.tmp.join("fake-bunkyo");
        t.kanagawa
            .issue_at(&org("lg:131059"), "bunkyo.example", &fake, 30, t.now)
            .unwrap();
        let fake_leaf = files::read_cert_pem(&fake.join(SIGN_CERT_FILE))
            .unwrap()
            .to_vec();
        let err = trust.verify_signing_chain(&[fake_leaf], t.now).unwrap_err();
        assert!(matches!(err, CertError::OutsidePrefecture { .. }), "{err}");

        // The directory signer: Kanagawa's CA itself, for lg:140007 only.
        let signer = trust.recognised_signer(&org("lg:140007")).unwrap();
        let id = signer
            .verify_signer(&[t.kanagawa.cert_der().to_vec()], t.now)
            .unwrap();
        assert_eq!(id.org, org("lg:140007"));
        assert!(signer
            .verify_signer(&[t.tokyo.cert_der().to_vec()], t.now)
            .is_err());
        assert!(trust.recognised_signer(&org("lg:110001")).is_none());

        // Kanagawa revokes its gateway: refused.
        let issued = t.kanagawa.issued().unwrap();
        let sign_serial = &issued
            .iter()
            .find(|r| r.org == org("lg:141003") && r.kind == CertKind::Signing)
            .unwrap()
            .serial;
        t.kanagawa.revoke_serial_at(sign_serial, t.now).unwrap();
        let err = trust_with(&t, &cross)
            .verify_signing_chain(std::slice::from_ref(&leaf), t.now)
            .unwrap_err();
        assert!(matches!(err, CertError::Revoked { .. }), "{err}");

        // Tokyo revokes the cross-certificate: all of Kanagawa is refused.
        let t2 = two("cross-revoked");
        let cross = t2
            .tokyo
            .cross_sign_at(t2.kanagawa.cert_der(), &org("lg:140007"), 365, t2.now)
            .unwrap();
        let hc = t2.tmp.join("hc");
        t2.kanagawa
            .issue_at(&org("lg:141003"), "yokohama.example", &hc, 30, t2.now)
            .unwrap();
        let leaf = files::read_cert_pem(&hc.join(SIGN_CERT_FILE))
            .unwrap()
            .to_vec();
        trust_with(&t2, &cross)
            .verify_signing_chain(std::slice::from_ref(&leaf), t2.now)
            .unwrap();
        t2.tokyo
            .revoke_serial_at(&cross.record.serial, t2.now)
            .unwrap();
        let trust = trust_with(&t2, &cross);
        let err = trust
            .verify_signing_chain(std::slice::from_ref(&leaf), t2.now)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CertError::Revoked { .. } | CertError::PathInvalid { .. }
            ),
            "{err}"
        );
        assert!(trust
            .recognised_signer(&org("lg:140007"))
            .unwrap()
            .verify_signer(&[t2.kanagawa.cert_der().to_vec()], t2.now)
            .is_err());
    }

    #[test]
    fn a_recognised_cas_crl_revokes_only_its_own_certificates() {
        let t = two("cross-crl");
        let cross = t
            .tokyo
            .cross_sign_at(t.kanagawa.cert_der(), &org("lg:140007"), 365, t.now)
            .unwrap();
        let bunkyo = t.tmp.join("bunkyo");
        t.tokyo
            .issue_at(&org("lg:131059"), "bunkyo.example", &bunkyo, 30, t.now)
            .unwrap();
        let leaf = files::read_cert_pem(&bunkyo.join(SIGN_CERT_FILE))
            .unwrap()
            .to_vec();
        let trust = trust_with(&t, &cross);
        trust
            .verify_signing_chain(std::slice::from_ref(&leaf), t.now)
            .unwrap();
        // Kanagawa's CA lists the serial of Bunkyo's signing certificate (Tokyo's) in its CRL.
        let serial = x509::parse_cert(&leaf, "leaf")
            .unwrap()
            .raw_serial()
            .to_vec();
        t.kanagawa
            .revoke_serial_bytes(
                &x509::normalize_serial(&serial),
                "bunkyo".into(),
                t.now.0 as i64,
            )
            .unwrap();
        let hostile = trust_with(&t, &cross);
        // Bunkyo's certificate still verifies, when new to the trust and when cached.
        for _ in 0..2 {
            let id = hostile
                .verify_signing_chain(std::slice::from_ref(&leaf), t.now)
                .unwrap();
            assert_eq!(id.org, org("lg:131059"));
        }
        // Our own CRL still revokes it.
        let issued = t.tokyo.issued().unwrap();
        let sign_serial = &issued
            .iter()
            .find(|r| r.org == org("lg:131059") && r.kind == CertKind::Signing)
            .unwrap()
            .serial;
        t.tokyo.revoke_serial_at(sign_serial, t.now).unwrap();
        let err = trust_with(&t, &cross)
            .verify_signing_chain(std::slice::from_ref(&leaf), t.now)
            .unwrap_err();
        assert!(matches!(err, CertError::Revoked { .. }), "{err}");
    }

    #[test]
    fn cross_signing_refuses_itself_and_non_prefectures() {
        let t = two("cross-bad");
        let err = t
            .tokyo
            .cross_sign_at(t.tokyo.cert_der(), &org("lg:140007"), 365, t.now)
            .unwrap_err();
        assert!(err.to_string().contains("this CA itself"), "{err}");
        let twin = FederationCa::init_at(t.tmp.join("twin"), "Tokyo CA", t.now).unwrap();
        let err = t
            .tokyo
            .cross_sign_at(twin.cert_der(), &org("lg:140007"), 365, t.now)
            .unwrap_err();
        assert!(err.to_string().contains("same name"), "{err}");
        let err = t
            .tokyo
            .cross_sign_at(t.kanagawa.cert_der(), &org("lg:141003"), 365, t.now)
            .unwrap_err();
        assert!(err.to_string().contains("lg:PP000C"), "{err}");
        // A CRL not from the recognised CA is refused.
        let cross = t
            .tokyo
            .cross_sign_at(t.kanagawa.cert_der(), &org("lg:140007"), 365, t.now)
            .unwrap();
        let err = t
            .tokyo
            .trust()
            .unwrap()
            .recognise([(
                "kanagawa".to_owned(),
                cross.der.clone(),
                t.tokyo.crl().unwrap().der().to_vec(),
            )])
            .unwrap_err();
        assert!(matches!(err, CertError::CrlNotTrusted { .. }), "{err}");
    }
}
