//! Redaction profiles and the policy table (R2 minimum necessary, R3 Form 6 redaction).
//!
//! A [`Profile`] names which elements of a document a recipient is shown. A [`PolicyTable`] maps
//! document type × recipient role to a profile; the gateway applies it to every envelope it
//! sends, one disclosure set per recipient.
//!
//! # Profiles
//!
//! * `full` — every element.
//! * `form6` — needs assessment only: the header (`assessed_on`, `institution`, `physician`,
//!   `discharge_counsellor`, `person`) and the Form 6 summaries (`summary.A` … `summary.other`,
//!   `summary.overall`). No item rating, no item note, and not the Form 5 `opinion`. The guideline
//!   (II.7(7)) says material shown outside the treating team uses Form 6 *instead of* the item
//!   ratings, because the items (sexual problems, alcohol, drugs, harm to self or others) need
//!   careful handling.
//! * `support_party` — support plan only: what a support party needs to do its part of the plan
//!   and nothing more (R2, "minimum necessary", 003 III.7(8)). Kept:
//!   `made_on`, `version` and `supersedes` (which version this is and why it was revised),
//!   `co_author` (who is accountable for the plan), `person` (whom to support and how to
//!   reach them), `wishes` (the plan is built around them), `discharge_date` and `support_period`
//!   (when support runs), `services_needed`, `support_rows` (who does what, and whom to call),
//!   `policy_if_discontinued` (what to do when contact breaks off), `crisis_plan` (warning signs,
//!   what helps, what must not be done, and the people the person does *not* want contacted —
//!   which a support party must know precisely in order not to contact them) and
//!   `relocation_clause`. Withheld: `diagnosis` (medical detail for the treating team),
//!   `benefits` (financial and certificate status), `admission_type`, `admission_date` and
//!   `continued_admission` (the legal form and history of the admission), `hospital`, and
//!   `supporters` (third parties' own personal data and opinions, R11).
//! * `notice` — support-end notice: the fact and the day (`ended_on`). Not the outcome
//!   (which can say the person died) and not the free-text note: parties outside the treating
//!   team need to know that their part has ended, not why. Readmission notice: the day of
//!   admission (`admitted_on`) only — support pauses, the hospital and form of admission are the
//!   treating team's business.
//! * `none` — nothing; the gateway refuses to send a document under it.
//!
//! A consent record is not sent under a profile of the table but in the recipient's own view
//! ([`consent_view`]): the record's validity and what it allows, and of its recipient entries
//! only those naming that party (and the controller). The table's consent entry still decides
//! whether a role gets the record at all.
//!
//! # Default table
//!
//! | document | authority, prefecture | hospital, clinic | visiting nurse | support provider, municipal welfare, NPO, MHW centre | police |
//! |---|---|---|---|---|---|
//! | needs assessment | full | full | form6 | form6 | none |
//! | opinion letter | full | full | none | none | none |
//! | support plan | full | full | full | support_party | none |
//! | transfer notice, support summary | full | none | none | none | none |
//! | residence change | full | full | none | none | none |
//! | consent (in the party's view), withdrawal | full | full | full | full | none, full |
//! | support end | full | full | full | notice | notice |
//! | readmission | full | full | full | notice | none |
//! | meeting record (only to the meeting's parties) | full | full | full | full | none |
//! | delegation (to its contractor only) | full | full | full | full | none |
//! | admission material | none | treatment (hospital), none (clinic) | none | none | none |
//! | information request, information answer (after a move) | full | none | none | none | none |
//!
//! * `treatment` — admission material only (R11): everything but `reporter` and `informants`,
//!   the names and contacts of third parties that treatment does not need.
//!
//! Item-level ratings go only to the plan authors (authority and co-authoring prefecture) and the
//! treating team (hospital, clinic). Police receive nothing but withdrawal and support-end
//! notices (R6), and those only when the consent admits police and police took part: even where
//! the consent admits police as a support party, a site must widen the table explicitly.
//!
//! A site may override entries; an override that widens access to item-level ratings must carry
//! a written reason ([`PolicyError::ReasonRequired`]), which the gateway records in its audit log.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::document::{ConsentRecord, DocType, CONSENT_VIEW_CORE};
use crate::org::{OrgId, Role};

/// A redaction profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// Every element.
    Full,
    /// Needs assessment: header and Form 6 summaries only.
    Form6,
    /// Support plan: the support party's view.
    SupportParty,
    /// Support-end notice: the fact and the day only.
    Notice,
    /// Nothing.
    None,
    /// Admission material to the hospital: without third parties' names and contacts (R11).
    Treatment,
}

/// A profile or policy problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not a profile name.
    #[error(
        "{0:?} is not a redaction profile: expected full, form6, support_party, notice or none"
    )]
    UnknownProfile(String),
    /// The profile is defined for another document type.
    #[error("profile {profile} applies to {applies_to} only, not to {doc_type}")]
    NotApplicable {
        /// The profile.
        profile: Profile,
        /// The document type it was used on.
        doc_type: DocType,
        /// The type it is for.
        applies_to: DocType,
    },
    /// An override widening item-level access without a reason.
    #[error("an override giving {role} {profile} access to {doc_type} widens item-level access and needs a written reason")]
    ReasonRequired {
        /// Document type.
        doc_type: DocType,
        /// Role.
        role: Role,
        /// Profile asked for.
        profile: Profile,
    },
}

/// Header elements of the needs assessment that the Form 6 view keeps.
const FORM6_HEADER: [&str; 5] = [
    "assessed_on",
    "institution",
    "physician",
    "discharge_counsellor",
    "person",
];

/// Plan elements a support party sees (see the module docs for why).
pub const SUPPORT_PARTY_PLAN: [&str; 13] = [
    "made_on",
    "version",
    "supersedes",
    "co_author",
    "person",
    "wishes",
    "discharge_date",
    "support_period",
    "services_needed",
    "support_rows",
    "policy_if_discontinued",
    "crisis_plan",
    "relocation_clause",
];

impl Profile {
    /// All profiles.
    pub const ALL: [Profile; 6] = [
        Profile::Full,
        Profile::Form6,
        Profile::SupportParty,
        Profile::Notice,
        Profile::None,
        Profile::Treatment,
    ];

    /// The profile's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Full => "full",
            Profile::Form6 => "form6",
            Profile::SupportParty => "support_party",
            Profile::Notice => "notice",
            Profile::None => "none",
            Profile::Treatment => "treatment",
        }
    }

    /// Whether this profile can be applied to `doc_type`.
    pub fn check_applies(self, doc_type: DocType) -> Result<(), PolicyError> {
        let applies_to = match self {
            Profile::Form6 => DocType::NeedsAssessment,
            Profile::SupportParty => DocType::SupportPlan,
            Profile::Notice if doc_type == DocType::Readmission => DocType::Readmission,
            Profile::Notice => DocType::SupportEnd,
            Profile::Treatment => DocType::AdmissionMaterial,
            Profile::Full | Profile::None => return Ok(()),
        };
        if doc_type == applies_to {
            Ok(())
        } else {
            Err(PolicyError::NotApplicable {
                profile: self,
                doc_type,
                applies_to,
            })
        }
    }

    /// Whether the profile discloses `element` of a `doc_type`. A profile that does not apply
    /// to the type discloses nothing.
    pub fn discloses(self, doc_type: DocType, element: &str) -> bool {
        match self {
            Profile::Full => true,
            Profile::None => false,
            Profile::Form6 => {
                doc_type == DocType::NeedsAssessment
                    && (FORM6_HEADER.contains(&element) || element.starts_with("summary."))
            }
            Profile::SupportParty => {
                doc_type == DocType::SupportPlan && SUPPORT_PARTY_PLAN.contains(&element)
            }
            Profile::Notice => {
                (doc_type == DocType::SupportEnd && element == "ended_on")
                    || (doc_type == DocType::Readmission && element == "admitted_on")
            }
            Profile::Treatment => {
                doc_type == DocType::AdmissionMaterial
                    && !crate::document::THIRD_PARTY_ELEMENTS.contains(&element)
            }
        }
    }

    /// The elements of `doc_type` this profile discloses, in element order.
    pub fn elements(self, doc_type: DocType) -> Vec<String> {
        doc_type
            .element_ids()
            .into_iter()
            .filter(|e| self.discloses(doc_type, e))
            .collect()
    }
}

impl FromStr for Profile {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownProfile(s.to_owned()))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default profile for sending a `doc_type` to an org of `role` (the table in the module docs).
pub fn default_profile(doc_type: DocType, role: Role) -> Profile {
    use DocType as D;
    use Role as R;
    let author = matches!(role, R::Authority | R::Prefecture);
    let treating = matches!(role, R::Hospital | R::Clinic);
    let party = matches!(
        role,
        R::SupportProvider | R::MunicipalWelfare | R::Npo | R::MhwCentre | R::Police
    );
    match doc_type {
        D::ConsentWithdrawal => Profile::Full,
        D::SupportEnd if party => Profile::Notice,
        D::SupportEnd => Profile::Full,
        _ if role == R::Police => Profile::None,
        D::Readmission if party => Profile::Notice,
        D::Readmission => Profile::Full,
        D::Consent => Profile::Full,
        // Sent only to its contractor (the gateway checks), and kept whole: no personal data.
        D::Delegation => Profile::Full,
        // To the admitting hospital without third parties' data (R11); to no one else.
        D::AdmissionMaterial if role == R::Hospital => Profile::Treatment,
        D::AdmissionMaterial => Profile::None,
        D::NeedsAssessment if author || treating => Profile::Full,
        D::NeedsAssessment => Profile::Form6,
        D::SupportPlan if author || treating || role == R::VisitingNurse => Profile::Full,
        D::SupportPlan => Profile::SupportParty,
        // The meeting's parties (attended or told what was decided) see the whole record.
        D::MeetingRecord => Profile::Full,
        D::OpinionLetter | D::ResidenceChange if author || treating => Profile::Full,
        D::TransferNotice | D::SupportSummary if author => Profile::Full,
        // Between the destination and the origin authority only (III.5): whole.
        D::InformationRequest | D::InformationAnswer if author => Profile::Full,
        _ => Profile::None,
    }
}

/// The elements of consent `record` that party `recipient` (of directory role `role`) is shown:
/// the controller sees the whole record; any other party the core ([`CONSENT_VIEW_CORE`]: what
/// the record is, its validity and what it allows), the recipient slots that name it or the
/// controller, and the police terms when it is police. A party on the exclusion list, or one the
/// record no longer names, sees no slot of its own: its copy tells it that its part has ended.
///
/// A party covered by a role slot also sees the exclusion list (when there is one). Its slot
/// covers every org of its role, the excluded ones too, and its gateway judges its own sends by
/// its view: without the list, a hospital named by role could send to a hospital the person
/// excluded, and that hospital, judging by the same view, would take it. A party named by org
/// alone can reach only itself and the controller, and is not shown the list.
pub fn consent_view(record: &ConsentRecord, recipient: &OrgId, role: Role) -> Vec<String> {
    use crate::document::ConsentRecipient;
    if *recipient == record.controller {
        return DocType::Consent.element_ids();
    }
    let excluded = record.excluded.contains(recipient);
    let mut out: Vec<String> = CONSENT_VIEW_CORE.iter().map(|e| (*e).to_owned()).collect();
    let mut by_role = false;
    for (i, r) in record.recipients.iter().enumerate() {
        let own = !excluded && ConsentRecord::entry_covers(r, recipient, role);
        let controller = matches!(r, ConsentRecipient::Org { org } if *org == record.controller);
        by_role |= own && matches!(r, ConsentRecipient::Role { .. });
        if own || controller {
            out.push(format!("recipients.{i}"));
        }
    }
    if by_role && !record.excluded.is_empty() {
        out.push("excluded".into());
    }
    if role == Role::Police && !excluded {
        out.push("police".into());
    }
    out
}

/// A site override of the default table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The profile to use instead.
    pub profile: Profile,
    /// Why (required when it widens item-level access).
    pub reason: Option<String>,
}

/// The policy table: defaults plus a site's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyTable {
    overrides: BTreeMap<(DocType, Role), Override>,
}

impl PolicyTable {
    /// The default table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides the entry for `doc_type` × `role`. Giving a role item-level access to needs
    /// assessments that the default table withholds needs a non-empty `reason`.
    pub fn set(
        &mut self,
        doc_type: DocType,
        role: Role,
        profile: Profile,
        reason: Option<String>,
    ) -> Result<(), PolicyError> {
        profile.check_applies(doc_type)?;
        let widens_items = doc_type == DocType::NeedsAssessment
            && profile == Profile::Full
            && default_profile(doc_type, role) != Profile::Full;
        if widens_items && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(PolicyError::ReasonRequired {
                doc_type,
                role,
                profile,
            });
        }
        self.overrides
            .insert((doc_type, role), Override { profile, reason });
        Ok(())
    }

    /// The profile for sending `doc_type` to `role`.
    pub fn profile(&self, doc_type: DocType, role: Role) -> Profile {
        self.overrides
            .get(&(doc_type, role))
            .map_or_else(|| default_profile(doc_type, role), |o| o.profile)
    }

    /// The overrides in force, for the audit log.
    pub fn overrides(&self) -> impl Iterator<Item = (&(DocType, Role), &Override)> {
        self.overrides.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form6_has_no_item_level_element() {
        let els = Profile::Form6.elements(DocType::NeedsAssessment);
        assert!(els.iter().any(|e| e == "summary.overall"));
        assert!(els.iter().any(|e| e == "person"));
        assert!(
            els.iter()
                .all(|e| !e.starts_with("items.") && e != "opinion"),
            "{els:?}"
        );
        assert_eq!(els.len(), FORM6_HEADER.len() + 8);
    }

    #[test]
    fn support_party_view_withholds_diagnosis_and_benefits() {
        let els = Profile::SupportParty.elements(DocType::SupportPlan);
        assert_eq!(
            els.len(),
            SUPPORT_PARTY_PLAN.len(),
            "every listed element exists in the plan: {els:?}"
        );
        for withheld in [
            "diagnosis",
            "benefits",
            "admission_type",
            "supporters",
            "hospital",
        ] {
            assert!(!els.iter().any(|e| e == withheld), "{withheld}");
        }
    }

    #[test]
    fn profiles_apply_to_their_type_only() {
        let e = Profile::Form6
            .check_applies(DocType::SupportPlan)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "profile form6 applies to needs_assessment only, not to support_plan"
        );
        assert!(Profile::Form6.elements(DocType::SupportPlan).is_empty());
        assert_eq!(
            "sideways".parse::<Profile>().unwrap_err().to_string(),
            "\"sideways\" is not a redaction profile: expected full, form6, support_party, notice or none"
        );
    }

    #[test]
    fn default_table() {
        use DocType as D;
        assert_eq!(
            default_profile(D::NeedsAssessment, Role::Authority),
            Profile::Full
        );
        assert_eq!(
            default_profile(D::NeedsAssessment, Role::Clinic),
            Profile::Full
        );
        assert_eq!(
            default_profile(D::NeedsAssessment, Role::Npo),
            Profile::Form6
        );
        assert_eq!(
            default_profile(D::NeedsAssessment, Role::VisitingNurse),
            Profile::Form6
        );
        assert_eq!(
            default_profile(D::SupportPlan, Role::SupportProvider),
            Profile::SupportParty
        );
        assert_eq!(
            default_profile(D::TransferNotice, Role::Authority),
            Profile::Full
        );
        assert_eq!(
            default_profile(D::TransferNotice, Role::Clinic),
            Profile::None
        );
        for d in DocType::ALL {
            let expect = match d {
                D::ConsentWithdrawal => Profile::Full,
                D::SupportEnd => Profile::Notice,
                _ => Profile::None,
            };
            assert_eq!(default_profile(*d, Role::Police), expect, "{d}");
        }
        // A support-end notice tells parties outside the treating team only that and when
        // support ended: not the outcome (readmitted, died …), not the note.
        assert_eq!(default_profile(D::SupportEnd, Role::Npo), Profile::Notice);
        assert_eq!(default_profile(D::SupportEnd, Role::Clinic), Profile::Full);
        assert_eq!(Profile::Notice.elements(D::SupportEnd), vec!["ended_on"]);
        // Readmission: the day only for the support parties, nothing for police; meeting
        // records whole to the meeting's parties (checked by the sender), nothing for police.
        assert_eq!(default_profile(D::Readmission, Role::Npo), Profile::Notice);
        assert_eq!(default_profile(D::Readmission, Role::Clinic), Profile::Full);
        assert_eq!(default_profile(D::Readmission, Role::Police), Profile::None);
        assert_eq!(
            Profile::Notice.elements(D::Readmission),
            vec!["admitted_on"]
        );
        assert_eq!(default_profile(D::MeetingRecord, Role::Npo), Profile::Full);
        assert_eq!(
            default_profile(D::MeetingRecord, Role::Police),
            Profile::None
        );
    }

    #[test]
    fn each_party_sees_its_own_consent_coverage_only() {
        let json = include_str!("../../fixtures/case-0007/consent.json");
        let mut c: ConsentRecord = serde_json::from_str(json).unwrap();
        let org = |s: &str| s.parse::<OrgId>().unwrap();
        c.excluded.push(org("sp:1330000029"));
        c.recipients.push(crate::document::ConsentRecipient::Role {
            role: Role::VisitingNurse,
        });
        // The controller keeps everything.
        assert_eq!(
            consent_view(&c, &org("lg:131059"), Role::Authority),
            DocType::Consent.element_ids()
        );
        // The NPO: the core, the controller's entry (slot 0) and its own (slot 6).
        let npo = consent_view(&c, &org("ot:npo-komorebi"), Role::Npo);
        let mut expect: Vec<String> = CONSENT_VIEW_CORE.iter().map(|e| e.to_string()).collect();
        expect.extend(["recipients.0".into(), "recipients.6".into()]);
        assert_eq!(npo, expect);
        for hidden in [
            "grantor",
            "recorded_by",
            "excluded",
            "police",
            "recipients.1",
        ] {
            assert!(!npo.iter().any(|e| e == hidden), "{hidden}");
        }
        // A visiting nurse station is covered by role (slot 7): it also sees the exclusion
        // list, so that its gateway never sends to an excluded station its slot covers too.
        let vn = consent_view(&c, &org("mi:1360000011"), Role::VisitingNurse);
        assert!(vn.iter().any(|e| e == "recipients.4") && vn.iter().any(|e| e == "recipients.7"));
        assert!(vn.iter().any(|e| e == "excluded"));
        let shown = ConsentRecord::from_view(
            &c.controller,
            &c.subject,
            &crate::document::Document::Consent(c.clone())
                .to_elements()
                .into_iter()
                .filter(|(k, _)| vn.contains(k))
                .collect(),
        )
        .unwrap();
        assert_eq!(shown.excluded, c.excluded);
        // Without exclusions there is no list to show.
        let mut none = c.clone();
        none.excluded.clear();
        let vn = consent_view(&none, &org("mi:1360000011"), Role::VisitingNurse);
        assert!(!vn.iter().any(|e| e == "excluded"));
        // An excluded org, or one no longer named, sees no entry of its own.
        let gone = consent_view(&c, &org("sp:1330000029"), Role::SupportProvider);
        assert_eq!(gone.len(), CONSENT_VIEW_CORE.len() + 1);
        // Police see the police terms (and the gate decides whether they get anything).
        assert!(consent_view(&c, &org("ot:mpd"), Role::Police)
            .iter()
            .any(|e| e == "police"));
    }

    #[test]
    fn widening_item_access_needs_a_reason() {
        let mut t = PolicyTable::new();
        let e = t
            .set(DocType::NeedsAssessment, Role::Npo, Profile::Full, None)
            .unwrap_err();
        assert!(matches!(e, PolicyError::ReasonRequired { .. }));
        t.set(
            DocType::NeedsAssessment,
            Role::Npo,
            Profile::Full,
            Some("peer support worker is part of the treating team by agreement".into()),
        )
        .unwrap();
        assert_eq!(
            t.profile(DocType::NeedsAssessment, Role::Npo),
            Profile::Full
        );
        // Narrowing needs no reason.
        t.set(
            DocType::SupportPlan,
            Role::Clinic,
            Profile::SupportParty,
            None,
        )
        .unwrap();
        assert_eq!(
            t.profile(DocType::SupportPlan, Role::Clinic),
            Profile::SupportParty
        );
        assert_eq!(t.overrides().count(), 2);
    }
}
