//! Document JSON: whatever parses and validates survives its JSON shape and its element split
//! unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi_protocol::Document;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = Document::from_json(text) else {
        return;
    };
    let json = doc.to_json();
    assert_eq!(
        Document::from_value(json.clone()).as_ref(),
        Ok(&doc),
        "JSON round trip of {json}"
    );
    let elements = doc.to_elements();
    assert_eq!(elements.len(), doc.doc_type().element_ids().len());
    assert_eq!(
        Document::from_elements(doc.doc_type(), doc.author(), doc.subject(), elements).as_ref(),
        Ok(&doc),
        "element round trip of {json}"
    );
});
