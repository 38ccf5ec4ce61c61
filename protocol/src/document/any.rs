//! The [`Document`] enum over every document type: parsing with validation, the JSON shape, and
//! the mapping to and from signed elements.
//!
//! Parsing dispatches on `document_type`, then deserializes the whole object into the type's
//! struct through `serde_path_to_error`, so every error reads `{path}: {message}`; then the
//! document's own `validate` checks the cross-field rules.
//!
//! The element set of a type is derived from its struct's fields (the names serde's derive
//! declares), so it cannot drift from the JSON shape. For a consent record, which has no
//! `author`, the `controller` is the author; it stays an element too (it is part of the record),
//! and [`Document::from_elements`] requires it to match the manifest author.

use std::collections::BTreeSet;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{
    elements_to_json, AdmissionMaterial, AssessmentItems, AssessmentSummary, CaseId, ConsentRecord,
    ConsentWithdrawal, Delegation, DocType, InformationAnswer, InformationRequest, MeetingRecord,
    NeedsAssessment, OpinionLetter, OrgId, Readmission, ResidenceChange, SupportEnd, SupportPlan,
    SupportSummary, TransferNotice, ValidationError,
};

/// Any document of the exchange, parsed and validated. Serializes to its JSON shape.
///
/// The three large forms are boxed to keep the enum small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Document {
    /// Form 5 + Form 6.
    NeedsAssessment(Box<NeedsAssessment>),
    /// Form 3 + Form 4.
    OpinionLetter(Box<OpinionLetter>),
    /// Form 1 + Form 2.
    SupportPlan(Box<SupportPlan>),
    /// Form 7.
    TransferNotice(TransferNotice),
    /// Support given so far, following a transfer notice.
    SupportSummary(SupportSummary),
    /// Residence-change report.
    ResidenceChange(ResidenceChange),
    /// Consent record (its author is the controller).
    Consent(ConsentRecord),
    /// Consent withdrawal notice.
    ConsentWithdrawal(ConsentWithdrawal),
    /// Support end notice.
    SupportEnd(SupportEnd),
    /// A support meeting record.
    MeetingRecord(Box<MeetingRecord>),
    /// A readmission notice.
    Readmission(Readmission),
    /// Delegation record (III.8).
    Delegation(Delegation),
    /// Measure-admission material (R11).
    AdmissionMaterial(Box<AdmissionMaterial>),
    /// The destination's request for information about past support (III.5).
    InformationRequest(InformationRequest),
    /// The origin's answer to it.
    InformationAnswer(InformationAnswer),
}

/// Applies `$e` to the inner document `$d` of every variant.
macro_rules! each {
    ($doc:expr, $d:ident => $e:expr) => {
        match $doc {
            Document::NeedsAssessment($d) => $e,
            Document::OpinionLetter($d) => $e,
            Document::SupportPlan($d) => $e,
            Document::TransferNotice($d) => $e,
            Document::SupportSummary($d) => $e,
            Document::ResidenceChange($d) => $e,
            Document::Consent($d) => $e,
            Document::ConsentWithdrawal($d) => $e,
            Document::SupportEnd($d) => $e,
            Document::MeetingRecord($d) => $e,
            Document::Readmission($d) => $e,
            Document::Delegation($d) => $e,
            Document::AdmissionMaterial($d) => $e,
            Document::InformationRequest($d) => $e,
            Document::InformationAnswer($d) => $e,
        }
    };
}

/// Deserializes `v` as `T`, with the failing path in the error.
fn parse<T: DeserializeOwned>(v: Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(v)
        .map_err(|e| ValidationError::at(e.path().to_string(), e.into_inner().to_string()))
}

impl Document {
    /// Parses and validates a document from JSON text. Bad syntax is an error at path `.`.
    pub fn from_json(text: &str) -> Result<Document, ValidationError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ValidationError::at(".", e.to_string()))?;
        Document::from_value(v)
    }

    /// Parses and validates a document from a JSON value, dispatching on `document_type`.
    pub fn from_value(v: Value) -> Result<Document, ValidationError> {
        let Value::Object(map) = &v else {
            return Err(ValidationError::at(
                ".",
                format!(
                    "expected a JSON object, found {}",
                    match v {
                        Value::Null => "null",
                        Value::Bool(_) => "a boolean",
                        Value::Number(_) => "a number",
                        Value::String(_) => "a string",
                        Value::Array(_) => "an array",
                        Value::Object(_) => "an object",
                    }
                ),
            ));
        };
        let doc_type = match map.get("document_type") {
            Some(Value::String(s)) => s
                .parse::<DocType>()
                .map_err(|e| ValidationError::at("document_type", e))?,
            found => {
                let expected = DocType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>();
                let found = found.map_or("nothing".to_owned(), Value::to_string);
                return Err(ValidationError::at(
                    "document_type",
                    format!("expected one of {}, found {found}", expected.join(", ")),
                ));
            }
        };
        let doc = match doc_type {
            DocType::NeedsAssessment => Document::NeedsAssessment(Box::new(parse(v)?)),
            DocType::OpinionLetter => Document::OpinionLetter(Box::new(parse(v)?)),
            DocType::SupportPlan => Document::SupportPlan(Box::new(parse(v)?)),
            DocType::TransferNotice => Document::TransferNotice(parse(v)?),
            DocType::SupportSummary => Document::SupportSummary(parse(v)?),
            DocType::ResidenceChange => Document::ResidenceChange(parse(v)?),
            DocType::Consent => Document::Consent(parse(v)?),
            DocType::ConsentWithdrawal => Document::ConsentWithdrawal(parse(v)?),
            DocType::SupportEnd => Document::SupportEnd(parse(v)?),
            DocType::MeetingRecord => Document::MeetingRecord(Box::new(parse(v)?)),
            DocType::Readmission => Document::Readmission(parse(v)?),
            DocType::Delegation => Document::Delegation(parse(v)?),
            DocType::AdmissionMaterial => Document::AdmissionMaterial(Box::new(parse(v)?)),
            DocType::InformationRequest => Document::InformationRequest(parse(v)?),
            DocType::InformationAnswer => Document::InformationAnswer(parse(v)?),
        };
        doc.validate()?;
        Ok(doc)
    }

    /// Checks the document's cross-field rules (called by [`Document::from_value`]).
    pub fn validate(&self) -> Result<(), ValidationError> {
        each!(self, d => d.validate())
    }

    /// The document type.
    pub fn doc_type(&self) -> DocType {
        each!(self, d => d.document_type)
    }

    /// The author; for a consent record, the controller.
    pub fn author(&self) -> &OrgId {
        match self {
            Document::NeedsAssessment(d) => &d.author,
            Document::OpinionLetter(d) => &d.author,
            Document::SupportPlan(d) => &d.author,
            Document::TransferNotice(d) => &d.author,
            Document::SupportSummary(d) => &d.author,
            Document::ResidenceChange(d) => &d.author,
            Document::Consent(d) => &d.controller,
            Document::ConsentWithdrawal(d) => &d.author,
            Document::SupportEnd(d) => &d.author,
            Document::MeetingRecord(d) => &d.author,
            Document::Readmission(d) => &d.author,
            Document::Delegation(d) => &d.author,
            Document::AdmissionMaterial(d) => &d.author,
            Document::InformationRequest(d) => &d.author,
            Document::InformationAnswer(d) => &d.author,
        }
    }

    /// The case the document is about.
    pub fn subject(&self) -> &CaseId {
        each!(self, d => &d.subject)
    }

    /// The document in its JSON input shape (absent optional values as `null`).
    pub fn to_json(&self) -> Value {
        // Infallible: every map key is a string and every value serializes.
        serde_json::to_value(self).expect("documents serialize to JSON")
    }

    /// The document's elements in [`DocType::element_ids`] order; absent values are `null`.
    pub fn to_elements(&self) -> Vec<(String, Value)> {
        let json = self.to_json();
        self.doc_type()
            .element_ids()
            .into_iter()
            .map(|id| {
                let v = match id.split_once('.') {
                    // Consent recipient slots index the array.
                    Some(("recipients", slot)) => json
                        .get("recipients")
                        .zip(slot.parse::<usize>().ok())
                        .and_then(|(r, i)| r.get(i)),
                    Some((parent, child)) => json.get(parent).and_then(|p| p.get(child)),
                    None => json.get(&id),
                };
                let v = v.cloned().unwrap_or(Value::Null);
                (id, v)
            })
            .collect()
    }

    /// Rebuilds a document from all its elements and the manifest's type, author and subject
    /// (the inverse of [`Document::to_elements`]); then parses and validates it. Unknown or
    /// duplicate elements are errors, and so is a consent `controller` that is not the author.
    pub fn from_elements(
        doc_type: DocType,
        author: &OrgId,
        subject: &CaseId,
        elements: Vec<(String, Value)>,
    ) -> Result<Document, ValidationError> {
        let ids = doc_type.element_ids();
        let mut seen = BTreeSet::new();
        for (id, _) in &elements {
            if !ids.contains(id) {
                return Err(ValidationError::at(
                    id.as_str(),
                    format!("not an element of a {doc_type}"),
                ));
            }
            if !seen.insert(id.as_str()) {
                return Err(ValidationError::at(id.as_str(), "element appears twice"));
            }
        }
        let mut map = elements_to_json(elements.iter().map(|(id, v)| (id.as_str(), v)));
        let author_key = if doc_type == DocType::Consent {
            "controller"
        } else {
            "author"
        };
        if let Some(c) = map.get(author_key) {
            if c.as_str() != Some(author.as_str()) {
                return Err(ValidationError::at(
                    author_key,
                    format!("{c} is not the author {author}"),
                ));
            }
        }
        map.insert("document_type".into(), doc_type.as_str().into());
        map.insert("subject".into(), subject.as_str().into());
        map.insert(author_key.into(), author.as_str().into());
        Document::from_value(Value::Object(map))
    }
}

impl<'de> Deserialize<'de> for Document {
    /// Deserializes through [`Document::from_value`], so documents nested in other structures
    /// are validated too.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Document::from_value(Value::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl DocType {
    /// The fixed element set of this type, in order: every top-level field except
    /// `document_type`, `author` and `subject`; for the needs assessment, `items` and `summary`
    /// split one level (`items.A1` … `items.other`, `summary.A` … `summary.overall`); for a
    /// consent record, `recipients` split into slots `recipients.0` … `recipients.15`.
    pub fn element_ids(self) -> Vec<String> {
        let fields = match self {
            DocType::NeedsAssessment => field_names::<NeedsAssessment>(),
            DocType::OpinionLetter => field_names::<OpinionLetter>(),
            DocType::SupportPlan => field_names::<SupportPlan>(),
            DocType::TransferNotice => field_names::<TransferNotice>(),
            DocType::SupportSummary => field_names::<SupportSummary>(),
            DocType::ResidenceChange => field_names::<ResidenceChange>(),
            DocType::Consent => field_names::<ConsentRecord>(),
            DocType::ConsentWithdrawal => field_names::<ConsentWithdrawal>(),
            DocType::SupportEnd => field_names::<SupportEnd>(),
            DocType::MeetingRecord => field_names::<MeetingRecord>(),
            DocType::Readmission => field_names::<Readmission>(),
            DocType::Delegation => field_names::<Delegation>(),
            DocType::AdmissionMaterial => field_names::<AdmissionMaterial>(),
            DocType::InformationRequest => field_names::<InformationRequest>(),
            DocType::InformationAnswer => field_names::<InformationAnswer>(),
        };
        let split = |parent: &str, children: &[&str]| -> Vec<String> {
            children.iter().map(|c| format!("{parent}.{c}")).collect()
        };
        let mut ids = Vec::new();
        for &f in fields {
            match (self, f) {
                (_, "document_type" | "author" | "subject") => {}
                (DocType::NeedsAssessment, "items") => {
                    ids.extend(split(f, field_names::<AssessmentItems>()));
                }
                (DocType::NeedsAssessment, "summary") => {
                    ids.extend(split(f, field_names::<AssessmentSummary>()));
                }
                (DocType::Consent, "recipients") => {
                    ids.extend((0..super::consent::MAX_RECIPIENTS).map(|i| format!("{f}.{i}")));
                }
                _ => ids.push(f.to_owned()),
            }
        }
        ids
    }
}

/// The JSON keys of a derived struct, in declaration order: the `fields` serde's derive passes to
/// `deserialize_struct`, captured by a deserializer that fails right after.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FIXTURES: [(&str, &str); 10] = [
        (
            "needs_assessment",
            include_str!("../../../fixtures/case-0007/needs_assessment.json"),
        ),
        (
            "opinion_letter",
            include_str!("../../../fixtures/case-0007/opinion_letter.json"),
        ),
        (
            "support_plan",
            include_str!("../../../fixtures/case-0007/support_plan.json"),
        ),
        (
            "residence_change",
            include_str!("../../../fixtures/case-0007/residence_change.json"),
        ),
        (
            "consent",
            include_str!("../../../fixtures/case-0007/consent.json"),
        ),
        (
            "consent",
            include_str!("../../../fixtures/case-0007/consent_v2_relocation.json"),
        ),
        (
            "consent",
            include_str!("../../../fixtures/case-0007/consent_v3_withdrawn.json"),
        ),
        (
            "meeting_record",
            include_str!("../../../fixtures/case-0007/meeting_record.json"),
        ),
        (
            "readmission",
            include_str!("../../../fixtures/case-0007/readmission.json"),
        ),
        (
            "support_end",
            include_str!("../../../fixtures/case-0007/support_end.json"),
        ),
    ];

    fn fixture(name: &str) -> Value {
        let (_, text) = FIXTURES.iter().find(|(n, _)| *n == name).unwrap();
        serde_json::from_str(text).unwrap()
    }

    /// The documents without fixtures, built from JSON literals (the plan embedded whole).
    fn constructed() -> Vec<Value> {
        vec![
            json!({
                "document_type": "transfer_notice",
                "author": "lg:131059",
                "subject": "case-131059-2026-0007",
                "to": "lg:131121",
                "sent_on": "2027-01-10",
                "relocation": {
                    "new_address": "東京都世田谷区太子堂九丁目2番2号",
                    "new_municipality": "131121",
                    "moved_on": "2027-01-15"
                },
                "plan": fixture("support_plan"),
                "remaining_period": { "from": "2027-01-15", "to": "2027-04-30" },
                "support_summary": null
            }),
            json!({
                "document_type": "support_summary",
                "author": "lg:131059",
                "subject": "case-131059-2026-0007",
                "to": "lg:131121",
                "written_on": "2027-01-20",
                "summary": "退院後、外来通院と訪問看護を継続。服薬は安定し、デイケアの見学を終えた。",
                "support_given": [
                    { "agency": "mi:1310000025", "agency_name": "本郷こころのクリニック", "support": "2週に1回の外来診察。中断なし。" },
                    { "agency": "lg:131059", "agency_name": "文京保健所", "support": "月1回の面接。生活保護の申請を支援。" }
                ]
            }),
            json!({
                "document_type": "consent_withdrawal",
                "author": "lg:131059",
                "subject": "case-131059-2026-0007",
                "consent_id": "consent-131059-2026-0007",
                "consent_version": 3,
                "withdrawn_on": "2027-02-01",
                "message": "本人が同意を撤回しました。以後、本件に関する情報の共有を停止してください。"
            }),
            json!({
                "document_type": "support_end",
                "author": "lg:131121",
                "subject": "case-131059-2026-0007",
                "ended_on": "2027-04-30",
                "outcome": "completed",
                "note": ""
            }),
        ]
    }

    /// A plan in the ※ minimum-field shape: admission continues, nothing optional filled in.
    fn minimal_plan() -> Value {
        let mut v = fixture("support_plan");
        v["co_author"] = Value::Null;
        v["discharge_date"] = Value::Null;
        v["crisis_plan"] = Value::Null;
        v["continued_admission"] = json!({
            "required": true,
            "form": "transfer_physical",
            "estimated_length": "3か月",
            "transfer_hospital": { "name": "都立みどり総合病院", "contact": "03-0000-7007" }
        });
        v
    }

    /// Parses, checks the JSON and element round trips, and returns the document.
    fn round_trip(v: &Value) -> Document {
        let doc = Document::from_value(v.clone()).unwrap();
        assert_eq!(Document::from_value(doc.to_json()).unwrap(), doc);
        let elements = doc.to_elements();
        let ids: Vec<String> = elements.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ids, doc.doc_type().element_ids(), "{}", doc.doc_type());
        let back = Document::from_elements(doc.doc_type(), doc.author(), doc.subject(), elements);
        assert_eq!(back.unwrap(), doc);
        doc
    }

    /// `v` without object members whose value is null, recursively.
    fn without_nulls(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, without_nulls(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
            other => other,
        }
    }

    fn err(v: Value) -> String {
        Document::from_value(v).unwrap_err().to_string()
    }

    #[test]
    fn fixtures_parse_and_round_trip() {
        for (name, text) in FIXTURES {
            let doc = Document::from_json(text).unwrap();
            assert_eq!(doc.doc_type().as_str(), name);
            assert_eq!(doc.subject().as_str(), "case-131059-2026-0007");
            round_trip(&serde_json::from_str(text).unwrap());
            // The output is the input shape, but for absent optionals written as null.
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                without_nulls(doc.to_json()),
                without_nulls(expected),
                "{name}"
            );
        }
        assert_eq!(
            Document::from_value(fixture("consent"))
                .unwrap()
                .author()
                .as_str(),
            "lg:131059"
        );
    }

    #[test]
    fn constructed_documents_round_trip() {
        let mut types = BTreeSet::new();
        let delegation: Value =
            serde_json::from_str(include_str!("../../../fixtures/case-0007/delegation.json"))
                .unwrap();
        let admission: Value = serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/admission_material.json"
        ))
        .unwrap();
        let request: Value = serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/kanagawa/information_request.json"
        ))
        .unwrap();
        let answer: Value = serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/kanagawa/information_answer.json"
        ))
        .unwrap();
        for v in constructed().iter().chain([
            &minimal_plan(),
            &delegation,
            &admission,
            &request,
            &answer,
        ]) {
            let doc = round_trip(v);
            assert_eq!(without_nulls(doc.to_json()), without_nulls(v.clone()));
            types.insert(doc.doc_type());
        }
        for (_, text) in FIXTURES {
            types.insert(Document::from_json(text).unwrap().doc_type());
        }
        assert_eq!(types.len(), DocType::ALL.len(), "every type is covered");
    }

    #[test]
    fn continued_admission_shapes() {
        let mut v = minimal_plan();
        v["continued_admission"]["transfer_hospital"] = Value::Null;
        let doc = round_trip(&v);
        let expected = json!({
            "required": true,
            "form": "transfer_physical",
            "estimated_length": "3か月",
            "transfer_hospital": null
        });
        assert_eq!(doc.to_json()["continued_admission"], expected);
        v["continued_admission"]
            .as_object_mut()
            .unwrap()
            .remove("transfer_hospital");
        assert_eq!(Document::from_value(v).unwrap(), doc);
    }

    #[test]
    fn element_ids_are_fixed_and_split_the_assessment() {
        let na = DocType::NeedsAssessment.element_ids();
        assert_eq!(na.len(), 5 + 26 + 1 + 8);
        assert_eq!(na[5], "items.A1");
        assert!(na.contains(&"items.other".to_owned()));
        assert_eq!(na.last().unwrap(), "summary.overall");
        let consent = DocType::Consent.element_ids();
        assert!(consent.contains(&"controller".to_owned()));
        assert!(!consent.contains(&"subject".to_owned()));
        let plan = DocType::SupportPlan.element_ids();
        assert_eq!(plan[0], "co_author");
        assert!(!plan
            .iter()
            .any(|id| id == "author" || id == "document_type"));
        // Absent optionals are present as null.
        let doc = Document::from_value(minimal_plan()).unwrap();
        let els = doc.to_elements();
        assert!(els.contains(&("co_author".to_owned(), Value::Null)));
        assert!(els.contains(&("crisis_plan".to_owned(), Value::Null)));
    }

    #[test]
    fn from_elements_refuses_foreign_elements() {
        let doc = Document::from_value(fixture("consent")).unwrap();
        let author: OrgId = "lg:131059".parse().unwrap();
        let mut els = doc.to_elements();
        els.push(("author".to_owned(), json!("lg:131059")));
        let e = Document::from_elements(DocType::Consent, &author, doc.subject(), els);
        assert_eq!(
            e.unwrap_err().to_string(),
            "author: not an element of a consent"
        );
        let other: OrgId = "lg:131121".parse().unwrap();
        let e = Document::from_elements(DocType::Consent, &other, doc.subject(), doc.to_elements());
        assert_eq!(
            e.unwrap_err().to_string(),
            "controller: \"lg:131059\" is not the author lg:131121"
        );
        let mut els = doc.to_elements();
        els.push(els[0].clone());
        let e = Document::from_elements(DocType::Consent, &author, doc.subject(), els);
        assert_eq!(e.unwrap_err().to_string(), "id: element appears twice");
        // A redacted set is not a whole document.
        let na = Document::from_value(fixture("needs_assessment")).unwrap();
        let els = na
            .to_elements()
            .into_iter()
            .filter(|(id, _)| !id.starts_with("items."))
            .collect();
        let e = Document::from_elements(DocType::NeedsAssessment, na.author(), na.subject(), els);
        assert_eq!(e.unwrap_err().to_string(), ".: missing field `items`");
    }

    #[test]
    fn type_errors_name_the_path() {
        let mut v = fixture("needs_assessment");
        v["items"]["F1"]["staff"] = json!(3);
        assert_eq!(err(v), "items.F1.staff: 3 is not a rating (0, 1, 2, 9)");
        let mut v = fixture("needs_assessment");
        v["items"]["A1"]["self"] = json!(-1);
        assert!(err(v).starts_with("items.A1.self: invalid value: integer `-1`"));
        let mut v = fixture("needs_assessment");
        v["items"]["A2"].as_object_mut().unwrap().remove("staff");
        assert_eq!(err(v), "items.A2: missing field `staff`");

        let mut v = fixture("opinion_letter");
        v["person"]["municipality"] = json!("131058");
        assert_eq!(
            err(v),
            "person.municipality: 131058 fails its check digit (expected 9)"
        );
        let mut v = fixture("support_plan");
        v["person"]["municipality"] = json!("131058");
        assert_eq!(
            err(v),
            "person.municipality: 131058 fails its check digit (expected 9)"
        );

        let mut v = fixture("support_plan");
        v["person"]["nickname"] = json!("イッチー");
        let e = err(v);
        assert!(
            e.starts_with("person.nickname: unknown field `nickname`, expected one of `name`"),
            "{e}"
        );
        let mut v = fixture("support_plan");
        v["housing"] = json!("alone");
        assert!(err(v).starts_with("housing: unknown field `housing`"));
        let mut v = fixture("support_plan");
        v.as_object_mut().unwrap().remove("made_on");
        assert_eq!(err(v), ".: missing field `made_on`");
        let mut v = fixture("support_plan");
        v["support_rows"][1]["agency"] = json!("lg:131058");
        assert_eq!(
            err(v),
            "support_rows[1].agency: 131058 fails its check digit (expected 9)"
        );
        let mut v = fixture("support_plan");
        v["services_needed"][0] = json!("karaoke");
        assert!(err(v).starts_with("services_needed[0]: \"karaoke\" is not a service"));
        let mut v = fixture("opinion_letter");
        v["benefits"]["disability_pension"]["status"] = json!("maybe");
        assert!(err(v)
            .starts_with("benefits.disability_pension.status: \"maybe\" is not a benefit status"));
        let mut v = fixture("support_plan");
        v["continued_admission"] = json!({ "required": true });
        assert_eq!(
            err(v),
            "continued_admission: form and estimated_length are required when required is true"
        );
        let mut v = fixture("support_plan");
        v["continued_admission"] = json!({ "required": false, "estimated_length": "1か月" });
        assert!(err(v).starts_with(
            "continued_admission: form, estimated_length and transfer_hospital are only allowed"
        ));
        let mut v = fixture("consent");
        v["subject"] = json!("鈴木 一郎");
        assert!(err(v).starts_with("subject: \"鈴木 一郎\" is not a case id"));
    }

    #[test]
    fn document_type_and_syntax_errors() {
        let mut v = fixture("residence_change");
        v["document_type"] = json!("discharge_letter");
        assert!(err(v).starts_with(
            "document_type: \"discharge_letter\" is not a document type: expected one of needs_assessment,"
        ));
        let mut v = fixture("residence_change");
        v.as_object_mut().unwrap().remove("document_type");
        assert!(err(v).starts_with("document_type: expected one of needs_assessment,"));
        let mut v = fixture("residence_change");
        v["document_type"] = json!(7);
        assert!(err(v).ends_with("found 7"));
        assert_eq!(err(json!([])), ".: expected a JSON object, found an array");
        let e = Document::from_json("{\"document_type\": ").unwrap_err();
        assert_eq!(e.path, ".");
        assert!(e.message.contains("EOF while parsing"), "{e}");
        // A nested plan must be a plan.
        let mut v = constructed().remove(0);
        v["plan"]["document_type"] = json!("opinion_letter");
        assert_eq!(
            err(v),
            "plan.document_type: expected support_plan, found opinion_letter"
        );
    }

    #[test]
    fn semantic_rules() {
        let cases: Vec<(Value, &str, Value, &str)> = vec![
            (fixture("consent"), "/period/to", json!("2026-10-04"), "period.to: 2026-10-04 is before period.from 2026-10-05"),
            (fixture("consent"), "/version", json!(0), "version: 0 is not a consent version: versions start at 1"),
            (fixture("consent"), "/controller", json!("mi:1310000017"), "controller: mi:1310000017 is not a local government (lg:)"),
            (fixture("support_plan"), "/support_period/to", json!("2026-10-31"), "support_period.to: 2026-10-31 is before support_period.from 2026-11-01"),
            (fixture("support_plan"), "/support_period/extensions", json!([{"to": "2027-04-01", "meeting_on": "2027-03-01", "consent_version": 2, "consented_on": "2027-03-01", "reason": "継続"}]), "support_period.extensions.0.to: 2027-04-01 does not extend the period ending on 2027-04-30 (R7)"),
            (fixture("support_plan"), "/support_period/to", json!("2027-05-01"), "support_period.to: 2027-05-01 is more than 6 months after discharge on 2026-11-01; plan 6 months at most and extend the period at a support meeting with the person's consent (R7)"),
            (fixture("support_plan"), "/version", json!(0), "version: 0 is not a plan version: the first plan is version 1"),
            (fixture("support_plan"), "/version", json!(2), "supersedes: version 2 is a revision: name the version it revises and why"),
            (fixture("support_plan"), "/discharge_date", json!("2026-09-01"), "discharge_date: 2026-09-01 is before admission_date 2026-09-12"),
            (fixture("support_plan"), "/co_author", json!("lg:131059"), "co_author: lg:131059 is the author itself"),
            (fixture("support_plan"), "/author", json!("mi:1310000017"), "author: mi:1310000017 is not a local government (lg:)"),
            (fixture("support_plan"), "/hospital/org", json!("sp:1330000011"), "hospital.org: sp:1330000011 is not a medical institution (mi:)"),
            (fixture("opinion_letter"), "/hospital/org", json!("mi:1310000025"), "hospital.org: mi:1310000025 is not the author mi:1310000017"),
            (fixture("opinion_letter"), "/planned_discharge_date", json!("2026-09-11"), "planned_discharge_date: 2026-09-11 is before admission_date 2026-09-12"),
            (fixture("needs_assessment"), "/person/age", json!(131), "person.age: 131 is not a plausible age (at most 130)"),
            (constructed()[0].clone(), "/to", json!("mi:1310000017"), "to: mi:1310000017 is not a local government (lg:)"),
            (constructed()[0].clone(), "/to", json!("lg:131059"), "to: lg:131059 is the author itself: the destination must be another authority"),
            (constructed()[0].clone(), "/plan/subject", json!("case-131059-2026-0008"), "plan.subject: case-131059-2026-0008 is not the notice's subject case-131059-2026-0007"),
            (constructed()[0].clone(), "/plan/support_period/to", json!("2026-10-01"), "plan.support_period.to: 2026-10-01 is before support_period.from 2026-11-01"),
            (constructed()[0].clone(), "/remaining_period/to", json!("2027-01-01"), "remaining_period.to: 2027-01-01 is before remaining_period.from 2027-01-15"),
            (constructed()[1].clone(), "/to", json!("lg:131059"), "to: lg:131059 is the author itself: the destination must be another authority"),
            (constructed()[2].clone(), "/consent_version", json!(0), "consent_version: 0 is not a consent version: versions start at 1"),
            (constructed()[3].clone(), "/author", json!("ot:npo-komorebi"), "author: ot:npo-komorebi is not a local government (lg:)"),
        ];
        for (mut v, pointer, value, expected) in cases {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = v
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap();
            parent.insert(key.to_owned(), value);
            assert_eq!(err(v), expected);
        }
        // Crisis plan limits: 3 emergency contacts and 2 people not to contact fit; one more does not.
        let contact = json!({ "affiliation": "兄", "name": "鈴木 三郎", "phone": "090-0000-0009" });
        let mut v = fixture("support_plan");
        v["crisis_plan"]["emergency_contacts"]
            .as_array_mut()
            .unwrap()
            .push(contact.clone());
        let mut ok = v.clone();
        ok["crisis_plan"]["do_not_contact"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "relation": "叔父", "name": "鈴木 四郎" }));
        Document::from_value(ok.clone()).unwrap();
        v["crisis_plan"]["emergency_contacts"]
            .as_array_mut()
            .unwrap()
            .push(contact);
        assert_eq!(
            err(v),
            "crisis_plan.emergency_contacts: 4 entries, but the crisis plan has room for at most 3"
        );
        ok["crisis_plan"]["do_not_contact"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "relation": "元同僚", "name": "佐々木" }));
        assert_eq!(
            err(ok),
            "crisis_plan.do_not_contact: 3 entries, but the crisis plan has room for at most 2"
        );
        // A withdrawn consent, an age of 130 and a null self-rating are fine.
        Document::from_value(fixture("consent")).unwrap();
        assert_eq!(
            Document::from_json(FIXTURES[6].1).unwrap().to_json()["status"],
            json!("withdrawn")
        );
        let mut v = fixture("needs_assessment");
        v["person"]["age"] = json!(130);
        v["items"]["A1"]["self"] = Value::Null;
        Document::from_value(v).unwrap();
    }

    #[test]
    fn documents_deserialize_through_validation() {
        let doc: Document = serde_json::from_value(fixture("residence_change")).unwrap();
        assert_eq!(doc.author().as_str(), "lg:131059");
        let mut v = fixture("residence_change");
        v["new_municipality"] = json!("131058");
        let e = serde_json::from_value::<Document>(v)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "new_municipality: 131058 fails its check digit (expected 9)"
        );
    }
}
