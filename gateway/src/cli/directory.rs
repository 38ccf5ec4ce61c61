//! `tsunagi directory …`: the federation's signed member list.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use tsunagi_certs::{FederationCa, FederationTrust};
use tsunagi_protocol::directory::Directory;

use crate::files::{fail, now, read, read_text, write_atomic, CliResult, Fail};

#[derive(Debug, Subcommand)]
pub(crate) enum DirectoryCommand {
    /// Sign a directory (TOML) with the federation CA's key.
    Sign {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The directory source (TOML), like fixtures/directory.toml.
        input: PathBuf,
        /// Where to write the signed directory.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Days until it expires, when the TOML sets no `expires`.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Verify a signed directory and print it as JSON.
    Show {
        /// The signed directory.
        file: PathBuf,
        /// The federation CA certificate (PEM) it must be signed by.
        #[arg(long, value_name = "CA.pem")]
        ca: PathBuf,
    },
}

/// Parses a directory's TOML source.
pub(crate) fn parse_toml(text: &str, path: &Path) -> CliResult<Directory> {
    let d: Directory = toml::from_str(text)
        .map_err(|e| fail(path.display(), e.to_string().trim_end().replace('\n', " ")))?;
    d.check().map_err(|e| fail(path.display(), e))?;
    Ok(d)
}

/// Loads a directory: a signed one (verified against `ca`), or TOML source.
pub(crate) fn load(path: &Path, ca: Option<&Path>) -> CliResult<Directory> {
    let bytes = read(path)?;
    if bytes.first() == Some(&0xd2) {
        let ca = ca.ok_or_else(|| {
            Fail(format!(
                "{} is a signed directory: pass --ca CA.pem to verify it",
                path.display()
            ))
        })?;
        let trust = FederationTrust::from_files(ca, None).map_err(|e| Fail(e.to_string()))?;
        Directory::verify(&bytes, &trust.federation(), now(), &Directory::limits())
            .map_err(|e| fail(path.display(), e))
    } else {
        parse_toml(&read_text(path)?, path)
    }
}

pub(crate) fn run(cmd: DirectoryCommand) -> CliResult {
    match cmd {
        DirectoryCommand::Sign {
            ca,
            input,
            out,
            days,
        } => {
            let mut d = parse_toml(&read_text(&input)?, &input)?;
            if d.expires.is_none() {
                d.expires = Some(now().date().add_days(i64::from(days)));
            }
            let ca = FederationCa::load(&ca).map_err(|e| Fail(e.to_string()))?;
            let bytes = d
                .sign(&ca.federation_signer().map_err(|e| Fail(e.to_string()))?)
                .map_err(|e| fail(input.display(), e))?;
            write_atomic(&out, &bytes)?;
            crate::outln!(
                "signed directory {:?} version {} ({} members, expires {}) to {}",
                d.federation,
                d.version,
                d.members.len(),
                d.expires.map(|e| e.to_string()).unwrap_or_default(),
                out.display()
            );
        }
        DirectoryCommand::Show { file, ca } => {
            let d = load(&file, Some(&ca))?;
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&d).map_err(|e| fail("output", e))?
            );
        }
    }
    Ok(())
}
