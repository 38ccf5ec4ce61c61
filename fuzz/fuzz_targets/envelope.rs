//! The receiver's checks on any bytes from the vectors' sender, at the vectors' time: no panic,
//! and whatever is accepted is addressed to this receiver, from the TLS peer, and consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi_fuzz::{now, NoState, RECEIVER, SENDER};
use tsunagi_protocol::batch::Sealed;
use tsunagi_protocol::cbor::{self, Limits, Value};
use tsunagi_protocol::cose::sha256;
use tsunagi_protocol::envelope::{
    Envelope, Inbound, Receiver, DEFAULT_MAX_SKEW, ENVELOPE_VERSION, LEGACY_ENVELOPE_VERSION,
};
use tsunagi_protocol::testkit::org;

fuzz_target!(|data: &[u8]| {
    let me = org(RECEIVER);
    let peer = org(SENDER);
    let chains = tsunagi_fuzz::chains();
    let limits = Limits::default();
    let receiver = Receiver {
        me: &me,
        chains,
        limits,
        max_skew: DEFAULT_MAX_SKEW,
    };
    // The consent fetch's request parser and answer check never panic on these bytes either.
    let _ = tsunagi_protocol::fetch::parse_consent_fetch(data);
    let _ = tsunagi_protocol::fetch::consent_answer(&sha256(data), data, &Limits::default());
    let _ = tsunagi_protocol::fetch::parse_chain_fetch(data);
    let _ = tsunagi_protocol::fetch::parse_proof_fetch(data);
    let _ = tsunagi_protocol::fetch::proof_answer(data, &Limits::default());
    let _ = tsunagi_protocol::fetch::handover_answer(data, &Limits::default());
    let _ = tsunagi_protocol::fetch::chain_answer(&sha256(data), data, &Limits::default());
    let result = receiver.receive(data, &peer, now(), &NoState);
    let parsed = Envelope::parse_unverified(data, &limits);
    let accepted = match result {
        Ok(Inbound::New(a)) => a,
        Ok(Inbound::Replay(_)) => panic!("a replay with a state that has no receipts"),
        Ok(Inbound::ChainNeeded { kid }) => {
            // A chain named by fingerprint that this state does not hold: the fetch for it
            // round-trips.
            let q = tsunagi_protocol::fetch::chain_fetch(&kid);
            assert_eq!(tsunagi_protocol::fetch::parse_chain_fetch(&q), Some(kid));
            return;
        }
        Ok(Inbound::ConsentNeeded { case, view }) => {
            // A slim envelope whose consent view this state lacks: it names that view, and the
            // fetch for it round-trips.
            let e = parsed.expect("a consent fetch asked for an unreadable envelope");
            assert_eq!((&e.case, &e.consent_ref.view), (&case, &view));
            let q = tsunagi_protocol::fetch::consent_fetch(&case, &view);
            assert_eq!(
                tsunagi_protocol::fetch::parse_consent_fetch(&q),
                Some((case, view))
            );
            return;
        }
        Ok(Inbound::HandoverNeeded { case, consent }) => {
            // A new controller's consent after a move: the fetch for the sender's view of the
            // held consent round-trips.
            let q = tsunagi_protocol::fetch::handover_fetch(&case, &consent);
            assert_eq!(
                tsunagi_protocol::fetch::parse_handover_fetch(&q),
                Some((case, consent))
            );
            return;
        }
        Ok(Inbound::ProofNeeded { case, msg_id }) => {
            // A consent of a controller that did not open the case: it is about the
            // envelope's case and message id, and the fetch for the moves round-trips.
            let e = parsed.expect("a proof fetch asked for an unreadable envelope");
            assert_eq!((&e.case, &e.msg_id), (&case, &msg_id));
            let q = tsunagi_protocol::fetch::proof_fetch(&case, &msg_id);
            assert_eq!(
                tsunagi_protocol::fetch::parse_proof_fetch(&q),
                Some((case, msg_id))
            );
            return;
        }
        Err(rejection) => {
            // Every rejection has a code; the code never panics.
            assert!(!rejection.code().is_empty());
            return;
        }
    };
    let e = &accepted.envelope;
    assert_eq!(e.aud, me, "accepted an envelope for someone else");
    assert_eq!(e.sender, peer);
    assert_eq!(accepted.envelope_digest, sha256(data));
    assert!(now().0 < e.exp.0 && e.iat.0 <= now().0 + DEFAULT_MAX_SKEW);
    assert_eq!(accepted.document.manifest.doc_type, e.kind);
    assert_eq!(accepted.document.manifest.subject, e.case);
    assert_eq!(accepted.document.disclosed.len(), e.disclosures.len());
    assert_eq!(
        parsed.as_ref(),
        Ok(e),
        "parse_unverified disagrees with receive"
    );
    // The envelope's encoding is unique: its body re-encoded, under the same batch head and
    // inclusion path, gives the bytes back. A version 1 envelope (the consent bundle inline,
    // still read) cannot be re-encoded from the version 2 fields: its body is checked to be the
    // one deterministic encoding of what it decodes to.
    let s = Sealed::parse(data, "envelope", &limits).expect("it was accepted");
    let body = cbor::decode(&s.body, &limits).expect("it was accepted");
    let version = match &body {
        Value::Map(m) => m.iter().find_map(|(k, v)| match (k, v) {
            (Value::Text(k), Value::Integer(v)) if k == "v" => u64::try_from(*v).ok(),
            _ => None,
        }),
        _ => None,
    };
    if version == Some(LEGACY_ENVELOPE_VERSION) {
        assert!(
            cbor::encode(&body) == s.body,
            "the accepted version 1 envelope's body is not deterministically encoded"
        );
        return;
    }
    assert_eq!(version, Some(ENVELOPE_VERSION));
    assert!(
        Sealed {
            body: e.body(),
            ..s
        }
        .to_bytes()
            == data,
        "the accepted envelope does not re-encode to its bytes"
    );
});
