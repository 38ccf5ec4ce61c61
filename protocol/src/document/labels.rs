//! The Japanese labels of the forms' elements, as printed on the reference forms.
//!
//! This module owns the wording staff and the person read next to each element: the labels of
//! the reference forms (参考様式) that accompany the MHLW guideline on discharge support
//! (地方公共団体による精神障害者の退院後支援に関するガイドライン, 2018), as reproduced in text
//! by the research group's practice guide. Pages that show elements (the subject-access page, the
//! printable forms) should take their labels from here rather than keep their own copies, so that
//! every rendering says what the form says.
//!
//! [`label`] answers for one element of one document type. It returns `None` for elements the
//! form prints no label for: dates written without a caption (`made_on`, `written_on`,
//! `assessed_on`), composite blocks the form spreads over several captions (`person`, the
//! hospital's header), and fields that exist only in tsunagi (`co_author`, `admission_type`,
//! `relocation_clause`, `candidate_support_parties`). Form 7 (the transfer notice) and the
//! non-form messages have no reference text in our sources, so they have no labels here; callers
//! keep their own wording for those.
//!
//! Form 5 prints each item as a short name followed by a description (`A1住居：退院後の居住先`);
//! [`FORM5_ITEMS`] holds both, and [`label`] returns the name. Form 6 (`summary.*`) has its own
//! wording for the domains (e.g. `E: 支援継続` where Form 5's heading reads
//! `E:支援継続に関する課題`); [`label`] returns Form 6's, since the summaries are Form 6 elements.

use super::DocType;

/// One Form 5 item as printed: its code, its name, and the description after the colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemLabel {
    /// The code and element suffix: `A1` … `F5`, or `other`.
    pub code: &'static str,
    /// The item's name as printed, e.g. `住居`.
    pub name: &'static str,
    /// The description printed after the name, e.g. `退院後の居住先`; `None` where the form
    /// prints only the name (E2, その他).
    pub description: Option<&'static str>,
}

const fn item(
    code: &'static str,
    name: &'static str,
    description: Option<&'static str>,
) -> ItemLabel {
    ItemLabel {
        code,
        name,
        description,
    }
}

/// The 25 items of Form 5 (退院後支援のニーズに関するアセスメント) and "other", in form order.
pub const FORM5_ITEMS: [ItemLabel; 26] = [
    item("A1", "住居", Some("退院後の居住先")),
    item("A2", "経済的援助", Some("生活保護等の経済的援助の必要性")),
    item("A3", "親しい関係者", Some("家族、パートナー等との関係性")),
    item("A4", "子供の世話", Some("18歳以下の子供の養育")),
    item("A5", "介護", Some("高齢者、障害者の介護")),
    item("B1", "食事", Some("料理、外食、適切な食事の購入")),
    item("B2", "生活環境の管理", Some("自室や生活環境を整えること")),
    item("B3", "セルフケア", Some("入浴、歯磨き等の清潔保持")),
    item("B4", "電話", Some("電話の有無、電話使用の可否")),
    item("B5", "移動", Some("公共交通機関、車等の移動手段の利用")),
    item("B6", "金銭管理", Some("金銭の管理と計画的な使用")),
    item("B7", "基礎教育", Some("読み書き、計算等の基礎学力")),
    item("C1", "日中の活動", Some("適切な日中の時間の過ごし方")),
    item("C2", "交流", Some("家族以外との社会的交流")),
    item("D1", "精神症状", Some("幻覚、妄想、思考障害等")),
    item("D2", "身体的健康", Some("身体疾患、副作用を含む身体症状")),
    item("D3", "心理的苦痛", Some("不安、抑うつ、悩みごと等")),
    item("D4", "性的な問題", Some("性嗜好の問題、性機能障害等")),
    item(
        "E1",
        "処遇・治療情報",
        Some("処遇・治療に関する情報提供とその理解"),
    ),
    item("E2", "治療・支援への動機づけ/疾病の自己管理", None),
    item("F1", "アルコール", Some("アルコールに関連する問題全般")),
    item(
        "F2",
        "薬物",
        Some("処方薬依存・乱用を含む薬物関連の問題全般"),
    ),
    item(
        "F3",
        "自分に対する安全",
        Some("自殺関連行動等、セルフネグレクト等"),
    ),
    item("F4", "他者に対する安全", Some("暴力、威嚇行動等")),
    item(
        "F5",
        "その他の行動上の問題",
        Some("衝動性や強迫行為、嗜癖等"),
    ),
    item("other", "その他", None),
];

/// The Form 6 domains (`summary.A` … `summary.other`) and the overall summary, as printed.
pub const FORM6_DOMAINS: [(&str, &str); 8] = [
    ("A", "環境要因"),
    ("B", "生活機能（活動）"),
    ("C", "社会参加"),
    ("D", "心身の状態"),
    ("E", "支援継続"),
    ("F", "行動"),
    ("other", "その他"),
    ("overall", "アセスメントのまとめ"),
];

/// The three columns of each Form 6 domain: the JSON key of [`super::DomainSummary`] and the
/// caption printed above it.
pub const FORM6_COLUMNS: [(&str, &str); 3] = [
    ("needs", "支援ニーズ・課題"),
    ("wishes", "本人の希望"),
    ("strengths", "ストレングス（強み、できること）"),
];

/// The printed title of the form a document type is written on, where it has a reference form
/// in our sources.
pub fn title(doc_type: DocType) -> Option<&'static str> {
    Some(match doc_type {
        DocType::NeedsAssessment => "退院後支援のニーズに関するアセスメント",
        DocType::OpinionLetter => "退院後支援に関する計画に係る意見書",
        DocType::SupportPlan => "退院後支援に関する計画",
        _ => return None,
    })
}

/// Labels Form 1 (plan) and Form 3 (opinion letter) print alike.
fn plan_like(element_id: &str) -> Option<&'static str> {
    Some(match element_id {
        "diagnosis" => "病名",
        "admission_date" => "今回の入院年月日",
        "wishes" => "退院後の生活に関する本人の希望",
        "supporters" => "家族その他の支援者の意見",
        "continued_admission" => "入院継続の必要性",
        "benefits" => "医療・障害福祉サービス等に関する基本情報",
        "services_needed" => "退院後に必要な医療等の支援",
        "support_rows" => "支援内容",
        "policy_if_discontinued" => "必要な医療等の支援の利用が継続されなかった場合の対処方針",
        "crisis_plan" => "クライシスプラン（困ったときの対処）",
        _ => return None,
    })
}

/// The Japanese label printed on the reference form for `element_id` of a `doc_type`
/// document, e.g. `label(DocType::NeedsAssessment, "items.E2")` →
/// `治療・支援への動機づけ/疾病の自己管理`. `None` when the form prints no label for it (see the
/// module docs).
pub fn label(doc_type: DocType, element_id: &str) -> Option<&'static str> {
    match doc_type {
        DocType::NeedsAssessment => {
            if let Some(code) = element_id.strip_prefix("items.") {
                return FORM5_ITEMS.iter().find(|i| i.code == code).map(|i| i.name);
            }
            if let Some(domain) = element_id.strip_prefix("summary.") {
                return FORM6_DOMAINS
                    .iter()
                    .find(|(d, _)| *d == domain)
                    .map(|(_, l)| *l);
            }
            Some(match element_id {
                "institution" => "医療機関名",
                "physician" => "主治医氏名",
                "discharge_counsellor" => "退院後生活環境相談担当者/相談員氏名",
                "opinion" => "支援に関する意見",
                _ => return None,
            })
        }
        DocType::SupportPlan => plan_like(element_id).or_else(|| {
            Some(match element_id {
                "hospital" => "入院先病院",
                "discharge_date" => "退院日(予定)",
                "support_period" => "計画に基づく支援期間",
                _ => return None,
            })
        }),
        DocType::OpinionLetter => plan_like(element_id).or_else(|| {
            Some(match element_id {
                "planned_discharge_date" => "退院予定日",
                "support_period_proposal" => "計画に基づく支援期間",
                "attending_physician" => "主治医氏名",
                "discharge_counsellor" => "退院後生活環境相談担当者/相談員氏名",
                _ => return None,
            })
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NA: DocType = DocType::NeedsAssessment;

    #[test]
    fn form5_labels_match_the_reference_form() {
        // As printed on 参考様式5 (research group's text of the guideline's forms).
        assert_eq!(
            label(NA, "items.E2"),
            Some("治療・支援への動機づけ/疾病の自己管理")
        );
        assert_eq!(label(NA, "items.A3"), Some("親しい関係者"));
        assert_eq!(label(NA, "items.B7"), Some("基礎教育"));
        assert_eq!(label(NA, "items.E1"), Some("処遇・治療情報"));
        assert_eq!(label(NA, "items.A4"), Some("子供の世話"));
        assert_eq!(label(NA, "items.other"), Some("その他"));
        assert_eq!(label(NA, "opinion"), Some("支援に関する意見"));
        assert_eq!(label(NA, "summary.overall"), Some("アセスメントのまとめ"));
        assert_eq!(label(NA, "summary.E"), Some("支援継続"));
        let e1 = FORM5_ITEMS.iter().find(|i| i.code == "E1").unwrap();
        assert_eq!(e1.description, Some("処遇・治療に関する情報提供とその理解"));
    }

    #[test]
    fn form5_has_25_items_and_other_in_form_order() {
        let codes: Vec<&str> = FORM5_ITEMS.iter().map(|i| i.code).collect();
        let expected = [
            "A1", "A2", "A3", "A4", "A5", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "C1", "C2",
            "D1", "D2", "D3", "D4", "E1", "E2", "F1", "F2", "F3", "F4", "F5", "other",
        ];
        assert_eq!(codes, expected);
    }

    #[test]
    fn every_label_names_a_real_element_and_every_rated_element_has_one() {
        let keys = [
            "institution",
            "physician",
            "discharge_counsellor",
            "opinion",
            "person",
            "assessed_on",
            "diagnosis",
            "admission_date",
            "wishes",
            "supporters",
            "continued_admission",
            "benefits",
            "services_needed",
            "support_rows",
            "policy_if_discontinued",
            "crisis_plan",
            "hospital",
            "discharge_date",
            "support_period",
            "planned_discharge_date",
            "support_period_proposal",
            "attending_physician",
            "co_author",
            "made_on",
            "written_on",
            "plan",
            "relocation",
            "no_such_element",
            "items.Z9",
            "summary.Z",
        ];
        for t in DocType::ALL {
            let ids = t.element_ids();
            for key in keys {
                if let Some(l) = label(*t, key) {
                    assert!(ids.contains(&key.to_owned()), "{t} has no element {key}");
                    assert!(!l.is_empty(), "{t} {key}");
                }
            }
        }
        let na = NA.element_ids();
        for id in na
            .iter()
            .filter(|id| id.starts_with("items.") || id.starts_with("summary."))
        {
            assert!(label(NA, id).is_some(), "{id} has no label");
        }
        for (code, _) in FORM6_DOMAINS {
            assert!(na.contains(&format!("summary.{code}")), "summary.{code}");
        }
        for i in FORM5_ITEMS {
            assert!(
                na.contains(&format!("items.{}", i.code)),
                "items.{}",
                i.code
            );
        }
        for id in [
            "opinion",
            "institution",
            "physician",
            "discharge_counsellor",
        ] {
            assert!(
                na.contains(&id.to_owned()) && label(NA, id).is_some(),
                "{id}"
            );
        }
    }

    #[test]
    fn plan_and_opinion_letter_share_the_printed_captions() {
        for t in [DocType::SupportPlan, DocType::OpinionLetter] {
            let ids = t.element_ids();
            for id in [
                "diagnosis",
                "wishes",
                "support_rows",
                "policy_if_discontinued",
            ] {
                assert!(ids.contains(&id.to_owned()), "{t} {id}");
                assert_eq!(label(t, id), plan_like(id));
            }
        }
        assert_eq!(
            label(DocType::SupportPlan, "support_period"),
            Some("計画に基づく支援期間")
        );
        assert_eq!(
            label(DocType::OpinionLetter, "planned_discharge_date"),
            Some("退院予定日")
        );
        assert_eq!(label(DocType::SupportPlan, "co_author"), None);
        assert_eq!(label(DocType::TransferNotice, "plan"), None);
        assert_eq!(title(NA), Some("退院後支援のニーズに関するアセスメント"));
    }
}
