//! The hospital's opinion letter on the plan (Form 3, 計画に係る意見書) with its crisis plan
//! (Form 4), sent by the admitting hospital to the plan author with the latest needs assessment.

use serde::{Deserialize, Serialize};

use super::{
    not_before, require_scheme, require_type, Benefits, CaseId, ContinuedAdmission, CrisisPlan,
    Diagnosis, DocType, PersonWithHousing, ServiceNeeded, SupportRow, Supporter, ValidationError,
};
use crate::date::Date;
use crate::org::{OrgId, OrgScheme};

/// The hospital writing the letter (病院名, 所在地, 管理者名).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuingHospital {
    /// The hospital's org id; must equal the letter's author.
    pub org: OrgId,
    /// Hospital name.
    pub name: String,
    /// Address.
    pub address: String,
    /// The director (管理者).
    pub director: String,
}

/// Form 3 opinion letter with the Form 4 crisis plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpinionLetter {
    /// Always `opinion_letter`.
    pub document_type: DocType,
    /// The admitting hospital (`mi:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The day the letter was written.
    pub written_on: Date,
    /// The hospital, as on the letterhead.
    pub hospital: IssuingHospital,
    /// The person, with housing type.
    pub person: PersonWithHousing,
    /// Diagnosis and comorbidities.
    pub diagnosis: Diagnosis,
    /// The day of the current admission.
    pub admission_date: Date,
    /// The person's wishes for life after discharge.
    pub wishes: String,
    /// Family and other supporters.
    pub supporters: Vec<Supporter>,
    /// Planned discharge date; `null` when undecided (未定).
    pub planned_discharge_date: Option<Date>,
    /// Whether admission continues.
    pub continued_admission: ContinuedAdmission,
    /// Basic service information.
    pub benefits: Benefits,
    /// Services needed after discharge.
    pub services_needed: Vec<ServiceNeeded>,
    /// Proposed support rows.
    pub support_rows: Vec<SupportRow>,
    /// Proposed policy when support is not continued.
    pub policy_if_discontinued: String,
    /// Proposed support period, free text (e.g. "6 months after discharge").
    pub support_period_proposal: String,
    /// Attending physician (主治医).
    pub attending_physician: String,
    /// Discharge-environment counsellor (退院後生活環境相談担当者).
    pub discharge_counsellor: String,
    /// Candidate support parties the hospital suggests (II.9(4)).
    pub candidate_support_parties: Vec<OrgId>,
    /// The Form 4 crisis plan draft, if made.
    pub crisis_plan: Option<CrisisPlan>,
}

impl OpinionLetter {
    /// Checks the rules the types do not: the hospital is the author, dates are in order, and the
    /// crisis plan fits the form.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::OpinionLetter)?;
        require_scheme(
            "author",
            &self.author,
            OrgScheme::MedicalInstitution,
            "a medical institution (mi:)",
        )?;
        if self.hospital.org != self.author {
            return Err(ValidationError::at(
                "hospital.org",
                format!("{} is not the author {}", self.hospital.org, self.author),
            ));
        }
        if let Some(d) = self.planned_discharge_date {
            not_before(
                "planned_discharge_date",
                d,
                "admission_date",
                self.admission_date,
            )?;
        }
        if let Some(c) = &self.crisis_plan {
            c.validate("crisis_plan")?;
        }
        Ok(())
    }
}
