//! The records query (R9): the authority answering the person's request to see their records
//! asks every gateway of the federation what it recorded about the case, on the same mutual-TLS
//! connection that carries envelopes (as the witness query of [`crate::checkpoint`] does).
//!
//! The query is `{"op": "records", "case": <case id>}` in deterministic CBOR. The answer is the
//! answering gateway's audit records of the case as a UTF-8 JSON array — case pseudonyms, org
//! ids, document types and element names, never personal data — or empty when it holds nothing
//! for the asker: a gateway answers only the controller of the case's consent it holds, as the
//! TLS certificate names it.

use crate::cbor::{self, map, Limits, MapReader, Value};
use crate::document::CaseId;

/// The bytes of a records query for `case`.
pub fn records_query(case: &CaseId) -> Vec<u8> {
    cbor::encode(&map([
        ("op", Value::Text("records".into())),
        ("case", Value::Text(case.as_str().into())),
    ]))
}

/// The case a records query asks about, or `None` when `bytes` are not one.
pub fn parse_records_query(bytes: &[u8]) -> Option<CaseId> {
    // Envelopes are tagged COSE messages and the witness query has one entry: a two-entry map
    // is the cheapest test to fail first.
    if bytes.first() != Some(&0xa2) {
        return None;
    }
    let v = cbor::decode(bytes, &Limits::default()).ok()?;
    let mut r = MapReader::new(v, "records query").ok()?;
    if r.text("op").ok()? != "records" {
        return None;
    }
    let case = r.text("case").ok()?.parse().ok()?;
    r.finish().ok()?;
    Some(case)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_query_round_trips_and_is_neither_an_envelope_nor_a_witness_query() {
        let case: CaseId = "case-131059-2026-0007".parse().unwrap();
        let q = records_query(&case);
        assert_eq!(parse_records_query(&q), Some(case));
        assert_eq!(
            parse_records_query(&crate::checkpoint::witness_query()),
            None
        );
        assert_eq!(parse_records_query(b"\xa2\x01\x02\x03\x04"), None);
        assert_eq!(parse_records_query(&[]), None);
    }
}
