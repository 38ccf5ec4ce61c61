//! The person's request to see their records (R9, II.7(9)), on the authority's gateway: the
//! request is recorded when it arrives ([`Gateway::disclosure_request`]) and answered
//! ([`Gateway::disclosure_answer`]) with one page that holds this gateway's records of the case
//! and those of every other gateway that keeps some, gathered with the records query
//! ([`tsunagi_protocol::records`]) — so a refusal recorded at the hospital appears too. A gateway
//! answers the query only for the controller of the case's consent it holds.

use tsunagi_protocol::records::records_query;
use tsunagi_protocol::Date;

use super::*;

impl Gateway {
    /// Records that the person asked on `received_on` to see the records of `case`.
    pub async fn disclosure_request(
        &self,
        case: &str,
        received_on: Date,
    ) -> Result<(), GatewayError> {
        let case: CaseId = case
            .parse()
            .map_err(|e| invalid(format!("case: {case:?} {e}")))?;
        self.known_case(&case)?;
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::DisclosureRequested { case, received_on },
        );
        Ok(self.commit(tx).await?)
    }

    /// Answers the person's request: gathers the records of `case` from every other member of
    /// the directory, renders the page (Japanese HTML) and records the answer. An unknown case
    /// is an error. Returns the page and the organisations whose records it includes.
    pub async fn disclosure_answer(
        &self,
        case: &str,
    ) -> Result<(String, Vec<OrgId>), GatewayError> {
        let id: CaseId = case
            .parse()
            .map_err(|e| invalid(format!("case: {case:?} {e}")))?;
        self.known_case(&id)?;
        let others = self.collect_records(&id).await;
        let organisations: Vec<OrgId> = others.iter().map(|(o, _)| o.clone()).collect();
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::DisclosureAnswered {
                case: id.clone(),
                answered_on: self.now().date(),
                organisations: organisations.clone(),
            },
        );
        self.commit(tx).await?;
        let records: Vec<AuditRecord> = self
            .audit_events()?
            .into_iter()
            .filter(|r| r.event.case() == Some(&id))
            .collect();
        let directory = self.directory();
        let name = |o: &str| -> String {
            o.parse::<OrgId>()
                .ok()
                .and_then(|o| directory.member(&o).map(|m| m.name.clone()))
                .unwrap_or_else(|| o.to_owned())
        };
        let own = name(self.inner.org.as_str());
        let issuer = crate::disclosure::Issuer {
            name: &own,
            org: self.inner.org.as_str(),
            contact: self.inner.cfg.contact.as_deref().unwrap_or(&own),
            issued: self.now(),
        };
        let others: Vec<(String, Vec<AuditRecord>)> = others
            .into_iter()
            .map(|(o, r)| (format!("{}（{o}）", name(o.as_str())), r))
            .collect();
        let page = crate::disclosure::page(case, &records, &others, &issuer, &name);
        Ok((page, organisations))
    }

    /// Refuses a case this gateway knows nothing of.
    fn known_case(&self, case: &CaseId) -> Result<(), GatewayError> {
        let known = self
            .audit_events()?
            .iter()
            .any(|r| r.event.case() == Some(case));
        if known {
            Ok(())
        } else {
            Err(invalid(format!(
                "no record of {case} is kept here: check the case id"
            )))
        }
    }

    /// Asks every other member for its records of `case`; keeps those that hold some.
    async fn collect_records(&self, case: &CaseId) -> Vec<(OrgId, Vec<AuditRecord>)> {
        let directory = self.directory();
        let timeout = Duration::from_millis(self.inner.cfg.delivery.attempt_timeout_ms);
        let query = records_query(case);
        let mut out = Vec::new();
        for member in &directory.members {
            if member.org == self.inner.org {
                continue;
            }
            let Ok((addr, host)) = member.endpoint() else {
                continue;
            };
            let answer = tokio::time::timeout(
                timeout,
                self.inner
                    .transport
                    .request_to(&member.org, addr, &host, &query),
            )
            .await;
            let bytes = match answer {
                Ok(Ok(b)) if !b.is_empty() => b,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::info!(
                        peer = member.org.as_str(),
                        "records query not answered: {e}"
                    );
                    continue;
                }
                Err(_) => {
                    tracing::info!(peer = member.org.as_str(), "records query timed out");
                    continue;
                }
            };
            let records: Vec<AuditRecord> =
                serde_json::from_slice::<Vec<serde_json::Value>>(&bytes)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|v| serde_json::from_value(v).ok())
                    .filter(|r: &AuditRecord| r.event.case() == Some(case))
                    .collect();
            if !records.is_empty() {
                out.push((member.org.clone(), records));
            }
        }
        out
    }

    /// Answers a peer's records query: this gateway's audit records of `case`, if the peer is
    /// the controller of the case's consent held here; otherwise nothing.
    pub(super) async fn answer_records_query(&self, peer: &OrgId, case: &CaseId) -> Vec<u8> {
        let controller = match self.consent_for_case(case) {
            Ok(Some(v)) => v.record.controller.clone(),
            _ => return Vec::new(),
        };
        if controller != *peer {
            tracing::info!(
                case = case.as_str(),
                peer = peer.as_str(),
                "records query refused: the peer is not the controller of the case's consent"
            );
            return Vec::new();
        }
        let Ok(records) = self.audit_subject(case.as_str()) else {
            return Vec::new();
        };
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::RecordsGiven {
                case: case.clone(),
                to: peer.clone(),
            },
        );
        if self.commit(tx).await.is_err() {
            return Vec::new();
        }
        serde_json::to_vec(&records).unwrap_or_default()
    }
}
