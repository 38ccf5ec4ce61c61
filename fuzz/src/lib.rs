//! Shared fixtures for the fuzz targets in `fuzz_targets/`: the fixed time, the parties and the
//! receiver state of `protocol/tests/vectors.rs`, so the checked-in vectors (the seeds) verify.

use std::sync::OnceLock;

use tsunagi_protocol::cose::StaticChains;
use tsunagi_protocol::document::ConsentRecord;
use tsunagi_protocol::envelope::ReceiverState;
use tsunagi_protocol::testkit;
use tsunagi_protocol::{CaseId, Date, OrgId, Role, Timestamp};

/// The envelope of `protocol/vectors/envelope.cbor` (Bunkyo's gateway to the NPO).
pub const VECTOR_ENVELOPE: &[u8] = include_bytes!("../../protocol/vectors/envelope.cbor");

/// The receiving gateway of the vectors.
pub const RECEIVER: &str = "ot:npo-komorebi";

/// The sending gateway (and TLS peer) of the vectors.
pub const SENDER: &str = "lg:131059";

/// The fixed time of the vectors: 2026-10-10 09:00 UTC.
pub fn now() -> Timestamp {
    Date::new(2026, 10, 10)
        .expect("a valid date")
        .start()
        .plus(9 * 3600)
}

/// [`testkit::chains`], built once: deriving its ten keys on every run would dominate the cost
/// of an iteration.
pub fn chains() -> &'static StaticChains {
    static CHAINS: OnceLock<StaticChains> = OnceLock::new();
    CHAINS.get_or_init(testkit::chains)
}

/// A receiver that has seen nothing: no stored receipts, no newer consent; roles from the test
/// directory. Like the vectors' receiver it counts as a party of every case, so notices get past
/// the party check to the rest of the receiver's checks.
pub struct NoState;

impl ReceiverState for NoState {
    fn stored_receipt(&self, _: &[u8; 16]) -> Option<Vec<u8>> {
        None
    }

    fn latest_consent(&self, _: &str) -> Option<ConsentRecord> {
        None
    }

    fn role_of(&self, org: &OrgId) -> Option<Role> {
        testkit::role_of(org)
    }

    fn is_party(&self, _: &CaseId) -> bool {
        true
    }
}
