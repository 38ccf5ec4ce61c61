//! `tsunagi demo`: case-0007 played end to end across the sample federation.
//!
//! The demo makes a fresh federation CA, issues certificates to the ten members of
//! `fixtures/directory.toml`, signs the directory, and then plays the case with a simulated clock
//! on the fixture dates. Every exchange runs the full protocol: the sender's consent gate, the
//! per-role redaction of the policy table, an envelope sealed with the sender's certificate, the
//! receiver's checks (signatures, identity, consent, digests) and a signed receipt checked by the
//! sender. Each party runs in this process: the QUIC transport and durable stores of a networked
//! gateway are not part of this walk-through yet.
//!
//! Every step states what must happen; if anything else happens the demo says so and exits
//! non-zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tsunagi_certs::{Credentials, FederationCa, FederationTrust};
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::cose::{sha256, Signer};
use tsunagi_protocol::directory::Directory;
use tsunagi_protocol::document::{
    ConsentRecord, Document, ResidenceChange, SupportPlan, TransferNotice,
};
use tsunagi_protocol::entropy::{Entropy, SystemEntropy};
use tsunagi_protocol::envelope::{
    ConsentRef, Envelope, Inbound, Receipt, ReceiptStatus, Receiver, ReceiverState,
    DEFAULT_MAX_SKEW, NO_REDISCLOSURE_NOTICE,
};
use tsunagi_protocol::gate::{self, GateInput, Intent};
use tsunagi_protocol::period;
use tsunagi_protocol::profile::{PolicyTable, Profile};
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::testkit::{CASE_0007, DIRECTORY_TOML};
use tsunagi_protocol::{Date, DocType, OrgId, Purpose, Role, Timestamp};

use crate::files::{fail, CliResult, Fail};

/// One member's gateway, in process.
struct Party {
    role: Role,
    name: String,
    signer: Signer,
    /// Received documents: (msgId, doc type, disclosed elements).
    inbox: Vec<([u8; 16], DocType, usize)>,
    receipts: HashMap<[u8; 16], Vec<u8>>,
    consents: Vec<ConsentRecord>,
}

/// What happened to one send.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Denied(String),
}

struct Federation {
    parties: BTreeMap<OrgId, Party>,
    directory: Directory,
    trust: FederationTrust,
    policy: PolicyTable,
    now: Timestamp,
    rng: SystemEntropy,
    /// Orgs that received anything of the case (for the withdrawal notice, R4).
    received: BTreeSet<OrgId>,
    /// Envelopes waiting: (recipient, doc, purpose, why waiting).
    waiting: Vec<(OrgId, DocBundle, Purpose, String)>,
    consent: Option<(ConsentRecord, DocBundle)>,
    out: String,
    failures: Vec<String>,
}

/// Looks up roles in the directory for a receiving party.
struct View<'a> {
    party: &'a Party,
    directory: &'a Directory,
}

impl ReceiverState for View<'_> {
    fn stored_receipt(&self, msg_id: &[u8; 16]) -> Option<Vec<u8>> {
        self.party.receipts.get(msg_id).cloned()
    }
    fn latest_consent(&self, id: &str) -> Option<ConsentRecord> {
        self.party
            .consents
            .iter()
            .filter(|c| c.id == id)
            .max_by_key(|c| c.version)
            .cloned()
    }
    fn role_of(&self, org: &OrgId) -> Option<Role> {
        self.directory.role_of(org)
    }
}

fn fixture(name: &str) -> CliResult<Document> {
    let (_, json) = CASE_0007
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| Fail(format!("demo fixture {name} is missing")))?;
    Document::from_json(json).map_err(|e| fail(name, e))
}

fn day(s: &str) -> Timestamp {
    // Fixture dates are valid by construction; 09:00 UTC keeps each step inside its day.
    s.parse::<Date>()
        .map(|d| d.start().plus(9 * 3600))
        .unwrap_or(Timestamp(0))
}

impl Federation {
    fn org(&self, s: &str) -> OrgId {
        s.parse().expect("demo org ids are valid")
    }

    fn name(&self, org: &OrgId) -> String {
        self.parties
            .get(org)
            .map_or_else(|| org.to_string(), |p| p.name.clone())
    }

    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
    }

    fn step(&mut self, date: &str, title: &str) {
        self.now = day(date);
        self.say(format!("\n{date}  {title}"));
    }

    fn expect(&mut self, ok: bool, what: &str) {
        if !ok {
            self.failures.push(what.to_owned());
            self.say(format!("            !! expected: {what}"));
        }
    }

    fn sign(&mut self, doc: &Document) -> CliResult<DocBundle> {
        let author = self
            .parties
            .get(doc.author())
            .ok_or_else(|| Fail(format!("{} is not in the demo federation", doc.author())))?;
        DocBundle::sign(doc, &author.signer, self.now, &mut self.rng).map_err(|e| fail("demo", e))
    }

    /// The sender's side: gate, redaction, envelope; the receiver's checks; the receipt.
    fn send(
        &mut self,
        from: &OrgId,
        to: &OrgId,
        bundle: &DocBundle,
        purpose: Purpose,
    ) -> CliResult<Outcome> {
        let limits = Limits::default();
        let manifest = bundle
            .manifest_unverified(&limits)
            .map_err(|e| fail("demo", e))?;
        let kind = manifest.doc_type;
        let role = self
            .directory
            .role_of(to)
            .ok_or_else(|| Fail(format!("{to} is not in the directory")))?;
        let (consent, consent_bundle) = match (&self.consent, kind) {
            (Some(c), _) => c.clone(),
            (None, _) => {
                return Ok(self.refused(
                    from,
                    to,
                    kind,
                    "no consent is recorded for the case (R1)".into(),
                ))
            }
        };
        let decision = gate::evaluate(&GateInput {
            consent: Some(&consent),
            intent: Intent {
                case: &manifest.subject,
                purpose,
                doc_type: kind,
                sender: from,
                recipient: to,
                recipient_role: role,
            },
            now: self.now.date(),
            support_period: None,
        });
        if let Err(reason) = decision.into_result() {
            return Ok(self.refused(from, to, kind, reason.to_string()));
        }
        let profile = self.policy.profile(kind, role);
        if profile == Profile::None {
            return Ok(self.refused(
                from,
                to,
                kind,
                format!("the policy table gives a {role} nothing of a {kind} (R2)"),
            ));
        }
        let view = bundle.redact(|e| profile.discloses(kind, e));
        let mut msg_id = [0u8; 16];
        self.rng.fill(&mut msg_id);
        let envelope = Envelope {
            msg_id,
            iat: self.now,
            exp: self.now.plus(5 * 86_400),
            sender: from.clone(),
            aud: to.clone(),
            kind,
            purpose,
            case: manifest.subject.clone(),
            consent_ref: ConsentRef::to(&consent, &consent_bundle),
            consent: consent_bundle,
            doc: view.doc.clone(),
            disclosures: view.items.clone(),
            in_reply_to: None,
            notice: NO_REDISCLOSURE_NOTICE.into(),
        };
        let sender = self
            .parties
            .get(from)
            .ok_or_else(|| Fail(format!("{from} has no gateway")))?;
        let bytes = envelope.seal(&sender.signer);
        let receiver_party = self
            .parties
            .get(to)
            .ok_or_else(|| Fail(format!("{to} has no gateway")))?;
        let receiver = Receiver {
            me: to,
            chains: &self.trust,
            limits,
            max_skew: DEFAULT_MAX_SKEW,
        };
        let state = View {
            party: receiver_party,
            directory: &self.directory,
        };
        let (status, reason, withheld, disclosed) =
            match receiver.receive(&bytes, from, self.now, &state) {
                Ok(Inbound::New(a)) => (
                    ReceiptStatus::Accepted,
                    None,
                    a.document.withheld.clone(),
                    a.document.disclosed.len(),
                ),
                Ok(Inbound::Replay(_)) => return Err(Fail("demo: unexpected replay".into())),
                Err(r) => (ReceiptStatus::Rejected, Some(r.code()), vec![], 0),
            };
        let receipt = Receipt {
            msg_id: Some(msg_id),
            envelope_digest: sha256(&bytes),
            receiver: to.clone(),
            time: self.now,
            status,
            reason: reason.clone(),
        }
        .seal(&receiver_party.signer);
        let checked = Receipt::verify(&receipt, &bytes, to, &self.trust, self.now, &limits)
            .map_err(|e| fail("demo receipt", e))?;
        if let Some(reason) = reason {
            self.say(format!(
                "            {} → {}: {kind} rejected by the receiver ({reason})",
                self.name(from),
                self.name(to)
            ));
            return Ok(Outcome::Denied(reason));
        }
        let party = self.parties.get_mut(to).expect("checked above");
        party.receipts.insert(msg_id, receipt);
        party.inbox.push((msg_id, kind, disclosed));
        if kind == DocType::Consent {
            if let Document::Consent(c) =
                Document::from_value(view_json(&view, &self.trust, self.now)?)
                    .map_err(|e| fail("demo", e))?
            {
                party.consents.push(c);
            }
        }
        self.received.insert(to.clone());
        let seen = if withheld.is_empty() {
            format!("{profile}: all {disclosed} fields")
        } else {
            let shown: Vec<_> = withheld.iter().take(4).cloned().collect();
            let more = withheld.len().saturating_sub(shown.len());
            format!(
                "{profile}: {disclosed} fields; withheld {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        let line = format!(
            "            {} → {}: {kind} [{seen}] receipt {:?}",
            self.name(from),
            self.name(to),
            checked.status
        );
        self.say(line);
        Ok(Outcome::Delivered)
    }

    fn refused(&mut self, from: &OrgId, to: &OrgId, kind: DocType, why: String) -> Outcome {
        self.say(format!(
            "            {} → {}: {kind} REFUSED by the sender's gate: {why}",
            self.name(from),
            self.name(to)
        ));
        Outcome::Denied(why)
    }

    /// Records a consent version at Bunkyo and shares it with every org it names.
    fn record_consent(&mut self, file: &str) -> CliResult<Vec<OrgId>> {
        let doc = fixture(file)?;
        let Document::Consent(record) = &doc else {
            return Err(Fail(format!("{file} is not a consent record")));
        };
        let bundle = self.sign(&doc)?;
        self.consent = Some((record.clone(), bundle.clone()));
        let controller = record.controller.clone();
        if let Some(p) = self.parties.get_mut(&controller) {
            p.consents.push(record.clone());
        }
        let named: Vec<OrgId> = record
            .recipients
            .iter()
            .filter_map(|r| match r {
                tsunagi_protocol::document::ConsentRecipient::Org { org } => Some(org.clone()),
                tsunagi_protocol::document::ConsentRecipient::Role { .. } => None,
            })
            .filter(|o| *o != controller)
            .collect();
        self.say(format!(
            "            consent v{} ({:?}, purposes: {}) recorded by {} (staff name kept out of logs)",
            record.version,
            record.status,
            record.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
            self.name(&controller)
        ));
        let mut delivered = vec![];
        for org in named {
            if self.send(&controller, &org, &bundle, Purpose::ConsentManagement)?
                == Outcome::Delivered
            {
                delivered.push(org);
            }
        }
        Ok(delivered)
    }
}

/// The JSON of a fully disclosed bundle, verified.
fn view_json(
    b: &DocBundle,
    trust: &FederationTrust,
    now: Timestamp,
) -> CliResult<serde_json::Value> {
    let v = b
        .verify(trust, now, &Limits::default())
        .map_err(|e| fail("demo", e))?;
    Ok(v.to_json())
}

fn setup(dir: &Path) -> CliResult<Federation> {
    let start = day("2026-09-01");
    let ca = FederationCa::init_at(dir.join("ca"), "tsunagi demo federation CA", start)
        .map_err(|e| Fail(e.to_string()))?;
    let mut directory: Directory =
        toml::from_str(DIRECTORY_TOML).map_err(|e| fail("fixtures/directory.toml", e))?;
    directory.expires = Some(Date::new(2027, 12, 31).expect("valid date"));
    let signed = directory
        .sign(&ca.federation_signer().map_err(|e| Fail(e.to_string()))?)
        .map_err(|e| fail("directory", e))?;
    std::fs::write(dir.join("directory.cose"), &signed).map_err(|e| fail(dir.display(), e))?;
    let trust = ca.trust().map_err(|e| Fail(e.to_string()))?;
    let directory = Directory::verify(
        &signed,
        &trust.federation(),
        day("2026-10-01"),
        &Limits::default(),
    )
    .map_err(|e| fail("directory", e))?;
    let mut parties = BTreeMap::new();
    for m in &directory.members {
        let out = dir.join(m.org.as_str().replace(':', "_"));
        ca.issue_at(&m.org, "localhost", &out, 730, start)
            .map_err(|e| Fail(e.to_string()))?;
        let creds = Credentials::load(&out).map_err(|e| Fail(e.to_string()))?;
        let signer = Signer::from_pkcs8(
            creds.signing_key.secret_pkcs8_der(),
            creds.signing_chain.clone(),
        )
        .map_err(|e| fail(out.display(), e))?;
        parties.insert(
            m.org.clone(),
            Party {
                role: m.role,
                name: m.name.clone(),
                signer,
                inbox: vec![],
                receipts: HashMap::new(),
                consents: vec![],
            },
        );
    }
    Ok(Federation {
        parties,
        directory,
        trust,
        policy: PolicyTable::new(),
        now: start,
        rng: SystemEntropy::new(),
        received: BTreeSet::new(),
        waiting: vec![],
        consent: None,
        out: String::new(),
        failures: vec![],
    })
}

/// Runs the demo; with `keep`, leaves certificates and signed documents there.
pub fn run(keep: Option<&Path>) -> CliResult {
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
        None => {
            let d = std::env::temp_dir().join(format!("tsunagi-demo-{}", std::process::id()));
            std::fs::create_dir_all(&d).map_err(|e| fail(d.display(), e))?;
            d
        }
    };
    let result = play(&dir);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (out, failures) = result?;
    print!("{out}");
    if failures.is_empty() {
        println!("\nEvery step happened as described.");
        if let Some(d) = keep {
            println!(
                "Certificates, the signed directory and every signed document are in {}",
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

fn play(dir: &Path) -> CliResult<(String, Vec<String>)> {
    let mut f = setup(dir)?;
    let bunkyo = f.org("lg:131059");
    let tokyo = f.org("lg:130001");
    let setagaya = f.org("lg:131121");
    let hospital = f.org("mi:1310000017");
    let clinic = f.org("mi:1310000025");
    let nurse = f.org("mi:1360000011");
    let provider = f.org("sp:1330000011");
    let npo = f.org("ot:npo-komorebi");
    let police = f.org("ot:mpd");
    let docs = dir.join("documents");
    std::fs::create_dir_all(&docs).map_err(|e| fail(docs.display(), e))?;
    let keep_doc = |name: &str, b: &DocBundle| {
        std::fs::write(docs.join(name), b.to_bytes()).map_err(|e| fail(name, e))
    };

    f.say("tsunagi demo: case-0007 (synthetic) across the sample federation of fixtures/directory.toml");
    f.say(format!(
        "A fresh federation CA issued TLS and signing certificates to {} members and signed the directory.",
        f.parties.len()
    ));

    // Before consent: nothing moves (R1).
    f.step(
        "2026-10-02",
        "The hospital finishes its needs assessment; no consent is recorded yet",
    );
    let assessment = f.sign(&fixture("needs_assessment.json")?)?;
    keep_doc("needs_assessment.cbor", &assessment)?;
    let o = f.send(&hospital, &bunkyo, &assessment, Purpose::PlanCreation)?;
    f.expect(
        matches!(o, Outcome::Denied(_)),
        "the assessment is refused before consent (R1)",
    );

    f.step(
        "2026-10-05",
        "Bunkyo records the person's consent and shares it with the parties it names",
    );
    let shared = f.record_consent("consent.json")?;
    f.expect(
        shared.len() == 6,
        "consent v1 reaches the six parties it names besides Bunkyo",
    );

    f.step(
        "2026-10-08",
        "The hospital sends its assessment (Form 5/6) and opinion letter (Form 3/4) to Bunkyo",
    );
    let o = f.send(&hospital, &bunkyo, &assessment, Purpose::PlanCreation)?;
    f.expect(
        o == Outcome::Delivered,
        "Bunkyo receives the full assessment",
    );
    let letter = f.sign(&fixture("opinion_letter.json")?)?;
    keep_doc("opinion_letter.cbor", &letter)?;
    let o = f.send(&hospital, &bunkyo, &letter, Purpose::PlanCreation)?;
    f.expect(
        o == Outcome::Delivered,
        "Bunkyo receives the opinion letter",
    );

    f.step(
        "2026-10-20",
        "Bunkyo makes the plan (Form 1/2) with Tokyo as co-author and notifies the support parties",
    );
    let plan_doc = fixture("support_plan.json")?;
    let Document::SupportPlan(plan) = &plan_doc else {
        return Err(Fail("support_plan.json is not a plan".into()));
    };
    let plan: SupportPlan = (**plan).clone();
    period::check(&plan.support_period, plan.discharge_date)
        .map_err(|e| fail("support_plan.json", e))?;
    let plan_bundle = f.sign(&plan_doc)?;
    keep_doc("support_plan.cbor", &plan_bundle)?;
    for to in [&tokyo, &clinic, &nurse, &provider, &npo] {
        let o = f.send(&bunkyo, to, &plan_bundle, Purpose::PlanImplementation)?;
        f.expect(
            o == Outcome::Delivered,
            "each support party receives the plan in its role's view",
        );
    }
    f.say("            Bunkyo passes the assessment on: the clinic (treating team) sees the ratings, the NPO only Form 6");
    for to in [&clinic, &npo] {
        let o = f.send(&bunkyo, to, &assessment, Purpose::PlanImplementation)?;
        f.expect(
            o == Outcome::Delivered,
            "the assessment reaches the clinic and the NPO",
        );
    }
    let npo_got = f.parties[&npo].inbox.last().map(|(_, _, n)| *n);
    f.expect(
        npo_got == Some(13),
        "the NPO sees 13 Form 6 fields and no item rating",
    );

    f.step("2026-10-21", "Someone tries to send the plan to the police");
    let o = f.send(&bunkyo, &police, &plan_bundle, Purpose::PlanImplementation)?;
    f.expect(
        matches!(&o, Outcome::Denied(r) if r.contains("refused police involvement")),
        "the police send is refused because the person refused (R6)",
    );
    f.expect(
        f.parties[&police].inbox.is_empty(),
        "nothing reaches the police",
    );

    f.step(
        "2027-01-08",
        "The person reports a move to Setagaya (residence change)",
    );
    let change_doc = fixture("residence_change.json")?;
    let Document::ResidenceChange(change) = &change_doc else {
        return Err(Fail(
            "residence_change.json is not a residence change".into(),
        ));
    };
    let change: ResidenceChange = change.clone();
    let dest = f
        .directory
        .authority_for(&change.new_municipality)
        .cloned()
        .ok_or_else(|| {
            Fail(format!(
                "no authority serves municipality {}",
                change.new_municipality
            ))
        })?;
    f.say(format!(
        "            the directory maps municipality {} to {} ({dest})",
        change.new_municipality,
        f.name(&dest)
    ));
    f.expect(
        dest == setagaya,
        "Setagaya's health centre is the destination",
    );
    let moved_on = change.moved_on.unwrap_or(change.reported_on);
    let remaining = period::remaining_period(&plan.support_period, moved_on)
        .ok_or_else(|| Fail("no support period remains at the move".into()))?;
    let notice_json = serde_json::json!({
        "document_type": "transfer_notice",
        "author": bunkyo.as_str(),
        "subject": plan.subject.as_str(),
        "to": dest.as_str(),
        "sent_on": f.now.date().to_string(),
        "relocation": {
            "new_address": change.new_address,
            "new_municipality": change.new_municipality.as_str(),
            "moved_on": change.moved_on.map(|d| d.to_string()),
        },
        "plan": plan_doc.to_json(),
        "remaining_period": serde_json::to_value(&remaining).map_err(|e| fail("demo", e))?,
        "support_summary": null,
    });
    let notice_doc = Document::from_value(notice_json).map_err(|e| fail("transfer notice", e))?;
    let Document::TransferNotice(notice) = &notice_doc else {
        return Err(Fail("the drafted notice is not a transfer notice".into()));
    };
    let notice: TransferNotice = notice.clone();
    f.say(format!(
        "            Form 7 drafted from the current plan; the destination's period is the remaining {}..{} (R5)",
        notice.remaining_period.from, notice.remaining_period.to
    ));
    let notice_bundle = f.sign(&notice_doc)?;
    keep_doc("transfer_notice.cbor", &notice_bundle)?;
    match f.send(&bunkyo, &dest, &notice_bundle, Purpose::RelocationTransfer)? {
        Outcome::Denied(why) => {
            f.say("            the transfer notice waits for consent (awaiting_consent)");
            f.waiting.push((
                dest.clone(),
                notice_bundle.clone(),
                Purpose::RelocationTransfer,
                why,
            ));
        }
        Outcome::Delivered => f.expect(
            false,
            "the transfer notice waits: consent v1 does not cover relocation",
        ),
    }

    f.step(
        "2027-01-10",
        "The person consents to the transfer: consent v2 adds relocation_transfer and Setagaya",
    );
    f.record_consent("consent_v2_relocation.json")?;
    let waiting = std::mem::take(&mut f.waiting);
    for (to, b, purpose, _) in waiting {
        f.say(
            "            the waiting transfer notice goes now, with the remaining support period",
        );
        let o = f.send(&bunkyo, &to, &b, purpose)?;
        f.expect(
            o == Outcome::Delivered,
            "the transfer notice reaches Setagaya once consent covers it",
        );
    }

    f.step(
        "2027-01-20",
        "The summary of support so far follows the transfer notice",
    );
    let summary = Document::from_value(serde_json::json!({
        "document_type": "support_summary",
        "author": bunkyo.as_str(),
        "subject": plan.subject.as_str(),
        "to": setagaya.as_str(),
        "written_on": "2027-01-20",
        "summary": "退院後、外来通院と訪問看護を継続し、服薬は安定。日中活動の場を調整中。",
        "support_given": plan.support_rows.iter().map(|r| serde_json::json!({
            "agency": r.agency.as_str(), "agency_name": r.agency_name, "support": r.support,
        })).collect::<Vec<_>>(),
    }))
    .map_err(|e| fail("support summary", e))?;
    let summary_bundle = f.sign(&summary)?;
    keep_doc("support_summary.cbor", &summary_bundle)?;
    let o = f.send(
        &bunkyo,
        &setagaya,
        &summary_bundle,
        Purpose::RelocationTransfer,
    )?;
    f.expect(
        o == Outcome::Delivered,
        "the support summary reaches Setagaya",
    );

    f.step("2027-02-01", "The person withdraws consent (v3)");
    f.say("            a revised plan for the NPO is queued while its gateway is offline");
    f.waiting.push((
        npo.clone(),
        plan_bundle.clone(),
        Purpose::PlanImplementation,
        "peer offline".into(),
    ));
    let npo_before = f.parties[&npo].inbox.len();
    f.record_consent("consent_v3_withdrawn.json")?;
    let cancelled = std::mem::take(&mut f.waiting);
    for (to, _, _, _) in &cancelled {
        f.say(format!(
            "            queued envelope to {} cancelled: consent withdrawn, never delivered (R4)",
            f.name(to)
        ));
    }
    let o = f.send(&bunkyo, &npo, &plan_bundle, Purpose::PlanImplementation)?;
    f.expect(
        matches!(&o, Outcome::Denied(r) if r.contains("withdrawn")),
        "nothing more is shared after withdrawal",
    );
    let withdrawal = Document::from_value(serde_json::json!({
        "document_type": "consent_withdrawal",
        "author": bunkyo.as_str(),
        "subject": plan.subject.as_str(),
        "consent_id": "consent-131059-2026-0007",
        "consent_version": 3,
        "withdrawn_on": "2027-02-01",
        "message": "本人が同意を撤回しました。以後、本件に関する情報の共有を停止してください。",
    }))
    .map_err(|e| fail("withdrawal notice", e))?;
    let withdrawal_bundle = f.sign(&withdrawal)?;
    keep_doc("consent_withdrawal.cbor", &withdrawal_bundle)?;
    let recipients: Vec<OrgId> = f
        .received
        .iter()
        .filter(|o| **o != bunkyo)
        .cloned()
        .collect();
    f.say(format!(
        "            withdrawal notice to every org that received anything of the case ({})",
        recipients.len()
    ));
    let mut notified = 0;
    for to in &recipients {
        if f.send(&bunkyo, to, &withdrawal_bundle, Purpose::ConsentManagement)?
            == Outcome::Delivered
        {
            notified += 1;
        }
    }
    f.expect(
        notified == recipients.len(),
        "every party that received something is notified",
    );
    f.expect(
        f.parties[&npo].inbox.len() == npo_before + 2,
        "the NPO got consent v3 and the notice, not the plan",
    );
    f.expect(
        !recipients.contains(&police),
        "the police never received anything, so get no notice either",
    );

    f.say("\nSummary (received documents per party):");
    let rows: Vec<String> = f
        .parties
        .iter()
        .map(|(org, p)| {
            let kinds: BTreeMap<DocType, usize> =
                p.inbox.iter().fold(BTreeMap::new(), |mut m, (_, k, _)| {
                    *m.entry(*k).or_default() += 1;
                    m
                });
            let list = kinds
                .iter()
                .map(|(k, n)| format!("{k}×{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "  {:<16} {:<18} {:<28} {}",
                org.as_str(),
                p.role.as_str(),
                p.name,
                if list.is_empty() { "—".into() } else { list }
            )
        })
        .collect();
    for r in rows {
        f.say(r);
    }
    Ok((f.out, f.failures))
}
