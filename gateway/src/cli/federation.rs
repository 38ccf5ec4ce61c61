//! `tsunagi federation init / member add`: a working member in one step.
//!
//! A federation directory `FED` holds everything the federation operator keeps, and one folder
//! per member with what that member's gateway needs:
//!
//! ```text
//! FED/ca/                  the federation CA (ca.pem, ca.key 0600, crl.pem, issued.json)
//! FED/directory.toml       the member list (source)
//! FED/directory.cose       the member list, signed by the CA
//! FED/<org>/gateway.toml   the member's configuration (relative paths)
//! FED/<org>/creds/         its TLS and signing certificates and keys (keys 0600)
//! ```
//!
//! `member add` issues the credentials for the member's `host`, adds its entry (`address`
//! ip:port and `host`) to the directory, re-signs it (running gateways pick the new directory
//! up by themselves) and writes its `gateway.toml`. `tsunagi check --config` then says whether
//! it is ready.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use tsunagi_certs::FederationCa;
use tsunagi_protocol::directory::{check_host, Directory, Member};
use tsunagi_protocol::org::MunicipalityCode;
use tsunagi_protocol::{OrgId, Role};

use crate::files::{create_private_dir, fail, now, read_text, write_atomic, CliResult, Fail};

#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Create a federation: its CA (unless there is one) and an empty, signed directory.
    Init {
        /// The federation's folder.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The federation's name, written into the directory.
        #[arg(long, default_value = "federation")]
        federation: String,
        /// Days until the signed directory expires (it is re-signed by each `member add`).
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Members of the federation.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// Add a member: credentials, its directory entry, the re-signed directory and its
    /// gateway.toml, in FED/<org>/.
    Add {
        /// The federation's folder (created, with its CA, when missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The member's org id, e.g. lg:131059 or mi:1310000017.
        #[arg(long)]
        org: String,
        /// Its role: authority, prefecture, hospital, clinic, visiting_nurse,
        /// support_provider, npo, police, …
        #[arg(long)]
        role: String,
        /// Its display name.
        #[arg(long)]
        name: String,
        /// Where peers connect to its gateway: ip:port (no DNS lookup is made).
        #[arg(long, value_name = "IP:PORT")]
        address: String,
        /// The name its TLS certificate is issued for, e.g. hospital.example (default: the
        /// IP of --address).
        #[arg(long)]
        host: Option<String>,
        /// The address its gateway binds (default: --address; e.g. 0.0.0.0:7405 behind NAT).
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<String>,
        /// Municipality codes its health centre serves (authorities and prefectures).
        #[arg(long, value_delimiter = ',', value_name = "CODE,…")]
        serves: Vec<String>,
        /// Days the certificates are valid.
        #[arg(long, default_value_t = 365)]
        cert_days: u32,
        /// Days until the re-signed directory expires.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
}

/// The member folder of `org` in `fed`.
pub(crate) fn member_dir(fed: &Path, org: &OrgId) -> PathBuf {
    fed.join(org.as_str().replace(':', "_"))
}

fn ca_of(fed: &Path) -> CliResult<FederationCa> {
    let dir = fed.join("ca");
    if dir.join(tsunagi_certs::ca::CA_CERT_FILE).is_file() {
        FederationCa::load(&dir).map_err(|e| Fail(e.to_string()))
    } else {
        let ca =
            FederationCa::init(&dir, "tsunagi federation CA").map_err(|e| Fail(e.to_string()))?;
        println!("created the federation CA in {}", dir.display());
        Ok(ca)
    }
}

fn load_directory(fed: &Path, federation: &str) -> CliResult<Directory> {
    let path = fed.join("directory.toml");
    if path.is_file() {
        super::directory::parse_toml(&read_text(&path)?, &path)
    } else {
        Ok(Directory {
            version: 0,
            federation: federation.to_owned(),
            expires: None,
            members: vec![],
            jurisdictions: Default::default(),
        })
    }
}

/// Writes the directory's source and its signed form.
fn save_directory(fed: &Path, ca: &FederationCa, d: &Directory, days: u32) -> CliResult<()> {
    let toml_path = fed.join("directory.toml");
    let text = toml::to_string(d).map_err(|e| fail(toml_path.display(), e))?;
    write_atomic(
        &toml_path,
        format!(
            "# The federation's member list; `tsunagi federation member add` keeps it.\n{text}"
        )
        .as_bytes(),
    )?;
    let mut signed = d.clone();
    signed.expires = Some(now().date().add_days(i64::from(days)));
    let bytes = signed
        .sign(&ca.federation_signer().map_err(|e| Fail(e.to_string()))?)
        .map_err(|e| fail(toml_path.display(), e))?;
    write_atomic(&fed.join("directory.cose"), &bytes)
}

pub(crate) fn run(cmd: FederationCommand) -> CliResult {
    match cmd {
        FederationCommand::Init {
            dir,
            federation,
            days,
        } => {
            create_private_dir(&dir)?;
            let ca = ca_of(&dir)?;
            let mut d = load_directory(&dir, &federation)?;
            if d.version == 0 {
                d.version = 1;
            }
            save_directory(&dir, &ca, &d, days)?;
            println!(
                "federation {:?} in {}: CA ca/, directory directory.toml (signed: directory.cose, {} members); add members with `tsunagi federation member add --dir {}`",
                d.federation,
                dir.display(),
                d.members.len(),
                dir.display()
            );
            Ok(())
        }
        FederationCommand::Member(MemberCommand::Add {
            dir,
            org,
            role,
            name,
            address,
            host,
            listen,
            serves,
            cert_days,
            days,
        }) => {
            let org: OrgId = org.parse().map_err(|e| fail("--org", e))?;
            let role: Role = role.parse().map_err(|e| fail("--role", e))?;
            if let Some(h) = &host {
                check_host(h).map_err(|e| Fail(format!("--host {h:?} {e}")))?;
            }
            let member = Member {
                org: org.clone(),
                role,
                name,
                address,
                host,
                fingerprints: vec![],
            };
            let (addr, tls_host) = member.endpoint().map_err(|e| Fail(e.to_string()))?;
            let listen: std::net::SocketAddr = match listen {
                None => addr,
                Some(l) => l
                    .parse()
                    .map_err(|_| Fail(format!("--listen {l:?} is not ip:port")))?,
            };
            if listen.port() != addr.port() {
                return Err(Fail(format!(
                    "--listen {listen} and --address {addr} name different ports: peers connect to the address"
                )));
            }
            let serves: Vec<MunicipalityCode> = serves
                .iter()
                .map(|c| c.parse().map_err(|e| fail(format!("--serves {c}"), e)))
                .collect::<CliResult<_>>()?;
            create_private_dir(&dir)?;
            let ca = ca_of(&dir)?;
            let mut d = load_directory(&dir, "federation")?;
            if d.member(&org).is_some() {
                return Err(Fail(format!(
                    "{org} is already a member of {}; edit its entry there and re-sign with `tsunagi directory sign`",
                    dir.join("directory.toml").display()
                )));
            }
            let home = member_dir(&dir, &org);
            if home.exists() {
                return Err(Fail(format!(
                    "{} already exists; remove it or pick another --dir",
                    home.display()
                )));
            }
            d.members.push(member);
            for c in serves {
                d.jurisdictions.insert(c, org.clone());
            }
            d.version += 1;
            d.check().map_err(|e| Fail(e.to_string()))?;
            create_private_dir(&home)?;
            ca.issue(&org, &tls_host, home.join("creds"), cert_days)
                .map_err(|e| Fail(e.to_string()))?;
            save_directory(&dir, &ca, &d, days)?;
            let config = home.join("gateway.toml");
            write_atomic(
                &config,
                format!(
                    "# Written by `tsunagi federation member add`; paths are relative to this file.\n# The directory lists {org} at {addr}, its certificate is issued for {tls_host}.\norg = \"{org}\"\nlisten = \"{listen}\"\ncredentials = \"creds\"\nca = \"../ca/ca.pem\"\ncrl = \"../ca/crl.pem\"               # reloaded when the file changes\ndirectory = \"../directory.cose\"    # reloaded when the file changes\ndata_dir = \"data\"\nmaster_key = \"master.key\"         # created 0600 on first start\n"
                )
                .as_bytes(),
            )?;
            println!(
                "added {org} ({}) at {addr}, certificate for {tls_host}: {} (directory version {}); check it with `tsunagi check --config {}`, start it with `tsunagi gateway run --config {}`",
                role.as_str(),
                home.display(),
                d.version,
                config.display(),
                config.display()
            );
            Ok(())
        }
    }
}
