//! Application error codes of `tsunagi/1`, carried by QUIC CONNECTION_CLOSE (application),
//! RESET_STREAM and STOP_SENDING frames.

use quinn::VarInt;

/// Connection close: the gateway is shutting down (transient for the peer).
pub(crate) const SHUTDOWN: VarInt = VarInt::from_u32(0);
/// Connection close: the peer's certificate is no longer accepted (trust reloaded: revoked,
/// or no longer issued by the trusted CA). Not transient.
pub(crate) const CERT_REFUSED: VarInt = VarInt::from_u32(1);
/// Connection close: the peer's certificate names no tsunagi org. Not transient.
pub(crate) const NO_IDENTITY: VarInt = VarInt::from_u32(2);
/// Connection close: the server's certificate names another org than expected.
pub(crate) const PEER_MISMATCH: VarInt = VarInt::from_u32(3);
/// Connection close: the peer's org has [`super::TransportConfig::per_peer_connections`]
/// connections open to us already (transient: one of them closes, or idles out).
pub(crate) const TOO_MANY_CONNECTIONS: VarInt = VarInt::from_u32(5);
/// Connection close: the peer did not negotiate ALPN `tsunagi/1`. Not transient.
pub(crate) const BAD_ALPN: VarInt = VarInt::from_u32(4);

/// Stream stop: the message is over the receiver's size limit; a reply follows.
pub(crate) const TOO_LARGE: VarInt = VarInt::from_u32(16);
/// Stream reset: the receiving handler failed (panicked) before replying.
pub(crate) const HANDLER_FAILED: VarInt = VarInt::from_u32(17);
/// Stream reset: the sender gave up (cancelled, or its task ended) before finishing.
pub(crate) const ABANDONED: VarInt = VarInt::from_u32(18);

/// Whether a connection close code means the peer refused our identity for good.
pub(crate) fn is_refusal(code: VarInt) -> bool {
    code == CERT_REFUSED || code == NO_IDENTITY || code == BAD_ALPN
}

/// A readable name for a connection close code.
pub(crate) fn close_name(code: VarInt) -> String {
    match code {
        SHUTDOWN => "shutting down".to_owned(),
        CERT_REFUSED => "certificate refused".to_owned(),
        NO_IDENTITY => "no org in the certificate".to_owned(),
        PEER_MISMATCH => "unexpected peer".to_owned(),
        BAD_ALPN => "wrong application protocol".to_owned(),
        TOO_MANY_CONNECTIONS => "too many connections from this org".to_owned(),
        other => format!("code {other}"),
    }
}

/// A readable description of a stream reset or stop code.
pub(crate) fn stream_name(code: VarInt) -> &'static str {
    match code {
        TOO_LARGE => "the message is over the peer's size limit",
        HANDLER_FAILED => "the peer's handler failed before replying",
        ABANDONED => "the peer abandoned the stream",
        _ => "the peer abandoned the stream (unknown code)",
    }
}
