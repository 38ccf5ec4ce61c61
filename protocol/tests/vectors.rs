//! Checked-in test vectors: fixed keys, salts and time give exact bytes.
//!
//! `protocol/vectors/` holds, for case-0007:
//!
//! | file | what |
//! |---|---|
//! | `signed_doc.cbor` | the hospital's needs assessment, COSE_Sign1 as signed |
//! | `bundle.cbor` | that document with every item |
//! | `bundle_form6.cbor` | the Form 6 view of it (what the NPO receives) |
//! | `consent_bundle.cbor` | Bunkyo's consent record v1, fully disclosed |
//! | `consent_view_npo.cbor` | the NPO's view of it: validity, scope and the NPO's own entry |
//! | `envelope.cbor` | Bunkyo's gateway forwarding the Form 6 view to the NPO, naming the NPO's consent view by digest (`consentRef.view` = SHA-256 of `consent_view_npo.cbor`), with Bunkyo's audit checkpoint: leaf 1 of a batch seal of 3 (signed head, inclusion path) |
//! | `consent_fetch.cbor` | the NPO gateway's consent fetch for that view (the answer is the bytes of `consent_view_npo.cbor`) |
//! | `receipt.cbor` | the NPO gateway's accepting receipt for it, with the NPO's audit checkpoint: leaf 0 of a batch seal of 2 |
//! | `plan_v2_support_party.cbor` | Bunkyo's plan version 2 (superseding version 1 by digest) in the `support_party` view |
//! | `meeting_record.cbor` | Bunkyo's support meeting record, fully disclosed |
//! | `readmission_notice.cbor` | the hospital's readmission notice in the `notice` view (the day only) |
//! | `records_query.cbor` | the records query for case-0007 (R9), sent instead of an envelope |
//! | `admission_treatment.cbor` | the Tokyo government's admission material (R11) in the hospital's `treatment` view: without `reporter` and `informants` |
//! | `delegation_bundle.cbor` | Bunkyo's delegation record (III.8) to a support provider, fully disclosed |
//! | `keys.json` | the signers' seeds and public keys, their test "certificates", the time |
//!
//! Regenerate with `TSUNAGI_BLESS=1 cargo test -p tsunagi-protocol --test vectors` after a
//! deliberate wire change, and say why in the commit.

use std::path::PathBuf;

use tsunagi_protocol::batch;
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::checkpoint::Checkpoint;
use tsunagi_protocol::cose;
use tsunagi_protocol::cose::sha256;
use tsunagi_protocol::document::Document;
use tsunagi_protocol::entropy::FixedEntropy;
use tsunagi_protocol::envelope::{
    ConsentRef, Envelope, Inbound, Receipt, ReceiptStatus, Receiver, ReceiverState,
    NO_REDISCLOSURE_NOTICE,
};
use tsunagi_protocol::profile::{consent_view, Profile};
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::testkit::{self, chains, fixture, org, signer};
use tsunagi_protocol::{Date, DocType, OrgId, Purpose, Role, Timestamp};

fn now() -> Timestamp {
    Date::new(2026, 10, 10)
        .expect("valid")
        .start()
        .plus(9 * 3600)
}

struct Vectors {
    files: Vec<(&'static str, Vec<u8>)>,
}

fn make() -> Vectors {
    let hospital = "mi:1310000017";
    let doc = fixture("needs_assessment.json");
    let bundle = DocBundle::sign(
        &doc,
        &signer(hospital),
        now(),
        &mut FixedEntropy::new(b"vector:assessment"),
    )
    .unwrap();
    let form6 = bundle.redact(|e| Profile::Form6.discloses(DocType::NeedsAssessment, e));
    let consent_doc = fixture("consent.json");
    let Document::Consent(record) = &consent_doc else {
        unreachable!()
    };
    let consent = DocBundle::sign(
        &consent_doc,
        &signer("lg:131059"),
        now(),
        &mut FixedEntropy::new(b"vector:consent"),
    )
    .unwrap();
    let npo_view = consent.redact(|e| {
        consent_view(record, &org("ot:npo-komorebi"), Role::Npo)
            .iter()
            .any(|v| v == e)
    });
    let checkpoint = |o: &str, seq: u64, h: &[u8]| {
        Checkpoint {
            org: org(o),
            seq,
            hash: sha256(h),
            time: now(),
        }
        .sign(&signer(o))
    };
    let envelope = Envelope {
        msg_id: *b"vector-msg-id-01",
        iat: now(),
        exp: now().plus(5 * 86_400),
        sender: org("lg:131059"),
        aud: org("ot:npo-komorebi"),
        kind: DocType::NeedsAssessment,
        purpose: Purpose::PlanImplementation,
        case: doc.subject().clone(),
        consent_ref: ConsentRef::to(record, &npo_view),
        doc: form6.doc.clone(),
        disclosures: form6.items.clone(),
        in_reply_to: None,
        notice: NO_REDISCLOSURE_NOTICE.into(),
        checkpoint: Some(checkpoint("lg:131059", 63, b"bunkyo record 63")),
    };
    // Bunkyo's gateway seals three envelopes for the NPO in one batch; the vector is the
    // second (leaf 1 of 3: an inclusion path of two hashes).
    let sibling = |id: &[u8; 16]| {
        let mut e = envelope.clone();
        e.msg_id = *id;
        e.checkpoint = None;
        e.body()
    };
    let bodies = [
        sibling(b"vector-msg-id-00"),
        envelope.body(),
        sibling(b"vector-msg-id-02"),
    ];
    let envelope_bytes = batch::seal(&signer("lg:131059"), cose::TYP_ENVELOPE, &bodies).remove(1);
    // The NPO's gateway seals the receipts of that batch together; the vector is leaf 0 of 2.
    let receipt_body = |msg_id: [u8; 16], digest: [u8; 32], checkpoint: Option<Vec<u8>>| {
        Receipt {
            msg_id: Some(msg_id),
            envelope_digest: digest,
            receiver: org("ot:npo-komorebi"),
            time: now().plus(1),
            status: ReceiptStatus::Accepted,
            reason: None,
            checkpoint,
        }
        .body()
    };
    let receipt = batch::seal(
        &signer("ot:npo-komorebi"),
        cose::TYP_RECEIPT,
        &[
            receipt_body(
                envelope.msg_id,
                sha256(&envelope_bytes),
                Some(checkpoint("ot:npo-komorebi", 0, b"npo record 0")),
            ),
            receipt_body(*b"vector-msg-id-00", [0; 32], None),
        ],
    )
    .remove(0);
    // The course after the first plan: plan v2 naming v1 by digest, a meeting, a readmission.
    let mut v2_json: serde_json::Value = serde_json::from_str(
        testkit::CASE_0007
            .iter()
            .find(|(n, _)| *n == "support_plan_v2.json")
            .unwrap()
            .1,
    )
    .unwrap();
    let Document::SupportPlan(v1) = fixture("support_plan.json") else {
        unreachable!()
    };
    v2_json["supersedes"]["digest"] = v1.digest().into();
    let v2 = Document::from_value(v2_json).unwrap();
    let sign = |d: &Document, o: &str, salt: &[u8]| {
        DocBundle::sign(d, &signer(o), now(), &mut FixedEntropy::new(salt)).unwrap()
    };
    let plan_v2 = sign(&v2, "lg:131059", b"vector:plan-v2")
        .redact(|e| Profile::SupportParty.discloses(DocType::SupportPlan, e));
    let meeting = sign(
        &fixture("meeting_record.json"),
        "lg:131059",
        b"vector:meeting",
    );
    let readmission = sign(
        &fixture("readmission.json"),
        "mi:1310000017",
        b"vector:readmission",
    )
    .redact(|e| Profile::Notice.discloses(DocType::Readmission, e));
    let admission_doc = Document::from_json(include_str!(
        "../../fixtures/case-0007/admission_material.json"
    ))
    .unwrap();
    let admission = DocBundle::sign(
        &admission_doc,
        &signer("lg:130001"),
        now(),
        &mut FixedEntropy::new(b"vector:admission"),
    )
    .unwrap()
    .redact(|e| Profile::Treatment.discloses(DocType::AdmissionMaterial, e));
    let delegation_doc =
        Document::from_json(include_str!("../../fixtures/case-0007/delegation.json")).unwrap();
    let delegation = DocBundle::sign(
        &delegation_doc,
        &signer("lg:131059"),
        now(),
        &mut FixedEntropy::new(b"vector:delegation"),
    )
    .unwrap();
    let signers: Vec<serde_json::Value> =
        ["mi:1310000017", "lg:131059", "ot:npo-komorebi", "lg:130001"]
            .iter()
            .map(|o| {
                serde_json::json!({
                    "org": o,
                    "seed": hex(&sha256(o.as_bytes())),
                    "public_key": hex(&signer(o).public_key()),
                    "certificate": String::from_utf8(testkit::cert(o)).unwrap(),
                    "kid": hex(&signer(o).kid()),
                })
            })
            .collect();
    let keys = serde_json::json!({
        "note": "Test keys only. seed = SHA-256(org id); certificate = the UTF-8 bytes shown; kid = SHA-256(certificate).",
        "time": now().0,
        "signers": signers,
    });
    Vectors {
        files: vec![
            ("signed_doc.cbor", bundle.doc.clone()),
            ("bundle.cbor", bundle.to_bytes()),
            ("bundle_form6.cbor", form6.to_bytes()),
            ("consent_bundle.cbor", consent.to_bytes()),
            ("consent_view_npo.cbor", npo_view.to_bytes()),
            ("envelope.cbor", envelope_bytes),
            ("receipt.cbor", receipt),
            ("plan_v2_support_party.cbor", plan_v2.to_bytes()),
            ("meeting_record.cbor", meeting.to_bytes()),
            ("readmission_notice.cbor", readmission.to_bytes()),
            (
                "records_query.cbor",
                tsunagi_protocol::records::records_query(doc.subject()),
            ),
            (
                "consent_fetch.cbor",
                tsunagi_protocol::fetch::consent_fetch(doc.subject(), &envelope.consent_ref.view),
            ),
            ("admission_treatment.cbor", admission.to_bytes()),
            ("delegation_bundle.cbor", delegation.to_bytes()),
            (
                "keys.json",
                format!("{}\n", serde_json::to_string_pretty(&keys).unwrap()).into_bytes(),
            ),
        ],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

#[test]
fn vectors_are_reproduced_exactly() {
    let v = make();
    if std::env::var_os("TSUNAGI_BLESS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, bytes) in &v.files {
            std::fs::write(dir().join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &v.files {
        let stored = std::fs::read(dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; run with TSUNAGI_BLESS=1 to create it"));
        assert!(
            stored == *bytes,
            "{name} differs from the checked-in vector: the wire format changed"
        );
    }
}

struct NpoState;
impl ReceiverState for NpoState {
    fn stored_receipt(&self, _: &[u8; 16]) -> Option<Vec<u8>> {
        None
    }
    fn latest_consent(&self, _: &str) -> Option<tsunagi_protocol::document::ConsentRecord> {
        None
    }
    fn role_of(&self, org: &OrgId) -> Option<Role> {
        testkit::role_of(org)
    }
    fn is_party(&self, _: &tsunagi_protocol::CaseId) -> bool {
        true
    }
    fn consent_view(&self, _: &tsunagi_protocol::CaseId, view: &[u8; 32]) -> Option<DocBundle> {
        // What the NPO's gateway fetched from Bunkyo's for this envelope.
        let bytes = std::fs::read(dir().join("consent_view_npo.cbor")).unwrap();
        tsunagi_protocol::fetch::consent_answer(view, &bytes, &Limits::default()).ok()
    }
}

#[test]
fn checked_in_vectors_verify() {
    let read = |n: &str| std::fs::read(dir().join(n)).unwrap();
    let limits = Limits::default();
    let full = DocBundle::from_bytes(&read("bundle.cbor"), &limits)
        .unwrap()
        .verify(&chains(), now(), &limits)
        .unwrap();
    assert!(full.withheld.is_empty());
    let form6 = DocBundle::from_bytes(&read("bundle_form6.cbor"), &limits)
        .unwrap()
        .verify(&chains(), now(), &limits)
        .unwrap();
    assert!(form6.disclosed.keys().all(|k| !k.starts_with("items.")));
    assert_eq!(
        read("signed_doc.cbor"),
        DocBundle::from_bytes(&read("bundle.cbor"), &limits)
            .unwrap()
            .doc
    );
    let env = read("envelope.cbor");
    let npo = org("ot:npo-komorebi");
    let chains = chains();
    let receiver = Receiver {
        me: &npo,
        chains: &chains,
        limits,
        max_skew: 300,
    };
    let Inbound::New(accepted) = receiver
        .receive(&env, &org("lg:131059"), now(), &NpoState)
        .unwrap()
    else {
        panic!("not new")
    };
    assert_eq!(accepted.document.disclosed, form6.disclosed);
    // The NPO learns that it is covered and what the record allows, and nothing of the others.
    assert_eq!(
        accepted.consent.recipients,
        vec![
            tsunagi_protocol::document::ConsentRecipient::Org {
                org: org("lg:131059")
            },
            tsunagi_protocol::document::ConsentRecipient::Org { org: npo.clone() },
        ]
    );
    assert!(!accepted.consent.police.allowed && accepted.consent.grantor.is_empty());
    let cp = Checkpoint::verify(accepted.envelope.checkpoint.as_ref().unwrap(), &chains).unwrap();
    assert_eq!((cp.org, cp.seq), (org("lg:131059"), 63));
    let receipt =
        Receipt::verify(&read("receipt.cbor"), &env, &npo, &chains, now(), &limits).unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Accepted);
    // The hospital's view of the admission material verifies without the third parties.
    let admission = DocBundle::from_bytes(&read("admission_treatment.cbor"), &limits)
        .unwrap()
        .verify(&chains, now(), &limits)
        .unwrap();
    assert_eq!(admission.withheld, vec!["reporter", "informants"]);
    assert!(admission.disclosed.contains_key("diagnosis_certificates"));
    let delegation = DocBundle::from_bytes(&read("delegation_bundle.cbor"), &limits)
        .unwrap()
        .verify(&chains, now(), &limits)
        .unwrap();
    assert!(delegation.withheld.is_empty());
}

#[test]
fn the_course_vectors_verify_and_show_their_views() {
    let read = |n: &str| std::fs::read(dir().join(n)).unwrap();
    let limits = Limits::default();
    let open = |n: &str| {
        DocBundle::from_bytes(&read(n), &limits)
            .unwrap()
            .verify(&chains(), now(), &limits)
            .unwrap()
    };
    let plan = open("plan_v2_support_party.cbor");
    assert_eq!(plan.disclosed["version"], 2);
    assert_eq!(plan.disclosed["supersedes"]["version"], 1);
    let Document::SupportPlan(v1) = fixture("support_plan.json") else {
        unreachable!()
    };
    assert_eq!(plan.disclosed["supersedes"]["digest"], v1.digest().as_str());
    assert!(plan.withheld.contains(&"diagnosis".to_owned()));
    let meeting = open("meeting_record.cbor");
    assert!(meeting.withheld.is_empty());
    assert!(matches!(
        meeting.document(),
        Some(Ok(Document::MeetingRecord(_)))
    ));
    assert_eq!(
        tsunagi_protocol::records::parse_records_query(&read("records_query.cbor"))
            .map(|c| c.to_string()),
        Some("case-131059-2026-0007".to_owned())
    );
    let notice = open("readmission_notice.cbor");
    assert_eq!(notice.disclosed.keys().collect::<Vec<_>>(), ["admitted_on"]);
}
