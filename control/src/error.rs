//! Typed errors of the control socket: what kind of failure an answer is, and its one-line
//! message for staff.
//!
//! The gateway answers `{"ok":false,"kind":"refused","error":"refused: …"}`; the kind decides
//! what a client does (a folder adapter leaves files in `OUT/` when the gateway is unreachable but
//! moves them to `FAILED/` when it refused them; the HTTP API answers 502 or 422).

use serde::{Deserialize, Serialize};

/// What kind of failure a control answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// It conflicts with what is recorded (a consent version that is not newer, already
    /// withdrawn, a reused `client_ref`).
    Conflict,
    /// The running gateway does not know the operation (it is older than the client).
    Unsupported,
}

/// A failed control call: its kind and the gateway's message (one line, for staff).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

impl ControlError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ControlError {
        ControlError {
            kind,
            message: message.into(),
        }
    }

    /// The input was wrong.
    pub fn invalid(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::Invalid, message)
    }

    /// Nothing of that id is here.
    pub fn not_found(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::NotFound, message)
    }

    /// Whether trying again later may succeed without anyone changing the input.
    pub fn is_temporary(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable | ErrorKind::Unavailable)
    }
}

impl ErrorKind {
    /// The kind of an answer that carries no `kind` (a gateway older than this crate), read from
    /// the wording of its message; also how the gateway sorts its own free-text refusals of
    /// invalid input into not-found and conflict.
    pub fn of_message(m: &str) -> ErrorKind {
        if m.contains("nothing was acknowledged") || m.contains("is in use by another process") {
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
            || m.contains("cannot be cancelled")
            || m.contains("is not newer than the recorded")
            || m.starts_with(REUSED)
        {
            ErrorKind::Conflict
        } else {
            ErrorKind::Invalid
        }
    }
}

/// The start of the refusal of a `client_ref` reused for another request.
pub const REUSED: &str = "this client_ref was already used for another request";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_messages_without_a_kind() {
        let k = ErrorKind::of_message;
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
            k("this client_ref was already used for another request: the earlier one was …"),
            ErrorKind::Conflict
        );
    }

    #[test]
    fn kinds_travel_as_snake_case() {
        assert_eq!(
            serde_json::to_value(ErrorKind::NotFound).unwrap(),
            serde_json::json!("not_found")
        );
        assert!(ControlError::new(ErrorKind::Unreachable, "x").is_temporary());
        assert!(!ControlError::invalid("x").is_temporary());
    }
}
