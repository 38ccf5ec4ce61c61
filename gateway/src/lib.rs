//! # tsunagi-gateway
//!
//! The gateway each agency runs, and the `tsunagi` command-line tool.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the command line: `certs`, `directory`, `doc`, `demo` |
//! | [`files`] | reading and writing the files a user names, with errors that name them |
//! | [`demo`] | the case-0007 walk-through played across a local federation |
//! | [`transport`] | QUIC with mutual TLS 1.3 between gateways: trust (CA + CRL, hot reload), request/reply streams, serving |
//!
//! The network gateway (QUIC transport, durable outbox and inbox, consent store) is built by the
//! next issues on top of these pieces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod demo;
pub mod files;
pub mod transport;
