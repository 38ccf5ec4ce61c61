//! Fixed keys, trust and fixtures for tests, test vectors, fuzzing and the offline demo.
//!
//! Nothing here is secret or random: every signer's key is derived from its org id, and its
//! "certificate" is a fixed byte string that [`StaticChains`] trusts. Real gateways use
//! `tsunagi-certs`. The case-0007 fixtures are embedded from `fixtures/` at the repository root.

use crate::cose::{sha256, Signer, StaticChains};
use crate::document::Document;
use crate::org::{OrgId, Role};

/// The synthetic case used throughout: `(file name, JSON)`.
pub const CASE_0007: [(&str, &str); 12] = [
    (
        "consent.json",
        include_str!("../../fixtures/case-0007/consent.json"),
    ),
    (
        "consent_v2_relocation.json",
        include_str!("../../fixtures/case-0007/consent_v2_relocation.json"),
    ),
    (
        "consent_v3_withdrawn.json",
        include_str!("../../fixtures/case-0007/consent_v3_withdrawn.json"),
    ),
    (
        "needs_assessment.json",
        include_str!("../../fixtures/case-0007/needs_assessment.json"),
    ),
    (
        "opinion_letter.json",
        include_str!("../../fixtures/case-0007/opinion_letter.json"),
    ),
    (
        "residence_change.json",
        include_str!("../../fixtures/case-0007/residence_change.json"),
    ),
    (
        "support_plan.json",
        include_str!("../../fixtures/case-0007/support_plan.json"),
    ),
    (
        "support_plan_v2.json",
        include_str!("../../fixtures/case-0007/support_plan_v2.json"),
    ),
    (
        "support_plan_v3_extended.json",
        include_str!("../../fixtures/case-0007/support_plan_v3_extended.json"),
    ),
    (
        "meeting_record.json",
        include_str!("../../fixtures/case-0007/meeting_record.json"),
    ),
    (
        "readmission.json",
        include_str!("../../fixtures/case-0007/readmission.json"),
    ),
    (
        "support_end.json",
        include_str!("../../fixtures/case-0007/support_end.json"),
    ),
];

/// Case-0007 after the move to Yokohama (Kanagawa): the destination's own consent and plan for
/// the remaining period, its information request to Bunkyo and Bunkyo's answer
/// (`fixtures/case-0007/kanagawa/`).
pub const KANAGAWA_CASE_0007: [(&str, &str); 4] = [
    (
        "consent_yokohama.json",
        include_str!("../../fixtures/case-0007/kanagawa/consent_yokohama.json"),
    ),
    (
        "support_plan_yokohama.json",
        include_str!("../../fixtures/case-0007/kanagawa/support_plan_yokohama.json"),
    ),
    (
        "information_request.json",
        include_str!("../../fixtures/case-0007/kanagawa/information_request.json"),
    ),
    (
        "information_answer.json",
        include_str!("../../fixtures/case-0007/kanagawa/information_answer.json"),
    ),
];

/// The sample federation directory (TOML).
pub const DIRECTORY_TOML: &str = include_str!("../../fixtures/directory.toml");

/// The sample directory of a second prefecture, Kanagawa (`fixtures/directory-kanagawa.toml`).
pub const KANAGAWA_DIRECTORY_TOML: &str = include_str!("../../fixtures/directory-kanagawa.toml");

/// The sample federation's members and roles (as in `fixtures/directory.toml`).
pub const MEMBERS: [(&str, Role); 10] = [
    ("lg:130001", Role::Prefecture),
    ("lg:131059", Role::Authority),
    ("lg:131121", Role::Authority),
    ("lg:132012", Role::Authority),
    ("mi:1310000017", Role::Hospital),
    ("mi:1310000025", Role::Clinic),
    ("mi:1360000011", Role::VisitingNurse),
    ("sp:1330000011", Role::SupportProvider),
    ("ot:npo-komorebi", Role::Npo),
    ("ot:mpd", Role::Police),
];

/// A case-0007 fixture by file name, parsed and validated.
///
/// # Panics
/// If the name is not one of [`CASE_0007`] (a programming error in a test).
pub fn fixture(name: &str) -> Document {
    let (_, json) = CASE_0007
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    Document::from_json(json).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// `author`'s transfer notice (Form 7) of `case`, handing it to the authority `to` (whose
/// municipality code the new address is in), embedding the plan fixture as `author`'s plan
/// (co-authored by Bunkyo when `author` is another authority).
///
/// # Panics
/// If the notice does not validate (say, `to` is `author`).
pub fn transfer_notice(author: &str, to: &str, case: &str) -> Document {
    let mut plan = fixture("support_plan.json").to_json();
    if let Some(p) = plan.as_object_mut() {
        p.remove("signature");
    }
    if author != "lg:131059" {
        plan["co_author"] = "lg:131059".into();
    }
    plan["author"] = author.into();
    plan["subject"] = case.into();
    Document::from_value(serde_json::json!({
        "document_type": "transfer_notice",
        "author": author,
        "subject": case,
        "to": to,
        "sent_on": "2026-10-10",
        "relocation": {
            "new_address": "東京都世田谷区太子堂九丁目2番2号",
            "new_municipality": to.trim_start_matches("lg:"),
            "moved_on": "2026-10-15"
        },
        "plan": plan,
        "remaining_period": { "from": "2026-10-15", "to": "2027-04-30" },
        "support_summary": null
    }))
    .unwrap_or_else(|e| panic!("transfer notice {author} to {to}: {e}"))
}

/// The fixed test "certificate" of `org`.
pub fn cert(org: &str) -> Vec<u8> {
    format!("tsunagi test certificate for {org}").into_bytes()
}

/// The fixed test signer of `org`: its seed is SHA-256 of the org id.
pub fn signer(org: &str) -> Signer {
    Signer::from_seed(&sha256(org.as_bytes()), vec![cert(org)])
        .expect("a 32-byte seed is a valid key")
}

/// Trust in every member's test certificate.
pub fn chains() -> StaticChains {
    let mut c = StaticChains::new();
    for (org, _) in MEMBERS {
        c.trust(
            cert(org),
            org.parse().expect("member ids are valid"),
            signer(org).public_key(),
        );
    }
    c
}

/// The directory role of a member.
pub fn role_of(org: &OrgId) -> Option<Role> {
    MEMBERS
        .iter()
        .find(|(o, _)| *o == org.as_str())
        .map(|(_, r)| *r)
}

/// Parses a member org id.
///
/// # Panics
/// If `s` is not a valid org id.
pub fn org(s: &str) -> OrgId {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}
