//! The Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! Every family has `# HELP` and `# TYPE` lines and its samples together; label values are
//! escaped (`\\`, `\"`, `\n`). Labels are org ids, states, rule ids, refusal codes and the names
//! of credentials, never case pseudonyms or anything personal. The outbox series come from counts
//! the gateway keeps in memory (`Gateway::outbox_gauges`), so a scrape reads no outbox entry
//! however large the backlog; the inbox series read the inbox listing's metadata (no
//! decryption).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tsunagi_protocol::OrgId;

use crate::engine::{Gateway, OutState};
use crate::expiry::{ExpiryWarnings, Standing};
use crate::store::FLUSH_BUCKETS;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every outbox state, in the order they are listed.
const STATES: [OutState; 7] = [
    OutState::Queued,
    OutState::RetryWait,
    OutState::AwaitingConsent,
    OutState::Delivered,
    OutState::Rejected,
    OutState::Expired,
    OutState::Cancelled,
];

fn state_label(s: OutState) -> &'static str {
    match s {
        OutState::Queued => "queued",
        OutState::RetryWait => "retry_wait",
        OutState::AwaitingConsent => "awaiting_consent",
        OutState::Delivered => "delivered",
        OutState::Rejected => "rejected",
        OutState::Expired => "expired",
        OutState::Cancelled => "cancelled",
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition(String);

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    /// Starts a family: `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let v: f64 = value.into();
        let _ = writeln!(self.0, " {v}");
    }

    /// The text.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Converts a count for a sample (exact below 2^53).
fn n(x: u64) -> f64 {
    x as f64
}

/// The whole exposition of `gw` now. Reads the inbox listing from the store: call it on a
/// blocking thread.
pub fn render(gw: &Gateway) -> Result<String, String> {
    let now = gw.now();
    let org = gw.org().as_str().to_owned();
    let mut x = Exposition::default();

    x.family(
        "tsunagi_build_info",
        "gauge",
        "The gateway's version and org (always 1).",
    );
    x.sample(
        "tsunagi_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("org", &org)],
        1u8,
    );

    let reasons = super::readiness(gw);
    x.family(
        "tsunagi_ready",
        "gauge",
        "1 when /readyz answers 200: store open and not stopped, free space above the floor, credentials, CRL and directory current, QUIC endpoint bound.",
    );
    x.sample("tsunagi_ready", &[], u8::from(reasons.is_empty()));

    // Outbox: envelopes by peer and state, backlog and its oldest age per peer, as the gateway
    // counts them in memory (a scrape reads no outbox entry).
    let by = gw.outbox_gauges();
    x.family(
        "tsunagi_outbox_envelopes",
        "gauge",
        "Outbox entries by recipient org and state.",
    );
    for (peer, gauge) in &by {
        for s in STATES {
            let label = state_label(s);
            let count = gauge.states.get(&s).copied().unwrap_or(0);
            x.sample(
                "tsunagi_outbox_envelopes",
                &[("peer", peer.as_str()), ("state", label)],
                n(count),
            );
        }
    }
    x.family(
        "tsunagi_outbox_backlog",
        "gauge",
        "Envelopes waiting to be delivered (queued or retry_wait), by recipient org.",
    );
    for (peer, gauge) in &by {
        let count = gauge.backlog();
        x.sample(
            "tsunagi_outbox_backlog",
            &[("peer", peer.as_str())],
            n(count),
        );
    }
    x.family(
        "tsunagi_outbox_oldest_backlog_age_seconds",
        "gauge",
        "Age of the oldest envelope waiting to be delivered, by recipient org (0 when none waits).",
    );
    for (peer, gauge) in &by {
        let age = gauge
            .oldest_waiting()
            .map_or(0, |oldest| now.0.saturating_sub(oldest));
        x.sample(
            "tsunagi_outbox_oldest_backlog_age_seconds",
            &[("peer", peer.as_str())],
            n(age),
        );
    }

    // Inbox.
    let mut inbox_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut reports = 0u64;
    gw.inbox_each(&mut |e| {
        if e.report.is_some() {
            reports += 1;
        } else {
            *inbox_by.entry(e.from.as_str().to_owned()).or_default() += 1;
        }
    })
    .map_err(|e| e.to_string())?;
    x.family(
        "tsunagi_inbox_envelopes",
        "gauge",
        "Received documents in the inbox, by sender org.",
    );
    for (peer, count) in &inbox_by {
        x.sample("tsunagi_inbox_envelopes", &[("peer", peer)], n(*count));
    }
    x.family(
        "tsunagi_inbox_undelivered_reports",
        "gauge",
        "Undelivered reports in the inbox (envelopes of ours that expired).",
    );
    x.sample("tsunagi_inbox_undelivered_reports", &[], n(reports));

    // Counters since the process started.
    let t = gw.tallies();
    let per_peer = |x: &mut Exposition, name: &str, help: &str, m: &BTreeMap<OrgId, u64>| {
        x.family(name, "counter", help);
        for (peer, c) in m {
            x.sample(name, &[("peer", peer.as_str())], n(*c));
        }
    };
    per_peer(
        &mut x,
        "tsunagi_delivery_retries_total",
        "Delivery attempts that failed and were scheduled again, by recipient org.",
        &t.retries,
    );
    per_peer(
        &mut x,
        "tsunagi_envelopes_delivered_total",
        "Envelopes delivered (the recipient's signed receipt accepted them), by recipient org.",
        &t.sent,
    );
    per_peer(
        &mut x,
        "tsunagi_envelopes_received_total",
        "Envelopes received and stored, by sender org.",
        &t.received,
    );
    per_peer(
        &mut x,
        "tsunagi_envelopes_expired_total",
        "Envelopes that expired undelivered, by recipient org.",
        &t.expired,
    );
    let refused = gw.handshakes_refused();
    x.family(
        "tsunagi_handshakes_refused_total",
        "counter",
        "Incoming QUIC handshakes refused before any TLS work, by the cap that refused them: a quarter of the slots per source, or [delivery] max_handshakes in all. Many may be a flood.",
    );
    for (cap, c) in [
        ("per_source", refused.per_source),
        ("in_all", refused.in_all),
    ] {
        x.sample("tsunagi_handshakes_refused_total", &[("cap", cap)], n(c));
    }
    x.family(
        "tsunagi_gate_denials_total",
        "counter",
        "Sends refused by the consent gate, by rule (R1-R7) and refusal code.",
    );
    for ((rule, code), c) in &t.gate_denials {
        x.sample(
            "tsunagi_gate_denials_total",
            &[("rule", rule), ("code", code)],
            n(*c),
        );
    }
    x.family(
        "tsunagi_inbound_rejections_total",
        "counter",
        "Incoming envelopes refused with a signed rejection, by sender org and code.",
    );
    for ((peer, code), c) in &t.inbound_rejections {
        x.sample(
            "tsunagi_inbound_rejections_total",
            &[("peer", peer.as_str()), ("code", code)],
            n(*c),
        );
    }
    x.family(
        "tsunagi_peer_rejections_total",
        "counter",
        "Envelopes of ours the recipient refused with a signed rejection, by recipient org and code.",
    );
    for ((peer, code), c) in &t.peer_rejections {
        x.sample(
            "tsunagi_peer_rejections_total",
            &[("peer", peer.as_str()), ("code", code)],
            n(*c),
        );
    }

    // The store.
    x.family(
        "tsunagi_store_fsync_duration_seconds",
        "histogram",
        "Flushes (fsyncs) of the store by duration; group commit shares one among many writes.",
    );
    let buckets = gw.flush_histogram();
    // Read after the buckets (a flush is counted there first), so that +Inf is never below.
    let flushes = gw.flush_count().max(buckets[buckets.len() - 1]);
    for (le, count) in FLUSH_BUCKETS.iter().zip(buckets) {
        x.sample(
            "tsunagi_store_fsync_duration_seconds_bucket",
            &[("le", &le.to_string())],
            n(count),
        );
    }
    x.sample(
        "tsunagi_store_fsync_duration_seconds_bucket",
        &[("le", "+Inf")],
        n(flushes),
    );
    x.sample(
        "tsunagi_store_fsync_duration_seconds_sum",
        &[],
        gw.flush_time().as_secs_f64(),
    );
    x.sample(
        "tsunagi_store_fsync_duration_seconds_count",
        &[],
        n(flushes),
    );
    x.family(
        "tsunagi_store_size_bytes",
        "gauge",
        "Bytes the store occupies on disk.",
    );
    x.sample("tsunagi_store_size_bytes", &[], n(gw.size_on_disk()));
    let data_dir = &gw.config().data_dir;
    x.family(
        "tsunagi_store_free_bytes",
        "gauge",
        "Bytes free for the gateway on the data directory's file system.",
    );
    if let Ok(free) = fs2::available_space(data_dir) {
        x.sample("tsunagi_store_free_bytes", &[], n(free));
    }
    x.family(
        "tsunagi_store_min_free_bytes",
        "gauge",
        "The free-space floor ([storage] min_free_bytes): below it new work is refused.",
    );
    x.sample(
        "tsunagi_store_min_free_bytes",
        &[],
        n(gw.config().storage.min_free_bytes),
    );
    x.family(
        "tsunagi_store_stopped",
        "gauge",
        "1 once the store cannot write again in this process (the gateway exits to be restarted).",
    );
    x.sample(
        "tsunagi_store_stopped",
        &[],
        u8::from(gw.store_stop_error().is_some()),
    );

    // Expiries.
    let w: ExpiryWarnings = gw.config().expiry_warnings;
    let expiries = gw.expiries();
    x.family(
        "tsunagi_expiry_timestamp_seconds",
        "gauge",
        "When each credential stops being valid (Unix time): TLS, signing and CA certificates, the CRL's next update, the directory.",
    );
    for e in &expiries {
        if let Some(at) = e.at {
            x.sample(
                "tsunagi_expiry_timestamp_seconds",
                &[("what", e.what.label())],
                at as f64,
            );
        }
    }
    x.family(
        "tsunagi_expiry_days_left",
        "gauge",
        "Days left until each credential expires (negative once past).",
    );
    for e in &expiries {
        if let Some(d) = e.days_left(now) {
            x.sample("tsunagi_expiry_days_left", &[("what", e.what.label())], d);
        }
    }
    x.family(
        "tsunagi_expiry_warning",
        "gauge",
        "1 when a credential is within its warning threshold ([expiry_warnings]) or past it.",
    );
    for e in &expiries {
        x.sample(
            "tsunagi_expiry_warning",
            &[("what", e.what.label())],
            u8::from(e.standing(now, &w) != Standing::Fine),
        );
    }
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_escapes_and_formats() {
        let mut x = Exposition::default();
        x.family("a_total", "counter", "line\nbreak \\ here");
        x.sample(
            "a_total",
            &[("peer", "lg:131059"), ("code", "q\"\\\n")],
            3u8,
        );
        x.sample("a_total", &[], 0.25);
        assert_eq!(
            x.finish(),
            "# HELP a_total line\\nbreak \\\\ here\n# TYPE a_total counter\na_total{peer=\"lg:131059\",code=\"q\\\"\\\\\\n\"} 3\na_total 0.25\n"
        );
    }
}
