//! The federation directory: who is a member, in which role, where to reach them, and which
//! authority serves which municipality.
//!
//! Like X-Road's global configuration, the directory is one document signed by the federation
//! (its CA key) as a COSE_Sign1 of type [`cose::TYP_DIRECTORY`], versioned and with an expiry.
//! Gateways load it at start and on change, verify it, and refuse an expired one: routing
//! decisions, role lookups for the consent gate and the policy table, and jurisdiction lookups on
//! relocation all come from it. Its source form is TOML (`fixtures/directory.toml`); `expires` and
//! certificate fingerprints may be absent there and are filled in when it is signed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cbor::{self, map, uint, CborError, Limits, MapReader, Value};
use crate::cose::{self, ChainVerifier, Sign1, Signer};
use crate::date::{Date, Timestamp};
use crate::org::{MunicipalityCode, OrgId, Role};
use crate::signed::DocError;

/// Directory format version on the wire.
pub const DIRECTORY_FORMAT: u64 = 1;

/// Most data items a directory is read with ([`Directory::limits`]): 2^20 = 1,048,576, at most
/// 32 MiB of decoded values.
///
/// A member is about fifteen items in about 250 bytes, so a directory at the default size limit
/// (8 MiB, some 35,000 members) holds about 500,000 items, more than the default item limit
/// ([`cbor::DEFAULT_MAX_ITEMS`]) meant for peers' messages. A directory is a file the operator
/// installs, and its payload is decoded only after the federation CA's signature over it
/// verified.
pub const DIRECTORY_MAX_ITEMS: usize = 1 << 20;

/// One member of the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its org id.
    pub org: OrgId,
    /// Its role.
    pub role: Role,
    /// Display name (Japanese), shown to staff.
    pub name: String,
    /// The QUIC socket address to connect to, `ip:port` (no name lookup: the gateway never
    /// depends on DNS to reach a peer).
    pub address: String,
    /// The TLS server name its certificate is issued for (`tsunagi certs issue --host`): a DNS
    /// name or an IP address. Absent in directories written before it existed; then the IP of
    /// `address` (see [`Member::tls_host`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// SHA-256 fingerprints (hex) of its current certificates; empty means "any the CA issued".
    #[serde(default)]
    pub fingerprints: Vec<String>,
}

impl Member {
    /// The socket address to connect to, checked.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, DirectoryError> {
        let bad = |detail: &str| DirectoryError::BadEndpoint {
            org: self.org.clone(),
            detail: format!("address {:?} {detail}", self.address),
        };
        let addr: std::net::SocketAddr = self.address.parse().map_err(|_| {
            bad("is not ip:port (e.g. \"192.0.2.10:7405\"; put a DNS name in `host`, not in `address`)")
        })?;
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(bad(
                "has port 0 or an unspecified IP: peers cannot connect to it",
            ));
        }
        Ok(addr)
    }

    /// The name its TLS certificate must carry: `host`, or the IP of `address` when absent.
    pub fn tls_host(&self) -> Result<String, DirectoryError> {
        match &self.host {
            Some(h) => {
                check_host(h).map_err(|detail| DirectoryError::BadEndpoint {
                    org: self.org.clone(),
                    detail: format!("host {h:?} {detail}"),
                })?;
                Ok(h.clone())
            }
            None => Ok(self.socket_addr()?.ip().to_string()),
        }
    }

    /// Both: where to connect and which name the server certificate must carry.
    pub fn endpoint(&self) -> Result<(std::net::SocketAddr, String), DirectoryError> {
        Ok((self.socket_addr()?, self.tls_host()?))
    }
}

/// Whether `h` is a DNS name (letters, digits and hyphens in dot-separated labels) or an IP
/// address, as a certificate's subject alternative name can carry it.
pub fn check_host(h: &str) -> Result<(), String> {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    if name.is_empty() || name.len() > 253 {
        return Err("is not a DNS name or an IP address".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "is not a DNS name or an IP address (label {label:?}; a host has no port or scheme)"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("is neither a valid IP address nor a DNS name".into());
    }
    Ok(())
}

/// The federation's member list and jurisdictions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// Monotonic version; a gateway never goes back to a lower one.
    pub version: u64,
    /// Federation name.
    pub federation: String,
    /// Last day the directory may be used.
    #[serde(default)]
    pub expires: Option<Date>,
    /// Members.
    pub members: Vec<Member>,
    /// Municipality code → the authority whose health centre serves it.
    #[serde(default)]
    pub jurisdictions: BTreeMap<MunicipalityCode, OrgId>,
}

/// A problem with a directory's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Badly signed or not signed by the federation (the message names the directory).
    #[error(transparent)]
    Invalid(#[from] DocError),
    /// Not a well-formed directory.
    #[error("directory: {0}")]
    Malformed(#[from] CborError),
    /// An org listed twice.
    #[error("directory: {0} is listed twice")]
    DuplicateMember(OrgId),
    /// A jurisdiction names an org that is not an authority member.
    #[error("directory: municipality {municipality} maps to {org}, which is not an authority or prefecture member")]
    BadJurisdiction {
        /// The municipality.
        municipality: MunicipalityCode,
        /// The org it maps to.
        org: OrgId,
    },
    /// Past its expiry.
    #[error("directory version {version} expired on {expires}; ask the federation for a new one")]
    Expired {
        /// Its version.
        version: u64,
        /// Its last day.
        expires: Date,
    },
    /// A member's address or host cannot be used to reach it.
    #[error("directory: member {org}: {detail}")]
    BadEndpoint {
        /// The member.
        org: OrgId,
        /// What is wrong.
        detail: String,
    },
    /// No expiry (only allowed in the unsigned source form).
    #[error("directory has no expiry date")]
    NoExpiry,
}

impl Directory {
    /// The limits to read a directory with: the defaults, with room for
    /// [`DIRECTORY_MAX_ITEMS`] items.
    pub fn limits() -> Limits {
        Limits {
            max_items: DIRECTORY_MAX_ITEMS,
            ..Limits::default()
        }
    }

    /// The member with this org id.
    pub fn member(&self, org: &OrgId) -> Option<&Member> {
        self.members.iter().find(|m| m.org == *org)
    }

    /// The role of `org`, if it is a member.
    pub fn role_of(&self, org: &OrgId) -> Option<Role> {
        self.member(org).map(|m| m.role)
    }

    /// The authority serving `municipality`.
    pub fn authority_for(&self, municipality: &MunicipalityCode) -> Option<&OrgId> {
        self.jurisdictions.get(municipality)
    }

    /// Checks internal consistency.
    pub fn check(&self) -> Result<(), DirectoryError> {
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].iter().any(|o| o.org == m.org) {
                return Err(DirectoryError::DuplicateMember(m.org.clone()));
            }
        }
        for (municipality, org) in &self.jurisdictions {
            if !matches!(self.role_of(org), Some(Role::Authority | Role::Prefecture)) {
                return Err(DirectoryError::BadJurisdiction {
                    municipality: municipality.clone(),
                    org: org.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that every member can be reached: `address` is ip:port and `host` a DNS name or
    /// IP. Signing requires it; a loaded directory is only warned about (see the gateway).
    pub fn check_endpoints(&self) -> Vec<DirectoryError> {
        self.members
            .iter()
            .filter_map(|m| m.endpoint().err())
            .collect()
    }

    fn to_value(&self) -> Result<Value, DirectoryError> {
        let expires = self.expires.ok_or(DirectoryError::NoExpiry)?;
        let members = self
            .members
            .iter()
            .map(|m| {
                let mut fields = vec![
                    ("org", Value::Text(m.org.to_string())),
                    ("role", Value::Text(m.role.as_str().into())),
                    ("name", Value::Text(m.name.clone())),
                    ("address", Value::Text(m.address.clone())),
                    (
                        "fingerprints",
                        Value::Array(m.fingerprints.iter().cloned().map(Value::Text).collect()),
                    ),
                ];
                if let Some(h) = &m.host {
                    fields.push(("host", Value::Text(h.clone())));
                }
                Value::Map(
                    fields
                        .into_iter()
                        .map(|(k, v)| (Value::Text(k.to_owned()), v))
                        .collect(),
                )
            })
            .collect();
        Ok(map([
            ("format", uint(DIRECTORY_FORMAT)),
            ("version", uint(self.version)),
            ("federation", Value::Text(self.federation.clone())),
            ("expires", Value::Text(expires.to_string())),
            ("members", Value::Array(members)),
            (
                "jurisdictions",
                Value::Map(
                    self.jurisdictions
                        .iter()
                        .map(|(k, v)| (Value::Text(k.to_string()), Value::Text(v.to_string())))
                        .collect(),
                ),
            ),
        ]))
    }

    fn from_value(v: Value) -> Result<Self, CborError> {
        let mut r = MapReader::new(v, "directory")?;
        if r.u64("format")? != DIRECTORY_FORMAT {
            return Err(CborError::WrongType {
                what: "directory.format".into(),
                expected: format!("{DIRECTORY_FORMAT}"),
            });
        }
        let members = r
            .array("members")?
            .into_iter()
            .map(|m| {
                let mut m = MapReader::new(m, "directory.members[]")?;
                let member = Member {
                    org: m.parsed("org")?,
                    role: m.parsed("role")?,
                    name: m.text("name")?,
                    address: m.text("address")?,
                    host: match m.opt("host") {
                        None => None,
                        Some(Value::Text(h)) => Some(h),
                        Some(_) => {
                            return Err(CborError::WrongType {
                                what: "directory.members[].host".into(),
                                expected: "text".into(),
                            })
                        }
                    },
                    fingerprints: m
                        .array("fingerprints")?
                        .into_iter()
                        .map(|f| match f {
                            Value::Text(t) => Ok(t),
                            _ => Err(CborError::WrongType {
                                what: "directory.members[].fingerprints".into(),
                                expected: "text".into(),
                            }),
                        })
                        .collect::<Result<_, _>>()?,
                };
                m.finish()?;
                Ok(member)
            })
            .collect::<Result<_, CborError>>()?;
        let Value::Map(j) = r.value("jurisdictions")? else {
            return Err(CborError::WrongType {
                what: "directory.jurisdictions".into(),
                expected: "a map".into(),
            });
        };
        let mut jurisdictions = BTreeMap::new();
        for (k, v) in j {
            let mut pair = MapReader::new(map([("k", k), ("v", v)]), "directory.jurisdictions")?;
            jurisdictions.insert(pair.parsed("k")?, pair.parsed("v")?);
        }
        let d = Directory {
            version: r.u64("version")?,
            federation: r.text("federation")?,
            expires: Some(r.parsed("expires")?),
            members,
            jurisdictions,
        };
        r.finish()?;
        Ok(d)
    }

    /// Signs the directory with the federation key. It must have an expiry and be consistent.
    pub fn sign(&self, federation: &Signer) -> Result<Vec<u8>, DirectoryError> {
        self.check()?;
        if let Some(e) = self.check_endpoints().into_iter().next() {
            return Err(e);
        }
        Ok(federation.sign(cose::TYP_DIRECTORY, cbor::encode(&self.to_value()?)))
    }

    /// Verifies a signed directory against the federation trust and `now`; refuses an expired
    /// or inconsistent one.
    pub fn verify(
        bytes: &[u8],
        federation: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<Self, DirectoryError> {
        let s = Sign1::parse(bytes, "directory", limits).map_err(DocError::from)?;
        s.verify(cose::TYP_DIRECTORY, "directory", federation, now)
            .map_err(DocError::from)?;
        let d = Self::from_value(cbor::decode(&s.payload, limits).map_err(DocError::from)?)
            .map_err(DocError::from)?;
        d.check()?;
        let expires = d.expires.ok_or(DirectoryError::NoExpiry)?;
        if now.date() > expires {
            return Err(DirectoryError::Expired {
                version: d.version,
                expires,
            });
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn sample() -> Directory {
        let mut d: Directory = toml_like();
        d.expires = Some(Date::new(2027, 12, 31).unwrap());
        d
    }

    /// The fixture directory, built from the test kit (the protocol crate has no TOML parser).
    fn toml_like() -> Directory {
        Directory {
            version: 1,
            federation: "tokyo-sample".into(),
            expires: None,
            members: testkit::MEMBERS
                .iter()
                .enumerate()
                .map(|(i, (org, role))| Member {
                    org: testkit::org(org),
                    role: *role,
                    name: format!("member {i}"),
                    address: format!("127.0.0.1:{}", 7401 + i),
                    host: (i == 4).then(|| "hospital.example".to_owned()),
                    fingerprints: vec![],
                })
                .collect(),
            jurisdictions: [
                ("131059", "lg:131059"),
                ("131121", "lg:131121"),
                ("132063", "lg:130001"),
            ]
            .into_iter()
            .map(|(m, o)| (m.parse().unwrap(), testkit::org(o)))
            .collect(),
        }
    }

    #[test]
    fn sign_verify_and_look_up() {
        let d = sample();
        let fed = testkit::signer("lg:130001");
        let bytes = d.sign(&fed).unwrap();
        let now = Date::new(2027, 1, 1).unwrap().start();
        let back = Directory::verify(&bytes, &testkit::chains(), now, &Limits::default()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.role_of(&testkit::org("ot:mpd")), Some(Role::Police));
        assert_eq!(
            back.authority_for(&"131121".parse().unwrap()),
            Some(&testkit::org("lg:131121"))
        );
        let later = Date::new(2028, 1, 1).unwrap().start();
        let e =
            Directory::verify(&bytes, &testkit::chains(), later, &Limits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "directory version 1 expired on 2027-12-31; ask the federation for a new one"
        );
    }

    #[test]
    fn endpoints_are_checked_when_signing() {
        let fed = testkit::signer("lg:130001");
        let hospital = testkit::org(testkit::MEMBERS[4].0);
        let mut d = sample();
        d.members[4].address = "hospital.example:7405".into();
        let e = d.sign(&fed).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "directory: member {hospital}: address \"hospital.example:7405\" is not ip:port"
            )),
            "{e}"
        );
        let mut d = sample();
        d.members[4].host = Some("https://hospital.example".into());
        let e = d.sign(&fed).unwrap_err().to_string();
        assert!(e.contains(&format!("member {hospital}: host")), "{e}");
        assert!(e.contains("not a DNS name"), "{e}");
        let mut d = sample();
        d.members[4].address = "127.0.0.1".into();
        assert!(d.sign(&fed).is_err());
        for good in [
            "hospital.example",
            "a-b.c1.example.",
            "127.0.0.1",
            "::1",
            "localhost",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a.example",
            "x.example:7405",
            "1.2.3.999",
            "a b",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_defaults_to_the_address_ip() {
        let d = sample();
        assert_eq!(d.members[0].host, None);
        let (addr, host) = d.members[0].endpoint().unwrap();
        assert_eq!(
            (addr.to_string(), host.as_str()),
            ("127.0.0.1:7401".into(), "127.0.0.1")
        );
        let (_, host) = d.members[4].endpoint().unwrap();
        assert_eq!(host, "hospital.example");
    }

    #[test]
    fn inconsistent_directories_are_refused() {
        let fed = testkit::signer("lg:130001");
        assert_eq!(
            toml_like().sign(&fed).unwrap_err(),
            DirectoryError::NoExpiry
        );
        let mut d = sample();
        d.members.push(d.members[0].clone());
        assert!(matches!(
            d.sign(&fed).unwrap_err(),
            DirectoryError::DuplicateMember(_)
        ));
        let mut d = sample();
        d.jurisdictions
            .insert("131059".parse().unwrap(), testkit::org("ot:npo-komorebi"));
        assert!(matches!(
            d.sign(&fed).unwrap_err(),
            DirectoryError::BadJurisdiction { .. }
        ));
    }
}
