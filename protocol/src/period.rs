//! Support period rules (R7).
//!
//! (rules being written; the types below are the contract used by the plan model)

use serde::{Deserialize, Serialize};

use crate::date::Date;

/// The support period of a plan (both days inclusive), with at most one extension.
///
/// At most one extension is a property of the type: a plan carries an `Option`, not a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportPeriod {
    /// First day of support (normally the discharge date).
    pub from: Date,
    /// Last day of support as first planned.
    pub to: Date,
    /// The one permitted extension, if any.
    #[serde(default)]
    pub extension: Option<PeriodExtension>,
}

/// An extension of the support period, which needs the person's consent (R7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodExtension {
    /// The new last day.
    pub to: Date,
    /// The day the person consented to the extension.
    pub consented_on: Date,
    /// Why support continues.
    pub reason: String,
}
