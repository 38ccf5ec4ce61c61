//! The console's HTML: the page frame, its CSS (screen and A4 print), and the Japanese words for
//! states, document types, purposes and roles. Everything is rendered with maud, which escapes
//! every value it inserts.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;
use tsunagi_protocol::document::labels;
use tsunagi_protocol::DocType;

use super::accounts::Role;
use super::session::Session;

const CSS: &str = r#"
*{box-sizing:border-box}
body{font-family:"Noto Sans CJK JP","Noto Sans JP","Hiragino Kaku Gothic ProN","Yu Gothic",Meiryo,sans-serif;
 margin:0;color:#1a1a1a;background:#fff;line-height:1.7;font-size:16px;line-break:strict;word-break:normal;overflow-wrap:anywhere}
header{background:#0b3d66;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a,header button{color:#fff;background:none;border:0;font:inherit;text-decoration:underline;cursor:pointer;padding:.25rem}
header .who{margin-left:auto}
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:1rem;margin:0;padding:0}
main{padding:1rem;max-width:72rem}
a{color:#0b4f8a}
a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #d35400;outline-offset:2px}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border:1px solid #777;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#e8eef4;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.nowrap{white-space:nowrap}
label{display:block;font-weight:bold;margin-top:.75rem}
input[type=text],input[type=date],input[type=password],input[type=number],select,textarea{width:100%;max-width:40rem;padding:.4rem;border:1px solid #555;font:inherit}
textarea{min-height:5rem}
fieldset{border:1px solid #777;margin:.75rem 0;padding:.5rem 1rem}
fieldset label{display:inline;font-weight:normal;margin-right:1rem}
.error{color:#a4000f;font-weight:bold}
.notice{background:#eef6ee;border-left:4px solid #2d6a2d;padding:.5rem 1rem}
.alert{background:#fbeaea;border-left:4px solid #a4000f;padding:.5rem 1rem}
button.primary,input[type=submit]{background:#0b3d66;color:#fff;border:0;padding:.5rem 1.25rem;font:inherit;cursor:pointer;margin-top:1rem}
button.secondary{background:#fff;color:#0b3d66;border:1px solid #0b3d66;padding:.5rem 1.25rem;font:inherit;cursor:pointer;margin-top:1rem}
.form-sheet{border:1px solid #333;padding:1rem 1.5rem}
.form-sheet h1{font-size:1.3rem;text-align:center}
.visually-hidden{position:absolute;left:-9999px}
@page{size:A4;margin:15mm}
@media print{header,.noprint,form.actions{display:none!important}
 body{font-size:10.5pt;color:#000}main{padding:0;max-width:none}
 .form-sheet{border:0;padding:0}th{background:#eee!important;-webkit-print-color-adjust:exact;print-color-adjust:exact}
 table{page-break-inside:auto}tr{page-break-inside:avoid}}
"#;

/// The frame of every page: title, navigation for the session's role, and `body`.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    let staff = session.and_then(|s| s.staff.as_ref());
    html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — つなぎ 職員コンソール" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    span { strong { "つなぎ 職員コンソール" } }
                    @if let Some(staff) = staff {
                        nav aria-label="メインメニュー" {
                            ul {
                                li { a href="/cases" { "事例一覧" } }
                                li { a href="/inbox" { "受信文書" } }
                                li { a href="/outbox" { "送信文書" } }
                                @if staff.role >= Role::Clerk {
                                    li { a href="/consents/new" { "同意の記録" } }
                                    li { a href="/plans/new" { "計画の作成" } }
                                    li { a href="/assessments/new" { "アセスメントの作成" } }
                                    li { a href="/opinions/new" { "意見書の作成" } }
                                    li { a href="/meetings/new" { "支援会議の記録" } }
                                    li { a href="/extensions/new" { "支援期間の延長" } }
                                    li { a href="/relocations/new" { "転居の記録" } }
                                    li { a href="/support-ends/new" { "支援の終了" } }
                                }
                                @if staff.role >= Role::Admin {
                                    li { a href="/ops" { "運用状況" } }
                                }
                            }
                        }
                        span class="who" { (staff.id) "（" (staff.role.label()) "）" }
                        @if let Some(s) = session {
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "ログアウト" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A Unix time as a Japan date and time, `2026年12月4日 09:05`.
pub fn jp_datetime(secs: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs as i64) else {
        return "—".into();
    };
    let t = t.to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC));
    format!(
        "{}年{}月{}日 {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A civil date `2026-10-05` as `2026年10月5日` (anything else as it is).
pub fn jp_date(iso: &str) -> String {
    let p: Vec<&str> = iso.split('-').collect();
    match p.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            match (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) {
                (Ok(y), Ok(m), Ok(d)) => format!("{y}年{m}月{d}日"),
                _ => iso.to_owned(),
            }
        }
        _ => iso.to_owned(),
    }
}

/// The Japanese name of a document type.
pub fn doc_type_label(kind: &str) -> &'static str {
    match kind.parse::<DocType>() {
        Ok(DocType::NeedsAssessment) => "様式5・6 退院後支援のニーズに関するアセスメント",
        Ok(DocType::OpinionLetter) => "様式3・4 計画に係る意見書",
        Ok(DocType::SupportPlan) => "様式1・2 退院後支援に関する計画",
        Ok(DocType::TransferNotice) => "様式7 移転の通知",
        Ok(DocType::SupportSummary) => "支援の経過（移転に伴う）",
        Ok(DocType::ResidenceChange) => "居住地の変更の届出",
        Ok(DocType::Consent) => "本人の同意の記録",
        Ok(DocType::ConsentWithdrawal) => "同意撤回の通知",
        Ok(DocType::SupportEnd) => "支援終了の通知",
        Ok(DocType::MeetingRecord) => "支援に関する会議の記録",
        Ok(DocType::Readmission) => "再入院の通知",
        Ok(DocType::Delegation) => "業務委託の記録",
        Ok(DocType::AdmissionMaterial) => "措置入院に関する資料（措置診断書・事前調査票）",
        Ok(DocType::InformationRequest) => "転居先自治体からの情報提供の依頼",
        Ok(DocType::InformationAnswer) => "情報提供の依頼への回答",
        Err(_) => "（不明な文書）",
    }
}

/// The Japanese name of a purpose.
pub fn purpose_label(p: &str) -> &'static str {
    match p {
        "plan_creation" => "計画の作成",
        "plan_implementation" => "計画に基づく支援の実施",
        "relocation_transfer" => "移転に伴う引継ぎ",
        "support_end" => "支援の終了",
        _ => "（その他の目的）",
    }
}

/// An outbox state and what it means, in Japanese.
pub fn out_state(state: &str) -> (&'static str, &'static str) {
    match state {
        "queued" => ("送信待ち", "送信の順番を待っています。"),
        "retry_wait" => (
            "再送待ち",
            "相手のゲートウェイに届かなかったため、時間をおいて自動的に再送します。",
        ),
        "delivered" => (
            "配達済み",
            "相手のゲートウェイが署名付きの受領証を返しました。",
        ),
        "rejected" => (
            "相手が拒否",
            "相手のゲートウェイが受け取りを拒否しました（再送しません）。",
        ),
        "expired" => (
            "期限切れ",
            "有効期限までに届きませんでした。未配達の報告を記録しました。",
        ),
        "cancelled" => (
            "取消し",
            "送信前に取り消されました（同意の撤回、職員による取消しなど）。相手には届いていません。",
        ),
        "awaiting_consent" => (
            "同意待ち",
            "本人の同意がこの送信をまだ含んでいません。同意を記録すると自動的に送信されます。",
        ),
        _ => ("不明", ""),
    }
}

/// An audit event kind, in Japanese.
pub fn event_label(event: &str) -> &'static str {
    match event {
        "queued" => "送信を受付",
        "redacted" => "宛先に応じて項目を非開示",
        "sent" => "配達（受領証あり）",
        "rejected_by_peer" => "相手が拒否",
        "expired" => "期限切れ",
        "cancelled" => "取消し",
        "gate_denied" => "同意・規程により送信を拒否",
        "received" => "受信",
        "rejected" => "受信を拒否",
        "consent_recorded" => "同意を記録",
        "awaiting_consent" => "同意待ちで保留",
        "relocation" => "居住地の変更",
        "purged" => "保存期間経過により消去",
        "staff_action" => "職員の操作",
        _ => "その他の記録",
    }
}

/// The printed label of a document element, falling back to its id.
pub fn element_label(kind: Option<DocType>, element: &str) -> String {
    kind.and_then(|k| labels::label(k, element))
        .or_else(|| console_label(kind, element))
        .map(str::to_owned)
        .unwrap_or_else(|| generic_label(element).unwrap_or(element).to_owned())
}

/// The console's own labels where the reference forms print none: the support meeting record
/// and the support period with its extensions, in the guideline's wording.
fn console_label(kind: Option<DocType>, element: &str) -> Option<&'static str> {
    match (kind?, element) {
        (DocType::MeetingRecord, e) => Some(match e {
            "held_on" => "開催日",
            "plan_version" => "協議した計画の版",
            "person_attended" => "本人の出席",
            "family_attended" => "出席した家族等（続柄）",
            "attendees" => "出席者（関係機関）",
            "absent" => "欠席者",
            "agenda" => "議題",
            "minutes" => "議事の概要",
            "decisions" => "決定事項",
            "extension_to" => "延長後の期間の終了日",
            "undertakings" => "秘密保持の同意（書面）",
            "undertakings.org" => "機関",
            "undertakings.signed_on" => "署名日",
            _ => return None,
        }),
        (DocType::SupportPlan, e) => Some(match e {
            "supersedes" => "見直し",
            "supersedes.version" => "見直し前の版",
            "supersedes.digest" => "見直し前の版の要約値",
            "supersedes.reason" => "見直しの理由",
            "support_period.from" => "開始",
            "support_period.to" => "終了（当初）",
            "support_period.extensions" => "支援期間の延長",
            "support_period.extensions.to" => "延長後の期間の終了日",
            "support_period.extensions.meeting_on" => "会議の記録（開催日）",
            "support_period.extensions.consent_version" => "本人の同意（同意記録の版）",
            "support_period.extensions.consented_on" => "本人の同意日",
            "support_period.extensions.reason" => "延長の理由",
            "support_period.extensions.exception" => "例外の理由",
            _ => return None,
        }),
        _ => None,
    }
}

fn generic_label(element: &str) -> Option<&'static str> {
    Some(match element {
        "document_type" => "文書の種類",
        "subject" => "事例（仮名）",
        "author" => "作成者",
        "controller" => "同意の管理者",
        "person" => "本人",
        "person.name" => "氏名",
        "made_on" => "作成日",
        "support_period" => "支援期間",
        "co_author" => "共同作成者",
        "hospital" => "入院先医療機関",
        "discharge_date" => "退院日",
        "admission_type" => "入院形態",
        "date" => "日付",
        "version" => "版",
        "status" => "状態",
        "period" => "期間",
        "purposes" => "目的",
        "doc_types" => "文書の種類",
        "items" => "評価項目",
        "summary" => "総合アセスメント（様式6）",
        _ => return None,
    })
}

/// A JSON value as staff read it: strings as they are, dates in Japanese, lists and objects as
/// nested tables (keys labelled where the form has a label).
pub fn value(kind: Option<DocType>, prefix: &str, v: &Value) -> Markup {
    html! {
        @match v {
            Value::Null => { "—" }
            Value::Bool(b) => { (if *b { "はい" } else { "いいえ" }) }
            Value::Number(n) => { (n.to_string()) }
            Value::String(s) => { (jp_date(s)) }
            Value::Array(a) => {
                @if a.iter().all(|x| !x.is_object() && !x.is_array()) {
                    (a.iter().map(|x| match x { Value::String(s) => jp_date(s), o => o.to_string() }).collect::<Vec<_>>().join("、"))
                } @else {
                    ol { @for x in a { li { (value(kind, prefix, x)) } } }
                }
            }
            Value::Object(m) => {
                table {
                    @for (k, x) in m {
                        @let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        tr { th scope="row" { (element_label(kind, &path)) } td { (value(kind, &path, x)) } }
                    }
                }
            }
        }
    }
}

/// A table of a Form 5 document's item ratings (code, item, staff and person ratings, note).
pub fn ratings_table(items: &serde_json::Map<String, Value>) -> Markup {
    html! {
        table {
            caption { "様式5 評価項目" }
            thead { tr { th scope="col" { "番号" } th scope="col" { "項目" } th scope="col" { "職員評価" } th scope="col" { "本人評価" } th scope="col" { "特記事項" } } }
            tbody {
                @for item in labels::FORM5_ITEMS.iter() {
                    @if let Some(v) = items.get(item.code) {
                        tr {
                            td class="nowrap" { (item.code) }
                            td { (item.name) }
                            td class="num" { (rating(v.get("staff"))) }
                            td class="num" { (rating(v.get("self"))) }
                            td { (v.get("note").and_then(Value::as_str).unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// A rating as printed: the number, or a dash when none was given.
fn rating(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_japan_dates() {
        // 2026-12-03T15:30:00Z is 4 December, 00:30 in Japan.
        assert_eq!(jp_datetime(1_796_311_800), "2026年12月4日 00:30");
        assert_eq!(jp_date("2026-10-05"), "2026年10月5日");
        assert_eq!(jp_date("統合失調症"), "統合失調症");
    }

    #[test]
    fn every_value_is_escaped() {
        let v = serde_json::json!({"wishes": "<script>alert(1)</script>"});
        let html = value(Some(DocType::SupportPlan), "", &v).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("退院後の生活に関する本人の希望"), "{html}");
    }
}
