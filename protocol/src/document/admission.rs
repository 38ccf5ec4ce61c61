//! Admission material (R11; the operations guide for involuntary admission: 措置診断書 and
//! 事前調査票): what the prefecture passes to the hospital that admits a person by measure.
//!
//! The material holds personal data of third parties — who reported the person (通報者) and who
//! gave information (情報提供者), with names and contacts — that treatment does not need. They
//! are separate elements (`reporter`, `informants`), so the `treatment` profile
//! ([`crate::profile::Profile::Treatment`]) sends the hospital everything else: the diagnosis
//! certificates, the circumstances, the history, and what third parties observed (`statements`,
//! by relation only, never by name).

use serde::{Deserialize, Serialize};

use super::{
    not_before, require_authority, require_scheme, require_type, AdmissionType, CaseId, DocType,
    ValidationError,
};
use crate::date::Date;
use crate::org::{OrgId, OrgScheme};

/// The elements the hospital does not receive: third parties' names and contacts.
pub const THIRD_PARTY_ELEMENTS: [&str; 2] = ["reporter", "informants"];

/// One designated physician's examination (措置診断書).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisCertificate {
    /// Day of the examination.
    pub examined_on: Date,
    /// The designated physician (精神保健指定医).
    pub physician: String,
    /// Diagnosis.
    pub diagnosis: String,
    /// Findings of the examination.
    pub findings: String,
    /// The risk of harm to self or others (自傷他害のおそれ) as judged.
    pub risk: String,
}

/// What a third party observed, by relation only (e.g. 母, 近隣住民).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Relation to the person.
    pub relation: String,
    /// What was observed.
    pub statement: String,
}

/// A third party's identity: never sent to the hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThirdParty {
    /// Name.
    pub name: String,
    /// Relation to the person.
    pub relation: String,
    /// Address or telephone.
    pub contact: String,
}

/// The admission material of a measure admission, authored by the prefecture (or designated
/// city) that ordered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionMaterial {
    /// Always `admission_material`.
    pub document_type: DocType,
    /// The prefecture or designated city (`lg:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// `involuntary_measure` or `emergency_measure`.
    pub admission_type: AdmissionType,
    /// Day of admission.
    pub admitted_on: Date,
    /// The admitting hospital (`mi:`).
    pub hospital: OrgId,
    /// The designated physicians' certificates (措置診断書), at least one.
    pub diagnosis_certificates: Vec<DiagnosisCertificate>,
    /// How the admission came about (事前調査票: 経緯), without third parties' names.
    pub circumstances: String,
    /// Life and treatment history (生活歴・治療歴).
    pub history: String,
    /// What third parties observed, by relation only.
    pub statements: Vec<Statement>,
    /// Who reported the person (通報者), if known: withheld from the hospital.
    pub reporter: Option<ThirdParty>,
    /// Who gave information (情報提供者): withheld from the hospital.
    pub informants: Vec<ThirdParty>,
}

impl AdmissionMaterial {
    /// Checks the rules the types do not.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type(
            "document_type",
            self.document_type,
            DocType::AdmissionMaterial,
        )?;
        require_authority("author", &self.author)?;
        require_scheme(
            "hospital",
            &self.hospital,
            OrgScheme::MedicalInstitution,
            "a medical institution (mi:)",
        )?;
        if !matches!(
            self.admission_type,
            AdmissionType::InvoluntaryMeasure | AdmissionType::EmergencyMeasure
        ) {
            return Err(ValidationError::at(
                "admission_type",
                format!(
                    "{} is not an admission by measure: admission material is for involuntary_measure or emergency_measure",
                    self.admission_type
                ),
            ));
        }
        if self.diagnosis_certificates.is_empty() {
            return Err(ValidationError::at(
                "diagnosis_certificates",
                "is empty: at least one designated physician's certificate (措置診断書)",
            ));
        }
        for (i, c) in self.diagnosis_certificates.iter().enumerate() {
            not_before(
                "admitted_on",
                self.admitted_on,
                &format!("diagnosis_certificates.{i}.examined_on"),
                c.examined_on,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;
    use crate::org::Role;
    use crate::profile::{default_profile, Profile};

    fn sample() -> serde_json::Value {
        serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/admission_material.json"
        ))
        .unwrap()
    }

    #[test]
    fn the_hospital_gets_everything_but_third_parties_names_and_contacts() {
        let t = DocType::AdmissionMaterial;
        assert_eq!(default_profile(t, Role::Hospital), Profile::Treatment);
        for role in [Role::Clinic, Role::Npo, Role::Authority, Role::Police] {
            assert_eq!(default_profile(t, role), Profile::None, "{role}");
        }
        let given = Profile::Treatment.elements(t);
        assert!(!given.iter().any(|e| e == "reporter" || e == "informants"));
        for kept in [
            "diagnosis_certificates",
            "circumstances",
            "history",
            "statements",
        ] {
            assert!(given.iter().any(|e| e == kept), "{kept}");
        }
        assert_eq!(
            given.len() + THIRD_PARTY_ELEMENTS.len(),
            t.element_ids().len()
        );
    }

    #[test]
    fn validation_names_what_is_wrong() {
        Document::from_value(sample()).unwrap();
        for (field, value, want) in [
            (
                "admission_type",
                serde_json::json!("voluntary"),
                "admission_type: voluntary is not an admission by measure",
            ),
            (
                "hospital",
                serde_json::json!("lg:131059"),
                "hospital: lg:131059 is not a medical institution",
            ),
            (
                "diagnosis_certificates",
                serde_json::json!([]),
                "diagnosis_certificates: is empty",
            ),
            (
                "admitted_on",
                serde_json::json!("2026-09-13"),
                "admitted_on: 2026-09-13 is before diagnosis_certificates.0.examined_on",
            ),
        ] {
            let mut v = sample();
            v[field] = value;
            let err = Document::from_value(v).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
