//! The residence-change report (II.9(3)): the person's (future) residence changes, reported to
//! the plan author. It starts the relocation flow that may lead to a Form 7 transfer notice.
//! A report may come before any plan exists, and the new address may be unknown: no fixed abode
//! (住所不定) or a return address not known (帰住先不明); `new_municipality` is then `null` and
//! `new_address` says which.

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
    /// The municipality of the new address; the directory maps it to its authority. `null` when
    /// the person has no fixed abode or the new address is not known.
    pub new_municipality: Option<MunicipalityCode>,
    /// The day of the move; `null` when not yet known.
    pub moved_on: Option<Date>,
    /// How the author learned of it (e.g. a call from the person).
    pub source: String,
}

impl ResidenceChange {
    /// Checks the document type, and that an unknown address is described.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type(
            "document_type",
            self.document_type,
            DocType::ResidenceChange,
        )?;
        if self.new_municipality.is_none() && self.new_address.trim().is_empty() {
            return Err(ValidationError::at(
                "new_address",
                "without a municipality, say what is known (e.g. 住所不定, 帰住先不明)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::document::Document;
    use crate::testkit::CASE_0007;

    fn report() -> serde_json::Value {
        let (_, text) = CASE_0007
            .iter()
            .find(|(n, _)| *n == "residence_change.json")
            .unwrap();
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_unknown_address_is_a_report_that_says_so() {
        let mut r = report();
        r["new_municipality"] = serde_json::Value::Null;
        r["new_address"] = "帰住先不明".into();
        Document::from_value(r.clone()).unwrap();
        r["new_address"] = " ".into();
        let e = Document::from_value(r).unwrap_err();
        assert_eq!(e.path, "new_address");
        assert!(e.message.contains("住所不定"), "{e}");
    }
}
