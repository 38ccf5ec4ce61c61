//! The control-socket client the adapters share.
//!
//! [`GatewayClient`] wraps [`tsunagi_control::call`]. The gateway's errors come typed
//! ([`ErrorKind`]), which decides what an adapter does: a folder adapter leaves files in `OUT/`
//! when the gateway is unreachable but moves them to `FAILED/` when the gateway refused them;
//! the HTTP API answers 502 or 422.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Value};
use tsunagi_control::OutboxEntry;
pub use tsunagi_control::{ControlError as CallError, ErrorKind};
use tsunagi_protocol::{OrgId, Purpose};

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
        tsunagi_control::call(&self.socket, &request).await
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
