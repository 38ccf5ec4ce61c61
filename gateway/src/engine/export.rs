//! A destination outside every directory (`no_gateway`): the Form 7 package goes by another
//! channel. When a move leads to a municipality no directory this gateway holds serves, the
//! drafted notice (addressed to the municipality itself) is signed and kept; staff print it
//! ([`Gateway::export_transfer`], Japanese HTML with print CSS) and send it by post, by hand or
//! by fax, and the audit trail records which channel was used.

use maud::{html, Markup, DOCTYPE};
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::document::{Document, ResidenceChange, TransferNotice};
use tsunagi_protocol::org::MunicipalityCode;
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::{CaseId, OrgId};

use super::{full_document, invalid, Gateway, GatewayError, OutboxEntry, Tx};
use crate::events::AuditEvent;
pub use crate::events::OtherChannel;
use crate::store::{Key, Read};

impl Gateway {
    /// Keeps the signed Form 7 draft for a destination without a gateway and records
    /// `no_gateway`. Returns the destination (`lg:` the municipality's code) and no entry.
    pub(super) async fn no_gateway(
        &self,
        change: &ResidenceChange,
        municipality: &MunicipalityCode,
        notice: &Document,
    ) -> Result<(OrgId, Option<OutboxEntry>), GatewayError> {
        let bundle = self.sign_own(notice)?;
        let case = change.subject.as_str();
        let sealed = self
            .inner
            .vault
            .case_key(case)?
            .seal(&bundle.to_bytes(), b"no_gateway");
        let mut tx = Tx::new();
        tx.set(&Key::no_gateway(case), sealed);
        self.audit(
            &mut tx,
            AuditEvent::NoGateway {
                case: change.subject.clone(),
                municipality: municipality.clone(),
            },
        );
        self.commit(tx).await?;
        tracing::info!(
            case,
            municipality = municipality.as_str(),
            "no gateway serves the destination: the transfer notice waits to be exported"
        );
        Ok((notice_to(notice), None))
    }

    /// The kept Form 7 package of `case` as a printable Japanese page; records that it went by
    /// `channel`.
    pub async fn export_transfer(
        &self,
        case: &CaseId,
        channel: OtherChannel,
    ) -> Result<String, GatewayError> {
        let sealed = self
            .inner
            .durable
            .store()
            .read(&Key::no_gateway(case.as_str()))?
            .ok_or_else(|| {
                invalid(format!(
                    "no transfer notice of {case} waits for another channel: only a move to a municipality no directory serves is exported"
                ))
            })?;
        let bytes = self
            .inner
            .vault
            .open(case.as_str(), &sealed, b"no_gateway")?;
        let bundle = DocBundle::from_bytes(&bytes, &Limits::default())
            .map_err(|e| invalid(e.to_string()))?;
        let Document::TransferNotice(notice) = full_document(&bundle, &self.trust(), self.now())?
        else {
            return Err(invalid("the kept document is not a transfer notice"));
        };
        let author = self
            .directory()
            .member(&notice.author)
            .map_or_else(|| notice.author.to_string(), |m| m.name.clone());
        let page = render(&notice, &author, channel);
        let mut tx = Tx::new();
        self.audit(
            &mut tx,
            AuditEvent::ExportedOtherChannel {
                case: case.clone(),
                to: notice.to.clone(),
                channel,
            },
        );
        self.commit(tx).await?;
        Ok(page)
    }
}

fn notice_to(notice: &Document) -> OrgId {
    match notice {
        Document::TransferNotice(n) => n.to.clone(),
        other => other.author().clone(),
    }
}

/// The printable Form 7 package.
fn render(n: &TransferNotice, author: &str, channel: OtherChannel) -> String {
    let period = &n.remaining_period;
    let need = n.medical_support_need.as_ref();
    let markup: Markup = html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                title { "移転先自治体への通知（様式7） " (n.subject) }
                style {
                    "body{font-family:serif;margin:2em;color:#000}"
                    "table{border-collapse:collapse;width:100%;margin-bottom:1em}"
                    "td,th{border:1px solid #000;padding:4px 6px;font-size:10.5pt;vertical-align:top}"
                    "th{background:#eee;text-align:left;width:28%}"
                    "@page{size:A4;margin:15mm}@media print{body{margin:0}}"
                }
            }
            body {
                h1 { "移転先自治体への通知（様式7）" }
                p { "宛先：" (n.to) "（転居先市区町村）　送付方法：" (channel.ja()) }
                p { "発信：" (author) "（" (n.author) "）　発信日：" (n.sent_on) }
                p { "事例番号：" (n.subject) }
                h2 { "１ 転居の事実と転居先" }
                table {
                    tr { th { "転居先住所" } td { (n.relocation.new_address) } }
                    tr { th { "転居先市区町村コード" } td { (n.relocation.new_municipality.as_str()) } }
                    tr { th { "転居日" } td { (n.relocation.moved_on.map_or("未定".to_owned(), |d| d.to_string())) } }
                }
                h2 { "２ 退院後支援に関する計画" }
                table {
                    tr { th { "計画作成日" } td { (n.plan.made_on) } }
                    tr { th { "本人の希望" } td { (n.plan.wishes) } }
                    tr { th { "残りの支援期間" } td { (period.from) "〜" (period.to) } }
                }
                table {
                    tr { th { "支援担当機関" } th { "本人の支援ニーズ・課題" } th { "支援内容" } th { "連絡先・担当者" } }
                    @for r in &n.plan.support_rows {
                        tr { td { (r.agency_name) } td { (r.needs) } td { (r.support) } td { (r.contact) } }
                    }
                }
                h2 { "３ 転居後の医療等の支援の必要性" }
                p {
                    @match need {
                        Some(m) => { (if m.needed { "要" } else { "不要" }) "　" (m.details) },
                        None => { "（記載なし）" },
                    }
                }
                h2 { "４ これまでの支援の概要" }
                p { (n.support_summary.as_deref().unwrap_or("別途送付します。")) }
                p { "この通知は、本人の同意を得て、ゲートウェイを持たない転居先へ" (channel.ja()) "により提供するものです。" }
            }
        }
    };
    markup.into_string()
}
