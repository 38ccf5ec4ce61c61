//! Relocation (III.5, R5): the Form 7 transfer notice from the origin authority to the
//! destination authority, and the summary of support given so far that may follow it.
//!
//! The notice carries (a) the fact of relocation and the new address and (b) the current plan at
//! once; (c) the support summary is either inline (`support_summary`) or, when it takes longer to
//! write, `null` and sent later as a [`SupportSummary`]. Both go only with consent to
//! `relocation_transfer` (checked by the gate, not here).

use serde::{Deserialize, Serialize};

use super::{
    not_before, require_authority, require_type, CaseId, DocType, SupportPlan, ValidationError,
};
use crate::date::Date;
use crate::org::{MunicipalityCode, OrgId};
use crate::period::SupportPeriod;

/// The fact of relocation and the new address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relocation {
    /// The new address.
    pub new_address: String,
    /// The municipality of the new address.
    pub new_municipality: MunicipalityCode,
    /// The day of the move; `null` when not yet known (the notice should go before the move).
    pub moved_on: Option<Date>,
}

/// 転居後の医療等の支援の必要性 (Form 7): whether the person needs medical and related support
/// after the move, and which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicalSupportNeed {
    /// Whether medical and related support is needed after the move (要・不要).
    pub needed: bool,
    /// Which support; drafted from the plan's rows of medical institutions, which staff complete.
    pub details: String,
}

impl MedicalSupportNeed {
    /// Drafts it from a plan: the support its rows assign to medical institutions (clinics,
    /// hospitals, visiting nursing stations).
    pub fn from_plan(plan: &SupportPlan) -> MedicalSupportNeed {
        let medical: Vec<String> = plan
            .support_rows
            .iter()
            .filter(|r| r.agency.scheme() == crate::org::OrgScheme::MedicalInstitution)
            .map(|r| format!("{}：{}（{}）", r.agency_name, r.support, r.needs))
            .collect();
        MedicalSupportNeed {
            needed: !medical.is_empty(),
            details: if medical.is_empty() {
                "計画に医療機関による支援の記載なし".to_owned()
            } else {
                medical.join("／")
            },
        }
    }
}

/// Form 7 transfer notice: origin authority → destination authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferNotice {
    /// Always `transfer_notice`.
    pub document_type: DocType,
    /// The origin authority (`lg:`), author of the current plan.
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The destination authority (`lg:`), not the author.
    pub to: OrgId,
    /// The day the notice is sent.
    pub sent_on: Date,
    /// The relocation and new address.
    pub relocation: Relocation,
    /// The current plan, embedded whole (with its own `document_type`).
    pub plan: Box<SupportPlan>,
    /// The destination plan's default support period: the remaining period of this plan (R5).
    pub remaining_period: SupportPeriod,
    /// Summary of support given so far; `null` when it follows as a separate support summary.
    pub support_summary: Option<String>,
    /// 転居後の医療等の支援の必要性; absent (`null`) only in notices written before Form 7
    /// carried it.
    #[serde(default)]
    pub medical_support_need: Option<MedicalSupportNeed>,
}

/// One party's support so far, in a [`SupportSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportGiven {
    /// The agency that gave it.
    pub agency: OrgId,
    /// The agency's display name.
    pub agency_name: String,
    /// What it did and how it went.
    pub support: String,
}

/// Summary of support given so far (Form 7 (c)), following a transfer notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportSummary {
    /// Always `support_summary`.
    pub document_type: DocType,
    /// The origin authority (`lg:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The destination authority (`lg:`), not the author.
    pub to: OrgId,
    /// The day it was written.
    pub written_on: Date,
    /// The overall summary of support and how the person is doing.
    pub summary: String,
    /// Support given, per agency.
    pub support_given: Vec<SupportGiven>,
}

fn check_destination(author: &OrgId, to: &OrgId) -> Result<(), ValidationError> {
    require_authority("author", author)?;
    require_authority("to", to)?;
    if to == author {
        return Err(ValidationError::at(
            "to",
            format!("{to} is the author itself: the destination must be another authority"),
        ));
    }
    Ok(())
}

impl TransferNotice {
    /// Checks the rules the types do not: authority to another authority, the embedded plan is
    /// valid and is the author's plan of this case, and the remaining period is in order.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::TransferNotice)?;
        check_destination(&self.author, &self.to)?;
        self.plan
            .validate()
            .map_err(|e| ValidationError::at(format!("plan.{}", e.path), e.message))?;
        if self.plan.subject != self.subject {
            return Err(ValidationError::at(
                "plan.subject",
                format!(
                    "{} is not the notice's subject {}",
                    self.plan.subject, self.subject
                ),
            ));
        }
        if self.plan.author != self.author {
            return Err(ValidationError::at(
                "plan.author",
                format!(
                    "{} is not the notice's author {}: the origin sends its own plan",
                    self.plan.author, self.author
                ),
            ));
        }
        let p = &self.remaining_period;
        not_before("remaining_period.to", p.to, "remaining_period.from", p.from)?;
        let mut end = p.to;
        for (i, x) in p.extensions.iter().enumerate() {
            not_before(
                &format!("remaining_period.extensions.{i}.to"),
                x.to,
                "the end it extends",
                end,
            )?;
            end = x.to;
        }
        Ok(())
    }
}

impl SupportSummary {
    /// Checks the rules the types do not: authority to another authority.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::SupportSummary)?;
        check_destination(&self.author, &self.to)
    }
}
