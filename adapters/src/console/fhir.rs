//! The per-case export for hospital systems: an HL7 FHIR R4 (4.0.1) `collection` Bundle of what
//! this gateway received for the case, as this recipient may see it.
//!
//! Patient (from a disclosed `person`, JP Core `JP_Patient`), Consent (each consent record
//! received), CarePlan (a support plan), QuestionnaireResponse (a 様式5 needs assessment, one
//! item per rated item) and DocumentReference (every other document, its disclosed fields
//! attached as JSON). Only what was disclosed to this recipient goes in: a withheld field is
//! absent here too.

use serde_json::{json, Map, Value};

const JP_PATIENT: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient";
const JP_CONSENT: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Consent";
const CASE_SYSTEM: &str = "urn:tsunagi:case";

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A UUID URN from a 32-hex message id (or any text, hashed).
fn urn(id: &str) -> String {
    let hex = if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id.to_ascii_lowercase()
    } else {
        hex::encode(&ring::digest::digest(&ring::digest::SHA256, id.as_bytes()).as_ref()[..16])
    };
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A Unix time as a FHIR instant in Japan time.
fn instant(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+09:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn gender(sex: &str) -> &'static str {
    match sex {
        "male" => "male",
        "female" => "female",
        _ => "unknown",
    }
}

/// The bundle for `case` from the shown inbox entries of that case (each as `inbox_show`
/// answers: the entry with its `document`), with `names` to name organisations.
pub fn bundle(case: &str, shown: &[Value], name: impl Fn(&str) -> String) -> Value {
    let patient_urn = urn(&format!("patient:{case}"));
    let mut patient = json!({
        "resourceType": "Patient",
        "meta": {"profile": [JP_PATIENT]},
        "identifier": [{"system": CASE_SYSTEM, "value": case}],
    });
    let subject = json!({"reference": patient_urn, "display": case});
    let mut entries = Vec::new();
    for e in shown {
        let doc = &e["document"];
        let id = e["id"].as_str().unwrap_or("");
        let kind = e["kind"].as_str().unwrap_or("");
        let author = doc["author"]
            .as_str()
            .or(doc["controller"].as_str())
            .unwrap_or("");
        if let Some(p) = doc["person"].as_object() {
            if let Some(n) = p.get("name").and_then(Value::as_str) {
                patient["name"] = json!([{"use": "official", "text": n}]);
            }
            if let Some(s) = p.get("sex").and_then(Value::as_str) {
                patient["gender"] = gender(s).into();
            }
            if let Some(b) = p.get("birth_date").and_then(Value::as_str) {
                patient["birthDate"] = b.into();
            }
        }
        let resource = match kind {
            "consent" => json!({
                "resourceType": "Consent",
                "meta": {"profile": [JP_CONSENT]},
                "identifier": [{"system": "urn:tsunagi:consent", "value": doc["id"].as_str().unwrap_or(""), "assigner": {"display": name(author)}}],
                "status": if doc["status"] == "withdrawn" { "inactive" } else { "active" },
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}], "text": "本人の同意（退院後支援）"}],
                "patient": subject,
                "dateTime": format!("{}T00:00:00+09:00", doc["date"].as_str().unwrap_or("1970-01-01")),
                "organization": [{"display": name(author)}],
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                "provision": {"type": "permit", "period": {"start": doc["period"]["from"], "end": doc["period"]["to"]}},
            }),
            "support_plan" => {
                let mut r = json!({
                    "resourceType": "CarePlan",
                    "identifier": [{"system": "urn:tsunagi:message", "value": id}],
                    "status": "active",
                    "intent": "plan",
                    "title": "退院後支援に関する計画",
                    "subject": subject,
                    "author": {"display": name(author)},
                });
                if let Some(p) = doc["support_period"].as_object() {
                    r["period"] = json!({"start": p.get("from"), "end": p.get("to")});
                }
                if let Some(w) = doc["wishes"].as_str() {
                    r["description"] = w.into();
                }
                if let Some(made) = doc["made_on"].as_str() {
                    r["created"] = format!("{made}T00:00:00+09:00").into();
                }
                let acts: Vec<Value> = doc["support_rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|row| json!({"detail": {"status": "scheduled", "description": format!("{}: {}", row["agency_name"].as_str().unwrap_or(""), row["support"].as_str().unwrap_or("")), "performer": [{"display": row["agency_name"].as_str().unwrap_or("")}]}}))
                    .collect();
                if !acts.is_empty() {
                    r["activity"] = acts.into();
                }
                r
            }
            "needs_assessment" if doc["items"].is_object() => {
                let items: Vec<Value> = tsunagi_protocol::document::labels::FORM5_ITEMS
                    .iter()
                    .filter_map(|label| {
                        let v = doc["items"].get(label.code)?;
                        let mut sub = Vec::new();
                        for (k, text) in [("staff", "職員評価"), ("self", "本人評価")] {
                            if let Some(n) = v[k].as_i64() {
                                sub.push(json!({"linkId": format!("{}.{k}", label.code), "text": text, "answer": [{"valueInteger": n}]}));
                            }
                        }
                        if let Some(n) = v["note"].as_str().filter(|s| !s.is_empty()) {
                            sub.push(json!({"linkId": format!("{}.note", label.code), "text": "特記事項", "answer": [{"valueString": n}]}));
                        }
                        Some(json!({"linkId": label.code, "text": label.name, "item": sub}))
                    })
                    .collect();
                json!({
                    "resourceType": "QuestionnaireResponse",
                    "identifier": {"system": "urn:tsunagi:message", "value": id},
                    "status": "completed",
                    "subject": subject,
                    "authored": instant(e["received_at"].as_u64().unwrap_or(0)),
                    "author": {"display": name(author)},
                    "item": items,
                })
            }
            _ => {
                let body = serde_json::to_vec(doc).unwrap_or_default();
                json!({
                    "resourceType": "DocumentReference",
                    "identifier": [{"system": "urn:tsunagi:message", "value": id}],
                    "status": "current",
                    "type": {"text": super::views::doc_type_label(kind)},
                    "subject": subject,
                    "date": instant(e["received_at"].as_u64().unwrap_or(0)),
                    "author": [{"display": name(author)}],
                    "content": [{"attachment": {"contentType": "application/json", "language": "ja", "data": base64(&body), "title": super::views::doc_type_label(kind)}}],
                })
            }
        };
        // The no-redisclosure notice the document came with, as the HL7 security label for it
        // (NORDSCLCD: no redisclosure without the person's consent), so that it travels with
        // each resource into whatever system reads the bundle.
        let mut resource = resource;
        if let Some(notice) = e["notice"].as_str().filter(|n| !n.is_empty()) {
            resource["meta"]["security"] = json!([{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "NORDSCLCD",
                "display": notice,
            }]);
        }
        entries.push(json!({"fullUrl": urn(id), "resource": resource}));
    }
    let mut all = vec![json!({"fullUrl": patient_urn, "resource": patient})];
    all.extend(entries);
    let mut b = Map::new();
    b.insert("resourceType".into(), "Bundle".into());
    b.insert("type".into(), "collection".into());
    b.insert("entry".into(), all.into());
    Value::Object(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_uuids_are_well_formed() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(
            urn("0123456789abcdef0123456789abcdef"),
            "urn:uuid:01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(instant(1_796_311_800), "2026-12-04T00:30:00+09:00");
    }

    #[test]
    fn a_plan_becomes_a_care_plan_and_names_the_patient() {
        let shown = vec![
            json!({"id": "0123456789abcdef0123456789abcdef", "kind": "support_plan", "received_at": 0,
            "document": {"author": "lg:131059", "person": {"name": "鈴木 一郎", "sex": "male", "birth_date": "1992-04-01"},
                "support_period": {"from": "2026-11-01", "to": "2027-04-30"}, "wishes": "自宅で暮らしたい"}}),
        ];
        let b = bundle("case-1", &shown, |o| o.to_owned());
        assert_eq!(b["entry"][0]["resource"]["name"][0]["text"], "鈴木 一郎");
        assert_eq!(b["entry"][0]["resource"]["gender"], "male");
        assert_eq!(b["entry"][1]["resource"]["resourceType"], "CarePlan");
        assert_eq!(b["entry"][1]["resource"]["period"]["end"], "2027-04-30");
    }
}
