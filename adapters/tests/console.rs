//! The staff console against real gateway processes, over real TCP: accounts and lock-out,
//! CSRF, roles, idle expiry, Japanese validation messages that keep what was typed, escaping of
//! every free-text field, the recipient's view of a received plan, and the staff id in the
//! gateway's audit chain.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;
use tsunagi_adapters::console::{self, accounts, accounts::Role, ConsoleError};
use tsunagi_tests::{fixture, Federation};

const NPO: &str = "ot:npo-komorebi";
const CASE: &str = "case-131059-2026-0007";
const XSS: &str = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>";

/// A browser of one console: its cookie and the CSRF token of the last page.
struct Browser<'a> {
    rt: &'a tokio::runtime::Runtime,
    addr: SocketAddr,
    cookie: Option<String>,
    csrf: String,
}

struct Page {
    status: u16,
    location: Option<String>,
    text: String,
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl<'a> Browser<'a> {
    fn new(rt: &'a tokio::runtime::Runtime, addr: SocketAddr) -> Self {
        Browser {
            rt,
            addr,
            cookie: None,
            csrf: String::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, body: &str) -> Page {
        let cookie = self.cookie.as_ref().map(|c| format!("tsunagi_console={c}"));
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = &cookie {
            h.push(("Cookie", c));
        }
        if method == "POST" {
            h.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let a = self
            .rt
            .block_on(request_headers(self.addr, method, path, &h, body));
        for (k, v) in &a.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                assert!(
                    v.contains("HttpOnly") && v.contains("SameSite=Strict"),
                    "{v}"
                );
                let token = v.split(';').next().unwrap().split_once('=').unwrap().1;
                self.cookie = Some(token.to_owned());
            }
        }
        let csp = a.header("content-security-policy").unwrap_or("");
        assert!(csp.contains("default-src 'none'"), "{path}: CSP {csp:?}");
        let text = String::from_utf8_lossy(&a.body).into_owned();
        if let Some(i) = text.find("name=\"csrf\" value=\"") {
            let rest = &text[i + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Page {
            status: a.status,
            location: a.header("location").map(str::to_owned),
            text,
        }
    }

    fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, "")
    }

    /// Posts `fields` with the CSRF token of the last page.
    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut f = vec![("csrf", self.csrf.clone())];
        f.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = form(&pairs);
        self.send("POST", path, &body)
    }

    fn login(&mut self, id: &str, password: &str) -> Page {
        let p = self.get("/login");
        assert_eq!(p.status, 200);
        self.post("/login", &[("id", id), ("password", password)])
    }
}

fn users(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("console-users.json");
    for (id, role) in [
        ("viewer1", Role::Viewer),
        ("clerk1", Role::Clerk),
        ("approver1", Role::Approver),
        ("admin1", Role::Admin),
    ] {
        accounts::add_user(&path, id, role, &format!("{id} long password"), None).unwrap();
    }
    path
}

fn serve(
    rt: &tokio::runtime::Runtime,
    f: &Federation,
    org: &str,
    users: &Path,
    idle: Duration,
) -> SocketAddr {
    let members = vec![
        ("lg:131059".parse().unwrap(), "文京区 文京保健所".to_owned()),
        (NPO.parse().unwrap(), "NPO法人こもれび".to_owned()),
    ];
    let server = rt
        .block_on(console::bind(console::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            socket: f.socket(org),
            users: users.to_owned(),
            tls: None,
            idle,
            members,
            data_dir: None,
        }))
        .expect("bind");
    let addr = server.local_addr();
    rt.spawn(server.run());
    addr
}

fn staff_actions(f: &Federation, org: &str) -> Vec<(String, String)> {
    f.call(org, json!({"op": "audit"}))
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "staff_action")
        .map(|r| {
            (
                r["staff"].as_str().unwrap().to_owned(),
                r["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The fixture assessment as a hospital clerk fills in the form (its `self` ratings, notes and
/// Form 6 columns included).
fn assessment_fields() -> Vec<(String, String)> {
    let d = fixture("needs_assessment.json");
    let mut f: Vec<(String, String)> = vec![
        ("to".into(), BUNKYO.into()),
        ("action".into(), "send".into()),
    ];
    for k in [
        "subject",
        "assessed_on",
        "physician",
        "discharge_counsellor",
        "opinion",
    ] {
        f.push((k.into(), d[k].as_str().unwrap().into()));
    }
    f.push((
        "person_name".into(),
        d["person"]["name"].as_str().unwrap().into(),
    ));
    f.push((
        "person_sex".into(),
        d["person"]["sex"].as_str().unwrap().into(),
    ));
    f.push(("person_age".into(), d["person"]["age"].to_string()));
    for (code, v) in d["items"].as_object().unwrap() {
        f.push((format!("{code}_staff"), v["staff"].to_string()));
        if let Some(n) = v["self"].as_u64() {
            f.push((format!("{code}_self"), n.to_string()));
        }
        f.push((format!("{code}_note"), v["note"].as_str().unwrap().into()));
    }
    for (dom, v) in d["summary"].as_object().unwrap() {
        match v {
            serde_json::Value::String(s) => f.push((format!("summary_{dom}"), s.clone())),
            serde_json::Value::Object(m) => {
                for (c, s) in m {
                    f.push((format!("summary_{dom}_{c}"), s.as_str().unwrap().into()));
                }
            }
            _ => {}
        }
    }
    f
}

fn consent_fields(grantor: &str, recorded_by: &str) -> Vec<(&'static str, String)> {
    vec![
        ("id", "consent-131059-2026-0007".into()),
        ("version", "1".into()),
        ("subject", CASE.into()),
        ("date", "2026-10-05".into()),
        ("grantor", grantor.into()),
        ("recorded_by", recorded_by.into()),
        ("period_from", "2026-10-05".into()),
        ("period_to", "2027-05-31".into()),
        ("purposes", "plan_creation".into()),
        ("purposes", "plan_implementation".into()),
        ("doc_types", "support_plan".into()),
        ("recipients", "lg:131059".into()),
        ("recipients", NPO.into()),
        ("police_refused", "yes".into()),
        ("action", "record".into()),
    ]
}

fn borrow<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

#[test]
fn staff_log_in_record_consent_and_read_the_recipients_view() {
    let mut f = Federation::new("console", &[BUNKYO, NPO], "");
    f.start_all();
    let users = users(&f.dir);
    let rt = runtime();
    let bunkyo = serve(&rt, &f, BUNKYO, &users, Duration::from_secs(600));
    let npo = serve(&rt, &f, NPO, &users, Duration::from_secs(600));

    // Health needs no login; every page does.
    let mut b = Browser::new(&rt, bunkyo);
    let p = b.get("/health");
    assert_eq!((p.status, p.text.as_str()), (200, "ok"));
    let p = b.get("/cases");
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/login")));

    // A login without the form's CSRF token is refused; a wrong password is one message.
    b.get("/login");
    let p = b.send(
        "POST",
        "/login",
        &form(&[("id", "clerk1"), ("password", "clerk1 long password")]),
    );
    assert_eq!(p.status, 403, "{}", p.text);
    assert!(p.text.contains("送信を受け付けられません"));
    let p = b.login("clerk1", "wrong password");
    assert_eq!(p.status, 401);
    assert!(
        p.text.contains("職員IDまたはパスワードが違います"),
        "{}",
        p.text
    );
    let p = b.login("nobody", "wrong password");
    assert!(p.text.contains("職員IDまたはパスワードが違います"));

    // Lock-out after five failures, even against the right password.
    let mut v = Browser::new(&rt, bunkyo);
    for _ in 0..accounts::MAX_FAILURES {
        v.login("viewer1", "not the password");
    }
    let p = v.login("viewer1", "viewer1 long password");
    assert_eq!(p.status, 401);
    assert!(p.text.contains("ロックされています"), "{}", p.text);

    // The clerk logs in: a new session cookie, the cases page in Japanese.
    let before = b.cookie.clone();
    let p = b.login("clerk1", "clerk1 long password");
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/cases")));
    assert_ne!(b.cookie, before, "a login starts a new session");
    let p = b.get("/cases");
    assert_eq!(p.status, 200);
    assert!(p.text.contains("<html lang=\"ja\">") && p.text.contains("事例一覧"));

    // The consent form: wrong fields get Japanese messages beside them, and what was typed
    // (hostile text included, escaped) is still there.
    let p = b.get("/consents/new");
    assert_eq!(p.status, 200);
    assert!(p.text.contains("本人の同意の記録"));
    let p = b.post(
        "/consents/new",
        &[
            ("id", "consent-1"),
            ("version", "1"),
            ("subject", "鈴木"),
            ("date", "2026-02-30"),
            ("grantor", XSS),
            ("recorded_by", XSS),
            ("action", "record"),
        ],
    );
    assert_eq!(p.status, 400, "{}", p.text);
    assert!(
        p.text.contains("事例の仮名は「case-」で始まる"),
        "{}",
        p.text
    );
    assert!(p.text.contains("同意日は年-月-日"));
    assert!(p.text.contains("同意した目的を一つ以上選んでください"));
    assert!(
        p.text.contains("value=\"consent-1\""),
        "typed values are kept"
    );
    assert!(!p.text.contains("<script>alert"), "unescaped: {}", p.text);
    assert!(!p.text.contains("<img src=x"), "unescaped");
    assert!(p.text.contains("&lt;script&gt;"));

    // A draft is kept for the next visit.
    let p = b.post(
        "/consents/new",
        &[("id", "draft-kept"), ("action", "draft")],
    );
    assert!(p.text.contains("下書きを保存しました"));
    let p = b.get("/consents/new");
    assert!(p.text.contains("value=\"draft-kept\"") && p.text.contains("保存した下書き"));

    // A post with a stale or missing token is refused and records nothing.
    let fields = consent_fields("本人", "保健師 田中");
    let body = form(&borrow(&fields));
    let p = b.send("POST", "/consents/new", &format!("csrf=0000&{body}"));
    assert_eq!(p.status, 403);
    let p = b.send("POST", "/consents/new", &body);
    assert_eq!(p.status, 403);
    assert!(staff_actions(&f, BUNKYO).is_empty());

    // Recorded: the gateway sends it, and its audit chain names the clerk.
    b.get("/consents/new");
    let p = b.post("/consents/new", &borrow(&fields));
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("同意を記録しました"), "{}", p.text);
    assert_eq!(
        staff_actions(&f, BUNKYO),
        vec![("clerk1".to_owned(), "consent_record".to_owned())]
    );
    f.wait_outbox(BUNKYO, 30, "consent delivered to the NPO", |v| {
        v.iter()
            .any(|e| e["to"] == NPO && e["kind"] == "consent" && e["state"] == "delivered")
    });
    // The outbox says it in Japanese with Japan dates and the recipient's name.
    let p = b.get("/outbox");
    assert!(
        p.text.contains("配達済み") && p.text.contains("NPO法人こもれび"),
        "{}",
        p.text
    );
    assert!(p.text.contains("年") && p.text.contains("受領:"));

    // A plan whose free text is hostile goes to the NPO.
    let mut plan = fixture("support_plan.json");
    plan["wishes"] = XSS.into();
    plan["policy_if_discontinued"] = XSS.into();
    f.call(
        BUNKYO,
        json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": plan}),
    );
    f.wait_outbox(BUNKYO, 30, "plan delivered to the NPO", |v| {
        v.iter()
            .any(|e| e["to"] == NPO && e["kind"] == "support_plan" && e["state"] == "delivered")
    });

    // At the NPO: a viewer sees the list but cannot open documents.
    let mut nv = Browser::new(&rt, npo);
    assert_eq!(nv.login("admin1", "admin1 long password").status, 303);
    let mut nview = Browser::new(&rt, npo);
    nview.login("viewer1", "viewer1 long password");
    let p = nview.get("/inbox");
    assert_eq!(p.status, 200);
    assert!(
        p.text.contains("様式1・2 退院後支援に関する計画"),
        "{}",
        p.text
    );
    let plan_id = f
        .inbox(NPO)
        .iter()
        .find(|e| e["kind"] == "support_plan")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = nview.get(&format!("/inbox/{plan_id}"));
    assert_eq!(p.status, 403);
    assert!(p.text.contains("「担当者」以上の権限"), "{}", p.text);

    // The NPO's clerk reads the plan in the NPO's view: no diagnosis, and says what was
    // withheld; the hostile text is shown as text.
    let mut nc = Browser::new(&rt, npo);
    nc.login("clerk1", "clerk1 long password");
    let p = nc.get(&format!("/inbox/{plan_id}"));
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("退院後支援に関する計画"));
    assert!(
        p.text.contains("文京区 文京保健所"),
        "the verified author by name"
    );
    assert!(p.text.contains("この機関に開示されなかった項目"));
    assert!(p.text.contains("病名"), "the withheld diagnosis is named");
    assert!(
        !p.text.contains("統合失調症"),
        "the diagnosis itself is not shown"
    );
    assert!(!p.text.contains("<script>alert") && !p.text.contains("<img src=x"));
    assert!(p.text.contains("&lt;script&gt;"));
    assert!(p.text.contains("@page{size:A4"), "printable on A4");
    assert!(
        p.text
            .contains(tsunagi_protocol::envelope::NO_REDISCLOSURE_NOTICE),
        "the no-redisclosure notice is printed with it"
    );
    assert_eq!(
        staff_actions(&f, NPO),
        vec![("clerk1".to_owned(), "inbox_show".to_owned())]
    );

    // The case as a FHIR R4 bundle for hospital systems, validated by an independent
    // implementation (fhir.resources).
    let p = nc.get(&format!("/cases/{CASE}/fhir.json"));
    assert_eq!(p.status, 200);
    assert!(
        !p.text.contains("統合失調症"),
        "the export holds only what was disclosed"
    );
    let file = f.dir.join("bundle.json");
    std::fs::write(&file, &p.text).unwrap();
    let python = tsunagi_tests::repo().join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(tsunagi_tests::repo().join("scripts/interop/check_fhir.py"))
        .arg(&file)
        .args(["Patient", "Consent", "CarePlan"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup-test-deps", python.display()));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("valid FHIR 4.0.1 Bundle"), "{said}");

    // The support end notice goes to the NPO (a notice to a party that took part), and the
    // trail names the clerk who sent it.
    b.get("/support-ends/new");
    let p = b.post(
        "/support-ends/new",
        &[
            ("to", NPO),
            ("subject", CASE),
            ("ended_on", "2027-04-30"),
            ("outcome", "completed"),
            ("note", "期間満了"),
            ("action", "send"),
        ],
    );
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("支援の終了を通知しました"));
    assert!(staff_actions(&f, BUNKYO).contains(&("clerk1".to_owned(), "send".to_owned())));

    // Roles: a clerk may not withdraw a consent or see the operations page.
    let p = b.get(&format!("/cases/{CASE}"));
    assert_eq!(p.status, 200);
    assert!(p.text.contains("同意を記録") && p.text.contains("consent-131059-2026-0007"));
    assert!(
        !p.text.contains("同意の撤回を記録する"),
        "no button for a clerk"
    );
    let p = b.post("/consents/withdraw", &[("id", "consent-131059-2026-0007")]);
    assert_eq!(p.status, 403);
    assert!(p.text.contains("「承認者」以上"));
    assert_eq!(b.get("/ops").status, 403);
    assert_eq!(b.get("/stats.csv").status, 403);

    // The admin sees the operations page and exports statistics.
    let mut a = Browser::new(&rt, bunkyo);
    a.login("admin1", "admin1 long password");
    let p = a.get("/ops");
    assert_eq!(p.status, 200, "{}", p.text);
    for s in [
        "運用状況",
        "送信の滞留",
        "TLS証明書",
        "参加機関名簿",
        "NPO法人こもれび",
    ] {
        assert!(p.text.contains(s), "ops page lacks {s}: {}", p.text);
    }
    // The counts are the gateway's own (its status), and agree with its outbox once nothing is
    // on its way.
    f.wait_outbox(BUNKYO, 30, "every envelope final", |v| {
        v.iter()
            .all(|e| !matches!(e["state"].as_str(), Some("queued" | "retry_wait")))
    });
    let delivered = f
        .call(BUNKYO, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "delivered")
        .count();
    let p = a.get("/ops");
    let shown: usize = p
        .text
        .split("<td>配達済み</td><td class=\"num\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no delivered count on the ops page: {}", p.text));
    assert!(delivered > 0);
    assert_eq!(shown, delivered, "delivered shown, and in the outbox");
    let p = a.get("/stats.csv");
    assert_eq!(p.status, 200);
    assert!(p.text.starts_with("key,value\r\n"), "{}", p.text);

    // The approver records the withdrawal.
    let mut ap = Browser::new(&rt, bunkyo);
    ap.login("approver1", "approver1 long password");
    let p = ap.get(&format!("/cases/{CASE}"));
    assert!(p.text.contains("同意の撤回を記録する"));
    // The case's own documents each way, whatever the outbox and inbox pages leave out.
    assert!(
        p.text.contains("<h2>送信文書</h2>")
            && p.text.contains("<h2>受信文書</h2>")
            && p.text.contains("配達済み"),
        "{}",
        p.text
    );
    let p = ap.post("/consents/withdraw", &[("id", "consent-131059-2026-0007")]);
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("同意の撤回を記録しました"));
    let actions = staff_actions(&f, BUNKYO);
    assert!(actions.contains(&("approver1".to_owned(), "consent_withdraw".to_owned())));
    // The disclosure page prints.
    let p = b.get(&format!("/cases/{CASE}/disclosure"));
    assert_eq!(p.status, 200);

    // Logging out ends the session.
    let p = ap.post("/logout", &[]);
    assert_eq!(p.status, 303);
    assert_eq!(ap.get("/cases").location.as_deref(), Some("/login"));
}

#[test]
fn sessions_expire_when_idle_and_tls_is_required_off_loopback() {
    let mut f = Federation::new("console-idle", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    let users = users(&f.dir);
    let rt = runtime();

    // The hospital's clerk fills in the needs assessment (様式5・6) and sends it to Bunkyo,
    // where it arrives with its ratings table.
    f.record_consent("consent.json");
    let members = vec![
        (BUNKYO.parse().unwrap(), "文京区 文京保健所".to_owned()),
        (HOSPITAL.parse().unwrap(), "都立松風病院".to_owned()),
    ];
    let hospital_addr = {
        let server = rt
            .block_on(console::bind(console::Options {
                listen: "127.0.0.1:0".parse().unwrap(),
                socket: f.socket(HOSPITAL),
                users: users.clone(),
                tls: None,
                idle: Duration::from_secs(600),
                members,
                data_dir: None,
            }))
            .expect("bind");
        let a = server.local_addr();
        rt.spawn(server.run());
        a
    };
    // A page whose own name was re-pointed at 127.0.0.1 (DNS rebinding) sends that name as
    // its Host: refused before any page. A loopback name is served.
    for (host, served) in [
        ("evil.example", false),
        ("evil.example:80", false),
        ("localhost", true),
        ("[::1]:8080", true),
    ] {
        let answer = rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(hospital_addr).await.unwrap();
            s.write_all(
                format!("GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8_lossy(&out).into_owned()
        });
        assert_eq!(
            answer.starts_with("HTTP/1.1 200"),
            served,
            "Host {host}: {answer}"
        );
        if !served {
            assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
        }
    }
    let mut h = Browser::new(&rt, hospital_addr);
    h.login("clerk1", "clerk1 long password");
    let p = h.get("/assessments/new");
    assert_eq!(p.status, 200);
    assert!(p.text.contains("様式5 評価項目") && p.text.contains("金銭管理"));
    let fields = assessment_fields();
    let mut missing: Vec<(&str, &str)> = fields
        .iter()
        .filter(|(k, _)| k != "B6_staff")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let p = h.post("/assessments/new", &missing);
    assert_eq!(p.status, 400);
    assert!(
        p.text.contains("金銭管理の職員評価を選んでください"),
        "{}",
        p.text
    );
    missing.push(("B6_staff", "2"));
    let p = h.post("/assessments/new", &missing);
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("アセスメントを送付しました"));
    // The same form again (a retry after a partial failure, a double click): queued once.
    h.get("/assessments/new");
    let p = h.post("/assessments/new", &missing);
    assert_eq!(p.status, 200, "{}", p.text);
    let queued = f.call(HOSPITAL, json!({"op": "outbox_list"}));
    let assessments = queued
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "needs_assessment")
        .count();
    assert_eq!(assessments, 1, "{queued}");
    let got = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = f
                .inbox(BUNKYO)
                .into_iter()
                .find(|e| e["kind"] == "needs_assessment")
            {
                break e;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the assessment did not arrive"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The opinion letter form (様式3・4) is there too; wrong input gets Japanese messages.
    let p = h.get("/opinions/new");
    assert_eq!(p.status, 200);
    assert!(p.text.contains("計画に係る意見書（様式3・4）"));
    let p = h.post(
        "/opinions/new",
        &[
            ("subject", CASE),
            ("person_municipality", "1"),
            ("action", "send"),
        ],
    );
    assert_eq!(p.status, 400);
    assert!(p.text.contains("市区町村コードは6桁") && p.text.contains("送付先を一つ以上"));
    let shown = f.call(BUNKYO, json!({"op": "inbox_show", "id": got["id"]}));
    assert_eq!(shown["document"]["items"]["B6"]["staff"], 2);
    assert_eq!(shown["document"]["institution"], "都立松風病院");
    let addr = serve(&rt, &f, BUNKYO, &users, Duration::from_millis(1500));
    let mut b = Browser::new(&rt, addr);
    b.login("clerk1", "clerk1 long password");
    assert_eq!(b.get("/cases").status, 200);
    std::thread::sleep(Duration::from_millis(2000));
    let p = b.get("/cases");
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/login")));

    // Bunkyo's export of the case holds the hospital's assessment as a QuestionnaireResponse
    // with every rated item, valid FHIR R4.
    b.login("clerk1", "clerk1 long password");
    let p = b.get(&format!("/cases/{CASE}/fhir.json"));
    assert_eq!(p.status, 200);
    let bundle: serde_json::Value = serde_json::from_str(&p.text).unwrap();
    let qr = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "QuestionnaireResponse")
        .expect("the assessment as a QuestionnaireResponse");
    assert_eq!(qr["resource"]["item"].as_array().unwrap().len(), 26);
    assert_eq!(qr["resource"]["meta"]["security"][0]["code"], "NORDSCLCD");
    assert_eq!(
        qr["resource"]["meta"]["security"][0]["display"],
        tsunagi_protocol::envelope::NO_REDISCLOSURE_NOTICE,
        "the no-redisclosure notice travels with the resource"
    );
    let file = f.dir.join("bundle.json");
    std::fs::write(&file, &p.text).unwrap();
    let out = std::process::Command::new(tsunagi_tests::repo().join(".venv/bin/python"))
        .arg(tsunagi_tests::repo().join("scripts/interop/check_fhir.py"))
        .arg(&file)
        .args(["Patient", "QuestionnaireResponse"])
        .output()
        .expect("run scripts/setup-test-deps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let err = rt
        .block_on(console::bind(console::Options {
            listen: "0.0.0.0:0".parse().unwrap(),
            socket: f.socket(BUNKYO),
            users: users.clone(),
            tls: None,
            idle: Duration::from_secs(60),
            members: Vec::new(),
            data_dir: None,
        }))
        .err()
        .expect("refused");
    assert!(matches!(err, ConsoleError::NeedsTls(_)), "{err}");
    assert!(err.to_string().contains("--tls-cert"), "{err}");

    // With a certificate and key it serves TLS, and its cookies are Secure.
    let creds = f.members[BUNKYO].config.with_file_name("creds");
    let server = rt
        .block_on(console::bind(console::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            socket: f.socket(BUNKYO),
            users: users.clone(),
            tls: Some((creds.join("tls.pem"), creds.join("tls.key"))),
            idle: Duration::from_secs(60),
            members: Vec::new(),
            data_dir: None,
        }))
        .expect("bind with TLS");
    assert!(server.is_tls());
    let addr = server.local_addr();
    rt.spawn(server.run());
    let answer = rt.block_on(tls_get(addr, &f.dir.join("ca/ca.pem"), "/login"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP to the TLS port gets no page.
    let plain = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s
            .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(12), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(
        !plain.contains("HTTP/1.1 200"),
        "plain HTTP was served: {plain}"
    );
}

/// GET `path` over TLS, trusting the CA certificate at `ca`; the answer's head and body.
async fn tls_get(addr: SocketAddr, ca: &Path, path: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The names of the free-text fields (text inputs and text areas) of a form page.
fn free_text_fields(html: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (start, _) in html.match_indices('<') {
        let tag = &html[start..];
        let end = tag.find('>').unwrap_or(tag.len());
        let tag = &tag[..end];
        let text = tag.starts_with("<input") && tag.contains("type=\"text\"");
        if !(text || tag.starts_with("<textarea")) {
            continue;
        }
        if let Some(i) = tag.find(" name=\"") {
            let rest = &tag[i + 7..];
            let name = &rest[..rest.find('"').unwrap()];
            names.push(name.to_owned());
        }
    }
    names
}

/// What `text` shows of the hostile string: escaped only.
fn assert_escaped(text: &str, what: &str) {
    for raw in [
        "<script>alert(1)</script>",
        "<img src=x onerror",
        "\"'><img",
    ] {
        assert!(!text.contains(raw), "{what}: unescaped {raw:?}");
    }
}

const HOSTILE: &str = "<script>alert(1)</script>\"'><img src=x onerror=alert(1)>";

#[test]
fn every_free_text_field_of_every_form_is_shown_escaped() {
    let mut f = Federation::new("console-xss", &[BUNKYO, NPO], FAST);
    f.start_all();
    f.record_consent("consent.json");
    let users = users(&f.dir);
    let rt = runtime();
    let addr = serve(&rt, &f, BUNKYO, &users, Duration::from_secs(600));
    let mut b = Browser::new(&rt, addr);
    b.login("clerk1", "clerk1 long password");
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    for path in [
        "/consents/new",
        "/plans/new",
        "/opinions/new",
        "/assessments/new",
        "/relocations/new",
        "/support-ends/new",
        "/meetings/new",
        "/extensions/new",
    ] {
        let p = b.get(path);
        assert_eq!(p.status, 200, "{path}");
        let fields = free_text_fields(&p.text);
        assert!(!fields.is_empty(), "{path} has no free-text field");
        // Every free-text field hostile: the form comes back with its messages and every value
        // shown as text.
        let mut typed: Vec<(&str, &str)> = fields.iter().map(|n| (n.as_str(), HOSTILE)).collect();
        typed.push(("action", "send"));
        let p = b.post(path, &typed);
        assert_eq!(p.status, 400, "{path}: {}", p.text);
        assert_escaped(&p.text, path);
        let shown = p.text.matches(escaped).count();
        assert!(
            shown >= fields.len(),
            "{path}: {shown} of {} fields shown again: {fields:?}",
            fields.len()
        );
    }
    // Sent with hostile free text, a meeting record is shown escaped in the outbox and in the
    // recipient's inbox.
    let p = b.get("/meetings/new");
    assert_eq!(p.status, 200);
    let fields = [
        ("subject", CASE),
        ("held_on", "2027-04-10"),
        ("plan_version", "1"),
        ("family_attended", HOSTILE),
        ("absent", NPO),
        ("agenda", HOSTILE),
        ("minutes", HOSTILE),
        ("decisions", HOSTILE),
        ("undertaking_1", "2026-10-20"),
        ("action", "send"),
    ];
    let p = b.post("/meetings/new", &fields);
    assert_eq!(p.status, 200, "{}", p.text);
    f.wait_outbox(BUNKYO, 30, "the meeting record delivered", |v| {
        v.iter()
            .any(|e| e["kind"] == "meeting_record" && e["state"] == "delivered")
    });
    assert_escaped(&b.get("/outbox").text, "outbox");
    let npo = serve(&rt, &f, NPO, &users, Duration::from_secs(600));
    let mut n = Browser::new(&rt, npo);
    n.login("clerk1", "clerk1 long password");
    let id = f
        .inbox(NPO)
        .into_iter()
        .find(|e| e["kind"] == "meeting_record")
        .expect("the NPO got the record")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = n.get(&format!("/inbox/{id}"));
    assert_eq!(p.status, 200, "{}", p.text);
    assert_escaped(&p.text, "inbox");
    assert!(p.text.matches(escaped).count() >= 4, "{}", p.text);
}

#[test]
fn a_new_password_another_role_or_a_removed_account_ends_its_sessions_at_once() {
    let mut f = Federation::new("console-accounts", &[BUNKYO], "");
    f.start(BUNKYO);
    let users = users(&f.dir);
    let rt = runtime();
    let addr = serve(&rt, &f, BUNKYO, &users, Duration::from_secs(600));
    let login = |id: &str, password: &str| {
        let mut b = Browser::new(&rt, addr);
        assert_eq!(b.login(id, password).status, 303, "{id} logs in");
        assert_eq!(b.get("/outbox").status, 200);
        b
    };
    let ended = |b: &mut Browser| {
        let p = b.get("/outbox");
        assert_eq!((p.status, p.location.as_deref()), (303, Some("/login")));
    };
    // The admin sets a new password (a leaked one, say): the session of the old one ends, and
    // the old password no longer logs in; the new one does.
    let mut clerk = login("clerk1", "clerk1 long password");
    accounts::add_user(&users, "clerk1", Role::Clerk, "clerk1 new password", None).unwrap();
    ended(&mut clerk);
    let mut again = Browser::new(&rt, addr);
    assert_eq!(again.login("clerk1", "clerk1 long password").status, 401);
    let mut clerk = login("clerk1", "clerk1 new password");
    // Demoted to viewer: the clerk's session ends; logged in again, the viewer may not cancel.
    accounts::add_user(&users, "clerk1", Role::Viewer, "clerk1 new password", None).unwrap();
    ended(&mut clerk);
    let mut viewer = login("clerk1", "clerk1 new password");
    assert_eq!(viewer.post("/outbox/cancel", &[("id", "00")]).status, 403);
    // Removed: ended, and no login.
    accounts::remove_user(&users, "clerk1").unwrap();
    ended(&mut viewer);
    assert_eq!(
        Browser::new(&rt, addr)
            .login("clerk1", "clerk1 new password")
            .status,
        401
    );
    // Other accounts go on.
    let mut admin = login("admin1", "admin1 long password");
    assert_eq!(admin.get("/ops").status, 200);
    // An account file that no longer reads (exposed to other accounts): nobody is let in.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    ended(&mut admin);
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    login("admin1", "admin1 long password");
}

#[test]
fn only_an_approver_releases_or_stops_a_form_7_waiting_for_consent() {
    const SETAGAYA: &str = "lg:131121";
    let mut f = Federation::new("console-form7", &[BUNKYO, SETAGAYA], FAST);
    f.start_all();
    f.record_consent("consent.json");
    f.call(
        BUNKYO,
        json!({"op": "distribute", "form": fixture("support_plan.json")}),
    );
    // The move to Setagaya: consent v1 does not cover it, so its Form 7 waits.
    let report = f.dir.join("residence_change.json");
    std::fs::write(&report, fixture("residence_change.json").to_string()).unwrap();
    let out = f.cli(BUNKYO, &["residence-change", report.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let waiting = f.wait_outbox(BUNKYO, 10, "the Form 7 waiting", |v| {
        v.iter()
            .any(|e| e["kind"] == "transfer_notice" && e["state"] == "awaiting_consent")
    });
    let id = waiting
        .iter()
        .find(|e| e["kind"] == "transfer_notice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = users(&f.dir);
    let rt = runtime();
    let addr = serve(&rt, &f, BUNKYO, &users, Duration::from_secs(600));
    let state =
        |f: &Federation| f.call(BUNKYO, json!({"op": "outbox_show", "id": id}))["state"].clone();

    // The clerk can neither stop it nor release it by recording a consent version.
    let mut clerk = Browser::new(&rt, addr);
    clerk.login("clerk1", "clerk1 long password");
    clerk.get("/outbox");
    let p = clerk.post("/outbox/cancel", &[("id", &id)]);
    assert_eq!(p.status, 403, "{}", p.text);
    assert!(p.text.contains("「承認者」以上"), "{}", p.text);
    clerk.get("/consents/new");
    let mut v2 = consent_fields("鈴木 一郎", "保健師 田中");
    v2[1].1 = "2".into();
    v2.push(("purposes", "relocation_transfer".into()));
    v2.push(("doc_types", "transfer_notice".into()));
    v2.push(("recipients", SETAGAYA.into()));
    let p = clerk.post("/consents/new", &borrow(&v2));
    assert_eq!(p.status, 403, "{}", p.text);
    assert!(
        p.text.contains("様式7") && p.text.contains("承認者"),
        "{}",
        p.text
    );
    assert_eq!(state(&f), "awaiting_consent");

    // The approver may stop it.
    let mut approver = Browser::new(&rt, addr);
    approver.login("approver1", "approver1 long password");
    approver.get("/outbox");
    let p = approver.post("/outbox/cancel", &[("id", &id)]);
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(state(&f), "cancelled");
    // With nothing waiting, the clerk records consent versions again (this console's
    // directory names Bunkyo and the NPO only).
    v2.retain(|(k, v)| !(*k == "recipients" && v == SETAGAYA));
    clerk.get("/consents/new");
    let p = clerk.post("/consents/new", &borrow(&v2));
    assert_eq!(p.status, 200, "{}", p.text);
}

#[test]
fn a_clerk_cancels_an_envelope_not_sent_yet_from_the_outbox() {
    let mut f = Federation::new("console-cancel", &[BUNKYO, NPO], FAST);
    // The NPO is down: the plan waits to retry.
    f.start(BUNKYO);
    f.record_consent("consent.json");
    let sent = f.call(
        BUNKYO,
        json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": fixture("support_plan.json")}),
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    f.wait_outbox(BUNKYO, 30, "the plan retrying", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "retry_wait")
    });
    let users = users(&f.dir);
    let rt = runtime();
    let addr = serve(&rt, &f, BUNKYO, &users, Duration::from_secs(600));

    // A viewer sees the state but no button, and may not cancel.
    let mut v = Browser::new(&rt, addr);
    v.login("viewer1", "viewer1 long password");
    let p = v.get("/outbox");
    assert!(p.text.contains("再送待ち") && !p.text.contains("送信を取り消す"));
    let p = v.post("/outbox/cancel", &[("id", &id)]);
    assert_eq!(p.status, 403);

    // The clerk has the button; without the form's token nothing happens.
    let mut b = Browser::new(&rt, addr);
    b.login("clerk1", "clerk1 long password");
    let p = b.get("/outbox");
    assert!(p.text.contains("送信を取り消す"), "{}", p.text);
    assert!(p.text.contains(&format!("name=\"id\" value=\"{id}\"")));
    let p = b.send("POST", "/outbox/cancel", &form(&[("id", &id)]));
    assert_eq!(p.status, 403);
    assert_eq!(
        f.call(BUNKYO, json!({"op": "outbox_show", "id": id}))["state"],
        "retry_wait"
    );
    b.get("/outbox");
    let p = b.post("/outbox/cancel", &[("id", &id)]);
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("送信を取り消しました"), "{}", p.text);
    assert!(p.text.contains("取消し"), "the state in Japanese");
    assert!(!p.text.contains(&format!("name=\"id\" value=\"{id}\"")));
    assert_eq!(
        f.call(BUNKYO, json!({"op": "outbox_show", "id": id}))["state"],
        "cancelled"
    );
    // The audit chain names the clerk.
    let audit = f.call(BUNKYO, json!({"op": "audit"}));
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["event"] == "cancelled" && r["staff"] == "clerk1" && r["id"] == id.as_str()));
    // Twice: refused, in Japanese.
    let p = b.post("/outbox/cancel", &[("id", &id)]);
    assert_eq!(p.status, 409, "{}", p.text);
    assert!(p.text.contains("取り消せません"), "{}", p.text);

    // From the case's page, a cancel returns to the case's page.
    let again = f.call(
        BUNKYO,
        json!({"op": "send", "to": NPO, "purpose": "plan_implementation", "form": fixture("support_plan.json")}),
    );
    let again = again["id"].as_str().unwrap().to_owned();
    f.wait_outbox(BUNKYO, 30, "the second plan retrying", |v| {
        v.iter()
            .any(|e| e["id"] == again.as_str() && e["state"] == "retry_wait")
    });
    let p = b.get(&format!("/cases/{CASE}"));
    assert!(
        p.text.contains(&format!("name=\"id\" value=\"{again}\""))
            && p.text.contains(&format!("name=\"back\" value=\"{CASE}\"")),
        "{}",
        p.text
    );
    let p = b.post("/outbox/cancel", &[("id", &again), ("back", CASE)]);
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(
        p.text.contains(&format!("<h1>事例 {CASE}</h1>"))
            && p.text.contains("送信を取り消しました"),
        "{}",
        p.text
    );
    assert_eq!(
        f.call(BUNKYO, json!({"op": "outbox_show", "id": again}))["state"],
        "cancelled"
    );
    // A `back` that is not a case id is not followed: the outbox page.
    let p = b.post("/outbox/cancel", &[("id", &again), ("back", "../admin")]);
    assert_eq!(p.status, 409, "{}", p.text);
    assert!(p.text.contains("<h1>送信文書</h1>"), "{}", p.text);
}

#[test]
fn meeting_records_and_extensions_go_through_the_gateway() {
    let mut f = Federation::new("console-course", &[BUNKYO, NPO], FAST);
    f.start_all();
    f.record_consent("consent.json");
    // Plan version 1, made here, is current.
    f.call(
        BUNKYO,
        json!({"op": "distribute", "form": fixture("support_plan.json")}),
    );
    let users = users(&f.dir);
    let rt = runtime();
    let addr = serve(&rt, &f, BUNKYO, &users, Duration::from_secs(600));
    let mut b = Browser::new(&rt, addr);
    b.login("clerk1", "clerk1 long password");

    // The meeting record: what is missing gets its message, what was typed stays.
    let p = b.get("/meetings/new");
    assert_eq!(p.status, 200);
    for label in [
        "開催日",
        "開催者",
        "出席者（本人・家族・関係者）",
        "欠席者",
        "議題",
        "議事の概要",
        "秘密保持の同意（書面）",
    ] {
        assert!(p.text.contains(label), "the meeting form lacks {label}");
    }
    let mut meeting = vec![
        ("subject", CASE),
        ("held_on", "2027-04-10"),
        ("plan_version", "1"),
        ("person_attended", "yes"),
        ("family_attended", "母"),
        ("absent", NPO),
        ("agenda", "支援期間の延長"),
        ("decisions", "支援期間を2027-05-31まで延長する。"),
        ("extension_to", "2027-05-31"),
        ("action", "send"),
    ];
    let p = b.post("/meetings/new", &meeting);
    assert_eq!(p.status, 400, "{}", p.text);
    assert!(
        p.text.contains("議事の概要を入力してください"),
        "{}",
        p.text
    );
    assert!(
        p.text.contains("NPO法人こもれびは公的機関ではないため"),
        "{}",
        p.text
    );
    assert!(
        p.text.contains(">支援期間の延長</textarea>"),
        "typed text kept"
    );
    meeting.push((
        "minutes",
        "本人は就労の準備にもう少し時間がほしいと話した。",
    ));
    meeting.push(("undertaking_1", "2026-10-20"));
    let p = b.post("/meetings/new", &meeting);
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("支援会議の記録を送付しました") && p.text.contains("NPO法人こもれび"));
    f.wait_outbox(BUNKYO, 30, "the meeting record delivered", |v| {
        v.iter()
            .any(|e| e["kind"] == "meeting_record" && e["state"] == "delivered")
    });

    // The extension: a meeting that did not decide it is refused beside its field, with what
    // was typed kept; the right one goes as plan version 2.
    let p = b.get("/extensions/new");
    assert_eq!(p.status, 200);
    for label in [
        "延長後の期間の終了日",
        "延長の理由",
        "会議の記録",
        "本人の同意",
    ] {
        assert!(p.text.contains(label), "the extension form lacks {label}");
    }
    let mut ext = vec![
        ("subject", CASE),
        ("made_on", "2027-04-12"),
        ("extension_to", "2027-05-31"),
        ("reason", "就労支援の調整を続けるため"),
        ("meeting_on", "2027-04-11"),
        ("consent_version", "1"),
        ("consented_on", "2027-04-10"),
        ("action", "send"),
    ];
    let p = b.post("/extensions/new", &ext);
    assert_eq!(p.status, 422, "{}", p.text);
    assert!(
        p.text.contains("支援会議の記録が送受信されていません"),
        "{}",
        p.text
    );
    assert!(p.text.contains("value=\"2027-04-11\""), "typed values kept");
    assert!(p.text.contains(">就労支援の調整を続けるため</textarea>"));
    ext[4] = ("meeting_on", "2027-04-10");
    let p = b.post("/extensions/new", &ext);
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(
        p.text.contains("支援期間の延長を送付しました"),
        "{}",
        p.text
    );
    let actions = staff_actions(&f, BUNKYO);
    assert!(actions.contains(&("clerk1".to_owned(), "distribute".to_owned())));
    assert!(actions.contains(&("clerk1".to_owned(), "plan_current".to_owned())));
    let v2 = f.wait_outbox(BUNKYO, 30, "plan version 2 delivered", |v| {
        v.iter()
            .filter(|e| e["kind"] == "support_plan" && e["to"] == NPO && e["state"] == "delivered")
            .count()
            == 2
    });
    assert!(!v2.is_empty());

    // At the NPO both print in Japanese.
    let npo = serve(&rt, &f, NPO, &users, Duration::from_secs(600));
    let mut n = Browser::new(&rt, npo);
    n.login("clerk1", "clerk1 long password");
    let inbox = f.inbox(NPO);
    let meeting_id = inbox
        .iter()
        .find(|e| e["kind"] == "meeting_record")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = n.get(&format!("/inbox/{meeting_id}"));
    assert_eq!(p.status, 200);
    for s in [
        "開催日",
        "議事の概要",
        "2027年4月10日",
        "秘密保持の同意（書面）",
        "文京区 文京保健所（lg:131059）",
        "NPO法人こもれび（ot:npo-komorebi）",
        "@page{size:A4",
    ] {
        assert!(
            p.text.contains(s),
            "the meeting record lacks {s}: {}",
            p.text
        );
    }
    let mut plans: Vec<String> = inbox
        .iter()
        .filter(|e| e["kind"] == "support_plan")
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    plans.retain(|id| {
        f.call(NPO, json!({"op": "inbox_show", "id": id}))["document"]["version"] == 2
    });
    let p = n.get(&format!("/inbox/{}", plans[0]));
    assert_eq!(p.status, 200);
    for s in [
        "支援期間の延長",
        "延長後の期間の終了日",
        "2027年5月31日",
        "就労支援の調整を続けるため",
    ] {
        assert!(
            p.text.contains(s),
            "the extended plan lacks {s}: {}",
            p.text
        );
    }
}

#[test]
fn sessions_and_drafts_survive_a_restart() {
    use std::os::unix::fs::MetadataExt;
    let mut f = Federation::new("console-restart", &[BUNKYO, NPO], "");
    f.start(BUNKYO);
    let users = users(&f.dir);
    let data = f.dir.join("console-data");
    let rt = runtime();
    let start = || {
        let server = rt
            .block_on(console::bind(console::Options {
                listen: "127.0.0.1:0".parse().unwrap(),
                socket: f.socket(BUNKYO),
                users: users.clone(),
                tls: None,
                idle: Duration::from_secs(3),
                members: vec![(NPO.parse().unwrap(), "NPO法人こもれび".to_owned())],
                data_dir: Some(data.clone()),
            }))
            .expect("bind");
        let addr = server.local_addr();
        (addr, rt.spawn(server.run()))
    };
    let (addr, first) = start();
    let mut b = Browser::new(&rt, addr);
    b.login("clerk1", "clerk1 long password");
    b.get("/meetings/new");
    let p = b.post(
        "/meetings/new",
        &[("minutes", "鈴木さんの会議メモ"), ("action", "draft")],
    );
    assert!(p.text.contains("下書きを保存しました"), "{}", p.text);
    // The data directory is private and holds neither the token nor the draft in clear.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for file in ["console.key", "sessions.sealed", "drafts.sealed"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        let raw = String::from_utf8_lossy(&std::fs::read(data.join(file)).unwrap()).into_owned();
        assert!(!raw.contains(b.cookie.as_deref().unwrap()), "{file}");
        assert!(!raw.contains("鈴木") && !raw.contains("clerk1"), "{file}");
    }

    // Restart: the same cookie still works, the CSRF token too, and the draft is there.
    first.abort();
    let (addr, _second) = start();
    b.addr = addr;
    let p = b.get("/meetings/new");
    assert_eq!(p.status, 200, "the session survived the restart");
    assert!(p.text.contains("鈴木さんの会議メモ") && p.text.contains("保存した下書き"));
    let p = b.post("/meetings/new", &[("minutes", "更新"), ("action", "draft")]);
    assert!(p.text.contains("下書きを保存しました"));
    // Until idle expiry.
    std::thread::sleep(Duration::from_millis(3500));
    let p = b.get("/cases");
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/login")));
}
