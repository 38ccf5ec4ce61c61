//! Field checks run before a request reaches the gateway.
//!
//! The gateway checks everything again; checking here first lets an adapter say which field of
//! *its* input is wrong (`to`, `form.items.F1.staff`, `bundle_base64` …) in the words of the
//! protocol crate's own parsers.

use serde_json::Value;
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::{CaseId, DocType, Document, OrgId, Purpose};

/// A field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, as a dotted path in the caller's input (e.g. `form.items.F1.staff`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Largest document (form JSON or signed bundle) an adapter hands to the gateway: the gateway's
/// default envelope limit.
pub const MAX_DOCUMENT_BYTES: usize = tsunagi_protocol::cbor::DEFAULT_MAX_BYTES;

/// A recipient or other org id.
pub fn org(field: &str, s: &str) -> Result<OrgId, FieldError> {
    s.parse()
        .map_err(|e| FieldError::new(field, format!("{e}")))
}

/// A purpose (`plan_creation`, `plan_implementation` …).
pub fn purpose(field: &str, s: &str) -> Result<Purpose, FieldError> {
    s.parse().map_err(|e: String| FieldError::new(field, e))
}

/// A case pseudonym (`case-…`).
pub fn case(field: &str, s: &str) -> Result<CaseId, FieldError> {
    s.parse()
        .map_err(|e: String| FieldError::new(field, format!("{s:?} {e}")))
}

/// A message id: 32 hex digits.
pub fn message_id(field: &str, s: &str) -> Result<(), FieldError> {
    tsunagi_control::parse_id(s)
        .map(|_| ())
        .ok_or_else(|| FieldError::new(field, format!("{s:?} is not a message id (32 hex digits)")))
}

/// A form or record: it must parse as a document (of type `expected`, when given). Errors name
/// the document's own field below `field`, e.g. `form.items.F1.staff`.
pub fn document(field: &str, v: &Value, expected: Option<DocType>) -> Result<Document, FieldError> {
    let doc = Document::from_value(v.clone()).map_err(|e| {
        let at = if e.path == "." || e.path.is_empty() {
            field.to_owned()
        } else if field.is_empty() {
            e.path.clone()
        } else {
            format!("{field}.{}", e.path)
        };
        FieldError::new(at, e.message)
    })?;
    if let Some(t) = expected {
        if doc.doc_type() != t {
            let at = if field.is_empty() {
                "document_type".to_owned()
            } else {
                format!("{field}.document_type")
            };
            return Err(FieldError::new(
                at,
                format!("expected {t}, found {}", doc.doc_type()),
            ));
        }
    }
    Ok(doc)
}

/// A signed document bundle: it must decode strictly (the gateway verifies its signature).
pub fn bundle(field: &str, bytes: &[u8]) -> Result<(), FieldError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(FieldError::new(
            field,
            format!(
                "the document is {} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes",
                bytes.len()
            ),
        ));
    }
    DocBundle::from_bytes(bytes, &Limits::default())
        .map(|_| ())
        .map_err(|e| FieldError::new(field, format!("not a signed document: {e}")))
}

/// Hex digits to bytes.
pub fn unhex(field: &str, s: &str) -> Result<Vec<u8>, FieldError> {
    hex::decode(s).map_err(|e| FieldError::new(field, format!("not hex: {e}")))
}

/// Base64 (standard or URL-safe alphabet, padding optional, whitespace ignored) to bytes.
pub fn unbase64(field: &str, s: &str) -> Result<Vec<u8>, FieldError> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let body = clean
        .strip_suffix(b"==")
        .or_else(|| clean.strip_suffix(b"="));
    let padded = body.is_some();
    let body = body.unwrap_or(&clean);
    if (padded && clean.len() % 4 != 0) || body.len() % 4 == 1 {
        return Err(FieldError::new(field, "not base64: wrong length"));
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = value(*c).ok_or_else(|| {
                FieldError::new(
                    field,
                    format!("not base64: unexpected character {:?}", *c as char),
                )
            })?;
            acc |= v << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

/// An idempotency key chosen by the caller: 1 to 200 printable ASCII characters.
pub fn client_ref(field: &str, s: &str) -> Result<(), FieldError> {
    if s.is_empty() || s.len() > 200 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::new(
            field,
            "expected 1 to 200 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_both_alphabets() {
        assert_eq!(unbase64("b", "").unwrap(), b"");
        assert_eq!(unbase64("b", "Zg==").unwrap(), b"f");
        assert_eq!(unbase64("b", "Zm8=").unwrap(), b"fo");
        assert_eq!(unbase64("b", "Zm9v").unwrap(), b"foo");
        assert_eq!(unbase64("b", "Zm9vYg").unwrap(), b"foob");
        assert_eq!(unbase64("b", "+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(unbase64("b", "-_8").unwrap(), [0xfb, 0xff]);
        assert!(unbase64("b", "Zm9vY").is_err());
        assert!(unbase64("b", "Zm9v!").is_err());
        assert!(unbase64("b", "Zg=").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let e = org("to", "lg:131058").unwrap_err();
        assert_eq!(e.field, "to");
        assert!(e.to_string().starts_with("to: "), "{e}");
        assert!(e.message.contains("check digit"), "{e}");
        assert_eq!(purpose("purpose", "gossip").unwrap_err().field, "purpose");
        let mut form: Value =
            serde_json::from_str(tsunagi_protocol::testkit::CASE_0007[3].1).unwrap();
        assert_eq!(form["document_type"], "needs_assessment");
        form["items"]["F1"]["staff"] = 3.into();
        let e = document("form", &form, None).unwrap_err();
        assert_eq!(e.field, "form.items.F1.staff", "{e}");
        assert!(message_id("id", "xyz").is_err());
        assert!(message_id("id", &"0".repeat(32)).is_ok());
    }
}
