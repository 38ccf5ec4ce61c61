//! Federation PKI for tsunagi.
//!
//! This crate will own the federation CA, the per-gateway TLS and Ed25519 signing
//! certificates (both carrying the org as URI SAN `urn:tsunagi:org:<scheme>:<code>`),
//! certificate revocation lists and the signed federation directory. It is built by
//! issue 3; until then it holds no code.
