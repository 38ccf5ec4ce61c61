//! The console's pages: login, cases and each case's timeline, the inbox with each received
//! document rendered as its form, the outbox with every state explained, the consent form and
//! withdrawal, and the operations page. Each handler checks the role it needs first.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};
use tsunagi_protocol::DocType;

use super::accounts::Role;
use super::forms::{self, Errors, Typed};
use super::session::{Session, Staff};
use super::views::{self, jp_datetime, page};
use super::{need, need_post, Shared};

/// The login page, with `error` and the id typed before.
pub(crate) fn login(s: &Session, error: Option<&str>, id: &str) -> Markup {
    page(
        "ログイン",
        None,
        html! {
            h1 { "ログイン" }
            @if let Some(e) = error { p class="alert" role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(s.csrf);
                label for="id" { "職員ID" }
                input type="text" id="id" name="id" value=(id) autocomplete="username" required;
                label for="password" { "パスワード" }
                input type="password" id="password" name="password" autocomplete="current-password" required;
                button class="primary" type="submit" { "ログイン" }
            }
        },
    )
}

fn gateway_error(s: &Session, e: &crate::CallError) -> Response {
    let status = if e.is_temporary() {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (
        status,
        page(
            "ゲートウェイのエラー",
            Some(s),
            html! {
                h1 { "ゲートウェイのエラー" }
                p class="alert" role="alert" { (gateway_message(e)) }
            },
        ),
    )
        .into_response()
}

/// A gateway error in Japanese, with the gateway's own line (English, for the administrator).
pub(crate) fn gateway_message(e: &crate::CallError) -> String {
    use crate::ErrorKind as K;
    let what = match e.kind {
        K::Unreachable => "ゲートウェイに接続できません。ゲートウェイが動いているか管理者に確認してください。",
        K::Unavailable => "ゲートウェイが今は記録できません（保存領域の問題）。何も受け付けていません。しばらくしてからやり直してください。",
        K::Invalid => "入力に誤りがあるため受け付けられませんでした。",
        K::Refused => "本人の同意または共有の規程により拒否されました。",
        K::NotFound => "該当する記録が見つかりません。",
        K::Conflict => "すでに記録されている内容と矛盾するため受け付けられませんでした。",
        K::Unsupported => "ゲートウェイがこの操作に対応していません（ゲートウェイの更新が必要です）。",
    };
    format!("{what}（詳細: {}）", e.message)
}

async fn list(c: &Shared, request: Value) -> Result<Vec<Value>, crate::CallError> {
    let v = c.client.call(request).await?;
    Ok(match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    })
}

/// How many entries the inbox and outbox pages show: the newest, read from the gateway as a
/// page (`limit`), so that a gateway with a large backlog answers with a page, not everything.
const PAGE: usize = 500;

/// The newest [`PAGE`] entries of listing `op`, newest first by `time` (a field of each entry),
/// and whether there were more.
async fn newest_page(
    c: &Shared,
    op: &str,
    time: &str,
) -> Result<(Vec<Value>, bool), crate::CallError> {
    let mut entries = list(c, json!({"op": op, "limit": PAGE + 1})).await?;
    entries.sort_by_key(|e| std::cmp::Reverse(e[time].as_u64().unwrap_or(0)));
    let cut = entries.len() > PAGE;
    entries.truncate(PAGE);
    Ok((entries, cut))
}

/// The line above a listing that was cut to [`PAGE`].
fn page_note(cut: bool) -> Option<String> {
    cut.then(|| {
        format!("最新の{PAGE}件を表示しています。それより前の文書は、事例一覧から各事例の画面で確認できます。")
    })
}

/// `GET /cases`: every case this gateway sent or received something for.
pub(crate) async fn cases(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, _) = match need(&c, &headers, Role::Viewer) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // Counted in the gateway, one entry at a time: a page of cases, not every message.
    let cases = match list(&c, json!({"op": "case_list"})).await {
        Ok(x) => x,
        Err(e) => return gateway_error(&s, &e),
    };
    page(
        "事例一覧",
        Some(&s),
        html! {
            h1 { "事例一覧" }
            p { "事例は仮名で表示します。氏名は受信文書の画面（担当者以上）でのみ表示されます。" }
            @if cases.is_empty() { p { "まだ事例はありません。" } } @else {
                table {
                    thead { tr { th scope="col" { "事例（仮名）" } th scope="col" { "送信" } th scope="col" { "受信" } th scope="col" { "最終更新" } } }
                    tbody {
                        @for x in &cases {
                            @let case = x["case"].as_str().unwrap_or("");
                            tr {
                                td { a href={ "/cases/" (case) } { (case) } }
                                td class="num" { (x["sent"].as_u64().unwrap_or(0)) }
                                td class="num" { (x["received"].as_u64().unwrap_or(0)) }
                                td class="nowrap" { (jp_datetime(x["last"].as_u64().unwrap_or(0))) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /cases/{case}`: the case's timeline from the audit trail.
pub(crate) async fn case(
    State(c): State<Shared>,
    headers: HeaderMap,
    UrlPath(case): UrlPath<String>,
) -> Response {
    case_page(&c, &headers, &case, None).await
}

/// A case's page, with `top` (a class and a message) above it when an action on it was taken.
async fn case_page(
    c: &Shared,
    headers: &HeaderMap,
    case: &str,
    top: Option<(&str, &str)>,
) -> Response {
    let (s, staff) = match need(c, headers, Role::Viewer) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let v = match c
        .client
        .call(json!({"op": "audit_subject", "case": case}))
        .await
    {
        Ok(v) => v,
        Err(e) => return gateway_error(&s, &e),
    };
    let records = v["records"].as_array().cloned().unwrap_or_default();
    // The case's documents, each way: every one of them (a case has few), newest first.
    let of_case = |op: &'static str, time: &'static str| {
        let request = json!({"op": op, "case": case});
        let c = c.clone();
        async move {
            let mut entries = list(&c, request).await?;
            entries.sort_by_key(|e| std::cmp::Reverse(e[time].as_u64().unwrap_or(0)));
            Ok::<_, crate::CallError>(entries)
        }
    };
    let (sent, received) = match tokio::join!(
        of_case("outbox_list", "created"),
        of_case("inbox_list", "received_at"),
    ) {
        (Ok(o), Ok(i)) => (o, i),
        (Err(e), _) | (_, Err(e)) => return gateway_error(&s, &e),
    };
    // The newest version of each consent recorded here.
    let mut consents: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for r in &records {
        if r["event"] == "consent_recorded" {
            consents.insert(
                r["consent"].as_str().unwrap_or("").to_owned(),
                (
                    r["version"].as_u64().unwrap_or(0),
                    r["status"].as_str().unwrap_or("").to_owned(),
                ),
            );
        }
    }
    page(
        &format!("事例 {case}"),
        Some(&s),
        html! {
            h1 { "事例 " (case) }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            h2 { "同意" }
            @if consents.is_empty() { p { "この事例の同意はここでは記録されていません。" } } @else {
                table {
                    thead { tr { th scope="col" { "同意記録" } th scope="col" { "最新の版" } th scope="col" { "状態" } th scope="col" { "操作" } } }
                    tbody {
                        @for (id, (version, status)) in &consents {
                            tr {
                                td { (id) }
                                td class="num" { (version) }
                                td { (if status == "withdrawn" { "撤回済み" } else { "有効" }) }
                                td {
                                    @if status != "withdrawn" && staff.role >= Role::Approver {
                                        form method="post" action="/consents/withdraw" class="actions" {
                                            input type="hidden" name="csrf" value=(s.csrf);
                                            input type="hidden" name="id" value=(id);
                                            button class="secondary" type="submit" { "同意の撤回を記録する" }
                                        }
                                    } @else { "—" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "送信文書" }
            (outbox_table(c, &s.csrf, staff.role >= Role::Clerk, Some(case), &sent))
            h2 { "受信文書" }
            (inbox_table(c, staff.role >= Role::Clerk, &received))
            h2 { "経過" }
            table {
                thead { tr { th scope="col" { "日時" } th scope="col" { "出来事" } th scope="col" { "相手機関" } th scope="col" { "文書" } th scope="col" { "詳細" } } }
                tbody {
                    @for r in &records {
                        @let other = r["to"].as_str().or(r["from"].as_str()).unwrap_or("");
                        tr {
                            td class="nowrap" { (jp_datetime(r["time"].as_u64().unwrap_or(0))) }
                            td { (views::event_label(r["event"].as_str().unwrap_or(""))) }
                            td { @if !other.is_empty() { (c.name(other)) } }
                            td { @if let Some(k) = r["kind"].as_str() { (views::doc_type_label(k)) } }
                            td { (detail(r)) }
                        }
                    }
                }
            }
            @if staff.role >= Role::Clerk {
                p {
                    a href={ "/cases/" (case) "/disclosure" } { "本人への開示ページ（印刷用）" }
                    " ・ "
                    a href={ "/cases/" (case) "/fhir.json" } { "受信文書をHL7 FHIR R4で書き出す" }
                }
            }
        },
    )
    .into_response()
}

fn detail(r: &Value) -> String {
    match r["event"].as_str().unwrap_or("") {
        "consent_recorded" => format!(
            "{} 第{}版（{}）",
            r["consent"].as_str().unwrap_or(""),
            r["version"],
            if r["status"] == "withdrawn" {
                "撤回"
            } else {
                "有効"
            }
        ),
        "redacted" => format!(
            "非開示: {}",
            r["withheld"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("、"))
                .unwrap_or_default()
        ),
        "gate_denied" => format!("規則: {}", r["code"].as_str().unwrap_or("")),
        "staff_action" => format!(
            "職員 {} が {} を実行",
            r["staff"].as_str().unwrap_or(""),
            r["op"].as_str().unwrap_or("")
        ),
        _ => r["id"].as_str().unwrap_or("").to_owned(),
    }
}

/// `GET /cases/{case}/disclosure`: the person's disclosure page (R9), printable.
pub(crate) async fn disclosure(
    State(c): State<Shared>,
    headers: HeaderMap,
    UrlPath(case): UrlPath<String>,
) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match c
        .call_as(
            &staff,
            json!({"op": "audit_subject", "case": case, "html": true}),
        )
        .await
    {
        // The gateway renders this page itself (maud, escaped).
        Ok(Value::String(html)) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        Ok(_) => StatusCode::BAD_GATEWAY.into_response(),
        Err(e) => gateway_error(&s, &e),
    }
}

/// `GET /cases/{case}/fhir.json`: what was received for the case as a FHIR R4 bundle (clerk;
/// each document read is recorded with the staff id, as when it is opened).
pub(crate) async fn fhir_export(
    State(c): State<Shared>,
    headers: HeaderMap,
    UrlPath(case): UrlPath<String>,
) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if case.parse::<tsunagi_protocol::CaseId>().is_err() {
        return (StatusCode::NOT_FOUND, "no such case").into_response();
    }
    let entries = match list(&c, json!({"op": "inbox_list", "case": case})).await {
        Ok(x) => x,
        Err(e) => return gateway_error(&s, &e),
    };
    let mut shown = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e["case"] == case.as_str() && e["kind"].is_string())
    {
        match c
            .call_as(&staff, json!({"op": "inbox_show", "id": e["id"]}))
            .await
        {
            Ok(v) => shown.push(v),
            Err(e) => return gateway_error(&s, &e),
        }
    }
    let bundle = super::fhir::bundle(&case, &shown, |o| c.name(o));
    (
        [
            (header::CONTENT_TYPE, "application/fhir+json; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"bundle.json\"",
            ),
        ],
        serde_json::to_string_pretty(&bundle).unwrap_or_default(),
    )
        .into_response()
}

/// `GET /inbox`: what was received.
pub(crate) async fn inbox(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Viewer) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (entries, cut) = match newest_page(&c, "inbox_list", "received_at").await {
        Ok(x) => x,
        Err(e) => return gateway_error(&s, &e),
    };
    page(
        "受信文書",
        Some(&s),
        html! {
            h1 { "受信文書" }
            @if let Some(note) = page_note(cut) { p class="notice" { (note) } }
            (inbox_table(&c, staff.role >= Role::Clerk, &entries))
        },
    )
    .into_response()
}

/// The table of inbox `entries` (newest first as given), each linked to its document when
/// `may_open`: the inbox page and a case's page.
fn inbox_table(c: &Shared, may_open: bool, entries: &[Value]) -> maud::Markup {
    html! {
    @if entries.is_empty() { p { "受信した文書はありません。" } } @else {
        table {
            thead { tr { th scope="col" { "受信日時" } th scope="col" { "送信元" } th scope="col" { "文書" } th scope="col" { "目的" } th scope="col" { "事例（仮名）" } } }
            tbody {
                @for e in entries {
                    @let id = e["id"].as_str().unwrap_or("");
                    tr {
                        td class="nowrap" { (jp_datetime(e["received_at"].as_u64().unwrap_or(0))) }
                        td { (c.name(e["from"].as_str().unwrap_or(""))) }
                        td {
                            @let label = e["kind"].as_str().map(views::doc_type_label).unwrap_or("未配達の報告");
                            @if may_open { a href={ "/inbox/" (id) } { (label) } } @else { (label) }
                        }
                        td { (e["purpose"].as_str().map(views::purpose_label).unwrap_or("—")) }
                        td { (e["case"].as_str().unwrap_or("")) }
                    }
                }
            }
        }
    }
    }
}

/// `GET /inbox/{id}`: one received document, rendered as its form in this recipient's view.
pub(crate) async fn inbox_show(
    State(c): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let v = match c
        .call_as(&staff, json!({"op": "inbox_show", "id": id}))
        .await
    {
        Ok(v) => v,
        Err(e) => return gateway_error(&s, &e),
    };
    let kind: Option<DocType> = v["kind"].as_str().and_then(|k| k.parse().ok());
    let title = kind
        .and_then(tsunagi_protocol::document::labels::title)
        .unwrap_or_else(|| {
            v["kind"]
                .as_str()
                .map(views::doc_type_label)
                .unwrap_or("未配達の報告")
        });
    let mut doc = v["document"].as_object().cloned().unwrap_or_default();
    for k in ["document_type", "author", "controller"] {
        doc.remove(k);
    }
    if kind == Some(DocType::MeetingRecord) {
        // The meeting's parties by name, as staff read them.
        let named = |x: &mut Value| {
            if let Some(o) = x.as_str().map(str::to_owned) {
                *x = format!("{}（{o}）", c.name(&o)).into();
            }
        };
        for k in ["attendees", "absent"] {
            if let Some(Value::Array(a)) = doc.get_mut(k) {
                a.iter_mut().for_each(named);
            }
        }
        if let Some(Value::Array(a)) = doc.get_mut("undertakings") {
            a.iter_mut()
                .filter_map(|u| u.get_mut("org"))
                .for_each(named);
        }
    }
    let items = doc.remove("items");
    let withheld: Vec<&str> = v["withheld"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let author = v["document"]["author"]
        .as_str()
        .or(v["document"]["controller"].as_str())
        .unwrap_or("");
    page(
        title,
        Some(&s),
        html! {
            div class="form-sheet" {
                h1 { (title) }
                table {
                    tr { th scope="row" { "様式" } td { (v["kind"].as_str().map(views::doc_type_label).unwrap_or("—")) } }
                    tr { th scope="row" { "作成者（署名を検証済み）" } td { (c.name(author)) "（" (author) "）" } }
                    tr { th scope="row" { "送信元" } td { (c.name(v["from"].as_str().unwrap_or(""))) } }
                    tr { th scope="row" { "証明書" } td { "連合CAの証明書で署名を検証し、受信時に失効していないことを確認しました。" } }
                    tr { th scope="row" { "受信日時" } td { (jp_datetime(v["received_at"].as_u64().unwrap_or(0))) } }
                    tr { th scope="row" { "目的" } td { (v["purpose"].as_str().map(views::purpose_label).unwrap_or("—")) } }
                }
                @if let Some(report) = v["report"].as_str() { p class="alert" { "未配達の報告: " (report) } }
                // The sender's no-redisclosure notice, printed with the document.
                @if let Some(notice) = v["notice"].as_str().filter(|n| !n.is_empty()) {
                    p class="notice" { strong { "取扱いの注意: " } (notice) }
                }
                @if let Some(Value::Object(items)) = &items { (views::ratings_table(items)) }
                (views::value(kind, "", &Value::Object(doc)))
                h2 { "この機関に開示されなかった項目" }
                @if withheld.is_empty() {
                    p { "ありません（全項目が開示されています）。" }
                } @else {
                    p { "次の項目は、作成者のゲートウェイが受信機関の役割に応じた開示範囲（様式6の共有範囲など）に従って除きました。署名は残りの項目だけで検証できます。" }
                    ul { @for w in &withheld { li { (views::element_label(kind, w)) "（" (w) "）" } } }
                }
            }
            p class="noprint" { "印刷するときはブラウザの印刷機能を使ってください（A4）。" }
        },
    )
    .into_response()
}

/// `GET /outbox`: what was sent, each state with its reason.
pub(crate) async fn outbox(State(c): State<Shared>, headers: HeaderMap) -> Response {
    outbox_page(&c, &headers, None).await
}

/// The `send` request of `form` (a document as the form made it) to `to` for `purpose`, with
/// an idempotency key (`client_ref`) over the three: a form sent again after a partial failure
/// (the page keeps it, with what failed) goes again only where it had not gone, as the gateway
/// answers a key it has seen with the entry it queued then.
pub(crate) fn send_request(form: &Value, to: &str, purpose: &str) -> Value {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        serde_json::to_vec(form).unwrap_or_default().as_slice(),
        to.as_bytes(),
        purpose.as_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    json!({
        "op": "send",
        "to": to,
        "purpose": purpose,
        "form": form,
        "client_ref": format!("console:{}", hex::encode(ctx.finish())),
    })
}

/// Whether outbox entry `e` is a transfer notice (Form 7) waiting for consent: an approver
/// releases it (by recording the consent version that covers it) or stops it.
fn waiting_form7(e: &Value) -> bool {
    e["kind"] == "transfer_notice" && e["state"] == "awaiting_consent"
}

/// Whether an outbox entry in `state` may still be cancelled (not sent yet).
pub(crate) fn cancellable(state: &str) -> bool {
    matches!(state, "queued" | "retry_wait" | "awaiting_consent")
}

/// `POST /outbox/cancel`: cancels an entry that is not sent yet (clerk); the page the button was
/// on again (the outbox, or the case's page when `back` names the case), with what happened.
pub(crate) async fn outbox_cancel(
    State(c): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t = Typed::parse(&body);
    let (s, staff) = match need_post(&c, &headers, &t, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let id = t.get("id");
    // Stopping a Form 7 that waits for consent is the approver's, as releasing it is.
    if staff.role < Role::Approver {
        if let Ok(e) = c.client.call(json!({"op": "outbox_show", "id": id})).await {
            if waiting_form7(&e) {
                return super::forbidden(&s, Role::Approver);
            }
        }
    }
    let top = match c
        .call_as(&staff, json!({"op": "outbox_cancel", "id": id}))
        .await
    {
        Ok(v) => (
            StatusCode::OK,
            "notice",
            format!(
                "{}宛ての「{}」（{}）の送信を取り消しました。この文書は送信されません。",
                c.name(v["to"].as_str().unwrap_or("")),
                views::doc_type_label(v["kind"].as_str().unwrap_or("")),
                v["case"].as_str().unwrap_or("")
            ),
        ),
        Err(e) if e.kind == crate::ErrorKind::Conflict => (
            StatusCode::CONFLICT,
            "alert",
            format!(
                "この文書は送信中か、すでに送信・配達・取消しが済んでいるため取り消せません。一覧で状態を確認してください。（詳細: {}）",
                e.message
            ),
        ),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, "alert", gateway_message(&e)),
    };
    let (status, class, msg) = top;
    // Back where the button was: the case's page when it was there (a well-formed case id only).
    let back = t.get("back");
    let mut res = match back.parse::<tsunagi_protocol::CaseId>() {
        Ok(case) if !back.is_empty() => {
            case_page(&c, &headers, &case.to_string(), Some((class, &msg))).await
        }
        _ => outbox_page(&c, &headers, Some((class, &msg))).await,
    };
    if res.status() == StatusCode::OK {
        *res.status_mut() = status;
    }
    res
}

/// The table of outbox `entries` (newest first as given), with a cancel button on each entry not
/// sent yet when `may_cancel`: the outbox page and a case's page (`on_case`, where a cancel
/// returns).
fn outbox_table(
    c: &Shared,
    csrf: &str,
    may_cancel: bool,
    on_case: Option<&str>,
    entries: &[Value],
) -> maud::Markup {
    html! {
    @if entries.is_empty() { p { "送信した文書はありません。" } } @else {
        table {
            thead { tr { th scope="col" { "受付日時" } th scope="col" { "事例（仮名）" } th scope="col" { "宛先" } th scope="col" { "文書" } th scope="col" { "目的" } th scope="col" { "状態" } th scope="col" { "理由・詳細" } @if may_cancel { th scope="col" { "操作" } } } }
            tbody {
                @for e in entries {
                    @let state = e["state"].as_str().unwrap_or("");
                    @let (label, why) = views::out_state(state);
                    tr {
                        td class="nowrap" { (jp_datetime(e["created"].as_u64().unwrap_or(0))) }
                        td { (e["case"].as_str().unwrap_or("")) }
                        td { (c.name(e["to"].as_str().unwrap_or(""))) }
                        td { (views::doc_type_label(e["kind"].as_str().unwrap_or(""))) }
                        td { (views::purpose_label(e["purpose"].as_str().unwrap_or(""))) }
                        td class="nowrap" { strong { (label) } }
                        td {
                            (why)
                            @if state == "delivered" {
                                @if let Some(t) = e["done_at"].as_u64() { " 受領: " (jp_datetime(t)) }
                            }
                            @if state == "retry_wait" {
                                " 次回: " (jp_datetime(e["next_attempt"].as_u64().unwrap_or(0)))
                                "（" (e["attempts"]) "回試行）"
                            }
                            @if let Some(err) = e["last_error"].as_str() { br; small { "詳細: " (err) } }
                            @if let Some(w) = e["withheld"].as_array().filter(|w| !w.is_empty()) {
                                br; small { "非開示項目: " (w.len()) "件（" (e["profile"].as_str().unwrap_or("")) "）" }
                            }
                        }
                        @if may_cancel {
                            td {
                                @if cancellable(state) {
                                    form method="post" action="/outbox/cancel" class="actions" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="id" value=(e["id"].as_str().unwrap_or(""));
                                        @if let Some(case) = on_case { input type="hidden" name="back" value=(case); }
                                        button class="secondary" type="submit" aria-label={ "送信を取り消す（" (c.name(e["to"].as_str().unwrap_or(""))) "宛て・" (e["case"].as_str().unwrap_or("")) "）" } { "送信を取り消す" }
                                    }
                                } @else { "—" }
                            }
                        }
                    }
                }
            }
        }
    }
    }
}

async fn outbox_page(c: &Shared, headers: &HeaderMap, top: Option<(&str, &str)>) -> Response {
    let (s, staff) = match need(c, headers, Role::Viewer) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (entries, cut) = match newest_page(c, "outbox_list", "created").await {
        Ok(x) => x,
        Err(e) => return gateway_error(&s, &e),
    };
    let may_cancel = staff.role >= Role::Clerk;
    page(
        "送信文書",
        Some(&s),
        html! {
            h1 { "送信文書" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if let Some(note) = page_note(cut) { p class="notice" { (note) } }
            (outbox_table(c, &s.csrf, may_cancel, None, &entries))
        },
    )
    .into_response()
}

fn field_error(errors: &Errors, field: &str) -> Markup {
    html! {
        @if let Some(m) = errors.get(field) {
            p class="error" id={ (field) "-error" } { (m) }
        }
    }
}

fn consent_page(
    c: &Shared,
    s: &Session,
    t: &Typed,
    errors: &Errors,
    top: Option<(&str, &str)>,
) -> Markup {
    let text = |name: &'static str, label: &'static str, kind: &'static str| {
        html! {
            label for=(name) { (label) }
            @if errors.contains_key(name) {
                input type=(kind) id=(name) name=(name) value=(t.get(name)) aria-invalid="true" aria-describedby={ (name) "-error" };
            } @else {
                input type=(kind) id=(name) name=(name) value=(t.get(name));
            }
            (field_error(errors, name))
        }
    };
    let checks = |name: &'static str, legend: &'static str, opts: Vec<(String, String)>| {
        html! {
            fieldset {
                legend { (legend) }
                @for (i, (value, label)) in opts.iter().enumerate() {
                    @let id = format!("{name}-{i}");
                    input type="checkbox" id=(id) name=(name) value=(value) checked[t.has(name, value)];
                    label for=(id) { (label) }
                }
                (field_error(errors, name))
            }
        }
    };
    page(
        "同意の記録",
        Some(s),
        html! {
            h1 { "本人の同意の記録" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            form method="post" action="/consents/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                (text("id", "同意記録の番号", "text"))
                (text("version", "版", "number"))
                (text("subject", "事例の仮名", "text"))
                (text("date", "同意日", "date"))
                (text("grantor", "同意した人（本人・代理人など）", "text"))
                (text("recorded_by", "記録した職員", "text"))
                (text("period_from", "同意の有効期間（開始）", "date"))
                (text("period_to", "同意の有効期間（終了）", "date"))
                (checks("purposes", "同意した目的", forms::PURPOSES.iter().map(|(v, l)| (v.to_string(), l.to_string())).collect()))
                (checks("doc_types", "共有に同意した文書", forms::CONSENT_DOC_TYPES.iter().map(|(v, l)| (v.to_string(), l.to_string())).collect()))
                (checks("recipients", "情報を共有する機関", c.members.iter().map(|(o, n)| (o.as_str().to_owned(), n.clone())).collect()))
                fieldset {
                    legend { "警察への情報提供" }
                    input type="checkbox" id="police_refused" name="police_refused" value="yes" checked[t.has("police_refused", "yes")];
                    label for="police_refused" { "本人が警察への情報提供を拒否している" }
                }
                button class="primary" type="submit" name="action" value="record" { "同意を記録して関係機関に送る" }
                " "
                button class="secondary" type="submit" name="action" value="draft" { "下書きを保存" }
            }
        },
    )
}

/// `GET /consents/new`: the consent form (with the saved draft, if any).
pub(crate) async fn consent_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let draft = draft_of(&c, &staff, "consent");
    let note = (!draft.0.is_empty()).then_some(("notice", "保存した下書きを表示しています。"));
    consent_page(&c, &s, &draft, &Errors::new(), note).into_response()
}

pub(crate) fn draft_of(c: &Shared, staff: &Staff, form: &'static str) -> Typed {
    Typed(c.drafts.get(&staff.id, form).unwrap_or_default())
}

pub(crate) fn save_draft(c: &Shared, staff: &Staff, form: &'static str, t: Option<Typed>) {
    let fields = t.map(|mut t| {
        t.0.remove("csrf");
        t.0.remove("action");
        t.0
    });
    c.drafts.set(&staff.id, form, fields);
}

/// `POST /consents/new`: save a draft, or check and record the consent.
pub(crate) async fn consent_submit(
    State(c): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t = Typed::parse(&body);
    let (s, staff) = match need_post(&c, &headers, &t, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // The form again, with `msg` above it.
    let again = |status: StatusCode, msg: &str| {
        (
            status,
            consent_page(&c, &s, &t, &Errors::new(), Some(("alert", msg))),
        )
            .into_response()
    };
    if t.get("action") == "draft" {
        save_draft(&c, &staff, "consent", Some(t.clone()));
        return consent_page(
            &c,
            &s,
            &t,
            &Errors::new(),
            Some(("notice", "下書きを保存しました。")),
        )
        .into_response();
    }
    let org = match c.org().await {
        Ok(o) => o,
        Err(e) => {
            let msg = format!("ゲートウェイに接続できません（詳細: {e}）");
            return again(StatusCode::BAD_GATEWAY, &msg);
        }
    };
    // A consent version that covers a Form 7 waiting for it releases the Form 7: that is the
    // approver's to do.
    if staff.role < Role::Approver {
        match list(&c, json!({"op": "outbox_list", "case": t.get("subject")})).await {
            Ok(entries) if entries.iter().any(waiting_form7) => {
                let msg = "この事例には同意を待っている転居の通知（様式7）があります。同意を記録するとこの通知が送信されるため、記録は「承認者」が行います。承認者に依頼してください。";
                return again(StatusCode::FORBIDDEN, msg);
            }
            Ok(_) => {}
            // Not a case id: the form's own check names it below.
            Err(e) if e.kind == crate::ErrorKind::Invalid => {}
            Err(e) => return again(StatusCode::BAD_GATEWAY, &gateway_message(&e)),
        }
    }
    let members: Vec<_> = c.members.iter().map(|(o, _)| o.clone()).collect();
    let record = match forms::consent(&t, &org, &members) {
        Ok(r) => r,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                consent_page(&c, &s, &t, &errors, None),
            )
                .into_response()
        }
    };
    match c
        .call_as(&staff, json!({"op": "consent_record", "record": record}))
        .await
    {
        Ok(v) => {
            save_draft(&c, &staff, "consent", None);
            let sent = v.as_array().map_or(0, Vec::len);
            page(
                "同意を記録しました",
                Some(&s),
                html! {
                    h1 { "同意を記録しました" }
                    p class="notice" role="status" {
                        "同意記録 " (t.get("id")) " 第" (t.get("version")) "版を記録し、" (sent) "件を関係機関に送信しました。"
                    }
                    p { a href={ "/cases/" (t.get("subject")) } { "この事例の経過を見る" } " ・ " a href="/outbox" { "送信文書を見る" } }
                },
            )
            .into_response()
        }
        Err(e) => again(StatusCode::UNPROCESSABLE_ENTITY, &gateway_message(&e)),
    }
}

/// The answer to a `distribute` request `v` (one row per party: queued, or refused and why).
pub(crate) fn distributed(c: &Shared, s: &Session, title: &str, v: &Value) -> Markup {
    let rows = v.as_array().cloned().unwrap_or_default();
    page(
        title,
        Some(s),
        html! {
            h1 { (title) }
            @if rows.is_empty() {
                p class="notice" role="status" { "送付先となる関係機関がありませんでした（記録はこのゲートウェイに残りました）。" }
            } @else {
                table {
                    thead { tr { th scope="col" { "送付先" } th scope="col" { "結果" } } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { (c.name(r["to"].as_str().unwrap_or(""))) }
                                td {
                                    @if let Some(why) = r["refused"].as_str() {
                                        span class="error" { "同意または共有の規程により送付しませんでした（詳細: " (why) "）" }
                                    } @else {
                                        "受け付けました（" (views::out_state(r["entry"]["state"].as_str().unwrap_or("")).0) "）"
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p { a href="/outbox" { "送信文書を見る" } }
        },
    )
}

/// `POST /consents/withdraw`: records the withdrawal of a consent (approver).
pub(crate) async fn consent_withdraw(
    State(c): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t = Typed::parse(&body);
    let (s, staff) = match need_post(&c, &headers, &t, Role::Approver) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match c
        .call_as(&staff, json!({"op": "consent_withdraw", "id": t.get("id")}))
        .await
    {
        Ok(v) => page(
            "同意の撤回を記録しました",
            Some(&s),
            html! {
                h1 { "同意の撤回を記録しました" }
                p class="notice" role="status" {
                    "同意記録 " (t.get("id")) " の撤回を記録しました。以後の共有は拒否され、送信前の文書は取り消されます。撤回の通知 " (v.as_array().map_or(0, Vec::len)) "件を送信しました。"
                }
                p { a href="/outbox" { "送信文書を見る" } }
            },
        )
        .into_response(),
        Err(e) => gateway_error(&s, &e),
    }
}

/// `GET /ops`: the gateway's health, peers, backlog and expiries (admin).
pub(crate) async fn ops(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, _) = match need(&c, &headers, Role::Admin) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let status = match c.client.call(json!({"op": "status"})).await {
        Ok(v) => v,
        Err(e) => return gateway_error(&s, &e),
    };
    // The gateway's counts by recipient and state (kept in memory): no listing of the outbox.
    let mut backlog: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_peer: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (org, states) in status["outbox"].as_object().into_iter().flatten() {
        for (state, n) in states.as_object().into_iter().flatten() {
            let n = n.as_u64().unwrap_or(0);
            *backlog.entry(state.clone()).or_default() += n;
            let x = per_peer.entry(org.clone()).or_default();
            match state.as_str() {
                "queued" | "retry_wait" | "awaiting_consent" => x.0 += n,
                "delivered" => x.1 += n,
                _ => {}
            }
        }
    }
    let not_ready: Vec<&str> = status["not_ready"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    page(
        "運用状況",
        Some(&s),
        html! {
            h1 { "運用状況" }
            h2 { "稼働状態" }
            @if not_ready.is_empty() {
                p class="notice" role="status" { "ゲートウェイは稼働中です（" (c.name(status["org"].as_str().unwrap_or(""))) "、" (status["listen"].as_str().unwrap_or("")) "）。" }
            } @else {
                div class="alert" role="alert" { p { "ゲートウェイは受け付けできない状態です:" } ul { @for r in &not_ready { li { (r) } } } }
            }
            h2 { "送信の滞留" }
            table {
                thead { tr { th scope="col" { "状態" } th scope="col" { "件数" } } }
                tbody { @for (state, n) in &backlog { tr { td { (views::out_state(state).0) } td class="num" { (n) } } } }
            }
            h2 { "相手機関" }
            table {
                thead { tr { th scope="col" { "機関" } th scope="col" { "未配達" } th scope="col" { "配達済み" } } }
                tbody {
                    @for (org, name) in &c.members {
                        @let (pending, done) = per_peer.get(org.as_str()).copied().unwrap_or_default();
                        tr { td { (name) } td class="num" { (pending) } td class="num" { (done) } }
                    }
                }
            }
            h2 { "証明書・失効リスト・名簿の有効期限" }
            table {
                thead { tr { th scope="col" { "対象" } th scope="col" { "ファイル" } th scope="col" { "期限" } th scope="col" { "状態" } } }
                tbody {
                    @for x in status["expiries"].as_array().into_iter().flatten() {
                        tr {
                            td { (expiry_label(x["what"].as_str().unwrap_or(""))) }
                            td { (x["file"].as_str().unwrap_or("")) }
                            td class="nowrap" { (x["at"].as_i64().map(|t| jp_datetime(t.max(0) as u64)).unwrap_or_else(|| "期限なし".into())) }
                            td {
                                (match x["standing"].as_str() { Some("expired") => "期限切れ", Some("soon") => "まもなく期限", _ => "問題なし" })
                                @if let Some(m) = x["message"].as_str() { br; small { (m) } }
                            }
                        }
                    }
                }
            }
            p { a href="/stats.csv" { "統計をCSVで書き出す" } }
        },
    )
    .into_response()
}

fn expiry_label(what: &str) -> &'static str {
    match what {
        "tls_certificate" => "TLS証明書",
        "signing_certificate" => "署名用証明書",
        "ca_certificate" => "連合CA証明書",
        "crl" => "証明書失効リスト（CRL）の次回更新",
        "directory" => "参加機関名簿",
        _ => "その他",
    }
}

/// `GET /stats.csv`: the gateway's statistics (R12 aggregates) as CSV, one `key,value` row per
/// number (admin).
pub(crate) async fn stats_csv(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Admin) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let v = match c.call_as(&staff, json!({"op": "stats"})).await {
        Ok(v) => v,
        Err(e) => return gateway_error(&s, &e),
    };
    let mut rows = Vec::new();
    flatten("", &v, &mut rows);
    let mut csv = String::from("key,value\r\n");
    for (k, v) in rows {
        csv.push_str(&format!("{},{}\r\n", csv_cell(&k), csv_cell(&v)));
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tsunagi-stats.csv\"",
            ),
        ],
        csv,
    )
        .into_response()
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), x, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// One CSV cell: quoted when needed, and never read as a formula by a spreadsheet.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("-3"), "-3");
        let mut rows = Vec::new();
        flatten("", &json!({"a": {"b": 1, "c": ["x"]}}), &mut rows);
        assert_eq!(
            rows,
            vec![("a.b".into(), "1".into()), ("a.c.0".into(), "x".into())]
        );
    }
}
