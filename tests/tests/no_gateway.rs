//! A move to a municipality that no directory serves: the residence change answers
//! `no_gateway`, the Form 7 package is exported as a printable Japanese page to go by post, and
//! the audit trail and the person's disclosure page record the channel.

use serde_json::json;
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const CASE: &str = "case-131059-2026-0007";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

#[test]
fn a_destination_without_a_gateway_gets_a_printed_form_7() {
    let mut f = Federation::new("no-gateway", &[BUNKYO], FAST);
    f.start_all();
    f.record_consent("consent_v2_relocation.json");
    // Bunkyo's plan (to the Tokyo government, co-author; not running here).
    f.call(
        BUNKYO,
        json!({"op": "send", "to": "lg:130001", "purpose": "plan_creation", "form": fixture("support_plan.json")}),
    );
    // Nothing to export before a move.
    let err = f
        .try_call(
            BUNKYO,
            json!({"op": "transfer_export", "case": CASE, "channel": "post"}),
        )
        .unwrap_err();
    assert!(err.contains("no transfer notice"), "{err}");

    // The person moves to Osaka City (271004), which no directory serves.
    let mut report = fixture("residence_change.json");
    report["new_municipality"] = json!("271004");
    report["new_address"] = json!("大阪府大阪市北区中之島一丁目3番20号");
    let file = f.dir.join("residence_change.json");
    std::fs::write(&file, report.to_string()).unwrap();
    let out = f.cli(BUNKYO, &["residence-change", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("no gateway serves lg:271004") && said.contains("tsunagi transfer export"),
        "{said}"
    );

    // Staff print the package and post it.
    let file = f.dir.join("form7.html");
    let out = f.cli(
        BUNKYO,
        &[
            "transfer",
            "export",
            CASE,
            "--channel",
            "post",
            "--html",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the Form 7 package is {mode:o}");
    let html = std::fs::read_to_string(&file).unwrap();
    for want in [
        "移転先自治体への通知（様式7）",
        "送付方法：郵送",
        "大阪府大阪市北区中之島一丁目3番20号",
        "転居後の医療等の支援の必要性",
        "本郷こころのクリニック",
        "2027-01-15〜2027-04-30",
        "@media print",
    ] {
        assert!(html.contains(want), "{want} missing:\n{html}");
    }
    // The trail records the state and the channel; the person's page shows it.
    let audit = f.call(BUNKYO, json!({"op": "audit"}));
    let records = audit.as_array().unwrap();
    assert!(records
        .iter()
        .any(|r| r["event"] == "no_gateway" && r["municipality"] == "271004"));
    assert!(records
        .iter()
        .any(|r| r["event"] == "exported_other_channel"
            && r["channel"] == "post"
            && r["to"] == "lg:271004"));
    let subject = f.call(
        BUNKYO,
        json!({"op": "audit_subject", "case": CASE, "html": true}),
    );
    let text = subject.to_string();
    assert!(
        text.contains("ゲートウェイのない転居先へ他の方法で提供しました")
            && text.contains("送付方法：郵送"),
        "{text}"
    );
    let out = f.cli(BUNKYO, &["audit", "verify"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("audit trail intact:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
