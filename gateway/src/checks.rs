//! Checks of a gateway's own directory entry and of the other members' entries, shared by
//! [`crate::engine::Gateway::open`] and `tsunagi check`.
//!
//! A directory entry carries where to connect (`address`, ip:port) and the name the member's TLS
//! certificate is issued for (`host`, a DNS name or an IP). This gateway's own entry must agree
//! with its `listen` address and its certificate, else peers could never reach it: the gateway
//! refuses to start. A broken entry of another member cannot be fixed here: it is named in a
//! warning at start and, at send time, ends the entry with a final error instead of retrying.

use std::net::SocketAddr;

use tsunagi_certs::{CertInfo, Credentials};
use tsunagi_protocol::directory::{Directory, Member};
use tsunagi_protocol::OrgId;

/// Whether this gateway's directory entry matches `listen` and the TLS certificate's names.
pub fn own_entry(
    directory: &Directory,
    org: &OrgId,
    listen: SocketAddr,
    creds: &Credentials,
) -> Result<(), String> {
    let member = directory
        .member(org)
        .ok_or_else(|| format!("{org} is not a member of the directory"))?;
    own_entry_of(member, listen, &tls_hosts(creds)?)
}

/// The DNS names and IPs of the credentials' TLS certificate.
pub fn tls_hosts(creds: &Credentials) -> Result<Vec<String>, String> {
    Ok(CertInfo::from_der(&creds.tls_cert, None)
        .map_err(|e| format!("{}: tls.pem: {e}", creds.dir.display()))?
        .hosts)
}

fn own_entry_of(member: &Member, listen: SocketAddr, hosts: &[String]) -> Result<(), String> {
    let (addr, host) = member
        .endpoint()
        .map_err(|e| format!("our own entry is unusable: {e}"))?;
    let org = &member.org;
    if addr.port() != listen.port() || !(listen.ip().is_unspecified() || listen.ip() == addr.ip()) {
        return Err(format!(
            "the directory lists {org} at {addr} but the configuration listens on {listen}: peers would not reach this gateway; make `listen` and the directory's address agree"
        ));
    }
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
        return Err(format!(
            "the directory names {org}'s TLS host {host:?} but its certificate (tls.pem) is issued for {}: peers would refuse it; issue the certificate with `--host {host}` or fix the directory's host",
            if hosts.is_empty() { "no host".to_owned() } else { hosts.join(", ") }
        ));
    }
    Ok(())
}

/// One line per other member whose entry cannot be used (`address` not ip:port, bad `host`).
pub fn other_entries(directory: &Directory, org: &OrgId) -> Vec<String> {
    directory
        .members
        .iter()
        .filter(|m| m.org != *org)
        .filter_map(|m| m.endpoint().err())
        .map(|e| format!("{e}: nothing can be sent to it until the federation fixes the directory"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_protocol::Role;

    fn member(address: &str, host: Option<&str>) -> Member {
        Member {
            org: "mi:1310000017".parse().unwrap(),
            role: Role::Hospital,
            name: "h".into(),
            address: address.into(),
            host: host.map(str::to_owned),
            fingerprints: vec![],
        }
    }

    #[test]
    fn own_entry_must_match_listen_and_certificate() {
        let hosts = vec!["hospital.example".to_owned()];
        let listen: SocketAddr = "127.0.0.1:7405".parse().unwrap();
        let ok = member("127.0.0.1:7405", Some("hospital.example"));
        assert_eq!(own_entry_of(&ok, listen, &hosts), Ok(()));
        assert_eq!(
            own_entry_of(&ok, "0.0.0.0:7405".parse().unwrap(), &hosts),
            Ok(())
        );
        let e = own_entry_of(&ok, "127.0.0.1:7406".parse().unwrap(), &hosts).unwrap_err();
        assert!(e.contains("listens on 127.0.0.1:7406"), "{e}");
        let e = own_entry_of(&member("127.0.0.1:7405", None), listen, &hosts).unwrap_err();
        assert!(e.contains("TLS host \"127.0.0.1\""), "{e}");
        assert!(e.contains("issued for hospital.example"), "{e}");
        let e = own_entry_of(&member("hospital.example:7405", None), listen, &hosts).unwrap_err();
        assert!(e.contains("is not ip:port"), "{e}");
    }
}
