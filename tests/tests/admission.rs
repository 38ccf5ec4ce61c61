//! Admission material without third parties (R11): the Tokyo government passes the
//! measure-admission material (措置診断書, 事前調査票) of case 0007 to the admitting hospital,
//! which receives what treatment needs and not the names and contacts of who reported the person
//! or gave information; the same material to a clinic is refused.

use serde_json::{json, Value};
use tsunagi_tests::{fixture, Federation};

const TOKYO: &str = "lg:130001";
const HOSPITAL: &str = "mi:1310000017";
const CLINIC: &str = "mi:1310000025";
const CASE: &str = "case-130001-2026-0007";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn material() -> Value {
    let mut m: Value = serde_json::from_str(include_str!(
        "../../fixtures/case-0007/admission_material.json"
    ))
    .unwrap();
    m["subject"] = json!(CASE);
    m
}

#[test]
fn the_hospital_receives_admission_material_without_third_parties() {
    let mut f = Federation::new("admission", &[TOKYO, HOSPITAL], FAST);
    f.start_all();
    // The Tokyo government, which ordered the admission, records the person's consent to pass
    // the admission material for making the plan.
    let mut consent = fixture("consent.json");
    consent["controller"] = json!(TOKYO);
    consent["id"] = json!("consent-130001-2026-0007");
    // The case is Tokyo's: its id names the authority that opened it.
    consent["subject"] = json!(CASE);
    consent["doc_types"]
        .as_array_mut()
        .unwrap()
        .push(json!("admission_material"));
    let queued = f.call(TOKYO, json!({"op": "consent_record", "record": consent}));
    let to_hospital = queued
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == HOSPITAL)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    f.wait_outbox(TOKYO, 30, "consent at the hospital", |v| {
        v.iter()
            .any(|e| e["id"] == to_hospital.as_str() && e["state"] == "delivered")
    });

    // To a clinic: refused, naming R11.
    let err = f
        .try_call(
            TOKYO,
            json!({"op": "send", "to": CLINIC, "purpose": "plan_creation", "form": material()}),
        )
        .unwrap_err();
    assert!(
        err.contains("admission material goes only to the admitting hospital (R11)"),
        "{err}"
    );

    // To the hospital: sent with the treatment profile, third parties withheld.
    let sent = f.call(
        TOKYO,
        json!({"op": "send", "to": HOSPITAL, "purpose": "plan_creation", "form": material()}),
    );
    assert_eq!(sent["profile"], "treatment", "{sent}");
    assert_eq!(
        sent["withheld"],
        json!(["reporter", "informants"]),
        "{sent}"
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    f.wait_outbox(TOKYO, 30, "material delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });
    let got = f
        .inbox(HOSPITAL)
        .into_iter()
        .find(|e| e["kind"] == "admission_material")
        .expect("the hospital received the material");
    let shown = f.call(HOSPITAL, json!({"op": "inbox_show", "id": got["id"]}));
    let doc = &shown["document"];
    // What treatment needs is there.
    assert_eq!(
        doc["diagnosis_certificates"][0]["diagnosis"],
        "統合失調症（F20.0）"
    );
    assert_eq!(doc["statements"][0]["relation"], "母");
    assert!(doc["circumstances"].as_str().unwrap().contains("法第23条"));
    // Who reported the person and who gave information is not.
    assert!(
        doc.get("reporter").is_none() && doc.get("informants").is_none(),
        "{doc}"
    );
    let text = shown.to_string();
    for name in ["高橋", "山本", "03-0000-1111", "03-0000-2222"] {
        assert!(!text.contains(name), "{name} reached the hospital: {text}");
    }
    // The sender's trail names what was withheld; the person's page shows it too.
    let audit = f.call(TOKYO, json!({"op": "audit"}));
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["event"] == "sent"
            && r["kind"] == "admission_material"
            && r["withheld"] == json!(["reporter", "informants"])));
}
