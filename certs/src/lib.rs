//! # tsunagi-certs
//!
//! The federation PKI of tsunagi. A federation CA issues each gateway two Ed25519 certificates,
//! both naming the gateway's org as the URI SAN `urn:tsunagi:org:<scheme>:<code>`: a TLS
//! certificate (serverAuth + clientAuth) for QUIC with mutual TLS, and a document-signing
//! certificate (digitalSignature, EKU id-kp-documentSigning) for COSE_Sign1 signatures.
//! Revocation is by CRL.
//!
//! | module | owns |
//! |---|---|
//! | [`ca`] | creating and opening a CA directory ([`FederationCa`]) |
//! | [`issue`] | issuing a gateway's TLS and signing certificates |
//! | [`registry`] | `issued.json`, the CA's record of what it issued ([`IssuedRecord`]) |
//! | [`crl`] | reading the CRL ([`RevocationList`]) |
//! | [`revoke`] | changing the CRL: revoking, re-signing |
//! | [`cross`] | issuing cross-certificates that recognise other prefectures' CAs |
//! | [`recognised`] | a recognised CA as the path validator sees it ([`recognised::Recognised`]) |
//! | [`inspect`] | describing a certificate for people ([`CertInfo`]) |
//! | [`verify`] | checking signer chains ([`FederationTrust`], a [`ChainVerifier`]) and TLS peer orgs |
//! | [`credentials`] | loading a gateway's own keys and certificates ([`Credentials`]) |
//! | [`rotate`] | a new credential set in place of the old one, the old kept beside it |
//! | [`local`] | who may read the secrets and write the directories on this machine |
//! | [`error`] | the error type ([`CertError`]) |
//!
//! Everything is Ed25519 with ring; no aws-lc, no OpenSSL. Private keys are PKCS#8 PEM files
//! created with mode 0600 and refused when other accounts can read them. Functions that depend on the time have an `_at` variant taking it.
//!
//! [`ChainVerifier`]: tsunagi_protocol::cose::ChainVerifier

pub mod ca;
pub mod credentials;
pub mod crl;
pub mod cross;
pub mod error;
pub mod inspect;
pub mod issue;
pub mod local;
pub mod recognised;
pub mod registry;
pub mod revoke;
pub mod rotate;
pub mod verify;

mod files;
mod mint;
mod x509;

pub use ca::FederationCa;
pub use credentials::Credentials;
pub use crl::{load_crl, RevocationList, RevokedEntry};
pub use error::{CertError, Result};
pub use inspect::{CertInfo, CertKind};
pub use issue::IssuedCredentials;
pub use registry::IssuedRecord;
pub use verify::{org_of_certificate, FederationSigner, FederationTrust, FEDERATION_ORG};

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    use tsunagi_protocol::org::OrgId;

    /// A unique directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir().join(format!(
                "tsunagi-certs-{name}-{}-{n}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn org(s: &str) -> OrgId {
        s.parse().unwrap()
    }
}
