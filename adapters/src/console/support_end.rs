//! The support end form (支援の終了): the authority records that support ended and how, and the
//! notice goes to the parties it picks. Checked by the protocol's own validation before it goes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};
use tsunagi_protocol::OrgId;

use super::accounts::Role;
use super::forms::{Errors, Typed};
use super::plan::{check_case, check_fields, err, field, Field, Kind};
use super::session::Session;
use super::views::page;
use super::{need, need_post, pages, Shared};

const OUTCOMES: &[(&str, &str)] = &[
    ("completed", "支援期間の満了"),
    ("transferred", "他の自治体への移管"),
    ("consent_withdrawn", "同意の撤回"),
    ("readmitted", "再入院"),
    ("other", "その他"),
];

const FIELDS: [Field; 4] = [
    ("subject", "事例の仮名", Kind::Text, true),
    ("ended_on", "支援の終了日", Kind::Date, true),
    ("outcome", "終了の理由", Kind::Select(OUTCOMES), true),
    ("note", "備考", Kind::Area, false),
];

/// Checks the form of `author`'s gateway: the notice and its recipients, or messages per field.
pub fn notice(
    t: &Typed,
    author: &OrgId,
    members: &[(OrgId, String)],
) -> Result<(Value, Vec<OrgId>), Errors> {
    let mut e = Errors::new();
    check_fields(t, &FIELDS, &mut e);
    check_case(t, &mut e);
    let to: Vec<OrgId> = members
        .iter()
        .filter(|(o, _)| t.has("to", o.as_str()))
        .map(|(o, _)| o.clone())
        .collect();
    if to.is_empty() {
        e.insert("to", "通知先を一つ以上選んでください。".into());
    }
    if !e.is_empty() {
        return Err(e);
    }
    let v = json!({
        "document_type": "support_end",
        "author": author.as_str(),
        "subject": t.get("subject"),
        "ended_on": t.get("ended_on"),
        "outcome": t.get("outcome"),
        "note": t.get("note"),
    });
    let checked = serde_json::from_value::<tsunagi_protocol::document::SupportEnd>(v.clone())
        .map_err(|x| x.to_string())
        .and_then(|r| r.validate().map_err(|x| x.to_string()));
    if let Err(detail) = checked {
        e.insert(
            "ended_on",
            format!("入力内容に矛盾があります（{detail}）。"),
        );
        return Err(e);
    }
    Ok((v, to))
}

fn form_page(
    c: &Shared,
    s: &Session,
    t: &Typed,
    errors: &Errors,
    top: Option<(&str, &str)>,
) -> Markup {
    page(
        "支援の終了",
        Some(s),
        html! {
            h1 { "支援の終了の記録と通知" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            form method="post" action="/support-ends/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "通知先" }
                    @for (i, (o, n)) in c.members.iter().enumerate() {
                        @let id = format!("to-{i}");
                        input type="checkbox" id=(id) name="to" value=(o.as_str()) checked[t.has("to", o.as_str())];
                        label for=(id) { (n) }
                    }
                    (err(errors, "to"))
                }
                @for f in &FIELDS { (field(t, errors, f)) }
                button class="primary" type="submit" name="action" value="send" { "支援の終了を通知する" }
            }
        },
    )
}

/// `GET /support-ends/new`.
pub(crate) async fn support_end_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, _) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    form_page(&c, &s, &Typed::default(), &Errors::new(), None).into_response()
}

/// `POST /support-ends/new`: checks the notice and sends it to each party chosen.
pub(crate) async fn support_end_submit(
    State(c): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t = Typed::parse(&body);
    let (s, staff) = match need_post(&c, &headers, &t, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let org = match c.org().await {
        Ok(o) => o,
        Err(e) => {
            let msg = format!("ゲートウェイに接続できません（詳細: {e}）");
            return (
                StatusCode::BAD_GATEWAY,
                form_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg))),
            )
                .into_response();
        }
    };
    let (doc, to) = match notice(&t, &org, &c.members) {
        Ok(x) => x,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                form_page(&c, &s, &t, &errors, None),
            )
                .into_response()
        }
    };
    let mut failed = None;
    for r in &to {
        let req = pages::send_request(&doc, r.as_str(), "support_end");
        if let Err(e) = c.call_as(&staff, req).await {
            failed = Some(format!(
                "{}: {}",
                c.name(r.as_str()),
                pages::gateway_message(&e)
            ));
        }
    }
    match failed {
        None => page(
            "支援の終了を通知しました",
            Some(&s),
            html! { h1 { "支援の終了を通知しました" } p class="notice" role="status" { (to.len()) "件の送付を受け付けました。" } p { a href="/outbox" { "送信文書を見る" } } },
        )
        .into_response(),
        Some(msg) => (StatusCode::UNPROCESSABLE_ENTITY, form_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg)))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_support_end_notice_is_checked() {
        let members: Vec<(OrgId, String)> =
            vec![("ot:npo-komorebi".parse().unwrap(), "NPO法人こもれび".into())];
        let mut t = Typed::default();
        for (k, v) in [
            ("to", "ot:npo-komorebi"),
            ("subject", "case-131059-2026-0007"),
            ("ended_on", "2027-04-30"),
            ("outcome", "completed"),
            ("note", "期間満了"),
        ] {
            t.0.insert(k.into(), vec![v.into()]);
        }
        let author: OrgId = "lg:131059".parse().unwrap();
        let (v, to) = notice(&t, &author, &members).unwrap();
        assert_eq!((v["outcome"].as_str(), to.len()), (Some("completed"), 1));
        t.0.insert("outcome".into(), vec!["vanished".into()]);
        let e = notice(&t, &author, &members).unwrap_err();
        assert!(e["outcome"].contains("選び直して"), "{e:?}");
    }
}
