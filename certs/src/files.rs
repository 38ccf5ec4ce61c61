//! File handling (crate-private): reading PEM certificates, CRLs and Ed25519 keys with errors that
//! name the file, creating private directories, writing keys with mode 0600 from the start, and
//! replacing files atomically.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};

use crate::error::{CertError, Result};

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| CertError::io("read", path, e))
}

fn pem_error(path: &Path, label: &'static str, e: pem::Error) -> CertError {
    let detail = match e {
        pem::Error::NoItemsFound => format!("no {label} block found"),
        other => other.to_string(),
    };
    CertError::Pem {
        path: path.to_owned(),
        label,
        detail,
    }
}

/// Reads the first `CERTIFICATE` block of a PEM file.
pub(crate) fn read_cert_pem(path: &Path) -> Result<CertificateDer<'static>> {
    let bytes = read(path)?;
    CertificateDer::from_pem_slice(&bytes).map_err(|e| pem_error(path, "CERTIFICATE", e))
}

/// Reads the first `X509 CRL` block of a PEM file.
pub(crate) fn read_crl_pem(path: &Path) -> Result<CertificateRevocationListDer<'static>> {
    let bytes = read(path)?;
    CertificateRevocationListDer::from_pem_slice(&bytes).map_err(|e| pem_error(path, "X509 CRL", e))
}

/// Reads an Ed25519 PKCS#8 private key from a PEM file; returns it and its public key.
///
/// Keys of other types (RSA, EC, other PKCS#8 algorithms) are refused with a message that says
/// what was found.
///
/// The file must be private to this account ([`crate::local::check_secret`]).
pub(crate) fn read_ed25519_key(path: &Path) -> Result<(PrivatePkcs8KeyDer<'static>, [u8; 32])> {
    let bytes = crate::local::read_secret(path).map_err(|e| CertError::io("read", path, e))??;
    let key =
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_error(path, "PRIVATE KEY", e))?;
    let key_type = |found: &str| CertError::KeyType {
        path: path.to_owned(),
        found: found.to_owned(),
    };
    let pkcs8 = match key {
        PrivateKeyDer::Pkcs8(k) => k,
        PrivateKeyDer::Pkcs1(_) => return Err(key_type("an RSA (PKCS#1) key")),
        PrivateKeyDer::Sec1(_) => return Err(key_type("an EC (SEC1) key")),
        _ => return Err(key_type("an unsupported key format")),
    };
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der())
        .map_err(|_| key_type("a PKCS#8 key of another algorithm (or a damaged one)"))?;
    let mut public = [0u8; 32];
    public.copy_from_slice(pair.public_key().as_ref());
    Ok((pkcs8, public))
}

/// Creates `dir` (and parents) if missing; directories created here get mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CertError::io("create directory", dir, e))
}

fn write_new_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CertError::CredentialsExist {
                    path: path.to_owned(),
                }
            } else {
                CertError::io("create", path, e)
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CertError::io("write", path, e))
}

/// Creates a new secret file with mode 0600 (never widened by a later chmod); refuses to
/// overwrite.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    write_new_with_mode(path, bytes, 0o600)
}

/// Creates a new public file (mode 0644 before umask); refuses to overwrite.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    write_new_with_mode(path, bytes, 0o644)
}

/// Replaces `path` atomically: writes a temporary file beside it, syncs it, renames it over.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let _ = fs::remove_file(&tmp);
    write_new_with_mode(&tmp, bytes, 0o644)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CertError::io("replace", path, e)
    })?;
    if let Some(dir) = path.parent() {
        // Make the rename durable; failure to sync a directory is not fatal on all filesystems.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_overwrites_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("tsunagi-files-{}", std::process::id()));
        create_private_dir(&dir).unwrap();
        let path = dir.join("x.txt");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert!(matches!(
            write_secret(&path, b"x"),
            Err(CertError::CredentialsExist { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
