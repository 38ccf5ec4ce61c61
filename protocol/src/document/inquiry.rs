//! After a move (III.5, R5): the destination authority's request to the origin for more
//! information about the support given so far, and the origin's answer.
//!
//! The destination takes the case over with its own consent; asking the origin for more than
//! Form 7 carried needs that consent too: the request names it (`consent_id`,
//! `consent_version`), and the gate lets the request go only when that consent names the origin
//! and grants `relocation_transfer` and `information_request`. The origin answers under the same
//! consent, to the authority that asked (its controller) and to no one else; the answer names the
//! request by id and by the SHA-256 of its signed document.

use serde::{Deserialize, Serialize};

use super::{require_authority, require_type, CaseId, DocType, SupportGiven, ValidationError};
use crate::date::Date;
use crate::org::OrgId;

/// The destination authority's request for information about past support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InformationRequest {
    /// Always `information_request`.
    pub document_type: DocType,
    /// The destination authority that asks (`lg:`), controller of the consent named below.
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The origin authority asked (`lg:`), not the author.
    pub to: OrgId,
    /// The request's id, which the answer names.
    pub id: String,
    /// The day it was asked.
    pub asked_on: Date,
    /// The consent that covers the request: the destination's own.
    pub consent_id: String,
    /// That consent's version when the request was made.
    pub consent_version: u32,
    /// What is asked (at least one question).
    pub questions: Vec<String>,
}

/// The origin's answer to an [`InformationRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InformationAnswer {
    /// Always `information_answer`.
    pub document_type: DocType,
    /// The origin authority (`lg:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The authority that asked (`lg:`).
    pub to: OrgId,
    /// The id of the request answered.
    pub request_id: String,
    /// The SHA-256 of the request's signed document (lowercase hex, 64 characters).
    pub request_digest: String,
    /// The day it was answered.
    pub answered_on: Date,
    /// The answer.
    pub answer: String,
    /// Support given, per agency, where the answer lists it.
    #[serde(default)]
    pub support_given: Vec<SupportGiven>,
}

fn between_authorities(author: &OrgId, to: &OrgId) -> Result<(), ValidationError> {
    require_authority("author", author)?;
    require_authority("to", to)?;
    if to == author {
        return Err(ValidationError::at(
            "to",
            format!("{to} is the author itself: the request goes between two authorities"),
        ));
    }
    Ok(())
}

fn require_id(path: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::at(
            path,
            "expected an id of 1 to 64 visible ASCII characters",
        ));
    }
    Ok(())
}

impl InformationRequest {
    /// Checks the rules the types do not: between two authorities, an id, a consent version of
    /// at least 1, and at least one question that is not blank.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type(
            "document_type",
            self.document_type,
            DocType::InformationRequest,
        )?;
        between_authorities(&self.author, &self.to)?;
        require_id("id", &self.id)?;
        require_id("consent_id", &self.consent_id)?;
        if self.consent_version == 0 {
            return Err(ValidationError::at(
                "consent_version",
                "0 is not a consent version: versions start at 1",
            ));
        }
        if self.questions.is_empty() {
            return Err(ValidationError::at(
                "questions",
                "ask at least one question",
            ));
        }
        if let Some(i) = self.questions.iter().position(|q| q.trim().is_empty()) {
            return Err(ValidationError::at(
                format!("questions.{i}"),
                "a question is blank",
            ));
        }
        Ok(())
    }
}

impl InformationAnswer {
    /// Checks the rules the types do not: between two authorities, the request's id and digest.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type(
            "document_type",
            self.document_type,
            DocType::InformationAnswer,
        )?;
        between_authorities(&self.author, &self.to)?;
        require_id("request_id", &self.request_id)?;
        let d = &self.request_digest;
        if d.len() != 64
            || !d
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ValidationError::at(
                "request_digest",
                "expected the SHA-256 of the request's signed document as 64 lowercase hex digits",
            ));
        }
        if self.answer.trim().is_empty() {
            return Err(ValidationError::at("answer", "the answer is blank"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::document::Document;

    fn request() -> serde_json::Value {
        serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/kanagawa/information_request.json"
        ))
        .unwrap()
    }

    fn answer() -> serde_json::Value {
        serde_json::from_str(include_str!(
            "../../../fixtures/case-0007/kanagawa/information_answer.json"
        ))
        .unwrap()
    }

    #[test]
    fn the_fixtures_are_valid() {
        assert!(matches!(
            Document::from_value(request()).unwrap(),
            Document::InformationRequest(_)
        ));
        assert!(matches!(
            Document::from_value(answer()).unwrap(),
            Document::InformationAnswer(_)
        ));
    }

    #[test]
    fn a_request_asks_something_of_another_authority() {
        let mut r = request();
        r["questions"] = serde_json::json!([]);
        let e = Document::from_value(r).unwrap_err().to_string();
        assert!(e.contains("questions"), "{e}");
        let mut r = request();
        r["to"] = r["author"].clone();
        let e = Document::from_value(r).unwrap_err().to_string();
        assert!(e.contains("the author itself"), "{e}");
        let mut r = request();
        r["to"] = "mi:1310000017".into();
        assert!(Document::from_value(r).is_err());
        let mut r = request();
        r["consent_version"] = 0.into();
        let e = Document::from_value(r).unwrap_err().to_string();
        assert!(e.contains("consent_version"), "{e}");
    }

    #[test]
    fn an_answer_names_the_request_by_digest() {
        let mut a = answer();
        a["request_digest"] = "XYZ".into();
        let e = Document::from_value(a).unwrap_err().to_string();
        assert!(e.contains("request_digest"), "{e}");
        let mut a = answer();
        a["answer"] = " ".into();
        assert!(Document::from_value(a).is_err());
    }
}
