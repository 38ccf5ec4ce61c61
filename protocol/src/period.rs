//! Support period rules (R7, and the relocation remainder of R5).
//!
//! The guideline (II.6(3), III.6) sets the plan's support period at **within 6 months after
//! discharge** as the default. When that period runs out, support normally ends. Exceptionally the
//! period may be **extended once**, only with the person's consent obtained **before the original
//! period runs out**, and support should end **within 1 year after discharge**. On relocation
//! (III.5) the destination authority's plan period is by default the **remaining** period of the
//! origin's plan.
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
//! [`check`] validates a period against the discharge date, [`extend`] adds the one extension,
//! [`remaining_period`] computes the destination's default period. When the discharge date is not
//! yet decided (未定), only the checks that do not need it apply: `to` not before `from`, an
//! extension ending after the original `to`, its consent given no later than the original `to`.
//! Errors name the JSON path of the plan field, e.g.
//! `support_period.to: 2027-06-01 is more than 6 months after discharge on 2026-11-01 (R7)`.

use serde::{Deserialize, Serialize};

use crate::date::Date;

/// The default length of a support period after discharge, in months (R7).
pub const DEFAULT_MONTHS: u32 = 6;

/// The longest support may last after discharge, extension included, in months (R7).
pub const MAX_MONTHS: u32 = 12;

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

impl SupportPeriod {
    /// The last day of support: the extension's `to` if extended, else `to`.
    pub fn effective_end(&self) -> Date {
        self.extension.as_ref().map_or(self.to, |e| e.to)
    }

    /// Whether `day` lies within the period, extension included.
    pub fn contains(&self, day: Date) -> bool {
        self.from <= day && day <= self.effective_end()
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
    #[error("support_period.to: {to} is more than 6 months after discharge on {discharge} (R7)")]
    BeyondSixMonths {
        /// Last day as planned.
        to: Date,
        /// Discharge date.
        discharge: Date,
    },
    /// The extension does not end after the original period.
    #[error("support_period.extension.to: {ext_to} does not extend support_period.to {to} (R7)")]
    ExtensionNotLater {
        /// The extension's last day.
        ext_to: Date,
        /// The original last day.
        to: Date,
    },
    /// The extension runs past 1 year after discharge.
    #[error("support_period.extension.to: {ext_to} is more than 1 year after discharge on {discharge} (R7)")]
    BeyondOneYear {
        /// The extension's last day.
        ext_to: Date,
        /// Discharge date.
        discharge: Date,
    },
    /// Consent to the extension was given after the original period had run out.
    #[error("support_period.extension.consented_on: {consented_on} is after the period ended on {to}; consent to an extension must be obtained before the period runs out (R7)")]
    ConsentAfterEnd {
        /// The day of consent.
        consented_on: Date,
        /// The original last day.
        to: Date,
    },
    /// The extension gives no reason.
    #[error("support_period.extension.reason: must say why support continues (R7)")]
    MissingReason,
    /// A second extension was asked for.
    #[error("support_period.extension: the period was already extended to {ext_to}; support may be extended only once (R7)")]
    AlreadyExtended {
        /// The existing extension's last day.
        ext_to: Date,
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
        extension: None,
    }
}

/// Checks a period against R7; `discharge` is `None` while the discharge date is undecided, in
/// which case only the ordering checks apply.
pub fn check(period: &SupportPeriod, discharge: Option<Date>) -> Result<(), PeriodError> {
    let SupportPeriod {
        from,
        to,
        ref extension,
    } = *period;
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
    if let Some(ext) = extension {
        if ext.to <= to {
            return Err(PeriodError::ExtensionNotLater { ext_to: ext.to, to });
        }
        if ext.consented_on > to {
            return Err(PeriodError::ConsentAfterEnd {
                consented_on: ext.consented_on,
                to,
            });
        }
        if ext.reason.trim().is_empty() {
            return Err(PeriodError::MissingReason);
        }
        if let Some(discharge) = discharge {
            if ext.to > last_day(discharge, MAX_MONTHS) {
                return Err(PeriodError::BeyondOneYear {
                    ext_to: ext.to,
                    discharge,
                });
            }
        }
    }
    Ok(())
}

/// Extends a period once (R7): refuses a period that already has an extension, and checks the
/// result with [`check`].
pub fn extend(
    period: &SupportPeriod,
    ext: PeriodExtension,
    discharge: Option<Date>,
) -> Result<SupportPeriod, PeriodError> {
    if let Some(existing) = &period.extension {
        return Err(PeriodError::AlreadyExtended {
            ext_to: existing.to,
        });
    }
    let extended = SupportPeriod {
        extension: Some(ext),
        ..period.clone()
    };
    check(&extended, discharge)?;
    Ok(extended)
}

/// The destination's default period on relocation (R5, III.5): what remains of the origin's
/// period from the transfer date on, or `None` when the origin's support has already ended.
/// A transfer dated before the origin's period starts leaves all of it.
///
/// The remainder ends on the same day as the origin's (its effective end) and spends the same
/// extension: the guideline's "once" and "within 1 year after discharge" are about the person's
/// support, not about each authority, so a move does not buy a second extension.
///
/// - Transfer within the original period: `from` is the transfer date, and `to` and `extension`
///   are the origin's, so the remainder passes [`check`] whenever the origin does, and [`extend`]
///   refuses it if the origin was already extended.
/// - Transfer within the extension: the original `to` has passed, so the remainder is the
///   transfer date to the extension's end, with no extension of its own (it is itself the
///   extended part and lies beyond the 6-month default by construction; validate it against the
///   1-year limit, not with [`check`]).
pub fn remaining_period(origin: &SupportPeriod, transfer_date: Date) -> Option<SupportPeriod> {
    let end = origin.effective_end();
    if transfer_date > end {
        return None;
    }
    let from = transfer_date.max(origin.from);
    Some(if from <= origin.to {
        SupportPeriod {
            from,
            ..origin.clone()
        }
    } else {
        SupportPeriod {
            from,
            to: end,
            extension: None,
        }
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
            extension: None,
        }
    }

    fn ext(to: &str, consented_on: &str) -> PeriodExtension {
        PeriodExtension {
            to: d(to),
            consented_on: d(consented_on),
            reason: "病状が不安定で支援の継続が必要".to_owned(),
        }
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
        assert_eq!(default_period(d("2027-08-31")).to, d("2028-02-29"));
        assert_eq!(default_period(d("2026-03-15")).to, d("2026-09-14"));
        assert_eq!(default_period(d("2026-09-01")).to, d("2027-02-28"));
        check(&default_period(d("2026-08-31")), Some(d("2026-08-31"))).unwrap();
    }

    #[test]
    fn fixture_plan_period_passes() {
        check(&fixture_period(), Some(d(DISCHARGE))).unwrap();
        check(&fixture_period(), None).unwrap();
    }

    #[test]
    fn end_before_start_fails() {
        let e = check(&period("2026-11-01", "2026-10-31"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "support_period.to: 2026-10-31 is before support_period.from 2026-11-01"
        );
        // A single day is a valid period.
        check(&period("2026-11-01", "2026-11-01"), Some(d(DISCHARGE))).unwrap();
    }

    #[test]
    fn start_before_discharge_fails() {
        let p = period("2026-10-31", "2027-04-30");
        let e = check(&p, Some(d(DISCHARGE))).unwrap_err();
        assert!(
            matches!(e, PeriodError::StartsBeforeDischarge { .. }),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("support_period.from: 2026-10-31"),
            "{e}"
        );
        // Undecided discharge: only ordering applies.
        check(&p, None).unwrap();
    }

    #[test]
    fn six_months_and_a_day_fails() {
        let e = check(&period("2026-11-01", "2027-05-01"), Some(d(DISCHARGE))).unwrap_err();
        assert_eq!(
            e,
            PeriodError::BeyondSixMonths {
                to: d("2027-05-01"),
                discharge: d(DISCHARGE)
            }
        );
        let e = check(&period("2026-11-01", "2027-06-01"), Some(d(DISCHARGE))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "support_period.to: 2027-06-01 is more than 6 months after discharge on 2026-11-01 (R7)"
        );
        check(&period("2026-11-01", "2027-06-01"), None).unwrap();
    }

    #[test]
    fn extension_within_one_year_passes() {
        let p = extend(
            &fixture_period(),
            ext("2027-10-31", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        assert_eq!(p.effective_end(), d("2027-10-31"));
        assert_eq!(p.to, d("2027-04-30"));
        assert!(p.contains(d("2027-10-31")) && !p.contains(d("2027-11-01")));
        check(&p, Some(d(DISCHARGE))).unwrap();
        // Consent on the last day of the original period is still in time.
        extend(
            &fixture_period(),
            ext("2027-07-31", "2027-04-30"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
    }

    #[test]
    fn extension_beyond_one_year_refused() {
        let e = extend(
            &fixture_period(),
            ext("2027-11-01", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "support_period.extension.to: 2027-11-01 is more than 1 year after discharge on 2026-11-01 (R7)"
        );
        // Without a discharge date the 1-year limit cannot be applied.
        extend(&fixture_period(), ext("2027-11-01", "2027-04-20"), None).unwrap();
    }

    #[test]
    fn second_extension_refused() {
        let once = extend(
            &fixture_period(),
            ext("2027-07-31", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        let e = extend(&once, ext("2027-10-31", "2027-07-20"), Some(d(DISCHARGE))).unwrap_err();
        assert_eq!(
            e,
            PeriodError::AlreadyExtended {
                ext_to: d("2027-07-31")
            }
        );
        assert!(e.to_string().contains("only once (R7)"), "{e}");
    }

    #[test]
    fn extension_must_extend() {
        for to in ["2027-04-30", "2027-03-31"] {
            let e = extend(&fixture_period(), ext(to, "2027-03-01"), None).unwrap_err();
            assert!(matches!(e, PeriodError::ExtensionNotLater { .. }), "{e}");
            assert!(
                e.to_string().starts_with("support_period.extension.to:"),
                "{e}"
            );
        }
    }

    #[test]
    fn extension_consent_after_end_refused() {
        let e = extend(&fixture_period(), ext("2027-07-31", "2027-05-01"), None).unwrap_err();
        assert_eq!(
            e,
            PeriodError::ConsentAfterEnd {
                consented_on: d("2027-05-01"),
                to: d("2027-04-30")
            }
        );
        assert!(
            e.to_string()
                .starts_with("support_period.extension.consented_on: 2027-05-01"),
            "{e}"
        );
    }

    #[test]
    fn extension_needs_a_reason() {
        let mut x = ext("2027-07-31", "2027-04-20");
        x.reason = "  ".to_owned();
        assert_eq!(
            extend(&fixture_period(), x, None).unwrap_err(),
            PeriodError::MissingReason
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
    fn remaining_period_spends_the_extension() {
        let extended = extend(
            &fixture_period(),
            ext("2027-07-31", "2027-04-20"),
            Some(d(DISCHARGE)),
        )
        .unwrap();
        // Within the original period: the extension travels with the case; no second one.
        let rest = remaining_period(&extended, d("2027-01-15")).unwrap();
        assert_eq!(
            (rest.from, rest.to, rest.effective_end()),
            (d("2027-01-15"), d("2027-04-30"), d("2027-07-31"))
        );
        check(&rest, Some(d(DISCHARGE))).unwrap();
        assert!(matches!(
            extend(&rest, ext("2027-10-31", "2027-04-20"), Some(d(DISCHARGE))),
            Err(PeriodError::AlreadyExtended { .. })
        ));
        // Within the extension: the rest of the extension.
        assert_eq!(
            remaining_period(&extended, d("2027-06-01")),
            Some(period("2027-06-01", "2027-07-31"))
        );
        assert_eq!(remaining_period(&extended, d("2027-08-01")), None);
    }
}
