//! Regressions for the privacy and security defects an outside test found, driven as a user
//! would, against gateways running as separate processes:
//!
//! - notices (support end, withdrawal) reached police the person refused and an authority that
//!   never took part, with the outcome and free-text note;
//! - consent records went in full to every party (the excluded orgs, the police terms, the other
//!   parties, the names of the grantor and of the staff member);
//! - narrowing a consent left the dropped parties holding the old version as active;
//! - an already-expired consent could be recorded and distributed;
//! - deleting the newest audit records (with their checkpoints) went unnoticed;
//! - an authority could make itself a controller of another authority's case by recording a
//!   consent of its own for it, also at a gateway that held nothing of the case yet.

use serde_json::{json, Value};
use tsunagi_gateway::store::{Batch, SledStore, Space, Store};
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const HACHIOJI: &str = "lg:132012";
const SETAGAYA: &str = "lg:131121";
const HOSPITAL: &str = "mi:1310000017";
const CLINIC: &str = "mi:1310000025";
const NPO: &str = "ot:npo-komorebi";
const POLICE: &str = "ot:mpd";
const CASE: &str = "case-131059-2026-0007";
const TOKYO: &str = "lg:130001";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn delivered(f: &Federation, from: &str, id: &str, what: &str) {
    f.wait_outbox(from, 30, what, |v| {
        v.iter().any(|e| e["id"] == id && e["state"] == "delivered")
    });
}

fn support_end(note: &str) -> Value {
    json!({"document_type": "support_end", "author": BUNKYO, "subject": CASE,
           "ended_on": "2026-12-01", "outcome": "died", "note": note})
}

#[test]
fn notices_reach_only_parties_never_refused_police_and_only_what_the_role_may_see() {
    let mut f = Federation::new("notices", &[BUNKYO, HOSPITAL, NPO, POLICE, HACHIOJI], FAST);
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent v1 delivered", |v| {
        v.iter().filter(|e| e["state"] == "delivered").count() >= 2
    });

    // Police (the person refused them) and Hachioji (never a party) get no support-end notice.
    let note = "本人死亡のため支援終了。詳細は主治医所見参照。";
    let err = f
        .try_call(BUNKYO, json!({"op": "send", "to": POLICE, "purpose": "support_end", "form": support_end(note)}))
        .unwrap_err();
    assert!(
        err.contains("refused police involvement") && err.contains("R6"),
        "{err}"
    );
    let err = f
        .try_call(BUNKYO, json!({"op": "send", "to": HACHIOJI, "purpose": "support_end", "form": support_end(note)}))
        .unwrap_err();
    assert!(
        err.contains("never received material of this case") && err.contains("R2"),
        "{err}"
    );

    // The NPO took part: it learns that support ended and when, not the outcome or the note.
    let sent = f.call(
        BUNKYO,
        json!({"op": "send", "to": NPO, "purpose": "support_end", "form": support_end(note)}),
    );
    assert_eq!(sent["profile"], "notice", "{sent}");
    delivered(
        &f,
        BUNKYO,
        sent["id"].as_str().unwrap(),
        "support end to the NPO",
    );
    let got = f
        .inbox(NPO)
        .into_iter()
        .find(|e| e["kind"] == "support_end")
        .expect("the NPO got the notice");
    let shown = f.call(NPO, json!({"op": "inbox_show", "id": got["id"]}));
    let text = shown.to_string();
    assert_eq!(shown["document"]["ended_on"], "2026-12-01", "{shown:#}");
    assert!(
        !text.contains("died") && !text.contains("死亡"),
        "{shown:#}"
    );
    // The hospital (treating team) gets the whole notice.
    let sent = f.call(
        BUNKYO,
        json!({"op": "send", "to": HOSPITAL, "purpose": "support_end", "form": support_end(note)}),
    );
    assert_eq!(sent["profile"], "full");

    // Withdrawal: notices to the parties (hospital, NPO), none to police or Hachioji.
    f.record_consent("consent_v3_withdrawn.json");
    f.wait_outbox(BUNKYO, 30, "withdrawal notices delivered", |v| {
        v.iter()
            .filter(|e| e["kind"] == "consent_withdrawal" && e["state"] == "delivered")
            .count()
            == 2
    });
    let notices: Vec<Value> = f
        .call(BUNKYO, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "consent_withdrawal")
        .cloned()
        .collect();
    let mut to: Vec<&str> = notices.iter().map(|e| e["to"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, [HOSPITAL, NPO]);
    assert!(f.inbox(POLICE).is_empty(), "the police received something");
    assert!(f.inbox(HACHIOJI).is_empty(), "Hachioji received something");
    // The refusals are in the trail, by rule.
    let trail = f.call(BUNKYO, json!({"op": "audit"})).to_string();
    assert!(trail.contains("recipient_not_a_party") && trail.contains("police_refused_by_person"));
}

#[test]
fn each_party_gets_its_own_consent_view_and_a_narrowed_consent_reaches_the_dropped_party() {
    let mut f = Federation::new("consent-views", &[BUNKYO, HOSPITAL, NPO], FAST);
    f.start_all();
    let mut v1 = fixture("consent.json");
    v1["excluded"] = json!(["sp:1330000029"]);
    f.call(BUNKYO, json!({"op": "consent_record", "record": v1}));
    f.wait_outbox(BUNKYO, 30, "consent v1 delivered", |v| {
        v.iter().filter(|e| e["state"] == "delivered").count() == 2
    });

    // The NPO's copy: validity, scope, its own entry and the controller's; nothing else.
    let got = f
        .inbox(NPO)
        .into_iter()
        .find(|e| e["kind"] == "consent")
        .expect("the NPO got the consent");
    let shown = f.call(NPO, json!({"op": "inbox_show", "id": got["id"]}));
    let doc = &shown["document"];
    assert_eq!(
        doc["recipients"],
        json!([{"org": BUNKYO}, {"org": NPO}]),
        "{shown:#}"
    );
    for hidden in ["excluded", "police", "grantor", "recorded_by"] {
        assert!(doc.get(hidden).is_none(), "{hidden} disclosed: {shown:#}");
    }
    let text = shown.to_string();
    for secret in ["sp:1330000029", "田中", "person_refused", HOSPITAL] {
        assert!(!text.contains(secret), "{secret} disclosed: {shown:#}");
    }
    assert_eq!(doc["status"], "active");
    assert_eq!(doc["period"]["to"], "2027-05-31");

    // Bunkyo's plan reaches the NPO under v1.
    let plan = f.call(BUNKYO, json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": fixture("support_plan.json")}));
    delivered(&f, BUNKYO, plan["id"].as_str().unwrap(), "plan to the NPO");

    // v2 drops the NPO: the NPO still gets v2, which no longer names it.
    let mut v2 = fixture("consent.json");
    v2["version"] = 2.into();
    v2["date"] = "2026-11-20".into();
    v2["recipients"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["org"] != NPO);
    let queued = f.call(BUNKYO, json!({"op": "consent_record", "record": v2}));
    let to_npo = queued
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == NPO)
        .expect("v2 was queued to the dropped NPO");
    delivered(&f, BUNKYO, to_npo["id"].as_str().unwrap(), "v2 to the NPO");
    // (Entries received within the same second list in id order: pick v2 by its content.)
    let shown = f
        .inbox(NPO)
        .into_iter()
        .filter(|e| e["kind"] == "consent")
        .map(|e| f.call(NPO, json!({"op": "inbox_show", "id": e["id"]})))
        .find(|s| s["document"]["version"] == 2)
        .expect("the NPO holds v2");
    assert_eq!(shown["document"]["version"], 2);
    assert_eq!(
        shown["document"]["recipients"],
        json!([{"org": BUNKYO}]),
        "its part has ended: {shown:#}"
    );
    // And nothing more goes to the NPO.
    let err = f
        .try_call(BUNKYO, json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": fixture("support_plan.json")}))
        .unwrap_err();
    assert!(err.contains("names neither this org nor its role"), "{err}");
}

#[test]
fn an_expired_consent_is_refused_and_nothing_is_sent() {
    let mut f = Federation::new("expired", &[BUNKYO, HOSPITAL], FAST);
    f.start_all();
    let mut old = fixture("consent.json");
    old["period"] = json!({"from": "2024-01-01", "to": "2024-06-30"});
    let err = f
        .try_call(BUNKYO, json!({"op": "consent_record", "record": old}))
        .unwrap_err();
    assert!(
        err.contains("period.to") && err.contains("expired on 2024-06-30"),
        "{err}"
    );
    assert!(f
        .call(BUNKYO, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .is_empty());
    assert!(f.inbox(HOSPITAL).is_empty());
}

#[test]
fn a_form_of_a_type_the_org_may_not_author_is_refused() {
    let mut f = Federation::new("author-role", &[BUNKYO, CLINIC], FAST);
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered", |v| {
        v.iter().any(|e| e["state"] == "delivered")
    });
    // The outpatient clinic is a medical institution, but not the admitting hospital that
    // writes the needs assessment (Form 5).
    let mut assessment = fixture("needs_assessment.json");
    assessment["author"] = CLINIC.into();
    let err = f
        .try_call(
            CLINIC,
            json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": assessment}),
        )
        .unwrap_err();
    assert!(
        err.contains("a clinic may not author a needs_assessment") && err.contains("hospital"),
        "{err}"
    );
    assert!(f.inbox(BUNKYO).is_empty());
}

#[test]
fn deleting_the_newest_audit_records_is_found_by_the_peers_witnesses() {
    let mut f = Federation::new("witness", &[BUNKYO, HOSPITAL, NPO], FAST);
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered", |v| {
        v.iter().filter(|e| e["state"] == "delivered").count() == 2
    });
    // A few sends, a second apart, so that fresh checkpoints ride on them.
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let plan = f.call(BUNKYO, json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": fixture("support_plan.json")}));
        delivered(&f, BUNKYO, plan["id"].as_str().unwrap(), "plan to the NPO");
    }
    let out = f.cli(BUNKYO, &["audit", "verify", "--peers"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("witness {NPO}: holds our checkpoint at record")),
        "{stdout}"
    );

    // Someone with access to Bunkyo's store deletes the newest half of the trail and every
    // checkpoint over it.
    f.kill(BUNKYO);
    let (total, kept) = {
        let store = SledStore::open(&f.members[BUNKYO].data.join("store"), 8 << 20).unwrap();
        let records = store.scan(Space::Meta, b"audit/r/").unwrap();
        let total = records.len();
        let kept = total / 2;
        let mut b = Batch::new();
        for (k, _) in &records[kept..] {
            b.delete(Space::Meta, k.clone());
        }
        for (k, _) in store.scan(Space::Meta, b"audit/c/").unwrap() {
            let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
            if seq >= kept as u64 {
                b.delete(Space::Meta, k);
            }
        }
        store.apply(b).unwrap();
        store.flush().unwrap();
        (total, kept)
    };
    assert!(total > 10, "{total} records");
    // The gateway's own head file knows the trail was longer: it refuses to start.
    let out = std::process::Command::new(tsunagi_tests::tsunagi_bin())
        .args(["gateway", "run", "--config"])
        .arg(&f.members[BUNKYO].config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("it holds {kept} audit records")),
        "{err}"
    );
    // With the gateway stopped, `audit verify` reads the store itself, and reports the same.
    let out = f.cli(BUNKYO, &["audit", "verify"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && said.contains(&format!("it holds {kept} audit records")),
        "{said}"
    );
    // An intruder who also removes the head file gets the gateway to start…
    std::fs::remove_file(f.members[BUNKYO].data.join("audit.head")).unwrap();
    f.start(BUNKYO);
    // On its own, the shortened chain still verifies…
    let out = f.cli(BUNKYO, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // …but the peers' witnesses show what is gone.
    let out = f.cli(BUNKYO, &["audit", "verify", "--peers"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("the trail ends at record {}", kept - 1))
            && stdout.contains("were removed"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the audit trail was altered"));
}

#[test]
fn plan_sharing_after_the_support_period_is_refused_r7() {
    let mut f = Federation::new("r7", &[BUNKYO, HOSPITAL], FAST);
    f.start_all();
    f.record_consent("consent.json");
    // A plan whose support period (and so support) ended before today.
    let mut plan = fixture("support_plan.json");
    plan["made_on"] = "2025-10-20".into();
    plan["admission_date"] = "2025-09-01".into();
    plan["discharge_date"] = "2025-11-01".into();
    plan["support_period"] = json!({"from": "2025-11-01", "to": "2026-04-30"});
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "send", "to": HOSPITAL, "purpose": "plan_implementation", "form": plan}),
        )
        .unwrap_err();
    assert!(
        err.contains("support period ended on 2026-04-30") && err.contains("R7"),
        "{err}"
    );
    // Plan creation is not bound by the period (a new plan may be made).
    f.call(
        BUNKYO,
        json!({"op": "send", "to": HOSPITAL, "purpose": "plan_creation", "form": plan}),
    );
    // A changed plan is a revision: the same version with other content is refused.
    let err = f
        .try_call(BUNKYO, json!({"op": "send", "to": HOSPITAL, "purpose": "plan_implementation", "form": fixture("support_plan.json")}))
        .unwrap_err();
    assert!(
        err.contains("a changed plan is a revision: send it as version 2"),
        "{err}"
    );
    // The revised plan (in period) goes for implementation.
    let mut current = fixture("support_plan.json");
    current["version"] = 2.into();
    current["supersedes"] =
        json!({"version": 1, "reason": "退院日の変更に合わせて計画を作り直した"});
    f.call(
        BUNKYO,
        json!({"op": "send", "to": HOSPITAL, "purpose": "plan_implementation", "form": current}),
    );
}

#[test]
fn an_authority_cannot_take_another_authoritys_case_by_recording_a_consent_for_it() {
    let mut f = Federation::new(
        "squat",
        &[BUNKYO, HOSPITAL, HACHIOJI, SETAGAYA, TOKYO],
        FAST,
    );
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });
    // Hachioji records a consent of its own for Bunkyo's case, naming the hospital and Bunkyo:
    // its own gateway refuses it, since the case id names Bunkyo as the authority that opened
    // it and nothing held at Hachioji hands the case over to Hachioji. (A modified gateway that
    // sent it anyway would be refused by every receiver, also one that holds nothing of the
    // case: `protocol/src/envelope.rs`,
    // `an_authority_cannot_make_itself_a_controller_of_another_authoritys_case` and
    // `a_case_is_its_openers_and_another_controller_shows_the_moves_to_it`.)
    let mut own = fixture("consent.json");
    own["id"] = json!("consent-132012-2026-0001");
    own["controller"] = json!(HACHIOJI);
    own["recorded_by"] = json!("hachioji-staff-01");
    own["recipients"] = json!([{"org": HACHIOJI}, {"org": HOSPITAL}, {"org": BUNKYO}]);
    let err = f
        .try_call(HACHIOJI, json!({"op": "consent_record", "record": own}))
        .unwrap_err();
    assert!(
        err.contains("was opened by lg:131059")
            && err.contains("no consent held here hands it over to lg:132012"),
        "{err}"
    );
    // Nor can Hachioji number a consent of its own case so that it takes one of Bunkyo's ids,
    // or under an id that names no authority (which another could take first).
    let mut theirs = own.clone();
    theirs["subject"] = json!("case-132012-2026-0001");
    for (id, why) in [
        (
            "consent-131059-2026-0099",
            "names lg:131059, but the controller is lg:132012",
        ),
        ("consent-99", "\"consent-99\" names no authority"),
    ] {
        theirs["id"] = json!(id);
        let err = f
            .try_call(HACHIOJI, json!({"op": "consent_record", "record": theirs}))
            .unwrap_err();
        assert!(
            err.contains(why) && err.contains("consent-132012-"),
            "{id}: {err}"
        );
    }
    // Nor can its support end leave.
    let end = json!({
        "document_type": "support_end",
        "author": HACHIOJI,
        "subject": CASE,
        "ended_on": "2000-01-01",
        "outcome": "completed",
        "note": "",
    });
    f.try_call(
        HACHIOJI,
        json!({"op": "send", "to": HOSPITAL, "purpose": "support_end", "form": end}),
    )
    .unwrap_err();
    assert!(
        !f.inbox(HOSPITAL).iter().any(|e| e["kind"] == "support_end"),
        "the hospital took Hachioji's support end"
    );
    // Bunkyo's plan still reaches the hospital: the case was not ended there.
    let plan = f.call(
        BUNKYO,
        json!({"op": "send", "to": HOSPITAL, "purpose": "plan_implementation", "form": fixture("support_plan.json")}),
    );
    delivered(
        &f,
        BUNKYO,
        plan["id"].as_str().unwrap(),
        "plan to the hospital",
    );

    // The person agrees to move to Setagaya: Bunkyo's consent v2 grants relocation_transfer and
    // names Setagaya, and the Tokyo prefecture too. The hospital's own view of it does not show
    // Setagaya.
    f.record_consent("consent_v2_relocation.json");
    f.wait_outbox(BUNKYO, 30, "consent v2 delivered", |v| {
        let delivered = |to: &str| {
            v.iter()
                .filter(|e| e["to"] == to && e["kind"] == "consent" && e["state"] == "delivered")
                .count()
        };
        delivered(HOSPITAL) == 2 && delivered(SETAGAYA) == 1 && delivered(TOKYO) == 2
    });
    // Hachioji tries again now that the case may move: still refused, Bunkyo's consent hands
    // the case to Setagaya, not to Hachioji.
    let mut again = own.clone();
    again["version"] = json!(2);
    let err = f
        .try_call(HACHIOJI, json!({"op": "consent_record", "record": again}))
        .unwrap_err();
    assert!(err.contains("was opened by lg:131059"), "{err}");
    // The Tokyo prefecture, which v2 names for another reason (its view of v2 names Tokyo and
    // lets the case move), records a consent of its own for the case: refused on its own
    // gateway, no Form 7 handed the case to Tokyo. Setagaya, before its Form 7 came, likewise.
    let prefecture = |at: &str, id: &str| {
        let mut c = own.clone();
        c["id"] = json!(id);
        c["controller"] = json!(at);
        c["recipients"] = json!([{"org": at}, {"org": HOSPITAL}, {"org": BUNKYO}]);
        c
    };
    for (at, id) in [
        (TOKYO, "consent-130001-2026-0001"),
        (SETAGAYA, "consent-131121-2026-0001"),
    ] {
        let err = f
            .try_call(
                at,
                json!({"op": "consent_record", "record": prefecture(at, id)}),
            )
            .unwrap_err();
        assert!(
            err.contains(&format!("no consent held here hands it over to {at}"))
                && err.contains("transfer notice (Form 7)"),
            "{at}: {err}"
        );
    }
    // Bunkyo records the move: its Form 7 goes to Setagaya.
    f.call(
        BUNKYO,
        json!({"op": "residence_change", "report": fixture("residence_change.json")}),
    );
    f.wait_outbox(BUNKYO, 30, "Form 7 delivered to Setagaya", |v| {
        v.iter().any(|e| {
            e["to"] == SETAGAYA && e["kind"] == "transfer_notice" && e["state"] == "delivered"
        })
    });
    // A copy of a Form 7 to another authority than its addressee (the prefecture, for its
    // information) is refused: Form 7 goes only to the authority it hands the case to.
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "send", "to": TOKYO, "purpose": "relocation_transfer", "form": form7(BUNKYO, SETAGAYA)}),
        )
        .unwrap_err();
    assert!(
        err.contains("transfer_notice to lg:130001 refused")
            && err.contains("addressed to lg:131121"),
        "{err}"
    );
    // Setagaya, the destination the person agreed to, records its consent for the case naming
    // the hospital: the hospital, which sees only its own view of Bunkyo's consent, asks
    // Setagaya for Setagaya's view of it, which (signed by Bunkyo) names Setagaya, and Setagaya
    // shows it with Bunkyo's Form 7 to Setagaya.
    let mut destination = fixture("consent.json");
    destination["id"] = json!("consent-131121-2026-0001");
    destination["controller"] = json!(SETAGAYA);
    destination["recorded_by"] = json!("setagaya-staff-01");
    destination["recipients"] = json!([{"org": SETAGAYA}, {"org": HOSPITAL}, {"org": BUNKYO}]);
    f.call(
        SETAGAYA,
        json!({"op": "consent_record", "record": destination}),
    );
    f.wait_outbox(SETAGAYA, 30, "Setagaya's consent delivered", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["kind"] == "consent" && e["state"] == "delivered")
    });
    let from = |org: &str| {
        f.inbox(HOSPITAL)
            .iter()
            .filter(|e| e["kind"] == "consent" && e["from"] == org)
            .count()
    };
    assert_eq!(from(SETAGAYA), 1);
    assert_eq!(from(HACHIOJI), 0, "the hospital took Hachioji's consent");
    assert!(f
        .log(HOSPITAL)
        .contains("asked the sender for its view of the consent that lets the case move"));
    // Tokyo, still without a Form 7, is still refused.
    let err = f
        .try_call(
            TOKYO,
            json!({"op": "consent_record", "record": prefecture(TOKYO, "consent-130001-2026-0001")}),
        )
        .unwrap_err();
    assert!(err.contains("transfer notice (Form 7)"), "{err}");
    assert_eq!(from(TOKYO), 0, "the hospital took Tokyo's consent");
}

/// `from`'s transfer notice (Form 7) of the case to `to`, embedding a plan of `from`'s.
fn form7(from: &str, to: &str) -> Value {
    tsunagi_protocol::testkit::transfer_notice(from, to, CASE).to_json()
}

#[test]
fn a_gateway_new_to_a_case_takes_its_opener_and_a_controller_the_moves_were_shown_to() {
    let mut f = Federation::new("opener", &[BUNKYO, SETAGAYA, HACHIOJI, TOKYO, CLINIC], FAST);
    f.start_all();
    let consent_of = |org: &str, id: &str, recipients: &[&str]| {
        let mut c = fixture("consent.json");
        c["id"] = json!(id);
        c["controller"] = json!(org);
        c["recorded_by"] = json!("staff-01");
        c["recipients"] = json!(recipients
            .iter()
            .map(|o| json!({ "org": o }))
            .collect::<Vec<_>>());
        c
    };
    let consents = |at: &str, from: &str| {
        f.inbox(at)
            .iter()
            .filter(|e| e["kind"] == "consent" && e["from"] == from)
            .count()
    };
    let delivered_to = |from: &str, to: &str, what: &str| {
        f.wait_outbox(from, 30, what, |v| {
            v.iter()
                .any(|e| e["to"] == to && e["kind"] == "consent" && e["state"] == "delivered")
        });
    };
    // A case id that names no authority is refused before anything is signed.
    let mut unnamed = fixture("consent.json");
    unnamed["subject"] = json!("case-0007");
    let err = f
        .try_call(BUNKYO, json!({"op": "consent_record", "record": unnamed}))
        .unwrap_err();
    assert!(err.contains("case-0007 names no authority"), "{err}");

    // Bunkyo, which opened the case, records the person's consent to move to Setagaya (naming
    // Setagaya only; Tokyo and the clinic hold nothing of the case).
    let mut moving = fixture("consent_v2_relocation.json");
    moving["version"] = json!(1);
    moving["recipients"] = json!([{"org": BUNKYO}, {"org": SETAGAYA}]);
    f.call(BUNKYO, json!({"op": "consent_record", "record": moving}));
    delivered_to(BUNKYO, SETAGAYA, "Bunkyo's consent at Setagaya");
    // The person moves: Bunkyo's Form 7 hands the case to Setagaya.
    let send_form7 = |from: &str, to: &str| {
        let sent = f.call(
            from,
            json!({"op": "send", "to": to, "purpose": "relocation_transfer", "form": form7(from, to)}),
        );
        delivered(&f, from, sent["id"].as_str().unwrap(), "Form 7");
    };
    send_form7(BUNKYO, SETAGAYA);
    // Setagaya records its own consent naming Tokyo. Tokyo, new to the case, asks Setagaya for
    // the moves that made it a controller, and Setagaya shows Bunkyo's consent as Bunkyo sent
    // it to Setagaya.
    let mut destination = consent_of(
        SETAGAYA,
        "consent-131121-2026-0001",
        &[SETAGAYA, TOKYO, BUNKYO],
    );
    f.call(
        SETAGAYA,
        json!({"op": "consent_record", "record": destination.clone()}),
    );
    delivered_to(SETAGAYA, TOKYO, "Setagaya's consent at Tokyo");
    assert_eq!(consents(TOKYO, SETAGAYA), 1);
    assert!(f
        .log(TOKYO)
        .contains("asked the sender for the moves that made it a controller of the case"));
    assert!(f.log(SETAGAYA).contains(
        "the moves that made this gateway a controller of the case sent on the peer's fetch"
    ));
    // Version 2 lets the case move on to Hachioji and names Hachioji instead of Tokyo (Tokyo
    // gets it too: its part ended). Hachioji, new to the case, is shown the same move.
    destination["version"] = json!(2);
    destination["recipients"] = json!([{"org": SETAGAYA}, {"org": HACHIOJI}, {"org": BUNKYO}]);
    destination["purposes"]
        .as_array_mut()
        .unwrap()
        .push(json!("relocation_transfer"));
    destination["doc_types"]
        .as_array_mut()
        .unwrap()
        .push(json!("transfer_notice"));
    f.call(
        SETAGAYA,
        json!({"op": "consent_record", "record": destination}),
    );
    delivered_to(SETAGAYA, HACHIOJI, "Setagaya's consent at Hachioji");
    f.wait_outbox(SETAGAYA, 30, "version 2 at Tokyo", |v| {
        v.iter()
            .filter(|e| e["to"] == TOKYO && e["kind"] == "consent" && e["state"] == "delivered")
            .count()
            == 2
    });
    // The case moves on to Hachioji (Setagaya's Form 7), whose consent names the clinic, new to
    // the case: Hachioji shows both moves (Bunkyo's consent and Form 7 as Setagaya showed
    // them, and Setagaya's as Hachioji received them).
    send_form7(SETAGAYA, HACHIOJI);
    let second = consent_of(HACHIOJI, "consent-132012-2026-0001", &[HACHIOJI, CLINIC]);
    f.call(HACHIOJI, json!({"op": "consent_record", "record": second}));
    delivered_to(HACHIOJI, CLINIC, "Hachioji's consent at the clinic");
    assert_eq!(consents(CLINIC, HACHIOJI), 1);

    // Tokyo, which knows Bunkyo's case only through Setagaya, records a consent of its own
    // for it: refused on its own gateway, nothing hands the case over to Tokyo. (A consent
    // that lets the case move and names Tokyo would: a view shows whom it names, not which of
    // them is the destination.)
    let squat = consent_of(TOKYO, "consent-130001-2026-0007", &[TOKYO, CLINIC]);
    let err = f
        .try_call(TOKYO, json!({"op": "consent_record", "record": squat}))
        .unwrap_err();
    assert!(
        err.contains("was opened by lg:131059")
            && err.contains("no consent held here hands it over to lg:130001"),
        "{err}"
    );
    assert_eq!(consents(CLINIC, TOKYO), 0);
}
