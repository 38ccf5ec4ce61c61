//! Support period rules (R7, and the relocation remainder of R5).
//!
//! The guideline (II.6(3), III.6) sets the plan's support period at **within 6 months after
//! discharge** as its basis (基本). Before the period runs out, a **support meeting** may decide,
//! **with the person's consent**, to extend it — in principle once (原則1回) — and support should
//! end **within 1 year after discharge** (努める: an effort, not a prohibition). On relocation
//! (III.5) the destination authority's plan period is by default the **remaining** period of the
//! origin's plan.
//!
//! # The model
//!
//! - A period as first planned ([`SupportPeriod::from`]..=[`SupportPeriod::to`]) lies within 6
//!   months after discharge ([`default_period`] gives exactly that); a longer one is refused and
//!   the error says to extend instead.
//! - Each extension ([`PeriodExtension`]) names the support meeting that decided it and the
//!   consent version under which the person agreed; both must be dated no later than the end
//!   it extends.
//! - The first extension within 1 year after discharge needs nothing more. A **second** (or
//!   later) extension, or one that reaches beyond 1 year after discharge, is an **exception**: it
//!   is accepted only with a recorded `exception` reason, and [`SupportPeriod::is_exceptional`]
//!   lets the statistics count it.
//! - The gate refuses `plan_implementation` sharing after the effective end (the last
//!   extension's end), see [`crate::gate`].
//!
//! # Counting
//!
//! Both ends of a [`SupportPeriod`] are inclusive days. "N months after discharge" follows the
//! Japanese Civil Code (民法 143条): a period of N months starting on day D ends on the day before
//! the day with D's number N months later, or on the last day of that month when it has no such
//! day. So a discharge on 2026-11-01 gives a default period 2026-11-01..=2027-04-30 and a 1-year
//! limit of 2027-10-31; a discharge on 2026-08-31 gives 2026-08-31..=2027-02-28.
//!
//! # Checks
//!
//! [`check`] validates a period against the discharge date, [`extend`] adds an extension,
//! [`remaining_period`] computes the destination's default period. When the discharge date is not
//! yet decided (未定), only the checks that do not need it apply. Errors name the JSON path of the
//! plan field, e.g.
//! `support_period.to: 2027-06-01 is more than 6 months after discharge on 2026-11-01 (R7)`.

use serde::{Deserialize, Serialize};

use crate::date::Date;

/// The default length of a support period after discharge, in months (R7).
pub const DEFAULT_MONTHS: u32 = 6;

/// How long support should last at most after discharge, extensions included, in months (R7);
/// beyond it an extension needs a recorded exception reason.
pub const MAX_MONTHS: u32 = 12;

/// The support period of a plan (both days inclusive), with its extensions in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportPeriod {
    /// First day of support (normally the discharge date).
    pub from: Date,
    /// Last day of support as first planned.
    pub to: Date,
    /// The extensions decided so far, oldest first (empty, and left out, when never extended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<PeriodExtension>,
}

/// An extension of the support period, decided at a support meeting with the person's consent
/// (R7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodExtension {
    /// The new last day.
    pub to: Date,
    /// The day of the support meeting that decided the extension (its meeting record).
    pub meeting_on: Date,
    /// The consent version under which the person agreed to the extension.
    pub consent_version: u32,
    /// The day the person consented to the extension.
    pub consented_on: Date,
    /// Why support continues.
    pub reason: String,
    /// Why support goes beyond the guideline (a second extension, or beyond 1 year after
    /// discharge): required then, absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
}

impl SupportPeriod {
    /// The last day of support: the last extension's `to` if extended, else `to`.
    pub fn effective_end(&self) -> Date {
        self.extensions.last().map_or(self.to, |e| e.to)
    }

    /// Whether `day` lies within the period, extensions included.
    pub fn contains(&self, day: Date) -> bool {
        self.from <= day && day <= self.effective_end()
    }

    /// Whether the period goes beyond the guideline: extended more than once, or (when the
    /// discharge date is known) beyond 1 year after discharge. Counted in the statistics.
    pub fn is_exceptional(&self, discharge: Option<Date>) -> bool {
        self.extensions.len() > 1
            || discharge.is_some_and(|d| self.effective_end() > last_day(d, MAX_MONTHS))
    }

    /// The end each extension extends: `to` for the first, the previous extension's end after.
    fn ends_before(&self) -> impl Iterator<Item = (usize, Date, &PeriodExtension)> {
        let mut prev = self.to;
        self.extensions.iter().enumerate().map(move |(i, x)| {
            let before = prev;
            prev = x.to;
            (i, before, x)
        })
    }
}

/// Why a support period breaks R7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// `to` is before `from`.
    #[error("support_period.to: {to} is before support_period.from {from}")]
    EndsBeforeStart {
        /// First day.
        from: Date,
        /// Last day.
        to: Date,
    },
    /// Support starts before the person is discharged.
    #[error("support_period.from: {from} is before discharge on {discharge} (R7)")]
    StartsBeforeDischarge {
        /// First day.
        from: Date,
        /// Discharge date.
        discharge: Date,
    },
    /// The period as first planned runs past the 6-month default.
    #[error("support_period.to: {to} is more than 6 months after discharge on {discharge}; plan 6 months at most and extend the period at a support meeting with the person's consent (R7)")]
    BeyondSixMonths {
        /// Last day as planned.
        to: Date,
        /// Discharge date.
        discharge: Date,
    },
    /// An extension does not end after the end it extends.
    #[error("support_period.extensions.{index}.to: {ext_to} does not extend the period ending on {end} (R7)")]
    ExtensionNotLater {
        /// Position of the extension.
        index: usize,
        /// The extension's last day.
        ext_to: Date,
        /// The end it extends.
        end: Date,
    },
    /// The meeting deciding an extension was held after the period had run out.
    #[error("support_period.extensions.{index}.meeting_on: {meeting_on} is after the period ended on {end}; the support meeting must decide an extension before the period runs out (R7)")]
    MeetingAfterEnd {
        /// Position of the extension.
        index: usize,
        /// The meeting's day.
        meeting_on: Date,
        /// The end it extends.
        end: Date,
    },
    /// Consent to an extension was given after the period had run out.
    #[error("support_period.extensions.{index}.consented_on: {consented_on} is after the period ended on {end}; consent to an extension must be obtained before the period runs out (R7)")]
    ConsentAfterEnd {
        /// Position of the extension.
        index: usize,
        /// The day of consent.
        consented_on: Date,
        /// The end it extends.
        end: Date,
    },
    /// An extension names no consent version.
    #[error("support_period.extensions.{index}.consent_version: 0 is not a consent version; name the version under which the person agreed (R7)")]
    NoConsentVersion {
        /// Position of the extension.
        index: usize,
    },
    /// An extension gives no reason.
    #[error("support_period.extensions.{index}.reason: must say why support continues (R7)")]
    MissingReason {
        /// Position of the extension.
        index: usize,
    },
    /// A second extension without a recorded exception reason.
    #[error("support_period.extensions.{index}.exception: extension number {} goes beyond the guideline's one extension; record why in `exception` (R7)", index + 1)]
    SecondExtensionWithoutReason {
        /// Position of the extension.
        index: usize,
    },
    /// An extension beyond 1 year after discharge without a recorded exception reason.
    #[error("support_period.extensions.{index}.to: {ext_to} is more than 1 year after discharge on {discharge}; record why in `exception` (R7)")]
    BeyondOneYear {
        /// Position of the extension.
        index: usize,
        /// The extension's last day.
        ext_to: Date,
        /// Discharge date.
        discharge: Date,
    },
}

/// The last day of a period of `months` months starting on `start` (Civil Code art. 143).
fn last_day(start: Date, months: u32) -> Date {
    let same_day = start.add_months(months);
    if same_day.day() < start.day() {
        // No day with start's number in the final month: the period ends on its last day.
        same_day
    } else {
        same_day.add_days(-1)
    }
}

/// The default period for a discharge: from the discharge day to the last day of the 6 months
/// that follow (both inclusive); 2026-11-01 gives 2026-11-01..=2027-04-30.
pub fn default_period(discharge: Date) -> SupportPeriod {
    SupportPeriod {
        from: discharge,
        to: last_day(discharge, DEFAULT_MONTHS),
        extensions: Vec::new(),
    }
}

/// Checks a period against R7; `discharge` is `None` while the discharge date is undecided, in
/// which case only the checks that do not need it apply.
pub fn check(period: &SupportPeriod, discharge: Option<Date>) -> Result<(), PeriodError> {
    let SupportPeriod { from, to, .. } = *period;
    if to < from {
        return Err(PeriodError::EndsBeforeStart { from, to });
    }
    if let Some(discharge) = discharge {
        if from < discharge {
            return Err(PeriodError::StartsBeforeDischarge { from, discharge });
        }
        if to > last_day(discharge, DEFAULT_MONTHS) {
            return Err(PeriodError::BeyondSixMonths { to, discharge });
        }
    }
    for (index, end, ext) in period.ends_before() {
        if ext.to <= end {
            return Err(PeriodError::ExtensionNotLater {
                index,
                ext_to: ext.to,
                end,
            });
        }
        if ext.meeting_on > end {
            return Err(PeriodError::MeetingAfterEnd {
                index,
                meeting_on: ext.meeting_on,
                end,
            });
        }
        if ext.consented_on > end {
            return Err(PeriodError::ConsentAfterEnd {
                index,
                consented_on: ext.consented_on,
                end,
            });
        }
        if ext.consent_version == 0 {
            return Err(PeriodError::NoConsentVersion { index });
        }
        if ext.reason.trim().is_empty() {
            return Err(PeriodError::MissingReason { index });
        }
        let exception = ext
            .exception
            .as_deref()
            .is_some_and(|r| !r.trim().is_empty());
        if index > 0 && !exception {
            return Err(PeriodError::SecondExtensionWithoutReason { index });
        }
        if let Some(discharge) = discharge {
            if ext.to > last_day(discharge, MAX_MONTHS) && !exception {
                return Err(PeriodError::BeyondOneYear {
                    index,
                    ext_to: ext.to,
                    discharge,
                });
            }
        }
    }
    Ok(())
}

/// Adds an extension to a period and checks the result with [`check`]: a second extension, or
/// one beyond 1 year after discharge, needs its `exception` reason.
pub fn extend(
    period: &SupportPeriod,
    ext: PeriodExtension,
    discharge: Option<Date>,
) -> Result<SupportPeriod, PeriodError> {
    let mut extended = period.clone();
    extended.extensions.push(ext);
    check(&extended, discharge)?;
    Ok(extended)
}

/// The destination's default period on relocation (R5, III.5): what remains of the origin's
/// period from the transfer date on, or `None` when the origin's support has already ended.
/// A transfer dated before the origin's period starts leaves all of it.
///
/// The remainder ends on the same day as the origin's (its effective end): a move does not buy
/// more time.
///
/// - Transfer within the original period: `from` is the transfer date, and `to` and the
///   extensions are the origin's, so the remainder passes [`check`] whenever the origin does,
///   and a further extension counts as the origin's next one.
/// - Transfer within an extension: the remainder runs from the transfer date to that
///   extension's end, followed by the later extensions (it lies beyond the 6-month default by
///   construction; validate it against the 1-year limit, not with [`check`]).
pub fn remaining_period(origin: &SupportPeriod, transfer_date: Date) -> Option<SupportPeriod> {
    let end = origin.effective_end();
    if transfer_date > end {
        return None;
    }
    let from = transfer_date.max(origin.from);
    if from <= origin.to {
        return Some(SupportPeriod {
            from,
            ..origin.clone()
        });
    }
    let (i, _, ext) = origin.ends_before().find(|(_, _, x)| from <= x.to)?;
    Some(SupportPeriod {
        from,
        to: ext.to,
        extensions: origin.extensions[i + 1..].to_vec(),
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn period(from: &str, to: &str) -> SupportPeriod {
        SupportPeriod {
            from: d(from),
            to: d(to),
            extensions: Vec::new(),
        }
    }

    /// An extension decided at a meeting on `consented_on`, under consent v2.
    fn ext(to: &str, consented_on: &str) -> PeriodExtension {
        PeriodExtension {
            to: d(to),
            meeting_on: d(consented_on),
            consent_version: 2,
            consented_on: d(consented_on),
            reason: "病状が不安定で支援の継続が必要".to_owned(),
            exception: None,
        }
    }

    fn exceptional(mut x: PeriodExtension) -> PeriodExtension {
        x.exception = Some("就労移行の途中で、支援者の交代を避けるため".to_owned());
        x
    }

    /// The fixture plan's period (case-0007), read from the plan itself.
    fn fixture_period() -> SupportPeriod {
        let plan: serde_json::Value =
            serde_json::from_str(include_str!("../../fixtures/case-0007/support_plan.json"))
                .unwrap();
        serde_json::from_value(plan["support_period"].clone()).unwrap()
    }

    const DISCHARGE: &str = "2026-11-01";

    #[test]
    fn default_period_is_six_months_inclusive() {
        assert_eq!(
            default_period(d(DISCHARGE)),
            period("2026-11-01", "2027-04-30")
        );
        assert_eq!(default_period(d(DISCHARGE)), fixture_period());
        // Civil Code art. 143: no 31st in February, so the period ends on its last day.
        assert_eq!(default_period(d("2026-08-31")).to, d("2027-02-28"));
        check(&period("2026-11-01", "2027-06-01"), None).unwrap();
    }

    #[test]
    fn fixture_plan_period_passes() {
        check(&fixture_period(), Some(d(DISCHARGE))).unwrap();
    }

    #[test]
    fn end_before_start_fails() {
        assert!(matches!(
            check(&period("2026-11-02", "2026-11-01"), None),
            Err(PeriodError::EndsBeforeStart { .. })
        ));
    }

    #[test]
    fn start_before_discharge_fails() {
        assert!(matches!(
            check(&period("2026-10-31", "2027-04-30"), Some(d(DISCHARGE))),
            Err(PeriodError::StartsBeforeDischarge { .. })
        ));
    }

    #[test]
    fn six_months_and_a_day_points_to_an_extension() {
        let e = check(&period("2026-11-01", "2027-05-01"), Some(d(DISCHARGE))).unwrap_err();
        assert!(matches!(e, PeriodError::BeyondSixMonths { .. }));
        assert!(
            e.to_string()
                .contains("extend the period at a support meeting"),
            "{e}"
        );
    }

    #[test]
    fn one_extension_within_one_year_needs_a_meeting_and_consent_only() {
        let p = extend(
            &fixture_period(),
            ext("2027-10-31", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        assert_eq!(p.effective_end(), d("2027-10-31"));
        assert_eq!(p.to, d("2027-04-30"));
        assert!(p.contains(d("2027-10-31")) && !p.contains(d("2027-11-01")));
        assert!(!p.is_exceptional(Some(d(DISCHARGE))));
        // Meeting and consent on the last day of the original period are still in time.
        extend(
            &fixture_period(),
            ext("2027-07-31", "2027-04-30"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
    }

    #[test]
    fn beyond_one_year_needs_a_recorded_exception_and_is_counted() {
        let e = extend(
            &fixture_period(),
            ext("2027-11-01", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "support_period.extensions.0.to: 2027-11-01 is more than 1 year after discharge on 2026-11-01; record why in `exception` (R7)"
        );
        let p = extend(
            &fixture_period(),
            exceptional(ext("2027-11-01", "2027-04-20")),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        assert!(p.is_exceptional(Some(d(DISCHARGE))));
        // Without a discharge date the 1-year limit cannot be applied.
        extend(&fixture_period(), ext("2027-11-01", "2027-04-20"), None).unwrap();
    }

    #[test]
    fn a_second_extension_needs_a_recorded_exception_and_is_counted() {
        let once = extend(
            &fixture_period(),
            ext("2027-07-31", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        let e = extend(&once, ext("2027-10-31", "2027-07-20"), Some(d(DISCHARGE))).unwrap_err();
        assert_eq!(e, PeriodError::SecondExtensionWithoutReason { index: 1 });
        assert!(e.to_string().contains("extension number 2"), "{e}");
        let twice = extend(
            &once,
            exceptional(ext("2027-10-31", "2027-07-20")),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        assert_eq!(twice.effective_end(), d("2027-10-31"));
        assert!(twice.is_exceptional(Some(d(DISCHARGE))));
        // The second extension's meeting must come before the first extension runs out.
        let late = extend(
            &once,
            exceptional(ext("2027-10-31", "2027-08-01")),
            Some(d(DISCHARGE)),
        )
        .unwrap_err();
        assert!(
            matches!(late, PeriodError::MeetingAfterEnd { index: 1, .. }),
            "{late}"
        );
    }

    #[test]
    fn extension_must_extend() {
        for to in ["2027-04-30", "2027-03-31"] {
            let e = extend(&fixture_period(), ext(to, "2027-03-01"), None).unwrap_err();
            assert!(matches!(e, PeriodError::ExtensionNotLater { .. }), "{e}");
            assert!(
                e.to_string().starts_with("support_period.extensions.0.to:"),
                "{e}"
            );
        }
    }

    #[test]
    fn meeting_and_consent_after_the_end_are_refused() {
        let mut x = ext("2027-07-31", "2027-04-20");
        x.consented_on = d("2027-05-01");
        let e = extend(&fixture_period(), x, None).unwrap_err();
        assert_eq!(
            e,
            PeriodError::ConsentAfterEnd {
                index: 0,
                consented_on: d("2027-05-01"),
                end: d("2027-04-30")
            }
        );
        let mut x = ext("2027-07-31", "2027-04-20");
        x.meeting_on = d("2027-05-01");
        let e = extend(&fixture_period(), x, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("support_period.extensions.0.meeting_on: 2027-05-01"),
            "{e}"
        );
    }

    #[test]
    fn extension_needs_a_reason_and_a_consent_version() {
        let mut x = ext("2027-07-31", "2027-04-20");
        x.reason = "  ".to_owned();
        assert_eq!(
            extend(&fixture_period(), x, None).unwrap_err(),
            PeriodError::MissingReason { index: 0 }
        );
        let mut x = ext("2027-07-31", "2027-04-20");
        x.consent_version = 0;
        assert_eq!(
            extend(&fixture_period(), x, None).unwrap_err(),
            PeriodError::NoConsentVersion { index: 0 }
        );
    }

    #[test]
    fn remaining_period_on_transfer() {
        let rest = remaining_period(&fixture_period(), d("2027-01-15")).unwrap();
        assert_eq!(rest, period("2027-01-15", "2027-04-30"));
        check(&rest, Some(d(DISCHARGE))).unwrap();
        // The last day still remains; the day after, nothing does.
        assert_eq!(
            remaining_period(&fixture_period(), d("2027-04-30")),
            Some(period("2027-04-30", "2027-04-30"))
        );
        assert_eq!(remaining_period(&fixture_period(), d("2027-05-01")), None);
        // A transfer dated before the period starts leaves all of it.
        assert_eq!(
            remaining_period(&fixture_period(), d("2026-10-20")),
            Some(fixture_period())
        );
    }

    #[test]
    fn remaining_period_keeps_the_extensions() {
        let extended = extend(
            &fixture_period(),
            ext("2027-07-31", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        // Within the original period: the extension travels with the case; another one is a
        // second extension.
        let rest = remaining_period(&extended, d("2027-01-15")).unwrap();
        assert_eq!(
            (rest.from, rest.to, rest.effective_end()),
            (d("2027-01-15"), d("2027-04-30"), d("2027-07-31"))
        );
        check(&rest, Some(d(DISCHARGE))).unwrap();
        assert!(matches!(
            extend(&rest, ext("2027-10-31", "2027-04-20"), Some(d(DISCHARGE))),
            Err(PeriodError::SecondExtensionWithoutReason { .. })
        ));
        // Within the extension: the rest of the extension.
        assert_eq!(
            remaining_period(&extended, d("2027-06-01")),
            Some(period("2027-06-01", "2027-07-31"))
        );
        assert_eq!(remaining_period(&extended, d("2027-08-01")), None);
    }
}
