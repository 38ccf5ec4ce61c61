//! Document models: the guideline's forms and the other messages of the exchange.
//!
//! The JSON field names are the input contract (see `fixtures/README.md`): the CLI and the
//! local API accept exactly these shapes, and unknown fields are refused. [`Document::from_json`]
//! parses and validates in one step; every error names the JSON path and the rule that failed,
//! e.g. `items.F1.staff: 3 is not a rating (0, 1, 2, 9)` or
//! `person.municipality: 131058 fails its check digit (expected 9)`.
//!
//! # Elements
//!
//! A signed document is a set of separately disclosable **elements** (see [`crate::signed`]).
//! [`Document::to_elements`] maps a document to its fixed element set: every top-level field
//! except `document_type`, `author` and `subject` (which live in the signed manifest) is one
//! element named by its key; for the needs assessment the `items` and `summary` maps are split one
//! level further (`items.A1` … `items.other`, `summary.A` … `summary.overall`) so that Form 6
//! redaction (R3) is a disclosure subset. Absent optional fields are present as `null`, so the
//! element set of a document type never varies. [`elements_to_json`] nests disclosed elements back
//! into the JSON shape.

mod admission;
mod any;
mod assessment;
mod consent;
pub mod delegation;
mod inquiry;
pub mod labels;
mod meeting;
mod notices;
mod opinion;
mod plan;
mod readmission;
mod residence;
mod shared;
mod transfer;

pub use admission::*;
pub use any::*;
pub use assessment::*;
pub use consent::*;
pub use delegation::{Delegation, DelegationStatus};
pub use inquiry::*;
pub use meeting::*;
pub use notices::*;
pub use opinion::*;
pub use plan::*;
pub use readmission::*;
pub use residence::*;
pub use shared::*;
pub use transfer::*;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::org::OrgId;

/// A validation failure: the JSON path and what rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ValidationError {
    /// Dotted JSON path, e.g. `items.F1.staff` (`.` for the whole document).
    pub path: String,
    /// What is wrong, e.g. `3 is not a rating (0, 1, 2, 9)`.
    pub message: String,
}

impl ValidationError {
    /// An error at `path`.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The snake_case wire name.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),+ } }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(format!(
                        concat!("{:?} is not a ", $what, ": expected one of {}"),
                        s,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// The type of a document; `docType` in the manifest and `kind` in envelopes.
    DocType, "document type" {
        /// Form 5 needs assessment with the Form 6 overall assessment.
        NeedsAssessment = "needs_assessment",
        /// Form 3 hospital opinion letter with the Form 4 crisis plan.
        OpinionLetter = "opinion_letter",
        /// Form 1 discharge support plan with the Form 2 crisis plan.
        SupportPlan = "support_plan",
        /// Form 7 relocation transfer notice.
        TransferNotice = "transfer_notice",
        /// Summary of support given so far, following a transfer notice.
        SupportSummary = "support_summary",
        /// Report of a change of (future) residence.
        ResidenceChange = "residence_change",
        /// The person's consent record.
        Consent = "consent",
        /// Notice that consent was withdrawn (R4).
        ConsentWithdrawal = "consent_withdrawal",
        /// Notice that support has ended, with the outcome (III.6).
        SupportEnd = "support_end",
        /// Record of a support meeting (II.7).
        MeetingRecord = "meeting_record",
        /// Notice that the person was readmitted during support (support goes on).
        Readmission = "readmission",
        /// An authority's delegation of part of a case's support to a contractor (III.8).
        Delegation = "delegation",
        /// The measure-admission material the prefecture passes to the hospital (R11).
        AdmissionMaterial = "admission_material",
        /// After a move, the destination authority's request to the origin for information
        /// about past support (III.5).
        InformationRequest = "information_request",
        /// The origin authority's answer to an information request.
        InformationAnswer = "information_answer",
    }
);

impl DocType {
    /// The directory roles whose members may author a document of this type: hospitals write
    /// needs assessments and opinion letters, and the plan author may write or amend the Form 6
    /// summaries at a support meeting (a needs assessment of its own); authorities (and the
    /// prefecture co-authoring or controlling a case) write plans, consent records, meeting
    /// records, notices and transfer documents; a move or a readmission is reported by the
    /// hospital or recorded by the authority. The receiver refuses a document whose author has
    /// another role.
    pub fn author_roles(self) -> &'static [crate::org::Role] {
        use crate::org::Role as R;
        match self {
            DocType::OpinionLetter => &[R::Hospital],
            DocType::NeedsAssessment | DocType::ResidenceChange | DocType::Readmission => {
                &[R::Hospital, R::Authority, R::Prefecture]
            }
            DocType::SupportPlan
            | DocType::TransferNotice
            | DocType::SupportSummary
            | DocType::Consent
            | DocType::ConsentWithdrawal
            | DocType::SupportEnd
            | DocType::MeetingRecord
            | DocType::Delegation
            | DocType::AdmissionMaterial
            | DocType::InformationRequest
            | DocType::InformationAnswer => &[R::Authority, R::Prefecture],
        }
    }

    /// Whether an org of `role` may author a document of this type ([`DocType::author_roles`]).
    pub fn may_be_authored_by(self, role: crate::org::Role) -> bool {
        self.author_roles().contains(&role)
    }
}

wire_enum!(
    /// Why personal data moves: the purposes a consent record grants.
    Purpose, "purpose" {
        /// Making the plan (assessments and opinion letters to the author, drafts to co-authors).
        PlanCreation = "plan_creation",
        /// Carrying out the plan with the support parties.
        PlanImplementation = "plan_implementation",
        /// Passing the case to the destination authority on relocation (Form 7, R5).
        RelocationTransfer = "relocation_transfer",
        /// Distributing consent records and withdrawal notices (always allowed).
        ConsentManagement = "consent_management",
        /// Telling the parties that support ended (always allowed).
        SupportEnd = "support_end",
    }
);

/// A pseudonymous case id such as `case-131059-2026-0007`: `case-` followed by lowercase ASCII
/// letters, digits and `-`, at most 64 characters in all. Never a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaseId(String);

impl CaseId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The authority that opened the case, when the id names one: `case-<code>-…`, where
    /// `<code>` is that authority's 6-digit local government code (`lg:<code>`, check digit
    /// included), as in `case-131059-2026-0007` (Bunkyo). The opener is the case's first
    /// controller everywhere: any other authority becomes a controller of the case only by a
    /// move the person agreed to, which it must show ([`crate::envelope`], step 6). An id that
    /// names no authority has no opener, and no authority's consent of it is taken as the
    /// case's first.
    pub fn opener(&self) -> Option<crate::org::OrgId> {
        authority_named_by(&self.0, "case-")
    }
}

/// The authority an id of the shape `<prefix><code>-…` names: `lg:<code>`, when `<code>` is a
/// 6-digit local government code with a valid check digit ([`CaseId::opener`], and consent ids
/// in [`consent::ConsentRecord::validate`]).
pub(crate) fn authority_named_by(id: &str, prefix: &str) -> Option<crate::org::OrgId> {
    let rest = id.strip_prefix(prefix)?;
    let (code, tail) = rest.split_at_checked(6)?;
    if !tail.starts_with('-') || tail.len() < 2 {
        return None;
    }
    format!("lg:{code}").parse().ok()
}

impl FromStr for CaseId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.len() <= 64
            && s.strip_prefix("case-").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err("is not a case id: expected `case-` and lowercase letters, digits or '-' (at most 64 characters; never a name)".to_owned())
        }
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CaseId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CaseId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?} {e}")))
    }
}

/// Nests disclosed elements (`items.A1` → `{"items": {"A1": …}}`) back into the JSON shape.
/// Numbered slots (a consent record's `recipients.0` …) become an array again, in slot order,
/// without the empty (`null`) and withheld ones.
pub fn elements_to_json<'a>(
    elements: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (id, value) in elements {
        match id.split_once('.') {
            Some((parent, child)) => {
                let slot = out
                    .entry(parent.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = slot {
                    m.insert(child.to_owned(), value.clone());
                }
            }
            None => {
                out.insert(id.to_owned(), value.clone());
            }
        }
    }
    for value in out.values_mut() {
        let Value::Object(m) = value else { continue };
        let slots: Option<Vec<(usize, Value)>> = m
            .iter()
            .map(|(k, v)| Some((k.parse().ok()?, v.clone())))
            .collect();
        if let Some(mut slots) = slots.filter(|s| !s.is_empty()) {
            slots.sort_by_key(|(i, _)| *i);
            *value = Value::Array(
                slots
                    .into_iter()
                    .map(|(_, v)| v)
                    .filter(|v| !v.is_null())
                    .collect(),
            );
        }
    }
    out
}
