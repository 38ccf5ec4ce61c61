//! The person's consent record (R1), versioned, mapped to FHIR Consent.
//!
//! The controller (the plan-author authority) records it and its gateway signs and sends each
//! version to every org the record names. A later version supersedes an earlier one; a version
//! with `status: withdrawn` ends all sharing except withdrawal and support-end notices (R4).
//! The `police` block carries the guideline's exception (R6): police may take part only with
//! `allowed: true`, `person_refused: false` and the date the other parties agreed in writing.
//!
//! # Views
//!
//! A party does not need the whole record, and must not see all of it: the people the person
//! excluded, the police terms, who else takes part, and the names of the grantor and of the staff
//! member are none of its business. As signed elements the recipients are therefore split into
//! fixed slots `recipients.0` … `recipients.15` (at most [`MAX_RECIPIENTS`] entries), so that
//! the controller can disclose to each party only the validity of the record and the entries that
//! cover that party (and the controller, to whom every party may report back); see
//! [`crate::profile::consent_view`]. [`ConsentRecord::from_view`] reads such a view back, filling
//! what was withheld with values that allow nothing: no other recipient, no police.

use serde::{Deserialize, Serialize};

use super::{
    not_before, require_authority, require_type, CaseId, DocType, Purpose, ValidationError,
};
use crate::date::Date;
use crate::org::{OrgId, Role};

/// Whether a consent version is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// In force within its period.
    Active,
    /// Withdrawn by the person: nothing but withdrawal and support-end notices may flow.
    Withdrawn,
}

/// The validity period of a consent version (both days inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentPeriod {
    /// First day.
    pub from: Date,
    /// Last day.
    pub to: Date,
}

/// A party the person agreed may receive information: a named org, or every org of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ConsentRecipient {
    /// One organisation.
    Org {
        /// The organisation.
        org: OrgId,
    },
    /// Every organisation with this role in the directory.
    Role {
        /// The role.
        role: Role,
    },
}

/// The police exception of R6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliceTerms {
    /// Whether police may take part as a support party at all.
    pub allowed: bool,
    /// Whether the person refused police involvement; if so police never take part.
    pub person_refused: bool,
    /// The date all other parties agreed in writing; required for police to take part.
    #[serde(default)]
    pub parties_agreed_at: Option<Date>,
}

/// One version of the person's consent (FHIR Consent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    /// Always `consent`.
    pub document_type: DocType,
    /// Stable id across versions.
    pub id: String,
    /// Version number, starting at 1; a higher version supersedes a lower one.
    pub version: u32,
    /// Active or withdrawn.
    pub status: ConsentStatus,
    /// The case this consent is about.
    pub subject: CaseId,
    /// The day the consent (or withdrawal) was given.
    pub date: Date,
    /// Who gave it (the person, or a representative).
    pub grantor: String,
    /// The authority that holds and distributes the record; the record's author.
    pub controller: OrgId,
    /// The staff member who recorded it (R1: record who obtained it).
    pub recorded_by: String,
    /// Validity period.
    pub period: ConsentPeriod,
    /// The plan version the person consented to (III.4); `null` while no plan exists or when
    /// the consent follows the plan as it is revised. When set, a later version is shared for
    /// carrying out the plan only under a consent that names it.
    #[serde(default)]
    pub plan_version: Option<u32>,
    /// Purposes granted.
    pub purposes: Vec<Purpose>,
    /// Document types that may be shared.
    pub doc_types: Vec<DocType>,
    /// Who may receive them.
    pub recipients: Vec<ConsentRecipient>,
    /// Orgs that must never receive anything, whatever else the record says.
    #[serde(default)]
    pub excluded: Vec<OrgId>,
    /// The police exception (R6).
    pub police: PoliceTerms,
}

/// The most recipient entries a record may hold (each is a separately disclosable slot); name a
/// role to cover many orgs.
pub const MAX_RECIPIENTS: usize = 16;

/// The elements every consent view discloses: what the record is, whose it is, whether and
/// when it is in force, and what it allows.
pub const CONSENT_VIEW_CORE: [&str; 9] = [
    "id",
    "version",
    "status",
    "date",
    "controller",
    "period",
    "plan_version",
    "purposes",
    "doc_types",
];

impl ConsentRecord {
    /// Whether the record is in force on `today`: active, and `today` within its period.
    pub fn in_force(&self, today: Date) -> bool {
        self.status == ConsentStatus::Active && self.period.from <= today && today <= self.period.to
    }

    /// Whether the record lets the case move to another authority on `today`: in force, and
    /// granting `relocation_transfer`.
    pub fn lets_case_move(&self, today: Date) -> bool {
        self.in_force(today) && self.purposes.contains(&Purpose::RelocationTransfer)
    }

    /// Whether this version handed the case over to `org` at some time up to `today`: active,
    /// granting `relocation_transfer`, begun by `today`, and naming `org` by org (a role covers
    /// too many). Unlike [`ConsentRecord::lets_case_move`] the period may be over: a move that
    /// happened stays a move. A link of a handover proof ([`crate::fetch`]) must show this.
    pub fn handed_over_to(&self, org: &OrgId, today: Date) -> bool {
        self.status == ConsentStatus::Active
            && !self.excluded.contains(org)
            && self.period.from <= today
            && self.purposes.contains(&Purpose::RelocationTransfer)
            && self
                .recipients
                .iter()
                .any(|r| matches!(r, ConsentRecipient::Org { org: o } if o == org))
    }

    /// Whether entry `r` names `org` (by org, or by its directory `role`).
    pub fn entry_covers(r: &ConsentRecipient, org: &OrgId, role: Role) -> bool {
        match r {
            ConsentRecipient::Org { org: o } => o == org,
            ConsentRecipient::Role { role: r } => *r == role,
        }
    }

    /// Whether the record names `org` (of directory role `role`) as a recipient, by org or role.
    /// The exclusion list is not consulted here; see [`crate::gate`].
    pub fn names(&self, org: &OrgId, role: Role) -> bool {
        self.recipients
            .iter()
            .any(|r| Self::entry_covers(r, org, role))
    }

    /// Rebuilds a record from a consent view's disclosed elements (see the module docs). The core
    /// elements ([`CONSENT_VIEW_CORE`]) must be disclosed; withheld recipient slots are simply
    /// absent, a withheld exclusion list is empty, withheld police terms allow no police, and a
    /// withheld grantor or recorder reads as an empty string.
    pub fn from_view(
        author: &OrgId,
        subject: &CaseId,
        disclosed: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<ConsentRecord, ValidationError> {
        use serde_json::{json, Value};
        // Records signed before plan versions existed have no `plan_version`: it reads as null.
        for core in CONSENT_VIEW_CORE.iter().filter(|c| **c != "plan_version") {
            if !disclosed.contains_key(*core) {
                return Err(ValidationError::at(
                    *core,
                    "withheld, but every consent view must disclose it",
                ));
            }
        }
        let mut elements: Vec<(String, Value)> = disclosed
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let defaults = [
            ("plan_version", json!(null)),
            ("grantor", json!("")),
            ("recorded_by", json!("")),
            ("excluded", json!([])),
            (
                "police",
                json!({"allowed": false, "person_refused": false, "parties_agreed_at": null}),
            ),
        ];
        for (id, value) in defaults {
            if !disclosed.contains_key(id) {
                elements.push((id.to_owned(), value));
            }
        }
        match super::Document::from_elements(DocType::Consent, author, subject, elements)? {
            super::Document::Consent(c) => Ok(c),
            _ => Err(ValidationError::at("document_type", "not a consent record")),
        }
    }

    /// The authority the id names (`consent-<code>-…`, the code with its check digit), if any.
    /// Such an id is that authority's alone ([`ConsentRecord::validate`]), and a gateway records
    /// a consent it has never held only under an id that names its own authority.
    pub fn id_authority(&self) -> Option<OrgId> {
        super::authority_named_by(&self.id, "consent-")
    }

    /// Checks the rules the types do not: the controller is an authority, versions start at 1 and
    /// the period is in order. A withdrawn record is valid; what it allows is the gate's concern.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::Consent)?;
        require_authority("controller", &self.controller)?;
        // Consent ids are unique per gateway, and predictable: an id that names an authority is
        // that authority's alone, so that no other can take it first.
        if let Some(named) = self.id_authority() {
            if named != self.controller {
                return Err(ValidationError::at(
                    "id",
                    format!(
                        "{} names {named}, but the controller is {}: a consent id that starts with a local government code starts with the controller's own (consent-{}-…)",
                        self.id, self.controller, self.controller.code()
                    ),
                ));
            }
        }
        if self.version == 0 {
            return Err(ValidationError::at(
                "version",
                "0 is not a consent version: versions start at 1",
            ));
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(ValidationError::at(
                "recipients",
                format!(
                    "{} entries, at most {MAX_RECIPIENTS} are allowed: name a role (e.g. {{\"role\": \"clinic\"}}) to cover several orgs",
                    self.recipients.len()
                ),
            ));
        }
        not_before("period.to", self.period.to, "period.from", self.period.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;
    use crate::testkit::fixture;

    fn bunkyos() -> ConsentRecord {
        let Document::Consent(c) = fixture("consent.json") else {
            panic!("not a consent")
        };
        c
    }

    #[test]
    fn a_consent_id_that_names_an_authority_is_that_authoritys_alone() {
        let mut c = bunkyos();
        assert_eq!(c.id, "consent-131059-2026-0007");
        c.validate().unwrap();
        c.controller = "lg:132012".parse().unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err.path, "id");
        assert!(err.to_string().contains("names lg:131059"), "{err}");
        // Its own code, or an id that names no authority (a wrong check digit names none).
        for id in [
            "consent-132012-2026-0001",
            "consent-x",
            "consent-131058-2026-0007",
            "consent-132012-",
        ] {
            c.id = id.into();
            c.validate().unwrap();
        }
        // The id names an authority only with something after its code.
        assert_eq!(c.id_authority(), None);
        c.id = "consent-132012-1".into();
        assert_eq!(c.id_authority(), Some("lg:132012".parse().unwrap()));
    }

    #[test]
    fn a_move_stays_a_move_after_the_period_but_not_after_a_withdrawal() {
        let Document::Consent(v2) = fixture("consent_v2_relocation.json") else {
            panic!("not a consent")
        };
        let setagaya: OrgId = "lg:131121".parse().unwrap();
        let after = v2.period.to.add_days(1);
        assert!(v2.handed_over_to(&setagaya, v2.period.from));
        assert!(v2.handed_over_to(&setagaya, after));
        assert!(!v2.lets_case_move(after));
        assert!(!v2.handed_over_to(&setagaya, v2.period.from.add_days(-1)));
        assert!(!bunkyos().handed_over_to(&setagaya, v2.period.from));
        let mut withdrawn = v2.clone();
        withdrawn.status = ConsentStatus::Withdrawn;
        assert!(!withdrawn.handed_over_to(&setagaya, v2.period.from));
    }
}
