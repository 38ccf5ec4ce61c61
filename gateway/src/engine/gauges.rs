//! Outbox entries by recipient and state, kept in memory for `/metrics`.
//!
//! A scrape used to read every outbox entry from the store. With a large backlog that is a pass
//! over hundreds of megabytes at every scrape, competing with the drain for the disk, the CPU and
//! the page cache. Instead, start-up counts the entries it reads anyway to schedule them
//! (`reschedule_all`), and every commit that writes an entry in a new state, or removes one, moves
//! the counts with it: the outbox transition names the state an entry had
//! ([`crate::core::outbox::Effect::WriteEntry`]), and the [`GaugeMove`]s travel in the same
//! transaction as the writes and are counted once it is committed, as the audit counters are.
//! A test compares the counts with a full read of the store after every kind of change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tsunagi_control::entries::{OutState, OutboxEntry};
use tsunagi_protocol::OrgId;

/// One entry's move between states: from `was` (`None`: it is new) to `now` (`None`: it is
/// gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GaugeMove {
    to: OrgId,
    created: u64,
    was: Option<OutState>,
    now: Option<OutState>,
}

impl GaugeMove {
    /// `e` was in state `was` (or new) and is now as given.
    pub(crate) fn written(e: &OutboxEntry, was: Option<OutState>) -> Self {
        Self {
            to: e.to.clone(),
            created: e.created,
            was,
            now: Some(e.state),
        }
    }

    /// An entry found in the store at start-up.
    pub(crate) fn present(to: OrgId, state: OutState, created: u64) -> Self {
        Self {
            to,
            created,
            was: None,
            now: Some(state),
        }
    }

    /// `e`, as it was, is removed.
    pub(crate) fn removed(e: &OutboxEntry) -> Self {
        Self {
            to: e.to.clone(),
            created: e.created,
            was: Some(e.state),
            now: None,
        }
    }
}

/// Whether an entry in `state` waits to be delivered (the backlog).
fn waits(state: OutState) -> bool {
    matches!(state, OutState::Queued | OutState::RetryWait)
}

/// The counts for one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerGauge {
    /// Entries by state (states with none are absent).
    pub states: BTreeMap<OutState, u64>,
    /// Waiting entries by the second they were queued (for the oldest one's age).
    waiting: BTreeMap<u64, u64>,
}

impl PeerGauge {
    /// Entries waiting to be delivered (queued or retry_wait).
    pub fn backlog(&self) -> u64 {
        self.waiting.values().sum()
    }

    /// When the oldest waiting entry was queued (Unix seconds).
    pub fn oldest_waiting(&self) -> Option<u64> {
        self.waiting.keys().next().copied()
    }

    fn count(&mut self, state: OutState, created: u64, add: bool) {
        bump(self.states.entry(state).or_default(), add);
        if self.states.get(&state) == Some(&0) {
            self.states.remove(&state);
        }
        if waits(state) {
            bump(self.waiting.entry(created).or_default(), add);
            if self.waiting.get(&created) == Some(&0) {
                self.waiting.remove(&created);
            }
        }
    }
}

fn bump(n: &mut u64, add: bool) {
    if add {
        *n += 1;
    } else {
        // A count never goes below zero; the test of this module checks it never needs to.
        *n = n.saturating_sub(1);
    }
}

/// The outbox counts by recipient.
#[derive(Debug, Default)]
pub(crate) struct OutboxGauges {
    peers: Mutex<HashMap<OrgId, PeerGauge>>,
}

impl OutboxGauges {
    /// Counts what committed moves did.
    pub(crate) fn apply(&self, moves: Vec<GaugeMove>) {
        if moves.is_empty() {
            return;
        }
        let mut peers = self.peers.lock().expect("outbox gauges");
        for m in moves {
            let peer = peers.entry(m.to).or_default();
            if let Some(was) = m.was {
                peer.count(was, m.created, false);
            }
            if let Some(now) = m.now {
                peer.count(now, m.created, true);
            }
        }
    }

    /// The counts now, by recipient.
    pub(crate) fn snapshot(&self) -> BTreeMap<OrgId, PeerGauge> {
        self.peers
            .lock()
            .expect("outbox gauges")
            .iter()
            .filter(|(_, g)| !g.states.is_empty())
            .map(|(o, g)| (o.clone(), g.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(to: &str, state: OutState, created: u64) -> OutboxEntry {
        OutboxEntry {
            id: "00".repeat(16),
            state,
            to: to.parse().unwrap(),
            kind: tsunagi_protocol::DocType::SupportEnd,
            purpose: tsunagi_protocol::Purpose::SupportEnd,
            case: "case-131059-2026-0007".parse().unwrap(),
            profile: "full".into(),
            withheld: vec![],
            attempts: 0,
            next_attempt: created,
            last_error: None,
            created,
            expires: created + 1000,
            done_at: None,
        }
    }

    #[test]
    fn moves_count_states_backlog_and_the_oldest_waiting_entry() {
        let g = OutboxGauges::default();
        let hospital: OrgId = "mi:1310000017".parse().unwrap();
        let a = entry("mi:1310000017", OutState::Queued, 100);
        let b = entry("mi:1310000017", OutState::Queued, 200);
        g.apply(vec![
            GaugeMove::written(&a, None),
            GaugeMove::written(&b, None),
        ]);
        let s = &g.snapshot()[&hospital];
        assert_eq!((s.backlog(), s.oldest_waiting()), (2, Some(100)));
        // The older one fails once, then is delivered: the oldest waiting is the newer one.
        let a1 = entry("mi:1310000017", OutState::RetryWait, 100);
        g.apply(vec![GaugeMove::written(&a1, Some(OutState::Queued))]);
        assert_eq!(g.snapshot()[&hospital].oldest_waiting(), Some(100));
        let a2 = entry("mi:1310000017", OutState::Delivered, 100);
        g.apply(vec![GaugeMove::written(&a2, Some(OutState::RetryWait))]);
        let s = &g.snapshot()[&hospital];
        assert_eq!((s.backlog(), s.oldest_waiting()), (1, Some(200)));
        assert_eq!(
            s.states,
            BTreeMap::from([(OutState::Queued, 1), (OutState::Delivered, 1)])
        );
        // Purged: nothing is left for the recipient.
        g.apply(vec![GaugeMove::removed(&a2), GaugeMove::removed(&b)]);
        assert!(g.snapshot().is_empty());
    }
}
