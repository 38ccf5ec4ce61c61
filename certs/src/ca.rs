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
//! Issuing lives in [`crate::issue`], revoking in [`crate::revoke`].

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls_pki_types::CertificateDer;
use tsunagi_protocol::Timestamp;

use crate::crl::{load_crl, RevocationList};
use crate::error::{CertError, Result};
use crate::files;
use crate::mint::{generate_ed25519_key, random_serial, to_datetime, unix};
use crate::registry::IssuedRegistry;
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
}
