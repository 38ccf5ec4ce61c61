//! Signed audit checkpoints (COSE_Sign1 over the CBOR map `{org, seq, hash, time}`), as carried
//! by envelopes and receipts and kept by peers as witnesses: read without and with the
//! signature check. No panic; a verified checkpoint is the one read unverified, signed under
//! `TYP_CHECKPOINT` by the org it names, and re-signing it gives the same bytes; comparing it with
//! the vectors' checkpoints never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::checkpoint::{Checkpoint, Witnessed, TYP_CHECKPOINT};
use tsunagi_protocol::cose::Sign1;
use tsunagi_protocol::testkit;

/// The checkpoints of the vectors (Bunkyo's in the envelope, the NPO's in the receipt).
fn kept() -> &'static [Checkpoint] {
    static KEPT: OnceLock<Vec<Checkpoint>> = OnceLock::new();
    KEPT.get_or_init(|| {
        [
            &include_bytes!("../seeds/checkpoint/envelope_checkpoint.cbor")[..],
            &include_bytes!("../seeds/checkpoint/receipt_checkpoint.cbor")[..],
        ]
        .iter()
        .map(|b| Checkpoint::verify(b, tsunagi_fuzz::chains()).expect("the seeds verify"))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let unverified = Checkpoint::parse_unverified(data);
    if let Ok(c) = &unverified {
        assert_eq!(Witnessed::newer_than(c, None), Witnessed::Newer);
        assert_eq!(Witnessed::newer_than(c, Some(c)), Witnessed::NotNewer);
        for k in kept() {
            let _ = Witnessed::newer_than(c, Some(k));
            let _ = Witnessed::newer_than(k, Some(c));
        }
    }
    let Ok(v) = Checkpoint::verify(data, tsunagi_fuzz::chains()) else {
        return;
    };
    assert_eq!(
        unverified.as_ref().ok(),
        Some(&v),
        "verify and parse_unverified disagree"
    );
    let s = Sign1::parse(data, "fuzz", &Limits::default()).expect("it verified");
    assert_eq!(s.typ, TYP_CHECKPOINT);
    if s.x5chain.len() == 1 {
        assert!(
            v.sign(&testkit::signer(v.org.as_str())) == data,
            "the verified checkpoint does not re-encode to its bytes"
        );
    }
});
