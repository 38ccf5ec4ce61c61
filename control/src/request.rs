//! The requests a client sends on the control socket, one JSON line each (`{"op": …}`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsunagi_protocol::{CaseId, OrgId, Purpose};

/// One control request; `op` names the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Queue a document for `to`: a form (signed here as author) or a signed bundle (hex).
    Send {
        /// The recipient.
        to: OrgId,
        /// Why it is sent.
        purpose: Purpose,
        #[serde(default)]
        /// A form (JSON) this gateway signs as its author.
        form: Option<Value>,
        #[serde(default)]
        /// A signed document bundle to forward, hex.
        bundle_hex: Option<String>,
        #[serde(default)]
        /// An idempotency key: a repeat with the same request answers the entry queued first.
        client_ref: Option<String>,
    },
    /// List the outbox, oldest first: every entry, or those of one case, or only the newest.
    OutboxList {
        #[serde(default)]
        /// Only the entries of this case.
        case: Option<CaseId>,
        #[serde(default)]
        /// Only the newest this many (still oldest first).
        limit: Option<usize>,
    },
    /// One outbox entry.
    OutboxShow {
        /// The message id (32 hex digits), or the consent id for `consent_withdraw`.
        id: String,
    },
    /// Wait until an outbox entry is final, or the timeout passes.
    OutboxWait {
        /// The message id (32 hex digits), or the consent id for `consent_withdraw`.
        id: String,
        #[serde(default = "default_wait_ms")]
        /// How long to wait, in milliseconds (default one minute).
        timeout_ms: u64,
    },
    /// Cancel an outbox entry that is not yet sent (waiting for consent, queued, or waiting to
    /// retry); refused for a final entry and one being sent right now.
    OutboxCancel {
        /// The message id (32 hex digits).
        id: String,
    },
    /// Every case this gateway sent or received material of, with how many messages went each
    /// way and when the last one did.
    CaseList,
    /// List the inbox, oldest first: every entry, or those of one case, or only the newest.
    InboxList {
        #[serde(default)]
        /// Only the entries of this case.
        case: Option<CaseId>,
        #[serde(default)]
        /// Only the newest this many (still oldest first).
        limit: Option<usize>,
    },
    /// One inbox entry with its document.
    InboxShow {
        /// The message id (32 hex digits), or the consent id for `consent_withdraw`.
        id: String,
    },
    /// The signed document bundle of a received message.
    InboxBundle {
        /// The message id (32 hex digits), or the consent id for `consent_withdraw`.
        id: String,
    },
    /// Record a consent version.
    ConsentRecord {
        /// The consent record (JSON).
        record: Value,
    },
    /// Withdraw a consent.
    ConsentWithdraw {
        /// The message id (32 hex digits), or the consent id for `consent_withdraw`.
        id: String,
    },
    /// The audit records.
    Audit,
    /// Verify the audit chain (and, with `peers`, the witnesses).
    AuditVerify {
        #[serde(default)]
        /// Also ask every directory member for the checkpoint of ours it witnessed.
        peers: bool,
    },
    /// The audit records of one case (as an HTML page with `html`).
    AuditSubject {
        /// The case pseudonym.
        case: String,
        #[serde(default)]
        /// Answer the printable HTML page instead of the records.
        html: bool,
    },
    /// Report a change of residence (may draft a transfer notice).
    ResidenceChange {
        /// The report (JSON).
        report: Value,
    },
    /// Sign once and send to every party of the case (plan revisions, meeting records,
    /// readmission and support-end notices): a form or a signed bundle (hex).
    Distribute {
        #[serde(default)]
        /// A form (JSON) this gateway signs as its author.
        form: Option<Value>,
        #[serde(default)]
        /// A signed document bundle, hex.
        bundle_hex: Option<String>,
    },
    /// The current plan of a case this gateway authors (JSON), to revise it (e.g. to extend
    /// its support period).
    PlanCurrent {
        /// The case pseudonym.
        case: String,
    },
    /// Support periods that ran out with neither an extension nor an end of support.
    Reminders,
    /// The person asked to see their records (R9): note when the request was received.
    #[serde(rename = "disclosure_request")]
    DisclosureAsked {
        /// The case pseudonym.
        case: String,
        /// The day the request was received.
        received_on: tsunagi_protocol::Date,
    },
    /// Answer the person's request: the page, with the records of every gateway that keeps some.
    DisclosureAnswer {
        /// The case pseudonym.
        case: String,
    },
    /// Record a delegation (III.8) as the case's controller and send it to the contractor; a new
    /// version with `"status":"revoked"` ends it.
    DelegationRecord {
        /// The delegation record (JSON).
        record: Value,
    },
    /// The newest version of each delegation of a case.
    Delegations {
        /// The case pseudonym.
        case: String,
    },
    /// The printable Form 7 package of a move no directory serves, for another channel.
    TransferExport {
        /// The case pseudonym.
        case: String,
        /// How it is carried: `post`, `hand` or `fax`.
        channel: String,
    },
    /// After a move, the destination takes the case of a received transfer notice (Form 7)
    /// over: records its own consent and signs its own plan (support period by default the
    /// notice's remaining period).
    TakeOver {
        /// The inbox message id of the transfer notice.
        transfer: String,
        /// The destination's own consent record (JSON; this gateway its controller).
        consent: Value,
        /// The destination's plan (JSON); `support_period` may be left out.
        plan: Value,
    },
    /// The destination asks the origin for information about past support, under its own
    /// consent.
    InformationRequest {
        /// The request (JSON, `document_type` `information_request`).
        form: Value,
    },
    /// The origin answers a received information request.
    InformationAnswer {
        /// The inbox message id of the request.
        request: String,
        /// The answer (JSON, `document_type` `information_answer`; `to`, `request_id` and
        /// `request_digest` are filled in from the request).
        form: Value,
    },
    /// The consents of a case this gateway holds, one per controller.
    Consents {
        /// The case pseudonym.
        case: String,
    },
    /// This gateway's org and the members of its verified directory (org and name), for
    /// clients that show organisation names.
    Members,
    /// Counters of the gateway.
    Stats,
    /// Delete what is due for deletion.
    Purge,
    /// Org, listen address, flush count, readiness and every expiry.
    Status,
    /// Re-read the CRL, the directory and the gateway's own credentials.
    Reload,
    /// Write an online backup to `out`.
    Backup {
        /// The backup file to write (absolute path).
        out: std::path::PathBuf,
        #[serde(default)]
        /// Also put the master key into the backup.
        with_master_key: bool,
    },
}

/// The default `timeout_ms` of `outbox_wait`: one minute.
fn default_wait_ms() -> u64 {
    60_000
}

/// Whether `s` may be recorded as a staff id (an account id, never a name or free text): 1 to 64
/// ASCII letters, digits, `.`, `_` or `-`. A request may carry one beside `op` (`"staff"`): the
/// member of staff a local client (the staff console) acts for.
pub fn valid_staff_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
