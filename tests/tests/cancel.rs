//! Cancelling a queued envelope on request (`outbox_cancel`, `tsunagi outbox cancel`): an entry
//! that is queued or waiting to retry is cancelled for good and never reaches its recipient,
//! the audit chain names the member of staff, and a final entry is refused with a clear error.

use serde_json::{json, Value};
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const NPO: &str = "ot:npo-komorebi";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn send_plan(f: &Federation) -> String {
    let sent = f.call(
        BUNKYO,
        json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": fixture("support_plan.json")}),
    );
    sent["id"].as_str().unwrap().to_owned()
}

fn state_of(f: &Federation, id: &str) -> String {
    f.call(BUNKYO, json!({"op": "outbox_show", "id": id}))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_queued_envelope_is_cancelled_for_good_and_a_final_one_is_refused() {
    let mut f = Federation::new("cancel", &[BUNKYO, NPO], FAST);
    // The NPO is down: what Bunkyo sends waits to retry.
    f.start(BUNKYO);
    f.record_consent("consent.json");
    let first = send_plan(&f);
    let second = send_plan(&f);
    f.wait_outbox(BUNKYO, 30, "the plans retrying", |v| {
        v.iter()
            .filter(|e| e["kind"] == "support_plan" && e["state"] == "retry_wait")
            .count()
            == 2
    });

    // A member of staff cancels the first (as the console does, with the staff id).
    let e = f.call(
        BUNKYO,
        json!({"op": "outbox_cancel", "id": first, "staff": "clerk1"}),
    );
    assert_eq!(e["state"], "cancelled");
    assert!(
        e["last_error"].as_str().unwrap().contains("clerk1"),
        "{e:#}"
    );
    let audit = f.call(BUNKYO, json!({"op": "audit"}));
    let records = audit.as_array().unwrap();
    assert!(
        records.iter().any(|r| r["event"] == "cancelled"
            && r["id"] == first.as_str()
            && r["staff"] == "clerk1"),
        "{audit:#}"
    );
    assert!(records.iter().any(|r| r["event"] == "staff_action"
        && r["op"] == "outbox_cancel"
        && r["staff"] == "clerk1"));

    // The operator cancels the second on the command line.
    let out = f.cli(BUNKYO, &["outbox", "cancel", &second]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled"));
    assert_eq!(state_of(&f, &second), "cancelled");

    // A second cancellation, and one of an unknown id, are refused and say why.
    let err = f
        .try_call(BUNKYO, json!({"op": "outbox_cancel", "id": first}))
        .unwrap_err();
    assert!(
        err.contains("cannot be cancelled") && err.contains("already cancelled"),
        "{err}"
    );
    let out = f.cli(BUNKYO, &["outbox", "cancel", &second]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already cancelled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "outbox_cancel", "id": "00000000000000000000000000000000"}),
        )
        .unwrap_err();
    assert!(err.starts_with("no outbox entry"), "{err}");

    // The NPO comes up: a third plan is delivered, the cancelled ones never arrive.
    f.start(NPO);
    let third = send_plan(&f);
    f.wait_outbox(BUNKYO, 30, "the third plan delivered", |v| {
        v.iter()
            .any(|e| e["id"] == third.as_str() && e["state"] == "delivered")
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ids: Vec<Value> = f.inbox(NPO).iter().map(|e| e["id"].clone()).collect();
    assert!(ids.contains(&Value::from(third.as_str())), "{ids:?}");
    for cancelled in [&first, &second] {
        assert!(!ids.contains(&Value::from(cancelled.as_str())), "{ids:?}");
        assert_eq!(state_of(&f, cancelled), "cancelled");
    }

    // A delivered entry cannot be cancelled.
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "outbox_cancel", "id": third, "staff": "clerk1"}),
        )
        .unwrap_err();
    assert!(err.contains("already delivered"), "{err}");
    assert_eq!(state_of(&f, &third), "delivered");
}

#[test]
fn a_form7_waiting_for_consent_cancelled_stays_cancelled_when_consent_comes() {
    const SETAGAYA: &str = "lg:131121";
    let mut f = Federation::new("cancel-waiting", &[BUNKYO, SETAGAYA, NPO], FAST);
    f.start_all();
    f.record_consent("consent.json");
    let plan = send_plan(&f);
    f.wait_outbox(BUNKYO, 30, "the plan delivered", |v| {
        v.iter()
            .any(|e| e["id"] == plan.as_str() && e["state"] == "delivered")
    });
    // The move drafts a Form 7 that waits: consent v1 does not cover the transfer.
    f.call(
        BUNKYO,
        json!({"op": "residence_change", "report": fixture("residence_change.json")}),
    );
    let v = f.wait_outbox(BUNKYO, 10, "Form 7 waiting for consent", |v| {
        v.iter()
            .any(|e| e["kind"] == "transfer_notice" && e["state"] == "awaiting_consent")
    });
    let notice = v.iter().find(|e| e["kind"] == "transfer_notice").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = f.call(
        BUNKYO,
        json!({"op": "outbox_cancel", "id": notice, "staff": "approver1"}),
    );
    assert_eq!(e["state"], "cancelled");
    // Consent v2 covers the transfer now, but a cancelled notice is not released.
    f.record_consent("consent_v2_relocation.json");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(state_of(&f, &notice), "cancelled");
    assert!(
        f.inbox(SETAGAYA)
            .iter()
            .all(|e| e["kind"] != "transfer_notice"),
        "a cancelled Form 7 was delivered"
    );
}
