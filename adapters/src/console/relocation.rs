//! The residence change form (転居の届出): the authority records that the person moved; the
//! gateway then finds the authority serving the new municipality and, when it is another one,
//! drafts the Form 7 transfer notice, which goes at once or waits for the person's consent.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};
use tsunagi_protocol::OrgId;

use super::accounts::Role;
use super::forms::{Errors, Typed};
use super::plan::{check_case, check_fields, field, Field, Kind};
use super::session::Session;
use super::views::page;
use super::{need, need_post, pages, Shared};

const FIELDS: [Field; 6] = [
    ("subject", "事例の仮名", Kind::Text, true),
    ("reported_on", "届出・把握の日", Kind::Date, true),
    ("new_address", "転居先の住所", Kind::Text, true),
    (
        "new_municipality",
        "転居先の市区町村コード（6桁）",
        Kind::Text,
        true,
    ),
    ("moved_on", "転居日", Kind::Date, false),
    (
        "source",
        "把握の経緯（本人からの連絡など）",
        Kind::Text,
        true,
    ),
];

/// Checks the form of `author`'s gateway: the residence change report, or messages per field.
pub fn report(t: &Typed, author: &OrgId) -> Result<Value, Errors> {
    let mut e = Errors::new();
    check_fields(t, &FIELDS, &mut e);
    let m = t.get("new_municipality");
    if !m.is_empty() && (m.len() != 6 || !m.bytes().all(|b| b.is_ascii_digit())) {
        e.insert(
            "new_municipality",
            "市区町村コードは6桁の数字で入力してください（例: 131121）。".into(),
        );
    }
    check_case(t, &mut e);
    if !e.is_empty() {
        return Err(e);
    }
    let mut v = json!({
        "document_type": "residence_change",
        "author": author.as_str(),
        "subject": t.get("subject"),
        "reported_on": t.get("reported_on"),
        "new_address": t.get("new_address"),
        "new_municipality": t.get("new_municipality"),
        "source": t.get("source"),
    });
    if !t.get("moved_on").is_empty() {
        v["moved_on"] = t.get("moved_on").into();
    }
    let checked = serde_json::from_value::<tsunagi_protocol::document::ResidenceChange>(v.clone())
        .map_err(|x| x.to_string())
        .and_then(|r| r.validate().map_err(|x| x.to_string()));
    if let Err(detail) = checked {
        let f = if detail.contains("municipality") {
            "new_municipality"
        } else {
            "moved_on"
        };
        e.insert(f, format!("入力内容に矛盾があります（{detail}）。"));
        return Err(e);
    }
    Ok(v)
}

fn form_page(s: &Session, t: &Typed, errors: &Errors, top: Option<(&str, &str)>) -> Markup {
    page(
        "転居の記録",
        Some(s),
        html! {
            h1 { "転居の記録（様式7 移転の通知の作成）" }
            p { "転居先を管轄する自治体が別の場合、計画の残りの期間を記した移転の通知（様式7）を作成します。本人の同意が移転を含んでいれば直ちに、含んでいなければ同意の記録を待って送付します。" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            form method="post" action="/relocations/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                @for f in &FIELDS { (field(t, errors, f)) }
                button class="primary" type="submit" name="action" value="send" { "転居を記録する" }
            }
        },
    )
}

/// `GET /relocations/new`.
pub(crate) async fn relocation_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, _) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    form_page(&s, &Typed::default(), &Errors::new(), None).into_response()
}

/// `POST /relocations/new`: records the move; says where the Form 7 went or why it waits.
pub(crate) async fn relocation_submit(
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
                form_page(&s, &t, &Errors::new(), Some(("alert", &msg))),
            )
                .into_response();
        }
    };
    let r = match report(&t, &org) {
        Ok(r) => r,
        Err(errors) => {
            return (StatusCode::BAD_REQUEST, form_page(&s, &t, &errors, None)).into_response()
        }
    };
    match c
        .call_as(&staff, json!({"op": "residence_change", "report": r}))
        .await
    {
        Ok(v) => {
            let dest = v["destination"].as_str().map(|d| c.name(d));
            let state = v["transfer"]["state"].as_str().unwrap_or("");
            page(
                "転居を記録しました",
                Some(&s),
                html! {
                    h1 { "転居を記録しました" }
                    p class="notice" role="status" {
                        @match (&dest, v["transfer"].is_object()) {
                            (Some(d), true) => { "転居先を管轄する" (d) "への移転の通知（様式7）を作成しました。状態: " (super::views::out_state(state).0) "。" (super::views::out_state(state).1) }
                            (Some(d), false) => { "転居先も引き続き" (d) "の管轄です。移転の通知は作成していません。" }
                            _ => { "記録しました。" }
                        }
                    }
                    p { a href="/outbox" { "送信文書を見る" } }
                },
            )
            .into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(
                &s,
                &t,
                &Errors::new(),
                Some(("alert", &pages::gateway_message(&e))),
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_becomes_a_report_and_a_bad_code_is_named() {
        let mut t = Typed::default();
        for (k, v) in [
            ("subject", "case-131059-2026-0007"),
            ("reported_on", "2027-01-08"),
            ("new_address", "東京都世田谷区太子堂九丁目2番2号"),
            ("new_municipality", "131121"),
            ("moved_on", "2027-01-15"),
            ("source", "本人からの連絡"),
        ] {
            t.0.insert(k.into(), vec![v.into()]);
        }
        let author: OrgId = "lg:131059".parse().unwrap();
        let v = report(&t, &author).unwrap();
        let fixture: Value = serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/residence_change.json"
        ))
        .unwrap();
        assert_eq!(v, fixture);
        t.0.insert("new_municipality".into(), vec!["13112".into()]);
        let e = report(&t, &author).unwrap_err();
        assert!(e["new_municipality"].contains("6桁"), "{e:?}");
    }
}
