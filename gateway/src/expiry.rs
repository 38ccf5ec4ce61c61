//! When the gateway's credentials, the CRL and the directory run out, and what to say about it.
//!
//! Five things expire under a running gateway: its TLS certificate and its signing certificate
//! (until renewed with `tsunagi certs issue` and a restart), the federation CA certificate, the
//! CRL (its `nextUpdate`: after it, revocations may be missing) and the signed directory (its
//! `expires` date, a Japan date: valid through that day). Each is read from what the gateway
//! has loaded, not from the files, so a renewed file that was not yet picked up still shows as
//! expiring. An [`Expiry`] says when and how to fix it; [`ExpiryWarnings`] (`[expiry_warnings]`
//! in `gateway.toml`) says how early to warn.

use serde::Deserialize;
use tsunagi_protocol::Timestamp;

/// How many days ahead of each expiry to warn (`[expiry_warnings]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryWarnings {
    /// TLS, signing and CA certificates (default 30).
    pub certificate_days: u32,
    /// The directory's `expires` date (default 30).
    pub directory_days: u32,
    /// The CRL's next update (default 2; a CRL is re-issued every few days).
    pub crl_days: u32,
}

impl Default for ExpiryWarnings {
    fn default() -> Self {
        Self {
            certificate_days: 30,
            directory_days: 30,
            crl_days: 2,
        }
    }
}

/// What expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiring {
    /// The gateway's TLS certificate.
    TlsCertificate,
    /// The gateway's document-signing certificate.
    SigningCertificate,
    /// The federation CA certificate.
    CaCertificate,
    /// The CRL's next update.
    Crl,
    /// The signed directory.
    Directory,
}

impl Expiring {
    /// The metric label (`what="…"`).
    pub fn label(self) -> &'static str {
        match self {
            Expiring::TlsCertificate => "tls_certificate",
            Expiring::SigningCertificate => "signing_certificate",
            Expiring::CaCertificate => "ca_certificate",
            Expiring::Crl => "crl_next_update",
            Expiring::Directory => "directory",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Expiring::TlsCertificate => "the TLS certificate",
            Expiring::SigningCertificate => "the signing certificate",
            Expiring::CaCertificate => "the federation CA certificate",
            Expiring::Crl => "the CRL's next update",
            Expiring::Directory => "the directory",
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            Expiring::TlsCertificate | Expiring::SigningCertificate => {
                "ask the federation CA for new credentials (`tsunagi certs issue`) and restart the gateway"
            }
            Expiring::CaCertificate => {
                "the federation must roll over its CA; install the new ca.pem and credentials and restart"
            }
            Expiring::Crl => {
                "fetch the current CRL from the federation; the gateway reloads the file when it changes"
            }
            Expiring::Directory => {
                "install the federation's new signed directory; the gateway reloads the file when it changes"
            }
        }
    }
}

/// One expiry of something the gateway has loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// What.
    pub what: Expiring,
    /// The file it was loaded from.
    pub file: String,
    /// When it stops being valid (Unix seconds); `None` for a CRL without a next update.
    pub at: Option<i64>,
}

/// How an [`Expiry`] stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Standing {
    /// More than the warning threshold ahead (or never).
    Fine,
    /// Within the warning threshold: days left.
    Soon(f64),
    /// Already past.
    Expired,
}

impl Expiry {
    /// Days left at `now` (negative once past); `None` when it never expires.
    pub fn days_left(&self, now: Timestamp) -> Option<f64> {
        self.at.map(|at| (at as f64 - now.0 as f64) / 86_400.0)
    }

    /// The threshold, in days, that applies to it.
    pub fn threshold(&self, w: &ExpiryWarnings) -> u32 {
        match self.what {
            Expiring::TlsCertificate | Expiring::SigningCertificate | Expiring::CaCertificate => {
                w.certificate_days
            }
            Expiring::Crl => w.crl_days,
            Expiring::Directory => w.directory_days,
        }
    }

    /// Fine, soon or expired at `now`.
    pub fn standing(&self, now: Timestamp, w: &ExpiryWarnings) -> Standing {
        match self.days_left(now) {
            None => Standing::Fine,
            Some(d) if d <= 0.0 => Standing::Expired,
            Some(d) if d <= f64::from(self.threshold(w)) => Standing::Soon(d),
            Some(_) => Standing::Fine,
        }
    }

    /// The line an operator reads: what, from which file, when, and what to do; `None` when
    /// it is fine.
    pub fn message(&self, now: Timestamp, w: &ExpiryWarnings) -> Option<String> {
        let when = self.at.map(fmt_utc).unwrap_or_default();
        let (name, file, remedy) = (self.what.name(), &self.file, self.what.remedy());
        match self.standing(now, w) {
            Standing::Fine => None,
            Standing::Soon(days) => {
                let days = days.floor() as i64;
                let left = match days {
                    0 => "in less than a day".to_owned(),
                    1 => "in 1 day".to_owned(),
                    n => format!("in {n} days"),
                };
                let verb = if self.what == Expiring::Crl {
                    "is due"
                } else {
                    "expires"
                };
                Some(format!(
                    "{name} ({file}) {verb} {left}, on {when}: {remedy}"
                ))
            }
            Standing::Expired => {
                let verb = if self.what == Expiring::Crl {
                    "was due"
                } else {
                    "expired"
                };
                Some(format!("{name} ({file}) {verb} on {when}: {remedy}"))
            }
        }
    }
}

/// `2027-01-31 15:00 UTC`.
pub fn fmt_utc(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(what: Expiring, at: i64) -> Expiry {
        Expiry {
            what,
            file: "creds/tls.pem".into(),
            at: Some(at),
        }
    }

    #[test]
    fn thresholds_pick_fine_soon_and_expired() {
        let w = ExpiryWarnings::default();
        let now = Timestamp(1_800_000_000);
        let day = 86_400;
        let t = |d: i64| now.0 as i64 + d * day;
        assert_eq!(
            exp(Expiring::TlsCertificate, t(31)).standing(now, &w),
            Standing::Fine
        );
        assert!(matches!(
            exp(Expiring::TlsCertificate, t(29)).standing(now, &w),
            Standing::Soon(d) if (d - 29.0).abs() < 1e-9
        ));
        assert_eq!(exp(Expiring::Crl, t(3)).standing(now, &w), Standing::Fine);
        assert!(matches!(
            exp(Expiring::Crl, t(1)).standing(now, &w),
            Standing::Soon(_)
        ));
        assert_eq!(
            exp(Expiring::Directory, t(-1)).standing(now, &w),
            Standing::Expired
        );
        let never = Expiry {
            what: Expiring::Crl,
            file: "crl.pem".into(),
            at: None,
        };
        assert_eq!(never.standing(now, &w), Standing::Fine);
        assert_eq!(never.message(now, &w), None);
        let m = exp(Expiring::TlsCertificate, t(5))
            .message(now, &w)
            .unwrap();
        assert!(
            m.starts_with("the TLS certificate (creds/tls.pem) expires in 5 days, on 2027-"),
            "{m}"
        );
        assert!(m.contains("tsunagi certs issue"), "{m}");
        let m = exp(Expiring::Crl, t(-2)).message(now, &w).unwrap();
        assert!(
            m.contains("the CRL's next update (creds/tls.pem) was due on"),
            "{m}"
        );
        assert_eq!(fmt_utc(0), "1970-01-01 00:00 UTC");
    }
}
