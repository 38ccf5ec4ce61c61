//! `tsunagi demo`: case-0007 played end to end across the sample federation, over the network.
//!
//! The demo makes a fresh federation CA in a temporary directory, issues TLS and signing
//! certificates to the ten members of `fixtures/directory.toml`, signs the directory (each member
//! on a free loopback port) and starts ten gateways — each with its own data directory, durable
//! store and QUIC endpoint with mutual TLS — in this process. It then plays case-0007 on the
//! fixture dates (the gateways share a manual clock) and prints who sent what to whom, which
//! fields each recipient saw, and what was refused and why. Every step states what must happen;
//! if anything else happens the demo says so and exits non-zero. `--keep DIR` keeps every
//! gateway's data, configuration and certificates.
//!
//! `--scenario kanagawa` plays the move of case-0007 from Bunkyo (Tokyo) to Yokohama (Kanagawa)
//! instead, across two prefectural federations that recognise each other by cross-certificate
//! (see `demo/kanagawa.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi_protocol::testkit::CASE_0007;
use tsunagi_protocol::{Date, OrgId, Purpose, Timestamp};

use crate::clock::ManualClock;
use crate::engine::{parse_id, Content, Gateway, GatewayError, OutState, OutboxEntry};
use crate::files::{fail, CliResult, Fail};
use crate::testkit::{LocalFederation, Options};

const BUNKYO: &str = "lg:131059";
const TOKYO: &str = "lg:130001";
const SETAGAYA: &str = "lg:131121";
const HOSPITAL: &str = "mi:1310000017";
const CLINIC: &str = "mi:1310000025";
const NURSE: &str = "mi:1360000011";
const PROVIDER: &str = "sp:1330000011";
const NPO: &str = "ot:npo-komorebi";
const POLICE: &str = "ot:mpd";

fn fixture(name: &str) -> CliResult<Value> {
    fixture_in(&CASE_0007, name)
}

/// Fixture `name` of `table` (one of the protocol's embedded case fixtures), parsed.
fn fixture_in(table: &[(&str, &str)], name: &str) -> CliResult<Value> {
    let (_, json) = table
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| Fail(format!("demo fixture {name} is missing")))?;
    serde_json::from_str(json).map_err(|e| fail(name, e))
}

fn org(s: &str) -> OrgId {
    s.parse().expect("demo org ids are valid")
}

/// 09:00 in Japan on a fixture date.
fn day(s: &str) -> Timestamp {
    s.parse::<Date>().map(|d| d.start()).unwrap_or(Timestamp(0))
}

struct Demo {
    gws: BTreeMap<String, Gateway>,
    names: BTreeMap<String, String>,
    clock: Arc<ManualClock>,
    out: String,
    failures: Vec<String>,
}

impl Demo {
    fn gw(&self, o: &str) -> &Gateway {
        &self.gws[o]
    }

    fn name(&self, o: &str) -> String {
        self.names.get(o).cloned().unwrap_or_else(|| o.to_owned())
    }

    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
    }

    fn step(&mut self, date: &str, title: &str) {
        self.clock.set(day(date).plus(3600));
        self.say(format!("\n{date}  {title}"));
    }

    fn expect(&mut self, ok: bool, what: &str) {
        if !ok {
            self.failures.push(what.to_owned());
            self.say(format!("            !! expected: {what}"));
        }
    }

    /// Waits until `from`'s outbox entry `id` is final (or 20 s pass); returns it.
    async fn settle(&self, from: &str, id: &str) -> Option<OutboxEntry> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let key = parse_id(id)?;
        loop {
            let e = self.gw(from).outbox_entry(&key).ok().flatten()?;
            if e.state.is_final() || Instant::now() > deadline {
                return Some(e);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reports one queued entry once it has settled.
    async fn report(&mut self, from: &str, e: &OutboxEntry) -> bool {
        let done = self.settle(from, &e.id).await;
        let (from_n, to_n) = (self.name(from), self.name(e.to.as_str()));
        match done {
            Some(d) if d.state == OutState::Delivered => {
                let view = if d.withheld.is_empty() {
                    format!("{}: every field", d.profile)
                } else {
                    let shown: Vec<_> = d.withheld.iter().take(4).cloned().collect();
                    let more = d.withheld.len().saturating_sub(shown.len());
                    format!(
                        "{}: withheld {}{}",
                        d.profile,
                        shown.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    )
                };
                self.say(format!(
                    "            {from_n} → {to_n}: {} [{view}] delivered, signed receipt",
                    d.kind
                ));
                true
            }
            Some(d) => {
                self.say(format!(
                    "            {from_n} → {to_n}: {} {:?}: {}",
                    d.kind,
                    d.state,
                    d.last_error.unwrap_or_default()
                ));
                false
            }
            None => false,
        }
    }

    /// Submits a form or bundle and reports the outcome (delivered, or refused with the reason).
    async fn send(
        &mut self,
        from: &str,
        to: &str,
        purpose: Purpose,
        content: Content,
    ) -> Result<bool, String> {
        match self.gw(from).submit(&org(to), purpose, content).await {
            Ok(e) => Ok(self.report(from, &e).await),
            Err(GatewayError::Refused(why)) => {
                let line = format!(
                    "            {} → {}: REFUSED by the consent gate: {why}",
                    self.name(from),
                    self.name(to)
                );
                self.say(line);
                Err(why)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn consent(&mut self, file: &str) -> CliResult<usize> {
        let queued = self
            .gw(BUNKYO)
            .record_consent(fixture(file)?)
            .await
            .map_err(|e| fail(file, e))?;
        let record = fixture(file)?;
        self.say(format!(
            "            consent v{} ({}) recorded at {}; sent to the parties it names",
            record["version"],
            record["status"].as_str().unwrap_or("?"),
            self.name(BUNKYO)
        ));
        let mut delivered = 0;
        for e in &queued {
            if self.report(BUNKYO, e).await {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// Distributes a document to every party of its case and reports each copy; returns how
    /// many were delivered and how many the gate refused.
    async fn distribute(&mut self, from: &str, content: Content) -> CliResult<(usize, usize)> {
        let out = self
            .gw(from)
            .distribute(content)
            .await
            .map_err(|e| Fail(e.to_string()))?;
        let (mut delivered, mut refused) = (0, 0);
        for d in &out {
            if let Some(e) = &d.entry {
                if self.report(from, e).await {
                    delivered += 1;
                }
            } else if let Some(why) = &d.refused {
                refused += 1;
                let line = format!(
                    "            {} → {}: REFUSED: {why}",
                    self.name(from),
                    self.name(d.to.as_str())
                );
                self.say(line);
            }
        }
        Ok((delivered, refused))
    }

    /// The elements `at` holds of its newest received document of `kind`.
    fn disclosed(&self, at: &str, kind: &str) -> Vec<String> {
        self.gw(at)
            .inbox()
            .ok()
            .and_then(|i| {
                i.into_iter()
                    .rev()
                    .find(|e| e.kind.map(|k| k.as_str()) == Some(kind))
            })
            .map(|e| e.disclosed)
            .unwrap_or_default()
    }

    /// The closing summary of a scenario: every audit trail verified, and what each gateway
    /// received.
    fn summarise(&mut self) -> CliResult {
        self.say("\nAudit trails (hash chains with signed checkpoints):");
        let orgs: Vec<String> = self.gws.keys().cloned().collect();
        for o in &orgs {
            let report = self.gw(o).audit_verify().map_err(|e| Fail(e.to_string()))?;
            let line = format!(
                "  {:<16} {:<28} {:>3} records, {}",
                o,
                self.name(o),
                report.records,
                if report.intact() {
                    "intact".to_owned()
                } else {
                    format!("ALTERED: {}", report.problems.join("; "))
                }
            );
            self.say(line);
            self.expect(report.intact(), "every audit trail verifies");
        }
        self.say("\nReceived documents per gateway:");
        for o in &orgs {
            let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
            for e in self.gw(o).inbox().map_err(|e| Fail(e.to_string()))? {
                if let Some(k) = e.kind {
                    *kinds.entry(k.to_string()).or_default() += 1;
                }
            }
            let list = kinds
                .iter()
                .map(|(k, n)| format!("{k}×{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let line = format!(
                "  {:<16} {:<28} {}",
                o,
                self.name(o),
                if list.is_empty() { "—".into() } else { list }
            );
            self.say(line);
        }
        Ok(())
    }

    fn inbox_id(&self, at: &str, kind: &str) -> Option<String> {
        self.gw(at)
            .inbox()
            .ok()?
            .into_iter()
            .rev()
            .find(|e| e.kind.map(|k| k.as_str()) == Some(kind))
            .map(|e| e.id)
    }
}

/// When the demo's certificates start and how many days they last: valid both on the fixture
/// dates and now (TLS checks the real time).
fn validity() -> (Timestamp, u32) {
    let start = Timestamp(day("2026-09-01").0.min(crate::files::now().0));
    let days = ((crate::files::now().0.saturating_sub(start.0)) / 86_400 + 400) as u32;
    (start, days)
}

impl Demo {
    /// Opens and starts every member's gateway of `feds` on `clock`.
    fn start(feds: &[&LocalFederation], clock: Arc<ManualClock>) -> CliResult<Demo> {
        let mut gws = BTreeMap::new();
        let mut names = BTreeMap::new();
        for fed in feds {
            for (org, m) in &fed.members {
                let gw = Gateway::open_with_clock(fed.config(org).map_err(Fail)?, clock.clone())
                    .map_err(|e| Fail(format!("{org}: {e}")))?;
                let run = gw.clone();
                tokio::spawn(async move { run.run().await });
                gws.insert(org.clone(), gw);
                names.insert(org.clone(), m.name.clone());
            }
        }
        Ok(Demo {
            gws,
            names,
            clock,
            out: String::new(),
            failures: vec![],
        })
    }
}

fn setup(dir: &Path, clock: Arc<ManualClock>) -> CliResult<Demo> {
    let (start, days) = validity();
    let mut opts = Options::new("tsunagi demo federation CA");
    // The certificates carry the directory's hosts (DNS names): the gateways dial 127.0.0.1
    // and check each certificate against that name.
    opts.dns_hosts = true;
    opts.not_before = Some(start);
    opts.days = days;
    let fed = LocalFederation::build(dir, &opts).map_err(Fail)?;
    Demo::start(&[&fed], clock)
}

mod kanagawa;

/// Which story `tsunagi demo` plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Case-0007 within Tokyo: consent, plan, course of support, a move within the prefecture,
    /// withdrawal and the end of support.
    Default,
    /// Case-0007 moves from Bunkyo (Tokyo) to Yokohama (Kanagawa): Form 7 across two
    /// prefectures, the destination taking over, the origin's end, and the information request.
    Kanagawa,
}

/// Runs the default demo; with `keep`, leaves every gateway's files there.
pub fn run(keep: Option<&Path>) -> CliResult {
    run_scenario(Scenario::Default, keep)
}

/// Runs `scenario`; with `keep`, leaves every gateway's files there.
pub fn run_scenario(scenario: Scenario, keep: Option<&Path>) -> CliResult {
    let dir: PathBuf = match keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| fail(d.display(), e))?;
            if std::fs::read_dir(d)
                .map_err(|e| fail(d.display(), e))?
                .next()
                .is_some()
            {
                return Err(Fail(format!(
                    "--keep {}: the directory is not empty",
                    d.display()
                )));
            }
            d.to_path_buf()
        }
        None => crate::files::create_fresh_private_dir(&std::env::temp_dir(), "tsunagi-demo-")?,
    };
    // A directory of our own making goes however the run ends (an error, a panic), after the
    // runtime and its gateways are gone (declared before them, dropped after them).
    let _removed = crate::files::RemovedOnDrop(keep.is_none().then(|| dir.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail("cannot start the async runtime", e))?;
    let result = match scenario {
        Scenario::Default => rt.block_on(play(&dir)),
        Scenario::Kanagawa => rt.block_on(kanagawa::play(&dir)),
    };
    rt.shutdown_timeout(Duration::from_secs(1));
    let (out, failures) = result?;
    crate::out!("{out}");
    if failures.is_empty() {
        crate::outln!("\nEvery step happened as described.");
        if let Some(d) = keep {
            crate::outln!(
                "Each gateway's configuration, certificates and data are in {}",
                d.display()
            );
        }
        Ok(())
    } else {
        Err(Fail(format!(
            "{} step(s) did not happen as described: {}",
            failures.len(),
            failures.join("; ")
        )))
    }
}

async fn play(dir: &Path) -> CliResult<(String, Vec<String>)> {
    let clock = Arc::new(ManualClock::new(day("2026-10-02").plus(3600)));
    let mut d = setup(dir, clock)?;
    d.say("tsunagi demo: case-0007 (synthetic) across the sample federation of fixtures/directory.toml");
    d.say(format!(
        "A fresh federation CA issued TLS and signing certificates to {} gateways, each running on loopback with its own store.",
        d.gws.len()
    ));

    d.step(
        "2026-10-02",
        "The hospital finishes its needs assessment; no consent is recorded yet",
    );
    let r = d
        .send(
            HOSPITAL,
            BUNKYO,
            Purpose::PlanCreation,
            Content::Form(fixture("needs_assessment.json")?),
        )
        .await;
    d.expect(
        matches!(&r, Err(w) if w.contains("R1")),
        "the assessment is refused before consent (R1)",
    );

    d.step(
        "2026-10-05",
        "Bunkyo records the person's consent and shares it with the parties it names",
    );
    let n = d.consent("consent.json").await?;
    d.expect(
        n == 6,
        "consent v1 reaches the six parties it names besides Bunkyo",
    );

    d.step(
        "2026-10-08",
        "The hospital sends its assessment (Form 5/6) and opinion letter (Form 3/4) to Bunkyo",
    );
    for form in ["needs_assessment.json", "opinion_letter.json"] {
        let r = d
            .send(
                HOSPITAL,
                BUNKYO,
                Purpose::PlanCreation,
                Content::Form(fixture(form)?),
            )
            .await;
        d.expect(
            r == Ok(true),
            "Bunkyo receives the hospital's documents in full",
        );
    }

    d.step(
        "2026-10-20",
        "Bunkyo makes the plan (Form 1/2) with Tokyo as co-author and notifies the support parties",
    );
    for to in [TOKYO, CLINIC, NURSE, PROVIDER, NPO] {
        let r = d
            .send(
                BUNKYO,
                to,
                Purpose::PlanImplementation,
                Content::Form(fixture("support_plan.json")?),
            )
            .await;
        d.expect(
            r == Ok(true),
            "each party receives the plan in its role's view",
        );
    }
    d.say("            Bunkyo passes the assessment on: the clinic (treating team) sees the ratings, the NPO only Form 6");
    let assessment = d
        .inbox_id(BUNKYO, "needs_assessment")
        .ok_or_else(|| Fail("Bunkyo has no assessment".into()))?;
    let bundle = d
        .gw(BUNKYO)
        .inbox_bundle(&parse_id(&assessment).unwrap_or_default())
        .map_err(|e| Fail(e.to_string()))?
        .ok_or_else(|| Fail("the assessment cannot be exported".into()))?;
    for to in [CLINIC, NPO] {
        let r = d
            .send(
                BUNKYO,
                to,
                Purpose::PlanImplementation,
                Content::Bundle(bundle.clone()),
            )
            .await;
        d.expect(
            r == Ok(true),
            "the assessment reaches the clinic and the NPO",
        );
    }
    let npo_view = d.gw(NPO).inbox().map_err(|e| Fail(e.to_string()))?;
    let form6 = npo_view
        .iter()
        .rev()
        .find(|e| e.kind.map(|k| k.as_str()) == Some("needs_assessment"));
    d.expect(
        form6.is_some_and(|e| {
            e.disclosed.len() == 13 && e.disclosed.iter().all(|x| !x.starts_with("items."))
        }),
        "the NPO's gateway holds 13 Form 6 fields and no item rating or note",
    );

    d.step("2026-10-21", "Someone tries to send the plan to the police");
    let r = d
        .send(
            BUNKYO,
            POLICE,
            Purpose::PlanImplementation,
            Content::Form(fixture("support_plan.json")?),
        )
        .await;
    d.expect(
        matches!(&r, Err(w) if w.contains("refused police involvement")),
        "refused: the person refused (R6)",
    );
    d.expect(
        d.gw(POLICE).inbox().map(|i| i.is_empty()).unwrap_or(false),
        "nothing reaches the police",
    );

    d.step(
        "2026-11-20",
        "The person was readmitted on 2026-11-18: the hospital tells Bunkyo, Bunkyo tells the parties; support goes on",
    );
    let r = d
        .send(
            HOSPITAL,
            BUNKYO,
            Purpose::PlanImplementation,
            Content::Form(fixture("readmission.json")?),
        )
        .await;
    d.expect(r == Ok(true), "Bunkyo receives the readmission notice");
    let readmission = d
        .inbox_id(BUNKYO, "readmission")
        .and_then(|id| {
            d.gw(BUNKYO)
                .inbox_bundle(&parse_id(&id).unwrap_or_default())
                .ok()
                .flatten()
        })
        .ok_or_else(|| Fail("Bunkyo has no readmission notice".into()))?;
    let (n, _) = d.distribute(BUNKYO, Content::Bundle(readmission)).await?;
    d.expect(
        n == 5,
        "the five other parties learn of the readmission (the hospital wrote it)",
    );
    d.expect(
        d.disclosed(NPO, "readmission") == ["admitted_on"],
        "the NPO learns only the day of admission",
    );
    let r = d
        .send(
            BUNKYO,
            NPO,
            Purpose::SupportEnd,
            Content::Form(json!({"document_type": "support_end", "author": BUNKYO, "subject": "case-131059-2026-0007",
                "ended_on": "2026-11-20", "outcome": "readmitted", "note": ""})),
        )
        .await;
    d.say(format!(
        "            ending support because of the readmission is refused: {}",
        r.as_ref().err().map_or("?", |e| e.as_str())
    ));
    d.expect(
        matches!(&r, Err(w) if w.contains("does not end support")),
        "a readmission does not end support",
    );

    d.step(
        "2026-12-01",
        "Discharged again on 2026-11-30: Bunkyo revises the plan (v2, more home visits) and every party gets it in its view",
    );
    let (n, refused) = d
        .distribute(BUNKYO, Content::Form(fixture("support_plan_v2.json")?))
        .await?;
    d.expect(
        n == 6 && refused == 0,
        "plan v2 reaches Tokyo, the hospital, the clinic, the nurse, the provider and the NPO",
    );
    let r = d
        .send(
            BUNKYO,
            CLINIC,
            Purpose::PlanImplementation,
            Content::Form(fixture("support_plan.json")?),
        )
        .await;
    d.say(format!(
        "            sending v1 again is refused: {}",
        r.as_ref().err().map_or("?", |e| e.as_str())
    ));
    d.expect(
        matches!(&r, Err(w) if w.contains("superseded by version 2")),
        "the current plan is the newest version",
    );

    d.step(
        "2027-01-05",
        "Support meeting: the person and the mother attend, the NPO is absent; the meeting decides to extend the period to 2027-05-31",
    );
    let (n, _) = d
        .distribute(BUNKYO, Content::Form(fixture("meeting_record.json")?))
        .await?;
    d.expect(
        n == 5,
        "the record reaches the meeting's parties only, the absent NPO included",
    );
    d.expect(
        d.gw(HOSPITAL)
            .inbox()
            .map(|i| {
                !i.iter()
                    .any(|e| e.kind.map(|k| k.as_str()) == Some("meeting_record"))
            })
            .unwrap_or(false),
        "the hospital, not a party of the meeting, gets no record",
    );

    d.step(
        "2027-01-06",
        "Extension: plan v3 extends the period to 2027-05-31 (meeting of 2027-01-05, consent v1) and goes to every party",
    );
    let (n, refused) = d
        .distribute(
            BUNKYO,
            Content::Form(fixture("support_plan_v3_extended.json")?),
        )
        .await?;
    d.expect(n == 6 && refused == 0, "the extension reaches every party");

    d.step(
        "2027-01-08",
        "The person reports a move to Setagaya: Bunkyo records the residence change",
    );
    let moved = d
        .gw(BUNKYO)
        .residence_change(fixture("residence_change.json")?)
        .await
        .map_err(|e| Fail(e.to_string()))?;
    let transfer: Option<OutboxEntry> = serde_json::from_value(moved["transfer"].clone()).ok();
    let dest = moved["destination"].as_str().unwrap_or("?").to_owned();
    d.say(format!(
        "            the directory maps municipality 131121 to {} ({dest})",
        d.name(&dest)
    ));
    d.say("            Form 7 drafted from the current plan and the new address; it waits (awaiting_consent): consent v1 does not cover the transfer");
    d.expect(
        dest == SETAGAYA,
        "Setagaya's health centre is the destination",
    );
    d.expect(
        transfer
            .as_ref()
            .is_some_and(|t| t.state == OutState::AwaitingConsent),
        "the transfer notice waits for consent",
    );

    d.step(
        "2027-01-10",
        "The person consents to the transfer: consent v2 adds relocation_transfer and Setagaya",
    );
    d.consent("consent_v2_relocation.json").await?;
    if let Some(t) = &transfer {
        let done = d.settle(BUNKYO, &t.id).await;
        d.expect(
            done.is_some_and(|e| e.state == OutState::Delivered),
            "the waiting transfer notice goes by itself once consent covers it",
        );
    }
    let notice = d.inbox_id(SETAGAYA, "transfer_notice");
    let shown = notice
        .and_then(|id| {
            d.gw(SETAGAYA)
                .inbox_show(&parse_id(&id).unwrap_or_default())
                .ok()
                .flatten()
        })
        .unwrap_or(Value::Null);
    let period = &shown["document"]["remaining_period"];
    let (from, to, extended) = (
        period["from"].as_str().unwrap_or("?"),
        period["to"].as_str().unwrap_or("?"),
        period["extensions"][0]["to"].as_str().unwrap_or("?"),
    );
    d.say(format!(
        "            Setagaya's default support period is the remaining one: {from} to {to}, extended to {extended} (R5, R7)"
    ));
    d.expect(
        from == "2027-01-15" && to == "2027-04-30" && extended == "2027-05-31",
        "the remaining period is 2027-01-15 to 2027-04-30 with the extension to 2027-05-31",
    );

    d.step(
        "2027-01-20",
        "The summary of support so far follows the transfer notice",
    );
    let summary = json!({
        "document_type": "support_summary", "author": BUNKYO, "subject": "case-131059-2026-0007", "to": SETAGAYA,
        "written_on": "2027-01-20", "summary": "退院後、外来通院と訪問看護を継続し、服薬は安定。日中活動の場を調整中。",
        "support_given": [{"agency": CLINIC, "agency_name": "本郷こころのクリニック", "support": "2週に1回の外来診察"}],
    });
    let r = d
        .send(
            BUNKYO,
            SETAGAYA,
            Purpose::RelocationTransfer,
            Content::Form(summary),
        )
        .await;
    d.expect(r == Ok(true), "the support summary reaches Setagaya");

    d.step("2027-02-01", "The person withdraws consent (v3)");
    d.gw(BUNKYO).hold_deliveries(&org(NPO), true);
    let revised = d
        .gw(BUNKYO)
        .submit(
            &org(NPO),
            Purpose::PlanImplementation,
            Content::Form(fixture("support_plan_v3_extended.json")?),
        )
        .await
        .map_err(|e| Fail(e.to_string()))?;
    d.say(format!(
        "            the current plan for {} is queued again while its gateway announced maintenance",
        d.name(NPO)
    ));
    let queued = d
        .gw(BUNKYO)
        .record_consent(fixture("consent_v3_withdrawn.json")?)
        .await
        .map_err(|e| Fail(e.to_string()))?;
    let cancelled = d
        .gw(BUNKYO)
        .outbox_entry(&parse_id(&revised.id).unwrap_or_default())
        .ok()
        .flatten();
    d.expect(
        cancelled
            .as_ref()
            .is_some_and(|e| e.state == OutState::Cancelled),
        "the queued plan is cancelled, never delivered",
    );
    d.say("            consent v3 (withdrawn) recorded: the queued plan is cancelled, never delivered (R4)");
    d.gw(BUNKYO).hold_deliveries(&org(NPO), false);
    let (records, notices): (Vec<OutboxEntry>, Vec<OutboxEntry>) = queued
        .into_iter()
        .partition(|e| e.kind.as_str() == "consent");
    d.say(format!(
        "            consent v3 goes to the {} parties it names",
        records.len()
    ));
    for e in &records {
        d.report(BUNKYO, e).await;
    }
    d.say(format!(
        "            a withdrawal notice to every org that received anything of the case ({}):",
        notices.len()
    ));
    let mut delivered = 0;
    for n in &notices {
        if d.report(BUNKYO, n).await {
            delivered += 1;
        }
    }
    d.expect(
        delivered == notices.len() && notices.len() == 7,
        "all seven parties that received something are notified",
    );
    d.expect(
        !notices.iter().any(|n| n.to.as_str() == POLICE),
        "the police received nothing, so get no notice",
    );
    let npo_plans = d
        .gw(NPO)
        .inbox()
        .map_err(|e| Fail(e.to_string()))?
        .iter()
        .filter(|e| e.kind.map(|k| k.as_str()) == Some("support_plan"))
        .count();
    d.expect(
        npo_plans == 3,
        "the NPO holds versions 1 to 3 and never receives the cancelled copy",
    );
    let r = d
        .send(
            BUNKYO,
            NPO,
            Purpose::PlanImplementation,
            Content::Form(fixture("support_plan_v3_extended.json")?),
        )
        .await;
    d.expect(
        matches!(&r, Err(w) if w.contains("withdrawn")),
        "nothing more is shared",
    );

    d.step(
        "2027-02-10",
        "Bunkyo ends support (outcome: consent withdrawn); the notice goes by itself to every party that received anything",
    );
    let (n, refused) = d
        .distribute(BUNKYO, Content::Form(fixture("support_end.json")?))
        .await?;
    d.expect(
        n == 7 && refused == 0,
        "the seven parties are told; the police, never a party, are not",
    );
    d.expect(
        d.disclosed(NPO, "support_end") == ["ended_on"],
        "the NPO learns only the last day, not the outcome or the note",
    );
    let stats = d.gw(BUNKYO).stats().map_err(|e| Fail(e.to_string()))?;
    d.say(format!(
        "            Bunkyo's statistics (III.9): plans {}, periods {}, meetings held {}, outcomes {}, caseload per staff member {}, reminders due {}",
        stats["plans"], stats["support_periods"], stats["meetings_held"], stats["support_outcomes"], stats["caseload_per_staff"], stats["reminders_due"]
    ));
    d.expect(
        stats["plans"]["revised"] == 1
            && stats["support_periods"]["extended"] == 1
            && stats["meetings_held"] == 1
            && stats["support_outcomes"]["consent_withdrawn"] == 1,
        "the statistics count one revised, extended plan, one meeting and one outcome",
    );

    d.summarise()?;
    Ok((d.out, d.failures))
}
