//! Organisation identities and roles.
//!
//! Every party in the federation is named by an [`OrgId`] of the form `scheme:code`:
//!
//! | scheme | code | example |
//! |---|---|---|
//! | `lg` | 6-digit 全国地方公共団体コード: 5 digits and a modulus-11 check digit | `lg:131059` (Bunkyo) |
//! | `mi` | 10-digit 医療機関コード: 2-digit prefecture, 1-digit fee table, 7 digits | `mi:1310000017` |
//! | `sp` | 10-digit 事業所番号 of a welfare service provider: 2-digit prefecture, 8 digits | `sp:1330000011` |
//! | `ot` | a slug for others (NPOs, police): lowercase ASCII letters, digits and `-` | `ot:npo-komorebi` |
//!
//! The local-government check digit follows JIS X 0401: weight the five digits by 6, 5, 4, 3, 2,
//! take the sum modulo 11, subtract it from 11 and keep the last decimal digit. Medical institution
//! codes carry a fee-table digit (1 medical, 3 dental, 4 pharmacy, 6 visiting nursing); prefectures
//! run from 01 to 47. Parsing rejects anything else with an error that says what was wrong.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid organisation id or municipality code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgIdError {
    /// The string has no `scheme:` prefix.
    #[error("{0:?} is not an org id: expected scheme:code with scheme lg, mi, sp or ot")]
    MissingScheme(String),
    /// The scheme is not one of `lg`, `mi`, `sp`, `ot`.
    #[error("{0:?} has an unknown scheme: expected lg, mi, sp or ot")]
    UnknownScheme(String),
    /// The code has the wrong length or contains non-digits.
    #[error("{code:?} is not a {what}: expected {expected}")]
    Malformed {
        /// The offending code.
        code: String,
        /// What kind of code was expected.
        what: &'static str,
        /// A description of the expected form.
        expected: &'static str,
    },
    /// A local-government code whose check digit does not match.
    #[error("{code} fails its check digit (expected {expected})")]
    CheckDigit {
        /// The offending code.
        code: String,
        /// The check digit the first five digits call for.
        expected: u8,
    },
    /// The 2-digit prefecture prefix is outside 01..=47.
    #[error("{0} does not start with a prefecture number 01 to 47")]
    Prefecture(String),
    /// A medical institution code with an unknown fee-table digit.
    #[error("{0} has fee-table digit {1}: expected 1 (medical), 3 (dental), 4 (pharmacy) or 6 (visiting nursing)")]
    FeeTable(String, char),
}

/// Computes the JIS X 0401 check digit of a 5-digit local-government code.
pub fn lg_check_digit(first5: &[u8; 5]) -> u8 {
    let sum: u32 = first5
        .iter()
        .zip([6u32, 5, 4, 3, 2])
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    ((11 - sum % 11) % 10) as u8
}

fn digits(code: &str) -> Option<Vec<u8>> {
    code.bytes()
        .map(|b| b.is_ascii_digit().then(|| b - b'0'))
        .collect()
}

fn check_prefecture(code: &str, d: &[u8]) -> Result<(), OrgIdError> {
    let pref = d[0] * 10 + d[1];
    if (1..=47).contains(&pref) {
        Ok(())
    } else {
        Err(OrgIdError::Prefecture(code.to_owned()))
    }
}

/// A 6-digit local-government code (全国地方公共団体コード) with a valid check digit.
///
/// Used for a person's municipality and for jurisdiction lookups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MunicipalityCode(String);

impl MunicipalityCode {
    /// The six digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MunicipalityCode {
    type Err = OrgIdError;
    fn from_str(code: &str) -> Result<Self, OrgIdError> {
        let d = digits(code)
            .filter(|d| d.len() == 6)
            .ok_or(OrgIdError::Malformed {
                code: code.to_owned(),
                what: "local-government code",
                expected: "6 digits",
            })?;
        check_prefecture(code, &d)?;
        let expected = lg_check_digit(&[d[0], d[1], d[2], d[3], d[4]]);
        if d[5] != expected {
            return Err(OrgIdError::CheckDigit {
                code: code.to_owned(),
                expected,
            });
        }
        Ok(Self(code.to_owned()))
    }
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scheme of an [`OrgId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrgScheme {
    /// Local government (`lg:`).
    LocalGovernment,
    /// Medical institution (`mi:`).
    MedicalInstitution,
    /// Welfare service provider (`sp:`).
    ServiceProvider,
    /// Other organisation (`ot:`).
    Other,
}

/// An organisation identity: `lg:`, `mi:`, `sp:` or `ot:` followed by its code.
///
/// The string form is canonical and is what goes on the wire, in certificates
/// (`urn:tsunagi:org:<id>`) and in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(String);

impl OrgId {
    /// The canonical string form, e.g. `lg:131059`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme.
    pub fn scheme(&self) -> OrgScheme {
        match &self.0[..3] {
            "lg:" => OrgScheme::LocalGovernment,
            "mi:" => OrgScheme::MedicalInstitution,
            "sp:" => OrgScheme::ServiceProvider,
            _ => OrgScheme::Other,
        }
    }

    /// The code after the scheme.
    pub fn code(&self) -> &str {
        &self.0[3..]
    }

    /// The two-digit prefecture code (JIS X 0401) the id belongs to: the first two digits of a
    /// local government code, a medical institution code and a welfare provider number alike.
    /// `ot:` ids carry none.
    pub fn prefecture_code(&self) -> Option<&str> {
        match self.scheme() {
            OrgScheme::Other => None,
            _ => self.code().get(..2),
        }
    }

    /// Whether this is a prefecture's own local government code (`lg:PP000C`).
    pub fn is_prefecture(&self) -> bool {
        self.scheme() == OrgScheme::LocalGovernment && self.code().get(2..5) == Some("000")
    }

    /// The URI placed in certificates' subject alternative names.
    pub fn to_uri(&self) -> String {
        format!("{ORG_URI_PREFIX}{}", self.0)
    }

    /// Parses the URI form `urn:tsunagi:org:<id>`.
    pub fn from_uri(uri: &str) -> Result<Self, OrgIdError> {
        uri.strip_prefix(ORG_URI_PREFIX)
            .ok_or_else(|| OrgIdError::MissingScheme(uri.to_owned()))?
            .parse()
    }
}

/// Prefix of the URI SAN that carries an org identity in certificates.
pub const ORG_URI_PREFIX: &str = "urn:tsunagi:org:";

impl FromStr for OrgId {
    type Err = OrgIdError;
    fn from_str(s: &str) -> Result<Self, OrgIdError> {
        let (scheme, code) = s
            .split_once(':')
            .ok_or_else(|| OrgIdError::MissingScheme(s.to_owned()))?;
        match scheme {
            "lg" => {
                MunicipalityCode::from_str(code)?;
            }
            "mi" => {
                let d = digits(code)
                    .filter(|d| d.len() == 10)
                    .ok_or(OrgIdError::Malformed {
                        code: code.to_owned(),
                        what: "medical institution code",
                        expected: "10 digits",
                    })?;
                check_prefecture(code, &d)?;
                if !matches!(d[2], 1 | 3 | 4 | 6) {
                    return Err(OrgIdError::FeeTable(
                        code.to_owned(),
                        char::from(b'0' + d[2]),
                    ));
                }
            }
            "sp" => {
                let d = digits(code)
                    .filter(|d| d.len() == 10)
                    .ok_or(OrgIdError::Malformed {
                        code: code.to_owned(),
                        what: "service provider number",
                        expected: "10 digits",
                    })?;
                check_prefecture(code, &d)?;
            }
            "ot" => {
                let ok = (1..=63).contains(&code.len())
                    && code.as_bytes()[0].is_ascii_lowercase()
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !code.ends_with('-');
                if !ok {
                    return Err(OrgIdError::Malformed {
                        code: code.to_owned(),
                        what: "slug",
                        expected:
                            "1 to 63 lowercase letters, digits or '-', starting with a letter",
                    });
                }
            }
            _ => return Err(OrgIdError::UnknownScheme(s.to_owned())),
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(OrgId);
string_serde!(MunicipalityCode);

/// The role an organisation plays in the federation, as listed in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Health-centre-establishing authority (prefecture, city with a health centre, special ward):
    /// plan author and coordinator.
    Authority,
    /// Prefecture or designated city that ordered an involuntary admission; co-author of plans.
    Prefecture,
    /// Admitting psychiatric hospital.
    Hospital,
    /// Outpatient clinic.
    Clinic,
    /// Visiting nurse station.
    VisitingNurse,
    /// Community support provider (相談支援事業所 etc.).
    SupportProvider,
    /// Municipal welfare office.
    MunicipalWelfare,
    /// Non-profit organisation.
    Npo,
    /// Mental health and welfare centre.
    MhwCentre,
    /// Police: excluded by default (R6).
    Police,
}

impl Role {
    /// All roles, in directory order.
    pub const ALL: [Role; 10] = [
        Role::Authority,
        Role::Prefecture,
        Role::Hospital,
        Role::Clinic,
        Role::VisitingNurse,
        Role::SupportProvider,
        Role::MunicipalWelfare,
        Role::Npo,
        Role::MhwCentre,
        Role::Police,
    ];

    /// The snake_case name used in JSON, TOML and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Authority => "authority",
            Role::Prefecture => "prefecture",
            Role::Hospital => "hospital",
            Role::Clinic => "clinic",
            Role::VisitingNurse => "visiting_nurse",
            Role::SupportProvider => "support_provider",
            Role::MunicipalWelfare => "municipal_welfare",
            Role::Npo => "npo",
            Role::MhwCentre => "mhw_centre",
            Role::Police => "police",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a role: expected one of {}",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefecture_codes_of_ids() {
        let id = |s: &str| s.parse::<OrgId>().unwrap();
        assert_eq!(id("lg:141003").prefecture_code(), Some("14"));
        assert_eq!(id("mi:1310000017").prefecture_code(), Some("13"));
        assert_eq!(id("sp:1330000011").prefecture_code(), Some("13"));
        assert_eq!(id("ot:npo-komorebi").prefecture_code(), None);
        assert!(id("lg:140007").is_prefecture() && id("lg:130001").is_prefecture());
        assert!(!id("lg:141003").is_prefecture() && !id("mi:1410000019").is_prefecture());
    }

    use super::*;

    #[test]
    fn directory_codes_parse() {
        for s in [
            "lg:130001",
            "lg:131059",
            "lg:131121",
            "lg:132012",
            "mi:1310000017",
            "mi:1310000025",
            "mi:1360000011",
            "sp:1330000011",
            "ot:npo-komorebi",
            "ot:mpd",
        ] {
            let id: OrgId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
            assert_eq!(OrgId::from_uri(&id.to_uri()).unwrap(), id);
        }
    }

    #[test]
    fn check_digits_follow_jis_x_0401() {
        // 13208 sums to 45, 45 mod 11 = 1, 11 - 1 = 10 -> last digit 0 (Chofu 132080).
        assert_eq!(lg_check_digit(&[1, 3, 2, 0, 8]), 0);
        assert_eq!(lg_check_digit(&[1, 3, 1, 0, 5]), 9);
        for m in ["131059", "131121", "132012", "132063", "132080"] {
            m.parse::<MunicipalityCode>().unwrap();
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = "131058".parse::<MunicipalityCode>().unwrap_err();
        assert_eq!(e.to_string(), "131058 fails its check digit (expected 9)");
        let e = "lg:13105".parse::<OrgId>().unwrap_err();
        assert!(e.to_string().contains("expected 6 digits"), "{e}");
        let e = "xx:1".parse::<OrgId>().unwrap_err();
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        let e = "1310000017".parse::<OrgId>().unwrap_err();
        assert!(e.to_string().contains("scheme:code"), "{e}");
        let e = "mi:1320000017".parse::<OrgId>().unwrap_err();
        assert!(e.to_string().contains("fee-table digit 2"), "{e}");
        let e = "mi:4910000017".parse::<OrgId>().unwrap_err();
        assert!(e.to_string().contains("prefecture"), "{e}");
        let e = "ot:NPO".parse::<OrgId>().unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");
        let e = "sp:13300000x1".parse::<OrgId>().unwrap_err();
        assert!(e.to_string().contains("10 digits"), "{e}");
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("sheriff".parse::<Role>().unwrap_err().contains("authority"));
    }
}
