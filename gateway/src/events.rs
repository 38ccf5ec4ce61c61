//! The audit events: one typed enum for everything the gateway decides.
//!
//! Every decision the engine takes is an [`AuditEvent`]; the audit log ([`crate::audit`]) stores
//! each as one JSON record, `{"event": "<kind>", …fields, "seq", "time", "prev"}`, in its hash
//! chain. The same type is read back by the statistics (R12) and the person's disclosure page
//! (R9), so a field cannot be written under one name and read under another. Records carry case
//! pseudonyms, org ids, document types and element names, never personal data.

use serde::{Deserialize, Serialize};
use tsunagi_protocol::document::{ConsentStatus, DelegationStatus, SupportOutcome};
use tsunagi_protocol::org::MunicipalityCode;
use tsunagi_protocol::{CaseId, Date, DocType, OrgId, Purpose};

/// Facts about a document that statistics need, taken when it is queued or received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocFacts {
    /// A plan made jointly (with a co-author) or alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<bool>,
    /// A plan's support period in days (extension included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_days: Option<i64>,
    /// How support ended (a support-end notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<SupportOutcome>,
    /// A plan's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// How often a plan's support period was extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<u32>,
    /// Whether a plan's period goes beyond the guideline (a second extension, or beyond 1 year
    /// after discharge, with a recorded reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exceptional: Option<bool>,
    /// The day of a support meeting (a meeting record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_on: Option<Date>,
    /// The extension a support meeting decided (its new last day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_to: Option<Date>,
    /// Who signed a meeting record (records written before this was kept have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_author: Option<OrgId>,
}

/// One decision of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// An envelope was sealed and queued for a recipient.
    Queued {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Recipient.
        to: OrgId,
        /// Document type.
        kind: DocType,
        /// What statistics need of the document.
        #[serde(flatten)]
        facts: DocFacts,
    },
    /// Elements were withheld from a recipient (its profile).
    Redacted {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Recipient.
        to: OrgId,
        /// Document type.
        kind: DocType,
        /// The profile applied.
        profile: String,
        /// The elements withheld.
        withheld: Vec<String>,
    },
    /// The recipient's signed receipt accepted the envelope.
    Sent {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Recipient.
        to: OrgId,
        /// Document type.
        kind: DocType,
        /// The profile applied.
        profile: String,
        /// The elements withheld.
        withheld: Vec<String>,
    },
    /// The recipient's signed receipt rejected the envelope (final).
    RejectedByPeer {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Recipient.
        to: OrgId,
        /// The rejection code.
        reason: String,
    },
    /// An envelope could not be delivered before it expired.
    Expired {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Recipient.
        to: OrgId,
    },
    /// A queued envelope was cancelled before it was ever delivered.
    Cancelled {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Recipient.
        to: OrgId,
        /// Why (e.g. consent withdrawn).
        why: String,
        /// The member of staff who asked for it (`tsunagi outbox cancel` through the console);
        /// absent when the gateway decided it or the operator asked on the command line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        staff: Option<String>,
    },
    /// The consent gate refused a send.
    GateDenied {
        /// Case.
        case: CaseId,
        /// Intended recipient.
        to: OrgId,
        /// Document type.
        kind: DocType,
        /// Purpose asked for.
        purpose: Purpose,
        /// The refusal's code.
        code: String,
        /// The rule (R1–R7).
        rule: String,
    },
    /// A document arrived and was stored.
    Received {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Sender.
        from: OrgId,
        /// Document type.
        kind: DocType,
        /// The elements disclosed to this gateway.
        disclosed: Vec<String>,
        /// The elements withheld from it.
        withheld: Vec<String>,
        /// What statistics need of the document.
        #[serde(flatten)]
        facts: DocFacts,
    },
    /// An envelope from a peer was refused (the sender got a signed rejection).
    Rejected {
        /// The TLS peer.
        from: OrgId,
        /// The rejection code.
        code: String,
    },
    /// A consent version was recorded on the controller's gateway.
    ConsentRecorded {
        /// Case.
        case: CaseId,
        /// Consent id.
        consent: String,
        /// Version.
        version: u32,
        /// Active or withdrawn.
        status: ConsentStatus,
        /// A pseudonym of the staff member in charge (who recorded it): the first 8 bytes of
        /// SHA-256 of `recorded_by`, in hex, for the caseload statistics; never the name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        staff: Option<String>,
    },
    /// A document waits until a consent version covers it.
    AwaitingConsent {
        /// Message id.
        id: String,
        /// Case.
        case: CaseId,
        /// Recipient.
        to: OrgId,
        /// Document type.
        kind: DocType,
    },
    /// A move was recorded without a transfer (the same authority stays responsible).
    Relocation {
        /// Case.
        case: CaseId,
        /// The authority responsible.
        to: OrgId,
        /// Whether a transfer notice was drafted.
        transfer: bool,
    },
    /// A residence change was reported to this gateway by a peer: kept, and a relocation
    /// started when this gateway authors the case's plan.
    ResidenceReported {
        /// Case.
        case: CaseId,
        /// Who reported it.
        from: OrgId,
        /// Whether this gateway holds a plan of the case (a report may come before any plan).
        plan: bool,
        /// Whether the new address is known (not 住所不定 / 帰住先不明).
        address_known: bool,
    },
    /// The person asked to see their records (R9); the request is answered by
    /// [`AuditEvent::DisclosureAnswered`].
    DisclosureRequested {
        /// Case.
        case: CaseId,
        /// The day the request was received.
        received_on: Date,
    },
    /// The person's request to see their records was answered with the records of this
    /// gateway and of the gateways that answered the records query.
    DisclosureAnswered {
        /// Case.
        case: CaseId,
        /// The day it was answered.
        answered_on: Date,
        /// The other organisations whose records the answer includes.
        organisations: Vec<OrgId>,
    },
    /// This gateway gave its records of a case to the authority answering the person's request.
    RecordsGiven {
        /// Case.
        case: CaseId,
        /// The asking authority.
        to: OrgId,
    },
    /// The plan author decided the end of support (a support-end notice distributed from here),
    /// recorded even when no party is left to tell.
    SupportEnded {
        /// Case.
        case: CaseId,
        /// The last day of support.
        ended_on: Date,
        /// How it ended.
        outcome: SupportOutcome,
    },
    /// A support period of a plan authored here ran out with neither an extension nor an end of
    /// support: the author must decide (recorded once per case and period end).
    ReminderDue {
        /// Case.
        case: CaseId,
        /// The last day of the period.
        period_ended_on: Date,
    },
    /// A plan version this gateway authored became the current plan of its case (the newest
    /// version accepted; older ones never replace it).
    PlanCurrent {
        /// Case.
        case: CaseId,
        /// The version.
        version: u32,
    },
    /// A case's data was destroyed after its retention period (R8).
    Purged {
        /// Case.
        case: CaseId,
        /// Items destroyed.
        items: u64,
    },
    /// A peer presented an audit checkpoint contradicting the one witnessed before.
    PeerTrailContradicted {
        /// The peer.
        peer: OrgId,
        /// The record witnessed before.
        witnessed: u64,
        /// The record the new checkpoint covers.
        presented: u64,
        /// What happened to its trail ("went back", "was rewritten").
        what: String,
    },
    /// This gateway's store was restored from a backup (`tsunagi restore`): the first record
    /// after the backup's own. When it was restored despite problems, they are named here, so
    /// that the trail itself shows it (the backup's seal is not part of the trail).
    Restored {
        /// When the backup was taken (seconds since the epoch).
        taken: u64,
        /// The records the backup held.
        records: u64,
        /// Whether the backup had no seal.
        unsealed: bool,
        /// What did not hold in the backup (its seal, its audit trail), when it was restored
        /// despite that; empty otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        problems: Vec<String>,
    },
    /// A member of staff asked for an operation through a local client (the staff console),
    /// recorded right after the operation's own events so the trail says who did it.
    StaffAction {
        /// The staff member's account id at this agency (not a name).
        staff: String,
        /// The control operation (`send`, `consent_record`, …).
        op: String,
        /// The case, when the operation concerns one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        case: Option<CaseId>,
        /// The message or consent id the operation produced or acted on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    /// A delegation version (III.8) was recorded here or received from the authority.
    DelegationRecorded {
        /// Case.
        case: CaseId,
        /// Delegation id.
        delegation: String,
        /// Version.
        version: u32,
        /// The contracted organisation.
        contractor: OrgId,
        /// The document types it may author for the case.
        tasks: Vec<DocType>,
        /// First day in force.
        from: Date,
        /// Last day in force.
        to: Date,
        /// Active or revoked.
        status: DelegationStatus,
    },
    /// A move to a municipality no directory serves: the transfer notice waits for another
    /// channel.
    NoGateway {
        /// Case.
        case: CaseId,
        /// The new municipality.
        municipality: MunicipalityCode,
    },
    /// The transfer notice went to a destination without a gateway by another channel.
    ExportedOtherChannel {
        /// Case.
        case: CaseId,
        /// The destination (`lg:` the municipality's code).
        to: OrgId,
        /// Post, hand or fax.
        channel: OtherChannel,
    },
    /// The destination acknowledged a transfer notice (Form 7) it received: it takes the case
    /// over with its own consent and plan (the origin holds the signed receipt).
    TransferAcknowledged {
        /// Case.
        case: CaseId,
        /// The origin authority.
        from: OrgId,
        /// The transfer notice's message id.
        id: String,
    },
    /// The destination took the case over: its own consent and its own plan for the
    /// remaining period are recorded; from here it is the case's controller on this gateway.
    TakenOver {
        /// Case.
        case: CaseId,
        /// The origin authority.
        from: OrgId,
        /// The destination's own consent id.
        consent: String,
        /// The first day of the destination's plan.
        period_from: Date,
        /// The last day of the destination's plan (the origin plan's remaining period unless
        /// the destination chose another).
        period_to: Date,
    },
    /// The origin's part ended with a transfer-out support end: it shares nothing more of the
    /// case but the support summary and answers to the destination's requests.
    TransferredOut {
        /// Case.
        case: CaseId,
        /// The destination authority.
        to: OrgId,
        /// The last day of the origin's support.
        ended_on: Date,
    },
    /// The destination asked the origin for information about past support.
    InformationRequested {
        /// Case.
        case: CaseId,
        /// The authority asked, or the one that asked (`received`).
        peer: OrgId,
        /// The request's id.
        request: String,
        /// The consent that covers it.
        consent: String,
        /// Whether this gateway received the request (the origin) or sent it (the destination).
        received: bool,
    },
    /// The origin answered a request for information.
    InformationAnswered {
        /// Case.
        case: CaseId,
        /// The authority that asked, or the one that answered (`received`).
        peer: OrgId,
        /// The request's id.
        request: String,
        /// Whether this gateway received the answer (the destination) or sent it (the origin).
        received: bool,
    },
}

impl AuditEvent {
    /// The case the event is about, if any.
    pub fn case(&self) -> Option<&CaseId> {
        use AuditEvent as E;
        match self {
            E::Queued { case, .. }
            | E::Redacted { case, .. }
            | E::Sent { case, .. }
            | E::RejectedByPeer { case, .. }
            | E::Expired { case, .. }
            | E::Cancelled { case, .. }
            | E::GateDenied { case, .. }
            | E::Received { case, .. }
            | E::ConsentRecorded { case, .. }
            | E::AwaitingConsent { case, .. }
            | E::Relocation { case, .. }
            | E::PlanCurrent { case, .. }
            | E::ResidenceReported { case, .. }
            | E::ReminderDue { case, .. }
            | E::SupportEnded { case, .. }
            | E::DisclosureRequested { case, .. }
            | E::DisclosureAnswered { case, .. }
            | E::RecordsGiven { case, .. }
            | E::Purged { case, .. }
            | E::DelegationRecorded { case, .. }
            | E::NoGateway { case, .. }
            | E::ExportedOtherChannel { case, .. }
            | E::TransferAcknowledged { case, .. }
            | E::TakenOver { case, .. }
            | E::TransferredOut { case, .. }
            | E::InformationRequested { case, .. }
            | E::InformationAnswered { case, .. } => Some(case),
            E::StaffAction { case, .. } => case.as_ref(),
            E::Rejected { .. } | E::PeerTrailContradicted { .. } | E::Restored { .. } => None,
        }
    }
}

/// A stored audit record: its place in the chain and its event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditRecord {
    /// Sequence number.
    pub seq: u64,
    /// When it was recorded (seconds since the epoch).
    pub time: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// How a package without a gateway reaches the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherChannel {
    /// By post (郵送).
    Post,
    /// Handed over (持参).
    Hand,
    /// By fax (FAX).
    Fax,
}

impl OtherChannel {
    /// The Japanese name staff read.
    pub fn ja(self) -> &'static str {
        match self {
            OtherChannel::Post => "郵送",
            OtherChannel::Hand => "持参",
            OtherChannel::Fax => "FAX",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_takeover_events_are_named_and_carry_no_personal_data() {
        let case: CaseId = "case-131059-2026-0007".parse().unwrap();
        let yokohama: OrgId = "lg:141003".parse().unwrap();
        for (event, name) in [
            (
                AuditEvent::TakenOver {
                    case: case.clone(),
                    from: "lg:131059".parse().unwrap(),
                    consent: "consent-141003-2027-0007".into(),
                    period_from: "2027-01-15".parse().unwrap(),
                    period_to: "2027-04-30".parse().unwrap(),
                },
                "taken_over",
            ),
            (
                AuditEvent::TransferredOut {
                    case: case.clone(),
                    to: yokohama.clone(),
                    ended_on: "2027-01-25".parse().unwrap(),
                },
                "transferred_out",
            ),
            (
                AuditEvent::InformationRequested {
                    case: case.clone(),
                    peer: yokohama.clone(),
                    request: "inquiry-141003-2027-0001".into(),
                    consent: "consent-141003-2027-0007".into(),
                    received: true,
                },
                "information_requested",
            ),
            (
                AuditEvent::InformationAnswered {
                    case: case.clone(),
                    peer: yokohama.clone(),
                    request: "inquiry-141003-2027-0001".into(),
                    received: false,
                },
                "information_answered",
            ),
            (
                AuditEvent::TransferAcknowledged {
                    case: case.clone(),
                    from: "lg:131059".parse().unwrap(),
                    id: "00".repeat(16),
                },
                "transfer_acknowledged",
            ),
        ] {
            let v = serde_json::to_value(&event).unwrap();
            assert_eq!(v["event"], name);
            assert_eq!(event.case(), Some(&case));
            assert_eq!(serde_json::from_value::<AuditEvent>(v).unwrap(), event);
        }
    }

    #[test]
    fn events_keep_the_stored_shape() {
        // The JSON that gateways have written all along reads back as the typed event.
        let stored = json!({"event": "queued", "id": "ab", "case": "case-131059-2026-0007",
            "to": "ot:npo-komorebi", "kind": "support_plan", "joint": true, "period_days": 181,
            "seq": 4, "time": 100, "prev": "00"});
        let r: AuditRecord = serde_json::from_value(stored).unwrap();
        assert_eq!(r.seq, 4);
        let AuditEvent::Queued { facts, kind, .. } = &r.event else {
            panic!("{r:?}")
        };
        assert_eq!(*kind, DocType::SupportPlan);
        assert_eq!(facts.joint, Some(true));
        assert_eq!(facts.period_days, Some(181));
        // And writes the same shape.
        let back = serde_json::to_value(&r.event).unwrap();
        assert_eq!(back["event"], "queued");
        assert_eq!(back["joint"], true);
        assert!(back.get("outcome").is_none());
        let denied = AuditEvent::GateDenied {
            case: "case-131059-2026-0007".parse().unwrap(),
            to: "ot:mpd".parse().unwrap(),
            kind: DocType::SupportPlan,
            purpose: Purpose::PlanImplementation,
            code: "police_refused_by_person".into(),
            rule: "R6".into(),
        };
        let v = serde_json::to_value(&denied).unwrap();
        assert_eq!(v["event"], "gate_denied");
        assert_eq!(v["purpose"], "plan_implementation");
        assert_eq!(serde_json::from_value::<AuditEvent>(v).unwrap(), denied);
        // A consent record written before staff pseudonyms existed still reads.
        let old = json!({"event": "consent_recorded", "case": "case-131059-2026-0007",
            "consent": "consent-131059-2026-0007", "version": 1, "status": "active"});
        let AuditEvent::ConsentRecorded { staff, .. } = serde_json::from_value(old).unwrap() else {
            panic!()
        };
        assert_eq!(staff, None);
    }

    #[test]
    fn the_course_events_keep_their_shape() {
        let due = AuditEvent::ReminderDue {
            case: "case-131059-2026-0009".parse().unwrap(),
            period_ended_on: "2026-10-31".parse().unwrap(),
        };
        let v = serde_json::to_value(&due).unwrap();
        assert_eq!(
            v,
            json!({"event": "reminder_due", "case": "case-131059-2026-0009", "period_ended_on": "2026-10-31"})
        );
        let answered = AuditEvent::DisclosureAnswered {
            case: "case-131059-2026-0007".parse().unwrap(),
            answered_on: "2026-12-04".parse().unwrap(),
            organisations: vec!["mi:1310000017".parse().unwrap()],
        };
        let v = serde_json::to_value(&answered).unwrap();
        assert_eq!(v["event"], "disclosure_answered");
        assert_eq!(v["organisations"], json!(["mi:1310000017"]));
        assert_eq!(serde_json::from_value::<AuditEvent>(v).unwrap(), answered);
        // Facts of a plan and of a meeting ride on `queued`.
        let queued = json!({"event": "queued", "id": "ab", "case": "case-131059-2026-0007",
            "to": "ot:npo-komorebi", "kind": "meeting_record", "meeting_on": "2027-01-05",
            "extension_to": "2027-05-31"});
        let AuditEvent::Queued { facts, .. } = serde_json::from_value(queued).unwrap() else {
            panic!()
        };
        assert_eq!(
            facts.extension_to.map(|d| d.to_string()).as_deref(),
            Some("2027-05-31")
        );
    }
}
