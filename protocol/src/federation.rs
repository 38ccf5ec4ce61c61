//! A federation of prefectures: joining another prefecture's directory to ours.
//!
//! Each prefecture signs its own directory with its own CA. A gateway whose CA recognises
//! another prefecture's CA (by cross-certificate, see `tsunagi-certs`) verifies that
//! prefecture's directory against it and [`join`]s it to its own, so that routing, roles and
//! jurisdictions span both. A prefecture speaks only for itself: every member of its directory
//! and every municipality it assigns must belong to it (the first two digits of a local
//! government code, a medical institution code and a welfare provider number are the prefecture
//! code), and nothing may repeat what another directory already says. `ot:` ids name no
//! prefecture, so no other prefecture's CA can vouch for them: they are left out of the join and
//! stay reachable only within their own prefecture.

use thiserror::Error;

use crate::directory::Directory;
use crate::org::{MunicipalityCode, OrgId, OrgScheme};

/// Why another prefecture's directory cannot be joined.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JoinError {
    /// A member outside the signing prefecture.
    #[error("the directory of {prefecture} lists {org}, which is not in that prefecture: a prefecture's directory may list only its own organisations; ask {prefecture} to remove it")]
    MemberOutside {
        /// The signing prefecture.
        prefecture: OrgId,
        /// The member.
        org: OrgId,
    },
    /// A jurisdiction outside the signing prefecture.
    #[error("the directory of {prefecture} assigns municipality {municipality}, which is not in that prefecture")]
    MunicipalityOutside {
        /// The signing prefecture.
        prefecture: OrgId,
        /// The municipality.
        municipality: MunicipalityCode,
    },
    /// A member already listed by another directory.
    #[error("{org} is listed both by the directory of {prefecture} and by another directory; it must be in exactly one")]
    DuplicateMember {
        /// The signing prefecture.
        prefecture: OrgId,
        /// The member.
        org: OrgId,
    },
    /// A municipality already assigned by another directory.
    #[error("municipality {municipality} is assigned both by the directory of {prefecture} and by another directory")]
    DuplicateJurisdiction {
        /// The signing prefecture.
        prefecture: OrgId,
        /// The municipality.
        municipality: MunicipalityCode,
    },
    /// The directory does not list the prefecture that signed it.
    #[error("the directory signed for {prefecture} does not list {prefecture} itself")]
    NoPrefecture {
        /// The signing prefecture.
        prefecture: OrgId,
    },
}

/// Joins `theirs`, the verified directory of `prefecture`, to `ours`; checks everything first,
/// so `ours` is unchanged on error. Returns the `ot:` members left out.
pub fn join(
    ours: &mut Directory,
    mut theirs: Directory,
    prefecture: &OrgId,
) -> Result<Vec<OrgId>, JoinError> {
    let code = prefecture.prefecture_code();
    if theirs.member(prefecture).is_none() {
        return Err(JoinError::NoPrefecture {
            prefecture: prefecture.clone(),
        });
    }
    let (others, members): (Vec<_>, Vec<_>) = std::mem::take(&mut theirs.members)
        .into_iter()
        .partition(|m| m.org.scheme() == OrgScheme::Other);
    theirs.members = members;
    for m in &theirs.members {
        if code.is_none() || m.org.prefecture_code() != code {
            return Err(JoinError::MemberOutside {
                prefecture: prefecture.clone(),
                org: m.org.clone(),
            });
        }
        if ours.member(&m.org).is_some() {
            return Err(JoinError::DuplicateMember {
                prefecture: prefecture.clone(),
                org: m.org.clone(),
            });
        }
    }
    for municipality in theirs.jurisdictions.keys() {
        if municipality.as_str().get(..2) != code {
            return Err(JoinError::MunicipalityOutside {
                prefecture: prefecture.clone(),
                municipality: municipality.clone(),
            });
        }
        if ours.jurisdictions.contains_key(municipality) {
            return Err(JoinError::DuplicateJurisdiction {
                prefecture: prefecture.clone(),
                municipality: municipality.clone(),
            });
        }
    }
    ours.members.extend(theirs.members);
    ours.jurisdictions.extend(theirs.jurisdictions);
    Ok(others.into_iter().map(|m| m.org).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Member;
    use crate::Role;

    fn member(org: &str, role: Role) -> Member {
        Member {
            org: org.parse().unwrap(),
            role,
            name: "x".into(),
            address: "127.0.0.1:7401".into(),
            host: None,
            fingerprints: vec![],
        }
    }

    fn dir(members: Vec<Member>, jurisdictions: &[(&str, &str)]) -> Directory {
        Directory {
            version: 1,
            federation: "f".into(),
            expires: None,
            members,
            jurisdictions: jurisdictions
                .iter()
                .map(|(m, o)| (m.parse().unwrap(), o.parse().unwrap()))
                .collect(),
        }
    }

    fn tokyo() -> Directory {
        dir(
            vec![
                member("lg:130001", Role::Prefecture),
                member("lg:131059", Role::Authority),
            ],
            &[("131059", "lg:131059")],
        )
    }

    fn kanagawa() -> Directory {
        dir(
            vec![
                member("lg:140007", Role::Prefecture),
                member("lg:141003", Role::Authority),
                member("mi:1410000019", Role::Hospital),
            ],
            &[("141003", "lg:141003")],
        )
    }

    #[test]
    fn joins_a_prefecture_that_speaks_for_itself_only() {
        let kanagawa_org: OrgId = "lg:140007".parse().unwrap();
        let mut ours = tokyo();
        let mut theirs = kanagawa();
        theirs.members.push(member("ot:yokohama-npo", Role::Npo));
        let left_out = join(&mut ours, theirs, &kanagawa_org).unwrap();
        assert_eq!(left_out, vec!["ot:yokohama-npo".parse::<OrgId>().unwrap()]);
        assert!(ours.member(&left_out[0]).is_none());
        assert_eq!(
            ours.role_of(&"lg:141003".parse().unwrap()),
            Some(Role::Authority)
        );
        assert_eq!(
            ours.authority_for(&"141003".parse().unwrap()),
            Some(&"lg:141003".parse().unwrap())
        );
        // Joining again repeats every member.
        let err = join(&mut ours, kanagawa(), &kanagawa_org).unwrap_err();
        assert!(matches!(err, JoinError::DuplicateMember { .. }), "{err}");

        // Kanagawa cannot claim a Tokyo ward or a Tokyo member.
        for (theirs, want) in [
            (
                dir(
                    vec![member("lg:140007", Role::Prefecture)],
                    &[("131059", "lg:140007")],
                ),
                "municipality 131059",
            ),
            (
                dir(
                    vec![
                        member("lg:140007", Role::Prefecture),
                        member("lg:131059", Role::Authority),
                    ],
                    &[],
                ),
                "lists lg:131059",
            ),
            (
                dir(vec![member("lg:141003", Role::Authority)], &[]),
                "does not list",
            ),
        ] {
            let mut ours = tokyo();
            let err = join(&mut ours, theirs, &kanagawa_org).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert_eq!(ours, tokyo(), "unchanged on error");
        }
    }
}
