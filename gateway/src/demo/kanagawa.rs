//! `tsunagi demo --scenario kanagawa`: case-0007 moves from Bunkyo (Tokyo) to Yokohama
//! (Kanagawa) and Yokohama takes the case over (III.5).
//!
//! Two prefectural federations are built side by side: the Tokyo CA signs
//! `fixtures/directory.toml`, the Kanagawa CA `fixtures/directory-kanagawa.toml`, and each CA
//! cross-signs the other (`[[recognise]]` in every `gateway.toml`), as `tsunagi certs
//! cross-sign` does. Thirteen gateways run in this process on loopback. The story: Bunkyo's
//! consent and plan; the move to Yokohama; Form 7 with consent; Yokohama's acknowledgement, its
//! own consent and its own plan for the remaining period; Bunkyo's transfer-out end; Bunkyo's
//! later attempt refused (the support summary still goes); Yokohama's information request (one
//! to an authority its consent does not name is refused) and Bunkyo's answer; every audit trail
//! verified.

use super::*;
use crate::testkit::LocalFederation;
use tsunagi_protocol::testkit::{KANAGAWA_CASE_0007, KANAGAWA_DIRECTORY_TOML};
use tsunagi_protocol::CaseId;

const YOKOHAMA: &str = "lg:141003";
const KANAGAWA: &str = "lg:140007";
const CASE: &str = "case-131059-2026-0007";

fn kanagawa_fixture(name: &str) -> CliResult<Value> {
    fixture_in(&KANAGAWA_CASE_0007, name)
}

/// The `[[recognise]]` table of a member of `ours` recognising `theirs` (paths from the
/// member's home, two levels below `dir`).
fn recognise(prefecture: &str, theirs: &str, cross: &str) -> String {
    format!(
        "\n[[recognise]]\nprefecture = \"{prefecture}\"\ncross = \"../../{cross}\"\ncrl = \"../../{theirs}/ca/crl.pem\"\ndirectory = \"../../{theirs}/directory.cose\"\n"
    )
}

/// Both federations, cross-signed, and every gateway of both started.
fn setup_two(dir: &Path, clock: Arc<ManualClock>) -> CliResult<Demo> {
    let (start, days) = validity();
    let options = |ca: &str, toml: &str, recognises: String| {
        let mut o = Options::new(ca);
        o.dns_hosts = true;
        o.not_before = Some(start);
        o.days = days;
        o.directory_toml = toml.to_owned();
        o.extra_config = recognises;
        o
    };
    let tokyo = LocalFederation::build(
        &dir.join("tokyo"),
        &options(
            "Tokyo CA",
            tsunagi_protocol::testkit::DIRECTORY_TOML,
            recognise(KANAGAWA, "kanagawa", "tokyo-recognises-kanagawa.pem"),
        ),
    )
    .map_err(Fail)?;
    let kanagawa = LocalFederation::build(
        &dir.join("kanagawa"),
        &options(
            "Kanagawa CA",
            KANAGAWA_DIRECTORY_TOML,
            recognise(TOKYO, "tokyo", "kanagawa-recognises-tokyo.pem"),
        ),
    )
    .map_err(Fail)?;
    // Each CA recognises the other for its prefecture, as `tsunagi certs cross-sign` does.
    for (ca, other, prefecture, file) in [
        (&tokyo, &kanagawa, KANAGAWA, "tokyo-recognises-kanagawa.pem"),
        (&kanagawa, &tokyo, TOKYO, "kanagawa-recognises-tokyo.pem"),
    ] {
        let cross = ca
            .ca
            .cross_sign_at(other.ca.cert_der(), &org(prefecture), days, start)
            .map_err(|e| Fail(e.to_string()))?;
        let path = dir.join(file);
        std::fs::write(&path, cross.pem.as_bytes()).map_err(|e| fail(path.display(), e))?;
    }
    Demo::start(&[&tokyo, &kanagawa], clock)
}

impl Demo {
    /// Reports each queued copy; returns how many were delivered.
    async fn report_all(&mut self, from: &str, entries: &[OutboxEntry]) -> usize {
        let mut n = 0;
        for e in entries {
            if self.report(from, e).await {
                n += 1;
            }
        }
        n
    }

    /// Reports a refusal, or the entry's delivery.
    async fn outcome(
        &mut self,
        from: &str,
        to: &str,
        r: Result<OutboxEntry, GatewayError>,
    ) -> Result<bool, String> {
        match r {
            Ok(e) => Ok(self.report(from, &e).await),
            Err(GatewayError::Refused(why)) => {
                let line = format!(
                    "            {} → {}: REFUSED: {why}",
                    self.name(from),
                    self.name(to)
                );
                self.say(line);
                Err(why)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn consents_held(&self, at: &str) -> CliResult<Vec<String>> {
        let case: CaseId = CASE.parse().map_err(|e: String| Fail(e))?;
        Ok(self
            .gw(at)
            .consents_of_case(&case)
            .map_err(|e| Fail(e.to_string()))?
            .into_iter()
            .map(|c| format!("{} v{} (controller {})", c.id, c.version, c.controller))
            .collect())
    }
}

pub(super) async fn play(dir: &Path) -> CliResult<(String, Vec<String>)> {
    let clock = Arc::new(ManualClock::new(day("2026-10-05").plus(3600)));
    let mut d = setup_two(dir, clock)?;
    d.say("tsunagi demo --scenario kanagawa: case-0007 (synthetic) moves from Bunkyo (Tokyo) to Yokohama (Kanagawa)");
    d.say(format!(
        "Two prefectural CAs (Tokyo, Kanagawa) each signed their own directory and cross-signed the other; {} gateways run on loopback, each with its own store.",
        d.gws.len()
    ));

    d.step("2026-10-05", "Bunkyo records the person's consent");
    let n = d.consent("consent.json").await?;
    d.expect(n == 6, "consent v1 reaches the six parties it names");

    d.step(
        "2026-10-20",
        "Bunkyo makes the plan (Form 1/2) with Tokyo as co-author and sends it to the parties",
    );
    for to in [TOKYO, CLINIC, NPO] {
        let r = d
            .send(
                BUNKYO,
                to,
                Purpose::PlanImplementation,
                Content::Form(fixture("support_plan.json")?),
            )
            .await;
        d.expect(r == Ok(true), "each party receives the plan");
    }

    d.step(
        "2027-01-10",
        "The person plans to move to Yokohama and consents to the transfer (consent v2 names Yokohama)",
    );
    let v2 = fixture("consent_v2_relocation.json")?
        .to_string()
        .replace(SETAGAYA, YOKOHAMA);
    let v2: Value = serde_json::from_str(&v2).map_err(|e| fail("consent v2", e))?;
    let queued = d
        .gw(BUNKYO)
        .record_consent(v2)
        .await
        .map_err(|e| Fail(e.to_string()))?;
    d.say("            consent v2 recorded at 文京区 (relocation_transfer, Yokohama named)");
    let n = d.report_all(BUNKYO, &queued).await;
    d.expect(n == 7, "consent v2 reaches the six parties and Yokohama");

    d.step(
        "2027-01-12",
        "Bunkyo records the move to Yokohama: Form 7 goes across the prefectures with consent",
    );
    let mut report = fixture("residence_change.json")?;
    report["reported_on"] = json!("2027-01-12");
    report["new_municipality"] = json!("141003");
    report["new_address"] = json!("神奈川県横浜市中区港町一丁目1番地");
    let moved = d
        .gw(BUNKYO)
        .residence_change(report)
        .await
        .map_err(|e| Fail(e.to_string()))?;
    d.expect(
        moved["destination"] == YOKOHAMA,
        "Kanagawa's directory names Yokohama's health centre for 141003",
    );
    let form7: Option<OutboxEntry> = serde_json::from_value(moved["transfer"].clone()).ok();
    let delivered = match &form7 {
        Some(e) => d.report(BUNKYO, e).await,
        None => false,
    };
    d.expect(delivered, "Form 7 is delivered to Yokohama");
    let form7_id = d.inbox_id(YOKOHAMA, "transfer_notice").unwrap_or_default();
    let acknowledged = d
        .gw(YOKOHAMA)
        .audit_events()
        .map_err(|e| Fail(e.to_string()))?
        .iter()
        .any(|r| matches!(&r.event, crate::events::AuditEvent::TransferAcknowledged { id, .. } if *id == form7_id));
    d.say("            Yokohama acknowledges: its signed receipt went back to Bunkyo, and its audit trail records transfer_acknowledged");
    d.expect(
        acknowledged,
        "Yokohama records the acknowledgement of Form 7",
    );

    d.step(
        "2027-01-20",
        "Yokohama takes over: its own consent, and its own plan for the remaining period",
    );
    let mut plan = kanagawa_fixture("support_plan_yokohama.json")?;
    if let Some(m) = plan.as_object_mut() {
        // Left out: the plan's period defaults to the remaining period Form 7 gave.
        m.remove("support_period");
    }
    let taken = d
        .gw(YOKOHAMA)
        .take_over(&form7_id, kanagawa_fixture("consent_yokohama.json")?, plan)
        .await;
    match taken {
        Ok(t) => {
            d.say(format!(
                "            consent {} recorded at 横浜市 (controller Yokohama); plan v1 for {} to {} (Form 7's remaining period)",
                t.consent, t.period.from, t.period.to
            ));
            d.expect(
                t.period.from.to_string() == "2027-01-15"
                    && t.period.to.to_string() == "2027-04-30",
                "the destination's plan covers the remaining period 2027-01-15 to 2027-04-30",
            );
            let n = d.report_all(YOKOHAMA, &t.consent_sent).await;
            d.expect(
                n == 3,
                "Yokohama's consent reaches Kanagawa, the hospital and Bunkyo (which learns the new controller)",
            );
            let mut plans = 0;
            for p in &t.plan_sent {
                if let Some(e) = &p.entry {
                    if d.report(YOKOHAMA, e).await {
                        plans += 1;
                    }
                }
            }
            d.expect(
                plans == 2,
                "Yokohama's plan reaches its co-author Kanagawa and the hospital",
            );
        }
        Err(e) => d.expect(false, &format!("Yokohama takes over: {e}")),
    }
    for at in [BUNKYO, YOKOHAMA] {
        let held = d.consents_held(at)?;
        let line = format!("            {} holds: {}", d.name(at), held.join("; "));
        d.say(line);
        d.expect(
            held.len() == 2,
            "both gateways keep both controllers' consents apart",
        );
    }

    d.step(
        "2027-01-25",
        "Bunkyo ends its part: support end with outcome transferred, to every party",
    );
    let end = json!({
        "document_type": "support_end",
        "author": BUNKYO,
        "subject": CASE,
        "ended_on": "2027-01-25",
        "outcome": "transferred",
        "note": "転居に伴い横浜市へ移管しました。",
    });
    let (n, refused) = d.distribute(BUNKYO, Content::Form(end)).await?;
    d.expect(
        n == 7 && refused == 0,
        "the six parties and Yokohama learn that Bunkyo's part ended",
    );

    d.step(
        "2027-02-01",
        "Bunkyo tries to queue its plan for the NPO: refused, the case was transferred out",
    );
    let r = d
        .send(
            BUNKYO,
            NPO,
            Purpose::PlanImplementation,
            Content::Form(fixture("support_plan.json")?),
        )
        .await;
    d.expect(
        matches!(&r, Err(w) if w.contains("transferred out to lg:141003")),
        "the origin's further sharing is refused (transferred_out)",
    );
    d.say("            The support summary (Form 7 (c)) still goes to Yokohama");
    let summary = json!({
        "document_type": "support_summary",
        "author": BUNKYO,
        "subject": CASE,
        "to": YOKOHAMA,
        "written_on": "2027-02-01",
        "summary": "退院後、外来通院と訪問看護を継続。服薬は安定し、デイケアの見学を終えた。",
        "support_given": [
            { "agency": "mi:1360000011", "agency_name": "訪問看護ステーションあおば", "support": "週1回の訪問看護" }
        ],
    });
    let r = d
        .send(
            BUNKYO,
            YOKOHAMA,
            Purpose::RelocationTransfer,
            Content::Form(summary),
        )
        .await;
    d.expect(r == Ok(true), "the support summary is the exception");

    d.step(
        "2027-02-05",
        "Yokohama asks Bunkyo about past support, under its own consent",
    );
    let mut wrong = kanagawa_fixture("information_request.json")?;
    wrong["to"] = json!(SETAGAYA);
    wrong["id"] = json!("inquiry-141003-2027-0000");
    let r = d.gw(YOKOHAMA).request_information(wrong).await;
    let r = d.outcome(YOKOHAMA, SETAGAYA, r).await;
    d.expect(
        matches!(&r, Err(w) if w.contains("names neither")),
        "a request to an authority Yokohama's consent does not name is refused",
    );
    let r = d
        .gw(YOKOHAMA)
        .request_information(kanagawa_fixture("information_request.json")?)
        .await;
    let r = d.outcome(YOKOHAMA, BUNKYO, r).await;
    d.expect(r == Ok(true), "the request reaches Bunkyo");

    d.step("2027-02-08", "Bunkyo answers Yokohama's request");
    let request_id = d
        .inbox_id(BUNKYO, "information_request")
        .unwrap_or_default();
    let mut answer = kanagawa_fixture("information_answer.json")?;
    if let Some(m) = answer.as_object_mut() {
        // Filled in from the request.
        m.remove("request_digest");
    }
    let r = d.gw(BUNKYO).answer_information(&request_id, answer).await;
    let r = d.outcome(BUNKYO, YOKOHAMA, r).await;
    d.expect(r == Ok(true), "the answer reaches Yokohama");
    let answered = d.disclosed(YOKOHAMA, "information_answer");
    d.expect(
        answered.iter().any(|e| e == "answer") && answered.iter().any(|e| e == "request_digest"),
        "Yokohama holds the whole answer, naming its request by digest",
    );

    d.summarise()?;
    Ok((d.out, d.failures))
}
