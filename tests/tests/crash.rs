//! Crash safety: kill -9 of the sending and the receiving gateway at random moments during a
//! stream of envelopes. Afterwards every envelope that was acknowledged to the submitter is in
//! the receiver's inbox exactly once.
//!
//! `TSUNAGI_CRASH_ENVELOPES` sets the count (default 10,000).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tsunagi_tests::Federation;

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";

/// A tiny deterministic generator for the kill schedule (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_of_sender_and_receiver_loses_and_duplicates_nothing() {
    let total: usize = std::env::var("TSUNAGI_CRASH_ENVELOPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut f = Federation::new(
        "crash",
        &[BUNKYO, HOSPITAL],
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 3000\nidle_timeout_ms = 1500\n",
    );
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });

    // Bunkyo sends support-end notices (small, always allowed) to the hospital.
    let form = json!({
        "document_type": "support_end", "author": BUNKYO, "subject": "case-131059-2026-0007",
        "ended_on": "2027-04-30", "outcome": "completed", "note": "",
    });
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(AtomicUsize::new(0));
    let sock = f.socket(BUNKYO);
    let submitter = {
        let (acked, done, submitted) = (acked.clone(), done.clone(), submitted.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut i = 0;
            while i < total {
                let request =
                    json!({"op": "send", "to": HOSPITAL, "purpose": "support_end", "form": form});
                match rt.block_on(tsunagi_gateway::control::call(&sock, &request)) {
                    Ok(entry) => {
                        acked
                            .lock()
                            .unwrap()
                            .push(entry["id"].as_str().unwrap().to_owned());
                        i += 1;
                        submitted.store(i, Ordering::Relaxed);
                    }
                    // The gateway is down (killed): nothing was acknowledged; try again.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            done.store(true, Ordering::Relaxed);
        })
    };

    // Kill one side or the other at random moments while the stream runs.
    let mut rng = Rng(0x5eed_cafe_f00d);
    let mut kills = BTreeMap::<&str, usize>::new();
    let started = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(300 + rng.next(1200)));
        if done.load(Ordering::Relaxed) {
            break;
        }
        let victim = if rng.next(2) == 0 { BUNKYO } else { HOSPITAL };
        f.kill(victim);
        *kills.entry(victim).or_default() += 1;
        std::thread::sleep(Duration::from_millis(rng.next(400)));
        f.start(victim);
        assert!(
            started.elapsed() < Duration::from_secs(1500),
            "the stream did not finish; {} submitted",
            submitted.load(Ordering::Relaxed)
        );
    }
    submitter.join().unwrap();
    assert!(
        kills.values().sum::<usize>() >= 2 || total < 2000,
        "too few kills to mean anything: {kills:?}"
    );

    // Let delivery finish, then compare ids.
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert_eq!(acked.len(), total, "every acknowledged id is distinct");
    let deadline = Instant::now() + Duration::from_secs(600);
    let inbox_ids = loop {
        let inbox = f.inbox(HOSPITAL);
        let ids: Vec<String> = inbox
            .iter()
            .filter(|e| e["kind"] == "support_end")
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let have: BTreeSet<&String> = ids.iter().collect();
        if acked.iter().all(|id| have.contains(id)) {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged envelopes never arrived",
            acked.iter().filter(|id| !have.contains(id)).count()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let unique: BTreeSet<&String> = inbox_ids.iter().collect();
    assert_eq!(
        unique.len(),
        inbox_ids.len(),
        "an envelope was stored twice"
    );
    // Extra ids can only be submissions whose acknowledgement was lost in a kill.
    let extra = unique.iter().filter(|id| !acked.contains(**id)).count();
    assert!(
        extra <= kills.get(BUNKYO).copied().unwrap_or(0) * 64,
        "{extra} unacknowledged envelopes arrived"
    );
    eprintln!("{total} acknowledged, all delivered exactly once; kills: {kills:?}; {extra} unacknowledged extra");
}

/// Submits `n` support-end notices to the hospital at once (so that the sender seals them in
/// batches); returns the ids acknowledged (a call to a gateway that died is not).
fn submit_together(f: &Federation, n: usize) -> Vec<String> {
    let sock = f.socket(BUNKYO);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..n {
            let sock = sock.clone();
            calls.spawn(async move {
                let form = json!({
                    "document_type": "support_end", "author": BUNKYO,
                    "subject": "case-131059-2026-0007", "ended_on": "2027-04-30",
                    "outcome": "completed", "note": "",
                });
                let request =
                    json!({"op": "send", "to": HOSPITAL, "purpose": "support_end", "form": form});
                tsunagi_gateway::control::call(&sock, &request).await
            });
        }
        let mut acked = Vec::new();
        while let Some(r) = calls.join_next().await {
            if let Ok(Ok(entry)) = r {
                acked.push(entry["id"].as_str().unwrap().to_owned());
            }
        }
        acked
    })
}

/// Waits until `org`'s gateway killed itself at its crash point (SIGKILL) and reaps it.
fn wait_killed_by_crash_point(f: &mut Federation, org: &str) {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let child = f.members.get_mut(org).unwrap().child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.signal(), Some(9), "{org} exited otherwise: {status}");
            f.members.get_mut(org).unwrap().child = None;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{org} never reached its crash point:\n{}",
            f.log(org)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every id of `acked` is in the hospital's inbox; fails on a duplicate.
fn wait_delivered_once(f: &Federation, acked: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ids: Vec<String> = f
            .inbox(HOSPITAL)
            .iter()
            .filter(|e| e["kind"] == "support_end")
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "an envelope was stored twice");
        if acked.iter().all(|id| unique.contains(id)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged envelopes never arrived",
            acked.iter().filter(|id| !unique.contains(id)).count()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kill_9_between_seal_and_send_and_between_inbox_write_and_receipt_loses_nothing() {
    let mut f = Federation::new(
        "crashpoints",
        &[BUNKYO, HOSPITAL],
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 500\nconnect_timeout_ms = 500\nattempt_timeout_ms = 3000\nidle_timeout_ms = 1500\n",
    );
    f.start(HOSPITAL);
    // The sender dies at its 6th send: envelopes sealed in batches and durable in its outbox,
    // the rest not yet sent.
    f.start_with_env(BUNKYO, &[("TSUNAGI_CRASH_AT", "before_send:6")]);
    // A consent naming only the hospital: copies to members that are not running would be
    // sent (and counted) too, and the crash could come before the consent is even recorded.
    let mut consent = tsunagi_tests::fixture("consent.json");
    consent["recipients"] = json!([{ "org": BUNKYO }, { "org": HOSPITAL }]);
    f.call(BUNKYO, json!({"op": "consent_record", "record": consent}));
    // Support-end notices go to parties only: the hospital is one once it has its copy.
    f.wait_outbox(BUNKYO, 30, "the consent delivered to the hospital", |v| {
        v.iter()
            .any(|e| e["kind"] == "consent" && e["state"] == "delivered")
    });
    let mut acked: BTreeSet<String> = submit_together(&f, 24).into_iter().collect();
    wait_killed_by_crash_point(&mut f, BUNKYO);
    f.start(BUNKYO);
    wait_delivered_once(&f, &acked);

    // The receiver dies after its 5th inbox write of this round, before that receipt is sent:
    // the sender must retry, and get the stored receipt back instead of a second copy.
    f.kill(HOSPITAL);
    f.start_with_env(HOSPITAL, &[("TSUNAGI_CRASH_AT", "after_inbox_write:5")]);
    acked.extend(submit_together(&f, 24));
    wait_killed_by_crash_point(&mut f, HOSPITAL);
    f.start(HOSPITAL);
    wait_delivered_once(&f, &acked);
    assert!(
        acked.len() >= 24,
        "too few acknowledged to mean anything: {}",
        acked.len()
    );
    f.wait_outbox(BUNKYO, 60, "every envelope delivered on the sender", |v| {
        v.iter()
            .filter(|e| e["kind"] == "support_end")
            .all(|e| e["state"] == "delivered")
    });
}

/// Counts `org`'s outbox entries of `kind` per recipient; fails if one recipient has two.
fn one_per_recipient(entries: &[serde_json::Value], kind: &str) -> BTreeMap<String, String> {
    let mut per: BTreeMap<String, String> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["kind"] == kind) {
        let to = e["to"].as_str().unwrap().to_owned();
        let state = e["state"].as_str().unwrap().to_owned();
        assert!(
            per.insert(to.clone(), state).is_none(),
            "two {kind} envelopes to {to}"
        );
    }
    per
}

/// Starts Bunkyo set to die right after it records a consent version, sends `request` (which
/// fails: no answer comes), waits for the kill -9 and starts Bunkyo again.
fn dies_right_after_recording(f: &mut Federation, request: &serde_json::Value) {
    f.start_with_env(BUNKYO, &[("TSUNAGI_CRASH_AT", "after_consent_recorded:1")]);
    assert!(f.try_call(BUNKYO, request.clone()).is_err());
    wait_killed_by_crash_point(f, BUNKYO);
    f.start(BUNKYO);
}

#[test]
fn kill_9_right_after_a_consent_is_recorded_loses_none_of_its_copies_and_notices() {
    const NPO: &str = "ot:npo-komorebi";
    let mut f = Federation::new(
        "consent-crash",
        &[BUNKYO, HOSPITAL, NPO],
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 500\nconnect_timeout_ms = 500\nattempt_timeout_ms = 3000\nidle_timeout_ms = 1500\n",
    );
    f.start(HOSPITAL);
    f.start(NPO);
    // Bunkyo dies once the consent is durable, before any copy of it is queued. The staff
    // member sees the request fail.
    let record = json!({"op": "consent_record", "record": tsunagi_tests::fixture("consent.json")});
    dies_right_after_recording(&mut f, &record);
    // Restarted, the gateway queues what the consent's follow-up still owes, by itself: the
    // hospital and the NPO, both named, get their copy, once.
    let out = f.wait_outbox(BUNKYO, 60, "the consent copies after the restart", |v| {
        let per = one_per_recipient(v, "consent");
        [HOSPITAL, NPO]
            .iter()
            .all(|o| per.get(*o).is_some_and(|s| s == "delivered"))
    });
    let copies = one_per_recipient(&out, "consent").len();
    // Recording it again is refused, and says the gateway sends the copies itself.
    let again = f.try_call(BUNKYO, record).unwrap_err();
    assert!(
        again.contains("not newer") && again.contains("queues its copies and notices itself"),
        "{again}"
    );

    // The withdrawal: Bunkyo dies again right after recording it.
    f.kill(BUNKYO);
    dies_right_after_recording(
        &mut f,
        &json!({"op": "consent_withdraw", "id": "consent-131059-2026-0007"}),
    );
    // Every party gets the withdrawn version and a withdrawal notice, once each.
    let out = f.wait_outbox(BUNKYO, 60, "the withdrawal's copies and notices", |v| {
        let notices = one_per_recipient(v, "consent_withdrawal");
        [HOSPITAL, NPO]
            .iter()
            .all(|o| notices.get(*o).is_some_and(|s| s == "delivered"))
    });
    let versions = out.iter().filter(|e| e["kind"] == "consent").count();
    assert_eq!(
        versions,
        2 * copies,
        "one copy of each version per recipient"
    );
    for inbox in [f.inbox(HOSPITAL), f.inbox(NPO)] {
        assert_eq!(
            inbox
                .iter()
                .filter(|e| e["kind"] == "consent_withdrawal")
                .count(),
            1
        );
    }
}
