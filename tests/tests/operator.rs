//! What an operator and staff see: the `tsunagi` commands against running gateways, their
//! error lines, and logs that never carry personal data.

use std::process::Command;

use tsunagi_tests::{fixture, tsunagi_bin, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn one_error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    err
}

#[test]
fn a_bad_configuration_is_one_line_naming_the_key() {
    let f = Federation::new("badconfig", &[BUNKYO], "");
    let cfg = &f.members[BUNKYO].config;
    let text = std::fs::read_to_string(cfg).unwrap();
    let run = |text: String| {
        std::fs::write(cfg, text).unwrap();
        Command::new(tsunagi_bin())
            .args(["gateway", "run", "--config"])
            .arg(cfg)
            .output()
            .unwrap()
    };
    let err = one_error_line(&run(text.replace("org = \"lg:131059\"\n", "")));
    assert!(err.contains("missing field `org`"), "{err}");
    let err = one_error_line(&run(text.replace("listen = ", "listen_on = ")));
    assert!(err.contains("unknown field `listen_on`"), "{err}");
    let err = one_error_line(&run(
        text.replace("credentials = \"creds\"", "credentials = \"nowhere\"")
    ));
    assert!(err.contains("nowhere"), "{err}");
    let err = one_error_line(&run(format!("{text}[delivery]\nretry_initial_ms = 0\n")));
    assert!(err.contains("retry_initial_ms"), "{err}");
    // Commands that need a running gateway say so.
    std::fs::write(cfg, &text).unwrap();
    let err = one_error_line(&f.cli(BUNKYO, &["outbox", "list"]));
    assert!(
        err.contains("control socket") && err.contains("tsunagi gateway run"),
        "{err}"
    );
}

#[test]
fn staff_commands_against_running_gateways_and_logs_without_personal_data() {
    let mut f = Federation::new("operator", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    let consent = f.dir.join("consent.json");
    std::fs::write(&consent, fixture("consent.json").to_string()).unwrap();
    let out = ok(&f.cli(BUNKYO, &["consent", "record", consent.to_str().unwrap()]));
    assert!(out.contains("recorded"), "{out}");
    // Recording the same version again is refused: a new version must supersede it.
    let err = one_error_line(&f.cli(BUNKYO, &["consent", "record", consent.to_str().unwrap()]));
    assert!(
        err.contains("not newer than the recorded version 1"),
        "{err}"
    );
    // Only the controller records consent.
    let err = one_error_line(&f.cli(HOSPITAL, &["consent", "record", consent.to_str().unwrap()]));
    assert!(err.contains("the controller is lg:131059"), "{err}");

    let form = f.dir.join("letter.json");
    std::fs::write(&form, fixture("opinion_letter.json").to_string()).unwrap();
    let out = ok(&f.cli(
        HOSPITAL,
        &[
            "send",
            "--to",
            BUNKYO,
            "--purpose",
            "plan_creation",
            form.to_str().unwrap(),
        ],
    ));
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    f.wait_outbox(HOSPITAL, 30, "the letter delivered", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "delivered")
    });
    let list = ok(&f.cli(HOSPITAL, &["outbox", "list"]));
    assert!(
        list.lines().next().unwrap().starts_with("id")
            && list.contains(&id)
            && list.contains("delivered"),
        "{list}"
    );
    let show: serde_json::Value =
        serde_json::from_str(&ok(&f.cli(HOSPITAL, &["outbox", "show", &id]))).unwrap();
    assert_eq!(show["state"], "delivered");
    let inbox = ok(&f.cli(BUNKYO, &["inbox", "list"]));
    assert!(
        inbox.contains(&id) && inbox.contains("opinion_letter"),
        "{inbox}"
    );
    // One case, the newest only; another case lists nothing; a wrong case is one line.
    let page = ok(&f.cli(
        BUNKYO,
        &[
            "inbox",
            "list",
            "--case",
            "case-131059-2026-0007",
            "--limit",
            "1",
        ],
    ));
    assert_eq!(page.lines().count(), 2, "a header and one entry: {page}");
    assert!(page.contains(&id), "{page}");
    let none = ok(&f.cli(
        HOSPITAL,
        &["outbox", "list", "--case", "case-131059-2026-0999"],
    ));
    assert!(!none.contains(&id), "{none}");
    let err = one_error_line(&f.cli(HOSPITAL, &["outbox", "list", "--case", "no such case"]));
    assert!(err.contains("case"), "{err}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&f.cli(BUNKYO, &["inbox", "show", &id]))).unwrap();
    assert_eq!(shown["document"]["hospital"]["director"], "院長 木村 誠");
    assert!(shown["notice"].as_str().unwrap().contains("第三者"));

    // Mistakes are one line each.
    let err = one_error_line(&f.cli(HOSPITAL, &["outbox", "show", "xyz"]));
    assert!(err.contains("not a message id"), "{err}");
    let err = one_error_line(&f.cli(
        HOSPITAL,
        &[
            "send",
            "--to",
            "lg:131058",
            "--purpose",
            "plan_creation",
            form.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("--to: 131058 fails its check digit"), "{err}");
    let err = one_error_line(&f.cli(
        HOSPITAL,
        &[
            "send",
            "--to",
            "lg:011002",
            "--purpose",
            "plan_creation",
            form.to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("lg:011002 is not a member of the federation directory"),
        "{err}"
    );
    let err = one_error_line(&f.cli(
        HOSPITAL,
        &[
            "send",
            "--to",
            BUNKYO,
            "--purpose",
            "gossip",
            form.to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("--purpose") && err.contains("gossip") && err.contains("plan_creation"),
        "{err}"
    );
    let plan = f.dir.join("plan.json");
    std::fs::write(&plan, fixture("support_plan.json").to_string()).unwrap();
    let err = one_error_line(&f.cli(
        HOSPITAL,
        &[
            "send",
            "--to",
            BUNKYO,
            "--purpose",
            "plan_implementation",
            plan.to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("the author is lg:131059 but this gateway is mi:1310000017"),
        "{err}"
    );

    // No personal data in any log line: names, phone numbers, addresses, diagnoses.
    for org in [BUNKYO, HOSPITAL] {
        let log = f.log(org);
        assert!(
            log.contains("delivered") || log.contains("received"),
            "{log}"
        );
        for personal in [
            "鈴木",
            "090-0000",
            "本郷九丁目",
            "統合失調症",
            "田中",
            "木村",
        ] {
            assert!(
                !log.contains(personal),
                "{org}'s log contains {personal}:\n{log}"
            );
        }
    }
}

#[test]
fn a_repeated_client_ref_queues_nothing_new() {
    let mut f = Federation::new("clientref", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    f.record_consent("consent.json");
    // The hospital can send once its copy of the consent has arrived.
    f.wait_outbox(BUNKYO, 30, "consent at the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });
    let request = serde_json::json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": fixture("opinion_letter.json"), "client_ref": "folder:letter.json:abc"});
    let first = f.call(HOSPITAL, request.clone());
    let again = f.call(HOSPITAL, request);
    assert_eq!(first["id"], again["id"]);
    let letters = f
        .call(HOSPITAL, serde_json::json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "opinion_letter")
        .count();
    assert_eq!(letters, 1);
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[test]
fn a_gateway_refuses_directories_and_keys_other_accounts_can_touch() {
    let mut f = Federation::new("filemodes", &[BUNKYO], "");
    let cfg = f.members[BUNKYO].config.clone();
    let home = cfg.parent().unwrap().to_owned();
    let data = f.members[BUNKYO].data.clone();
    let creds = f.creds(BUNKYO);
    let run = || {
        Command::new(tsunagi_bin())
            .args(["gateway", "run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    // First start: creates data/ (0700) and master.key (0600); stop it again.
    f.start(BUNKYO);
    f.kill(BUNKYO);

    // Directories other accounts may write to: data_dir (where the control socket lives), the
    // credentials and the master key's directory.
    for (dir, good) in [(&data, 0o700), (&creds, 0o700), (&home, 0o755)] {
        for bad in [0o777, 0o775, 0o757] {
            chmod(dir, bad);
            let err = one_error_line(&run());
            let d = dir.display();
            assert!(
                err.contains(&format!("the directory {d} is mode {bad:04o}"))
                    && err.contains(&format!("chmod go-w {d}")),
                "{err}"
            );
        }
        chmod(dir, good);
    }
    // A directory of another account.
    if is_root() {
        std::os::unix::fs::chown(&data, Some(65534), None).unwrap();
        let err = one_error_line(&run());
        assert!(
            err.contains(&format!("{} belongs to uid 65534", data.display()))
                && err.contains("chown 0"),
            "{err}"
        );
        std::os::unix::fs::chown(&data, Some(0), None).unwrap();
    } else {
        eprintln!("not root: skipping the check of a data directory owned by another account");
    }

    // Secrets other accounts can read: one rule, one kind of message, for every key.
    for key in [
        home.join("master.key"),
        creds.join("sign.key"),
        creds.join("tls.key"),
    ] {
        chmod(&key, 0o644);
        let err = one_error_line(&run());
        let k = key.display();
        assert!(
            err.contains(&format!("the secret file {k} is mode 0644"))
                && err.contains(&format!("chmod 600 {k}")),
            "{err}"
        );
        chmod(&key, 0o600);
    }
    f.start(BUNKYO);
}

#[test]
fn the_control_socket_answers_only_its_own_account_and_a_closed_stdout_is_quiet() {
    let mut f = Federation::new("peercred", &[BUNKYO], "");
    f.start(BUNKYO);
    // `outbox list | head -1`, with head gone before anything is written: no panic.
    let mut reader = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let closed = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    let out = Command::new(tsunagi_bin())
        .args(["outbox", "list"])
        .env("TSUNAGI_CONFIG", &f.members[BUNKYO].config)
        .stdout(closed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(141));

    // Another account that can reach the socket (its modes loosened after the start) gets no
    // answer: the gateway checks the peer's uid.
    let python = std::path::Path::new("/usr/bin/python3");
    if !is_root() || !python.exists() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipping the other-account connection: it needs root, /usr/bin/setpriv and /usr/bin/python3");
        return;
    }
    let data = f.members[BUNKYO].data.clone();
    chmod(data.parent().unwrap(), 0o755);
    chmod(&data, 0o755);
    chmod(&f.socket(BUNKYO), 0o777);
    let client = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"op":"outbox_list"}\n')
except OSError:
    pass
got = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
except OSError:
    pass
print(len(got))
"#;
    let out = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            client,
        ])
        .arg(f.socket(BUNKYO))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(
        f.log(BUNKYO)
            .contains("refused a control connection from another account"),
        "{}",
        f.log(BUNKYO)
    );
    // Its own account is still served.
    f.call(BUNKYO, serde_json::json!({"op": "status"}));
}
