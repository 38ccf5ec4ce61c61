//! A full disk on the receiver: a store on a small tmpfs is filled while a peer sends.
//!
//! 1. Below the free-space floor (`[storage] min_free_bytes`) the receiver stays up, answers its
//!    control socket, warns in its log and sends no receipt, so the sender keeps its envelopes
//!    queued and retries; once space is freed, everything is delivered.
//! 2. With the floor off, the disk fills up for real: sled fails with ENOSPC and cannot write
//!    again in-process, so the receiver logs one line and exits with status 75. After space is
//!    freed, a restart acknowledges again.
//!
//! Afterwards every envelope acknowledged to the submitter is in the receiver's inbox exactly
//! once, and none was rejected. Needs root to mount the tmpfs; otherwise it is skipped with
//! the reason printed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi_gateway::store::SpaceFloor;
use tsunagi_tests::Federation;

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";
const KIB: u64 = 1024;

/// A tmpfs mounted on a directory, lazily unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn free(&self) -> u64 {
        SpaceFloor::new(&self.0, 0).free().expect("statvfs")
    }

    /// Writes a filler file that leaves about `leave` bytes free.
    fn fill(&self, leave: u64) -> PathBuf {
        let path = self.0.join("filler");
        let len = self.free().saturating_sub(leave);
        std::fs::write(&path, vec![0xa5u8; len as usize]).expect("write the filler");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn support_end() -> Value {
    json!({
        "document_type": "support_end", "author": BUNKYO, "subject": "case-131059-2026-0007",
        "ended_on": "2027-04-30", "outcome": "completed", "note": "",
    })
}

fn send(f: &Federation) -> String {
    let entry = f.call(
        BUNKYO,
        json!({"op": "send", "to": HOSPITAL, "purpose": "support_end", "form": support_end()}),
    );
    entry["id"].as_str().expect("id").to_owned()
}

/// The hospital's received support-end ids (in inbox order, duplicates kept).
fn received(f: &Federation) -> Vec<String> {
    f.inbox(HOSPITAL)
        .iter()
        .filter(|e| e["kind"] == "support_end")
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

fn outbox_state(f: &Federation, ids: &BTreeSet<String>) -> Vec<String> {
    f.call(BUNKYO, json!({"op": "outbox_list"}))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| ids.contains(e["id"].as_str().unwrap_or("")))
        .map(|e| e["state"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Waits until every id in `acked` was delivered; then checks each is in the inbox once.
fn all_delivered_exactly_once(f: &Federation, acked: &BTreeSet<String>, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let states = outbox_state(f, acked);
        assert!(
            !states.iter().any(|s| s == "rejected" || s == "expired"),
            "a temporary condition produced a final refusal: {states:?}\n{}",
            f.log(HOSPITAL)
        );
        if states.len() == acked.len() && states.iter().all(|s| s == "delivered") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after {secs} s: {states:?}\n{}",
            f.log(HOSPITAL)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ids = received(f);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an envelope was stored twice");
    for id in acked {
        assert!(unique.contains(id), "acknowledged {id} is not in the inbox");
    }
}

#[test]
fn a_full_disk_refuses_cleanly_and_the_receiver_acknowledges_again_once_space_is_back() {
    let mut f = Federation::new(
        "diskfull",
        &[BUNKYO, HOSPITAL],
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 500\nconnect_timeout_ms = 500\nattempt_timeout_ms = 5000\nidle_timeout_ms = 1500\n[storage]\nmin_free_bytes = 1048576\nstall_timeout_ms = 10000\n",
    );
    let disk = match Tmpfs::mount(&f.members[HOSPITAL].data, "6m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!(
                "skipped: cannot mount a 6 MB tmpfs for the receiver's store (needs root): {why}"
            );
            return;
        }
    };
    f.start_all();
    f.record_consent("consent.json");
    f.wait_outbox(BUNKYO, 30, "consent to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });
    let mut acked = BTreeSet::new();
    for _ in 0..5 {
        acked.insert(send(&f));
    }
    all_delivered_exactly_once(&f, &acked, 30);

    // 1. Below the floor: refused without a receipt, the receiver stays up.
    let filler = disk.fill(512 * KIB);
    let held: BTreeSet<String> = (0..10).map(|_| send(&f)).collect();
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let ids = received(&f);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "inbox list took {:?}",
        started.elapsed()
    );
    assert!(
        !ids.iter().any(|id| held.contains(id)),
        "an envelope was accepted below the floor"
    );
    let states = outbox_state(&f, &held);
    assert!(
        states.iter().all(|s| s == "queued" || s == "retry_wait"),
        "{states:?}"
    );
    // A local submission is refused with an error naming the disk and the floor.
    let refused = f
        .try_call(
            HOSPITAL,
            json!({"op": "send", "to": BUNKYO, "purpose": "support_end", "form": support_end()}),
        )
        .expect_err("a submission below the floor");
    assert!(
        refused.contains("min_free_bytes") && refused.contains("nothing was acknowledged"),
        "{refused}"
    );
    let log = f.log(HOSPITAL);
    assert!(
        log.contains("DISK NEARLY FULL"),
        "no warning in the log:\n{log}"
    );
    assert!(
        log.contains("no receipt sent, the sender will retry"),
        "{log}"
    );
    std::fs::remove_file(&filler).expect("free space");
    acked.extend(held);
    all_delivered_exactly_once(&f, &acked, 60);
    assert!(f.log(HOSPITAL).contains("has space again"));

    // 2. No floor: the disk fills up for real while Bunkyo keeps sending.
    f.kill(HOSPITAL);
    let config = &f.members[HOSPITAL].config;
    let text = std::fs::read_to_string(config).expect("config");
    std::fs::write(
        config,
        text.replace("min_free_bytes = 1048576", "min_free_bytes = 0"),
    )
    .expect("config");
    f.start(HOSPITAL);
    let filler = disk.fill(256 * KIB);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(BTreeSet::new()));
    let sock = f.socket(BUNKYO);
    let submitter = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let request = json!({"op": "send", "to": HOSPITAL, "purpose": "support_end", "form": support_end()});
                let entry = rt
                    .block_on(tsunagi_gateway::control::call(&sock, &request))
                    .expect("Bunkyo's disk is not full");
                sent.lock()
                    .unwrap()
                    .insert(entry["id"].as_str().unwrap().to_owned());
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let child = f
            .members
            .get_mut(HOSPITAL)
            .and_then(|m| m.child.as_mut())
            .expect("running");
        if let Some(status) = child.try_wait().expect("wait") {
            f.members.get_mut(HOSPITAL).unwrap().child = None;
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver never hit the full disk ({} sent, {} KiB free):\n{}",
            sent.lock().unwrap().len(),
            disk.free() / KIB,
            f.log(HOSPITAL)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Bunkyo keeps acknowledging submissions while the receiver is down.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    submitter.join().expect("submitter");
    let log = f.log(HOSPITAL);
    assert_eq!(status.code(), Some(75), "{status}:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("stopping (exit status 75)"))
        .unwrap_or_else(|| panic!("no stop line:\n{log}"));
    assert!(
        line.contains("is full") && line.contains("nothing acknowledged was lost"),
        "{line}"
    );

    // Space is back: a restart acknowledges again, and nothing acknowledged is lost or doubled.
    std::fs::remove_file(&filler).expect("free space");
    f.start(HOSPITAL);
    acked.extend(sent.lock().unwrap().iter().cloned());
    all_delivered_exactly_once(&f, &acked, 120);
    eprintln!(
        "{} acknowledged and delivered exactly once; the receiver stopped with {status} on the full disk",
        acked.len()
    );
}
