//! The CA's record of what it issued: `issued.json` ([`IssuedRecord`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tsunagi_protocol::org::OrgId;

use crate::error::{CertError, Result};
use crate::files;
use crate::x509::{self, CertKind};

/// One certificate the CA issued, as recorded in `issued.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// The org it was issued to.
    pub org: OrgId,
    /// `tls` or `sign`.
    pub kind: CertKind,
    /// Subject common name.
    pub subject: String,
    /// The TLS host name or address (TLS certificates only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// When it was revoked, Unix seconds.
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// The contents of `issued.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuedRegistry {
    pub(crate) certificates: Vec<IssuedRecord>,
}

impl IssuedRegistry {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let bytes = files::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| CertError::Registry {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| CertError::Registry {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        json.push(b'\n');
        files::replace(path, &json)
    }

    pub(crate) fn find(&self, serial: &[u8]) -> Option<&IssuedRecord> {
        self.certificates
            .iter()
            .find(|r| record_serial(r).as_deref() == Some(serial))
    }

    /// Marks a serial revoked; returns whether it was found.
    pub(crate) fn mark_revoked(&mut self, serial: &[u8], at: i64) -> bool {
        match self
            .certificates
            .iter_mut()
            .find(|r| record_serial(r).as_deref() == Some(serial))
        {
            Some(r) => {
                r.revoked_at = Some(at);
                true
            }
            None => false,
        }
    }
}

fn record_serial(r: &IssuedRecord) -> Option<Vec<u8>> {
    x509::parse_hex(&r.serial).map(|s| x509::normalize_serial(&s))
}
