//! Adapters between an agency's local systems and its tsunagi gateway.
//!
//! This crate will own the folder-drop adapter (`OUT/`, `SENT/`, `IN/`, `FAILED/`), the
//! loopback-only local HTTP API and the printable Japanese rendering of forms. It is built
//! by issue 5; until then it holds no code.
