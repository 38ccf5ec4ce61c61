//! COSE_Sign1 parsing of any bytes; what parses must verify (or fail) without panicking, and a
//! successful verification must be consistent with the headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi_protocol::cbor::{self, Limits};
use tsunagi_protocol::cose::{self, sha256, CoseError, Sign1};

const TYPS: [&str; 5] = [
    cose::TYP_DOC,
    cose::TYP_ENVELOPE,
    cose::TYP_RECEIPT,
    cose::TYP_DIRECTORY,
    cose::TYP_BATCH,
];

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(s) = Sign1::parse(data, "fuzz", &limits) else {
        return;
    };
    // Parsing goes through the strict codec: the input is canonical CBOR.
    let v = cbor::decode(data, &limits).expect("Sign1::parse accepted bytes decode refuses");
    assert!(cbor::encode(&v) == data);
    assert_eq!(s.signature.len(), 64);
    assert!(!s.kid.is_empty() && !s.x5chain.is_empty());
    let chains = tsunagi_fuzz::chains();
    let now = tsunagi_fuzz::now();
    for typ in TYPS {
        match s.verify(typ, "fuzz", chains, now) {
            Ok(signer) => {
                assert_eq!(s.typ, typ, "verified under another typ");
                assert!(signer.fingerprint[..] == s.kid[..], "kid not checked");
                assert_eq!(sha256(&s.x5chain[0]), signer.fingerprint);
            }
            Err(CoseError::WrongType { .. }) => assert_ne!(s.typ, typ),
            Err(_) => assert_eq!(s.typ, typ, "typ must be checked first"),
        }
    }
});
