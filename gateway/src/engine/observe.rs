//! What operations read of a running gateway: counters of decisions since the process started,
//! the expiries of what it loaded, liveness and readiness (see [`crate::ops`]).
//!
//! The counters are bumped from the audit events a commit records ([`Counters::pending`] before
//! the events are chained, [`Counters::add`] once they are): the same typed events the trail
//! keeps, so a refusal counted here is one the trail names. Labels are org ids, rule ids and
//! refusal codes, never case pseudonyms or anything personal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tsunagi_certs::CertInfo;
use tsunagi_protocol::OrgId;

use super::Gateway;
use crate::events::AuditEvent;
use crate::expiry::{Expiring, Expiry};
use crate::store::{Batch, Store, StoreError};

/// Counts since the process started (Prometheus counters: they restart at 0 with the process).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Delivery attempts that failed and were scheduled again, by recipient.
    pub retries: BTreeMap<OrgId, u64>,
    /// Envelopes delivered (signed receipt), by recipient.
    pub sent: BTreeMap<OrgId, u64>,
    /// Envelopes received and stored, by sender.
    pub received: BTreeMap<OrgId, u64>,
    /// Envelopes that expired undelivered, by recipient.
    pub expired: BTreeMap<OrgId, u64>,
    /// Consent gate refusals of local sends, by (rule, code).
    pub gate_denials: BTreeMap<(String, String), u64>,
    /// Incoming envelopes refused with a signed rejection, by (sender, code).
    pub inbound_rejections: BTreeMap<(OrgId, String), u64>,
    /// Our envelopes refused by the recipient, by (recipient, code).
    pub peer_rejections: BTreeMap<(OrgId, String), u64>,
}

/// What one commit's events add to the [`Tallies`].
#[derive(Debug, Default)]
pub(crate) struct Pending(Vec<AuditEvent>);

/// The live counters of a gateway, and whether it is shutting down.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    tallies: Mutex<Tallies>,
    stopping: AtomicBool,
}

/// How many rejected envelopes of one peer the audit trail records in a minute. Each record
/// is a durable commit; a peer (authenticated, but broken or hostile) that streams garbage
/// would otherwise grow the trail, which no purge shortens, and force a commit per envelope.
/// Past the limit a rejection is still answered and counted in the metrics, not recorded.
pub(crate) const REJECTIONS_RECORDED_PER_MINUTE: u32 = 20;

/// The rejections recorded per peer in the current minute.
#[derive(Debug, Default)]
pub(crate) struct RejectionLimit {
    minutes: Mutex<std::collections::HashMap<OrgId, (u64, u32)>>,
}

impl RejectionLimit {
    /// Whether a rejection of an envelope from `peer` at `now` (seconds) is recorded in the
    /// trail: the first [`REJECTIONS_RECORDED_PER_MINUTE`] of each minute are. The first one
    /// past the limit is logged.
    pub(crate) fn record(&self, peer: &OrgId, now: u64) -> bool {
        let minute = now / 60;
        let mut m = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        // Peers are the directory's members: the map stays small; old minutes are dropped.
        m.retain(|_, (at, _)| *at == minute);
        let (_, n) = m.entry(peer.clone()).or_insert((minute, 0));
        *n = n.saturating_add(1);
        if *n == REJECTIONS_RECORDED_PER_MINUTE + 1 {
            tracing::warn!(
                from = peer.as_str(),
                "more than {REJECTIONS_RECORDED_PER_MINUTE} envelopes rejected this minute: the rest are answered and counted (tsunagi_inbound_rejections_total), not recorded in the audit trail"
            );
        }
        *n <= REJECTIONS_RECORDED_PER_MINUTE
    }
}

/// A refusal code as a label value: short and plain (a peer's receipt could say anything).
fn code_label(code: &str) -> String {
    if !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_:-.".contains(&b))
    {
        code.to_owned()
    } else {
        "other".to_owned()
    }
}

impl Counters {
    /// The events of `events` that count (usually none: no allocation then).
    pub(crate) fn pending(events: &[AuditEvent]) -> Pending {
        Pending(
            events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        AuditEvent::Sent { .. }
                            | AuditEvent::Received { .. }
                            | AuditEvent::Expired { .. }
                            | AuditEvent::GateDenied { .. }
                            | AuditEvent::Rejected { .. }
                            | AuditEvent::RejectedByPeer { .. }
                    )
                })
                .cloned()
                .collect(),
        )
    }

    /// Counts the events of a commit that went through.
    pub(crate) fn add(&self, p: Pending) {
        if p.0.is_empty() {
            return;
        }
        let mut t = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        for e in p.0 {
            match e {
                AuditEvent::Sent { to, .. } => *t.sent.entry(to).or_default() += 1,
                AuditEvent::Received { from, .. } => *t.received.entry(from).or_default() += 1,
                AuditEvent::Expired { to, .. } => *t.expired.entry(to).or_default() += 1,
                AuditEvent::GateDenied { rule, code, .. } => {
                    *t.gate_denials.entry((rule, code_label(&code))).or_default() += 1
                }
                AuditEvent::Rejected { from, code } => {
                    *t.inbound_rejections
                        .entry((from, code_label(&code)))
                        .or_default() += 1
                }
                AuditEvent::RejectedByPeer { to, reason, .. } => {
                    *t.peer_rejections
                        .entry((to, code_label(&reason)))
                        .or_default() += 1
                }
                _ => {}
            }
        }
    }

    /// A delivery attempt to `to` failed and will be retried.
    pub(crate) fn retry(&self, to: &OrgId) {
        let mut t = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        *t.retries.entry(to.clone()).or_default() += 1;
    }

    /// The gateway began to shut down: it is no longer ready.
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// How long `/healthz` waits for the store's flush before calling the store unwritable.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(5);

impl Gateway {
    /// Outbox entries by recipient and state, and each recipient's backlog, as committed.
    pub fn outbox_gauges(&self) -> BTreeMap<OrgId, super::PeerGauge> {
        self.inner.outbox_gauges.snapshot()
    }

    /// Incoming handshakes refused past the caps since the endpoint was bound.
    pub fn handshakes_refused(&self) -> crate::transport::admission::Counts {
        self.inner.transport.handshakes_refused()
    }

    /// The counters since the process started.
    pub fn tallies(&self) -> Tallies {
        self.inner
            .counters
            .tallies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether [`Gateway::shutdown`] has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.counters.stopping.load(Ordering::SeqCst)
    }

    /// Flushes of the store by duration, cumulative over [`crate::store::FLUSH_BUCKETS`].
    pub fn flush_histogram(&self) -> [u64; crate::store::FLUSH_BUCKETS.len()] {
        self.inner.durable.flush_histogram()
    }

    /// The error that stopped the store, once it is stopped (the process is about to exit).
    pub fn store_stop_error(&self) -> Option<StoreError> {
        self.inner.durable.stop_error()
    }

    /// Whether new work is taken on now: `Err` while the store is stopped or the free space of
    /// the data directory is below `[storage] min_free_bytes`.
    pub fn admits_work(&self) -> Result<(), StoreError> {
        self.inner.durable.admit()
    }

    /// Liveness: the store is not stopped, reports no sticky failure, and a flush goes through
    /// within [`LIVENESS_TIMEOUT`] (one fsync of nothing, or of what others wrote).
    pub async fn liveness(&self) -> Result<(), String> {
        if let Some(e) = self.store_stop_error() {
            return Err(format!("the store stopped: {e}"));
        }
        self.inner
            .durable
            .store()
            .health()
            .map_err(|e| format!("the store cannot write: {e}"))?;
        match tokio::time::timeout(LIVENESS_TIMEOUT, self.inner.durable.commit(Batch::new())).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the store cannot write: {e}")),
            Err(_) => Err(format!(
                "a flush of the store did not finish within {} s",
                LIVENESS_TIMEOUT.as_secs()
            )),
        }
    }

    /// The expiries of what the gateway has loaded now: its TLS and signing certificates, the
    /// CA certificate, the CRL's next update and the directory.
    pub fn expiries(&self) -> Vec<Expiry> {
        let cfg = &self.inner.cfg;
        let creds = cfg.credentials.display().to_string();
        let not_after = |der: &[u8]| CertInfo::from_der(der, None).ok().map(|c| c.not_after);
        let trust = self.trust();
        let directory = self.directory();
        vec![
            Expiry {
                what: Expiring::TlsCertificate,
                file: format!("{creds}/{}", tsunagi_certs::issue::TLS_CERT_FILE),
                at: not_after(&self.inner.transport.certificate()),
            },
            Expiry {
                what: Expiring::SigningCertificate,
                file: format!("{creds}/{}", tsunagi_certs::issue::SIGN_CERT_FILE),
                at: self.signer().x5chain().first().and_then(|d| not_after(d)),
            },
            Expiry {
                what: Expiring::CaCertificate,
                file: cfg.ca.display().to_string(),
                at: not_after(trust.ca_der()),
            },
            Expiry {
                what: Expiring::Crl,
                file: cfg.crl.display().to_string(),
                at: trust.crl_next_update(),
            },
            Expiry {
                what: Expiring::Directory,
                file: cfg.directory.display().to_string(),
                // Valid through its `expires` day in Japan.
                at: directory.expires.map(|d| d.add_days(1).start().0 as i64),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_past_the_limit_of_a_minute_are_not_recorded() {
        let limit = RejectionLimit::default();
        let (a, b): (OrgId, OrgId) = (
            "mi:1310000017".parse().unwrap(),
            "ot:npo-komorebi".parse().unwrap(),
        );
        let t = 6_000;
        for _ in 0..REJECTIONS_RECORDED_PER_MINUTE {
            assert!(limit.record(&a, t));
        }
        assert!(!limit.record(&a, t + 59), "past the limit");
        assert!(limit.record(&b, t + 59), "another peer has its own");
        assert!(limit.record(&a, t + 60), "a new minute");
    }
}
