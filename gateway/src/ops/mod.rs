//! Operations basics: Prometheus metrics, liveness and readiness, and expiry warnings.
//!
//! | file | owns |
//! |---|---|
//! | `metrics.rs` | the Prometheus text exposition (format 0.0.4), written by hand |
//! | `http.rs` | the loopback HTTP listener: `/metrics`, `/healthz`, `/readyz` |
//!
//! # Where it is served
//! By the gateway process itself, on its own TCP address, `metrics_listen` in `gateway.toml`
//! (off when absent), loopback only unless `metrics_allow_non_loopback = true`
//! ([`crate::config::check_metrics_listen`]):
//! - only the gateway knows what the probes must tell: whether its store has stopped, what it
//!   counted since it started, which CRL and directory it has loaded; another process (the
//!   adapters) would have to ask it over the control socket and could not tell a hung gateway
//!   from a slow one;
//! - not on the QUIC address, which peers reach across the network, and not on the control
//!   socket, which a Prometheus server cannot scrape (and which would have to trust the
//!   scraper with `send`);
//! - loopback only, because the series name the peer orgs and the volumes exchanged with each
//!   (who talks to whom, how much): a scraper on another host reaches it through the host's own
//!   agent or a TLS proxy, which the operator configures on purpose. There is no
//!   authentication on it: nothing it answers changes anything.
//!
//! # Probes
//! `/healthz` (liveness): 200 while the process runs and the store can write (no sticky
//! failure, an fsync goes through within [`crate::engine::LIVENESS_TIMEOUT`]); a full disk
//! below the floor is not a liveness failure (a restart would not help). `/readyz`
//! (readiness): 200 when every reason of [`readiness`] is absent, else 503 with one line per
//! reason.
//!
//! # Expiry warnings
//! [`start`] logs a warning for every credential within its threshold (`[expiry_warnings]`) and
//! an error for every one already past, at start and then once a day.

pub mod http;
pub mod metrics;

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::Gateway;
use crate::expiry::Standing;

/// Why the gateway is not ready to accept work now; empty when it is.
pub fn readiness(gw: &Gateway) -> Vec<String> {
    let mut reasons = Vec::new();
    if gw.is_stopping() {
        reasons.push("the gateway is shutting down: the QUIC endpoint is closed".to_owned());
    }
    if let Some(e) = gw.store_stop_error() {
        reasons.push(format!("the store stopped: {e}"));
    } else if let Err(e) = gw.admits_work() {
        reasons.push(e.to_string());
    }
    let now = gw.now();
    let w = gw.config().expiry_warnings;
    for e in gw.expiries() {
        if e.standing(now, &w) == Standing::Expired {
            if let Some(m) = e.message(now, &w) {
                reasons.push(m);
            }
        }
    }
    reasons
}

/// Logs every credential within its warning threshold (warn) or past it (error); returns how
/// many it logged.
pub fn log_expiries(gw: &Gateway) -> usize {
    let now = gw.now();
    let w = gw.config().expiry_warnings;
    let mut logged = 0;
    for e in gw.expiries() {
        let Some(m) = e.message(now, &w) else {
            continue;
        };
        logged += 1;
        match e.standing(now, &w) {
            Standing::Expired => tracing::error!(what = e.what.label(), "EXPIRED: {m}"),
            _ => tracing::warn!(what = e.what.label(), "EXPIRING SOON: {m}"),
        }
    }
    logged
}

/// Starts the operations side of a running gateway: the expiry warnings (now, then daily) and,
/// when `metrics_listen` is set, the HTTP listener. Returns the listener's bound address.
pub async fn start(gw: &Gateway) -> Result<Option<SocketAddr>, String> {
    log_expiries(gw);
    let daily = gw.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(86_400)).await;
            log_expiries(&daily);
        }
    });
    match gw.config().metrics_listen {
        None => Ok(None),
        Some(addr) => {
            let bound = http::serve(gw.clone(), addr).await?;
            tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
            Ok(Some(bound))
        }
    }
}
