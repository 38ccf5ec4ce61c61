//! The server side of the local control channel: how `tsunagi send`, `outbox`, `inbox` and
//! `consent` (and the adapters) talk to a running gateway.
//!
//! The requests, the entries, the typed errors and the client's [`call`] are in the
//! `tsunagi-control` crate, which documents the protocol; this module serves it. The socket is
//! `data_dir/control.sock`, created with mode 0600 inside the data directory (0700, refused at
//! start when another account owns it or may write to it). Connections from another account
//! (`SO_PEERCRED`) are dropped.
//!
//! A request may carry `"staff":"account-id"` beside `op`: the member of staff a local client
//! (the staff console) acts for. A successful operation that changes or discloses something is
//! then followed by a `staff_action` audit record naming them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tsunagi_control::{valid_staff_id, ControlError, ErrorKind, Request};

use crate::engine::{parse_id, Content, Gateway, GatewayError};

pub use tsunagi_control::call;

/// Largest request accepted on the control socket.
const MAX_REQUEST: usize = 16 * 1024 * 1024;

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
    if n == 0 {
        return Ok(());
    }
    let mut out = match parse(&line) {
        // A listing is written straight from its entries (see `listing`).
        Ok((Request::OutboxList { case, limit }, _)) => {
            listing(gw.outbox_where(|e| of_case(&case, &e.case), limit))
        }
        Ok((Request::InboxList { case, limit }, _)) => {
            listing(gw.inbox_where(|e| of_case(&case, &e.case), limit))
        }
        parsed => serde_json::to_vec(&tsunagi_control::response(match parsed {
            Ok((req, staff)) => {
                let op = op_name(&req);
                match dispatch(&gw, req, staff.as_deref()).await {
                    Ok(result) => record_staff(&gw, staff.as_deref(), op, &result)
                        .await
                        .map(|()| result),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }))
        .unwrap_or_default(),
    };
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Whether an entry of `case` is listed when a listing asked for `asked` (every case: `None`).
fn of_case(asked: &Option<tsunagi_protocol::CaseId>, case: &tsunagi_protocol::CaseId) -> bool {
    asked.as_ref().is_none_or(|a| a == case)
}

/// The response to a listing (`outbox_list`, `inbox_list`), serialized from the entries
/// themselves: the same JSON as [`tsunagi_control::response`] of their JSON values, without
/// building a JSON tree of every entry first (which took several times the memory of the
/// entries: 646 MiB to list 100,000 outbox entries).
fn listing<T: serde::Serialize>(entries: Result<Vec<T>, crate::store::StoreError>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Listed<'a, T> {
        ok: bool,
        result: &'a [T],
    }
    match entries {
        Ok(list) => serde_json::to_vec(&Listed {
            ok: true,
            result: &list,
        }),
        Err(e) => serde_json::to_vec(&tsunagi_control::response(Err(of_store(e)))),
    }
    .unwrap_or_default()
}

/// Reads one request line: the request, and the optional `staff` field beside `op`.
fn parse(line: &str) -> Result<(Request, Option<String>), ControlError> {
    let bad = |e: serde_json::Error| {
        let message = format!("bad request: {e}");
        let kind = if message.starts_with("bad request: unknown variant") {
            ErrorKind::Unsupported
        } else {
            ErrorKind::Invalid
        };
        ControlError::new(kind, message)
    };
    let mut v: Value = serde_json::from_str(line).map_err(bad)?;
    let staff = match v.as_object_mut().and_then(|m| m.remove("staff")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_staff_id(&s) => Some(s),
        Some(_) => return Err(ControlError::invalid(
            "bad request: staff must be an account id of 1 to 64 letters, digits, '.', '_' or '-'",
        )),
    };
    let req = serde_json::from_value(v).map_err(bad)?;
    Ok((req, staff))
}

/// The name of an operation that changes or discloses something (and is recorded with its
/// staff id), or `None` for one that only reads.
fn op_name(req: &Request) -> Option<&'static str> {
    Some(match req {
        Request::Send { .. } => "send",
        Request::Distribute { .. } => "distribute",
        Request::ConsentRecord { .. } => "consent_record",
        Request::ConsentWithdraw { .. } => "consent_withdraw",
        Request::OutboxCancel { .. } => "outbox_cancel",
        Request::PlanCurrent { .. } => "plan_current",
        Request::ResidenceChange { .. } => "residence_change",
        Request::InboxShow { .. } => "inbox_show",
        Request::InboxBundle { .. } => "inbox_bundle",
        Request::DisclosureAsked { .. } => "disclosure_request",
        Request::DisclosureAnswer { .. } => "disclosure_answer",
        Request::Purge => "purge",
        Request::Reload => "reload",
        Request::Backup { .. } => "backup",
        Request::DelegationRecord { .. } => "delegation_record",
        Request::TransferExport { .. } => "transfer_export",
        Request::TakeOver { .. } => "take_over",
        Request::InformationRequest { .. } => "information_request",
        Request::InformationAnswer { .. } => "information_answer",
        _ => return None,
    })
}

/// Records a staff member's successful operation in the audit chain (with the case and the id it
/// produced or acted on, read from its result).
async fn record_staff(
    gw: &Gateway,
    staff: Option<&str>,
    op: Option<&str>,
    result: &Value,
) -> Result<(), ControlError> {
    let (Some(staff), Some(op)) = (staff, op) else {
        return Ok(());
    };
    let first = |v: &Value| match v {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        Value::Object(m) if m.contains_key("transfer") => m["transfer"].clone(),
        other => other.clone(),
    };
    let r = first(result);
    // A document (the current plan) names its case as `subject`.
    let case = r["case"]
        .as_str()
        .or(r["subject"].as_str())
        .and_then(|c| c.parse().ok());
    let subject = ["id", "consent_id", "consent"]
        .iter()
        .find_map(|k| r[*k].as_str().map(str::to_owned));
    gw.record_staff_action(staff, op, case, subject)
        .await
        .map_err(of_gateway)
}

/// The kind of a refusal of the engine: its variant, and for invalid input the wording that
/// tells not-found and conflict apart.
fn of_gateway(e: GatewayError) -> ControlError {
    let kind = match &e {
        GatewayError::Refused(_) => ErrorKind::Refused,
        GatewayError::Store(_) => ErrorKind::Unavailable,
        GatewayError::Invalid(m) => match ErrorKind::of_message(m) {
            k @ (ErrorKind::NotFound | ErrorKind::Conflict) => k,
            _ => ErrorKind::Invalid,
        },
    };
    ControlError::new(kind, e.to_string())
}

/// A storage failure outside the engine's own errors: nothing was acknowledged.
fn of_store(e: impl std::fmt::Display) -> ControlError {
    ControlError::new(ErrorKind::Unavailable, e.to_string())
}

fn id_arg(id: &str) -> Result<[u8; 16], ControlError> {
    parse_id(id)
        .ok_or_else(|| ControlError::invalid(format!("{id:?} is not a message id (32 hex digits)")))
}

pub(crate) fn unhex(s: &str) -> Result<Vec<u8>, String> {
    tsunagi_protocol::hex::decode(s).ok_or_else(|| {
        if s.len() % 2 != 0 {
            "bundle_hex has an odd number of digits".into()
        } else {
            "bundle_hex is not hex".into()
        }
    })
}

async fn dispatch(gw: &Gateway, req: Request, staff: Option<&str>) -> Result<Value, ControlError> {
    let e = of_gateway;

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
                (None, Some(h)) => Content::Bundle(unhex(&h).map_err(ControlError::invalid)?),
                _ => {
                    return Err(ControlError::invalid(
                        "send needs exactly one of form or bundle_hex",
                    ))
                }
            };
            Ok(to_json(
                &gw.submit_idempotent(&to, purpose, content, client_ref.as_deref())
                    .await
                    .map_err(e)?,
            ))
        }
        Request::Distribute { form, bundle_hex } => {
            let content = match (form, bundle_hex) {
                (Some(f), None) => Content::Form(f),
                (None, Some(h)) => Content::Bundle(unhex(&h).map_err(ControlError::invalid)?),
                _ => {
                    return Err(ControlError::invalid(
                        "distribute needs exactly one of form or bundle_hex",
                    ))
                }
            };
            Ok(to_json(&gw.distribute(content).await.map_err(e)?))
        }
        Request::PlanCurrent { case } => {
            let case: tsunagi_protocol::CaseId = case
                .parse()
                .map_err(|m| ControlError::invalid(format!("case: {case:?} {m}")))?;
            gw.current_plan_json(&case).map_err(e)?.ok_or_else(|| {
                ControlError::not_found(format!(
                    "no plan of {case} authored here: only the plan author's gateway revises a plan"
                ))
            })
        }
        Request::Reminders => {
            gw.raise_reminders().await.map_err(e)?;
            Ok(to_json(&gw.reminders().map_err(e)?))
        }
        Request::DisclosureAsked { case, received_on } => gw
            .disclosure_request(&case, received_on)
            .await
            .map(|()| Value::Null)
            .map_err(e),
        Request::DisclosureAnswer { case } => {
            let (html, organisations) = gw.disclosure_answer(&case).await.map_err(e)?;
            Ok(json!({"html": html, "organisations": to_json(&organisations)}))
        }
        // `handle` answers listings before dispatching, straight from the entries.
        Request::OutboxList { .. } | Request::InboxList { .. } => {
            unreachable!("handle answers listings itself")
        }
        Request::OutboxShow { id } => gw
            .outbox_entry(&id_arg(&id)?)
            .map_err(of_store)?
            .map(|v| to_json(&v))
            .ok_or_else(|| ControlError::not_found(format!("no outbox entry {id}"))),
        Request::OutboxWait { id, timeout_ms } => outbox_wait(gw, &id, timeout_ms).await,
        Request::OutboxCancel { id } => Ok(to_json(
            &gw.cancel_entry(&id_arg(&id)?, staff).await.map_err(e)?,
        )),
        Request::CaseList => Ok(to_json(&gw.case_list().map_err(of_store)?)),
        Request::InboxShow { id } => gw
            .inbox_show(&id_arg(&id)?)
            .map_err(e)?
            .ok_or_else(|| ControlError::not_found(format!("no inbox entry {id}"))),
        Request::InboxBundle { id } => gw
            .inbox_bundle(&id_arg(&id)?)
            .map_err(e)?
            .map(|b| json!({"bundle_hex": tsunagi_protocol::hex::encode(&b)}))
            .ok_or_else(|| ControlError::not_found(format!("no received document {id}"))),
        Request::ConsentRecord { record } => {
            Ok(to_json(&gw.record_consent(record).await.map_err(e)?))
        }
        Request::ConsentWithdraw { id } => Ok(to_json(&gw.withdraw_consent(&id).await.map_err(e)?)),
        Request::DelegationRecord { record } => {
            Ok(to_json(&gw.record_delegation(record).await.map_err(e)?))
        }
        Request::TransferExport { case, channel } => {
            let case = case
                .parse()
                .map_err(|m| ControlError::invalid(format!("case: {case:?} {m}")))?;
            let channel: crate::engine::OtherChannel =
                serde_json::from_value(Value::String(channel.clone())).map_err(|_| {
                    ControlError::invalid(format!(
                        "channel: {channel:?} is not one of post, hand or fax"
                    ))
                })?;
            Ok(json!({"html": gw.export_transfer(&case, channel).await.map_err(e)?}))
        }
        Request::Delegations { case } => {
            let case = case
                .parse()
                .map_err(|m| ControlError::invalid(format!("case: {case:?} {m}")))?;
            Ok(to_json(&gw.delegations(&case).map_err(e)?))
        }
        Request::Audit => Ok(Value::Array(gw.audit_records().map_err(of_store)?)),
        Request::AuditVerify { peers } => {
            gw.audit_checkpoint().await.map_err(of_store)?;
            let mut report = to_json(&gw.audit_verify().map_err(of_store)?);
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
                .map_err(|e: String| ControlError::invalid(format!("case: {case:?} {e}")))?;
            if html {
                Ok(Value::String(
                    gw.audit_subject_html(&case).map_err(of_store)?,
                ))
            } else {
                Ok(json!({"case": case, "records": gw.audit_subject(&case).map_err(of_store)?}))
            }
        }
        Request::ResidenceChange { report } => gw.residence_change(report).await.map_err(e),
        Request::TakeOver {
            transfer,
            consent,
            plan,
        } => Ok(to_json(
            &gw.take_over(&transfer, consent, plan).await.map_err(e)?,
        )),
        Request::InformationRequest { form } => {
            Ok(to_json(&gw.request_information(form).await.map_err(e)?))
        }
        Request::InformationAnswer { request, form } => Ok(to_json(
            &gw.answer_information(&request, form).await.map_err(e)?,
        )),
        Request::Consents { case } => {
            let case = case
                .parse()
                .map_err(|m| ControlError::invalid(format!("case: {case:?} {m}")))?;
            Ok(to_json(&gw.consents_of_case(&case).map_err(e)?))
        }
        Request::Members => Ok(json!({
            "org": gw.org().as_str(),
            "members": gw
                .directory_members()
                .into_iter()
                .map(|(org, name)| json!({"org": org.as_str(), "name": name}))
                .collect::<Vec<_>>(),
        })),
        Request::Stats => gw.stats().map_err(of_store),
        Request::Purge => Ok(to_json(&gw.purge_due().await.map_err(e)?)),
        Request::Reload => gw
            .reload()
            .map(|()| Value::Null)
            .map_err(ControlError::invalid),
        Request::Backup {
            out,
            with_master_key,
        } => Ok(to_json(
            &crate::backup::backup_running(gw, out, with_master_key)
                .await
                .map_err(ControlError::invalid)?,
        )),
        Request::Status => {
            // What an operations page shows beside the backlog: readiness and every expiry.
            let now = gw.now();
            let w = gw.config().expiry_warnings;
            let expiries: Vec<Value> = gw
                .expiries()
                .iter()
                .map(|x| {
                    json!({
                        "what": x.what.label(),
                        "file": x.file,
                        "at": x.at,
                        "standing": match x.standing(now, &w) {
                            crate::expiry::Standing::Fine => "fine",
                            crate::expiry::Standing::Soon(_) => "soon",
                            crate::expiry::Standing::Expired => "expired",
                        },
                        "message": x.message(now, &w),
                    })
                })
                .collect();
            Ok(json!({
                "org": gw.org().as_str(),
                "listen": gw.local_addr().to_string(),
                "flushes": gw.flush_count(),
                "not_ready": crate::ops::readiness(gw),
                "expiries": expiries,
                // Outbox entries by recipient and state, kept in memory: an operations page
                // reads the counts here, never a listing of a large outbox.
                "outbox": gw
                    .outbox_gauges()
                    .into_iter()
                    .map(|(org, g)| (org.to_string(), to_json(&g.states)))
                    .collect::<serde_json::Map<String, Value>>(),
            }))
        }
    }
}

/// Waits until outbox entry `id` reaches a final state (from [`Gateway::outcomes`]) or
/// `timeout_ms` passes; answers the entry either way.
async fn outbox_wait(gw: &Gateway, id: &str, timeout_ms: u64) -> Result<Value, ControlError> {
    let key = id_arg(id)?;
    // Subscribe before reading, so that an outcome between the two is not missed.
    let mut outcomes = gw.outcomes();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        let entry = gw
            .outbox_entry(&key)
            .map_err(of_store)?
            .ok_or_else(|| ControlError::not_found(format!("no outbox entry {id}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_hex_with_a_multibyte_character_is_refused_not_a_panic() {
        assert_eq!(unhex("0aFf").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(unhex("aéa").unwrap_err(), "bundle_hex is not hex");
        assert_eq!(unhex("é").unwrap_err(), "bundle_hex is not hex");
        assert!(unhex("abc").unwrap_err().contains("odd"));
    }

    #[test]
    fn staff_is_taken_out_of_any_request() {
        let (req, staff) =
            parse(r#"{"op":"consent_withdraw","id":"c-1","staff":"nurse.sato"}"#).expect("parses");
        assert!(matches!(req, Request::ConsentWithdraw { ref id } if id == "c-1"));
        assert_eq!(staff.as_deref(), Some("nurse.sato"));
        assert_eq!(op_name(&req), Some("consent_withdraw"));
        let (req, staff) = parse(r#"{"op":"outbox_list"}"#).expect("parses");
        assert_eq!(staff, None);
        assert_eq!(op_name(&req), None);
        let e = parse(r#"{"op":"outbox_list","staff":"佐藤 花子"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("staff must be an account id"), "{e}");
        let e = parse(r#"{"op":"outbox_show","id":"x","staf":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad request: unknown field"), "{e}");
        let e = parse(r#"{"op":"no_such_op"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
    }

    #[test]
    fn a_listing_is_the_generic_response_of_its_entries() {
        let entry: crate::engine::OutboxEntry = serde_json::from_value(json!({
            "id": "00112233445566778899aabbccddeeff", "state": "retry_wait", "to": "mi:1310000017",
            "kind": "support_plan", "purpose": "plan_implementation",
            "case": "case-131059-2026-0007", "profile": "hospital", "withheld": ["person"],
            "attempts": 2, "next_attempt": 1_790_000_060u64, "last_error": "timed out",
            "created": 1_790_000_000u64, "expires": 1_790_600_000u64, "done_at": null
        }))
        .unwrap();
        let entries = vec![entry.clone(), entry];
        let generic = tsunagi_control::response(Ok(to_json(&entries)));
        let direct: Value = serde_json::from_slice(&listing(Ok(entries))).unwrap();
        assert_eq!(direct, generic);
        let failed: Value = serde_json::from_slice(&listing::<crate::engine::OutboxEntry>(Err(
            crate::store::StoreError::DiskFull {
                dir: "/var/lib/tsunagi".into(),
                detail: "no space left on device".into(),
            },
        )))
        .unwrap();
        assert_eq!(failed["ok"], false);
        assert_eq!(failed["kind"], "unavailable");
    }
}
