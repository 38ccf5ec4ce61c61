//! The opinion letter form (様式3 with the 様式4 crisis plan) a hospital fills in and sends to
//! the authority making the plan. It shares the supporters, benefits, services and support rows
//! with the plan form ([`super::plan`]); the document is checked by the protocol's own
//! validation before it goes to the gateway.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};
use tsunagi_protocol::OrgId;

use super::accounts::Role;
use super::forms::{Errors, Typed};
use super::plan::{
    check_case, check_fields, common_sections, err, field, services_of, shared_parts, support_rows,
    Field, Kind, SEX, SUPPORTER, YES_NO,
};
use super::session::Session;
use super::views::page;
use super::{need, need_post, pages, Shared};

const HOUSING: &[(&str, &str)] = &[
    ("with_family", "家族と同居"),
    ("alone", "単身"),
    ("group_home", "グループホーム等"),
    ("other", "その他"),
    ("unknown", "不明"),
];

const HEAD: [Field; 21] = [
    ("subject", "事例の仮名", Kind::Text, true),
    ("written_on", "意見書作成日", Kind::Date, true),
    ("hospital_address", "医療機関の所在地", Kind::Text, true),
    ("hospital_director", "管理者", Kind::Text, true),
    ("person_name", "氏名", Kind::Text, true),
    ("person_furigana", "ふりがな", Kind::Text, true),
    ("person_sex", "性別", Kind::Select(SEX), true),
    ("person_birth_date", "生年月日", Kind::Date, true),
    ("person_return_address", "退院後の居住地", Kind::Text, true),
    (
        "person_municipality",
        "居住地の市区町村コード（6桁）",
        Kind::Text,
        true,
    ),
    (
        "person_housing",
        "住まいの状況",
        Kind::Select(HOUSING),
        true,
    ),
    ("person_phone", "電話番号", Kind::Text, true),
    ("diagnosis", "病名", Kind::Text, true),
    (
        "comorbidities",
        "身体合併症（読点「、」区切り）",
        Kind::Text,
        false,
    ),
    ("admission_date", "今回の入院年月日", Kind::Date, true),
    ("planned_discharge_date", "退院予定日", Kind::Date, false),
    ("wishes", "退院後の生活に関する本人の希望", Kind::Area, true),
    (
        "continued_admission",
        "入院継続の必要性",
        Kind::Select(YES_NO),
        true,
    ),
    (
        "support_period_proposal",
        "支援期間についての意見",
        Kind::Text,
        true,
    ),
    ("attending_physician", "主治医", Kind::Text, true),
    (
        "discharge_counsellor",
        "退院後生活環境相談員等",
        Kind::Text,
        true,
    ),
];

const TAIL: [Field; 6] = [
    (
        "policy_if_discontinued",
        "必要な医療等の支援の利用が継続されなかった場合の対処方針",
        Kind::Area,
        true,
    ),
    ("crisis_made_on", "クライシスプラン作成日", Kind::Date, true),
    (
        "crisis_warning_signs",
        "調子が悪くなりはじめたときのサイン",
        Kind::Area,
        true,
    ),
    (
        "crisis_what_i_do",
        "サインに気づいたときに自分がすること",
        Kind::Area,
        true,
    ),
    (
        "crisis_what_i_want",
        "周りの人にしてほしいこと",
        Kind::Area,
        true,
    ),
    (
        "crisis_what_i_do_not_want",
        "周りの人にしてほしくないこと",
        Kind::Area,
        true,
    ),
];

/// Checks the opinion letter form of `author` (a hospital): the document and its recipients
/// when right, the messages per field otherwise.
pub fn opinion(
    t: &Typed,
    author: &OrgId,
    members: &[(OrgId, String)],
) -> Result<(Value, Vec<OrgId>), Errors> {
    let mut e = Errors::new();
    check_fields(t, &HEAD, &mut e);
    check_fields(t, &SUPPORTER, &mut e);
    check_fields(t, &TAIL, &mut e);
    let muni = t.get("person_municipality");
    if !muni.is_empty() && (muni.len() != 6 || !muni.bytes().all(|b| b.is_ascii_digit())) {
        e.insert(
            "person_municipality",
            "市区町村コードは6桁の数字で入力してください（例: 131059）。".into(),
        );
    }
    check_case(t, &mut e);
    let rows = support_rows(t, members, &mut e);
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
    let (benefits, supporters, comorbid) = shared_parts(t);
    let candidates: Vec<&str> = members
        .iter()
        .filter(|(o, _)| t.has("candidates", o.as_str()))
        .map(|(o, _)| o.as_str())
        .collect();
    let name = members
        .iter()
        .find(|(o, _)| o == author)
        .map(|(_, n)| n.as_str())
        .unwrap_or("");
    let mut v = json!({
        "document_type": "opinion_letter",
        "author": author.as_str(),
        "subject": t.get("subject"),
        "written_on": t.get("written_on"),
        "hospital": {"org": author.as_str(), "name": name, "address": t.get("hospital_address"), "director": t.get("hospital_director")},
        "person": {
            "name": t.get("person_name"), "furigana": t.get("person_furigana"),
            "sex": t.get("person_sex"), "birth_date": t.get("person_birth_date"),
            "return_address": t.get("person_return_address"),
            "municipality": t.get("person_municipality"), "housing": t.get("person_housing"),
            "phone": t.get("person_phone"),
        },
        "diagnosis": {"psychiatric": t.get("diagnosis"), "physical_comorbidities": comorbid},
        "admission_date": t.get("admission_date"),
        "wishes": t.get("wishes"),
        "supporters": supporters,
        "continued_admission": {"required": t.get("continued_admission") == "yes"},
        "benefits": benefits,
        "services_needed": services_of(t),
        "support_rows": rows,
        "policy_if_discontinued": t.get("policy_if_discontinued"),
        "support_period_proposal": t.get("support_period_proposal"),
        "attending_physician": t.get("attending_physician"),
        "discharge_counsellor": t.get("discharge_counsellor"),
        "candidate_support_parties": candidates,
        "crisis_plan": {
            "made_on": t.get("crisis_made_on"),
            "warning_signs": t.get("crisis_warning_signs"),
            "what_i_do": t.get("crisis_what_i_do"),
            "what_i_want_others_to_do": t.get("crisis_what_i_want"),
            "what_i_do_not_want_others_to_do": t.get("crisis_what_i_do_not_want"),
            "emergency_contacts": [], "do_not_contact": [],
        },
    });
    if !t.get("planned_discharge_date").is_empty() {
        v["planned_discharge_date"] = t.get("planned_discharge_date").into();
    }
    let checked = serde_json::from_value::<tsunagi_protocol::document::OpinionLetter>(v.clone())
        .map_err(|x| x.to_string())
        .and_then(|p| p.validate().map_err(|x| x.to_string()));
    if let Err(detail) = checked {
        let f = if detail.contains("discharge") {
            "planned_discharge_date"
        } else if detail.contains("crisis") {
            "crisis_made_on"
        } else {
            "subject"
        };
        e.insert(f, format!("入力内容に矛盾があります（{detail}）。"));
        return Err(e);
    }
    Ok((v, recipients))
}

fn opinion_page(
    c: &Shared,
    s: &Session,
    t: &Typed,
    errors: &Errors,
    top: Option<(&str, &str)>,
) -> Markup {
    page(
        "意見書の作成・送付",
        Some(s),
        html! {
            h1 { "退院後支援に関する計画に係る意見書（様式3・4）の作成と送付" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            form method="post" action="/opinions/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "送付先（計画を作成する自治体）" }
                    @for (i, (o, n)) in c.members.iter().enumerate().filter(|(_, (o, _))| o.as_str().starts_with("lg:")) {
                        @let id = format!("to-{i}");
                        input type="checkbox" id=(id) name="to" value=(o.as_str()) checked[t.has("to", o.as_str())];
                        label for=(id) { (n) }
                    }
                    (err(errors, "to"))
                }
                fieldset {
                    legend { "本人・入院の情報" }
                    @for f in &HEAD { (field(t, errors, f)) }
                }
                (common_sections(c, t, errors))
                fieldset {
                    legend { "支援を担う候補の機関" }
                    @for (i, (o, n)) in c.members.iter().enumerate() {
                        @let id = format!("candidates-{i}");
                        input type="checkbox" id=(id) name="candidates" value=(o.as_str()) checked[t.has("candidates", o.as_str())];
                        label for=(id) { (n) }
                    }
                }
                fieldset {
                    legend { "対処方針・クライシスプラン（様式4）" }
                    @for f in &TAIL { (field(t, errors, f)) }
                }
                button class="primary" type="submit" name="action" value="send" { "意見書を送付する" }
                " "
                button class="secondary" type="submit" name="action" value="draft" { "下書きを保存" }
            }
        },
    )
}

/// `GET /opinions/new`: the opinion letter form (with the saved draft, if any).
pub(crate) async fn opinion_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let draft = pages::draft_of(&c, &staff, "opinion");
    let note = (!draft.0.is_empty()).then_some(("notice", "保存した下書きを表示しています。"));
    opinion_page(&c, &s, &draft, &Errors::new(), note).into_response()
}

/// `POST /opinions/new`: save a draft, or check the letter and send it for plan creation.
pub(crate) async fn opinion_submit(
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
        pages::save_draft(&c, &staff, "opinion", Some(t.clone()));
        return opinion_page(
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
                opinion_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg))),
            )
                .into_response();
        }
    };
    let (doc, to) = match opinion(&t, &org, &c.members) {
        Ok(x) => x,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                opinion_page(&c, &s, &t, &errors, None),
            )
                .into_response()
        }
    };
    let mut failed = None;
    for r in &to {
        let req = pages::send_request(&doc, r.as_str(), "plan_creation");
        if let Err(e) = c.call_as(&staff, req).await {
            failed = Some(format!(
                "{}: {}",
                c.name(r.as_str()),
                pages::gateway_message(&e)
            ));
        }
    }
    pages::save_draft(&c, &staff, "opinion", failed.is_some().then(|| t.clone()));
    match failed {
        None => page(
            "意見書を送付しました",
            Some(&s),
            html! { h1 { "意見書を送付しました" } p class="notice" role="status" { (to.len()) "件の送付を受け付けました。" } p { a href="/outbox" { "送信文書を見る" } } },
        )
        .into_response(),
        Some(msg) => (StatusCode::UNPROCESSABLE_ENTITY, opinion_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg)))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_fixture_letter_is_a_valid_letter() {
        let raw = include_str!("../../../fixtures/case-0007/opinion_letter.json");
        let d: Value = serde_json::from_str(raw).unwrap();
        let members: Vec<(OrgId, String)> = [
            ("lg:131059", "文京区 文京保健所"),
            ("mi:1310000017", "都立松風病院"),
            ("mi:1310000025", "本郷こころのクリニック"),
            ("mi:1360000011", "訪問看護ステーションあおば"),
        ]
        .iter()
        .map(|(o, n)| (o.parse().unwrap(), n.to_string()))
        .collect();
        let mut t = Typed::default();
        let mut put = |k: &str, v: &str| t.0.entry(k.to_owned()).or_default().push(v.to_owned());
        put("to", "lg:131059");
        for (k, path) in [
            ("subject", "/subject"),
            ("written_on", "/written_on"),
            ("hospital_address", "/hospital/address"),
            ("hospital_director", "/hospital/director"),
            ("person_name", "/person/name"),
            ("person_furigana", "/person/furigana"),
            ("person_sex", "/person/sex"),
            ("person_birth_date", "/person/birth_date"),
            ("person_return_address", "/person/return_address"),
            ("person_municipality", "/person/municipality"),
            ("person_housing", "/person/housing"),
            ("person_phone", "/person/phone"),
            ("diagnosis", "/diagnosis/psychiatric"),
            ("admission_date", "/admission_date"),
            ("planned_discharge_date", "/planned_discharge_date"),
            ("wishes", "/wishes"),
            ("support_period_proposal", "/support_period_proposal"),
            ("attending_physician", "/attending_physician"),
            ("discharge_counsellor", "/discharge_counsellor"),
            ("policy_if_discontinued", "/policy_if_discontinued"),
            ("crisis_made_on", "/crisis_plan/made_on"),
            ("crisis_warning_signs", "/crisis_plan/warning_signs"),
            ("crisis_what_i_do", "/crisis_plan/what_i_do"),
            (
                "crisis_what_i_want",
                "/crisis_plan/what_i_want_others_to_do",
            ),
            (
                "crisis_what_i_do_not_want",
                "/crisis_plan/what_i_do_not_want_others_to_do",
            ),
            ("supporter_name", "/supporters/0/name"),
            ("supporter_relation", "/supporters/0/relation"),
            ("supporter_contact", "/supporters/0/contact"),
            ("supporter_opinion", "/supporters/0/opinion"),
        ] {
            put(
                k,
                d.pointer(path)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{path}")),
            );
        }
        put("comorbidities", "2型糖尿病");
        put("continued_admission", "no");
        for (i, row) in d["support_rows"].as_array().unwrap().iter().enumerate() {
            for k in ["agency", "needs", "support", "contact"] {
                put(&format!("row{i}_{k}"), row[k].as_str().unwrap());
            }
        }
        for s in d["services_needed"].as_array().unwrap() {
            put("services", s.as_str().unwrap());
        }
        let (v, to) = opinion(&t, &"mi:1310000017".parse().unwrap(), &members).unwrap();
        assert_eq!(to.len(), 1);
        assert_eq!(v["hospital"], d["hospital"]);
        assert_eq!(v["person"], d["person"]);
        assert_eq!(v["support_rows"], d["support_rows"]);
        // A missing required field is named in Japanese.
        t.0.remove("wishes");
        let e = opinion(&t, &"mi:1310000017".parse().unwrap(), &members).unwrap_err();
        assert!(e["wishes"].contains("入力してください"), "{e:?}");
    }
}
