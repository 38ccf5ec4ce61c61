//! Slim envelopes: the consent travels once per peer and version, named by digest, and a
//! receiver that lacks it fetches it from the sender over the same connection. A fetch that
//! fails or is answered wrongly is never a rejection: nothing is stored, no receipt goes back,
//! and the envelope gets through once the sender answers right.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tsunagi_certs::Credentials;
use tsunagi_gateway::transport::{InboundMessage, Transport, TransportConfig, Trust};
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::cose::Signer;
use tsunagi_protocol::document::Document;
use tsunagi_protocol::entropy::SystemEntropy;
use tsunagi_protocol::envelope::{
    ConsentRef, Envelope, Receipt, ReceiptStatus, NO_REDISCLOSURE_NOTICE,
};
use tsunagi_protocol::fetch::{encode_chain, parse_chain_fetch, parse_consent_fetch};
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::{DocType, OrgId, Purpose};
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";
const CLINIC: &str = "mi:1310000025";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 4000\nidle_timeout_ms = 3000\n";

fn org(s: &str) -> OrgId {
    s.parse().unwrap()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn count(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

fn kinds(f: &Federation, o: &str, kind: &str) -> usize {
    f.inbox(o).iter().filter(|e| e["kind"] == kind).count()
}

/// Restarts `o` with an empty store: it holds no consent at all (its credentials stay).
fn restart_empty(f: &mut Federation, o: &str) {
    f.kill(o);
    std::fs::remove_dir_all(&f.members[o].data).unwrap();
    f.start(o);
}

fn consent_delivered(f: &Federation, to: &[&str]) {
    f.wait_outbox(BUNKYO, 30, "consent delivered", |v| {
        to.iter().all(|o| {
            v.iter()
                .any(|e| e["to"] == *o && e["kind"] == "consent" && e["state"] == "delivered")
        })
    });
}

#[test]
fn a_receiver_without_the_consent_fetches_it_once_and_accepts() {
    let mut f = Federation::new("slim-fetch", &[BUNKYO, HOSPITAL, CLINIC], FAST);
    f.start(BUNKYO);
    f.start(HOSPITAL);
    f.record_consent("consent.json");
    consent_delivered(&f, &[HOSPITAL]);
    // The hospital's view of the consent as it arrived: what Bunkyo's envelopes to it name.
    let entry: Value = f
        .inbox(HOSPITAL)
        .into_iter()
        .find(|e| e["kind"] == "consent")
        .expect("consent received");
    let hospital_view = unhex(
        f.call(HOSPITAL, json!({"op": "inbox_bundle", "id": entry["id"]}))["bundle_hex"]
            .as_str()
            .unwrap(),
    );
    // The hospital loses everything it held (a new data directory): it has no consent now.
    restart_empty(&mut f, HOSPITAL);
    let send = |f: &Federation| {
        let r = f.call(
            BUNKYO,
            json!({"op": "send", "to": HOSPITAL, "purpose": "plan_implementation",
                   "form": fixture("support_plan.json")}),
        );
        let id = r["id"].as_str().expect("queued").to_owned();
        f.wait_outbox(BUNKYO, 30, "the plan delivered", |v| {
            v.iter().any(|e| e["id"] == id && e["state"] == "delivered")
        });
    };
    send(&f);
    assert_eq!(kinds(&f, HOSPITAL, "support_plan"), 1);
    let log = f.log(HOSPITAL);
    assert_eq!(
        count(&log, "consent view fetched from the sender"),
        1,
        "{log}"
    );
    // Bunkyo's signing chain, named by fingerprint in the batch head, was fetched as well:
    // once with the consent, once again after the hospital lost its store.
    assert_eq!(
        count(&log, "signer chain fetched from the sender"),
        2,
        "{log}"
    );
    assert_eq!(
        count(&f.log(BUNKYO), "consent view sent on the peer's fetch"),
        1
    );
    // The fetched view is the hospital's own copy now, also after a restart: the next envelope
    // names the same view and needs no fetch.
    f.kill(HOSPITAL);
    f.start(HOSPITAL);
    send(&f);
    assert_eq!(kinds(&f, HOSPITAL, "support_plan"), 2);
    assert_eq!(
        count(&f.log(HOSPITAL), "consent view fetched from the sender"),
        1
    );
    assert_eq!(
        count(&f.log(HOSPITAL), "signer chain fetched from the sender"),
        2
    );
    assert_eq!(
        count(&f.log(BUNKYO), "consent view sent on the peer's fetch"),
        1
    );

    // Bunkyo answers a fetch of that view to the hospital only: the clinic, asking for it over
    // its own mutual-TLS connection, gets nothing.
    let case: tsunagi_protocol::CaseId = "case-131059-2026-0007".parse().unwrap();
    let fetch = tsunagi_protocol::fetch::consent_fetch(
        &case,
        &tsunagi_protocol::cose::sha256(&hospital_view),
    );
    let ca_pem = f.dir.join("ca/ca.pem");
    let crl_pem = f.dir.join("ca/crl.pem");
    let tls_trust = Trust::from_files(&ca_pem, [&crl_pem]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ask_as = |o: &str| {
        let creds = Credentials::load(f.creds(o)).unwrap();
        rt.block_on(async {
            let t = Transport::bind(
                "127.0.0.1:0".parse().unwrap(),
                &creds,
                &tls_trust,
                TransportConfig::default(),
            )
            .unwrap();
            t.request(&org(BUNKYO), f.address(BUNKYO), &fetch).await
        })
        .unwrap()
    };
    assert!(
        ask_as(CLINIC).is_empty(),
        "another party's consent view leaked"
    );
    assert_eq!(ask_as(HOSPITAL), hospital_view);
}

#[test]
fn a_wrong_fetch_answer_is_refused_and_nothing_is_lost() {
    let mut f = Federation::new("slim-wrong", &[BUNKYO, HOSPITAL, CLINIC], FAST);
    f.start(BUNKYO);
    f.start(CLINIC);
    f.record_consent("consent.json");
    consent_delivered(&f, &[CLINIC]);
    // The clinic's view of the consent, as Bunkyo sent it (what a right answer is).
    let entry: Value = f
        .inbox(CLINIC)
        .into_iter()
        .find(|e| e["kind"] == "consent")
        .expect("consent received");
    let view_bytes = unhex(
        f.call(CLINIC, json!({"op": "inbox_bundle", "id": entry["id"]}))["bundle_hex"]
            .as_str()
            .unwrap(),
    );
    let view = DocBundle::from_bytes(&view_bytes, &Limits::default()).unwrap();
    let ca_pem = f.dir.join("ca/ca.pem");
    let crl_pem = f.dir.join("ca/crl.pem");
    let trust = tsunagi_certs::FederationTrust::from_files(&ca_pem, Some(&crl_pem)).unwrap();
    let now = tsunagi_gateway::files::now();
    let Some(Ok(record)) = view
        .verify(&trust, now, &Limits::default())
        .unwrap()
        .consent_view()
    else {
        panic!("not a consent")
    };
    f.kill(BUNKYO);
    restart_empty(&mut f, CLINIC);

    // The hospital (here: this test, with the hospital's credentials) sends the clinic an
    // opinion letter naming the clinic's view by digest, and answers the clinic's fetch.
    let hospital = Credentials::load(f.creds(HOSPITAL)).unwrap();
    let signer = Signer::from_pkcs8(
        hospital.signing_key.secret_pkcs8_der(),
        hospital.signing_chain.clone(),
    )
    .unwrap();
    let letter = DocBundle::sign(
        &Document::from_value(fixture("opinion_letter.json")).unwrap(),
        &signer,
        now,
        &mut SystemEntropy::new(),
    )
    .unwrap();
    let envelope = Envelope {
        msg_id: [5; 16],
        iat: now,
        exp: now.plus(3600),
        sender: org(HOSPITAL),
        aud: org(CLINIC),
        kind: DocType::OpinionLetter,
        purpose: Purpose::PlanCreation,
        case: record.subject.clone(),
        consent_ref: ConsentRef::to(&record, &view),
        doc: letter.doc.clone(),
        disclosures: letter.items.clone(),
        in_reply_to: None,
        notice: NO_REDISCLOSURE_NOTICE.into(),
        checkpoint: None,
    }
    .seal(&signer);
    // The clinic's receipt heads name its signing chain by fingerprint: the chain is public.
    let clinic_chain = Credentials::load(f.creds(CLINIC)).unwrap().signing_chain;
    let right = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let chain_right = Arc::new(AtomicBool::new(false));
    let chain_asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clinic_addr = f.address(CLINIC);
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
    {
        let (t, right, asked, good) = (
            as_hospital.clone(),
            right.clone(),
            asked.clone(),
            view_bytes.clone(),
        );
        let (chain_right, chain_asked) = (chain_right.clone(), chain_asked.clone());
        let good_chain = encode_chain(&hospital.signing_chain);
        // A wrong chain: the clinic's, whose leaf is not the fingerprint asked for.
        let wrong_chain = encode_chain(&Credentials::load(f.creds(CLINIC)).unwrap().signing_chain);
        // A wrong answer: another bundle (the letter), which does not hash to the digest.
        let wrong = letter.to_bytes();
        rt.spawn(async move {
            t.serve(move |m: InboundMessage| {
                let answer = match &m {
                    InboundMessage::Message { peer, bytes }
                        if *peer == org(CLINIC) && parse_consent_fetch(bytes).is_some() =>
                    {
                        asked.fetch_add(1, Ordering::SeqCst);
                        if right.load(Ordering::SeqCst) {
                            good.clone()
                        } else {
                            wrong.clone()
                        }
                    }
                    InboundMessage::Message { peer, bytes }
                        if *peer == org(CLINIC) && parse_chain_fetch(bytes).is_some() =>
                    {
                        chain_asked.fetch_add(1, Ordering::SeqCst);
                        if chain_right.load(Ordering::SeqCst) {
                            good_chain.clone()
                        } else {
                            wrong_chain.clone()
                        }
                    }
                    _ => Vec::new(),
                };
                async move { answer }
            })
            .await
        });
    }

    // Sends `bytes` to the clinic as the hospital; the clinic's reply.
    let send = |bytes: &[u8]| {
        rt.block_on(as_hospital.request(&org(CLINIC), clinic_addr, bytes))
            .unwrap()
    };
    // The reply to `sent` is the clinic's signed receipt, accepting it.
    let assert_accepted = |reply: &[u8], sent: &[u8]| {
        let receipt = Receipt::verify_resolving(
            reply,
            sent,
            &org(CLINIC),
            &trust,
            tsunagi_gateway::files::now(),
            &Limits::default(),
            None,
            &|_| Some(clinic_chain.clone()),
        )
        .unwrap();
        assert_eq!(receipt.status, ReceiptStatus::Accepted, "{receipt:?}");
    };

    // 1. The wrong answer: no receipt (the sender would retry), nothing stored.
    let reply = send(&envelope);
    assert!(
        reply.is_empty(),
        "a wrong fetch answer must not produce a receipt"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the clinic asked back");
    assert_eq!(kinds(&f, CLINIC, "opinion_letter"), 0);
    assert!(
        f.log(CLINIC).contains("consent_digest_mismatch"),
        "{}",
        f.log(CLINIC)
    );

    // 2. The same envelope again, answered right: accepted and stored once.
    right.store(true, Ordering::SeqCst);
    let reply = send(&envelope);
    assert_accepted(&reply, &envelope);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(kinds(&f, CLINIC, "opinion_letter"), 1);
    // 3. A replay gets the stored receipt without a fetch.
    let again = send(&envelope);
    assert_eq!(again, reply);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(kinds(&f, CLINIC, "opinion_letter"), 1);

    // 4. An envelope whose batch head names the hospital's signing chain by fingerprint only
    // (as gateways seal them): a wrong chain answer gets no receipt and stores nothing; the
    // right one lets it through, and the chain is kept for the next.
    let mut second = Envelope::parse_unverified(&envelope, &Limits::default()).unwrap();
    second.msg_id = [6; 16];
    let by_kid = |e: &Envelope| {
        tsunagi_protocol::batch::seal_by_kid(
            &signer,
            tsunagi_protocol::cose::TYP_ENVELOPE,
            &[e.body()],
        )
        .pop()
        .unwrap()
    };
    let slim = by_kid(&second);
    let reply = send(&slim);
    assert!(
        reply.is_empty(),
        "a wrong chain answer must not produce a receipt"
    );
    assert_eq!(chain_asked.load(Ordering::SeqCst), 1);
    assert!(f.log(CLINIC).contains("chain_fingerprint_mismatch"));
    assert_eq!(kinds(&f, CLINIC, "opinion_letter"), 1);
    chain_right.store(true, Ordering::SeqCst);
    let reply = send(&slim);
    assert_accepted(&reply, &slim);
    assert_eq!(chain_asked.load(Ordering::SeqCst), 2);
    assert_eq!(kinds(&f, CLINIC, "opinion_letter"), 2);
    // The clinic keeps the chain (and its own copy of the consent): no fetch for the next one.
    let mut third = second.clone();
    third.msg_id = [7; 16];
    // ... and its document names the author's chain by fingerprint too (as gateways send it).
    assert!(third.strip_document_chain().is_some());
    let reply = send(&by_kid(&third));
    assert!(!reply.is_empty());
    assert_eq!(chain_asked.load(Ordering::SeqCst), 2);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(kinds(&f, CLINIC, "opinion_letter"), 3);
    // What the clinic hands on is the document exactly as the author signed it, chain included.
    let stored: Vec<Value> = f
        .inbox(CLINIC)
        .into_iter()
        .filter(|e| e["kind"] == "opinion_letter")
        .collect();
    for e in &stored {
        let bundle = unhex(
            f.call(CLINIC, json!({"op": "inbox_bundle", "id": e["id"]}))["bundle_hex"]
                .as_str()
                .unwrap(),
        );
        let bundle = DocBundle::from_bytes(&bundle, &Limits::default()).unwrap();
        assert_eq!(bundle.doc, letter.doc);
    }
}
