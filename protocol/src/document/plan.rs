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
use crate::cose::sha256;
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

/// What a revised plan replaces and why (III.4: a revised plan is given to the person and
/// notified to the parties).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRevision {
    /// The version revised (one less than the plan's own).
    pub version: u32,
    /// [`SupportPlan::digest`] of the version revised. The author's gateway fills it in from its
    /// current plan when a form leaves it out, and refuses one that names another plan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Why the plan was revised (e.g. the period extended at a support meeting, readmission).
    pub reason: String,
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
    /// The plan's version: 1 for the first plan, one more for each revision (III.4).
    pub version: u32,
    /// The version this one revises, `null` for version 1.
    pub supersedes: Option<PlanRevision>,
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
        self.check_version()?;
        crate::period::check(&self.support_period, self.discharge_date).map_err(|e| {
            let text = e.to_string();
            match text.split_once(": ") {
                Some((path, message)) => ValidationError::at(path, message),
                None => ValidationError::at("support_period", text),
            }
        })?;
        if let Some(c) = &self.crisis_plan {
            c.validate("crisis_plan")?;
        }
        Ok(())
    }

    /// Version 1 revises nothing; a later version names the one before it, with a reason.
    fn check_version(&self) -> Result<(), ValidationError> {
        match (self.version, &self.supersedes) {
            (0, _) => Err(ValidationError::at(
                "version",
                "0 is not a plan version: the first plan is version 1",
            )),
            (1, None) => Ok(()),
            (1, Some(_)) => Err(ValidationError::at(
                "supersedes",
                "version 1 is the first plan and revises nothing: set supersedes to null",
            )),
            (v, None) => Err(ValidationError::at(
                "supersedes",
                format!("version {v} is a revision: name the version it revises and why"),
            )),
            (v, Some(r)) => {
                if r.version + 1 != v {
                    return Err(ValidationError::at(
                        "supersedes.version",
                        format!("{} is not the version before {v}", r.version),
                    ));
                }
                if r.reason.trim().is_empty() {
                    return Err(ValidationError::at(
                        "supersedes.reason",
                        "must say why the plan was revised",
                    ));
                }
                let hex = r.digest.len() == 64
                    && r.digest
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !hex && !r.digest.is_empty() {
                    return Err(ValidationError::at(
                        "supersedes.digest",
                        "must be the revised version's digest (64 lowercase hex digits), or left out for the author's gateway to fill in",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The plan's content digest: SHA-256 (lowercase hex) of the deterministic CBOR of its
    /// JSON form. It names a version independently of how often, and to whom, it was signed
    /// and sent (each envelope's signed copy has its own salts and id).
    pub fn digest(&self) -> String {
        let json = serde_json::to_value(self).expect("plans serialize to JSON");
        let value = crate::cbor::from_json(&json, "plan").expect("plans encode as CBOR");
        crate::hex::encode(&sha256(&crate::cbor::encode(&value)))
    }
}
