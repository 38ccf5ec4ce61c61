//! The needs assessment (Form 5, ニーズアセスメント) with the overall assessment (Form 6,
//! 総合アセスメント), authored by the admitting hospital.
//!
//! Each of the 25 items and "other" is rated twice on 0 / 1 / 2 / 9 ([`Rating`]): by the person
//! (`self`, may be null: not asked or declined) and by staff (`staff`, mandatory). The Form 6
//! `summary` is the view other support parties get instead of the item ratings (R3); as elements
//! both maps are split one level (`items.A1`, `summary.A`, …).

use serde::{Deserialize, Serialize};

use super::{require_scheme, CaseId, DocType, Sex, ValidationError};
use crate::date::Date;
use crate::org::{OrgId, OrgScheme};

/// A needs rating: 0 no need, 1 problem with effective support, 2 problem without effective
/// support, 9 unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u8")]
pub struct Rating(u8);

impl Rating {
    /// The numeric value (0, 1, 2 or 9).
    pub fn value(self) -> u8 {
        self.0
    }
}

impl TryFrom<u64> for Rating {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        match n {
            0 | 1 | 2 | 9 => Ok(Rating(n as u8)),
            _ => Err(format!("{n} is not a rating (0, 1, 2, 9)")),
        }
    }
}

impl From<Rating> for u8 {
    fn from(r: Rating) -> u8 {
        r.0
    }
}

/// One Form 5 item: the person's and the staff's rating and a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRating {
    /// Self-rating (本人評価); `null` when not asked or declined.
    #[serde(rename = "self")]
    pub self_rating: Option<Rating>,
    /// Staff rating (スタッフ評価), mandatory.
    pub staff: Rating,
    /// Free-text note.
    pub note: String,
}

/// The Form 5 "other" item, which names its own domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtherItemRating {
    /// What the extra domain is (empty when unused).
    pub label: String,
    /// Self-rating (本人評価); `null` when not asked or declined.
    #[serde(rename = "self")]
    pub self_rating: Option<Rating>,
    /// Staff rating (スタッフ評価), mandatory.
    pub staff: Rating,
    /// Free-text note.
    pub note: String,
}

/// The 25 items of Form 5 and "other" (JSON keys `A1` … `F5`, `other`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "UPPERCASE")]
pub struct AssessmentItems {
    /// A1 housing (住居).
    pub a1: ItemRating,
    /// A2 financial aid (経済的援助).
    pub a2: ItemRating,
    /// A3 close relationships (親しい関係者).
    pub a3: ItemRating,
    /// A4 childcare (子供の世話).
    pub a4: ItemRating,
    /// A5 caregiving (介護).
    pub a5: ItemRating,
    /// B1 meals (食事).
    pub b1: ItemRating,
    /// B2 home management (生活環境の管理).
    pub b2: ItemRating,
    /// B3 self-care (セルフケア).
    pub b3: ItemRating,
    /// B4 telephone (電話).
    pub b4: ItemRating,
    /// B5 transport (移動).
    pub b5: ItemRating,
    /// B6 money (金銭管理).
    pub b6: ItemRating,
    /// B7 basic education (基礎教育).
    pub b7: ItemRating,
    /// C1 daytime activity (日中の活動).
    pub c1: ItemRating,
    /// C2 social contact (交流).
    pub c2: ItemRating,
    /// D1 psychiatric symptoms (精神症状).
    pub d1: ItemRating,
    /// D2 physical health (身体的健康).
    pub d2: ItemRating,
    /// D3 psychological distress (心理的苦痛).
    pub d3: ItemRating,
    /// D4 sexual problems (性的な問題); handle with care.
    pub d4: ItemRating,
    /// E1 information about care and treatment (処遇・治療情報).
    pub e1: ItemRating,
    /// E2 motivation for treatment and support, self-management (治療・支援への動機づけ/疾病の自己管理).
    pub e2: ItemRating,
    /// F1 alcohol (アルコール); handle with care.
    pub f1: ItemRating,
    /// F2 drugs (薬物); handle with care.
    pub f2: ItemRating,
    /// F3 safety to self (自分に対する安全); handle with care.
    pub f3: ItemRating,
    /// F4 safety to others (他者に対する安全); handle with care.
    pub f4: ItemRating,
    /// F5 other behaviour (その他の行動上の問題).
    pub f5: ItemRating,
    /// Other (その他), with its own label.
    #[serde(rename = "other")]
    pub other: OtherItemRating,
}

/// One Form 6 domain: support needs, the person's wishes and strengths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSummary {
    /// Support needs and issues (支援ニーズ・課題).
    pub needs: String,
    /// The person's wishes (本人の希望).
    pub wishes: String,
    /// Strengths (ストレングス).
    pub strengths: String,
}

/// The Form 6 overall assessment (JSON keys `A` … `F`, `other`, `overall`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "UPPERCASE")]
pub struct AssessmentSummary {
    /// A environment (環境要因).
    pub a: DomainSummary,
    /// B functioning (生活機能).
    pub b: DomainSummary,
    /// C participation (社会参加).
    pub c: DomainSummary,
    /// D health (心身の状態).
    pub d: DomainSummary,
    /// E continuity of support (支援継続).
    pub e: DomainSummary,
    /// F behaviour (行動).
    pub f: DomainSummary,
    /// Other (その他).
    #[serde(rename = "other")]
    pub other: DomainSummary,
    /// Summary of the assessment (アセスメントのまとめ).
    #[serde(rename = "overall")]
    pub overall: String,
}

/// The person as named on Form 5: name, sex, age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssessedPerson {
    /// Full name.
    pub name: String,
    /// Sex.
    pub sex: Sex,
    /// Age in years, at most [`MAX_AGE`].
    pub age: u16,
}

/// The highest plausible age.
pub const MAX_AGE: u16 = 130;

/// Form 5 needs assessment with the Form 6 overall assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedsAssessment {
    /// Always `needs_assessment`.
    pub document_type: DocType,
    /// The admitting hospital (`mi:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The day of the assessment.
    pub assessed_on: Date,
    /// Institution name (医療機関名).
    pub institution: String,
    /// Attending physician (主治医).
    pub physician: String,
    /// Discharge-environment counsellor (退院後生活環境相談担当者/相談員).
    pub discharge_counsellor: String,
    /// Name, sex, age.
    pub person: AssessedPerson,
    /// The item ratings (Form 5): treating team and plan author only (R3).
    pub items: AssessmentItems,
    /// Opinion on support (支援に関する意見).
    pub opinion: String,
    /// The Form 6 overall assessment.
    pub summary: AssessmentSummary,
}

impl NeedsAssessment {
    /// Checks the rules the types do not: the author is a hospital and the age is plausible.
    pub fn validate(&self) -> Result<(), ValidationError> {
        super::require_type(
            "document_type",
            self.document_type,
            DocType::NeedsAssessment,
        )?;
        // The hospital writes it; the plan author may write or amend the Form 6 summaries at a
        // support meeting (II.7), as an assessment of its own.
        if self.author.scheme() != OrgScheme::LocalGovernment {
            require_scheme(
                "author",
                &self.author,
                OrgScheme::MedicalInstitution,
                "a medical institution (mi:) or the plan author (lg:)",
            )?;
        }
        if self.person.age > MAX_AGE {
            return Err(ValidationError::at(
                "person.age",
                format!(
                    "{} is not a plausible age (at most {MAX_AGE})",
                    self.person.age
                ),
            ));
        }
        Ok(())
    }
}
