//! `Gateway::distribute` checks a document once, however many parties it goes to.
//!
//! Its own test binary: the count of Ed25519 operations is process-wide, so no other test may
//! sign or verify while this one counts. Only the sending gateway runs; the parties are in the
//! directory but down, so their copies wait in the outbox and nothing is delivered (no receipt
//! to verify while counting).

use std::sync::Arc;

use tsunagi_gateway::clock::ManualClock;
use tsunagi_gateway::engine::{Content, Gateway};
use tsunagi_gateway::testkit::{fixture, LocalFederation, Options};
use tsunagi_protocol::cose::ed25519_operations;
use tsunagi_protocol::Timestamp;

const BUNKYO: &str = "lg:131059";

fn day(s: &str) -> Timestamp {
    s.parse::<tsunagi_protocol::Date>()
        .expect("a date")
        .start()
        .plus(3600)
}

#[test]
fn a_distributed_plan_is_not_verified_again_for_each_recipient() {
    let root = std::env::temp_dir().join(format!("tsunagi-distribute-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let start = Timestamp(day("2026-09-01").0.min(tsunagi_gateway::files::now().0));
    let mut opts = Options::new("distribute test CA");
    opts.not_before = Some(start);
    opts.days = ((tsunagi_gateway::files::now().0.saturating_sub(start.0)) / 86_400 + 400) as u32;
    opts.extra_config = "[delivery]\nconnect_timeout_ms = 200\n".into();
    let fed = LocalFederation::build(&root, &opts).unwrap();
    let clock = Arc::new(ManualClock::new(day("2026-10-05")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gw = Gateway::open_with_clock(fed.config(BUNKYO).unwrap(), clock.clone()).unwrap();
        let run = gw.clone();
        tokio::spawn(async move { run.run().await });
        gw.record_consent(fixture("consent.json").unwrap())
            .await
            .unwrap();
        clock.set(day("2026-10-10"));
        let plan = fixture("support_plan.json").unwrap();

        let before = ed25519_operations();
        let out = gw.distribute(Content::Form(plan)).await.unwrap();
        let after = ed25519_operations();

        let queued = out.iter().filter(|d| d.entry.is_some()).count();
        assert!(queued >= 3, "{out:?}");
        // The plan is signed once here and not verified as the document of each copy; the
        // case's current plan, which each copy is checked against, is verified when it is
        // first read from the store, then cached. Before, this was 3 per copy (21 for 6).
        let verified = after.verifications - before.verifications;
        assert!(
            verified <= 2,
            "{verified} verifications for {queued} copies"
        );
        // One author signature, and one seal per recipient (each is a peer of its own);
        // perhaps one audit checkpoint.
        let signed = after.signatures - before.signatures;
        let expected = 1 + queued as u64;
        assert!(
            (expected..=expected + 1).contains(&signed),
            "{signed} signatures for {queued} copies"
        );
        gw.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&root);
}
