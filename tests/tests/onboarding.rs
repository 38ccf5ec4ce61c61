//! Onboarding that cannot go wrong: certificates issued for DNS hosts, the directory's `host`
//! and `address`, `tsunagi federation init / member add`, `tsunagi check`, `send --wait`, and
//! `stats` / `audit verify` without a running gateway.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi_protocol::date::Date;
use tsunagi_protocol::directory::Directory;
use tsunagi_tests::{fixture, repo, tsunagi_bin, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tsunagi(dir: &Path, args: &[&str]) -> Output {
    Command::new(tsunagi_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("TSUNAGI_CONFIG")
        .output()
        .expect("run tsunagi")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = tsunagi(dir, args);
    assert!(o.status.success(), "tsunagi {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let o = tsunagi(dir, args);
    assert!(
        !o.status.success(),
        "tsunagi {args:?} should fail: {}",
        text(&o)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tsunagi-onb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A gateway process, killed on drop.
struct Gw {
    child: Child,
    log: PathBuf,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(config: &Path, request: Value) -> Result<Value, String> {
    let cfg = tsunagi_gateway::config::Config::load(config).map_err(|e| e.0)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(tsunagi_gateway::control::call(
            &cfg.control_socket(),
            &request,
        ))
        .map_err(|e| e.message)
}

fn start(config: &Path) -> Gw {
    let log = config.with_file_name("gateway.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new(tsunagi_bin())
        .args(["gateway", "run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("spawn");
    let mut gw = Gw { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while call(config, json!({"op": "status"})).is_err() {
        if let Ok(Some(status)) = gw.child.try_wait() {
            panic!(
                "gateway exited with {status}:\n{}",
                std::fs::read_to_string(&gw.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "gateway did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

/// Runs `tsunagi gateway run` expecting it to refuse to start; returns its output.
fn refuses_to_start(config: &Path) -> String {
    let mut child = Command::new(tsunagi_bin())
        .args(["gateway", "run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway started although its directory entry is wrong");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    text(&o)
}

/// The consent of case-0007 naming only Bunkyo and the hospital.
fn small_consent(dir: &Path) -> PathBuf {
    let mut c = fixture("consent.json");
    c["recipients"] = json!([{"org": BUNKYO}, {"org": HOSPITAL}]);
    let p = dir.join("consent.json");
    std::fs::write(&p, c.to_string()).unwrap();
    p
}

fn assessment(dir: &Path) -> PathBuf {
    let p = dir.join("assessment.json");
    std::fs::write(&p, fixture("needs_assessment.json").to_string()).unwrap();
    p
}

fn wait_consent_delivered(config: &Path, to: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = call(config, json!({"op": "outbox_list"})).unwrap();
        if list
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["to"] == to && e["kind"] == "consent" && e["state"] == "delivered")
        {
            return;
        }
        assert!(Instant::now() < deadline, "consent not delivered: {list:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn certificates_for_dns_hosts_deliver_and_send_wait_reports_the_outcome() {
    let mut f = Federation::with_dns_hosts("dns", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["kind"] == "consent" && e["state"] == "delivered")
    });
    let form = assessment(&f.dir);
    let out = f.cli(
        HOSPITAL,
        &[
            "send",
            "--wait",
            "--timeout",
            "30",
            "--to",
            BUNKYO,
            "--purpose",
            "plan_creation",
            form.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("delivered "), "{stdout}");
    assert!(
        !f.log(HOSPITAL).contains("not valid for name"),
        "{}",
        f.log(HOSPITAL)
    );
    assert_eq!(
        f.inbox(BUNKYO)
            .iter()
            .filter(|e| e["kind"] == "needs_assessment")
            .count(),
        1
    );

    // To a peer that is down, --wait gives up after its timeout and fails, naming the state.
    f.kill(BUNKYO);
    let out = f.cli(
        HOSPITAL,
        &[
            "send",
            "--wait",
            "--timeout",
            "2",
            "--to",
            BUNKYO,
            "--purpose",
            "plan_creation",
            form.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is still retry_wait") || stderr.contains("is still queued"),
        "{stderr}"
    );
}

#[test]
fn a_gateway_whose_entry_does_not_match_its_certificate_or_listen_refuses_to_start() {
    // Certificates issued for 127.0.0.1, but the directory names hospital.example.
    let f = Federation::new("own-entry", &[HOSPITAL], "");
    let mut d: Directory =
        toml::from_str(&std::fs::read_to_string(repo().join("fixtures/directory.toml")).unwrap())
            .unwrap();
    d.expires = Some(Date::new(2099, 12, 31).unwrap());
    let listen = f.address(HOSPITAL);
    for m in &mut d.members {
        m.address = if m.org.as_str() == HOSPITAL {
            listen.to_string()
        } else {
            format!("127.0.0.1:{}", free_port())
        };
    }
    let sign = |d: &Directory| {
        std::fs::write(
            f.dir.join("directory.cose"),
            d.sign(&f.ca.federation_signer().unwrap()).unwrap(),
        )
        .unwrap()
    };
    sign(&d);
    let config = &f.members[HOSPITAL].config;
    let out = refuses_to_start(config);
    assert!(out.contains("TLS host \"hospital.example\""), "{out}");
    assert!(out.contains("issued for 127.0.0.1"), "{out}");

    // Hosts right, but the directory lists another port than `listen`.
    for m in &mut d.members {
        m.host = None;
        if m.org.as_str() == HOSPITAL {
            m.address = format!("127.0.0.1:{}", free_port());
        }
    }
    sign(&d);
    let out = refuses_to_start(config);
    assert!(out.contains(&format!("listens on {listen}")), "{out}");
}

#[test]
fn directory_sign_names_the_member_with_a_bad_address_or_host() {
    let dir = temp("dirsign");
    ok(&dir, &["certs", "init-ca", "--dir", "ca"]);
    let source = std::fs::read_to_string(repo().join("fixtures/directory.toml")).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        source.replace("127.0.0.1:7405", "hospital.example:7405"),
    )
    .unwrap();
    let e = fails(
        &dir,
        &[
            "directory",
            "sign",
            "--ca",
            "ca",
            "bad.toml",
            "--out",
            "d.cose",
        ],
    );
    assert!(
        e.contains("member mi:1310000017: address \"hospital.example:7405\" is not ip:port"),
        "{e}"
    );
    std::fs::write(
        dir.join("bad.toml"),
        source.replace("\"hospital.example\"", "\"hospital.example:7405\""),
    )
    .unwrap();
    let e = fails(
        &dir,
        &[
            "directory",
            "sign",
            "--ca",
            "ca",
            "bad.toml",
            "--out",
            "d.cose",
        ],
    );
    assert!(
        e.contains("member mi:1310000017: host \"hospital.example:7405\""),
        "{e}"
    );
    assert!(!dir.join("d.cose").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_and_member_add_make_two_working_members_and_check_names_each_fault() {
    let dir = temp("init");
    let fed = dir.join("fed");
    let fed_s = fed.to_str().unwrap();
    ok(
        &dir,
        &["federation", "init", "--dir", fed_s, "--federation", "test"],
    );
    let (pb, ph) = (free_port(), free_port());
    ok(
        &dir,
        &[
            "federation",
            "member",
            "add",
            "--dir",
            fed_s,
            "--org",
            BUNKYO,
            "--role",
            "authority",
            "--name",
            "文京区 文京保健所",
            "--address",
            &format!("127.0.0.1:{pb}"),
            "--host",
            "bunkyo.example",
            "--serves",
            "131059",
        ],
    );
    ok(
        &dir,
        &[
            "federation",
            "member",
            "add",
            "--dir",
            fed_s,
            "--org",
            HOSPITAL,
            "--role",
            "hospital",
            "--name",
            "都立松風病院",
            "--address",
            &format!("127.0.0.1:{ph}"),
            "--host",
            "hospital.example",
        ],
    );
    let e = fails(
        &dir,
        &[
            "federation",
            "member",
            "add",
            "--dir",
            fed_s,
            "--org",
            "mi:1310000025",
            "--role",
            "clinic",
            "--name",
            "x",
            "--address",
            "clinic.example:7406",
        ],
    );
    assert!(e.contains("is not ip:port"), "{e}");
    let bunkyo = fed.join("lg_131059/gateway.toml");
    let hospital = fed.join("mi_1310000017/gateway.toml");

    // Nothing runs yet: check names the peer that is down.
    let e = fails(
        &dir,
        &[
            "check",
            "--config",
            hospital.to_str().unwrap(),
            "--peer-timeout-ms",
            "1000",
        ],
    );
    assert!(
        e.contains(&format!(
            "fix: peer {BUNKYO} at 127.0.0.1:{pb} (host bunkyo.example) is unreachable"
        )),
        "{e}"
    );
    assert_eq!(e.matches("fix:").count(), 1, "{e}");

    let _b = start(&bunkyo);
    let _h = start(&hospital);
    let out = ok(&dir, &["check", "--config", hospital.to_str().unwrap()]);
    assert!(out.contains("ok: ready"), "{out}");

    // A document goes between them.
    let consent = small_consent(&dir);
    ok(
        &dir,
        &[
            "consent",
            "record",
            "--config",
            bunkyo.to_str().unwrap(),
            consent.to_str().unwrap(),
        ],
    );
    wait_consent_delivered(&bunkyo, HOSPITAL);
    let form = assessment(&dir);
    let out = ok(
        &dir,
        &[
            "send",
            "--config",
            hospital.to_str().unwrap(),
            "--wait",
            "--to",
            BUNKYO,
            "--purpose",
            "plan_creation",
            form.to_str().unwrap(),
        ],
    );
    assert!(out.contains("delivered"), "{out}");

    // Faults, one at a time.
    let key = fed.join("mi_1310000017/creds/sign.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = fails(&dir, &["check", "--config", hospital.to_str().unwrap()]);
    assert!(e.contains("sign.key is mode 0644"), "{e}");
    assert_eq!(e.matches("fix:").count(), 1, "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Owned by another account (only root can give a file away).
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&key).unwrap());
    if me == 0 {
        std::os::unix::fs::chown(&key, Some(4242), None).unwrap();
        let e = fails(&dir, &["check", "--config", hospital.to_str().unwrap()]);
        assert!(
            e.contains("sign.key (mode 0600) belongs to uid 4242"),
            "{e}"
        );
        std::os::unix::fs::chown(&key, Some(0), None).unwrap();
    }

    let crl = fed.join("ca/crl.pem");
    let good_crl = std::fs::read(&crl).unwrap();
    let ca = tsunagi_certs::FederationCa::load(fed.join("ca")).unwrap();
    ca.refresh_crl_at(tsunagi_protocol::Timestamp(1_600_000_000))
        .unwrap();
    let e = fails(&dir, &["check", "--config", hospital.to_str().unwrap()]);
    assert!(e.contains("the CRL expired"), "{e}");
    std::fs::remove_file(&crl).unwrap();
    let e = fails(&dir, &["check", "--config", hospital.to_str().unwrap()]);
    assert!(e.contains("fix: CRL: "), "{e}");
    assert!(e.contains("crl.pem"), "{e}");
    std::fs::write(&crl, good_crl).unwrap();
    let out = ok(&dir, &["check", "--config", hospital.to_str().unwrap()]);
    assert!(out.contains("ok: ready"), "{out}");

    // Stats and the audit trail, with the gateway running and stopped.
    let running = ok(&dir, &["stats", "--config", bunkyo.to_str().unwrap()]);
    ok(
        &dir,
        &["audit", "verify", "--config", bunkyo.to_str().unwrap()],
    );
    drop(_b);
    let stopped = ok(&dir, &["stats", "--config", bunkyo.to_str().unwrap()]);
    let (r, s): (Value, Value) = (
        serde_json::from_str(&running).unwrap(),
        serde_json::from_str(&stopped).unwrap(),
    );
    assert_eq!(r, s);
    assert_eq!(s["org"], BUNKYO);
    let out = ok(
        &dir,
        &["audit", "verify", "--config", bunkyo.to_str().unwrap()],
    );
    assert!(out.contains("audit trail intact"), "{out}");
    // The QUIC port was not bound: the gateway starts again on it at once.
    let _b = start(&bunkyo);

    // A peer down is named by check.
    drop(_b);
    let e = fails(
        &dir,
        &[
            "check",
            "--config",
            hospital.to_str().unwrap(),
            "--peer-timeout-ms",
            "1000",
        ],
    );
    assert!(
        e.contains(&format!("peer {BUNKYO}")) && e.contains("unreachable"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn outbox_offers_no_export() {
    let dir = temp("help");
    let help = ok(&dir, &["outbox", "--help"]);
    assert!(!help.contains("export"), "{help}");
    let help = ok(&dir, &["inbox", "--help"]);
    assert!(help.contains("export"), "{help}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Signs `d` as the federation would have before entries were checked (an old directory):
/// no check of `address` or `host`.
fn sign_unchecked(f: &Federation, d: &Directory) -> Vec<u8> {
    use tsunagi_protocol::cbor::{encode, Value};
    let t = |s: &str| Value::Text(s.to_owned());
    let m =
        |pairs: Vec<(&str, Value)>| Value::Map(pairs.into_iter().map(|(k, v)| (t(k), v)).collect());
    let members = d
        .members
        .iter()
        .map(|x| {
            m(vec![
                ("org", t(x.org.as_str())),
                ("role", t(x.role.as_str())),
                ("name", t(&x.name)),
                ("address", t(&x.address)),
                ("fingerprints", Value::Array(vec![])),
            ])
        })
        .collect();
    let payload = m(vec![
        ("format", Value::Integer(1.into())),
        ("version", Value::Integer(d.version.into())),
        ("federation", t(&d.federation)),
        ("expires", t("2099-12-31")),
        ("members", Value::Array(members)),
        ("jurisdictions", Value::Map(vec![])),
    ]);
    f.ca.federation_signer()
        .unwrap()
        .sign(tsunagi_protocol::cose::TYP_DIRECTORY, encode(&payload))
}

#[test]
fn an_unusable_peer_address_is_a_final_clear_error_not_a_forever_retry() {
    let mut f = Federation::new("bad-address", &[BUNKYO, HOSPITAL], "");
    let mut d: Directory =
        toml::from_str(&std::fs::read_to_string(repo().join("fixtures/directory.toml")).unwrap())
            .unwrap();
    for m in &mut d.members {
        m.address = match m.org.as_str() {
            BUNKYO | HOSPITAL => f.address(m.org.as_str()).to_string(),
            "mi:1310000025" => "clinic.example:7406".into(),
            _ => format!("127.0.0.1:{}", free_port()),
        };
    }
    std::fs::write(f.dir.join("directory.cose"), sign_unchecked(&f, &d)).unwrap();
    f.start_all();
    assert!(
        f.log(BUNKYO)
            .contains("member mi:1310000025: address \"clinic.example:7406\" is not ip:port"),
        "a warning at start names the member: {}",
        f.log(BUNKYO)
    );
    // The consent goes to every org it names: the clinic's copy ends at once, saying why.
    f.record_consent("consent.json");
    let list = f.wait_outbox(BUNKYO, 30, "the clinic's copy final", |v| {
        v.iter()
            .any(|e| e["to"] == "mi:1310000025" && e["state"] == "cancelled")
    });
    let e = list
        .iter()
        .find(|e| e["to"] == "mi:1310000025")
        .expect("entry");
    let why = e["last_error"].as_str().unwrap();
    assert!(
        why.contains("address \"clinic.example:7406\" is not ip:port")
            && why.contains("fix the directory entry"),
        "{why}"
    );
    assert_eq!(e["attempts"], 0, "{e}");
    // The others are delivered as usual.
    f.wait_outbox(BUNKYO, 30, "consent delivered to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["kind"] == "consent" && e["state"] == "delivered")
    });
}
