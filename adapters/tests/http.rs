//! The local HTTP API against real gateway processes, through a real TCP listener.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::{json, Value};
use tsunagi_adapters::http::{self, HttpApi, ServeError};
use tsunagi_tests::{fixture, Federation};

const CLINIC: &str = "mi:1310000025";
const CASE: &str = "case-131059-2026-0007";

/// Serves the API for `org` on a free loopback port; returns the address and the token.
fn serve(rt: &tokio::runtime::Runtime, f: &Federation, org: &str) -> (SocketAddr, String) {
    let token_file = f.dir.join(format!("{}.token", org.replace(':', "_")));
    let server = rt
        .block_on(http::bind(
            "127.0.0.1:0".parse().unwrap(),
            f.socket(org),
            &token_file,
        ))
        .expect("bind");
    let addr = server.local_addr();
    rt.spawn(server.run());
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    (addr, token)
}

struct Api<'a> {
    rt: &'a tokio::runtime::Runtime,
    addr: SocketAddr,
    token: String,
}

impl Api<'_> {
    fn get(&self, path: &str) -> Answer {
        self.rt
            .block_on(request(self.addr, "GET", path, Some(&self.token), None))
    }
    fn post(&self, path: &str, body: &Value) -> Answer {
        self.rt.block_on(request(
            self.addr,
            "POST",
            path,
            Some(&self.token),
            Some(body),
        ))
    }
}

fn expect_error(a: &Answer, status: u16, field: Option<&str>, contains: &str) {
    assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/json"));
    let v = a.json();
    let err = v["error"].as_str().expect("an error message");
    assert!(err.contains(contains), "{err:?} lacks {contains:?}");
    match field {
        Some(f) => assert_eq!(v["field"], f, "{v}"),
        None => assert!(v.get("field").is_none(), "{v}"),
    }
}

#[test]
fn documents_are_sent_listed_received_and_refused_with_reasons() {
    let mut f = Federation::new("http", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["kind"] == "consent" && e["state"] == "delivered")
    });
    let rt = runtime();
    let (addr, token) = serve(&rt, &f, HOSPITAL);
    let hospital = Api {
        rt: &rt,
        addr,
        token,
    };

    // /health answers without a token.
    let a = rt.block_on(request(addr, "GET", "/health", None, None));
    assert_eq!((a.status, a.json()["status"].clone()), (200, json!("ok")));

    // No token, a wrong token: 401, even for a path that does not exist.
    for (token, says) in [
        (None, "authentication required"),
        (Some("0".repeat(64)), "wrong"),
        (Some(String::new()), "Bearer <token>"),
    ] {
        for path in ["/v1/outbox", "/v1/nothing-here"] {
            let a = rt.block_on(request(addr, "GET", path, token.as_deref(), None));
            expect_error(&a, 401, Some("Authorization"), says);
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        }
    }

    // A form: 202 with the outbox entry; it is listed and reaches Bunkyo.
    let letter = fixture("opinion_letter.json");
    let a = hospital.post(
        "/v1/documents",
        &json!({"to": BUNKYO, "purpose": "plan_creation", "form": letter}),
    );
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    let entry = a.json();
    let id = entry["id"].as_str().unwrap().to_owned();
    assert_eq!(entry["to"], BUNKYO);
    assert_eq!(entry["kind"], "opinion_letter");
    let list = hospital.get("/v1/outbox");
    assert_eq!(list.status, 200);
    assert!(list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["id"] == id.as_str()));
    // One case's entries, only the newest: a page, not the whole outbox. A second letter is
    // the newest.
    let again = hospital.post(
        "/v1/documents",
        &json!({"to": BUNKYO, "purpose": "plan_creation", "form": fixture("opinion_letter.json")}),
    );
    assert_eq!(
        again.status,
        202,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    let second = again.json()["id"].as_str().unwrap().to_owned();
    let all = hospital.get(&format!("/v1/outbox?case={CASE}")).json();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let page = hospital.get(&format!("/v1/outbox?case={CASE}&limit=1"));
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let page = page.json();
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 1, "{page:?}");
    assert_eq!(page[0]["id"], second.as_str());
    let none = hospital.get("/v1/outbox?case=case-131059-2026-0999");
    assert_eq!(none.json(), json!([]));
    let bad = hospital.get("/v1/inbox?case=no%20such%20case");
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
    assert_eq!(bad.json()["field"], "case");
    let bad = hospital.get("/v1/outbox?limit=all");
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("case=…&limit=N"),
        "{}",
        String::from_utf8_lossy(&bad.body)
    );
    let one = hospital.get(&format!("/v1/outbox/{id}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], id.as_str());
    f.wait_outbox(HOSPITAL, 30, "the letter delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });

    // Bunkyo's API shows it: listed, disclosed fields, and the bundle as CBOR.
    let (baddr, btoken) = serve(&rt, &f, BUNKYO);
    let bunkyo = Api {
        rt: &rt,
        addr: baddr,
        token: btoken,
    };
    let inbox = bunkyo.get("/v1/inbox");
    assert_eq!(inbox.status, 200);
    assert!(inbox
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["id"] == id.as_str()));
    let shown = bunkyo.get(&format!("/v1/inbox/{id}"));
    assert_eq!(shown.status, 200);
    let shown = shown.json();
    assert_eq!(shown["document"]["person"]["name"], "鈴木 一郎");
    assert!(shown["notice"].is_string());
    let bundle = bunkyo.get(&format!("/v1/inbox/{id}/bundle"));
    assert_eq!(bundle.status, 200);
    assert_eq!(bundle.header("content-type"), Some("application/cbor"));
    let expected = f.call(BUNKYO, json!({"op": "inbox_bundle", "id": id}));
    assert_eq!(
        hex::encode(&bundle.body),
        expected["bundle_hex"].as_str().unwrap()
    );

    // Forwarding the received bundle (base64 and hex) to the clinic: queued.
    for (field, value) in [
        ("bundle_base64", base64(&bundle.body)),
        ("bundle_hex", hex::encode(&bundle.body)),
    ] {
        let a = bunkyo.post(
            "/v1/documents",
            &json!({"to": CLINIC, "purpose": "plan_implementation", field: value}),
        );
        assert_eq!(
            a.status,
            202,
            "{field}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json()["to"], CLINIC);
    }

    // Bad input: 400 naming the field, before anything reaches the gateway.
    let mut bad = fixture("needs_assessment.json");
    bad["items"]["F1"]["staff"] = 3.into();
    let cases = [
        (
            json!({"to": "lg:131058", "purpose": "plan_creation", "form": letter}),
            "to",
            "check digit",
        ),
        (
            json!({"to": BUNKYO, "purpose": "gossip", "form": letter}),
            "purpose",
            "not a purpose",
        ),
        (json!({"to": BUNKYO, "form": letter}), "purpose", "missing"),
        (
            json!({"to": BUNKYO, "purpose": "plan_creation", "form": bad}),
            "form.items.F1.staff",
            "not a rating",
        ),
        (
            json!({"to": BUNKYO, "purpose": "plan_creation"}),
            "form",
            "missing",
        ),
        (
            json!({"to": BUNKYO, "purpose": "plan_creation", "form": letter, "bundle_hex": "00"}),
            "bundle_hex",
            "only one",
        ),
        (
            json!({"to": BUNKYO, "purpose": "plan_creation", "bundle_hex": "zz"}),
            "bundle_hex",
            "not hex",
        ),
        (
            json!({"to": BUNKYO, "purpose": "plan_creation", "bundle_base64": "AAAA"}),
            "bundle_base64",
            "not a signed document",
        ),
        (
            json!({"to": BUNKYO, "purpose": "plan_creation", "form": letter, "recipient": BUNKYO}),
            "recipient",
            "unknown field",
        ),
        (
            json!({"to": 131059, "purpose": "plan_creation", "form": letter}),
            "to",
            "expected a string",
        ),
    ];
    for (body, field, says) in cases {
        let a = hospital.post("/v1/documents", &body);
        expect_error(&a, 400, Some(field), says);
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{}",
            a.json()
        );
    }
    // The form's author must be this gateway: the gateway says so, and the field is named.
    let a = bunkyo.post(
        "/v1/documents",
        &json!({"to": HOSPITAL, "purpose": "plan_creation", "form": letter}),
    );
    expect_error(&a, 400, Some("form.author"), "author");
    let a = rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = "{not json";
        let req = format!(
            "POST /v1/documents HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            hospital.token,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    });
    assert!(
        a.starts_with("HTTP/1.1 400") && a.contains("not JSON"),
        "{a}"
    );

    // The police: refused by the consent gate, 422 with the reason; nothing queued.
    let a = hospital.post(
        "/v1/documents",
        &json!({"to": POLICE, "purpose": "plan_creation", "form": letter}),
    );
    expect_error(&a, 422, None, "R6");
    assert!(hospital
        .get("/v1/outbox")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["to"] != POLICE));

    // Unknown ids: 404; malformed ids: 400 naming the id.
    let zero = "0".repeat(32);
    expect_error(
        &hospital.get(&format!("/v1/outbox/{zero}")),
        404,
        None,
        "no outbox entry",
    );
    expect_error(
        &hospital.get(&format!("/v1/inbox/{zero}")),
        404,
        None,
        "no inbox entry",
    );
    expect_error(
        &hospital.get(&format!("/v1/inbox/{zero}/bundle")),
        404,
        None,
        "no",
    );
    expect_error(
        &hospital.get("/v1/outbox/xyz"),
        400,
        Some("id"),
        "message id",
    );
    expect_error(&hospital.get("/v1/nothing-here"), 404, None, "no endpoint");
    let a = rt.block_on(request(
        addr,
        "DELETE",
        "/v1/outbox",
        Some(&hospital.token),
        None,
    ));
    expect_error(&a, 405, None, "does not take DELETE");

    // An idempotency key chosen by the caller.
    let with_ref = json!({"to": BUNKYO, "purpose": "plan_creation", "form": letter, "client_ref": "ehr:letter-0007"});
    let one = hospital.post("/v1/documents", &with_ref);
    assert_eq!(one.status, 202, "{}", String::from_utf8_lossy(&one.body));
    let two = hospital.post("/v1/documents", &with_ref);
    assert_eq!(two.status, 202);
    assert_eq!(
        one.json()["id"],
        two.json()["id"],
        "the gateway deduplicates by client_ref"
    );
    expect_error(
        &hospital.post(
            "/v1/documents",
            &json!({"to": BUNKYO, "purpose": "plan_creation", "form": letter, "client_ref": "has space"}),
        ),
        400,
        Some("client_ref"),
        "printable",
    );
}

#[test]
fn consents_round_trip_and_residence_changes_and_audit_are_proxied() {
    // The hospital is a member but its gateway stays down: what Bunkyo sends it waits.
    let mut f = Federation::new("http-consent", &[BUNKYO, HOSPITAL], "");
    f.start(BUNKYO);
    let rt = runtime();
    let (addr, token) = serve(&rt, &f, BUNKYO);
    let bunkyo = Api {
        rt: &rt,
        addr,
        token,
    };

    let mut bad = fixture("consent.json");
    bad["police"]["allowed"] = "no".into();
    expect_error(
        &bunkyo.post("/v1/consents", &bad),
        400,
        Some("police.allowed"),
        "",
    );
    expect_error(
        &bunkyo.post("/v1/consents", &fixture("opinion_letter.json")),
        400,
        Some("document_type"),
        "expected consent",
    );

    let a = bunkyo.post("/v1/consents", &fixture("consent.json"));
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    assert_eq!(v["id"], "consent-131059-2026-0007");
    assert_eq!(v["version"], 1);
    assert!(!v["queued"].as_array().unwrap().is_empty(), "{v}");
    // The same version again conflicts with the recorded one.
    expect_error(
        &bunkyo.post("/v1/consents", &fixture("consent.json")),
        409,
        None,
        "not newer",
    );

    // Residence change: Bunkyo authored the plan (sent to the hospital), so it drafts Form 7
    // for Setagaya, which waits for a consent that covers the transfer.
    let plan = json!({"to": HOSPITAL, "purpose": "plan_implementation", "form": fixture("support_plan.json")});
    let a = bunkyo.post("/v1/documents", &plan);
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    let a = bunkyo.post("/v1/residence-changes", &fixture("residence_change.json"));
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    assert_eq!(v["destination"], "lg:131121", "{v}");
    assert_eq!(v["transfer"]["state"], "awaiting_consent", "{v}");
    let mut bad = fixture("residence_change.json");
    bad["new_municipality"] = "131122".into();
    let a = bunkyo.post("/v1/residence-changes", &bad);
    expect_error(&a, 400, Some("new_municipality"), "");

    // Subject access (pending likewise).
    let a = bunkyo.get(&format!("/v1/cases/{CASE}/audit"));
    {
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert!(
            a.json().to_string().contains("consent_recorded"),
            "{}",
            a.json()
        );
    }
    expect_error(
        &bunkyo.get("/v1/cases/Suzuki/audit"),
        400,
        Some("case"),
        "case id",
    );

    // Withdrawal: recorded; a second one conflicts; an unknown consent is 404.
    let a = bunkyo.post("/v1/consents/consent-131059-2026-0007/withdraw", &json!({}));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["status"], "withdrawn");
    let audit = f.call(BUNKYO, json!({"op": "audit"}));
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["event"] == "consent_recorded" && r["status"] == "withdrawn"));
    expect_error(
        &bunkyo.post("/v1/consents/consent-131059-2026-0007/withdraw", &json!({})),
        409,
        None,
        "already withdrawn",
    );
    expect_error(
        &bunkyo.post("/v1/consents/consent-none/withdraw", &json!({})),
        404,
        None,
        "no consent",
    );
}

#[test]
fn unsafe_setups_are_refused_and_a_dead_gateway_is_502() {
    let dir = std::env::temp_dir().join(format!("tsunagi-http-setup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rt = runtime();
    let sock = dir.join("no-gateway.sock");
    let token_file = dir.join("api.token");

    for addr in ["0.0.0.0:7480", "192.0.2.1:7480", "[::]:7480"] {
        let err = rt
            .block_on(http::bind(addr.parse().unwrap(), &sock, &token_file))
            .err()
            .expect("refused");
        assert!(matches!(err, ServeError::NotLoopback(_)), "{err}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
    assert!(
        !token_file.exists(),
        "nothing is created before the address is checked"
    );

    // Missing: created 0600 with 32 random bytes in hex.
    let server = rt
        .block_on(http::bind(
            "127.0.0.1:0".parse().unwrap(),
            &sock,
            &token_file,
        ))
        .expect("bind");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let addr = server.local_addr();
    rt.spawn(server.run());
    // The gateway is not running: 502 saying so.
    let a = rt.block_on(request(addr, "GET", "/v1/outbox", Some(&token), None));
    expect_error(&a, 502, None, "control socket");
    // /health needs no token, and says the gateway does not answer.
    let a = rt.block_on(request(addr, "GET", "/health", None, None));
    assert_eq!(a.status, 503, "{:?}", a.json());
    assert_eq!(a.json()["status"], "unavailable");

    // Readable by others: refused with the chmod hint.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = rt
        .block_on(http::bind(
            "127.0.0.1:0".parse().unwrap(),
            &sock,
            &token_file,
        ))
        .err()
        .expect("refused");
    assert!(
        matches!(err, ServeError::Token(_)) && err.to_string().contains("chmod 600"),
        "{err}"
    );
    // Too short a token.
    let short = dir.join("short.token");
    std::fs::write(&short, "secret\n").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = http::read_token_file(&short).unwrap_err();
    assert!(err.to_string().contains("at least 32"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reused_client_ref_is_409_and_post_bodies_must_be_json() {
    let mut f = Federation::new("http-ref", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["kind"] == "consent" && e["state"] == "delivered")
    });
    let rt = runtime();
    let (addr, token) = serve(&rt, &f, HOSPITAL);
    let api = Api {
        rt: &rt,
        addr,
        token: token.clone(),
    };
    let letter = fixture("opinion_letter.json");
    let send = |form: &Value, purpose: &str| {
        api.post(
            "/v1/documents",
            &json!({"to": BUNKYO, "purpose": purpose, "form": form, "client_ref": "ehr:letter-0007"}),
        )
    };
    let first = send(&letter, "plan_creation");
    assert_eq!(
        first.status,
        202,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let id = first.json()["id"].as_str().unwrap().to_owned();
    // The same request again: the entry queued then.
    let again = send(&letter, "plan_creation");
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["id"], id.as_str());

    // The same key with another request: 409 naming both, never their contents.
    let mut other_director = letter.clone();
    other_director["hospital"]["director"] = "院長 別人 太郎".into();
    for (form, purpose, this_one) in [
        (
            fixture("needs_assessment.json"),
            "plan_creation",
            "this one is needs_assessment to lg:131059 for plan_creation;",
        ),
        (
            letter.clone(),
            "plan_implementation",
            "this one is opinion_letter to lg:131059 for plan_implementation;",
        ),
        (
            other_director,
            "plan_creation",
            "this one is opinion_letter to lg:131059 for plan_creation with other contents",
        ),
    ] {
        let a = send(&form, purpose);
        expect_error(
            &a,
            409,
            None,
            "client_ref was already used for another request",
        );
        let err = a.json()["error"].as_str().unwrap().to_owned();
        assert!(
            err.contains(&format!(
                "the earlier one was opinion_letter to lg:131059 for plan_creation (queued as {id})"
            )) && err.contains(this_one),
            "{err}"
        );
        for personal in ["鈴木", "木村", "別人", "ehr:letter-0007"] {
            assert!(!err.contains(personal), "{err}");
        }
    }
    let queued = |kind: &str| {
        f.call(HOSPITAL, json!({"op": "outbox_list"}))
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .count()
    };
    assert_eq!(queued("opinion_letter"), 1);
    assert_eq!(queued("needs_assessment"), 0);

    // POST bodies must be declared JSON: 415, and nothing reaches the gateway.
    let body = json!({"to": BUNKYO, "purpose": "plan_creation", "form": letter}).to_string();
    for (content_type, says) in [
        (Some("text/plain"), "Content-Type \"text/plain\""),
        (
            Some("application/x-www-form-urlencoded"),
            "Content-Type \"application/x-www-form-urlencoded\"",
        ),
        (None, "no Content-Type"),
    ] {
        for path in ["/v1/documents", "/v1/consents", "/v1/residence-changes"] {
            let a = rt.block_on(request_raw(
                addr,
                "POST",
                path,
                Some(&token),
                content_type,
                &body,
            ));
            expect_error(&a, 415, Some("Content-Type"), says);
            assert!(
                a.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("application/json"),
                "{}",
                String::from_utf8_lossy(&a.body)
            );
        }
    }
    assert_eq!(queued("opinion_letter"), 1);
    // A charset parameter is fine.
    let a = rt.block_on(request_raw(
        addr,
        "POST",
        "/v1/documents",
        Some(&token),
        Some("application/json; charset=utf-8"),
        &body,
    ));
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    // A withdrawal takes no body and needs no Content-Type; with a text body it is 415.
    let a = rt.block_on(request_raw(
        addr,
        "POST",
        "/v1/consents/consent-none/withdraw",
        Some(&token),
        None,
        "",
    ));
    assert_eq!(a.status, 404, "{}", String::from_utf8_lossy(&a.body));
    let a = rt.block_on(request_raw(
        addr,
        "POST",
        "/v1/consents/consent-none/withdraw",
        Some(&token),
        Some("text/plain"),
        "x",
    ));
    expect_error(&a, 415, Some("Content-Type"), "text/plain");
}

/// Every route the router serves is described in openapi.yaml, and the document describes no
/// route the router lacks.
#[test]
fn openapi_describes_every_route() {
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml"))
        .unwrap();
    assert!(yaml.starts_with("openapi: 3.0"), "an OpenAPI 3.0 document");
    // The `paths:` section: paths at two spaces, methods at four.
    let mut documented: Vec<(String, String)> = vec![];
    let mut in_paths = false;
    let mut path = String::new();
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end_matches(':'));
        } else if let Some(m) = line.strip_prefix("    ") {
            let m = m.trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete"].contains(&m) {
                documented.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    let mut routed: Vec<(String, String)> = HttpApi::routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    routed.sort();
    documented.sort();
    assert_eq!(routed, documented);
    for needed in ["bearerAuth", "Error:", "\"401\":", "\"422\":", "\"502\":"] {
        assert!(yaml.contains(needed), "openapi.yaml lacks {needed}");
    }
}
