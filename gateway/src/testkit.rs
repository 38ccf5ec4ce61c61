//! A local federation on loopback: the one builder the demo, the benchmark and the integration
//! tests share.
//!
//! [`LocalFederation::build`] makes a CA in a directory, gives every chosen member of the sample
//! directory a free loopback port, signs the directory, issues each member its credentials and
//! writes its `gateway.toml` (`home/gateway.toml`, credentials in `home/creds`, data in
//! `home/data`). How the gateways then run (in this process, as child processes) is the caller's
//! concern; [`LocalFederation::config`] parses a member's configuration for an in-process
//! [`Gateway`](crate::engine::Gateway).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tsunagi_certs::FederationCa;
use tsunagi_protocol::directory::Directory;
use tsunagi_protocol::testkit::DIRECTORY_TOML;
use tsunagi_protocol::{Date, OrgId, Timestamp};

use crate::config::Config;

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The CA's name.
    pub ca_name: String,
    /// The members that get credentials and a configuration (org ids of the sample directory);
    /// empty means every member.
    pub orgs: Vec<String>,
    /// Issue each certificate for the member's DNS host of the sample directory (as
    /// `tsunagi certs issue --host` would), the directory listing that host beside the loopback
    /// address; otherwise certificates and the directory name the loopback address only.
    pub dns_hosts: bool,
    /// The start of the CA's and the certificates' validity (the real time when `None`).
    pub not_before: Option<Timestamp>,
    /// How long the certificates are valid, in days.
    pub days: u32,
    /// Text appended to every `gateway.toml` (e.g. a `[delivery]` table, `[[recognise]]`).
    pub extra_config: String,
    /// The directory to sign (TOML): the sample directory of `fixtures/directory.toml` unless
    /// another prefecture's is given (`fixtures/directory-kanagawa.toml`).
    pub directory_toml: String,
}

impl Options {
    /// Every member, loopback names, valid from now for a year, nothing appended.
    pub fn new(ca_name: &str) -> Options {
        Options {
            ca_name: ca_name.to_owned(),
            orgs: Vec::new(),
            dns_hosts: false,
            not_before: None,
            days: 365,
            extra_config: String::new(),
            directory_toml: DIRECTORY_TOML.to_owned(),
        }
    }
}

/// One member with credentials and a configuration.
#[derive(Debug, Clone)]
pub struct LocalMember {
    /// Its org id.
    pub org: OrgId,
    /// Its name in the directory (Japanese).
    pub name: String,
    /// Its QUIC address on loopback.
    pub address: SocketAddr,
    /// Its directory: `gateway.toml`, `creds/`, `data/`.
    pub home: PathBuf,
    /// Its `gateway.toml`.
    pub config_path: PathBuf,
    /// The text of its `gateway.toml`.
    pub config_text: String,
}

impl LocalMember {
    /// Its data directory.
    pub fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    /// Its credentials directory.
    pub fn creds(&self) -> PathBuf {
        self.home.join("creds")
    }
}

/// A federation's files under one directory.
pub struct LocalFederation {
    /// The directory everything is in.
    pub dir: PathBuf,
    /// The CA (`dir/ca`).
    pub ca: FederationCa,
    /// The signed directory's content (`dir/directory.cose`).
    pub directory: Directory,
    /// The members built, by org id.
    pub members: BTreeMap<String, LocalMember>,
}

fn free_port() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free UDP port on 127.0.0.1: {e}"))
}

impl LocalFederation {
    /// Builds the CA, the directory, the credentials and the configurations under `dir`
    /// (created if missing; it must not hold a CA yet).
    pub fn build(dir: &Path, opts: &Options) -> Result<LocalFederation, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let start = opts.not_before.unwrap_or_else(crate::files::now);
        let ca = FederationCa::init_at(dir.join("ca"), &opts.ca_name, start)
            .map_err(|e| e.to_string())?;
        let mut directory: Directory =
            toml::from_str(&opts.directory_toml).map_err(|e| format!("sample directory: {e}"))?;
        directory.expires = Some(Date::new(2099, 12, 31).ok_or("date")?);
        for m in &mut directory.members {
            m.address = format!("127.0.0.1:{}", free_port()?);
            if !opts.dns_hosts {
                m.host = None;
            }
        }
        let signed = directory
            .sign(&ca.federation_signer().map_err(|e| e.to_string())?)
            .map_err(|e| format!("signing the directory: {e}"))?;
        let path = dir.join("directory.cose");
        std::fs::write(&path, signed)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut members = BTreeMap::new();
        for m in &directory.members {
            if !opts.orgs.is_empty() && !opts.orgs.iter().any(|o| o == m.org.as_str()) {
                continue;
            }
            let home = dir.join(m.org.as_str().replace(':', "_"));
            let host = m.tls_host().map_err(|e| format!("directory: {e}"))?;
            ca.issue_at(&m.org, &host, home.join("creds"), opts.days, start)
                .map_err(|e| e.to_string())?;
            let config_path = home.join("gateway.toml");
            let config_text = format!(
                "org = \"{}\"\nlisten = \"{}\"\ncredentials = \"creds\"\nca = \"../ca/ca.pem\"\ncrl = \"../ca/crl.pem\"\ndirectory = \"../directory.cose\"\ndata_dir = \"data\"\nmaster_key = \"master.key\"\n{}\n",
                m.org, m.address, opts.extra_config
            );
            std::fs::write(&config_path, &config_text)
                .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
            members.insert(
                m.org.to_string(),
                LocalMember {
                    org: m.org.clone(),
                    name: m.name.clone(),
                    address: m
                        .address
                        .parse()
                        .map_err(|e| format!("address {}: {e}", m.address))?,
                    home,
                    config_path,
                    config_text,
                },
            );
        }
        if let Some(o) = opts.orgs.iter().find(|o| !members.contains_key(*o)) {
            return Err(format!("{o} is not a member of the sample directory"));
        }
        Ok(LocalFederation {
            dir: dir.to_owned(),
            ca,
            directory,
            members,
        })
    }

    /// The member `org`.
    pub fn member(&self, org: &str) -> Result<&LocalMember, String> {
        self.members
            .get(org)
            .ok_or_else(|| format!("{org} is not in this federation"))
    }

    /// `org`'s parsed configuration.
    pub fn config(&self, org: &str) -> Result<Config, String> {
        let m = self.member(org)?;
        Config::parse(&m.config_text, &m.config_path).map_err(|e| e.0)
    }
}

// ---------------------------------------------------------------------------------------------
// A sender and a receiver: the pair the benchmark and the engine's tests use.

/// The sender of a pair: Bunkyo City.
pub const SENDER: &str = "lg:131059";
/// The receiver of a pair: the hospital.
pub const RECEIVER: &str = "mi:1310000017";
/// The case of the consent fixture.
pub const CASE: &str = "case-131059-2026-0007";

/// A federation of [`SENDER`] and [`RECEIVER`] only, loopback names, `extra_config` appended to
/// both configurations.
pub fn pair(dir: &Path, ca_name: &str, extra_config: &str) -> Result<LocalFederation, String> {
    let mut opts = Options::new(ca_name);
    opts.orgs = vec![SENDER.into(), RECEIVER.into()];
    opts.days = 30;
    opts.extra_config = extra_config.to_owned();
    LocalFederation::build(dir, &opts)
}

/// A case-0007 fixture's JSON.
pub fn fixture(name: &str) -> Result<serde_json::Value, String> {
    let (_, text) = tsunagi_protocol::testkit::CASE_0007
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("fixture {name} is missing"))?;
    serde_json::from_str(text).map_err(|e| format!("fixture {name}: {e}"))
}

/// The consent fixture with its recipients narrowed to the pair.
pub fn pair_consent() -> Result<serde_json::Value, String> {
    let mut c = fixture("consent.json")?;
    c["recipients"] = serde_json::json!([{ "org": SENDER }, { "org": RECEIVER }]);
    Ok(c)
}

/// A `support_end` form from [`SENDER`] with a note of `note_len` ASCII bytes.
pub fn support_end_form(note_len: usize) -> serde_json::Value {
    const TEXT: &str = "Follow-up completed as planned; outpatient care continues at the clinic. ";
    let note: String = TEXT.chars().cycle().take(note_len).collect();
    serde_json::json!({
        "document_type": "support_end",
        "author": SENDER,
        "subject": CASE,
        "ended_on": "2027-04-30",
        "outcome": "completed",
        "note": note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_chosen_members_with_valid_configurations() {
        let dir = std::env::temp_dir().join(format!("tsunagi-testkit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = Options::new("testkit CA");
        opts.orgs = vec!["lg:131059".into(), "mi:1310000017".into()];
        opts.extra_config = "[delivery]\nper_peer_concurrency = 4\n".into();
        let fed = LocalFederation::build(&dir, &opts).unwrap();
        assert_eq!(fed.members.len(), 2);
        for org in &opts.orgs {
            let cfg = fed.config(org).unwrap();
            assert_eq!(cfg.org.as_str(), org);
            assert_eq!(cfg.listen, fed.members[org].address);
            assert!(fed.members[org].creds().is_dir());
        }
        assert!(dir.join("directory.cose").is_file());
        let mut bad = Options::new("testkit CA");
        bad.orgs = vec!["lg:999999".into()];
        let e = LocalFederation::build(&dir.join("other"), &bad)
            .err()
            .expect("an unknown member is refused");
        assert!(e.contains("lg:999999"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
