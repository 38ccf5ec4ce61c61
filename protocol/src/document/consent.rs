//! The person's consent record (R1), versioned, mapped to FHIR Consent.
//!
//! The controller (the plan-author authority) records it and its gateway signs and sends each
//! version to every org the record names. A later version supersedes an earlier one; a version
//! with `status: withdrawn` ends all sharing except withdrawal and support-end notices (R4).
//! The `police` block carries the guideline's exception (R6): police may take part only with
//! `allowed: true`, `person_refused: false` and the date the other parties agreed in writing.

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

impl ConsentRecord {
    /// Checks the rules the types do not: the controller is an authority, versions start at 1 and
    /// the period is in order. A withdrawn record is valid; what it allows is the gate's concern.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::Consent)?;
        require_authority("controller", &self.controller)?;
        if self.version == 0 {
            return Err(ValidationError::at(
                "version",
                "0 is not a consent version: versions start at 1",
            ));
        }
        not_before("period.to", self.period.to, "period.from", self.period.from)
    }
}
