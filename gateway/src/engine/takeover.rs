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

impl Gateway {
    /// The destination of the newest transfer notice (Form 7) of `case` sent from here.
    pub(super) fn transfer_destination(
        &self,
        case: &CaseId,
    ) -> Result<Option<OrgId>, GatewayError> {
        let mut newest: Option<(u64, OrgId)> = None;
        self.outbox_each(&mut |e| {
            if e.case == *case
                && e.kind == DocType::TransferNotice
                && e.state != OutState::Cancelled
                && newest.as_ref().is_none_or(|(t, _)| e.created >= *t)
            {
                newest = Some((e.created, e.to.clone()));
            }
        })?;
        Ok(newest.map(|(_, o)| o))
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
    ) -> Result<(), tsunagi_protocol::gate::DenyReason> {
        match self.transferred_to(case) {
            Ok(Some(destination)) => gate::after_transfer_out(case, kind, to, &destination),
            // An unreadable record refuses what it would refuse.
            Err(_) => gate::after_transfer_out(case, kind, to, &self.inner.org),
            Ok(None) => Ok(()),
        }
    }

    /// The transfer notice received as inbox entry `id`, with its sender.
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
            Document::TransferNotice(n) if n.to == self.inner.org => Ok((n, entry.from)),
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
        let bundle = self.sign_form(plan)?;
        let Document::SupportPlan(signed) = full_document(&bundle, &self.trust(), self.now())?
        else {
            return Err(invalid("plan: document_type must be support_plan"));
        };
        self.check_document(&Document::SupportPlan(signed.clone()))?;
        let consent_sent = self.record_consent(consent).await?;
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
        let mut tx = Tx::new();
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
            period: signed.support_period,
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
        let (own, _) = self.controller_consent(&case, &self.inner.org)?.ok_or_else(|| {
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
        let bundle = self.sign_form(form)?;
        let Document::InformationRequest(request) =
            full_document(&bundle, &self.trust(), self.now())?
        else {
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
            Document::InformationRequest(r) => Ok((r, hex(&sha256(&bundle.doc)))),
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
        let (record, consent_bundle) = self
            .consent_by_id(&asked.consent_id)?
            .filter(|(c, _)| c.controller == asked.author && c.subject == asked.subject)
            .ok_or_else(|| {
                GatewayError::Refused(format!(
                    "information answer to {} refused: the consent {:?} the request names is not held here (R1)",
                    asked.author, asked.consent_id
                ))
            })?;
        let bundle = self.sign_form(form)?;
        let consent = Consenting {
            record,
            bundle: consent_bundle,
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
            Some(Document::TransferNotice(n)) => AuditEvent::TransferAcknowledged {
                case: n.subject.clone(),
                from: from.clone(),
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
