//! The consent gate: may this document of this case go to this recipient, for this purpose, today?
//!
//! [`evaluate`] is a pure function of the latest known consent version, the sender's intent, the
//! recipient's role from the signed directory, the current plan's support period and `now`. It
//! does no I/O and reads no clock. The gateway runs it when a message is queued, again when it is
//! dispatched, and the receiver runs it on arrival; a denial names its rule ([`DenyReason::rule`])
//! and a stable code ([`DenyReason::code`]) for receipts and the audit log. Redaction of what is
//! allowed (R2, R3) is the job of [`crate::profile`], not of the gate.
//!
//! # Rules, in order
//!
//! The first rule that refuses decides.
//!
//! 1. **Notices and consent records (R4).** Consent withdrawal and support-end notices need no
//!    consent in force (withdrawn or expired alike: the parties must learn that sharing stopped),
//!    but they go only to a party of the case — an org that already exchanged material of this
//!    case with the sender ([`GateInput::party`]) — and to police only when the latest consent
//!    admits police and the person did not refuse (II.7(3)): a notice never reaches police the
//!    person refused, nor an org that never took part. A consent record goes to its controller,
//!    to the orgs it names as recipients (by org or role), and to the orgs the previous version
//!    named ([`GateInput::previous`]): for an org the new version no longer covers, that copy is
//!    the notice that its part has ended. The police rule (step 3) and the exclusion list still
//!    apply to it. The caller passes that record as `consent`; what each party is shown of it is
//!    [`crate::profile::consent_view`]. A delegation record (III.8) is distributed the same way,
//!    to the contractor it names (the gateway checks that), which the consent must cover.
//! 2. **Consent first (R1, R4).** There must be a consent about this case; it must not be
//!    withdrawn; `now` must lie within its period (not yet valid and expired are distinct).
//!    Admission material (R11) goes only to a hospital (`admission_material_not_hospital`), and
//!    the policy table gives it the `treatment` profile, without third parties' data.
//! 3. **Police (R6).** For a recipient whose directory role is police: refused when the person
//!    refused police involvement, whatever else the record says (checked first); refused unless
//!    police are allowed; refused unless the other parties' written agreement is recorded. Police
//!    that pass still face every check below, like any support party. Police never receive
//!    anything for crime prevention: [`Purpose`] has no such purpose, so it cannot even be asked
//!    for.
//! 4. **Exclusion.** An org on the `excluded` list receives nothing, even if named or matched by
//!    role.
//! 5. **Recipients.** The recipient must be named by org or matched by role. The controller is not
//!    implied: the record lists it like any other recipient.
//! 6. **Scope.** The purpose must be granted, then the document type. Consent to the transfer
//!    notice covers the support summary, which is part (c) of Form 7 sent later (III.5).
//! 7. **Relocation (R5).** A transfer notice or support summary goes only for
//!    `relocation_transfer` and only to an authority (role authority or prefecture) that the
//!    consent covers. So do the destination's information request (under its own consent, which
//!    must name the origin and grant `information_request`) and the origin's answer, which goes
//!    only to the controller of that consent, the authority that asked
//!    (`answer_not_to_requester`); consent to the request covers the answer.
//!
//! After the origin's transfer-out support end, [`after_transfer_out`] refuses the origin's
//! further sharing of the case (`transferred_out`) but for the support summary, answers to the
//! destination's requests, notices and consent records.
//! 8. **Support period (R7).** After the current plan's support period has ended (the extension's
//!    end if extended), nothing more is shared for `plan_implementation`; plan creation and
//!    relocation are unaffected.
//!
//! The sender is part of the intent for the audit trail; no rule depends on it.

use crate::date::Date;
use crate::document::{CaseId, ConsentRecord, ConsentStatus, DocType, Purpose};
use crate::org::{OrgId, Role};
use crate::period::SupportPeriod;

/// What the sender wants to do.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    /// The case the document is about.
    pub case: &'a CaseId,
    /// Why it is sent.
    pub purpose: Purpose,
    /// What is being sent.
    pub doc_type: DocType,
    /// The sending organisation.
    pub sender: &'a OrgId,
    /// The receiving organisation.
    pub recipient: &'a OrgId,
    /// The recipient's role, from the signed directory.
    pub recipient_role: Role,
}

/// Everything the gate decides on.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// The latest known consent version for the case (for a consent record being sent: that
    /// record).
    pub consent: Option<&'a ConsentRecord>,
    /// What the sender wants to do.
    pub intent: Intent<'a>,
    /// Today.
    pub now: Date,
    /// The current plan's support period, if a plan exists.
    pub support_period: Option<&'a SupportPeriod>,
    /// Whether the recipient is already a party of the case: it exchanged material of this case
    /// with the sender before (on the receiving side: this gateway did with anyone). Notices go
    /// only to parties.
    pub party: bool,
    /// The consent version before `consent`, when a consent record is being distributed: the
    /// orgs it named get the new version too.
    pub previous: Option<&'a ConsentRecord>,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The document may go.
    Allow,
    /// The document must not go, for this reason.
    Deny(DenyReason),
}

impl Decision {
    /// `Ok(())` for [`Decision::Allow`], the reason otherwise.
    pub fn into_result(self) -> Result<(), DenyReason> {
        match self {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(reason),
        }
    }
}

/// Why the gate refused. Messages name case ids, org ids, roles, purposes, document types and
/// dates, never personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DenyReason {
    /// No consent is known for the case.
    #[error("sharing {case} refused: no consent is recorded for the case (R1)")]
    NoConsent {
        /// The case of the intent.
        case: CaseId,
    },
    /// The consent presented is about another case.
    #[error("sharing {case} refused: the consent presented is about {subject} (R1)")]
    SubjectMismatch {
        /// The case of the intent.
        case: CaseId,
        /// The case the consent is about.
        subject: CaseId,
    },
    /// The person withdrew consent.
    #[error("sharing {case} refused: consent was withdrawn; only withdrawal and support-end notices may be sent (R4)")]
    Withdrawn {
        /// The case of the intent.
        case: CaseId,
    },
    /// The consent's period has not begun.
    #[error("sharing {case} refused: the consent is valid only from {from}, today is {now} (R1)")]
    NotYetValid {
        /// The case of the intent.
        case: CaseId,
        /// First day of the consent.
        from: Date,
        /// Today.
        now: Date,
    },
    /// The consent's period is over.
    #[error("sharing {case} refused: the consent expired after {to}, today is {now} (R1)")]
    Expired {
        /// The case of the intent.
        case: CaseId,
        /// Last day of the consent.
        to: Date,
        /// Today.
        now: Date,
    },
    /// The recipient is police and the person refused police involvement.
    #[error(
        "{doc_type} to police {recipient} refused: the person refused police involvement (R6)"
    )]
    PoliceRefusedByPerson {
        /// What was to be sent.
        doc_type: DocType,
        /// The police org.
        recipient: OrgId,
    },
    /// The recipient is police and the consent does not allow police.
    #[error("{doc_type} to police {recipient} refused: the consent does not allow police as a support party (R6)")]
    PoliceNotAllowed {
        /// What was to be sent.
        doc_type: DocType,
        /// The police org.
        recipient: OrgId,
    },
    /// The recipient is police and the other parties' written agreement is not recorded.
    #[error("{doc_type} to police {recipient} refused: the other parties' written agreement is not recorded (R6)")]
    PoliceNoWrittenAgreement {
        /// What was to be sent.
        doc_type: DocType,
        /// The police org.
        recipient: OrgId,
    },
    /// The recipient is on the consent's exclusion list.
    #[error("{doc_type} to {recipient} refused: the consent excludes this org from receiving anything (R1)")]
    Excluded {
        /// What was to be sent.
        doc_type: DocType,
        /// The excluded org.
        recipient: OrgId,
    },
    /// The consent names the recipient neither by org nor by role.
    #[error("{doc_type} to {recipient} ({role}) refused: the consent names neither this org nor its role as a recipient (R1)")]
    RecipientNotCovered {
        /// What was to be sent.
        doc_type: DocType,
        /// The recipient.
        recipient: OrgId,
        /// Its directory role.
        role: Role,
    },
    /// The purpose is not granted.
    #[error("{doc_type} for {purpose} refused: the consent does not grant this purpose (R1)")]
    PurposeNotGranted {
        /// What was to be sent.
        doc_type: DocType,
        /// The purpose asked for.
        purpose: Purpose,
    },
    /// The document type is not covered.
    #[error("{doc_type} refused: the consent does not cover sharing this document type (R1)")]
    DocTypeNotGranted {
        /// What was to be sent.
        doc_type: DocType,
    },
    /// A relocation document sent for another purpose.
    #[error("{doc_type} for {purpose} refused: relocation documents go only for relocation_transfer (R5)")]
    RelocationWrongPurpose {
        /// The relocation document type.
        doc_type: DocType,
        /// The purpose asked for.
        purpose: Purpose,
    },
    /// A relocation document to an org that is not an authority.
    #[error("{doc_type} to {recipient} ({role}) refused: relocation documents go only to the destination authority (R5)")]
    RelocationNotAuthority {
        /// The relocation document type.
        doc_type: DocType,
        /// The recipient.
        recipient: OrgId,
        /// Its directory role.
        role: Role,
    },
    /// A notice to an org that never took part in the case.
    #[error("{doc_type} to {recipient} refused: it never received material of this case, so it is not a party to notify (R2)")]
    NotAParty {
        /// What was to be sent.
        doc_type: DocType,
        /// The recipient.
        recipient: OrgId,
    },
    /// Admission material to an org that is not a hospital.
    #[error("admission_material to {recipient} ({role}) refused: admission material goes only to the admitting hospital (R11)")]
    AdmissionNotHospital {
        /// The recipient.
        recipient: OrgId,
        /// Its directory role.
        role: Role,
    },
    /// An answer to an information request to another org than the one that asked.
    #[error("information_answer to {recipient} refused: the request was made under the consent of {controller}, so only {controller} gets the answer (R5)")]
    AnswerNotToRequester {
        /// The recipient.
        recipient: OrgId,
        /// The controller of the consent the request was made under.
        controller: OrgId,
    },
    /// The sender's part of the case ended with a transfer to another authority.
    #[error("{doc_type} of {case} refused: the case was transferred out to {destination}, which is now its controller; only the support summary and answers to its information requests go from here (R5)")]
    TransferredOut {
        /// The case.
        case: CaseId,
        /// What was to be sent.
        doc_type: DocType,
        /// The authority the case went to.
        destination: OrgId,
    },
    /// The support period is over.
    #[error("{doc_type} for plan_implementation refused: the support period ended on {end}, today is {now} (R7)")]
    SupportEnded {
        /// What was to be sent.
        doc_type: DocType,
        /// The last day of support.
        end: Date,
        /// Today.
        now: Date,
    },
}

impl DenyReason {
    /// A stable snake_case code for receipts and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::NoConsent { .. } => "no_consent",
            DenyReason::SubjectMismatch { .. } => "consent_subject_mismatch",
            DenyReason::Withdrawn { .. } => "consent_withdrawn",
            DenyReason::NotYetValid { .. } => "consent_not_yet_valid",
            DenyReason::Expired { .. } => "consent_expired",
            DenyReason::PoliceRefusedByPerson { .. } => "police_refused_by_person",
            DenyReason::PoliceNotAllowed { .. } => "police_not_allowed",
            DenyReason::PoliceNoWrittenAgreement { .. } => "police_no_written_agreement",
            DenyReason::Excluded { .. } => "recipient_excluded",
            DenyReason::RecipientNotCovered { .. } => "recipient_not_covered",
            DenyReason::PurposeNotGranted { .. } => "purpose_not_granted",
            DenyReason::DocTypeNotGranted { .. } => "doc_type_not_granted",
            DenyReason::RelocationWrongPurpose { .. } => "relocation_wrong_purpose",
            DenyReason::RelocationNotAuthority { .. } => "relocation_not_authority",
            DenyReason::SupportEnded { .. } => "support_ended",
            DenyReason::NotAParty { .. } => "recipient_not_a_party",
            DenyReason::AdmissionNotHospital { .. } => "admission_material_not_hospital",
            DenyReason::AnswerNotToRequester { .. } => "answer_not_to_requester",
            DenyReason::TransferredOut { .. } => "transferred_out",
        }
    }

    /// The rule of `docs/rules.md` that refused: `"R1"` … `"R7"`.
    pub fn rule(&self) -> &'static str {
        match self {
            DenyReason::Withdrawn { .. } => "R4",
            DenyReason::PoliceRefusedByPerson { .. }
            | DenyReason::PoliceNotAllowed { .. }
            | DenyReason::PoliceNoWrittenAgreement { .. } => "R6",
            DenyReason::RelocationWrongPurpose { .. }
            | DenyReason::RelocationNotAuthority { .. }
            | DenyReason::AnswerNotToRequester { .. }
            | DenyReason::TransferredOut { .. } => "R5",
            DenyReason::SupportEnded { .. } => "R7",
            DenyReason::NotAParty { .. } => "R2",
            DenyReason::AdmissionNotHospital { .. } => "R11",
            _ => "R1",
        }
    }
}

/// After the origin's transfer-out support end (III.5, R5): what the origin may still send of
/// the case. The support summary (Form 7's part (c)) to the destination and answers to the
/// destination's information requests go on; so do the notices and consent records every party
/// must get (a withdrawal, a support end: R4). Anything else is refused as `transferred_out`:
/// the destination is the case's controller now. The gateway asks this before [`evaluate`],
/// which still decides what passes here.
pub fn after_transfer_out(
    case: &CaseId,
    doc_type: DocType,
    recipient: &OrgId,
    destination: &OrgId,
) -> Result<(), DenyReason> {
    let allowed = match doc_type {
        DocType::SupportSummary | DocType::InformationAnswer => recipient == destination,
        DocType::SupportEnd | DocType::ConsentWithdrawal | DocType::Consent => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(DenyReason::TransferredOut {
            case: case.clone(),
            doc_type,
            destination: destination.clone(),
        })
    }
}

/// Decides whether the intent may proceed; see the module docs for the rules and their order.
pub fn evaluate(input: &GateInput) -> Decision {
    match gate(input) {
        Ok(()) => Decision::Allow,
        Err(reason) => Decision::Deny(reason),
    }
}

fn gate(input: &GateInput) -> Result<(), DenyReason> {
    let GateInput {
        consent,
        intent,
        now,
        support_period,
        party,
        previous,
    } = *input;
    let Intent {
        case,
        purpose,
        doc_type,
        recipient,
        recipient_role: role,
        ..
    } = intent;

    // 1. Notices: to parties only, and never to police the person refused; under a consent of
    // their own case, when one is named.
    if matches!(doc_type, DocType::ConsentWithdrawal | DocType::SupportEnd) {
        if let Some(c) = consent.filter(|c| &c.subject != case) {
            return Err(DenyReason::SubjectMismatch {
                case: case.clone(),
                subject: c.subject.clone(),
            });
        }
        if role == Role::Police {
            let recipient = recipient.clone();
            match consent {
                Some(c) if c.police.person_refused => {
                    return Err(DenyReason::PoliceRefusedByPerson {
                        doc_type,
                        recipient,
                    })
                }
                Some(c) if c.police.allowed => {}
                _ => {
                    return Err(DenyReason::PoliceNotAllowed {
                        doc_type,
                        recipient,
                    })
                }
            }
        }
        if !party {
            return Err(DenyReason::NotAParty {
                doc_type,
                recipient: recipient.clone(),
            });
        }
        return Ok(());
    }

    // 2. Consent first.
    let c = consent.ok_or_else(|| DenyReason::NoConsent { case: case.clone() })?;
    if &c.subject != case {
        return Err(DenyReason::SubjectMismatch {
            case: case.clone(),
            subject: c.subject.clone(),
        });
    }
    // A delegation record (III.8) goes like a consent record: whatever the consent's state (a
    // revocation must get through), but only to an org the consent covers.
    let distributing_record = matches!(doc_type, DocType::Consent | DocType::Delegation);
    if distributing_record && recipient == &c.controller {
        return Ok(());
    }
    if !distributing_record {
        if c.status == ConsentStatus::Withdrawn {
            return Err(DenyReason::Withdrawn { case: case.clone() });
        }
        if now < c.period.from {
            return Err(DenyReason::NotYetValid {
                case: case.clone(),
                from: c.period.from,
                now,
            });
        }
        if now > c.period.to {
            return Err(DenyReason::Expired {
                case: case.clone(),
                to: c.period.to,
                now,
            });
        }
    }

    // Admission material goes to a hospital only (R11); the profile removes third parties.
    if doc_type == DocType::AdmissionMaterial && role != Role::Hospital {
        return Err(DenyReason::AdmissionNotHospital {
            recipient: recipient.clone(),
            role,
        });
    }

    // 3. Police.
    if role == Role::Police {
        let recipient = recipient.clone();
        if c.police.person_refused {
            return Err(DenyReason::PoliceRefusedByPerson {
                doc_type,
                recipient,
            });
        }
        if !c.police.allowed {
            return Err(DenyReason::PoliceNotAllowed {
                doc_type,
                recipient,
            });
        }
        if c.police.parties_agreed_at.is_none() {
            return Err(DenyReason::PoliceNoWrittenAgreement {
                doc_type,
                recipient,
            });
        }
    }

    // 4. Exclusion, 5. recipients.
    let was_party = distributing_record
        && previous.is_some_and(|p| {
            p.subject == c.subject && p.version < c.version && p.names(recipient, role)
        });
    if c.excluded.contains(recipient) && !was_party {
        return Err(DenyReason::Excluded {
            doc_type,
            recipient: recipient.clone(),
        });
    }
    let covered = c.names(recipient, role);
    if !covered && !was_party {
        return Err(DenyReason::RecipientNotCovered {
            doc_type,
            recipient: recipient.clone(),
            role,
        });
    }
    if distributing_record {
        return Ok(());
    }

    // 6. Scope.
    if !c.purposes.contains(&purpose) {
        return Err(DenyReason::PurposeNotGranted { doc_type, purpose });
    }
    // The support summary is part (c) of the Form 7 notice that may follow it separately
    // (III.5): consent to the transfer notice covers it.
    // Meeting records and readmission notices belong to carrying out the plan: consent to share
    // the plan covers them.
    // The consent under which the destination asks the origin for information covers the
    // origin's answer (III.5).
    let granted = c.doc_types.contains(&doc_type)
        || (doc_type == DocType::SupportSummary && c.doc_types.contains(&DocType::TransferNotice))
        || (doc_type == DocType::InformationAnswer
            && c.doc_types.contains(&DocType::InformationRequest))
        || (matches!(doc_type, DocType::MeetingRecord | DocType::Readmission)
            && c.doc_types.contains(&DocType::SupportPlan));
    if !granted {
        return Err(DenyReason::DocTypeNotGranted { doc_type });
    }

    // 7. Relocation: Form 7, the summary, and the information request and answer after the
    // move. An answer goes back only to the authority that asked: the consent's controller.
    if doc_type == DocType::InformationAnswer && recipient != &c.controller {
        return Err(DenyReason::AnswerNotToRequester {
            recipient: recipient.clone(),
            controller: c.controller.clone(),
        });
    }
    if matches!(
        doc_type,
        DocType::TransferNotice
            | DocType::SupportSummary
            | DocType::InformationRequest
            | DocType::InformationAnswer
    ) {
        if purpose != Purpose::RelocationTransfer {
            return Err(DenyReason::RelocationWrongPurpose { doc_type, purpose });
        }
        if !matches!(role, Role::Authority | Role::Prefecture) {
            return Err(DenyReason::RelocationNotAuthority {
                doc_type,
                recipient: recipient.clone(),
                role,
            });
        }
    }

    // 8. Support period.
    if let Some(period) = support_period {
        let end = period.effective_end();
        if purpose == Purpose::PlanImplementation && now > end {
            return Err(DenyReason::SupportEnded { doc_type, end, now });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{ConsentRecipient, PoliceTerms};

    const V1: &str = include_str!("../../fixtures/case-0007/consent.json");
    const V2: &str = include_str!("../../fixtures/case-0007/consent_v2_relocation.json");
    const V3: &str = include_str!("../../fixtures/case-0007/consent_v3_withdrawn.json");
    const PLAN: &str = include_str!("../../fixtures/case-0007/support_plan.json");

    const BUNKYO: &str = "lg:131059";
    const TOKYO: &str = "lg:130001";
    const SETAGAYA: &str = "lg:131121";
    const HOSPITAL: &str = "mi:1310000017";
    const CLINIC: &str = "mi:1310000025";
    const NPO: &str = "ot:npo-komorebi";
    const POLICE: &str = "ot:mpd";
    const HACHIOJI: &str = "lg:132012";

    fn consent(json: &str) -> ConsentRecord {
        serde_json::from_str(json).unwrap()
    }

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn org(s: &str) -> OrgId {
        s.parse().unwrap()
    }

    fn plan_period() -> SupportPeriod {
        let plan: serde_json::Value = serde_json::from_str(PLAN).unwrap();
        serde_json::from_value(plan["support_period"].clone()).unwrap()
    }

    /// One intent, evaluated at `now` under `consent`, with the fixture plan's period.
    struct Case {
        consent: Option<ConsentRecord>,
        case: CaseId,
        purpose: Purpose,
        doc_type: DocType,
        sender: OrgId,
        recipient: OrgId,
        role: Role,
        now: Date,
        period: Option<SupportPeriod>,
        party: bool,
        previous: Option<ConsentRecord>,
    }

    impl Case {
        /// Bunkyo sends the plan to the clinic for implementation, in December 2026, under v1.
        fn new() -> Case {
            Case {
                consent: Some(consent(V1)),
                case: "case-131059-2026-0007".parse().unwrap(),
                purpose: Purpose::PlanImplementation,
                doc_type: DocType::SupportPlan,
                sender: org(BUNKYO),
                recipient: org(CLINIC),
                role: Role::Clinic,
                now: d("2026-12-01"),
                period: Some(plan_period()),
                party: true,
                previous: None,
            }
        }
        fn party(mut self, party: bool) -> Case {
            self.party = party;
            self
        }
        fn previous(mut self, json: &str) -> Case {
            self.previous = Some(consent(json));
            self
        }
        fn consent(mut self, json: &str) -> Case {
            self.consent = Some(consent(json));
            self
        }
        fn edit(mut self, f: impl FnOnce(&mut ConsentRecord)) -> Case {
            f(self.consent.as_mut().unwrap());
            self
        }
        fn to(mut self, recipient: &str, role: Role) -> Case {
            self.recipient = org(recipient);
            self.role = role;
            self
        }
        fn send(mut self, doc_type: DocType, purpose: Purpose) -> Case {
            self.doc_type = doc_type;
            self.purpose = purpose;
            self
        }
        fn on(mut self, now: &str) -> Case {
            self.now = d(now);
            self
        }
        fn eval(&self) -> Decision {
            evaluate(&GateInput {
                consent: self.consent.as_ref(),
                intent: Intent {
                    case: &self.case,
                    purpose: self.purpose,
                    doc_type: self.doc_type,
                    sender: &self.sender,
                    recipient: &self.recipient,
                    recipient_role: self.role,
                },
                now: self.now,
                support_period: self.period.as_ref(),
                party: self.party,
                previous: self.previous.as_ref(),
            })
        }
        /// The denial, checked for its code and rule.
        fn denied(&self, code: &str, rule: &str) -> DenyReason {
            match self.eval() {
                Decision::Deny(r) => {
                    assert_eq!((r.code(), r.rule()), (code, rule), "{r}");
                    r
                }
                Decision::Allow => panic!("allowed, expected {code}"),
            }
        }
        fn allowed(&self) {
            assert_eq!(self.eval(), Decision::Allow);
        }
    }

    /// Police terms that satisfy R6, with the police org named.
    fn police_ok(c: &mut ConsentRecord) {
        c.recipients
            .push(ConsentRecipient::Org { org: org(POLICE) });
        c.police = PoliceTerms {
            allowed: true,
            person_refused: false,
            parties_agreed_at: Some(d("2026-10-20")),
        };
    }

    const YOKOHAMA_CONSENT: &str =
        include_str!("../../fixtures/case-0007/kanagawa/consent_yokohama.json");
    const YOKOHAMA: &str = "lg:141003";

    #[test]
    fn the_destination_asks_the_origin_under_its_own_consent_and_only_it_gets_the_answer() {
        let ask = || {
            Case::new()
                .consent(YOKOHAMA_CONSENT)
                .on("2027-02-05")
                .to(BUNKYO, Role::Authority)
                .send(DocType::InformationRequest, Purpose::RelocationTransfer)
        };
        ask().allowed();
        // Not for another purpose, not to an org the consent does not name, not without the type.
        ask()
            .send(DocType::InformationRequest, Purpose::PlanImplementation)
            .denied("relocation_wrong_purpose", "R5");
        ask()
            .to(SETAGAYA, Role::Authority)
            .denied("recipient_not_covered", "R1");
        ask()
            .edit(|c| c.doc_types.retain(|t| *t != DocType::InformationRequest))
            .denied("doc_type_not_granted", "R1");
        ask()
            .edit(|c| c.status = ConsentStatus::Withdrawn)
            .denied("consent_withdrawn", "R4");
        // The origin's answer goes back under the same consent, to the destination only.
        let answer = || {
            ask()
                .to(YOKOHAMA, Role::Authority)
                .send(DocType::InformationAnswer, Purpose::RelocationTransfer)
        };
        answer().allowed();
        answer()
            .edit(|c| c.recipients.push(ConsentRecipient::Org { org: org(TOKYO) }))
            .to(TOKYO, Role::Prefecture)
            .denied("answer_not_to_requester", "R5");
        // The origin's own consent does not cover an answer: it never granted the request.
        Case::new()
            .consent(V2)
            .on("2027-02-05")
            .to(SETAGAYA, Role::Authority)
            .send(DocType::InformationAnswer, Purpose::RelocationTransfer)
            .denied("doc_type_not_granted", "R1");
    }

    #[test]
    fn after_the_transfer_out_only_the_summary_answers_and_notices_go() {
        let case: CaseId = "case-131059-2026-0007".parse().unwrap();
        let dest = org(YOKOHAMA);
        for t in [DocType::SupportSummary, DocType::InformationAnswer] {
            assert_eq!(after_transfer_out(&case, t, &dest, &dest), Ok(()));
            let e = after_transfer_out(&case, t, &org(NPO), &dest).unwrap_err();
            assert_eq!((e.code(), e.rule()), ("transferred_out", "R5"));
        }
        for t in [
            DocType::SupportEnd,
            DocType::ConsentWithdrawal,
            DocType::Consent,
        ] {
            assert_eq!(after_transfer_out(&case, t, &org(NPO), &dest), Ok(()));
        }
        for t in [
            DocType::SupportPlan,
            DocType::TransferNotice,
            DocType::MeetingRecord,
            DocType::NeedsAssessment,
        ] {
            let e = after_transfer_out(&case, t, &org(NPO), &dest).unwrap_err();
            assert_eq!(e.code(), "transferred_out");
            assert!(
                e.to_string().contains("transferred out to lg:141003"),
                "{e}"
            );
        }
    }

    #[test]
    fn fixture_consent_allows_its_scope() {
        Case::new().allowed();
        Case::new().consent(V2).allowed();
        Case::new()
            .to(HOSPITAL, Role::Hospital)
            .send(DocType::NeedsAssessment, Purpose::PlanCreation)
            .allowed();
        Case::new()
            .to(TOKYO, Role::Prefecture)
            .send(DocType::SupportPlan, Purpose::PlanCreation)
            .allowed();
        Case::new().to(NPO, Role::Npo).allowed();
        // Consent period is inclusive at both ends.
        Case::new().on("2026-11-01").allowed();
        Case::new()
            .send(DocType::SupportPlan, Purpose::PlanCreation)
            .on("2026-10-05")
            .allowed();
    }

    #[test]
    fn notices_need_no_consent_in_force_but_go_only_to_parties_and_never_to_refused_police() {
        for doc_type in [DocType::ConsentWithdrawal, DocType::SupportEnd] {
            let purpose = if doc_type == DocType::SupportEnd {
                Purpose::SupportEnd
            } else {
                Purpose::ConsentManagement
            };
            // Under withdrawn consent v3, to a party; without any consent; after it ended.
            Case::new().consent(V3).send(doc_type, purpose).allowed();
            let mut none = Case::new().send(doc_type, purpose).on("2028-01-01");
            none.consent = None;
            none.allowed();
            // Never to an org that took no part (Hachioji in the tester's run).
            let r = Case::new()
                .consent(V3)
                .send(doc_type, purpose)
                .to(HACHIOJI, Role::Authority)
                .party(false)
                .denied("recipient_not_a_party", "R2");
            assert!(r.to_string().contains("never received material"), "{r}");
            // Never to police the person refused — even had they been a party.
            Case::new()
                .consent(V3)
                .send(doc_type, purpose)
                .to(POLICE, Role::Police)
                .denied("police_refused_by_person", "R6");
            // Nor to police when no consent says police may take part.
            let mut none = Case::new().send(doc_type, purpose).to(POLICE, Role::Police);
            none.consent = None;
            none.denied("police_not_allowed", "R6");
            // Under a consent of another case: refused, whoever controls it.
            Case::new()
                .consent(V3)
                .edit(|c| c.subject = "case-131121-2026-0001".parse().unwrap())
                .send(doc_type, purpose)
                .denied("consent_subject_mismatch", "R1");
            // Police admitted as a party (all terms met) get the notice.
            Case::new()
                .consent(V3)
                .edit(|c| {
                    c.police = PoliceTerms {
                        allowed: true,
                        person_refused: false,
                        parties_agreed_at: Some(d("2026-10-04")),
                    }
                })
                .send(doc_type, purpose)
                .to(POLICE, Role::Police)
                .allowed();
        }
    }

    #[test]
    fn a_narrowed_consent_still_reaches_the_parties_of_the_previous_version() {
        // v2 drops the NPO: the NPO gets v2 (its notice that its part ended) because v1 named it.
        let narrowed = |c: &mut ConsentRecord| {
            c.recipients
                .retain(|r| r != &ConsentRecipient::Org { org: org(NPO) })
        };
        Case::new()
            .consent(V2)
            .edit(narrowed)
            .previous(V1)
            .send(DocType::Consent, Purpose::ConsentManagement)
            .to(NPO, Role::Npo)
            .allowed();
        // Also when v2 excludes it outright.
        Case::new()
            .consent(V2)
            .edit(narrowed)
            .edit(|c| c.excluded.push(org(NPO)))
            .previous(V1)
            .send(DocType::Consent, Purpose::ConsentManagement)
            .to(NPO, Role::Npo)
            .allowed();
        // Without a previous version naming it, no.
        Case::new()
            .consent(V2)
            .edit(narrowed)
            .send(DocType::Consent, Purpose::ConsentManagement)
            .to(NPO, Role::Npo)
            .denied("recipient_not_covered", "R1");
        // The previous version opens only the record itself, never a document.
        Case::new()
            .consent(V2)
            .edit(narrowed)
            .previous(V1)
            .to(NPO, Role::Npo)
            .denied("recipient_not_covered", "R1");
    }

    #[test]
    fn always_flow_consent_record_to_named_orgs() {
        let record = Case::new()
            .consent(V3)
            .send(DocType::Consent, Purpose::ConsentManagement);
        // Withdrawn, and after its period: the record still reaches the orgs it names.
        record
            .on("2027-06-15")
            .to(SETAGAYA, Role::Authority)
            .allowed();
        let record = Case::new()
            .consent(V3)
            .send(DocType::Consent, Purpose::ConsentManagement);
        record.to(CLINIC, Role::Clinic).allowed();
        // The controller, even when not listed.
        Case::new()
            .edit(|c| {
                c.recipients
                    .retain(|r| r != &ConsentRecipient::Org { org: org(BUNKYO) })
            })
            .send(DocType::Consent, Purpose::ConsentManagement)
            .to(BUNKYO, Role::Authority)
            .allowed();
        // Orgs matched by role.
        Case::new()
            .edit(|c| {
                c.recipients.push(ConsentRecipient::Role {
                    role: Role::MunicipalWelfare,
                })
            })
            .send(DocType::Consent, Purpose::ConsentManagement)
            .to("lg:132063", Role::MunicipalWelfare)
            .allowed();
        // Not to an org it does not name, nor to police the person refused, nor to an excluded org.
        let record = Case::new().send(DocType::Consent, Purpose::ConsentManagement);
        record
            .to(HACHIOJI, Role::Authority)
            .denied("recipient_not_covered", "R1");
        let record = Case::new().send(DocType::Consent, Purpose::ConsentManagement);
        record
            .to(POLICE, Role::Police)
            .denied("police_refused_by_person", "R6");
        Case::new()
            .edit(|c| c.excluded.push(org(NPO)))
            .send(DocType::Consent, Purpose::ConsentManagement)
            .to(NPO, Role::Npo)
            .denied("recipient_excluded", "R1");
    }

    #[test]
    fn r1_no_consent() {
        let mut case = Case::new();
        case.consent = None;
        let r = case.denied("no_consent", "R1");
        assert_eq!(
            r.to_string(),
            "sharing case-131059-2026-0007 refused: no consent is recorded for the case (R1)"
        );
        // Even a consent record cannot be sent without the record.
        case.doc_type = DocType::Consent;
        case.denied("no_consent", "R1");
    }

    #[test]
    fn r1_subject_mismatch() {
        let mut case = Case::new();
        case.case = "case-131059-2026-0008".parse().unwrap();
        let r = case.denied("consent_subject_mismatch", "R1");
        assert!(r.to_string().contains("about case-131059-2026-0007"), "{r}");
        case.doc_type = DocType::Consent;
        case.denied("consent_subject_mismatch", "R1");
    }

    #[test]
    fn r4_withdrawn_denies() {
        let r = Case::new()
            .consent(V3)
            .on("2027-02-02")
            .denied("consent_withdrawn", "R4");
        assert!(r.to_string().contains("withdrawn"), "{r}");
        // Also what v2 allowed: the transfer notice to Setagaya.
        Case::new()
            .consent(V3)
            .send(DocType::TransferNotice, Purpose::RelocationTransfer)
            .to(SETAGAYA, Role::Authority)
            .on("2027-02-02")
            .denied("consent_withdrawn", "R4");
    }

    #[test]
    fn r1_not_yet_valid() {
        let r = Case::new()
            .on("2026-10-04")
            .denied("consent_not_yet_valid", "R1");
        assert!(r.to_string().contains("valid only from 2026-10-05"), "{r}");
    }

    #[test]
    fn r1_expired() {
        Case::new()
            .send(DocType::SupportPlan, Purpose::PlanCreation)
            .on("2027-05-31")
            .allowed();
        let r = Case::new()
            .send(DocType::SupportPlan, Purpose::PlanCreation)
            .on("2027-06-01")
            .denied("consent_expired", "R1");
        assert!(r.to_string().contains("expired after 2027-05-31"), "{r}");
        // A shortened copy expires earlier.
        Case::new()
            .edit(|c| c.period.to = d("2026-11-30"))
            .denied("consent_expired", "R1");
    }

    #[test]
    fn r6_police_denied_when_person_refused_even_if_allowed() {
        let case = Case::new()
            .edit(police_ok)
            .edit(|c| c.police.person_refused = true)
            .to(POLICE, Role::Police);
        let r = case.denied("police_refused_by_person", "R6");
        assert_eq!(
            r.to_string(),
            "support_plan to police ot:mpd refused: the person refused police involvement (R6)"
        );
        // The fixture itself: refused and not allowed; refusal is reported.
        Case::new()
            .to(POLICE, Role::Police)
            .denied("police_refused_by_person", "R6");
    }

    #[test]
    fn r6_police_denied_unless_allowed() {
        Case::new()
            .edit(police_ok)
            .edit(|c| c.police.allowed = false)
            .to(POLICE, Role::Police)
            .denied("police_not_allowed", "R6");
    }

    #[test]
    fn r6_police_denied_without_written_agreement() {
        Case::new()
            .edit(police_ok)
            .edit(|c| c.police.parties_agreed_at = None)
            .to(POLICE, Role::Police)
            .denied("police_no_written_agreement", "R6");
    }

    #[test]
    fn r6_police_allowed_when_all_three_hold_and_named() {
        Case::new()
            .edit(police_ok)
            .to(POLICE, Role::Police)
            .allowed();
        // Matched by role works too.
        Case::new()
            .edit(police_ok)
            .edit(|c| {
                c.recipients.pop();
                c.recipients
                    .push(ConsentRecipient::Role { role: Role::Police });
            })
            .to(POLICE, Role::Police)
            .allowed();
        // All three hold but police are not named: like any other party, refused.
        Case::new()
            .edit(police_ok)
            .edit(|c| {
                c.recipients.pop();
            })
            .to(POLICE, Role::Police)
            .denied("recipient_not_covered", "R1");
        // And still bound by scope.
        Case::new()
            .edit(police_ok)
            .to(POLICE, Role::Police)
            .send(DocType::NeedsAssessment, Purpose::RelocationTransfer)
            .denied("purpose_not_granted", "R1");
    }

    #[test]
    fn r1_excluded_org_denied_even_if_named() {
        let r = Case::new()
            .edit(|c| c.excluded.push(org(NPO)))
            .to(NPO, Role::Npo)
            .denied("recipient_excluded", "R1");
        assert!(r.to_string().contains("ot:npo-komorebi"), "{r}");
        // Even if matched by role as well.
        Case::new()
            .edit(|c| {
                c.excluded.push(org(NPO));
                c.recipients
                    .push(ConsentRecipient::Role { role: Role::Npo });
            })
            .to(NPO, Role::Npo)
            .denied("recipient_excluded", "R1");
    }

    #[test]
    fn r1_recipient_not_covered() {
        let r = Case::new()
            .to(HACHIOJI, Role::Authority)
            .denied("recipient_not_covered", "R1");
        assert!(r.to_string().contains("lg:132012 (authority)"), "{r}");
        // A role entry covers every org of that role.
        Case::new()
            .edit(|c| {
                c.recipients.push(ConsentRecipient::Role {
                    role: Role::Authority,
                })
            })
            .to(HACHIOJI, Role::Authority)
            .allowed();
    }

    #[test]
    fn r1_purpose_outside_scope_denied() {
        let r = Case::new()
            .send(DocType::SupportPlan, Purpose::RelocationTransfer)
            .denied("purpose_not_granted", "R1");
        assert_eq!(
            r.to_string(),
            "support_plan for relocation_transfer refused: the consent does not grant this purpose (R1)"
        );
    }

    #[test]
    fn r1_doc_type_outside_scope_denied() {
        let r = Case::new()
            .send(DocType::SupportSummary, Purpose::PlanImplementation)
            .denied("doc_type_not_granted", "R1");
        assert!(r.to_string().starts_with("support_summary refused"), "{r}");
        Case::new()
            .edit(|c| c.doc_types.retain(|t| *t != DocType::NeedsAssessment))
            .to(HOSPITAL, Role::Hospital)
            .send(DocType::NeedsAssessment, Purpose::PlanCreation)
            .denied("doc_type_not_granted", "R1");
    }

    #[test]
    fn meeting_records_and_readmissions_are_covered_by_consent_to_share_the_plan() {
        for t in [DocType::MeetingRecord, DocType::Readmission] {
            Case::new().send(t, Purpose::PlanImplementation).allowed();
            Case::new()
                .edit(|c| c.doc_types.retain(|t| *t != DocType::SupportPlan))
                .send(t, Purpose::PlanImplementation)
                .denied("doc_type_not_granted", "R1");
            // Not notices: a withdrawn consent stops them (R4).
            Case::new()
                .consent(V3)
                .send(t, Purpose::PlanImplementation)
                .denied("consent_withdrawn", "R4");
        }
    }

    #[test]
    fn r5_transfer_notice_to_setagaya_needs_v2() {
        let transfer = || {
            Case::new()
                .send(DocType::TransferNotice, Purpose::RelocationTransfer)
                .to(SETAGAYA, Role::Authority)
                .on("2027-01-15")
        };
        // v1 neither names Setagaya nor grants relocation.
        transfer().denied("recipient_not_covered", "R1");
        transfer()
            .edit(|c| {
                c.recipients
                    .push(ConsentRecipient::Org { org: org(SETAGAYA) })
            })
            .denied("purpose_not_granted", "R1");
        transfer().consent(V2).allowed();
        // The support summary is Form 7 part (c): consent to the transfer notice covers it.
        transfer()
            .consent(V2)
            .send(DocType::SupportSummary, Purpose::RelocationTransfer)
            .allowed();
        // Without the transfer notice in scope, neither goes.
        transfer()
            .consent(V2)
            .edit(|c| c.doc_types.retain(|d| *d != DocType::TransferNotice))
            .send(DocType::SupportSummary, Purpose::RelocationTransfer)
            .denied("doc_type_not_granted", "R1");
    }

    #[test]
    fn r5_relocation_only_for_relocation_purpose() {
        let r = Case::new()
            .consent(V2)
            .send(DocType::TransferNotice, Purpose::PlanImplementation)
            .to(SETAGAYA, Role::Authority)
            .denied("relocation_wrong_purpose", "R5");
        assert!(
            r.to_string().contains("only for relocation_transfer"),
            "{r}"
        );
    }

    #[test]
    fn r5_relocation_only_to_an_authority() {
        // v2 names the clinic and grants transfer notices for relocation, but the clinic is no
        // destination authority.
        Case::new()
            .consent(V2)
            .send(DocType::TransferNotice, Purpose::RelocationTransfer)
            .denied("relocation_not_authority", "R5");
        // A prefecture may receive it.
        Case::new()
            .consent(V2)
            .send(DocType::TransferNotice, Purpose::RelocationTransfer)
            .to(TOKYO, Role::Prefecture)
            .allowed();
    }

    #[test]
    fn r7_support_ended() {
        // Plan period 2026-11-01..2027-04-30; consent runs to 2027-05-31.
        Case::new().on("2027-04-30").allowed();
        let r = Case::new().on("2027-05-01").denied("support_ended", "R7");
        assert!(r.to_string().contains("ended on 2027-04-30"), "{r}");
        // Plan creation and relocation are unaffected.
        Case::new()
            .send(DocType::SupportPlan, Purpose::PlanCreation)
            .on("2027-05-01")
            .allowed();
        Case::new()
            .consent(V2)
            .send(DocType::TransferNotice, Purpose::RelocationTransfer)
            .to(SETAGAYA, Role::Authority)
            .on("2027-05-01")
            .allowed();
        // An extension moves the end; no plan, no period check.
        let mut extended = Case::new().on("2027-05-01");
        extended.period = extended.period.map(|p| SupportPeriod {
            extensions: vec![crate::period::PeriodExtension {
                to: d("2027-07-31"),
                meeting_on: d("2027-04-20"),
                consent_version: 2,
                consented_on: d("2027-04-20"),
                reason: "延長".to_owned(),
                exception: None,
            }],
            ..p
        });
        extended.allowed();
        let mut no_plan = Case::new().on("2027-05-01");
        no_plan.period = None;
        no_plan.allowed();
    }

    #[test]
    fn codes_and_rules_are_stable() {
        let case: CaseId = "case-1".parse().unwrap();
        let (t, o, now) = (DocType::SupportPlan, org(CLINIC), d("2027-01-01"));
        let all = [
            DenyReason::NoConsent { case: case.clone() },
            DenyReason::SubjectMismatch {
                case: case.clone(),
                subject: case.clone(),
            },
            DenyReason::Withdrawn { case: case.clone() },
            DenyReason::NotYetValid {
                case: case.clone(),
                from: now,
                now,
            },
            DenyReason::Expired { case, to: now, now },
            DenyReason::PoliceRefusedByPerson {
                doc_type: t,
                recipient: o.clone(),
            },
            DenyReason::PoliceNotAllowed {
                doc_type: t,
                recipient: o.clone(),
            },
            DenyReason::PoliceNoWrittenAgreement {
                doc_type: t,
                recipient: o.clone(),
            },
            DenyReason::Excluded {
                doc_type: t,
                recipient: o.clone(),
            },
            DenyReason::RecipientNotCovered {
                doc_type: t,
                recipient: o.clone(),
                role: Role::Clinic,
            },
            DenyReason::PurposeNotGranted {
                doc_type: t,
                purpose: Purpose::PlanCreation,
            },
            DenyReason::DocTypeNotGranted { doc_type: t },
            DenyReason::RelocationWrongPurpose {
                doc_type: t,
                purpose: Purpose::PlanCreation,
            },
            DenyReason::RelocationNotAuthority {
                doc_type: t,
                recipient: o,
                role: Role::Clinic,
            },
            DenyReason::SupportEnded {
                doc_type: t,
                end: now,
                now,
            },
        ];
        let codes: Vec<_> = all.iter().map(DenyReason::code).collect();
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        for r in &all {
            assert!(r
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(r.to_string().ends_with(&format!("({})", r.rule())), "{r}");
        }
        assert_eq!(
            Decision::Deny(all[0].clone()).into_result(),
            Err(all[0].clone())
        );
        assert_eq!(Decision::Allow.into_result(), Ok(()));
    }
}
