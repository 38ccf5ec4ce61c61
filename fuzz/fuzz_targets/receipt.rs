//! The sender's check of a receipt for the vectors' envelope: no panic, and an accepted receipt
//! is the recipient's, for this envelope, and encoded uniquely.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi_fuzz::{now, RECEIVER, VECTOR_ENVELOPE};
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::batch::Sealed;
use tsunagi_protocol::cose::sha256;
use tsunagi_protocol::envelope::Receipt;
use tsunagi_protocol::testkit::org;

fuzz_target!(|data: &[u8]| {
    let recipient = org(RECEIVER);
    let chains = tsunagi_fuzz::chains();
    let limits = Limits::default();
    let Ok(r) = Receipt::verify(data, VECTOR_ENVELOPE, &recipient, chains, now(), &limits) else {
        return;
    };
    assert_eq!(r.receiver, recipient);
    assert_eq!(r.envelope_digest, sha256(VECTOR_ENVELOPE));
    // Another envelope's digest never matches.
    assert!(Receipt::verify(
        data,
        b"another envelope",
        &recipient,
        chains,
        now(),
        &limits
    )
    .is_err());
    // Its body re-encoded, under the same batch head and inclusion path, gives the bytes back.
    let s = Sealed::parse(data, "receipt", &limits).expect("it verified");
    assert!(
        Sealed {
            body: r.body(),
            ..s
        }
        .to_bytes()
            == data,
        "the accepted receipt does not re-encode to its bytes"
    );
});
