//! The extension of the support period (支援期間の延長): decided at a support meeting with the
//! person's consent, it is a revision of the plan that adds the extension to its support period.
//! The form asks for the extension only; the console takes the case's current plan from the
//! gateway (`plan_current`), makes the next version with the extension added (the gateway fills
//! in the digest of the version it revises) and sends it with `distribute` to every party of the
//! plan. The gateway checks that the meeting record deciding it was sent or received, and that
//! the consent in force is the version named and lasts to the new end (R7).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::accounts::Role;
use super::forms::{Errors, Typed};
use super::plan::{check_case, check_fields, field, Field, Kind};
use super::session::Session;
use super::views::page;
use super::{need, need_post, pages, Shared};

const FIELDS: [Field; 5] = [
    ("subject", "事例の仮名", Kind::Text, true),
    ("made_on", "計画の見直し日", Kind::Date, true),
    ("extension_to", "延長後の期間の終了日", Kind::Date, true),
    ("reason", "延長の理由", Kind::Area, true),
    (
        "meeting_on",
        "会議の記録（延長を決めた支援会議の開催日）",
        Kind::Date,
        true,
    ),
];

const CONSENT: [Field; 2] = [
    (
        "consent_version",
        "延長に同意した同意記録の版",
        Kind::Text,
        true,
    ),
    ("consented_on", "本人が延長に同意した日", Kind::Date, true),
];

const EXCEPTION: Field = (
    "exception",
    "例外の理由（2回目以降の延長、または退院後1年を超える延長のときに必要）",
    Kind::Area,
    false,
);

/// Checks the fields alone (before the current plan is asked for).
pub fn check(t: &Typed) -> Errors {
    let mut e = Errors::new();
    check_fields(t, &FIELDS, &mut e);
    check_fields(t, &CONSENT, &mut e);
    check_fields(t, std::slice::from_ref(&EXCEPTION), &mut e);
    check_case(t, &mut e);
    if !t.get("consent_version").is_empty()
        && t.get("consent_version")
            .parse::<u32>()
            .ok()
            .filter(|v| *v >= 1)
            .is_none()
    {
        e.insert(
            "consent_version",
            "同意記録の版は1以上の半角数字で入力してください。".into(),
        );
    }
    e
}

/// The form field a protocol message about the extension is about.
fn field_of(detail: &str) -> &'static str {
    for (needle, field) in [
        ("exception", "exception"),
        (".meeting_on", "meeting_on"),
        (".consented_on", "consented_on"),
        (".consent_version", "consent_version"),
        (".reason", "reason"),
        ("made_on", "made_on"),
    ] {
        if detail.contains(needle) {
            return field;
        }
    }
    "extension_to"
}

/// The next version of `current` (the case's current plan) with the extension typed in `t`, or
/// messages per field (the protocol's period rules included).
pub fn revision(t: &Typed, current: &Value) -> Result<Value, Errors> {
    let mut e = check(t);
    if !e.is_empty() {
        return Err(e);
    }
    let mut plan = current.clone();
    let version = current["version"].as_u64().unwrap_or(1);
    plan["version"] = (version + 1).into();
    plan["made_on"] = t.get("made_on").into();
    plan["supersedes"] = json!({
        "version": version,
        "reason": format!("支援期間の延長: {}", t.get("reason")),
    });
    let mut ext = json!({
        "to": t.get("extension_to"),
        "meeting_on": t.get("meeting_on"),
        "consent_version": t.get("consent_version").parse::<u32>().unwrap_or(0),
        "consented_on": t.get("consented_on"),
        "reason": t.get("reason"),
    });
    if !t.get("exception").is_empty() {
        ext["exception"] = t.get("exception").into();
    }
    match plan["support_period"]["extensions"].as_array_mut() {
        Some(a) => a.push(ext),
        None => plan["support_period"]["extensions"] = json!([ext]),
    }
    let checked = serde_json::from_value::<tsunagi_protocol::document::SupportPlan>(plan.clone())
        .map_err(|x| x.to_string())
        .and_then(|p| p.validate().map_err(|x| x.to_string()));
    if let Err(detail) = checked {
        let f = field_of(&detail);
        let msg = if f == "exception" {
            format!("ガイドラインの原則（延長は1回、退院後1年以内）を超える延長です。例外の理由を入力してください（{detail}）。")
        } else {
            format!("入力内容が支援期間の規則に合いません（{detail}）。")
        };
        e.insert(f, msg);
        return Err(e);
    }
    Ok(plan)
}

fn form_page(
    s: &Session,
    t: &Typed,
    errors: &Errors,
    top: Option<(&str, &str)>,
    current: Option<&Value>,
) -> Markup {
    page(
        "支援期間の延長",
        Some(s),
        html! {
            h1 { "支援期間の延長" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            p { "支援期間の延長は、支援会議で決め、本人の同意を得てから記録します。先に「支援会議の記録」を送付し、延長に同意した同意記録を記録してください。延長は計画の見直し（次の版）として計画の送付先すべてに送られます。" }
            @if let Some(p) = current {
                p class="notice" {
                    "現在の計画: 第" (p["version"]) "版、支援期間 "
                    (super::views::jp_date(p["support_period"]["from"].as_str().unwrap_or("")))
                    "〜"
                    (super::views::jp_date(p["support_period"]["extensions"].as_array().and_then(|a| a.last()).and_then(|x| x["to"].as_str()).or(p["support_period"]["to"].as_str()).unwrap_or("")))
                }
            }
            form method="post" action="/extensions/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                @for f in &FIELDS { (field(t, errors, f)) }
                fieldset {
                    legend { "本人の同意" }
                    @for f in &CONSENT { (field(t, errors, f)) }
                }
                (field(t, errors, &EXCEPTION))
                button class="primary" type="submit" name="action" value="send" { "延長を記録して送付する" }
                " "
                button class="secondary" type="submit" name="action" value="draft" { "下書きを保存" }
            }
        },
    )
}

/// `GET /extensions/new`: the extension form (with the saved draft, if any).
pub(crate) async fn extension_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let draft = pages::draft_of(&c, &staff, "extension");
    let note = (!draft.0.is_empty()).then_some(("notice", "保存した下書きを表示しています。"));
    form_page(&s, &draft, &Errors::new(), note, None).into_response()
}

/// A refusal of the gateway placed next to the field it is about, when it is about one.
fn refusal_field(message: &str) -> Option<(&'static str, &'static str)> {
    if message.contains("no record of a support meeting") {
        Some(("meeting_on", "この日に開催され、この延長を決めた支援会議の記録が送受信されていません。先に「支援会議の記録」で、延長後の期間の終了日を入れて送付してください。"))
    } else if message.contains("consent") {
        Some(("consent_version", "この版の同意記録が有効でないか、延長後の終了日まで有効ではありません。延長への本人の同意を記録してから、その版を入力してください。"))
    } else {
        None
    }
}

/// `POST /extensions/new`: save a draft, or make the plan's next version with the extension
/// and distribute it.
pub(crate) async fn extension_submit(
    State(c): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t = Typed::parse(&body);
    let (s, staff) = match need_post(&c, &headers, &t, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if t.get("action") == "draft" {
        pages::save_draft(&c, &staff, "extension", Some(t.clone()));
        let saved = Some(("notice", "下書きを保存しました。"));
        return form_page(&s, &t, &Errors::new(), saved, None).into_response();
    }
    let errors = check(&t);
    if !errors.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            form_page(&s, &t, &errors, None, None),
        )
            .into_response();
    }
    let current = match c
        .call_as(
            &staff,
            json!({"op": "plan_current", "case": t.get("subject")}),
        )
        .await
    {
        Ok(v) => v,
        Err(e) if e.kind == crate::ErrorKind::NotFound => {
            let mut errors = Errors::new();
            errors.insert("subject", "この事例の計画はこのゲートウェイで作成・送付されていません。計画を作成した自治体のコンソールで延長を記録してください。".into());
            return (
                StatusCode::BAD_REQUEST,
                form_page(&s, &t, &errors, None, None),
            )
                .into_response();
        }
        Err(e) => {
            let msg = pages::gateway_message(&e);
            return (
                StatusCode::BAD_GATEWAY,
                form_page(&s, &t, &Errors::new(), Some(("alert", &msg)), None),
            )
                .into_response();
        }
    };
    let plan = match revision(&t, &current) {
        Ok(p) => p,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                form_page(&s, &t, &errors, None, Some(&current)),
            )
                .into_response()
        }
    };
    match c
        .call_as(&staff, json!({"op": "distribute", "form": plan}))
        .await
    {
        Ok(v) => {
            pages::save_draft(&c, &staff, "extension", None);
            pages::distributed(&c, &s, "支援期間の延長を送付しました", &v).into_response()
        }
        Err(e) => {
            // Nothing typed is lost: the form comes back with the reason beside its field.
            let msg = pages::gateway_message(&e);
            let mut errors = Errors::new();
            if let Some((f, m)) = refusal_field(&e.message) {
                errors.insert(f, m.into());
            }
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                form_page(&s, &t, &errors, Some(("alert", &msg)), Some(&current)),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(fields: &[(&str, &str)]) -> Typed {
        let mut t = Typed::default();
        for (k, v) in fields {
            t.0.entry(k.to_string()).or_default().push(v.to_string());
        }
        t
    }

    pub(crate) fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            ("subject", "case-131059-2026-0007"),
            ("made_on", "2027-04-12"),
            ("extension_to", "2027-10-31"),
            ("reason", "就労支援の調整を続けるため"),
            ("meeting_on", "2027-04-10"),
            ("consent_version", "2"),
            ("consented_on", "2027-04-10"),
        ]
    }

    fn current() -> Value {
        let mut p: Value = serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/support_plan.json"
        ))
        .unwrap();
        p["support_period"] = json!({"from": "2026-11-01", "to": "2027-04-30"});
        p
    }

    #[test]
    fn an_extension_is_the_next_plan_version_with_the_extension_added() {
        let v = revision(&typed(&complete()), &current()).unwrap();
        let old = current()["version"].as_u64().unwrap();
        assert_eq!(v["version"], old + 1);
        assert_eq!(v["supersedes"]["version"], old);
        assert!(v["supersedes"]["reason"]
            .as_str()
            .unwrap()
            .contains("就労支援"));
        assert_eq!(v["support_period"]["extensions"][0]["to"], "2027-10-31");
        assert_eq!(v["support_period"]["extensions"][0]["consent_version"], 2);
    }

    #[test]
    fn wrong_extension_fields_get_japanese_messages() {
        let mut f = complete();
        f.retain(|(k, _)| *k != "reason");
        let e = revision(&typed(&f), &current()).unwrap_err();
        assert!(e["reason"].contains("延長の理由を入力"), "{e:?}");
        // An end that does not extend the period: the protocol's rule, beside the field.
        let mut t = typed(&complete());
        t.0.insert("extension_to".into(), vec!["2027-03-01".into()]);
        let e = revision(&t, &current()).unwrap_err();
        assert!(e["extension_to"].contains("支援期間の規則"), "{e:?}");
        // Beyond one year after discharge: an exception reason is needed.
        let mut t = typed(&complete());
        t.0.insert("extension_to".into(), vec!["2027-12-31".into()]);
        let e = revision(&t, &current()).unwrap_err();
        assert!(e["exception"].contains("例外の理由"), "{e:?}");
        t.0.insert("exception".into(), vec!["本人の希望で継続".into()]);
        revision(&t, &current()).unwrap();
    }
}
