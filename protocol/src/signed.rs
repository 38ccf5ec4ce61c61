//! Author-signed, redactable documents (the layout of ISO 18013-5 mdoc's Mobile Security Object).
//!
//! A document is signed once by its author and can then be forwarded with only some of its
//! elements disclosed, the author's signature still verifiable:
//!
//! * Each element (see [`crate::document`]) becomes an **item**: `#6.24(bstr .cbor {digestID,
//!   random, elementIdentifier, elementValue})`, with a fresh 16-byte random salt and a random
//!   digest id. The salt stops a recipient from confirming a guessed value of a withheld element
//!   by hashing it; the random id stops the id from revealing the element's position.
//! * The **manifest** holds `v`, `docType`, `docId`, `author`, `subject`, `iat` (rounded down to
//!   the day), `digestAlgorithm` and `valueDigests` {digestID → SHA-256 of the item's tag-24
//!   encoding}. It also holds **decoy** digests, random values that match no item, so that the
//!   number of digests is the same for every document of a type and reveals nothing.
//! * The author signs the manifest as a COSE_Sign1 of type [`cose::TYP_DOC`] whose payload is
//!   `#6.24(bstr .cbor Manifest)`. `docType`, `author`, `subject` and `iat` cannot be withheld.
//!
//! A [`DocBundle`] carries the signed document bytes exactly as signed plus the disclosed items.
//! [`DocBundle::redact`] keeps a subset of items; it never touches the signed part, so any subset
//! verifies. [`DocBundle::verify`] checks the author's signature and chain, that the author is the
//! org the certificate names, that every item hashes to a digest in the manifest, that every
//! element belongs to the document type, and that no element or digest id appears twice.

use std::collections::{BTreeMap, BTreeSet};

use crate::cbor::{self, map, uint, CborError, Limits, MapReader, Value};
use crate::cose::{self, sha256, ChainVerifier, CoseError, Sign1, Signer, SignerIdentity};
use crate::date::Timestamp;
use crate::document::{elements_to_json, CaseId, DocType, Document, ValidationError};
use crate::entropy::Entropy;
use crate::org::OrgId;

/// Manifest format version.
pub const MANIFEST_VERSION: u64 = 1;
/// The only digest algorithm.
pub const DIGEST_ALGORITHM: &str = "SHA-256";
/// Bytes of fresh randomness per item.
pub const SALT_LEN: usize = 16;

/// Why a document could not be signed, parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    /// Malformed CBOR or structure.
    #[error("document: {0}")]
    Cbor(#[from] CborError),
    /// The COSE layer failed (signature, chain, typ …).
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// The manifest's author is not the org of the signing certificate.
    #[error("document: author {author} differs from the signer's certificate org {signer}")]
    AuthorMismatch {
        /// The manifest's author.
        author: OrgId,
        /// The certificate's org.
        signer: OrgId,
    },
    /// An item's hash is not the digest the manifest holds for its id.
    #[error("document: element {element:?} does not match its signed digest (altered)")]
    DigestMismatch {
        /// The element.
        element: String,
    },
    /// An item whose digest id is not in the manifest.
    #[error("document: element {element:?} has a digest id the manifest does not sign")]
    UnsignedItem {
        /// The element.
        element: String,
    },
    /// An element that does not belong to the document type.
    #[error("document: element {element:?} is not part of a {doc_type}")]
    UnknownElement {
        /// The element.
        element: String,
        /// The document type.
        doc_type: DocType,
    },
    /// An element or digest id disclosed twice.
    #[error("document: element {element:?} is disclosed twice")]
    DuplicateElement {
        /// The element.
        element: String,
    },
    /// A manifest field has a value we do not accept.
    #[error("document: {0}")]
    Manifest(String),
    /// An element value is not valid for its document model.
    #[error("document content: {0}")]
    Content(#[from] ValidationError),
}

/// The signed manifest of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Document type.
    pub doc_type: DocType,
    /// 16 random bytes naming this document.
    pub doc_id: [u8; 16],
    /// The author org (must be the signer's certificate org).
    pub author: OrgId,
    /// The pseudonymous case id.
    pub subject: CaseId,
    /// Issue time, rounded down to the day.
    pub iat: Timestamp,
    /// digestID → SHA-256 of the item, decoys included.
    pub value_digests: BTreeMap<u64, [u8; 32]>,
}

impl Manifest {
    fn to_value(&self) -> Value {
        map([
            ("v", uint(MANIFEST_VERSION)),
            ("docType", Value::Text(self.doc_type.as_str().into())),
            ("docId", Value::Bytes(self.doc_id.to_vec())),
            ("author", Value::Text(self.author.to_string())),
            ("subject", Value::Text(self.subject.to_string())),
            ("iat", uint(self.iat.0)),
            ("digestAlgorithm", Value::Text(DIGEST_ALGORITHM.into())),
            (
                "valueDigests",
                Value::Map(
                    self.value_digests
                        .iter()
                        .map(|(id, d)| (uint(*id), Value::Bytes(d.to_vec())))
                        .collect(),
                ),
            ),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DocError> {
        let mut r = MapReader::new(v, "manifest")?;
        if r.u64("v")? != MANIFEST_VERSION {
            return Err(DocError::Manifest(format!(
                "manifest version is not {MANIFEST_VERSION}"
            )));
        }
        if r.text("digestAlgorithm")? != DIGEST_ALGORITHM {
            return Err(DocError::Manifest("digestAlgorithm must be SHA-256".into()));
        }
        let doc_type = r.parsed("docType")?;
        let doc_id = r.byte_array::<16>("docId")?;
        let author = r.parsed("author")?;
        let subject = r.parsed("subject")?;
        let iat = Timestamp(r.u64("iat")?);
        let Value::Map(digests) = r.value("valueDigests")? else {
            return Err(DocError::Manifest("valueDigests must be a map".into()));
        };
        let mut value_digests = BTreeMap::new();
        for (k, d) in digests {
            let id = cbor::as_u64(&k, "manifest.valueDigests key")?;
            let d: [u8; 32] = match d {
                Value::Bytes(b) => b.try_into().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                DocError::Manifest("valueDigests values must be 32-byte digests".into())
            })?;
            value_digests.insert(id, d);
        }
        r.finish()?;
        Ok(Self {
            doc_type,
            doc_id,
            author,
            subject,
            iat,
            value_digests,
        })
    }
}

/// One disclosed item: its bytes as transmitted and what they say.
///
/// Two items are equal when their bytes are: the other fields are read from them.
#[derive(Debug, Clone)]
pub struct Item {
    /// The tag-24 item encoding, exactly as transmitted and hashed.
    pub bytes: Vec<u8>,
    /// Its digest id.
    pub digest_id: u64,
    /// The element it discloses, e.g. `items.A1`.
    pub element: String,
    /// The element's value.
    pub value: Value,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Item {
    pub(crate) fn new(digest_id: u64, random: &[u8], element: &str, value: Value) -> Self {
        let inner = map([
            ("digestID", uint(digest_id)),
            ("random", Value::Bytes(random.to_vec())),
            ("elementIdentifier", Value::Text(element.to_owned())),
            ("elementValue", value.clone()),
        ]);
        Self {
            bytes: cbor::encode(&cbor::tag24(&inner)),
            digest_id,
            element: element.to_owned(),
            value,
        }
    }

    /// Reads an item, its content's data items taken from `budget` (shared by the items of one
    /// bundle, see [`cbor::decode_within`]).
    fn from_value(v: Value, limits: &Limits, budget: &mut usize) -> Result<Self, DocError> {
        let bytes = cbor::encode(&v);
        let (_, inner) = cbor::untag24_within(v, "item", limits, budget)?;
        let mut r = MapReader::new(inner, "item")?;
        let digest_id = r.u64("digestID")?;
        let random = r.bytes("random")?;
        if random.len() < SALT_LEN {
            return Err(DocError::Manifest(format!(
                "item random must be at least {SALT_LEN} bytes"
            )));
        }
        let element = r.text("elementIdentifier")?;
        let value = r.value("elementValue")?;
        r.finish()?;
        Ok(Self {
            bytes,
            digest_id,
            element,
            value,
        })
    }

    fn digest(&self) -> [u8; 32] {
        sha256(&self.bytes)
    }
}

/// How many digests a manifest of `n` elements carries: at least four decoys, rounded up to a
/// multiple of eight, so the count depends only on the document type.
fn digest_count(n: usize) -> usize {
    (n + 4).div_ceil(8) * 8
}

/// A signed document and the items disclosed with it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocBundle {
    /// The COSE_Sign1 bytes exactly as the author signed them.
    pub doc: Vec<u8>,
    /// The disclosed items.
    pub items: Vec<Item>,
}

impl DocBundle {
    /// Signs `doc` as its author, with every element disclosed.
    ///
    /// The caller must make sure `signer` belongs to `doc.author()`; [`DocBundle::verify`]
    /// refuses a document whose author is not the signer's certificate org.
    pub fn sign(
        doc: &Document,
        signer: &Signer,
        now: Timestamp,
        rng: &mut dyn Entropy,
    ) -> Result<Self, DocError> {
        let elements = doc.to_elements();
        let total = digest_count(elements.len());
        let mut ids = BTreeSet::new();
        while ids.len() < total {
            ids.insert(u64::from(rng.next_u32()));
        }
        // Assign ids in a random order: shuffle by sorting on fresh random keys.
        let mut ids: Vec<(u32, u64)> = ids.into_iter().map(|id| (rng.next_u32(), id)).collect();
        ids.sort_unstable();
        let mut value_digests = BTreeMap::new();
        let mut items = Vec::with_capacity(elements.len());
        for (i, (_, id)) in ids.iter().enumerate() {
            if let Some((element, value)) = elements.get(i) {
                let mut salt = [0u8; SALT_LEN];
                rng.fill(&mut salt);
                let item = Item::new(*id, &salt, element, cbor::from_json(value, element)?);
                value_digests.insert(*id, item.digest());
                items.push(item);
            } else {
                let mut decoy = [0u8; 32];
                rng.fill(&mut decoy);
                value_digests.insert(*id, decoy);
            }
        }
        let mut doc_id = [0u8; 16];
        rng.fill(&mut doc_id);
        let manifest = Manifest {
            doc_type: doc.doc_type(),
            doc_id,
            author: doc.author().clone(),
            subject: doc.subject().clone(),
            iat: now.floor_day(),
            value_digests,
        };
        let payload = cbor::encode(&cbor::tag24(&manifest.to_value()));
        Ok(Self {
            doc: signer.sign(cose::TYP_DOC, payload),
            items,
        })
    }

    /// Keeps only the items whose element `keep` accepts. The signed part is untouched.
    pub fn redact(&self, keep: impl Fn(&str) -> bool) -> DocBundle {
        DocBundle {
            doc: self.doc.clone(),
            items: self
                .items
                .iter()
                .filter(|i| keep(&i.element))
                .cloned()
                .collect(),
        }
    }

    /// The bundle's wire form: `{"doc": bstr, "items": [* item]}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    pub(crate) fn to_value(&self) -> Value {
        map([
            ("doc", Value::Bytes(self.doc.clone())),
            ("items", Value::Array(self.items_value())),
        ])
    }

    pub(crate) fn items_value(&self) -> Vec<Value> {
        self.items
            .iter()
            .map(|i| {
                // The bytes decoded once already, within the limits they were read under, which
                // may allow more than the default size: their own size is the bound here.
                let limits = Limits {
                    max_bytes: i.bytes.len().max(cbor::DEFAULT_MAX_BYTES),
                    ..Limits::default()
                };
                cbor::decode(&i.bytes, &limits).expect("our own item bytes decode")
            })
            .collect()
    }

    /// Parses a bundle strictly (no verification).
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, DocError> {
        Self::from_value(cbor::decode(bytes, limits)?, limits)
    }

    pub(crate) fn from_value(v: Value, limits: &Limits) -> Result<Self, DocError> {
        let mut r = MapReader::new(v, "bundle")?;
        let doc = r.bytes("doc")?;
        let items = Self::items_from(r.array("items")?, limits)?;
        r.finish()?;
        Ok(Self { doc, items })
    }

    /// Reads disclosed items. Each is decoded on its own, and all their contents together hold at
    /// most [`Limits::max_items`] data items: the items are kept decoded, and a limit per item
    /// would let a message of many items hold as many values as it has bytes.
    pub(crate) fn items_from(values: Vec<Value>, limits: &Limits) -> Result<Vec<Item>, DocError> {
        let mut budget = limits.max_items;
        values
            .into_iter()
            .map(|v| Item::from_value(v, limits, &mut budget))
            .collect()
    }

    /// Reads the manifest without verifying anything (for `tsunagi doc inspect`).
    pub fn manifest_unverified(&self, limits: &Limits) -> Result<Manifest, DocError> {
        let s = Sign1::parse(&self.doc, "document", limits)?;
        let (_, m) = cbor::untag24(
            cbor::decode(&s.payload, limits)?,
            "document payload",
            limits,
        )?;
        Manifest::from_value(m)
    }

    /// Verifies the author's signature and every disclosed item (see the module docs).
    pub fn verify(
        &self,
        chains: &dyn ChainVerifier,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<VerifiedDoc, DocError> {
        let s = Sign1::parse(&self.doc, "document", limits)?;
        let signer = s.verify(cose::TYP_DOC, "document", chains, now)?;
        let (_, m) = cbor::untag24(
            cbor::decode(&s.payload, limits)?,
            "document payload",
            limits,
        )?;
        let manifest = Manifest::from_value(m)?;
        if manifest.author != signer.org {
            return Err(DocError::AuthorMismatch {
                author: manifest.author,
                signer: signer.org,
            });
        }
        let known: BTreeSet<String> = manifest.doc_type.element_ids().into_iter().collect();
        let mut seen_ids = BTreeSet::new();
        let mut disclosed = BTreeMap::new();
        for item in &self.items {
            let signed = manifest.value_digests.get(&item.digest_id).ok_or_else(|| {
                DocError::UnsignedItem {
                    element: item.element.clone(),
                }
            })?;
            if *signed != item.digest() {
                return Err(DocError::DigestMismatch {
                    element: item.element.clone(),
                });
            }
            if !known.contains(&item.element) {
                return Err(DocError::UnknownElement {
                    element: item.element.clone(),
                    doc_type: manifest.doc_type,
                });
            }
            let value = cbor::to_json(&item.value, &item.element)?;
            if !seen_ids.insert(item.digest_id)
                || disclosed.insert(item.element.clone(), value).is_some()
            {
                return Err(DocError::DuplicateElement {
                    element: item.element.clone(),
                });
            }
        }
        let withheld = manifest
            .doc_type
            .element_ids()
            .into_iter()
            .filter(|e| !disclosed.contains_key(e))
            .collect();
        Ok(VerifiedDoc {
            signer,
            manifest,
            disclosed,
            withheld,
        })
    }
}

/// A document whose signature and disclosed items verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedDoc {
    /// Who signed it (its author).
    pub signer: SignerIdentity,
    /// The signed manifest.
    pub manifest: Manifest,
    /// The disclosed elements and their values.
    pub disclosed: BTreeMap<String, serde_json::Value>,
    /// The document type's elements that were not disclosed.
    pub withheld: Vec<String>,
}

impl VerifiedDoc {
    /// The disclosed fields in the JSON shape of the input contract, with `document_type`,
    /// `author` and `subject` from the manifest.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = elements_to_json(self.disclosed.iter().map(|(k, v)| (k.as_str(), v)));
        m.insert(
            "document_type".into(),
            self.manifest.doc_type.as_str().into(),
        );
        m.insert("subject".into(), self.manifest.subject.as_str().into());
        let author_key = if self.manifest.doc_type == DocType::Consent {
            "controller"
        } else {
            "author"
        };
        m.insert(author_key.into(), self.manifest.author.as_str().into());
        serde_json::Value::Object(m)
    }

    /// A consent record read from what was disclosed of it: the whole record, or a party's view
    /// (see [`crate::document::ConsentRecord::from_view`]). `None` when this is no consent record.
    pub fn consent_view(&self) -> Option<Result<crate::document::ConsentRecord, ValidationError>> {
        (self.manifest.doc_type == DocType::Consent).then(|| {
            crate::document::ConsentRecord::from_view(
                &self.manifest.author,
                &self.manifest.subject,
                &self.disclosed,
            )
        })
    }

    /// The whole document, validated, when nothing was withheld.
    pub fn document(&self) -> Option<Result<Document, ValidationError>> {
        self.withheld.is_empty().then(|| {
            Document::from_elements(
                self.manifest.doc_type,
                &self.manifest.author,
                &self.manifest.subject,
                self.disclosed
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::FixedEntropy;
    use crate::profile::Profile;
    use crate::testkit::{self, chains, fixture, signer};
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp(1_790_000_000);

    fn assessment_bundle(seed: &[u8]) -> DocBundle {
        let doc = fixture("needs_assessment.json");
        DocBundle::sign(
            &doc,
            &signer("mi:1310000017"),
            NOW,
            &mut FixedEntropy::new(seed),
        )
        .unwrap()
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn an_item_larger_than_the_default_limit_reencodes_under_a_raised_one() {
        // A gateway configured for messages over 8 MiB reads such an item; writing the bundle
        // again (as a consent view is) must not fail on the default limit.
        let mut json = fixture("support_end.json").to_json();
        json["note"] = "あ".repeat(3 * 1024 * 1024).into();
        let doc = Document::from_value(json).unwrap();
        let b = DocBundle::sign(
            &doc,
            &signer(doc.author().as_str()),
            NOW,
            &mut FixedEntropy::new(b"big"),
        )
        .unwrap();
        let raised = Limits {
            max_bytes: 16 * 1024 * 1024,
            ..Limits::default()
        };
        let bytes = b.to_bytes();
        assert!(bytes.len() > cbor::DEFAULT_MAX_BYTES);
        let read = DocBundle::from_bytes(&bytes, &raised).unwrap();
        assert_eq!(read.to_bytes(), bytes);
    }

    #[test]
    fn every_fixture_signs_and_verifies_in_full() {
        for (name, _) in testkit::CASE_0007 {
            let doc = fixture(name);
            let b = DocBundle::sign(
                &doc,
                &signer(doc.author().as_str()),
                NOW,
                &mut FixedEntropy::new(name.as_bytes()),
            )
            .unwrap();
            let b = DocBundle::from_bytes(&b.to_bytes(), &limits()).unwrap();
            let v = b.verify(&chains(), NOW, &limits()).unwrap();
            assert!(v.withheld.is_empty(), "{name}");
            assert_eq!(v.manifest.iat, NOW.floor_day());
            assert_eq!(v.document().unwrap().unwrap(), doc, "{name}");
            assert_eq!(v.to_json(), doc.to_json(), "{name}");
            // Decoys: the digest count depends only on the document type.
            assert_eq!(
                v.manifest.value_digests.len(),
                digest_count(doc.doc_type().element_ids().len())
            );
            assert!(v.manifest.value_digests.len() >= b.items.len() + 4);
        }
    }

    #[test]
    fn form6_view_verifies_and_names_what_was_withheld() {
        let b = assessment_bundle(b"form6");
        let r = b.redact(|e| Profile::Form6.discloses(DocType::NeedsAssessment, e));
        let v = DocBundle::from_bytes(&r.to_bytes(), &limits())
            .unwrap()
            .verify(&chains(), NOW, &limits())
            .unwrap();
        assert!(v.disclosed.contains_key("summary.overall"));
        assert!(
            v.withheld.contains(&"items.F1".to_owned())
                && v.withheld.contains(&"opinion".to_owned())
        );
        assert!(v.document().is_none());
        let bytes = r.to_bytes();
        let note = "入院前に連日飲酒";
        assert!(!String::from_utf8_lossy(&bytes).contains(note));
    }

    #[test]
    fn tampering_is_named() {
        let b = assessment_bundle(b"tamper");
        // An item from another signing of the same document: right element, unsigned digest.
        let other = assessment_bundle(b"other");
        let mut t = b.clone();
        t.items[0] = other.items[0].clone();
        let e = t.verify(&chains(), NOW, &limits()).unwrap_err();
        assert!(matches!(e, DocError::UnsignedItem { .. }), "{e}");
        // Same digest id, altered value.
        let mut t = b.clone();
        let id = t.items[3].digest_id;
        let element = t.items[3].element.clone();
        t.items[3] = Item::new(id, &[0u8; 16], &element, Value::Text("改ざん".into()));
        let e = t.verify(&chains(), NOW, &limits()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("document: element {element:?} does not match its signed digest (altered)")
        );
        // Disclosed twice.
        let mut t = b.clone();
        t.items.push(t.items[0].clone());
        assert!(matches!(
            t.verify(&chains(), NOW, &limits()).unwrap_err(),
            DocError::DuplicateElement { .. }
        ));
        // Signed by someone else than the author.
        let doc = fixture("needs_assessment.json");
        let forged = DocBundle::sign(
            &doc,
            &signer("lg:131059"),
            NOW,
            &mut FixedEntropy::new(b"f"),
        )
        .unwrap();
        let e = forged.verify(&chains(), NOW, &limits()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "document: author mi:1310000017 differs from the signer's certificate org lg:131059"
        );
    }

    /// A meeting record with `agenda` and `family_attended` entries, signed by its author.
    fn meeting_bundle(agenda: usize, family: usize) -> DocBundle {
        let mut j: serde_json::Value = serde_json::from_str(
            testkit::CASE_0007
                .iter()
                .find(|(n, _)| *n == "meeting_record.json")
                .unwrap()
                .1,
        )
        .unwrap();
        j["agenda"] = (0..agenda).map(|i| format!("議題{i}")).collect();
        j["family_attended"] = (0..family).map(|_| "母").collect();
        let doc = Document::from_value(j).unwrap();
        DocBundle::sign(
            &doc,
            &signer("lg:131059"),
            NOW,
            &mut FixedEntropy::new(b"m"),
        )
        .unwrap()
    }

    /// Far more than a real document holds (a meeting with 50,000 agenda entries, the fixtures
    /// hold a few hundred items in all) still decodes and verifies at the default limits.
    #[test]
    fn a_large_legitimate_document_decodes_and_verifies_at_the_default_limits() {
        let b = meeting_bundle(50_000, 3);
        let bytes = b.to_bytes();
        let read = DocBundle::from_bytes(&bytes, &limits()).unwrap();
        assert_eq!(read, b);
        let v = read.verify(&chains(), NOW, &limits()).unwrap();
        assert_eq!(v.disclosed["agenda"].as_array().unwrap().len(), 50_000);
    }

    /// Items are decoded one by one and kept decoded: with a limit per item, a bundle of many
    /// items each under it would hold as many values as it has bytes. Their budget is shared.
    #[test]
    fn the_items_of_a_bundle_share_one_item_budget() {
        let n = cbor::DEFAULT_MAX_ITEMS * 3 / 5;
        let b = meeting_bundle(n, n);
        let e = DocBundle::from_bytes(&b.to_bytes(), &limits()).unwrap_err();
        assert!(
            matches!(e, DocError::Cbor(CborError::TooManyItems { max, .. }) if max == cbor::DEFAULT_MAX_ITEMS),
            "{e}"
        );
        // Either alone is within the limit.
        for without in ["agenda", "family_attended"] {
            let one = b.redact(|e| e != without);
            assert!(DocBundle::from_bytes(&one.to_bytes(), &limits()).is_ok());
        }
    }

    #[test]
    fn unknown_fields_in_items_are_refused() {
        let inner = map([
            ("digestID", uint(1)),
            ("random", Value::Bytes(vec![0; 16])),
            ("elementIdentifier", Value::Text("x".into())),
            ("elementValue", Value::Null),
            ("extra", Value::Null),
        ]);
        let mut budget = usize::MAX;
        let e = Item::from_value(cbor::tag24(&inner), &limits(), &mut budget).unwrap_err();
        assert_eq!(e.to_string(), "document: item: unknown field \"extra\"");
        let short = map([
            ("digestID", uint(1)),
            ("random", Value::Bytes(vec![0; 8])),
            ("elementIdentifier", Value::Text("x".into())),
            ("elementValue", Value::Null),
        ]);
        assert!(Item::from_value(cbor::tag24(&short), &limits(), &mut budget).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn any_disclosed_subset_verifies(mask in proptest::collection::vec(any::<bool>(), 40)) {
            let b = assessment_bundle(b"subset");
            let names: Vec<String> = b.items.iter().map(|i| i.element.clone()).collect();
            let keep: BTreeSet<&String> = names.iter().zip(&mask).filter(|(_, k)| **k).map(|(n, _)| n).collect();
            let r = b.redact(|e| keep.iter().any(|k| k.as_str() == e));
            let v = r.verify(&chains(), NOW, &limits()).unwrap();
            prop_assert_eq!(v.disclosed.len(), keep.len());
            prop_assert_eq!(v.withheld.len(), names.len() - keep.len());
        }

        #[test]
        fn flipping_any_byte_of_the_signed_part_fails(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let b = assessment_bundle(b"flip");
            let mut t = b.clone();
            let i = pos.index(t.doc.len());
            t.doc[i] ^= 1 << bit;
            prop_assert!(t.verify(&chains(), NOW, &limits()).is_err());
        }

        #[test]
        fn form6_of_any_assessment_has_no_rating_or_note(
            ratings in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 2, 9]), 26),
            tag in "[a-z]{12}",
        ) {
            let mut j: serde_json::Value = serde_json::from_str(testkit::CASE_0007[3].1).unwrap();
            let items = j["items"].as_object_mut().unwrap();
            for (k, (code, item)) in items.iter_mut().enumerate() {
                item["staff"] = ratings[k].into();
                item["note"] = format!("NOTE-{tag}-{code}").into();
            }
            let doc = Document::from_value(j).unwrap();
            let b = DocBundle::sign(&doc, &signer("mi:1310000017"), NOW, &mut FixedEntropy::new(tag.as_bytes())).unwrap();
            let r = b.redact(|e| Profile::Form6.discloses(DocType::NeedsAssessment, e));
            let v = r.verify(&chains(), NOW, &limits()).unwrap();
            prop_assert!(v.disclosed.keys().all(|k| !k.starts_with("items.") && k != "opinion"));
            let text = String::from_utf8_lossy(&r.to_bytes()).into_owned();
            prop_assert!(!text.contains("NOTE-"), "a note leaked into the Form 6 view");
            prop_assert!(!text.contains("staff"), "a rating leaked into the Form 6 view");
        }
    }
}
