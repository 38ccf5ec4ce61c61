//! Which incoming handshakes are served: the work a stranger can cause before it is known.
//!
//! Who connects is known only once the TLS handshake is done, so the caps per peer org
//! ([`super::TransportConfig::per_peer_connections`]) cannot hold back a flood of handshakes from
//! anyone who reaches the UDP port. This module does, in three steps, each before any TLS work:
//!
//! 1. **Address validation.** A client whose address is not validated yet gets a QUIC Retry
//!    (stateless: no connection state, no TLS), and must come back with the token from that
//!    address. Packets with forged source addresses therefore never reach a handshake, and cannot
//!    hold a slot. It costs a legitimate peer one round trip when it opens a connection (a gateway
//!    keeps its connections open).
//! 2. **Per source.** One source (an IPv4 address, or an IPv6 /64) may have at most a quarter of
//!    the slots in progress at once, so that one host cannot take them all.
//! 3. **In all.** At most [`super::TransportConfig::max_handshakes`] handshakes are in progress at
//!    once; each is bounded by the connect timeout.
//!
//! A handshake past a cap is refused at once (CONNECTION_REFUSED, which a gateway treats as
//! transient and retries). Refusals are logged at most once a minute, with how many there were.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use super::lock;

/// How often refusals are logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The admission of incoming handshakes of one endpoint.
#[derive(Debug)]
pub(super) struct Admission {
    max: usize,
    per_source_max: usize,
    permits: Arc<Semaphore>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    refused: Mutex<Refused>,
    /// Refused since the endpoint was bound, by the cap that refused them.
    refused_total: Mutex<Counts>,
}

/// Handshakes refused since the endpoint was bound ([`Admission::refused`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Refused because their source had a quarter of the slots.
    pub per_source: u64,
    /// Refused because all the slots were taken.
    pub in_all: u64,
}

#[derive(Debug, Default)]
struct Refused {
    /// Refused since the last log line.
    since_logged: u64,
    logged_at: Option<Instant>,
}

/// A handshake being served: holds its place until dropped.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    source: IpAddr,
    admission: Arc<Admission>,
}

impl Admission {
    /// At most `max` handshakes in progress (at least 1; more than a semaphore holds is capped).
    pub(super) fn new(max: usize) -> Arc<Admission> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Admission {
            max,
            per_source_max: (max / 4).max(1),
            permits: Arc::new(Semaphore::new(max)),
            per_source: Mutex::new(HashMap::new()),
            refused: Mutex::new(Refused::default()),
            refused_total: Mutex::new(Counts::default()),
        })
    }

    /// Handshakes refused since the endpoint was bound.
    pub(super) fn refused(&self) -> Counts {
        *lock(&self.refused_total)
    }

    /// Handshakes in progress now.
    #[cfg(test)]
    pub(super) fn in_progress(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// `incoming` with its slot when it is to be served; `None` when it was answered here (asked
    /// to validate its address, or refused).
    pub(super) fn admit(
        self: &Arc<Self>,
        incoming: quinn::Incoming,
    ) -> Option<(quinn::Incoming, Slot)> {
        let incoming = if incoming.remote_address_validated() || !incoming.may_retry() {
            incoming
        } else {
            match incoming.retry() {
                Ok(()) => return None,
                Err(e) => e.into_incoming(),
            }
        };
        let remote = incoming.remote_address();
        let source = source_of(remote);
        let mut per_source = lock(&self.per_source);
        let from_source = per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.per_source_max {
            drop(per_source);
            lock(&self.refused_total).per_source += 1;
            self.refuse(incoming, remote, "from this source");
            return None;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            drop(per_source);
            lock(&self.refused_total).in_all += 1;
            self.refuse(incoming, remote, "in all");
            return None;
        };
        per_source.insert(source, from_source + 1);
        drop(per_source);
        self.log_refusals(remote, "", false);
        Some((
            incoming,
            Slot {
                _permit: permit,
                source,
                admission: self.clone(),
            },
        ))
    }

    fn refuse(&self, incoming: quinn::Incoming, remote: SocketAddr, cap: &str) {
        incoming.refuse();
        self.log_refusals(remote, cap, true);
    }

    /// Counts a refusal (when `refused`) and logs the count when a minute has passed since the
    /// last line: at a refusal, or at the next admission after refusals.
    fn log_refusals(&self, remote: SocketAddr, cap: &str, refused: bool) {
        let mut r = lock(&self.refused);
        if refused {
            r.since_logged += 1;
        }
        let now = Instant::now();
        let due = r
            .logged_at
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if r.since_logged > 0 && due {
            warn!(
                addr = %remote,
                refused = r.since_logged,
                cap,
                max_handshakes = self.max,
                per_source = self.per_source_max,
                "refused incoming handshakes past the caps on handshakes in progress (a peer retries; many refusals may be a flood)"
            );
            r.since_logged = 0;
            r.logged_at = Some(now);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_source = lock(&self.admission.per_source);
        if let Some(n) = per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

/// The source a handshake is counted against: the IPv4 address, or the /64 of an IPv6 one (a
/// host is given a whole /64).
fn source_of(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_64() {
        let at = |s: &str| source_of(s.parse().unwrap());
        assert_eq!(at("192.0.2.7:4433"), at("192.0.2.7:1"));
        assert_ne!(at("192.0.2.7:4433"), at("192.0.2.8:4433"));
        assert_eq!(
            at("[2001:db8:1:2:aaaa::1]:4433"),
            at("[2001:db8:1:2:bbbb::9]:1")
        );
        assert_ne!(at("[2001:db8:1:2::1]:4433"), at("[2001:db8:1:3::1]:4433"));
        assert_eq!(at("[::ffff:192.0.2.7]:4433"), at("192.0.2.7:4433"));
    }

    #[test]
    fn caps_are_at_least_one_and_a_source_gets_a_quarter() {
        let a = Admission::new(0);
        assert_eq!((a.max, a.per_source_max), (1, 1));
        let a = Admission::new(64);
        assert_eq!((a.max, a.per_source_max), (64, 16));
        let a = Admission::new(usize::MAX);
        assert_eq!(a.max, Semaphore::MAX_PERMITS);
    }
}
