//! # tsunagi-control
//!
//! The local control channel of a tsunagi gateway, as its clients (`tsunagi send`, `outbox`,
//! `inbox`, `consent`, the adapters) see it. The gateway serves it; this crate holds what both
//! ends agree on, and the client side, without the gateway's storage or transport.
//!
//! It is a Unix domain socket, `data_dir/control.sock`, mode 0600 inside the data directory
//! (0700): only the account that runs the gateway can connect. Both ends check the other's uid
//! with `SO_PEERCRED`: the gateway drops connections from other accounts, and [`call`] sends
//! nothing to a socket that another account owns or serves. Each connection carries one request
//! and one response, each a single line of JSON:
//!
//! ```text
//! {"op":"send","to":"lg:131059","purpose":"plan_creation","form":{…}}        → {"ok":true,"result":{outbox entry}}
//! {"op":"send","to":"…","purpose":"…","bundle_hex":"…"}                    (forward a signed document)
//!   optional "client_ref":"…": an idempotency key; a repeated key with the same request returns
//!   the entry queued first, with another request an error naming both
//! {"op":"outbox_list"} {"op":"outbox_show","id":"…"}
//!   (a listing, oldest first, takes an optional "case":"…" for one case's entries and
//!   "limit":N for only the newest N; the same for inbox_list)
//! {"op":"outbox_wait","id":"…","timeout_ms":60000} → {"final":true|false,"entry":{outbox entry}}
//!   (answers when the entry is delivered, rejected, expired or cancelled, or at the timeout)
//! {"op":"plan_current","case":"…"} → {the current plan this gateway authors} (not found without one)
//! {"op":"outbox_cancel","id":"…"} → {outbox entry, cancelled}
//!   (an entry waiting for consent, queued or waiting to retry; refused as a conflict when it is
//!   final or being sent right now; with "staff" the audit event names the member of staff)
//! {"op":"case_list"} → [{"case","sent","received","last"}] (counted in the gateway, one entry at a time)
//! {"op":"inbox_list"}  {"op":"inbox_show","id":"…"}  {"op":"inbox_bundle","id":"…"} → {"bundle_hex":"…"}
//! {"op":"consent_record","record":{…}} {"op":"consent_withdraw","id":"…"}
//! {"op":"residence_change","report":{…}} → {"destination":…,"transfer":{outbox entry}|null}
//! {"op":"audit"} {"op":"audit_verify","peers":false} {"op":"audit_subject","case":"…","html":false}
//!   ("peers": true also asks every directory member for the checkpoint of ours it witnessed)
//! {"op":"stats"} {"op":"purge"}
//! {"op":"status"} → {"org","listen","flushes","not_ready":[…],"expiries":[…],
//!   "outbox":{recipient:{state:count}}}
//! {"op":"reload"}  re-read the CRL, the directory and the gateway's own (rotated) credentials
//! {"op":"backup","out":"/abs/file","with_master_key":false} → {backup header}
//! errors: {"ok":false,"kind":"refused","error":"one line saying what was wrong"}
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`request`] | [`Request`], one variant per operation |
//! | [`entries`] | [`OutboxEntry`], [`InboxEntry`], [`OutState`], message ids |
//! | [`error`] | [`ErrorKind`] and [`ControlError`]: typed failures |
//! | [`client`] | [`call`], the response line, finding the socket from `gateway.toml` |
//! | [`output`] | stdout of the command-line tools: a closed pipe ends a command quietly |
//! | [`logging`] | log setup of the command-line tools |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod entries;
pub mod error;
pub mod logging;
pub mod loopback;
pub mod output;
pub mod request;

pub use client::{call, effective_uid, parse_response, response, socket_of_config};
pub use entries::{parse_id, InboxEntry, OutState, OutboxEntry};
pub use error::{ControlError, ErrorKind, REUSED};
pub use request::{valid_staff_id, Request};
