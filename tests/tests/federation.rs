//! Gateways as separate processes on loopback, driven through the control socket and the
//! `tsunagi` command the way staff and adapters drive them.

use serde_json::{json, Value};
use tsunagi_tests::{all_final, fixture, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";
const CLINIC: &str = "mi:1310000025";
const NPO: &str = "ot:npo-komorebi";
const POLICE: &str = "ot:mpd";
/// Short timeouts so that a dead peer is noticed quickly.
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn send(f: &Federation, from: &str, to: &str, purpose: &str, form: Value) -> Result<Value, String> {
    f.try_call(
        from,
        json!({"op": "send", "to": to, "purpose": purpose, "form": form}),
    )
}

fn delivered(f: &Federation, from: &str, id: &str) -> Value {
    let list = f.wait_outbox(from, 30, &format!("{id} delivered"), |v| {
        v.iter().any(|e| e["id"] == id && e["state"] == "delivered")
    });
    list.into_iter().find(|e| e["id"] == id).expect("entry")
}

fn received<'a>(inbox: &'a [Value], kind: &str) -> Vec<&'a Value> {
    inbox.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn assessment_reaches_bunkyo_in_full_then_clinic_in_full_and_npo_as_form6_only() {
    let mut f = Federation::new("route", &[BUNKYO, HOSPITAL, CLINIC, NPO, POLICE], "");
    f.start_all();
    // Consent first: Bunkyo records v1 and sends it to the running parties it names.
    f.record_consent("consent.json");
    f.wait_outbox(
        BUNKYO,
        30,
        "consent delivered to the running parties",
        |v| {
            [HOSPITAL, CLINIC, NPO].iter().all(|o| {
                v.iter()
                    .any(|e| e["to"] == *o && e["kind"] == "consent" && e["state"] == "delivered")
            })
        },
    );

    // The hospital sends its assessment to Bunkyo with the `tsunagi send` command.
    let form = f.dir.join("assessment.json");
    std::fs::write(&form, fixture("needs_assessment.json").to_string()).unwrap();
    let out = f.cli(
        HOSPITAL,
        &[
            "send",
            "--to",
            BUNKYO,
            "--purpose",
            "plan_creation",
            form.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .split_whitespace()
        .nth(1)
        .expect("queued <id>")
        .to_owned();
    delivered(&f, HOSPITAL, &id);
    let inbox = f.inbox(BUNKYO);
    let got = received(&inbox, "needs_assessment");
    assert_eq!(got.len(), 1);
    assert!(
        got[0]["withheld"].as_array().unwrap().is_empty(),
        "the plan author sees everything"
    );
    let shown = f.call(BUNKYO, json!({"op": "inbox_show", "id": got[0]["id"]}));
    assert_eq!(shown["document"]["items"]["F1"]["staff"], 2);

    // Bunkyo forwards the received document: exported, then sent with `tsunagi send`.
    let bundle = f.dir.join("assessment.doc");
    let out = f.cli(
        BUNKYO,
        &[
            "inbox",
            "export",
            got[0]["id"].as_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for to in [CLINIC, NPO] {
        let out = f.cli(
            BUNKYO,
            &[
                "send",
                "--to",
                to,
                "--purpose",
                "plan_implementation",
                bundle.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    f.wait_outbox(BUNKYO, 30, "forwards delivered", |v| {
        v.iter()
            .filter(|e| e["kind"] == "needs_assessment" && e["state"] == "delivered")
            .count()
            == 2
    });
    let clinic = f.inbox(CLINIC);
    let c = received(&clinic, "needs_assessment");
    assert_eq!(c.len(), 1);
    assert!(
        c[0]["withheld"].as_array().unwrap().is_empty(),
        "the treating clinic sees the ratings"
    );
    let npo = f.inbox(NPO);
    let n = received(&npo, "needs_assessment");
    assert_eq!(n.len(), 1);
    let disclosed: Vec<&str> = n[0]["disclosed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        disclosed
            .iter()
            .all(|e| !e.starts_with("items.") && *e != "opinion"),
        "{disclosed:?}"
    );
    assert!(disclosed.contains(&"summary.overall"));
    let shown = f.call(NPO, json!({"op": "inbox_show", "id": n[0]["id"]}));
    let text = shown.to_string();
    assert!(shown["document"].get("items").is_none());
    for note in ["入院前に連日飲酒", "入院前に自傷行為あり", "staff"] {
        assert!(!text.contains(note), "{note} reached the NPO");
    }

    // A send to the police is refused by the gate, audited, and nothing reaches the police.
    let err = send(
        &f,
        BUNKYO,
        POLICE,
        "plan_implementation",
        fixture("support_plan.json"),
    )
    .unwrap_err();
    assert!(
        err.contains("refused police involvement") && err.contains("R6"),
        "{err}"
    );
    let audit = f.call(BUNKYO, json!({"op": "audit"}));
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"] == "gate_denied"
                && r["to"] == POLICE
                && r["code"] == "police_refused_by_person"),
        "{audit:#}"
    );
    assert!(f.inbox(POLICE).is_empty());
    assert!(f
        .call(BUNKYO, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["to"] != POLICE));
}

#[test]
fn a_receiver_that_is_down_gets_the_envelope_once_it_is_back() {
    let mut f = Federation::new("retry", &[BUNKYO, HOSPITAL], FAST);
    f.start(HOSPITAL);
    f.start(BUNKYO);
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });
    f.kill(BUNKYO);
    let e = send(
        &f,
        HOSPITAL,
        BUNKYO,
        "plan_creation",
        fixture("opinion_letter.json"),
    )
    .unwrap();
    let id = e["id"].as_str().unwrap().to_owned();
    f.wait_outbox(HOSPITAL, 30, "retries", |v| {
        v.iter().any(|x| {
            x["id"] == id && x["state"] == "retry_wait" && x["attempts"].as_u64() >= Some(2)
        })
    });
    f.start(BUNKYO);
    let entry = delivered(&f, HOSPITAL, &id);
    assert!(entry["attempts"].as_u64().unwrap() >= 2);
    assert_eq!(received(&f.inbox(BUNKYO), "opinion_letter").len(), 1);
}

#[test]
fn an_envelope_nobody_receives_expires_into_an_undelivered_report() {
    let mut f = Federation::new("expiry", &[BUNKYO, HOSPITAL], "[delivery]\nexpiry_secs = 3\nretry_initial_ms = 200\nretry_max_ms = 500\nconnect_timeout_ms = 500\nattempt_timeout_ms = 1000\nidle_timeout_ms = 1000\n");
    f.start(BUNKYO);
    f.start(HOSPITAL);
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });
    f.kill(HOSPITAL);
    let e = send(
        &f,
        BUNKYO,
        HOSPITAL,
        "plan_implementation",
        fixture("support_plan.json"),
    )
    .unwrap();
    let id = e["id"].as_str().unwrap().to_owned();
    let list = f.wait_outbox(BUNKYO, 30, "expiry", |v| {
        v.iter().any(|x| x["id"] == id && x["state"] == "expired")
    });
    assert!(list
        .iter()
        .any(|x| x["id"] == id && x["last_error"].is_string()));
    // The plan's report (consent records to members that never ran expire with reports too).
    let reports: Vec<Value> = f
        .inbox(BUNKYO)
        .into_iter()
        .filter(|e| {
            e["report"]
                .as_str()
                .is_some_and(|r| r.starts_with("undelivered: support_plan"))
        })
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0]["report"].as_str().unwrap().contains(HOSPITAL),
        "{reports:?}"
    );
}

#[test]
fn withdrawing_consent_cancels_what_waits_for_an_unreachable_peer() {
    let mut f = Federation::new("withdraw", &[BUNKYO, NPO, CLINIC], FAST);
    f.start(BUNKYO);
    f.start(CLINIC);
    // The NPO's gateway is down: everything for it waits.
    f.record_consent("consent.json");
    let plan = fixture("support_plan.json");
    let mut queued = vec![];
    for _ in 0..3 {
        queued.push(
            send(&f, BUNKYO, NPO, "plan_implementation", plan.clone()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let to_clinic = send(&f, BUNKYO, CLINIC, "plan_implementation", plan).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    delivered(&f, BUNKYO, &to_clinic);
    f.wait_outbox(BUNKYO, 30, "NPO entries retrying", |v| {
        queued.iter().all(|id| {
            v.iter()
                .any(|e| e["id"] == *id && e["state"] == "retry_wait")
        })
    });
    let out = f.cli(BUNKYO, &["consent", "withdraw", "consent-131059-2026-0007"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = f.wait_outbox(BUNKYO, 30, "cancellation", |v| {
        queued.iter().all(|id| {
            v.iter()
                .any(|e| e["id"] == *id && e["state"] == "cancelled")
        })
    });
    // The clinic received something of the case, so it gets a withdrawal notice.
    assert!(list
        .iter()
        .any(|e| e["to"] == CLINIC && e["kind"] == "consent_withdrawal"));
    f.start(NPO);
    f.wait_outbox(BUNKYO, 30, "the clinic's notice delivered", |v| {
        v.iter().any(|e| {
            e["to"] == CLINIC && e["kind"] == "consent_withdrawal" && e["state"] == "delivered"
        })
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let npo = f.inbox(NPO);
    assert!(
        received(&npo, "support_plan").is_empty(),
        "a cancelled plan reached the NPO: {npo:?}"
    );
    assert!(received(&f.inbox(CLINIC), "consent_withdrawal").len() == 1);
    // Nothing new is accepted for sending either.
    let err = send(
        &f,
        BUNKYO,
        CLINIC,
        "plan_implementation",
        fixture("support_plan.json"),
    )
    .unwrap_err();
    assert!(err.contains("withdrawn"), "{err}");
    let _ = all_final(&list);
}
