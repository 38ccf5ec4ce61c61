//! # tsunagi-protocol
//!
//! The sans-IO heart of tsunagi, the gateway through which prefectures, health centres,
//! psychiatric hospitals and support parties exchange the documents of post-discharge support
//! (退院後支援). Like `quinn-proto`, this crate does no I/O: no sockets, no files, no clock, no
//! runtime. Callers pass bytes, the current time ([`date::Timestamp`]) and a source of randomness
//! ([`entropy::Entropy`]); a test, a fuzzer or another implementation can drive it exactly.
//!
//! | module | owns |
//! |---|---|
//! | [`org`] | organisation ids (`lg:`/`mi:`/`sp:`/`ot:`) and roles |
//! | [`date`] | calendar dates and timestamps |
//! | [`directory`] | the signed federation directory: members, roles, addresses, jurisdictions |
//! | [`federation`] | joining another prefecture's directory to ours: each speaks for itself only |
//! | [`document`] | the forms (1–7) and other messages as validated models |
//! | [`batch`] | batch seals: one gateway signature over a Merkle root, an inclusion path per envelope or receipt |
//! | [`cbor`] | the deterministic encoder and strict decoder everything signed goes through |
//! | [`cose`] | COSE_Sign1 signing and verification (EdDSA, `kid`, `typ`, `x5chain`) |
//! | [`signed`] | author-signed, redactable documents (manifest of salted digests) and bundles |
//! | [`profile`] | redaction profiles and the default policy table (R2, R3) |
//! | [`envelope`] | gateway-signed envelopes and receipts, and the receiver's checks |
//! | [`fetch`] | the consent fetch: a receiver gets the consent view an envelope names by digest |
//! | [`gate`] | the consent gate (R1–R7) |
//! | [`period`] | support period rules (R7) |
//! | [`relocation`] | residence change → Form 7 transfer notice draft (R5) |
//! | [`records`] | the records query: the person's records gathered over the federation (R9) |
//!
//! The wire format is described in `protocol/wire.cddl`; test vectors with fixed keys and salts
//! are in `protocol/vectors/`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod cbor;
pub mod checkpoint;
pub mod cose;
pub mod date;
pub mod directory;
pub mod document;
pub mod entropy;
pub mod envelope;
pub mod federation;
pub mod fetch;
pub mod gate;
pub mod hex;
pub mod msg_id;
pub mod org;
pub mod period;
pub mod profile;
pub mod records;
pub mod relocation;
pub mod signed;
#[doc(hidden)]
pub mod testkit;

pub use date::{Date, Timestamp};
pub use document::{CaseId, DocType, Document, Purpose};
pub use org::{OrgId, Role};
