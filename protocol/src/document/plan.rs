//! The discharge support plan (Form 1, 退院後支援に関する計画) with its crisis plan (Form 2),
//! authored by the authority of the place the person returns to, possibly with the prefecture
//! that ordered the admission as co-author.
//!
//! Period-length rules (R7) live in [`crate::period`]; here only the order of dates is checked.

use serde::{Deserialize, Serialize};

use super::{
    not_before, require_authority, require_scheme, require_type, AdmissionType, Benefits, CaseId,
    ContinuedAdmission, CrisisPlan, Diagnosis, DocType, PersonFull, ServiceNeeded, SupportRow,
    Supporter, ValidationError,
};
use crate::date::Date;
use crate::org::{OrgId, OrgScheme};
use crate::period::SupportPeriod;

/// The admitting hospital as named on the plan (入院先病院).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmittingHospital {
    /// The hospital's org id (`mi:`).
    pub org: OrgId,
    /// Hospital name.
    pub name: String,
    /// How to reach it.
    pub contact: String,
}

/// Form 1 discharge support plan with the Form 2 crisis plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportPlan {
    /// Always `support_plan`.
    pub document_type: DocType,
    /// The plan author: the authority of the return address (`lg:`).
    pub author: OrgId,
    /// The prefecture or designated city that ordered the admission, when it co-authors (II.2);
    /// `null` when the author writes the plan alone.
    pub co_author: Option<OrgId>,
    /// The case.
    pub subject: CaseId,
    /// The day the plan was made.
    pub made_on: Date,
    /// The person.
    pub person: PersonFull,
    /// Diagnosis and comorbidities.
    pub diagnosis: Diagnosis,
    /// The day of the current admission.
    pub admission_date: Date,
    /// The form of the current admission.
    pub admission_type: AdmissionType,
    /// The admitting hospital.
    pub hospital: AdmittingHospital,
    /// The person's wishes for life after discharge.
    pub wishes: String,
    /// Family and other supporters.
    pub supporters: Vec<Supporter>,
    /// Discharge date (planned); `null` when undecided (未定).
    pub discharge_date: Option<Date>,
    /// Whether admission continues.
    pub continued_admission: ContinuedAdmission,
    /// Basic service information.
    pub benefits: Benefits,
    /// Services needed after discharge.
    pub services_needed: Vec<ServiceNeeded>,
    /// Who does what.
    pub support_rows: Vec<SupportRow>,
    /// Policy when needed support is not continued (対処方針).
    pub policy_if_discontinued: String,
    /// The support period (R7 rules in [`crate::period`]).
    pub support_period: SupportPeriod,
    /// The Form 2 crisis plan, if made (recommended, not mandatory).
    pub crisis_plan: Option<CrisisPlan>,
    /// Whether the plan carries the note that on relocation it is passed to the new authority
    /// with the person's consent.
    pub relocation_clause: bool,
}

impl SupportPlan {
    /// Checks the rules the types do not: authorities author it, the hospital is a medical
    /// institution, dates are in order and the crisis plan fits the form.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::SupportPlan)?;
        require_authority("author", &self.author)?;
        if let Some(co) = &self.co_author {
            require_authority("co_author", co)?;
            if *co == self.author {
                return Err(ValidationError::at(
                    "co_author",
                    format!("{co} is the author itself"),
                ));
            }
        }
        require_scheme(
            "hospital.org",
            &self.hospital.org,
            OrgScheme::MedicalInstitution,
            "a medical institution (mi:)",
        )?;
        if let Some(d) = self.discharge_date {
            not_before("discharge_date", d, "admission_date", self.admission_date)?;
        }
        let p = &self.support_period;
        not_before("support_period.to", p.to, "support_period.from", p.from)?;
        if let Some(x) = &p.extension {
            not_before(
                "support_period.extension.to",
                x.to,
                "support_period.to",
                p.to,
            )?;
        }
        if let Some(c) = &self.crisis_plan {
            c.validate("crisis_plan")?;
        }
        Ok(())
    }
}
