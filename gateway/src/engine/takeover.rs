//! The destination takes over after a move to another authority (guideline III.5, R5).
//!
//! - **Acknowledgement.** When Form 7 arrives, the destination's gateway stores it and returns
//!   its signed receipt to the origin (the acknowledgement the origin keeps), and records a
//!   `transfer_acknowledged` audit event.
//! - **Taking over.** [`Gateway::take_over`] records the destination's own consent (this gateway
//!   its controller) and signs its own plan, version 1 of its own version chain, for the
//!   remaining period Form 7 gave unless the plan names another period; the plan goes to its
//!   co-author and the agencies of its rows. From then on the destination shares the case under
//!   its own consent: consents are kept per controller, so the origin's consent, which it still
//!   holds, neither replaces nor is replaced by its own. Its consent names the origin (for the
//!   information request), so the origin receives it and learns who the controller is now.
//! - **The origin's end.** The origin ends its part with a support end of outcome
//!   `transferred` (only after a Form 7 went from it). From then on its gateway refuses further
//!   sharing of the case (`transferred_out`), except the support summary and answers to the
//!   destination's information requests ([`tsunagi_protocol::gate::after_transfer_out`]).
//! - **Information request.** [`Gateway::request_information`] sends the destination's request
//!   under its own consent, which must name the origin and grant `information_request`;
//!   [`Gateway::answer_information`] sends the origin's answer under that same consent, to the
//!   authority that asked, naming the request by id and digest.

use serde::Serialize;
use tsunagi_protocol::document::{InformationRequest, TransferNotice};

use super::*;

/// What [`Gateway::take_over`] did.
#[derive(Debug, Clone, Serialize)]
pub struct TakeOver {
    /// The case.
    pub case: CaseId,
    /// The origin authority.
    pub from: OrgId,
    /// The destination's own consent id.
    pub consent: String,
    /// The consent record's copies queued to the orgs it names.
    pub consent_sent: Vec<OutboxEntry>,
    /// The destination plan's support period.
    pub period: tsunagi_protocol::period::SupportPeriod,
    /// The plan's copies (to its co-author and the agencies of its rows).
    pub plan_sent: Vec<Distributed>,
}

/// An index entry of a Form 7 whose outbox or inbox entry is gone: the store is damaged (both
/// are written, and removed, in one batch).
fn dangling_index(list: &str, case: &CaseId, id: &[u8; 16]) -> GatewayError {
    GatewayError::Store(StoreError::Corrupt {
        what: format!("the index of the transfer notices of {case}"),
        detail: format!(
            "it names {list} entry {}, which is not in the store",
            hex(id)
        ),
    })
}

impl Gateway {
    /// The outbox entries of the Form 7s of `case` sent from here, found by the index kept
    /// with them ([`Key::transfer_notice_sent`]): never a scan of the whole outbox.
    fn transfer_notices_sent(&self, case: &CaseId) -> Result<Vec<OutboxEntry>, GatewayError> {
        let mut entries = Vec::new();
        for id in self.indexed_transfer_notices(&Prefix::transfer_notices_sent(case.as_str()))? {
            match self.load_out(&id)? {
                Some(entry) => entries.push(entry),
                None => self.purged_meanwhile(
                    &Key::transfer_notice_sent(case.as_str(), &id),
                    "outbox",
                    case,
                    &id,
                )?,
            }
        }
        Ok(entries)
    }

    /// An index entry named a Form 7 that is not in the store: fine when a purge of the case
    /// removed both since the index was read (the index entry is gone too), else the store is
    /// damaged ([`dangling_index`]).
    fn purged_meanwhile(
        &self,
        index: &Key,
        list: &str,
        case: &CaseId,
        id: &[u8; 16],
    ) -> Result<(), GatewayError> {
        match self.inner.durable.store().read(index)? {
            None => Ok(()),
            Some(_) => Err(dangling_index(list, case, id)),
        }
    }

    /// The message ids under one of the Form 7 indexes.
    fn indexed_transfer_notices(&self, prefix: &Prefix) -> Result<Vec<[u8; 16]>, GatewayError> {
        self.inner
            .durable
            .store()
            .read_all(prefix)?
            .into_iter()
            .map(|(id, _)| {
                <[u8; 16]>::try_from(id.as_slice()).map_err(|_| {
                    GatewayError::Store(StoreError::Corrupt {
                        what: "the index of transfer notices".into(),
                        detail: format!("a message id of {} bytes instead of 16", id.len()),
                    })
                })
            })
            .collect()
    }

    /// The destination of the newest transfer notice (Form 7) of `case` sent from here.
    pub(super) fn transfer_destination(
        &self,
        case: &CaseId,
    ) -> Result<Option<OrgId>, GatewayError> {
        Ok(self
            .transfer_notices_sent(case)?
            .into_iter()
            .filter(|e| e.state != OutState::Cancelled)
            .max_by_key(|e| e.created)
            .map(|e| e.to))
    }

    /// Whether a Form 7 of `case` to `to` went from here: delivered, or on its way (not one
    /// waiting for consent, cancelled, refused or expired). A Form 7 goes only to the authority
    /// it is addressed to ([`Gateway::check_course`]). With its own consent naming `to` for a
    /// move, what makes `to` a controller of the case here (see
    /// `tsunagi_protocol::envelope::ReceiverState::transfer_sent`).
    pub(super) fn transfer_sent_to(&self, case: &CaseId, to: &OrgId) -> Result<bool, GatewayError> {
        Ok(self.transfer_notices_sent(case)?.iter().any(|e| {
            e.to == *to
                && matches!(
                    e.state,
                    OutState::Delivered | OutState::Queued | OutState::RetryWait
                )
        }))
    }

    /// The Form 7 of `case` that `from` sent this gateway (the newest, when it sent more than
    /// one), as received: what shows, with `from`'s consent, that the case moved here
    /// ([`tsunagi_protocol::fetch::HandoverLink`]). Read from the inbox, which keeps it until the
    /// case is purged, through the index kept with it ([`Key::transfer_notice_received`]).
    pub(super) fn received_transfer_notice(
        &self,
        case: &CaseId,
        from: &OrgId,
    ) -> Result<Option<DocBundle>, GatewayError> {
        let store = self.inner.durable.store();
        let mut ids = Vec::new();
        for id in
            self.indexed_transfer_notices(&Prefix::transfer_notices_received(case.as_str()))?
        {
            let Some(value) = store.read(&Key::inbox_entry(&id))? else {
                let index = Key::transfer_notice_received(case.as_str(), &id);
                self.purged_meanwhile(&index, "inbox", case, &id)?;
                continue;
            };
            let entry: InboxEntry = decode_entry("inbox entry", &id, &value)?;
            ids.push((entry.received_at, id));
        }
        ids.sort();
        let now = self.now();
        for (_, key) in ids.into_iter().rev() {
            // One that no longer reads (its author's chain gone, say) shows nothing; another may.
            let Some(bytes) = shows_nothing_if_invalid(self.inbox_bundle(&key))? else {
                continue;
            };
            let Ok(bundle) = DocBundle::from_bytes(&bytes, &Limits::default()) else {
                continue;
            };
            let addressed_here = bundle
                .verify(&*self.trust(), now, &Limits::default())
                .is_ok_and(|v| {
                    v.manifest.author == *from
                        && v.manifest.subject == *case
                        && v.disclosed.get("to").and_then(|t| t.as_str())
                            == Some(self.inner.org.as_str())
                });
            if addressed_here {
                return Ok(Some(bundle));
            }
        }
        Ok(None)
    }

    /// Where `case` went, once this gateway's part ended with a transfer-out support end.
    pub fn transferred_to(&self, case: &CaseId) -> Result<Option<OrgId>, GatewayError> {
        let Some(v) = self
            .inner
            .durable
            .store()
            .read(&Key::transferred_out(case.as_str()))?
        else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
            what: format!("the transfer-out record of {case}"),
            detail: e.to_string(),
        })?;
        v["to"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                GatewayError::Store(StoreError::Corrupt {
                    what: format!("the transfer-out record of {case}"),
                    detail: "no destination".into(),
                })
            })
    }

    /// A support end of outcome `transferred` authored here: the case's part here ends, towards
    /// the destination of its Form 7 (see the module docs). Called by `note_document`.
    pub(super) fn note_transfer_out(
        &self,
        case: &CaseId,
        ended_on: tsunagi_protocol::Date,
        tx: &mut Tx,
    ) -> Result<(), GatewayError> {
        if self
            .inner
            .durable
            .store()
            .read(&Key::transferred_out(case.as_str()))?
            .is_some()
        {
            return Ok(());
        }
        let Some(to) = self.transfer_destination(case)? else {
            return Ok(());
        };
        let v = serde_json::json!({"to": to.as_str(), "ended_on": ended_on.to_string()});
        tx.set(
            &Key::transferred_out(case.as_str()),
            serde_json::to_vec(&v).unwrap_or_default(),
        );
        self.audit(
            tx,
            AuditEvent::TransferredOut {
                case: case.clone(),
                to,
                ended_on,
            },
        );
        Ok(())
    }

    /// A transfer-out end needs the Form 7 it ends with: refused before any went from here.
    pub(super) fn check_transfer_out(&self, case: &CaseId) -> Result<(), GatewayError> {
        if self.transfer_destination(case)?.is_none() {
            return Err(invalid(format!(
                "support end: outcome transferred: no transfer notice (Form 7) of {case} went from this gateway; report the residence change first (residence_change), then end support"
            )));
        }
        Ok(())
    }

    /// The transfer-out rule for a send of `kind` of `case` to `to` (see the module docs).
    pub(super) fn check_transferred_out(
        &self,
        case: &CaseId,
        kind: DocType,
        to: &OrgId,
    ) -> Result<Result<(), tsunagi_protocol::gate::DenyReason>, GatewayError> {
        Ok(match self.transferred_to(case)? {
            Some(destination) => gate::after_transfer_out(case, kind, to, &destination),
            None => Ok(()),
        })
    }

    /// The transfer notice received as inbox entry `id`, with its origin: the notice's signed
    /// author, whom the receiver checked to be the controller of the consent it came under
    /// (whoever delivered it).
    fn received_transfer(&self, id: &str) -> Result<(TransferNotice, OrgId), GatewayError> {
        let key = parse_id(id).ok_or_else(|| invalid(format!("{id:?} is not a message id")))?;
        let entry = self
            .inner
            .durable
            .store()
            .read(&Key::inbox_entry(&key))?
            .map(|v| decode_entry::<InboxEntry>("inbox entry", &key, &v))
            .transpose()?
            .ok_or_else(|| invalid(format!("no message {id} in the inbox")))?;
        if entry.kind != Some(DocType::TransferNotice) {
            return Err(invalid(format!(
                "message {id} is a {}, not a transfer notice (Form 7)",
                entry.kind.map_or("report", |k| k.as_str())
            )));
        }
        let bytes = self
            .inbox_bundle(&key)?
            .ok_or_else(|| invalid(format!("no message {id} in the inbox")))?;
        let bundle = DocBundle::from_bytes(&bytes, &Limits::default())
            .map_err(|e| invalid(e.to_string()))?;
        match full_document(&bundle, &self.trust(), self.now())? {
            Document::TransferNotice(n) if n.to == self.inner.org => {
                let origin = n.author.clone();
                Ok((n, origin))
            }
            Document::TransferNotice(n) => Err(invalid(format!(
                "the transfer notice {id} is addressed to {}, not to this gateway",
                n.to
            ))),
            _ => Err(invalid(format!("message {id} is not a transfer notice"))),
        }
    }

    /// The destination takes the case of the transfer notice received as `transfer` over: records
    /// `consent` (this gateway its controller) and signs `plan` (the support period defaults to
    /// the notice's remaining period), sending each to those it concerns. See the module docs.
    pub async fn take_over(
        &self,
        transfer: &str,
        consent: serde_json::Value,
        mut plan: serde_json::Value,
    ) -> Result<TakeOver, GatewayError> {
        let (notice, from) = self.received_transfer(transfer)?;
        let case = notice.subject.clone();
        let consent_id = consent["id"].as_str().unwrap_or_default().to_owned();
        if consent["subject"].as_str() != Some(case.as_str()) {
            return Err(invalid(format!(
                "consent: subject: the transfer notice is about {case}; the destination's consent is about the same case"
            )));
        }
        if plan["subject"].as_str() != Some(case.as_str()) {
            return Err(invalid(format!(
                "plan: subject: the transfer notice is about {case}; the destination's plan is about the same case"
            )));
        }
        if plan.get("support_period").is_none_or(|p| p.is_null()) {
            plan["support_period"] = serde_json::to_value(&notice.remaining_period)
                .map_err(|e| invalid(e.to_string()))?;
        }
        // The plan is checked before anything is recorded.
        let (bundle, doc) = self.sign_form(plan)?;
        let Document::SupportPlan(signed) = &doc else {
            return Err(invalid("plan: document_type must be support_plan"));
        };
        self.check_document(&doc)?;
        // A take-over that failed after recording its consent (a plan refused for a party, a
        // full disk) can be run again: the same consent, already recorded here as this
        // gateway's, is not recorded twice (a different one of the same version still is
        // refused as not newer).
        let recorded = match Document::from_value(consent.clone()) {
            Ok(Document::Consent(r)) => self
                .controller_consent(&case, &self.inner.org)?
                .is_some_and(|v| v.record == r),
            _ => false,
        };
        let consent_sent = if recorded {
            Vec::new()
        } else {
            self.record_consent(consent).await?
        };
        let mut targets: Vec<OrgId> = signed.co_author.iter().cloned().collect();
        targets.extend(signed.support_rows.iter().map(|r| r.agency.clone()));
        let mut seen = HashSet::new();
        targets.retain(|o| *o != self.inner.org && seen.insert(o.clone()));
        let mut plan_sent = Vec::new();
        for to in targets {
            self.check_course(&bundle, &to, Purpose::PlanImplementation)?;
            match self
                .queue(&to, Purpose::PlanImplementation, &bundle, None)
                .await
            {
                Ok(e) => plan_sent.push(Distributed {
                    to,
                    entry: Some(e),
                    refused: None,
                }),
                Err(GatewayError::Refused(why)) => plan_sent.push(Distributed {
                    to,
                    entry: None,
                    refused: Some(why),
                }),
                Err(e) => return Err(e),
            }
        }
        // The plan is the destination's current plan even when no copy could go yet.
        let mut tx = Tx::new();
        let mut facts = crate::events::DocFacts::default();
        self.note_document(
            &bundle,
            None,
            Known::Checked(Some(&doc)),
            &case,
            &mut tx,
            &mut facts,
        )?;
        self.audit(
            &mut tx,
            AuditEvent::TakenOver {
                case: case.clone(),
                from: from.clone(),
                consent: consent_id.clone(),
                period_from: signed.support_period.from,
                period_to: signed.support_period.effective_end(),
            },
        );
        self.commit(tx).await?;
        tracing::info!(
            case = case.as_str(),
            from = from.as_str(),
            "the case was taken over with this gateway's own consent and plan"
        );
        Ok(TakeOver {
            case,
            from,
            consent: consent_id,
            consent_sent,
            period: signed.support_period.clone(),
            plan_sent,
        })
    }

    /// The destination's request for information about past support (see the module docs):
    /// `form` is an `information_request` authored here, naming this gateway's own consent of
    /// the case; `consent_version` is filled in from it when left out.
    pub async fn request_information(
        &self,
        mut form: serde_json::Value,
    ) -> Result<OutboxEntry, GatewayError> {
        let case: CaseId = form["subject"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("information request: subject: expected a case id"))?;
        let own = self.controller_consent(&case, &self.inner.org)?.map(|v| v.record.clone()).ok_or_else(|| {
            GatewayError::Refused(format!(
                "information request about {case} refused: this gateway recorded no consent of its own for the case; record the person's consent first (R1)"
            ))
        })?;
        if form["consent_id"].as_str() != Some(own.id.as_str()) {
            return Err(invalid(format!(
                "information request: consent_id: this gateway's consent of {case} is {:?}; the request is made under it",
                own.id
            )));
        }
        if form.get("consent_version").is_none_or(|v| v.is_null()) {
            form["consent_version"] = own.version.into();
        }
        let (bundle, doc) = self.sign_form(form)?;
        let Document::InformationRequest(request) = doc else {
            return Err(invalid(
                "information request: document_type must be information_request",
            ));
        };
        if request.consent_version != own.version {
            return Err(invalid(format!(
                "information request: consent_version: the consent in force is version {}",
                own.version
            )));
        }
        let entry = self
            .queue(&request.to, Purpose::RelocationTransfer, &bundle, None)
            .await?;
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::InformationRequested {
                case,
                peer: request.to.clone(),
                request: request.id.clone(),
                consent: own.id,
                received: false,
            },
        );
        self.commit(tx).await?;
        Ok(entry)
    }

    /// The request received as inbox entry `id`, with the SHA-256 of its signed document.
    fn received_request(&self, id: &str) -> Result<(InformationRequest, String), GatewayError> {
        let key = parse_id(id).ok_or_else(|| invalid(format!("{id:?} is not a message id")))?;
        let bytes = self
            .inbox_bundle(&key)?
            .ok_or_else(|| invalid(format!("no message {id} in the inbox")))?;
        let bundle = DocBundle::from_bytes(&bytes, &Limits::default())
            .map_err(|e| invalid(e.to_string()))?;
        match full_document(&bundle, &self.trust(), self.now())? {
            Document::InformationRequest(r) if r.to == self.inner.org => {
                Ok((r, hex(&sha256(&bundle.doc))))
            }
            Document::InformationRequest(r) => Err(invalid(format!(
                "the information request {id} is addressed to {}, not to this gateway",
                r.to
            ))),
            other => Err(invalid(format!(
                "message {id} is a {}, not an information request",
                other.doc_type()
            ))),
        }
    }

    /// The origin's answer to the request received as inbox entry `request`: `form` is an
    /// `information_answer` authored here; `to`, `request_id` and `request_digest` are filled in
    /// from the request. It goes under the consent the request named (see the module docs).
    pub async fn answer_information(
        &self,
        request: &str,
        mut form: serde_json::Value,
    ) -> Result<OutboxEntry, GatewayError> {
        let (asked, digest) = self.received_request(request)?;
        for (field, value) in [
            ("to", asked.author.as_str()),
            ("request_id", asked.id.as_str()),
            ("request_digest", digest.as_str()),
        ] {
            if form.get(field).is_none_or(|v| v.is_null()) {
                form[field] = value.into();
            } else if form[field].as_str() != Some(value) {
                return Err(invalid(format!(
                    "information answer: {field}: the request {request} gives {value:?}"
                )));
            }
        }
        if form["subject"].as_str() != Some(asked.subject.as_str()) {
            return Err(invalid(format!(
                "information answer: subject: the request is about {}",
                asked.subject
            )));
        }
        let held = self
            .verified_consent(&asked.consent_id)?
            .filter(|v| v.record.controller == asked.author && v.record.subject == asked.subject)
            .ok_or_else(|| {
                GatewayError::Refused(format!(
                    "information answer to {} refused: the consent {:?} the request names is not held here (R1)",
                    asked.author, asked.consent_id
                ))
            })?;
        let (bundle, _) = self.sign_form(form)?;
        let consent = Consenting {
            record: held.record.clone(),
            bundle: held.bundle.clone(),
            previous: None,
        };
        let entry = self
            .queue(
                &asked.author,
                Purpose::RelocationTransfer,
                &bundle,
                Some(consent),
            )
            .await?;
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::InformationAnswered {
                case: asked.subject.clone(),
                peer: asked.author.clone(),
                request: asked.id.clone(),
                received: false,
            },
        );
        self.commit(tx).await?;
        Ok(entry)
    }

    /// The audit events of a received Form 7, information request or answer (see the module
    /// docs); added to the inbox write.
    pub(super) fn note_relocation_received(
        &self,
        doc: Option<&Document>,
        id: &str,
        from: &OrgId,
        tx: &mut Tx,
    ) {
        let event = match doc {
            // The origin is the notice's signed author (the controller, whoever delivered it).
            Some(Document::TransferNotice(n)) => AuditEvent::TransferAcknowledged {
                case: n.subject.clone(),
                from: n.author.clone(),
                id: id.to_owned(),
            },
            Some(Document::InformationRequest(r)) => AuditEvent::InformationRequested {
                case: r.subject.clone(),
                peer: from.clone(),
                request: r.id.clone(),
                consent: r.consent_id.clone(),
                received: true,
            },
            Some(Document::InformationAnswer(a)) => AuditEvent::InformationAnswered {
                case: a.subject.clone(),
                peer: from.clone(),
                request: a.request_id.clone(),
                received: true,
            },
            _ => return,
        };
        self.audit(tx, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::testkit::{fixture, LocalFederation, Options};
    use std::time::Instant;

    const BUNKYO: &str = "lg:131059";
    const SETAGAYA: &str = "lg:131121";
    const CASE: &str = "case-131059-2026-0007";

    fn day(s: &str) -> Timestamp {
        s.parse::<tsunagi_protocol::Date>()
            .unwrap()
            .start()
            .plus(3600)
    }

    fn kanagawa(name: &str) -> serde_json::Value {
        let (_, text) = tsunagi_protocol::testkit::KANAGAWA_CASE_0007
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap();
        // The destination here is Setagaya (in the same prefecture): the same story, with the
        // recipients this federation has.
        let mut v: serde_json::Value = serde_json::from_str(
            &text
                .replace("lg:141003", SETAGAYA)
                .replace("consent-141003", "consent-131121"),
        )
        .unwrap();
        if v["document_type"] == "consent" {
            v["recipients"] = serde_json::json!([{"org": SETAGAYA}, {"org": BUNKYO}]);
        }
        v
    }

    async fn delivered(gw: &Gateway, e: &OutboxEntry) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = parse_id(&e.id).unwrap();
        loop {
            let now = gw.outbox_entry(&id).unwrap().unwrap();
            if now.state == OutState::Delivered {
                return;
            }
            assert!(Instant::now() < deadline, "not delivered: {now:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn each_controller_keeps_its_consent_and_the_origin_stops_after_its_transfer_out_end() {
        let root = std::env::temp_dir().join(format!("tsunagi-takeover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let start = Timestamp(day("2026-09-01").0.min(crate::files::now().0));
        let mut opts = Options::new("takeover test CA");
        opts.orgs = vec![BUNKYO.into(), SETAGAYA.into()];
        opts.not_before = Some(start);
        opts.days = ((crate::files::now().0.saturating_sub(start.0)) / 86_400 + 400) as u32;
        opts.extra_config =
            "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 300\nconnect_timeout_ms = 500\n"
                .into();
        let fed = LocalFederation::build(&root, &opts).unwrap();
        let clock = Arc::new(ManualClock::new(day("2027-01-10")));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let open = |o: &str| {
                let gw = Gateway::open_with_clock(fed.config(o).unwrap(), clock.clone()).unwrap();
                let run = gw.clone();
                tokio::spawn(async move { run.run().await });
                gw
            };
            let (bunkyo, setagaya) = (open(BUNKYO), open(SETAGAYA));
            let case: CaseId = CASE.parse().unwrap();
            let tokyo: OrgId = "lg:130001".parse().unwrap();
            bunkyo
                .record_consent(fixture("consent_v2_relocation.json").unwrap())
                .await
                .unwrap();
            bunkyo
                .submit(
                    &tokyo,
                    Purpose::PlanCreation,
                    Content::Form(fixture("support_plan.json").unwrap()),
                )
                .await
                .unwrap();
            // A transfer-out end needs a Form 7 first.
            let mut end = fixture("support_end.json").unwrap();
            end["outcome"] = "transferred".into();
            end["ended_on"] = "2027-01-25".into();
            let e = bunkyo
                .distribute(Content::Form(end.clone()))
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("no transfer notice (Form 7)"), "{e}");
            let moved = bunkyo
                .residence_change(fixture("residence_change.json").unwrap())
                .await
                .unwrap();
            let form7: OutboxEntry = serde_json::from_value(moved["transfer"].clone()).unwrap();
            delivered(&bunkyo, &form7).await;
            let transfer = setagaya
                .inbox()
                .unwrap()
                .into_iter()
                .find(|e| e.kind == Some(DocType::TransferNotice))
                .unwrap();

            // Bunkyo's store as written before consents were kept per controller: the case's one
            // pointer names its consent, and its own key is missing. The pointer still counts.
            let mut b = Batch::new();
            b.remove(&Key::controller_consent(CASE, BUNKYO));
            bunkyo.inner.durable.store().apply(b).unwrap();

            // The destination cannot reuse the origin's consent id; with its own it takes over.
            clock.set(day("2027-01-20"));
            let mut clash = kanagawa("consent_yokohama.json");
            clash["id"] = "consent-131059-2026-0007".into();
            let e = setagaya
                .record_consent(clash)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(
                    "consent-131059-2026-0007 names lg:131059, but the controller is lg:131121"
                ),
                "{e}"
            );
            let mut plan = kanagawa("support_plan_yokohama.json");
            plan["co_author"] = serde_json::Value::Null;
            plan["support_rows"].as_array_mut().unwrap().truncate(1);
            plan["support_rows"][0]["agency"] = SETAGAYA.into();
            plan["person"]["municipality"] = "131121".into();
            plan.as_object_mut().unwrap().remove("support_period");
            let taken = setagaya
                .take_over(
                    &transfer.id,
                    kanagawa("consent_yokohama.json"),
                    plan.clone(),
                )
                .await
                .unwrap();
            assert!(!taken.consent_sent.is_empty());
            // Run again, as after a failure past its consent (a full disk): the same consent is
            // not recorded twice and the take-over completes; another consent of the same
            // version is still refused.
            let again = setagaya
                .take_over(
                    &transfer.id,
                    kanagawa("consent_yokohama.json"),
                    plan.clone(),
                )
                .await
                .unwrap();
            assert!(again.consent_sent.is_empty(), "{:?}", again.consent_sent);
            let mut other = kanagawa("consent_yokohama.json");
            other["date"] = "2027-01-19".into();
            let e = setagaya
                .take_over(&transfer.id, other, plan)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not newer"), "{e}");
            assert_eq!(taken.period.from.to_string(), "2027-01-15");
            assert_eq!(taken.period.to.to_string(), "2027-04-30");
            let to_bunkyo = taken
                .consent_sent
                .iter()
                .find(|e| e.to.as_str() == BUNKYO)
                .unwrap();
            delivered(&setagaya, to_bunkyo).await;

            // The moves that made Setagaya a controller (Bunkyo's v2 as Bunkyo sent it to
            // Setagaya) were kept when it recorded its consent; they are shown only about an
            // envelope Setagaya is sending the asker, to an org its consent names.
            let setagaya_org: OrgId = SETAGAYA.parse().unwrap();
            let kept = setagaya
                .stored_proof(&case, &setagaya_org)
                .unwrap()
                .unwrap();
            assert_eq!(kept.len(), 1);
            let bunkyo_org: OrgId = BUNKYO.parse().unwrap();
            let sent = parse_id(&to_bunkyo.id).unwrap();
            // Delivered: no longer asked about.
            assert!(setagaya
                .answer_proof_fetch(&bunkyo_org, &case, &sent)
                .is_empty());
            // As while it was being sent.
            let setagaya_delivered = setagaya.outbox_entry(&sent).unwrap().unwrap();
            let mut sending = setagaya_delivered.clone();
            sending.state = OutState::Queued;
            let mut b = Batch::new();
            b.set(
                &Key::outbox_entry(&sent),
                serde_json::to_vec(&sending).unwrap(),
            );
            setagaya.inner.durable.store().apply(b).unwrap();
            let shown = tsunagi_protocol::fetch::proof_answer(
                &setagaya.answer_proof_fetch(&bunkyo_org, &case, &sent),
                &Limits::default(),
            )
            .unwrap();
            assert_eq!(shown.len(), 1);
            assert_eq!(shown[0].to_bytes(), kept[0].to_bytes());
            assert!(setagaya
                .answer_proof_fetch(&bunkyo_org, &case, &[0; 16])
                .is_empty());
            assert!(setagaya.answer_proof_fetch(&tokyo, &case, &sent).is_empty());
            let mut b = Batch::new();
            b.set(
                &Key::outbox_entry(&sent),
                serde_json::to_vec(&setagaya_delivered).unwrap(),
            );
            setagaya.inner.durable.store().apply(b).unwrap();

            // Both consents are kept at both gateways; each shares under its own.
            for (gw, own) in [(&bunkyo, BUNKYO), (&setagaya, SETAGAYA)] {
                let held = gw.consents_of_case(&case).unwrap();
                assert_eq!(held.len(), 2, "{own}: {held:?}");
                let sharing = gw.consent_for_case(&case).unwrap().unwrap();
                assert_eq!(sharing.record.controller.as_str(), own);
            }
            // The destination's plan is version 1 of its own chain.
            assert_eq!(setagaya.current_plan(&case).unwrap().unwrap().version, 1);
            assert_eq!(bunkyo.current_plan(&case).unwrap().unwrap().version, 1);

            // Tokyo runs no gateway here: a plan queued for it now waits in the outbox, retrying.
            clock.set(day("2027-01-24"));
            let waiting = bunkyo
                .submit(
                    &tokyo,
                    Purpose::PlanCreation,
                    Content::Form(fixture("support_plan.json").unwrap()),
                )
                .await
                .unwrap();
            // The origin's transfer-out end: then only the exceptions go.
            clock.set(day("2027-01-25"));
            bunkyo.distribute(Content::Form(end)).await.unwrap();
            assert_eq!(
                bunkyo.transferred_to(&case).unwrap().map(|o| o.to_string()),
                Some(SETAGAYA.to_owned())
            );
            let e = bunkyo
                .submit(
                    &setagaya_org,
                    Purpose::PlanImplementation,
                    Content::Form(fixture("support_plan.json").unwrap()),
                )
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("transferred out to lg:131121"), "{e}");
            let denied = bunkyo.audit_events().unwrap().into_iter().any(|r| {
                matches!(&r.event, AuditEvent::GateDenied { code, .. } if code == "transferred_out")
            });
            assert!(denied, "the refusal is in the audit trail");
            // What was queued before the end and is still waiting is cancelled at dispatch.
            let waiting = parse_id(&waiting.id).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let cancelled = loop {
                let now = bunkyo.outbox_entry(&waiting).unwrap().unwrap();
                if now.state.is_final() {
                    break now;
                }
                assert!(Instant::now() < deadline, "still waiting: {now:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(cancelled.state, OutState::Cancelled, "{cancelled:?}");
            let why = cancelled.last_error.unwrap_or_default();
            assert!(
                why.contains("cancelled at dispatch")
                    && why.contains("transferred out to lg:131121"),
                "{why}"
            );
            // A later move is the destination's to handle.
            let e = bunkyo
                .residence_change(fixture("residence_change.json").unwrap())
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("transferred out to lg:131121"), "{e}");
            bunkyo.shutdown().await.unwrap();
            setagaya.shutdown().await.unwrap();
        });
        rt.shutdown_timeout(Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&root);
    }
}
