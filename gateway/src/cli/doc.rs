//! `tsunagi doc …`: create, redact, verify and inspect documents without a gateway.
//!
//! A document file is a [`DocBundle`] in deterministic CBOR: the author-signed COSE_Sign1 and the
//! items disclosed with it. `sign` makes one with every item; `redact` keeps a subset (the
//! author's signature still verifies); `verify` checks it against the federation CA and prints
//! what it says; `inspect` dumps it without checking anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use tsunagi_certs::{Credentials, FederationTrust};
use tsunagi_protocol::cbor::{self, Limits};
use tsunagi_protocol::cose::{Sign1, Signer};
use tsunagi_protocol::document::Document;
use tsunagi_protocol::entropy::SystemEntropy;
use tsunagi_protocol::hex::encode as hex;
use tsunagi_protocol::profile::{default_profile, Profile};
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::OrgId;

use crate::files::{fail, now, read, read_text, write_atomic, CliResult, Fail};

#[derive(Debug, Subcommand)]
pub(crate) enum DocCommand {
    /// Sign a form (JSON) as its author, with every element disclosed.
    Sign {
        /// The author's credentials directory (from `tsunagi certs issue`).
        #[arg(long, value_name = "DIR")]
        creds: PathBuf,
        /// The form, as JSON (see fixtures/case-0007).
        #[arg(long, value_name = "FORM.json")]
        input: PathBuf,
        /// Where to write the signed document.
        #[arg(long, value_name = "DOC")]
        output: PathBuf,
    },
    /// Keep only what a recipient may see: by profile, or by the policy table for an org's role.
    Redact {
        /// full, form6 (needs assessment), support_party (support plan) or none.
        #[arg(long, conflicts_with = "for_org", required_unless_present = "for_org")]
        profile: Option<String>,
        /// The recipient org; its role in the directory picks the profile from the policy table.
        #[arg(long = "for", value_name = "ORG", requires = "directory")]
        for_org: Option<String>,
        /// The federation directory (TOML, or signed with --ca).
        #[arg(long, value_name = "FILE")]
        directory: Option<PathBuf>,
        /// The CA certificate a signed directory is verified against.
        #[arg(long, value_name = "CA.pem")]
        ca: Option<PathBuf>,
        /// The signed document.
        input: PathBuf,
        /// Where to write the redacted document.
        output: PathBuf,
    },
    /// Verify a document against the federation CA and print its disclosed fields as JSON.
    ///
    /// Without --crl the signer's revocation is not checked, and without --directory the
    /// author's role is not checked: the output says "not checked", "verified": false, and the
    /// exit status is 3 (a failed verification is 1). Give the CA's current CRL and the
    /// federation directory for a full verification (status 0). A document whose author's role
    /// may not write its type (an NPO's "needs assessment") fails.
    Verify {
        /// The federation CA certificate (PEM).
        #[arg(long, value_name = "CA.pem")]
        ca: PathBuf,
        /// The CA's revocation list (PEM). Without it revocation is not checked (exit status 3).
        #[arg(long, value_name = "CRL.pem")]
        crl: Option<PathBuf>,
        /// The federation directory (signed, verified against --ca; or TOML), to check that the
        /// author's role may write this type of document. Without it that is not checked (exit
        /// status 3).
        #[arg(long, value_name = "FILE")]
        directory: Option<PathBuf>,
        /// The document.
        input: PathBuf,
    },
    /// Dump a document without verifying it (for debugging).
    Inspect {
        /// The document.
        input: PathBuf,
    },
}

fn load_bundle(path: &Path) -> CliResult<DocBundle> {
    DocBundle::from_bytes(&read(path)?, &Limits::default()).map_err(|e| {
        fail(
            format!("{} is damaged or not a tsunagi document", path.display()),
            e,
        )
    })
}

pub(crate) fn run(cmd: DocCommand) -> CliResult<ExitCode> {
    match cmd {
        DocCommand::Sign {
            creds,
            input,
            output,
        } => {
            let json: serde_json::Value = serde_json::from_str(&read_text(&input)?)
                .map_err(|e| fail(format!("{} is not valid JSON", input.display()), e))?;
            let doc = Document::from_value(json).map_err(|e| fail(input.display(), e))?;
            let creds = Credentials::load(&creds).map_err(|e| Fail(e.to_string()))?;
            if doc.author() != &creds.org {
                return Err(Fail(format!(
                    "{}: the form's author is {} but these credentials are for {}; sign with the author's credentials",
                    input.display(),
                    doc.author(),
                    creds.org
                )));
            }
            let signer = Signer::from_pkcs8(
                creds.signing_key.secret_pkcs8_der(),
                creds.signing_chain.clone(),
            )
            .map_err(|e| fail(creds.dir.display(), e))?;
            let bundle = DocBundle::sign(&doc, &signer, now(), &mut SystemEntropy::new())
                .map_err(|e| fail(input.display(), e))?;
            write_atomic(&output, &bundle.to_bytes())?;
            crate::outln!(
                "signed {} of {} as {} ({} elements) to {}",
                doc.doc_type(),
                doc.subject(),
                creds.org,
                bundle.items.len(),
                output.display()
            );
        }
        DocCommand::Redact {
            profile,
            for_org,
            directory,
            ca,
            input,
            output,
        } => {
            let bundle = load_bundle(&input)?;
            let manifest = bundle
                .manifest_unverified(&Limits::default())
                .map_err(|e| fail(input.display(), e))?;
            let doc_type = manifest.doc_type;
            // With --for, the recipient and its role, to name them when nothing may be sent.
            let (profile, recipient) = match (profile, for_org, directory) {
                (Some(p), _, _) => {
                    let p: Profile = p.parse().map_err(|e| fail("--profile", e))?;
                    p.check_applies(doc_type)
                        .map_err(|e| fail("--profile", e))?;
                    (p, None)
                }
                (None, Some(org), Some(dir)) => {
                    let org: OrgId = org.parse().map_err(|e| fail("--for", e))?;
                    let d = super::directory::load(&dir, ca.as_deref())?;
                    let role = d.role_of(&org).ok_or_else(|| {
                        Fail(format!("--for: {org} is not a member of {}", dir.display()))
                    })?;
                    (default_profile(doc_type, role), Some((org, role)))
                }
                _ => {
                    return Err(Fail(
                        "give --profile, or --for ORG with --directory FILE".into(),
                    ))
                }
            };
            if profile == Profile::None {
                return Err(Fail(match recipient {
                    Some((org, role)) => format!(
                        "--for {org}: the policy table gives a {role} nothing of a {doc_type} (profile none): it may not receive it"
                    ),
                    None => format!(
                        "profile none discloses nothing of a {doc_type}: the recipient may not receive it"
                    ),
                }));
            }
            let redacted = bundle.redact(|e| profile.discloses(doc_type, e));
            write_atomic(&output, &redacted.to_bytes())?;
            crate::outln!(
                "redacted {doc_type} with profile {profile}: kept {} of {} elements, wrote {}",
                redacted.items.len(),
                bundle.items.len(),
                output.display()
            );
        }
        DocCommand::Verify {
            ca,
            crl,
            directory,
            input,
        } => {
            let bundle = load_bundle(&input)?;
            let trust = FederationTrust::from_files(&ca, crl.as_deref())
                .map_err(|e| Fail(e.to_string()))?;
            let v = bundle
                .verify(&trust, now(), &Limits::default())
                .map_err(|e| fail(format!("{} failed verification", input.display()), e))?;
            let kind = v.manifest.doc_type;
            let author_role = match &directory {
                None => "not checked".to_owned(),
                Some(dir) => {
                    let d = super::directory::load(dir, Some(&ca))?;
                    let role = d.role_of(&v.manifest.author);
                    if !role.is_some_and(|r| kind.may_be_authored_by(r)) {
                        let role =
                            role.map_or("org not in the directory".to_owned(), |r| r.to_string());
                        return Err(Fail(format!(
                            "{} failed verification: its author {} is a {role}, and a {role} may not author a {kind} (authors: {})",
                            input.display(),
                            v.manifest.author,
                            kind.author_roles()
                                .iter()
                                .map(|r| r.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    role.map_or_else(String::new, |r| r.to_string())
                }
            };
            let full = crl.is_some() && directory.is_some();
            let out = serde_json::json!({
                "verified": full,
                "signature": "valid",
                "revocation": if crl.is_some() { "not revoked" } else { "not checked" },
                "author_role": author_role,
                "author": v.manifest.author.to_string(),
                "document_type": v.manifest.doc_type.as_str(),
                "subject": v.manifest.subject.to_string(),
                "doc_id": hex(&v.manifest.doc_id),
                "issued_on": v.manifest.iat.date().to_string(),
                "signer_certificate_sha256": hex(&v.signer.fingerprint),
                "disclosed": v.to_json(),
                "withheld": v.withheld,
            });
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| fail("output", e))?
            );
            if !full {
                let missing = match (crl.is_some(), directory.is_some()) {
                    (false, false) => "revocation and the author's role were not checked; give the CA's current CRL with --crl and the directory with --directory",
                    (false, true) => "revocation was not checked; give the CA's current CRL with --crl",
                    _ => "the author's role was not checked; give the federation directory with --directory",
                };
                eprintln!(
                    "warning: {}: the signature verifies, but {missing} to verify fully",
                    input.display()
                );
                return Ok(ExitCode::from(super::EXIT_REVOCATION_NOT_CHECKED));
            }
        }
        DocCommand::Inspect { input } => {
            let bundle = load_bundle(&input)?;
            let limits = Limits::default();
            let s = Sign1::parse(&bundle.doc, "document", &limits)
                .map_err(|e| fail(input.display(), e))?;
            let m = bundle
                .manifest_unverified(&limits)
                .map_err(|e| fail(input.display(), e))?;
            let chain: Vec<_> = s
                .x5chain
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "sha256": hex(&tsunagi_protocol::cose::sha256(c)),
                        "org": tsunagi_certs::org_of_certificate(c).ok().map(|o| o.to_string()),
                    })
                })
                .collect();
            let items: Vec<_> = bundle
                .items
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "element": i.element,
                        "digest_id": i.digest_id,
                        "value": cbor::to_json(&i.value, &i.element).unwrap_or_else(|e| serde_json::Value::String(format!("<{e}>"))),
                    })
                })
                .collect();
            let out = serde_json::json!({
                "verified": false,
                "cose": { "typ": s.typ, "kid": hex(&s.kid), "x5chain": chain, "signature_bytes": s.signature.len() },
                "manifest": {
                    "docType": m.doc_type.as_str(),
                    "docId": hex(&m.doc_id),
                    "author": m.author.to_string(),
                    "subject": m.subject.to_string(),
                    "iat": m.iat.0,
                    "digests": m.value_digests.len(),
                },
                "items": items,
            });
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| fail("output", e))?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
