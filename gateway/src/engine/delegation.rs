//! Delegations (III.8) on a gateway: the authority records a delegation version (signed here)
//! and sends it to the contractor; the contractor's gateway keeps the versions it receives. Both
//! then accept a document whose author's directory role may not write its type when a delegation
//! of the case's controller covers it ([`tsunagi_protocol::document::delegation::permits`]):
//! the sender when it is submitted, the receiver as its last check.

use tsunagi_protocol::document::delegation::{permits, DelegationDenied};
use tsunagi_protocol::document::{Delegation, Document};
use tsunagi_protocol::{CaseId, DocType, OrgId, Purpose};

use super::{invalid, Gateway, GatewayError, OutboxEntry, Tx};
use crate::events::AuditEvent;
use crate::store::{Key, Prefix, Read};

impl Gateway {
    /// Records a delegation version (JSON, `document_type` `delegation`) authored by this
    /// gateway's org, the case's controller, and sends it to the contractor. A version must be
    /// newer than the one recorded. Returns the envelope queued.
    pub async fn record_delegation(
        &self,
        json: serde_json::Value,
    ) -> Result<OutboxEntry, GatewayError> {
        let doc = Document::from_value(json).map_err(|e| invalid(format!("delegation: {e}")))?;
        let Document::Delegation(d) = &doc else {
            return Err(invalid("delegation: document_type must be delegation"));
        };
        if d.author != self.inner.org {
            return Err(invalid(format!(
                "delegation: the author is {} but this gateway is {}; record a delegation on the authority's gateway",
                d.author, self.inner.org
            )));
        }
        let Some(consent) = self.consent_for_case(&d.subject)?.map(|v| v.record.clone()) else {
            return Err(invalid(format!(
                "delegation: no consent is recorded for {}; record the person's consent first",
                d.subject
            )));
        };
        if consent.controller != self.inner.org {
            return Err(invalid(format!(
                "delegation: {} controls {}, not this gateway; only the controller delegates",
                consent.controller, d.subject
            )));
        }
        if self.directory().member(&d.contractor).is_none() {
            return Err(invalid(format!(
                "delegation: contractor {} is not in the directory",
                d.contractor
            )));
        }
        if let Some(old) = self.delegation(&d.subject, &d.id)? {
            if d.version <= old.version {
                return Err(invalid(format!(
                    "delegation: version {} is not newer than the recorded version {}",
                    d.version, old.version
                )));
            }
        }
        let bundle = self.sign_own(&doc)?;
        let mut batch = Tx::new();
        self.keep_delegation(d, &mut batch);
        self.commit(batch).await?;
        self.queue(&d.contractor, Purpose::ConsentManagement, &bundle, None)
            .await
    }

    /// Stores delegation version `d` and records it in the audit trail.
    pub(super) fn keep_delegation(&self, d: &Delegation, batch: &mut Tx) {
        batch.set(
            &Key::delegation(d.subject.as_str(), &d.id),
            serde_json::to_vec(d).unwrap_or_default(),
        );
        self.audit(
            batch,
            AuditEvent::DelegationRecorded {
                case: d.subject.clone(),
                delegation: d.id.clone(),
                version: d.version,
                contractor: d.contractor.clone(),
                tasks: d.tasks.clone(),
                from: d.period.from,
                to: d.period.to,
                status: d.status,
            },
        );
    }

    /// A received delegation version: kept when its author is `controller` (the controller of
    /// the consent the envelope was judged under) and it is newer than the version held of the
    /// same delegation, which must be the same author's. Another authority's delegation under
    /// the same id never replaces the controller's.
    pub(super) fn receive_delegation(
        &self,
        doc: Option<Result<Document, tsunagi_protocol::document::ValidationError>>,
        controller: &OrgId,
        batch: &mut Tx,
    ) -> Result<(), GatewayError> {
        let Some(Ok(Document::Delegation(d))) = doc else {
            return Ok(());
        };
        let newer = d.author == *controller
            && self
                .delegation(&d.subject, &d.id)?
                .is_none_or(|old| old.author == d.author && d.version > old.version);
        if newer {
            self.keep_delegation(&d, batch);
        } else {
            tracing::info!(
                case = %d.subject,
                delegation = %d.id,
                author = %d.author,
                "received delegation not kept: not newer, or not written by the case's controller"
            );
        }
        Ok(())
    }

    fn delegation(&self, case: &CaseId, id: &str) -> Result<Option<Delegation>, GatewayError> {
        Ok(self
            .inner
            .durable
            .store()
            .read(&Key::delegation(case.as_str(), id))?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The newest version of every delegation of `case` held here.
    pub fn delegations(&self, case: &CaseId) -> Result<Vec<Delegation>, GatewayError> {
        Ok(self
            .inner
            .durable
            .store()
            .read_all(&Prefix::delegations(case.as_str()))?
            .into_iter()
            .map(|(k, v)| super::decode_entry("delegation", &k, &v))
            .collect::<Result<_, _>>()?)
    }

    /// Whether `author` may author a `doc_type` about `case` under a delegation of the case's
    /// controller held here.
    pub(super) fn delegated(
        &self,
        author: &OrgId,
        case: &CaseId,
        doc_type: DocType,
    ) -> Result<Result<(), DelegationDenied>, GatewayError> {
        let Some(consent) = self.consent_for_case(case)?.map(|v| v.record.clone()) else {
            return Ok(Err(DelegationDenied::NotDelegated {
                author: author.clone(),
                case: case.clone(),
                doc_type,
                controller: author.clone(),
            }));
        };
        let held = self.delegations(case)?;
        Ok(permits(
            &held,
            author,
            case,
            doc_type,
            &consent.controller,
            self.now().date(),
        )
        .map(|_| ()))
    }
}
