//! Backups of a running gateway, their verification, restore into a fresh gateway directory,
//! and the master key: kept apart, required by a restore, rotated.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tsunagi_tests::{fixture, tsunagi_bin, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(tsunagi_bin())
        .args(args)
        .env("TSUNAGI_CONFIG", config)
        .output()
        .expect("run tsunagi")
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The backup file `bytes` with audit record `seq` (the last one when `None`) taken out and its
/// digest recomputed, as anyone holding the file can; the seal is left as it was.
fn without_audit_record(bytes: &[u8], seq: Option<u64>) -> Vec<u8> {
    use tsunagi_gateway::backup;
    use tsunagi_gateway::store::Space;
    let b = backup::decode(bytes).unwrap();
    let mut prefix = vec![Space::Meta.tag()];
    prefix.extend_from_slice(b"audit/r/");
    let records: Vec<&Vec<u8>> = b
        .entries
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(&prefix))
        .collect();
    let cut = match seq {
        Some(seq) => [prefix.clone(), seq.to_be_bytes().to_vec()].concat(),
        None => records.last().unwrap().to_vec(),
    };
    assert!(records.contains(&&cut), "the record is in the backup");
    let entries: Vec<_> = b
        .entries
        .iter()
        .filter(|(k, _)| *k != cut)
        .cloned()
        .collect();
    let content = backup::content_of(&entries, None);
    let mut header = b.header.clone();
    header.records = entries.len() as u64;
    header.content_bytes = content.len() as u64;
    header.sha256 = tsunagi_protocol::hex::encode(&tsunagi_protocol::cose::sha256(&content));
    backup::assemble(&header, &content)
}

/// The backup file `bytes` as a version before backups were sealed wrote it (format 1, no seal).
fn unsealed_copy(bytes: &[u8]) -> Vec<u8> {
    use tsunagi_gateway::backup;
    let b = backup::decode(bytes).unwrap();
    let mut header = b.header.clone();
    header.backup_format = 1;
    header.seal = None;
    let content = backup::content_of(&b.entries, None);
    backup::assemble(&header, &content)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Lists without fields that change on their own (none are expected to), sorted by id.
fn listing(f: &Federation, org: &str, op: &str) -> Vec<Value> {
    let mut v = f
        .call(org, json!({ "op": op }))
        .as_array()
        .cloned()
        .unwrap();
    v.sort_by_key(|e| e["id"].as_str().unwrap_or("").to_owned());
    v
}

#[test]
fn backup_while_running_restore_into_a_fresh_directory_and_rotate_the_master_key() {
    let mut f = Federation::new("backup", &[BUNKYO, HOSPITAL], "");
    f.start_all();
    // Consent recorded and sent by Bunkyo; an assessment received from the hospital.
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent delivered", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["kind"] == "consent" && e["state"] == "delivered")
    });
    let sent = f.call(
        HOSPITAL,
        json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": fixture("needs_assessment.json")}),
    );
    f.wait_outbox(HOSPITAL, 30, "assessment delivered", |v| {
        v.iter()
            .any(|e| e["id"] == sent["id"] && e["state"] == "delivered")
    });
    assert_eq!(f.inbox(BUNKYO).len(), 1);

    // Backup while running.
    let home = f.members[BUNKYO].config.parent().unwrap().to_path_buf();
    let cfg = f.members[BUNKYO].config.clone();
    let file = home.join("bunkyo.backup");
    let out = ok(&run(&cfg, &["backup", "--out", file.to_str().unwrap()]));
    assert!(out.contains("master key is NOT in this backup"), "{out}");
    assert_eq!(mode(&file), 0o600);
    let e = err(&run(&cfg, &["backup", "--out", file.to_str().unwrap()]));
    assert!(e.contains("exists"), "{e}");
    let out = ok(&run(&cfg, &["backup", "verify", file.to_str().unwrap()]));
    assert!(
        out.contains("backup intact") && out.contains("audit trail intact"),
        "{out}"
    );

    // A flipped byte in the content is caught.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x20;
    let bad = home.join("bad.backup");
    std::fs::write(&bad, &bytes).unwrap();
    let e = err(&run(&cfg, &["backup", "verify", bad.to_str().unwrap()]));
    assert!(e.contains("SHA-256"), "{e}");

    // The master key, exported apart.
    let key = home.join("bunkyo.MASTER-KEY.secret");
    let out = ok(&run(
        &cfg,
        &["backup", "master-key", "--out", key.to_str().unwrap()],
    ));
    assert!(out.contains("not protected by a passphrase"), "{out}");
    assert_eq!(mode(&key), 0o600);

    let before_out = listing(&f, BUNKYO, "outbox_list");
    let before_in = listing(&f, BUNKYO, "inbox_list");
    f.kill(BUNKYO);

    // A fresh gateway directory: same org, credentials; its own data directory and key file.
    let fresh = home.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o700)).unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("credentials = \"creds\"", "credentials = \"../creds\"")
        .replace("\"../", "\"../../");
    let text = text.replace(
        "credentials = \"../../creds\"",
        "credentials = \"../creds\"",
    );
    let fresh_cfg = fresh.join("gateway.toml");
    std::fs::write(&fresh_cfg, text).unwrap();
    let fresh_key: PathBuf = fresh.join("master.key");

    // Refused: a backup of another org, and a missing master key (named).
    let e = err(&run(
        &f.members[HOSPITAL].config.clone(),
        &["restore", file.to_str().unwrap()],
    ));
    assert!(e.contains("the backup is of lg:131059"), "{e}");
    let e = err(&run(&fresh_cfg, &["restore", file.to_str().unwrap()]));
    assert!(
        e.contains("master key file") && e.contains(fresh_key.to_str().unwrap()),
        "{e}"
    );
    assert!(!fresh.join("data").exists(), "nothing restored");
    // A wrong key is refused too.
    std::fs::write(&fresh_key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&fresh_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = err(&run(&fresh_cfg, &["restore", file.to_str().unwrap()]));
    assert!(e.contains("does not unwrap"), "{e}");
    std::fs::copy(&key, &fresh_key).unwrap();
    // A backup cut by someone who recomputed its digest (as anyone holding the file can): one
    // record taken out of the middle of its audit trail, or the newest one (which no signed
    // checkpoint covers yet, so the trail alone still verifies). Both break the seal, `backup
    // verify` and a restore refuse them naming what is wrong, and a restore takes one only when
    // told to despite its problems, and then says so.
    let cut = home.join("cut.backup");
    std::fs::write(
        &cut,
        without_audit_record(&std::fs::read(&file).unwrap(), Some(1)),
    )
    .unwrap();
    let tail = home.join("tail.backup");
    std::fs::write(
        &tail,
        without_audit_record(&std::fs::read(&file).unwrap(), None),
    )
    .unwrap();
    // The tail cut leaves a trail that verifies on its own: the seal is its one problem.
    for (f, what, problems) in [
        (&cut, "record 1 is missing", "(2 problem(s)"),
        (
            &tail,
            "the backup's seal does not match the header",
            "(1 problem(s)",
        ),
    ] {
        let e = err(&run(&cfg, &["backup", "verify", f.to_str().unwrap()]));
        assert!(e.contains("the seal does not hold"), "{e}");
        let e = err(&run(&fresh_cfg, &["restore", f.to_str().unwrap()]));
        assert!(
            e.contains("the backup's seal or the audit trail inside it does not hold")
                && e.contains(what)
                && e.contains(problems)
                && e.contains("--despite-audit-problems"),
            "{e}"
        );
        assert!(!fresh.join("data").exists(), "nothing restored");
    }
    // Without a seal (as a backup of an earlier version, or one whose seal was removed): said
    // so, and restored only with --unsealed, which still checks the trail.
    let unsealed = home.join("unsealed.backup");
    std::fs::write(&unsealed, unsealed_copy(&std::fs::read(&cut).unwrap())).unwrap();
    let e = err(&run(
        &cfg,
        &["backup", "verify", unsealed.to_str().unwrap()],
    ));
    assert!(
        e.contains("the backup has no seal") && e.contains("does not verify"),
        "{e}"
    );
    let e = err(&run(&fresh_cfg, &["restore", unsealed.to_str().unwrap()]));
    assert!(e.contains("no seal") && e.contains("--unsealed"), "{e}");
    let e = err(&run(
        &fresh_cfg,
        &["restore", "--unsealed", unsealed.to_str().unwrap()],
    ));
    assert!(e.contains("record 1 is missing"), "{e}");
    assert!(!fresh.join("data").exists(), "nothing restored");
    let whole = home.join("whole-unsealed.backup");
    std::fs::write(&whole, unsealed_copy(&std::fs::read(&file).unwrap())).unwrap();
    let out = ok(&run(
        &fresh_cfg,
        &["restore", "--unsealed", whole.to_str().unwrap()],
    ));
    assert!(
        out.contains("the backup has no seal (--unsealed)")
            && out.contains("audit trail of the backup intact"),
        "{out}"
    );
    std::fs::remove_dir_all(fresh.join("data")).unwrap();
    let out = ok(&run(
        &fresh_cfg,
        &["restore", "--despite-audit-problems", cut.to_str().unwrap()],
    ));
    assert!(
        out.contains("audit problem: record 1 is missing")
            && out.contains("audit problem: the backup's seal does not match")
            && out.contains("restored DESPITE"),
        "{out}"
    );
    // The restored trail itself says that, and despite what: the output above is gone once
    // the terminal closes.
    let verify = run(&fresh_cfg, &["audit", "verify"]);
    let e = err(&verify);
    assert!(e.contains("the audit trail was altered"), "{e}");
    let said = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(
        said.contains("restored on ")
            && said.contains("DESPITE 2 problem(s): the backup's seal does not match")
            && said.contains("record 1 is missing"),
        "{said}"
    );
    std::fs::remove_dir_all(fresh.join("data")).unwrap();
    let out = ok(&run(&fresh_cfg, &["restore", file.to_str().unwrap()]));
    assert!(
        out.contains("restored") && out.contains("audit trail of the backup intact"),
        "{out}"
    );
    let e = err(&run(&fresh_cfg, &["restore", file.to_str().unwrap()]));
    assert!(e.contains("not empty"), "{e}");

    // The restored gateway: everything is there, decrypts, and the trail verifies.
    let start_fresh = |f: &mut Federation| {
        let m = f.members.get_mut(BUNKYO).unwrap();
        m.config = fresh_cfg.clone();
        m.data = fresh.join("data");
        f.start(BUNKYO);
    };
    start_fresh(&mut f);
    assert_eq!(listing(&f, BUNKYO, "outbox_list"), before_out);
    assert_eq!(listing(&f, BUNKYO, "inbox_list"), before_in);
    let shown = f.call(
        BUNKYO,
        json!({"op": "inbox_show", "id": before_in[0]["id"]}),
    );
    assert_eq!(shown["document"]["items"]["F1"]["staff"], 2);
    let e = f
        .try_call(
            BUNKYO,
            json!({"op": "consent_record", "record": fixture("consent.json")}),
        )
        .unwrap_err();
    assert!(e.contains("not newer than the recorded version 1"), "{e}");
    let out = ok(&run(&fresh_cfg, &["audit", "verify"]));
    assert!(
        out.contains("audit trail intact")
            && out.contains("restored on ")
            && out.contains("from a backup taken on")
            && !out.contains("DESPITE"),
        "{out}"
    );

    // Deliveries go on from the restored gateway.
    let again = f.call(
        HOSPITAL,
        json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": fixture("needs_assessment.json")}),
    );
    f.wait_outbox(HOSPITAL, 30, "second assessment delivered", |v| {
        v.iter()
            .any(|e| e["id"] == again["id"] && e["state"] == "delivered")
    });

    // Master-key rotation: refused while running; then every case decrypts with the new key,
    // and the old key no longer opens the data.
    let e = err(&run(&fresh_cfg, &["master-key", "rotate"]));
    assert!(e.contains("running"), "{e}");
    f.kill(BUNKYO);
    let out = ok(&run(&fresh_cfg, &["master-key", "rotate"]));
    assert!(out.contains("case keys re-wrapped"), "{out}");
    let old = fresh.join("master.key.old");
    assert_eq!(std::fs::read(&old).unwrap(), std::fs::read(&key).unwrap());
    assert_ne!(
        std::fs::read(&fresh_key).unwrap(),
        std::fs::read(&key).unwrap()
    );
    assert_eq!(mode(&fresh_key), 0o600);
    start_fresh(&mut f);
    for e in f.inbox(BUNKYO) {
        let shown = f.call(BUNKYO, json!({"op": "inbox_show", "id": e["id"]}));
        assert_eq!(shown["document"]["items"]["F1"]["staff"], 2);
    }
    f.kill(BUNKYO);
    let new_key = std::fs::read(&fresh_key).unwrap();
    std::fs::copy(&old, &fresh_key).unwrap();
    start_fresh(&mut f);
    let id = f.inbox(BUNKYO)[0]["id"].clone();
    let e = f
        .try_call(BUNKYO, json!({"op": "inbox_show", "id": id}))
        .unwrap_err();
    assert!(e.to_lowercase().contains("master key"), "{e}");
    f.kill(BUNKYO);
    std::fs::write(&fresh_key, new_key).unwrap();
    // A backup with the master key restores without a separate key file.
    start_fresh(&mut f);
    let with_key = home.join("with-key.backup");
    let out = ok(&run(
        &fresh_cfg,
        &[
            "backup",
            "--with-master-key",
            "--out",
            with_key.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("master key IS in this backup"), "{out}");
    f.kill(BUNKYO);
    let third = home.join("third");
    std::fs::create_dir_all(&third).unwrap();
    std::fs::set_permissions(&third, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(&fresh_cfg, third.join("gateway.toml")).unwrap();
    let out = ok(&run(
        &third.join("gateway.toml"),
        &["restore", with_key.to_str().unwrap()],
    ));
    assert!(
        out.contains("the master key from the backup was written"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(third.join("master.key")).unwrap(),
        std::fs::read(&fresh_key).unwrap()
    );
}

#[test]
fn backup_verify_on_another_machine_checks_revocation_only_with_the_crl() {
    let mut f = Federation::new("backup-crl", &[BUNKYO], "");
    f.start_all();
    let home = f.members[BUNKYO].config.parent().unwrap().to_path_buf();
    let cfg = f.members[BUNKYO].config.clone();
    let file = home.join("bunkyo.backup");
    ok(&run(&cfg, &["backup", "--out", file.to_str().unwrap()]));
    f.kill(BUNKYO);
    let ca = f.dir.join("ca").join("ca.pem");
    let crl = f.dir.join("ca").join("crl.pem");
    let verify = |extra: &[&str]| {
        let mut args = vec!["backup", "verify"];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        run(&cfg, &args)
    };
    // With the CA certificate alone, the output says that revocation was not checked.
    let out = ok(&verify(&["--ca", ca.to_str().unwrap()]));
    assert!(
        out.contains("revocation: not checked (no --crl given)") && out.contains("backup intact"),
        "{out}"
    );
    // A --crl needs its --ca.
    let e = err(&verify(&["--crl", crl.to_str().unwrap()]));
    assert!(e.contains("--ca"), "{e}");
    // Bunkyo's signing certificate is revoked: with the CRL, the seal no longer holds; the
    // configured CA and CRL (the default) say the same.
    f.ca.revoke(home.join("creds").join("sign.pem")).unwrap();
    for extra in [
        vec!["--ca", ca.to_str().unwrap(), "--crl", crl.to_str().unwrap()],
        vec![],
    ] {
        let e = err(&verify(&extra));
        assert!(
            e.contains("the seal does not hold") && !e.contains("revocation: not checked"),
            "{extra:?}: {e}"
        );
    }
}
