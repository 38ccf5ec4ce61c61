//! The plan form (様式1 with the 様式2 crisis plan) an authority fills in and sends: its fields
//! in the order of the seed form, the checks with Japanese messages, and the plan JSON it
//! becomes (checked again by the protocol's own validation before it goes to the gateway).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};
use tsunagi_protocol::OrgId;

use super::accounts::Role;
use super::forms::{Errors, Typed};
use super::session::Session;
use super::views::page;
use super::{need, need_post, pages, Shared};

/// How a field is typed in.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Date,
    Area,
    Select(&'static [(&'static str, &'static str)]),
}

/// A field: name, label, kind, required.
pub(crate) type Field = (&'static str, &'static str, Kind, bool);

pub(crate) const SEX: &[(&str, &str)] = &[
    ("male", "男"),
    ("female", "女"),
    ("unspecified", "回答なし"),
];
pub(crate) const ADMISSION: &[(&str, &str)] = &[
    ("involuntary_measure", "措置入院"),
    ("emergency_measure", "緊急措置入院"),
    ("medical_protection", "医療保護入院"),
    ("voluntary", "任意入院"),
];
pub(crate) const BENEFIT: &[(&str, &str)] = &[
    ("unknown", "不明"),
    ("yes", "有"),
    ("no", "無"),
    ("to_apply", "申請予定"),
];
pub(crate) const YES_NO: &[(&str, &str)] = &[("no", "不要"), ("yes", "必要")];

/// The benefits of the form's basic information, in its order.
pub(crate) const BENEFITS: [(&str, &str); 8] = [
    ("independence_support_medical", "自立支援医療"),
    ("mental_disability_certificate", "精神障害者保健福祉手帳"),
    ("rehabilitation_certificate", "療育手帳"),
    ("physical_disability_certificate", "身体障害者手帳"),
    ("disability_pension", "障害年金"),
    ("disability_support_category", "障害支援区分"),
    ("long_term_care_certification", "要介護認定"),
    ("public_assistance", "生活保護"),
];

/// The services the plan may say are needed.
pub(crate) const SERVICES: [(&str, &str); 7] = [
    ("outpatient_psychiatry", "精神科外来"),
    ("health_centre_consultation", "保健所等による相談支援"),
    (
        "other_psychiatric_services",
        "その他の精神科医療サービス（訪問看護等）",
    ),
    ("comorbidity_treatment", "身体合併症の治療"),
    ("disability_welfare", "障害福祉サービス"),
    ("long_term_care", "介護サービス"),
    ("other", "その他"),
];

/// Support rows on the form.
pub(crate) const ROWS: usize = 3;

const HEAD: [Field; 19] = [
    ("subject", "事例の仮名", Kind::Text, true),
    ("made_on", "計画作成日", Kind::Date, true),
    (
        "version",
        "計画の版（初回は1、見直しごとに1つ増やす）",
        Kind::Text,
        false,
    ),
    (
        "revision_reason",
        "見直しの理由（第2版以降）",
        Kind::Area,
        false,
    ),
    ("person_name", "氏名", Kind::Text, true),
    ("person_furigana", "ふりがな", Kind::Text, true),
    ("person_sex", "性別", Kind::Select(SEX), true),
    ("person_birth_date", "生年月日", Kind::Date, true),
    ("person_return_address", "退院後の居住地", Kind::Text, true),
    (
        "person_municipality",
        "居住地の市区町村コード（6桁。住所不定・帰住先不明のときは空欄）",
        Kind::Text,
        false,
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
    ("admission_type", "入院形態", Kind::Select(ADMISSION), true),
    (
        "hospital_contact",
        "入院先医療機関の連絡先",
        Kind::Text,
        true,
    ),
    ("discharge_date", "退院日（予定）", Kind::Date, false),
    ("wishes", "退院後の生活に関する本人の希望", Kind::Area, true),
    (
        "continued_admission",
        "入院継続の必要性",
        Kind::Select(YES_NO),
        true,
    ),
];

pub(crate) const SUPPORTER: [Field; 4] = [
    ("supporter_name", "支援者の氏名", Kind::Text, false),
    ("supporter_relation", "本人との関係", Kind::Text, false),
    ("supporter_contact", "連絡先", Kind::Text, false),
    (
        "supporter_opinion",
        "家族その他の支援者の意見",
        Kind::Area,
        false,
    ),
];

const TAIL: [Field; 8] = [
    (
        "policy_if_discontinued",
        "必要な医療等の支援の利用が継続されなかった場合の対処方針",
        Kind::Area,
        true,
    ),
    ("period_from", "支援期間（開始）", Kind::Date, true),
    ("period_to", "支援期間（終了）", Kind::Date, true),
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

fn is_date(s: &str) -> bool {
    s.len() == 10 && s.parse::<tsunagi_protocol::Date>().is_ok()
}

pub(crate) fn check_fields(t: &Typed, fields: &[Field], e: &mut Errors) {
    for (name, label, kind, req) in fields {
        let v = t.get(name);
        if v.is_empty() {
            if *req {
                e.insert(name, format!("{label}を入力してください。"));
            }
            continue;
        }
        match kind {
            Kind::Date if !is_date(v) => {
                e.insert(
                    name,
                    format!("{label}は年-月-日（例: 2026-10-05）で入力してください。"),
                );
            }
            Kind::Select(opts) if !opts.iter().any(|(o, _)| o == &v) => {
                e.insert(name, format!("{label}を選び直してください。"));
            }
            Kind::Text if v.chars().count() > 200 => {
                e.insert(name, format!("{label}は200文字以内で入力してください。"));
            }
            Kind::Area if v.chars().count() > 2000 => {
                e.insert(name, format!("{label}は2000文字以内で入力してください。"));
            }
            _ => {}
        }
    }
}

/// Checks the form's case pseudonym (`subject`) when given (its being required is the
/// field list's business).
pub(crate) fn check_case(t: &Typed, e: &mut Errors) {
    let subject = t.get("subject");
    if !subject.is_empty() && subject.parse::<tsunagi_protocol::CaseId>().is_err() {
        e.insert(
            "subject",
            "事例の仮名は「case-」で始まる半角小文字・数字・「-」で入力してください。".into(),
        );
    }
}

/// Checks the plan form of `author`'s gateway: the plan JSON and its recipients when right, the
/// messages per field otherwise.
pub fn plan(
    t: &Typed,
    author: &OrgId,
    members: &[(OrgId, String)],
) -> Result<(Value, Vec<OrgId>), Errors> {
    let mut e = Errors::new();
    check_fields(t, &HEAD, &mut e);
    check_fields(t, &SUPPORTER, &mut e);
    check_fields(t, &TAIL, &mut e);
    check_case(t, &mut e);
    let muni = t.get("person_municipality");
    if !muni.is_empty() && (muni.len() != 6 || !muni.bytes().all(|b| b.is_ascii_digit())) {
        e.insert(
            "person_municipality",
            "市区町村コードは6桁の数字で入力してください（例: 131059）。".into(),
        );
    }
    let version = match t.get("version") {
        "" => Some(1),
        v => v.parse::<u32>().ok().filter(|n| *n >= 1),
    };
    match version {
        None => {
            e.insert(
                "version",
                "計画の版は1以上の半角数字で入力してください。".into(),
            );
        }
        Some(n) if n > 1 && t.get("revision_reason").trim().is_empty() => {
            e.insert(
                "revision_reason",
                "見直し後の計画には見直しの理由を入力してください。".into(),
            );
        }
        _ => {}
    }
    let hospital = members
        .iter()
        .find(|(o, _)| o.as_str() == t.get("hospital"));
    if hospital.is_none() || !t.get("hospital").starts_with("mi:") {
        e.insert("hospital", "入院先医療機関を選んでください。".into());
    }
    let rows = support_rows(t, members, &mut e);
    let services = services_of(t);
    let recipients: Vec<OrgId> = members
        .iter()
        .filter(|(o, _)| t.has("to", o.as_str()))
        .map(|(o, _)| o.clone())
        .collect();
    if recipients.is_empty() {
        e.insert("to", "送付先を一つ以上選んでください。".into());
    }
    if t.get("purpose") != "plan_creation" && t.get("purpose") != "plan_implementation" {
        e.insert("purpose", "送付の目的を選んでください。".into());
    }
    if !e.is_empty() {
        return Err(e);
    }
    let (benefits, supporters, comorbid) = shared_parts(t);
    let (hospital_org, hospital_name) = hospital
        .map(|(o, n)| (o.as_str(), n.as_str()))
        .unwrap_or_default();
    let version = version.unwrap_or(1);
    // A revision names the version it revises; the author's gateway fills in its digest.
    let supersedes =
        (version > 1).then(|| json!({"version": version - 1, "reason": t.get("revision_reason")}));
    let municipality = Some(t.get("person_municipality")).filter(|m| !m.is_empty());
    let mut v = json!({
        "document_type": "support_plan",
        "author": author.as_str(),
        "subject": t.get("subject"),
        "made_on": t.get("made_on"),
        "version": version,
        "supersedes": supersedes,
        "person": {
            "name": t.get("person_name"), "furigana": t.get("person_furigana"),
            "sex": t.get("person_sex"), "birth_date": t.get("person_birth_date"),
            "return_address": t.get("person_return_address"),
            "municipality": municipality, "phone": t.get("person_phone"),
        },
        "diagnosis": {"psychiatric": t.get("diagnosis"), "physical_comorbidities": comorbid},
        "admission_date": t.get("admission_date"),
        "admission_type": t.get("admission_type"),
        "hospital": {"org": hospital_org, "name": hospital_name, "contact": t.get("hospital_contact")},
        "wishes": t.get("wishes"),
        "supporters": supporters,
        "continued_admission": {"required": t.get("continued_admission") == "yes"},
        "benefits": benefits,
        "services_needed": services,
        "support_rows": rows,
        "policy_if_discontinued": t.get("policy_if_discontinued"),
        "support_period": {"from": t.get("period_from"), "to": t.get("period_to")},
        "crisis_plan": {
            "made_on": t.get("crisis_made_on"),
            "warning_signs": t.get("crisis_warning_signs"),
            "what_i_do": t.get("crisis_what_i_do"),
            "what_i_want_others_to_do": t.get("crisis_what_i_want"),
            "what_i_do_not_want_others_to_do": t.get("crisis_what_i_do_not_want"),
            "emergency_contacts": [], "do_not_contact": [],
        },
        "relocation_clause": t.has("relocation_clause", "yes"),
    });
    if !t.get("discharge_date").is_empty() {
        v["discharge_date"] = t.get("discharge_date").into();
    }
    // The protocol's own checks (dates in order, roles of the orgs …), as the gateway runs them.
    let checked = serde_json::from_value::<tsunagi_protocol::document::SupportPlan>(v.clone())
        .map_err(|x| x.to_string())
        .and_then(|p| p.validate().map_err(|x| x.to_string()));
    if let Err(detail) = checked {
        let field = field_of(&detail);
        e.insert(field, format!("入力内容に矛盾があります（{detail}）。"));
        return Err(e);
    }
    Ok((v, recipients))
}

/// The support rows typed in (an agency must be chosen for a row with anything in it).
pub(crate) fn support_rows(t: &Typed, members: &[(OrgId, String)], e: &mut Errors) -> Vec<Value> {
    let find = |org: &str| members.iter().find(|(o, _)| o.as_str() == org);
    let mut rows = Vec::new();
    for (i, agency_field) in ROW_AGENCY.iter().enumerate() {
        let agency = t.get(&format!("row{i}_agency")).to_owned();
        let needs = t.get(&format!("row{i}_needs")).to_owned();
        let support = t.get(&format!("row{i}_support")).to_owned();
        let contact = t.get(&format!("row{i}_contact")).to_owned();
        if agency.is_empty() && needs.is_empty() && support.is_empty() && contact.is_empty() {
            continue;
        }
        match find(&agency) {
            None => {
                e.insert(agency_field, "支援を行う機関を選んでください。".into());
            }
            Some((org, name)) => rows.push(json!({
                "agency": org.as_str(), "agency_name": name, "needs": needs,
                "support": support, "contact": contact,
            })),
        }
    }
    if rows.is_empty() && !e.contains_key(ROW_AGENCY[0]) {
        e.insert(ROW_AGENCY[0], "支援内容を一行以上入力してください。".into());
    }
    rows
}

/// The services ticked.
pub(crate) fn services_of(t: &Typed) -> Vec<&'static str> {
    SERVICES
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| t.has("services", s))
        .collect()
}

/// Benefits, supporters and comorbidities as the plan and the opinion letter write them.
pub(crate) fn shared_parts(t: &Typed) -> (Value, Value, Vec<String>) {
    let mut benefits = serde_json::Map::new();
    for (b, _) in BENEFITS {
        let s = t.get(&format!("benefit_{b}"));
        let s = if BENEFIT.iter().any(|(o, _)| *o == s) {
            s
        } else {
            "unknown"
        };
        benefits.insert(b.into(), json!({"status": s}));
    }
    let supporters = if t.get("supporter_name").is_empty() {
        json!([])
    } else {
        json!([{ "name": t.get("supporter_name"), "relation": t.get("supporter_relation"),
                 "contact": t.get("supporter_contact"), "opinion": t.get("supporter_opinion") }])
    };
    let comorbid: Vec<String> = t
        .get("comorbidities")
        .split(['、', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (Value::Object(benefits), supporters, comorbid)
}

pub(crate) const ROW_AGENCY: [&str; ROWS] = ["row0_agency", "row1_agency", "row2_agency"];

/// The form field a protocol validation message is about.
fn field_of(detail: &str) -> &'static str {
    for (needle, field) in [
        ("discharge_date", "discharge_date"),
        ("support_period", "period_to"),
        ("crisis_plan", "crisis_made_on"),
        ("made_on", "made_on"),
        ("birth_date", "person_birth_date"),
        ("municipality", "person_municipality"),
        ("hospital", "hospital"),
        ("author", "to"),
    ] {
        if detail.contains(needle) {
            return field;
        }
    }
    "subject"
}

pub(crate) fn err(errors: &Errors, name: &str) -> Markup {
    html! { @if let Some(m) = errors.get(name) { p class="error" id={ (name) "-error" } { (m) } } }
}

pub(crate) fn field(t: &Typed, errors: &Errors, f: &Field) -> Markup {
    let (name, label, kind, req) = *f;
    let bad = errors.contains_key(name);
    let described = if bad {
        format!("{name}-error")
    } else {
        String::new()
    };
    html! {
        label for=(name) { (label) @if req { " " span aria-hidden="true" { "（必須）" } } }
        @match kind {
            Kind::Area => {
                textarea id=(name) name=(name) required[req] aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some(&described)] { (t.get(name)) }
            }
            Kind::Select(opts) => {
                select id=(name) name=(name) required[req] aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some(&described)] {
                    option value="" { "選んでください" }
                    @for (v, l) in opts { option value=(v) selected[t.get(name) == *v] { (l) } }
                }
            }
            Kind::Date => {
                input type="date" id=(name) name=(name) value=(t.get(name)) required[req] aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some(&described)];
            }
            Kind::Text => {
                input type="text" id=(name) name=(name) value=(t.get(name)) required[req] aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some(&described)];
            }
        }
        (err(errors, name))
    }
}

fn org_select(
    t: &Typed,
    errors: &Errors,
    name: &str,
    label: &str,
    orgs: &[&(OrgId, String)],
) -> Markup {
    html! {
        label for=(name) { (label) }
        select id=(name) name=(name) {
            option value="" { "選んでください" }
            @for (o, n) in orgs { option value=(o.as_str()) selected[t.get(name) == o.as_str()] { (n) } }
        }
        (err(errors, name))
    }
}

fn plan_page(
    c: &Shared,
    s: &Session,
    t: &Typed,
    errors: &Errors,
    top: Option<(&str, &str)>,
) -> Markup {
    let hospitals: Vec<&(OrgId, String)> = c
        .members
        .iter()
        .filter(|(o, _)| o.as_str().starts_with("mi:"))
        .collect();
    page(
        "計画の作成・送付",
        Some(s),
        html! {
            h1 { "退院後支援に関する計画（様式1・2）の作成と送付" }
            @if let Some((class, msg)) = top { p class=(class) role="alert" { (msg) } }
            @if !errors.is_empty() { p class="alert" role="alert" { "入力内容を確認してください（" (errors.len()) "件）。" } }
            form method="post" action="/plans/new" novalidate {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "送付" }
                    @for (i, (o, n)) in c.members.iter().enumerate() {
                        @let id = format!("to-{i}");
                        input type="checkbox" id=(id) name="to" value=(o.as_str()) checked[t.has("to", o.as_str())];
                        label for=(id) { (n) }
                    }
                    (err(errors, "to"))
                    label for="purpose" { "送付の目的" }
                    select id="purpose" name="purpose" {
                        option value="plan_implementation" selected[t.get("purpose") != "plan_creation"] { "計画に基づく支援の実施" }
                        option value="plan_creation" selected[t.get("purpose") == "plan_creation"] { "計画の作成（共同作成者・関係機関との調整）" }
                    }
                    (err(errors, "purpose"))
                }
                fieldset {
                    legend { "本人の情報" }
                    @for f in &HEAD[..11] { (field(t, errors, f)) }
                }
                fieldset {
                    legend { "入院の情報" }
                    @for f in &HEAD[11..14] { (field(t, errors, f)) }
                    (org_select(t, errors, "hospital", "入院先医療機関", &hospitals))
                    @for f in &HEAD[14..] { (field(t, errors, f)) }
                }
                (common_sections(c, t, errors))
                fieldset {
                    legend { "対処方針・支援期間・クライシスプラン（様式2）" }
                    @for f in &TAIL { (field(t, errors, f)) }
                    input type="checkbox" id="relocation_clause" name="relocation_clause" value="yes" checked[t.has("relocation_clause", "yes")];
                    label for="relocation_clause" { "転居した場合は転居先の自治体に計画の内容等を通知することに本人が同意している" }
                }
                button class="primary" type="submit" name="action" value="send" { "計画を送付する" }
                " "
                button class="secondary" type="submit" name="action" value="draft" { "下書きを保存" }
            }
        },
    )
}

/// The sections the plan and the opinion letter share: supporters, benefits, services needed and
/// the support rows.
pub(crate) fn common_sections(c: &Shared, t: &Typed, errors: &Errors) -> Markup {
    let all: Vec<&(OrgId, String)> = c.members.iter().collect();
    html! {
        fieldset {
            legend { "家族その他の支援者" }
            @for f in &SUPPORTER { (field(t, errors, f)) }
        }
        fieldset {
            legend { "医療・障害福祉サービス等に関する基本情報" }
            @for (b, l) in BENEFITS {
                @let name = format!("benefit_{b}");
                label for=(name) { (l) }
                select id=(name) name=(name) {
                    @for (v, vl) in BENEFIT { option value=(v) selected[t.get(&name) == *v] { (vl) } }
                }
            }
        }
        fieldset {
            legend { "退院後に必要な医療等の支援" }
            @for (i, (v, l)) in SERVICES.iter().enumerate() {
                @let id = format!("services-{i}");
                input type="checkbox" id=(id) name="services" value=(v) checked[t.has("services", v)];
                label for=(id) { (l) }
            }
        }
        @for i in 0..ROWS {
            fieldset {
                legend { "支援内容 " (i + 1) }
                (org_select(t, errors, ROW_AGENCY[i], "支援を行う機関", &all))
                @for (suffix, label) in [("needs", "本人のニーズ・課題"), ("support", "支援内容"), ("contact", "連絡先（担当者）")] {
                    @let name = format!("row{i}_{suffix}");
                    label for=(name) { (label) }
                    input type="text" id=(name) name=(name) value=(t.get(&name));
                }
            }
        }
    }
}

/// `GET /plans/new`: the plan form (with the saved draft, if any).
pub(crate) async fn plan_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let (s, staff) = match need(&c, &headers, Role::Clerk) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let draft = pages::draft_of(&c, &staff, "plan");
    let note = (!draft.0.is_empty()).then_some(("notice", "保存した下書きを表示しています。"));
    plan_page(&c, &s, &draft, &Errors::new(), note).into_response()
}

/// `POST /plans/new`: save a draft, or check the plan and send it to each recipient.
pub(crate) async fn plan_submit(
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
        pages::save_draft(&c, &staff, "plan", Some(t.clone()));
        return plan_page(
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
                plan_page(&c, &s, &t, &Errors::new(), Some(("alert", &msg))),
            )
                .into_response();
        }
    };
    let (plan, to) = match plan(&t, &org, &c.members) {
        Ok(x) => x,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                plan_page(&c, &s, &t, &errors, None),
            )
                .into_response()
        }
    };
    let mut done = Vec::new();
    for r in &to {
        let req = super::pages::send_request(&plan, r.as_str(), t.get("purpose"));
        match c.call_as(&staff, req).await {
            Ok(v) => done.push((
                c.name(r.as_str()),
                v["state"].as_str().unwrap_or("").to_owned(),
                None,
            )),
            Err(e) => done.push((
                c.name(r.as_str()),
                String::new(),
                Some(pages::gateway_message(&e)),
            )),
        }
    }
    let failed = done.iter().any(|(_, _, e)| e.is_some());
    // Nothing typed is lost: after a failed send the form stays as a draft.
    pages::save_draft(&c, &staff, "plan", failed.then(|| t.clone()));
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (
        status,
        page(
            "計画の送付",
            Some(&s),
            html! {
                h1 { "計画の送付" }
                table {
                    thead { tr { th scope="col" { "送付先" } th scope="col" { "結果" } } }
                    tbody {
                        @for (name, state, error) in &done {
                            tr {
                                td { (name) }
                                td {
                                    @if let Some(e) = error { span class="error" { (e) } }
                                    @else { "受け付けました（" (super::views::out_state(state).0) "）" }
                                }
                            }
                        }
                    }
                }
                @if failed { p { "送付できなかった宛先があります。入力内容は下書きに保存しました。" a href="/plans/new" { "計画の作成に戻る" } } }
                p { a href="/outbox" { "送信文書を見る" } }
            },
        ),
    )
        .into_response()
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

    /// A complete plan form, as the browser test also fills it in.
    pub(crate) fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            ("to", "ot:npo-komorebi"),
            ("purpose", "plan_implementation"),
            ("subject", "case-131059-2026-0007"),
            ("made_on", "2026-10-20"),
            ("person_name", "鈴木 一郎"),
            ("person_furigana", "すずき いちろう"),
            ("person_sex", "male"),
            ("person_birth_date", "1992-04-01"),
            ("person_return_address", "東京都文京区本郷九丁目1番1号"),
            ("person_municipality", "131059"),
            ("person_phone", "090-0000-0007"),
            ("diagnosis", "統合失調症"),
            ("comorbidities", "2型糖尿病"),
            ("admission_date", "2026-09-12"),
            ("admission_type", "involuntary_measure"),
            ("hospital", "mi:1310000017"),
            ("hospital_contact", "03-0000-1001"),
            ("wishes", "自宅で暮らしたい"),
            ("continued_admission", "no"),
            ("row0_agency", "ot:npo-komorebi"),
            ("row0_needs", "居場所"),
            ("row0_support", "ピアサポート"),
            ("row0_contact", "小林"),
            ("policy_if_discontinued", "保健師が訪問する"),
            ("period_from", "2026-11-01"),
            ("period_to", "2027-04-30"),
            ("crisis_made_on", "2026-10-15"),
            ("crisis_warning_signs", "眠れない"),
            ("crisis_what_i_do", "頓服を飲む"),
            ("crisis_what_i_want", "話を聞いてほしい"),
            ("crisis_what_i_do_not_want", "大声で注意しない"),
        ]
    }

    fn typed(fields: &[(&str, &str)]) -> Typed {
        let mut t = Typed::default();
        for (k, v) in fields {
            t.0.entry(k.to_string()).or_default().push(v.to_string());
        }
        t
    }

    #[test]
    fn a_complete_plan_form_is_a_valid_plan() {
        let (v, to) = plan(
            &typed(&complete()),
            &"lg:131059".parse().unwrap(),
            &members(),
        )
        .unwrap();
        assert_eq!(to, vec!["ot:npo-komorebi".parse::<OrgId>().unwrap()]);
        assert_eq!(v["hospital"]["name"], "都立松風病院");
        assert_eq!(v["support_rows"][0]["agency_name"], "NPO法人こもれび");
        assert_eq!(v["benefits"]["public_assistance"]["status"], "unknown");
        assert_eq!(
            v["diagnosis"]["physical_comorbidities"],
            json!(["2型糖尿病"])
        );
    }

    #[test]
    fn wrong_plan_fields_get_japanese_messages() {
        let mut f = complete();
        f.retain(|(k, _)| *k != "wishes" && *k != "to");
        f.push(("person_municipality", "13105"));
        let mut t = typed(&f);
        t.0.insert("person_municipality".into(), vec!["13105".into()]);
        t.0.insert("period_to".into(), vec!["2026-10-01".into()]);
        let e = plan(&t, &"lg:131059".parse().unwrap(), &members()).unwrap_err();
        assert!(e["wishes"].contains("入力してください"), "{e:?}");
        assert!(e["to"].contains("送付先"), "{e:?}");
        assert!(e["person_municipality"].contains("6桁"), "{e:?}");
        // The period, checked by the protocol once the rest is right.
        let mut t = typed(&complete());
        t.0.insert("period_to".into(), vec!["2026-10-01".into()]);
        let e = plan(&t, &"lg:131059".parse().unwrap(), &members()).unwrap_err();
        assert!(e["period_to"].contains("矛盾"), "{e:?}");
    }

    #[test]
    fn a_revision_names_the_version_it_revises_and_needs_a_reason() {
        let mut t = typed(&complete());
        t.0.insert("version".into(), vec!["2".into()]);
        let e = plan(&t, &"lg:131059".parse().unwrap(), &members()).unwrap_err();
        assert!(e["revision_reason"].contains("見直しの理由"), "{e:?}");
        t.0.insert(
            "revision_reason".into(),
            vec!["支援会議で期間を延長".into()],
        );
        let (v, _) = plan(&t, &"lg:131059".parse().unwrap(), &members()).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["supersedes"]["version"], 1);
        assert_eq!(v["supersedes"]["reason"], "支援会議で期間を延長");
        t.0.insert("version".into(), vec!["0".into()]);
        let e = plan(&t, &"lg:131059".parse().unwrap(), &members()).unwrap_err();
        assert!(e["version"].contains("1以上"), "{e:?}");
        // An unknown return municipality (住所不定) is allowed and travels as null.
        let mut t = typed(&complete());
        t.0.insert("person_municipality".into(), vec![String::new()]);
        let (v, _) = plan(&t, &"lg:131059".parse().unwrap(), &members()).unwrap();
        assert!(v["person"]["municipality"].is_null());
        assert_eq!(v["version"], 1);
        assert!(v["supersedes"].is_null());
    }
}
