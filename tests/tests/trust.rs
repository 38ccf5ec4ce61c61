//! The trust boundary between gateways: identity comes from the peer's certificate, and
//! whatever fails it is refused with nothing stored and a reason the sender can see.

use serde_json::{json, Value};
use tsunagi_certs::{Credentials, FederationCa};
use tsunagi_gateway::transport::{Transport, TransportConfig, TransportError, Trust};
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::cose::Signer;
use tsunagi_protocol::document::Document;
use tsunagi_protocol::entropy::SystemEntropy;
use tsunagi_protocol::envelope::{
    ConsentRef, Envelope, Receipt, ReceiptStatus, NO_REDISCLOSURE_NOTICE,
};
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::{DocType, OrgId, Purpose};
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";
const CLINIC: &str = "mi:1310000025";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn signer(creds: &Credentials) -> Signer {
    Signer::from_pkcs8(
        creds.signing_key.secret_pkcs8_der(),
        creds.signing_chain.clone(),
    )
    .unwrap()
}

fn org(s: &str) -> OrgId {
    s.parse().unwrap()
}

fn letters(f: &Federation) -> usize {
    f.inbox(BUNKYO)
        .iter()
        .filter(|e| e["kind"] == "opinion_letter")
        .count()
}

#[test]
fn identity_replay_foreign_ca_and_revocation() {
    let mut f = Federation::new("trust", &[BUNKYO, HOSPITAL, CLINIC], FAST);
    f.start(BUNKYO);
    f.start(HOSPITAL);
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });

    // What the hospital holds: its credentials and Bunkyo's consent record, as received.
    let consent_entry: Value = f
        .inbox(HOSPITAL)
        .into_iter()
        .find(|e| e["kind"] == "consent")
        .expect("consent received");
    let hex = f.call(
        HOSPITAL,
        json!({"op": "inbox_bundle", "id": consent_entry["id"]}),
    )["bundle_hex"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let consent = DocBundle::from_bytes(&bytes, &Limits::default()).unwrap();
    let ca_pem = f.dir.join("ca/ca.pem");
    let crl_pem = f.dir.join("ca/crl.pem");
    let trust = tsunagi_certs::FederationTrust::from_files(&ca_pem, Some(&crl_pem)).unwrap();
    let now = tsunagi_gateway::files::now();
    // The hospital holds its own view of the consent (not the whole record).
    let Some(Ok(record)) = consent
        .verify(&trust, now, &Limits::default())
        .unwrap()
        .consent_view()
    else {
        panic!("not a consent")
    };
    let hospital = Credentials::load(f.creds(HOSPITAL)).unwrap();
    let clinic = Credentials::load(f.creds(CLINIC)).unwrap();
    let letter = DocBundle::sign(
        &Document::from_value(fixture("opinion_letter.json")).unwrap(),
        &signer(&hospital),
        now,
        &mut SystemEntropy::new(),
    )
    .unwrap();
    let envelope = |sender: &str, msg_id: [u8; 16]| Envelope {
        msg_id,
        iat: now,
        exp: now.plus(3600),
        sender: org(sender),
        aud: org(BUNKYO),
        kind: DocType::OpinionLetter,
        purpose: Purpose::PlanCreation,
        case: record.subject.clone(),
        consent_ref: ConsentRef::to(&record, &consent),
        doc: letter.doc.clone(),
        disclosures: letter.items.clone(),
        in_reply_to: None,
        notice: NO_REDISCLOSURE_NOTICE.into(),
        checkpoint: None,
    };
    let bunkyo_addr = f.address(BUNKYO);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls_trust = Trust::from_files(&ca_pem, [&crl_pem]).unwrap();
    let as_hospital = rt
        .block_on(async {
            Transport::bind(
                "127.0.0.1:0".parse().unwrap(),
                &hospital,
                &tls_trust,
                TransportConfig::default(),
            )
        })
        .unwrap();
    // Bunkyo's receipt heads name its signing chain by fingerprint: the chain is public.
    let bunkyo_chain = Credentials::load(f.creds(BUNKYO)).unwrap().signing_chain;
    let check = |reply: &[u8], sent: &[u8]| {
        Receipt::verify_resolving(
            reply,
            sent,
            &org(BUNKYO),
            &trust,
            tsunagi_gateway::files::now(),
            &Limits::default(),
            None,
            &|_| Some(bunkyo_chain.clone()),
        )
        .unwrap()
    };

    // 1. An envelope signed by the clinic but sent over the hospital's TLS connection.
    let forged = envelope(CLINIC, [1; 16]).seal(&signer(&clinic));
    let reply = rt
        .block_on(as_hospital.request(&org(BUNKYO), bunkyo_addr, &forged))
        .unwrap();
    let r = check(&reply, &forged);
    assert_eq!(
        (r.status, r.reason.as_deref()),
        (ReceiptStatus::Rejected, Some("sender_mismatch"))
    );
    assert_eq!(letters(&f), 0, "nothing is stored");

    // 2. A genuine envelope, then the same bytes again: the same receipt, stored once.
    let genuine = envelope(HOSPITAL, [2; 16]).seal(&signer(&hospital));
    let first = rt
        .block_on(as_hospital.request(&org(BUNKYO), bunkyo_addr, &genuine))
        .unwrap();
    assert_eq!(check(&first, &genuine).status, ReceiptStatus::Accepted);
    let again = rt
        .block_on(as_hospital.request(&org(BUNKYO), bunkyo_addr, &genuine))
        .unwrap();
    assert_eq!(again, first, "a replay gets the stored receipt");
    assert_eq!(letters(&f), 1, "stored once");

    // 3. The same org's certificate from a foreign CA: refused in the handshake, nothing stored.
    let foreign = FederationCa::init(f.dir.join("foreign-ca"), "another federation").unwrap();
    foreign
        .issue(
            &org(HOSPITAL),
            "127.0.0.1",
            f.dir.join("foreign-hospital"),
            30,
        )
        .unwrap();
    let foreign_creds = Credentials::load(f.dir.join("foreign-hospital")).unwrap();
    let foreign_trust = Trust::from_files(
        f.dir.join("foreign-ca/ca.pem"),
        [f.dir.join("foreign-ca/crl.pem")],
    )
    .unwrap();
    let impostor = rt
        .block_on(async {
            Transport::bind(
                "127.0.0.1:0".parse().unwrap(),
                &foreign_creds,
                &foreign_trust,
                TransportConfig::default(),
            )
        })
        .unwrap();
    let e = rt
        .block_on(impostor.request(
            &org(BUNKYO),
            bunkyo_addr,
            &envelope(HOSPITAL, [3; 16]).seal(&signer(&foreign_creds)),
        ))
        .unwrap_err();
    assert!(
        matches!(e, TransportError::Tls { .. }) && !e.is_transient(),
        "{e}"
    );
    assert_eq!(letters(&f), 1);

    // 4. Revoke the hospital's TLS certificate: Bunkyo reloads its CRL without a restart, the
    //    hospital's gateway is refused, and its outbox says why.
    f.ca.revoke(f.creds(HOSPITAL).join("tls.pem")).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let queued = f.call(HOSPITAL, json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": fixture("opinion_letter.json")}));
    let id = queued["id"].as_str().unwrap().to_owned();
    let list = f.wait_outbox(HOSPITAL, 30, "a refused attempt", |v| {
        v.iter().any(|e| {
            e["id"] == id
                && e["state"] == "retry_wait"
                && e["last_error"]
                    .as_str()
                    .is_some_and(|m| m.contains("revoked"))
        })
    });
    let err = list.iter().find(|e| e["id"] == id).unwrap()["last_error"].clone();
    assert!(err.as_str().unwrap().contains("certificate"), "{err}");
    assert_eq!(
        letters(&f),
        1,
        "nothing from a revoked certificate is stored"
    );
    rt.block_on(as_hospital.close());
    rt.block_on(impostor.close());
}
