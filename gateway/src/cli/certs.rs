//! `tsunagi certs …`: the federation CA, gateway certificates and revocation.

use std::path::PathBuf;

use clap::Subcommand;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tsunagi_certs::{CertInfo, FederationCa};
use tsunagi_protocol::OrgId;

use crate::files::{fail, now, write_atomic, CliResult, Fail};

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Create a federation CA (Ed25519) and an empty CRL in DIR.
    InitCa {
        /// Directory for ca.pem, ca.key (0600) and crl.pem; must not hold a CA already.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's name.
        #[arg(long, default_value = "tsunagi federation CA")]
        name: String,
    },
    /// Issue a gateway's TLS and signing certificates.
    Issue {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The gateway's org, e.g. lg:131059 or mi:1310000017.
        #[arg(long)]
        org: String,
        /// The gateway's host name (DNS SAN of the TLS certificate).
        #[arg(long)]
        host: String,
        /// Output directory for tls.pem, tls.key, sign.pem, sign.key (keys 0600) and ca.pem.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
    /// Issue a new credential set for the org of a credentials directory and put it in place,
    /// keeping the old files in DIR/old-<time>/; a running gateway switches to it by itself.
    Rotate {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The gateway's credentials directory.
        #[arg(long, value_name = "DIR")]
        creds: PathBuf,
        /// The host name for the new TLS certificate (default: the current one's).
        #[arg(long)]
        host: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
    /// Recognise another prefecture's CA: issue it a cross-certificate from this CA (revoke it
    /// with `certs revoke` to stop recognising that prefecture). Give the cross-certificate, the
    /// other CA's CRL and its signed directory to this prefecture's gateways (`[[recognise]]`).
    CrossSign {
        /// This prefecture's CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The other prefecture's CA certificate (its ca.pem).
        #[arg(long, value_name = "FILE")]
        other: PathBuf,
        /// The other prefecture's own org, lg:PP000C (e.g. lg:140007 for Kanagawa).
        #[arg(long)]
        prefecture: String,
        /// Where to write the cross-certificate (PEM).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Validity in days (never beyond either CA).
        #[arg(long, default_value_t = 1825)]
        days: u32,
    },
    /// Revoke a certificate: add it to the CA's CRL and re-sign the CRL.
    Revoke {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The certificate (PEM) to revoke.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
    },
    /// Show a certificate: org, kind, validity, fingerprint, and revocation status against a CRL.
    Show {
        /// The certificate (PEM).
        file: PathBuf,
        /// A CRL (PEM) to check it against.
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
        /// The federation directory (TOML, or signed with --ca), to show the org's role.
        #[arg(long, value_name = "FILE")]
        directory: Option<PathBuf>,
        /// The CA certificate a signed directory is verified against.
        #[arg(long, value_name = "CA.pem")]
        ca: Option<PathBuf>,
    },
}

fn parse_org(s: &str) -> CliResult<OrgId> {
    s.parse().map_err(|e| fail("--org", e))
}

pub(crate) fn run(cmd: CertsCommand) -> CliResult {
    match cmd {
        CertsCommand::InitCa { dir, name } => {
            let ca = FederationCa::init(&dir, &name).map_err(|e| Fail(e.to_string()))?;
            crate::outln!(
                "created CA {:?} in {} (ca.pem, ca.key, crl.pem)",
                ca.name(),
                dir.display()
            );
        }
        CertsCommand::Issue {
            ca,
            org,
            host,
            out,
            days,
        } => {
            let org = parse_org(&org)?;
            let ca = FederationCa::load(&ca).map_err(|e| Fail(e.to_string()))?;
            ca.issue(&org, &host, &out, days)
                .map_err(|e| Fail(e.to_string()))?;
            crate::outln!(
                "issued TLS and signing certificates for {org} ({host}) into {} (tls.pem, tls.key, sign.pem, sign.key, ca.pem)",
                out.display()
            );
        }
        CertsCommand::Rotate {
            ca,
            creds,
            host,
            days,
        } => {
            let ca = FederationCa::load(&ca).map_err(|e| Fail(e.to_string()))?;
            let r = ca
                .rotate(&creds, host.as_deref(), days)
                .map_err(|e| Fail(e.to_string()))?;
            crate::outln!(
                "rotated the credentials of {} in {}; the old ones are in {} (a running gateway switches to them within 2 seconds); peers accept both until the old certificates expire or are revoked",
                r.issued.org,
                creds.display(),
                r.old_dir.display()
            );
        }
        CertsCommand::CrossSign {
            ca,
            other,
            prefecture,
            out,
            days,
        } => {
            let prefecture: OrgId = prefecture.parse().map_err(|e| fail("--prefecture", e))?;
            let ca = FederationCa::load(&ca).map_err(|e| Fail(e.to_string()))?;
            let other_der = CertificateDer::from_pem_file(&other).map_err(|e| {
                fail(
                    other.display(),
                    format!("cannot read a PEM certificate: {e}"),
                )
            })?;
            let cross = ca
                .cross_sign_at(&other_der, &prefecture, days, now())
                .map_err(|e| Fail(e.to_string()))?;
            write_atomic(&out, cross.pem.as_bytes())?;
            crate::outln!(
                "{} now recognises {:?} for {prefecture} (cross-certificate serial {}) in {}",
                ca.name(),
                cross.record.subject,
                cross.record.serial,
                out.display()
            );
        }
        CertsCommand::Revoke { ca, cert } => {
            let ca = FederationCa::load(&ca).map_err(|e| Fail(e.to_string()))?;
            let info = CertInfo::from_pem_file(&cert, None).map_err(|e| Fail(e.to_string()))?;
            ca.revoke(&cert).map_err(|e| Fail(e.to_string()))?;
            crate::outln!(
                "revoked {} certificate of {} (serial {}); distribute the new {}",
                info.kind.as_str(),
                info.org
                    .map_or_else(|| info.subject.clone(), |o| o.to_string()),
                info.serial,
                ca.dir().join("crl.pem").display()
            );
        }
        CertsCommand::Show {
            file,
            crl,
            directory,
            ca,
        } => {
            let crl = crl
                .map(|p| tsunagi_certs::load_crl(&p).map_err(|e| Fail(e.to_string())))
                .transpose()?;
            let info =
                CertInfo::from_pem_file(&file, crl.as_ref()).map_err(|e| Fail(e.to_string()))?;
            let valid_now = info.is_valid_at(now());
            let role = match (&directory, &info.org) {
                (Some(d), Some(org)) => super::directory::load(d, ca.as_deref())?
                    .role_of(org)
                    .map(|r| r.as_str()),
                _ => None,
            };
            let out = serde_json::json!({
                "org": info.org.as_ref().map(|o| o.to_string()),
                "role": role,
                "kind": info.kind.as_str(),
                "subject": info.subject,
                "issuer": info.issuer,
                "hosts": info.hosts,
                "not_before": fmt_time(info.not_before),
                "not_after": fmt_time(info.not_after),
                "valid_now": valid_now,
                "fingerprint_sha256": info.fingerprint,
                "serial": info.serial,
                "revoked": info.revoked,
            });
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| fail("output", e))?
            );
        }
    }
    Ok(())
}

fn fmt_time(secs: i64) -> String {
    let ts = tsunagi_protocol::Timestamp(secs.max(0) as u64);
    let s = ts.0 % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        ts.date(),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}
