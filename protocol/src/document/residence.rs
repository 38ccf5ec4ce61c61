//! The residence-change report (II.9(3)): the person's (future) residence changes, reported to
//! the plan author. It starts the relocation flow that may lead to a Form 7 transfer notice.

use serde::{Deserialize, Serialize};

use super::{require_type, CaseId, DocType, ValidationError};
use crate::date::Date;
use crate::org::{MunicipalityCode, OrgId};

/// A report that the person moves (or moved) to a new address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidenceChange {
    /// Always `residence_change`.
    pub document_type: DocType,
    /// Who reports it: the admitting hospital or the authority that learned of it.
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The day of the report.
    pub reported_on: Date,
    /// The new address.
    pub new_address: String,
    /// The municipality of the new address; the directory maps it to its authority.
    pub new_municipality: MunicipalityCode,
    /// The day of the move; `null` when not yet known.
    pub moved_on: Option<Date>,
    /// How the author learned of it (e.g. a call from the person).
    pub source: String,
}

impl ResidenceChange {
    /// Checks the document type; the types cover the rest.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type(
            "document_type",
            self.document_type,
            DocType::ResidenceChange,
        )
    }
}
