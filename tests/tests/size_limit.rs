//! An envelope over the recipient's size limit: the recipient answers with a signed `too_large`
//! rejection, which the sender takes as final (the entry ends `rejected`, saying why) instead of
//! retrying until the envelope expires.

use serde_json::Value;
use tsunagi_tests::Federation;

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

#[test]
fn an_envelope_over_the_recipients_limit_is_rejected_for_good() {
    let mut f = Federation::new("size-limit", &[BUNKYO, HOSPITAL], FAST);
    // The hospital accepts messages of at most 2 KiB; a consent envelope is larger.
    let config = f.dir.join(HOSPITAL.replace(':', "_")).join("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[delivery]\n"), "{text}");
    std::fs::write(
        &config,
        text.replacen("[delivery]\n", "[delivery]\nmax_message_bytes = 2048\n", 1),
    )
    .unwrap();
    f.start_all();
    f.record_consent("consent.json");
    let to_hospital = |e: &Value| e["to"] == HOSPITAL && e["kind"] == "consent";
    let outbox = f.wait_outbox(BUNKYO, 30, "the consent copy to the hospital final", |v| {
        v.iter()
            .any(|e| to_hospital(e) && e["state"] != "queued" && e["state"] != "retry_wait")
    });
    let entry = outbox.iter().find(|e| to_hospital(e)).unwrap();
    assert_eq!(entry["state"], "rejected", "{entry:#}");
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("too_large"),
        "{entry:#}"
    );
    assert!(f
        .log(HOSPITAL)
        .contains("refused an envelope over 2048 bytes"));
}
