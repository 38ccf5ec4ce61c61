//! Crash points for the kill -9 tests: the gateway kills itself at a named point of its hot path.
//!
//! `TSUNAGI_CRASH_AT=<point>:<n>` in a gateway's environment makes it send itself `SIGKILL`
//! the `n`-th time (counting from 1) it passes `<point>`: exactly what `kill -9` at that moment
//! would do — no destructor, no flush, no reply. Unset (always, outside tests), a point costs one
//! relaxed atomic load. The points are [`Point::BeforeSend`] (an envelope sealed and durable in
//! the outbox, not yet sent), [`Point::AfterInboxWrite`] (an envelope durable in the inbox,
//! its receipt not yet sent) and [`Point::AfterConsentRecorded`] (a consent version durable, its
//! copies and notices not yet queued). `tests/tests/crash.rs` drives them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// A place on the hot path where a test may crash the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The sender has the sealed envelope from its outbox and is about to send it.
    BeforeSend,
    /// The receiver's inbox write is durable and the receipt is not yet sent.
    AfterInboxWrite,
    /// A consent version is durable, and none of its copies and notices is queued yet.
    AfterConsentRecorded,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::BeforeSend => "before_send",
            Point::AfterInboxWrite => "after_inbox_write",
            Point::AfterConsentRecorded => "after_consent_recorded",
        }
    }
}

/// The configured point and count, read once from `TSUNAGI_CRASH_AT`.
fn configured() -> Option<(&'static str, u64)> {
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    AT.get_or_init(|| {
        let v = std::env::var("TSUNAGI_CRASH_AT").ok()?;
        let (name, n) = v.split_once(':')?;
        Some((name.to_owned(), n.parse().ok()?))
    })
    .as_ref()
    .map(|(name, n)| (name.as_str(), *n))
}

static PASSED: AtomicU64 = AtomicU64::new(0);

/// Passes `point`: kills the process with `SIGKILL` if this is the configured crash.
pub fn pass(point: Point) {
    let Some((name, n)) = configured() else {
        return;
    };
    if name != point.name() || PASSED.fetch_add(1, Relaxed) + 1 != n {
        return;
    }
    tracing::warn!(
        point = name,
        "TSUNAGI_CRASH_AT: killing this gateway with SIGKILL"
    );
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    // `kill` missing: abort, which also skips every destructor and flush.
    std::process::abort();
}
