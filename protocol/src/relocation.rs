//! Relocation (III.5, R5): from a residence change to a Form 7 transfer notice draft.
//!
//! When the person moves, the directory's jurisdictions name the health-centre authority that
//! serves the new municipality. If that is another authority than the plan's author, the origin
//! drafts a transfer notice with (a) the fact of relocation and the new address and (b) the
//! current plan; (c) the summary of support so far may follow separately. The destination's plan
//! period defaults to what remains of the origin's (R5), counted from the move (or, when the
//! moving date is not known, from the report).
//!
//! Whether the notice may go is the consent gate's decision (`relocation_transfer` to that
//! authority); this module only drafts.

use crate::date::Date;
use crate::directory::Directory;
use crate::document::{
    Document, MedicalSupportNeed, Relocation, ResidenceChange, SupportPlan, TransferNotice,
};
use crate::org::{MunicipalityCode, OrgId};
use crate::period;
use crate::DocType;

/// What a residence change means for the plan's author.
#[derive(Debug, Clone, PartialEq)]
pub enum Relocated {
    /// The new municipality is served by the same authority: nothing to transfer.
    SameAuthority,
    /// The new address is not fixed or not known: the plan's author stays responsible.
    AddressUnknown,
    /// Another authority serves it: a transfer notice draft for it.
    Transfer {
        /// The destination authority.
        destination: OrgId,
        /// The Form 7 draft (author: the plan's author).
        notice: Box<Document>,
    },
    /// No directory this gateway holds serves the new municipality (`no_gateway`): a draft
    /// addressed to the municipality itself (`lg:` its code), to be carried by another channel.
    NoGateway {
        /// The new municipality.
        municipality: MunicipalityCode,
        /// The Form 7 draft (author: the plan's author).
        notice: Box<Document>,
    },
}

/// Why no transfer notice can be drafted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelocationError {
    /// The directory knows no authority for the municipality.
    #[error("no authority in the directory serves municipality {0}; add it to the directory's jurisdictions")]
    UnknownMunicipality(MunicipalityCode),
    /// The report and the plan are about different cases.
    #[error("the residence change is about {report}, the plan about {plan}")]
    OtherCase {
        /// The report's case.
        report: String,
        /// The plan's case.
        plan: String,
    },
    /// The plan's support period has ended before the move.
    #[error("the support period ended on {0}; nothing remains to transfer (R5)")]
    PeriodOver(Date),
}

/// Drafts the Form 7 notice for `change` of the case whose current plan is `plan`, dated `today`.
pub fn draft_transfer(
    directory: &Directory,
    plan: &SupportPlan,
    change: &ResidenceChange,
    today: Date,
) -> Result<Relocated, RelocationError> {
    if change.subject != plan.subject {
        return Err(RelocationError::OtherCase {
            report: change.subject.to_string(),
            plan: plan.subject.to_string(),
        });
    }
    let Some(municipality) = &change.new_municipality else {
        return Ok(Relocated::AddressUnknown);
    };
    let served = directory.authority_for(municipality).cloned();
    let destination = match &served {
        Some(org) => org.clone(),
        None => format!("lg:{}", municipality.as_str())
            .parse()
            .map_err(|_| RelocationError::UnknownMunicipality(municipality.clone()))?,
    };
    if destination == plan.author {
        return Ok(Relocated::SameAuthority);
    }
    let from = change.moved_on.unwrap_or(change.reported_on);
    let remaining = period::remaining_period(&plan.support_period, from).ok_or(
        RelocationError::PeriodOver(plan.support_period.effective_end()),
    )?;
    let notice = TransferNotice {
        document_type: DocType::TransferNotice,
        author: plan.author.clone(),
        subject: plan.subject.clone(),
        to: destination.clone(),
        sent_on: today,
        relocation: Relocation {
            new_address: change.new_address.clone(),
            new_municipality: municipality.clone(),
            moved_on: change.moved_on,
        },
        plan: Box::new(plan.clone()),
        remaining_period: remaining,
        support_summary: None,
        medical_support_need: Some(MedicalSupportNeed::from_plan(plan)),
    };
    let notice = Box::new(Document::TransferNotice(notice));
    if served.is_none() {
        return Ok(Relocated::NoGateway {
            municipality: municipality.clone(),
            notice,
        });
    }
    Ok(Relocated::Transfer {
        destination,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Member;
    use crate::testkit::{fixture, org, MEMBERS};

    fn directory() -> Directory {
        Directory {
            version: 1,
            federation: "t".into(),
            expires: None,
            members: MEMBERS
                .iter()
                .map(|(o, r)| Member {
                    org: org(o),
                    role: *r,
                    name: o.to_string(),
                    address: "127.0.0.1:1".into(),
                    host: None,
                    fingerprints: vec![],
                })
                .collect(),
            jurisdictions: [("131059", "lg:131059"), ("131121", "lg:131121")]
                .into_iter()
                .map(|(m, o)| (m.parse().unwrap(), org(o)))
                .collect(),
        }
    }

    fn inputs() -> (SupportPlan, ResidenceChange) {
        let Document::SupportPlan(p) = fixture("support_plan.json") else {
            unreachable!()
        };
        let Document::ResidenceChange(c) = fixture("residence_change.json") else {
            unreachable!()
        };
        (*p, c)
    }

    #[test]
    fn the_move_to_setagaya_drafts_form7_with_the_remaining_period() {
        let (plan, change) = inputs();
        let today = Date::new(2027, 1, 8).unwrap();
        let Relocated::Transfer {
            destination,
            notice,
        } = draft_transfer(&directory(), &plan, &change, today).unwrap()
        else {
            panic!("expected a transfer")
        };
        assert_eq!(destination.as_str(), "lg:131121");
        let Document::TransferNotice(n) = *notice else {
            panic!()
        };
        assert_eq!(n.remaining_period.from.to_string(), "2027-01-15");
        assert_eq!(n.remaining_period.to.to_string(), "2027-04-30");
        assert_eq!(n.relocation.new_municipality.as_str(), "131121");
        assert_eq!(*n.plan, plan);
        // 転居後の医療等の支援の必要性, from the plan's rows of the clinic and the nursing station.
        let need = n.medical_support_need.as_ref().unwrap();
        assert!(need.needed);
        assert_eq!(
            need.details,
            "本郷こころのクリニック：2週に1回の外来診察（症状と服薬の管理）／訪問看護ステーションあおば：週1回の訪問看護（服薬継続）"
        );
        // The draft is a valid document.
        Document::TransferNotice(n.clone()).validate().unwrap();
    }

    #[test]
    fn moving_within_the_authority_or_to_an_unknown_place() {
        let (plan, mut change) = inputs();
        let today = Date::new(2027, 1, 8).unwrap();
        change.new_municipality = Some("131059".parse().unwrap());
        assert_eq!(
            draft_transfer(&directory(), &plan, &change, today).unwrap(),
            Relocated::SameAuthority
        );
        // A municipality no directory serves: a draft addressed to it, for another channel.
        change.new_municipality = Some("132080".parse().unwrap());
        let Relocated::NoGateway {
            municipality,
            notice,
        } = draft_transfer(&directory(), &plan, &change, today).unwrap()
        else {
            panic!("expected no_gateway")
        };
        assert_eq!(municipality.as_str(), "132080");
        let Document::TransferNotice(n) = *notice else {
            panic!()
        };
        assert_eq!(n.to.as_str(), "lg:132080");
        change.new_municipality = None;
        change.new_address = "住所不定".into();
        assert_eq!(
            draft_transfer(&directory(), &plan, &change, today).unwrap(),
            Relocated::AddressUnknown
        );
        change.new_municipality = Some("131121".parse().unwrap());
        change.moved_on = Some(Date::new(2027, 6, 1).unwrap());
        assert!(matches!(
            draft_transfer(&directory(), &plan, &change, today).unwrap_err(),
            RelocationError::PeriodOver(_)
        ));
    }
}
