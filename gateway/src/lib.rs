//! # tsunagi-gateway
//!
//! The gateway each agency runs, and the `tsunagi` command-line tool.
//!
//! | module | owns |
//! |---|---|
//! | [`audit`] | the hash-chained audit trail, signed checkpoints, subject access pages |
//! | [`backup`] | online backups, their verification and restore; master-key export and rotation |
//! | [`cli`] | the command line: `certs`, `directory`, `doc`, `demo`, `bench`, `gateway`, `send`, `outbox`, `inbox`, `consent` |
//! | [`clock`] | the time source: the system clock, or a manual one for the demo and tests |
//! | [`config`] | `gateway.toml` |
//! | [`checks`] | the gateway's own directory entry against its `listen` and certificate; unusable entries of others |
//! | [`engine`] | outbox, inbox, consent store, dispatcher, receiver |
//! | [`crashpoint`] | `TSUNAGI_CRASH_AT`: the gateway kills itself at a named point of the hot path (kill -9 tests) |
//! | [`control`] | the local control socket (server side; the types and the client are `tsunagi-control`) |
//! | [`ops`] | operations: Prometheus `/metrics`, `/healthz`, `/readyz` on `metrics_listen`; expiry warnings |
//! | [`expiry`] | when the credentials, the CRL and the directory expire, and what to say about it |
//! | [`link`] | batch sealing per peer: one task per peer seals every envelope (or receipt) ready for it under one signature |
//! | [`idempotency`] | `client_ref` keys: the same request returns the earlier entry, another request is refused |
//! | [`store`] | the durable store: `Store` trait over sled, group commit, encryption at rest |
//! | [`rotation`] | credential rotation without downtime: watching and reloading the gateway's own credentials |
//! | [`transport`] | QUIC with mutual TLS 1.3: one endpoint, identity from certificates, CRL reload |
//! | [`prefectures`] | other prefectures recognised by cross-certificate: their trust and directories joined to ours |
//! | [`offline`] | `stats` and `audit verify` from a stopped gateway's store, without the transport |
//! | [`files`] | reading and writing the files a user names, with errors that name them |
//! | [`demo`] | the case-0007 walk-through played across a local federation |
//!
//! # Memory allocator
//! The binaries (`tsunagi`, `tsunagi-bench`) allocate through jemalloc ([`Allocator`]), not
//! glibc's malloc. An envelope's path allocates many small buffers (CBOR values, store keys and
//! values, QUIC frames), freed on other threads than the ones that allocated them; under
//! `perf`, glibc's malloc and free took 23 % of the CPU at 64 envelopes in flight. With
//! jemalloc, measured A/B on the same machine, the CPU per envelope fell by about 19 %, the
//! throughput at 64 in flight rose by 20–30 %, and the backlog restart's peak memory fell.
//! Its options are built in (`.cargo/config.toml`): freed pages are returned to the system after
//! about a second rather than ten, which lowered the backlog drain's peak memory by about 20 MiB.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod backup;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod core;
pub mod crashpoint;
pub mod demo;
pub mod disclosure;
pub mod engine;
pub mod events;
pub mod expiry;
pub mod files;
pub mod idempotency;
pub mod link;
pub mod offline;
pub mod ops;
pub mod prefectures;
pub mod rotation;
pub mod store;
pub mod testkit;
pub mod transport;

pub use tsunagi_control::{logging, out, outln, output};

/// The memory allocator of the binaries (see [the crate docs](crate#memory-allocator)):
/// `#[global_allocator] static ALLOC: tsunagi_gateway::Allocator = tsunagi_gateway::Allocator;`
pub use tikv_jemallocator::Jemalloc as Allocator;
