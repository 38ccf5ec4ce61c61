//! Two prefectures, each with its own CA and its own signed directory, recognising each other by
//! cross-certificate, set up with the `tsunagi` command as operators would: Bunkyo (Tokyo) sends
//! Form 7 to Yokohama (Kanagawa) when the person moves there; a directory claiming another
//! prefecture's organisation, or listing an address no gateway can reach, is refused when signed
//! or when the gateway starts; revoking the cross-certificate ends the recognition. After the
//! move Yokohama takes the case over (its own consent and plan for the remaining period), Bunkyo
//! ends its part and is refused further sharing, and Yokohama's information request is answered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi_protocol::testkit::{DIRECTORY_TOML, KANAGAWA_CASE_0007, KANAGAWA_DIRECTORY_TOML};
use tsunagi_tests::{fixture, tsunagi_bin};

const BUNKYO: &str = "lg:131059";
const YOKOHAMA: &str = "lg:141003";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(tsunagi_bin()).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ok(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("tsunagi {args:?}: {e}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two prefectures on loopback: their CAs, cross-certificates, directories and one gateway each.
struct Two {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    children: Vec<Child>,
}

impl Drop for Two {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("TSUNAGI_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Two {
    fn new(name: &str) -> Two {
        let dir = std::env::temp_dir().join(format!(
            "tsunagi-it-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = |x: &str| dir.join(x);
        // Each prefecture its own CA; each recognises the other by cross-certificate.
        ok(&[
            "certs",
            "init-ca",
            "--dir",
            s(&p("tokyo-ca")),
            "--name",
            "Tokyo CA",
        ]);
        ok(&[
            "certs",
            "init-ca",
            "--dir",
            s(&p("kanagawa-ca")),
            "--name",
            "Kanagawa CA",
        ]);
        let out = ok(&[
            "certs",
            "cross-sign",
            "--ca",
            s(&p("tokyo-ca")),
            "--other",
            s(&p("kanagawa-ca/ca.pem")),
            "--prefecture",
            "lg:140007",
            "--out",
            s(&p("tokyo-recognises-kanagawa.pem")),
        ]);
        assert!(out.contains("now recognises"), "{out}");
        ok(&[
            "certs",
            "cross-sign",
            "--ca",
            s(&p("kanagawa-ca")),
            "--other",
            s(&p("tokyo-ca/ca.pem")),
            "--prefecture",
            "lg:130001",
            "--out",
            s(&p("kanagawa-recognises-tokyo.pem")),
        ]);
        // Each prefecture signs its own directory, with the two gateways on free ports.
        let bunkyo_addr = format!("127.0.0.1:{}", free_port());
        let yokohama_addr = format!("127.0.0.1:{}", free_port());
        std::fs::write(
            p("tokyo.toml"),
            DIRECTORY_TOML.replace("127.0.0.1:7402", &bunkyo_addr),
        )
        .unwrap();
        std::fs::write(
            p("kanagawa.toml"),
            KANAGAWA_DIRECTORY_TOML.replace("127.0.0.1:7412", &yokohama_addr),
        )
        .unwrap();
        ok(&[
            "directory",
            "sign",
            "--ca",
            s(&p("tokyo-ca")),
            s(&p("tokyo.toml")),
            "--out",
            s(&p("tokyo.cose")),
        ]);
        ok(&[
            "directory",
            "sign",
            "--ca",
            s(&p("kanagawa-ca")),
            s(&p("kanagawa.toml")),
            "--out",
            s(&p("kanagawa.cose")),
        ]);
        // One gateway each, issued by its own prefecture's CA.
        for (org, ca, host, addr, other, other_pref, other_ca) in [
            (
                BUNKYO,
                "tokyo",
                "bunkyo.example",
                &bunkyo_addr,
                "kanagawa",
                "lg:140007",
                "tokyo-recognises-kanagawa.pem",
            ),
            (
                YOKOHAMA,
                "kanagawa",
                "yokohama.example",
                &yokohama_addr,
                "tokyo",
                "lg:130001",
                "kanagawa-recognises-tokyo.pem",
            ),
        ] {
            let home = p(&org.replace(':', "_"));
            ok(&[
                "certs",
                "issue",
                "--ca",
                s(&p(&format!("{ca}-ca"))),
                "--org",
                org,
                "--host",
                host,
                "--out",
                s(&home.join("creds")),
            ]);
            std::fs::write(
                home.join("gateway.toml"),
                format!(
                    "org = \"{org}\"\nlisten = \"{addr}\"\ncredentials = \"creds\"\nca = \"../{ca}-ca/ca.pem\"\ncrl = \"../{ca}-ca/crl.pem\"\ndirectory = \"../{ca}.cose\"\ndata_dir = \"data\"\nmaster_key = \"master.key\"\n\n[[recognise]]\nprefecture = \"{other_pref}\"\ncross = \"../{other_ca}\"\ncrl = \"../{other}-ca/crl.pem\"\ndirectory = \"../{other}.cose\"\n\n{FAST}"
                ),
            )
            .unwrap();
        }
        Two {
            dir,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            children: Vec::new(),
        }
    }

    fn home(&self, org: &str) -> PathBuf {
        self.dir.join(org.replace(':', "_"))
    }

    fn log(&self, org: &str) -> String {
        std::fs::read_to_string(self.home(org).join("gateway.log")).unwrap_or_default()
    }

    /// Starts `org`'s gateway; `Err` with its log when it exits instead of coming up.
    fn start(&mut self, org: &str) -> Result<(), String> {
        let log = std::fs::File::create(self.home(org).join("gateway.log")).unwrap();
        let mut child = Command::new(tsunagi_bin())
            .args(["gateway", "run", "--config"])
            .arg(self.home(org).join("gateway.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.try_call(org, json!({"op": "status"})).is_ok() {
                self.children.push(child);
                return Ok(());
            }
            if child.try_wait().unwrap().is_some() {
                return Err(self.log(org));
            }
            assert!(
                Instant::now() < deadline,
                "{org} did not come up:\n{}",
                self.log(org)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_call(&self, org: &str, request: Value) -> Result<Value, String> {
        let sock = self.home(org).join("data/control.sock");
        self.rt
            .block_on(tsunagi_gateway::control::call(&sock, &request))
            .map_err(|e| e.to_string())
    }

    fn call(&self, org: &str, request: Value) -> Value {
        self.try_call(org, request.clone())
            .unwrap_or_else(|e| panic!("{org}: {request}: {e}\n{}", self.log(org)))
    }

    fn wait_outbox(&self, org: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.call(org, json!({"op": "outbox_list"}));
            if let Some(e) = list.as_array().unwrap().iter().find(|e| check(e)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{org}: timed out waiting for {what}: {list:#}\n{}",
                self.log(org)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Consent v2 of case 0007 with the transfer going to Yokohama instead of Setagaya.
fn consent_naming_yokohama() -> Value {
    let text = fixture("consent_v2_relocation.json")
        .to_string()
        .replace("lg:131121", YOKOHAMA);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn bunkyo_sends_form_7_to_yokohama_across_prefectures() {
    let mut two = Two::new("prefectures");
    two.start(BUNKYO).unwrap();
    two.start(YOKOHAMA).unwrap();

    two.call(
        BUNKYO,
        json!({"op": "consent_record", "record": fixture("consent.json")}),
    );
    // Bunkyo's plan (to the Tokyo government, co-author; its gateway is not part of this test).
    two.call(BUNKYO, json!({"op": "send", "to": "lg:130001", "purpose": "plan_creation", "form": fixture("support_plan.json")}));
    two.call(
        BUNKYO,
        json!({"op": "consent_record", "record": consent_naming_yokohama()}),
    );
    // The person moves to Yokohama: Kanagawa's directory names its health centre.
    let mut report = fixture("residence_change.json");
    report["new_municipality"] = json!("141003");
    report["new_address"] = json!("神奈川県横浜市中区港町一丁目1番地");
    let answer = two.call(BUNKYO, json!({"op": "residence_change", "report": report}));
    assert_eq!(answer["destination"], YOKOHAMA, "{answer}");
    let id = answer["transfer"]["id"].as_str().unwrap().to_owned();
    two.wait_outbox(BUNKYO, "Form 7 delivered", |e| {
        e["id"] == id.as_str() && e["state"] == "delivered"
    });
    let inbox = two.call(YOKOHAMA, json!({"op": "inbox_list"}));
    let got = inbox
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "transfer_notice")
        .unwrap_or_else(|| panic!("Yokohama received Form 7: {inbox:#}"));
    assert_eq!(got["from"], BUNKYO, "{got}");
    let shown = two.call(YOKOHAMA, json!({"op": "inbox_show", "id": got["id"]}));
    assert_eq!(
        shown["document"]["relocation"]["new_municipality"],
        "141003"
    );
    assert_eq!(shown["document"]["remaining_period"]["to"], "2027-04-30");
    // Form 7's 転居後の医療等の支援の必要性, drafted from the plan's medical rows.
    assert_eq!(shown["document"]["medical_support_need"]["needed"], true);
    assert!(shown["document"]["medical_support_need"]["details"]
        .as_str()
        .unwrap()
        .contains("本郷こころのクリニック"));
    for org in [BUNKYO, YOKOHAMA] {
        let out = ok(&[
            "audit",
            "verify",
            "--config",
            s(&two.home(org).join("gateway.toml")),
        ]);
        assert!(out.starts_with("audit trail intact:"), "{org}: {out}");
    }
}

/// A Kanagawa fixture; Yokohama's consent is in force from today (the gateways run on the real
/// clock, before the fixture dates).
fn kanagawa(name: &str) -> Value {
    let (_, text) = KANAGAWA_CASE_0007
        .iter()
        .find(|(n, _)| *n == name)
        .expect("fixture exists");
    let mut v: Value = serde_json::from_str(text).unwrap();
    if v["document_type"] == "consent" {
        v["date"] = json!("2026-12-01");
        v["period"]["from"] = json!("2026-12-01");
    }
    v
}

impl Two {
    fn wait_inbox(&self, org: &str, kind: &str, from: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.call(org, json!({"op": "inbox_list"}));
            if let Some(e) = list
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == kind && e["from"] == from)
            {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{org}: timed out waiting for {kind} from {from}: {list:#}\n{}",
                self.log(org)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn delivered(&self, org: &str, entry: &Value) {
        let id = entry["id"].as_str().unwrap().to_owned();
        self.wait_outbox(org, "delivery", |e| {
            e["id"] == id.as_str() && e["state"] == "delivered"
        });
    }
}

#[test]
fn yokohama_takes_over_and_bunkyo_answers_its_request() {
    let mut two = Two::new("takeover");
    two.start(BUNKYO).unwrap();
    two.start(YOKOHAMA).unwrap();
    let case = "case-131059-2026-0007";

    // Bunkyo: consent, plan, consent to the transfer, the move: Form 7 to Yokohama.
    two.call(
        BUNKYO,
        json!({"op": "consent_record", "record": fixture("consent.json")}),
    );
    two.call(BUNKYO, json!({"op": "send", "to": "lg:130001", "purpose": "plan_creation", "form": fixture("support_plan.json")}));
    two.call(
        BUNKYO,
        json!({"op": "consent_record", "record": consent_naming_yokohama()}),
    );
    // A transfer-out end before any Form 7 went is refused.
    let mut end = fixture("support_end.json");
    end["outcome"] = json!("transferred");
    end["ended_on"] = json!("2027-01-25");
    end["note"] = json!("転居に伴い横浜市へ移管");
    let err = two
        .try_call(BUNKYO, json!({"op": "distribute", "form": end}))
        .unwrap_err();
    assert!(err.contains("no transfer notice (Form 7)"), "{err}");
    let mut report = fixture("residence_change.json");
    report["new_municipality"] = json!("141003");
    report["new_address"] = json!("神奈川県横浜市中区港町一丁目1番地");
    let answer = two.call(BUNKYO, json!({"op": "residence_change", "report": report}));
    two.delivered(BUNKYO, &answer["transfer"]);
    let form7 = two.wait_inbox(YOKOHAMA, "transfer_notice", BUNKYO);

    // Yokohama cannot take Bunkyo's consent id for its own.
    let mut clash = kanagawa("consent_yokohama.json");
    clash["id"] = json!("consent-131059-2026-0007");
    let err = two
        .try_call(YOKOHAMA, json!({"op": "consent_record", "record": clash}))
        .unwrap_err();
    assert!(
        err.contains("consent-131059-2026-0007 names lg:131059, but the controller is lg:141003"),
        "{err}"
    );

    // Yokohama takes over: its own consent; its plan for the remaining period by default.
    let mut plan = kanagawa("support_plan_yokohama.json");
    plan.as_object_mut().unwrap().remove("support_period");
    let taken = two.call(
        YOKOHAMA,
        json!({"op": "take_over", "transfer": form7["id"], "consent": kanagawa("consent_yokohama.json"), "plan": plan}),
    );
    assert_eq!(taken["period"]["from"], "2027-01-15", "{taken}");
    assert_eq!(taken["period"]["to"], "2027-04-30", "{taken}");
    assert_eq!(taken["from"], BUNKYO);
    // Its consent names Bunkyo: Bunkyo learns who the controller is now.
    let to_bunkyo = taken["consent_sent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == BUNKYO)
        .cloned()
        .unwrap_or_else(|| panic!("Yokohama's consent goes to Bunkyo: {taken:#}"));
    two.delivered(YOKOHAMA, &to_bunkyo);

    // Both gateways keep both controllers' consents apart.
    for org in [BUNKYO, YOKOHAMA] {
        let held = two.call(org, json!({"op": "consents", "case": case}));
        let mut controllers: Vec<&str> = held
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["controller"].as_str().unwrap())
            .collect();
        controllers.sort();
        assert_eq!(controllers, [BUNKYO, YOKOHAMA], "{org}: {held:#}");
    }
    // The same through the command line.
    let out = ok(&[
        "transfer",
        "consents",
        "--config",
        s(&two.home(BUNKYO).join("gateway.toml")),
        case,
    ]);
    assert!(
        out.contains("consent-131059-2026-0007") && out.contains("consent-141003-2027-0007"),
        "{out}"
    );

    // Bunkyo ends its part (transferred): then further sharing is refused, the summary goes.
    let ended = two.call(BUNKYO, json!({"op": "distribute", "form": end}));
    let to_yokohama = ended
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["to"] == YOKOHAMA)
        .unwrap_or_else(|| panic!("the end goes to Yokohama: {ended:#}"));
    two.delivered(BUNKYO, &to_yokohama["entry"]);
    let err = two
        .try_call(BUNKYO, json!({"op": "send", "to": "lg:130001", "purpose": "plan_implementation", "form": fixture("support_plan.json")}))
        .unwrap_err();
    assert!(err.contains("transferred out to lg:141003"), "{err}");
    let summary = json!({
        "document_type": "support_summary", "author": BUNKYO, "subject": case, "to": YOKOHAMA,
        "written_on": "2027-02-01", "summary": "外来通院と訪問看護を継続。", "support_given": []
    });
    let sent = two.call(
        BUNKYO,
        json!({"op": "send", "to": YOKOHAMA, "purpose": "relocation_transfer", "form": summary}),
    );
    two.delivered(BUNKYO, &sent);

    // Yokohama asks: not an authority its consent does not name; Bunkyo, yes.
    let mut wrong = kanagawa("information_request.json");
    wrong["to"] = json!("lg:131121");
    let err = two
        .try_call(
            YOKOHAMA,
            json!({"op": "information_request", "form": wrong}),
        )
        .unwrap_err();
    assert!(err.contains("names neither this org"), "{err}");
    // Through the command line, as staff would.
    let file = two.dir.join("request.json");
    std::fs::write(&file, kanagawa("information_request.json").to_string()).unwrap();
    let out = ok(&[
        "transfer",
        "ask",
        "--config",
        s(&two.home(YOKOHAMA).join("gateway.toml")),
        s(&file),
    ]);
    let asked: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    two.delivered(YOKOHAMA, &asked);
    let request = two.wait_inbox(BUNKYO, "information_request", YOKOHAMA);

    // Bunkyo answers, to Yokohama only, naming the request by id and digest.
    let mut answer = kanagawa("information_answer.json");
    answer.as_object_mut().unwrap().remove("request_digest");
    let mut elsewhere = answer.clone();
    elsewhere["to"] = json!("lg:130001");
    let err = two
        .try_call(
            BUNKYO,
            json!({"op": "information_answer", "request": request["id"], "form": elsewhere}),
        )
        .unwrap_err();
    assert!(err.contains("information answer: to"), "{err}");
    let sent = two.call(
        BUNKYO,
        json!({"op": "information_answer", "request": request["id"], "form": answer}),
    );
    two.delivered(BUNKYO, &sent);
    let got = two.wait_inbox(YOKOHAMA, "information_answer", BUNKYO);
    let shown = two.call(YOKOHAMA, json!({"op": "inbox_show", "id": got["id"]}));
    assert_eq!(
        shown["document"]["request_id"], "inquiry-141003-2027-0001",
        "{shown}"
    );
    assert_eq!(
        shown["document"]["request_digest"].as_str().unwrap().len(),
        64
    );

    // The typed events, and every trail verifies.
    let events = |org: &str| -> Vec<String> {
        two.call(org, json!({"op": "audit"}))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["event"].as_str().unwrap().to_owned())
            .collect()
    };
    let y = events(YOKOHAMA);
    for e in [
        "transfer_acknowledged",
        "taken_over",
        "information_requested",
        "information_answered",
    ] {
        assert!(y.iter().any(|x| x == e), "Yokohama: {e}: {y:?}");
    }
    let b = events(BUNKYO);
    for e in [
        "transferred_out",
        "gate_denied",
        "information_requested",
        "information_answered",
    ] {
        assert!(b.iter().any(|x| x == e), "Bunkyo: {e}: {b:?}");
    }
    for org in [BUNKYO, YOKOHAMA] {
        let out = ok(&[
            "audit",
            "verify",
            "--config",
            s(&two.home(org).join("gateway.toml")),
        ]);
        assert!(out.starts_with("audit trail intact:"), "{org}: {out}");
    }
}

#[test]
fn a_prefecture_cannot_speak_for_another_and_unreachable_entries_fail_early() {
    let mut two = Two::new("prefectures-bad");
    let root = two.dir.clone();
    let p = |x: &str| root.join(x);

    // Signing refuses an address no gateway can reach, and a host that is no host name.
    for (from, to, want) in [
        ("127.0.0.1:7413", "0.0.0.0:7413", "unspecified IP"),
        (
            "127.0.0.1:7413",
            "hospital.kanagawa.example:7413",
            "not ip:port",
        ),
        (
            "hospital.kanagawa.example",
            "https://hospital",
            "not a DNS name",
        ),
    ] {
        let text = std::fs::read_to_string(p("kanagawa.toml")).unwrap();
        std::fs::write(p("bad.toml"), text.replace(from, to)).unwrap();
        let err = run(&[
            "directory",
            "sign",
            "--ca",
            s(&p("kanagawa-ca")),
            s(&p("bad.toml")),
            "--out",
            s(&p("bad.cose")),
        ])
        .unwrap_err();
        assert!(err.contains(want), "{to}: {err}");
    }

    // Kanagawa's CA signs a directory listing Bunkyo: Tokyo's gateway refuses to start on it.
    let text = std::fs::read_to_string(p("kanagawa.toml")).unwrap();
    std::fs::write(
        p("greedy.toml"),
        format!("{text}\n[[members]]\norg = \"lg:131059\"\nrole = \"authority\"\nname = \"x\"\naddress = \"127.0.0.1:7499\"\n")
            .replace("[jurisdictions]", "[jurisdictions]\n\"131059\" = \"lg:131059\""),
    )
    .unwrap();
    ok(&[
        "directory",
        "sign",
        "--ca",
        s(&p("kanagawa-ca")),
        s(&p("greedy.toml")),
        "--out",
        s(&p("kanagawa.cose")),
    ]);
    let log = two.start(BUNKYO).unwrap_err();
    assert!(
        log.contains("lists lg:131059, which is not in that prefecture"),
        "{log}"
    );

    // A directory signed by Tokyo's own CA in Kanagawa's place is refused too.
    ok(&[
        "directory",
        "sign",
        "--ca",
        s(&p("tokyo-ca")),
        s(&p("kanagawa.toml")),
        "--out",
        s(&p("kanagawa.cose")),
    ]);
    let log = two.start(BUNKYO).unwrap_err();
    assert!(
        log.contains("not signed by the CA \"Kanagawa CA\""),
        "{log}"
    );

    // Back to Kanagawa's own directory: Bunkyo starts. Then Tokyo revokes the cross-certificate:
    // Kanagawa is no longer recognised and the gateway refuses to start on its directory.
    ok(&[
        "directory",
        "sign",
        "--ca",
        s(&p("kanagawa-ca")),
        s(&p("kanagawa.toml")),
        "--out",
        s(&p("kanagawa.cose")),
    ]);
    two.start(BUNKYO).unwrap();
    for mut c in two.children.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
    let out = ok(&[
        "certs",
        "revoke",
        "--ca",
        s(&p("tokyo-ca")),
        "--cert",
        s(&p("tokyo-recognises-kanagawa.pem")),
    ]);
    assert!(out.contains("revoked"), "{out}");
    let log = two.start(BUNKYO).unwrap_err();
    assert!(log.contains("cross-certificate recognising"), "{log}");
}

#[test]
fn the_kanagawa_demo_plays_the_move_and_the_takeover_end_to_end() {
    let out = ok(&["demo", "--scenario", "kanagawa"]);
    assert!(out.contains("Every step happened as described."), "{out}");
    let refused: Vec<&str> = out.lines().filter(|l| l.contains("REFUSED")).collect();
    assert!(
        refused
            .iter()
            .any(|l| l.contains("transferred out to lg:141003")),
        "the origin's later attempt is refused:\n{out}"
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("information_request") && l.contains("names neither this org")),
        "a request the consent does not cover is refused:\n{out}"
    );
    for line in [
        "transfer_notice [full: every field] delivered",
        "plan v1 for 2027-01-15 to 2027-04-30",
        "support_summary [full: every field] delivered",
        "information_request [full: every field] delivered",
        "information_answer [full: every field] delivered",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    assert!(
        !out.contains("ALTERED") && out.matches(", intact").count() == 13,
        "{out}"
    );
}
