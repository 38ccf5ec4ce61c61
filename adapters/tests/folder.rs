//! The folder adapter against real gateway processes: the hospital drops documents into its
//! `OUT/`, Bunkyo's adapter writes what arrives into its `IN/`.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::{json, Value};
use tsunagi_adapters::{AdapterError, FolderAdapter, Report};
use tsunagi_tests::{fixture, Federation};

fn consent_to_hospital(f: &Federation) {
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["kind"] == "consent" && e["state"] == "delivered")
    });
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

fn delivered(f: &Federation, from: &str, id: &str) {
    f.wait_outbox(from, 30, &format!("{id} delivered"), |v| {
        v.iter().any(|e| e["id"] == id && e["state"] == "delivered")
    });
}

fn outbox_len(f: &Federation, org: &str) -> usize {
    f.call(org, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn dropped_documents_are_sent_refused_or_left_waiting_and_arrive_in_in() {
    let mut f = Federation::new("folder", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    consent_to_hospital(&f);
    let rt = runtime();
    let hospital = FolderAdapter::new(f.dir.join("hospital-folder"), f.socket(HOSPITAL)).unwrap();
    let root = hospital.root().to_owned();
    for d in ["", "OUT", "SENT", "IN", "FAILED"] {
        let mode = std::fs::metadata(root.join(d))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{d}/ is {mode:o}");
    }
    let out = root.join("OUT");

    // The opinion letter, for Bunkyo.
    drop_pair(
        &out,
        "opinion.json",
        &pretty(&fixture("opinion_letter.json")),
        BUNKYO,
        "plan_creation",
    );
    // An assessment with a rating of 3.
    let mut bad = fixture("needs_assessment.json");
    bad["items"]["F1"]["staff"] = 3.into();
    drop_pair(
        &out,
        "assessment.json",
        &pretty(&bad),
        BUNKYO,
        "plan_creation",
    );
    // The opinion letter for the police, whom the person refused.
    drop_pair(
        &out,
        "for-police.json",
        &pretty(&fixture("opinion_letter.json")),
        POLICE,
        "plan_creation",
    );
    // A document still being written: no sidecar yet. And files any writer uses in passing.
    drop_file(&out, "half.json", b"{\"document_type\": \"opinion_le");
    std::fs::write(out.join(".hidden.json"), b"{}").unwrap();
    std::fs::write(out.join("writing.route.json.tmp"), b"{").unwrap();

    let report = rt.block_on(hospital.run_once()).unwrap();
    assert_eq!(
        report,
        Report {
            sent: 1,
            failed: 2,
            waiting: 1,
            exported: 1,
            undelivered: 0
        }
    );
    // What the hospital received so far: Bunkyo's consent record.
    let received = names(&root.join("IN"));
    assert_eq!(received.len(), 2, "{received:?}");
    let consent = read_json(
        root.join("IN")
            .join(received.iter().find(|n| n.ends_with(".json")).unwrap()),
    );
    assert_eq!(consent["kind"], "consent");
    assert_eq!(
        names(&out),
        [".hidden.json", "half.json", "writing.route.json.tmp"]
    );
    assert_eq!(
        names(&root.join("SENT")),
        ["opinion.json", "opinion.route.json", "opinion.sent.json"]
    );
    let sent = read_json(root.join("SENT/opinion.sent.json"));
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(sent["to"], BUNKYO);
    assert_eq!(sent["state"], "queued");
    assert_eq!(sent["kind"], "opinion_letter");
    assert!(sent["withheld"].is_array());
    assert!(sent["client_ref"]
        .as_str()
        .unwrap()
        .starts_with("folder:opinion.json:"));

    assert_eq!(
        names(&root.join("FAILED")),
        [
            "assessment.error.txt",
            "assessment.json",
            "assessment.route.json",
            "for-police.error.txt",
            "for-police.json",
            "for-police.route.json"
        ]
    );
    let why = std::fs::read_to_string(root.join("FAILED/assessment.error.txt")).unwrap();
    let lines: Vec<&str> = why.lines().collect();
    assert_eq!(lines.len(), 2, "{why}");
    assert!(lines[0].contains("items.F1.staff"), "{why}");
    assert!(lines[1].starts_with("What to do:"), "{why}");
    let why = std::fs::read_to_string(root.join("FAILED/for-police.error.txt")).unwrap();
    let lines: Vec<&str> = why.lines().collect();
    assert_eq!(lines.len(), 2, "{why}");
    assert!(
        lines[0].contains("refused") && lines[0].contains("police") && lines[0].contains("R6"),
        "{why}"
    );
    assert!(lines[1].contains("consent"), "{why}");
    assert!(f
        .call(HOSPITAL, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["to"] != POLICE));

    // Bunkyo's adapter writes what arrived.
    delivered(&f, HOSPITAL, &id);
    let bunkyo = FolderAdapter::new(f.dir.join("bunkyo-folder"), f.socket(BUNKYO)).unwrap();
    let report = rt.block_on(bunkyo.run_once()).unwrap();
    assert_eq!(report.exported, 1, "{report:?}");
    let inbox = bunkyo.root().join("IN");
    assert_eq!(names(&inbox), [format!("{id}.doc"), format!("{id}.json")]);
    let shown = read_json(inbox.join(format!("{id}.json")));
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["from"], HOSPITAL);
    assert_eq!(shown["kind"], "opinion_letter");
    assert_eq!(shown["document"]["person"]["name"], "鈴木 一郎");
    assert!(shown["notice"].as_str().is_some_and(|n| !n.is_empty()));
    let doc = std::fs::read(inbox.join(format!("{id}.doc"))).unwrap();
    let bundle = f.call(BUNKYO, json!({"op": "inbox_bundle", "id": id}));
    assert_eq!(hex::encode(&doc), bundle["bundle_hex"].as_str().unwrap());
    let state = read_json(bunkyo.root().join(".state.json"));
    assert_eq!(state["exported"], json!([id]));

    // The sidecar arrives: the waiting document goes (and is refused: it is half a document).
    drop_file(
        &out,
        "half.route.json",
        json!({"to": BUNKYO, "purpose": "plan_creation"})
            .to_string()
            .as_bytes(),
    );
    let report = rt.block_on(hospital.run_once()).unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let why = std::fs::read_to_string(root.join("FAILED/half.error.txt")).unwrap();
    assert!(
        why.contains("half.json") && why.contains("not valid JSON"),
        "{why}"
    );
}

#[test]
fn bad_sidecars_and_name_clashes() {
    let mut f = Federation::new("folder-names", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    consent_to_hospital(&f);
    let rt = runtime();
    let hospital = FolderAdapter::new(f.dir.join("hospital-folder"), f.socket(HOSPITAL)).unwrap();
    let root = hospital.root().to_owned();
    let out = root.join("OUT");
    let letter = pretty(&fixture("opinion_letter.json"));
    // A check digit that does not match.
    drop_pair(&out, "typo.json", &letter, "lg:131058", "plan_creation");
    // A sidecar that is not one.
    drop_file(&out, "odd.json", &letter);
    drop_file(&out, "odd.route.json", br#"{"recipient": "lg:131059"}"#);
    let r = rt.block_on(hospital.run_once()).unwrap();
    assert_eq!(r.failed, 2, "{r:?}");
    let why = std::fs::read_to_string(root.join("FAILED/typo.error.txt")).unwrap();
    assert!(
        why.lines()
            .next()
            .unwrap()
            .contains("typo.route.json: to: ")
            && why.contains("check digit"),
        "{why}"
    );
    let why = std::fs::read_to_string(root.join("FAILED/odd.error.txt")).unwrap();
    assert!(
        why.contains("odd.route.json") && why.contains("recipient"),
        "{why}"
    );

    // The same name twice (another version of the letter): the second is kept beside the
    // first, not over it.
    let mut revised = fixture("opinion_letter.json");
    revised["wishes"] = "自宅で母と暮らしたい。".into();
    for doc in [letter.clone(), pretty(&revised)] {
        drop_pair(&out, "letter.json", &doc, BUNKYO, "plan_creation");
        assert_eq!(rt.block_on(hospital.run_once()).unwrap().sent, 1);
    }
    let sent = names(&root.join("SENT"));
    assert_eq!(
        sent,
        [
            "letter.json",
            "letter.route.json",
            "letter.sent.json",
            "letter~2.json",
            "letter~2.route.json",
            "letter~2.sent.json"
        ]
    );
}

#[test]
fn symbolic_links_in_out_are_moved_to_failed_and_never_followed() {
    let mut f = Federation::new("folder-links", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    consent_to_hospital(&f);
    let rt = runtime();
    let hospital = FolderAdapter::new(f.dir.join("hospital-folder"), f.socket(HOSPITAL)).unwrap();
    let root = hospital.root().to_owned();
    let out = root.join("OUT");
    // A link to a document elsewhere (as another account might plant), with a real sidecar.
    let target = f.dir.join("elsewhere.json");
    let letter = pretty(&fixture("opinion_letter.json"));
    std::fs::write(&target, &letter).unwrap();
    std::os::unix::fs::symlink(&target, out.join("linked.json")).unwrap();
    drop_file(
        &out,
        "linked.route.json",
        br#"{"to": "lg:131059", "purpose": "plan_creation"}"#,
    );
    // A real document whose sidecar is a link.
    let route_target = f.dir.join("route.json");
    std::fs::write(
        &route_target,
        br#"{"to": "lg:131059", "purpose": "plan_creation"}"#,
    )
    .unwrap();
    drop_file(&out, "side.json", &letter);
    std::os::unix::fs::symlink(&route_target, out.join("side.route.json")).unwrap();
    // A link to nothing.
    std::os::unix::fs::symlink("/nonexistent/x.doc", out.join("dangling.doc")).unwrap();

    let r = rt.block_on(hospital.run_once()).unwrap();
    assert_eq!((r.sent, r.failed), (0, 3), "{r:?}");
    let failed = root.join("FAILED");
    for (name, link, target) in [
        ("linked", "linked.json", target.as_path()),
        ("side", "side.route.json", route_target.as_path()),
        (
            "dangling",
            "dangling.doc",
            std::path::Path::new("/nonexistent/x.doc"),
        ),
    ] {
        let why = std::fs::read_to_string(failed.join(format!("{name}.error.txt"))).unwrap();
        assert_eq!(why.lines().count(), 2, "{why}");
        assert!(
            why.contains(&format!("{link} was not sent: it is a symbolic link"))
                && why.contains("What to do")
                && why.contains("untouched"),
            "{why}"
        );
        // The link itself moved, still pointing where it did.
        let moved = failed.join(link);
        assert!(
            std::fs::symlink_metadata(&moved)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{link}"
        );
        assert_eq!(std::fs::read_link(&moved).unwrap(), target);
    }
    // The linked document's own sidecar went with it; the targets are untouched.
    assert!(failed.join("linked.route.json").is_file());
    assert_eq!(std::fs::read(&target).unwrap(), letter);
    assert!(route_target.is_file());
    // The real document waits for a real sidecar; nothing was sent.
    assert_eq!(names(&out), ["side.json"]);
    assert_eq!(outbox_len(&f, HOSPITAL), 0);
    let r = rt.block_on(hospital.run_once()).unwrap();
    assert_eq!((r.sent, r.failed, r.waiting), (0, 0, 1), "{r:?}");
}

/// Whether the running gateway accepts `client_ref` on `send` (the engine side of idempotent
/// submission arrives separately; until then this part of the test is pending).
fn gateway_knows_client_ref(f: &Federation, org: &str) -> bool {
    let err = f
        .try_call(
            org,
            json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "client_ref": "probe"}),
        )
        .unwrap_err();
    !err.contains("unknown field `client_ref`")
}

#[test]
fn a_restart_sends_nothing_twice_and_exports_nothing_twice() {
    let mut f = Federation::new("folder-restart", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    consent_to_hospital(&f);
    let rt = runtime();
    let root = f.dir.join("hospital-folder");
    let first = FolderAdapter::new(&root, f.socket(HOSPITAL)).unwrap();
    let out = root.join("OUT");
    let letter = pretty(&fixture("opinion_letter.json"));
    drop_pair(&out, "opinion.json", &letter, BUNKYO, "plan_creation");
    assert_eq!(rt.block_on(first.run_once()).unwrap().sent, 1);
    let id = read_json(root.join("SENT/opinion.sent.json"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = outbox_len(&f, HOSPITAL);
    drop(first);

    // A new instance over the same folders finds nothing to send.
    let second = FolderAdapter::new(&root, f.socket(HOSPITAL)).unwrap();
    assert_eq!(rt.block_on(second.run_once()).unwrap(), Report::default());
    assert_eq!(outbox_len(&f, HOSPITAL), queued);

    // A crash after the gateway queued it but before the move: the pair is still in OUT.
    // The same client_ref makes the gateway return the entry it already has.
    assert!(
        gateway_knows_client_ref(&f, HOSPITAL),
        "the gateway deduplicates by client_ref"
    );
    {
        std::fs::copy(root.join("SENT/opinion.json"), out.join("opinion.json")).unwrap();
        std::fs::copy(
            root.join("SENT/opinion.route.json"),
            out.join("opinion.route.json"),
        )
        .unwrap();
        std::fs::remove_file(root.join("SENT/opinion.json")).unwrap();
        std::fs::remove_file(root.join("SENT/opinion.route.json")).unwrap();
        let third = FolderAdapter::new(&root, f.socket(HOSPITAL)).unwrap();
        assert_eq!(rt.block_on(third.run_once()).unwrap().sent, 1);
        assert_eq!(outbox_len(&f, HOSPITAL), queued, "sent twice");
        assert_eq!(
            names(&root.join("SENT")),
            ["opinion.json", "opinion.route.json", "opinion.sent.json"]
        );
        assert_eq!(
            read_json(root.join("SENT/opinion.sent.json"))["id"],
            id.as_str()
        );
    }

    // A crash between the two moves leaves the sidecar alone in OUT: it follows its document.
    std::fs::rename(
        root.join("SENT/opinion.route.json"),
        out.join("opinion.route.json"),
    )
    .unwrap();
    let fourth = FolderAdapter::new(&root, f.socket(HOSPITAL)).unwrap();
    assert_eq!(rt.block_on(fourth.run_once()).unwrap().sent, 0);
    assert!(names(&out).is_empty());
    assert!(root.join("SENT/opinion.route.json").exists());
    assert_eq!(outbox_len(&f, HOSPITAL), queued);

    // Receiving: export, restart, nothing again.
    delivered(&f, HOSPITAL, &id);
    let broot = f.dir.join("bunkyo-folder");
    let b1 = FolderAdapter::new(&broot, f.socket(BUNKYO)).unwrap();
    assert_eq!(rt.block_on(b1.run_once()).unwrap().exported, 1);
    let json_path = broot.join(format!("IN/{id}.json"));
    let modified = std::fs::metadata(&json_path).unwrap().modified().unwrap();
    drop(b1);
    let b2 = FolderAdapter::new(&broot, f.socket(BUNKYO)).unwrap();
    assert_eq!(rt.block_on(b2.run_once()).unwrap(), Report::default());
    assert_eq!(
        std::fs::metadata(&json_path).unwrap().modified().unwrap(),
        modified
    );
    assert_eq!(
        names(&broot.join("IN")),
        [format!("{id}.doc"), format!("{id}.json")]
    );
    // A staff member who moved the files away does not get them again either.
    std::fs::remove_file(&json_path).unwrap();
    assert_eq!(rt.block_on(b2.run_once()).unwrap().exported, 0);
    // Losing the state file exports again under the same names (no duplicates, no loss).
    std::fs::remove_file(broot.join(".state.json")).unwrap();
    let b3 = FolderAdapter::new(&broot, f.socket(BUNKYO)).unwrap();
    assert_eq!(rt.block_on(b3.run_once()).unwrap().exported, 1);
    assert_eq!(
        names(&broot.join("IN")),
        [format!("{id}.doc"), format!("{id}.json")]
    );
}

#[test]
fn with_the_gateway_down_files_stay_in_out_then_go_once_it_is_up() {
    let mut f = Federation::new("folder-down", &[BUNKYO, HOSPITAL], FAST);
    f.start_all();
    consent_to_hospital(&f);
    f.kill(HOSPITAL);
    let rt = runtime();
    let hospital = FolderAdapter::new(f.dir.join("hospital-folder"), f.socket(HOSPITAL)).unwrap();
    let root = hospital.root().to_owned();
    let out = root.join("OUT");
    drop_pair(
        &out,
        "opinion.json",
        &pretty(&fixture("opinion_letter.json")),
        BUNKYO,
        "plan_creation",
    );
    for _ in 0..2 {
        match rt.block_on(hospital.run_once()) {
            Err(AdapterError::Unreachable(m)) => assert!(m.contains("control socket"), "{m}"),
            other => panic!("expected the gateway to be unreachable, got {other:?}"),
        }
    }
    assert_eq!(names(&out), ["opinion.json", "opinion.route.json"]);
    assert!(names(&root.join("FAILED")).is_empty());
    assert!(names(&root.join("SENT")).is_empty());

    f.start(HOSPITAL);
    let r = rt.block_on(hospital.run_once()).unwrap();
    assert_eq!(r.sent, 1, "{r:?}");
    assert!(names(&out).is_empty());
    let id = read_json(root.join("SENT/opinion.sent.json"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    delivered(&f, HOSPITAL, &id);
    let sent_once = f
        .call(HOSPITAL, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "opinion_letter")
        .count();
    assert_eq!(sent_once, 1);
    assert_eq!(
        f.inbox(BUNKYO)
            .iter()
            .filter(|e| e["kind"] == "opinion_letter")
            .count(),
        1
    );
}

#[test]
fn the_tsunagi_adapter_command_runs_one_pass_and_refuses_a_public_listen_address() {
    let mut f = Federation::new("folder-cli", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    consent_to_hospital(&f);
    let root = f.dir.join("hospital-folder");
    let config = f.members[HOSPITAL].config.clone();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi-adapter"))
            .args(args)
            .output()
            .expect("run tsunagi-adapter")
    };
    let once = [
        "folder",
        "--config",
        config.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--once",
    ];
    let o = run(&once);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop_pair(
        &root.join("OUT"),
        "opinion.json",
        &pretty(&fixture("opinion_letter.json")),
        BUNKYO,
        "plan_creation",
    );
    let o = run(&once);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("sent 1, failed 0"), "{stdout}");
    assert!(root.join("SENT/opinion.sent.json").exists());

    // Its report to a closed pipe (`… | head -0`): the pass is done, the command ends quietly.
    drop_pair(
        &root.join("OUT"),
        "second.json",
        &pretty(&fixture("opinion_letter.json")),
        BUNKYO,
        "plan_creation",
    );
    let mut reader = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let closed = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi-adapter"))
        .args(once)
        .stdout(closed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert_eq!(o.status.code(), Some(141), "{stderr}");
    assert!(root.join("SENT/second.sent.json").exists());

    f.kill(HOSPITAL);
    drop_pair(
        &root.join("OUT"),
        "later.json",
        &pretty(&fixture("opinion_letter.json")),
        BUNKYO,
        "plan_creation",
    );
    let o = run(&once);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("error: cannot reach the gateway's control socket")
            && stderr.contains("stay in OUT/"),
        "{stderr}"
    );
    assert!(root.join("OUT/later.json").exists());

    let o = run(&[
        "http",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "0.0.0.0:7480",
        "--token-file",
        f.dir.join("api.token").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[test]
fn an_envelope_that_expires_comes_back_as_an_undelivered_report_in_in() {
    let mut f = Federation::new(
        "folder-expiry",
        &[BUNKYO, HOSPITAL],
        "[delivery]\nexpiry_secs = 3\nretry_initial_ms = 200\nretry_max_ms = 500\nconnect_timeout_ms = 500\nattempt_timeout_ms = 1000\nidle_timeout_ms = 1000\n",
    );
    f.start_all();
    consent_to_hospital(&f);
    f.kill(BUNKYO);
    let rt = runtime();
    let hospital = FolderAdapter::new(f.dir.join("hospital-folder"), f.socket(HOSPITAL)).unwrap();
    let root = hospital.root().to_owned();
    drop_pair(
        &root.join("OUT"),
        "opinion.json",
        &pretty(&fixture("opinion_letter.json")),
        BUNKYO,
        "plan_creation",
    );
    assert_eq!(rt.block_on(hospital.run_once()).unwrap().sent, 1);
    let id = read_json(root.join("SENT/opinion.sent.json"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    f.wait_outbox(HOSPITAL, 30, "expiry", |v| {
        v.iter()
            .any(|e| e["id"] == id.as_str() && e["state"] == "expired")
    });
    let r = rt.block_on(hospital.run_once()).unwrap();
    assert_eq!(r.undelivered, 1, "{r:?}");
    let reports: Vec<String> = names(&root.join("IN"))
        .into_iter()
        .filter(|n| n.ends_with(".undelivered.txt"))
        .collect();
    assert_eq!(reports.len(), 1);
    let text = std::fs::read_to_string(root.join("IN").join(&reports[0])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("undelivered: opinion_letter") && lines[0].contains(BUNKYO),
        "{text}"
    );
    assert!(lines[1].starts_with("What to do:"), "{text}");
    assert_eq!(rt.block_on(hospital.run_once()).unwrap().undelivered, 0);
}
