//! A case's later life: relocation (Form 7 waiting for consent, then going by itself), the audit
//! trail (verification, tampering found, subject access), statistics, and retention.

use std::sync::Arc;

use serde_json::{json, Value};
use tsunagi_gateway::clock::ManualClock;
use tsunagi_gateway::config::Config;
use tsunagi_gateway::engine::{Content, Gateway};
use tsunagi_gateway::store::{Batch, SledStore, Space, Store};
use tsunagi_protocol::{OrgId, Purpose};
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const SETAGAYA: &str = "lg:131121";
const HOSPITAL: &str = "mi:1310000017";
const NPO: &str = "ot:npo-komorebi";
const CASE: &str = "case-131059-2026-0007";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn relocation_waits_for_consent_then_goes_and_the_trail_shows_everything() {
    let mut f = Federation::new("lifecycle", &[BUNKYO, SETAGAYA, HOSPITAL, NPO], FAST);
    f.start_all();
    f.record_consent("consent.json");
    // Bunkyo's plan goes to the NPO (support-party view); a police send is refused.
    let sent = f.call(BUNKYO, json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": fixture("support_plan.json")}));
    let plan_id = sent["id"].as_str().unwrap().to_owned();
    f.wait_outbox(BUNKYO, 30, "plan delivered", |v| {
        v.iter()
            .any(|e| e["id"] == plan_id.as_str() && e["state"] == "delivered")
    });

    // The move to Setagaya: Form 7 is drafted and waits — consent v1 does not cover it.
    let report = f.dir.join("residence_change.json");
    std::fs::write(&report, fixture("residence_change.json").to_string()).unwrap();
    let out = ok(&f.cli(BUNKYO, &["residence-change", report.to_str().unwrap()]));
    assert!(
        out.contains(SETAGAYA) && out.contains("waiting for the person's consent"),
        "{out}"
    );
    let waiting = f.wait_outbox(BUNKYO, 5, "awaiting_consent", |v| {
        v.iter()
            .any(|e| e["kind"] == "transfer_notice" && e["state"] == "awaiting_consent")
    });
    let notice_id = waiting
        .iter()
        .find(|e| e["kind"] == "transfer_notice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(
        f.inbox(SETAGAYA)
            .iter()
            .all(|e| e["kind"] != "transfer_notice"),
        "nothing goes before consent"
    );

    // Consent v2 covers the transfer: the waiting notice goes by itself, with the remaining period.
    f.record_consent("consent_v2_relocation.json");
    f.wait_outbox(BUNKYO, 30, "the transfer delivered", |v| {
        v.iter()
            .any(|e| e["id"] == notice_id.as_str() && e["state"] == "delivered")
    });
    let got = f
        .inbox(SETAGAYA)
        .into_iter()
        .find(|e| e["kind"] == "transfer_notice")
        .expect("Setagaya received Form 7");
    let shown = f.call(SETAGAYA, json!({"op": "inbox_show", "id": got["id"]}));
    assert_eq!(shown["document"]["remaining_period"]["from"], "2027-01-15");
    assert_eq!(shown["document"]["remaining_period"]["to"], "2027-04-30");
    assert_eq!(
        shown["document"]["relocation"]["new_municipality"],
        "131121"
    );
    assert_eq!(
        shown["document"]["plan"]["support_period"]["to"],
        "2027-04-30"
    );
    let err = f.try_call(BUNKYO, json!({"op": "send", "to": "ot:mpd", "purpose": "plan_implementation", "form": fixture("support_plan.json")})).unwrap_err();
    assert!(err.contains("R6"), "{err}");

    // The audit trail verifies, and shows the NPO's view of the plan to the person.
    let out = ok(&f.cli(BUNKYO, &["audit", "verify"]));
    assert!(out.starts_with("audit trail intact:"), "{out}");
    let subject: Value =
        serde_json::from_str(&ok(&f.cli(BUNKYO, &["audit", "subject", CASE]))).unwrap();
    let records = subject["records"].as_array().unwrap();
    let to_npo = records
        .iter()
        .find(|r| r["event"] == "sent" && r["to"] == NPO && r["kind"] == "support_plan")
        .expect("sent to the NPO");
    assert!(to_npo["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w == "diagnosis"));
    assert!(records
        .iter()
        .any(|r| r["event"] == "awaiting_consent" && r["to"] == SETAGAYA));
    assert!(records
        .iter()
        .any(|r| r["event"] == "gate_denied" && r["code"] == "police_refused_by_person"));
    let page = f.dir.join("subject.html");
    ok(&f.cli(
        BUNKYO,
        &["audit", "subject", CASE, "--html", page.to_str().unwrap()],
    ));
    let html = std::fs::read_to_string(&page).unwrap();
    for expected in [
        "個人情報の提供等の記録",
        "NPO法人こもれび",
        "提供しました",
        "提供した項目：",
        "クライシスプラン（困ったときの対処）",
        "移転先自治体への通知（様式7）",
        "同意の範囲外のため提供しませんでした",
        "警察への提供（本人が拒否）",
        "発行：文京区 文京保健所（lg:131059）",
    ] {
        assert!(html.contains(expected), "{expected} missing from the page");
    }
    // What was given, not what was withheld: the NPO's row does not list the diagnosis, and no
    // internal step (queueing, redaction) or code shows through.
    let npo_row = html
        .split("<tr>")
        .find(|l| l.contains("NPO法人こもれび") && l.contains("計画"))
        .expect("a row for the plan given to the NPO");
    assert!(!npo_row.contains("病名"), "{npo_row}");
    for internal in ["送付の準備", "police_refused_by_person", "R6"] {
        assert!(!html.contains(internal), "{internal} on the page");
    }
    // An unknown case is an error, not an empty page.
    let out = f.cli(
        BUNKYO,
        &[
            "audit",
            "subject",
            "case-131059-2099-0001",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record of case-131059-2099-0001"));
    for personal in ["鈴木", "090-0000", "統合失調症"] {
        assert!(
            !html.contains(personal) && !subject.to_string().contains(personal),
            "{personal} in the trail"
        );
    }

    // R12 statistics: aggregates only.
    let stats: Value = serde_json::from_str(&ok(&f.cli(BUNKYO, &["stats"]))).unwrap();
    assert_eq!(stats["plans"]["joint"], 1, "{stats}");
    assert_eq!(stats["transfers"], 1, "{stats}");
    assert_eq!(
        stats["gate_denials"]["police_refused_by_person"], 1,
        "{stats}"
    );
    assert_eq!(stats["support_period_days"]["median"], 181, "{stats}");
    assert!(!stats.to_string().contains("鈴木"));

    // Tampering with a stored audit record is found.
    f.kill(BUNKYO);
    {
        let store = SledStore::open(&f.members[BUNKYO].data.join("store"), 8 << 20).unwrap();
        // The record of the plan sent to the NPO now claims it went elsewhere.
        let (k, v) = store
            .scan(Space::Meta, b"audit/r/")
            .unwrap()
            .into_iter()
            .find(|(_, v)| {
                String::from_utf8_lossy(v).contains("\"event\":\"sent\"")
                    && String::from_utf8_lossy(v).contains(NPO)
            })
            .unwrap();
        let altered = String::from_utf8(v)
            .unwrap()
            .replace(NPO, "ot:someone-else");
        let mut b = Batch::new();
        b.put(Space::Meta, k, altered);
        store.apply(b).unwrap();
        store.flush().unwrap();
    }
    f.start(BUNKYO);
    let out = f.cli(BUNKYO, &["audit", "verify"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("does not chain to the record before it")
            || stdout.contains("differs from what checkpoint"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the audit trail was altered"));
}

#[test]
fn a_case_is_purged_five_years_after_support_ended_keeping_tombstones_and_the_trail() {
    let f = Federation::new("retention", &[BUNKYO, HOSPITAL], FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clock = Arc::new(ManualClock::new(tsunagi_gateway::files::now()));
    let open = |org: &str| {
        let cfg = Config::load(&f.members[org].config).unwrap();
        let _guard = rt.enter();
        let gw = Gateway::open_with_clock(cfg, clock.clone()).unwrap();
        let run = gw.clone();
        rt.spawn(async move { run.run().await });
        gw
    };
    let bunkyo = open(BUNKYO);
    let hospital = open(HOSPITAL);
    let today = tsunagi_gateway::clock::Clock::now(&*clock).date();
    rt.block_on(async {
        let consent = bunkyo.record_consent(fixture("consent.json")).await.unwrap();
        let plan = bunkyo.submit(&org(HOSPITAL), Purpose::PlanImplementation, Content::Form(fixture("support_plan.json"))).await.unwrap();
        // The hospital is a party once material of the case reached it; then the notice goes.
        let to_hospital = consent.iter().find(|e| e.to.as_str() == HOSPITAL).unwrap();
        delivered(&bunkyo, &[&to_hospital.id, &plan.id]).await;
        let end = json!({"document_type": "support_end", "author": BUNKYO, "subject": CASE, "ended_on": today.to_string(), "outcome": "completed", "note": ""});
        let end = bunkyo.submit(&org(HOSPITAL), Purpose::SupportEnd, Content::Form(end)).await.unwrap();
        delivered(&bunkyo, &[&end.id]).await;
    });
    let of_case = |gw: &Gateway| {
        gw.inbox()
            .unwrap()
            .iter()
            .filter(|e| e.case.as_str() == CASE)
            .count()
    };
    assert!(
        of_case(&hospital) >= 3,
        "consent, plan and support end received"
    );
    // Not yet: a day short of five years.
    clock.advance(5 * 365 * 86_400);
    assert!(rt.block_on(hospital.purge_due()).unwrap().is_empty());
    // Five years after the end of support: purged.
    clock.advance(3 * 86_400);
    assert_eq!(
        rt.block_on(hospital.purge_due()).unwrap(),
        vec![CASE.to_owned()]
    );
    assert_eq!(of_case(&hospital), 0, "the case's documents are gone");
    assert!(
        hospital.tombstone(CASE).unwrap().is_some(),
        "a hash tombstone remains"
    );
    let report = hospital.audit_verify().unwrap();
    assert!(report.intact(), "{report:?}");
    let trail = hospital.audit_subject(CASE).unwrap();
    assert!(
        trail.iter().any(|r| r["event"] == "purged"),
        "the purge is audited"
    );
    assert!(
        trail.iter().any(|r| r["event"] == "received"),
        "the trail of what happened stays"
    );
    let stats = hospital.stats().unwrap();
    assert_eq!(stats["support_outcomes"]["completed"], 1, "{stats}");
    assert_eq!(stats["purged_cases"], 1, "{stats}");
}

fn org(s: &str) -> OrgId {
    s.parse().unwrap()
}

/// Waits until every entry `ids` of `gw`'s outbox is delivered.
async fn delivered(gw: &Gateway, ids: &[&str]) {
    for id in ids {
        let mut n = 0;
        while !gw
            .outbox()
            .unwrap()
            .iter()
            .any(|e| e.id == *id && e.state == tsunagi_gateway::engine::OutState::Delivered)
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            n += 1;
            assert!(
                n < 400,
                "{id} not delivered: {:?}",
                gw.outbox_entry(&tsunagi_gateway::engine::parse_id(id).unwrap())
            );
        }
    }
}

#[test]
fn statistics_count_cases_and_a_withdrawn_case_is_purged_after_the_retention_period() {
    const CLINIC: &str = "mi:1310000025";
    let f = Federation::new("stats", &[BUNKYO, HOSPITAL, CLINIC], FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clock = Arc::new(ManualClock::new(tsunagi_gateway::files::now()));
    let open = |org: &str| {
        let cfg = Config::load(&f.members[org].config).unwrap();
        let _guard = rt.enter();
        let gw = Gateway::open_with_clock(cfg, clock.clone()).unwrap();
        let run = gw.clone();
        rt.spawn(async move { run.run().await });
        gw
    };
    let bunkyo = open(BUNKYO);
    let hospital = open(HOSPITAL);
    let _clinic = open(CLINIC);
    let today = tsunagi_gateway::clock::Clock::now(&*clock).date();
    // A second case whose consent is withdrawn before any support ends.
    let mut other = fixture("consent.json");
    other["id"] = "consent-131059-2026-0008".into();
    other["subject"] = "case-131059-2026-0008".into();
    rt.block_on(async {
        let running = |e: &&tsunagi_gateway::engine::OutboxEntry| [HOSPITAL, CLINIC].contains(&e.to.as_str());
        let consent = bunkyo.record_consent(fixture("consent.json")).await.unwrap();
        let ids: Vec<&str> = consent.iter().filter(running).map(|e| e.id.as_str()).collect();
        delivered(&bunkyo, &ids).await;
        // One plan to two parties, and one support end to both: one case, one plan, one outcome.
        let mut sent = vec![];
        for to in [HOSPITAL, CLINIC] {
            sent.push(bunkyo.submit(&org(to), Purpose::PlanImplementation, Content::Form(fixture("support_plan.json"))).await.unwrap().id);
            let end = json!({"document_type": "support_end", "author": BUNKYO, "subject": CASE, "ended_on": today.to_string(), "outcome": "no_longer_needed", "note": ""});
            sent.push(bunkyo.submit(&org(to), Purpose::SupportEnd, Content::Form(end)).await.unwrap().id);
        }
        let ids: Vec<&str> = sent.iter().map(String::as_str).collect();
        delivered(&bunkyo, &ids).await;
        // The other case: consent, then its withdrawal.
        let queued = bunkyo.record_consent(other.clone()).await.unwrap();
        let ids: Vec<&str> = queued.iter().filter(running).map(|e| e.id.as_str()).collect();
        delivered(&bunkyo, &ids).await;
        let mut withdrawn = other.clone();
        withdrawn["version"] = 2.into();
        withdrawn["status"] = "withdrawn".into();
        withdrawn["date"] = today.to_string().into();
        let queued = bunkyo.record_consent(withdrawn).await.unwrap();
        assert!(queued.iter().any(|e| e.kind.as_str() == "consent_withdrawal" && e.to.as_str() == HOSPITAL));
        let ids: Vec<&str> = queued.iter().filter(running).map(|e| e.id.as_str()).collect();
        delivered(&bunkyo, &ids).await;
    });
    let stats = bunkyo.stats().unwrap();
    assert_eq!(
        stats["support_outcomes"],
        json!({"no_longer_needed": 1}),
        "{stats}"
    );
    assert_eq!(stats["support_period_days"]["plans"], 1, "{stats}");
    assert_eq!(
        stats["plans"]["alone"].as_u64().unwrap() + stats["plans"]["joint"].as_u64().unwrap(),
        1,
        "{stats}"
    );
    assert_eq!(stats["consent_withdrawals"], 1, "{stats}");
    assert_eq!(
        hospital.stats().unwrap()["support_outcomes"],
        json!({"no_longer_needed": 1})
    );

    // Five years and a few days later both cases are purged, on the controller and at the
    // hospital: the withdrawn one too, although no support-end notice was ever sent for it.
    clock.advance(5 * 365 * 86_400 + 3 * 86_400);
    for gw in [&bunkyo, &hospital] {
        let mut purged = rt.block_on(gw.purge_due()).unwrap();
        purged.sort();
        assert_eq!(
            purged,
            vec![CASE.to_owned(), "case-131059-2026-0008".to_owned()]
        );
    }
}
