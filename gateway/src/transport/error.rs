//! [`TransportError`]: what can go wrong sending or serving a message, and whether retrying later
//! can help ([`TransportError::is_transient`]).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::{ConnectionError, TransportErrorCode, VarInt};
use tsunagi_protocol::org::OrgId;

use super::codes;

/// Which side of a failed TLS handshake refused the other's certificate (or the handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    /// We refused the peer's certificate: our trust (CA, CRL) does not accept it.
    Us,
    /// The peer refused our certificate (a TLS 1.3 client learns this on its first read).
    Peer,
}

/// A transport failure.
///
/// [`TransportError::is_transient`] tells a sender whether to keep the message and retry later
/// (connection, timeout and stream failures) or to give up until someone acts (certificate
/// rejections, a peer that is not who the directory says, an over-size reply, configuration).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The UDP socket could not be bound.
    #[error("cannot bind the QUIC endpoint to {addr}: {cause}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        cause: String,
    },
    /// The connection could not be made or was lost (transient: retry later).
    #[error("cannot reach the gateway at {addr}: {cause}; it will be retried later")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// What happened.
        cause: String,
    },
    /// The TLS handshake failed: we refused the peer's certificate or it refused ours. Not
    /// transient: someone has to issue, renew or un-revoke a certificate or fix the trust.
    #[error("{}", tls_message(*.addr, *.refused_by, *.alert, .reason))]
    Tls {
        /// The peer's address.
        addr: SocketAddr,
        /// Who refused.
        refused_by: RefusedBy,
        /// The TLS alert carried by the QUIC close (e.g. 44 = certificate_revoked), if any.
        alert: Option<u8>,
        /// rustls's reason (ours, or the one the peer sent in its close frame).
        reason: String,
    },
    /// The peer's certificate is valid but names another organisation than the one we meant to
    /// reach: the directory entry (address) is wrong, or the address was reused.
    #[error(
        "the gateway at {addr} is not {expected}: its certificate names {found}; \
         check the directory entry for {expected}"
    )]
    PeerMismatch {
        /// The peer's address.
        addr: SocketAddr,
        /// The org we meant to reach.
        expected: OrgId,
        /// The org its certificate names (or why none could be read).
        found: String,
    },
    /// The peer's reply is longer than our `max_message_bytes`.
    #[error("the reply from the gateway at {addr} is longer than the limit of {limit} bytes")]
    TooLarge {
        /// The peer's address.
        addr: SocketAddr,
        /// Our limit ([`super::TransportConfig::max_message_bytes`]).
        limit: usize,
    },
    /// Connecting, or waiting for the peer, took too long (transient).
    #[error("{}", timeout_message(*.addr, .during, *.after))]
    Timeout {
        /// The peer's address.
        addr: SocketAddr,
        /// What we were doing, e.g. "connecting to".
        during: &'static str,
        /// The timeout that expired, when it was ours (None: the QUIC idle timeout).
        after: Option<Duration>,
    },
    /// The stream carrying the message failed after the connection was up (transient).
    #[error("exchange with the gateway at {addr} failed: {cause}; it will be retried later")]
    Stream {
        /// The peer's address.
        addr: SocketAddr,
        /// What happened.
        cause: String,
    },
    /// Our own TLS or QUIC configuration could not be built.
    #[error("transport configuration: {cause}")]
    Config {
        /// What is wrong.
        cause: String,
    },
    /// The local endpoint has been closed ([`super::Transport::close`]).
    #[error("the transport is closed")]
    Closed,
}

impl TransportError {
    /// Whether retrying later may succeed without anyone acting: connection, timeout and stream
    /// failures are transient; certificate rejections, [`TransportError::PeerMismatch`],
    /// [`TransportError::TooLarge`], configuration errors and a closed transport are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Connect { .. }
                | TransportError::Timeout { .. }
                | TransportError::Stream { .. }
        )
    }

    pub(crate) fn config(cause: impl fmt::Display) -> Self {
        TransportError::Config {
            cause: cause.to_string(),
        }
    }
}

/// The name of a TLS alert (RFC 8446 §6), for messages.
pub fn alert_name(alert: u8) -> &'static str {
    match alert {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown alert",
    }
}

/// What an alert means for the operator, from the point of view of `refused_by`'s certificate.
fn alert_hint(alert: u8, refused_by: RefusedBy) -> Option<&'static str> {
    Some(match (alert, refused_by) {
        (44, RefusedBy::Peer) => "our certificate is revoked in the peer's CRL; have the federation CA issue a new one",
        (44, RefusedBy::Us) => "its certificate is revoked in our CRL",
        (45, RefusedBy::Peer) => "our certificate has expired (or is not yet valid); renew it",
        (45, RefusedBy::Us) => "its certificate has expired or is not yet valid",
        (48, RefusedBy::Peer) => "the peer does not trust the CA that issued our certificate; are both gateways in the same federation?",
        (48, RefusedBy::Us) => "its certificate was not issued by our federation CA",
        (51, RefusedBy::Peer) => "the peer could not verify our certificate's signature with its CA (was it issued by another CA of the same name?)",
        (51, RefusedBy::Us) => "its certificate's signature does not verify with our CA (issued by another CA of the same name?)",
        (42 | 43 | 46, RefusedBy::Peer) => "the peer does not accept our certificate",
        (42 | 43 | 46, RefusedBy::Us) => "its certificate is not acceptable",
        (116, _) => "a client certificate is required",
        (120, _) => "the two sides do not speak the same application protocol (ALPN tsunagi/1)",
        (70, _) => "TLS 1.3 is required",
        _ => return None,
    })
}

fn tls_message(addr: SocketAddr, refused_by: RefusedBy, alert: Option<u8>, reason: &str) -> String {
    let mut out = match refused_by {
        RefusedBy::Peer => format!("the gateway at {addr} refused our TLS certificate"),
        RefusedBy::Us => format!("we refused the TLS certificate of the gateway at {addr}"),
    };
    if let Some(alert) = alert {
        out.push_str(&format!(" (TLS alert {}, {alert})", alert_name(alert)));
        if let Some(hint) = alert_hint(alert, refused_by) {
            out.push_str(": ");
            out.push_str(hint);
        }
    }
    if !reason.is_empty() {
        out.push_str(match refused_by {
            RefusedBy::Peer => "; it said: ",
            RefusedBy::Us => "; rustls: ",
        });
        out.push_str(reason);
    }
    out
}

fn timeout_message(addr: SocketAddr, during: &str, after: Option<Duration>) -> String {
    match after {
        Some(after) => format!(
            "timed out after {} ms {during} the gateway at {addr}; it will be retried later",
            after.as_millis()
        ),
        None => format!(
            "the gateway at {addr} stopped answering (QUIC idle timeout) {during} it; it will be retried later"
        ),
    }
}

/// Where in a request a connection error happened: decides between
/// [`TransportError::Connect`] and [`TransportError::Stream`] for non-TLS failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connect,
    Exchange,
}

fn crypto_alert(code: TransportErrorCode) -> Option<u8> {
    let v = u64::from(code);
    (0x100..=0x1ff).contains(&v).then(|| (v - 0x100) as u8)
}

/// Whether a lost connection may be replaced and the message sent again on a new one.
pub(crate) fn is_retryable_loss(e: &ConnectionError) -> bool {
    match e {
        ConnectionError::TransportError(t) => crypto_alert(t.code).is_none(),
        ConnectionError::ConnectionClosed(c) => crypto_alert(c.error_code).is_none(),
        ConnectionError::ApplicationClosed(c) => !codes::is_refusal(c.error_code),
        ConnectionError::Reset | ConnectionError::TimedOut => true,
        ConnectionError::VersionMismatch
        | ConnectionError::LocallyClosed
        | ConnectionError::CidsExhausted => false,
    }
}

/// Maps a QUIC connection error to a [`TransportError`]: TLS alerts (ours in
/// `ConnectionError::TransportError`, the peer's in `ConnectionError::ConnectionClosed`) and the
/// peer's refusal close codes become [`TransportError::Tls`].
pub(crate) fn from_connection_error(
    e: ConnectionError,
    addr: SocketAddr,
    phase: Phase,
) -> TransportError {
    let lost = |cause: String| match phase {
        Phase::Connect => TransportError::Connect { addr, cause },
        Phase::Exchange => TransportError::Stream {
            addr,
            cause: format!("the connection was lost: {cause}"),
        },
    };
    match e {
        ConnectionError::TransportError(t) => match crypto_alert(t.code) {
            Some(alert) => TransportError::Tls {
                addr,
                refused_by: RefusedBy::Us,
                alert: Some(alert),
                reason: t.reason,
            },
            None => lost(format!("QUIC error on our side: {t}")),
        },
        ConnectionError::ConnectionClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            match crypto_alert(c.error_code) {
                Some(alert) => TransportError::Tls {
                    addr,
                    refused_by: RefusedBy::Peer,
                    alert: Some(alert),
                    reason,
                },
                None => lost(format!("the peer aborted the connection: {c}")),
            }
        }
        ConnectionError::ApplicationClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            if codes::is_refusal(c.error_code) {
                TransportError::Tls {
                    addr,
                    refused_by: RefusedBy::Peer,
                    alert: None,
                    reason,
                }
            } else {
                lost(format!(
                    "the peer closed the connection ({}{}{reason})",
                    codes::close_name(c.error_code),
                    if reason.is_empty() { "" } else { ": " }
                ))
            }
        }
        ConnectionError::TimedOut => TransportError::Timeout {
            addr,
            during: match phase {
                Phase::Connect => "while connecting to",
                Phase::Exchange => "while waiting for",
            },
            after: None,
        },
        ConnectionError::Reset => lost("the peer reset the connection (did it restart?)".into()),
        ConnectionError::VersionMismatch => {
            lost("the peer speaks no QUIC version we support".into())
        }
        ConnectionError::CidsExhausted => lost("out of QUIC connection ids".into()),
        ConnectionError::LocallyClosed => TransportError::Closed,
    }
}

/// A readable name for an application error code on a stream reset or stop.
pub(crate) fn stream_code_message(code: VarInt) -> String {
    codes::stream_name(code).to_owned()
}
