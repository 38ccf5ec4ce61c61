//! Credential rotation without downtime: one gateway's TLS and signing credentials are replaced
//! while both run; deliveries go on both ways, and still after the old certificates are revoked.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi_tests::{fixture, tsunagi_bin, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";

fn delivered_to(f: &Federation, from: &str, to: &str, kind: &str, n: usize, what: &str) {
    f.wait_outbox(from, 30, what, |v| {
        v.iter()
            .filter(|e| e["to"] == to && e["kind"] == kind && e["state"] == "delivered")
            .count()
            >= n
    });
}

fn assessment(f: &Federation, what: &str) {
    let sent: Value = f.call(
        HOSPITAL,
        json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": fixture("needs_assessment.json")}),
    );
    f.wait_outbox(HOSPITAL, 30, what, |v| {
        v.iter()
            .any(|e| e["id"] == sent["id"] && e["state"] == "delivered")
    });
}

fn tsunagi(args: &[&str]) -> String {
    let out = Command::new(tsunagi_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rotating_credentials_while_running_keeps_deliveries_going_both_ways() {
    let mut f = Federation::new("rotation", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    f.record_consent("consent.json");
    delivered_to(&f, BUNKYO, HOSPITAL, "consent", 1, "consent v1 delivered");
    assessment(&f, "first assessment delivered");

    // Rotate Bunkyo's credentials while it runs: it picks them up from the files by itself.
    let creds = f.creds(BUNKYO);
    let before = std::fs::read(creds.join("sign.pem")).unwrap();
    let ca = f.dir.join("ca");
    let out = tsunagi(&[
        "certs",
        "rotate",
        "--ca",
        ca.to_str().unwrap(),
        "--creds",
        creds.to_str().unwrap(),
    ]);
    assert!(
        out.contains("rotated the credentials of lg:131059"),
        "{out}"
    );
    assert_ne!(std::fs::read(creds.join("sign.pem")).unwrap(), before);
    let old = std::fs::read_dir(&creds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("old-"))
        })
        .expect("the old credentials are kept");
    assert_eq!(std::fs::read(old.join("sign.pem")).unwrap(), before);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f.log(BUNKYO).contains("TLS credentials reloaded") {
        assert!(
            Instant::now() < deadline,
            "the gateway did not reload its credentials:\n{}",
            f.log(BUNKYO)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Both ways, without a restart.
    f.record_consent("consent_v2_relocation.json");
    delivered_to(&f, BUNKYO, HOSPITAL, "consent", 2, "consent v2 delivered");
    assessment(&f, "assessment after the rotation delivered");

    // Revoke the old certificates: deliveries go on with the new ones.
    for cert in ["tls.pem", "sign.pem"] {
        tsunagi(&[
            "certs",
            "revoke",
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            old.join(cert).to_str().unwrap(),
        ]);
    }
    f.call(BUNKYO, json!({"op": "reload"}));
    f.call(HOSPITAL, json!({"op": "reload"}));
    assessment(&f, "assessment after the revocation delivered");
    f.record_consent("consent_v3_withdrawn.json");
    delivered_to(
        &f,
        BUNKYO,
        HOSPITAL,
        "consent_withdrawal",
        1,
        "withdrawal notice delivered",
    );
    assert!(
        f.members.values().all(|m| m.child.is_some()),
        "no gateway was restarted"
    );
}
