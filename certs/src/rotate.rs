//! Rotating a gateway's credentials in place ([`FederationCa::rotate`]): a new TLS and signing
//! key pair with new certificates for the same org and host, written into the credentials
//! directory the gateway loads, with the previous files kept beside them in `old-<time>/`.
//!
//! The running gateway notices the changed files and switches to the new credentials without a
//! restart. Peers need nothing: both the old and the new certificates chain to the federation
//! CA, so peers accept either until the old ones expire or are revoked (`tsunagi certs revoke
//! --cert creds/old-<time>/tls.pem`, and `sign.pem`). Documents signed with the old key carry the
//! old signing certificate in their `x5chain` and stay verifiable as long as it is.
//!
//! Order: the new set is issued into a private staging directory inside the credentials
//! directory; the old four files are hard-linked into `old-<time>/`; then each new file is
//! renamed over the old one (keys before certificates) and the directory fsynced. A gateway
//! reading the directory mid-way finds a key that does not match its certificate, refuses that
//! load and keeps its current credentials until the next change completes the set.

use std::fs::File;
use std::path::{Path, PathBuf};

use tsunagi_protocol::Timestamp;

use crate::ca::FederationCa;
use crate::credentials::Credentials;
use crate::error::{CertError, Result};
use crate::issue::{IssuedCredentials, SIGN_CERT_FILE, SIGN_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use crate::x509;

/// What [`FederationCa::rotate`] did.
#[derive(Debug)]
pub struct Rotation {
    /// The new certificates' records.
    pub issued: IssuedCredentials,
    /// Where the previous files are kept.
    pub old_dir: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> CertError {
    CertError::io("rotate", path, e)
}

impl FederationCa {
    /// Issues a new credential set for the org of the credentials in `creds_dir` (and the host
    /// of its current TLS certificate, as recorded in this CA's `issued.json`, unless `host` is
    /// given) and puts it in place, keeping the previous files in `creds_dir/old-<time>/`.
    pub fn rotate(
        &self,
        creds_dir: impl AsRef<Path>,
        host: Option<&str>,
        validity_days: u32,
    ) -> Result<Rotation> {
        let dir = creds_dir.as_ref();
        let current = Credentials::load(dir)?;
        let host = match host {
            Some(h) => h.to_owned(),
            None => {
                let fp = x509::hex(&x509::sha256(&current.tls_cert));
                self.issued()?
                    .into_iter()
                    .find(|r| r.fingerprint == fp)
                    .and_then(|r| r.host)
                    .ok_or_else(|| CertError::InvalidInput {
                        field: "host",
                        value: String::new(),
                        reason: format!(
                            "this CA has no record of {}; give the gateway's host with --host",
                            dir.join(TLS_CERT_FILE).display()
                        ),
                    })?
            }
        };
        let now = x509::now_unix().max(0) as u64;
        let staging = dir.join(format!(".next-{now}"));
        let _ = std::fs::remove_dir_all(&staging);
        let issued = self.issue_at(&current.org, &host, &staging, validity_days, Timestamp(now))?;
        let old_dir = dir.join(format!("old-{now}"));
        crate::files::create_private_dir(&old_dir)?;
        let files = [SIGN_KEY_FILE, TLS_KEY_FILE, SIGN_CERT_FILE, TLS_CERT_FILE];
        for f in files {
            std::fs::hard_link(dir.join(f), old_dir.join(f)).map_err(|e| io(&old_dir, e))?;
        }
        File::open(&old_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&old_dir, e))?;
        for f in files {
            std::fs::rename(staging.join(f), dir.join(f)).map_err(|e| io(&dir.join(f), e))?;
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
        let _ = std::fs::remove_dir_all(&staging);
        Ok(Rotation {
            issued: IssuedCredentials {
                dir: dir.to_owned(),
                ..issued
            },
            old_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{org, TempDir};

    #[test]
    fn rotation_replaces_the_set_and_keeps_the_old_one() {
        let tmp = TempDir::new("rotate");
        let ca = FederationCa::init(tmp.path().join("ca"), "CA").unwrap();
        let out = tmp.path().join("creds");
        ca.issue(&org("lg:131059"), "127.0.0.1", &out, 30).unwrap();
        let before = Credentials::load(&out).unwrap();
        let r = ca.rotate(&out, None, 30).unwrap();
        let after = Credentials::load(&out).unwrap();
        assert_eq!(after.org, before.org);
        assert_ne!(after.signing_fingerprint, before.signing_fingerprint);
        assert_ne!(after.tls_cert, before.tls_cert);
        let old = Credentials::load(&r.old_dir);
        // The old directory has no ca.pem; its certificates are the previous ones.
        assert!(old.is_err());
        assert_eq!(
            std::fs::read(r.old_dir.join(SIGN_KEY_FILE)).unwrap().len(),
            std::fs::read(out.join(SIGN_KEY_FILE)).unwrap().len()
        );
        assert_eq!(r.issued.tls.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(ca.issued().unwrap().len(), 4);
    }
}
