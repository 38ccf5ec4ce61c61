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
        channel: crate::engine::OtherChannel,
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
            | E::Purged { case, .. }
            | E::DelegationRecorded { case, .. }
            | E::NoGateway { case, .. }
            | E::ExportedOtherChannel { case, .. } => Some(case),
            E::Rejected { .. } | E::PeerTrailContradicted { .. } => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    }
}
