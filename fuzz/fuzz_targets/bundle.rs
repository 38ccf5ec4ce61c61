//! Redactable document bundles: parse, then verify with the test trust. A bundle that verifies
//! discloses only elements of its type, and disclosed plus withheld is the type's element set; a
//! consent record is read from what it discloses (`VerifiedDoc::consent_view`).
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use tsunagi_protocol::cbor::{self, Limits};
use tsunagi_protocol::document::Document;
use tsunagi_protocol::signed::DocBundle;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(bundle) = DocBundle::from_bytes(data, &limits) else {
        return;
    };
    // What parses re-encodes to the input (items keep their bytes as received).
    assert!(bundle.to_bytes() == data, "bundle does not round-trip");
    // The manifest is read before (and without) any signature check here: arbitrary manifests.
    let unverified = bundle.manifest_unverified(&limits);
    let chains = tsunagi_fuzz::chains();
    let Ok(v) = bundle.verify(chains, tsunagi_fuzz::now(), &limits) else {
        return;
    };
    assert_eq!(unverified.as_ref(), Ok(&v.manifest));
    let ids = v.manifest.doc_type.element_ids();
    let known: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    for element in v.disclosed.keys() {
        assert!(
            known.contains(element.as_str()),
            "disclosed {element:?} is not an element of a {}",
            v.manifest.doc_type
        );
    }
    assert!(v.withheld.iter().all(|w| !v.disclosed.contains_key(w)));
    assert_eq!(v.disclosed.len() + v.withheld.len(), ids.len());
    assert_eq!(v.disclosed.len(), bundle.items.len());
    assert_eq!(v.signer.org, v.manifest.author, "author is the signer");
    // Every disclosed value is JSON that converts back to the item's CBOR value (compared by
    // encoding: JSON objects do not keep the CBOR map order).
    for item in &bundle.items {
        let json = &v.disclosed[&item.element];
        let back = cbor::from_json(json, &item.element).expect("verified values are JSON");
        assert!(cbor::encode(&back) == cbor::encode(&item.value));
    }
    // Rebuilding the whole document, or a consent record from a party's view of it, must not
    // panic.
    let document = v.document();
    let _ = v.to_json();
    if let Some(Ok(record)) = v.consent_view() {
        assert_eq!(
            record.controller, v.manifest.author,
            "the controller is the signer"
        );
        // Nothing withheld: the view is the whole record.
        if let Some(Ok(Document::Consent(whole))) = document {
            assert_eq!(
                record, whole,
                "a fully disclosed consent view is not the record"
            );
        }
    }
});
