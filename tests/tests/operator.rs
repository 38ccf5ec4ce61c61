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
