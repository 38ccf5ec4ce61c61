//! The forms staff fill in: their fields, server-side checks with Japanese messages next to the
//! fields, and the JSON each becomes for the gateway. A form that fails a check is shown again
//! with everything typed still in it.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tsunagi_protocol::{CaseId, DocType, OrgId, Purpose};

/// What was typed into a form: each field name with its values (checkbox groups have several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Typed(pub BTreeMap<String, Vec<String>>);

impl Typed {
    /// Reads an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Typed {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k).or_default().push(v);
        }
        Typed(m)
    }

    /// The first value of `name`, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .get(name)
            .and_then(|v| v.first())
            .map(|s| s.trim())
            .unwrap_or("")
    }

    /// Whether checkbox group `name` has `value` ticked.
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|v| v.iter().any(|x| x == value))
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Messages for fields (field name → Japanese message).
pub type Errors = BTreeMap<&'static str, String>;

/// The purposes a consent may grant, with their labels.
pub const PURPOSES: [(&str, &str); 4] = [
    ("plan_creation", "計画の作成"),
    ("plan_implementation", "計画に基づく支援の実施"),
    ("relocation_transfer", "移転に伴う引継ぎ"),
    ("support_end", "支援の終了"),
];

/// The document types a consent may cover, with their labels.
pub const CONSENT_DOC_TYPES: [(&str, &str); 7] = [
    ("needs_assessment", "アセスメント（様式5・6）"),
    ("opinion_letter", "意見書（様式3・4）"),
    ("support_plan", "計画（様式1・2）"),
    ("residence_change", "居住地の変更"),
    ("transfer_notice", "移転の通知（様式7）"),
    ("support_summary", "支援の経過"),
    ("support_end", "支援終了の通知"),
];

fn is_date(s: &str) -> bool {
    s.len() == 10 && s.parse::<tsunagi_protocol::Date>().is_ok()
}

fn required(e: &mut Errors, t: &Typed, field: &'static str, label: &str) {
    if t.get(field).is_empty() {
        e.insert(field, format!("{label}を入力してください。"));
    }
}

fn date_field(e: &mut Errors, t: &Typed, field: &'static str, label: &str) {
    let v = t.get(field);
    if v.is_empty() {
        e.insert(field, format!("{label}を入力してください。"));
    } else if !is_date(v) {
        e.insert(
            field,
            format!("{label}は年-月-日（例: 2026-10-05）で入力してください。"),
        );
    }
}

fn text_limit(e: &mut Errors, t: &Typed, field: &'static str, label: &str, max: usize) {
    if t.get(field).chars().count() > max {
        e.insert(field, format!("{label}は{max}文字以内で入力してください。"));
    }
}

/// Checks a consent form typed at the gateway of `controller`; the consent record's JSON when
/// it is right, the messages per field otherwise.
pub fn consent(t: &Typed, controller: &OrgId, members: &[OrgId]) -> Result<Value, Errors> {
    let mut e = Errors::new();
    let id = t.get("id");
    if id.is_empty() {
        e.insert("id", "同意記録の番号を入力してください。".into());
    } else if id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        e.insert(
            "id",
            "同意記録の番号は半角英数字と「-」「_」で64文字以内にしてください（氏名は入れないでください）。".into(),
        );
    }
    let version = t.get("version").parse::<u32>().ok().filter(|v| *v >= 1);
    if version.is_none() {
        e.insert("version", "版は1以上の整数で入力してください。".into());
    }
    // A new consent's id starts with this authority's code (the gateway refuses any other for
    // a consent it has never held): other authorities cannot take it first.
    let code = controller.code();
    let own_prefix = format!("consent-{code}-");
    if version == Some(1)
        && !e.contains_key("id")
        && !(id.starts_with(&own_prefix) && id.len() > own_prefix.len())
    {
        e.insert(
            "id",
            format!("新しい同意記録の番号は「{own_prefix}」で始めてください（例: {own_prefix}2026-0007）。"),
        );
    }
    let subject = t.get("subject");
    if subject.parse::<CaseId>().is_err() {
        e.insert(
            "subject",
            "事例の仮名は「case-」で始まる半角小文字・数字・「-」で入力してください（例: case-131059-2026-0007）。".into(),
        );
    }
    date_field(&mut e, t, "date", "同意日");
    required(&mut e, t, "grantor", "同意した人");
    text_limit(&mut e, t, "grantor", "同意した人", 100);
    required(&mut e, t, "recorded_by", "記録した職員");
    text_limit(&mut e, t, "recorded_by", "記録した職員", 100);
    date_field(&mut e, t, "period_from", "同意の有効期間（開始）");
    date_field(&mut e, t, "period_to", "同意の有効期間（終了）");
    if is_date(t.get("period_from"))
        && is_date(t.get("period_to"))
        && t.get("period_to") < t.get("period_from")
    {
        e.insert(
            "period_to",
            "終了日は開始日より後の日にしてください。".into(),
        );
    }
    let purposes: Vec<&str> = PURPOSES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| t.has("purposes", p))
        .collect();
    if purposes.is_empty() {
        e.insert("purposes", "同意した目的を一つ以上選んでください。".into());
    }
    let doc_types: Vec<&str> = CONSENT_DOC_TYPES
        .iter()
        .map(|(d, _)| *d)
        .filter(|d| t.has("doc_types", d))
        .collect();
    if doc_types.is_empty() {
        e.insert(
            "doc_types",
            "共有に同意した文書を一つ以上選んでください。".into(),
        );
    }
    let recipients: Vec<&OrgId> = members
        .iter()
        .filter(|m| t.has("recipients", m.as_str()))
        .collect();
    if recipients.is_empty() {
        e.insert(
            "recipients",
            "情報を共有する機関を一つ以上選んでください。".into(),
        );
    }
    if t.all("recipients")
        .iter()
        .any(|r| !members.iter().any(|m| m.as_str() == r))
    {
        e.insert(
            "recipients",
            "名簿にない機関が選ばれています。選び直してください。".into(),
        );
    }
    if !e.is_empty() {
        return Err(e);
    }
    debug_assert!(purposes.iter().all(|p| p.parse::<Purpose>().is_ok()));
    debug_assert!(doc_types.iter().all(|d| d.parse::<DocType>().is_ok()));
    Ok(json!({
        "document_type": "consent",
        "id": id,
        "version": version,
        "status": "active",
        "subject": subject,
        "date": t.get("date"),
        "grantor": t.get("grantor"),
        "controller": controller.as_str(),
        "recorded_by": t.get("recorded_by"),
        "period": {"from": t.get("period_from"), "to": t.get("period_to")},
        "purposes": purposes,
        "doc_types": doc_types,
        "recipients": recipients.iter().map(|r| json!({"org": r.as_str()})).collect::<Vec<_>>(),
        "excluded": [],
        "police": {"allowed": false, "person_refused": t.has("police_refused", "yes")},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<OrgId> {
        ["lg:131059", "mi:1310000017", "ot:npo-komorebi"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    fn typed(body: &str) -> Typed {
        Typed::parse(body.as_bytes())
    }

    #[test]
    fn a_complete_consent_form_becomes_a_record() {
        let t = typed(
            "id=consent-131059-2026-0001&version=1&subject=case-131059-2026-0007&date=2026-10-05\
             &grantor=%E6%9C%AC%E4%BA%BA&recorded_by=tanaka&period_from=2026-10-05&period_to=2027-05-31\
             &purposes=plan_creation&purposes=plan_implementation&doc_types=support_plan\
             &recipients=lg%3A131059&recipients=ot%3Anpo-komorebi&police_refused=yes",
        );
        let v = consent(&t, &"lg:131059".parse().unwrap(), &members()).unwrap();
        assert_eq!(v["grantor"], "本人");
        assert_eq!(
            v["purposes"],
            json!(["plan_creation", "plan_implementation"])
        );
        assert_eq!(v["recipients"][1]["org"], "ot:npo-komorebi");
        assert_eq!(v["police"]["person_refused"], true);
        assert_eq!(v["period"]["to"], "2027-05-31");
        // The record the form makes is one the protocol accepts.
        let r: tsunagi_protocol::document::ConsentRecord = serde_json::from_value(v).unwrap();
        assert_eq!(r.version, 1);
    }

    /// A new consent (version 1) is numbered under this authority's code, which the gateway
    /// requires so that no other authority can take the number first; a later version of an
    /// older record keeps its number.
    #[test]
    fn a_new_consent_is_numbered_under_the_authoritys_code() {
        let form = |id: &str, version: u32| {
            typed(&format!(
                "id={id}&version={version}&subject=case-131059-2026-0007&date=2026-10-05\
                 &grantor=%E6%9C%AC%E4%BA%BA&recorded_by=tanaka&period_from=2026-10-05&period_to=2027-05-31\
                 &purposes=plan_creation&doc_types=support_plan&recipients=lg%3A131059&police_refused=yes"
            ))
        };
        let bunkyo: OrgId = "lg:131059".parse().unwrap();
        for id in ["consent-1", "consent-131121-2026-0001", "consent-131059-"] {
            let e = consent(&form(id, 1), &bunkyo, &members()).unwrap_err();
            assert!(
                e["id"].contains("「consent-131059-」で始めてください"),
                "{id}: {e:?}"
            );
        }
        consent(&form("consent-131059-2026-0001", 1), &bunkyo, &members()).unwrap();
        consent(&form("consent-1", 2), &bunkyo, &members()).unwrap();
    }

    #[test]
    fn each_wrong_field_gets_its_own_japanese_message() {
        let t = typed("id=%E9%88%B4%E6%9C%A8&version=0&subject=Suzuki&date=2026-13-01&period_from=2027-01-01&period_to=2026-01-01&recipients=lg%3A999999");
        let e = consent(&t, &"lg:131059".parse().unwrap(), &members()).unwrap_err();
        for f in [
            "id",
            "version",
            "subject",
            "date",
            "grantor",
            "recorded_by",
            "period_to",
            "purposes",
            "doc_types",
            "recipients",
        ] {
            assert!(e.contains_key(f), "no message for {f}: {e:?}");
        }
        assert!(e["date"].contains("年-月-日"), "{e:?}");
        assert!(e["period_to"].contains("開始日より後"), "{e:?}");
        assert!(e["recipients"].contains("名簿にない"), "{e:?}");
    }
}
