//! The course of support after the first plan (guideline III.4–III.6), on the plan author's
//! gateway: plan versions and revisions, support meetings, extensions of the support period
//! (R7), readmission and the end of support, and the reminder the author gets when a period ran
//! out without an extension or an end.
//!
//! - **Versions.** A plan form that revises another may leave `supersedes.digest` out: it is
//!   filled in from the current plan ([`Gateway::complete_form`]). A plan this gateway authors is
//!   accepted when it is the current version again, or the next version naming the current one
//!   by digest; an older version, or a changed plan under the current number, is refused
//!   ([`Gateway::check_course`]). The current plan is the newest version accepted, kept by
//!   `note_document`. A plan shared for carrying it out must be a version the consent in force
//!   covers (its `plan_version`).
//! - **Extensions.** A revision that adds an extension needs the record of the support meeting
//!   that decided it (a `meeting_record` of the case held on `meeting_on` with that
//!   `extension_to`, sent or received by this gateway) and the case's consent in force, at the
//!   version the extension names, valid at least to the new end.
//! - **Meetings.** A meeting record goes only to the meeting's parties.
//! - **Support end.** `readmitted` is no outcome any more: a readmission is a notice of its own
//!   and support goes on. A distributed end is recorded here even with no party left to tell
//!   (the retention clock starts).
//! - **Residence reports.** A peer's report is recorded (`residence_reported`) and kept, with
//!   or without a plan; relocation starts only once this gateway holds the case's plan.
//! - **Fan-out.** [`Gateway::distribute`] signs a document once and sends it to every party of
//!   the case (and, for a plan, its co-author and the agencies of its support rows; for a meeting
//!   record, only the meeting's parties), each in its own view; what the gate refuses (police the
//!   person refused, an org that is not a party) is reported, not sent.
//! - **Reminders.** [`Gateway::reminders`] lists the cases whose plan authored here ran out with
//!   neither an extension nor an end of support; [`Gateway::raise_reminders`] records each once
//!   as a `reminder_due` audit event.

use std::collections::BTreeSet;

use serde::Serialize;
use tsunagi_protocol::document::SupportPlan;
use tsunagi_protocol::period::PeriodExtension;

use super::*;

/// What [`Gateway::distribute`] did for one recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Distributed {
    /// The recipient.
    pub to: OrgId,
    /// The queued entry, when the gate let it through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<OutboxEntry>,
    /// Why it was refused, otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A support period that ran out with neither an extension nor an end of support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reminder {
    /// The case.
    pub case: CaseId,
    /// The current plan's version.
    pub plan_version: u32,
    /// The last day of its support period.
    pub period_ended_on: tsunagi_protocol::Date,
}

/// The purpose a document of `kind` is distributed for.
fn purpose_of(kind: DocType) -> Purpose {
    match kind {
        DocType::SupportEnd => Purpose::SupportEnd,
        _ => Purpose::PlanImplementation,
    }
}

impl Gateway {
    /// Signs a form as this gateway (its author), after [`Gateway::complete_form`].
    pub(super) fn sign_form(
        &self,
        mut json: serde_json::Value,
    ) -> Result<(DocBundle, Document), GatewayError> {
        self.complete_form(&mut json)?;
        let doc = Document::from_value(json).map_err(|e| invalid(format!("form: {e}")))?;
        if doc.author() != &self.inner.org {
            return Err(invalid(format!(
                "form: the author is {} but this gateway is {}; only the author's gateway signs a form",
                doc.author(),
                self.inner.org
            )));
        }
        let bundle = self.sign_own(&doc)?;
        Ok((bundle, doc))
    }

    /// Fills in what the author's gateway knows better than staff: a revised plan's
    /// `supersedes.digest`, from the current plan, when the form leaves it out.
    fn complete_form(&self, json: &mut serde_json::Value) -> Result<(), GatewayError> {
        if json.get("document_type").and_then(|v| v.as_str()) != Some("support_plan") {
            return Ok(());
        }
        let needs_digest = json
            .get("supersedes")
            .and_then(|s| s.as_object())
            .is_some_and(|s| {
                s.get("digest")
                    .and_then(|d| d.as_str())
                    .unwrap_or("")
                    .is_empty()
            });
        if !needs_digest {
            return Ok(());
        }
        let case: CaseId = json
            .get("subject")
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("form: subject: expected a case id"))?;
        let current = self.current_plan(&case)?.ok_or_else(|| {
            invalid(format!(
                "form: supersedes: this gateway holds no plan of {case} to revise; send version 1 first"
            ))
        })?;
        let revises = json["supersedes"]["version"].as_u64();
        let digest = if revises == Some(u64::from(current.version)) {
            // A revision of the current plan.
            current.digest()
        } else if revises.is_some_and(|v| v + 1 == u64::from(current.version)) {
            // The current plan sent again: it revised what it names.
            current.supersedes.map(|s| s.digest).unwrap_or_default()
        } else {
            return Err(invalid(format!(
                "form: supersedes.version: the current plan of {case} is version {}; a revision names it",
                current.version
            )));
        };
        json["supersedes"]["digest"] = digest.into();
        Ok(())
    }

    /// Checks a document being submitted against the course of its case (see the module docs).
    pub(super) fn check_course(
        &self,
        bundle: &DocBundle,
        to: &OrgId,
        purpose: Purpose,
    ) -> Result<(), GatewayError> {
        let manifest = bundle
            .manifest_unverified(&Limits::default())
            .map_err(|e| invalid(format!("document: {e}")))?;
        if manifest.doc_type == DocType::TransferNotice {
            // Form 7 hands the case to the authority it names: a copy to any other (the
            // prefecture, say) would tell it the case is being handed over, and would let the
            // origin's own checks take that authority for the destination.
            let addressed = bundle
                .items
                .iter()
                .find(|i| i.element == "to")
                .and_then(|i| tsunagi_protocol::cbor::to_json(&i.value, "to").ok())
                .and_then(|v| v.as_str().map(str::to_owned));
            if addressed.as_deref() != Some(to.as_str()) {
                return Err(GatewayError::Refused(format!(
                    "transfer_notice to {to} refused: the notice is addressed to {}; Form 7 goes only to the authority it hands the case to (R5)",
                    addressed.as_deref().unwrap_or("no authority it discloses")
                )));
            }
        }
        if !matches!(
            manifest.doc_type,
            DocType::SupportPlan | DocType::SupportEnd | DocType::MeetingRecord
        ) {
            return Ok(());
        }
        // `submit` signed the form or verified the bundle just before: read it without a second
        // signature verification (the per-envelope crypto count of `bench.rs` stays as it is).
        let doc = Document::from_elements(
            manifest.doc_type,
            &manifest.author,
            &manifest.subject,
            bundle
                .items
                .iter()
                .map(|i| {
                    let v = tsunagi_protocol::cbor::to_json(&i.value, "element")
                        .unwrap_or(serde_json::Value::Null);
                    (i.element.clone(), v)
                })
                .collect(),
        )
        .map_err(|e| invalid(format!("document content: {e}")));
        let whole = bundle.items.len() == manifest.doc_type.element_ids().len();
        let doc = if whole {
            doc
        } else {
            Err(invalid("the document is not fully disclosed"))
        };
        match doc {
            Ok(Document::MeetingRecord(m)) => m.check_recipient(to).map_err(GatewayError::Refused),
            Ok(doc) => {
                self.check_document(&doc)?;
                match &doc {
                    Document::SupportPlan(p) if purpose == Purpose::PlanImplementation => {
                        self.check_consented_version(p)
                    }
                    _ => Ok(()),
                }
            }
            // A meeting record goes whole to the meeting's parties or not at all.
            Err(e) if manifest.doc_type == DocType::MeetingRecord => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// The checks that do not depend on the recipient: a plan this gateway authors must be the
    /// current version or the next one, and a support end must have an outcome that ends support.
    pub(super) fn check_document(&self, doc: &Document) -> Result<(), GatewayError> {
        match doc {
            Document::SupportPlan(p) if p.author == self.inner.org => self.check_version(p),
            Document::SupportEnd(e) => {
                e.outcome.may_be_decided().map_err(invalid)?;
                if e.outcome == tsunagi_protocol::document::SupportOutcome::Transferred
                    && e.author == self.inner.org
                {
                    self.check_transfer_out(&e.subject)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A plan this gateway authors: the current version again, or the next one naming it.
    fn check_version(&self, plan: &SupportPlan) -> Result<(), GatewayError> {
        let case = &plan.subject;
        let Some(current) = self.current_plan(case)? else {
            if plan.version != 1 {
                return Err(invalid(format!(
                    "plan: version {} revises a plan of {case} that this gateway does not hold; the first plan is version 1",
                    plan.version
                )));
            }
            return Ok(());
        };
        let digest = current.digest();
        if plan.digest() == digest {
            return Ok(());
        }
        let next = current.version + 1;
        if plan.version == current.version {
            return Err(invalid(format!(
                "plan: version {} of {case} differs from the version {} already sent; a changed plan is a revision: send it as version {next}, naming version {} in supersedes",
                plan.version, current.version, current.version
            )));
        }
        if plan.version < current.version {
            return Err(invalid(format!(
                "plan: version {} of {case} is superseded by version {}; send the current version or revise it as version {next}",
                plan.version, current.version
            )));
        }
        if plan.version != next {
            return Err(invalid(format!(
                "plan: version {} skips version {next}; the revision of version {} is version {next}",
                plan.version, current.version
            )));
        }
        if plan.supersedes.as_ref().map(|s| s.digest.as_str()) != Some(digest.as_str()) {
            return Err(invalid(format!(
                "plan: supersedes.digest does not name the current version {} of {case} ({}…); leave it out and the gateway fills it in",
                current.version,
                &digest[..12]
            )));
        }
        let (old, new) = (
            &current.support_period.extensions,
            &plan.support_period.extensions,
        );
        if new.len() < old.len() || new[..old.len()] != old[..] {
            return Err(invalid(format!(
                "plan: support_period.extensions: the {} extension(s) of version {} cannot be changed or removed; add a new one",
                old.len(),
                current.version
            )));
        }
        for x in &new[old.len()..] {
            self.check_extension(case, x, plan.co_author.as_ref())?;
        }
        Ok(())
    }

    /// A plan shared for carrying it out must be a version the consent in force covers: one
    /// that names no plan version follows the plan as revised; one that names version `n` covers
    /// versions up to `n`.
    fn check_consented_version(&self, plan: &SupportPlan) -> Result<(), GatewayError> {
        let named = self
            .consent_for_case(&plan.subject)?
            .and_then(|v| v.record.plan_version.map(|n| (v.record.version, n)));
        match named {
            Some((consent, n)) if plan.version > n => Err(GatewayError::Refused(format!(
                "support_plan version {} of {} refused: consent version {consent} covers plan version {n}; give the person the revised plan and record a consent that names version {} (R1)",
                plan.version, plan.subject, plan.version
            ))),
            _ => Ok(()),
        }
    }

    /// An extension needs the meeting that decided it and the person's consent (R7). The
    /// meeting is one this gateway signed and sent, or one the plan's co-author (the prefecture
    /// that holds the meeting with the author) signed and sent here: a meeting record another
    /// party wrote or passed on does not decide this author's extension.
    pub(crate) fn check_extension(
        &self,
        case: &CaseId,
        x: &PeriodExtension,
        co_author: Option<&OrgId>,
    ) -> Result<(), GatewayError> {
        let decides = |c: &CaseId, facts: &crate::events::DocFacts| {
            c == case && facts.meeting_on == Some(x.meeting_on) && facts.extension_to == Some(x.to)
        };
        let me = &self.inner.org;
        let decided = self.audit_events()?.iter().any(|r| match &r.event {
            // Recorded here: signed by this gateway (audit records from before the author was
            // kept have none, and count as this gateway's own).
            AuditEvent::Queued {
                case: c,
                kind: DocType::MeetingRecord,
                facts,
                ..
            } => facts.meeting_author.as_ref().is_none_or(|a| a == me) && decides(c, facts),
            AuditEvent::Received {
                case: c,
                kind: DocType::MeetingRecord,
                from,
                facts,
                ..
            } => {
                Some(from) == co_author
                    && facts
                        .meeting_author
                        .as_ref()
                        .is_none_or(|a| Some(a) == co_author)
                    && decides(c, facts)
            }
            _ => false,
        });
        if !decided {
            return Err(GatewayError::Refused(format!(
                "extension of {case} to {} refused: no record of a support meeting on {} deciding it was sent or received here; record the meeting first (R7)",
                x.to, x.meeting_on
            )));
        }
        let consent = self.consent_for_case(case)?.map(|v| v.record.clone());
        match consent {
            Some(c)
                if c.status == ConsentStatus::Active
                    && c.version == x.consent_version
                    && c.period.to >= x.to => Ok(()),
            Some(c) => Err(GatewayError::Refused(format!(
                "extension of {case} to {} refused: it names consent version {}, but the consent in force is version {} ({}, valid to {}); record the person's consent to the extension first (R7)",
                x.to, x.consent_version, c.version, format!("{:?}", c.status).to_lowercase(), c.period.to
            ))),
            None => Err(GatewayError::Refused(format!(
                "extension of {case} to {} refused: no consent of the case is recorded here (R1, R7)",
                x.to
            ))),
        }
    }

    /// Signs `content` once (a form) or takes it (a signed bundle) and sends it to every party
    /// of its case, each in its own view (see the module docs). Refusals are reported per
    /// recipient; nothing already queued is undone.
    pub async fn distribute(&self, content: Content) -> Result<Vec<Distributed>, GatewayError> {
        let (bundle, doc) = match content {
            Content::Form(json) => self.sign_form(json)?,
            Content::Bundle(bytes) => {
                let bundle = DocBundle::from_bytes(&bytes, &Limits::default())
                    .map_err(|e| invalid(format!("document: {e}")))?;
                let doc = full_document(&bundle, &self.trust(), self.now())?;
                (bundle, doc)
            }
        };
        // Refuse the whole distribution, not each copy, when the document itself is refused.
        self.check_document(&doc)?;
        if let Document::SupportPlan(p) = &doc {
            self.check_consented_version(p)?;
        }
        let case = doc.subject().clone();
        let mut to: BTreeSet<OrgId> = BTreeSet::new();
        match &doc {
            Document::MeetingRecord(m) => to.extend(m.parties().cloned()),
            Document::SupportPlan(p) => {
                to.extend(self.recipients_of_case(&case)?);
                to.extend(p.co_author.iter().cloned());
                to.extend(p.support_rows.iter().map(|r| r.agency.clone()));
                to.insert(p.hospital.org.clone());
            }
            _ => to.extend(self.recipients_of_case(&case)?),
        }
        to.remove(&self.inner.org);
        to.remove(doc.author());
        if let Document::SupportEnd(end) = &doc {
            // The end is the author's decision: recorded here (the retention clock starts, R8)
            // even when no party is left to tell.
            let mut tx = Tx::new();
            self.note_support_end(&mut tx, &case, end.ended_on)?;
            self.audit(
                &mut tx,
                AuditEvent::SupportEnded {
                    case: case.clone(),
                    ended_on: end.ended_on,
                    outcome: end.outcome,
                },
            );
            self.commit(tx).await?;
        }
        let purpose = purpose_of(doc.doc_type());
        let mut out = Vec::new();
        for org in to {
            // Signed or verified once above: each copy is gated, redacted and sealed for its
            // recipient without parsing or verifying the document again.
            let r = match self.inner.durable.admit() {
                Ok(()) => {
                    self.submit_checked(&org, purpose, &bundle, Some(&doc), None)
                        .await
                }
                Err(e) => Err(e.into()),
            };
            out.push(match r {
                Ok(e) => Distributed {
                    to: org,
                    entry: Some(e),
                    refused: None,
                },
                Err(GatewayError::Refused(why)) => Distributed {
                    to: org,
                    entry: None,
                    refused: Some(why),
                },
                Err(e) => return Err(e),
            });
        }
        Ok(out)
    }

    /// The cases whose current plan (authored here) ran out before today's Japan date with
    /// neither an extension covering today nor a recorded end of support.
    /// Housekeeping also records each new one as a `reminder_due` audit event.
    pub fn reminders(&self) -> Result<Vec<Reminder>, GatewayError> {
        let today = self.now().date();
        let cases: BTreeSet<CaseId> = self
            .audit_events()?
            .into_iter()
            .filter_map(|r| match r.event {
                AuditEvent::PlanCurrent { case, .. } => Some(case),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for case in cases {
            let store = self.inner.durable.store();
            if store.read(&Key::support_end(case.as_str()))?.is_some() {
                continue;
            }
            let Some(plan) = self.current_plan(&case)? else {
                continue;
            };
            let end = plan.support_period.effective_end();
            if end < today {
                out.push(Reminder {
                    case,
                    plan_version: plan.version,
                    period_ended_on: end,
                });
            }
        }
        Ok(out)
    }

    /// A peer's report of a move (the hospital's, II.9(3)): recorded, kept in the inbox, and a
    /// relocation started when this gateway authors the case's plan. Before any plan exists the
    /// report is kept for the plan author, who makes the plan for the new address.
    pub(super) async fn residence_reported(
        &self,
        change: &tsunagi_protocol::document::ResidenceChange,
        from: &OrgId,
    ) -> Result<(), GatewayError> {
        let plan = self.current_plan(&change.subject)?.is_some();
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::ResidenceReported {
                case: change.subject.clone(),
                from: from.clone(),
                plan,
                address_known: change.new_municipality.is_some(),
            },
        );
        self.commit(tx).await?;
        // The person agreed to share with the orgs their consent names; a report from anyone
        // else (any authority may write one) is kept and recorded, and starts nothing.
        let named = self
            .controller_consent(&change.subject, &self.inner.org)?
            .is_some_and(|own| {
                own.record.status == ConsentStatus::Active
                    && own
                        .record
                        .recipients
                        .iter()
                        .any(|r| matches!(r, ConsentRecipient::Org { org } if org == from))
            });
        if plan && !named {
            tracing::info!(
                case = change.subject.as_str(),
                from = from.as_str(),
                "no transfer drafted for the reported move: the reporter is not named in this gateway's consent of the case"
            );
        }
        if plan && named {
            if let Err(e) = self.relocate(change, Some(from)).await {
                tracing::info!(
                    case = change.subject.as_str(),
                    "no transfer drafted for the reported move: {e}"
                );
            }
        }
        Ok(())
    }

    /// Records a `reminder_due` audit event for each due reminder not recorded before (called
    /// hourly by housekeeping and by the `reminders` control request); returns how many were
    /// new.
    pub async fn raise_reminders(&self) -> Result<usize, GatewayError> {
        let raised: BTreeSet<(CaseId, tsunagi_protocol::Date)> = self
            .audit_events()?
            .into_iter()
            .filter_map(|r| match r.event {
                AuditEvent::ReminderDue {
                    case,
                    period_ended_on,
                } => Some((case, period_ended_on)),
                _ => None,
            })
            .collect();
        let mut tx = Tx::new();
        let mut new = 0;
        for r in self.reminders()? {
            if raised.contains(&(r.case.clone(), r.period_ended_on)) {
                continue;
            }
            tracing::warn!(
                case = r.case.as_str(),
                ended = %r.period_ended_on,
                "a support period ran out with neither an extension nor an end of support: decide it"
            );
            self.audit(
                &mut tx,
                AuditEvent::ReminderDue {
                    case: r.case,
                    period_ended_on: r.period_ended_on,
                },
            );
            new += 1;
        }
        if new > 0 {
            self.commit(tx).await?;
        }
        Ok(new)
    }

    /// Whether `plan` (authored here) is newer than the current plan of its case, so that it
    /// becomes the current one; an older version never replaces a newer one.
    pub(super) fn is_newer_plan(&self, plan: &SupportPlan) -> Result<bool, GatewayError> {
        Ok(self
            .current_plan(&plan.subject)?
            .is_none_or(|c| plan.version > c.version))
    }
}

/// The facts of a plan the statistics count.
pub(super) fn plan_facts(plan: &SupportPlan, facts: &mut DocFacts) {
    let p = &plan.support_period;
    facts.joint = Some(plan.co_author.is_some());
    facts.period_days = Some(p.effective_end().to_days() - p.from.to_days() + 1);
    facts.version = Some(plan.version);
    facts.extensions = Some(p.extensions.len() as u32);
    facts.exceptional = Some(p.is_exceptional(plan.discharge_date));
}
