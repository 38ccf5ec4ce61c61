//! The support meeting record (支援会議の記録): the convening authority records who met, who was
//! absent, what was discussed and decided, and the written confidentiality undertakings of the
//! non-public parties; the gateway's `distribute` sends it to the meeting's parties only (the
//! absent ones included, so that they learn what was decided). Checked by the protocol's own
//! validation before it goes.

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

const HEAD: [Field; 3] = [
    ("subject", "事例の仮名", Kind::Text, true),
    ("held_on", "開催日", Kind::Date, true),
    ("plan_version", "協議した計画の版", Kind::Text, true),
];

const FAMILY: Field = (
    "family_attended",
    "出席した家族等（続柄を読点「、」区切りで。氏名は書かない。例: 母、兄）",
    Kind::Text,
    false,
);

const BODY: [Field; 4] = [
    ("agenda", "議題（1行に1つ）", Kind::Area, true),
    ("minutes", "議事の概要", Kind::Area, true),
    (
        "decisions",
        "決定事項（欠席者にも伝える内容）",
        Kind::Area,
        true,
    ),
    (
        "extension_to",
        "延長後の期間の終了日（会議で支援期間の延長を決めたとき）",
        Kind::Date,
        false,
    ),
];

/// The form field of the undertaking of member `i`.
fn undertaking_field(i: usize) -> String {
    format!("undertaking_{i}")
}

/// Whether `org` is a public body (an `lg:` id): it signs no confidentiality undertaking.
fn public(org: &OrgId) -> bool {
    org.as_str().starts_with("lg:")
}

/// Checks the form of the convener `author`'s gateway: the meeting record, or messages per
/// field.
pub fn record(t: &Typed, author: &OrgId, members: &[(OrgId, String)]) -> Result<Value, Errors> {
    let mut e = Errors::new();
    check_fields(t, &HEAD, &mut e);
    check_fields(t, std::slice::from_ref(&FAMILY), &mut e);
    check_fields(t, &BODY, &mut e);
    check_case(t, &mut e);
    let plan_version = t
        .get("plan_version")
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1);
    if plan_version.is_none() && !t.get("plan_version").is_empty() {
        e.insert(
            "plan_version",
            "協議した計画の版は1以上の半角数字で入力してください。".into(),
        );
    }
    let mut attendees: Vec<&OrgId> = vec![author];
    attendees.extend(
        members
            .iter()
            .map(|(o, _)| o)
            .filter(|o| *o != author && t.has("attendees", o.as_str())),
    );
    let absent: Vec<&OrgId> = members
        .iter()
        .map(|(o, _)| o)
        .filter(|o| *o != author && t.has("absent", o.as_str()))
        .collect();
    if let Some((_, name)) = members
        .iter()
        .find(|(o, _)| t.has("attendees", o.as_str()) && t.has("absent", o.as_str()))
    {
        e.insert(
            "absent",
            format!("{name}が出席者と欠席者の両方に選ばれています。どちらか一方にしてください。"),
        );
    }
    if attendees.len() + absent.len() < 2 {
        e.insert(
            "attendees",
            "出席した関係機関か欠席した関係機関を一つ以上選んでください（記録はそれらの機関に送られます）。"
                .into(),
        );
    }
    let held_on = t.get("held_on");
    let mut undertakings = Vec::new();
    for (i, (o, name)) in members.iter().enumerate() {
        if public(o) || !(attendees.contains(&o) || absent.contains(&o)) {
            continue;
        }
        let signed = t.get(&undertaking_field(i));
        let bad = |m: String| (undertaking_key(i), m);
        let problem = if signed.is_empty() {
            Some(bad(format!(
                "{name}は公的機関ではないため、秘密保持の同意（書面）の日付が必要です。"
            )))
        } else if signed.len() != 10 || signed.parse::<tsunagi_protocol::Date>().is_err() {
            Some(bad(
                "署名日は年-月-日（例: 2026-10-05）で入力してください。".into(),
            ))
        } else if !held_on.is_empty() && signed > held_on {
            Some(bad(format!(
                "{name}の秘密保持の同意（書面）は開催日までに得てください（署名日が開催日より後です）。"
            )))
        } else {
            None
        };
        match problem {
            Some((k, m)) => {
                e.insert(k, m);
            }
            None => undertakings.push(json!({"org": o.as_str(), "signed_on": signed})),
        }
    }
    if !e.is_empty() {
        return Err(e);
    }
    let list = |s: &str, seps: &[char]| -> Vec<String> {
        s.split(seps)
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let v = json!({
        "document_type": "meeting_record",
        "author": author.as_str(),
        "subject": t.get("subject"),
        "held_on": held_on,
        "plan_version": plan_version,
        "person_attended": t.has("person_attended", "yes"),
        "family_attended": list(t.get("family_attended"), &['、', ',']),
        "attendees": attendees.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        "absent": absent.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        "agenda": list(t.get("agenda"), &['\n']),
        "minutes": t.get("minutes"),
        "decisions": t.get("decisions"),
        "extension_to": Some(t.get("extension_to")).filter(|x| !x.is_empty()),
        "undertakings": undertakings,
    });
    let checked = serde_json::from_value::<tsunagi_protocol::document::MeetingRecord>(v.clone())
        .map_err(|x| x.to_string())
        .and_then(|r| r.validate().map_err(|x| x.to_string()));
    if let Err(detail) = checked {
        e.insert("held_on", format!("入力内容に矛盾があります（{detail}）。"));
        return Err(e);
    }
    Ok(v)
}

/// The undertakings of the first this many members get a message beside their own field; any
/// further one beside the undertakings as a whole.
const UNDERTAKING_FIELDS: usize = 512;

/// The key of the message for member `i`'s undertaking (the error map's keys are `'static`).
fn undertaking_key(i: usize) -> &'static str {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| (0..UNDERTAKING_FIELDS).map(undertaking_field).collect())
        .get(i)
        .map_or("undertakings", String::as_str)
}

fn form_page(
    c: &Shared,
    s: &Session,
    t: &Typed,
    errors: &Errors,
    top: Option<(&str, &str)>,
    org: Option<&OrgId>,
) -> Markup {
    let others: Vec<(usize, &(OrgId, String))> = c
        .members
        .iter()
        .enumerate()
        .filter(|(_, (o, _))| Some(o) != org)
        .collect();
    page(
        "支援会議の記録",
        Some(s),
        html! {
            h1 { "支援会議の記録と送付" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            p { "記録は会議の出席機関と欠席機関にだけ送られます（欠席した機関にも決定事項が伝わります）。" }
            form method="post" action="/meetings/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                @for f in &HEAD[..2] { (field(t, errors, f)) }
                p { strong { "開催者" } "： " (org.map(|o| c.name(o.as_str())).unwrap_or_else(|| "このゲートウェイの機関".into())) "（このゲートウェイの機関が開催者として署名します）" }
                (field(t, errors, &HEAD[2]))
                fieldset {
                    legend { "出席者（本人・家族・関係者）" }
                    input type="checkbox" id="person_attended" name="person_attended" value="yes" checked[t.has("person_attended", "yes")];
                    label for="person_attended" { "本人が出席した" }
                    (field(t, errors, &FAMILY))
                    p { "出席した関係機関" }
                    @for (i, (o, n)) in &others {
                        @let id = format!("attendees-{i}");
                        input type="checkbox" id=(id) name="attendees" value=(o.as_str()) checked[t.has("attendees", o.as_str())];
                        label for=(id) { (n) }
                    }
                    (err(errors, "attendees"))
                }
                fieldset {
                    legend { "欠席者" }
                    @for (i, (o, n)) in &others {
                        @let id = format!("absent-{i}");
                        input type="checkbox" id=(id) name="absent" value=(o.as_str()) checked[t.has("absent", o.as_str())];
                        label for=(id) { (n) }
                    }
                    (err(errors, "absent"))
                }
                @for f in &BODY[..3] { (field(t, errors, f)) }
                fieldset {
                    legend { "秘密保持の同意（書面）" }
                    p { "公的機関以外の出席・欠席機関は、会議の開催日までに書面で秘密保持に同意している必要があります。署名日を入力してください。" }
                    @for (i, (o, n)) in &others {
                        @if !public(o) {
                            @let f = undertaking_field(*i);
                            @let bad = errors.contains_key(f.as_str());
                            label for=(f) { (n) "の署名日" }
                            input type="date" id=(f) name=(f) value=(t.get(&f)) aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then(|| format!("{f}-error"))];
                            (err(errors, &f))
                        }
                    }
                    (err(errors, "undertakings"))
                }
                (field(t, errors, &BODY[3]))
                button class="primary" type="submit" name="action" value="send" { "会議の記録を送付する" }
                " "
                button class="secondary" type="submit" name="action" value="draft" { "下書きを保存" }
            }
        },
    )
}

/// `GET /meetings/new`: the meeting record form (with the saved draft, if any).
pub(crate) async fn meeting_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let org = c.org().await.ok();
    let draft = pages::draft_of(&c, &staff, "meeting");
    let note = (!draft.0.is_empty()).then_some(("notice", "保存した下書きを表示しています。"));
    form_page(&c, &s, &draft, &Errors::new(), note, org.as_ref()).into_response()
}

/// `POST /meetings/new`: save a draft, or check the record and distribute it to the meeting's
/// parties.
pub(crate) async fn meeting_submit(
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
                form_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg)), None),
            )
                .into_response();
        }
    };
    if t.get("action") == "draft" {
        pages::save_draft(&c, &staff, "meeting", Some(t.clone()));
        let saved = Some(("notice", "下書きを保存しました。"));
        return form_page(&c, &s, &t, &Errors::new(), saved, Some(&org)).into_response();
    }
    let doc = match record(&t, &org, &c.members) {
        Ok(x) => x,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                form_page(&c, &s, &t, &errors, None, Some(&org)),
            )
                .into_response()
        }
    };
    match c
        .call_as(&staff, json!({"op": "distribute", "form": doc}))
        .await
    {
        Ok(v) => {
            pages::save_draft(&c, &staff, "meeting", None);
            pages::distributed(&c, &s, "支援会議の記録を送付しました", &v).into_response()
        }
        Err(e) => {
            // Nothing typed is lost: the form comes back with the gateway's reason.
            let msg = pages::gateway_message(&e);
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                form_page(
                    &c,
                    &s,
                    &t,
                    &Errors::new(),
                    Some(("alert", &msg)),
                    Some(&org),
                ),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<(OrgId, String)> {
        [
            ("lg:131059", "文京区 文京保健所"),
            ("mi:1310000017", "都立松風病院"),
            ("ot:npo-komorebi", "NPO法人こもれび"),
        ]
        .iter()
        .map(|(o, n)| (o.parse().unwrap(), n.to_string()))
        .collect()
    }

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
            ("held_on", "2027-04-10"),
            ("plan_version", "1"),
            ("person_attended", "yes"),
            ("family_attended", "母、兄"),
            ("attendees", "mi:1310000017"),
            ("absent", "ot:npo-komorebi"),
            ("agenda", "支援期間の延長\n就労支援"),
            ("minutes", "本人は就労継続支援B型の利用を希望した。"),
            ("decisions", "支援期間を2027-10-31まで延長する。"),
            ("extension_to", "2027-10-31"),
            ("undertaking_1", "2026-10-20"),
            ("undertaking_2", "2026-10-20"),
        ]
    }

    #[test]
    fn a_complete_meeting_form_is_a_valid_record() {
        let author: OrgId = "lg:131059".parse().unwrap();
        let v = record(&typed(&complete()), &author, &members()).unwrap();
        assert_eq!(v["attendees"], json!(["lg:131059", "mi:1310000017"]));
        assert_eq!(v["absent"], json!(["ot:npo-komorebi"]));
        assert_eq!(v["family_attended"], json!(["母", "兄"]));
        assert_eq!(v["agenda"], json!(["支援期間の延長", "就労支援"]));
        assert_eq!(v["extension_to"], "2027-10-31");
        assert_eq!(v["undertakings"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn wrong_meeting_fields_get_japanese_messages() {
        let author: OrgId = "lg:131059".parse().unwrap();
        let mut f = complete();
        f.retain(|(k, _)| !matches!(*k, "minutes" | "undertaking_2"));
        f.push(("attendees", "ot:npo-komorebi"));
        f.push(("plan_version", "0"));
        let mut t = typed(&f);
        t.0.insert("plan_version".into(), vec!["0".into()]);
        t.0.insert("undertaking_1".into(), vec!["2027-05-01".into()]);
        let e = record(&t, &author, &members()).unwrap_err();
        assert!(e["minutes"].contains("議事の概要を入力"), "{e:?}");
        assert!(e["plan_version"].contains("1以上"), "{e:?}");
        assert!(e["absent"].contains("両方"), "{e:?}");
        assert!(e["undertaking_1"].contains("開催日までに"), "{e:?}");
        assert!(
            e["undertaking_2"].contains("秘密保持の同意（書面）"),
            "{e:?}"
        );
    }
}
