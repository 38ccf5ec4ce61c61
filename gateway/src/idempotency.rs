//! Idempotency keys (`client_ref`) of submissions.
//!
//! The gateway stores, with each key, the id of the entry it queued and a digest of the request
//! (recipient, purpose and the document: the form's JSON, or the bundle's bytes). The same key
//! with the same request returns the earlier entry; the same key with another request is refused
//! with a message naming both (kind, recipient, purpose — never the document's contents), so a
//! client that reuses keys by mistake learns it instead of being told its new document was sent.

use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::{OrgId, Purpose};

use tsunagi_control::OutboxEntry;

use crate::core::Content;

/// The phrase adapters look for to tell a reused key from other refusals.
pub const REUSED: &str = "this client_ref was already used for another request";

/// SHA-256 over what a submission asks for.
pub fn request_digest(to: &OrgId, purpose: Purpose, content: &Content) -> [u8; 32] {
    let (tag, bytes) = match content {
        // serde_json's maps are sorted, so the same JSON gives the same bytes.
        Content::Form(v) => (&b"form"[..], serde_json::to_vec(v).unwrap_or_default()),
        Content::Bundle(b) => (&b"bundle"[..], b.clone()),
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [tag, to.as_str().as_bytes(), purpose.as_str().as_bytes()] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(&bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The stored value of a key: the entry's id and the request's digest.
pub fn stored_value(id: &[u8; 16], digest: &[u8; 32]) -> Vec<u8> {
    [id.as_slice(), digest].concat()
}

/// Splits a stored value into the entry's id and the request's digest (`None` for a key stored
/// before digests were kept).
pub fn split(value: &[u8]) -> Option<([u8; 16], Option<[u8; 32]>)> {
    let id: [u8; 16] = value.get(..16)?.try_into().ok()?;
    match value.len() {
        16 => Some((id, None)),
        48 => Some((id, value[16..].try_into().ok())),
        _ => None,
    }
}

/// What a document is, for a message: its type, read without checking anything.
fn kind_of(content: &Content) -> String {
    match content {
        Content::Form(v) => v
            .get("document_type")
            .and_then(|t| t.as_str())
            .filter(|t| t.len() <= 40 && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .unwrap_or("form")
            .to_owned(),
        Content::Bundle(b) => DocBundle::from_bytes(b, &Limits::default())
            .ok()
            .and_then(|b| b.manifest_unverified(&Limits::default()).ok())
            .map_or_else(|| "document".to_owned(), |m| m.doc_type.to_string()),
    }
}

/// Refuses a key reused for another request; `Ok` when the requests are the same.
pub fn check_same(
    stored: Option<[u8; 32]>,
    digest: &[u8; 32],
    earlier: &OutboxEntry,
    to: &OrgId,
    purpose: Purpose,
    content: &Content,
) -> Result<(), String> {
    match stored {
        Some(s) if &s != digest => Err(format!(
            "{REUSED}: the earlier one was {} to {} for {} (queued as {}), this one is {} to {to} for {purpose}{}; give each new request its own client_ref",
            earlier.kind,
            earlier.to,
            earlier.purpose,
            earlier.id,
            kind_of(content),
            if earlier.to == *to && earlier.purpose == purpose && earlier.kind.as_str() == kind_of(content) {
                " with other contents"
            } else {
                ""
            },
        )),
        _ => Ok(()),
    }
}
