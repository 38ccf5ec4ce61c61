//! The gateway's core without IO, as quinn-proto is to quinn: decisions as pure functions of
//! their inputs (the caller passes `now` and entropy), returning the effects the driver
//! ([`crate::engine`]) carries out. Nothing here imports tokio, sled, quinn or the store.
//!
//! | module | owns |
//! |---|---|
//! | [`outbox`] | the outbox lifecycle: the one place that assigns an outbox entry's state |
//! | [`Content`] | what a submission hands over: a form to sign, or a signed document to forward |

pub mod outbox;

/// A document handed to the gateway to send.
#[derive(Debug, Clone)]
pub enum Content {
    /// A form (JSON) this gateway signs as its author.
    Form(serde_json::Value),
    /// A signed document (bundle) to forward.
    Bundle(Vec<u8>),
}
