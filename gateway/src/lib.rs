//! # tsunagi-gateway
//!
//! The gateway each agency runs, and the `tsunagi` command-line tool.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the command line: `certs`, `directory`, `doc`, `demo`, `gateway`, `send`, `outbox`, `inbox`, `consent` |
//! | [`config`] | `gateway.toml` |
//! | [`engine`] | outbox, inbox, consent store, dispatcher, receiver |
//! | [`control`] | the local control socket |
//! | [`files`] | reading and writing the files a user names, with errors that name them |
//! | [`demo`] | the case-0007 walk-through played across a local federation |
//! | [`store`] | the durable store: `Store` trait over sled, group commit, encryption at rest |
//!
//! The network gateway (QUIC transport, durable outbox and inbox, consent store) is built by the
//! next issues on top of these pieces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod engine;
pub mod files;
pub mod store;
