//! The person's disclosure page (R9): what this organisation gave to whom, and received from
//! whom, about one case — in Japanese, printable, for the person who asked to see their records.
//!
//! The page is built from the typed audit trail ([`crate::events`]) with `maud` (compile-time
//! HTML templates that escape every value). It lists one row per disclosure, not per internal
//! step: documents given (with the items that were given, not the items that were withheld),
//! documents received, sends refused because the consent did not cover them, consent versions
//! recorded, and the purge at the end of retention. Queueing, redaction, retries and other
//! internal steps are in the audit trail, not on the page. It names the issuing organisation,
//! the date of issue (a Japan date) and whom to contact.

use maud::{html, Markup, DOCTYPE};
use tsunagi_protocol::document::labels::{label, FORM5_ITEMS};
use tsunagi_protocol::document::{ConsentStatus, DelegationStatus};
use tsunagi_protocol::{DocType, Timestamp};

use crate::events::{AuditEvent, AuditRecord};

/// Who issues the page.
pub struct Issuer<'a> {
    /// The organisation's name (from the directory).
    pub name: &'a str,
    /// Its org id.
    pub org: &'a str,
    /// Whom the person contacts about the page.
    pub contact: &'a str,
    /// When the page is issued.
    pub issued: Timestamp,
}

/// The Japanese name of a document type, as staff and the person know it.
pub fn doc_type_ja(t: DocType) -> &'static str {
    match t {
        DocType::NeedsAssessment => "退院後支援のニーズに関するアセスメント（様式5・6）",
        DocType::OpinionLetter => "計画に係る意見書（様式3・4）",
        DocType::SupportPlan => "退院後支援に関する計画（様式1・2）",
        DocType::TransferNotice => "移転先自治体への通知（様式7）",
        DocType::SupportSummary => "これまでの支援の概要",
        DocType::ResidenceChange => "居住地変更の報告",
        DocType::Consent => "同意の記録",
        DocType::ConsentWithdrawal => "同意撤回の通知",
        DocType::SupportEnd => "支援終了の通知",
        DocType::MeetingRecord => "支援会議の記録",
        DocType::Readmission => "再入院の通知",
        DocType::Delegation => "業務委託の記録",
        DocType::AdmissionMaterial => "措置入院に係る資料（措置診断書・事前調査票）",
        DocType::InformationRequest => "転居先自治体からの情報提供の依頼",
        DocType::InformationAnswer => "情報提供の依頼への回答",
    }
}

/// The Japanese label of an element, as printed on the reference forms where they print one.
pub fn element_ja(e: &str) -> String {
    if let Some(code) = e.strip_prefix("items.") {
        let name = FORM5_ITEMS
            .iter()
            .find(|i| i.code == code)
            .map_or(code, |i| i.name);
        return format!("項目評価 {code}（{name}）");
    }
    if e.starts_with("summary.") {
        let domain = label(DocType::NeedsAssessment, e).unwrap_or(e);
        return format!("総合アセスメント（{domain}）");
    }
    if e.starts_with("recipients.") {
        return "同意の範囲（当該機関に関する部分）".into();
    }
    if let Some(l) = [
        DocType::NeedsAssessment,
        DocType::SupportPlan,
        DocType::OpinionLetter,
    ]
    .iter()
    .find_map(|t| label(*t, e))
    {
        return l.to_owned();
    }
    match e {
        "person" => "本人の情報（氏名・連絡先等）",
        "admission_type" => "入院形態",
        "hospital" => "入院先病院",
        "made_on" => "作成日",
        "co_author" => "共同作成者",
        "relocation" => "転居の事実と転居先",
        "plan" => "計画",
        "remaining_period" => "残りの支援期間",
        "medical_support_need" => "転居後の医療等の支援の必要性",
        "relocation_clause" => "転居時の取扱い",
        "ended_on" => "支援終了日",
        "outcome" => "終了の理由",
        "note" => "備考",
        "id" => "同意記録の番号",
        "version" => "版",
        "status" => "状態",
        "date" => "同意日",
        "period" => "有効期間",
        "purposes" => "利用目的",
        "doc_types" => "共有する書類",
        "controller" => "同意を管理する自治体",
        "grantor" => "同意した人",
        "recorded_by" => "記録した職員",
        "excluded" => "提供しない機関",
        "police" => "警察の関与",
        "plan_version" => "対象となる計画の版",
        "supersedes" => "見直し前の版と見直しの理由",
        "admitted_on" => "入院日",
        "held_on" => "会議の開催日",
        "person_attended" => "本人の出席",
        "family_attended" => "家族等の出席",
        "attendees" => "出席した機関",
        "absent" => "欠席した機関",
        "agenda" => "議題",
        "minutes" => "議事の記録",
        "decisions" => "決定事項",
        "extension_to" => "延長後の支援期間の終了日",
        "undertakings" => "守秘に関する誓約（文書）",
        other => other,
    }
    .to_owned()
}

/// The items of a `kind` document given to a recipient: every element but the withheld ones,
/// each label once (a consent's recipient slots read as one item).
fn given(kind: DocType, withheld: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    for e in kind.element_ids() {
        if withheld.contains(&e) {
            continue;
        }
        let l = element_ja(&e);
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out.join("、")
}

fn when(t: u64) -> String {
    let t = Timestamp(t);
    let secs = t.0 % 86_400 + 9 * 3600;
    format!(
        "{} {:02}:{:02}",
        t.date(),
        (secs / 3600) % 24,
        secs / 60 % 60
    )
}

/// One row of the page: when, what, with whom, which document, what exactly.
struct Row {
    when: String,
    what: &'static str,
    party: String,
    document: &'static str,
    detail: String,
}

fn rows(records: &[AuditRecord], name_of: &dyn Fn(&str) -> String) -> Vec<Row> {
    use AuditEvent as E;
    let org = |o: &tsunagi_protocol::OrgId| format!("{}（{o}）", name_of(o.as_str()));
    records
        .iter()
        .filter_map(|r| {
            let (what, party, document, detail) = match &r.event {
                E::Sent {
                    to, kind, withheld, ..
                } => (
                    "提供しました",
                    org(to),
                    doc_type_ja(*kind),
                    format!("提供した項目：{}", given(*kind, withheld)),
                ),
                E::Received {
                    from,
                    kind,
                    disclosed,
                    ..
                } => (
                    "受け取りました",
                    org(from),
                    doc_type_ja(*kind),
                    format!(
                        "受け取った項目：{}",
                        disclosed
                            .iter()
                            .map(|e| element_ja(e))
                            .fold(Vec::<String>::new(), |mut v, l| {
                                if !v.contains(&l) {
                                    v.push(l)
                                }
                                v
                            })
                            .join("、")
                    ),
                ),
                E::GateDenied { to, kind, rule, .. } => (
                    "同意の範囲外のため提供しませんでした",
                    org(to),
                    doc_type_ja(*kind),
                    format!("根拠：{}", rule_ja(rule)),
                ),
                E::ConsentRecorded {
                    version, status, ..
                } => (
                    "同意を記録しました",
                    String::new(),
                    doc_type_ja(DocType::Consent),
                    format!(
                        "第{version}版（{}）",
                        if *status == ConsentStatus::Withdrawn {
                            "撤回"
                        } else {
                            "有効"
                        }
                    ),
                ),
                E::DelegationRecorded {
                    contractor,
                    version,
                    tasks,
                    from,
                    to,
                    status,
                    ..
                } => (
                    if *status == DelegationStatus::Revoked {
                        "業務の委託を取り消しました"
                    } else {
                        "業務を委託しました"
                    },
                    org(contractor),
                    doc_type_ja(DocType::Delegation),
                    format!(
                        "第{version}版　委託する業務：{}　期間：{from}〜{to}",
                        tasks
                            .iter()
                            .map(|t| doc_type_ja(*t))
                            .collect::<Vec<_>>()
                            .join("、")
                    ),
                ),
                E::ExportedOtherChannel { to, channel, .. } => (
                    "ゲートウェイのない転居先へ他の方法で提供しました",
                    org(to),
                    doc_type_ja(DocType::TransferNotice),
                    format!("送付方法：{}", channel.ja()),
                ),
                E::TakenOver {
                    from,
                    period_from,
                    period_to,
                    ..
                } => (
                    "転居元から支援を引き継ぎ、本人の同意を得て計画を作成しました",
                    org(from),
                    doc_type_ja(DocType::SupportPlan),
                    format!("支援期間：{period_from}〜{period_to}"),
                ),
                E::TransferredOut { to, ended_on, .. } => (
                    "転居先へ支援を引き継ぎ、当機関の支援を終了しました",
                    org(to),
                    doc_type_ja(DocType::SupportEnd),
                    format!("終了日：{ended_on}"),
                ),
                E::Purged { .. } => (
                    "保存期間の満了により記録を消去しました",
                    String::new(),
                    "",
                    String::new(),
                ),
                _ => return None,
            };
            Some(Row {
                when: when(r.time),
                what,
                party,
                document,
                detail,
            })
        })
        .collect()
}

fn rule_ja(rule: &str) -> &'static str {
    match rule {
        "R1" => "本人の同意の範囲外",
        "R2" => "提供の必要がない相手",
        "R4" => "同意の撤回",
        "R5" => "転居先への通知の同意がない",
        "R6" => "警察への提供（本人が拒否）",
        "R7" => "支援期間の終了",
        _ => "同意の範囲外",
    }
}

fn table(rows: &[Row]) -> Markup {
    html! {
        table {
            thead { tr { th { "日時" } th { "出来事" } th { "相手先" } th { "書類" } th { "内容" } } }
            tbody {
                @for r in rows {
                    tr { td { (r.when) } td { (r.what) } td { (r.party) } td { (r.document) } td { (r.detail) } }
                }
            }
        }
    }
}

/// The disclosure page for `case`: `records` are the case's audit records at the issuing
/// gateway, `others` those other organisations gave in answer to the records query (by display
/// name), `name_of` gives an org's display name from the directory. When the records hold the
/// person's request ([`AuditEvent::DisclosureRequested`]), the page names the day it was
/// received and the day of issue as the day it was answered.
pub fn page(
    case: &str,
    records: &[AuditRecord],
    others: &[(String, Vec<AuditRecord>)],
    issuer: &Issuer,
    name_of: &dyn Fn(&str) -> String,
) -> String {
    let rows = rows(records, name_of);
    let others: Vec<(&String, Vec<Row>)> = others
        .iter()
        .map(|(name, r)| (name, self::rows(r, name_of)))
        .collect();
    let total = rows.len() + others.iter().map(|(_, r)| r.len()).sum::<usize>();
    let requested = records.iter().rev().find_map(|r| match &r.event {
        AuditEvent::DisclosureRequested { received_on, .. } => Some(*received_on),
        _ => None,
    });
    let issued = issuer.issued.date();
    let markup: Markup = html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                title { "個人情報の提供等の記録 " (case) }
                style {
                    "body{font-family:sans-serif;margin:2em;color:#111}"
                    "table{border-collapse:collapse;width:100%}"
                    "td,th{border:1px solid #555;padding:4px 6px;font-size:10.5pt;vertical-align:top}"
                    "th{background:#eee;text-align:left}"
                    "@page{size:A4;margin:15mm}@media print{body{margin:0}}"
                }
            }
            body {
                h1 { "個人情報の提供等の記録（ご本人への開示）" }
                p { "事例番号：" (case) }
                p {
                    "この記録は、退院後支援のために、あなたに関する情報を、いつ、どの機関に、どの項目について提供し、"
                    "またはどの機関から受け取ったかを、" (issuer.name) "が記録したものです。"
                }
                @if let Some(day) = requested {
                    p { "開示のご請求：" (day) " 受付　／　" (issued) " 回答" }
                }
                h2 { (issuer.name) "の記録" }
                (table(&rows))
                @for (name, rows) in &others {
                    h2 { (name) "の記録" }
                    p { "この機関が、" (issuer.name) "の照会に応じて提供した記録です。" }
                    (table(rows))
                }
                p { "記録件数：" (total) "件" }
                p { "発行：" (issuer.name) "（" (issuer.org) "）　発行日：" (issued) }
                p { "お問い合わせ先：" (issuer.contact) }
            }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: serde_json::Value) -> AuditRecord {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_takeover_and_the_transfer_out_are_rows_of_the_page() {
        let records = vec![
            rec(
                json!({"event": "transferred_out", "seq": 0, "time": 0, "case": "case-1", "to": "lg:141003", "ended_on": "2027-01-25"}),
            ),
            rec(
                json!({"event": "taken_over", "seq": 1, "time": 0, "case": "case-1", "from": "lg:131059", "consent": "consent-141003-2027-0007", "period_from": "2027-01-15", "period_to": "2027-04-30"}),
            ),
        ];
        let issuer = Issuer {
            name: "横浜市 横浜市保健所",
            org: "lg:141003",
            contact: "03-0000-0000",
            issued: Timestamp(1_793_547_000),
        };
        let html = page("case-1", &records, &[], &issuer, &|o| o.into());
        assert!(html.contains("転居先へ支援を引き継ぎ"), "{html}");
        assert!(html.contains("終了日：2027-01-25"), "{html}");
        assert!(html.contains("転居元から支援を引き継ぎ"), "{html}");
        assert!(html.contains("支援期間：2027-01-15〜2027-04-30"), "{html}");
        assert!(
            !html.contains("consent-141003"),
            "no consent id on the page"
        );
    }

    #[test]
    fn one_row_per_disclosure_saying_what_was_given_in_japanese_and_escaped() {
        let records = vec![
            rec(
                json!({"event": "queued", "seq": 0, "time": 0, "id": "01", "case": "case-1", "to": "ot:npo-komorebi", "kind": "needs_assessment"}),
            ),
            rec(
                json!({"event": "redacted", "seq": 1, "time": 0, "id": "01", "case": "case-1", "to": "ot:npo-komorebi", "kind": "needs_assessment", "profile": "form6", "withheld": ["items.F1"]}),
            ),
            rec(
                json!({"event": "sent", "seq": 2, "time": 0, "id": "01", "case": "case-1", "to": "ot:npo-komorebi", "kind": "needs_assessment", "profile": "form6", "withheld": DocType::NeedsAssessment.element_ids().into_iter().filter(|e| e.starts_with("items.") || e == "opinion").collect::<Vec<_>>()}),
            ),
            rec(
                json!({"event": "gate_denied", "seq": 3, "time": 0, "case": "case-1", "to": "ot:mpd", "kind": "support_plan", "purpose": "plan_implementation", "code": "police_refused_by_person", "rule": "R6"}),
            ),
        ];
        let issuer = Issuer {
            name: "文京区 文京保健所<b>",
            org: "lg:131059",
            contact: "保健予防課 03-0000-0000",
            issued: Timestamp(1_793_547_000),
        };
        let html = page("case-1", &records, &[], &issuer, &|o| {
            if o == "ot:npo-komorebi" {
                "NPO法人こもれび<script>".into()
            } else {
                o.into()
            }
        });
        // Internal steps (queued, redacted) are not rows; the disclosure and the refusal are.
        assert!(html.contains("記録件数：2件"), "{html}");
        assert!(html.contains("提供しました") && html.contains("提供した項目："));
        assert!(html.contains("総合アセスメント（環境要因）"));
        assert!(
            !html.contains("項目評価 F1"),
            "withheld items are not listed as given"
        );
        assert!(html.contains("警察への提供（本人が拒否）"));
        assert!(!html.contains("police_refused_by_person") && !html.contains("R6"));
        assert!(html.contains("発行日：2026-11-02") && html.contains("保健予防課 03-0000-0000"));
        // Every value is escaped.
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("&lt;b&gt;"));
    }
}
