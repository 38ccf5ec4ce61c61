//! Integration tests for tsunagi live in this crate's `tests/` folder; the library holds
//! the helpers they share.
