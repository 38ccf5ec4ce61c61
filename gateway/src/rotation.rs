//! Credential rotation without downtime, the gateway's side.
//!
//! `tsunagi certs rotate` ([`tsunagi_certs::FederationCa::rotate`]) puts a new TLS and signing
//! credential set for the same org into the credentials directory and keeps the old files in
//! `old-<time>/`. The running gateway watches the credential files (with the CRL and the
//! directory, every 2 s) and reloads them when they change, or at once on the control operation
//! `reload` (`{"op":"reload"}` on the control socket): new signatures (documents, envelopes, receipts, audit
//! checkpoints) use the new signing key, and new QUIC handshakes present the new TLS
//! certificate; live incoming connections finish on the old one. A set caught mid-rotation
//! (a key that does not match its certificate) is refused and the current one kept.
//!
//! Peers need nothing: every certificate the federation CA issued and has not revoked is
//! accepted, so the old and the new ones are both valid during the overlap. The signing
//! certificate travels in each COSE `x5chain`, so a receiver verifies whichever key signed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tsunagi_certs::issue::{SIGN_CERT_FILE, SIGN_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use tsunagi_certs::Credentials;
use tsunagi_protocol::cose::Signer;

use crate::config::Config;

/// The files of the gateway's own credentials, watched for a rotation.
pub fn credential_files(cfg: &Config) -> Vec<PathBuf> {
    [TLS_CERT_FILE, TLS_KEY_FILE, SIGN_CERT_FILE, SIGN_KEY_FILE]
        .iter()
        .map(|f| cfg.credentials.join(f))
        .collect()
}

/// What changes when a watched file is replaced: its modification time and its inode (a
/// rename keeps the time of the file renamed).
pub fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.ino()))
}

/// Loads the credentials of `cfg` and a signer for them, checking that they are for its org.
pub fn load_signer(cfg: &Config) -> Result<(Credentials, Signer), String> {
    let dir = &cfg.credentials;
    let creds = Credentials::load(dir).map_err(|e| e.to_string())?;
    if creds.org != cfg.org {
        return Err(format!(
            "{}: the credentials are for {} but the configuration says org = {}",
            dir.display(),
            creds.org,
            cfg.org
        ));
    }
    let signer = Signer::from_pkcs8(
        creds.signing_key.secret_pkcs8_der(),
        creds.signing_chain.clone(),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((creds, signer))
}
