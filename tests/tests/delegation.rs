//! Delegation (III.8): Bunkyo contracts the follow-up of case 0007 to a support provider, which
//! may then report the person's move for that case only; outside the case, before the
//! delegation and after its revocation, its reports are refused with the reason; the person's
//! disclosure page shows the delegation and its revocation.

use serde_json::{json, Value};
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const PROVIDER: &str = "sp:1330000011";
const CASE: &str = "case-131059-2026-0007";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn delegation() -> Value {
    serde_json::from_str(include_str!("../../fixtures/case-0007/delegation.json")).unwrap()
}

/// The provider's report of the move, authored by the provider itself.
fn report(case: &str) -> Value {
    let mut r = fixture("residence_change.json");
    r["author"] = json!(PROVIDER);
    r["subject"] = json!(case);
    r["source"] = json!("委託を受けた相談支援事業所の訪問で把握");
    r
}

fn send_report(f: &Federation, case: &str) -> Result<Value, String> {
    f.try_call(
        PROVIDER,
        json!({"op": "send", "to": BUNKYO, "purpose": "plan_implementation", "form": report(case)}),
    )
}

#[test]
fn a_contractor_reports_within_its_delegation_only_until_revoked() {
    let mut f = Federation::new("delegation", &[BUNKYO, PROVIDER], FAST);
    f.start_all();
    f.record_consent("consent.json");

    // Without a delegation a support provider may not author a residence-change report.
    let err = send_report(&f, CASE).unwrap_err();
    assert!(
        err.contains("support_provider may not author a residence_change"),
        "{err}"
    );

    // Only the controller's gateway records a delegation, and only a newer version.
    let err = f
        .try_call(
            PROVIDER,
            json!({"op": "delegation_record", "record": delegation()}),
        )
        .unwrap_err();
    assert!(
        err.contains("record a delegation on the authority's gateway"),
        "{err}"
    );
    let mut bad = delegation();
    bad["tasks"] = json!(["support_plan"]);
    let err = f
        .try_call(BUNKYO, json!({"op": "delegation_record", "record": bad}))
        .unwrap_err();
    assert!(
        err.contains("tasks.0: support_plan cannot be delegated"),
        "{err}"
    );

    // Bunkyo delegates; the record reaches the provider.
    // (From the command line, as staff would.)
    let file = f.dir.join("delegation.json");
    std::fs::write(&file, delegation().to_string()).unwrap();
    let out = f.cli(BUNKYO, &["delegation", "record", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.starts_with("recorded; ") && said.contains(PROVIDER),
        "{said}"
    );
    f.wait_outbox(BUNKYO, 30, "delegation delivered", |v| {
        v.iter()
            .any(|e| e["kind"] == "delegation" && e["state"] == "delivered")
    });
    let out = f.cli(PROVIDER, &["delegation", "list", CASE]);
    assert!(out.status.success(), "{out:?}");
    let held: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(held[0]["contractor"], PROVIDER, "{held}");
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "delegation_record", "record": delegation()}),
        )
        .unwrap_err();
    assert!(err.contains("not newer"), "{err}");

    // Within the delegation: the provider's report goes, and Bunkyo accepts it.
    let sent = send_report(&f, CASE).unwrap();
    let id = sent["id"].as_str().unwrap().to_owned();
    f.wait_outbox(PROVIDER, 30, "report delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });
    assert!(f
        .inbox(BUNKYO)
        .iter()
        .any(|e| e["kind"] == "residence_change" && e["from"] == PROVIDER));

    // Another case is outside the delegation.
    let err = send_report(&f, "case-131059-2026-0099").unwrap_err();
    assert!(err.contains("support_provider may not author"), "{err}");

    // A report the provider queued before the revocation (Bunkyo down, then the provider down
    // too while Bunkyo revokes): Bunkyo's receiver refuses it with the reason in the receipt.
    f.kill(BUNKYO);
    let queued = send_report(&f, CASE).unwrap();
    let queued_id = queued["id"].as_str().unwrap().to_owned();
    f.kill(PROVIDER);
    f.start(BUNKYO);
    let mut revoked = delegation();
    revoked["version"] = json!(2);
    revoked["status"] = json!("revoked");
    revoked["date"] = json!("2026-12-01");
    let sent = f.call(
        BUNKYO,
        json!({"op": "delegation_record", "record": revoked}),
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    f.start(PROVIDER);
    f.wait_outbox(BUNKYO, 30, "revocation delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });
    let outbox = f.wait_outbox(PROVIDER, 30, "the queued report refused", |v| {
        v.iter()
            .any(|e| e["id"] == queued_id.as_str() && e["state"] == "rejected")
    });
    let refused = outbox
        .iter()
        .find(|e| e["id"] == queued_id.as_str())
        .unwrap();
    assert!(
        refused.to_string().contains("delegation_revoked"),
        "{refused}"
    );
    // And the provider's own gateway refuses a new one, naming the revocation.
    let err = send_report(&f, CASE).unwrap_err();
    assert!(err.contains("was revoked (version 2)"), "{err}");

    // The person's disclosure page shows the delegation and its revocation.
    let page = f.call(
        BUNKYO,
        json!({"op": "audit_subject", "case": CASE, "html": true}),
    );
    let html = page
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| page.to_string());
    assert!(html.contains("業務を委託しました"), "{html}");
    assert!(html.contains("業務の委託を取り消しました"), "{html}");
    assert!(html.contains("居住地変更の報告") && html.contains("2026-11-01〜2027-04-30"));
}
