//! A gateway's own credentials, loaded from the directory [`FederationCa::issue`] wrote:
//! [`Credentials`] gives the signing key and chain for COSE signatures and the TLS certificate
//! and key for rustls/quinn, after checking that the files belong together.
//!
//! [`FederationCa::issue`]: crate::ca::FederationCa::issue

use std::fmt;
use std::path::{Path, PathBuf};

use ring::signature::Ed25519KeyPair;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tsunagi_protocol::org::OrgId;

use crate::ca::CA_CERT_FILE;
use crate::error::{CertError, Result};
use crate::files;
use crate::inspect::CertKind;
use crate::issue::{SIGN_CERT_FILE, SIGN_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use crate::x509::{self, Anchor};

/// A gateway's TLS and signing credentials.
///
/// `Debug` shows the org, directory and fingerprint, never key material.
pub struct Credentials {
    /// The directory they were loaded from.
    pub dir: PathBuf,
    /// The org both certificates name.
    pub org: OrgId,
    /// The Ed25519 signing key, PKCS#8 (for `Ed25519KeyPair::from_pkcs8_maybe_unchecked`).
    pub signing_key: PrivatePkcs8KeyDer<'static>,
    /// The signing certificate chain for `x5chain`: `[sign.pem, ca.pem]`, DER.
    pub signing_chain: Vec<Vec<u8>>,
    /// SHA-256 of the signing certificate's DER (the `kid` of what it signs).
    pub signing_fingerprint: [u8; 32],
    /// The TLS certificate.
    pub tls_cert: CertificateDer<'static>,
    /// The TLS private key (Ed25519, PKCS#8).
    pub tls_key: PrivateKeyDer<'static>,
    /// The federation CA certificate (the TLS trust anchor).
    pub ca_cert: CertificateDer<'static>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("dir", &self.dir)
            .field("org", &self.org)
            .field("signing_fingerprint", &x509::hex(&self.signing_fingerprint))
            .finish_non_exhaustive()
    }
}

struct LoadedPair {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    org: OrgId,
}

fn load_pair(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    expected: CertKind,
    anchor: &Anchor,
) -> Result<LoadedPair> {
    let cert_path = dir.join(cert_file);
    let key_path = dir.join(key_file);
    let cert = files::read_cert_pem(&cert_path)?;
    let parsed = x509::parse_cert(&cert, &cert_path.display().to_string())?;
    let kind = x509::classify(&parsed);
    if kind != expected {
        return Err(CertError::WrongKind {
            path: cert_path,
            expected: expected.as_str(),
            found: kind.as_str(),
        });
    }
    anchor
        .check_issued(&parsed)
        .map_err(|e| CertError::Inconsistent {
            dir: dir.to_owned(),
            detail: format!("{cert_file} does not chain to {CA_CERT_FILE}: {e}"),
        })?;
    let cert_key = x509::ed25519_public_key(&parsed)?;
    let org = x509::org_of(&parsed)?;
    let (key, public) = files::read_ed25519_key(&key_path)?;
    if public != cert_key {
        return Err(CertError::KeyMismatch {
            key: key_path,
            cert: cert_path,
        });
    }
    Ok(LoadedPair { cert, key, org })
}

impl Credentials {
    /// Loads `tls.pem`, `tls.key`, `sign.pem`, `sign.key` and `ca.pem` from `dir` and checks
    /// them: both keys are Ed25519 and match their certificates, `tls.pem` is a TLS certificate
    /// and `sign.pem` a signing certificate, both are issued by `ca.pem` and name the same org.
    ///
    /// Validity dates and revocation are not checked here: peers check those.
    pub fn load(dir: impl AsRef<Path>) -> Result<Credentials> {
        let dir = dir.as_ref();
        let ca_path = dir.join(CA_CERT_FILE);
        let ca_cert = files::read_cert_pem(&ca_path)?;
        let anchor = Anchor::from_der(&ca_cert, &ca_path.display().to_string())?;
        let tls = load_pair(dir, TLS_CERT_FILE, TLS_KEY_FILE, CertKind::Tls, &anchor)?;
        let sign = load_pair(
            dir,
            SIGN_CERT_FILE,
            SIGN_KEY_FILE,
            CertKind::Signing,
            &anchor,
        )?;
        if tls.org != sign.org {
            return Err(CertError::Inconsistent {
                dir: dir.to_owned(),
                detail: format!(
                    "{TLS_CERT_FILE} names org {} but {SIGN_CERT_FILE} names {}",
                    tls.org, sign.org
                ),
            });
        }
        Ok(Credentials {
            dir: dir.to_owned(),
            org: sign.org,
            signing_fingerprint: x509::sha256(&sign.cert),
            signing_chain: vec![sign.cert.to_vec(), ca_cert.to_vec()],
            signing_key: sign.key,
            tls_cert: tls.cert,
            tls_key: PrivateKeyDer::Pkcs8(tls.key),
            ca_cert,
        })
    }

    /// The signing key's PKCS#8 bytes.
    pub fn signing_key_pkcs8(&self) -> &[u8] {
        self.signing_key.secret_pkcs8_der()
    }

    /// The signing key as a ring key pair.
    pub fn signing_key_pair(&self) -> Result<Ed25519KeyPair> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(self.signing_key_pkcs8()).map_err(|_| {
            CertError::KeyType {
                path: self.dir.join(SIGN_KEY_FILE),
                found: "a key ring cannot load as Ed25519".to_owned(),
            }
        })
    }

    /// The TLS certificate chain to present: `[tls.pem, ca.pem]`.
    pub fn tls_cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.tls_cert.clone(), self.ca_cert.clone()]
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
    use ring::signature::KeyPair as _;
    use tsunagi_protocol::Timestamp;

    use super::*;
    use crate::ca::FederationCa;
    use crate::test_support::{org, TempDir};

    #[test]
    fn loads_what_issue_wrote() {
        let tmp = TempDir::new("creds-load");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let out = tmp.path().join("creds");
        let issued = ca
            .issue(&org("lg:132012"), "hachioji.example", &out, 30)
            .unwrap();
        let creds = Credentials::load(&out).unwrap();
        assert_eq!(creds.org, org("lg:132012"));
        assert_eq!(
            x509::hex(&creds.signing_fingerprint),
            issued.sign.fingerprint
        );
        assert_eq!(creds.signing_chain[1], ca.cert_der().to_vec());
        assert_eq!(creds.tls_cert_chain().len(), 2);

        // The signing key pairs with the chain the trust accepts.
        let pair = creds.signing_key_pair().unwrap();
        let id = ca
            .trust()
            .unwrap()
            .verify_signing_chain(&creds.signing_chain, Timestamp(x509::now_unix() as u64))
            .unwrap();
        assert_eq!(pair.public_key().as_ref(), &id.public_key);
        assert_eq!(id.fingerprint, creds.signing_fingerprint);

        let debug = format!("{creds:?}");
        assert!(
            debug.contains("lg:132012") && !debug.contains("signing_key:"),
            "{debug}"
        );
    }

    #[test]
    fn refuses_wrong_key_types_swaps_and_mismatches() {
        let tmp = TempDir::new("creds-bad");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        ca.issue(&org("lg:131121"), "setagaya.example", &a, 30)
            .unwrap();
        ca.issue(&org("lg:131121"), "setagaya.example", &b, 30)
            .unwrap();

        // An ECDSA key where the Ed25519 key should be.
        let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        fs::write(a.join(SIGN_KEY_FILE), ec.serialize_pem()).unwrap();
        let err = Credentials::load(&a).unwrap_err();
        assert!(matches!(err, CertError::KeyType { .. }), "{err}");
        assert!(err.to_string().contains("sign.key"), "{err}");
        assert!(!err.to_string().contains("BEGIN"), "{err}");

        // A key from another issuance.
        fs::copy(b.join(SIGN_KEY_FILE), a.join(SIGN_KEY_FILE)).unwrap();
        let err = Credentials::load(&a).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");

        // Swapped certificates.
        fs::copy(b.join(SIGN_KEY_FILE), b.join("k")).unwrap();
        fs::copy(b.join(TLS_CERT_FILE), b.join(SIGN_CERT_FILE)).unwrap();
        let err = Credentials::load(&b).unwrap_err();
        assert!(matches!(err, CertError::WrongKind { .. }), "{err}");

        // Garbage and missing files.
        fs::write(
            a.join(TLS_KEY_FILE),
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            Credentials::load(&a).unwrap_err(),
            CertError::Pem { .. }
        ));
        let err = Credentials::load(tmp.path().join("nowhere")).unwrap_err();
        assert!(matches!(err, CertError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nowhere"), "{err}");
    }

    #[test]
    fn refuses_credentials_from_another_ca() {
        let tmp = TempDir::new("creds-ca");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let other = FederationCa::init(tmp.path().join("other"), "Other").unwrap();
        let out = tmp.path().join("creds");
        ca.issue(&org("ot:mpd"), "police.example", &out, 30)
            .unwrap();
        fs::write(out.join(CA_CERT_FILE), other.cert_pem()).unwrap();
        let err = Credentials::load(&out).unwrap_err();
        assert!(matches!(err, CertError::Inconsistent { .. }), "{err}");
    }
}
