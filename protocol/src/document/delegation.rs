//! Delegation (III.8, 業務の委託): an authority contracts part of the support of a case to
//! another organisation. The authority signs a [`Delegation`] record naming the contractor, the
//! case, the document types the contractor may author for it (its tasks) and the period; a new
//! version with status `revoked` ends it. [`permits`] decides whether a document authored by an
//! org whose directory role may not write that type is still acceptable because the case's
//! controller delegated it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    require_authority, require_type, wire_enum, CaseId, ConsentPeriod, DocType, ValidationError,
};
use crate::date::Date;
use crate::org::OrgId;

wire_enum!(
    /// Whether a delegation is in force.
    DelegationStatus, "delegation status" {
        /// In force within its period.
        Active = "active",
        /// Ended by the authority before its period ran out.
        Revoked = "revoked",
    }
);

/// The document types an authority may delegate: work of carrying out the support whose form
/// allows an author outside local government — today the report of a move, which a contracted
/// support provider visiting the person learns of first. Never the person's consent, notices of
/// withdrawal or support end, plans, transfers between authorities or delegation itself: their
/// forms name the authority as author.
pub const DELEGABLE: &[DocType] = &[DocType::ResidenceChange];

/// A delegation record, signed by the authority (its author).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// Always `delegation`.
    pub document_type: DocType,
    /// The delegating authority (`lg:`), the case's controller.
    pub author: OrgId,
    /// The case delegated.
    pub subject: CaseId,
    /// Stable id across versions.
    pub id: String,
    /// Version, from 1; a newer version supersedes the older.
    pub version: u32,
    /// The contracted organisation.
    pub contractor: OrgId,
    /// The document types the contractor may author for the case (its tasks).
    pub tasks: Vec<DocType>,
    /// When the delegation is in force (both days inclusive).
    pub period: ConsentPeriod,
    /// `active`, or `revoked` to end it.
    pub status: DelegationStatus,
    /// The day this version was recorded.
    pub date: Date,
    /// The contract it rests on (Japanese), e.g. 委託契約の名称と番号.
    pub contract: String,
}

impl Delegation {
    /// Checks the rules the types do not.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::Delegation)?;
        require_authority("author", &self.author)?;
        if self.id.trim().is_empty() || self.id.len() > 64 {
            return Err(ValidationError::at("id", "must be 1 to 64 characters"));
        }
        if self.version == 0 {
            return Err(ValidationError::at("version", "versions start at 1"));
        }
        if self.contractor == self.author {
            return Err(ValidationError::at(
                "contractor",
                "is the authority itself: name the contracted organisation",
            ));
        }
        if self.tasks.is_empty() {
            return Err(ValidationError::at(
                "tasks",
                "is empty: name the document types the contractor may author",
            ));
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if !DELEGABLE.contains(t) {
                return Err(ValidationError::at(
                    format!("tasks.{i}"),
                    format!(
                        "{t} cannot be delegated (delegable: {})",
                        DELEGABLE
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if self.tasks[..i].contains(t) {
                return Err(ValidationError::at(
                    format!("tasks.{i}"),
                    format!("{t} is listed twice"),
                ));
            }
        }
        if self.period.to < self.period.from {
            return Err(ValidationError::at(
                "period.to",
                format!(
                    "{} is before period.from {}",
                    self.period.to, self.period.from
                ),
            ));
        }
        Ok(())
    }
}

/// Why a document authored under a delegation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationDenied {
    /// No delegation of the case's controller names the author.
    #[error("{author} may not author a {doc_type} and holds no delegation of case {case} from its controller {controller}")]
    NotDelegated {
        /// The author.
        author: OrgId,
        /// The case.
        case: CaseId,
        /// The document type.
        doc_type: DocType,
        /// The case's controller.
        controller: OrgId,
    },
    /// The delegation was revoked.
    #[error("the delegation {id} of case {case} to {author} was revoked (version {version}); the authority no longer accepts its documents for this case")]
    Revoked {
        /// The delegation id.
        id: String,
        /// The revoking version.
        version: u32,
        /// The author.
        author: OrgId,
        /// The case.
        case: CaseId,
    },
    /// The document type is not among the delegated tasks.
    #[error("the delegation {id} to {author} covers {tasks} for case {case}, not {doc_type}")]
    OutOfScope {
        /// The delegation id.
        id: String,
        /// The author.
        author: OrgId,
        /// The case.
        case: CaseId,
        /// The document type.
        doc_type: DocType,
        /// The delegated tasks.
        tasks: String,
    },
    /// Today is outside the delegation's period.
    #[error("the delegation {id} to {author} is in force from {from} to {to}, not on {today}")]
    OutsidePeriod {
        /// The delegation id.
        id: String,
        /// The author.
        author: OrgId,
        /// First day.
        from: Date,
        /// Last day.
        to: Date,
        /// Today.
        today: Date,
    },
}

impl DelegationDenied {
    /// A stable code for receipts and the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            DelegationDenied::NotDelegated { .. } => "not_delegated",
            DelegationDenied::Revoked { .. } => "delegation_revoked",
            DelegationDenied::OutOfScope { .. } => "delegation_out_of_scope",
            DelegationDenied::OutsidePeriod { .. } => "delegation_outside_period",
        }
    }
}

/// Whether `author` may author a `doc_type` about `case` today under a delegation from
/// `controller`. Only the newest version of each delegation id counts, and only delegations
/// authored by the controller, about this case, naming this author.
pub fn permits<'a>(
    delegations: &'a [Delegation],
    author: &OrgId,
    case: &CaseId,
    doc_type: DocType,
    controller: &OrgId,
    today: Date,
) -> Result<&'a Delegation, DelegationDenied> {
    let mut latest: BTreeMap<&str, &Delegation> = BTreeMap::new();
    for d in delegations
        .iter()
        .filter(|d| d.author == *controller && d.subject == *case && d.contractor == *author)
    {
        let slot = latest.entry(d.id.as_str()).or_insert(d);
        if d.version > slot.version {
            *slot = d;
        }
    }
    let mut refusal = DelegationDenied::NotDelegated {
        author: author.clone(),
        case: case.clone(),
        doc_type,
        controller: controller.clone(),
    };
    for d in latest.into_values() {
        let reason = if d.status == DelegationStatus::Revoked {
            DelegationDenied::Revoked {
                id: d.id.clone(),
                version: d.version,
                author: author.clone(),
                case: case.clone(),
            }
        } else if !d.tasks.contains(&doc_type) {
            DelegationDenied::OutOfScope {
                id: d.id.clone(),
                author: author.clone(),
                case: case.clone(),
                doc_type,
                tasks: d
                    .tasks
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        } else if today < d.period.from || today > d.period.to {
            DelegationDenied::OutsidePeriod {
                id: d.id.clone(),
                author: author.clone(),
                from: d.period.from,
                to: d.period.to,
                today,
            }
        } else {
            return Ok(d);
        };
        refusal = reason;
    }
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Delegation {
        Delegation {
            document_type: DocType::Delegation,
            author: "lg:131059".parse().unwrap(),
            subject: "case-131059-2026-0007".parse().unwrap(),
            id: "delegation-131059-0007-1".into(),
            version: 1,
            contractor: "sp:1330000011".parse().unwrap(),
            tasks: vec![DocType::ResidenceChange],
            period: ConsentPeriod {
                from: Date::new(2026, 11, 1).unwrap(),
                to: Date::new(2027, 3, 31).unwrap(),
            },
            status: DelegationStatus::Active,
            date: Date::new(2026, 11, 1).unwrap(),
            contract: "退院後支援業務委託契約 第12号".into(),
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        sample().validate().unwrap();
        let mut d = sample();
        d.tasks = vec![DocType::SupportPlan];
        assert!(d.validate().is_err());
        let mut d = sample();
        d.tasks = vec![DocType::Consent];
        assert!(d
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("tasks.0: consent cannot be delegated"));
        let mut d = sample();
        d.contractor = d.author.clone();
        assert!(d.validate().is_err());
        let mut d = sample();
        d.tasks.clear();
        assert!(d.validate().is_err());
    }

    #[test]
    fn permits_within_scope_and_period_until_revoked() {
        let d = sample();
        let today = Date::new(2026, 12, 4).unwrap();
        let (a, c, ctl) = (&d.contractor, &d.subject, &d.author);
        let list = vec![d.clone()];
        assert!(permits(&list, a, c, DocType::ResidenceChange, ctl, today).is_ok());
        let e = permits(&list, a, c, DocType::SupportEnd, ctl, today).unwrap_err();
        assert_eq!(e.code(), "delegation_out_of_scope");
        let e = permits(
            &list,
            a,
            c,
            DocType::ResidenceChange,
            ctl,
            Date::new(2027, 4, 1).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "delegation_outside_period");
        let other: OrgId = "sp:1330000029".parse().unwrap();
        let e = permits(&list, &other, c, DocType::ResidenceChange, ctl, today).unwrap_err();
        assert_eq!(e.code(), "not_delegated");
        // Another controller's delegation counts for nothing.
        let e = permits(
            &list,
            a,
            c,
            DocType::ResidenceChange,
            &"lg:131121".parse().unwrap(),
            today,
        )
        .unwrap_err();
        assert_eq!(e.code(), "not_delegated");
        let mut revoked = d.clone();
        revoked.version = 2;
        revoked.status = DelegationStatus::Revoked;
        let list = vec![revoked, d.clone()];
        let e = permits(&list, a, c, DocType::ResidenceChange, ctl, today).unwrap_err();
        assert_eq!(e.code(), "delegation_revoked");
    }
}
