//! The course of support after the first plan, driven over the control socket against gateways
//! running as separate processes: a readmission (support goes on), a plan revision that reaches
//! every party in its view, a support meeting shared only with its parties, an extension that
//! needs the meeting and the person's consent (R7), the end of support fanned out to every party,
//! the statistics of III.9, and the reminder for a period that ran out.

use std::time::Duration;

use serde_json::{json, Value};
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";
const CLINIC: &str = "mi:1310000025";
const NPO: &str = "ot:npo-komorebi";
const POLICE: &str = "ot:mpd";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

/// Distributes `request`'s document from Bunkyo; waits until the copies to `running` orgs are
/// delivered; returns the per-recipient result.
fn distribute(f: &Federation, request: Value, running: &[&str], what: &str) -> Vec<Value> {
    let out = f.call(BUNKYO, request);
    let out = out.as_array().cloned().unwrap_or_default();
    let ids: Vec<String> = out
        .iter()
        .filter(|d| running.contains(&d["to"].as_str().unwrap_or("")))
        .filter_map(|d| d["entry"]["id"].as_str().map(str::to_owned))
        .collect();
    f.wait_outbox(BUNKYO, 30, what, |v| {
        ids.iter().all(|id| {
            v.iter()
                .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
        })
    });
    out
}

fn recipients(out: &[Value]) -> Vec<&str> {
    out.iter()
        .filter(|d| d.get("entry").is_some())
        .filter_map(|d| d["to"].as_str())
        .collect()
}

/// The document of `kind` in `org`'s inbox with the highest `version` (if it has one), as
/// shown to staff.
fn newest(f: &Federation, org: &str, kind: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = f
            .inbox(org)
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| f.call(org, json!({"op": "inbox_show", "id": e["id"]})))
            .max_by_key(|s| s["document"]["version"].as_u64());
        if let Some(s) = shown {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{org} never got a {kind}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn revision_meeting_extension_readmission_and_end_as_a_user_would() {
    let mut f = Federation::new("course", &[BUNKYO, HOSPITAL, CLINIC, NPO, POLICE], FAST);
    f.start_all();
    f.record_consent("consent.json");
    let running = [HOSPITAL, CLINIC, NPO];
    f.wait_outbox(BUNKYO, 30, "consent v1 delivered", |v| {
        v.iter().filter(|e| e["state"] == "delivered").count() >= 3
    });

    // Plan v1 to every party of the plan in its view.
    let out = distribute(
        &f,
        json!({"op": "distribute", "form": fixture("support_plan.json")}),
        &running,
        "plan v1 delivered",
    );
    for o in running {
        assert!(recipients(&out).contains(&o), "{out:?}");
    }
    assert!(!recipients(&out).contains(&POLICE), "{out:?}");

    // Readmission: the hospital tells Bunkyo, Bunkyo tells the parties; support goes on.
    let sent = f.call(
        HOSPITAL,
        json!({"op": "send", "to": BUNKYO, "purpose": "plan_implementation", "form": fixture("readmission.json")}),
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    f.wait_outbox(HOSPITAL, 30, "readmission delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });
    let got = f
        .inbox(BUNKYO)
        .into_iter()
        .find(|e| e["kind"] == "readmission")
        .expect("Bunkyo holds the readmission");
    // Staff pass it on from the command line: export the received document, distribute it.
    let file = f.dir.join("readmission.cbor");
    let out = f.cli(
        BUNKYO,
        &[
            "inbox",
            "export",
            got["id"].as_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = f.cli(BUNKYO, &["distribute", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains(&format!("{CLINIC}: queued"))
            && said.contains(&format!("{NPO}: queued"))
            && said.contains("2 of 2 parties queued"),
        "{said}"
    );
    f.wait_outbox(BUNKYO, 30, "readmission passed on", |v| {
        v.iter()
            .filter(|e| e["kind"] == "readmission" && e["state"] == "delivered")
            .count()
            == 2
    });
    let npo = newest(&f, NPO, "readmission");
    assert_eq!(npo["document"]["admitted_on"], "2026-11-18", "{npo:#}");
    assert!(npo["document"].get("note").is_none(), "{npo:#}");
    let end = |outcome: &str| {
        let mut e = fixture("support_end.json");
        e["outcome"] = outcome.into();
        e
    };
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "distribute", "form": end("readmitted")}),
        )
        .unwrap_err();
    assert!(err.contains("a readmission does not end support"), "{err}");

    // Revision: v2 names v1 by digest (filled in by the gateway) and reaches every party.
    distribute(
        &f,
        json!({"op": "distribute", "form": fixture("support_plan_v2.json")}),
        &running,
        "plan v2 delivered",
    );
    let v2 = newest(&f, NPO, "support_plan");
    assert_eq!(v2["document"]["version"], 2, "{v2:#}");
    assert_eq!(v2["document"]["supersedes"]["version"], 1, "{v2:#}");
    assert_eq!(
        v2["document"]["supersedes"]["digest"]
            .as_str()
            .map(str::len),
        Some(64),
        "{v2:#}"
    );
    assert!(v2["document"].get("diagnosis").is_none(), "{v2:#}");
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "send", "to": CLINIC, "purpose": "plan_implementation", "form": fixture("support_plan.json")}),
        )
        .unwrap_err();
    assert!(err.contains("superseded by version 2"), "{err}");

    // An extension without the meeting that decided it is refused (R7).
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "distribute", "form": fixture("support_plan_v3_extended.json")}),
        )
        .unwrap_err();
    assert!(
        err.contains("no record of a support meeting on 2027-01-05") && err.contains("R7"),
        "{err}"
    );

    // The meeting record goes to the meeting's parties only (the absent NPO included).
    let out = distribute(
        &f,
        json!({"op": "distribute", "form": fixture("meeting_record.json")}),
        &[CLINIC, NPO],
        "meeting record delivered",
    );
    let to = recipients(&out);
    assert!(to.contains(&CLINIC) && to.contains(&NPO), "{out:?}");
    assert!(!to.contains(&HOSPITAL) && !to.contains(&POLICE), "{out:?}");
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "send", "to": HOSPITAL, "purpose": "plan_implementation", "form": fixture("meeting_record.json")}),
        )
        .unwrap_err();
    assert!(err.contains("goes only to the meeting's parties"), "{err}");

    // Now the extension goes, as plan v3, to every party.
    distribute(
        &f,
        json!({"op": "distribute", "form": fixture("support_plan_v3_extended.json")}),
        &running,
        "plan v3 delivered",
    );
    let v3 = newest(&f, NPO, "support_plan");
    assert_eq!(
        v3["document"]["support_period"]["extensions"][0]["to"], "2027-05-31",
        "{v3:#}"
    );

    // Consent v2 names plan version 3: a version 4 is not shared until a consent covers it.
    f.record_consent("consent_v2_relocation.json");
    let mut v4 = fixture("support_plan_v3_extended.json");
    v4["version"] = 4.into();
    v4["supersedes"] = json!({"version": 3, "reason": "日中活動の場を追加"});
    let err = f
        .try_call(BUNKYO, json!({"op": "distribute", "form": v4}))
        .unwrap_err();
    assert!(
        err.contains("consent version 2 covers plan version 3") && err.contains("R1"),
        "{err}"
    );

    // The end of support fans out to every party that received anything, never to police.
    let out = distribute(
        &f,
        json!({"op": "distribute", "form": end("completed")}),
        &running,
        "support end delivered",
    );
    assert_eq!(recipients(&out), [HOSPITAL, CLINIC, NPO], "{out:?}");
    let npo = newest(&f, NPO, "support_end");
    assert!(npo["document"].get("outcome").is_none(), "{npo:#}");
    let clinic = newest(&f, CLINIC, "support_end");
    assert_eq!(clinic["document"]["outcome"], "completed", "{clinic:#}");

    let stats = f.call(BUNKYO, json!({"op": "stats"}));
    assert_eq!(
        stats["plans"],
        json!({"alone": 0, "joint": 1, "revised": 1}),
        "{stats}"
    );
    assert_eq!(
        stats["support_periods"],
        json!({"extended": 1, "beyond_guideline": 0}),
        "{stats}"
    );
    assert_eq!(stats["meetings_held"], 1, "{stats}");
    assert_eq!(stats["cases_with_readmission"], 1, "{stats}");
    assert_eq!(
        stats["support_outcomes"],
        json!({"completed": 1}),
        "{stats}"
    );
    assert_eq!(stats["reminders_due"], 0, "{stats}");
    assert_eq!(stats["caseload_per_staff"], json!([1]), "{stats}");
    let cli = f.cli(BUNKYO, &["stats"]);
    assert!(cli.status.success(), "{cli:?}");
    let offline: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(offline["meetings_held"], 1, "{offline}");
}

#[test]
fn a_period_that_ran_out_without_extension_or_end_raises_a_reminder() {
    let mut f = Federation::new("reminder", &[BUNKYO, HOSPITAL], FAST);
    f.start_all();
    // A case discharged in spring: its 6 months ended on 2026-10-31, before today.
    let case = "case-131059-2026-0009";
    let mut consent = fixture("consent.json");
    consent["id"] = "consent-131059-2026-0009".into();
    consent["subject"] = case.into();
    consent["period"]["from"] = "2026-04-01".into();
    f.call(BUNKYO, json!({"op": "consent_record", "record": consent}));
    let mut plan = fixture("support_plan.json");
    plan["subject"] = case.into();
    plan["made_on"] = "2026-04-20".into();
    plan["admission_date"] = "2026-03-12".into();
    plan["discharge_date"] = "2026-05-01".into();
    plan["crisis_plan"]["made_on"] = "2026-04-15".into();
    plan["support_period"] = json!({"from": "2026-05-01", "to": "2026-10-31"});
    assert!(f.call(BUNKYO, json!({"op": "reminders"})) == json!([]));
    // Sharing for carrying out the plan is over (R7); the plan still went to the hospital
    // while it was being made.
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "send", "to": HOSPITAL, "purpose": "plan_implementation", "form": plan}),
        )
        .unwrap_err();
    assert!(
        err.contains("the support period ended on 2026-10-31"),
        "{err}"
    );
    let sent = f.call(
        BUNKYO,
        json!({"op": "send", "to": HOSPITAL, "purpose": "plan_creation", "form": plan}),
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    f.wait_outbox(BUNKYO, 30, "plan delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });
    let due = f.call(BUNKYO, json!({"op": "reminders"}));
    assert_eq!(
        due,
        json!([{"case": case, "plan_version": 1, "period_ended_on": "2026-10-31"}]),
        "{due}"
    );
    let out = f.cli(BUNKYO, &["reminders"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{case}: the support period of plan v1 ended on 2026-10-31; extend it (meeting record and consent) or end the support\n")
    );
    assert_eq!(f.call(BUNKYO, json!({"op": "stats"}))["reminders_due"], 1);
    // Asked twice, the reminder is recorded in the trail once.
    f.call(BUNKYO, json!({"op": "reminders"}));
    let trail = f.call(BUNKYO, json!({"op": "audit"}));
    let raised: Vec<&Value> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "reminder_due")
        .collect();
    assert_eq!(raised.len(), 1, "{trail:#}");
    assert_eq!(raised[0]["period_ended_on"], "2026-10-31");
    // Ending support clears it.
    let mut end = fixture("support_end.json");
    end["subject"] = case.into();
    end["ended_on"] = "2026-10-31".into();
    end["outcome"] = "completed".into();
    let out = f.call(BUNKYO, json!({"op": "distribute", "form": end}));
    assert_eq!(out.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(f.call(BUNKYO, json!({"op": "reminders"})), json!([]));
    assert_eq!(f.call(BUNKYO, json!({"op": "stats"}))["reminders_due"], 0);
}

#[test]
fn a_residence_report_before_any_plan_reaches_the_author_and_is_kept() {
    let mut f = Federation::new("residence", &[BUNKYO, HOSPITAL], FAST);
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent v1 to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });
    // The hospital learns that the person has no fixed abode to return to (住所不定).
    let mut report = fixture("residence_change.json");
    report["author"] = HOSPITAL.into();
    report["new_address"] = "住所不定".into();
    report["new_municipality"] = Value::Null;
    report["moved_on"] = Value::Null;
    let sent = f.call(
        HOSPITAL,
        json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": report}),
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    f.wait_outbox(HOSPITAL, 30, "report delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });
    // Bunkyo keeps it: in its inbox and its trail, though it holds no plan yet.
    let kept = newest(&f, BUNKYO, "residence_change");
    assert_eq!(kept["document"]["new_address"], "住所不定", "{kept:#}");
    let trail = f.call(BUNKYO, json!({"op": "audit"}));
    let reported: Vec<&Value> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "residence_reported")
        .collect();
    assert_eq!(reported.len(), 1, "{trail:#}");
    assert_eq!(reported[0]["plan"], false);
    assert_eq!(reported[0]["address_known"], false);
    assert_eq!(reported[0]["from"], HOSPITAL);
    // The plan can be made without a return address.
    let mut plan = fixture("support_plan.json");
    plan["person"]["return_address"] = "住所不定（退院までに居所を調整）".into();
    plan["person"]["municipality"] = Value::Null;
    let out = distribute(
        &f,
        json!({"op": "distribute", "form": plan}),
        &[HOSPITAL],
        "plan to the hospital",
    );
    assert!(recipients(&out).contains(&HOSPITAL), "{out:?}");
}

#[test]
fn the_persons_request_gathers_the_records_of_every_gateway_a_refusal_at_the_hospital_included() {
    let mut f = Federation::new("records", &[BUNKYO, HOSPITAL, CLINIC], FAST);
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent v1 delivered", |v| {
        v.iter().filter(|e| e["state"] == "delivered").count() >= 2
    });
    // The hospital's own view of the consent names only itself and Bunkyo: a send to the clinic
    // is refused there, and only the hospital's trail knows it.
    let err = f
        .try_call(
            HOSPITAL,
            json!({"op": "send", "to": CLINIC, "purpose": "plan_implementation", "form": fixture("needs_assessment.json")}),
        )
        .unwrap_err();
    assert!(err.contains("R1"), "{err}");
    distribute(
        &f,
        json!({"op": "distribute", "form": fixture("support_plan.json")}),
        &[HOSPITAL, CLINIC],
        "plan delivered",
    );

    // An unknown case is an error, not an empty page.
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "disclosure_request", "case": "case-131059-2026-9999", "received_on": "2026-12-03"}),
        )
        .unwrap_err();
    assert!(err.contains("no record of case-131059-2026-9999"), "{err}");

    // Staff note the request and answer it from the command line.
    let out = f.cli(
        BUNKYO,
        &[
            "disclosure",
            "request",
            "case-131059-2026-0007",
            "--received-on",
            "2026-12-03",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let page = f.dir.join("disclosure.html");
    let out = f.cli(
        BUNKYO,
        &[
            "disclosure",
            "answer",
            "case-131059-2026-0007",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains(HOSPITAL) && said.contains(CLINIC), "{said}");
    // Personal data: readable by the staff account only, whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&page).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the answer page is {mode:o}");
    let html = std::fs::read_to_string(&page).unwrap();
    let html = html.as_str();
    assert!(html.contains("開示のご請求：2026-12-03 受付"), "{html}");
    let hospital = html
        .split("<h2>")
        .find(|s| s.starts_with("都立松風病院"))
        .expect("a section with the hospital's records");
    assert!(
        hospital.contains("同意の範囲外のため提供しませんでした"),
        "{hospital}"
    );
    assert!(!html.contains("gate_denied") && !html.contains("recipient_not_covered"));
    // The hospital recorded that it gave its records, and to whom.
    let trail = f.call(HOSPITAL, json!({"op": "audit"}));
    assert!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"] == "records_given" && r["to"] == BUNKYO),
        "{trail:#}"
    );
    // Only the controller of the case's consent is answered.
    let trail = f.call(BUNKYO, json!({"op": "audit"}));
    assert!(trail
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["event"] == "disclosure_answered"));
}

#[test]
fn a_move_reported_by_the_authority_it_would_go_to_starts_no_transfer() {
    const SETAGAYA: &str = "lg:131121";
    let mut f = Federation::new("reporter", &[BUNKYO, HOSPITAL, SETAGAYA], FAST);
    f.start_all();
    f.record_consent("consent.json");
    f.record_consent("consent_v2_relocation.json");
    f.wait_outbox(BUNKYO, 30, "consent v2 to Setagaya and the hospital", |v| {
        let delivered = |to: &str| {
            v.iter()
                .filter(|e| e["to"] == to && e["state"] == "delivered")
                .count()
        };
        delivered(SETAGAYA) >= 1 && delivered(HOSPITAL) >= 2
    });
    distribute(
        &f,
        json!({"op": "distribute", "form": fixture("support_plan.json")}),
        &[],
        "plan queued",
    );
    let transfers = |f: &Federation| {
        f.call(BUNKYO, json!({"op": "outbox_list"}))
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "transfer_notice")
            .count()
    };
    // Setagaya, named in consent v2 as where the person may move, reports the move to itself:
    // Bunkyo keeps the report and drafts no Form 7 (the plan would go to the reporter).
    // Sends `author`'s report of the move to Bunkyo and waits until it is delivered.
    let report = |author: &str| {
        let mut r = fixture("residence_change.json");
        r["author"] = author.into();
        let sent = f.call(
            author,
            json!({"op": "send", "to": BUNKYO, "purpose": "plan_implementation", "form": r}),
        );
        let id = sent["id"].as_str().unwrap().to_owned();
        f.wait_outbox(author, 30, "the report delivered", |v| {
            v.iter()
                .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
        });
    };
    report(SETAGAYA);
    let trail = f.call(BUNKYO, json!({"op": "audit"}));
    assert!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"] == "residence_reported" && r["from"] == SETAGAYA),
        "{trail:#}"
    );
    assert_eq!(transfers(&f), 0, "a Form 7 was drafted on Setagaya's word");
    // The hospital reports the same move: the Form 7 goes to Setagaya.
    report(HOSPITAL);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while transfers(&f) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no Form 7 after the hospital's report"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
