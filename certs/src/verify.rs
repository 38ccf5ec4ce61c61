//! Checking certificates against the federation: [`FederationTrust`], the
//! [`ChainVerifier`] that COSE signature verification in `tsunagi-protocol` calls, and
//! [`org_of_certificate`] for TLS peer identities.
//!
//! # One path validator
//! Signer chains are validated by the same X.509 path validator that checks TLS peers:
//! rustls-webpki, with the federation CA as the only trust anchor, Ed25519 as the only
//! signature algorithm, the CRL for revocation (end-entity depth, unknown status refused), and
//! the document-signing extended key usage (id-kp-documentSigning, RFC 9336) where TLS asks for
//! serverAuth/clientAuth. There is no second, hand-written chain check.
//!
//! A signer chain is accepted when all of these hold (each failure has its own [`CertError`]
//! variant):
//!
//! 1. it holds the signing certificate, optionally followed by the federation CA certificate
//!    itself ([`CertError::ChainLength`], [`CertError::ForeignChainCa`]);
//! 2. the path validator accepts it at `now`: within its validity ([`CertError::NotYetValid`],
//!    [`CertError::Expired`]), issued by the federation CA ([`CertError::ForeignIssuer`]) with a
//!    valid Ed25519 signature ([`CertError::BadSignature`]), carrying the document-signing EKU
//!    ([`CertError::NotSigningCert`]) and not listed in the CRL ([`CertError::Revoked`]); anything
//!    else it reports is [`CertError::PathInvalid`];
//! 3. `now` lies within the CA's own validity ([`CertError::CaNotValid`]; a trust anchor has no
//!    validity for the path validator);
//! 4. its key usage is digitalSignature only ([`CertError::NotSigningCert`]);
//! 5. it carries exactly one `urn:tsunagi:org:` URI SAN that parses as an org id
//!    ([`CertError::OrgSan`], [`CertError::BadOrg`]), and an Ed25519 key.
//!
//! # Verified certificates are cached
//! A gateway sees the same few signing certificates over and over (every envelope carries three
//! signatures), and most of what the path validator checks (the CA's Ed25519 signature, the
//! usage, the org and the key) depends only on the certificate's bytes. A [`FederationTrust`]
//! therefore remembers the certificates that passed every check, by SHA-256 fingerprint (the DER
//! is compared too), and for those runs only what can change with time or the CRL: the chain
//! shape, the validity of the certificate and of the CA at `now`, and the CRL, every time. A certificate
//! that failed is not remembered. A reloaded trust (new CRL) starts with an empty cache; the cache
//! holds at most [`VERIFIED_CACHE_CAPACITY`] certificates and is emptied when full.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use tsunagi_protocol::cose::{ChainError, ChainVerifier, SignerIdentity};
use tsunagi_protocol::org::OrgId;
use tsunagi_protocol::Timestamp;

use crate::crl::{load_crl, RevocationList};
use crate::error::{CertError, Result};
use crate::files;
use crate::recognised::Recognised;
use crate::x509::{self, Anchor};

/// How many verified signing certificates a [`FederationTrust`] remembers (see the
/// [module docs](self)).
pub const VERIFIED_CACHE_CAPACITY: usize = 1024;

/// The federation's trust anchor (CA certificate) and revocation list, checked once when built.
///
/// Clones share the cache of verified certificates (they trust the same CA).
#[derive(Debug, Clone)]
pub struct FederationTrust {
    anchor: Anchor,
    /// The serial numbers our CRL revokes (our CA's certificates, cross-certificates included).
    crl_serials: BTreeSet<Vec<u8>>,
    /// The serial numbers each recognised CA's CRL revokes, by the index of [`Self::recognised`]:
    /// each CRL speaks only for the certificates its CA issued.
    recognised_serials: Vec<BTreeSet<Vec<u8>>>,
    crl_number: Option<u64>,
    crl_next_update: Option<i64>,
    /// The CRLs as the path validator reads them: ours, then each recognised CA's.
    crls: Vec<Arc<CertRevocationList<'static>>>,
    /// Other prefectures' CAs recognised by cross-certificates from ours (see [`crate::cross`]).
    recognised: Vec<Recognised>,
    verified: VerifiedCache,
}

/// What the time and revocation checks need to know about a leaf certificate.
#[derive(Debug)]
struct LeafFacts {
    subject: String,
    serial: String,
    raw_serial: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

/// A signing certificate that passed every check; kept for checks 3 and 4 on later uses.
#[derive(Debug)]
struct VerifiedLeaf {
    der: Vec<u8>,
    facts: LeafFacts,
    identity: SignerIdentity,
    /// The recognised CA (index into `recognised`) it was validated through, if not our own.
    via: Option<usize>,
}

/// Verified signing certificates by fingerprint.
#[derive(Clone, Default)]
struct VerifiedCache(Arc<RwLock<HashMap<[u8; 32], Arc<VerifiedLeaf>>>>);

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.read().map_or(0, |m| m.len());
        write!(f, "VerifiedCache({n} certificates)")
    }
}

impl VerifiedCache {
    fn get(&self, fingerprint: &[u8; 32], der: &[u8]) -> Option<Arc<VerifiedLeaf>> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(fingerprint)
            .filter(|leaf| leaf.der.as_slice() == der)
            .cloned()
    }

    fn insert(&self, fingerprint: [u8; 32], leaf: VerifiedLeaf) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= VERIFIED_CACHE_CAPACITY {
            map.clear();
        }
        map.insert(fingerprint, Arc::new(leaf));
    }
}

impl FederationTrust {
    /// Trusts the CA certificate `ca_der` (which must be an Ed25519 CA with a valid
    /// self-signature) with an optional CRL (DER), which must be issued and signed by that CA.
    ///
    /// Without a CRL nothing is treated as revoked; gateways always pass one.
    pub fn new(ca_der: Vec<u8>, crl_der: Option<&[u8]>) -> Result<FederationTrust> {
        let anchor = Anchor::from_der(&ca_der, "the federation CA certificate")?;
        let crl = crl_der.map(RevocationList::from_der).transpose()?;
        Self::with_crl(anchor, crl, "given")
    }

    /// Reads the CA certificate and optionally the CRL from PEM files.
    pub fn from_files(ca_pem: impl AsRef<Path>, crl_pem: Option<&Path>) -> Result<FederationTrust> {
        let ca_path = ca_pem.as_ref();
        let ca_der = files::read_cert_pem(ca_path)?;
        let anchor = Anchor::from_der(&ca_der, &ca_path.display().to_string())?;
        let crl = crl_pem.map(load_crl).transpose()?;
        let what = crl_pem.map(|p| p.display().to_string()).unwrap_or_default();
        Self::with_crl(anchor, crl, &what)
    }

    /// `what` names the CRL in errors (its file, or "given").
    fn with_crl(
        anchor: Anchor,
        crl: Option<RevocationList>,
        what: &str,
    ) -> Result<FederationTrust> {
        let mut for_validator = Vec::new();
        if let Some(crl) = &crl {
            let parsed = x509::parse_crl(crl.der(), "the CRL")?;
            anchor.check_crl(&parsed, what)?;
            let owned =
                OwnedCertRevocationList::from_der(crl.der()).map_err(|e| CertError::Malformed {
                    what: what.to_owned(),
                    object: "CRL",
                    detail: format!("the path validator cannot read it: {e}"),
                })?;
            for_validator.push(Arc::new(CertRevocationList::from(owned)));
        }
        Ok(FederationTrust {
            anchor,
            crl_serials: crl
                .as_ref()
                .map(RevocationList::serial_set)
                .unwrap_or_default(),
            crl_number: crl.as_ref().map(|c| c.number),
            crl_next_update: crl.and_then(|c| c.next_update),
            crls: for_validator,
            recognised: Vec::new(),
            recognised_serials: Vec::new(),
            verified: VerifiedCache::default(),
        })
    }

    /// Adds other prefectures' CAs, each as a cross-certificate issued by our CA (DER) with that
    /// CA's own CRL (DER), which must be issued and signed by it: without it, the status of its
    /// certificates would be unknown, and so refused. `what` names each pair in errors.
    pub fn recognise(
        mut self,
        pairs: impl IntoIterator<Item = (String, Vec<u8>, Vec<u8>)>,
    ) -> Result<FederationTrust> {
        for (what, cross_der, crl_der) in pairs {
            let recognised = Recognised::from_der(&cross_der, &self.anchor, &what)?;
            recognised.check_crl(&crl_der, &format!("the CRL of {what}"))?;
            if self
                .recognised
                .iter()
                .any(|r| r.prefecture == recognised.prefecture)
            {
                return Err(CertError::InvalidInput {
                    field: "cross-certificate",
                    value: what,
                    reason: format!(
                        "prefecture {} is already recognised by another cross-certificate",
                        recognised.prefecture
                    ),
                });
            }
            let crl = RevocationList::from_der(&crl_der)?;
            self.recognised_serials.push(crl.serial_set());
            let owned =
                OwnedCertRevocationList::from_der(&crl_der).map_err(|e| CertError::Malformed {
                    what: what.clone(),
                    object: "CRL",
                    detail: format!("the path validator cannot read it: {e}"),
                })?;
            self.crls.push(Arc::new(CertRevocationList::from(owned)));
            self.recognised.push(recognised);
        }
        self.verified = VerifiedCache::default();
        Ok(self)
    }

    /// The other prefectures' CAs recognised by cross-certificate.
    pub fn recognised(&self) -> &[Recognised] {
        &self.recognised
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.anchor.der
    }

    /// The CA's common name.
    pub fn ca_name(&self) -> &str {
        &self.anchor.name
    }

    /// The serial numbers our CRL revokes (big-endian, without sign padding).
    pub fn crl_serials(&self) -> impl Iterator<Item = &[u8]> {
        self.crl_serials.iter().map(Vec::as_slice)
    }

    /// The CRL's number, if a CRL was given.
    pub fn crl_number(&self) -> Option<u64> {
        self.crl_number
    }

    /// When the CRL says the next one is due (Unix seconds). Past this, the gateway should
    /// warn that the CRL is stale; certificates are still checked against it.
    pub fn crl_next_update(&self) -> Option<i64> {
        self.crl_next_update
    }

    /// Whether our CRL lists this serial number (of a certificate our CA issued).
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.crl_serials.contains(&x509::normalize_serial(serial))
    }

    /// Whether the CRL of the CA that issued a leaf lists its serial number: ours for a leaf of
    /// ours (`via` none), the recognised CA's for one of its own (`via` its index). A CRL never
    /// revokes another CA's certificates, which may have the same serial numbers.
    fn leaf_revoked(&self, serial: &[u8], via: Option<usize>) -> bool {
        match via {
            None => self.is_revoked(serial),
            Some(i) => self
                .recognised_serials
                .get(i)
                .is_none_or(|set| set.contains(&x509::normalize_serial(serial))),
        }
    }

    /// Checks a signer chain (leaf first, DER) at `now`; see the [module docs](self) for the
    /// checks. Returns the identity the leaf vouches for.
    pub fn verify_signing_chain(
        &self,
        x5chain: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<SignerIdentity> {
        let (leaf_der, ca_in_chain) = match x5chain {
            [leaf] => (leaf, None),
            [leaf, ca] => (leaf, Some(ca)),
            other => return Err(CertError::ChainLength(other.len())),
        };
        let fingerprint = x509::sha256(leaf_der);
        if let Some(known) = self.verified.get(&fingerprint, leaf_der) {
            // Checks 2, 5 and 6 passed for these bytes; the rest in the same order as below.
            self.check_chain_ca(ca_in_chain)?;
            self.check_time_and_revocation(&known.facts, known.via, now)?;
            return Ok(known.identity.clone());
        }
        let leaf = x509::parse_cert(leaf_der, "the signer certificate")?;
        self.check_chain_ca(ca_in_chain)?;

        let validity = leaf.validity();
        let facts = LeafFacts {
            subject: x509::common_name(leaf.subject()),
            serial: x509::serial_hex(&leaf),
            raw_serial: leaf.raw_serial().to_vec(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        };
        let via = self.validate_path(
            leaf_der,
            &leaf,
            &facts,
            KeyUsage::required(x509::DOCUMENT_SIGNING_OID_DER),
            now,
        )?;
        self.check_time_and_revocation(&facts, via, now)?;

        x509::check_signing_usage(&leaf)?;
        let org = x509::org_of(&leaf)?;
        if let Some(i) = via {
            self.recognised[i].check_org(&org)?;
        }
        let public_key = x509::ed25519_public_key(&leaf)?;
        let identity = SignerIdentity {
            org,
            public_key,
            fingerprint,
        };
        self.verified.insert(
            fingerprint,
            VerifiedLeaf {
                der: leaf_der.clone(),
                facts,
                identity: identity.clone(),
                via,
            },
        );
        Ok(identity)
    }

    /// Check 2: the path validator, with the federation CA as the only anchor, the
    /// cross-certificates as the only intermediates, the CRLs and the extended key usage. Its
    /// errors become the [`CertError`] variant that names them. Returns the recognised CA the
    /// path went through, if any.
    fn validate_path(
        &self,
        leaf_der: &[u8],
        leaf: &x509_parser::certificate::X509Certificate<'_>,
        facts: &LeafFacts,
        usage: KeyUsage,
        now: Timestamp,
    ) -> Result<Option<usize>> {
        let leaf_cert = CertificateDer::from(leaf_der);
        let end_entity =
            EndEntityCert::try_from(&leaf_cert).map_err(|e| self.path_error(e, leaf, facts))?;
        let ca_cert = CertificateDer::from(self.anchor.der.as_slice());
        let anchor =
            webpki::anchor_from_trusted_cert(&ca_cert).map_err(|e| CertError::Malformed {
                what: self.anchor.name.clone(),
                object: "CA certificate",
                detail: format!("the path validator cannot use it as a trust anchor: {e}"),
            })?;
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().map(|c| c.as_ref()).collect();
        let intermediates: Vec<CertificateDer<'_>> = self
            .recognised
            .iter()
            .map(|r| CertificateDer::from(r.der()))
            .collect();
        let revocation = match RevocationOptionsBuilder::new(&crls) {
            Ok(builder) => Some(
                builder
                    // The end entity, and a cross-certificate against our own CRL.
                    .with_depth(RevocationCheckDepth::Chain)
                    .with_status_policy(UnknownStatusPolicy::Deny)
                    // A stale CRL is warned about elsewhere; it still names what it revoked.
                    .with_expiration_policy(ExpirationPolicy::Ignore)
                    .build(),
            ),
            // No CRL given (see [`FederationTrust::new`]): nothing is treated as revoked.
            Err(_) => None,
        };
        let anchors = [anchor];
        let path = end_entity
            .verify_for_usage(
                &[webpki::ring::ED25519],
                &anchors,
                &intermediates,
                UnixTime::since_unix_epoch(Duration::from_secs(now.0)),
                usage,
                revocation,
                None,
            )
            .map_err(|e| self.path_error(e, leaf, facts))?;
        let via = path.intermediate_certificates().next().map(|cross| {
            self.recognised
                .iter()
                .position(|r| r.der() == cross.der().as_ref())
        });
        Ok(via.flatten())
    }

    fn foreign_issuer(
        &self,
        leaf: &x509_parser::certificate::X509Certificate<'_>,
        facts: &LeafFacts,
    ) -> CertError {
        CertError::ForeignIssuer {
            subject: facts.subject.clone(),
            issuer: x509::common_name(leaf.issuer()),
            ca: self.anchor.name.clone(),
        }
    }

    /// Names a path validator error in the crate's terms.
    fn path_error(
        &self,
        error: webpki::Error,
        leaf: &x509_parser::certificate::X509Certificate<'_>,
        facts: &LeafFacts,
    ) -> CertError {
        use webpki::Error as E;
        match error {
            E::CertExpired { .. } => CertError::Expired {
                subject: facts.subject.clone(),
                serial: facts.serial.clone(),
                not_after: x509::fmt_unix(facts.not_after),
            },
            E::CertNotValidYet { .. } => CertError::NotYetValid {
                subject: facts.subject.clone(),
                serial: facts.serial.clone(),
                not_before: x509::fmt_unix(facts.not_before),
            },
            E::CertRevoked => CertError::Revoked {
                subject: facts.subject.clone(),
                serial: facts.serial.clone(),
            },
            // A CA with the same name but another key shows as a bad signature to the
            // validator; the key identifier says it is a foreign issuer.
            E::UnknownIssuer => self.foreign_issuer(leaf, facts),
            E::InvalidSignatureForPublicKey if self.anchor.names_other_key(leaf) => {
                self.foreign_issuer(leaf, facts)
            }
            E::InvalidSignatureForPublicKey => CertError::BadSignature {
                subject: facts.subject.clone(),
                ca: self.anchor.name.clone(),
            },
            E::RequiredEkuNotFoundContext(_) | E::CaUsedAsEndEntity => {
                // The usage check names what the certificate is instead.
                x509::check_signing_usage(leaf)
                    .err()
                    .unwrap_or_else(|| CertError::NotSigningCert {
                        subject: facts.subject.clone(),
                        reason:
                            "it lacks the document-signing extended key usage (1.3.6.1.5.5.7.3.36)"
                                .to_owned(),
                    })
            }
            E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertError::Algorithm {
                what: format!("the signature on certificate {:?}", facts.subject),
                found: leaf.signature_algorithm.algorithm.to_id_string(),
            },
            other => CertError::PathInvalid {
                subject: facts.subject.clone(),
                serial: facts.serial.clone(),
                ca: self.anchor.name.clone(),
                detail: other.to_string(),
            },
        }
    }

    /// Check 1: a CA certificate in the chain must be the federation CA itself, or a recognised
    /// CA's own certificate (same key as its cross-certificate). It decides nothing else: the
    /// path is built from our anchor and cross-certificates only.
    fn check_chain_ca(&self, ca_in_chain: Option<&Vec<u8>>) -> Result<()> {
        if let Some(ca) = ca_in_chain {
            let recognised = || {
                x509::parse_cert(ca, "the CA certificate in the signer chain")
                    .ok()
                    .and_then(|c| x509::ed25519_public_key(&c).ok())
                    .is_some_and(|key| self.recognised.iter().any(|r| r.public_key() == key))
            };
            if ca.as_slice() != self.anchor.der.as_slice() && !recognised() {
                let found = x509::parse_cert(ca, "the CA certificate in the signer chain")
                    .map(|c| x509::common_name(c.subject()))
                    .unwrap_or_else(|_| "(unparseable)".to_owned());
                return Err(CertError::ForeignChainCa {
                    found,
                    ca: self.anchor.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The checks that can change with time or the CRL: validity of the leaf and the CA at
    /// `now`, and the CRL. For a new certificate the path validator has already checked the
    /// leaf's validity and the CRL; for a cached one this is what runs again.
    fn check_time_and_revocation(
        &self,
        leaf: &LeafFacts,
        via: Option<usize>,
        now: Timestamp,
    ) -> Result<()> {
        let now = i64::try_from(now.0).unwrap_or(i64::MAX);
        if let Some(cross) = via.and_then(|i| self.recognised.get(i)) {
            cross.valid_at(now)?;
            if self.is_revoked(cross.serial()) {
                return Err(CertError::Revoked {
                    subject: format!("{} (cross-certificate)", cross.name()),
                    serial: x509::hex(&x509::normalize_serial(cross.serial())),
                });
            }
        }
        if now < leaf.not_before {
            return Err(CertError::NotYetValid {
                subject: leaf.subject.clone(),
                serial: leaf.serial.clone(),
                not_before: x509::fmt_unix(leaf.not_before),
            });
        }
        if now > leaf.not_after {
            return Err(CertError::Expired {
                subject: leaf.subject.clone(),
                serial: leaf.serial.clone(),
                not_after: x509::fmt_unix(leaf.not_after),
            });
        }
        if now < self.anchor.not_before || now > self.anchor.not_after {
            return Err(CertError::CaNotValid {
                ca: self.anchor.name.clone(),
                now: x509::fmt_unix(now),
                not_before: x509::fmt_unix(self.anchor.not_before),
                not_after: x509::fmt_unix(self.anchor.not_after),
            });
        }
        if self.leaf_revoked(&leaf.raw_serial, via) {
            return Err(CertError::Revoked {
                subject: leaf.subject.clone(),
                serial: leaf.serial.clone(),
            });
        }
        Ok(())
    }
}

impl ChainVerifier for FederationTrust {
    fn verify_signer(
        &self,
        x5chain: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<SignerIdentity, ChainError> {
        self.verify_signing_chain(x5chain, now)
            .map_err(ChainError::from)
    }
}

/// The org a certificate (DER) names in its single `urn:tsunagi:org:` URI SAN.
///
/// This checks nothing else: use it on a TLS peer certificate after rustls has verified the
/// chain, to compare the peer's org with the envelope's sender.
pub fn org_of_certificate(der: &[u8]) -> Result<OrgId> {
    let cert = x509::parse_cert(der, "the peer certificate")?;
    x509::org_of(&cert)
}

#[cfg(test)]
mod tests {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        SanType, PKCS_ED25519,
    };

    use super::*;
    use crate::ca::FederationCa;
    use crate::issue::{IssuedCredentials, SIGN_CERT_FILE, TLS_CERT_FILE};
    use crate::test_support::{org, TempDir};

    const DAY: u64 = 86_400;

    struct Setup {
        _tmp: TempDir,
        ca: FederationCa,
        creds: std::path::PathBuf,
        issued: IssuedCredentials,
        now: Timestamp,
    }

    fn setup(name: &str) -> Setup {
        let tmp = TempDir::new(name);
        let now = Timestamp(x509::now_unix() as u64);
        let ca = FederationCa::init_at(tmp.path().join("ca"), "Tokyo sample federation CA", now)
            .unwrap();
        let creds = tmp.path().join("bunkyo");
        let issued = ca
            .issue_at(&org("lg:131059"), "bunkyo.example", &creds, 30, now)
            .unwrap();
        Setup {
            _tmp: tmp,
            ca,
            creds,
            issued,
            now,
        }
    }

    fn der(path: &Path) -> Vec<u8> {
        files::read_cert_pem(path).unwrap().to_vec()
    }

    #[test]
    fn accepts_a_fresh_signing_certificate() {
        let s = setup("verify-ok");
        let trust = s.ca.trust().unwrap();
        assert_eq!(trust.crl_number(), Some(1));
        let leaf = der(&s.creds.join(SIGN_CERT_FILE));
        for chain in [
            vec![leaf.clone()],
            vec![leaf.clone(), s.ca.cert_der().to_vec()],
        ] {
            let id = trust.verify_signer(&chain, s.now).unwrap();
            assert_eq!(id.org, org("lg:131059"));
            assert_eq!(x509::hex(&id.fingerprint), s.issued.sign.fingerprint);
            let cert = x509::parse_cert(&leaf, "leaf").unwrap();
            assert_eq!(id.public_key, x509::ed25519_public_key(&cert).unwrap());
        }
        // Still valid on its last day.
        let last = Timestamp(s.now.0 + 30 * DAY - 1);
        trust.verify_signing_chain(&[leaf], last).unwrap();
    }

    #[test]
    fn rejects_expired_and_not_yet_valid() {
        let s = setup("verify-time");
        let trust = s.ca.trust().unwrap();
        let leaf = der(&s.creds.join(SIGN_CERT_FILE));

        let err = trust
            .verify_signing_chain(std::slice::from_ref(&leaf), Timestamp(s.now.0 + 31 * DAY))
            .unwrap_err();
        assert!(matches!(err, CertError::Expired { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("expired on") && msg.contains("tsunagi certs issue"),
            "{msg}"
        );

        let err = trust
            .verify_signing_chain(&[leaf], Timestamp(s.now.0 - DAY))
            .unwrap_err();
        assert!(matches!(err, CertError::NotYetValid { .. }), "{err}");

        // A certificate issued with a validity window entirely in the past.
        let past = Timestamp(s.now.0 - 60 * DAY);
        let old = s._tmp.path().join("old");
        s.ca.issue_at(&org("lg:131059"), "bunkyo.example", &old, 10, past)
            .unwrap();
        let err = trust
            .verify_signing_chain(&[der(&old.join(SIGN_CERT_FILE))], s.now)
            .unwrap_err();
        assert!(matches!(err, CertError::Expired { .. }), "{err}");
    }

    #[test]
    fn rejects_revoked() {
        let s = setup("verify-revoked");
        s.ca.revoke(s.creds.join(SIGN_CERT_FILE)).unwrap();
        let trust = s.ca.trust().unwrap();
        assert_eq!(trust.crl_number(), Some(2));
        let err = trust
            .verify_signing_chain(&[der(&s.creds.join(SIGN_CERT_FILE))], s.now)
            .unwrap_err();
        assert!(matches!(err, CertError::Revoked { .. }), "{err}");
        assert!(err.to_string().contains(&s.issued.sign.serial), "{err}");
        // The chain error the protocol sees carries the same message.
        let chain_err = trust
            .verify_signer(&[der(&s.creds.join(SIGN_CERT_FILE))], s.now)
            .unwrap_err();
        assert!(chain_err.to_string().contains("revoked"), "{chain_err}");
    }

    #[test]
    fn a_cached_certificate_is_still_checked_for_time_chain_and_revocation() {
        let s = setup("verify-cache");
        let trust = s.ca.trust().unwrap();
        let leaf = der(&s.creds.join(SIGN_CERT_FILE));
        let one = std::slice::from_ref(&leaf);
        let first = trust.verify_signing_chain(one, s.now).unwrap();
        assert!(format!("{trust:?}").contains("VerifiedCache(1 certificates)"));
        // Served from the cache: the same identity, for clones too.
        assert_eq!(trust.verify_signing_chain(one, s.now).unwrap(), first);
        assert_eq!(
            trust.clone().verify_signing_chain(one, s.now).unwrap(),
            first
        );

        // Validity is checked on every use, with the same errors as for a new certificate.
        let err = trust
            .verify_signing_chain(one, Timestamp(s.now.0 + 31 * DAY))
            .unwrap_err();
        assert!(matches!(err, CertError::Expired { .. }), "{err}");
        let err = trust
            .verify_signing_chain(one, Timestamp(s.now.0 - DAY))
            .unwrap_err();
        assert!(matches!(err, CertError::NotYetValid { .. }), "{err}");
        // So is the CA certificate that comes with it.
        let other = FederationCa::init_at(s._tmp.path().join("other"), "Other CA", s.now).unwrap();
        let err = trust
            .verify_signing_chain(&[leaf.clone(), other.cert_der().to_vec()], s.now)
            .unwrap_err();
        assert!(matches!(err, CertError::ForeignChainCa { .. }), "{err}");

        // And the CRL: a trust with the newer CRL that shares this cache refuses it.
        s.ca.revoke(s.creds.join(SIGN_CERT_FILE)).unwrap();
        let revoked = FederationTrust {
            verified: trust.verified.clone(),
            ..s.ca.trust().unwrap()
        };
        assert!(revoked.verified.get(&first.fingerprint, &leaf).is_some());
        let err = revoked.verify_signing_chain(one, s.now).unwrap_err();
        assert!(matches!(err, CertError::Revoked { .. }), "{err}");
        // A freshly loaded trust starts empty and refuses it too.
        let fresh = s.ca.trust().unwrap();
        assert!(format!("{fresh:?}").contains("VerifiedCache(0 certificates)"));
        let err = fresh.verify_signing_chain(one, s.now).unwrap_err();
        assert!(matches!(err, CertError::Revoked { .. }), "{err}");
    }

    #[test]
    fn failures_are_not_cached_and_other_bytes_never_match() {
        let s = setup("verify-cache-fail");
        let trust = s.ca.trust().unwrap();
        let mut leaf = der(&s.creds.join(SIGN_CERT_FILE));
        let good = trust
            .verify_signing_chain(std::slice::from_ref(&leaf), s.now)
            .unwrap();
        // Same fingerprint slot, other bytes: not served from the cache.
        let pos = leaf.windows(9).position(|w| w == b"lg:131059").unwrap();
        leaf[pos + 8] = b'8';
        assert!(trust.verified.get(&good.fingerprint, &leaf).is_none());
        for _ in 0..2 {
            let err = trust
                .verify_signing_chain(std::slice::from_ref(&leaf), s.now)
                .unwrap_err();
            assert!(matches!(err, CertError::BadSignature { .. }), "{err}");
        }
        assert!(format!("{trust:?}").contains("VerifiedCache(1 certificates)"));
        // The TLS certificate fails check 5 every time, also after a success of another one.
        for _ in 0..2 {
            let err = trust
                .verify_signing_chain(&[der(&s.creds.join(TLS_CERT_FILE))], s.now)
                .unwrap_err();
            assert!(matches!(err, CertError::NotSigningCert { .. }), "{err}");
        }
    }

    #[test]
    fn rejects_a_foreign_ca() {
        let s = setup("verify-foreign");
        // Same CA name, different key: only the key identifier and signature tell them apart.
        let other = FederationCa::init_at(
            s._tmp.path().join("other"),
            "Tokyo sample federation CA",
            s.now,
        )
        .unwrap();
        let out = s._tmp.path().join("impostor");
        other
            .issue_at(&org("lg:131059"), "bunkyo.example", &out, 30, s.now)
            .unwrap();
        let trust = s.ca.trust().unwrap();
        let leaf = der(&out.join(SIGN_CERT_FILE));
        let err = trust
            .verify_signing_chain(std::slice::from_ref(&leaf), s.now)
            .unwrap_err();
        assert!(matches!(err, CertError::ForeignIssuer { .. }), "{err}");
        let err = trust
            .verify_signing_chain(&[leaf, other.cert_der().to_vec()], s.now)
            .unwrap_err();
        assert!(matches!(err, CertError::ForeignChainCa { .. }), "{err}");
    }

    #[test]
    fn rejects_the_tls_certificate_for_signing() {
        let s = setup("verify-tls");
        let trust = s.ca.trust().unwrap();
        let err = trust
            .verify_signing_chain(&[der(&s.creds.join(TLS_CERT_FILE))], s.now)
            .unwrap_err();
        assert!(matches!(err, CertError::NotSigningCert { .. }), "{err}");
        assert!(err.to_string().contains("sign.pem"), "{err}");
        let err = trust
            .verify_signing_chain(&[s.ca.cert_der().to_vec()], s.now)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CertError::ForeignIssuer { .. } | CertError::NotSigningCert { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_a_tampered_certificate() {
        let s = setup("verify-tamper");
        let trust = s.ca.trust().unwrap();
        let mut leaf = der(&s.creds.join(SIGN_CERT_FILE));
        // Rename the org in the subject: "lg:131059" -> "lg:131058" keeps the DER well-formed.
        let pos = leaf.windows(9).position(|w| w == b"lg:131059").unwrap();
        leaf[pos + 8] = b'8';
        let err = trust.verify_signing_chain(&[leaf], s.now).unwrap_err();
        assert!(matches!(err, CertError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("altered or forged"), "{err}");

        let err = trust
            .verify_signing_chain(&[b"garbage".to_vec()], s.now)
            .unwrap_err();
        assert!(matches!(err, CertError::Malformed { .. }), "{err}");
    }

    #[test]
    fn rejects_bad_chain_shapes() {
        let s = setup("verify-shape");
        let trust = s.ca.trust().unwrap();
        let leaf = der(&s.creds.join(SIGN_CERT_FILE));
        assert!(matches!(
            trust.verify_signing_chain(&[], s.now),
            Err(CertError::ChainLength(0))
        ));
        let three = vec![
            leaf.clone(),
            s.ca.cert_der().to_vec(),
            s.ca.cert_der().to_vec(),
        ];
        assert!(matches!(
            trust.verify_signing_chain(&three, s.now),
            Err(CertError::ChainLength(3))
        ));
    }

    /// A certificate signed by the federation CA but shaped wrongly (built by hand with rcgen).
    fn hand_made(s: &Setup, uris: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "hand made");
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            x509::DOCUMENT_SIGNING_EKU.to_vec(),
        )];
        params.use_authority_key_identifier_extension = true;
        params.not_before = crate::mint::to_datetime(s.now.0 as i64 - 60, "t").unwrap();
        params.not_after = crate::mint::to_datetime(s.now.0 as i64 + 3600, "t").unwrap();
        params
            .signed_by(&key, &s.ca.issuer().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn requires_exactly_one_valid_org_uri() {
        let s = setup("verify-org");
        let trust = s.ca.trust().unwrap();
        let good = hand_made(&s, &["urn:tsunagi:org:mi:1310000017"]);
        assert_eq!(
            trust.verify_signing_chain(&[good], s.now).unwrap().org,
            org("mi:1310000017")
        );
        let none = hand_made(&s, &["https://example.invalid/"]);
        let err = trust.verify_signing_chain(&[none], s.now).unwrap_err();
        assert!(matches!(err, CertError::OrgSan { found: 0, .. }), "{err}");
        let two = hand_made(
            &s,
            &["urn:tsunagi:org:mi:1310000017", "urn:tsunagi:org:lg:131059"],
        );
        let err = trust.verify_signing_chain(&[two], s.now).unwrap_err();
        assert!(matches!(err, CertError::OrgSan { found: 2, .. }), "{err}");
        let bad = hand_made(&s, &["urn:tsunagi:org:lg:131058"]);
        let err = trust.verify_signing_chain(&[bad], s.now).unwrap_err();
        assert!(matches!(err, CertError::BadOrg { .. }), "{err}");
        assert!(err.to_string().contains("check digit"), "{err}");
    }

    #[test]
    fn a_crl_from_another_ca_is_refused() {
        let s = setup("verify-crl");
        let other = FederationCa::init_at(s._tmp.path().join("other"), "Other CA", s.now).unwrap();
        let err = FederationTrust::new(s.ca.cert_der().to_vec(), Some(other.crl().unwrap().der()))
            .unwrap_err();
        assert!(matches!(err, CertError::CrlNotTrusted { .. }), "{err}");
        let err = FederationTrust::new(der(&s.creds.join(SIGN_CERT_FILE)), None).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
        let trust = FederationTrust::from_files(
            s.ca.dir().join(crate::ca::CA_CERT_FILE),
            Some(&s.ca.dir().join(crate::ca::CRL_FILE)),
        )
        .unwrap();
        assert_eq!(trust.ca_der(), s.ca.cert_der().as_ref());
    }

    #[test]
    fn org_of_certificate_reads_tls_certificates() {
        let s = setup("verify-org-of");
        assert_eq!(
            org_of_certificate(&der(&s.creds.join(TLS_CERT_FILE))).unwrap(),
            org("lg:131059")
        );
        let err = org_of_certificate(s.ca.cert_der()).unwrap_err();
        assert!(matches!(err, CertError::OrgSan { found: 0, .. }), "{err}");
    }
}

/// The org a federation-signed structure (the directory) is attributed to.
pub const FEDERATION_ORG: &str = "ot:federation";

/// Trust in the federation CA itself as a signer, for the signed directory.
///
/// Accepts exactly one certificate, the CA's own, valid at `now`.
#[derive(Debug, Clone, Copy)]
pub struct FederationSigner<'a>(&'a FederationTrust);

impl FederationTrust {
    /// A [`ChainVerifier`] that accepts the federation CA itself, for the directory.
    pub fn federation(&self) -> FederationSigner<'_> {
        FederationSigner(self)
    }
}

impl ChainVerifier for FederationSigner<'_> {
    fn verify_signer(
        &self,
        x5chain: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<SignerIdentity, ChainError> {
        let anchor = &self.0.anchor;
        if x5chain != [anchor.der.clone()] {
            return Err(ChainError(format!(
                "not signed by the federation CA {:?} (signed by a different certificate, whatever its name: another federation's CA or an old one)",
                anchor.name
            )));
        }
        let t = i64::try_from(now.0).unwrap_or(i64::MAX);
        if t < anchor.not_before || t > anchor.not_after {
            return Err(ChainError(format!(
                "the federation CA {:?} is not valid at this time",
                anchor.name
            )));
        }
        Ok(SignerIdentity {
            org: FEDERATION_ORG.parse().expect("a valid org id"),
            public_key: anchor.public_key,
            fingerprint: x509::sha256(&anchor.der),
        })
    }
}

/// Trust in a recognised prefecture's CA (see [`crate::cross`]) as the signer of that
/// prefecture's own directory: exactly one certificate, carrying the recognised CA's key, while
/// its cross-certificate is valid and not revoked by our CRL.
#[derive(Debug, Clone, Copy)]
pub struct RecognisedSigner<'a> {
    trust: &'a FederationTrust,
    recognised: &'a Recognised,
}

impl FederationTrust {
    /// A [`ChainVerifier`] for the directory of `prefecture`, if its CA is recognised.
    pub fn recognised_signer(&self, prefecture: &OrgId) -> Option<RecognisedSigner<'_>> {
        self.recognised
            .iter()
            .find(|r| r.prefecture == *prefecture)
            .map(|recognised| RecognisedSigner {
                trust: self,
                recognised,
            })
    }
}

impl ChainVerifier for RecognisedSigner<'_> {
    fn verify_signer(
        &self,
        x5chain: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<SignerIdentity, ChainError> {
        let r = self.recognised;
        let key = match x5chain {
            [ca] => x509::parse_cert(ca, "the directory signer")
                .ok()
                .and_then(|c| x509::ed25519_public_key(&c).ok()),
            _ => None,
        };
        if key != Some(r.public_key()) {
            return Err(ChainError(format!(
                "not signed by the CA {:?} of {} that our cross-certificate recognises",
                r.name(),
                r.prefecture
            )));
        }
        r.valid_at(i64::try_from(now.0).unwrap_or(i64::MAX))
            .map_err(ChainError::from)?;
        if self.trust.is_revoked(r.serial()) {
            return Err(ChainError(format!(
                "the cross-certificate recognising {:?} ({}) is revoked",
                r.name(),
                r.prefecture
            )));
        }
        Ok(SignerIdentity {
            org: r.prefecture.clone(),
            public_key: r.public_key(),
            fingerprint: x509::sha256(&x5chain[0]),
        })
    }
}
