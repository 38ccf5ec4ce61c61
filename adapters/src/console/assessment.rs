//! The needs assessment form a hospital fills in and sends (様式5 with the 様式6 overall
//! assessment): every rated item in the order of the seed form, with the staff's and the
//! person's rating and a note, then the Form 6 domains. Checked with Japanese messages, then by
//! the protocol's own validation before it goes to the gateway.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Map, Value};
use tsunagi_protocol::document::labels::{FORM5_ITEMS, FORM6_COLUMNS, FORM6_DOMAINS};
use tsunagi_protocol::OrgId;

use super::accounts::Role;
use super::forms::{Errors, Typed};
use super::plan::{check_case, check_fields, err, field, Field, Kind};
use super::session::Session;
use super::views::page;
use super::{need, need_post, pages, Shared};

const SEX: &[(&str, &str)] = &[
    ("male", "男"),
    ("female", "女"),
    ("unspecified", "回答なし"),
];
/// Ratings as the form prints them: 0 no problem, 1 met need, 2 unmet need, 9 unknown.
const RATINGS: &[(&str, &str)] = &[
    ("0", "0 問題なし"),
    ("1", "1 支援で解決"),
    ("2", "2 支援が必要"),
    ("9", "9 不明"),
];

const HEAD: [Field; 8] = [
    ("subject", "事例の仮名", Kind::Text, true),
    ("assessed_on", "評価日", Kind::Date, true),
    ("physician", "主治医", Kind::Text, true),
    (
        "discharge_counsellor",
        "退院後生活環境相談員等",
        Kind::Text,
        true,
    ),
    ("person_name", "氏名", Kind::Text, true),
    ("person_sex", "性別", Kind::Select(SEX), true),
    ("person_age", "年齢", Kind::Text, true),
    ("opinion", "医療機関としての意見", Kind::Area, true),
];

/// Checks the assessment form of `author` (a hospital): the document and its recipients when
/// right, the messages per field otherwise.
pub fn assessment(
    t: &Typed,
    author: &OrgId,
    members: &[(OrgId, String)],
) -> Result<(Value, Vec<OrgId>), Errors> {
    let mut e = Errors::new();
    check_fields(t, &HEAD, &mut e);
    if !t.get("person_age").is_empty()
        && t.get("person_age")
            .parse::<u16>()
            .ok()
            .filter(|a| *a <= 130)
            .is_none()
    {
        e.insert(
            "person_age",
            "年齢は0から130までの数字で入力してください。".into(),
        );
    }
    check_case(t, &mut e);
    let mut items = Map::new();
    for item in FORM5_ITEMS.iter() {
        let staff = t.get(&format!("{}_staff", item.code));
        let person = t.get(&format!("{}_self", item.code));
        let Some(staff_n) = staff
            .parse::<u8>()
            .ok()
            .filter(|_| RATINGS.iter().any(|(r, _)| *r == staff))
        else {
            e.insert(
                field_name(format!("{}_staff", item.code)),
                format!("{}の職員評価を選んでください。", item.name),
            );
            continue;
        };
        let self_v = match person {
            "" => Value::Null,
            p if RATINGS.iter().any(|(r, _)| *r == p) => {
                p.parse::<u8>().map(Value::from).unwrap_or(Value::Null)
            }
            _ => {
                e.insert(
                    field_name(format!("{}_self", item.code)),
                    format!("{}の本人評価を選び直してください。", item.name),
                );
                continue;
            }
        };
        let mut v = json!({"staff": staff_n, "self": self_v, "note": t.get(&format!("{}_note", item.code))});
        if item.code == "other" {
            v["label"] = t.get("other_label").into();
        }
        items.insert(item.code.into(), v);
    }
    let mut summary = Map::new();
    for (d, _) in FORM6_DOMAINS {
        if d == "overall" {
            summary.insert(d.into(), t.get("summary_overall").into());
            continue;
        }
        let mut m = Map::new();
        for (c, _) in FORM6_COLUMNS {
            m.insert(c.into(), t.get(&format!("summary_{d}_{c}")).into());
        }
        summary.insert(d.into(), Value::Object(m));
    }
    let recipients: Vec<OrgId> = members
        .iter()
        .filter(|(o, _)| t.has("to", o.as_str()))
        .map(|(o, _)| o.clone())
        .collect();
    if recipients.is_empty() {
        e.insert("to", "送付先を一つ以上選んでください。".into());
    }
    if !e.is_empty() {
        return Err(e);
    }
    let institution = members
        .iter()
        .find(|(o, _)| o == author)
        .map(|(_, n)| n.clone())
        .unwrap_or_default();
    let v = json!({
        "document_type": "needs_assessment",
        "author": author.as_str(),
        "subject": t.get("subject"),
        "assessed_on": t.get("assessed_on"),
        "institution": institution,
        "physician": t.get("physician"),
        "discharge_counsellor": t.get("discharge_counsellor"),
        "person": {"name": t.get("person_name"), "sex": t.get("person_sex"), "age": t.get("person_age").parse::<u16>().unwrap_or(0)},
        "items": items,
        "opinion": t.get("opinion"),
        "summary": summary,
    });
    let checked = serde_json::from_value::<tsunagi_protocol::document::NeedsAssessment>(v.clone())
        .map_err(|x| x.to_string())
        .and_then(|a| a.validate().map_err(|x| x.to_string()));
    if let Err(detail) = checked {
        e.insert("subject", format!("入力内容に矛盾があります（{detail}）。"));
        return Err(e);
    }
    Ok((v, recipients))
}

/// The rating fields of every item (`A1_staff`, `A1_self`, …), made once, so that messages can
/// be keyed by them.
static RATING_FIELDS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    FORM5_ITEMS
        .iter()
        .flat_map(|i| [format!("{}_staff", i.code), format!("{}_self", i.code)])
        .collect()
});

fn field_name(name: String) -> &'static str {
    RATING_FIELDS
        .iter()
        .find(|f| **f == name)
        .map(String::as_str)
        .unwrap_or("subject")
}

fn rating_select(t: &Typed, errors: &Errors, name: &str, label: &str, optional: bool) -> Markup {
    html! {
        label class="visually-hidden" for=(name) { (label) }
        select id=(name) name=(name) {
            @if optional { option value="" { "—" } } @else { option value="" { "選択" } }
            @for (v, l) in RATINGS { option value=(v) selected[t.get(name) == *v] { (l) } }
        }
        (err(errors, name))
    }
}

fn assessment_page(
    c: &Shared,
    s: &Session,
    t: &Typed,
    errors: &Errors,
    top: Option<(&str, &str)>,
) -> Markup {
    page(
        "アセスメントの作成・送付",
        Some(s),
        html! {
            h1 { "退院後支援のニーズに関するアセスメント（様式5・6）の作成と送付" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            form method="post" action="/assessments/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "送付先" }
                    @for (i, (o, n)) in c.members.iter().enumerate().filter(|(_, (o, _))| o.as_str().starts_with("lg:")) {
                        @let id = format!("to-{i}");
                        input type="checkbox" id=(id) name="to" value=(o.as_str()) checked[t.has("to", o.as_str())];
                        label for=(id) { (n) }
                    }
                    (err(errors, "to"))
                }
                fieldset {
                    legend { "基本情報" }
                    @for f in &HEAD[..7] { (field(t, errors, f)) }
                }
                table {
                    caption { "様式5 評価項目（0 問題なし・1 支援で解決・2 支援が必要・9 不明）" }
                    thead { tr { th scope="col" { "番号" } th scope="col" { "項目" } th scope="col" { "職員評価" } th scope="col" { "本人評価" } th scope="col" { "特記事項" } } }
                    tbody {
                        @for item in FORM5_ITEMS.iter() {
                            tr {
                                td { (item.code) }
                                td {
                                    (item.name)
                                    @if item.code == "other" {
                                        label class="visually-hidden" for="other_label" { "その他の項目名" }
                                        input type="text" id="other_label" name="other_label" value=(t.get("other_label"));
                                    }
                                }
                                td { (rating_select(t, errors, &format!("{}_staff", item.code), &format!("{} 職員評価", item.name), false)) }
                                td { (rating_select(t, errors, &format!("{}_self", item.code), &format!("{} 本人評価", item.name), true)) }
                                td {
                                    @let n = format!("{}_note", item.code);
                                    label class="visually-hidden" for=(n) { (item.name) " 特記事項" }
                                    input type="text" id=(n) name=(n) value=(t.get(&n));
                                }
                            }
                        }
                    }
                }
                fieldset {
                    legend { "様式6 総合アセスメント" }
                    @for (d, dl) in FORM6_DOMAINS {
                        @if d == "overall" {
                            label for="summary_overall" { (dl) }
                            textarea id="summary_overall" name="summary_overall" { (t.get("summary_overall")) }
                        } @else {
                            @for (col, cl) in FORM6_COLUMNS {
                                @let n = format!("summary_{d}_{col}");
                                label for=(n) { (dl) "：" (cl) }
                                input type="text" id=(n) name=(n) value=(t.get(&n));
                            }
                        }
                    }
                    (field(t, errors, &HEAD[7]))
                }
                button class="primary" type="submit" name="action" value="send" { "アセスメントを送付する" }
                " "
                button class="secondary" type="submit" name="action" value="draft" { "下書きを保存" }
            }
        },
    )
}

/// `GET /assessments/new`: the assessment form (with the saved draft, if any).
pub(crate) async fn assessment_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let draft = pages::draft_of(&c, &staff, "assessment");
    let note = (!draft.0.is_empty()).then_some(("notice", "保存した下書きを表示しています。"));
    assessment_page(&c, &s, &draft, &Errors::new(), note).into_response()
}

/// `POST /assessments/new`: save a draft, or check the assessment and send it.
pub(crate) async fn assessment_submit(
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
        pages::save_draft(&c, &staff, "assessment", Some(t.clone()));
        return assessment_page(
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
            return (
                StatusCode::BAD_GATEWAY,
                assessment_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg))),
            )
                .into_response();
        }
    };
    let (doc, to) = match assessment(&t, &org, &c.members) {
        Ok(x) => x,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                assessment_page(&c, &s, &t, &errors, None),
            )
                .into_response()
        }
    };
    let mut failed = None;
    let mut sent = 0;
    for r in &to {
        let req = pages::send_request(&doc, r.as_str(), "plan_creation");
        match c.call_as(&staff, req).await {
            Ok(_) => sent += 1,
            Err(e) => {
                failed = Some(format!(
                    "{}: {}",
                    c.name(r.as_str()),
                    pages::gateway_message(&e)
                ))
            }
        }
    }
    pages::save_draft(
        &c,
        &staff,
        "assessment",
        failed.is_some().then(|| t.clone()),
    );
    match failed {
        None => page(
            "アセスメントを送付しました",
            Some(&s),
            html! { h1 { "アセスメントを送付しました" } p class="notice" role="status" { (sent) "件の送付を受け付けました。" } p { a href="/outbox" { "送信文書を見る" } } },
        )
        .into_response(),
        Some(msg) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            assessment_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg))),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture assessment, as a hospital clerk types it in.
    fn typed_fixture() -> Typed {
        let raw = include_str!("../../../fixtures/case-0007/needs_assessment.json");
        let d: Value = serde_json::from_str(raw).unwrap();
        let mut t = Typed::default();
        let mut put = |k: String, v: String| {
            t.0.insert(k, vec![v]);
        };
        put("to".into(), "lg:131059".into());
        for k in [
            "subject",
            "assessed_on",
            "physician",
            "discharge_counsellor",
            "opinion",
        ] {
            put(k.into(), d[k].as_str().unwrap().into());
        }
        put(
            "person_name".into(),
            d["person"]["name"].as_str().unwrap().into(),
        );
        put(
            "person_sex".into(),
            d["person"]["sex"].as_str().unwrap().into(),
        );
        put("person_age".into(), d["person"]["age"].to_string());
        for (code, v) in d["items"].as_object().unwrap() {
            put(format!("{code}_staff"), v["staff"].to_string());
            if let Some(n) = v["self"].as_u64() {
                put(format!("{code}_self"), n.to_string());
            }
            put(format!("{code}_note"), v["note"].as_str().unwrap().into());
        }
        for (dom, v) in d["summary"].as_object().unwrap() {
            match v {
                Value::String(s) => put(format!("summary_{dom}"), s.clone()),
                Value::Object(m) => {
                    for (c, s) in m {
                        put(format!("summary_{dom}_{c}"), s.as_str().unwrap().into());
                    }
                }
                _ => {}
            }
        }
        t
    }

    fn members() -> Vec<(OrgId, String)> {
        [
            ("lg:131059", "文京区 文京保健所"),
            ("mi:1310000017", "都立松風病院"),
        ]
        .iter()
        .map(|(o, n)| (o.parse().unwrap(), n.to_string()))
        .collect()
    }

    #[test]
    fn the_typed_fixture_is_the_fixture() {
        let (v, to) = assessment(
            &typed_fixture(),
            &"mi:1310000017".parse().unwrap(),
            &members(),
        )
        .unwrap();
        let raw = include_str!("../../../fixtures/case-0007/needs_assessment.json");
        let d: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(v, d, "the form reproduces the fixture exactly");
        assert_eq!(to.len(), 1);
    }

    #[test]
    fn a_missing_rating_is_named_in_japanese() {
        let mut t = typed_fixture();
        t.0.remove("B6_staff");
        t.0.insert("person_age".into(), vec!["二十".into()]);
        let e = assessment(&t, &"mi:1310000017".parse().unwrap(), &members()).unwrap_err();
        assert!(e["B6_staff"].contains("金銭管理の職員評価"), "{e:?}");
        assert!(e["person_age"].contains("年齢"), "{e:?}");
    }
}
