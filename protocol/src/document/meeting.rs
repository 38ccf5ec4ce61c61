//! The support meeting record (個別ケース検討会議, II.7): who met, who was absent, what was
//! discussed and decided, and the written confidentiality undertakings of the non-public
//! parties (II.7(8)).
//!
//! The person and the family attend in principle; the record says whether they did. Absent
//! parties are told what was decided: they receive the record too. The record goes only to the
//! meeting's parties ([`MeetingRecord::check_recipient`]). An extension of the support period
//! (R7) names the meeting that decided it; the record's `extension_to` says what it decided.

use serde::{Deserialize, Serialize};

use super::{require_authority, require_type, CaseId, DocType, ValidationError};
use crate::date::Date;
use crate::org::{OrgId, OrgScheme};

/// A party's written undertaking to handle what it learns only for the support (II.7(8)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Undertaking {
    /// The party that signed it.
    pub org: OrgId,
    /// The day it was signed.
    pub signed_on: Date,
}

/// The record of one support meeting, written by the convening authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingRecord {
    /// Always `meeting_record`.
    pub document_type: DocType,
    /// The convener, normally the plan author (`lg:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The day of the meeting.
    pub held_on: Date,
    /// The plan version discussed.
    pub plan_version: u32,
    /// Whether the person attended.
    pub person_attended: bool,
    /// Family and other supporters who attended, by relation (e.g. `母`), never by name.
    pub family_attended: Vec<String>,
    /// The parties that attended (the convener among them).
    pub attendees: Vec<OrgId>,
    /// Parties of the case that did not attend; they are sent the record.
    pub absent: Vec<OrgId>,
    /// What was discussed.
    pub agenda: Vec<String>,
    /// The minutes.
    pub minutes: String,
    /// What was decided (what the absent parties must know).
    pub decisions: String,
    /// The extension of the support period the meeting decided, if any (its new last day).
    pub extension_to: Option<Date>,
    /// The written undertakings of the non-public parties (every party without an `lg:` id).
    pub undertakings: Vec<Undertaking>,
}

impl MeetingRecord {
    /// Checks the rules the types do not: an authority convenes and attends, no party is both
    /// present and absent, and every non-public party has signed an undertaking by the day.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::MeetingRecord)?;
        require_authority("author", &self.author)?;
        if self.plan_version == 0 {
            return Err(ValidationError::at(
                "plan_version",
                "0 is not a plan version: the first plan is version 1",
            ));
        }
        if !self.attendees.contains(&self.author) {
            return Err(ValidationError::at(
                "attendees",
                format!("the convener {} must be among the attendees", self.author),
            ));
        }
        for (i, o) in self.absent.iter().enumerate() {
            if self.attendees.contains(o) {
                return Err(ValidationError::at(
                    format!("absent.{i}"),
                    format!("{o} is also among the attendees"),
                ));
            }
        }
        for o in self.parties() {
            if o.scheme() == OrgScheme::LocalGovernment {
                continue;
            }
            match self.undertakings.iter().find(|u| u.org == *o) {
                None => {
                    return Err(ValidationError::at(
                        "undertakings",
                        format!("{o} is not a public body and has no written undertaking to keep what it learns confidential (II.7(8)); record the day it signed one"),
                    ))
                }
                Some(u) if u.signed_on > self.held_on => {
                    return Err(ValidationError::at(
                        "undertakings",
                        format!("{o} signed its undertaking on {}, after the meeting on {}", u.signed_on, self.held_on),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The meeting's parties: the attendees, then the absent parties.
    pub fn parties(&self) -> impl Iterator<Item = &OrgId> {
        self.attendees.iter().chain(&self.absent)
    }

    /// Refuses a recipient that is not a party of the meeting: the record is shared only with
    /// them.
    pub fn check_recipient(&self, to: &OrgId) -> Result<(), String> {
        if self.parties().any(|o| o == to) {
            Ok(())
        } else {
            Err(format!(
                "meeting_record to {to} refused: {to} neither attended nor was named absent at the meeting on {}; the record goes only to the meeting's parties (R2)",
                self.held_on
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;

    pub(crate) const MEETING: &str =
        include_str!("../../../fixtures/case-0007/meeting_record.json");

    fn meeting() -> MeetingRecord {
        match Document::from_json(MEETING).unwrap() {
            Document::MeetingRecord(m) => *m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_meetings_parties_receive_the_record() {
        let m = meeting();
        m.check_recipient(&"ot:npo-komorebi".parse().unwrap())
            .unwrap();
        let e = m
            .check_recipient(&"lg:131121".parse().unwrap())
            .unwrap_err();
        assert!(e.contains("goes only to the meeting's parties"), "{e}");
    }

    #[test]
    fn non_public_parties_need_a_written_undertaking_by_the_day() {
        let mut m = meeting();
        m.undertakings
            .retain(|u| u.org.as_str() != "ot:npo-komorebi");
        let e = m.validate().unwrap_err();
        assert_eq!(e.path, "undertakings");
        assert!(
            e.message
                .starts_with("ot:npo-komorebi is not a public body"),
            "{e}"
        );
        let mut m = meeting();
        m.undertakings[0].signed_on = m.held_on.add_days(1);
        assert!(m
            .validate()
            .unwrap_err()
            .message
            .contains("after the meeting"));
    }

    #[test]
    fn at_a_meeting_the_plan_author_may_write_or_amend_form6() {
        use crate::org::Role;
        assert!(DocType::NeedsAssessment.may_be_authored_by(Role::Authority));
        assert!(DocType::NeedsAssessment.may_be_authored_by(Role::Hospital));
        assert!(!DocType::NeedsAssessment.may_be_authored_by(Role::Clinic));
        let mut a: serde_json::Value = serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/needs_assessment.json"
        ))
        .unwrap();
        a["author"] = "lg:131059".into();
        Document::from_value(a.clone()).unwrap();
        a["author"] = "sp:1330000011".into();
        let e = Document::from_value(a).unwrap_err();
        assert_eq!(e.path, "author");
    }

    #[test]
    fn the_convener_attends_and_nobody_is_both_present_and_absent() {
        let mut m = meeting();
        m.attendees.retain(|o| *o != m.author);
        assert_eq!(m.validate().unwrap_err().path, "attendees");
        let mut m = meeting();
        m.absent.push(m.attendees[1].clone());
        assert!(m
            .validate()
            .unwrap_err()
            .message
            .contains("also among the attendees"));
    }
}
