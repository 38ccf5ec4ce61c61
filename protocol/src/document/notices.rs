//! Notices that must always flow: consent withdrawal (R4) and support end (III.6).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{require_authority, require_type, wire_enum, CaseId, DocType, ValidationError};
use crate::date::Date;
use crate::org::OrgId;

/// Notice to every party that received anything of the case that the person withdrew consent
/// (R4): sharing stops, queued messages are cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentWithdrawal {
    /// Always `consent_withdrawal`.
    pub document_type: DocType,
    /// The controller authority of the consent record (`lg:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The consent record's stable id.
    pub consent_id: String,
    /// The version that records the withdrawal (at least 1).
    pub consent_version: u32,
    /// The day consent was withdrawn.
    pub withdrawn_on: Date,
    /// A message for the receiving staff (in Japanese), e.g. what to do with records received.
    pub message: String,
}

impl ConsentWithdrawal {
    /// Checks the rules the types do not: an authority sends it and the version is at least 1.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type(
            "document_type",
            self.document_type,
            DocType::ConsentWithdrawal,
        )?;
        require_authority("author", &self.author)?;
        if self.consent_version == 0 {
            return Err(ValidationError::at(
                "consent_version",
                "0 is not a consent version: versions start at 1",
            ));
        }
        Ok(())
    }
}

wire_enum!(
    /// How support ended (III.6; counted in the statistics of R12), decided by the plan author.
    SupportOutcome, "support outcome" {
        /// The support period (with its extensions) was completed.
        Completed = "completed",
        /// Support is no longer needed before the period ends.
        NoLongerNeeded = "no_longer_needed",
        /// The person withdrew consent (R4).
        ConsentWithdrawn = "consent_withdrawn",
        /// The person moved and the case went to another authority (R5).
        Transferred = "transferred",
        /// An order under the Medical Treatment and Supervision Act (医療観察法).
        MedicalObservationOrder = "medical_observation_order",
        /// The person died.
        Died = "died",
        /// Anything else; see the note.
        Other = "other",
        /// Read from records made before readmission became a notice of its own; a readmission
        /// does not end support, so a new support end with this outcome is refused when it is
        /// submitted (see [`SupportOutcome::may_be_decided`]).
        Readmitted = "readmitted",
    }
);

impl SupportOutcome {
    /// Whether the plan author may decide a new support end with this outcome: every outcome
    /// but `readmitted` (a readmission is a `readmission` notice; support goes on).
    pub fn may_be_decided(self) -> Result<(), String> {
        if self == SupportOutcome::Readmitted {
            Err("outcome readmitted: a readmission does not end support; send a readmission notice instead, and revise the plan at the next discharge".to_owned())
        } else {
            Ok(())
        }
    }
}

/// Notice to the support parties that support under the plan has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportEnd {
    /// Always `support_end`.
    pub document_type: DocType,
    /// The plan author (`lg:`).
    pub author: OrgId,
    /// The case.
    pub subject: CaseId,
    /// The last day of support.
    pub ended_on: Date,
    /// How it ended.
    pub outcome: SupportOutcome,
    /// Free-text note for the parties (may be empty).
    pub note: String,
}

impl SupportEnd {
    /// Checks the rules the types do not: an authority sends it.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_type("document_type", self.document_type, DocType::SupportEnd)?;
        require_authority("author", &self.author)
    }
}
