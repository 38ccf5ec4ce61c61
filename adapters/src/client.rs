//! The control-socket client the adapters share.
//!
//! [`GatewayClient`] wraps [`tsunagi_gateway::control::call`] and sorts the gateway's one-line
//! errors into [`ErrorKind`]s, which decide what an adapter does: a folder adapter leaves files
//! in `OUT/` when the gateway is unreachable but moves them to `FAILED/` when the gateway refused
//! them; the HTTP API answers 502 or 422.
//!
//! The control protocol is line-based JSON with string errors, so the sorting reads the error's
//! wording; the phrases it looks for are the gateway's own (see `control.rs` and `engine.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Value};
use tsunagi_gateway::engine::OutboxEntry;
use tsunagi_protocol::{OrgId, Purpose};

/// What kind of failure a gateway error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The control socket did not answer: the gateway is not running (or not ours). Retry later.
    Unreachable,
    /// The gateway could not store it right now (disk full, data directory busy); nothing was
    /// acknowledged. Retry later.
    Unavailable,
    /// The input is wrong (a bad form, an unknown recipient, a bad document).
    Invalid,
    /// The consent gate or the policy table refused.
    Refused,
    /// No such message, document or consent.
    NotFound,
    /// It conflicts with what is recorded (a consent version that is not newer, already withdrawn).
    Conflict,
    /// The running gateway does not know the operation (it is older than this adapter).
    Unsupported,
}

/// A failed control call: its kind and the gateway's message (one line, for staff).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The gateway's message.
    pub message: String,
}

impl CallError {
    /// Sorts a gateway error line into its kind.
    pub fn classify(message: String) -> CallError {
        let m = message.as_str();
        let kind = if m.starts_with("cannot reach the gateway's control socket")
            || m.starts_with("refusing the control socket")
            || m.starts_with("control socket:")
            || m.starts_with("the gateway closed the control connection")
        {
            ErrorKind::Unreachable
        } else if m.contains("nothing was acknowledged")
            || m.contains("is in use by another process")
        {
            ErrorKind::Unavailable
        } else if m.starts_with("bad request: unknown variant") {
            ErrorKind::Unsupported
        } else if m.starts_with("refused: ") {
            ErrorKind::Refused
        } else if m.starts_with("no outbox entry")
            || m.starts_with("no inbox entry")
            || m.starts_with("no received document")
            || (m.starts_with("no consent ") && m.contains("is recorded here"))
        {
            ErrorKind::NotFound
        } else if m.contains("is already withdrawn")
            || m.contains("is not newer than the recorded")
            || m.starts_with(tsunagi_gateway::idempotency::REUSED)
        {
            ErrorKind::Conflict
        } else {
            ErrorKind::Invalid
        };
        CallError { kind, message }
    }

    /// Whether trying again later may succeed without anyone changing the input.
    pub fn is_temporary(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable | ErrorKind::Unavailable)
    }
}

/// What to send: a form the gateway signs as author, or a signed document bundle to forward.
#[derive(Debug, Clone)]
pub enum SendContent {
    /// A form (JSON).
    Form(Value),
    /// A signed document bundle (bytes).
    Bundle(Vec<u8>),
}

/// A client of one gateway's control socket.
#[derive(Debug)]
pub struct GatewayClient {
    socket: PathBuf,
    /// Cleared when the gateway turned out not to accept `client_ref` (an older gateway).
    client_ref_supported: AtomicBool,
}

impl GatewayClient {
    /// A client of the control socket at `socket` (`data_dir/control.sock` of the gateway).
    pub fn new(socket: impl Into<PathBuf>) -> GatewayClient {
        GatewayClient {
            socket: socket.into(),
            client_ref_supported: AtomicBool::new(true),
        }
    }

    /// The control socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and returns its result.
    pub async fn call(&self, request: Value) -> Result<Value, CallError> {
        tsunagi_gateway::control::call(&self.socket, request)
            .await
            .map_err(CallError::classify)
    }

    /// Hands a document to the gateway for `to`; returns the queued outbox entry.
    ///
    /// `client_ref` is an idempotency key: a gateway that has seen it returns the entry it
    /// queued then instead of queueing the document again. A gateway too old to know the field
    /// answers `unknown field client_ref`; the document is then sent without it (with a warning,
    /// once), which loses only the protection against a crash between send and bookkeeping.
    pub async fn send(
        &self,
        to: &OrgId,
        purpose: Purpose,
        content: SendContent,
        client_ref: Option<&str>,
    ) -> Result<OutboxEntry, CallError> {
        let mut request = json!({"op": "send", "to": to.as_str(), "purpose": purpose.as_str()});
        match content {
            SendContent::Form(form) => request["form"] = form,
            SendContent::Bundle(bytes) => request["bundle_hex"] = hex::encode(bytes).into(),
        }
        let with_ref = client_ref.filter(|_| self.client_ref_supported.load(Ordering::Relaxed));
        let result = match with_ref {
            Some(r) => {
                let mut req = request.clone();
                req["client_ref"] = r.into();
                match self.call(req).await {
                    Err(e) if e.message.contains("unknown field `client_ref`") => {
                        self.client_ref_supported.store(false, Ordering::Relaxed);
                        tracing::warn!(
                            "the gateway does not accept client_ref (it is older than this adapter); \
                             sending without an idempotency key — update the gateway"
                        );
                        self.call(request).await
                    }
                    other => other,
                }
            }
            None => self.call(request).await,
        }?;
        serde_json::from_value(result).map_err(|e| CallError {
            kind: ErrorKind::Invalid,
            message: format!(
                "the gateway answered with an outbox entry this adapter cannot read: {e}"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_gateways_errors() {
        let k = |m: &str| CallError::classify(m.into()).kind;
        assert_eq!(
            k("cannot reach the gateway's control socket /x: No such file or directory (os error 2); is …"),
            ErrorKind::Unreachable
        );
        assert_eq!(
            k("refused: the person refused police involvement (R6)"),
            ErrorKind::Refused
        );
        assert_eq!(
            k("no outbox entry 00000000000000000000000000000000"),
            ErrorKind::NotFound
        );
        assert_eq!(k("no consent \"x\" is recorded here"), ErrorKind::NotFound);
        assert_eq!(
            k("consent \"x\" is already withdrawn (version 2)"),
            ErrorKind::Conflict
        );
        assert_eq!(
            k("bad request: unknown variant `residence_change`, expected one of `send`"),
            ErrorKind::Unsupported
        );
        assert_eq!(
            k("cannot write to the data directory /d: No space; free space, then retry — nothing was acknowledged"),
            ErrorKind::Unavailable
        );
        assert_eq!(
            k("form: items.F1.staff: 3 is not a rating (0, 1, 2, 9)"),
            ErrorKind::Invalid
        );
        assert_eq!(
            k("refusing the control socket /d/control.sock: it is owned by uid 65534, not by this account (uid 0), so it is not this account's gateway; nothing was sent. …"),
            ErrorKind::Unreachable
        );
        assert_eq!(
            k("this client_ref was already used for another request: the earlier one was opinion_letter to lg:131059 for plan_creation (queued as 00), this one is …"),
            ErrorKind::Conflict
        );
    }
}
