//! The gateway's core without IO, as quinn-proto is to quinn: decisions as pure functions of
//! their inputs (the caller passes `now` and entropy), returning the effects the driver
//! ([`crate::engine`]) carries out. Nothing here imports tokio, sled, quinn or the store.
//!
//! | module | owns |
//! |---|---|
//! | [`outbox`] | the outbox lifecycle: the one place that assigns an outbox entry's state |

pub mod outbox;
