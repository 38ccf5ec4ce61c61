//! The readmission notice: the person was admitted again during the support period.
//!
//! Readmission does not end support (III.6): the plan is kept, support resumes at the next
//! discharge and the plan is revised then. The notice tells the parties that support is paused
//! while the person is in hospital; the support parties outside the treating team learn only
//! the date (profile `notice`).

use serde::{Deserialize, Serialize};

use super::{require_scheme, require_type, AdmissionType, CaseId, DocType, ValidationError};
use crate::date::Date;
use crate::org::{OrgId, OrgScheme};

/// Notice that the person was readmitted while support under the plan goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readmission {
    /// Always `readmission`.
    pub document_type: DocType,
    /// The admitting hospital reporting it, or the plan author passing it on.
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The day of admission.
    pub admitted_on: Date,
    /// The admitting hospital (`mi:`).
    pub hospital: OrgId,
    /// The form of admission.
    pub admission_type: AdmissionType,
    /// A note for the treating team (may be empty).
    pub note: String,
}

impl Readmission {
    /// Checks the rules the types do not: the hospital is a medical institution.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::Readmission)?;
        require_scheme(
            "hospital",
            &self.hospital,
            OrgScheme::MedicalInstitution,
            "a medical institution (mi:)",
        )
    }
}
