//! The outbox lifecycle as one function: [`transition`]`(entry, input) -> (entry, effects)`.
//!
//! Every outbox state is assigned here and nowhere else (entries are born through [`create`]).
//! The function pairs each state with what goes with it, so the driver cannot forget half of
//! it: the time it ended (`done_at`) and `last_error` are set with the state, the stored
//! envelope is deleted exactly when the entry becomes final, every final state publishes its
//! outcome and writes its audit event, and a failed attempt comes back as a
//! [`Effect::RetryAfter`] timer for the driver's one scheduler.
//!
//! ```text
//!              create(Queue)                          Delivered ─► delivered
//!   ─────────────────────────► queued ─┐ Attempt      Refused   ─► rejected
//!                                      ├──────────► (sending) ─┤
//!   create(AwaitConsent)   retry_wait ─┘              Failed    ─► retry_wait ─(timer)─► Attempt
//!   ──► awaiting_consent ─(Released)─► queued
//!   any non-final ─ Cancel ─► cancelled        queued / retry_wait ─ Expire ─► expired
//!   any non-final, not in flight ─ CancelRequested ─► cancelled
//! ```
//!
//! `Cancel` is the gateway's own decision (a withdrawal, the gate at dispatch, an unusable
//! directory entry); `CancelRequested` is a person's (`tsunagi outbox cancel`, the console's
//! cancel button). The latter is refused for an entry that is final or whose attempt is in
//! flight: [`cancel_requested`] says why, in words the requester can act on.
//!
//! Inputs that do not apply to an entry's state (a receipt for a final entry, a second
//! cancellation, an attempt on an entry that waits for consent) change nothing and have no
//! effects: a final state is never left.

use crate::events::AuditEvent;
use tsunagi_control::{OutState, OutboxEntry};

/// What happens to an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A dispatch attempt is due: the driver asks whether to send.
    Attempt {
        /// Unix seconds.
        now: u64,
    },
    /// The recipient's signed receipt accepted the envelope.
    Delivered {
        /// Unix seconds.
        now: u64,
        /// The receipt's bytes, kept as evidence.
        receipt: Vec<u8>,
    },
    /// The recipient's signed receipt refused the envelope (never retried).
    Refused {
        /// Unix seconds.
        now: u64,
        /// The receipt's reason.
        reason: String,
        /// The receipt's bytes, kept as evidence.
        receipt: Vec<u8>,
    },
    /// The attempt failed for a reason a later attempt may not meet.
    TransientFailure {
        /// Unix seconds.
        now: u64,
        /// Why, one line.
        why: String,
        /// The retry delay, from [`retry_delay_ms`].
        delay_ms: u64,
    },
    /// The consent or the directory no longer allows it (withdrawal, the gate at dispatch, an
    /// unusable directory entry).
    Cancel {
        /// Unix seconds.
        now: u64,
        /// Why, one line.
        why: String,
        /// Whether the gate at dispatch found it (the wording says so).
        at_dispatch: bool,
    },
    /// A member of staff or the operator asked to cancel the entry before it is sent.
    CancelRequested {
        /// Unix seconds.
        now: u64,
        /// The staff member's account id (`None`: the operator, on the command line).
        staff: Option<String>,
        /// Whether an attempt for the entry is in flight (the driver knows; refused then).
        in_flight: bool,
    },
    /// A consent version now covers an entry that waited for it; the driver has sealed its
    /// envelope.
    Released {
        /// Unix seconds.
        now: u64,
    },
    /// The expiry time passed before a receipt came.
    Expire {
        /// Unix seconds.
        now: u64,
    },
}

/// How an entry is born.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Create {
    /// Its envelope is sealed and stored: send it.
    Queue,
    /// The consent does not cover it yet (the consent-missing case): keep the document until a
    /// version that covers it arrives.
    AwaitConsent {
        /// Why it cannot go yet.
        why: String,
    },
}

/// What the driver must do, in order, in one durable commit (outcomes and timers after it).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Store the entry as returned. `was`: its state before (`None` for a new entry), so that
    /// what counts entries by state can follow without reading them again.
    WriteEntry {
        /// The state the entry had; `None` when it is new.
        was: Option<OutState>,
    },
    /// Delete the stored envelope (the entry is final; nothing will send it again).
    RemoveEnvelope,
    /// Delete the document kept while waiting for consent.
    RemoveWaiting,
    /// Keep the receipt.
    KeepReceipt(Vec<u8>),
    /// Record that the recipient now takes part in the case.
    NoteParty,
    /// Write this audit event.
    Audit(AuditEvent),
    /// Write an undelivered report (this text) into the inbox.
    UndeliveredReport(String),
    /// Send the envelope now.
    Send,
    /// Attempt again after this many milliseconds.
    RetryAfter(u64),
    /// Publish the final state (after the commit).
    Outcome(OutState),
}

/// The fields of a new entry; [`create`] gives it its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// msgId, hex.
    pub id: String,
    /// Recipient.
    pub to: tsunagi_protocol::OrgId,
    /// Document type.
    pub kind: tsunagi_protocol::DocType,
    /// Purpose.
    pub purpose: tsunagi_protocol::Purpose,
    /// Case pseudonym.
    pub case: tsunagi_protocol::CaseId,
    /// Redaction profile applied.
    pub profile: String,
    /// Elements withheld.
    pub withheld: Vec<String>,
    /// Unix seconds.
    pub now: u64,
    /// When it expires (Unix seconds).
    pub expires: u64,
}

/// A new entry, queued or waiting for consent, with its effects.
pub fn create(n: NewEntry, how: Create) -> (OutboxEntry, Vec<Effect>) {
    let (state, last_error) = match &how {
        Create::Queue => (OutState::Queued, None),
        Create::AwaitConsent { why } => (
            OutState::AwaitingConsent,
            Some(format!("waiting for consent: {why}")),
        ),
    };
    let e = OutboxEntry {
        id: n.id,
        state,
        to: n.to,
        kind: n.kind,
        purpose: n.purpose,
        case: n.case,
        profile: n.profile,
        withheld: n.withheld,
        attempts: 0,
        next_attempt: n.now,
        last_error,
        created: n.now,
        expires: n.expires,
        done_at: None,
    };
    let effects = match how {
        Create::Queue => vec![Effect::WriteEntry { was: None }, Effect::RetryAfter(0)],
        Create::AwaitConsent { .. } => vec![
            Effect::WriteEntry { was: None },
            Effect::Audit(AuditEvent::AwaitingConsent {
                id: e.id.clone(),
                case: e.case.clone(),
                to: e.to.clone(),
                kind: e.kind,
            }),
        ],
    };
    (e, effects)
}

/// Why a requested cancellation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefused {
    /// The entry is final: delivered, rejected, expired or cancelled already.
    #[error(
        "outbox entry {id} cannot be cancelled: it is already {state} and will not be sent again"
    )]
    Final {
        /// msgId, hex.
        id: String,
        /// Its final state, as the outbox lists it.
        state: String,
    },
    /// An attempt is being sent right now; the peer may already hold it.
    #[error("outbox entry {id} cannot be cancelled: it is being sent right now; wait for its outcome (`tsunagi outbox show {id}`) and cancel it if it waits to retry")]
    InFlight {
        /// msgId, hex.
        id: String,
    },
}

/// Whether `e` may be cancelled on request: not when it is final or an attempt is in flight.
pub fn may_cancel(e: &OutboxEntry, in_flight: bool) -> Result<(), CancelRefused> {
    if e.state.is_final() {
        let state = serde_json::to_value(e.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(CancelRefused::Final {
            id: e.id.clone(),
            state,
        });
    }
    if in_flight {
        return Err(CancelRefused::InFlight { id: e.id.clone() });
    }
    Ok(())
}

/// A requested cancellation of `e` ([`Input::CancelRequested`]): the cancelled entry and its
/// effects, or why it is refused (a final entry, an attempt in flight).
pub fn cancel_requested(
    e: OutboxEntry,
    now: u64,
    staff: Option<String>,
    in_flight: bool,
) -> Result<(OutboxEntry, Vec<Effect>), CancelRefused> {
    may_cancel(&e, in_flight)?;
    Ok(transition(
        e,
        Input::CancelRequested {
            now,
            staff,
            in_flight,
        },
    ))
}

/// The retry delay after `attempts` failed attempts: exponential from `initial_ms`, capped at
/// `max_ms`, times a jitter between 0.5 and 1.5 drawn from `entropy`.
pub fn retry_delay_ms(attempts: u32, initial_ms: u64, max_ms: u64, entropy: u32) -> u64 {
    let base = initial_ms
        .saturating_mul(1u64 << attempts.min(20).saturating_sub(1))
        .min(max_ms);
    let jitter = 0.5 + f64::from(entropy) / f64::from(u32::MAX);
    (base as f64 * jitter) as u64
}

/// Ends `e` in the final state `state` with `last_error`: the fields and effects every final
/// state shares.
fn finish(
    mut e: OutboxEntry,
    state: OutState,
    now: u64,
    last_error: Option<String>,
    mut effects: Vec<Effect>,
) -> (OutboxEntry, Vec<Effect>) {
    let was = e.state;
    let waited = was == OutState::AwaitingConsent;
    e.state = state;
    e.done_at = Some(now);
    e.last_error = last_error;
    effects.insert(0, Effect::WriteEntry { was: Some(was) });
    effects.push(if waited {
        Effect::RemoveWaiting
    } else {
        Effect::RemoveEnvelope
    });
    effects.push(Effect::Outcome(state));
    (e, effects)
}

/// The next state of `e` after `input`, and what the driver must do.
pub fn transition(e: OutboxEntry, input: Input) -> (OutboxEntry, Vec<Effect>) {
    use OutState as S;
    if e.state.is_final() {
        return (e, Vec::new());
    }
    let sendable = matches!(e.state, S::Queued | S::RetryWait);
    match input {
        Input::Attempt { now } if sendable => {
            if now >= e.expires {
                return transition(e, Input::Expire { now });
            }
            let mut e = e;
            e.attempts += 1;
            (e, vec![Effect::Send])
        }
        Input::Delivered { now, receipt } if sendable => {
            let event = AuditEvent::Sent {
                id: e.id.clone(),
                case: e.case.clone(),
                to: e.to.clone(),
                kind: e.kind,
                profile: e.profile.clone(),
                withheld: e.withheld.clone(),
            };
            finish(
                e,
                S::Delivered,
                now,
                None,
                vec![
                    Effect::KeepReceipt(receipt),
                    Effect::NoteParty,
                    Effect::Audit(event),
                ],
            )
        }
        Input::Refused {
            now,
            reason,
            receipt,
        } if sendable => {
            let event = AuditEvent::RejectedByPeer {
                id: e.id.clone(),
                case: e.case.clone(),
                to: e.to.clone(),
                reason: reason.clone(),
            };
            let why = format!("rejected by {}: {reason}", e.to);
            finish(
                e,
                S::Rejected,
                now,
                Some(why),
                vec![Effect::KeepReceipt(receipt), Effect::Audit(event)],
            )
        }
        Input::TransientFailure { now, why, delay_ms } if sendable => {
            let mut e = e;
            let was = Some(e.state);
            e.state = S::RetryWait;
            e.last_error = Some(why);
            e.next_attempt = now + delay_ms.div_ceil(1000);
            (
                e,
                vec![Effect::WriteEntry { was }, Effect::RetryAfter(delay_ms)],
            )
        }
        Input::Cancel {
            now,
            why,
            at_dispatch,
        } => {
            let event = AuditEvent::Cancelled {
                id: e.id.clone(),
                case: e.case.clone(),
                to: e.to.clone(),
                why: why.clone(),
                staff: None,
            };
            let text = if at_dispatch {
                format!("cancelled at dispatch: {why}; never delivered")
            } else {
                format!("cancelled: {why}; never delivered")
            };
            finish(e, S::Cancelled, now, Some(text), vec![Effect::Audit(event)])
        }
        Input::CancelRequested {
            now,
            staff,
            in_flight: false,
        } => {
            let why = match &staff {
                Some(s) => format!("cancelled on request of staff member {s}; never delivered"),
                None => "cancelled by the operator; never delivered".to_owned(),
            };
            let event = AuditEvent::Cancelled {
                id: e.id.clone(),
                case: e.case.clone(),
                to: e.to.clone(),
                why: "cancelled on request".into(),
                staff,
            };
            finish(e, S::Cancelled, now, Some(why), vec![Effect::Audit(event)])
        }
        Input::Released { now } if e.state == S::AwaitingConsent => {
            let mut e = e;
            e.state = S::Queued;
            e.last_error = None;
            e.next_attempt = now;
            (
                e,
                vec![
                    Effect::WriteEntry {
                        was: Some(S::AwaitingConsent),
                    },
                    Effect::RemoveWaiting,
                    Effect::RetryAfter(0),
                ],
            )
        }
        Input::Expire { now } if sendable => {
            let days = (e.expires - e.created.min(e.expires)) as f64 / 86_400.0;
            let report = format!(
                "undelivered: {} of {} to {} could not be delivered within {:.1} days after {} attempts; last error: {}",
                e.kind,
                e.case,
                e.to,
                days,
                e.attempts,
                e.last_error.clone().unwrap_or_else(|| "none".into())
            );
            let event = AuditEvent::Expired {
                id: e.id.clone(),
                case: e.case.clone(),
                to: e.to.clone(),
            };
            let last = e.last_error.clone();
            finish(
                e,
                S::Expired,
                now,
                last,
                vec![Effect::UndeliveredReport(report), Effect::Audit(event)],
            )
        }
        // Not applicable in this state: nothing changes.
        _ => (e, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// xorshift64*: a seeded PRNG, so that a failing sequence can be replayed from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn new_entry(i: usize, now: u64) -> NewEntry {
        NewEntry {
            id: format!("{i:032x}"),
            to: "mi:1310000017".parse().unwrap(),
            kind: tsunagi_protocol::DocType::SupportEnd,
            purpose: tsunagi_protocol::Purpose::SupportEnd,
            case: "case-131059-2026-0007".parse().unwrap(),
            profile: "full".into(),
            withheld: vec![],
            now,
            expires: now + 1000,
        }
    }

    /// The invariants of one step: a final state is never left and pairs `done_at`, the
    /// envelope's deletion and one outcome; a non-final state has no `done_at`.
    fn check_step(before: &OutboxEntry, after: &OutboxEntry, effects: &[Effect]) {
        if before.state.is_final() {
            assert_eq!(before, after, "a final entry changed");
            assert!(effects.is_empty(), "a final entry had effects: {effects:?}");
            return;
        }
        let outcomes: Vec<_> = effects
            .iter()
            .filter_map(|f| match f {
                Effect::Outcome(s) => Some(*s),
                _ => None,
            })
            .collect();
        let removes = effects
            .iter()
            .filter(|f| matches!(f, Effect::RemoveEnvelope))
            .count();
        if after.state.is_final() {
            assert_eq!(outcomes, vec![after.state]);
            assert!(after.done_at.is_some());
            assert!(effects
                .iter()
                .any(|f| matches!(f, Effect::WriteEntry { .. })));
            assert!(effects.iter().any(|f| matches!(f, Effect::Audit(_))));
            let waited = before.state == OutState::AwaitingConsent;
            assert_eq!(removes, usize::from(!waited), "{effects:?}");
        } else {
            assert!(outcomes.is_empty());
            assert_eq!(removes, 0, "the envelope of a live entry was deleted");
            assert!(after.done_at.is_none());
        }
        // An entry whose state changed is written, naming the state it had (what counts entries
        // by state follows these), and a written entry names the state it really had.
        let writes: Vec<_> = effects
            .iter()
            .filter_map(|f| match f {
                Effect::WriteEntry { was } => Some(*was),
                _ => None,
            })
            .collect();
        if after.state != before.state {
            assert_eq!(writes, vec![Some(before.state)], "{effects:?}");
        } else {
            assert!(
                writes.iter().all(|w| *w == Some(before.state)),
                "{effects:?}"
            );
        }
        if effects.contains(&Effect::Send) {
            assert!(matches!(
                after.state,
                OutState::Queued | OutState::RetryWait
            ));
        }
        if after.state == OutState::Delivered {
            assert!(after.last_error.is_none());
        }
    }

    /// Random inputs in any order, realistic or not: the step invariants hold.
    #[test]
    fn arbitrary_inputs_never_leave_a_final_state() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let how = if rng.below(3) == 0 {
                Create::AwaitConsent { why: "x".into() }
            } else {
                Create::Queue
            };
            let (mut e, _) = create(new_entry(0, 0), how);
            let mut delivered = 0;
            for step in 0..40 {
                let now = step * 50;
                let input = match rng.below(8) {
                    0 => Input::Attempt { now },
                    1 => Input::Delivered {
                        now,
                        receipt: vec![1],
                    },
                    2 => Input::Refused {
                        now,
                        reason: "r".into(),
                        receipt: vec![2],
                    },
                    3 => Input::TransientFailure {
                        now,
                        why: "down".into(),
                        delay_ms: rng.below(5000),
                    },
                    4 => Input::Cancel {
                        now,
                        why: "withdrawn".into(),
                        at_dispatch: rng.below(2) == 0,
                    },
                    5 => Input::Released { now },
                    6 => Input::CancelRequested {
                        now,
                        staff: Some("clerk1".into()),
                        in_flight: rng.below(2) == 0,
                    },
                    _ => Input::Expire { now },
                };
                let refused_in_flight = matches!(
                    input,
                    Input::CancelRequested {
                        in_flight: true,
                        ..
                    }
                );
                let (next, effects) = transition(e.clone(), input);
                check_step(&e, &next, &effects);
                if refused_in_flight {
                    assert_eq!(next, e, "a cancellation in flight changed the entry");
                    assert!(effects.is_empty());
                }
                delivered += effects
                    .iter()
                    .filter(|f| **f == Effect::Outcome(OutState::Delivered))
                    .count();
                e = next;
            }
            assert!(delivered <= 1, "seed {seed}: delivered {delivered} times");
        }
    }

    /// A driver as the engine is one: timers fire attempts, an attempt's result comes back only
    /// for an envelope that was sent, withdrawals and releases come at any time, the peer is
    /// down for a while. No entry is lost (each ends final, or is still held by a timer, an
    /// attempt in flight, or the wait for consent), none is delivered twice, and once the peer
    /// is up and the timers have run, every entry that was not cancelled is delivered.
    #[test]
    fn a_driver_loses_nothing_and_delivers_once() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
            let n = 1 + rng.below(6) as usize;
            let mut entries: BTreeMap<usize, OutboxEntry> = BTreeMap::new();
            let mut timers: BTreeSet<usize> = BTreeSet::new();
            let mut in_flight: BTreeSet<usize> = BTreeSet::new();
            let mut peer_took: BTreeMap<usize, usize> = BTreeMap::new();
            let mut outcomes: BTreeMap<usize, Vec<OutState>> = BTreeMap::new();
            let mut now = 0u64;
            let mut apply = |i: usize,
                             input: Input,
                             entries: &mut BTreeMap<usize, OutboxEntry>,
                             timers: &mut BTreeSet<usize>,
                             in_flight: &mut BTreeSet<usize>| {
                let e = entries[&i].clone();
                let (next, effects) = transition(e.clone(), input);
                check_step(&e, &next, &effects);
                for f in &effects {
                    match f {
                        Effect::RetryAfter(_) => {
                            timers.insert(i);
                        }
                        Effect::Send => {
                            in_flight.insert(i);
                        }
                        Effect::Outcome(s) => outcomes.entry(i).or_default().push(*s),
                        _ => {}
                    }
                }
                entries.insert(i, next);
            };
            for i in 0..n {
                let how = if rng.below(3) == 0 {
                    Create::AwaitConsent { why: "x".into() }
                } else {
                    Create::Queue
                };
                let (e, effects) = create(new_entry(i, now), how);
                if effects.contains(&Effect::RetryAfter(0)) {
                    timers.insert(i);
                }
                entries.insert(i, e);
            }
            let peer_up_at = rng.below(60);
            for step in 0..80u64 {
                now += 1;
                let i = rng.below(n as u64) as usize;
                match rng.below(10) {
                    // A timer fires.
                    0..=3 if timers.remove(&i) => apply(
                        i,
                        Input::Attempt { now },
                        &mut entries,
                        &mut timers,
                        &mut in_flight,
                    ),
                    // An attempt ends.
                    4..=6 if in_flight.remove(&i) => {
                        let input = if step < peer_up_at {
                            Input::TransientFailure {
                                now,
                                why: "unreachable".into(),
                                delay_ms: 1000,
                            }
                        } else {
                            *peer_took.entry(i).or_default() += 1;
                            Input::Delivered {
                                now,
                                receipt: vec![],
                            }
                        };
                        apply(i, input, &mut entries, &mut timers, &mut in_flight)
                    }
                    7 if rng.below(4) == 0 && !in_flight.contains(&i) => apply(
                        i,
                        Input::Cancel {
                            now,
                            why: "withdrawn".into(),
                            at_dispatch: false,
                        },
                        &mut entries,
                        &mut timers,
                        &mut in_flight,
                    ),
                    8 => apply(
                        i,
                        Input::Released { now },
                        &mut entries,
                        &mut timers,
                        &mut in_flight,
                    ),
                    // Staff ask to cancel: refused in flight or when final, done otherwise.
                    9 if rng.below(3) == 0 => {
                        let e = entries[&i].clone();
                        let flying = in_flight.contains(&i);
                        match cancel_requested(e.clone(), now, Some("clerk1".into()), flying) {
                            Ok((next, _)) => {
                                assert!(!flying && !e.state.is_final());
                                assert_eq!(next.state, OutState::Cancelled);
                                apply(
                                    i,
                                    Input::CancelRequested {
                                        now,
                                        staff: Some("clerk1".into()),
                                        in_flight: false,
                                    },
                                    &mut entries,
                                    &mut timers,
                                    &mut in_flight,
                                );
                                assert_eq!(entries[&i], next);
                            }
                            Err(CancelRefused::InFlight { .. }) => {
                                assert!(flying && !e.state.is_final())
                            }
                            Err(CancelRefused::Final { .. }) => assert!(e.state.is_final()),
                        }
                    }
                    _ => {}
                }
                // Nothing is lost: every live entry is held by something that moves it on.
                for (i, e) in &entries {
                    let held = e.state.is_final()
                        || e.state == OutState::AwaitingConsent
                        || timers.contains(i)
                        || in_flight.contains(i);
                    assert!(
                        held,
                        "seed {seed}: entry {i} is {:?} and nothing will move it",
                        e.state
                    );
                }
            }
            // The peer is up: release, run every timer and attempt until quiet.
            for i in 0..n {
                apply(
                    i,
                    Input::Released { now },
                    &mut entries,
                    &mut timers,
                    &mut in_flight,
                );
            }
            for _ in 0..10 {
                for i in 0..n {
                    if in_flight.remove(&i) {
                        *peer_took.entry(i).or_default() += 1;
                        apply(
                            i,
                            Input::Delivered {
                                now,
                                receipt: vec![],
                            },
                            &mut entries,
                            &mut timers,
                            &mut in_flight,
                        );
                    }
                    if timers.remove(&i) {
                        apply(
                            i,
                            Input::Attempt { now },
                            &mut entries,
                            &mut timers,
                            &mut in_flight,
                        );
                    }
                }
            }
            for (i, e) in &entries {
                assert!(
                    matches!(e.state, OutState::Delivered | OutState::Cancelled),
                    "seed {seed}: entry {i} ended {:?}",
                    e.state
                );
                let published = outcomes.get(i).map_or(0, Vec::len);
                assert_eq!(
                    published, 1,
                    "seed {seed}: entry {i} published {published} outcomes"
                );
                if e.state == OutState::Delivered {
                    assert_eq!(
                        peer_took.get(i),
                        Some(&1),
                        "seed {seed}: entry {i} sent twice"
                    );
                }
            }
        }
    }

    /// A requested cancellation ends a queued, retrying or waiting entry for good (its envelope
    /// or waiting document deleted, the staff id in the audit event), and is refused for a
    /// final entry and for one in flight, saying why.
    #[test]
    fn a_requested_cancellation_is_final_and_refused_when_too_late() {
        for how in [Create::Queue, Create::AwaitConsent { why: "x".into() }] {
            for retrying in [false, true] {
                let (mut e, _) = create(new_entry(0, 0), how.clone());
                if retrying && how == Create::Queue {
                    (e, _) = transition(e, Input::Attempt { now: 1 });
                    (e, _) = transition(
                        e,
                        Input::TransientFailure {
                            now: 2,
                            why: "down".into(),
                            delay_ms: 1000,
                        },
                    );
                    assert_eq!(e.state, OutState::RetryWait);
                }
                let before = e.clone();
                let (e, effects) = cancel_requested(e, 10, Some("clerk1".into()), false).unwrap();
                check_step(&before, &e, &effects);
                assert_eq!(e.state, OutState::Cancelled);
                assert_eq!(e.done_at, Some(10));
                assert!(e.last_error.as_deref().unwrap().contains("clerk1"));
                assert!(effects.iter().any(|f| matches!(
                    f,
                    Effect::Audit(AuditEvent::Cancelled { staff: Some(s), .. }) if s == "clerk1"
                )));
                // Never sent afterwards, whatever comes.
                for input in [
                    Input::Attempt { now: 11 },
                    Input::Released { now: 12 },
                    Input::Delivered {
                        now: 13,
                        receipt: vec![],
                    },
                ] {
                    let (after, effects) = transition(e.clone(), input);
                    assert_eq!(after, e);
                    assert!(!effects.contains(&Effect::Send));
                }
                // A second cancellation is refused: it is final.
                let err = cancel_requested(e, 20, None, false).unwrap_err();
                assert!(
                    matches!(err, CancelRefused::Final { ref state, .. } if state == "cancelled")
                );
                assert!(err.to_string().contains("already cancelled"), "{err}");
            }
        }
        // In flight: refused, and the entry goes on.
        let (e, _) = create(new_entry(1, 0), Create::Queue);
        let (e, effects) = transition(e, Input::Attempt { now: 1 });
        assert!(effects.contains(&Effect::Send));
        let err = cancel_requested(e.clone(), 2, Some("clerk1".into()), true).unwrap_err();
        assert!(err.to_string().contains("being sent right now"), "{err}");
        let (e, _) = transition(
            e,
            Input::Delivered {
                now: 3,
                receipt: vec![],
            },
        );
        let err = cancel_requested(e, 4, None, false).unwrap_err();
        assert!(err.to_string().contains("already delivered"), "{err}");
        // The operator (no staff id) may cancel too.
        let (e, _) = create(new_entry(2, 0), Create::Queue);
        let (e, _) = cancel_requested(e, 5, None, false).unwrap();
        assert!(e.last_error.unwrap().contains("operator"));
    }

    #[test]
    fn retries_back_off_within_the_jitter() {
        assert_eq!(retry_delay_ms(1, 1000, 60_000, 0), 500);
        assert_eq!(retry_delay_ms(3, 1000, 60_000, u32::MAX), 6000);
        assert_eq!(retry_delay_ms(30, 1000, 60_000, u32::MAX / 2), 59_999);
    }

    #[test]
    fn an_attempt_after_expiry_expires_with_a_report() {
        let (e, _) = create(new_entry(0, 0), Create::Queue);
        let (e, effects) = transition(e, Input::Attempt { now: 5000 });
        assert_eq!(e.state, OutState::Expired);
        assert!(effects
            .iter()
            .any(|f| matches!(f, Effect::UndeliveredReport(t) if t.starts_with("undelivered: "))));
    }
}
