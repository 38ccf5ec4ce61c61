//! The outbox and inbox entries the control socket lists, and message ids as staff type them.

use serde::{Deserialize, Serialize};
use tsunagi_protocol::{CaseId, DocType, OrgId, Purpose};

/// Where an outbox entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    /// Waiting for its first attempt.
    Queued,
    /// Failed to reach the peer; waiting for the next attempt.
    RetryWait,
    /// The recipient's signed receipt accepted it.
    Delivered,
    /// The recipient's signed receipt refused it; never retried.
    Rejected,
    /// Not delivered before expiry; an undelivered report was written.
    Expired,
    /// Stopped before sending (consent withdrawn, or cancelled on request); never delivered.
    Cancelled,
    /// Drafted, but the consent does not cover it yet (a transfer notice waiting for the
    /// person's consent to the transfer); goes when a consent version that covers it arrives.
    AwaitingConsent,
}

impl OutState {
    /// Whether the entry will never be sent again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OutState::Delivered | OutState::Rejected | OutState::Expired | OutState::Cancelled
        )
    }
}

/// An outbox entry (listing metadata; the sealed envelope is stored beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The envelope's msgId, hex.
    pub id: String,
    /// State.
    pub state: OutState,
    /// Recipient.
    pub to: OrgId,
    /// Document type.
    pub kind: DocType,
    /// Purpose.
    pub purpose: Purpose,
    /// Case pseudonym.
    pub case: CaseId,
    /// Redaction profile applied.
    pub profile: String,
    /// Elements withheld from this recipient.
    pub withheld: Vec<String>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix seconds).
    pub next_attempt: u64,
    /// Why the last attempt failed, or why it was rejected or cancelled.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created: u64,
    /// When it expires.
    pub expires: u64,
    /// When the receipt came back.
    pub done_at: Option<u64>,
}

/// An inbox entry (listing metadata; the sealed envelope is stored beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// msgId, hex.
    pub id: String,
    /// Sender (or this gateway, for a local report).
    pub from: OrgId,
    /// Document type (`None` for a local undelivered report).
    pub kind: Option<DocType>,
    /// Purpose.
    pub purpose: Option<Purpose>,
    /// Case pseudonym.
    pub case: CaseId,
    /// When it arrived.
    pub received_at: u64,
    /// Elements disclosed to us.
    pub disclosed: Vec<String>,
    /// Elements withheld from us.
    pub withheld: Vec<String>,
    /// For a local report: what happened.
    pub report: Option<String>,
}

/// Parses a 32-character hex message id.
pub fn parse_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
