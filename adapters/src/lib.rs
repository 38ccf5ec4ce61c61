//! # tsunagi-adapters
//!
//! How an agency's local systems talk to its own tsunagi gateway. Every adapter is a client of
//! the gateway's local control socket (through the small `tsunagi-control` crate, without the
//! gateway's storage or transport): it holds no keys, signs
//! nothing and decides nothing about consent or redaction — the gateway does all of that, and an
//! adapter only moves documents between the gateway and the people or programs beside it.
//!
//! | module | what it offers |
//! |---|---|
//! | [`folder`] | folder drop in the manner of NHS MESH's client: `OUT/` → sent, `IN/` ← received, `SENT/`, `FAILED/` |
//! | [`http`] | a local HTTP API on loopback with a bearer token, described in `adapters/openapi.yaml` |
//! | [`console`] | a staff console in Japanese (web pages, accounts, roles) on loopback or TLS |
//! | [`client`] | the control-socket client both use, with the gateway's typed errors |
//! | [`validate`] | field checks run before a request reaches the gateway, so errors name the field |
//!
//! ## Running the adapters: `tsunagi-adapter`
//!
//! The adapters run apart from the gateway, as their own small binary `tsunagi-adapter` (they
//! need only `tsunagi-control`, `tsunagi-protocol` and `tsunagi-certs`, not the gateway crate):
//!
//! ```text
//! tsunagi-adapter folder --config gateway.toml --root /srv/tsunagi/folder [--once]
//! tsunagi-adapter http   --config gateway.toml --listen 127.0.0.1:7480 --token-file /srv/tsunagi/api.token
//! ```
//!
//! Both read the gateway's `gateway.toml` only to find its control socket, and must run as the
//! account that runs the gateway (the socket is mode 0600).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod console;
pub mod folder;
pub mod http;
pub mod validate;

pub use client::{CallError, ErrorKind, GatewayClient};
pub use folder::{AdapterError, FolderAdapter, Report};
pub use http::{serve, HttpApi};
