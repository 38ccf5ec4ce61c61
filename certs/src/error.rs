//! The crate's error type.
//!
//! One enum, [`CertError`], for every failure in the crate. Each message says what failed, names
//! the file or certificate involved and what to do about it. Messages never contain key material:
//! at most a certificate's subject, serial number, dates and file paths.

use std::io;
use std::path::PathBuf;

use tsunagi_protocol::cose::ChainError;
use tsunagi_protocol::org::{OrgId, OrgIdError};

/// Result alias for this crate.
pub type Result<T, E = CertError> = std::result::Result<T, E>;

/// Everything that can go wrong creating, reading or checking federation certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file or directory could not be read, created or written.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", "write", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A CA directory lacks one of its files.
    #[error("no federation CA in {}: {} is missing; create one with `tsunagi certs init`", dir.display(), missing)]
    NoCa {
        /// The CA directory.
        dir: PathBuf,
        /// The missing file name.
        missing: &'static str,
    },

    /// `init` found an existing CA.
    #[error(
        "a federation CA already exists in {} ({} is present); refusing to overwrite it: \
         choose another directory, or move the old CA away deliberately",
        dir.display(), file.display()
    )]
    CaExists {
        /// The CA directory.
        dir: PathBuf,
        /// The file that is already there.
        file: PathBuf,
    },

    /// `issue` would overwrite existing credentials.
    #[error(
        "{} already exists; refusing to overwrite credentials that may be in use: \
         issue into a new, empty directory and swap it in",
        path.display()
    )]
    CredentialsExist {
        /// The file that is already there.
        path: PathBuf,
    },

    /// A file does not contain the expected PEM block.
    #[error("{} holds no usable PEM {label} block ({detail}); expected a file written by `tsunagi certs`", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The expected PEM label, e.g. `CERTIFICATE`.
        label: &'static str,
        /// What the PEM parser reported.
        detail: String,
    },

    /// DER bytes are not a well-formed certificate or CRL.
    #[error("{what} is not a well-formed X.509 {object}: {detail}")]
    Malformed {
        /// Which input (a file path or "signer certificate").
        what: String,
        /// `certificate` or `CRL`.
        object: &'static str,
        /// What the parser reported.
        detail: String,
    },

    /// A private key is not an Ed25519 PKCS#8 key.
    #[error(
        "key {} is {found}, not an Ed25519 PKCS#8 key; tsunagi uses Ed25519 only: \
         issue new credentials with `tsunagi certs issue`",
        path.display()
    )]
    KeyType {
        /// The key file.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },

    /// A private key does not match the public key in its certificate.
    #[error(
        "key {} does not belong to certificate {}; keep each .key beside the .pem it was issued with",
        key.display(), cert.display()
    )]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },

    /// A certificate's key or signature is not Ed25519.
    #[error("{what} uses {found}, not Ed25519; tsunagi certificates are Ed25519 only")]
    Algorithm {
        /// Which certificate or CRL, and which part.
        what: String,
        /// The algorithm OID found.
        found: String,
    },

    /// A certificate issued by another prefecture's CA, recognised by cross-certificate, names
    /// an org outside that prefecture.
    #[error("{org} is not in prefecture {prefecture}, whose CA {ca:?} issued the certificate: a recognised prefecture's CA vouches only for its own prefecture's organisations (and never for ot: ids)")]
    OutsidePrefecture {
        /// The org the certificate names.
        org: OrgId,
        /// The recognised CA's name.
        ca: String,
        /// The prefecture the cross-certificate names.
        prefecture: OrgId,
    },

    /// A caller-supplied value was refused before anything was written.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidInput {
        /// Which input.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// rcgen could not build or sign a certificate or CRL.
    #[error("could not generate the {what}: {detail}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's error.
        detail: String,
    },

    /// A signer chain with the wrong number of certificates.
    #[error("signer chain has {0} certificates; expected the signing certificate, optionally followed by the federation CA certificate")]
    ChainLength(usize),

    /// A certificate issued by some other CA.
    #[error(
        "certificate {subject:?} was not issued by the federation CA {ca:?} (its issuer is {issuer:?}); \
         it belongs to another federation or an old CA: obtain credentials from this federation's CA"
    )]
    ForeignIssuer {
        /// The certificate's subject common name.
        subject: String,
        /// The certificate's issuer common name.
        issuer: String,
        /// The federation CA's common name.
        ca: String,
    },

    /// An x5chain whose CA certificate is not the federation CA.
    #[error(
        "the signer chain carries a CA certificate {found:?} that is not the federation CA {ca:?} \
         (a different certificate, whatever its name): it was signed in another federation or under an old CA"
    )]
    ForeignChainCa {
        /// The common name of the CA certificate in the chain.
        found: String,
        /// The federation CA's common name.
        ca: String,
    },

    /// A certificate whose signature does not verify under the CA key.
    #[error(
        "the signature on certificate {subject:?} does not verify under the federation CA key {ca:?}: \
         the certificate was altered or forged; do not trust it"
    )]
    BadSignature {
        /// The certificate's subject common name.
        subject: String,
        /// The federation CA's common name.
        ca: String,
    },

    /// A certificate past its `notAfter`.
    #[error("certificate {subject:?} (serial {serial}) expired on {not_after}; issue a new one with `tsunagi certs issue`")]
    Expired {
        /// Subject common name.
        subject: String,
        /// Serial number, hex.
        serial: String,
        /// `notAfter`, formatted in UTC.
        not_after: String,
    },

    /// A certificate before its `notBefore`.
    #[error("certificate {subject:?} (serial {serial}) is not valid until {not_before}; check this machine's clock, or wait")]
    NotYetValid {
        /// Subject common name.
        subject: String,
        /// Serial number, hex.
        serial: String,
        /// `notBefore`, formatted in UTC.
        not_before: String,
    },

    /// The federation CA certificate itself is outside its validity period.
    #[error(
        "the federation CA certificate {ca:?} is not valid at {now} (valid from {not_before} to {not_after}); \
         the federation must set up a new CA with `tsunagi certs init`"
    )]
    CaNotValid {
        /// The CA's common name.
        ca: String,
        /// The time checked.
        now: String,
        /// `notBefore`, formatted in UTC.
        not_before: String,
        /// `notAfter`, formatted in UTC.
        not_after: String,
    },

    /// A certificate listed in the federation CRL.
    #[error("certificate {subject:?} (serial {serial}) is revoked by the federation CRL; issue new credentials with `tsunagi certs issue`")]
    Revoked {
        /// Subject common name.
        subject: String,
        /// Serial number, hex.
        serial: String,
    },

    /// The X.509 path validator refused a signer certificate for a reason none of the other
    /// variants names.
    #[error("certificate {subject:?} (serial {serial}) does not chain to the federation CA {ca:?}: {detail}")]
    PathInvalid {
        /// Subject common name.
        subject: String,
        /// Serial number, hex.
        serial: String,
        /// The federation CA's common name.
        ca: String,
        /// What the validator reported.
        detail: String,
    },

    /// A certificate that may not sign documents (e.g. the TLS certificate).
    #[error("certificate {subject:?} cannot sign documents: {reason}")]
    NotSigningCert {
        /// Subject common name.
        subject: String,
        /// Why (e.g. "it is a TLS certificate: sign with sign.pem, not tls.pem").
        reason: String,
    },

    /// A certificate file holds a different kind of certificate than expected.
    #[error("{} holds a {found} certificate, expected a {expected} certificate; the files may have been swapped", path.display())]
    WrongKind {
        /// The certificate file.
        path: PathBuf,
        /// The kind expected there.
        expected: &'static str,
        /// The kind found.
        found: &'static str,
    },

    /// A certificate without exactly one org URI SAN.
    #[error(
        "certificate {subject:?} must carry exactly one {prefix}<org> URI subject alternative name, found {found}; \
         issue it with `tsunagi certs issue`",
        prefix = tsunagi_protocol::org::ORG_URI_PREFIX
    )]
    OrgSan {
        /// Subject common name.
        subject: String,
        /// How many org URIs were found.
        found: usize,
    },

    /// An org URI SAN that does not parse as an org id.
    #[error("certificate {subject:?} names org {uri:?}, which is not a valid org id: {source}")]
    BadOrg {
        /// Subject common name.
        subject: String,
        /// The URI found.
        uri: String,
        /// Why it does not parse.
        #[source]
        source: OrgIdError,
    },

    /// A CRL not signed by the federation CA (or not issued by it).
    #[error("the CRL {what} is not from the federation CA {ca:?}: {reason}; fetch the current crl.pem from the federation CA")]
    CrlNotTrusted {
        /// Which CRL (file path or "given").
        what: String,
        /// The federation CA's common name.
        ca: String,
        /// Why it was refused.
        reason: String,
    },

    /// `revoke` on a certificate already in the CRL.
    #[error("certificate {subject:?} (serial {serial}) is already revoked; nothing to do")]
    AlreadyRevoked {
        /// Subject common name (or the serial when only that is known).
        subject: String,
        /// Serial number, hex.
        serial: String,
    },

    /// `revoke` on a certificate some other CA issued.
    #[error("certificate {subject:?} was not issued by the CA in {}; revoke it with the CA that issued it", dir.display())]
    NotIssuedHere {
        /// Subject common name.
        subject: String,
        /// This CA's directory.
        dir: PathBuf,
    },

    /// `revoke_serial` with a serial the CA never issued.
    #[error("serial {serial} is not recorded in {}; check the serial (hex) against that file", path.display())]
    UnknownSerial {
        /// The serial given.
        serial: String,
        /// The issued-certificates record.
        path: PathBuf,
    },

    /// `issued.json` could not be read or written as JSON.
    #[error("{} is corrupt: {detail}; restore it from a backup", path.display())]
    Registry {
        /// The file.
        path: PathBuf,
        /// What the JSON parser reported.
        detail: String,
    },

    /// A credentials directory whose files do not belong together.
    #[error("credentials in {} do not belong together: {detail}; issue a fresh set with `tsunagi certs issue`", dir.display())]
    Inconsistent {
        /// The credentials directory.
        dir: PathBuf,
        /// What disagrees.
        detail: String,
    },

    /// A private key other accounts can read, or one owned by another account.
    #[error(transparent)]
    Exposed(#[from] crate::local::Exposed),
}

impl CertError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CertError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn generate(what: &'static str, e: rcgen::Error) -> Self {
        CertError::Generate {
            what,
            detail: e.to_string(),
        }
    }
}

impl From<CertError> for ChainError {
    fn from(e: CertError) -> Self {
        ChainError(e.to_string())
    }
}
