//! Types shared by several forms: the person, diagnosis, supporters, the basic service information
//! (benefits), services needed, support rows, continued admission, and the crisis plan (Form 2/4).
//!
//! Also the small validation helpers the document modules use for cross-field rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{wire_enum, DocType, ValidationError};
use crate::date::Date;
use crate::org::{MunicipalityCode, OrgId, OrgScheme};

wire_enum!(
    /// The person's sex as written on the forms (男・女), or unspecified.
    Sex, "sex" {
        /// Male (男).
        Male = "male",
        /// Female (女).
        Female = "female",
        /// Not specified.
        Unspecified = "unspecified",
    }
);

wire_enum!(
    /// Housing type on the opinion letter (住居形態).
    Housing, "housing type" {
        /// Living with family (家族同居).
        WithFamily = "with_family",
        /// Living alone (独居).
        Alone = "alone",
        /// Group home or similar (グループホーム等).
        GroupHome = "group_home",
        /// Other (その他).
        Other = "other",
        /// Unknown (不明).
        Unknown = "unknown",
    }
);

wire_enum!(
    /// The form of admission (入院形態).
    AdmissionType, "admission type" {
        /// Involuntary admission by measure (措置入院).
        InvoluntaryMeasure = "involuntary_measure",
        /// Emergency involuntary admission (緊急措置入院).
        EmergencyMeasure = "emergency_measure",
        /// Medical-protection admission (医療保護入院).
        MedicalProtection = "medical_protection",
        /// Voluntary admission (任意入院).
        Voluntary = "voluntary",
    }
);

wire_enum!(
    /// The form in which admission continues when the discharge does not happen (入院継続).
    ContinuedAdmissionForm, "continued admission form" {
        /// Medical-protection admission (医療保護).
        MedicalProtection = "medical_protection",
        /// Voluntary admission (任意).
        Voluntary = "voluntary",
        /// Transfer to another psychiatric hospital (転院・精神科).
        TransferPsychiatric = "transfer_psychiatric",
        /// Transfer to a hospital for physical illness (転院・身体科).
        TransferPhysical = "transfer_physical",
    }
);

wire_enum!(
    /// One answer of the basic service information (無・有・不明・申請予定).
    BenefitStatus, "benefit status" {
        /// Has it (有), possibly with a grade.
        Yes = "yes",
        /// Does not have it (無).
        No = "no",
        /// Unknown (不明).
        Unknown = "unknown",
        /// Will apply (申請予定).
        ToApply = "to_apply",
    }
);

wire_enum!(
    /// A service needed after discharge (退院後に必要な医療等の支援, Form 1/3 checkboxes).
    ServiceNeeded, "service" {
        /// Outpatient psychiatry (精神科外来通院).
        OutpatientPsychiatry = "outpatient_psychiatry",
        /// Consultation support by the health centre (保健所等による相談支援).
        HealthCentreConsultation = "health_centre_consultation",
        /// Psychiatric services other than outpatient care: visiting nursing, day care, other
        /// (外来診療以外の精神科医療サービス).
        OtherPsychiatricServices = "other_psychiatric_services",
        /// Treatment of physical comorbidities (身体合併症治療).
        ComorbidityTreatment = "comorbidity_treatment",
        /// Disability welfare services (障害福祉サービス).
        DisabilityWelfare = "disability_welfare",
        /// Long-term care services (介護サービス).
        LongTermCare = "long_term_care",
        /// Other (その他).
        Other = "other",
    }
);

/// The person as identified on Form 1 (the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonFull {
    /// Full name (氏名).
    pub name: String,
    /// Reading of the name in katakana (フリガナ).
    pub furigana: String,
    /// Sex.
    pub sex: Sex,
    /// Date of birth.
    pub birth_date: Date,
    /// Address the person returns to (帰住先住所).
    pub return_address: String,
    /// Municipality of the return address; `null` when there is none yet (no fixed abode,
    /// 住所不定) or it is not known (帰住先不明).
    pub municipality: Option<MunicipalityCode>,
    /// Phone number.
    pub phone: String,
}

/// The person as identified on Form 3 (the opinion letter): Form 1's fields plus housing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonWithHousing {
    /// Full name (氏名).
    pub name: String,
    /// Reading of the name in katakana (フリガナ).
    pub furigana: String,
    /// Sex.
    pub sex: Sex,
    /// Date of birth.
    pub birth_date: Date,
    /// Address the person returns to (帰住先住所).
    pub return_address: String,
    /// Municipality of the return address.
    pub municipality: MunicipalityCode,
    /// Housing type (住居形態).
    pub housing: Housing,
    /// Phone number.
    pub phone: String,
}

/// Psychiatric diagnosis and physical comorbidities needing treatment (病名).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnosis {
    /// Psychiatric diagnosis.
    pub psychiatric: String,
    /// Physical comorbidities, possibly none.
    pub physical_comorbidities: Vec<String>,
}

/// A family member or other supporter and their opinion (家族その他の支援者の意見).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supporter {
    /// Name.
    pub name: String,
    /// Relation to the person (続柄).
    pub relation: String,
    /// How to reach them.
    pub contact: String,
    /// Their opinion on support after discharge.
    pub opinion: String,
}

/// One line of the basic service information: status and, where the form has one, the grade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benefit {
    /// Yes, no, unknown or to apply.
    pub status: BenefitStatus,
    /// Grade, class or level (級・等級・区分), free text; omitted when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<String>,
}

/// Basic information on medical, welfare and care services (医療・障害福祉サービス等に関する基本情報).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benefits {
    /// Independence-support medical care (自立支援医療).
    pub independence_support_medical: Benefit,
    /// Mental disability certificate (精神障害者保健福祉手帳), with grade.
    pub mental_disability_certificate: Benefit,
    /// Rehabilitation certificate for intellectual disability (療育手帳), with grade.
    pub rehabilitation_certificate: Benefit,
    /// Physical disability certificate (身体障害者手帳), with grade.
    pub physical_disability_certificate: Benefit,
    /// Disability pension (障害年金), with grade.
    pub disability_pension: Benefit,
    /// Disability support category (障害支援区分), with category.
    pub disability_support_category: Benefit,
    /// Long-term-care certification (要介護認定), with level.
    pub long_term_care_certification: Benefit,
    /// Public assistance (生活保護).
    pub public_assistance: Benefit,
}

/// One row of the support table (支援内容): who does what for which need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportRow {
    /// The responsible agency (支援担当機関).
    pub agency: OrgId,
    /// The agency's display name.
    pub agency_name: String,
    /// The person's needs or issues this row addresses (本人の支援ニーズ・課題).
    pub needs: String,
    /// The support given (支援内容).
    pub support: String,
    /// Contact person (連絡先・担当者).
    pub contact: String,
}

/// A hospital the person is transferred to when admission continues (転院先病院).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferHospital {
    /// Hospital name.
    pub name: String,
    /// How to reach it.
    pub contact: String,
}

/// Whether admission continues (入院継続の必要性).
///
/// JSON: `{"required": false}` or `{"required": true, "form": …, "estimated_length": "…",
/// "transfer_hospital": {"name": "…", "contact": "…"} | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ContinuedAdmissionJson", into = "ContinuedAdmissionJson")]
pub enum ContinuedAdmission {
    /// The person is discharged (不要).
    NotRequired,
    /// Admission continues (要): the ※ minimum-field case of Form 1.
    Required {
        /// The form of continued admission.
        form: ContinuedAdmissionForm,
        /// Estimated length of stay (推定入院期間), free text.
        estimated_length: String,
        /// The transfer hospital, if the person is transferred.
        transfer_hospital: Option<TransferHospital>,
    },
}

/// The wire shape of [`ContinuedAdmission`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContinuedAdmissionJson {
    required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    form: Option<ContinuedAdmissionForm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    estimated_length: Option<String>,
    /// Outer `None`: absent (not required); `Some(None)`: `null`. Deserializes `null` as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transfer_hospital: Option<Option<TransferHospital>>,
}

impl TryFrom<ContinuedAdmissionJson> for ContinuedAdmission {
    type Error = String;
    fn try_from(j: ContinuedAdmissionJson) -> Result<Self, String> {
        match j {
            ContinuedAdmissionJson {
                required: false,
                form: None,
                estimated_length: None,
                transfer_hospital: None,
            } => Ok(ContinuedAdmission::NotRequired),
            ContinuedAdmissionJson { required: false, .. } => Err(
                "form, estimated_length and transfer_hospital are only allowed when required is true"
                    .to_owned(),
            ),
            ContinuedAdmissionJson {
                required: true,
                form: Some(form),
                estimated_length: Some(estimated_length),
                transfer_hospital,
            } => Ok(ContinuedAdmission::Required {
                form,
                estimated_length,
                transfer_hospital: transfer_hospital.flatten(),
            }),
            ContinuedAdmissionJson { required: true, .. } => {
                Err("form and estimated_length are required when required is true".to_owned())
            }
        }
    }
}

impl From<ContinuedAdmission> for ContinuedAdmissionJson {
    fn from(c: ContinuedAdmission) -> Self {
        match c {
            ContinuedAdmission::NotRequired => ContinuedAdmissionJson {
                required: false,
                form: None,
                estimated_length: None,
                transfer_hospital: None,
            },
            ContinuedAdmission::Required {
                form,
                estimated_length,
                transfer_hospital,
            } => ContinuedAdmissionJson {
                required: true,
                form: Some(form),
                estimated_length: Some(estimated_length),
                transfer_hospital: Some(transfer_hospital),
            },
        }
    }
}

/// An emergency contact of the crisis plan (緊急連絡先).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyContact {
    /// Affiliation or relation (所属/続柄).
    pub affiliation: String,
    /// Name.
    pub name: String,
    /// Phone number.
    pub phone: String,
}

/// A person the person does not want contacted (連絡してほしくない人).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoNotContact {
    /// Relation (続柄).
    pub relation: String,
    /// Name.
    pub name: String,
}

/// The crisis plan (クライシスプラン, Form 2 with the plan, Form 4 with the opinion letter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrisisPlan {
    /// The day it was made.
    pub made_on: Date,
    /// Early warning signs (私の調子が悪くなる前は).
    pub warning_signs: String,
    /// What I do (私のすること).
    pub what_i_do: String,
    /// What I want others to do (周りの人にしてほしいこと).
    pub what_i_want_others_to_do: String,
    /// What I do not want others to do (周りの人にしてほしくないこと).
    pub what_i_do_not_want_others_to_do: String,
    /// Emergency contacts, at most 3.
    pub emergency_contacts: Vec<EmergencyContact>,
    /// People not to contact, at most 2.
    pub do_not_contact: Vec<DoNotContact>,
}

/// Room on the form for emergency contacts.
pub const MAX_EMERGENCY_CONTACTS: usize = 3;
/// Room on the form for people not to contact.
pub const MAX_DO_NOT_CONTACT: usize = 2;

impl CrisisPlan {
    /// Checks the form's limits; `path` is where the crisis plan sits, e.g. `crisis_plan`.
    pub fn validate(&self, path: &str) -> Result<(), ValidationError> {
        at_most(
            &format!("{path}.emergency_contacts"),
            self.emergency_contacts.len(),
            MAX_EMERGENCY_CONTACTS,
        )?;
        at_most(
            &format!("{path}.do_not_contact"),
            self.do_not_contact.len(),
            MAX_DO_NOT_CONTACT,
        )
    }
}

fn at_most(path: &str, n: usize, max: usize) -> Result<(), ValidationError> {
    if n > max {
        return Err(ValidationError::at(
            path,
            format!("{n} entries, but the crisis plan has room for at most {max}"),
        ));
    }
    Ok(())
}

/// Requires `org` to be a local government (`lg:`): authorities author plans, notices and consent.
pub(crate) fn require_authority(path: &str, org: &OrgId) -> Result<(), ValidationError> {
    require_scheme(
        path,
        org,
        OrgScheme::LocalGovernment,
        "a local government (lg:)",
    )
}

/// Requires `org` to have the given scheme.
pub(crate) fn require_scheme(
    path: &str,
    org: &OrgId,
    scheme: OrgScheme,
    what: &str,
) -> Result<(), ValidationError> {
    if org.scheme() == scheme {
        Ok(())
    } else {
        Err(ValidationError::at(path, format!("{org} is not {what}")))
    }
}

/// Requires `later` not to be before `earlier`.
pub(crate) fn not_before(
    path: &str,
    later: Date,
    earlier_path: &str,
    earlier: Date,
) -> Result<(), ValidationError> {
    if later < earlier {
        Err(ValidationError::at(
            path,
            format!("{later} is before {earlier_path} {earlier}"),
        ))
    } else {
        Ok(())
    }
}

/// Requires a document's `document_type` to be the one its struct models.
pub(crate) fn require_type(
    path: &str,
    actual: DocType,
    expected: DocType,
) -> Result<(), ValidationError> {
    if actual == expected {
        Ok(())
    } else {
        Err(ValidationError::at(
            path,
            format!("expected {expected}, found {actual}"),
        ))
    }
}
