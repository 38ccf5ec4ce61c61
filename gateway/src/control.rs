//! The local control channel: how `tsunagi send`, `outbox`, `inbox` and `consent` talk to a
//! running gateway.
//!
//! It is a Unix domain socket, `data_dir/control.sock`, created with mode 0600 inside the data
//! directory (0700, refused at start when another account owns it or may write to it): only the
//! account that runs the gateway can connect, so no token is needed and nothing listens on the
//! network. Both ends check the other's uid with `SO_PEERCRED`: the gateway drops connections
//! from other accounts, and [`call`] sends nothing to a socket that another account owns or
//! serves (a planted socket would otherwise receive the request, forms and all). Each connection carries one request and one response, each
//! a single line of JSON:
//!
//! ```text
//! {"op":"send","to":"lg:131059","purpose":"plan_creation","form":{…}}        → {"ok":true,"result":{outbox entry}}
//! {"op":"send","to":"…","purpose":"…","bundle_hex":"…"}                    (forward a signed document)
//!   optional "client_ref":"…": an idempotency key; a repeated key with the same request returns
//!   the entry queued first, with another request an error naming both
//! {"op":"outbox_list"} {"op":"outbox_show","id":"…"}
//! {"op":"outbox_wait","id":"…","timeout_ms":60000} → {"final":true|false,"entry":{outbox entry}}
//!   (answers when the entry is delivered, rejected, expired or cancelled, or at the timeout)
//! {"op":"inbox_list"}  {"op":"inbox_show","id":"…"}  {"op":"inbox_bundle","id":"…"} → {"bundle_hex":"…"}
//! {"op":"consent_record","record":{…}} {"op":"consent_withdraw","id":"…"}
//! {"op":"delegation_record","record":{…}} → {outbox entry to the contractor} (III.8; a new
//!   version with "status":"revoked" ends it) {"op":"delegations","case":"…"} → [newest versions]
//! {"op":"transfer_export","case":"…","channel":"post|hand|fax"} → {"html":"…"} the Form 7
//!   package of a move no directory serves (residence_change answered "no_gateway"), printable
//! {"op":"residence_change","report":{…}} → {"destination":…,"transfer":{outbox entry}|null}
//! {"op":"audit"} {"op":"audit_verify","peers":false} {"op":"audit_subject","case":"…","html":false}
//!   ("peers": true also asks every directory member for the checkpoint of ours it witnessed)
//! {"op":"stats"} {"op":"purge"} {"op":"status"}
//! {"op":"reload"}  re-read the CRL, the directory and the gateway's own (rotated) credentials
//! {"op":"backup","out":"/abs/file","with_master_key":false} → {backup header} (see crate::backup)
//! errors: {"ok":false,"error":"one line saying what was wrong"}
//! ```
//!
//! The local HTTP API of the adapters is built on the same operations.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tsunagi_protocol::{OrgId, Purpose};

use crate::engine::{parse_id, Content, Gateway};

/// Largest request accepted on the control socket.
const MAX_REQUEST: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Send {
        to: OrgId,
        purpose: Purpose,
        #[serde(default)]
        form: Option<Value>,
        #[serde(default)]
        bundle_hex: Option<String>,
        #[serde(default)]
        client_ref: Option<String>,
    },
    OutboxList,
    OutboxShow {
        id: String,
    },
    OutboxWait {
        id: String,
        #[serde(default = "default_wait_ms")]
        timeout_ms: u64,
    },
    InboxList,
    InboxShow {
        id: String,
    },
    InboxBundle {
        id: String,
    },
    ConsentRecord {
        record: Value,
    },
    ConsentWithdraw {
        id: String,
    },
    Audit,
    AuditVerify {
        #[serde(default)]
        peers: bool,
    },
    AuditSubject {
        case: String,
        #[serde(default)]
        html: bool,
    },
    ResidenceChange {
        report: Value,
    },
    Stats,
    Purge,
    Status,
    Reload,
    Backup {
        out: std::path::PathBuf,
        #[serde(default)]
        with_master_key: bool,
    },
    DelegationRecord {
        record: Value,
    },
    Delegations {
        case: String,
    },
    TransferExport {
        case: String,
        channel: crate::engine::OtherChannel,
    },
}

/// Serves the control socket until the process ends.
pub async fn serve(gw: Gateway, path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let euid = tsunagi_certs::local::effective_uid()?;
    loop {
        let (stream, _) = listener.accept().await?;
        match stream.peer_cred() {
            Ok(c) if c.uid() == euid => {}
            Ok(c) => {
                tracing::warn!(
                    peer_uid = c.uid(),
                    "refused a control connection from another account"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!("refused a control connection whose account is unknown: {e}");
                continue;
            }
        }
        let gw = gw.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(gw, stream).await {
                tracing::debug!("control connection ended: {e}");
            }
        });
    }
}

async fn handle(gw: Gateway, stream: UnixStream) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let n = BufReader::new(r)
        .take(MAX_REQUEST as u64)
        .read_line(&mut line)
        .await?;
    let response = if n == 0 {
        return Ok(());
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => match dispatch(&gw, req).await {
                Ok(result) => json!({"ok": true, "result": result}),
                Err(e) => json!({"ok": false, "error": e}),
            },
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        }
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

fn id_arg(id: &str) -> Result<[u8; 16], String> {
    parse_id(id).ok_or_else(|| format!("{id:?} is not a message id (32 hex digits)"))
}

pub(crate) fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("bundle_hex has an odd number of digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| "bundle_hex is not hex".to_string())
        })
        .collect()
}

async fn dispatch(gw: &Gateway, req: Request) -> Result<Value, String> {
    let e = |x: crate::engine::GatewayError| x.to_string();
    match req {
        Request::Send {
            to,
            purpose,
            form,
            bundle_hex,
            client_ref,
        } => {
            let content = match (form, bundle_hex) {
                (Some(f), None) => Content::Form(f),
                (None, Some(h)) => Content::Bundle(unhex(&h)?),
                _ => return Err("send needs exactly one of form or bundle_hex".into()),
            };
            Ok(to_json(
                &gw.submit_idempotent(&to, purpose, content, client_ref.as_deref())
                    .await
                    .map_err(e)?,
            ))
        }
        Request::OutboxList => Ok(to_json(&gw.outbox().map_err(|x| x.to_string())?)),
        Request::OutboxShow { id } => gw
            .outbox_entry(&id_arg(&id)?)
            .map_err(|x| x.to_string())?
            .map(|v| to_json(&v))
            .ok_or_else(|| format!("no outbox entry {id}")),
        Request::OutboxWait { id, timeout_ms } => outbox_wait(gw, &id, timeout_ms).await,
        Request::InboxList => Ok(to_json(&gw.inbox().map_err(|x| x.to_string())?)),
        Request::InboxShow { id } => gw
            .inbox_show(&id_arg(&id)?)
            .map_err(e)?
            .ok_or_else(|| format!("no inbox entry {id}")),
        Request::InboxBundle { id } => gw
            .inbox_bundle(&id_arg(&id)?)
            .map_err(e)?
            .map(
                |b| json!({"bundle_hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>()}),
            )
            .ok_or_else(|| format!("no received document {id}")),
        Request::ConsentRecord { record } => {
            Ok(to_json(&gw.record_consent(record).await.map_err(e)?))
        }
        Request::ConsentWithdraw { id } => Ok(to_json(&gw.withdraw_consent(&id).await.map_err(e)?)),
        Request::DelegationRecord { record } => {
            Ok(to_json(&gw.record_delegation(record).await.map_err(e)?))
        }
        Request::TransferExport { case, channel } => {
            let case = case.parse().map_err(|m| format!("case: {case:?} {m}"))?;
            Ok(json!({"html": gw.export_transfer(&case, channel).await.map_err(e)?}))
        }
        Request::Delegations { case } => {
            let case = case.parse().map_err(|m| format!("case: {case:?} {m}"))?;
            Ok(to_json(&gw.delegations(&case).map_err(e)?))
        }
        Request::Audit => Ok(Value::Array(gw.audit_records().map_err(|x| x.to_string())?)),
        Request::AuditVerify { peers } => {
            gw.audit_checkpoint().await.map_err(|x| x.to_string())?;
            let mut report = to_json(&gw.audit_verify().map_err(|x| x.to_string())?);
            if peers {
                let w = gw.audit_verify_peers().await.map_err(e)?;
                if let Some(p) = report["problems"].as_array_mut() {
                    p.extend(w.problems.iter().map(|x| Value::from(x.as_str())));
                }
                report["witnesses"] = to_json(&w.peers);
            }
            Ok(report)
        }
        Request::AuditSubject { case, html } => {
            let _: tsunagi_protocol::CaseId = case
                .parse()
                .map_err(|e: String| format!("case: {case:?} {e}"))?;
            if html {
                Ok(Value::String(
                    gw.audit_subject_html(&case).map_err(|x| x.to_string())?,
                ))
            } else {
                Ok(
                    json!({"case": case, "records": gw.audit_subject(&case).map_err(|x| x.to_string())?}),
                )
            }
        }
        Request::ResidenceChange { report } => gw.residence_change(report).await.map_err(e),
        Request::Stats => gw.stats().map_err(|x| x.to_string()),
        Request::Purge => Ok(to_json(&gw.purge_due().await.map_err(e)?)),
        Request::Reload => gw.reload().map(|()| Value::Null),
        Request::Backup {
            out,
            with_master_key,
        } => Ok(to_json(
            &crate::backup::backup_running(gw, out, with_master_key).await?,
        )),
        Request::Status => Ok(json!({
            "org": gw.org().as_str(),
            "listen": gw.local_addr().to_string(),
            "flushes": gw.flush_count(),
        })),
    }
}

fn default_wait_ms() -> u64 {
    60_000
}

/// Waits until outbox entry `id` reaches a final state (from [`Gateway::outcomes`]) or
/// `timeout_ms` passes; answers the entry either way.
async fn outbox_wait(gw: &Gateway, id: &str, timeout_ms: u64) -> Result<Value, String> {
    let key = id_arg(id)?;
    // Subscribe before reading, so that an outcome between the two is not missed.
    let mut outcomes = gw.outcomes();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        let entry = gw
            .outbox_entry(&key)
            .map_err(|x| x.to_string())?
            .ok_or_else(|| format!("no outbox entry {id}"))?;
        if entry.state.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(json!({"final": entry.state.is_final(), "entry": to_json(&entry)}));
        }
        loop {
            match tokio::time::timeout_at(deadline, outcomes.recv()).await {
                Ok(Ok(o)) if o.id != key => continue,
                // Ours, lagged behind (read the entry again), closed, or timed out.
                _ => break,
            }
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Sends one request to the gateway at `socket` and returns its result, or its error line.
///
/// Nothing is written unless the socket file belongs to this account and the process serving it
/// runs as this account (checked with `SO_PEERCRED` after connecting).
pub async fn call(socket: &Path, request: Value) -> Result<Value, String> {
    use std::os::unix::fs::MetadataExt;
    let euid = tsunagi_certs::local::effective_uid().map_err(|e| {
        format!("cannot tell which account this is (/proc/self: {e}); nothing was sent")
    })?;
    let refuse = |what: &str, uid: u32| {
        format!(
            "refusing the control socket {}: it is {what} uid {uid}, not by this account (uid {euid}), so it is not this account's gateway; nothing was sent. Run the command as the account that runs the gateway, and check the owner and mode of the data directory",
            socket.display()
        )
    };
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if meta.uid() != euid {
            return Err(refuse("owned by", meta.uid()));
        }
    }
    let mut stream = UnixStream::connect(socket).await.map_err(|err| {
        format!(
            "cannot reach the gateway's control socket {}: {err}; is `tsunagi gateway run` running with this configuration?",
            socket.display()
        )
    })?;
    let peer = stream.peer_cred().map_err(|e| {
        format!(
            "refusing the control socket {}: cannot tell which account serves it ({e}); nothing was sent",
            socket.display()
        )
    })?;
    if peer.uid() != euid {
        return Err(refuse("served by", peer.uid()));
    }
    let mut line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .await
        .map_err(|e| format!("control socket: {e}"))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .await
        .map_err(|e| format!("control socket: {e}"))?;
    let v: Value = serde_json::from_str(&reply)
        .map_err(|_| "the gateway closed the control connection without an answer".to_string())?;
    if v["ok"] == Value::Bool(true) {
        Ok(v["result"].clone())
    } else {
        Err(v["error"].as_str().unwrap_or("unknown error").to_owned())
    }
}
