//! The store's format version and damaged entries, as an operator meets them: a data directory
//! written by a newer tsunagi is refused at start with what to do, one written before versions
//! were recorded is migrated, and a damaged outbox entry is an error naming it, never an entry
//! silently missing from a listing (the gateway does not start on it).

use std::process::Command;

use serde_json::json;
use tsunagi_gateway::store::schema::FORMAT_VERSION;
use tsunagi_gateway::store::{Batch, Key, Prefix, Read, SledStore, Space, Store};
use tsunagi_tests::{fixture, tsunagi_bin, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";

fn with_store(f: &Federation, org: &str, change: impl FnOnce(&SledStore)) {
    let store = SledStore::open(&f.members[org].data.join("store"), 8 << 20).unwrap();
    change(&store);
    store.flush().unwrap();
}

/// Starts `org`'s gateway expecting it to refuse: returns its standard error. Fails the test if
/// it is still running after 10 s (it started on a store it should have refused).
fn start_refused(f: &Federation, org: &str) -> String {
    let mut child = Command::new(tsunagi_bin())
        .args(["gateway", "run", "--config"])
        .arg(&f.members[org].config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read as _;
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        status.is_some_and(|s| !s.success()),
        "the gateway started although it should have refused:\n{err}"
    );
    err
}

#[test]
fn format_versions_are_recorded_migrated_and_a_newer_one_refused() {
    let mut f = Federation::new("format", &[BUNKYO, HOSPITAL], "");
    f.start(BUNKYO);
    f.record_consent("consent.json");
    f.kill(BUNKYO);
    with_store(&f, BUNKYO, |s| {
        assert_eq!(
            s.read(&Key::format()).unwrap(),
            Some(FORMAT_VERSION.to_be_bytes().to_vec())
        );
        // As gateways wrote it before format 1: no version key.
        let mut b = Batch::new();
        b.remove(&Key::format());
        s.apply(b).unwrap();
    });
    f.start(BUNKYO);
    assert!(
        f.log(BUNKYO).contains("store format migrated"),
        "{}",
        f.log(BUNKYO)
    );
    let listed = f.call(BUNKYO, json!({"op": "outbox_list"}));
    assert!(
        !listed.as_array().unwrap().is_empty(),
        "the entries survive"
    );
    f.kill(BUNKYO);
    with_store(&f, BUNKYO, |s| {
        assert_eq!(
            s.read(&Key::format()).unwrap(),
            Some(FORMAT_VERSION.to_be_bytes().to_vec())
        );
        let mut b = Batch::new();
        b.set(&Key::format(), 7u32.to_be_bytes());
        s.apply(b).unwrap();
    });
    let err = start_refused(&f, BUNKYO);
    assert!(
        err.contains("newer tsunagi (format 7)") && err.contains("restore a backup"),
        "{err}"
    );
}

#[test]
fn a_damaged_outbox_entry_is_named_not_skipped() {
    let mut f = Federation::new("damaged", &[BUNKYO, HOSPITAL], "");
    f.start(BUNKYO);
    f.call(
        BUNKYO,
        json!({"op": "consent_record", "record": fixture("consent.json")}),
    );
    f.kill(BUNKYO);
    let mut damaged = String::new();
    with_store(&f, BUNKYO, |s| {
        let (id, _) = s.read_all(&Prefix::outbox_entries()).unwrap().remove(0);
        damaged = tsunagi_protocol::hex::encode(&id);
        let mut b = Batch::new();
        b.put(Space::Outbox, [b"m".as_slice(), &id].concat(), b"{not json");
        s.apply(b).unwrap();
    });
    // The gateway refuses to start on it, naming the entry and what to do.
    let err = start_refused(&f, BUNKYO);
    assert!(
        err.contains(&format!("outbox entry {damaged}"))
            && err.contains("corrupt")
            && err.contains("restore the data directory from a backup"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_the_gateway_cleanly_and_removes_the_control_socket() {
    let mut f = Federation::new("sigterm", &[BUNKYO, HOSPITAL], "");
    f.start(BUNKYO);
    f.record_consent("consent.json");
    let sock = f.socket(BUNKYO);
    assert!(sock.exists());
    let mut child = f
        .members
        .get_mut(BUNKYO)
        .unwrap()
        .child
        .take()
        .expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}\n{}", f.log(BUNKYO));
    assert!(!sock.exists(), "the control socket was left behind");
    let log = f.log(BUNKYO);
    assert!(
        log.contains("shutting down") && log.contains("stopped cleanly"),
        "{log}"
    );
    // Nothing acknowledged was lost: the queued consent copies are there after a restart.
    f.start(BUNKYO);
    assert!(!f
        .call(BUNKYO, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn a_corrupted_store_file_is_refused_at_open_naming_the_file() {
    let mut f = Federation::new("corrupt", &[BUNKYO, HOSPITAL], "");
    f.start(BUNKYO);
    f.record_consent("consent.json");
    f.kill(BUNKYO);
    let db = f.members[BUNKYO].data.join("store/db");
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    eprintln!("db is {len} bytes");
    for b in &mut bytes[len / 4..len / 4 + 4096.min(len / 2)] {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let err = start_refused(&f, BUNKYO);
    assert!(err.contains("store") && err.contains("backup"), "{err}");
}
