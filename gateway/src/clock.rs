//! Where the gateway gets the time.
//!
//! Everything that depends on the date — envelope lifetimes, consent periods, retries, expiry,
//! retention — reads a [`Clock`]. Gateways use [`SystemClock`]; the demo plays a case on its
//! fixture dates with a [`ManualClock`], and retention tests jump years ahead with one.

use std::sync::atomic::{AtomicU64, Ordering};

use tsunagi_protocol::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        crate::files::now()
    }
}

/// A clock that stands still until it is set or advanced, shared between gateways.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `t`.
    pub fn new(t: Timestamp) -> Self {
        Self(AtomicU64::new(t.0))
    }

    /// Shows `t` from now on.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Moves forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
