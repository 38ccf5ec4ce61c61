//! The federation CA: creating it ([`FederationCa::init`]) and opening it ([`FederationCa::load`]).
//!
//! A CA directory holds:
//!
//! | file | content |
//! |---|---|
//! | `ca.pem` | the self-signed Ed25519 CA certificate (`cA`, path length 0, keyCertSign + cRLSign) |
//! | `ca.key` | its PKCS#8 private key, mode 0600 |
//! | `crl.pem` | the current CRL, signed by the CA (number 1 and empty after `init`) |
//! | `issued.json` | every certificate the CA issued (serial, org, kind, fingerprint, validity, revocation) |
//!
//! Issuing lives in [`crate::issue`], revoking in [`crate::crl`].

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ED25519,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use tsunagi_protocol::Timestamp;

use crate::crl::{load_crl, RevocationList};
use crate::error::{CertError, Result};
use crate::files;
use crate::issue::IssuedRegistry;
use crate::verify::FederationTrust;
use crate::x509::{self, Anchor};

/// File name of the CA certificate (in a CA directory and in every credentials directory).
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the CA's current certificate revocation list.
pub const CRL_FILE: &str = "crl.pem";
/// File name of the record of issued certificates.
pub const ISSUED_FILE: &str = "issued.json";
/// How long a new CA certificate is valid: 20 years.
pub const CA_VALIDITY_DAYS: u32 = 7305;
/// How far before "now" certificates start to be valid, to tolerate clock skew between gateways.
pub const BACKDATE_SECS: i64 = 3600;

/// A federation certificate authority opened from its directory, able to issue and revoke.
pub struct FederationCa {
    pub(crate) dir: PathBuf,
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) anchor: Anchor,
    pub(crate) key: KeyPair,
}

impl fmt::Debug for FederationCa {
    /// Shows the directory and CA name; never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationCa")
            .field("dir", &self.dir)
            .field("name", &self.anchor.name)
            .finish_non_exhaustive()
    }
}

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

fn check_name(name: &str) -> Result<()> {
    let reason = if name.trim().is_empty() {
        Some("the CA name must not be empty")
    } else if name.chars().count() > 64 {
        Some("the CA name must be at most 64 characters (X.509 common name limit)")
    } else if name.chars().any(char::is_control) {
        Some("the CA name must not contain control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CertError::InvalidInput {
            field: "CA name",
            value: name.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

impl FederationCa {
    /// Creates a new federation CA in `dir` (created with mode 0700 if missing) named `name`
    /// (the certificate's common name): `ca.pem`, `ca.key` (mode 0600), an empty `crl.pem` with
    /// CRL number 1 and an empty `issued.json`.
    ///
    /// Refuses to touch a directory that already holds any of these files.
    pub fn init(dir: impl AsRef<Path>, name: &str) -> Result<FederationCa> {
        Self::init_at(dir, name, Timestamp(x509::now_unix().max(0) as u64))
    }

    /// [`FederationCa::init`] with an explicit current time (for tests and reproducible setups).
    pub fn init_at(dir: impl AsRef<Path>, name: &str, now: Timestamp) -> Result<FederationCa> {
        let dir = dir.as_ref();
        check_name(name)?;
        files::create_private_dir(dir)?;
        for file in [CA_KEY_FILE, CA_CERT_FILE, CRL_FILE, ISSUED_FILE] {
            let path = dir.join(file);
            if path.exists() {
                return Err(CertError::CaExists {
                    dir: dir.to_owned(),
                    file: path,
                });
            }
        }

        let now = unix(now);
        let key = generate_ed25519_key()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        params.not_before = to_datetime(now.saturating_sub(BACKDATE_SECS), "CA start time")?;
        params.not_after = to_datetime(
            now.saturating_add(i64::from(CA_VALIDITY_DAYS) * 86_400),
            "CA end time",
        )?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| CertError::generate("CA certificate", e))?;

        let cert_der = cert.der().clone();
        let anchor = Anchor::from_der(&cert_der, "the new CA certificate")?;
        let ca = FederationCa {
            dir: dir.to_owned(),
            cert_pem: cert.pem(),
            cert_der,
            anchor,
            key,
        };

        // The key goes first, with create_new: if another `init` races us, one of them fails here.
        files::write_secret(&dir.join(CA_KEY_FILE), ca.key.serialize_pem().as_bytes()).map_err(
            |e| match e {
                CertError::CredentialsExist { path } => CertError::CaExists {
                    dir: dir.to_owned(),
                    file: path,
                },
                other => other,
            },
        )?;
        files::write_public(&dir.join(CA_CERT_FILE), ca.cert_pem.as_bytes())?;
        ca.write_crl(&RevocationList::empty(), 1, now)?;
        IssuedRegistry::default().save(&dir.join(ISSUED_FILE))?;
        Ok(ca)
    }

    /// Opens the CA in `dir`: reads `ca.pem` and `ca.key`, checks the key is Ed25519 and belongs
    /// to the certificate, and that the certificate is a correctly self-signed CA.
    pub fn load(dir: impl AsRef<Path>) -> Result<FederationCa> {
        let dir = dir.as_ref();
        for file in [CA_CERT_FILE, CA_KEY_FILE] {
            if !dir.join(file).exists() {
                return Err(CertError::NoCa {
                    dir: dir.to_owned(),
                    missing: file,
                });
            }
        }
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_der = files::read_cert_pem(&cert_path)?;
        let anchor = Anchor::from_der(&cert_der, &cert_path.display().to_string())?;
        let (pkcs8, public) = files::read_ed25519_key(&key_path)?;
        if public != anchor.public_key {
            return Err(CertError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ED25519).map_err(|_| {
            CertError::KeyType {
                path: key_path.clone(),
                found: "a key rcgen cannot use for Ed25519".to_owned(),
            }
        })?;
        let cert_pem = String::from_utf8(files::read(&cert_path)?).map_err(|_| CertError::Pem {
            path: cert_path.clone(),
            label: "CERTIFICATE",
            detail: "the file is not UTF-8 text".to_owned(),
        })?;
        Ok(FederationCa {
            dir: dir.to_owned(),
            cert_pem,
            cert_der,
            anchor,
            key,
        })
    }

    /// The CA's key as a COSE signer, for structures the federation itself signs (the directory).
    pub fn federation_signer(&self) -> Result<tsunagi_protocol::cose::Signer> {
        tsunagi_protocol::cose::Signer::from_pkcs8(
            &self.key.serialize_der(),
            vec![self.cert_der.to_vec()],
        )
        .map_err(|e| CertError::KeyType {
            path: self.dir.join(CA_KEY_FILE),
            found: e.to_string(),
        })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA's name (its certificate's common name).
    pub fn name(&self) -> &str {
        &self.anchor.name
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM (as stored in `ca.pem`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// When the CA certificate expires, in Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.anchor.not_after
    }

    /// The CA's current CRL (`crl.pem`), checked against the CA key.
    pub fn crl(&self) -> Result<RevocationList> {
        let path = self.dir.join(CRL_FILE);
        let crl = load_crl(&path)?;
        crl.verify_signed_by(&self.cert_der)?;
        Ok(crl)
    }

    /// A verifier that trusts this CA with its current CRL.
    pub fn trust(&self) -> Result<FederationTrust> {
        let crl = self.crl()?;
        FederationTrust::new(self.cert_der.to_vec(), Some(crl.der()))
    }

    /// An rcgen issuer built from the stored CA certificate, signing with the CA key.
    pub(crate) fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_der(&self.cert_der, &self.key)
            .map_err(|e| CertError::generate("CA issuer", e))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn init_writes_the_ca_and_load_reads_it_back() {
        let tmp = TempDir::new("ca-init");
        let ca = FederationCa::init(tmp.path(), "Tokyo sample federation CA").unwrap();
        for f in [CA_CERT_FILE, CA_KEY_FILE, CRL_FILE, ISSUED_FILE] {
            assert!(tmp.path().join(f).is_file(), "{f}");
        }
        let mode = std::fs::metadata(tmp.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = FederationCa::load(tmp.path()).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        assert_eq!(loaded.name(), "Tokyo sample federation CA");
        let crl = loaded.crl().unwrap();
        assert_eq!(crl.number, 1);
        assert!(crl.revoked.is_empty());
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let tmp = TempDir::new("ca-twice");
        let first = FederationCa::init(tmp.path(), "CA").unwrap();
        let err = FederationCa::init(tmp.path(), "CA").unwrap_err();
        assert!(matches!(err, CertError::CaExists { .. }), "{err}");
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        // The original CA is untouched.
        assert_eq!(
            FederationCa::load(tmp.path()).unwrap().cert_der(),
            first.cert_der()
        );
    }

    #[test]
    fn load_reports_missing_and_bad_files() {
        let tmp = TempDir::new("ca-bad");
        let err = FederationCa::load(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("tsunagi certs init"), "{err}");

        FederationCa::init(tmp.path(), "CA").unwrap();
        std::fs::write(tmp.path().join(CA_CERT_FILE), "not a pem file").unwrap();
        let err = FederationCa::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CertError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");

        // A key from another CA does not match the certificate.
        let other = TempDir::new("ca-other");
        let other_ca = FederationCa::init(other.path(), "Other").unwrap();
        std::fs::write(tmp.path().join(CA_CERT_FILE), other_ca.cert_pem()).unwrap();
        let err = FederationCa::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = TempDir::new("ca-name");
        for name in ["", "  ", "a\nb", &"x".repeat(65)] {
            let err = FederationCa::init(tmp.path(), name).unwrap_err();
            assert!(matches!(err, CertError::InvalidInput { .. }), "{err}");
        }
    }

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
